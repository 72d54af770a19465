"""The server-side connection pool: idle proxy-to-origin sockets kept for reuse.

Modelled on IBM Caching Proxy's ``ServerConnPool`` (``MaxSocketPerServer`` idle sockets per
origin, ``ServerConnTimeout``, a collector every ``ServerConnGCRun``) and on urllib3's
connectionpool: the most recently released socket is reused first (LIFO, so the fewest sockets
stay warm and the rest age out), limits are explicit, and a socket is checked when it is taken,
not only by the collector: its age against the idle timeout, then whether it became readable
while idle (the origin closed it or sent bytes nobody asked for), which the event loop notices
for free, and on request a non-blocking peek that also catches what arrived since the loop
last looked. The handler skips the peek for idempotent requests without a body, which are
retried once on a fresh socket if a pooled one turns out dead (DESIGN §5 rule 5).

Concurrency: gevent switches greenlets only on I/O. Every bookkeeping step here is done without
yielding, except opening a connection, which is counted in ``pending_connects`` while it waits.
Idle lists and counters are therefore consistent whenever another greenlet can run.

Accounting: every connection the pool opens is counted once in ``created`` and, when it is
closed by whatever path, once in ``closed``; so per origin and in total
``created == closed + idle + in_use`` at every switch point.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from cproxy.errors import NotCheckedOut, OriginError, PoolClosed
from cproxy.origin.connection import (
    OriginConnection,
    OriginKey,
    Resolver,
    default_resolve,
    format_origin,
    open_socket,
    origin_key,
)

log = logging.getLogger(__name__)

# Monotonic counters kept per origin and in total.
COUNTERS = (
    "created",
    "reused",
    "expired",
    "dropped_dead",
    "dropped_full",
    "discarded",
    "connect_failures",
    "closed",
)
# Gauges: current values, summed over origins for the totals.
GAUGES = ("idle", "in_use", "pending_connects")


class _Origin:
    """Bookkeeping for one origin: its idle sockets (oldest first) and its counters."""

    __slots__ = ("counts", "idle", "in_use", "key", "pending_connects")

    def __init__(self, key: OriginKey) -> None:
        self.key = key
        # LIFO: released sockets are appended, checkouts pop from the end, trims cut the front.
        self.idle: list[OriginConnection] = []
        self.in_use = 0
        self.pending_connects = 0
        self.counts = dict.fromkeys(COUNTERS, 0)

    def unused(self) -> bool:
        """True when no socket of this origin is idle, in use or being opened."""
        return not self.idle and self.in_use == 0 and self.pending_connects == 0

    def snapshot(self) -> dict[str, int]:
        return {
            "idle": len(self.idle),
            "in_use": self.in_use,
            "pending_connects": self.pending_connects,
            **self.counts,
        }


def _check_settings(
    max_idle_per_origin: int, idle_timeout_s: float, gc_interval_s: float, connect_timeout_s: float
) -> None:
    if max_idle_per_origin < 0:
        raise ValueError(f"max_idle_per_origin must be >= 0, not {max_idle_per_origin}")
    if idle_timeout_s < 0:
        raise ValueError(f"idle_timeout_s must be >= 0, not {idle_timeout_s}")
    if gc_interval_s < 0:
        raise ValueError(f"gc_interval_s must be >= 0 (0 = no collector), not {gc_interval_s}")
    if connect_timeout_s <= 0:
        raise ValueError(f"connect_timeout_s must be > 0, not {connect_timeout_s}")


class OriginPool:
    """Hands out connections to origins and keeps released ones idle for reuse.

    ``acquire`` reuses an idle socket when it can, ``connect`` always opens a fresh one,
    ``release`` takes back a clean socket (DESIGN §5 rule 4: the exchange was complete and neither
    side asked to close), ``discard`` closes one that must not be reused.

    ``clock`` ages idle sockets (tests inject a fake one); connect timeouts and the collector's
    interval are real time. ``resolve(host, port)`` returns getaddrinfo 5-tuples (default:
    gevent's resolver). ``gc_interval_s == 0`` means no collector runs; age is still checked at
    checkout.
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
        clock: Callable[[], float] = time.monotonic,
        resolve: Resolver | None = None,
    ) -> None:
        _check_settings(max_idle_per_origin, idle_timeout_s, gc_interval_s, connect_timeout_s)
        self._enabled = bool(enabled)
        self._max_idle_per_origin = max_idle_per_origin
        self._idle_timeout_s = idle_timeout_s
        self._gc_interval_s = gc_interval_s
        self._connect_timeout_s = connect_timeout_s
        self._clock = clock
        self._resolve: Resolver = resolve if resolve is not None else default_resolve
        self._origins: dict[OriginKey, _Origin] = {}
        self._totals = dict.fromkeys(COUNTERS, 0)
        self._checked_out: set[OriginConnection] = set()
        self._closed = False
        self._collector: gevent.Greenlet | None = None
        # Set to make the collector re-read its interval (reconfigure) or stop (close).
        self._wake = gevent.event.Event()

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
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    @property
    def collector_running(self) -> bool:
        """True while the collector greenlet started by ``start()`` is alive."""
        return self._collector is not None and not self._collector.dead

    # -- checkout and return ------------------------------------------------------------------

    def acquire(self, key: OriginKey, *, verify: bool = True) -> OriginConnection:
        """Return a connection to ``key``: the most recently released usable idle one, or new.

        Idle sockets past ``idle_timeout_s`` are closed (``expired``); ones the origin closed or
        that have unexpected bytes waiting are closed (``dropped_dead``): noticed by the event
        loop while they were idle, and, with ``verify``, by a non-blocking peek now, which
        also catches what arrived since the loop last looked. A caller that may simply retry
        on a fresh socket (an idempotent request without a body) can skip the peek. Raises
        ``PoolClosed`` after ``close()``, and the ``OriginError`` subclasses of ``connect``
        for a new one.
        """
        if self._closed:
            raise PoolClosed("the origin connection pool is closed")
        key = origin_key(*key)
        if self._enabled:
            origin = self._origin(key)
            while origin.idle:
                conn = origin.idle.pop()
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
                return conn
        return self._connect(key)

    def connect(self, key: OriginKey) -> OriginConnection:
        """Open a fresh connection to ``key``, never an idle one (request bodies, retries).

        Raises ``OriginDNSError``, ``OriginConnectError`` or ``OriginConnectTimeout`` (message
        names ``host:port`` and the cause), or ``PoolClosed``.
        """
        if self._closed:
            raise PoolClosed("the origin connection pool is closed")
        return self._connect(origin_key(*key))

    def release(self, conn: OriginConnection) -> None:
        """Take back a connection whose exchange completed cleanly (DESIGN §5 rule 4).

        Kept idle if the pool is enabled and open and the origin has fewer than
        ``max_idle_per_origin`` idle; otherwise closed (counted ``dropped_full`` when the idle
        list was full). Releasing an already closed connection does nothing; releasing one that
        is not checked out of this pool is a bug and raises ``NotCheckedOut`` (a ValueError).
        """
        if conn.closed:
            return
        if conn not in self._checked_out:
            raise NotCheckedOut(f"{conn!r} is not checked out of this pool (released twice?)")
        conn.uses += 1
        origin = self._origin(conn.key)
        if self._closed or not self._enabled:
            conn.close()
            return
        if len(origin.idle) >= self._max_idle_per_origin:
            self._count(origin, "dropped_full")
            conn.close()
            return
        self._checked_out.discard(conn)
        origin.in_use -= 1
        conn.idle_since = self._clock()
        conn.watch_idle()
        origin.idle.append(conn)

    def discard(self, conn: OriginConnection) -> None:
        """Close a connection that must not be reused (error, ``Connection: close``, leftovers).

        Counted ``discarded``; a connection already closed is left alone.
        """
        if conn.closed:
            return
        if conn in self._checked_out:
            self._count(self._origin(conn.key), "discarded")
        conn.close()

    # -- ageing -------------------------------------------------------------------------------

    def collect(self) -> int:
        """Close idle sockets idle for longer than ``idle_timeout_s``; return how many."""
        now = self._clock()
        closed = 0
        for origin in list(self._origins.values()):
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

    def start(self) -> None:
        """Start the collector greenlet (runs ``collect()`` every ``gc_interval_s``).

        Does nothing if it is already running; raises ``PoolClosed`` after ``close()``.
        """
        if self._closed:
            raise PoolClosed("the origin connection pool is closed")
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
    ) -> None:
        """Apply new settings live.

        Disabling closes every idle socket; a lower ``max_idle_per_origin`` closes the oldest
        idle sockets above it (counted ``dropped_full``); the collector picks up a new interval
        without a restart. Connections in use are unaffected until released. Invalid values
        raise ``ValueError`` and change nothing.
        """
        _check_settings(max_idle_per_origin, idle_timeout_s, gc_interval_s, connect_timeout_s)
        self._enabled = bool(enabled)
        self._max_idle_per_origin = max_idle_per_origin
        self._idle_timeout_s = idle_timeout_s
        self._gc_interval_s = gc_interval_s
        self._connect_timeout_s = connect_timeout_s
        for origin in list(self._origins.values()):
            if not self._enabled:
                self._close_idle(origin, len(origin.idle))
            elif len(origin.idle) > max_idle_per_origin:
                self._close_idle(
                    origin, len(origin.idle) - max_idle_per_origin, counter="dropped_full"
                )
        self._wake.set()

    def close(self) -> None:
        """Close every idle socket and stop the collector; later ``acquire`` raises ``PoolClosed``.

        Connections in use stay with their holders and are closed when released.
        """
        self._closed = True
        for origin in list(self._origins.values()):
            self._close_idle(origin, len(origin.idle))
        self._wake.set()
        collector, self._collector = self._collector, None
        if collector is not None and collector is not gevent.getcurrent():
            # Wait for it to die when we may block, so close() returning means it has stopped;
            # the hub itself (e.g. a signal callback) must not block, so there it is only told.
            in_hub = gevent.getcurrent() is gevent.get_hub()
            collector.kill(block=not in_hub, timeout=1.0)

    # -- stats --------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters and gauges per origin (keyed ``scheme://host:port``) and in total.

        Each has ``idle``, ``in_use``, ``pending_connects`` (now) and ``created``, ``reused``,
        ``expired``, ``dropped_dead``, ``dropped_full``, ``discarded``, ``connect_failures``,
        ``closed`` (since start). Totals include origins no longer tracked.
        """
        origins = {format_origin(key): o.snapshot() for key, o in self._origins.items()}
        totals: dict[str, int] = dict.fromkeys(GAUGES, 0)
        for snap in origins.values():
            for gauge in GAUGES:
                totals[gauge] += snap[gauge]
        totals.update(self._totals)
        return {"origins": origins, "totals": totals}

    # -- internals ----------------------------------------------------------------------------

    def _origin(self, key: OriginKey) -> _Origin:
        origin = self._origins.get(key)
        if origin is None:
            if len(self._origins) >= self.max_tracked_origins:
                self._forget_unused()
            origin = self._origins[key] = _Origin(key)
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

    def _expired(self, conn: OriginConnection, now: float) -> bool:
        """Idle for longer than ``idle_timeout_s`` (checked at checkout and by ``collect``)."""
        return now - conn.idle_since > self._idle_timeout_s

    def _hand_out(self, origin: _Origin, conn: OriginConnection) -> None:
        """Count ``conn`` as in use by the caller (a reused idle socket or a new one)."""
        self._checked_out.add(conn)
        origin.in_use += 1

    def _close_idle(self, origin: _Origin, n: int, counter: str | None = None) -> None:
        """Close the ``n`` oldest idle sockets of ``origin``, counting them under ``counter``."""
        victims, origin.idle = origin.idle[:n], origin.idle[n:]
        for conn in victims:
            if counter is not None:
                self._count(origin, counter)
            conn.close()

    def _connect(self, key: OriginKey) -> OriginConnection:
        origin = self._origin(key)
        host, port = key[1], key[2]
        # Counted while this greenlet yields in DNS/connect, so stats show work under way and
        # the entry is not forgotten meanwhile.
        origin.pending_connects += 1
        try:
            sock = open_socket(host, port, timeout_s=self._connect_timeout_s, resolve=self._resolve)
        except OriginError:
            self._count(origin, "connect_failures")
            raise
        finally:
            origin.pending_connects -= 1
        if self._closed:
            # close() ran while we were connecting: nobody may use this socket now.
            sock.close()
            raise PoolClosed("the origin connection pool is closed")
        conn = OriginConnection(key, sock, self._clock(), on_close=self._on_conn_close)
        self._count(origin, "created")
        self._hand_out(origin, conn)
        return conn

    def _on_conn_close(self, conn: OriginConnection) -> None:
        """Called by ``OriginConnection.close()`` whoever closes it: keeps the counts exact."""
        origin = self._origin(conn.key)
        if conn in self._checked_out:
            self._checked_out.discard(conn)
            origin.in_use -= 1
        elif conn in origin.idle:
            origin.idle.remove(conn)
        self._count(origin, "closed")
