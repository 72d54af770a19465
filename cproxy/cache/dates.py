"""HTTP-date parsing and formatting (RFC 9110 §5.6.7).

Three formats are accepted, as a recipient must (RFC 9110 §5.6.7):

- IMF-fixdate: ``Sun, 06 Nov 1994 08:49:37 GMT`` (the preferred format)
- obsolete RFC 850: ``Sunday, 06-Nov-94 08:49:37 GMT`` (two-digit year)
- obsolete asctime: ``Sun Nov  6 08:49:37 1994``

Names of days and months and the ``GMT`` zone are matched case-insensitively, following
the spec's advice to be robust in parsing timestamps; anything else (other zones, missing
comma, extra spaces, one-digit hours, impossible dates) is invalid and yields None. The day
name is not checked against the date: it carries no information the date lacks.
"""

from __future__ import annotations

import functools
import re
import time

_MONTHS = {
    name: number
    for number, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1,
    )
}
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH = r"(?P<month>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_TIME = r"(?P<hour>\d\d):(?P<minute>\d\d):(?P<second>\d\d)"

_IMF_FIXDATE = re.compile(
    rf"{_DAY}, (?P<day>\d\d) {_MONTH} (?P<year>\d{{4}}) {_TIME} gmt\Z", re.IGNORECASE
)
_RFC850 = re.compile(
    rf"{_LONG_DAY}, (?P<day>\d\d)-{_MONTH}-(?P<year>\d\d) {_TIME} gmt\Z", re.IGNORECASE
)
_ASCTIME = re.compile(
    rf"{_DAY} {_MONTH} (?P<day>[ \d]\d) {_TIME} (?P<year>\d{{4}})\Z", re.IGNORECASE
)

_SECONDS_PER_YEAR = 365.2425 * 24 * 3600


def parse_http_date(text: str | None, *, now: float | None = None) -> int | None:
    """Seconds since the epoch for an HTTP-date, or None when ``text`` is not one.

    ``now`` (epoch seconds) resolves RFC 850 two-digit years: a year that appears more than
    50 years in the future is the most recent past year with the same last two digits
    (RFC 9110 §5.6.7). Without ``now`` two-digit years 70-99 are 19xx and 00-69 are 20xx.
    """
    if text is None:
        return None
    if now is None and len(text) <= _REMEMBERED_DATE_CHARS:
        return _parse_remembered(text)
    return _parse(text, now)


# Responses repeat the same few dates (an origin's Date changes once a second; Expires and
# Last-Modified less often), and every miss parses its Date: short ones are remembered.
_REMEMBERED_DATE_CHARS = 64


def _parse(text: str, now: float | None) -> int | None:
    text = text.strip(" \t")
    match = _IMF_FIXDATE.match(text) or _ASCTIME.match(text)
    two_digit_year = False
    if match is None:
        match = _RFC850.match(text)
        two_digit_year = match is not None
    if match is None:
        return None
    year = int(match.group("year"))
    if two_digit_year:
        year = _expand_year(year, now)
    month = _MONTHS[match.group("month").lower()]
    day = int(match.group("day").strip())
    hour, minute, second = (int(match.group(g)) for g in ("hour", "minute", "second"))
    # RFC 9110 §5.6.7 allows second 60 (a leap second); timegm handles it arithmetically.
    if not (1 <= day <= _days_in_month(year, month) and hour <= 23 and minute <= 59):
        return None
    if second > 60:
        return None
    return _days_since_epoch(year, month, day) * 86400 + hour * 3600 + minute * 60 + second


# Computed here rather than with ``calendar.timegm``: ``calendar`` and the ``datetime`` it
# imports are about 0.7 MiB of a process, for two lines of arithmetic (issue #21).
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_in_month(year: int, month: int) -> int:
    if year < 1:
        return 0
    return 29 if month == 2 and _is_leap(year) else _DAYS_IN_MONTH[month - 1]


def _days_since_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to the given date of the proleptic Gregorian calendar (the
    count ``calendar.timegm`` makes): whole years, then the months of this one."""
    y = year - 1
    days = 365 * y + y // 4 - y // 100 + y // 400 - 719162  # 719162: days from 0001-01-01
    days += sum(_DAYS_IN_MONTH[: month - 1]) + (1 if month > 2 and _is_leap(year) else 0)
    return days + day - 1


def _expand_year(two_digits: int, now: float | None) -> int:
    """The four-digit year for an RFC 850 two-digit year (RFC 9110 §5.6.7)."""
    if now is None:
        return 1900 + two_digits if two_digits >= 70 else 2000 + two_digits
    current = time.gmtime(now).tm_year
    year = current - current % 100 + two_digits
    if year > current + 50:
        year -= 100
    elif year < current - 50:
        year += 100
    return year


def format_http_date(timestamp: float) -> str:
    """The IMF-fixdate for ``timestamp`` (epoch seconds, fractions truncated)."""
    t = time.gmtime(int(timestamp))
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    return (
        f"{days[t.tm_wday]}, {t.tm_mday:02d} {months[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


@functools.lru_cache(maxsize=256)
def _parse_remembered(text: str) -> int | None:
    """`_parse` without ``now`` (deterministic), remembered."""
    return _parse(text, None)
