"""Age calculation and the Age header (RFC 9111 §4.2.3, §5.1)."""

from __future__ import annotations

import pytest

from cproxy.cache import LookupKind
from cproxy.cache.policy import age_value, current_age
from tests.test_cache_support import T0, URL, date, make_cache, store

# RFC 9111 §1.2.2: the largest Age counted; older than any freshness lifetime.
LARGEST = 2147483648


@pytest.mark.parametrize(
    ("lines", "age"),
    [
        (["15"], 15),
        ([" 15 "], 15),
        # §5.1: not a non-negative integer: ignored, as if absent.
        (["abc"], 0),
        (["-7200"], 0),
        (["7200.0"], 0),
        (["7200;foo=bar"], 0),
        ([""], 0),
        # §5.1: a list, in one line or several: the first member counts.
        (["7200,0"], 7200),
        (["0,7200"], 0),
        (["0, 0"], 0),
        (["0", "7200"], 0),
        (["7200", "0"], 7200),
        (["", "7200"], 7200),
        (["abc, 7200"], 0),
        # §1.2.2: 2^31 or more counts as 2^31.
        (["2147483647"], 2147483647),
        (["2147483648"], LARGEST),
        (["99999999999"], LARGEST),
        (["99999999999999999999999999"], LARGEST),
    ],
)
def test_5_1_age_first_member_counts_and_invalid_is_ignored(lines: list[str], age: int) -> None:
    assert age_value([("Age", v) for v in lines]) == age


@pytest.mark.parametrize("value", ["abc", "-7200", "7200.0", "0, 7200", "7200;foo=bar"])
def test_5_1_ignored_or_young_age_leaves_the_response_fresh(value: str) -> None:
    cache = make_cache()
    store(cache, [("Date", date()), ("Cache-Control", "max-age=3600"), ("Age", value)])
    assert cache.lookup("GET", URL, [], T0 + 3).kind is LookupKind.HIT


@pytest.mark.parametrize("lines", [["7200, 0"], ["7200", "0"], ["2147483648"], ["9" * 30]])
def test_5_1_old_first_age_makes_the_response_stale(lines: list[str]) -> None:
    cache = make_cache()
    store(
        cache, [("Date", date()), ("Cache-Control", "max-age=3600")] + [("Age", v) for v in lines]
    )
    assert cache.lookup("GET", URL, [], T0 + 3).kind is LookupKind.MISS


def test_4_2_3_current_age_formula() -> None:
    # Date 10 s before the response arrived, Age 5, 2 s response delay, 100 s resident.
    age = current_age(
        date_value=T0 - 10, age_value=5, request_time=T0 - 2, response_time=T0, now=T0 + 100
    )
    assert age == 110  # max(apparent 10, corrected 5 + 2) + 100
    age = current_age(
        date_value=T0 + 50, age_value=30, request_time=T0 - 2, response_time=T0, now=T0 + 1
    )
    assert age == 33  # a Date in the future gives apparent age 0; Age + delay wins


def test_4_2_3_age_header_makes_response_stale() -> None:
    cache = make_cache()
    store(cache, [("Date", date()), ("Cache-Control", "max-age=10"), ("Age", "15")])
    assert cache.lookup("GET", URL, [], T0).kind is LookupKind.MISS


def test_5_1_age_generated_and_updated_on_hits() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=600"), ("Date", date()), ("Age", "30")])
    result = cache.lookup("GET", URL, [], T0 + 5)
    head = result.response_head()
    assert b"\r\nAge: 35\r\n" in head
    assert head.count(b"Age:") == 1
    assert f"Date: {date()}".encode() in head  # the Date is never rewritten


def test_4_2_3_missing_date_replaced_by_response_time() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=600")], at=T0)
    result = cache.lookup("GET", URL, [], T0 + 1)
    assert result.entry is not None and ("Date", date()) in result.entry.headers
