"""Counts of the responses cproxy sent: per status code, and a latency histogram.

One `ResponseStats` per Runtime; every request's end calls `record` (the fast lane's
hits and the general path alike), so `/metrics` can give per-code rates and latency
quantiles. `record` is a dict increment and a bisect: well under a microsecond, cheap
enough for the hit path.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

# Upper bounds of the latency buckets, in seconds: from a cache hit (well under a
# millisecond) to a slow origin; Prometheus adds +Inf.
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class ResponseStats:
    """Responses by status code, and how long each request took (start to logged end)."""

    __slots__ = ("_buckets", "by_status", "latency_sum_s")

    def __init__(self) -> None:
        self.by_status: dict[int, int] = {}
        # One count per bucket, the last for requests slower than every bound.
        self._buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.latency_sum_s = 0.0

    def record(self, status: int, elapsed_s: float) -> None:
        """Count one response; ``status`` 0 (nothing sent) is counted as such."""
        by_status = self.by_status
        by_status[status] = by_status.get(status, 0) + 1
        self._buckets[bisect_left(LATENCY_BUCKETS_S, elapsed_s)] += 1
        self.latency_sum_s += elapsed_s

    def latency_buckets(self) -> list[tuple[float, int]]:
        """Cumulative (upper bound, count) pairs, the last bound ``inf``."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), self._buckets, strict=True):
            total += count
            out.append((bound, total))
        return out

    def stats(self) -> dict[str, Any]:
        """The figures for runtime.stats()."""
        return {
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
            "latency_buckets": self.latency_buckets(),
            "latency_sum_s": self.latency_sum_s,
        }
