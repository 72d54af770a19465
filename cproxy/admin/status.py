"""Figures for the status page, its JSON endpoint and the Prometheus ``/metrics``.

``runtime.stats()`` gives counters since start. Rates (requests per second) and the
hit ratio over recent minutes need samples over time: ``StatsHistory`` keeps a bounded
ring of them, filled by a greenlet every ``SAMPLE_INTERVAL_S`` (see server.py) and read
by ``/status.json``, so every browser tab sees the same history, also right after it
opens.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cproxy.admin.connectmetrics import connecting_families, connecting_snapshot
from cproxy.admin.poolmetrics import origin_label, pool_families

# Sampling every 5 seconds for 10 minutes: 120 points, enough detail for a small chart.
SAMPLE_INTERVAL_S = 5.0
HISTORY_SAMPLES = 120

Stats = Mapping[str, Any]


@dataclass(frozen=True)
class Sample:
    """Counters read at one moment (monotonic clock seconds)."""

    t: float
    requests_total: int
    hits: int
    misses: int


def _cache_counts(stats: Stats) -> tuple[int, int]:
    cache = stats.get("cache") or {}
    return int(cache.get("hits", 0)), int(cache.get("misses", 0))


def hit_ratio(hits: int, misses: int) -> float | None:
    """Hits / lookups, or None when there were no lookups."""
    lookups = hits + misses
    return hits / lookups if lookups else None


class StatsHistory:
    """A bounded ring of samples and the rates between them."""

    def __init__(
        self, maxlen: int = HISTORY_SAMPLES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._samples: deque[Sample] = deque(maxlen=maxlen)
        self._clock = clock

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def maxlen(self) -> int:
        """How many samples the ring keeps."""
        return self._samples.maxlen or 0

    def record(self, stats: Stats) -> Sample:
        """Append a sample of ``stats`` taken now."""
        hits, misses = _cache_counts(stats)
        sample = Sample(self._clock(), int(stats.get("requests_total", 0)), hits, misses)
        self._samples.append(sample)
        return sample

    def series(self) -> list[dict[str, float | None]]:
        """One point per interval between samples: age (s, negative), rps, hit ratio."""
        samples = list(self._samples)
        if not samples:
            return []
        now = samples[-1].t
        points: list[dict[str, float | None]] = []
        for before, after in itertools.pairwise(samples):
            elapsed = after.t - before.t
            if elapsed <= 0:
                continue
            # A counter going down means the runtime was replaced; show a gap, not a dip.
            requests = after.requests_total - before.requests_total
            hits, misses = after.hits - before.hits, after.misses - before.misses
            points.append(
                {
                    "age_s": round(after.t - now, 3),
                    "rps": requests / elapsed if requests >= 0 else None,
                    "hit_ratio": hit_ratio(hits, misses) if min(hits, misses) >= 0 else None,
                }
            )
        return points


def shared_snapshot(stats: Stats) -> dict[str, Any] | None:
    """The shared cache tier's figures for the status page (None without SharedCache)."""
    shared = (stats.get("cache") or {}).get("shared")
    if not shared:
        return None
    calls = shared.get("calls", 0)
    doc = {key: shared.get(key) for key in _SHARED_SHOWN}
    doc["subscribed"] = "yes" if shared.get("subscribed") else "no"
    doc["hit_ratio"] = hit_ratio(int(shared.get("hits", 0)), int(shared.get("misses", 0)))
    doc["mean_latency_ms"] = 1000 * shared.get("latency_sum_s", 0.0) / calls if calls else None
    return doc


_SHARED_SHOWN = ("state", "hits", "misses", "errors", "malformed", "dropped_writes", "writes")

# The shared tier's counters in runtime.stats()["cache"]["shared"] -> /metrics help text.
_SHARED_COUNTERS = {
    "hits": "Lookups the shared cache tier answered with a stored response",
    "misses": "Lookups the shared cache tier had nothing for",
    "errors": "Shared cache tier calls that failed or timed out",
    "malformed": "Values read from the shared cache tier that did not check out (ignored)",
    "skipped": "Shared cache tier calls not made because its circuit breaker was open",
    "writes": "Responses written to the shared cache tier",
    "dropped_writes": "Writes to the shared cache tier dropped (queue full, breaker open, failed)",
    "too_large": "Responses too large for the shared cache tier (SharedCacheMaxEntry)",
    "purges_received": "Purges received from other nodes through the shared cache tier",
    "lease_waits": "Misses that waited for another node's fetch (cross-node collapsing)",
    "breaker_opens": "Times the shared cache tier's circuit breaker opened",
    "subscriptions_lost": "Times the shared cache tier's event subscription was lost",
}
_BREAKER_STATES = ("closed", "open", "half-open")


def shared_families(shared: Stats) -> Iterator[Metric]:
    """/metrics families of the shared cache tier."""
    state = GaugeMetricFamily(
        "cproxy_shared_cache_state",
        "State of the shared cache tier's circuit breaker (1 for the current one)",
        labels=["state"],
    )
    for name in _BREAKER_STATES:
        state.add_metric([name], 1.0 if shared.get("state") == name else 0.0)
    yield state
    yield _gauge(
        "cproxy_shared_cache_subscribed",
        "1 while the node is subscribed to the shared cache tier's events",
        1 if shared.get("subscribed") else 0,
    )
    yield _gauge(
        "cproxy_shared_cache_queued_writes",
        "Writes waiting for the shared cache tier",
        shared.get("queued_writes", 0),
    )
    for key, help_text in _SHARED_COUNTERS.items():
        counter = CounterMetricFamily(f"cproxy_shared_cache_{key}", help_text)
        counter.add_metric([], float(shared.get(key, 0)))
        yield counter
    buckets, total = [], 0
    for bound, count in (shared.get("latency_buckets") or {}).items():
        total += int(count)
        buckets.append((bound, float(total)))
    yield HistogramMetricFamily(
        "cproxy_shared_cache_call_seconds",
        "Duration of successful shared cache tier calls",
        buckets=buckets,
        sum_value=float(shared.get("latency_sum_s", 0.0)),
    )


def interception_snapshot(stats: Stats) -> dict[str, Any] | None:
    """HTTPS interception's figures for the status page (None until a CA is loaded)."""
    figures = stats.get("interception") or {}
    if not figures.get("ready"):
        return None
    doc = {key: figures.get(key, 0) for key in _INTERCEPTION_COUNTERS}
    doc["ca_fingerprint"] = figures.get("ca_fingerprint", "")
    doc["leaves_cached"] = figures.get("leaves_cached", 0)
    doc["handshake_failures"] = sum((figures.get("handshake_failures") or {}).values())
    splices = figures.get("splices") or {}
    doc["splices"] = sum(splices.values())
    doc["splices_by_reason"] = dict(splices)
    return doc


# HTTPS interception's counters in runtime.stats()["interception"] -> /metrics help text.
_INTERCEPTION_COUNTERS = {
    "handshakes": "TLS handshakes with clients completed with cproxy's certificates",
    "intercepted_requests": "Requests served inside intercepted connections",
    "upstream_verify_failures": "Intercepted requests whose origin certificate failed "
    "verification (answered 502)",
    "leaves_generated": "Leaf certificates made (first use of a host and renewals)",
    "leaves_cache_hits": "Handshakes served a leaf certificate from the cache",
}


def interception_families(figures: Stats) -> Iterator[Metric]:
    """/metrics families of HTTPS interception (issue #19)."""
    for key, help_text in _INTERCEPTION_COUNTERS.items():
        counter = CounterMetricFamily(f"cproxy_intercept_{key}", help_text)
        counter.add_metric([], float(figures.get(key, 0)))
        yield counter
    yield _gauge(
        "cproxy_intercept_leaves_cached",
        "Leaf certificates (ready TLS contexts) in the cache (SSLLeafCacheSize)",
        figures.get("leaves_cached", 0),
    )
    yield _gauge(
        "cproxy_intercept_pinned_pairs",
        "(client, host) pairs spliced because the client rejected cproxy's certificate",
        figures.get("pinned_pairs", 0),
    )
    failures = CounterMetricFamily(
        "cproxy_intercept_handshake_failures",
        "Client connections refused during interception, by reason",
        labels=["reason"],
    )
    for reason, count in sorted((figures.get("handshake_failures") or {}).items()):
        failures.add_metric([reason], float(count))
    yield failures
    splices = CounterMetricFamily(
        "cproxy_intercept_splices",
        "CONNECT tunnels passed untouched while interception is on, by reason",
        labels=["reason"],
    )
    for reason, count in (figures.get("splices") or {}).items():
        splices.add_metric([reason], float(count))
    yield splices


def status_snapshot(stats: Stats, history: StatsHistory) -> dict[str, Any]:
    """The document served as ``/status.json`` (and rendered by the status page)."""
    connections = stats.get("connections") or {}
    cache = stats.get("cache")
    pool = stats.get("pool") or {}
    series = history.series()
    current_rps = series[-1]["rps"] if series else None
    cache_doc: dict[str, Any] | None = None
    if cache is not None:
        cache_doc = {
            key: cache.get(key)
            for key in ("objects", "bytes", "max_bytes", "hits", "misses", "evictions")
        }
        cache_doc["hit_ratio"] = hit_ratio(*_cache_counts(stats))
    origins = [
        {"origin": origin_label(key), **dict(values)}
        for key, values in sorted(
            (pool.get("origins") or {}).items(), key=lambda kv: origin_label(kv[0])
        )
    ]
    return {
        "connections": {
            "active": connections.get("active", 0),
            "waiting": connections.get("waiting", 0),
        },
        "uptime_s": stats.get("uptime_s"),
        "requests_total": stats.get("requests_total", 0),
        "requests_per_s": current_rps,
        "responses_by_status": dict((stats.get("responses") or {}).get("by_status") or {}),
        "parents": list(stats.get("parents") or []),
        "cache": cache_doc,
        "shared": shared_snapshot(stats),
        "interception": interception_snapshot(stats),
        "connecting": connecting_snapshot(stats),
        "pool": {
            "origins": origins,
            "totals": dict(pool.get("totals") or {}),
            # Cap events (issue #11), newest first, for the status page.
            "events": [
                {**e, "at": time.strftime("%H:%M:%S UTC", time.gmtime(e.get("time", 0)))}
                for e in pool.get("events") or []
            ],
        },
        "series": series,
        "sample_interval_s": SAMPLE_INTERVAL_S,
        # The span the charts cover: a full ring of samples.
        "window_s": SAMPLE_INTERVAL_S * history.maxlen,
    }


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class RuntimeCollector(Collector):
    """A prometheus_client collector reading ``stats()`` at every scrape.

    It gives what ``/status.json`` shows (the request rate from ``history`` when given),
    plus responses by status code and a request latency histogram."""

    def __init__(self, stats: Callable[[], Stats], history: StatsHistory | None = None) -> None:
        self._stats = stats
        self._history = history

    def collect(self) -> Iterator[Metric]:
        """Yield the current figures as metric families."""
        stats = self._stats()
        yield _gauge("cproxy_uptime_seconds", "Seconds since cproxy started", stats.get("uptime_s"))
        connections = stats.get("connections") or {}
        yield _gauge(
            "cproxy_connections_max_active",
            "Most client connections served at once (MaxActiveThreads)",
            connections.get("max_active", 0),
        )
        if self._history is not None:
            series = self._history.series()
            rps = series[-1]["rps"] if series else None
            if rps is not None:
                yield _gauge(
                    "cproxy_requests_per_second",
                    f"Requests per second over the last {SAMPLE_INTERVAL_S:g} s sample",
                    rps,
                )
        yield from _response_metrics(stats.get("responses") or {})
        yield _gauge(
            "cproxy_connections_active",
            "Client connections being served",
            connections.get("active", 0),
        )
        yield _gauge(
            "cproxy_connections_waiting",
            "Client connections held until a handler is free",
            connections.get("waiting", 0),
        )
        requests = CounterMetricFamily("cproxy_requests", "Client requests handled")
        requests.add_metric([], float(stats.get("requests_total", 0)))
        yield requests

        cache = stats.get("cache")
        if cache is not None:
            for key, help_text in (
                ("objects", "Objects in the memory cache"),
                ("bytes", "Memory held by the memory cache's entries, as CacheMemory counts it"),
                ("max_bytes", "Size of the memory cache (CacheMemory)"),
            ):
                yield _gauge(f"cproxy_cache_{key}", help_text, cache.get(key, 0))
            for key, help_text in (
                ("hits", "Requests answered from the cache"),
                ("misses", "Cacheable requests not found in the cache"),
                ("evictions", "Objects evicted to make room"),
            ):
                counter = CounterMetricFamily(f"cproxy_cache_{key}", help_text)
                counter.add_metric([], float(cache.get(key, 0)))
                yield counter
            ratio = hit_ratio(*_cache_counts(stats))
            if ratio is not None:
                yield _gauge("cproxy_cache_hit_ratio", "Hits / (hits + misses) since start", ratio)
            if cache.get("shared"):
                yield from shared_families(cache["shared"])

        yield from pool_families(stats.get("pool") or {})
        yield from connecting_families(stats)
        interception = stats.get("interception") or {}
        if interception.get("ready"):
            yield from interception_families(interception)


def _response_metrics(responses: Stats) -> Iterator[Metric]:
    by_status = CounterMetricFamily(
        "cproxy_responses", "Responses sent, by status code (0: none sent)", labels=["code"]
    )
    for code, count in (responses.get("by_status") or {}).items():
        by_status.add_metric([str(code)], float(count))
    yield by_status
    buckets = responses.get("latency_buckets")
    if buckets:
        yield HistogramMetricFamily(
            "cproxy_request_duration_seconds",
            "Time from a request's head to the end of its response",
            buckets=[(_bound(le), float(count)) for le, count in buckets],
            sum_value=float(responses.get("latency_sum_s", 0.0)),
        )


def _bound(le: float) -> str:
    return "+Inf" if le == float("inf") else f"{le:g}"


class ConfigCollector(Collector):
    """The admin's view of the configuration: directives waiting for a restart, and
    whether the directive file on disk loads (both on the status page)."""

    def __init__(
        self, pending_restart: Callable[[], list[str]], file_problem: Callable[[], str | None]
    ) -> None:
        self._pending = pending_restart
        self._problem = file_problem

    def collect(self) -> Iterator[Metric]:
        """Yield the two gauges."""
        yield _gauge(
            "cproxy_config_pending_restart",
            "Directives changed that take effect at the next restart",
            len(self._pending()),
        )
        yield _gauge(
            "cproxy_config_file_loads",
            "1 when the directive file on disk loads, 0 when it is broken",
            0 if self._problem() else 1,
        )


def _gauge(name: str, help_text: str, value: object) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=_number(value) or 0.0)
