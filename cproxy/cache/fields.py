"""Header-field helpers for the cache: headers are a sequence of ``(name, value)`` str pairs.

The cache does not depend on the HTTP layer's ``Headers`` class: every function here takes
plain pairs, compares field names case-insensitively (RFC 9110 §5.1) and splits list-based
fields (RFC 9110 §5.6.1) without breaking quoted strings (RFC 9110 §5.6.4).
"""

from __future__ import annotations

from collections.abc import Sequence

HeaderPairs = Sequence[tuple[str, str]]

# RFC 9110 §5.6.3: optional whitespace is SP / HTAB.
OWS = " \t"


def get_all(headers: HeaderPairs, name: str) -> list[str]:
    """Every field line value for ``name`` (case-insensitive), in order."""
    indexed = getattr(headers, "get_all", None)
    if indexed is not None:
        # cproxy.http.Headers keeps a name index: one dict lookup instead of a scan.
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


def split_list(value: str) -> list[str]:
    """Split a list-based field value at top-level commas (RFC 9110 §5.6.1).

    Commas inside quoted strings (with backslash escapes) do not split; members are
    stripped of OWS and empty members are dropped, as recipients must accept them.
    """
    members: list[str] = []
    current: list[str] = []
    in_quote = False
    escaped = False
    for char in value:
        if in_quote:
            current.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_quote = False
        elif char == '"':
            in_quote = True
            current.append(char)
        elif char == ",":
            members.append("".join(current))
            current = []
        else:
            current.append(char)
    members.append("".join(current))
    return [m.strip(OWS) for m in members if m.strip(OWS)]


def list_members(headers: HeaderPairs, name: str) -> list[str]:
    """The members of a list-based field across all its field lines."""
    members: list[str] = []
    for value in get_all(headers, name):
        members.extend(split_list(value))
    return members


def unquote(text: str) -> str:
    """The content of a quoted-string (RFC 9110 §5.6.4) with escapes removed.

    Text that is not a complete quoted-string is returned unchanged.
    """
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        out: list[str] = []
        escaped = False
        for char in text[1:-1]:
            if escaped:
                out.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            else:
                out.append(char)
        return "".join(out)
    return text
