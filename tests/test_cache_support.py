"""Shared helpers for the cache tests: a fixed clock origin and response builders."""

from __future__ import annotations

from cproxy.cache import CacheSettings, CacheStore, HttpCache
from cproxy.cache.dates import format_http_date

T0 = 1_700_000_000.0  # an arbitrary "now" for the injected clock
URL = "http://example.test/r"


def date(offset: float = 0.0) -> str:
    """An HTTP-date ``offset`` seconds from T0."""
    return format_http_date(T0 + offset)


def make_cache(max_bytes: int = 1 << 20, **settings: object) -> HttpCache:
    return HttpCache(CacheStore(max_bytes), CacheSettings(**settings))  # type: ignore[arg-type]


def store(
    cache: HttpCache,
    headers: list[tuple[str, str]],
    *,
    status: int = 200,
    body: bytes = b"body",
    req: list[tuple[str, str]] | None = None,
    url: str = URL,
    at: float = T0,
) -> str:
    """Store a response received at ``at``; returns the store reason."""
    _entry, reason = cache.store_response(
        "GET", url, req or [], status, "OK", headers, body, request_time=at, response_time=at
    )
    return reason
