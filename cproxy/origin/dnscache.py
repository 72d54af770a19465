"""A small cache in front of the resolver every origin connection uses (issue #24).

Measured by bench/dns_cache.py: gevent's default resolver hands each lookup to its thread
pool, 40-150 µs per lookup on loopback (/etc/hosts) against well under 1 µs for a dict hit;
with ServerConnPool off, where each request opens a new origin connection, cproxy spent about
100-120 µs more CPU per request (a quarter of it) for a name than for an address literal.
docs/CONNECTING.md has the figures.

getaddrinfo gives no TTLs, so answers are kept for a fixed time, as Chromium's HostCache does
for the system resolver's answers (1 minute) and curl's DNS cache does (60 s): ``positive_s``
(DNSCacheTimeout) for addresses, ``negative_s`` (DNSNegativeCacheTimeout) for a name that does
not exist. A temporary failure (EAI_AGAIN, a timeout) is never kept. Addresses from the cache
are checked by the destination policy at each connection like fresh ones (DESIGN.md §5 rule
10), so caching cannot get round it. Bounded (least recently used forgotten first), with an
injected clock for the tests.
"""

from __future__ import annotations

import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

# Names remembered at most: a forward proxy's working set of origins within a minute.
MAX_NAMES = 4096

# getaddrinfo errors that say the name has no address (kept negative_s), as opposed to a
# resolver that could not answer now (EAI_AGAIN, EAI_FAIL...: never kept).
_NO_SUCH_NAME = frozenset(
    code
    for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
    if code is not None
)

Answer = list[tuple[Any, ...]]


class DNSCache:
    """``resolve(host, port)`` through a bounded cache of ``inner``'s answers; a `Resolver`.

    Keyed by (host, port): getaddrinfo puts the port in each sockaddr. Not thread-safe: one
    per process, used from its hub only.
    """

    def __init__(
        self,
        inner: Callable[[str, int], Answer],
        positive_s: float = 60.0,
        negative_s: float = 10.0,
        capacity: int = MAX_NAMES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, not {capacity}")
        self.inner = inner
        self._capacity = capacity
        self._clock = clock
        # (host, port) -> (expires at, the answer or the gaierror's (errno, text))
        self._entries: OrderedDict[tuple[str, int], tuple[float, Answer | tuple[int, str]]] = (
            OrderedDict()
        )
        self._positive_s = self._negative_s = 0.0
        self.reconfigure(positive_s, negative_s)
        # Counters since start for the status page and /metrics.
        self.hits = 0  # answered from the cache, addresses or "no such name"
        self.negative_hits = 0  # of those, "no such name" answers
        self.misses = 0  # asked the resolver
        self.evictions = 0  # entries dropped to stay within capacity

    def reconfigure(self, positive_s: float, negative_s: float) -> None:
        """New keep times (0 = do not keep); entries kept so far expire as they were."""
        if positive_s < 0 or negative_s < 0:
            raise ValueError(f"keep times must be >= 0, not {positive_s}, {negative_s}")
        self._positive_s, self._negative_s = positive_s, negative_s
        if not positive_s and not negative_s:
            self.clear()

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __call__(self, host: str, port: int) -> Answer:
        key = (host, port)
        entry = self._entries.get(key)
        if entry is not None:
            expires, answer = entry
            if self._clock() < expires:
                self.hits += 1
                self._entries.move_to_end(key)
                if isinstance(answer, tuple):
                    self.negative_hits += 1
                    # A new error each time: raising one object again would grow its traceback.
                    raise socket.gaierror(*answer)
                return list(answer)
            del self._entries[key]
        self.misses += 1
        try:
            answer = self.inner(host, port)
        except socket.gaierror as exc:
            code = exc.errno
            if self._negative_s and code is not None and code in _NO_SUCH_NAME:
                self._keep(key, self._negative_s, (code, exc.strerror or str(exc)))
            raise
        if self._positive_s and answer:
            self._keep(key, self._positive_s, list(answer))
        return answer

    def _keep(self, key: tuple[str, int], keep_s: float, answer: Answer | tuple[int, str]) -> None:
        self._entries[key] = (self._clock() + keep_s, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
            self.evictions += 1

    def stats(self) -> dict[str, float]:
        """Figures for runtime.stats(): entries held now (some may have expired, unread),
        the counters since start, and the keep times (DNSCacheTimeout,
        DNSNegativeCacheTimeout)."""
        return {
            "entries": len(self._entries),
            "hits": self.hits,
            "negative_hits": self.negative_hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "positive_s": self._positive_s,
            "negative_s": self._negative_s,
        }
