"""Validation: conditional requests, 304 handling, client conditionals (RFC 9111 §4.3)."""

from __future__ import annotations

import pytest

from cproxy.cache import LookupKind
from cproxy.cache.policy import (
    EntityTag,
    Validators,
    client_not_modified,
    conditional_headers,
    parse_etag,
    select_for_update,
    update_headers,
)
from tests.test_cache_support import T0, URL, date, make_cache, store


def test_4_3_1_conditional_headers_from_stored_validators() -> None:
    stored = [("ETag", 'W/"abc"'), ("Last-Modified", date(-100))]
    assert conditional_headers(stored) == [
        ("If-None-Match", 'W/"abc"'),
        ("If-Modified-Since", date(-100)),
    ]
    assert conditional_headers([("ETag", "abcdef")]) == [("If-None-Match", '"abcdef"')]
    assert conditional_headers([("Last-Modified", "garbage")]) == []


def test_4_3_1_validation_replaces_client_validators_and_keeps_vary_fields() -> None:
    cache = make_cache()
    store(
        cache,
        [("Expires", date(1)), ("ETag", '"abcdef"'), ("Date", date()), ("Vary", "Abc")],
        req=[("Abc", "123")],
    )
    result = cache.lookup("GET", URL, [("Abc", "123"), ("If-None-Match", '"zzz"')], T0 + 5)
    assert result.kind is LookupKind.VALIDATE and result.origin_headers is not None
    assert list(result.origin_headers) == [("Abc", "123"), ("If-None-Match", '"abcdef"')]


def test_3_2_update_headers_replaces_except_framing() -> None:
    stored = [("Content-Type", "text/plain"), ("X-A", "1"), ("X-A", "2"), ("Keep", "k")]
    new = [
        ("x-a", "3"),
        ("Content-Length", "0"),
        ("Content-Type", "text/html"),
        ("Content-Encoding", "gzip"),
        ("New", "n"),
        ("Age", "5"),
    ]
    assert update_headers(stored, new) == [
        ("Content-Type", "text/html"),
        ("x-a", "3"),
        ("Keep", "k"),
        ("New", "n"),
    ]


def test_4_3_4_304_merging_keeps_body_and_updates_headers() -> None:
    cache = make_cache()
    store(
        cache,
        [
            ("Cache-Control", "max-age=1"),
            ("ETag", '"e1"'),
            ("Date", date()),
            ("Test-Header", "A"),
            ("Other", "kept"),
        ],
        body=b"payload",
    )
    first = cache.lookup("GET", URL, [], T0 + 10)
    assert first.kind is LookupKind.VALIDATE
    fresh = cache.handle_304(
        URL,
        [],
        [
            ("Cache-Control", "max-age=3600"),
            ("ETag", '"e1"'),
            ("Date", date(10)),
            ("Test-Header", "B"),
        ],
        request_time=T0 + 10,
        response_time=T0 + 10,
        validated=first.entry,
    )
    assert fresh is not None and fresh.body == b"payload"
    assert ("Test-Header", "B") in fresh.headers and ("Other", "kept") in fresh.headers
    later = cache.lookup("GET", URL, [], T0 + 20)
    assert later.kind is LookupKind.HIT and later.entry is not None
    assert later.entry.body == b"payload" and ("Test-Header", "B") in later.entry.headers
    assert later.age == 10


def test_4_3_4_304_without_validator_updates_the_validated_entry() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=1"), ("Last-Modified", date(-500))])
    stale = cache.lookup("GET", URL, [], T0 + 5)
    fresh = cache.handle_304(
        URL,
        [],
        [("Cache-Control", "max-age=60")],
        request_time=T0 + 5,
        response_time=T0 + 5,
        validated=stale.entry,
    )
    assert fresh is not None and fresh.lifetime_s == 60
    assert ("Date", date(5)) in fresh.headers  # a 304 without Date is dated on receipt


def test_4_3_4_304_with_other_strong_etag_updates_nothing() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=1"), ("ETag", '"e1"')])
    stale = cache.lookup("GET", URL, [], T0 + 5)
    fresh = cache.handle_304(
        URL,
        [],
        [("ETag", '"other"')],
        request_time=T0 + 5,
        response_time=T0 + 5,
        validated=stale.entry,
    )
    assert fresh is None


def test_4_3_4_selection_rules() -> None:
    stored = [
        Validators(parse_etag('"a"'), None, 1.0),
        Validators(parse_etag('"a"'), None, 2.0),
        Validators(parse_etag('W/"w"'), 100, 3.0),
        Validators(parse_etag('W/"w"'), 100, 4.0),
    ]
    assert select_for_update(stored, [("ETag", '"a"')]) == [0, 1]
    assert select_for_update(stored, [("ETag", 'W/"w"')]) == [3]
    assert select_for_update(stored, [("ETag", '"zz"')]) == []
    assert select_for_update([Validators(None, None, 1.0)], []) == [0]
    assert select_for_update(stored, []) == []


def test_4_3_4_304_with_no_store_serves_once_then_drops() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=1"), ("ETag", '"e"')])
    stale = cache.lookup("GET", URL, [], T0 + 5)
    fresh = cache.handle_304(
        URL,
        [],
        [("ETag", '"e"'), ("Cache-Control", "no-store")],
        request_time=T0 + 5,
        response_time=T0 + 5,
        validated=stale.entry,
    )
    assert fresh is not None
    assert cache.lookup("GET", URL, [], T0 + 6).kind is LookupKind.MISS


def test_4_3_2_client_if_none_match_weak_comparison_gets_304() -> None:
    cache = make_cache()
    store(
        cache,
        [
            ("Cache-Control", "max-age=3600"),
            ("ETag", '"abcdef"'),
            ("Date", date()),
            ("X-Body-Meta", "x"),
        ],
    )
    for inm in ('"abcdef"', 'W/"abcdef"', '"1234", "abcdef"', "*", "abcdef"):
        result = cache.lookup("GET", URL, [("If-None-Match", inm)], T0 + 1)
        assert result.not_modified, inm
    head = result.response_head()
    assert head.startswith(b"HTTP/1.1 304 Not Modified\r\n")
    assert b'ETag: "abcdef"\r\n' in head and b"Cache-Control: max-age=3600" in head
    assert b"X-Body-Meta" not in head and b"Content-Length" not in head
    assert not cache.lookup("GET", URL, [("If-None-Match", '"nope"')], T0 + 1).not_modified


def test_4_3_2_if_none_match_takes_precedence_over_if_modified_since() -> None:
    stored = [("ETag", '"a"'), ("Last-Modified", date(-5000)), ("Date", date())]
    req = [("If-None-Match", '"b"'), ("If-Modified-Since", date(-1))]
    assert not client_not_modified("GET", req, stored)
    req = [("If-None-Match", '"a"'), ("If-Modified-Since", date(-9999))]
    assert client_not_modified("GET", req, stored)


def test_4_3_2_if_modified_since_uses_last_modified_then_date() -> None:
    stored = [("Last-Modified", date(-3000)), ("Date", date())]
    assert client_not_modified("GET", [("If-Modified-Since", date(-3000))], stored)
    assert client_not_modified("HEAD", [("If-Modified-Since", date(-2000))], stored)
    assert not client_not_modified("GET", [("If-Modified-Since", date(-4000))], stored)
    assert not client_not_modified("POST", [("If-Modified-Since", date(-2000))], stored)
    rfc850 = "Tuesday, 14-Nov-23 21:23:20 GMT"  # date(-3000) in RFC 850 form
    assert client_not_modified("GET", [("If-Modified-Since", rfc850)], stored)
    no_lm = [("Date", date())]
    assert client_not_modified("GET", [("If-Modified-Since", date(-1))], no_lm) is False
    assert client_not_modified("GET", [("If-Modified-Since", date(1))], no_lm)


def test_4_3_5_precondition_requests_go_to_the_origin() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=3600"), ("ETag", '"a"')])
    result = cache.lookup("GET", URL, [("If-Match", '"a"')], T0)
    assert result.kind is LookupKind.MISS and result.fwd == "request"


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ('"a"', EntityTag(False, "a")),
        ('W/"a"', EntityTag(True, "a")),
        ('w/"a"', EntityTag(True, "a")),
        ('""', EntityTag(False, "")),  # RFC 9110 §8.8.3: the empty opaque-tag is valid
        ('W/""', EntityTag(True, "")),
        ("unquoted", EntityTag(False, "unquoted")),  # lenient: some origins omit quotes
        (' \t"a" ', EntityTag(False, "a")),
        ("", None),
        ("W/", None),
        (None, None),
    ],
)
def test_parse_etag(text: str | None, tag: EntityTag | None) -> None:
    assert parse_etag(text) == tag
