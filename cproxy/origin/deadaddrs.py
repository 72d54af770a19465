"""A bounded memory of origin addresses that failed to connect (issue #24).

An address that refused, was unreachable, timed out, or was overtaken in a connection race
(`cproxy.origin.eyeballs`) is remembered for ``remember_s`` (DeadAddressTimeout); while it is,
`order` puts it after the live addresses of any name that resolves to it, so the next request
connects to a live one at once instead of waiting ConnectAttemptDelay for the dead one
again. Squid's ipcache marks bad addresses the same way. It is never skipped: when every
address is dead, all are still tried, in their usual order.

The key is the address and port, not the name: a black-holed address or a broken IPv6 route
is dead for every name that resolves to it, and a refused port says nothing of other ports.
A success clears the mark. Bounded (least recently marked forgotten first) with an injected
clock, so tests age entries without sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")

# Addresses remembered at most. A mark is ~200 bytes; 4096 covers the dead addresses a busy
# forward proxy meets within DeadAddressTimeout (a broken IPv6 route marks one per origin).
MAX_DEAD_ADDRESSES = 4096
# RFC 8305 §4 leaves the time to the implementation; 10 minutes is the order of DNS TTLs,
# after which the name may resolve differently anyway, and short enough that an origin that
# came back is used again soon.
DEAD_ADDRESS_TIMEOUT_S = 600.0


class DeadAddresses:
    """Addresses (IP text and port) that failed to connect, each until ``remember_s`` after
    its latest failure. Not thread-safe: one per process, used from its hub only."""

    def __init__(
        self,
        remember_s: float = DEAD_ADDRESS_TIMEOUT_S,
        capacity: int = MAX_DEAD_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if remember_s < 0:
            raise ValueError(f"remember_s must be >= 0 (0 = remember nothing), not {remember_s}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, not {capacity}")
        self._remember_s = remember_s
        self._capacity = capacity
        self._clock = clock
        # (address, port) -> when the mark expires, least recently marked first.
        self._until: OrderedDict[tuple[str, int], float] = OrderedDict()
        # Counters since start for the status page and /metrics (cheap: connect path only).
        self.marks = 0  # failures recorded (an address marked again counts again)
        self.cleared = 0  # marks removed because the address connected
        self.forgotten = 0  # marks dropped to stay within capacity

    @property
    def remember_s(self) -> float:
        """How long a failed address is tried last (DeadAddressTimeout); 0 = not at all."""
        return self._remember_s

    @remember_s.setter
    def remember_s(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"remember_s must be >= 0 (0 = remember nothing), not {value}")
        self._remember_s = value
        if value == 0:
            self._until.clear()

    def mark(self, address: str, port: int) -> None:
        """Remember that ``address``:``port`` failed to connect, from now."""
        if self._remember_s == 0:
            return
        key = (address, port)
        self.marks += 1
        self._until[key] = self._clock() + self._remember_s
        self._until.move_to_end(key)
        while len(self._until) > self._capacity:
            self._until.popitem(last=False)
            self.forgotten += 1

    def clear(self, address: str, port: int) -> None:
        """Forget ``address``:``port`` (it just connected)."""
        if self._until.pop((address, port), None) is not None:
            self.cleared += 1

    def is_dead(self, address: str, port: int) -> bool:
        """Whether ``address``:``port`` failed within ``remember_s``."""
        until = self._until.get((address, port))
        if until is None:
            return False
        if self._clock() >= until:
            del self._until[(address, port)]
            return False
        return True

    def order(
        self, items: Iterable[T], address_of: Callable[[T], tuple[str, int] | None]
    ) -> list[T]:
        """``items`` with the dead ones moved to the end, both groups in their given order.
        ``address_of(item)`` gives an item's (address, port), or None for one that is never
        dead (not an IP address)."""
        live: list[T] = []
        dead: list[T] = []
        for item in items:
            addr = address_of(item)
            (dead if addr is not None and self.is_dead(*addr) else live).append(item)
        return live + dead

    def __len__(self) -> int:
        return len(self._until)

    def snapshot(self) -> list[tuple[str, int]]:
        """The (address, port) pairs marked now, least recently marked first."""
        now = self._clock()
        return [key for key, until in self._until.items() if until > now]

    def stats(self) -> dict[str, float]:
        """Figures for runtime.stats(): addresses remembered now (marks not yet expired),
        the counters since start, and DeadAddressTimeout."""
        now = self._clock()
        return {
            "remembered": sum(1 for until in self._until.values() if until > now),
            "marks": self.marks,
            "cleared": self.cleared,
            "forgotten": self.forgotten,
            "remember_s": self._remember_s,
        }
