"""Field syntax shared by the protocol and the cache (RFC 9110 §5.6): list-based fields
split at top-level commas, quoted strings, and the hop-by-hop field list. The one splitter
of cproxy: a comma inside a quoted string never splits a member (``Connection``,
``Cache-Control``, ``Vary``, ``Via``... all go through here)."""

from __future__ import annotations

# RFC 9110 §5.6.3: optional whitespace is SP / HTAB.
OWS = " \t"

# The one hop-by-hop list: fields for one connection or one proxy hop (RFC 9110 §7.6.1,
# and the proxy authentication fields of §11.7, which this hop consumes), never forwarded
# (cproxy.http.message) and never stored (cproxy.cache.policy.NOT_STORED_FIELDS adds the
# fields a cache regenerates). Content-Length is not here: framing is rebuilt separately.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-authentication-info",
    }
)


def split_list(value: str) -> list[str]:
    """Split a list-based field value at top-level commas (RFC 9110 §5.6.1).

    Commas inside quoted strings (with backslash escapes) do not split; members are
    stripped of OWS and empty members are dropped, as recipients must accept them.
    """
    if '"' not in value:
        # The common case, nothing quoted: the C split does it.
        return [m for m in (part.strip(OWS) for part in value.split(",")) if m]
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
