"""Cache-Control parsing (RFC 9111 §5.2).

``parse_cache_control(values)`` turns every Cache-Control field line of a message into a dict
``{directive name (lowercase): argument or None}``. The rules, each from RFC 9111:

- Directive names are case-insensitive (§5.2); arguments are a token or a quoted-string
  (§5.2, RFC 9110 §5.6.4), escapes removed. ``max-age="60"`` is accepted: senders must not
  quote it but recipients ought to accept the quoted form (§5.2).
- A member that is not ``token [ "=" ( token / quoted-string ) ]`` (for example
  ``max-age =60``, ``max-age= 60`` or ``max-age='60'``) is malformed and ignored whole.
- Unknown directives are kept (callers ignore them, §5.2.3); a directive name inside a quoted
  argument (``ext="max-age=5"``) is never mistaken for a directive.
- Duplicates (§4.2.1: use the first or treat as stale; the most restrictive wins): equal
  duplicates collapse; conflicting arguments of a directive become ``INVALID`` (the empty
  string), which ``delta_seconds`` reports as invalid, so a conflicting ``max-age`` makes the
  response stale. For the field-list directives ``no-cache`` and ``private`` the bare form is
  the most restrictive and wins; otherwise the listed field names are merged.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any

from cproxy.cache.fields import split_list, unquote
from cproxy.memo import memoised_when_short

# RFC 9111 §1.2.2: a delta-seconds value too large to represent is taken as 2^31.
MAX_DELTA_SECONDS = 2147483648

# The argument a directive gets when duplicates conflict: never a valid delta-seconds.
INVALID = ""

# Directives whose argument is a list of field names (RFC 9111 §5.2.2.4, §5.2.2.7).
FIELD_LIST_DIRECTIVES = frozenset({"no-cache", "private"})

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_MEMBER = re.compile(rf"({_TOKEN})(?:=({_TOKEN}|{_QUOTED}))?\Z", re.DOTALL)
_DIGITS = re.compile(r"[0-9]+\Z")

CacheControl = dict[str, str | None]


def parse_cache_control(values: Iterable[str] | str | None) -> CacheControl:
    """Parse Cache-Control field line values (all lines of one message) into a dict.

    ``values`` may be one string, an iterable of field line values, or None (no field).
    Never raises on bad input: malformed members are skipped.
    """
    if values is None:
        return {}
    if isinstance(values, str):
        values = [values]
    elif isinstance(values, (list, tuple)) and len(values) == 1:
        # The usual single line: its parse is remembered (a copy is returned, so a
        # caller may change it), as the same few values come on response after response.
        return dict(_parse_line_memo(values[0]))
    directives: CacheControl = {}
    for value in values:
        _parse_members(value, directives)
    return directives


def _parse_members(value: str, directives: CacheControl) -> None:
    """Add the directives of one field line value to ``directives``."""
    for member in split_list(value):
        match = _MEMBER.match(member)
        if match is None:
            continue
        name = match.group(1).lower()
        raw = match.group(2)
        argument = None if raw is None else unquote(raw)
        if name not in directives:
            directives[name] = argument
        else:
            directives[name] = _merge(name, directives[name], argument)


def _parse_line(value: str) -> CacheControl:
    directives: CacheControl = {}
    _parse_members(value, directives)
    return directives


# Never handed out itself: `parse_cache_control` copies what it gives.
_parse_line_memo = memoised_when_short(_parse_line, max_len=256, maxsize=512)


def _merge(name: str, old: str | None, new: str | None) -> str | None:
    """Combine two occurrences of one directive: the most restrictive reading (§4.2.1)."""
    if old == new:
        return old
    if name in FIELD_LIST_DIRECTIVES:
        # The bare form applies to the whole response, so it is the most restrictive.
        if old is None or new is None:
            return None
        merged = field_names(old) + [f for f in field_names(new) if f not in field_names(old)]
        return ", ".join(merged)
    return INVALID


def delta_seconds(argument: str | None) -> int | None:
    """The delta-seconds value of a directive argument (RFC 9111 §1.2.2), or None if invalid.

    Only 1*DIGIT is valid: negative, fractional, empty and alphabetic values are invalid.
    Values larger than 2^31 are capped at 2147483648.
    """
    if argument is None or _DIGITS.match(argument) is None:
        return None
    if len(argument.lstrip("0")) > len(str(MAX_DELTA_SECONDS)):
        # Too long to be below the cap; also keeps int() away from huge digit strings.
        return MAX_DELTA_SECONDS
    return min(int(argument), MAX_DELTA_SECONDS)


def field_names(argument: str | None) -> list[str]:
    """The lowercase field names of a ``no-cache="..."`` / ``private="..."`` argument."""
    if not argument:
        return []
    return [name.lower() for name in split_list(argument)]


# -- Targeted cache control (RFC 9213): a Structured Field Dictionary (RFC 8941 §3.2) -------


def _sf_argument(value: object) -> str | None:
    """A Dictionary member's value as a Cache-Control argument (None for a bare key, ``?1``):
    the items of an inner list joined with ", " (field names for ``private``/``no-cache``),
    the text of an integer, decimal, string or token, base64 for a byte sequence."""
    if value is True:
        return None
    if isinstance(value, list):
        return ", ".join(str(_sf_argument(item)) for item, _params in value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def parse_targeted_cache_control(value: str) -> CacheControl | None:
    """A targeted cache-control field's directives (RFC 9213 §2.1), or None when invalid.

    The field is a Structured Field Dictionary (RFC 8941 §4.2.2) parsed by the ``http-sf``
    package: ``max-age=60, no-store``. A value that does not parse whole, or an empty
    one, is invalid: RFC 9213 §2.1 then has the cache ignore the field as a whole.
    Parameters are ignored; a later duplicate key wins (RFC 8941 §4.2.2); a ``?0`` (false)
    directive is absent. The result has the shape of ``parse_cache_control``'s, so every
    freshness and storage rule reads it unchanged.
    """
    # Imported with the first targeted field seen (CacheTargetedFields), not at start:
    # http-sf and what it imports (typing_extensions, json, datetime) are over a MiB of a
    # process that has no use for them otherwise (issue #21).
    import http_sf

    try:
        members: Any = http_sf.parse(value.encode("latin-1"), tltype="dictionary")
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError):
        return None
    if not isinstance(members, dict) or not members:
        return None
    return {
        key: _sf_argument(item) for key, (item, _params) in members.items() if item is not False
    }
