"""Pool telemetry: cap events (rate-limited warnings and a ring of recent ones) and the
histogram of time requests spent waiting for an origin connection.

Kept apart from the pool's bookkeeping so that ``pool.py`` only counts and hands out
sockets. Neither part does I/O beyond the logging call; both take the time from their
caller, so tests drive them with a fake clock.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cproxy.origin.pool")

# Why each cap event happens, for the warning and the status page.
EVENT_KINDS: dict[str, str] = {
    "idle_full": "idle list full (MaxSocketPerServer): a released connection was closed",
    "evicted": "global idle cap (MaxIdleSockets): the least recently used idle connection "
    "was closed",
    "queued": "connection cap (MaxConnPerServer) reached: requests wait in the queue",
    "queue_timeout": "a request waited ServerConnQueueTimeout for a connection: answered 503",
    "standby_failed": "a standby connection (ServerConnStandby) could not be opened",
}

# One warning per origin and kind per minute: a saturated origin hits its cap on every
# request, and the error log must stay readable. Suppressed repeats are counted and
# reported with the next warning.
WARN_INTERVAL_S = 60.0
# The status page shows this many recent events (newest first).
RECENT_EVENTS = 50

# Upper bounds (seconds) of the wait-time buckets: from a hand-off within one loop turn to
# the longest queue timeout a user would set.
WAIT_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PoolEvents:
    """Rate-limited warnings per (origin, kind) and a bounded ring of recent events."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = WARN_INTERVAL_S,
        keep: int = RECENT_EVENTS,
    ) -> None:
        self._clock = clock
        self._interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)

    def note(self, origin: str, kind: str, detail: str = "") -> bool:
        """Record that ``kind`` happened at ``origin``; returns whether it was logged.

        Logged (and listed in ``recent()``) at most once per interval per origin and kind;
        the repeats in between are counted into the next record's ``repeats``.
        """
        where = (origin, kind)
        now = self._clock()
        last = self._last.get(where)
        if last is not None and now - last < self._interval_s:
            self._suppressed[where] = self._suppressed.get(where, 0) + 1
            return False
        if len(self._last) >= 4 * RECENT_EVENTS * len(EVENT_KINDS):
            # Bounded memory for a forward proxy that meets thousands of origins: the
            # oldest entries go, at worst allowing one early repeat for them.
            for stale in list(self._last)[: len(self._last) // 2]:
                del self._last[stale]
                self._suppressed.pop(stale, None)
        self._last[where] = now
        repeats = self._suppressed.pop(where, 0)
        text = EVENT_KINDS.get(kind, kind)
        if detail:
            text = f"{text} ({detail})"
        more = f"; {repeats} more since the last warning" if repeats else ""
        log.warning("origin pool: %s: %s%s", origin, text, more)
        event = {"time": time.time(), "origin": origin, "kind": kind, "message": text}
        self._recent.append({**event, "repeats": repeats})
        return True

    def recent(self) -> list[dict[str, Any]]:
        """The latest events, newest first."""
        return list(reversed(self._recent))


class WaitHistogram:
    """Cumulative counts of wait times, in the shape Prometheus histograms use."""

    def __init__(self, buckets_s: tuple[float, ...] = WAIT_BUCKETS_S) -> None:
        self.buckets_s = buckets_s
        self._counts = [0] * (len(buckets_s) + 1)  # the last one is +Inf
        self.sum_s = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self.buckets_s, seconds)] += 1
        self.sum_s += seconds
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        """``buckets``: [(upper bound or "+Inf", cumulative count)], ``sum_s``, ``count``."""
        cumulative = 0
        buckets: list[tuple[float | str, int]] = []
        bounds: list[float | str] = [*self.buckets_s, "+Inf"]
        for bound, n in zip(bounds, self._counts, strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        return {"buckets": buckets, "sum_s": self.sum_s, "count": self.count}
