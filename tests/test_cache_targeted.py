"""Targeted cache control (RFC 9213): CacheTargetedFields replaces Cache-Control for this
cache when a listed field is present and valid; the response is passed on intact."""

from __future__ import annotations

import http.client

import pytest

from cproxy.cache import LookupKind
from cproxy.cache.cachecontrol import parse_targeted_cache_control
from cproxy.cache.policy import CacheSettings, response_cache_control, storable
from cproxy.directives.types import FieldNameList
from tests.support import WAIT_S, FakeClock, Origin, ProxyThread, start_proxy
from tests.test_cache_support import T0, URL, date, make_cache, store

CDN = ("CDN-Cache-Control",)
BOTH = ("Cproxy-Cache-Control", "CDN-Cache-Control")


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("max-age=60", {"max-age": "60"}),
        ("max-age=60, no-store", {"max-age": "60", "no-store": None}),
        ("max-age=60;foo=bar,private", {"max-age": "60", "private": None}),
        ('private=("set-cookie" "x")', {"private": "set-cookie, x"}),
        ("no-store=?0, max-age=5", {"max-age": "5"}),  # a false boolean is absent
        ("no-store=?1", {"no-store": None}),
        ("max-age=5, max-age=9", {"max-age": "9"}),  # RFC 8941: the last duplicate wins
        ("  must-revalidate ,s-maxage=3  ", {"must-revalidate": None, "s-maxage": "3"}),
        ('x="a,b", max-age=1', {"x": "a,b", "max-age": "1"}),
        ("max-age=1.5", {"max-age": "1.5"}),  # a decimal: not delta-seconds, so stale
        ("max-age=60, x=:aGk=:", {"max-age": "60", "x": "aGk="}),
    ],
)
def test_rfc9213_targeted_field_is_a_structured_dictionary(value: str, parsed: dict) -> None:
    assert parse_targeted_cache_control(value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        *("", "   ", "Max-Age=60", "max-age=60,", "max-age 60", "max-age=60 x", "=5", ",a"),
        # Issue #23: read by a Structured Fields parser (http-sf), so anything RFC 8941
        # refuses makes the whole field invalid, and it is ignored as a whole.
        *("max-age=60, no-store=", "max-age=(1 2", "max-age=:not base64!:", "max-age=\u00e9"),
        *('private="unterminated', "max-age=60;", "max-age=-", "no-store,,max-age=5"),
    ],
)
def test_rfc9213_invalid_targeted_field_is_refused(value: str) -> None:
    assert parse_targeted_cache_control(value) is None


def test_rfc9213_first_valid_listed_field_wins_else_cache_control() -> None:
    settings = CacheSettings(cache_targeted_fields=BOTH)
    cc = [("Cache-Control", "no-store")]
    cdn = [("CDN-Cache-Control", "max-age=10")]
    own = [("cproxy-cache-control", "max-age=20")]  # field names are case-insensitive
    assert response_cache_control(cc + cdn + own, settings) == ({"max-age": "20"}, BOTH[0])
    assert response_cache_control(cc + cdn, settings) == ({"max-age": "10"}, BOTH[1])
    bad = [("Cproxy-Cache-Control", "max-age=")]
    assert response_cache_control(cc + bad + cdn, settings).targeted == BOTH[1]
    assert response_cache_control(cc + bad, settings) == ({"no-store": None}, None)
    # Nothing listed (the default): Cache-Control always decides.
    assert response_cache_control(cc + cdn, CacheSettings()).targeted is None


def test_rfc9213_targeted_field_replaces_cache_control_for_storage() -> None:
    targeted = CacheSettings(cache_targeted_fields=CDN)
    resp = [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")]
    assert storable("GET", 200, [], resp, CacheSettings()) == (False, "no-store")
    assert storable("GET", 200, [], resp, targeted) == (True, "ok")
    resp = [("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "private")]
    assert storable("GET", 200, [], resp, targeted) == (False, "private")
    resp = [("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "no-store")]
    assert storable("GET", 200, [], resp, targeted) == (False, "no-store")


def test_rfc9213_targeted_freshness_ignores_cache_control_and_expires() -> None:
    cache = make_cache(cache_targeted_fields=CDN)
    fields = [
        ("Date", date()),
        ("Cache-Control", "max-age=5"),
        ("Expires", date(5)),
        ("CDN-Cache-Control", "max-age=100"),
    ]
    assert store(cache, fields) == "stored"
    result = cache.lookup("GET", URL, [], T0 + 50)
    assert result.kind is LookupKind.HIT and result.entry is not None
    assert result.entry.headers == tuple(fields)  # every field kept, to be passed on
    assert cache.lookup("GET", URL, [], T0 + 101).kind is LookupKind.MISS
    # A targeted field without freshness: Cache-Control's max-age and Expires do not count.
    cache = make_cache(cache_targeted_fields=CDN)
    fields = [("Date", date()), ("Cache-Control", "max-age=100"), ("Expires", date(100))]
    fields.append(("CDN-Cache-Control", "must-revalidate"))
    fields.append(("ETag", '"v"'))
    assert store(cache, fields) == "stored"
    assert cache.lookup("GET", URL, [], T0 + 1).kind is LookupKind.VALIDATE


def test_rfc9213_targeted_must_revalidate_forbids_serving_stale() -> None:
    cache = make_cache(cache_targeted_fields=CDN)
    fields = [("Date", date()), ("Cache-Control", "max-age=1, stale-while-revalidate=100")]
    fields += [("CDN-Cache-Control", "max-age=1, must-revalidate"), ("ETag", '"v"')]
    store(cache, fields)
    assert cache.lookup("GET", URL, [], T0 + 10).kind is LookupKind.VALIDATE
    plain = make_cache()
    store(plain, fields)
    assert plain.lookup("GET", URL, [], T0 + 10).kind is LookupKind.STALE_WHILE_REVALIDATE


def test_field_name_list_directive_type() -> None:
    assert FieldNameList().parse("CDN-Cache-Control, X-Own cdn-cache-control") == (
        "CDN-Cache-Control",
        "X-Own",
    )
    assert FieldNameList().parse("") == ()
    for bad in ("a:b", "x(y)", 'q"'):
        with pytest.raises(ValueError):
            FieldNameList().parse(bad)


def _get(proxy: ProxyThread, url: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=WAIT_S)
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize(("targeted", "reused"), [("CDN-Cache-Control", True), ("", False)])
def test_rfc9213_through_the_proxy(targeted: str, reused: bool) -> None:
    fields = {"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=600"}
    with Origin() as origin, start_proxy(CacheTargetedFields=targeted) as proxy:
        clock = FakeClock()
        proxy.runtime.cache.clock = clock
        origin.routes["/t"] = lambda h: h.reply(200, b"targeted", fields)
        first = _get(proxy, origin.url("/t"))
        clock.advance(300)
        second = _get(proxy, origin.url("/t"))
        for status, headers, body in (first, second):
            assert (status, body) == (200, b"targeted")
            # Passed on intact: the client sees the origin's own fields.
            assert headers["cache-control"] == "no-store"
            assert headers["cdn-cache-control"] == "max-age=600"
        assert len(origin.requests) == (1 if reused else 2)
        assert second[1]["cache-status"].startswith("cproxy; hit") is reused
