"""Invalidation after unsafe methods (RFC 9111 §4.4)."""

from __future__ import annotations

import pytest

from cproxy.cache import LookupKind
from cproxy.cache.policy import invalidation_targets
from tests.test_cache_support import T0, URL, make_cache, store

FRESH = [("Cache-Control", "max-age=3600")]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "M-SEARCH", "patch"])
def test_4_4_unsafe_method_success_invalidates_target(method: str) -> None:
    cache = make_cache()
    store(cache, FRESH)
    assert cache.invalidate_after(method, 201, URL, []) == [URL]
    assert cache.lookup("GET", URL, [], T0 + 1).kind is LookupKind.MISS


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_4_4_error_response_does_not_invalidate(status: int) -> None:
    cache = make_cache()
    store(cache, FRESH)
    assert cache.invalidate_after("POST", status, URL, []) == []
    assert cache.lookup("GET", URL, [], T0 + 1).kind is LookupKind.HIT


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE"])
def test_4_4_safe_methods_do_not_invalidate(method: str) -> None:
    assert invalidation_targets(method, 200, URL, []) == []


def test_4_4_location_and_content_location_same_origin_only() -> None:
    cache = make_cache()
    other = "http://example.test/other"
    located = "http://example.test/located"
    store(cache, FRESH, url=other)
    store(cache, FRESH, url=located)
    store(cache, FRESH, url="http://elsewhere.test/x")
    resp = [
        ("Location", "/located"),
        ("Content-Location", "other"),
        ("Link", "http://elsewhere.test/x"),
    ]
    targets = cache.invalidate_after("POST", 303, URL, resp)
    assert targets == [URL, located, other]
    assert cache.lookup("GET", other, [], T0).kind is LookupKind.MISS
    assert cache.lookup("GET", located, [], T0).kind is LookupKind.MISS
    assert invalidation_targets("PUT", 200, URL, [("Location", "http://elsewhere.test/x")]) == [URL]
    assert invalidation_targets("PUT", 200, URL, [("Location", "https://example.test/r")]) == [URL]


def test_4_4_invalidation_drops_every_variant() -> None:
    cache = make_cache()
    vary = [*FRESH, ("Vary", "Accept")]
    store(cache, vary, req=[("Accept", "a")])
    store(cache, vary, req=[("Accept", "b")])
    cache.invalidate_after("DELETE", 204, URL, [])
    assert len(cache.store) == 0
