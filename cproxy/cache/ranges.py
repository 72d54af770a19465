"""Byte ranges served from a complete stored response (RFC 9110 §14).

A cache may answer a Range request from a stored 200 (RFC 9111 §3.4 lets it combine
and serve parts of stored responses; RFC 9110 §14.2 lets any recipient ignore Range).
cproxy serves one byte range; for several ranges, or a range it cannot read, it sends
the whole 200, which RFC 9110 §14.2 allows. Pure functions: no I/O.
"""

from __future__ import annotations

import re

from cproxy.cache.dates import parse_http_date
from cproxy.cache.fields import HeaderPairs, get_all, get_first
from cproxy.cache.policy import parse_etag, strong_match

# RFC 9110 §14.1.2: int-range "first-last" or "first-", or suffix-range "-length".
_ONE_RANGE = re.compile(r"bytes[ \t]*=[ \t]*([0-9]{0,18})-([0-9]{0,18})[ \t]*", re.IGNORECASE)

UNSATISFIABLE = (-1, -1)


def requested_range(req_headers: HeaderPairs, length: int) -> tuple[int, int] | None:
    """The single byte range to send as ``(first, last)`` (inclusive), `UNSATISFIABLE`
    (answer 416), or None (send the whole response).

    None also covers: no Range, several Range fields or ranges, a unit other than
    bytes, and syntax errors, which RFC 9110 §14.2 says a recipient ignores.
    """
    values = get_all(req_headers, "Range")
    if len(values) != 1:
        return None
    m = _ONE_RANGE.fullmatch(values[0])
    if m is None:
        return None
    first_text, last_text = m.groups()
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0:
            return UNSATISFIABLE  # §14.1.3: a zero-length suffix selects nothing
        return (max(0, length - suffix), length - 1) if length else UNSATISFIABLE
    first = int(first_text)
    last = int(last_text) if last_text else length - 1
    if last_text and last < first:
        return None  # §14.1.1: invalid, so the whole Range field is ignored
    if first >= length:
        return UNSATISFIABLE
    return first, min(last, length - 1)


def if_range_matches(req_headers: HeaderPairs, stored_headers: HeaderPairs) -> bool:
    """RFC 9110 §13.1.5: without If-Range, or when it still matches, the range applies.

    An entity-tag must match the stored strong ETag exactly; a date must equal the stored
    Last-Modified (and only counts when the stored one is strong enough: we require it to
    be present).
    """
    condition = get_first(req_headers, "If-Range")
    if condition is None:
        return True
    condition = condition.strip(" \t")
    if condition.startswith(('"', "W/")):
        # RFC 9110 §13.1.5: If-Range uses the strong comparison.
        return strong_match(parse_etag(condition), parse_etag(get_first(stored_headers, "ETag")))
    date = parse_http_date(condition)
    stored_date = parse_http_date(get_first(stored_headers, "Last-Modified"))
    return date is not None and stored_date is not None and date == stored_date
