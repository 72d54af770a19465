"""Age calculation and the Age header (RFC 9111 §4.2.3, §5.1)."""

from __future__ import annotations

import pytest

from cproxy.cache import LookupKind
from cproxy.cache.policy import age_value, current_age
from tests.test_cache_support import T0, URL, date, make_cache, store

# What an Age that is not one delta-seconds value counts as: older than any lifetime.
OLD = 2147483648


@pytest.mark.parametrize(
    ("lines", "age"),
    [
        (["15"], 15),
        ([" 15 "], 15),
        (["abc"], OLD),
        (["-7200"], OLD),
        (["7200.0"], OLD),
        (["7200;foo=bar"], OLD),
        (["7200,0"], OLD),
        (["0,7200"], OLD),
        (["0, 0"], OLD),
        (["0", "7200"], OLD),
        (["7200", "0"], OLD),
        (["0", "0"], OLD),
        ([""], OLD),
        (["99999999999"], 2147483648),
    ],
)
def test_5_1_age_not_one_delta_seconds_counts_as_old(lines: list[str], age: int) -> None:
    """§5.1: anything but one valid delta-seconds value makes the response count as
    already old (validated before reuse), the careful reading of "SHOULD ignore"."""
    assert age_value([("Age", v) for v in lines]) == age


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


def test_4_2_3_garbage_age_means_validate_before_reuse() -> None:
    cache = make_cache()
    store(
        cache,
        [("Date", date()), ("Cache-Control", "max-age=3600"), ("Age", "abc"), ("ETag", '"a"')],
    )
    result = cache.lookup("GET", URL, [], T0 + 3)
    assert result.kind is LookupKind.VALIDATE


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
