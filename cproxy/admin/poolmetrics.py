"""The origin pool's figures as Prometheus metric families (issue #11).

Every figure ``OriginPool.stats()`` has per origin becomes one family labelled by origin,
plus the histogram of time requests waited for a connection. A forward proxy meets
thousands of hosts, so the origin label is bounded: the ``MAX_ORIGIN_LABELS`` busiest
origins (by requests sent: connections created + reuses) get their own series, and
everything else, including origins the pool no longer tracks, is summed under
``origin="other"``; the series of one family therefore always add up to the pool's totals.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

# 20 series per figure keeps a scrape small (20 origins x 17 figures) and covers the
# origins of a reverse proxy, or the few a forward proxy's users hit most.
MAX_ORIGIN_LABELS = 20
OTHER = "other"

# Figure in stats() -> (counter?, help). Declared here once; a test checks that every
# figure the pool reports has an entry.
POOL_FIGURES: dict[str, tuple[bool, str]] = {
    "idle": (False, "Idle pooled connections to the origin"),
    "in_use": (False, "Connections to the origin in use by a request"),
    "pending_connects": (False, "Connections to the origin being opened"),
    "waiting": (False, "Requests queued for a connection (MaxConnPerServer reached)"),
    "created": (True, "Connections opened to the origin"),
    "reused": (True, "Requests sent on a pooled connection"),
    "expired": (True, "Pooled connections closed for age (ServerConnTimeout)"),
    "dropped_dead": (True, "Pooled connections found closed or dirty at checkout"),
    "dropped_full": (True, "Released connections closed: idle list full (MaxSocketPerServer)"),
    "discarded": (True, "Connections discarded instead of pooled"),
    "retired": (True, "Connections closed after MaxPersistRequestPerServer requests"),
    "evicted": (True, "Idle connections closed to make room (MaxIdleSockets, the cap)"),
    "connect_failures": (True, "Failed attempts to open a connection to the origin"),
    "closed": (True, "Connections to the origin closed, by any path"),
    "waits": (True, "Requests that queued for a connection"),
    "wait_timeouts": (True, "Queued requests answered 503 after ServerConnQueueTimeout"),
    "wait_abandoned": (True, "Queued requests whose client closed its connection"),
    "h2_connections": (False, "Shared HTTP/2 connections to the origin"),
    "h2_streams_in_flight": (False, "HTTP/2 streams open to the origin"),
    "h2_buffered_bytes": (
        False,
        "HTTP/2 response bytes received and not yet taken by clients (bounded by windows)",
    ),
    "h2_streams": (True, "Requests sent as HTTP/2 streams"),
    "h2_goaways": (True, "GOAWAY frames received from the origin"),
    "h2_unprocessed": (
        True,
        "HTTP/2 requests the origin did not process (REFUSED_STREAM, above GOAWAY): sent again",
    ),
    "h2_window_stalls": (True, "Request bodies that waited for the origin's HTTP/2 window"),
}


def origin_label(key: object) -> str:
    """Show an origin key ((scheme, host, port) or text) as ``scheme://host:port``."""
    if isinstance(key, tuple) and len(key) == 3:
        scheme, host, port = key
        return f"{scheme}://{host}:{port}"
    return str(key)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def bounded_origins(
    pool: Mapping[str, Any], limit: int = MAX_ORIGIN_LABELS
) -> dict[str, dict[str, float]]:
    """Per-origin figures for at most ``limit`` origins plus ``other`` (the rest, so that the
    series add up to ``pool["totals"]`` when it is given)."""
    origins = pool.get("origins") or {}

    def activity(item: tuple[object, Mapping[str, Any]]) -> float:
        values = item[1]
        return (_number(values.get("created")) or 0.0) + (_number(values.get("reused")) or 0.0)

    ranked = sorted(origins.items(), key=activity, reverse=True)
    shown: dict[str, dict[str, float]] = {}
    for key, values in ranked[:limit]:
        shown[origin_label(key)] = {
            name: number
            for name in POOL_FIGURES
            if (number := _number(values.get(name))) is not None
        }
    totals = pool.get("totals")
    if totals:
        rest: dict[str, float] = {}
        for name in POOL_FIGURES:
            total = _number(totals.get(name))
            if total is None:
                continue
            rest[name] = max(0.0, total - sum(v.get(name, 0.0) for v in shown.values()))
        if len(ranked) > limit or any(rest.values()):
            shown[OTHER] = rest
    return shown


def pool_families(pool: Mapping[str, Any]) -> Iterator[Metric]:
    """The pool's metric families from ``runtime.stats()["pool"]``."""
    series = bounded_origins(pool)
    for name, (is_counter, help_text) in POOL_FIGURES.items():
        family: GaugeMetricFamily | CounterMetricFamily
        metric = f"cproxy_origin_pool_{name}"
        if is_counter:
            family = CounterMetricFamily(metric, help_text, labels=["origin"])
        else:
            family = GaugeMetricFamily(metric, help_text, labels=["origin"])
        seen = False
        for origin, values in series.items():
            if name in values:
                family.add_metric([origin], values[name])
                seen = True
        if seen:
            yield family
    waits = pool.get("wait_times")
    if waits:
        buckets = [
            (bound if isinstance(bound, str) else repr(float(bound)), float(count))
            for bound, count in waits["buckets"]
        ]
        yield HistogramMetricFamily(
            "cproxy_origin_pool_wait_seconds",
            "Time queued requests waited for an origin connection",
            buckets=buckets,
            sum_value=float(waits["sum_s"]),
        )
