"""Cache-Control parsing and request directives (RFC 9111 §5.2, §5.4, §1.2.2)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from cproxy.cache import LookupKind
from cproxy.cache.cachecontrol import INVALID, delta_seconds, parse_cache_control
from cproxy.cache.policy import request_directives
from tests.test_cache_support import T0, URL, make_cache, store


def test_5_2_names_case_insensitive_and_quoted_args_unescaped() -> None:
    cc = parse_cache_control(['MaX-AgE=3600, No-Store, ext="a\\"b, c"'])
    assert cc == {"max-age": "3600", "no-store": None, "ext": 'a"b, c'}


def test_5_2_quoted_max_age_accepted() -> None:
    assert delta_seconds(parse_cache_control('max-age="60"')["max-age"]) == 60


def test_5_2_directive_inside_quoted_string_is_not_a_directive() -> None:
    assert parse_cache_control('extension="max-age=3600", max-age=1') == {
        "extension": "max-age=3600",
        "max-age": "1",
    }


def test_5_2_malformed_members_ignored() -> None:
    cc = parse_cache_control(["max-age =100, max-age= 100, s-maxage='5', public"])
    assert cc.keys() == {"s-maxage", "public"}
    # ' is a token character, so '5' is a token, but not a valid delta-seconds.
    assert delta_seconds(cc["s-maxage"]) is None


def test_4_2_1_conflicting_duplicates_are_invalid_across_lines() -> None:
    cc = parse_cache_control(["max-age=1800", "max-age=1"])
    assert cc["max-age"] == INVALID
    assert delta_seconds(cc["max-age"]) is None
    assert parse_cache_control("max-age=5, max-age=5")["max-age"] == "5"


def test_4_2_1_duplicate_field_list_directives_most_restrictive() -> None:
    assert parse_cache_control('no-cache="a", no-cache')["no-cache"] is None
    assert parse_cache_control('private="a", private="B"')["private"] == "a, b"


def test_1_2_2_delta_seconds_validity_and_cap() -> None:
    assert delta_seconds("003600") == 3600
    assert delta_seconds("2147483648") == 2147483648
    assert delta_seconds("99999999999") == 2147483648
    assert delta_seconds("9" * 5000) == 2147483648
    for bad in ("-1", "3600.0", "a100", "100a", "", None):
        assert delta_seconds(bad) is None


def test_5_2_1_request_directives_parsed() -> None:
    req = request_directives(
        [("Cache-Control", "max-age=0, max-stale, min-fresh=10, only-if-cached, no-store")]
    )
    assert req.max_age == 0 and req.max_stale == math.inf and req.min_fresh == 10
    assert req.only_if_cached and req.no_store and not req.no_cache
    assert request_directives([("Cache-Control", "max-stale=abc")]).max_stale == 0


def test_5_4_pragma_no_cache_only_without_cache_control() -> None:
    assert request_directives([("Pragma", "no-cache")]).no_cache
    both = [("Pragma", "no-cache"), ("Cache-Control", "max-stale=5")]
    assert not request_directives(both).no_cache
    assert not request_directives([("Pragma", "unrecognised-extension")]).no_cache


def test_5_2_1_4_request_no_cache_validates_fresh_entry() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=3600"), ("ETag", '"a"')])
    result = cache.lookup("GET", URL, [("Cache-Control", "no-cache")], T0 + 1)
    assert result.kind is LookupKind.VALIDATE
    assert result.origin_headers is not None
    assert ("If-None-Match", '"a"') in result.origin_headers
    assert result.cache_status() == "cproxy; fwd=request; ttl=3599; detail=request-no-cache"


def test_5_2_1_1_request_max_age_zero_always_validates() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=3600"), ("Last-Modified", "x")])
    # No validator (the Last-Modified is invalid): forwarded as a plain request.
    result = cache.lookup("GET", URL, [("Cache-Control", "max-age=0")], T0)
    assert result.kind is LookupKind.MISS and result.fwd == "request"


def test_5_2_1_1_request_max_age_larger_than_age_serves() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=3600"), ("Age", "1800")])
    assert cache.lookup("GET", URL, [("Cache-Control", "max-age=600")], T0).kind is (
        LookupKind.MISS
    )
    assert cache.lookup("GET", URL, [("Cache-Control", "max-age=2000")], T0).kind is (
        LookupKind.HIT
    )


def test_5_2_1_3_min_fresh() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=1500"), ("ETag", '"e"')])
    assert cache.lookup("GET", URL, [("Cache-Control", "min-fresh=2000")], T0).kind is (
        LookupKind.VALIDATE
    )
    assert cache.lookup("GET", URL, [("Cache-Control", "min-fresh=1000")], T0).kind is (
        LookupKind.HIT
    )


def test_5_2_1_2_max_stale_with_and_without_value() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=1")])
    assert cache.lookup("GET", URL, [("Cache-Control", "max-stale=1000")], T0 + 100).kind is (
        LookupKind.HIT
    )
    assert cache.lookup("GET", URL, [("Cache-Control", "max-stale=10")], T0 + 100).kind is (
        LookupKind.MISS
    )
    assert cache.lookup("GET", URL, [("Cache-Control", "max-stale")], T0 + 10**6).kind is (
        LookupKind.HIT
    )


def test_5_2_1_7_only_if_cached_miss_and_hit() -> None:
    cache = make_cache()
    oic = [("Cache-Control", "only-if-cached")]
    assert cache.lookup("GET", URL, oic, T0).kind is LookupKind.ONLY_IF_CACHED
    store(cache, [("Cache-Control", "max-age=10"), ("ETag", '"a"')])
    assert cache.lookup("GET", URL, oic, T0 + 5).kind is LookupKind.HIT
    assert cache.lookup("GET", URL, oic, T0 + 50).kind is LookupKind.ONLY_IF_CACHED


def test_5_2_2_1_must_revalidate_forbids_max_stale() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=1, must-revalidate"), ("ETag", '"a"')])
    result = cache.lookup("GET", URL, [("Cache-Control", "max-stale")], T0 + 10)
    assert result.kind is LookupKind.VALIDATE


@given(st.lists(st.text(max_size=60), max_size=4))
def test_5_2_parser_never_crashes(lines: list[str]) -> None:
    cc = parse_cache_control(lines)
    for name, value in cc.items():
        assert name == name.lower()
        assert value is None or isinstance(value, str)
        delta_seconds(value)


def test_a_remembered_line_is_parsed_alike_and_handed_out_as_a_copy() -> None:
    # One field line's parse is remembered: each caller gets its own dict, so changing
    # one answer changes no later one; lines parsed one by one, as a list of one line
    # and in a tuple agree, with duplicates inside the line merged as across lines.
    line = "max-age=60, private, max-age=60, no-cache=a, no-cache=b"
    first = parse_cache_control([line])
    assert first == {"max-age": "60", "private": None, "no-cache": "a, b"}
    first["max-age"] = "0"
    del first["private"]
    assert parse_cache_control([line]) == parse_cache_control(line) == parse_cache_control((line,))
    assert parse_cache_control([line])["max-age"] == "60"
    assert parse_cache_control(iter([line])) == parse_cache_control([line])
    assert parse_cache_control([line]) is not parse_cache_control([line])
