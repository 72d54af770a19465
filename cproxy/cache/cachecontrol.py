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

import re
from collections.abc import Iterable

from cproxy.cache.fields import split_list, unquote

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
    directives: CacheControl = {}
    for value in values:
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
    return directives


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
