"""How origin connections are made, as figures (issue #24): the dead-address memory and the
DNS cache, for the status page, ``/status.json`` and ``/metrics``.

Both read ``runtime.stats()["connecting"]``, which `DeadAddresses.stats()` and
`DNSCache.stats()` fill. Each figure is declared once here with its metric name, whether it
is a counter, and its help text; a test checks that every figure the two classes report has
an entry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# Figure in DeadAddresses.stats() -> (metric, counter?, help).
DEAD_FIGURES: dict[str, tuple[str, bool, str]] = {
    "remembered": (
        "cproxy_dead_addresses",
        False,
        "Origin addresses remembered as failed, tried last until DeadAddressTimeout",
    ),
    "marks": (
        "cproxy_dead_address_marks",
        True,
        "Origin addresses marked failed (refused, unreachable, timed out, overtaken)",
    ),
    "cleared": (
        "cproxy_dead_address_cleared",
        True,
        "Marks removed because the address connected again",
    ),
    "forgotten": (
        "cproxy_dead_address_forgotten",
        True,
        "Marks dropped to stay within the memory's bound",
    ),
    "remember_s": (
        "cproxy_dead_address_timeout_seconds",
        False,
        "How long a failed address is tried last (DeadAddressTimeout)",
    ),
}

# Figure in DNSCache.stats() -> (metric, counter?, help).
DNS_FIGURES: dict[str, tuple[str, bool, str]] = {
    "entries": (
        "cproxy_dns_cache_entries",
        False,
        "Names (with port) held by the DNS cache",
    ),
    "hits": (
        "cproxy_dns_cache_hits",
        True,
        "Origin name lookups answered by the DNS cache (addresses or no such name)",
    ),
    "negative_hits": (
        "cproxy_dns_cache_negative_hits",
        True,
        "Lookups the DNS cache answered with a kept 'no such name'",
    ),
    "misses": (
        "cproxy_dns_cache_misses",
        True,
        "Origin name lookups sent to the resolver",
    ),
    "evictions": (
        "cproxy_dns_cache_evictions",
        True,
        "DNS cache entries dropped to stay within its bound",
    ),
    "positive_s": (
        "cproxy_dns_cache_timeout_seconds",
        False,
        "How long addresses are kept (DNSCacheTimeout)",
    ),
    "negative_s": (
        "cproxy_dns_cache_negative_timeout_seconds",
        False,
        "How long 'no such name' is kept (DNSNegativeCacheTimeout)",
    ),
}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def connecting_snapshot(stats: Mapping[str, Any]) -> dict[str, Any] | None:
    """The figures for ``/status.json``'s ``connecting`` (None when the runtime has none)."""
    connecting = stats.get("connecting")
    if not connecting:
        return None
    dead = dict(connecting.get("dead_addresses") or {})
    dns = dict(connecting.get("dns_cache") or {})
    lookups = (_number(dns.get("hits")) or 0.0) + (_number(dns.get("misses")) or 0.0)
    dns["hit_ratio"] = (_number(dns.get("hits")) or 0.0) / lookups if lookups else None
    return {"dead_addresses": dead, "dns_cache": dns}


def connecting_families(stats: Mapping[str, Any]) -> Iterator[Metric]:
    """The /metrics families from ``runtime.stats()["connecting"]``."""
    connecting = stats.get("connecting") or {}
    for part, figures in (("dead_addresses", DEAD_FIGURES), ("dns_cache", DNS_FIGURES)):
        values = connecting.get(part) or {}
        for key, (metric, is_counter, help_text) in figures.items():
            number = _number(values.get(key))
            if number is None:
                continue
            family: CounterMetricFamily | GaugeMetricFamily
            if is_counter:
                family = CounterMetricFamily(metric, help_text)
                family.add_metric([], number)
            else:
                family = GaugeMetricFamily(metric, help_text, value=number)
            yield family
