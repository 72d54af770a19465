"""The server-side connection pool: idle proxy-to-origin sockets kept for reuse, and caps.

Modelled on IBM Caching Proxy's ``ServerConnPool`` (``MaxSocketPerServer`` idle sockets per
origin, ``ServerConnTimeout``, a collector every ``ServerConnGCRun``) and on urllib3's
connectionpool: the most recently released socket is reused first (LIFO, so the fewest sockets
stay warm and the rest age out), limits are explicit, and a socket is checked when it is taken,
not only by the collector: its age against the idle timeout, then whether it became readable
while idle (the origin closed it or sent bytes nobody asked for), which the event loop notices
for free, and on request a non-blocking peek that also catches what arrived since the loop
last looked. The handler skips the peek for idempotent requests without a body, which are
retried once on a fresh socket if a pooled one turns out dead (DESIGN §5 rule 5).

Caps (NetScaler's ``maxconn``/``maxreq``, RustSocks' ``max_total_idle``):
- ``max_conn_per_origin`` bounds every socket the pool holds to one origin: idle, in use and
  being opened. A request that finds it reached waits in a FIFO queue; a socket released or
  closed is handed to the first waiter (an idle socket itself, or the right to open one), so
  later arrivals never overtake. The wait is bounded (``queue_timeout_s``: ``PoolQueueTimeout``)
  and ends early when the waiting client closes its connection (``PoolWaitAbandoned``). A
  request that needs a fresh socket at the cap closes the oldest idle one to make room.
- ``max_requests_per_conn`` retires a socket after that many exchanges (``retired``).
- ``max_idle_total`` bounds idle sockets across all origins: a release past it closes the
  least recently used idle socket of any origin (``evicted``).

Concurrency: gevent switches greenlets only on I/O. Every bookkeeping step here is done without
yielding, except opening a connection, which is counted in ``pending_connects`` while it waits
(from the moment a queued request is granted the right to open it), and waiting in the queue.
Idle lists, queues and counters are therefore consistent whenever another greenlet can run.

HTTP/2 (issue #20, `cproxy.origin.h2conn`): an origin whose TLS settings offer h2 in ALPN
(or listed for h2c) keeps a list of shared HTTP/2 connections beside its idle stack. The
protocol ALPN chose is remembered per origin after the first connect; while that first
connect is under way, concurrent requests wait for it instead of opening more. A request
is granted a stream on a shared connection with room (``min(SETTINGS_MAX_CONCURRENT_STREAMS,
MaxStreamsPerConnection)``) before room for a new socket; without either it queues as
above, and a stream ending serves the queue. An HTTP/2 connection counts as one socket
against ``max_conn_per_origin``; ``max_requests_per_conn`` counts its streams (then it
sends GOAWAY and closes when its last stream ends); an unused one ages out after
``idle_timeout_s`` like an idle socket. GOAWAY from the origin takes it out of use.

Accounting: every connection the pool opens is counted once in ``created`` and, when it is
closed by whatever path, once in ``closed``; so per origin and in total
``created == closed + idle + in_use + h2_connections`` at every switch point.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.socket as gsocket

from cproxy.errors import (
    NotCheckedOut,
    OriginConnectTimeout,
    OriginError,
    OriginProtocolError,
    ParentTunnelTimeout,
    PoolClosed,
    PoolQueueTimeout,
    PoolWaitAbandoned,
)
from cproxy.origin.connection import (
    AddressCheck,
    OriginConnection,
    OriginKey,
    Resolver,
    default_resolve,
    format_host_port,
    format_origin,
    open_socket,
    origin_key,
)
from cproxy.origin.deadaddrs import DeadAddresses
from cproxy.origin.eyeballs import ATTEMPT_DELAY_S
from cproxy.origin.h2stream import H2Stream
from cproxy.origin.parents import tunnel_through
from cproxy.origin.telemetry import PoolEvents, WaitHistogram
from cproxy.origin.tls import (
    DEFAULT_TLS,
    ParentHop,
    TLSSettings,
    negotiated_protocol,
    start_tls,
    tls_session,
)

if TYPE_CHECKING:
    from cproxy.origin.h2conn import H2Connection

log = logging.getLogger(__name__)

# Monotonic counters kept per origin and in total.
COUNTERS = (
    "created",
    "reused",
    "expired",
    "dropped_dead",
    "dropped_full",
    "discarded",
    "retired",
    "evicted",
    "connect_failures",
    "closed",
    "waits",
    "wait_timeouts",
    "wait_abandoned",
    # HTTP/2: streams granted, GOAWAYs received, streams the origin did not process
    # (refused, or above a GOAWAY's last stream id: sent again), and request bodies that
    # waited for the origin's flow-control window.
    "h2_streams",
    "h2_goaways",
    "h2_unprocessed",
    "h2_window_stalls",
)
# Gauges: current values, summed over origins for the totals. ``waiting`` is the queue length.
GAUGES = (
    "idle",
    "in_use",
    "pending_connects",
    "waiting",
    "h2_connections",
    "h2_streams_in_flight",
    "h2_buffered_bytes",
)

# What a queued request is handed (besides an idle connection).
_SLOT = "slot"  # the right to open a connection, already counted in pending_connects
_GONE = "gone"  # the waiting client closed its connection
_CLOSED = "closed"  # the pool was closed


class _Waiter:
    """One request in an origin's queue; ``grant`` is set once, by whoever serves it."""

    __slots__ = ("fresh", "grant")

    def __init__(self, fresh: bool) -> None:
        self.fresh = fresh  # wants a new socket (a request body, a retry), never an idle one
        self.grant: gevent.event.AsyncResult = gevent.event.AsyncResult()


class _Origin:
    """Bookkeeping for one origin: its idle sockets (oldest first), queue and counters."""

    __slots__ = (
        "counts",
        "h2",
        "h2_capable",
        "h2_opening",
        "h2_ready",
        "h2c",
        "idle",
        "in_use",
        "key",
        "pending_connects",
        "protocol",
        "serving",
        "standby_backoff_s",
        "standby_opening",
        "standby_retry_at",
        "tls",
        "tls_session",
        "waiters",
    )

    def __init__(self, key: OriginKey, tls: TLSSettings | None, h2c: bool = False) -> None:
        self.key = key
        self.tls = tls  # None for http
        # HTTP/2: cleartext with prior knowledge (ServerHTTP2Cleartext), or offered in ALPN.
        self.h2c = h2c
        self.h2_capable = h2c or (tls is not None and "h2" in tls.alpn)
        # What the origin speaks: "" until a connection told us, then "h2" or "http/1.1".
        self.protocol = "h2" if h2c else ""
        self.h2: list[H2Connection] = []  # shared connections, oldest first
        self.h2_opening = 0  # connections being opened that may turn out HTTP/2
        self.h2_ready = gevent.event.Event()  # set (and replaced) when one is done
        # The latest TLS session of this origin, offered for resumption on the next handshake.
        self.tls_session: Any = None
        # LIFO: released sockets are appended, checkouts pop from the end, trims cut the front.
        self.idle: list[OriginConnection] = []
        self.in_use = 0
        self.pending_connects = 0
        self.waiters: deque[_Waiter] = deque()
        self.serving = False  # _serve_waiters is running for this origin (no re-entry)
        # Standby (ServerConnStandby): sockets being pre-opened now, and after a failure,
        # when to try again (monotonic) and the current backoff.
        self.standby_opening = 0
        self.standby_retry_at = 0.0
        self.standby_backoff_s = 0.0
        self.counts = dict.fromkeys(COUNTERS, 0)

    def held(self) -> int:
        """Sockets counted against the connection cap: idle, in use, being opened, and
        shared HTTP/2 connections."""
        return len(self.idle) + self.in_use + self.pending_connects + len(self.h2)

    def unused(self) -> bool:
        """True when no socket of this origin is idle, in use or being opened, and no
        request waits for one."""
        return self.held() == 0 and not self.waiters

    def snapshot(self) -> dict[str, int]:
        return {
            "idle": len(self.idle),
            "in_use": self.in_use,
            "pending_connects": self.pending_connects,
            "waiting": len(self.waiters),
            "h2_connections": len(self.h2),
            "h2_streams_in_flight": sum(c.in_flight for c in self.h2),
            "h2_buffered_bytes": sum(c.buffered_bytes() for c in self.h2),
            **self.counts,
        }


def _check_settings(
    max_idle_per_origin: int,
    idle_timeout_s: float,
    gc_interval_s: float,
    connect_timeout_s: float,
    max_conn_per_origin: int,
    queue_timeout_s: float,
    max_requests_per_conn: int,
    max_idle_total: int,
) -> None:
    if max_idle_per_origin < 0:
        raise ValueError(f"max_idle_per_origin must be >= 0, not {max_idle_per_origin}")
    if idle_timeout_s < 0:
        raise ValueError(f"idle_timeout_s must be >= 0, not {idle_timeout_s}")
    if gc_interval_s < 0:
        raise ValueError(f"gc_interval_s must be >= 0 (0 = no collector), not {gc_interval_s}")
    if connect_timeout_s <= 0:
        raise ValueError(f"connect_timeout_s must be > 0, not {connect_timeout_s}")
    if max_conn_per_origin < 0:
        raise ValueError(
            f"max_conn_per_origin must be >= 0 (0 = no cap), not {max_conn_per_origin}"
        )
    if queue_timeout_s <= 0:
        raise ValueError(f"queue_timeout_s must be > 0, not {queue_timeout_s}")
    if max_requests_per_conn < 0:
        raise ValueError(
            f"max_requests_per_conn must be >= 0 (0 = no limit), not {max_requests_per_conn}"
        )
    if max_idle_total < 0:
        raise ValueError(f"max_idle_total must be >= 0 (0 = no cap), not {max_idle_total}")


def _attempt_delay(seconds: float) -> float:
    if seconds < 0:
        raise ValueError(f"connect_attempt_delay_s must be >= 0, not {seconds}")
    return seconds


class OriginPool:
    """Hands out connections to origins and keeps released ones idle for reuse.

    ``acquire`` reuses an idle socket when it can, ``connect`` always opens a fresh one,
    ``release`` takes back a clean socket (DESIGN §5 rule 4: the exchange was complete and neither
    side asked to close), ``discard`` closes one that must not be reused.

    ``clock`` ages idle sockets and rate-limits warnings (tests inject a fake one); connect
    timeouts, the queue wait and the collector's interval are real time. ``resolve(host, port)``
    returns getaddrinfo 5-tuples (default: gevent's resolver). ``gc_interval_s == 0`` means no
    collector runs; age is still checked at checkout. For the caps see the module docstring.
    """

    # Per-origin entries with no socket idle, in use or being opened are forgotten (their counts
    # stay in the totals) once more than this many origins are tracked, so a proxy that talks to
    # millions of distinct hosts keeps bounded memory. 1024 covers the working set of a busy
    # forward proxy while keeping stats() small enough for the admin page.
    max_tracked_origins = 1024

    def __init__(
        self,
        *,
        enabled: bool = True,
        max_idle_per_origin: int = 64,
        idle_timeout_s: float = 10.0,
        gc_interval_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        max_conn_per_origin: int = 0,
        queue_timeout_s: float = 10.0,
        max_requests_per_conn: int = 0,
        max_idle_total: int = 0,
        tls_for: Callable[[OriginKey], TLSSettings] | None = None,
        h2c_for: Callable[[OriginKey], bool] | None = None,
        max_streams_per_conn: int = 100,
        standby: tuple[tuple[OriginKey, int], ...] = (),
        standby_backoff_s: tuple[float, float] = (1.0, 60.0),
        clock: Callable[[], float] = time.monotonic,
        resolve: Resolver | None = None,
        connect_attempt_delay_s: float = ATTEMPT_DELAY_S,
        dead_addresses: DeadAddresses | None = None,
    ) -> None:
        _check_settings(
            max_idle_per_origin,
            idle_timeout_s,
            gc_interval_s,
            connect_timeout_s,
            max_conn_per_origin,
            queue_timeout_s,
            max_requests_per_conn,
            max_idle_total,
        )
        self._enabled = bool(enabled)
        self._max_idle_per_origin = max_idle_per_origin
        self._idle_timeout_s = idle_timeout_s
        self._gc_interval_s = gc_interval_s
        self._connect_timeout_s = connect_timeout_s
        self._max_conn_per_origin = max_conn_per_origin
        self._queue_timeout_s = queue_timeout_s
        self._max_requests_per_conn = max_requests_per_conn
        self._max_idle_total = max_idle_total
        self._clock = clock
        self._resolve: Resolver = resolve if resolve is not None else default_resolve
        # Connection racing (issue #24, `open_socket`): ConnectAttemptDelay, and the
        # addresses that failed lately (shared with CONNECT tunnels through the property).
        self._attempt_delay_s = _attempt_delay(connect_attempt_delay_s)
        self._dead = dead_addresses if dead_addresses is not None else DeadAddresses()
        # ``tls_for(key)``: the TLS settings for an https origin (part of the pool key).
        self._tls_for = tls_for if tls_for is not None else _default_tls
        # ``h2c_for(key)``: speak HTTP/2 in cleartext (prior knowledge) to this http origin.
        self._h2c_for = h2c_for if h2c_for is not None else _no_h2c
        self._max_streams_per_conn = max(1, max_streams_per_conn)
        self._origins: dict[tuple[OriginKey, TLSSettings | None], _Origin] = {}
        self._totals = dict.fromkeys(COUNTERS, 0)
        self._checked_out: set[OriginConnection] = set()
        # Every idle socket of every origin, least recently released first (dicts keep
        # insertion order): the global idle cap closes from the front.
        self._idle_lru: dict[OriginConnection, None] = {}
        self._closed = False
        self._collector: gevent.Greenlet | None = None
        # Set to make the collector re-read its interval (reconfigure) or stop (close).
        self._wake = gevent.event.Event()
        self.events = PoolEvents(clock)
        self.wait_times = WaitHistogram()
        # Pre-opened connections: origin -> how many idle ones to keep; the keeper greenlet
        # (started by start()) tops them up whenever _standby_wake is set.
        self._standby: dict[OriginKey, int] = _standby_targets(standby)
        self._standby_backoff_s = standby_backoff_s
        self._standby_wake = gevent.event.Event()
        self._keeper: gevent.Greenlet | None = None

    # -- settings -----------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Whether released sockets are kept for reuse (``ServerConnPool``)."""
        return self._enabled

    @property
    def max_idle_per_origin(self) -> int:
        """Most idle sockets kept per origin (``MaxSocketPerServer``)."""
        return self._max_idle_per_origin

    @property
    def idle_timeout_s(self) -> float:
        """How long an idle socket is kept (``ServerConnTimeout``)."""
        return self._idle_timeout_s

    @property
    def gc_interval_s(self) -> float:
        """How often the collector runs (``ServerConnGCRun``); 0 = never."""
        return self._gc_interval_s

    @property
    def connect_timeout_s(self) -> float:
        """Budget for resolving and connecting to an origin, all addresses together."""
        return self._connect_timeout_s

    @property
    def max_conn_per_origin(self) -> int:
        """Most sockets per origin, idle + in use + being opened (``MaxConnPerServer``); 0 = no
        cap."""
        return self._max_conn_per_origin

    @property
    def queue_timeout_s(self) -> float:
        """Longest wait for a socket at the cap (``ServerConnQueueTimeout``)."""
        return self._queue_timeout_s

    @property
    def max_requests_per_conn(self) -> int:
        """Exchanges after which a socket is closed (``MaxPersistRequestPerServer``); 0 = no
        limit."""
        return self._max_requests_per_conn

    @property
    def max_idle_total(self) -> int:
        """Most idle sockets over all origins (``MaxIdleSockets``); 0 = no cap."""
        return self._max_idle_total

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    @property
    def collector_running(self) -> bool:
        """True while the collector greenlet started by ``start()`` is alive."""
        return self._collector is not None and not self._collector.dead

    # -- checkout and return ------------------------------------------------------------------

    @property
    def resolve(self) -> Resolver:
        """The resolver every connection of this pool uses (tests may replace it)."""
        return self._resolve

    @resolve.setter
    def resolve(self, resolve: Resolver) -> None:
        self._resolve = resolve

    @property
    def dead_addresses(self) -> DeadAddresses:
        """The addresses every connection of this pool tries last (`open_socket`)."""
        return self._dead

    def acquire(
        self,
        key: OriginKey,
        *,
        verify: bool = True,
        abandon_on_eof: gsocket.socket | None = None,
        admit: AddressCheck | None = None,
        via: ParentHop | None = None,
    ) -> OriginConnection | H2Stream:
        """Return a connection to ``key``: the most recently released usable idle one, or new.

        Idle sockets past ``idle_timeout_s`` are closed (``expired``); ones the origin closed or
        that have unexpected bytes waiting are closed (``dropped_dead``): noticed by the event
        loop while they were idle, and, with ``verify``, by a non-blocking peek now, which
        also catches what arrived since the loop last looked. A caller that may simply retry
        on a fresh socket (an idempotent request without a body) can skip the peek.

        At the connection cap the caller waits in the origin's queue (see the module
        docstring); ``abandon_on_eof`` is the client's socket, whose EOF ends that wait with
        ``PoolWaitAbandoned``. Raises ``PoolClosed`` after ``close()``, ``PoolQueueTimeout``
        when the wait runs out, and the ``OriginError`` subclasses of ``connect`` for a new
        one. ``admit`` checks each resolved address of a new connection (see
        ``open_socket``); an idle socket handed out is the caller's to check.

        ``via``: an https origin reached through that parent proxy (a CONNECT, then TLS
        inside the tunnel; pooled apart from direct connections, see `_connect`).
        """
        if self._closed:
            raise PoolClosed("the origin connection pool is closed")
        origin = self._origin_for(origin_key(*key), via)
        if origin.h2_capable and origin.protocol != "http/1.1":
            got = self._acquire_h2(origin, abandon_on_eof, admit)
            if got is not None:
                return got
        if self._enabled and not origin.waiters:
            # Idle sockets are only there when nobody waits (a release serves the queue first).
            conn = self._take_idle(origin, verify)
            if conn is not None:
                return conn
        return self._new_connection(origin, fresh=False, abandon_on_eof=abandon_on_eof, admit=admit)

    def connect(
        self,
        key: OriginKey,
        *,
        abandon_on_eof: gsocket.socket | None = None,
        admit: AddressCheck | None = None,
        avoid: object = None,
        via: ParentHop | None = None,
    ) -> OriginConnection | H2Stream:
        """Open a fresh connection to ``key``, never an idle one (request bodies, retries).

        For an HTTP/2 origin, a stream on a shared connection other than ``avoid`` (the
        one that refused the request) when one has room, else on a new connection.

        At the connection cap, the oldest idle socket of the origin is closed to make room
        (``evicted``), or, when none is idle, the caller queues as in ``acquire``. Raises
        ``OriginDNSError``, ``OriginConnectError`` or ``OriginConnectTimeout`` (message
        names ``host:port`` and the cause), ``PoolQueueTimeout``, ``PoolWaitAbandoned`` or
        ``PoolClosed``; through a parent (``via``), those three name the parent, and what
        happens after it took the connection raises as `_connect` says.
        """
        if self._closed:
            raise PoolClosed("the origin connection pool is closed")
        origin = self._origin_for(origin_key(*key), via)
        if origin.h2_capable and origin.protocol != "http/1.1":
            # A stream is never stale the way a pooled socket is (a closed connection is
            # noticed by its reader at once): a body or a retry takes one as any request.
            got = self._acquire_h2(origin, abandon_on_eof, admit, avoid)
            if got is not None:
                return got
        return self._new_connection(origin, fresh=True, abandon_on_eof=abandon_on_eof, admit=admit)

    def connect_http1(
        self,
        key: OriginKey,
        *,
        abandon_on_eof: gsocket.socket | None = None,
        admit: AddressCheck | None = None,
        via: ParentHop | None = None,
    ) -> OriginConnection:
        """Open a fresh HTTP/1.1 connection to ``key`` whatever the origin speaks otherwise:
        for a request that takes the connection over (an ``Upgrade`` such as WebSocket,
        which HTTP/2 has no place for). An https origin is offered no ALPN, so it answers
        in HTTP/1.1; it is pooled under those settings, apart from its HTTP/2 connections.
        Raises ``OriginProtocolError`` for an origin spoken to in cleartext HTTP/2 (h2c
        with prior knowledge, ServerHTTP2Cleartext), else as ``connect``."""
        if self._closed:
            raise PoolClosed("the origin connection pool is closed")
        key = origin_key(*key)
        if key[0] == "https":
            tls = self._route_tls(key, via)
            origin = self._origin(key, replace(tls, alpn=()) if tls.alpn else tls)
        else:
            origin = self._origin_for(key, via)
            if origin.h2c:
                raise OriginProtocolError(
                    f"{key[1]}:{key[2]} is spoken to in HTTP/2 only (ServerHTTP2Cleartext): "
                    "it cannot take an upgrade"
                )
        conn = self._new_connection(origin, fresh=True, abandon_on_eof=abandon_on_eof, admit=admit)
        if not isinstance(conn, OriginConnection):  # an HTTP/1.1 origin has no streams
            raise AssertionError(f"{conn!r}: a stream from an origin offered no HTTP/2")
        return conn

    def release(self, conn: OriginConnection) -> None:
        """Take back a connection whose exchange completed cleanly (DESIGN §5 rule 4).

        Handed to the first queued request for its origin if any; else kept idle if the pool
        is enabled and open and the origin has fewer than ``max_idle_per_origin`` idle;
        otherwise closed (counted ``dropped_full`` when the idle list was full, ``retired``
        after ``max_requests_per_conn`` exchanges). Keeping it may close the least recently
        used idle socket of any origin (``max_idle_total``, counted ``evicted``). Releasing an
        already closed connection does nothing; releasing one that is not checked out of this
        pool is a bug and raises ``NotCheckedOut`` (a ValueError).
        """
        if conn.closed:
            return
        if conn not in self._checked_out:
            raise NotCheckedOut(f"{conn!r} is not checked out of this pool (released twice?)")
        conn.uses += 1
        origin = self._origin(conn.key, conn.tls)
        if self._closed or not self._enabled:
            conn.close()
            return
        if origin.tls is not None and conn.uses == 1:
            # Read after the first exchange: a TLS 1.3 session ticket arrives after the
            # handshake. Only then: reading it costs about as much as the rest of a pooled
            # HTTPS exchange (ssl's SSLSocket.session: 1.7 s of 5.6 in a cProfile of
            # h2_bench's HTTP/1.1 pool, called on every release), and one session per
            # connection is all resumption needs.
            origin.tls_session = tls_session(conn.sock) or origin.tls_session
        if self._max_requests_per_conn and conn.uses >= self._max_requests_per_conn:
            self._count(origin, "retired")
            conn.close()
            return
        if not origin.waiters and len(origin.idle) >= self._max_idle_per_origin:
            self._count(origin, "dropped_full")
            self._note(origin, "idle_full")
            conn.close()
            return
        self._checked_out.discard(conn)
        origin.in_use -= 1
        self._put_idle(origin, conn)

    def discard(self, conn: OriginConnection | H2Stream) -> None:
        """Close a connection that must not be reused (error, ``Connection: close``, leftovers).

        Counted ``discarded``; a connection already closed is left alone. An HTTP/2 stream
        is given up (reset if it was sent); its connection goes on.
        """
        if isinstance(conn, H2Stream):
            conn.abort()
            return
        if conn.closed:
            return
        if conn in self._checked_out:
            self._count(self._origin(conn.key, conn.tls), "discarded")
        conn.close()

    # -- ageing -------------------------------------------------------------------------------

    def collect(self) -> int:
        """Close idle sockets idle for longer than ``idle_timeout_s``; return how many."""
        now = self._clock()
        closed = 0
        for origin in list(self._origins.values()):
            for h2c in [c for c in origin.h2 if c.in_flight == 0]:
                if now - h2c.idle_since > self._idle_timeout_s:
                    self._count(origin, "expired")
                    h2c.shutdown()
                    closed += 1
            kept: list[OriginConnection] = []
            expired: list[OriginConnection] = []
            for conn in origin.idle:
                (expired if self._expired(conn, now) else kept).append(conn)
            if not expired:
                continue
            origin.idle = kept
            for conn in expired:
                self._count(origin, "expired")
                conn.close()
            closed += len(expired)
        return closed

    def close_idle(self, n: int) -> int:
        """Close up to ``n`` idle sockets of any origin, least recently used first (counted
        ``evicted``); return how many. For a process out of file descriptors: an idle
        socket is the cheapest one to give back (the listener calls this at EMFILE)."""
        closed = 0
        while closed < n and self._idle_lru:
            victim = next(iter(self._idle_lru))
            self._count(self._origin(victim.key, victim.tls), "evicted")
            victim.close()  # _on_conn_close takes it off the idle lists
            closed += 1
        return closed

    def start(self) -> None:
        """Start the collector greenlet (runs ``collect()`` every ``gc_interval_s``).

        Does nothing if it is already running; raises ``PoolClosed`` after ``close()``.
        """
        if self._closed:
            raise PoolClosed("the origin connection pool is closed")
        if self._keeper is None or self._keeper.dead:
            self._keeper = gevent.spawn(self._standby_loop)
        if self.collector_running:
            return
        self._collector = gevent.spawn(self._collector_loop)

    def _collector_loop(self) -> None:
        last_run = time.monotonic()
        while not self._closed:
            interval = self._gc_interval_s
            timeout = max(0.0, last_run + interval - time.monotonic()) if interval > 0 else None
            self._wake.clear()
            if self._wake.wait(timeout):
                # Settings changed or the pool closed: loop to re-read them.
                continue
            last_run = time.monotonic()
            try:
                self.collect()
            except Exception:
                # A failure closing one socket must not stop ageing for the proxy's lifetime.
                log.exception("origin pool collector failed; retrying next interval")

    def reconfigure(
        self,
        *,
        enabled: bool,
        max_idle_per_origin: int,
        idle_timeout_s: float,
        gc_interval_s: float,
        connect_timeout_s: float,
        max_conn_per_origin: int | None = None,
        queue_timeout_s: float | None = None,
        max_requests_per_conn: int | None = None,
        max_idle_total: int | None = None,
        tls_for: Callable[[OriginKey], TLSSettings] | None = None,
        h2c_for: Callable[[OriginKey], bool] | None = None,
        max_streams_per_conn: int | None = None,
        standby: tuple[tuple[OriginKey, int], ...] | None = None,
        connect_attempt_delay_s: float | None = None,
    ) -> None:
        """Apply new settings live (the caps and ``tls_for`` left as None keep their values).

        Idle TLS sockets made under other TLS settings than ``tls_for`` now gives are closed.

        Disabling closes every idle socket; a lower ``max_idle_per_origin`` closes the oldest
        idle sockets above it (counted ``dropped_full``), a lower ``max_idle_total`` the least
        recently used ones (``evicted``); a higher connection cap serves queued requests at
        once; the collector picks up a new interval without a restart. Connections in use are
        unaffected until released, also by a lower cap or request limit. Invalid values raise
        ``ValueError`` and change nothing.
        """
        if max_conn_per_origin is None:
            max_conn_per_origin = self._max_conn_per_origin
        if queue_timeout_s is None:
            queue_timeout_s = self._queue_timeout_s
        if max_requests_per_conn is None:
            max_requests_per_conn = self._max_requests_per_conn
        if max_idle_total is None:
            max_idle_total = self._max_idle_total
        if connect_attempt_delay_s is None:
            connect_attempt_delay_s = self._attempt_delay_s
        _attempt_delay(connect_attempt_delay_s)
        _check_settings(
            max_idle_per_origin,
            idle_timeout_s,
            gc_interval_s,
            connect_timeout_s,
            max_conn_per_origin,
            queue_timeout_s,
            max_requests_per_conn,
            max_idle_total,
        )
        self._enabled = bool(enabled)
        self._max_idle_per_origin = max_idle_per_origin
        self._idle_timeout_s = idle_timeout_s
        self._gc_interval_s = gc_interval_s
        self._connect_timeout_s = connect_timeout_s
        self._max_conn_per_origin = max_conn_per_origin
        self._queue_timeout_s = queue_timeout_s
        self._max_requests_per_conn = max_requests_per_conn
        self._max_idle_total = max_idle_total
        self._attempt_delay_s = connect_attempt_delay_s
        if tls_for is not None:
            self._tls_for = tls_for
        if h2c_for is not None:
            self._h2c_for = h2c_for
            for origin in self._origins.values():
                if origin.tls is None and origin.h2c != h2c_for(origin.key):
                    # Connections made under the old choice finish their streams.
                    origin.h2c = origin.h2_capable = h2c_for(origin.key)
                    origin.protocol = "h2" if origin.h2c else ""
                    for conn in list(origin.h2):
                        conn.shutdown()
        if max_streams_per_conn is not None:
            self._max_streams_per_conn = max(1, max_streams_per_conn)
        if standby is not None and _standby_targets(standby) != self._standby:
            self._standby = _standby_targets(standby)
            for key in self._standby:  # a new list: try refused origins again at once
                origin = self._origin_for(key)
                origin.standby_retry_at, origin.standby_backoff_s = 0.0, 0.0
        self._standby_wake.set()
        for origin in list(self._origins.values()):
            if origin.tls is not None and origin.tls != self._route_tls(origin.key, origin.tls.via):
                self._close_idle(origin, len(origin.idle))
                for h2c in list(origin.h2):
                    h2c.shutdown()  # made under other settings: its streams finish
            if not self._enabled:
                self._close_idle(origin, len(origin.idle))
            elif len(origin.idle) > max_idle_per_origin:
                self._close_idle(
                    origin, len(origin.idle) - max_idle_per_origin, counter="dropped_full"
                )
            if origin.waiters:
                self._serve_waiters(origin)
        self._enforce_idle_total()
        self._wake.set()

    def close(self) -> None:
        """Close every idle socket and stop the collector; later ``acquire`` raises ``PoolClosed``.

        Queued requests get ``PoolClosed``. Connections in use stay with their holders and are
        closed when released.
        """
        self._closed = True
        for origin in list(self._origins.values()):
            # The queue first, so closing idle sockets grants nothing to it.
            while origin.waiters:
                waiter = origin.waiters.popleft()
                if not waiter.grant.ready():
                    waiter.grant.set(_CLOSED)
            self._close_idle(origin, len(origin.idle))
            for h2c in list(origin.h2):
                h2c.shutdown()  # closes now if unused, else after its last stream
        self._wake.set()
        self._standby_wake.set()
        keeper, self._keeper = self._keeper, None
        if keeper is not None and keeper is not gevent.getcurrent():
            keeper.kill(block=gevent.getcurrent() is not gevent.get_hub(), timeout=1.0)
        collector, self._collector = self._collector, None
        if collector is not None and collector is not gevent.getcurrent():
            # Wait for it to die when we may block, so close() returning means it has stopped;
            # the hub itself (e.g. a signal callback) must not block, so there it is only told.
            in_hub = gevent.getcurrent() is gevent.get_hub()
            collector.kill(block=not in_hub, timeout=1.0)

    # -- stats --------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters and gauges per origin (keyed ``scheme://host:port``) and in total.

        Each has ``idle``, ``in_use``, ``pending_connects``, ``waiting`` (now) and the
        counters of ``COUNTERS`` (since start). Totals include origins no longer tracked.
        ``wait_times`` is the histogram of queue waits (``WaitHistogram.snapshot``),
        ``events`` the recent cap events, newest first.
        """
        origins = {
            format_origin(o.key) + (o.tls.label() if o.tls else ""): o.snapshot()
            for o in self._origins.values()
        }
        totals: dict[str, int] = dict.fromkeys(GAUGES, 0)
        for snap in origins.values():
            for gauge in GAUGES:
                totals[gauge] += snap[gauge]
        totals.update(self._totals)
        return {
            "origins": origins,
            "totals": totals,
            "wait_times": self.wait_times.snapshot(),
            "events": self.events.recent(),
        }

    # -- internals ----------------------------------------------------------------------------

    def _origin_for(self, key: OriginKey, via: ParentHop | None = None) -> _Origin:
        """The entry for ``key`` under the TLS settings that apply to it now (through
        ``via``, for an https origin reached through a parent proxy)."""
        if key[0] == "https":
            return self._origin(key, self._route_tls(key, via))
        if via is not None:
            # A plain request goes to a parent in absolute form, keyed by the parent.
            raise ValueError(f"{format_origin(key)}: only https origins are reached via a parent")
        return self._origin(key, None)

    def _route_tls(self, key: OriginKey, via: ParentHop | None) -> TLSSettings:
        tls = self._tls_for(key)
        return tls if via is None else replace(tls, via=via)

    def _origin(self, key: OriginKey, tls: TLSSettings | None) -> _Origin:
        origin = self._origins.get((key, tls))
        if origin is None:
            if len(self._origins) >= self.max_tracked_origins:
                self._forget_unused()
            origin = self._origins[key, tls] = _Origin(
                key, tls, h2c=tls is None and self._h2c_for(key)
            )
        return origin

    def _forget_unused(self) -> None:
        # Down to 3/4 of the limit so the scan is paid once per many new origins, oldest first.
        target = self.max_tracked_origins * 3 // 4
        for key, origin in list(self._origins.items()):
            if len(self._origins) <= target:
                break
            if origin.unused():
                del self._origins[key]

    def _count(self, origin: _Origin, counter: str) -> None:
        origin.counts[counter] += 1
        self._totals[counter] += 1

    def _note(self, origin: _Origin, kind: str, detail: str = "") -> None:
        self.events.note(format_origin(origin.key), kind, detail)

    def _expired(self, conn: OriginConnection, now: float) -> bool:
        """Idle for longer than ``idle_timeout_s`` (checked at checkout and by ``collect``)."""
        return now - conn.idle_since > self._idle_timeout_s

    def _room(self, origin: _Origin) -> bool:
        """May one more socket to ``origin`` be opened now (the connection cap)?"""
        cap = self._max_conn_per_origin
        return cap == 0 or origin.held() < cap

    def _hand_out(self, origin: _Origin, conn: OriginConnection) -> None:
        """Count ``conn`` as in use by the caller (a reused idle socket or a new one)."""
        self._checked_out.add(conn)
        origin.in_use += 1

    def _take_idle(self, origin: _Origin, verify: bool) -> OriginConnection | None:
        """Check out the newest usable idle socket of ``origin``, closing unusable ones."""
        while origin.idle:
            conn = origin.idle.pop()
            del self._idle_lru[conn]
            conn.unwatch_idle()
            if self._expired(conn, self._clock()):
                self._count(origin, "expired")
                conn.close()
                continue
            if conn.heard_while_idle or (verify and conn.peer_state() != "ok"):
                self._count(origin, "dropped_dead")
                conn.close()
                continue
            self._hand_out(origin, conn)
            conn._checkout()
            self._count(origin, "reused")
            if origin.key in self._standby:
                self._standby_wake.set()  # replace the one just taken
            return conn
        return None

    def _put_idle(self, origin: _Origin, conn: OriginConnection) -> None:
        """Keep ``conn`` (already not counted in use) idle, then serve the queue and caps."""
        conn.idle_since = self._clock()
        conn.on_heard = self._heard_idle if origin.key in self._standby else None
        conn.watch_idle()
        origin.idle.append(conn)
        self._idle_lru[conn] = None
        if origin.waiters:
            self._serve_waiters(origin)
        self._enforce_idle_total()

    def _enforce_idle_total(self) -> None:
        """Close least recently used idle sockets of any origin down to ``max_idle_total``."""
        cap = self._max_idle_total
        while cap and len(self._idle_lru) > cap:
            victim = next(iter(self._idle_lru))
            origin = self._origin(victim.key, victim.tls)
            self._count(origin, "evicted")
            self._note(origin, "evicted")
            victim.close()  # _on_conn_close takes it off the idle lists

    def _close_idle(self, origin: _Origin, n: int, counter: str | None = None) -> None:
        """Close the ``n`` oldest idle sockets of ``origin``, counting them under ``counter``."""
        victims, origin.idle = origin.idle[:n], origin.idle[n:]
        for conn in victims:
            if counter is not None:
                self._count(origin, counter)
            conn.close()

    def _new_connection(
        self,
        origin: _Origin,
        *,
        fresh: bool,
        abandon_on_eof: gsocket.socket | None,
        admit: AddressCheck | None = None,
    ) -> OriginConnection | H2Stream:
        """Open a connection to ``origin`` within its cap, queueing when it is reached."""
        if not origin.waiters and not self._room(origin) and fresh and origin.idle:
            # A fresh socket is wanted and an idle one holds the room: close the oldest.
            self._count(origin, "evicted")
            origin.idle[0].close()
        if origin.waiters or not self._room(origin):
            granted = self._wait_in_queue(origin, fresh, abandon_on_eof)
            if isinstance(granted, (OriginConnection, H2Stream)):
                return granted
            return self._connect(origin, reserved=True, admit=admit)
        return self._connect(origin, reserved=False, admit=admit)

    def _serve_waiters(self, origin: _Origin) -> None:
        """Hand what is free (an idle socket, or room under the cap) to queued requests, in
        arrival order. Called whenever a socket of ``origin`` is released or closed."""
        if origin.serving:
            return  # a close below re-entered us: the loop that is running goes on
        origin.serving = True
        try:
            while origin.waiters:
                waiter = origin.waiters[0]
                if waiter.grant.ready():  # its client left; the waiter removes itself later
                    origin.waiters.popleft()
                    continue
                if origin.h2:
                    stream = self._grant_stream(origin)
                    if stream is not None:
                        origin.waiters.popleft()
                        waiter.grant.set(stream)
                        continue
                if not waiter.fresh and self._enabled:
                    conn = self._take_idle(origin, verify=False)
                    if conn is not None:
                        origin.waiters.popleft()
                        waiter.grant.set(conn)
                        continue
                if self._room(origin):
                    origin.waiters.popleft()
                    origin.pending_connects += 1  # reserved for the waiter, which connects
                    waiter.grant.set(_SLOT)
                    continue
                if origin.idle:
                    # Only for a waiter that needs a fresh socket: make room.
                    self._count(origin, "evicted")
                    origin.idle[0].close()
                    continue
                break
        finally:
            origin.serving = False

    def _wait_in_queue(
        self, origin: _Origin, fresh: bool, abandon_on_eof: gsocket.socket | None
    ) -> OriginConnection | H2Stream | str:
        """Wait in ``origin``'s queue; returns a checked-out idle connection, an HTTP/2
        stream, or ``_SLOT``."""
        waiter = _Waiter(fresh)
        origin.waiters.append(waiter)
        self._count(origin, "waits")
        self._note(origin, "queued", f"cap {self._max_conn_per_origin}")
        watch = _watch_for_eof(abandon_on_eof, waiter) if abandon_on_eof is not None else None
        started = time.monotonic()
        try:
            waiter.grant.wait(self._queue_timeout_s)
        except BaseException:
            # Killed while queued (the client's greenlet ended, a caller's timeout): leave
            # the queue, and pass on whatever was granted meanwhile.
            self._leave_queue(origin, waiter)
            raise
        finally:
            if watch is not None:
                watch.close()
            self.wait_times.observe(time.monotonic() - started)
        granted = waiter.grant.value if waiter.grant.ready() else None
        if isinstance(granted, (OriginConnection, H2Stream)):
            return granted  # checked out (and counted) by _serve_waiters
        if granted == _SLOT:
            return _SLOT
        self._leave_queue(origin, waiter)
        where = format_origin(origin.key)
        if granted == _CLOSED:
            raise PoolClosed("the origin connection pool is closed")
        if granted == _GONE:
            self._count(origin, "wait_abandoned")
            raise PoolWaitAbandoned(f"the client left while waiting for a connection to {where}")
        self._count(origin, "wait_timeouts")
        self._note(origin, "queue_timeout", f"{self._queue_timeout_s:g} s")
        raise PoolQueueTimeout(
            f"{where} is at its connection limit ({self._max_conn_per_origin}); no connection "
            f"became free within {self._queue_timeout_s:g} s",
            retry_after_s=max(1, math.ceil(self._queue_timeout_s)),
        )

    def _leave_queue(self, origin: _Origin, waiter: _Waiter) -> None:
        """Take ``waiter`` out of the queue; give back what it was granted but did not use."""
        try:
            origin.waiters.remove(waiter)
        except ValueError:
            pass  # already served (or the pool closed)
        if not waiter.grant.ready():
            waiter.grant.set(_GONE)  # nobody may serve it from now on
            return
        granted = waiter.grant.value
        if isinstance(granted, H2Stream):
            granted.abort()  # frees its slot, which serves the queue
        elif isinstance(granted, OriginConnection):
            self._checked_out.discard(granted)
            origin.in_use -= 1
            if self._closed or not self._enabled:
                granted.close()
            else:
                self._put_idle(origin, granted)
        elif granted == _SLOT:
            origin.pending_connects -= 1
            self._serve_waiters(origin)

    def _connect(
        self, origin: _Origin, *, reserved: bool, admit: AddressCheck | None = None
    ) -> OriginConnection | H2Stream:
        key = origin.key
        host, port = key[1], key[2]
        # Counted while this greenlet yields in DNS/connect (from the grant, for a queued
        # request), so the cap holds, stats show work under way and the entry stays tracked.
        if not reserved:
            origin.pending_connects += 1
        deadline = time.monotonic() + self._connect_timeout_s
        via = origin.tls.via if origin.tls is not None else None
        try:
            if via is None:
                sock = open_socket(
                    host,
                    port,
                    timeout_s=self._connect_timeout_s,
                    resolve=self._resolve,
                    admit=admit,
                    attempt_delay_s=self._attempt_delay_s,
                    dead=self._dead,
                )
            else:
                sock = self._open_via(via, host, port, deadline)
            if origin.tls is not None:
                # The handshake shares the connect budget: together they are "connecting".
                try:
                    sock = start_tls(
                        sock, host, port, origin.tls, session=origin.tls_session, deadline=deadline
                    )
                except OriginConnectTimeout as exc:
                    if via is None:
                        raise
                    # The parent took the connection: it is up, whatever the origin did.
                    raise ParentTunnelTimeout(
                        f"{exc} (through parent proxy {via.address})"
                    ) from exc
                origin.tls_session = tls_session(sock) or origin.tls_session
            h2 = origin.h2c
            if origin.tls is not None and origin.h2_capable:
                h2 = negotiated_protocol(sock) == "h2"
                origin.protocol = "h2" if h2 else "http/1.1"
            if h2:
                conn2 = self._start_h2(origin, sock)
        except BaseException as exc:
            origin.pending_connects -= 1
            if isinstance(exc, OriginError):
                self._count(origin, "connect_failures")
            if origin.waiters:
                self._serve_waiters(origin)  # the room this attempt held is free again
            raise
        # No yield from here on: the room moves from pending to in use without a gap.
        origin.pending_connects -= 1
        if self._closed:
            # close() ran while we were connecting: nobody may use this socket now.
            if h2:
                conn2.closing = True
                conn2.close()
            sock.close()
            raise PoolClosed("the origin connection pool is closed")
        if h2:
            self._count(origin, "created")
            origin.h2.append(conn2)
            self._count(origin, "h2_streams")
            return conn2.grant(reused=False)
        conn = OriginConnection(
            key, sock, self._clock(), on_close=self._on_conn_close, tls=origin.tls
        )
        self._count(origin, "created")
        self._hand_out(origin, conn)
        return conn

    def _open_via(self, via: ParentHop, host: str, port: int, deadline: float) -> gsocket.socket:
        """A plain socket to ``via`` carrying a tunnel to ``host:port`` (its CONNECT answered
        2xx within the connect budget), ready for the TLS handshake with the origin. The
        destination policy is the parent's to apply, as for every request sent to a parent.
        Raises the errors of ``open_socket`` (naming the parent), `ParentRefusedTunnel`,
        `ParentTunnelTimeout` or ``OriginError``."""
        sock = open_socket(
            via.host,
            via.port,
            timeout_s=self._connect_timeout_s,
            resolve=self._resolve,
            attempt_delay_s=self._attempt_delay_s,
            dead=self._dead,
        )
        try:
            target = format_host_port(host, port)
            early = tunnel_through(sock, via, target, max(deadline - time.monotonic(), 0.001))
            if early:
                # A TLS server speaks second: these bytes are the parent's, not the origin's.
                raise OriginError(
                    f"parent proxy {via.address} sent bytes after its answer to CONNECT {target}"
                )
        except BaseException:
            sock.close()
            raise
        return sock

    # -- HTTP/2 ------------------------------------------------------------------------------

    def _acquire_h2(
        self,
        origin: _Origin,
        abandon_on_eof: gsocket.socket | None,
        admit: AddressCheck | None,
        avoid: object = None,
    ) -> OriginConnection | H2Stream | None:
        """A stream on a shared HTTP/2 connection of ``origin``: on one with room, else on
        the one being opened (waited for), else on a new one within the cap, else queued.
        None when the origin turned out to speak HTTP/1.1 (the caller goes that way)."""
        deadline = time.monotonic() + self._queue_timeout_s
        while True:
            if self._closed:
                raise PoolClosed("the origin connection pool is closed")
            if not origin.waiters:
                stream = self._grant_stream(origin, avoid)
                if stream is not None:
                    return stream
            if origin.protocol == "http/1.1":
                return None
            if origin.h2_opening and not origin.waiters:
                # The first connection (or the next one) is being opened: it will most
                # likely carry this request too, so wait for it instead of opening more.
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not origin.h2_ready.wait(remaining):
                    raise PoolQueueTimeout(
                        f"no HTTP/2 connection to {format_origin(origin.key)} came up within "
                        f"{self._queue_timeout_s:g} s",
                        retry_after_s=max(1, math.ceil(self._queue_timeout_s)),
                    )
                continue
            origin.h2_opening += 1
            try:
                return self._new_connection(
                    origin, fresh=False, abandon_on_eof=abandon_on_eof, admit=admit
                )
            finally:
                origin.h2_opening -= 1
                ready, origin.h2_ready = origin.h2_ready, gevent.event.Event()
                ready.set()

    def _grant_stream(self, origin: _Origin, avoid: object = None) -> H2Stream | None:
        """A stream on the fullest shared connection with room (so the others can drain
        and age out) other than ``avoid``, or None."""
        best: H2Connection | None = None
        for conn in origin.h2:
            if conn is avoid:
                continue
            if conn.has_room(self._max_requests_per_conn) and (
                best is None or conn.in_flight > best.in_flight
            ):
                best = conn
        if best is None:
            return None
        self._count(origin, "h2_streams")
        if best.opened:
            self._count(origin, "reused")  # a request on a pooled connection
        return best.grant(reused=best.opened > 0)

    def _start_h2(self, origin: _Origin, sock: gsocket.socket) -> H2Connection:
        """An HTTP/2 connection on connected ``sock`` (preface and settings sent)."""
        # Imported at the first HTTP/2 connection: h2 is about 4 MiB a proxy that never
        # speaks HTTP/2 need not carry.
        from cproxy.origin.h2conn import H2Connection

        def count(name: str) -> None:
            self._count(origin, name)

        conn = H2Connection(
            origin.key,
            sock,
            self._clock(),
            tls=origin.tls,
            stream_cap=self._max_streams_per_conn,
            on_stream_done=self._h2_stream_done,
            on_close=self._h2_closed,
            on_goaway=self._h2_goaway,
            count=count,
            clock=self._clock,
        )
        try:
            conn.start(self._connect_timeout_s)
        except BaseException:
            sock.close()
            raise
        return conn

    def _h2_origin(self, conn: H2Connection) -> _Origin:
        return self._origin(conn.key, conn.tls)

    def _h2_stream_done(self, conn: H2Connection) -> None:
        """A stream of ``conn`` ended (or the origin changed its settings): retire a
        connection past MaxPersistRequestPerServer, then serve the queue."""
        origin = self._h2_origin(conn)
        if conn.in_flight == 0 and not conn.closing:
            limit = self._max_requests_per_conn
            if limit and conn.opened >= limit:
                self._count(origin, "retired")
                conn.shutdown()
            elif not self._enabled or self._closed:
                conn.shutdown()
        if origin.waiters:
            self._serve_waiters(origin)

    def _h2_goaway(self, conn: H2Connection) -> None:
        origin = self._h2_origin(conn)
        self._count(origin, "h2_goaways")
        # Routine (nginx sends one every keepalive_requests): counted, not warned about.
        log.info("%s sent GOAWAY (last stream %s)", format_origin(origin.key), conn.goaway_last_id)

    def _h2_closed(self, conn: H2Connection) -> None:
        origin = self._h2_origin(conn)
        if conn in origin.h2:
            origin.h2.remove(conn)
        self._count(origin, "closed")
        if origin.waiters:
            self._serve_waiters(origin)
        if origin.key in self._standby:
            self._standby_wake.set()

    # -- standby connections (ServerConnStandby) ----------------------------------------------

    def standby_state(self) -> dict[str, dict[str, float]]:
        """Per standby origin: ``target``, ``idle``, ``opening`` and the current ``backoff_s``
        (0 when its last attempt worked)."""
        state: dict[str, dict[str, float]] = {}
        for key, target in self._standby.items():
            origin = self._origin_for(key)
            state[format_origin(key)] = {
                "target": target,
                "idle": len(origin.idle),
                "opening": origin.standby_opening,
                "backoff_s": origin.standby_backoff_s,
            }
        return state

    def _heard_idle(self, conn: OriginConnection) -> None:
        """A pre-opened idle socket became readable (the origin closed it): replace it."""
        self._standby_wake.set()

    def _standby_loop(self) -> None:
        while not self._closed:
            self._standby_wake.clear()
            try:
                delay = self._standby_round()
            except Exception:
                # The keeper must outlive any one failure, or standby stops for good.
                log.exception("origin pool standby keeper failed; retrying in a second")
                delay = 1.0
            self._standby_wake.wait(delay)

    def _standby_round(self) -> float | None:
        """Start opening what each standby origin lacks; returns the seconds until a backoff
        ends (the keeper's next look), or None when only an event can change anything."""
        if not self._enabled or self._closed:
            return None
        now = time.monotonic()
        next_look: float | None = None
        for key, target in self._standby.items():
            origin = self._origin_for(key)
            for conn in [c for c in origin.idle if c.heard_while_idle]:
                self._count(origin, "dropped_dead")  # the origin closed it while idle
                conn.close()
            if origin.standby_retry_at > now:
                wait = origin.standby_retry_at - now
                next_look = wait if next_look is None else min(next_look, wait)
                continue
            want = min(target, self._max_idle_per_origin)
            missing = want - len(origin.idle) - origin.standby_opening
            if origin.protocol == "h2" or (origin.h2_capable and not origin.protocol):
                # One shared connection carries every request: it is the standby (and
                # while the protocol is unknown, one connection finds it out).
                missing = min(missing, 1 - len(origin.h2) - origin.standby_opening)
            while missing > 0 and not origin.waiters and self._room(origin):
                total = self._max_idle_total
                if total and len(self._idle_lru) + self._standby_opening_total() >= total:
                    break  # within MaxIdleSockets, or eviction and refill would fight
                origin.standby_opening += 1
                origin.pending_connects += 1  # counted at once, so the cap holds
                gevent.spawn(self._open_standby, origin)
                missing -= 1
        return next_look

    def _standby_opening_total(self) -> int:
        return sum(self._origin_for(key).standby_opening for key in self._standby)

    def _open_standby(self, origin: _Origin) -> None:
        """Open one pre-opened socket for ``origin`` and keep it idle; back off on failure."""
        try:
            conn = self._connect(origin, reserved=True)
        except (OriginError, PoolClosed) as exc:
            origin.standby_opening -= 1
            if isinstance(exc, PoolClosed):
                return
            low, high = self._standby_backoff_s
            origin.standby_backoff_s = min(high, max(low, 2 * origin.standby_backoff_s))
            origin.standby_retry_at = time.monotonic() + origin.standby_backoff_s
            self._note(
                origin, "standby_failed", f"{exc}; next try in {origin.standby_backoff_s:g} s"
            )
            self._standby_wake.set()
            return
        origin.standby_opening -= 1
        origin.standby_backoff_s = 0.0
        if isinstance(conn, H2Stream):
            conn.abort()  # the shared connection stays open for the requests to come
            return
        conn.pre_opened = True
        self._checked_out.discard(conn)
        origin.in_use -= 1
        if self._closed or not self._enabled:
            conn.close()
            return
        self._put_idle(origin, conn)

    def _on_conn_close(self, conn: OriginConnection) -> None:
        """Called by ``OriginConnection.close()`` whoever closes it: keeps the counts exact,
        and passes the room the socket held to the origin's queue."""
        origin = self._origin(conn.key, conn.tls)
        if conn in self._checked_out:
            self._checked_out.discard(conn)
            origin.in_use -= 1
        elif conn in self._idle_lru:
            del self._idle_lru[conn]
            if conn in origin.idle:
                origin.idle.remove(conn)
        self._count(origin, "closed")
        if origin.waiters:
            self._serve_waiters(origin)
        if origin.key in self._standby:
            self._standby_wake.set()


def _standby_targets(standby: tuple[tuple[OriginKey, int], ...]) -> dict[OriginKey, int]:
    targets: dict[OriginKey, int] = {}
    for key, count in standby:
        if count < 1:
            raise ValueError(f"standby count must be >= 1, not {count}")
        targets[origin_key(*key)] = count
    return targets


def _default_tls(key: OriginKey) -> TLSSettings:
    return DEFAULT_TLS


def _no_h2c(key: OriginKey) -> bool:
    return False


def _watch_for_eof(sock: gsocket.socket, waiter: _Waiter) -> Any:
    """Watch the waiting client's socket: at EOF (the client closed), the waiter is told to
    leave the queue. Bytes waiting instead (a pipelined next request) say nothing about
    the client leaving, so the watch ends there. Returns the loop watcher (``close()`` it).

    A TLS client's raw socket carries records, where a close_notify looks like input: a
    socket with ``look_ahead()`` (an intercepted client, `cproxy.server.transport`) reads
    them through its TLS layer instead, keeping any bytes for its next read."""
    watch = gevent.get_hub().loop.io(sock.fileno(), 1)
    look_ahead = getattr(sock, "look_ahead", None)

    def readable() -> None:
        watch.stop()
        if look_ahead is not None:
            state = look_ahead()
            if state == "nothing":
                watch.start(readable)  # records for the TLS layer alone, or part of one
                return
            data = b"" if state == "eof" else b"input"
        else:
            raw = getattr(sock, "_sock", sock)
            try:
                data = raw.recv(1, gsocket.MSG_PEEK | gsocket.MSG_DONTWAIT)
            except BlockingIOError:
                watch.start(readable)  # spurious wake-up
                return
            except OSError:
                data = b""  # reset: gone as well
        if not data and not waiter.grant.ready():
            waiter.grant.set(_GONE)

    watch.start(readable)
    return watch
