"""Storing responses (RFC 9111 §3, §3.1, §3.5, §5.2.2) and the cache settings."""

from __future__ import annotations

import pytest

from cproxy.cache import LookupKind
from cproxy.cache.policy import CacheSettings, headers_to_store, storable
from tests.test_cache_support import T0, URL, date, make_cache, store

S = CacheSettings()
FRESH = [("Cache-Control", "max-age=3600")]


def ok(method: str = "GET", status: int = 200, req=(), resp=FRESH, **kw: object) -> tuple:  # type: ignore[no-untyped-def]
    return storable(method, status, list(req), list(resp), kw.pop("settings", S), **kw)  # type: ignore[arg-type]


def test_3_fresh_get_is_storable() -> None:
    assert ok() == (True, "ok")


def test_3_only_get_responses_are_stored() -> None:
    assert ok("HEAD") == (False, "method")
    assert ok("POST") == (False, "method")


def test_3_status_must_be_final_and_not_304() -> None:
    assert ok(status=100) == (False, "status")
    assert ok(status=304) == (False, "status")
    for status in (299, 400, 499, 500, 502, 504, 599):
        assert ok(status=status)[0], status


def test_3_4_partial_content_not_stored_as_complete() -> None:
    assert ok(status=206) == (False, "range")


def test_3_4_content_range_on_a_200_is_a_complete_response() -> None:
    """RFC 9110 §14.4: Content-Range means nothing on a 200 (suite: headers-store-Content-Range)."""
    assert ok(resp=[*FRESH, ("Content-Range", "bytes 0-4/10")])[0]


@pytest.mark.parametrize(
    ("req", "resp"),
    [
        ([], [("Cache-Control", "max-age=10000, no-store")]),
        ([], [("Cache-Control", "No-StOrE")]),
        ([("Cache-Control", "no-store")], FRESH),
    ],
)
def test_5_2_2_5_and_5_2_1_5_no_store(req: list, resp: list) -> None:  # type: ignore[type-arg]
    assert ok(req=req, resp=resp) == (False, "no-store")


def test_5_2_2_3_must_understand_overrides_no_store_for_understood_status() -> None:
    resp = [("Cache-Control", "max-age=60, no-store, must-understand")]
    assert ok(resp=resp) == (True, "ok")
    assert ok(status=299, resp=resp) == (False, "must-understand")


def test_5_2_2_7_private_not_stored_by_shared_cache() -> None:
    assert ok(resp=[("Cache-Control", "private, max-age=3600")]) == (False, "private")


def test_5_2_2_7_qualified_private_strips_the_listed_fields() -> None:
    resp = [("Cache-Control", 'private="Set-Cookie", max-age=60'), ("Set-Cookie", "a=b")]
    assert ok(resp=resp) == (True, "ok")
    assert [k for k, _ in headers_to_store(resp)] == ["Cache-Control"]


@pytest.mark.parametrize(
    ("directives", "stored"),
    [
        ("max-age=3600", False),
        ("max-age=3600, public", True),
        ("max-age=3600, must-revalidate", True),
        ("s-maxage=3600", True),
    ],
)
def test_3_5_authorization_needs_public_must_revalidate_or_s_maxage(
    directives: str, stored: bool
) -> None:
    req = [("Authorization", "Basic eDp5")]
    assert ok(req=req, resp=[("Cache-Control", directives)])[0] is stored


def test_3_needs_explicit_freshness_public_or_heuristic_status() -> None:
    assert ok(status=201, resp=[("Last-Modified", date(-100))]) == (False, "status")
    assert ok(status=201, resp=[("Expires", date(100)), ("Date", date())]) == (True, "ok")
    assert ok(status=599, resp=[("Cache-Control", "public"), ("ETag", '"a"')])[0]


def test_3_nothing_to_reuse_or_validate_is_not_stored() -> None:
    assert ok(resp=[]) == (False, "no-freshness")
    assert ok(resp=[("ETag", '"a"')]) == (True, "ok")  # validation is still worth it
    assert ok(resp=[("ETag", '""')]) == (True, "ok")  # the empty entity tag is valid
    assert ok(resp=[("ETag", "unquoted")]) == (True, "ok")  # read leniently, as "unquoted"
    # No tag at all validates nothing: the stored copy could never be revalidated.
    assert ok(resp=[("ETag", "")]) == (False, "no-freshness")
    assert ok(resp=[("ETag", "W/")]) == (False, "no-freshness")
    assert ok(resp=[("Cache-Control", "max-age=0")]) == (False, "no-freshness")


def test_4_1_vary_star_not_stored() -> None:
    assert ok(resp=[*FRESH, ("Vary", "accept, *")]) == (False, "vary-star")


def test_settings_time_margin_size_limit_queries_and_patterns() -> None:
    margin = CacheSettings(cache_time_margin_s=60.0)
    assert ok(resp=[("Cache-Control", "max-age=30")], settings=margin) == (False, "no-freshness")
    assert ok(resp=[("Cache-Control", "max-age=30"), ("ETag", '"a"')], settings=margin)[0]
    limit = CacheSettings(cache_file_size_limit_bytes=10)
    assert ok(settings=limit, body_bytes=11) == (False, "too-large")
    assert ok(settings=limit, body_bytes=10)[0]
    no_q = CacheSettings(cache_queries=False)
    assert ok(settings=no_q, url_key="http://a/x?y=1") == (False, "query")
    assert ok(settings=no_q, url_key="http://a/x")[0]
    pats = CacheSettings(no_caching=("http://a/private/*", "*.cgi"))
    assert ok(settings=pats, url_key="http://a/private/x") == (False, "no-caching")
    assert ok(settings=pats, url_key="http://b/run.cgi") == (False, "no-caching")
    assert ok(settings=pats, url_key="http://a/public/x")[0]
    assert ok(settings=CacheSettings(caching=False)) == (False, "caching-off")


def test_settings_from_config_reads_attr_names() -> None:
    class Cfg:
        caching = True
        cache_max_expiry_s = 99.0
        no_caching = ["http://x/*"]

    settings = CacheSettings.from_config(Cfg())
    assert settings.cache_max_expiry_s == 99.0 and settings.no_caching == ("http://x/*",)
    assert settings.cache_last_modified_factor == CacheSettings().cache_last_modified_factor


def test_3_1_hop_by_hop_and_connection_listed_fields_not_stored() -> None:
    resp = [
        ("Connection", "a, b"),
        ("a", "1"),
        ("B", "2"),
        ("c", "3"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "5"),
        ("Age", "3"),
        ("Set-Cookie", "a=b"),
    ]
    # Set-Cookie is never replayed from the cache (DESIGN.md §5 rule 8), so never kept.
    assert headers_to_store(resp) == [("c", "3")]


def test_5_2_2_4_no_cache_field_names_not_stored_and_response_reused() -> None:
    cache = make_cache()
    headers = [
        ("Cache-Control", 'no-cache="a, b"'),
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("Cache-Control", "max-age=3600"),
        ("Date", date()),
    ]
    assert store(cache, headers) == "stored"
    result = cache.lookup("GET", URL, [], T0 + 1)
    assert result.kind is LookupKind.HIT and result.entry is not None
    names = {k.lower() for k, _ in result.entry.headers}
    assert "c" in names and not names & {"a", "b"}


def test_3_not_storable_response_keeps_older_stored_one() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=10000"), ("A", "1")])
    assert store(cache, [("Cache-Control", "no-store, max-age=0"), ("A", "2")]) == "no-store"
    result = cache.lookup("GET", URL, [], T0 + 1)
    assert result.entry is not None and ("A", "1") in result.entry.headers


def test_6_6_1_invalid_date_with_future_expires_is_storable_dated_when_received() -> None:
    """RFC 9110 §6.6.1: a recipient dates a response with an invalid Date itself; the
    caller passes that time as ``date_value``, and Expires is measured from it."""
    resp = [("Date", "foo"), ("Expires", date(100))]
    assert ok(resp=resp, date_value=T0) == (True, "ok")
    assert ok(resp=resp, date_value=T0 + 200) == (False, "no-freshness")  # Expires passed
    cache = make_cache()
    assert store(cache, resp, at=T0) == "stored"
    result = cache.lookup("GET", URL, [], T0 + 50)
    assert result.kind is LookupKind.HIT and result.entry is not None
    assert ("Date", date()) in result.entry.headers  # dated when received
    assert cache.lookup("GET", URL, [], T0 + 101).kind is LookupKind.MISS


@pytest.mark.parametrize(
    ("fields", "stored"),
    [
        ([("Cache-Control", "max-age=60"), ("Content-Location", URL)], True),
        ([("Cache-Control", "s-maxage=60"), ("Content-Location", "/r")], True),  # relative
        ([("Expires", date(60)), ("Date", date()), ("Content-Location", URL)], True),
        ([("Cache-Control", "max-age=60"), ("Content-Location", "/other")], False),
        ([("Cache-Control", "max-age=60")], False),  # no Content-Location
        ([("Content-Location", URL), ("Last-Modified", date(-9999))], False),  # heuristic
        ([("Cache-Control", "public"), ("Content-Location", URL)], False),  # not explicit
        ([("Cache-Control", "max-age=60, no-store"), ("Content-Location", URL)], False),
    ],
)
def test_rfc9110_9_3_3_post_response_stored_only_with_freshness_and_own_location(
    fields: list[tuple[str, str]], stored: bool
) -> None:
    """RFC 9110 §9.3.3: explicit freshness and a Content-Location equal to the target."""
    ok_, _why = storable("POST", 200, [], fields, S, url_key=URL, date_value=T0)
    assert ok_ is stored
    cache = make_cache()
    entry, _ = cache.store_response(
        "POST", URL, [], 200, "OK", fields, b"posted", request_time=T0, response_time=T0
    )
    assert (entry is not None) is stored
    got = cache.lookup("GET", URL, [], T0 + 30)
    assert (got.kind is LookupKind.HIT) is stored
    if stored:
        assert got.entry is not None and got.entry.body == b"posted"
    assert cache.lookup("GET", URL, [], T0 + 61).kind is not LookupKind.HIT
    # A POST itself is never answered from the cache.
    assert cache.lookup("POST", URL, [], T0 + 30).kind is LookupKind.BYPASS


def test_rfc9110_9_3_3_other_unsafe_methods_stay_unstored() -> None:
    fields = [("Cache-Control", "max-age=60"), ("Content-Location", URL)]
    for method in ("PUT", "PATCH", "DELETE", "post"):
        assert storable(method, 200, [], fields, S, url_key=URL) == (False, "method")


# -- CacheCookieResponses (issue #19; DESIGN.md §5 rule 13) ------------------------------------

HTTPS_URL = "https://a.example/page"
COOKIE = [("Cookie", "session=alice")]


@pytest.mark.parametrize(
    ("resp", "stored"),
    [
        (FRESH, False),  # max-age alone says nothing about sharing
        ([("Cache-Control", "public, max-age=60")], True),
        ([("Cache-Control", "s-maxage=60")], True),
        ([("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding, Cookie")], True),
        ([("Cache-Control", "max-age=60"), ("Vary", "accept-encoding")], False),
        ([("Expires", date(T0 + 60)), ("Date", date(T0))], False),
    ],
)
def test_a_response_to_a_cookie_request_is_stored_only_when_it_says_it_may_be_shared(
    resp: list[tuple[str, str]], stored: bool
) -> None:
    verdict = ok(req=COOKIE, resp=resp, url_key=HTTPS_URL)
    assert verdict == ((True, "ok") if stored else (False, "cookie"))


def test_the_cookie_rule_needs_a_cookie() -> None:
    assert ok(req=[("Accept", "*/*")], url_key=HTTPS_URL) == (True, "ok")


def test_the_cookie_rule_applies_by_default_to_https_urls_only() -> None:
    assert ok(req=COOKIE, url_key="http://a.example/page") == (True, "ok")
    explicit = CacheSettings(cache_cookie_responses="explicit")
    assert ok(req=COOKIE, url_key="http://a.example/page", settings=explicit) == (False, "cookie")
    rfc = CacheSettings(cache_cookie_responses="rfc")
    assert ok(req=COOKIE, url_key=HTTPS_URL, settings=rfc) == (True, "ok")
    # RFC 9111's own rules still apply under rfc.
    private = [("Cache-Control", "private, max-age=60")]
    assert ok(req=COOKIE, resp=private, url_key=HTTPS_URL, settings=rfc) == (False, "private")


def test_the_cookie_directive_reaches_the_cache_settings() -> None:
    from cproxy.directives import config_with, defaults

    cfg = config_with(defaults(), {"CacheCookieResponses": "explicit"})
    assert CacheSettings.from_config(cfg).cache_cookie_responses == "explicit"
    assert CacheSettings.from_config(defaults()).cache_cookie_responses == "https"
