"""Freshness lifetime, Expires and heuristics (RFC 9111 §4.2, §4.2.1, §4.2.2, §5.3)."""

from __future__ import annotations

import calendar
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cproxy.cache import CacheSettings, LookupKind
from cproxy.cache.dates import format_http_date, parse_http_date
from cproxy.cache.policy import freshness_lifetime
from tests.test_cache_support import T0, URL, date, make_cache, store

S = CacheSettings()


def lifetime(headers: list[tuple[str, str]], heuristic: bool = True, **kw: object) -> float:
    settings = CacheSettings(**kw)  # type: ignore[arg-type]
    return freshness_lifetime(headers, settings, heuristic, date_value=T0)


def test_4_2_1_max_age_overrides_expires() -> None:
    headers = [("Cache-Control", "max-age=3600"), ("Expires", date(-10000)), ("Date", date())]
    assert lifetime(headers) == 3600


def test_4_2_1_s_maxage_overrides_max_age() -> None:
    assert lifetime([("Cache-Control", "max-age=3600, s-maxage=1")]) == 1
    assert lifetime([("Cache-Control", "max-age=1"), ("Cache-Control", "s-maxage=3600")]) == 3600


def test_4_2_1_invalid_or_conflicting_max_age_is_stale() -> None:
    assert lifetime([("Cache-Control", "max-age=a100")]) == 0
    assert lifetime([("Cache-Control", "max-age=-100")]) == 0
    assert lifetime([("Cache-Control", "max-age=1800, max-age=1")]) == 0


def test_4_2_1_expires_minus_date() -> None:
    assert lifetime([("Expires", date(500)), ("Date", date())]) == 500
    # Date missing: the response time (date_value) stands in.
    assert lifetime([("Expires", date(100))]) == 100


@pytest.mark.parametrize("bad", ["0", "-1", "Thu, 18 Aug 50 02:01:18 GMT", "soon"])
def test_5_3_invalid_expires_is_already_expired(bad: str) -> None:
    assert lifetime([("Expires", bad), ("Date", date()), ("Last-Modified", date(-9999))]) == 0


def test_5_3_invalid_expires_is_stale_end_to_end() -> None:
    cache = make_cache()
    assert store(cache, [("Expires", "0"), ("Date", date()), ("ETag", '"a"')]) == "stored"
    assert cache.lookup("GET", URL, [], T0 + 1).kind is LookupKind.VALIDATE


def test_4_2_1_differing_expires_lines_are_stale() -> None:
    assert lifetime([("Expires", date(100)), ("Expires", date(200)), ("Date", date())]) == 0


def test_4_2_2_heuristic_fraction_of_last_modified() -> None:
    headers = [("Last-Modified", date(-1000)), ("Date", date())]
    assert lifetime(headers, cache_last_modified_factor=0.1) == pytest.approx(100)
    assert lifetime(headers, heuristic=False) == 0


def test_4_2_2_default_expiry_without_last_modified() -> None:
    assert lifetime([("Date", date())], cache_default_expiry_s=60.0) == 60
    assert lifetime([("Date", date())]) == 0


def test_4_2_1_cache_max_expiry_caps_everything() -> None:
    assert lifetime([("Cache-Control", "max-age=2147483648")], cache_max_expiry_s=86400.0) == (
        86400
    )


@pytest.mark.parametrize(
    ("status", "cached"),
    [
        (200, True),
        (203, True),
        (204, True),
        (404, True),
        (405, True),
        (410, True),
        (414, True),
        (501, True),
        (201, False),
        (202, False),
        (403, False),
        (502, False),
        (503, False),
        (504, False),
        (599, False),
    ],
)
def test_4_2_2_heuristics_only_for_heuristically_cacheable_statuses(
    status: int, cached: bool
) -> None:
    cache = make_cache()
    store(cache, [("Last-Modified", date(-86400)), ("Date", date())], status=status)
    result = cache.lookup("GET", URL, [], T0 + 10)
    assert (result.kind is LookupKind.HIT) is cached


def test_4_2_2_public_allows_heuristics_for_any_status() -> None:
    cache = make_cache()
    headers = [("Last-Modified", date(-86400)), ("Date", date()), ("Cache-Control", "public")]
    store(cache, headers, status=599)
    assert cache.lookup("GET", URL, [], T0 + 10).kind is LookupKind.HIT


def test_4_2_fresh_until_lifetime_then_stale() -> None:
    cache = make_cache()
    store(cache, [("Cache-Control", "max-age=10"), ("ETag", '"a"')])
    assert cache.lookup("GET", URL, [], T0 + 9.5).kind is LookupKind.HIT
    assert cache.lookup("GET", URL, [], T0 + 10).kind is LookupKind.VALIDATE


def test_5_6_7_http_date_formats() -> None:
    want = 784111777
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == want
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == want
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == want
    assert parse_http_date("THU, 18 AUG 2050 02:01:18 gmt") is not None
    for bad in (
        "Thu, 18 Aug 2050 02:01:18 UTC",
        "Thu 18 Aug 2050 02:01:18 GMT",
        "Thu, 18  Aug  2050 02:01:18 GMT",
        "Thu, 18-Aug-2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 02.01.18 GMT",
        "Thu, 18 Aug 2050 2:01:18 GMT",
        "Thu, 31 Feb 2050 02:01:18 GMT",
        "0",
        "",
    ):
        assert parse_http_date(bad) is None, bad


def test_5_6_7_rfc850_two_digit_year_fifty_year_rule() -> None:
    now = parse_http_date("Sun, 06 Nov 2024 08:49:37 GMT")
    assert now is not None
    parsed = parse_http_date("Sunday, 06-Nov-80 08:49:37 GMT", now=now)
    assert parsed is not None and format_http_date(parsed).endswith("1980 08:49:37 GMT")
    parsed = parse_http_date("Sunday, 06-Nov-30 08:49:37 GMT", now=now)
    assert parsed is not None and "2030" in format_http_date(parsed)


@given(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)))
def test_5_6_7_dates_before_1970_and_leap_days_count_as_calendar_counts(when: dt.datetime) -> None:
    # The parser does its own day count (issue #21: no calendar module): the same seconds
    # as calendar.timegm for every date an IMF-fixdate can carry.
    text = when.strftime("%a, %d %b ") + f"{when.year:04d}" + when.strftime(" %H:%M:%S GMT")
    assert parse_http_date(text) == calendar.timegm(when.timetuple())


def test_5_6_7_february_29_only_in_leap_years() -> None:
    assert parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT") == 951782400
    assert parse_http_date("Thu, 29 Feb 1900 00:00:00 GMT") is None  # 1900: not a leap year
    assert parse_http_date("Mon, 29 Feb 2100 00:00:00 GMT") is None
    assert parse_http_date("Thu, 29 Feb 2024 12:00:00 GMT") == 1709208000
    assert parse_http_date("Sat, 01 Jan 0000 00:00:00 GMT") is None  # no year 0


@given(st.text(max_size=40))
def test_5_6_7_date_parser_never_crashes(text: str) -> None:
    result = parse_http_date(text)
    assert result is None or isinstance(result, int)


@given(st.integers(min_value=0, max_value=253402300799))
def test_5_6_7_format_then_parse_round_trips(ts: int) -> None:
    assert parse_http_date(format_http_date(ts)) == ts
