"""The running proxy's shared state: configuration, origin pool, counters, logs.

One `Runtime` per process. Handlers read ``runtime.config`` at each step, so a
new `Config` installed by `apply` (SIGHUP or the admin forms) takes effect on the
next request; the few things that hold state of their own (the client slot pool,
the origin pool, the logs) are reconfigured in `apply`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

import gevent

from cproxy.directives import DIRECTIVES, Config, diff
from cproxy.directives.types import direct_match
from cproxy.errors import ConfigError
from cproxy.origin import OriginPool, default_resolve
from cproxy.origin.deadaddrs import DeadAddresses
from cproxy.origin.dnscache import DNSCache
from cproxy.origin.parents import ParentSet
from cproxy.origin.tls import tls_policy
from cproxy.server.accesslog import AccessLog
from cproxy.server.admission import Admission, Slots
from cproxy.server.auth import ProxyAuthenticator
from cproxy.server.caching import ProxyCache
from cproxy.server.fdlimits import FdBudget
from cproxy.server.interception import Interception
from cproxy.server.responsestats import ResponseStats

log = logging.getLogger("cproxy")


def max_client_connections(cfg: Config) -> int:
    """MaxClientConnections in force: 0 sized to the file-descriptor limit, and any value
    kept within its share of the limit (cproxy.server.fdlimits)."""
    return FdBudget.current().client_cap(cfg.max_client_connections)


def configure_logging(cfg: Config) -> None:
    """Point the ``cproxy`` logger at ErrorLog with LogLevel."""
    root = logging.getLogger("cproxy")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    handler: logging.Handler
    path = cfg.resolve_path("ErrorLog")  # relative to the directive file's directory
    if path == "-":
        handler = logging.StreamHandler(sys.stderr)
    elif path == "":
        handler = logging.NullHandler()  # ErrorLog empty: no messages
    else:
        handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(cfg.log_level.upper())
    root.propagate = False


def pool_caps(cfg: Config) -> dict[str, Any]:
    """The origin pool's caps (issue #11) and ConnectAttemptDelay (#24) from the directives."""
    return {
        "max_conn_per_origin": cfg.max_conn_per_server,
        "queue_timeout_s": cfg.server_conn_queue_timeout_s,
        "max_requests_per_conn": cfg.max_persist_request_per_server,
        # Within its share of the descriptor limit, so idle sockets never starve clients.
        "max_idle_total": FdBudget.current().idle_cap(cfg.max_idle_sockets),
        "standby": cfg.server_conn_standby,
        "connect_attempt_delay_s": cfg.connect_attempt_delay_s,
        "tls_for": tls_policy(
            cfg.server_sslca_file, frozenset(cfg.server_ssl_no_verify), h2_policy(cfg)
        ),
        "h2c_for": frozenset(cfg.server_http2_cleartext).__contains__,
        "max_streams_per_conn": cfg.max_streams_per_connection,
    }


def h2_policy(cfg: Config) -> Callable[[tuple[str, str, int]], bool]:
    """Whether HTTP/2 is offered to an https origin (ServerHTTP2, narrowed by
    ServerHTTP2Hosts and ServerHTTP2ExcludeHosts)."""
    on = cfg.server_http2
    only, never = cfg.server_http2_hosts, cfg.server_http2_exclude_hosts

    def h2_for(key: tuple[str, str, int]) -> bool:
        host = key[1]
        if not on or (only and not direct_match(only, host)):
            return False
        return not (never and direct_match(never, host))

    return h2_for


class Runtime:
    """What every part of a running cproxy shares. Construct, then `start`."""

    def __init__(self, config: Config, config_path: str | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.started_at = time.time()
        # MaxActiveThreads: requests being served; open connections are admitted apart
        # (cproxy.server.admission).
        self.slots = Slots(config.max_active_threads)
        self.admission = Admission(
            max_client_connections(config), config.max_client_connections_per_address
        )
        # Origin addresses that failed lately, tried last (issue #24): the pool's and the
        # CONNECT tunnels' (through pool.dead_addresses).
        self.dead_addresses = DeadAddresses(config.dead_address_timeout_s)
        # DNSCacheTimeout: the resolver every origin connection uses (tests may set
        # pool.resolve to one of their own, which goes round it).
        self.dns_cache = DNSCache(
            default_resolve, config.dns_cache_timeout_s, config.dns_negative_cache_timeout_s
        )
        self.pool = OriginPool(
            resolve=self.dns_cache,
            dead_addresses=self.dead_addresses,
            enabled=config.server_conn_pool,
            max_idle_per_origin=config.max_socket_per_server,
            idle_timeout_s=config.server_conn_timeout_s,
            gc_interval_s=config.server_conn_gc_run_s,
            connect_timeout_s=config.connect_timeout_s,
            **pool_caps(config),
        )
        self.access_log = AccessLog(config.resolve_path("AccessLog"), config.access_log_format)
        self.cache = ProxyCache(config)
        self.requests_total = 0
        # Responses by status code and their latencies, for /metrics.
        self.responses = ResponseStats()
        # ProxyAuth's verifier and the failed attempts by address.
        self.proxy_auth = ProxyAuthenticator()
        # ParentProxy: the parents in order and their up/down state.
        self.parents = ParentSet()
        self.parents.configure(config)
        # HTTPS interception (issue #19): the CA, leaf contexts, pinned clients, counters.
        # SSLInterception on without a usable CA refuses to start (ConfigError).
        self.interception = Interception()
        self.interception.configure(config)
        self.stopping = False
        # Answer plain fresh hits through cproxy.server.fastlane. Always on; the tests turn
        # it off to compare it with the general path, and so can a benchmark.
        self.fast_lane = True
        # Serve plain misses of URLs known to be uncacheable through cproxy.server.misslane
        # (it takes the fast lane's checked requests: off with the fast lane too). Always
        # on; the tests turn it off to compare it with the general path.
        self.miss_lane = True
        # Open client connections (ClientConnection), so shutdown can close idle ones.
        self.connections: set[Any] = set()
        self._reaper: gevent.Greenlet | None = None
        # (host, port) pairs cproxy listens on; filled in by the listeners.
        self.proxy_addresses: list[tuple[str, int]] = []
        self.admin_addresses: list[tuple[str, int]] = []
        # The proxy's listening sockets (set by ProxyServer), for the backlog figure.
        self.listen_sockets: list[socket.socket] = []
        # With Workers > 1: the supervisor's pid (see propagate).
        self.supervisor_pid: int | None = None

    def own_addresses(self) -> list[tuple[str, int]]:
        """Every (host, port) cproxy listens on: its proxy and admin listeners."""
        return self.proxy_addresses + self.admin_addresses

    def listens_on_port(self, port: int | None) -> bool:
        """Is ``port`` the port of one of cproxy's own listeners (on any address)?"""
        # Asked on every hit: a plain loop over both lists, no joined copy, no generator.
        for addresses in (self.proxy_addresses, self.admin_addresses):
            for _, own in addresses:
                if own == port:
                    return True
        return False

    def start(self) -> None:
        self.pool.start()
        self.access_log.start()
        if self.cache.tier is not None:
            self.cache.tier.start()
        if self._reaper is None:
            self._reaper = gevent.spawn(self._reap_idle_connections)

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper = None
        self.pool.close()
        self.access_log.close()
        if self.cache.tier is not None:
            self.cache.tier.close()

    def reaper_tick_s(self) -> float:
        """How often client connections are checked against their deadlines (waits for a
        request, and for an origin's response head): an eighth of the shortest of
        InputTimeout, PersistTimeout and ReadTimeout, within 5 ms .. 250 ms, so a timeout
        fires at most that late."""
        cfg = self.config
        shortest = min(cfg.input_timeout_s, cfg.persist_timeout_s, cfg.read_timeout_s)
        return min(max(shortest / 8, 0.005), 0.25)

    def _reap_idle_connections(self) -> None:
        while True:
            gevent.sleep(self.reaper_tick_s())
            now = time.monotonic()
            for conn in list(self.connections):
                try:
                    conn.expire_if_idle(now)
                except Exception:
                    # Every wait it bounds depends on this loop: it must outlive any one
                    # connection's failure.
                    log.exception("the reaper could not check %r", conn)

    def apply(self, new: Config) -> list[str]:
        """Install ``new``; returns the changed directives that need a restart."""
        old = self.config
        changed = diff(old, new)
        self.config = new
        if old.max_active_threads != new.max_active_threads:
            self.slots.resize(new.max_active_threads)
        self.admission.reconfigure(
            max_client_connections(new), new.max_client_connections_per_address
        )
        self.pool.reconfigure(
            enabled=new.server_conn_pool,
            max_idle_per_origin=new.max_socket_per_server,
            idle_timeout_s=new.server_conn_timeout_s,
            gc_interval_s=new.server_conn_gc_run_s,
            connect_timeout_s=new.connect_timeout_s,
            **pool_caps(new),
        )
        self.dead_addresses.remember_s = new.dead_address_timeout_s
        self.dns_cache.reconfigure(new.dns_cache_timeout_s, new.dns_negative_cache_timeout_s)
        if old.resolve_path("AccessLog") != new.resolve_path("AccessLog"):
            self.access_log.reopen(new.resolve_path("AccessLog"))
        if old.access_log_format != new.access_log_format:
            self.access_log.flush()  # lines written so far keep their format
            self.access_log.format = new.access_log_format
        if (
            old.resolve_path("ErrorLog") != new.resolve_path("ErrorLog")
            or old.log_level != new.log_level
        ):
            configure_logging(new)
        self.cache.reconfigure(new)
        self.parents.configure(new)
        try:
            self.interception.configure(new)
        except ConfigError as exc:
            # The rest applies; interception keeps the state it had (the CA in use, or
            # none: CONNECTs tunnelled) until the CA is fixed (at start the same error
            # refuses to start).
            log.error("HTTPS interception not changed: %s", exc)
        restart = [name for name in changed if not DIRECTIVES[name].live]
        if changed:
            log.info("configuration changed: %s", ", ".join(changed))
        if restart:
            log.warning("takes effect at restart: %s", ", ".join(restart))
        return restart

    def reopen_logs(self) -> None:
        """Reopen AccessLog and ErrorLog under their names (SIGUSR1, after log rotation
        moved the files): what is buffered goes to the old file, new lines to a new one."""
        self.access_log.reopen()
        configure_logging(self.config)
        log.info("log files reopened")

    def propagate(self) -> bool:
        """With Workers > 1, have every worker re-read the directive file (after the
        admin saved a change here). Returns whether there were other workers to tell."""
        if self.supervisor_pid is None:
            return False
        os.kill(self.supervisor_pid, signal.SIGHUP)
        return True

    def waiting_connections(self) -> int:
        """Connections queued in the kernels' listen backlogs (Linux TCP_INFO), or 0."""
        return sum(_accept_queue(sock) for sock in self.listen_sockets)

    def stats(self) -> dict[str, Any]:
        """Figures for the admin status page and /metrics."""
        return {
            "uptime_s": time.time() - self.started_at,
            "connections": {
                "active": len(self.slots),
                # Requests waiting for a slot, and connections not yet accepted.
                "waiting": self.slots.waiting + self.waiting_connections(),
                "max_active": self.slots.size,
                **self.admission.stats(),
            },
            "requests_total": self.requests_total,
            "responses": self.responses.stats(),
            "parents": self.parents.stats(),
            "pool": self.pool.stats(),
            # Issue #24: the dead-address memory and the DNS cache every connection uses.
            "connecting": {
                "dead_addresses": self.dead_addresses.stats(),
                "dns_cache": self.dns_cache.stats(),
            },
            "cache": self.cache.stats(),
            "interception": self.interception.stats(),
        }


def _accept_queue(sock: socket.socket) -> int:
    """A listening socket's accept-queue length (Linux TCP_INFO), or 0."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return 0
    # struct tcp_info: 8 one-byte fields, then u32 rto, ato, snd_mss, rcv_mss,
    # unacked (for a listening socket: the current accept-queue length).
    return int(struct.unpack_from("I", info, 8 + 4 * 4)[0])
