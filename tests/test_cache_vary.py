"""Secondary keys (RFC 9111 §4.1)."""

from __future__ import annotations

import pytest

from cproxy.cache import LookupKind
from cproxy.cache.policy import normalised_field, preferred_language, vary_fields
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


# -- normalised values of Accept-Language and Accept-Encoding (RFC 9110 §12.5.4-5) ------------

VARY_LANG = [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")]


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("Accept-Language", "en-US, fr;q=0.5", "EN-us,FR;q=0.5"),  # case
        ("Accept-Language", "en, fr;q=0.5", "  en ,  fr ; q=0.5 "),  # whitespace
        ("Accept-Language", "en, de, fr;q=0.5", "de, en, fr;q=0.5"),  # equal weights
        ("Accept-Language", "en;q=0.8, de;q=0.8", "de;q=0.80, en;q=0.800"),
        ("Accept-Language", "en;q=1, fr;q=0.5", "en, fr;q=0.5"),  # q=1 is the default
        ("Accept-Encoding", "gzip, br", "BR,GZIP"),
        ("Accept-Encoding", "gzip, deflate, br;q=0.5", "deflate,gzip , br;Q=0.5"),
    ],
)
def test_vary_normalises_weighted_lists(name: str, a: str, b: str) -> None:
    assert normalised_field([(name, a)], name) == normalised_field([(name, b)], name.lower())
    cache = make_cache()
    headers = [("Cache-Control", "max-age=60"), ("Vary", name)]
    store(cache, headers, req=[(name, a)])
    assert cache.lookup("GET", URL, [(name, b)], T0).kind is LookupKind.HIT


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("Accept-Language", "en, fr;q=0.5", "fr, en;q=0.5"),  # the preference differs
        ("Accept-Language", "en, fr", "en"),
        ("Accept-Encoding", "gzip", "gzip;q=0"),
        ("Accept-Encoding", "gzip;q=x", "gzip;q=y"),  # unparsable: compared as sent
    ],
)
def test_vary_different_preferences_stay_apart(name: str, a: str, b: str) -> None:
    assert normalised_field([(name, a)], name) != normalised_field([(name, b)], name)


def test_vary_other_fields_keep_their_case() -> None:
    assert normalised_field([("Foo", "A")], "foo") != normalised_field([("Foo", "a")], "foo")


def test_preferred_language_is_the_one_highest_weight() -> None:
    assert preferred_language([("Accept-Language", "fr;q=0.8, EN-gb, de;q=0.1")]) == "en-gb"
    assert preferred_language([("Accept-Language", "fr, en")]) is None  # a tie
    assert preferred_language([("Accept-Language", "*")]) is None
    assert preferred_language([("Accept-Language", "fr;q=0")]) is None
    assert preferred_language([]) is None


def test_vary_accept_language_selects_the_variant_in_the_preferred_language() -> None:
    cache = make_cache()
    for lang in ("fr", "de"):
        fields = [*VARY_LANG, ("Content-Language", lang)]
        store(cache, fields, body=lang.encode(), req=[("Accept-Language", lang)])
    # Other text, but French is what the client wants most: the French variant.
    result = cache.lookup("GET", URL, [("Accept-Language", "en;q=0.2, FR, de;q=0.9")], T0)
    assert result.kind is LookupKind.HIT and result.entry is not None
    assert result.entry.body == b"fr"
    # English preferred, and no English variant: a miss, not a French answer.
    assert cache.lookup("GET", URL, [("Accept-Language", "en, fr;q=0.9")], T0).kind is (
        LookupKind.MISS
    )
    # A tie at the top says nothing about which variant the client prefers.
    assert cache.lookup("GET", URL, [("Accept-Language", "fr, de, en")], T0).kind is (
        LookupKind.MISS
    )


def test_vary_language_selection_still_needs_the_other_fields_to_match() -> None:
    cache = make_cache()
    headers = [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language, Accept-Encoding")]
    headers.append(("Content-Language", "fr"))
    store(cache, headers, req=[("Accept-Language", "fr"), ("Accept-Encoding", "gzip")])
    hit = [("Accept-Language", "fr, en;q=0.1"), ("Accept-Encoding", "GZIP")]
    assert cache.lookup("GET", URL, hit, T0).kind is LookupKind.HIT
    miss = [("Accept-Language", "fr, en;q=0.1"), ("Accept-Encoding", "br")]
    assert cache.lookup("GET", URL, miss, T0).kind is LookupKind.MISS
