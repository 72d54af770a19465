"""Secondary keys (RFC 9111 §4.1)."""

from __future__ import annotations

from cproxy.cache import LookupKind
from cproxy.cache.policy import normalised_field, vary_fields
from tests.test_cache_support import T0, URL, date, make_cache, store

VARY_FOO = [("Expires", date(5000)), ("Date", date()), ("Vary", "Foo")]


def test_4_1_vary_star_anywhere_in_the_list_never_matches() -> None:
    for lines in (["*"], ["accept, *"], ["*, *"], ["", "*"], [", *"], ["Foo", "*"]):
        assert vary_fields([("Vary", v) for v in lines]) is None, lines
    assert vary_fields([("Vary", "Accept-Encoding, accept")]) == ("accept", "accept-encoding")


def test_4_1_two_accept_encoding_values_store_two_variants() -> None:
    cache = make_cache()
    headers = [("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding")]
    store(cache, headers, body=b"gz", req=[("Accept-Encoding", "gzip")])
    store(cache, headers, body=b"br", req=[("accept-encoding", "br")])
    assert len(cache.store) == 2
    gz = cache.lookup("GET", URL, [("ACCEPT-ENCODING", "gzip")], T0)
    br = cache.lookup("GET", URL, [("Accept-Encoding", "br")], T0)
    assert gz.entry is not None and gz.entry.body == b"gz"
    assert br.entry is not None and br.entry.body == b"br"
    none = cache.lookup("GET", URL, [("Accept-Encoding", "identity")], T0)
    assert none.kind is LookupKind.MISS and none.fwd == "vary-miss"


def test_4_1_request_omitting_the_field_does_not_match() -> None:
    cache = make_cache()
    store(cache, VARY_FOO, req=[("Foo", "1")])
    assert cache.lookup("GET", URL, [], T0).kind is LookupKind.MISS


def test_4_1_field_absent_from_both_requests_matches() -> None:
    cache = make_cache()
    vary3 = [("Expires", date(5000)), ("Date", date()), ("Vary", "Foo, Bar, Baz")]
    store(cache, vary3, req=[("Foo", "1"), ("Baz", "789")])
    assert cache.lookup("GET", URL, [("Foo", "1"), ("Baz", "789")], T0).kind is LookupKind.HIT
    assert cache.lookup("GET", URL, [("Foo", "2"), ("Baz", "789")], T0).kind is LookupKind.MISS


def test_4_1_headers_not_listed_are_not_part_of_the_key() -> None:
    cache = make_cache()
    store(cache, VARY_FOO, req=[("Foo", "1"), ("Other", "2")])
    assert cache.lookup("GET", URL, [("Foo", "1"), ("Other", "3")], T0).kind is LookupKind.HIT


def test_4_1_values_normalised_whitespace_and_combined_lines() -> None:
    assert normalised_field([("Foo", "1,2")], "foo") == normalised_field([("Foo", " 1, 2 ")], "foo")
    assert normalised_field([("Foo", "1, 2")], "foo") == normalised_field(
        [("Foo", "1"), ("foo", "2")], "FOO"
    )
    assert normalised_field([], "foo") is None


def test_4_1_new_variant_does_not_invalidate_the_other() -> None:
    cache = make_cache()
    store(cache, VARY_FOO, body=b"one", req=[("Foo", "1")])
    store(cache, VARY_FOO, body=b"two", req=[("Foo", "2")])
    result = cache.lookup("GET", URL, [("Foo", "1")], T0)
    assert result.entry is not None and result.entry.body == b"one"


def test_4_1_same_variant_is_replaced_and_most_recent_wins() -> None:
    cache = make_cache()
    store(cache, VARY_FOO, body=b"old", req=[("Foo", "1")])
    store(
        cache,
        [*VARY_FOO[:1], ("Date", date(1)), ("Vary", "Foo")],
        body=b"new",
        req=[("Foo", "1")],
        at=T0 + 1,
    )
    assert len(cache.store) == 1
    result = cache.lookup("GET", URL, [("Foo", "1")], T0 + 2)
    assert result.entry is not None and result.entry.body == b"new"
