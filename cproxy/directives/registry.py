"""The single registry of cproxy's directives.

Each directive is declared once here: its name (IBM Caching Proxy's spelling), value type,
default (as a person types it), the admin form it belongs to, its documentation and whether a
change applies live or at restart. The loader, the defaults, ``man/cproxy.conf.5``,
``etc/cproxy.conf`` and the admin forms are all derived from this list (gunicorn's
``config.py`` pattern), so a directive cannot be documented one way and behave another.

Docs are plain text; a blank line separates paragraphs.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

from .freshnesstypes import FreshnessRuleList
from .origintypes import OriginList, StandbyList
from .types import (
    AddressList,
    Choice,
    DirectList,
    Factor,
    FieldNameList,
    Host,
    HostList,
    HostPortList,
    Integer,
    ListenHosts,
    PatternList,
    PortList,
    PortRangeList,
    RuleList,
    SharedCacheURL,
    Size,
    Switch,
    Text,
    Time,
    ValueType,
)

# Form paths, named once so a typo cannot create a stray form.
NETWORK = ("Server Configuration", "System Management", "Network")
PERFORMANCE = ("Server Configuration", "System Management", "Performance")
TIMEOUTS = ("Server Configuration", "System Management", "Timeouts")
ADMINISTRATION = ("Server Configuration", "Administration")
PROXY_PERFORMANCE = ("Proxy Configuration", "Proxy Performance")
CONNECTION_POOL = ("Proxy Configuration", "Connection Pool")
PROXY_CHAINING = ("Proxy Configuration", "Proxy Chaining")
HTTPS_INTERCEPTION = ("Proxy Configuration", "HTTPS Interception")
ACCESS_CONTROL = ("Proxy Configuration", "Access Control")
REQUEST_ROUTING = ("Request Routing",)
LOGGING = ("Logging",)
CACHE_SETTINGS = ("Cache Configuration", "Cache Settings")
SHARED_CACHE = ("Cache Configuration", "Shared Cache")

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def attr_name(name: str, type_: ValueType) -> str:
    """The Config attribute for a directive: snake_case name + the type's unit suffix.

    ``PersistTimeout`` -> ``persist_timeout_s``, ``ServerConnGCRun`` -> ``server_conn_gc_run_s``.
    """
    return _CAMEL_BOUNDARY.sub("_", name).lower() + type_.suffix


@dataclass(frozen=True)
class Directive:
    """One directive: declared here once, everything else derives from it."""

    name: str
    type: ValueType
    default: str
    form: tuple[str, ...]
    doc: str
    live: bool
    #: an optional non-default value as a user would type it, shown in the docs
    example: str = ""
    attr: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "doc", inspect.cleandoc(self.doc))
        object.__setattr__(self, "example", inspect.cleandoc(self.example))
        object.__setattr__(self, "attr", attr_name(self.name, self.type))


# Bounds for timeouts: every wait is bounded (DESIGN.md §5.6), so 0 ("wait forever") is not
# offered; 1 ms is allowed so tests can provoke a timeout quickly.
_MIN_TIMEOUT_S = 0.001
_DAY_S = 86_400.0

_DECLARED: tuple[Directive, ...] = (
    # --- Server Configuration / System Management / Network --------------------------------
    Directive(
        "Port",
        Integer(0, 65535),
        "8080",
        NETWORK,
        """
        TCP port the proxy listens on for client requests.

        0 lets the system pick a free port (useful for tests; the chosen port is logged).
        8080 is the customary unprivileged proxy port, so cproxy needs no root rights.
        """,
        live=False,
    ),
    Directive(
        "BindAddress",
        ListenHosts(),
        "127.0.0.1",
        NETWORK,
        """
        Addresses the proxy listens on, all on Port: IPv4 or IPv6 addresses (or host names
        resolving to one), separated by spaces, e.g. 127.0.0.1 ::1 for both loopbacks.

        The default, loopback only, means a fresh install serves nobody but the local machine;
        set 0.0.0.0 :: to serve a network on IPv4 and IPv6, together with ProxyAccess. An
        IPv6 address listens for IPv6 only, so the two can be listed together.
        """,
        live=False,
    ),
    Directive(
        "Hostname",
        Host(),
        "cproxy",
        NETWORK,
        """
        Name the proxy calls itself in the Via header it adds and on its error pages.

        A fixed pseudonym rather than the machine's name, so responses do not reveal internal
        host names; set it to something your users recognise.
        """,
        live=True,
    ),
    # --- Server Configuration / System Management / Performance ----------------------------
    Directive(
        "MaxActiveThreads",
        Integer(1, 100_000),
        "100",
        PERFORMANCE,
        """
        Most requests served at once (each by one greenlet).

        A slot is held from the moment a request's head (and its body, up to
        RequestBodyBuffer) is in until its response is sent. Connections waiting for a
        first or next request head hold none (MaxClientConnections bounds those), so
        silent, slow or idle clients cannot keep others waiting. When all slots are busy,
        further requests wait for one in order; they are not refused. 100 is IBM Caching
        Proxy's default and suits a small site; raise it for many concurrent clients.
        """,
        live=True,
    ),
    Directive(
        "ListenBacklog",
        Integer(1, 65_535),
        "511",
        PERFORMANCE,
        """
        Connections the kernel queues, not yet accepted, before it refuses new clients.

        cproxy accepts connections as they come (up to MaxClientConnections), so the queue
        only holds the moment's burst. 511 is what nginx and Redis use; the kernel caps it
        at net.core.somaxconn.
        """,
        live=False,
    ),
    Directive(
        "MaxPersistRequest",
        Integer(1, 1_000_000),
        "1000",
        PERFORMANCE,
        """
        Most requests one persistent client connection may carry; then cproxy closes it.

        IBM's default is 5, which makes a browser reconnect every 5 requests: a TCP (and often
        TLS) handshake and a round trip each time, for no benefit. 1000 keeps that saving
        while still recycling long-lived connections now and then, as nginx does with its
        keepalive_requests default of 1000.
        """,
        live=True,
    ),
    Directive(
        "Workers",
        Integer(1, 64),
        "1",
        PERFORMANCE,
        """
        Processes sharing the listening socket, to use more than one CPU.

        Each worker has its own cache and origin connection pool and its own
        MaxActiveThreads, so memory use (CacheMemory) and the number of connections multiply
        by this number. 1 keeps the cache whole, which matters more than CPU for most sites.
        """,
        live=False,
    ),
    # --- Server Configuration / System Management / Timeouts -------------------------------
    Directive(
        "InputTimeout",
        Time(_MIN_TIMEOUT_S, _DAY_S),
        "30 seconds",
        TIMEOUTS,
        """
        Time allowed to receive a complete request head: for the first request, from the
        connection being accepted; for a later request on a persistent connection, from its
        first byte (the wait for that byte is PersistTimeout); until the blank line ending
        the head. When it passes the client gets 408 and the connection is closed.

        It bounds slow-header ("slowloris") clients, which otherwise hold a connection
        (not a MaxActiveThreads slot) indefinitely.
        """,
        live=True,
    ),
    Directive(
        "ReadTimeout",
        Time(_MIN_TIMEOUT_S, _DAY_S),
        "1 minute",
        TIMEOUTS,
        """
        Longest single wait, once a request head is in: for bytes from the client (its
        request body) or the origin (its response), or for either of them to take bytes
        cproxy sends. A CONNECT tunnel ends when neither side sent anything for this long.

        It does not limit the total time of a transfer, only a stall. An origin silent this
        long before its response starts gets the client a 504 Gateway Timeout; a stalled
        request body a 408; an origin that stops taking the body a 502; later stalls close
        the client connection, leaving the response visibly truncated. One minute lets a
        slow origin compute a response while still freeing slots held by dead peers.
        """,
        live=True,
    ),
    Directive(
        "OutputTimeout",
        Time(_MIN_TIMEOUT_S, _DAY_S),
        "30 minutes",
        TIMEOUTS,
        """
        Time allowed to deliver one whole response relayed from an origin, from its head to
        its last byte, including waits for the origin's body; when it runs out the
        connection is closed. Responses from the cache, cproxy's own, and relayed ones that
        arrived whole with their head are sent from memory and bounded by ReadTimeout for
        each send instead.

        30 minutes lets a large download finish over a slow link, yet a client that reads
        too slowly cannot hold a slot forever.
        """,
        live=True,
    ),
    Directive(
        "PersistTimeout",
        Time(_MIN_TIMEOUT_S, _DAY_S),
        "4 seconds",
        TIMEOUTS,
        """
        Idle time allowed between requests on a persistent client connection: after a
        response, the next request must start within this time or the connection is closed.

        An idle persistent connection holds no MaxActiveThreads slot, but it does hold a
        socket (see MaxClientConnections), so it is kept short: 4 seconds covers a
        browser's follow-up requests for a page's resources.
        """,
        live=True,
    ),
    # --- Client connections and request bodies (issue #10; DESIGN.md §5 rule 9) -------------
    Directive(
        "MaxClientConnections",
        Integer(0, 10_000_000),
        "0",
        PERFORMANCE,
        """
        Most client connections open at once; 0 (the default) sizes it to the process's
        file-descriptor limit: half of RLIMIT_NOFILE less 64 kept for listeners and logs
        (a quarter goes to idle pooled sockets, a quarter to origin sockets in use). A
        larger value is lowered to that share. cproxy raises its soft limit to the hard
        one at start and logs the figures.

        Only MaxActiveThreads of them are being served at a time; the others wait for a
        request head (or receive a body up to RequestBodyBuffer) at the cost of a socket
        and a few KB. At the cap a new client is still admitted: the connection that has
        waited longest for a request head is closed to make room. Connections being
        served are never cut; only when all are being served is a new one refused.
        Raise the descriptor limit (ulimit -n, LimitNOFILE=) to serve more.
        """,
        live=True,
    ),
    Directive(
        "MaxClientConnectionsPerAddress",
        Integer(1, 10_000_000),
        "256",
        PERFORMANCE,
        """
        Most connections open at once from one client address. At the cap a new
        connection from that address closes its longest-waiting idle one (or, if all of
        them are being served, is refused), so one address cannot hold every connection.

        A browser opens 6 connections per site and up to 32 to a proxy; 256 leaves room
        for several browsers and tools behind one address (a NAT, a CI runner) while one
        address still cannot fill MaxClientConnections on its own.
        """,
        live=True,
    ),
    Directive(
        "RequestBodyBuffer",
        Size(0, 1 << 30),
        "64 K",
        PERFORMANCE,
        """
        Request bodies up to this size are received whole before the origin sees any of
        the request; larger ones are streamed on once this much has arrived.

        A malformed body (a bad chunk size, one over MaxRequestBody) is then answered with
        its 4xx and the origin receives nothing, and a slow upload holds no
        MaxActiveThreads slot while it arrives. Bodies wait in memory, so the most this
        can take is MaxClientConnections times this size: 64 K covers the usual form
        posts and API calls (nginx keeps 8-16 K in memory and the rest in a temporary
        file) while 500 connections stay within 32 MiB. 0 streams every body at once.
        """,
        live=True,
    ),
    Directive(
        "RequestBodyTimeout",
        Time(_MIN_TIMEOUT_S, _DAY_S),
        "20 seconds",
        TIMEOUTS,
        """
        Time allowed to receive a request body, from the end of its head; every
        RequestBodyMinRate bytes that arrive add one second. When it passes the client
        gets 408 and the connection is closed (the event is logged).

        ReadTimeout alone bounds each wait, so a client sending one byte a minute could
        hold an upload open for ever; this bounds the whole body. 20 seconds plus one per
        500 bytes is Apache's mod_reqtimeout default (body=20,MinRate=500): any real
        uplink is far faster.
        """,
        live=True,
    ),
    Directive(
        "RequestBodyMinRate",
        Size(0, 1 << 30),
        "500 bytes",
        TIMEOUTS,
        """
        Least rate, per second, at which a request body must arrive: each this many bytes
        received extend RequestBodyTimeout by one second. 0 makes RequestBodyTimeout a
        fixed limit for the whole body.

        500 bytes a second is Apache's mod_reqtimeout MinRate default: a modem's pace,
        so only a deliberately slow client is cut.
        """,
        live=True,
    ),
    # --- Proxy Configuration / Proxy Performance -------------------------------------------
    Directive(
        "ProxyPersistence",
        Switch(),
        "on",
        PROXY_PERFORMANCE,
        """
        Whether client connections may stay open for further requests (HTTP/1.1 persistent
        connections).

        On saves a TCP handshake and a round trip per request and lowers CPU use; off closes
        the client connection after every response.
        """,
        live=True,
    ),
    # --- Proxy Configuration / Connection Pool ---------------------------------------------
    Directive(
        "ServerConnPool",
        Switch(),
        "on",
        CONNECTION_POOL,
        """
        Whether connections to origin servers are kept and reused for later requests.

        Each reuse saves three TCP packets and a round trip. A pooled connection the origin
        has closed meanwhile is detected, and a request that is safe to repeat is sent again
        on a fresh connection. Off opens a new origin connection per request.
        """,
        live=True,
    ),
    Directive(
        "MaxSocketPerServer",
        Integer(0, 100_000),
        "64",
        CONNECTION_POOL,
        """
        Most idle connections kept open per origin server (scheme, host and port).

        It bounds idle sockets only; busy connections are not limited by it. IBM's default of
        5 churns under load: with 50 concurrent clients, every release past the fifth closes
        a socket that the next request must open again. 64 covers the concurrency of a busy
        site while bounding the idle sockets an origin sees from us.
        """,
        live=True,
    ),
    Directive(
        "ServerConnTimeout",
        Time(_MIN_TIMEOUT_S, _DAY_S),
        "10 seconds",
        CONNECTION_POOL,
        """
        How long an idle pooled origin connection is kept before it is closed.

        Checked when a connection is taken from the pool as well as by the collector (see
        ServerConnGCRun). 10 seconds is IBM's default and stays below the idle timeouts of
        common origin servers (Apache: 5 s to 15 s, nginx: 75 s), which lowers the chance of
        picking a socket the origin is just closing.
        """,
        live=True,
    ),
    Directive(
        "ServerConnGCRun",
        Time(0.01, _DAY_S),
        "30 seconds",
        CONNECTION_POOL,
        """
        How often the collector closes pooled origin connections idle for longer than
        ServerConnTimeout.

        Connections are also checked when taken from the pool, so the collector only frees
        file descriptors and origin resources early. IBM's default is 2 minutes; 30 seconds
        releases idle sockets sooner at a negligible cost.
        """,
        live=True,
    ),
    Directive(
        "ConnectTimeout",
        Time(_MIN_TIMEOUT_S, 600.0),
        "10 seconds",
        CONNECTION_POOL,
        """
        Time allowed to establish a TCP connection to an origin server: resolving its name
        and every address tried (see ConnectAttemptDelay), together; for https the TLS
        handshake too.

        When it runs out the client gets 504 Gateway Timeout, naming each address tried and
        what became of it. 10 seconds allows for a retransmitted SYN (the first retry comes
        after 1 to 3 seconds) without making users wait long for an unreachable host.
        """,
        live=True,
    ),
    Directive(
        "ConnectAttemptDelay",
        Time(0.0, 60.0),
        "250 ms",
        CONNECTION_POOL,
        """
        When an origin's name has several addresses, how long a connection attempt may stay
        unanswered before the next address is tried beside it (RFC 8305, "Happy Eyeballs").
        The first address to connect is used and the others are closed at once; a refused
        address makes way for the next immediately. Addresses alternate between IPv6 and
        IPv4, the family the system prefers first. Every origin connection races this way:
        plain and TLS, pooled and standby, parents, mapping rule targets, CONNECT tunnels.

        250 ms is RFC 8305's recommendation, used by browsers, curl and Squid
        (happy_eyeballs_connect_timeout): a black-holed address (a dead server in a DNS
        round robin, a broken IPv6 route) costs a quarter second instead of ConnectTimeout.
        0 starts all attempts at once (more load on the origins for no gain on a healthy
        network).
        """,
        live=True,
        example="100 ms",
    ),
    Directive(
        "DeadAddressTimeout",
        Time(0.0, _DAY_S),
        "10 minutes",
        CONNECTION_POOL,
        """
        How long an origin address that refused, was unreachable, timed out or was overtaken
        by another in a connection race is tried after the other addresses of any name that
        resolves to it. Still tried when every address is dead. A successful connection to
        it forgets it at once. 0 remembers nothing.

        The next request then connects to a live address at once, instead of waiting
        ConnectAttemptDelay for the dead one again (Squid's ipcache marks bad addresses the
        same way). 10 minutes is of the order of DNS TTLs, and short enough for an origin
        that came back to be used again soon. At most 4096 addresses are remembered.
        """,
        live=True,
    ),
    Directive(
        "DNSCacheTimeout",
        Time(0.0, _DAY_S),
        "1 minute",
        CONNECTION_POOL,
        """
        How long the addresses an origin's name resolved to are kept for its next new
        connections. 0 looks the name up for every new connection.

        The system resolver gives no record TTLs, so a fixed time is used, as Chromium (1
        minute for the system resolver's answers) and curl (60 seconds) do. A lookup costs
        a new connection more than the connection itself on loopback; with ServerConnPool
        off it was about a quarter of cproxy's CPU per request (docs/CONNECTING.md). Cached
        addresses are checked by the destination rules on every connection, like fresh
        ones. An address literal is never looked up.
        """,
        live=True,
    ),
    Directive(
        "DNSNegativeCacheTimeout",
        Time(0.0, _DAY_S),
        "10 seconds",
        CONNECTION_POOL,
        """
        How long a name that does not exist (the resolver said so) is answered with 502
        without asking again. 0 asks every time. A resolver that cannot answer now (a
        temporary failure, a timeout) is always asked again.

        10 seconds spares the resolver a burst of requests for a mistyped or vanished name
        (a page's many resources) and lets a name that was just created work soon.
        """,
        live=True,
    ),
    # Caps of the origin pool (issue #11): one block, kept together.
    Directive(
        "MaxConnPerServer",
        Integer(0, 100_000),
        "0",
        CONNECTION_POOL,
        """
        Most connections open to one origin server (scheme, host and port) at a time: idle,
        in use and being opened together. 0 sets no cap.

        A request that finds the cap reached waits, in arrival order, for a connection to
        be released (at most ServerConnQueueTimeout); a client that closes its connection
        meanwhile leaves the queue. This protects small origins from a flood of proxy
        connections. No cap by default: a forward proxy cannot know what each origin
        takes, and a cap there only queues requests a big site would serve at once; set it
        for the origins of a reverse proxy.
        """,
        live=True,
    ),
    Directive(
        "ServerConnQueueTimeout",
        Time(_MIN_TIMEOUT_S, 600.0),
        "10 seconds",
        CONNECTION_POOL,
        """
        Longest time a request waits for a connection to an origin that is at its
        MaxConnPerServer cap. Past it the client gets 503 Service Unavailable with a
        Retry-After header, and the error log a warning.

        10 seconds absorbs a burst (a few response times of a slow origin) while answering
        long before clients give up on their own (browsers wait minutes), so users see a
        clear error rather than a hang. A queued request holds its MaxActiveThreads slot.
        """,
        live=True,
    ),
    Directive(
        "MaxPersistRequestPerServer",
        Integer(0, 100_000_000),
        "0",
        CONNECTION_POOL,
        """
        Requests sent on one origin connection before it is closed instead of being pooled
        again. 0 sets no limit.

        Some origins leak per-connection state; a limit makes the proxy open fresh
        connections to them regularly. No limit by default: origins that need one
        usually close connections themselves (nginx after 1000 requests), and every close
        costs a new connection's round trip.
        """,
        live=True,
    ),
    Directive(
        "MaxIdleSockets",
        Integer(0, 1_000_000),
        "512",
        CONNECTION_POOL,
        """
        Most idle pooled connections over all origin servers together. 0 sets no cap.

        When a released connection would exceed it, the least recently used idle
        connection of any origin is closed, so a forward proxy that meets thousands of
        origins cannot pile up idle sockets and file descriptors. Whatever it says, idle
        sockets get at most a quarter of the descriptor limit less 64 (240 of 1024), so
        they never take the descriptors clients need; 512 keeps 8 origins at the
        MaxSocketPerServer default where the limit allows it.
        """,
        live=True,
    ),
    Directive(
        "ServerConnStandby",
        StandbyList(),
        "",
        CONNECTION_POOL,
        """
        Origins to keep connections open to before any request needs them, one per line:
        the origin (http://host[:port] or https://host[:port]) and how many idle
        connections to keep. They are opened at start and after a change, and replaced
        when a request takes one, when they expire (ServerConnTimeout) or when the origin
        closes them; an origin that refuses is tried again after a delay that doubles from
        1 second up to a minute.

        Then even the first request to a listed origin costs one round trip instead of two
        (three over TLS): worth it for origins behind slow links. Empty by default: a
        pre-opened connection costs the origin a socket whether or not it is used. The
        count is bounded by MaxSocketPerServer, MaxConnPerServer and MaxIdleSockets.
        """,
        example="http://origin.example 4",
        live=True,
    ),
    Directive(
        "ServerSSLCAFile",
        Text(allow_empty=True, description="a PEM file of CA certificates, or empty"),
        "",
        CONNECTION_POOL,
        """
        CA certificates (a PEM file) that origin servers' certificates are verified
        against, for https:// mapping targets and https:// request targets. Empty uses the
        system's CA store.

        The system store by default, as browsers do: a name the public CAs vouch for is
        what a user of a forward proxy expects. Name a file for a reverse proxy whose
        origins use a private CA.
        """,
        live=True,
    ),
    Directive(
        "ServerSSLNoVerify",
        OriginList(("https",)),
        "",
        CONNECTION_POOL,
        """
        https origins whose certificates are not verified: for test labs with self-signed
        certificates only. Each is written https://host[:port]; wildcards are not allowed.

        Empty by default, and there is no switch to turn verification off for every
        origin: an unverified connection can be intercepted by anyone on the path, so it
        must be asked for origin by origin, never granted globally by accident.
        """,
        example="https://127.0.0.1:8443",
        live=True,
    ),
    # --- HTTP/2 to origins (#20) ---
    Directive(
        "ServerHTTP2",
        Switch(),
        "on",
        CONNECTION_POOL,
        """
        Offer HTTP/2 to https origins (ALPN "h2", then "http/1.1"): an origin that accepts
        gets one shared connection carrying up to MaxStreamsPerConnection requests at
        once, instead of a socket per request in flight. An origin that does not speak
        HTTP/2 chooses HTTP/1.1 in the same handshake and is pooled as before, at no cost.

        On by default: a busy origin then costs one connection and one TLS handshake
        instead of dozens, and every major server and CDN speaks HTTP/2 over TLS. The
        price is CPU: an HTTP/2 request costs cproxy more than one on a pooled HTTP/1.1
        socket (header compression in Python; about 2.4 times for a small response from
        nginx, see docs/HTTP2.md), so where cproxy's CPU rather than the origins'
        connections is the limit, turn it off or narrow it down with ServerHTTP2Hosts and
        ServerHTTP2ExcludeHosts. Off offers HTTP/1.1 only (existing HTTP/2 connections
        finish their streams).
        """,
        live=True,
    ),
    Directive(
        "ServerHTTP2Hosts",
        DirectList(),
        "",
        CONNECTION_POOL,
        """
        When not empty, HTTP/2 (ServerHTTP2) is offered only to https origins whose host
        is listed: domains (covering the names under them) and IP networks, e.g.
        api.example.com 10.0.0.0/8. Empty by default: every https origin.
        """,
        live=True,
    ),
    Directive(
        "ServerHTTP2ExcludeHosts",
        DirectList(),
        "",
        CONNECTION_POOL,
        """
        https origins never offered HTTP/2 (domains and IP networks, as
        ServerHTTP2Hosts), e.g. for an origin whose HTTP/2 is broken. Checked after
        ServerHTTP2Hosts. Empty by default.
        """,
        live=True,
    ),
    Directive(
        "ServerHTTP2Cleartext",
        OriginList(("http",)),
        "",
        CONNECTION_POOL,
        """
        http origins spoken to in HTTP/2 without TLS (h2c with prior knowledge: the
        connection starts with the HTTP/2 preface, RFC 9113 §3.3), written
        http://host[:port]; wildcards are not allowed.

        Empty by default: a cleartext origin cannot say in a handshake whether it speaks
        HTTP/2, and one that does not would answer the preface with an error. List only
        origins known to accept it (a gRPC or h2c backend behind a reverse proxy).
        """,
        example="http://127.0.0.1:8080",
        live=True,
    ),
    Directive(
        "MaxStreamsPerConnection",
        Integer(1, 10_000),
        "100",
        CONNECTION_POOL,
        """
        Most requests carried at once on one HTTP/2 origin connection: the lower of this
        and the origin's own SETTINGS_MAX_CONCURRENT_STREAMS. More requests wait for a
        stream or open another connection, within MaxConnPerServer.

        100 by default, the limit most servers announce (nginx's http2_max_concurrent_streams
        is 128): higher only queues requests at the origin. Each stream may hold up to
        256 KiB the client has not yet read, so it also bounds the memory one
        connection's slow clients can pin.
        """,
        live=True,
    ),
    # --- Proxy Configuration / Access Control ----------------------------------------------
    Directive(
        "ProxyAccess",
        AddressList(),
        "127.0.0.0/8 ::1/128 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 fc00::/7",
        ACCESS_CONTROL,
        """
        Client addresses allowed to use the proxy; others get 403 Forbidden.

        The default is loopback and the private networks (RFC 1918, RFC 4193), so cproxy is
        never an open proxy by accident: an open proxy is soon found and abused. List your
        own client networks to serve others. Empty allows nobody.
        """,
        live=True,
    ),
    Directive(
        "ConnectPorts",
        PortList(),
        "443",
        ACCESS_CONTROL,
        """
        Ports a CONNECT request (a tunnel, used for HTTPS) may reach; others get 403.

        Only 443 by default: tunnels to arbitrary ports would let clients use the proxy to
        reach mail, SSH or database servers. Empty disables CONNECT.
        """,
        live=True,
    ),
    Directive(
        "MaxRequestBody",
        Size(0, 1 << 50),
        "0",
        ACCESS_CONTROL,
        """
        Largest request body a client may send through the proxy; 0 means no limit.

        A larger declared Content-Length is answered with 413 before anything reaches the
        origin; a chunked body that grows past the limit is answered with 413 too (if it
        had grown past RequestBodyBuffer, the origin connection that saw part of it is
        closed). Bodies past RequestBodyBuffer are streamed in bounded memory whatever
        this says, so the default sets no limit: uploads of any size pass, as they do
        through Squid by default. Set it to keep clients from using the proxy to push
        large uploads.
        """,
        live=True,
    ),
    # --- Proxy Configuration / Access Control: what one user cannot do to another (#10) ----
    Directive(
        "TraceEnable",
        Switch(),
        "off",
        ACCESS_CONTROL,
        """
        Whether TRACE requests (in any letter case) are answered or forwarded; off answers
        them with 405 Method Not Allowed.

        Off by default, as Apache's TraceEnable and most deployments: a TRACE's answer
        echoes the request, so a page that can send one reads its user's cookies and
        credentials (cross-site tracing), and it is rarely needed. When on, cproxy still
        removes Cookie, Authorization and Proxy-Authorization from every TRACE before it
        answers it (Max-Forwards 0) or forwards it: TRACE never echoes credentials.
        """,
        live=True,
    ),
    # --- Proxy authentication (#15) ---
    Directive(
        "ProxyAuth",
        Switch(),
        "off",
        ACCESS_CONTROL,
        """
        Whether clients must give a user name and password (HTTP Basic) to use the proxy.

        On: a request or CONNECT without valid credentials gets 407 with
        Proxy-Authenticate, and the access log records the user. Credentials are checked
        against ProxyAuthPasswordFile (bcrypt, managed by cproxy passwd); clients in
        ProxyAuthExempt need none. Proxy-Authorization is never forwarded. Basic sends
        the password in the clear on each request, so use it on networks you trust.
        Off by default: ProxyAccess already limits who may use a fresh install, and a
        password file must exist first. While on, fresh hits take the general path (the
        fast lane does not authenticate).
        """,
        live=True,
    ),
    Directive(
        "ProxyAuthRealm",
        Text(description="text on one line, shown by the browser's login prompt"),
        "cproxy",
        ACCESS_CONTROL,
        """
        Realm named in the 407's Proxy-Authenticate field; browsers show it in their
        login prompt and keep credentials per realm.

        The proxy's own name by default.
        """,
        live=True,
    ),
    Directive(
        "ProxyAuthPasswordFile",
        Text(allow_empty=True, description="a file name, or empty for AdminPasswordFile"),
        "",
        ACCESS_CONTROL,
        """
        File of proxy users and bcrypt hashes (cproxy passwd -f FILE USER adds one).

        Empty by default: the admin's AdminPasswordFile, so one file serves a small site;
        name a file of its own to keep proxy users from the admin pages. Re-read when it
        changes. A relative name is taken relative to the directive file's directory.
        """,
        live=True,
    ),
    Directive(
        "ProxyAuthExempt",
        AddressList(),
        "",
        ACCESS_CONTROL,
        """
        Client addresses or networks that need no credentials when ProxyAuth is on
        (e.g. 127.0.0.0/8 for local services, or a build farm).

        Empty by default: when authentication is on, it is on for everyone.
        """,
        live=True,
    ),
    # --- Proxy chaining and the PAC file (#15) ---
    Directive(
        "NoProxy",
        DirectList(),
        "",
        PROXY_CHAINING,
        """
        Domains and IP networks reached directly: never through a ParentProxy, and
        DIRECT in the PAC file (e.g. intranet.example 10.0.0.0/8).

        A domain covers the names under it (example.com covers www.example.com); a network
        covers address literals (a name is not resolved to decide). Empty by default.
        """,
        live=True,
    ),
    Directive(
        "ParentProxy",
        HostPortList(),
        "",
        PROXY_CHAINING,
        """
        Parent proxies to send requests through, as host:port, in order of preference
        (e.g. proxy1.corp.example:3128 proxy2.corp.example:3128).

        Requests go to the first parent that is up: plain HTTP in absolute form over the
        connection pool, HTTPS as a CONNECT through the parent. A client's CONNECT is
        passed on; an https:// request cproxy fetches itself (an intercepted one, or a
        client's https:// URL) goes over a TLS connection cproxy makes to the origin
        through a CONNECT to the parent, verified as a direct one (ServerSSLCAFile) and
        pooled per parent and origin, never to the parent in cleartext. A parent that cannot be
        reached is marked down for ParentRetry and the next one is used; when all are
        down, requests get 502 rather than going direct (networks that require a parent
        forbid that). NoProxy lists what goes direct. The status page shows each parent's
        state. Empty by default: cproxy reaches origins itself.
        """,
        live=True,
    ),
    Directive(
        "ParentProxyCredentials",
        Text(allow_empty=True, description="a file name, or empty for none"),
        "",
        PROXY_CHAINING,
        """
        File of credentials for parents that need a login: one host:port user:password
        line per parent (# starts a comment), sent as cproxy's own Proxy-Authorization.

        A file, not a directive value, so the password stays out of the directive file and
        the admin forms; keep it readable by cproxy only. Read at start and at each reload.
        A client's Proxy-Authorization is never passed to a parent. A relative name is
        taken relative to the directive file's directory.
        """,
        live=True,
    ),
    Directive(
        "ParentRetry",
        Time(1.0, _DAY_S),
        "30 seconds",
        PROXY_CHAINING,
        """
        How long a parent proxy that could not be reached is skipped before it is tried
        again.

        30 seconds: long enough not to make every request wait on a dead parent's
        connect timeout, short enough that a restarted parent is used again soon.
        """,
        live=True,
    ),
    Directive(
        "ProxyPac",
        Switch(),
        "on",
        PROXY_CHAINING,
        """
        Whether the proxy port serves a proxy auto-config file at /proxy.pac and
        /wpad.dat (the same file), so browsers can be pointed at one URL
        (chromium --proxy-pac-url=http://proxy:8080/proxy.pac).

        Generated from the directives: NoProxy goes DIRECT, the rest through this proxy
        (PacProxyAddress). On by default: it tells a client only what it needs to use the
        proxy, and ProxyAccess still decides who may fetch it. Served without ProxyAuth
        (browsers fetch it before they have credentials).
        """,
        live=True,
    ),
    Directive(
        "PacProxyAddress",
        Text(allow_empty=True, description="host:port, or empty for the address used"),
        "",
        PROXY_CHAINING,
        """
        The proxy address the PAC file names, as host:port (e.g. proxy.example:8080).

        Empty by default: the host and port the browser fetched the PAC file from, which
        is an address it can reach; set it when clients must use another name.
        """,
        live=True,
    ),
    Directive(
        "PurgeAccess",
        AddressList(),
        "",
        ACCESS_CONTROL,
        """
        Client addresses that may send PURGE requests (which drop a URL from the cache) to
        the proxy port; others get 403.

        Empty by default: PURGE carries no password, so any user who may send it can empty
        the cache of the pages everyone else relies on (and make the origins take the
        load). List only the hosts that publish content, e.g. 127.0.0.1/32 for a deploy
        script on the proxy's own host.
        """,
        live=True,
    ),
    Directive(
        "SafePorts",
        PortRangeList(),
        "80 21 443 70 210 1025-65535 280 488 591 777",
        ACCESS_CONTROL,
        """
        Ports a plain HTTP request (and a mapping rule's target) may reach; others get 403.
        CONNECT has its own list, ConnectPorts.

        The default is Squid's Safe_ports: the ports of HTTP and the protocols browsers
        used to speak, and every unprivileged port. The ports below 1024 left out are
        those of services that would read an HTTP request as their own protocol (SMTP on
        25, SSH on 22, ...): a proxy that forwards to them lets web pages talk to mail
        and login servers behind it.
        """,
        live=True,
    ),
    Directive(
        "RefusedDestinations",
        AddressList(),
        "0.0.0.0/8 ::/128 169.254.0.0/16 fe80::/10",
        ACCESS_CONTROL,
        """
        Addresses cproxy never connects to, for any client: each connection it opens
        (forwarding, each retry, a mapping rule's target, a CONNECT tunnel) is checked on
        the address the name resolved to, the one it then connects to, so a name that
        resolves somewhere else from one moment to the next (DNS rebinding) cannot get
        round it. A refused destination gets 403 with a page that names this directive.

        The default refuses the unspecified addresses ("this host", which Linux connects
        to the proxy's own host) and the link-local networks, where cloud providers
        answer metadata requests with the host's credentials (169.254.169.254). Add your
        internal networks to keep proxy clients out of them.
        """,
        live=True,
    ),
    Directive(
        "LoopbackDestinations",
        AddressList(),
        "127.0.0.0/8 ::1/128",
        ACCESS_CONTROL,
        """
        Addresses only clients whose own address is in one of these networks may reach
        through cproxy; checked like RefusedDestinations, on the resolved address of
        every connection. Others get 403 with a page that names this directive.

        The default is loopback: services that listen only on the proxy's own host
        (databases, admin consoles, development servers) expect to be reached by local
        users only, and a proxy would otherwise hand them to every client on the network.
        Clients on the host itself keep reaching them. A Proxy mapping rule to a loopback
        back end for remote clients needs its address taken out of this list.
        """,
        live=True,
    ),
    # --- Proxy Configuration / HTTPS Interception (#19) --------------------------------------
    Directive(
        "SSLCACertFile",
        Text(allow_empty=True, description="a PEM file of the CA certificate, or empty"),
        "",
        HTTPS_INTERCEPTION,
        """
        The certificate of cproxy's interception CA (ca-cert.pem, made by cproxy ca init),
        which signs the certificates cproxy shows clients for the hosts it intercepts.
        Give SSLCAKeyFile with it. A relative name is taken relative to the directive
        file's directory.

        Empty by default: no CA, no interception. When set, cproxy refuses to start unless
        the file is a CA certificate (basic constraints CA:TRUE and keyCertSign) valid
        today and SSLCAKeyFile holds its key, so a wrong file is found at start, not at a
        client's first handshake. A reload or the admin form that names another CA checks
        it the same way; a CA that fails the checks is refused there, and the one in use
        stays.
        """,
        example="/etc/cproxy/ca/ca-cert.pem",
        live=True,
    ),
    Directive(
        "SSLCAKeyFile",
        Text(allow_empty=True, description="a PEM file of the CA private key, or empty"),
        "",
        HTTPS_INTERCEPTION,
        """
        The private key of SSLCACertFile's certificate (ca-key.pem, made by cproxy ca
        init). A relative name is taken relative to the directive file's directory.

        cproxy refuses to start when this file is readable or writable by group or others:
        whoever reads it can impersonate every web site to every client that trusts the
        CA. The key never leaves the file; the admin pages offer the certificate only.
        """,
        example="/etc/cproxy/ca/ca-key.pem",
        live=True,
    ),
    Directive(
        "SSLLeafCacheSize",
        Integer(1, 100_000),
        "1000",
        HTTPS_INTERCEPTION,
        """
        Most host certificates (each with its ready TLS context) kept in memory; the least
        recently used goes first, and a certificate is made again before it expires.

        1000 covers the hosts a busy office visits in a day; each entry takes about 27 KB
        (OpenSSL's context dominates), so a full cache is about 27 MB. A host not in the
        cache costs one signature and a new context (about 2 ms) on its next handshake,
        never a new key (one key serves every host).
        """,
        live=True,
    ),
    # --- Proxy Configuration / HTTPS Interception: which CONNECTs are intercepted (#19) ---
    Directive(
        "SSLInterception",
        Switch(),
        "off",
        HTTPS_INTERCEPTION,
        """
        Whether cproxy intercepts HTTPS: it answers a CONNECT itself, completes the
        client's TLS handshake with a certificate of its own CA for the host, and serves
        the requests inside like plain ones (the cache, the origin pool, the access log),
        fetching them from the origin over verified TLS. Tunnels it does not intercept
        (see SSLSpliceHosts, SSLInterceptHosts, SSLInterceptClients) pass untouched, as
        with off. On needs SSLCACertFile and SSLCAKeyFile (cproxy ca init makes them), and
        every intercepted client must trust that CA; see docs/INTERCEPTION.md.

        Off by default: interception reads traffic its users sent encrypted, which an
        administrator must decide to do, for clients that were told and set up for it.
        """,
        live=True,
    ),
    Directive(
        "SSLInterceptClients",
        AddressList(),
        "",
        HTTPS_INTERCEPTION,
        """
        Client networks whose tunnels are intercepted (while SSLInterception is on);
        other clients' tunnels pass untouched. Empty means every client ProxyAccess
        admits.

        Empty by default, so turning SSLInterception on is enough for a proxy whose
        clients all trust the CA; list the networks of the managed machines when some
        clients (guests, servers with their own trust store) do not.
        """,
        example="10.1.0.0/16",
        live=True,
    ),
    Directive(
        "SSLSpliceHosts",
        DirectList(),
        "",
        HTTPS_INTERCEPTION,
        """
        Hosts never intercepted: their tunnels pass untouched (spliced), whatever the
        other SSLIntercept directives say. Domains cover the names under them
        (*.bank.example, .bank.example and bank.example are the same entry); networks
        cover address literals.

        Empty by default. List banks, health and government sites, and anything your
        users' privacy or an app's certificate pinning needs left alone.
        """,
        example="*.bank.example health.example",
        live=True,
    ),
    Directive(
        "SSLInterceptHosts",
        DirectList(),
        "",
        HTTPS_INTERCEPTION,
        """
        When not empty, the only hosts intercepted: every other tunnel passes untouched.
        Written like SSLSpliceHosts, which wins where both list a host.

        Empty by default (every host not in SSLSpliceHosts): list a few hosts to start
        with interception where it pays most, such as your software mirrors or CDNs.
        """,
        example="deb.example.org *.cdn.example",
        live=True,
    ),
    Directive(
        "SSLPinnedSpliceTime",
        Time(1.0, 30 * _DAY_S),
        "1 hour",
        HTTPS_INTERCEPTION,
        """
        How long a host is spliced for one client after that client aborted the TLS
        handshake with cproxy's certificate (an app that pins its server's certificate,
        or a client without the CA): its retry then reaches the origin untouched.

        An hour by default: long enough that a pinned app's retries over a session work,
        short enough that a client that was only missing the CA is intercepted again soon
        after it is installed.
        """,
        live=True,
    ),
    # --- Request Routing --------------------------------------------------------------------
    Directive(
        "MappingRules",
        RuleList(),
        "",
        REQUEST_ROUTING,
        """
        Mapping rules, one per line, checked in order against each request's URL; the first
        match decides, except Map, which rewrites the URL and goes on to the next rules.

        Proxy pattern target: send the request to the origin URL target (reverse proxy).

        Fail pattern: answer 403 Forbidden.

        Map pattern target: rewrite the URL to target and go on.

        Redirect pattern target: answer with a redirect to target.

        In patterns, * matches any text; in the target, each * stands for what the
        corresponding * of the pattern matched. A pattern starting with / matches requests
        sent to cproxy as a web server; one starting with http:// matches proxy requests.
        Several rules are written as one value between triple quotes (see the example).
        Empty by default: a forward proxy needs no rules.
        """,
        example="""
            Proxy     /app/*      http://127.0.0.1:9000/*
            Fail      /private/*
            Map       /old/*      /new/*
            Redirect  /moved/*    http://example.test/*
        """,
        live=True,
    ),
    # --- Logging ----------------------------------------------------------------------------
    Directive(
        "AccessLog",
        Text(allow_empty=True, description="a file name, or - for standard output"),
        "-",
        LOGGING,
        """
        File receiving one line per request, in the format AccessLogFormat chooses.

        A dash (-) writes to standard output, which suits systemd and containers; empty
        turns the access log off. A relative file name is taken relative to the directive file's
        directory. SIGUSR1 reopens it (for log rotation: see etc/cproxy.logrotate).
        Lines are written once a second (or as soon as 512 wait): a crash loses at most
        the last second's lines, and a request costs no write of its own.
        """,
        live=True,
    ),
    Directive(
        "AccessLogFormat",
        Choice("cproxy", "combined", "squid", "json"),
        "cproxy",
        LOGGING,
        """
        Format of the access log lines: cproxy, combined, squid or json.

        combined is NCSA combined, as Apache and nginx write it (GoAccess and most log
        analysers read it); cproxy is combined followed by the response time, whether an
        origin socket was new or reused, and the cache result; squid is Squid's native
        format (time, elapsed ms, client, result code/status, bytes, method, URL, user,
        hierarchy/peer, type), for tools written for Squid; json is one JSON object per line
        (time, client, user, method, target, version, status, bytes, referer, user_agent,
        elapsed_ms, origin, cache). The default keeps the most information in a form that
        tools for combined logs still mostly read.
        """,
        live=True,
    ),
    Directive(
        "ErrorLog",
        Text(allow_empty=True, description="a file name, or - for standard error"),
        "-",
        LOGGING,
        """
        File receiving cproxy's messages (start, reloads, errors), filtered by LogLevel.

        A dash (-) writes to standard error; empty turns it off. A relative file name is taken
        relative to the directive file's directory. SIGUSR1 reopens it.
        """,
        live=True,
    ),
    Directive(
        "LogLevel",
        Choice("debug", "info", "warning", "error"),
        "info",
        LOGGING,
        """
        Least severe message written to ErrorLog: debug, info, warning or error.

        info records starts, reloads and configuration changes without per-request noise.
        """,
        live=True,
    ),
    # --- Cache Configuration / Cache Settings -----------------------------------------------
    Directive(
        "Caching",
        Switch(),
        "on",
        CACHE_SETTINGS,
        """
        Whether responses are stored in the memory cache and served from it (RFC 9111).

        Off forwards every request to the origin; stored entries are then not used.
        """,
        live=True,
    ),
    Directive(
        "CacheMemory",
        Size(0, 1 << 40),
        "64 M",
        CACHE_SETTINGS,
        """
        Most memory the memory cache holds; the least recently used entries are evicted to
        make room. An entry counts the memory it really holds, not only its body: its head,
        body and URL, its parsed header fields and the objects that keep it (about 0.9 K per
        response and 0.1 K per header field beside their text), so a 1 K response counts
        about 3 K, and CacheMemory bounds the memory the cache really takes.

        64 M is IBM's recommended minimum. With Workers above 1, each worker has a cache of
        this size. 0 stores nothing.
        """,
        live=True,
    ),
    Directive(
        "CacheFileSizeLimit",
        Size(0, 1 << 40),
        "8 M",
        CACHE_SETTINGS,
        """
        Largest response body that is stored in the cache; larger responses are passed
        through without being stored. 0 sets no limit of its own: CacheMemory bounds it.

        8 M is an eighth of the default CacheMemory, so one large download cannot evict most
        of the cache.
        """,
        live=True,
    ),
    Directive(
        "CacheMaxExpiry",
        Time(0, 3650 * _DAY_S),
        "30 days",
        CACHE_SETTINGS,
        """
        Upper bound on any response's freshness lifetime, however long the origin allows
        (max-age, Expires or the Last-Modified heuristic).

        30 days keeps a mistaken far-future Expires from pinning a stale object for years;
        revalidation after that is cheap when the object has not changed.
        """,
        live=True,
    ),
    Directive(
        "CacheDefaultExpiry",
        Time(0, 3650 * _DAY_S),
        "0",
        CACHE_SETTINGS,
        """
        Freshness lifetime given to a response with neither explicit freshness (max-age,
        s-maxage, Expires) nor Last-Modified, and only for status codes that RFC 9111 lets a
        cache reuse heuristically (200, 301, 404 and others).

        0, the default, gives such responses no freshness: they are revalidated every time,
        which is what RFC 9111 wants when the origin says nothing.

        This is the catch-all for every URL, error statuses included; set it for some URLs
        only with a CacheDefaultExpiry line of CacheFreshnessRules (IBM's
        CacheDefaultExpiry url_pattern time).
        """,
        live=True,
    ),
    Directive(
        "CacheLastModifiedFactor",
        Factor(0.0, 1.0),
        "0.1",
        CACHE_SETTINGS,
        """
        Heuristic freshness for a response with Last-Modified but no explicit freshness:
        factor x (Date - Last-Modified), capped by CacheMaxExpiry (RFC 9111 section 4.2.2).

        0.1 (a tenth of the object's age) is the typical value RFC 9111 mentions; 0 turns the
        heuristic off. This is the catch-all; CacheFreshnessRules sets it per URL pattern.
        """,
        live=True,
    ),
    Directive(
        "CacheFreshnessRules",
        FreshnessRuleList(),
        "",
        CACHE_SETTINGS,
        """
        Heuristic freshness per URL pattern, one rule per line in IBM Caching Proxy's words:
        CacheDefaultExpiry pattern time, CacheLastModifiedFactor pattern factor and
        CacheMinHold pattern time (IBM writes them as repeated directives; here, like the
        mapping rules, they are the lines of one value). For each of the three, the first
        rule whose pattern matches the URL wins (as Squid's refresh_pattern); then the
        built-in package rules (CachePackageRules); then the single-valued
        CacheDefaultExpiry and CacheLastModifiedFactor, the catch-all.

        Rules apply only to a response that gives no explicit freshness (no max-age,
        s-maxage or Expires) and whose status RFC 9111 lets a cache reuse heuristically
        (200, 301, 404 and others). CacheDefaultExpiry is the lifetime of such a response
        without Last-Modified; CacheLastModifiedFactor the fraction of (Date -
        Last-Modified) it stays fresh with one; CacheMinHold the least it stays fresh
        either way, which also lets a response without any validator be stored. No rule
        makes a response stored that forbids it (no-store, private, Authorization).
        A rule applies to error statuses (404, 410...) only when its line ends with the
        word errors, so a rule meant for package files never keeps a missing file's 404.
        CacheMaxExpiry caps every lifetime. A change applies to responses stored from then
        on.

        Empty by default: the built-in package rules cover package archives.
        """,
        example="""
            CacheMinHold            http://deb.example.test/*.iso  7 days
            CacheDefaultExpiry      http://intranet.test/*         10 minutes
            CacheLastModifiedFactor http://*/*.html                0.2
            CacheDefaultExpiry      */favicon.ico                  1 day errors
        """,
        live=True,
    ),
    Directive(
        "CachePackageRules",
        Switch(),
        "on",
        CACHE_SETTINGS,
        """
        Whether the built-in freshness rules for package archives apply (after
        CacheFreshnessRules, before the catch-all). Like every heuristic rule they apply
        only to responses without explicit freshness, never to error statuses, and never
        store what a response forbids storing. The rules and the reason for each:

        Debian and Ubuntu package files and by-hash indexes (*.deb, *.udeb, *.ddeb,
        */by-hash/*) never change under their name (a new version has a new file name; a
        by-hash name is the content's hash): CacheMinHold for as long as CacheMaxExpiry
        allows.

        Python wheels and sdists (*/packages/*.whl, */packages/*.tar.gz,
        */packages/*.zip) never change under their name (PyPI refuses to replace a file):
        held as long as CacheMaxExpiry allows.

        npm tarballs (*/-/*.tgz) never change under their name (a published version
        cannot be replaced): held as long as CacheMaxExpiry allows.

        Debian and Ubuntu indexes (*/InRelease, */Release, */Release.gpg, */Packages*,
        */Sources*, */Contents-*, */Translation-*) change in place when the archive is
        updated, and apt refuses an index whose hash disagrees with a newer InRelease:
        CacheDefaultExpiry and CacheLastModifiedFactor 0, so they are revalidated on every
        use (and not stored when the archive sends no validator).

        Python index pages (*/simple/*) and npm package documents
        (*://registry.npmjs.org/*, *://registry.yarnpkg.com/*) list new releases as they
        are published: CacheDefaultExpiry and CacheLastModifiedFactor 0, revalidated on
        every use.

        On by default: package mirrors often send no Cache-Control, Expires or validator at
        all, and a team's or build farm's repeated downloads of the same package files are
        the commonest job of a caching forward proxy. Off leaves such responses to the
        catch-all (not stored, by default).
        """,
        live=True,
    ),
    Directive(
        "CacheTimeMargin",
        Time(0, _DAY_S),
        "0",
        CACHE_SETTINGS,
        """
        Responses whose freshness lifetime is shorter than this are not stored, unless they
        carry a validator (ETag or Last-Modified): revalidating those costs a 304, not a body.

        IBM's default is larger, but any margin defeats short max-age caching that RFC 9111
        allows and that busy sites rely on (a max-age of a few seconds on a hot URL saves
        most origin requests), so 0 stores every response that has some freshness.
        """,
        live=True,
    ),
    Directive(
        "NoCaching",
        PatternList(),
        "",
        CACHE_SETTINGS,
        """
        URL patterns (with * wildcards) whose responses are never stored, e.g.
        http://*.example.test/* ; separate several with spaces.

        Empty by default: the origin's Cache-Control decides.
        """,
        example="http://*.example.test/* http://intranet.test/private/*",
        live=True,
    ),
    Directive(
        "CacheQueries",
        Switch(),
        "on",
        CACHE_SETTINGS,
        """
        Whether a response to a URL with a query (?...) may be cached; off never stores one.

        On follows RFC 9111, which treats query URLs like any other: the same freshness
        rules, the Last-Modified heuristic included, apply to them.
        """,
        live=True,
    ),
    Directive(
        "CacheMaxStale",
        Time(0, 3650 * _DAY_S),
        "7 days",
        CACHE_SETTINGS,
        """
        How stale a stored response may be and still be served when its origin cannot be
        reached (no connection, a reset, or a close before any response), instead of a 502
        (RFC 9111 section 4.2.4). Never for a response with must-revalidate,
        proxy-revalidate, s-maxage or no-cache, nor for a request with no-cache; the
        origin's stale-if-error window counts when it is longer. Cache-Status then says
        detail=origin-unreachable. 0 serves nothing stale beyond stale-if-error.

        7 days is Squid's max_stale default (1 week): a site that is down for a while keeps
        working for its readers with the copy they would have had, while responses whose
        origins forbid it are never shown stale.
        """,
        live=True,
    ),
    Directive(
        "CacheTargetedFields",
        FieldNameList(),
        "",
        CACHE_SETTINGS,
        """
        Targeted cache-control fields this cache obeys (RFC 9213), in order of precedence,
        e.g. CDN-Cache-Control. The first one a response carries with a valid value (a
        structured-field dictionary such as max-age=600, no-store) replaces its
        Cache-Control and Expires for this cache's own storage and freshness decisions
        (max-age, s-maxage, no-store, no-cache, private, must-revalidate); an invalid one is
        ignored. Responses are passed on with every field intact, so clients and caches
        further on still see the origin's Cache-Control. A change applies to responses
        stored from then on.

        Empty by default: cproxy is a forward proxy working for its clients, not for the
        origins, and CDN-Cache-Control is an origin's instruction to its own CDN, which it
        can purge; obeying it here would keep responses longer than the origin allows
        caches it cannot reach. List a field when this proxy is part of the origin's
        delivery (a reverse-proxy Proxy rule), or a field of your own that your origins send
        for this proxy only.
        """,
        example="Cproxy-Cache-Control CDN-Cache-Control",
        live=True,
    ),
    Directive(
        "CacheCookieResponses",
        Choice("explicit", "https", "rfc"),
        "https",
        CACHE_SETTINGS,
        """
        Whether a response to a request that carried Cookie is stored when the response
        does not say it may be shared. explicit: for every request, such a response is
        stored only when it has Cache-Control public or s-maxage, or Vary: Cookie (each
        cookie then gets its own entry). https: the same, for https:// URLs only (the
        requests of intercepted connections, and https:// targets sent to the proxy). rfc:
        RFC 9111 alone decides (Authorization, private and no-store still apply).

        https by default: HTTPS traffic is mostly logged-in traffic, where a page made
        for one user's cookie often carries no private directive (a site behind TLS does
        not expect a shared cache to see it), and serving it to another user would leak
        that user's page; Varnish's built-in rules pass every request with a cookie for
        the same reason. Plain http:// traffic through a forward proxy has always been
        cached by RFC 9111's rules alone, so its hit ratio is left as it was.
        """,
        live=True,
    ),
    # --- Cache Configuration / Shared Cache (issue #14) ----------------------------------------
    Directive(
        "SharedCache",
        SharedCacheURL(),
        "",
        SHARED_CACHE,
        """
        A second cache tier on Redis (or Valkey), shared by every worker and every cproxy
        node that names the same server: redis://host:port/db, rediss://host:port/db for
        TLS, or redis+cluster://host:port,host:port naming seed nodes of a Redis Cluster
        (rediss+cluster:// with TLS). A user name may come before the host (user@host);
        the password never goes in the URL: see SharedCachePasswordFile.

        Empty, the default, keeps cproxy a single process with nothing else to run. The
        in-process cache (CacheMemory) is asked first; a response found only in the shared
        tier is served and copied into it. The shared tier is an accelerator, never a
        dependency: when Redis is slow or down requests are answered as without it.
        """,
        example="redis://127.0.0.1:6379/0",
        live=False,
    ),
    Directive(
        "SharedCachePasswordFile",
        Text(description="a file name", allow_empty=True),
        "",
        SHARED_CACHE,
        """
        File whose first line is the password (Redis AUTH) for SharedCache; empty when the
        server needs none. A relative name is taken relative to the directive file's
        directory.

        A file, not a directive value, so the password is never shown on the forms, in
        the sample file or in logs; make it readable by cproxy's user only.
        """,
        live=False,
    ),
    Directive(
        "SharedCacheNamespace",
        Text(description="a key prefix"),
        "cproxy",
        SHARED_CACHE,
        """
        Prefix of every key and pub/sub channel cproxy uses in the shared tier.

        Nodes with the same namespace share one cache; give each cproxy cluster its own
        when several share one Redis.
        """,
        live=False,
    ),
    Directive(
        "SharedCacheTimeout",
        Time(_MIN_TIMEOUT_S, 10.0),
        "50 ms",
        SHARED_CACHE,
        """
        Longest wait for one call to the shared tier (connecting included); a call that
        takes longer counts as a failure and the request goes on without the tier.

        A LAN round trip to Redis is well under a millisecond and a 1 M value takes about
        10 ms at 1 Gbit/s, so 50 ms only fails a Redis that is really in trouble, while
        bounding what it can add to a request. Lower it to a few ms on a fast LAN.
        """,
        live=False,
    ),
    Directive(
        "SharedCacheRetry",
        Time(_MIN_TIMEOUT_S, 600.0),
        "2 seconds",
        SHARED_CACHE,
        """
        After three calls in a row fail, cproxy stops calling the shared tier (the circuit
        breaker opens) for this long, then lets one call probe it: when that succeeds, the
        tier is used again (reconnecting as needed).

        2 seconds keeps a dead Redis from costing every request a timeout, and brings the
        tier back soon after Redis returns.
        """,
        live=False,
    ),
    Directive(
        "SharedCacheMaxEntry",
        Size(1024, 512 << 20),
        "1 M",
        SHARED_CACHE,
        """
        Largest stored response (head and body) written to the shared tier; larger ones
        stay in the in-process cache only.

        One large value occupies Redis (single-threaded) and the network for its whole
        transfer; 1 M keeps a value within a few ms on a LAN, well inside
        SharedCacheTimeout.
        """,
        live=False,
    ),
    Directive(
        "SharedCacheWriteQueue",
        Integer(1, 1_000_000),
        "1000",
        SHARED_CACHE,
        """
        Most writes (stores, purges, lease releases) waiting to go to the shared tier.
        Writes leave the client's path: a response is sent first, then queued; when the
        queue is full a write is dropped and counted, never waited for.

        1000 rides out a burst of a few hundred milliseconds of misses while bounding
        the memory held (at most this many entries of SharedCacheMaxEntry).
        """,
        live=False,
    ),
    Directive(
        "SharedCacheLease",
        Time(_MIN_TIMEOUT_S, 600.0),
        "5 seconds",
        SHARED_CACHE,
        """
        Concurrent misses for one URL on several nodes are collapsed: the node that takes
        the URL's lease in Redis fetches it, the others wait for its entry at most this
        long, then fetch it themselves.

        5 seconds covers an ordinary origin response; a slower one is fetched a second
        time rather than holding clients back longer.
        """,
        live=False,
    ),
    # --- Server Configuration / Administration -----------------------------------------------
    Directive(
        "AdminPort",
        Integer(0, 65535),
        "8081",
        ADMINISTRATION,
        """
        TCP port of the admin listener, which serves the configuration forms and statistics;
        0 disables it. (PURGE requests go to the proxy port; see PurgeAccess.)

        A port of its own, rather than paths on the proxy port, keeps the admin pages out of
        reach of proxy clients. The proxy never forwards requests to its own admin port.
        """,
        live=False,
    ),
    Directive(
        "AdminAddress",
        ListenHosts(),
        "127.0.0.1",
        ADMINISTRATION,
        """
        Addresses the admin listener listens on, all on AdminPort, separated by spaces
        (e.g. 127.0.0.1 ::1).

        Loopback by default: reach it through an SSH tunnel, or change it together with
        AdminAccess.
        """,
        live=False,
    ),
    Directive(
        "AdminPasswordFile",
        Text(description="a file name"),
        "cproxy.passwd",
        ADMINISTRATION,
        """
        File of admin users and their bcrypt password hashes, written by cproxy passwd.

        A relative name is taken relative to the directive file's directory (or the working
        directory when cproxy runs on built-in defaults). Without the file nobody can log in
        to the admin pages.
        """,
        live=True,
    ),
    Directive(
        "AdminHostNames",
        HostList(),
        "",
        ADMINISTRATION,
        """
        Names (besides localhost, Hostname and the machine's own host name) by which
        browsers reach the admin listener; a request whose Host field names anything else
        gets 421 Misdirected Request. An IP address in Host is accepted when it is one of
        the listener's own (any, when it listens on all addresses).

        Empty by default, which is enough when the admin is reached on loopback or by
        address (an SSH tunnel, 127.0.0.1:8081). The check stops DNS rebinding: a web page
        whose own name is made to resolve to the admin's address would otherwise be
        served the admin pages, and the browser would let that page read them. List the
        names you type in the browser, e.g. proxy.office.lan.
        """,
        live=True,
    ),
    Directive(
        "AdminAccess",
        AddressList(),
        "127.0.0.0/8 ::1/128",
        ADMINISTRATION,
        """
        Client addresses that may use the admin pages (which need a password as well).
        PURGE has its own list, PurgeAccess.

        Loopback only by default: the admin pages change how the proxy behaves.
        """,
        live=True,
    ),
    Directive(
        "PidFile",
        Text(allow_empty=True, description="a file name, or empty for none"),
        "cproxy.pid",
        ADMINISTRATION,
        """
        File cproxy writes its process id to once it listens, and removes when it stops.

        cproxy -c FILE -k reload|stop|reopen|check finds the process here, and so do
        service managers and the logrotate snippet (etc/cproxy.logrotate). With Workers
        above 1 it is the supervisor's id, which passes signals on to the workers. A
        relative name is taken relative to the directive file's directory, so by default
        the file sits next to it, where the user who runs cproxy can write without root;
        on built-in defaults it goes to $XDG_RUNTIME_DIR, or the working directory when
        that is not set. etc/cproxy.service uses /run/cproxy/cproxy.pid. cproxy refuses
        to start when the file names another running cproxy; a stale file (its process
        gone) is replaced. Empty: no file, and -k cannot find the process.
        """,
        live=False,
    ),
)

#: Every directive by canonical name, in canonical (documentation and file) order.
DIRECTIVES: dict[str, Directive] = {d.name: d for d in _DECLARED}

_BY_LOWER: dict[str, Directive] = {name.lower(): d for name, d in DIRECTIVES.items()}


def lookup(name: str) -> Directive | None:
    """The directive called ``name`` in any letter case, or None."""
    return _BY_LOWER.get(name.strip().lower())


def forms() -> dict[tuple[str, ...], list[Directive]]:
    """Directives grouped by form path, forms in order of first appearance."""
    grouped: dict[tuple[str, ...], list[Directive]] = {}
    for d in DIRECTIVES.values():
        grouped.setdefault(d.form, []).append(d)
    return grouped
