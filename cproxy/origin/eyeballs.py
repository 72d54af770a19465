"""Connection racing, RFC 8305 "Happy Eyeballs" (issue #24).

`interleave` orders a name's addresses by alternating families, starting with the family
getaddrinfo put first (it already sorted them by the system's RFC 6724 preference, so IPv6
leads where the system prefers it). `race` then connects the way browsers do: one attempt at
a time, the next one started when ``attempt_delay_s`` passes with earlier ones still pending,
or at once when one fails; the first to connect wins and every other socket is closed before
`race` returns, whatever way it ends (a win, the deadline, the caller killed or timed out).

Each attempt is a non-blocking socket and the waiting is one `gevent.select.poll` over all
pending ones: no greenlet per attempt, so nothing can outlive the call. Every address is
offered to the destination check just before it is tried (DESIGN.md §5 rule 10).
"""

from __future__ import annotations

import errno
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import gevent.select
import gevent.socket as gsocket

from cproxy.errors import DestinationRefused

# RFC 8305 §5: "the recommended value for the Connection Attempt Delay is 250 ms".
ATTEMPT_DELAY_S = 0.25

_IN_PROGRESS = frozenset((errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY))
_CONNECTED = frozenset((0, errno.EISCONN))
_IP_FAMILIES = (gsocket.AF_INET, gsocket.AF_INET6)

AddrInfo = tuple[Any, ...]
"""A getaddrinfo 5-tuple ``(family, type, proto, canonname, sockaddr)``."""

# What became of one address (`Attempt.kind`).
PENDING = "pending"  # started, not yet connected or failed
CONNECTED = "connected"  # the winner
FAILED = "failed"  # refused, unreachable, reset: ``outcome`` has the OS's words
NO_SOCKET = "no socket"  # this host could not make a socket (no descriptors, no IPv6)
TIMED_OUT = "timed out"  # still pending when the deadline came
OVERTAKEN = "overtaken"  # started before the winner, still pending when it connected
CANCELLED = "cancelled"  # started after the winner's start, closed when it connected
POLICY = "refused by policy"  # the destination check refused it: never connected
NOT_TRIED = "not tried"  # the race ended before its turn

#: kinds that say the address did not answer in time or at all (`cproxy.origin.deadaddrs`)
DEAD_KINDS = frozenset((FAILED, TIMED_OUT, OVERTAKEN))


@dataclass(eq=False)
class Attempt:
    """One address of the race and what became of it (compared by identity: a name may
    resolve to the same address twice)."""

    info: AddrInfo
    kind: str = NOT_TRIED
    outcome: str = NOT_TRIED  # words for the error page: "Connection refused", "timed out"...
    refusal: DestinationRefused | None = None
    sock: gsocket.socket | None = field(default=None, repr=False)

    @property
    def family(self) -> int:
        return int(self.info[0])

    @property
    def sockaddr(self) -> tuple[Any, ...]:
        return tuple(self.info[4])

    def address(self) -> tuple[str, int] | None:
        """(IP text, port) for an IPv4/IPv6 address, else None."""
        if self.family in _IP_FAMILIES:
            return str(self.sockaddr[0]), int(self.sockaddr[1])
        return None

    def _close(self, kind: str, outcome: str) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.kind, self.outcome = kind, outcome


def interleave(infos: Iterable[AddrInfo]) -> list[AddrInfo]:
    """RFC 8305 §4: alternate address families, the first family being the one of the first
    address (getaddrinfo's preference), each family in its given order."""
    infos = list(infos)
    if len(infos) < 2:
        return infos  # the usual case: one address, nothing to order
    families: dict[int, deque[AddrInfo]] = {}
    for info in infos:
        families.setdefault(info[0], deque()).append(info)
    ordered: list[AddrInfo] = []
    queues = list(families.values())
    while queues:
        for queue in queues:
            ordered.append(queue.popleft())
        queues = [q for q in queues if q]
    return ordered


def race(
    infos: Iterable[AddrInfo],
    *,
    deadline: float,
    attempt_delay_s: float = ATTEMPT_DELAY_S,
    admit: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[gsocket.socket | None, list[Attempt]]:
    """Connect to the first of ``infos`` (tried in this order) that accepts before
    ``deadline`` (a ``clock()`` time). Returns the connected socket (blocking-with-gevent, no
    timeout, TCP_NODELAY set) or None, and every address with what became of it, in order.

    ``admit(address)`` raising `DestinationRefused` skips that address (no delay): it is
    never connected to. Every socket but the winner's is closed on return, and all of them,
    the winner's too, when the caller's greenlet is killed or its ``gevent.Timeout`` fires.
    """
    attempts = [Attempt(info) for info in infos]
    waiting = deque(attempts)
    pending: dict[int, Attempt] = {}  # fd -> attempt
    winner: Attempt | None = None
    next_start = clock()
    try:
        while winner is None:
            now = clock()
            if now >= deadline:
                break
            if waiting and (not pending or now >= next_start):
                attempt = waiting.popleft()
                if _start(attempt, admit):
                    if attempt.kind == CONNECTED:
                        winner = attempt
                    else:
                        assert attempt.sock is not None
                        pending[attempt.sock.fileno()] = attempt
                        next_start = now + attempt_delay_s
                # Failed at once or refused by policy: the next one starts now.
                continue
            if not pending:
                break  # every address tried and failed
            wake_at = deadline if not waiting else min(deadline, next_start)
            ready = _wait_writable(pending, wake_at - now)
            if len(ready) > 1:
                # Several at once: the earliest started wins (the poll's order is arbitrary).
                ready.sort(key=lambda fd: attempts.index(pending[fd]))
            for fd in ready:
                attempt = pending.pop(fd)
                if _finish(attempt, winner is None):
                    winner = attempt
                elif attempt.kind == FAILED:
                    next_start = clock()  # RFC 8305 §5: a failure starts the next at once
                elif attempt.kind == PENDING:
                    pending[fd] = attempt  # not connected after all: wait on
    except BaseException:
        # Killed, or the caller's timeout: nothing opened here may outlive the call.
        for attempt in attempts:
            if attempt.sock is not None:
                attempt.sock.close()
                attempt.sock = None
        raise
    started_winner = attempts.index(winner) if winner is not None else len(attempts)
    for attempt in pending.values():
        if winner is None:
            attempt._close(TIMED_OUT, "timed out")
        elif attempts.index(attempt) < started_winner:
            attempt._close(OVERTAKEN, "overtaken")
        else:
            attempt._close(CANCELLED, "cancelled")
    if winner is None:
        return None, attempts
    sock, winner.sock = winner.sock, None
    assert sock is not None
    return sock, attempts


def _wait_writable(pending: dict[int, Attempt], wait_s: float) -> list[int]:
    """The pending descriptors that became writable (connected or failed) within
    ``wait_s``; [] when none did.

    One attempt pending (the common case: one address, or the first answering within the
    delay) waits on its descriptor alone: the watcher wakes this greenlet directly, where the
    poll object's event costs one more turn of the loop, about a third more time per new
    connection on loopback (measured with bench/dns_cache.py part 2).
    """
    if wait_s <= 0:
        return []
    if len(pending) == 1:
        fd = next(iter(pending))
        try:
            gsocket.wait_write(fd, timeout=wait_s)
        except TimeoutError:
            return []
        return [fd]
    poller = gevent.select.poll()  # its watchers live only while poll() waits
    for fd in pending:
        poller.register(fd, gevent.select.POLLOUT)
    return [fd for fd, _events in poller.poll(wait_s * 1000.0)]


def _start(attempt: Attempt, admit: Callable[[str], None] | None) -> bool:
    """Check and start one attempt; True when it connected or is in progress."""
    family, socktype, proto = attempt.info[0], attempt.info[1], attempt.info[2]
    if admit is not None:
        address = attempt.address()
        try:
            if address is None:
                raise DestinationRefused(f"Refusing to connect to {attempt.sockaddr!r}.")
            admit(address[0])
        except DestinationRefused as refusal:
            attempt.kind, attempt.outcome, attempt.refusal = POLICY, POLICY, refusal
            return False
    try:
        sock = gsocket.socket(family, socktype or gsocket.SOCK_STREAM, proto)
    except OSError as exc:
        # Too many open files, a family this host lacks: our trouble, not the address's
        # (not remembered as dead), and the next address may still work.
        attempt._close(NO_SOCKET, exc.strerror or str(exc))
        return False
    attempt.sock = sock
    try:
        sock.settimeout(0.0)  # non-blocking: connect_ex returns at once
        err = sock.connect_ex(attempt.sockaddr)
    except OSError as exc:
        attempt._close(FAILED, exc.strerror or str(exc))
        return False
    if err in _CONNECTED:
        return _won(attempt)
    if err in _IN_PROGRESS:
        attempt.kind, attempt.outcome = PENDING, PENDING
        return True
    attempt._close(FAILED, os.strerror(err))
    return False


def _finish(attempt: Attempt, may_win: bool) -> bool:
    """The poll found ``attempt``'s socket writable: True when it connected and wins."""
    sock = attempt.sock
    assert sock is not None
    try:
        err = sock.getsockopt(gsocket.SOL_SOCKET, gsocket.SO_ERROR)
        if not err:
            sock.getpeername()  # ENOTCONN: a wake-up before the handshake finished
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            return False  # still PENDING: the caller waits on
        err = exc.errno or errno.ECONNABORTED
    if err:
        attempt._close(FAILED, os.strerror(err))
        return False
    if not may_win:
        attempt._close(CANCELLED, "cancelled")  # connected in the same poll as the winner
        return False
    return _won(attempt)


def _won(attempt: Attempt) -> bool:
    sock = attempt.sock
    assert sock is not None
    try:
        if attempt.family in _IP_FAMILIES:
            # Requests are written whole: Nagle's algorithm would only add latency.
            sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
        sock.settimeout(None)  # blocking-with-gevent: the forwarding code sets its timeouts
    except OSError as exc:  # reset between connect and setsockopt
        attempt._close(FAILED, exc.strerror or str(exc))
        return False
    attempt.kind, attempt.outcome = CONNECTED, CONNECTED
    return True
