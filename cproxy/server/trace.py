"""TRACE (RFC 9110 §9.3.8): refused unless TraceEnable is on, and never a credential echo.

A TRACE's answer is the request as received. A page in a browser that can make one (or
an origin that echoes it) could then read the user's Cookie and Authorization fields,
which scripts are not meant to see (cross-site tracing). So TRACE is refused with 405 by
default, as Apache's ``TraceEnable off`` and most deployments do; when it is enabled,
cproxy drops the credential fields from it before it answers it itself (Max-Forwards 0)
or forwards it (RFC 9110 §9.3.8 asks clients not to send them in a TRACE at all).

A method spelled ``trace`` or ``Trace`` is another method to HTTP (§9.1), but an origin
that compares methods case-insensitively would echo it like a TRACE: every spelling gets
the same treatment.
"""

from __future__ import annotations

from dataclasses import dataclass

from cproxy.directives import Config
from cproxy.http import Request

# The fields a TRACE never carries past cproxy.
CREDENTIAL_FIELDS = ("cookie", "authorization", "proxy-authorization")

_METHODS = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, CONNECT"


def allowed_methods(cfg: Config) -> str:
    """The Allow value cproxy advertises (OPTIONS with Max-Forwards 0, a refused TRACE)."""
    return _METHODS + ", TRACE" if cfg.trace_enable else _METHODS


@dataclass(frozen=True)
class Refusal:
    """A local answer: status, the page's message, extra response fields."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()


def is_trace(method: str) -> bool:
    """TRACE in any letter case."""
    return len(method) == 5 and method.upper() == "TRACE"


def trace_refusal(req: Request, cfg: Config) -> Refusal | None:
    """For a TRACE: the 405 when TraceEnable is off; otherwise None, with the credential
    fields removed from ``req``."""
    if not cfg.trace_enable:
        allow = (("Allow", allowed_methods(cfg)),)
        return Refusal(405, "TRACE is disabled on this proxy (TraceEnable off).", allow)
    for name in CREDENTIAL_FIELDS:
        req.headers.remove(name)
    return None
