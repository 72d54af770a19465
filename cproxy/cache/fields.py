"""Header-field helpers for the cache: headers are a sequence of ``(name, value)`` str pairs.

The cache does not depend on the HTTP layer's ``Headers`` class: every function here takes
plain pairs and compares field names case-insensitively (RFC 9110 §5.1); list-based fields
are split by `cproxy.http.syntax.split_list` without breaking quoted strings.
"""

from __future__ import annotations

from collections.abc import Sequence

# The list and quoted-string syntax is the protocol's (one splitter for all of cproxy).
from cproxy.http.syntax import OWS, split_list, unquote

__all__ = [
    "OWS",
    "HeaderPairs",
    "get_all",
    "get_first",
    "has_any",
    "list_members",
    "split_list",
    "unquote",
]

HeaderPairs = Sequence[tuple[str, str]]


def get_all(headers: HeaderPairs, name: str) -> Sequence[str]:
    """Every field line value for ``name`` (case-insensitive), in order. Read-only: it
    may be the headers' own list."""
    indexed = getattr(headers, "get_values", None)
    if indexed is not None:
        # cproxy.http.Headers keeps a name index: one dict lookup instead of a scan, and
        # no copy of the values (the policy only reads them).
        return indexed(name)  # type: ignore[no-any-return]
    wanted = name.lower()
    return [value for key, value in headers if key.lower() == wanted]


def get_first(headers: HeaderPairs, name: str) -> str | None:
    """The first field line value for ``name``, or None when the field is absent."""
    indexed = getattr(headers, "get", None)
    if indexed is not None:
        return indexed(name)  # type: ignore[no-any-return]
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def has_any(headers: HeaderPairs, names: frozenset[str]) -> bool:
    """True when a field with one of ``names`` (lower-case) is present."""
    indexed = getattr(headers, "has_any", None)
    if indexed is not None:
        return indexed(names)  # type: ignore[no-any-return]
    return any(key.lower() in names for key, _ in headers)


def list_members(headers: HeaderPairs, name: str) -> list[str]:
    """The members of a list-based field across all its field lines."""
    members: list[str] = []
    for value in get_all(headers, name):
        members.extend(split_list(value))
    return members
