"""The Cache-Status response header field (RFC 9211).

One list member per cache: ``cproxy; hit; ttl=376`` or ``cproxy; fwd=uri-miss; stored``.
Parameters follow RFC 9211 §2: ``hit``, ``fwd`` (a token from §2.2), ``fwd-status``, ``ttl``,
``stored``, ``collapsed``, ``key`` and ``detail``.
"""

from __future__ import annotations

import functools
import re

# RFC 9211 §2.2: why the request went forward.
FWD_REASONS = frozenset(
    {"bypass", "method", "uri-miss", "vary-miss", "miss", "request", "stale", "partial"}
)

_SF_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*\Z")


def sf_string(text: str) -> str:
    """A Structured Field string (RFC 8941 §3.3.3): quoted, ``\\`` and ``"`` escaped.

    Characters outside printable ASCII are replaced by ``?`` (sf-string is ASCII only).
    """
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Remembered: asked of the cache's name on every response, and of the few detail words.
@functools.lru_cache(maxsize=256)
def _token_or_string(text: str) -> str:
    return text if _SF_TOKEN.match(text) else sf_string(text)


def cache_status(
    name: str = "cproxy",
    *,
    hit: bool = False,
    fwd: str | None = None,
    fwd_status: int | None = None,
    ttl: float | None = None,
    stored: bool = False,
    collapsed: bool = False,
    key: str | None = None,
    detail: str | None = None,
) -> str:
    """Build one Cache-Status list member (RFC 9211 §2).

    ``hit`` and ``fwd`` exclude each other (§2.1: hit means the request was not forwarded);
    ``fwd`` must be one of ``FWD_REASONS``. ``ttl`` is rounded down to whole seconds and may
    be negative (a stale response, §2.5).
    """
    if hit and fwd is not None:
        raise ValueError("Cache-Status: hit and fwd exclude each other")
    if fwd is not None and fwd not in FWD_REASONS:
        raise ValueError(f"Cache-Status: unknown fwd reason {fwd!r}")
    params = [_token_or_string(name)]
    if hit:
        params.append("hit")
    if fwd is not None:
        params.append(f"fwd={fwd}")
    if fwd_status is not None:
        params.append(f"fwd-status={int(fwd_status)}")
    if ttl is not None:
        params.append(f"ttl={int(ttl // 1)}")
    if stored:
        params.append("stored")
    if collapsed:
        params.append("collapsed")
    if key is not None:
        params.append(f"key={sf_string(key)}")
    if detail:
        params.append(f"detail={_token_or_string(detail)}")
    return "; ".join(params)
