"""Who gets in and who waits: client connections and MaxActiveThreads slots (DESIGN.md
§5 rule 9: one client cannot take the proxy from the others).

- A *slot* (`Slots`, MaxActiveThreads) is held only while a request is being served:
  from its head and buffered body being in (see cproxy.server.clientbody) to the end of
  its response. A connection waiting for a first or next request head, or receiving a
  body up to RequestBodyBuffer, holds none: a thousand silent or slow clients cannot
  keep a fresh one waiting. A request that finds no slot free waits for one, in order
  (held, not refused, as the Caching Proxy does).
- *Open connections* are capped in all (MaxClientConnections, by default half the
  process's file-descriptor limit less a reserve: cproxy.server.fdlimits) and per
  client address (MaxClientConnectionsPerAddress). At a cap a new connection is still
  admitted by closing the connection that has waited longest for a request head, of
  that address (or of anyone, for the total); connections being served are never cut.
  Only when every connection concerned is being served is the new one refused.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Protocol

from gevent.event import Event

from cproxy.server.fdlimits import FdBudget

log = logging.getLogger("cproxy")

# How many of the longest-waiting connections eviction peeks at for one whose socket holds
# no unread bytes (one with bytes has a request arriving: it is about to be served). At
# a cap, eviction scans the connections concerned (at most the cap) for waiting ones.
EVICTION_SCAN = 16


def auto_max_connections() -> int:
    """MaxClientConnections for 0 ("automatic"): half of the soft RLIMIT_NOFILE, less a
    reserve (cproxy.server.fdlimits shares the limit out)."""
    return FdBudget.current().clients


class Slots:
    """MaxActiveThreads: how many requests are served at once. `acquire` waits (FIFO)
    while none is free; `resize` applies a new size live.

    A counter with a queue of waiting greenlets rather than gevent's Semaphore: every
    request takes and gives back a slot, and the Semaphore's acquire and release cost
    about 3 µs of a 40 µs hit inside a running hub (A/B in one run, bench/compare.py),
    while a free slot here is one comparison. A released slot is handed straight to the
    first waiter (``active`` stays counted), so nobody can overtake the queue.
    """

    __slots__ = ("_waiters", "active", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.active = 0
        self._waiters: deque[Event] = deque()

    def __len__(self) -> int:
        return self.active

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiters)

    def acquire(self) -> None:
        if self.active < self.size and not self._waiters:
            self.active += 1
            return
        handed = Event()
        self._waiters.append(handed)
        try:
            handed.wait()
        except BaseException:
            # Killed (the client went, or shutdown) while queued: leave the queue, or,
            # when a slot was handed over at that very moment, pass it on.
            if handed.is_set():
                self.release()
            else:
                self._waiters.remove(handed)
            raise

    def release(self) -> None:
        if self._waiters and self.active <= self.size:
            self._waiters.popleft().set()  # the slot goes to the first waiter as it is
        else:
            self.active -= 1

    def resize(self, size: int) -> None:
        """A larger size lets waiters in at once; a smaller one takes effect as the
        requests being served give their slots back."""
        self.size = size
        while self._waiters and self.active < size:
            self.active += 1
            self._waiters.popleft().set()


class Admitted(Protocol):
    """What admission needs of a client connection."""

    client_ip: str
    #: when it began to wait for a request head (time.monotonic()), or 0 while served
    waiting_since: float

    def evict(self) -> None:
        """Close the connection now: it is waiting for a request head."""

    def has_input(self) -> bool:
        """Bytes from the client wait unread in its socket."""


class Admission:
    """Open client connections, in all and per address. A connection says it is waiting
    for a request head by setting its ``waiting_since`` (one attribute per request: the
    hot path pays nothing more); only at a cap are the waiting ones looked for, and the
    longest-waiting one closed to admit the new one. All calls are from the event loop's
    greenlets: no locking."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.open = 0
        self.per_address: dict[str, set[Admitted]] = {}
        self.evicted = 0
        self.refused = 0

    def reconfigure(self, max_total: int, max_per_address: int) -> None:
        """New caps; connections above them are not cut, new ones are held to them."""
        self.max_total = max_total
        self.max_per_address = max_per_address

    def admit(self, conn: Admitted) -> bool:
        """Count ``conn`` in, closing a waiting connection to make room at a cap; False
        when it must be refused (every connection concerned is being served)."""
        ip = conn.client_ip
        mine = self.per_address.get(ip)
        at_cap = mine is not None and len(mine) >= self.max_per_address
        if at_cap and not self._evict_longest_waiting(mine or ()):
            self.refused += 1
            log.info("client %s refused: MaxClientConnectionsPerAddress reached", ip)
            return False
        if self.open >= self.max_total and not self._evict_longest_waiting(self._everyone()):
            self.refused += 1
            log.info("client %s refused: MaxClientConnections reached", ip)
            return False
        if mine is None:
            mine = self.per_address[ip] = set()
        mine.add(conn)
        self.open += 1
        return True

    def leave(self, conn: Admitted) -> None:
        """``conn`` closed (or was evicted: then this second call does nothing)."""
        mine = self.per_address.get(conn.client_ip)
        if mine is None or conn not in mine:
            return
        mine.discard(conn)
        if not mine:
            del self.per_address[conn.client_ip]
        self.open -= 1

    def _everyone(self) -> Iterator[Admitted]:
        for mine in self.per_address.values():
            yield from mine

    def _evict_longest_waiting(self, candidates: Iterable[Admitted]) -> bool:
        waiting = [c for c in candidates if c.waiting_since]
        if not waiting:
            return False
        oldest = heapq.nsmallest(EVICTION_SCAN, waiting, key=_waiting_since)
        victim = next((c for c in oldest if not c.has_input()), oldest[0])
        # It stops counting now, so the new connection fits; its greenlet closes it.
        self.leave(victim)
        self.evicted += 1
        victim.evict()
        return True

    def stats(self) -> dict[str, int]:
        return {
            "open": self.open,
            "waiting_for_head": sum(1 for c in self._everyone() if c.waiting_since),
            "max_open": self.max_total,
            "evicted": self.evicted,
            "refused": self.refused,
        }


def _waiting_since(conn: Admitted) -> float:
    return conn.waiting_since
