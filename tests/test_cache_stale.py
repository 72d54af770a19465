"""Serving stale responses (RFC 9111 §4.2.4, RFC 5861) and Cache-Status (RFC 9211)."""

from __future__ import annotations

import pytest

from cproxy.cache import LookupKind, cache_status
from tests.test_cache_support import T0, URL, make_cache, store


def test_rfc5861_3_stale_while_revalidate_window() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=10, stale-while-revalidate=30"), ("ETag", '"a"')])
    inside = cache.lookup("GET", URL, [], T0 + 25)
    assert inside.kind is LookupKind.STALE_WHILE_REVALIDATE
    assert inside.origin_headers is not None
    assert ("If-None-Match", '"a"') in inside.origin_headers
    assert inside.cache_status() == "cproxy; hit; ttl=-15; detail=stale-while-revalidate"
    assert cache.lookup("GET", URL, [], T0 + 41).kind is LookupKind.VALIDATE


@pytest.mark.parametrize(
    "directive", ["must-revalidate", "proxy-revalidate", "no-cache", "s-maxage=10"]
)
def test_4_2_4_directives_forbid_serving_stale(directive: str) -> None:
    cache = make_cache()
    cc = f"max-age=10, {directive}, stale-while-revalidate=100, stale-if-error=100"
    store(cache, [("Cache-Control", cc), ("ETag", '"a"')])
    result = cache.lookup("GET", URL, [], T0 + 20)
    assert result.kind is LookupKind.VALIDATE and result.entry is not None
    assert cache.serve_stale_on_error(result.entry, [], T0 + 20, None) is None


def test_rfc5861_4_stale_if_error_window_and_statuses() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=10, stale-if-error=60"), ("ETag", '"a"')])
    entry = cache.lookup("GET", URL, [], T0 + 20).entry
    assert entry is not None
    served = cache.serve_stale_on_error(entry, [], T0 + 20, 503)
    assert served is not None and served.kind is LookupKind.HIT and served.age == 20
    assert served.cache_status(fwd_status=503) == (
        "cproxy; fwd=stale; fwd-status=503; ttl=-10; detail=stale-if-error"
    )
    assert cache.serve_stale_on_error(entry, [], T0 + 20, None) is not None
    assert cache.serve_stale_on_error(entry, [], T0 + 20, 404) is None
    assert cache.serve_stale_on_error(entry, [], T0 + 80, 500) is None


def test_rfc5861_4_stale_if_error_from_the_request() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=10"), ("ETag", '"a"')])
    entry = cache.lookup("GET", URL, [], T0 + 20).entry
    assert entry is not None
    assert cache.serve_stale_on_error(entry, [], T0 + 20, 502) is None
    req = [("Cache-Control", "stale-if-error=30")]
    assert cache.serve_stale_on_error(entry, req, T0 + 20, 502) is not None


def test_rfc9211_cache_status_values() -> None:
    assert cache_status(hit=True, ttl=376.9) == "cproxy; hit; ttl=376"
    assert cache_status(fwd="uri-miss", stored=True) == "cproxy; fwd=uri-miss; stored"
    assert cache_status(fwd="stale", fwd_status=304, collapsed=True) == (
        "cproxy; fwd=stale; fwd-status=304; collapsed"
    )
    assert cache_status(fwd="bypass", detail="no caching") == (
        'cproxy; fwd=bypass; detail="no caching"'
    )
    assert cache_status(hit=True, key='a"b') == 'cproxy; hit; key="a\\"b"'
    with pytest.raises(ValueError):
        cache_status(hit=True, fwd="miss")
    with pytest.raises(ValueError):
        cache_status(fwd="bogus")


def test_rfc9211_lookup_statuses_for_misses_and_bypass() -> None:
    cache = make_cache(no_caching=("http://example.test/*",))
    assert (
        cache.lookup("GET", URL, [], T0).cache_status() == "cproxy; fwd=bypass; detail=no-caching"
    )
    cache = make_cache()
    assert cache.lookup("POST", URL, [], T0).cache_status() == "cproxy; fwd=method"
    miss = cache.lookup("GET", URL, [], T0)
    assert miss.cache_status(fwd_status=200, stored=True) == (
        "cproxy; fwd=uri-miss; fwd-status=200; stored"
    )
    off = make_cache(caching=False).lookup("GET", URL, [], T0)
    assert off.kind is LookupKind.BYPASS


def test_head_request_served_from_stored_get() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=60")], body=b"12345")
    result = cache.lookup("HEAD", URL, [], T0 + 1)
    assert result.kind is LookupKind.HIT
    assert b"Content-Length: 5\r\n" in result.response_head()


# -- an unreachable origin (RFC 9111 §4.2.4, CacheMaxStale) -----------------------------------

DAY = 86_400


def _stored(cache, cc: str):  # type: ignore[no-untyped-def]
    store(cache, [("Cache-Control", cc), ("ETag", '"a"')])
    result = cache.lookup("GET", URL, [], T0 + 20)
    assert result.entry is not None
    return result.entry


def test_4_2_4_unreachable_origin_serves_stale_within_cache_max_stale() -> None:
    cache = make_cache(cache_max_stale_s=7 * DAY)
    entry = _stored(cache, "max-age=10")
    # Not for an origin that answered (5xx without stale-if-error), nor unreachable past it.
    assert cache.serve_stale_on_error(entry, [], T0 + 20, 503) is None
    assert cache.serve_stale_on_error(entry, [], T0 + 20, None) is None
    served = cache.serve_stale_on_error(entry, [], T0 + 3 * DAY, None, unreachable=True)
    assert served is not None and served.entry is entry
    assert served.cache_status().endswith("; fwd=stale; ttl=-259190; detail=origin-unreachable")
    edge = T0 + 10 + 7 * DAY
    assert cache.serve_stale_on_error(entry, [], edge, None, unreachable=True) is not None
    assert cache.serve_stale_on_error(entry, [], edge + 1, None, unreachable=True) is None


def test_4_2_4_unreachable_origin_and_cache_max_stale_0_keeps_only_stale_if_error() -> None:
    cache = make_cache(cache_max_stale_s=0)
    plain = _stored(cache, "max-age=10")
    assert cache.serve_stale_on_error(plain, [], T0 + 20, None, unreachable=True) is None
    cache = make_cache(cache_max_stale_s=0)
    sie = _stored(cache, "max-age=10, stale-if-error=100")
    served = cache.serve_stale_on_error(sie, [], T0 + 20, None, unreachable=True)
    assert served is not None and served.detail == "stale-if-error"
    # A longer stale-if-error window than CacheMaxStale wins.
    cache = make_cache(cache_max_stale_s=50)
    sie = _stored(cache, "max-age=10, stale-if-error=1000")
    assert cache.serve_stale_on_error(sie, [], T0 + 500, None, unreachable=True) is not None


@pytest.mark.parametrize(
    "directive", ["must-revalidate", "proxy-revalidate", "no-cache", "s-maxage=10"]
)
def test_4_2_4_directives_forbid_stale_for_an_unreachable_origin(directive: str) -> None:
    cache = make_cache(cache_max_stale_s=7 * DAY)
    entry = _stored(cache, f"max-age=10, {directive}")
    assert cache.serve_stale_on_error(entry, [], T0 + 20, None, unreachable=True) is None


def test_4_2_4_request_no_cache_forbids_stale_for_an_unreachable_origin() -> None:
    cache = make_cache(cache_max_stale_s=7 * DAY)
    entry = _stored(cache, "max-age=10")
    for req in ([("Cache-Control", "no-cache")], [("Pragma", "no-cache")]):
        assert cache.serve_stale_on_error(entry, req, T0 + 20, None, unreachable=True) is None
    assert cache.serve_stale_on_error(entry, [], T0 + 20, None, unreachable=True) is not None


def test_the_shared_uri_miss_outcome_follows_a_renamed_cache() -> None:
    # The usual miss's Lookup is one shared value; a reload that renames the cache (the
    # proxy's hostname) must show in the next miss's Cache-Status.
    cache = make_cache()
    first = cache.lookup("GET", URL, [], T0)
    assert (first.kind, first.fwd, first.entry) == (LookupKind.MISS, "uri-miss", None)
    assert first.cache_status(fwd_status=200) == "cproxy; fwd=uri-miss; fwd-status=200"
    cache.name = "proxy.example"
    again = cache.lookup("GET", URL, [], T0)
    assert again.cache_status() == "proxy.example; fwd=uri-miss"
    assert cache.store.misses == 2
