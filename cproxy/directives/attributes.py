"""GENERATED from the directive registry by python -m cproxy.directives.generate; do not edit.

The static type of each `Config` attribute (mypy reads them, so a misspelt or
mistyped ``cfg.<attr>`` is an error). The values themselves are set by `Config`.
"""

from __future__ import annotations

from cproxy.directives.freshnesstypes import FreshnessRule
from cproxy.directives.origintypes import Origin
from cproxy.directives.types import IPNetwork, Pattern, PortRanges, RedisTarget, Rule


class ConfigAttributes:
    __slots__ = ()

    port: int  # Port
    bind_address: tuple[str, ...]  # BindAddress
    hostname: str  # Hostname
    max_active_threads: int  # MaxActiveThreads
    listen_backlog: int  # ListenBacklog
    max_persist_request: int  # MaxPersistRequest
    workers: int  # Workers
    input_timeout_s: float  # InputTimeout
    read_timeout_s: float  # ReadTimeout
    output_timeout_s: float  # OutputTimeout
    persist_timeout_s: float  # PersistTimeout
    max_client_connections: int  # MaxClientConnections
    max_client_connections_per_address: int  # MaxClientConnectionsPerAddress
    request_body_buffer_bytes: int  # RequestBodyBuffer
    request_body_timeout_s: float  # RequestBodyTimeout
    request_body_min_rate_bytes: int  # RequestBodyMinRate
    proxy_persistence: bool  # ProxyPersistence
    server_conn_pool: bool  # ServerConnPool
    max_socket_per_server: int  # MaxSocketPerServer
    server_conn_timeout_s: float  # ServerConnTimeout
    server_conn_gc_run_s: float  # ServerConnGCRun
    connect_timeout_s: float  # ConnectTimeout
    connect_attempt_delay_s: float  # ConnectAttemptDelay
    dead_address_timeout_s: float  # DeadAddressTimeout
    dns_cache_timeout_s: float  # DNSCacheTimeout
    dns_negative_cache_timeout_s: float  # DNSNegativeCacheTimeout
    max_conn_per_server: int  # MaxConnPerServer
    server_conn_queue_timeout_s: float  # ServerConnQueueTimeout
    max_persist_request_per_server: int  # MaxPersistRequestPerServer
    max_idle_sockets: int  # MaxIdleSockets
    server_conn_standby: tuple[tuple[Origin, int], ...]  # ServerConnStandby
    server_sslca_file: str  # ServerSSLCAFile
    server_ssl_no_verify: tuple[Origin, ...]  # ServerSSLNoVerify
    server_http2: bool  # ServerHTTP2
    server_http2_hosts: tuple[str | IPNetwork, ...]  # ServerHTTP2Hosts
    server_http2_exclude_hosts: tuple[str | IPNetwork, ...]  # ServerHTTP2ExcludeHosts
    server_http2_cleartext: tuple[Origin, ...]  # ServerHTTP2Cleartext
    max_streams_per_connection: int  # MaxStreamsPerConnection
    proxy_access: tuple[IPNetwork, ...]  # ProxyAccess
    connect_ports: tuple[int, ...]  # ConnectPorts
    max_request_body_bytes: int  # MaxRequestBody
    trace_enable: bool  # TraceEnable
    proxy_auth: bool  # ProxyAuth
    proxy_auth_realm: str  # ProxyAuthRealm
    proxy_auth_password_file: str  # ProxyAuthPasswordFile
    proxy_auth_exempt: tuple[IPNetwork, ...]  # ProxyAuthExempt
    no_proxy: tuple[str | IPNetwork, ...]  # NoProxy
    parent_proxy: tuple[tuple[str, int], ...]  # ParentProxy
    parent_proxy_credentials: str  # ParentProxyCredentials
    parent_retry_s: float  # ParentRetry
    proxy_pac: bool  # ProxyPac
    pac_proxy_address: str  # PacProxyAddress
    purge_access: tuple[IPNetwork, ...]  # PurgeAccess
    safe_ports: PortRanges  # SafePorts
    refused_destinations: tuple[IPNetwork, ...]  # RefusedDestinations
    loopback_destinations: tuple[IPNetwork, ...]  # LoopbackDestinations
    sslca_cert_file: str  # SSLCACertFile
    sslca_key_file: str  # SSLCAKeyFile
    ssl_leaf_cache_size: int  # SSLLeafCacheSize
    ssl_interception: bool  # SSLInterception
    ssl_intercept_clients: tuple[IPNetwork, ...]  # SSLInterceptClients
    ssl_splice_hosts: tuple[str | IPNetwork, ...]  # SSLSpliceHosts
    ssl_intercept_hosts: tuple[str | IPNetwork, ...]  # SSLInterceptHosts
    ssl_pinned_splice_time_s: float  # SSLPinnedSpliceTime
    mapping_rules: tuple[Rule, ...]  # MappingRules
    access_log: str  # AccessLog
    access_log_format: str  # AccessLogFormat
    error_log: str  # ErrorLog
    log_level: str  # LogLevel
    caching: bool  # Caching
    cache_memory_bytes: int  # CacheMemory
    cache_file_size_limit_bytes: int  # CacheFileSizeLimit
    cache_max_expiry_s: float  # CacheMaxExpiry
    cache_default_expiry_s: float  # CacheDefaultExpiry
    cache_last_modified_factor: float  # CacheLastModifiedFactor
    cache_freshness_rules: tuple[FreshnessRule, ...]  # CacheFreshnessRules
    cache_package_rules: bool  # CachePackageRules
    cache_time_margin_s: float  # CacheTimeMargin
    no_caching: tuple[Pattern, ...]  # NoCaching
    cache_queries: bool  # CacheQueries
    cache_max_stale_s: float  # CacheMaxStale
    cache_targeted_fields: tuple[str, ...]  # CacheTargetedFields
    cache_cookie_responses: str  # CacheCookieResponses
    shared_cache: RedisTarget | None  # SharedCache
    shared_cache_password_file: str  # SharedCachePasswordFile
    shared_cache_namespace: str  # SharedCacheNamespace
    shared_cache_timeout_s: float  # SharedCacheTimeout
    shared_cache_retry_s: float  # SharedCacheRetry
    shared_cache_max_entry_bytes: int  # SharedCacheMaxEntry
    shared_cache_write_queue: int  # SharedCacheWriteQueue
    shared_cache_lease_s: float  # SharedCacheLease
    admin_port: int  # AdminPort
    admin_address: tuple[str, ...]  # AdminAddress
    admin_password_file: str  # AdminPasswordFile
    admin_host_names: tuple[str, ...]  # AdminHostNames
    admin_access: tuple[IPNetwork, ...]  # AdminAccess
    pid_file: str  # PidFile
