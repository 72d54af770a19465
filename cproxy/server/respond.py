"""What one request's answer records (`Outcome`), and cproxy's own answers.

Shared by the client side, the cache front and the fast lane, so an answer of cproxy's
own looks the same whichever path produced it. Both paths write their access-log line
with `AccessLog.write` itself, the general path from its `Outcome`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from cproxy.errors import OriginTLSError, PoolQueueTimeout
from cproxy.http import Request
from cproxy.http.framing import NONE
from cproxy.origin.connection import format_host_port
from cproxy.origin.tls import OriginClientCertRequired
from cproxy.server.pages import error_response
from cproxy.server.sink import ClientGone, ClientSink

log = logging.getLogger("cproxy")


class Outcome:
    """What the access log records of one request."""

    __slots__ = (
        "cache",
        "on_upstream_tls",
        "origin",
        "protocol",
        "sent",
        "status",
        "upstream_tls",
        "user",
    )

    def __init__(self, status: int = 0, sent: int = 0, origin: str = "-", cache: str = "-") -> None:
        self.status = status
        self.sent = sent
        self.origin = origin
        self.cache = cache
        self.user: str | None = None  # who authenticated (ProxyAuth), if anyone
        # Why TLS to the origin failed, when it did for a reason interception acts on:
        # "verify" (its certificate did not verify) or "client-cert" (it wants one).
        self.upstream_tls: str | None = None
        # Told of ``upstream_tls`` before the error page goes out (interception acts on it
        # before the client can open its next connection).
        self.on_upstream_tls: Callable[[str], None] | None = None
        # The protocol that reached the origin: "1.1", "2", or "-" (none was reached).
        self.protocol = "-"


def send_page(
    sink: ClientSink,
    hostname: str,
    status: int,
    message: str,
    *,
    close: bool,
    headers: list[tuple[str, str]] | None = None,
    head_only: bool = False,
) -> int:
    """Send an error page of cproxy's own; returns the bytes sent (0 if the client is gone)."""
    data = error_response(
        status, message, hostname=hostname, close=close, extra_headers=headers, head_only=head_only
    )
    try:
        sink.send(data)
    except ClientGone:
        return 0
    return len(data)


def local_answer(
    sink: ClientSink,
    hostname: str,
    req: Request,
    status: int,
    message: str,
    keep: bool,
    outcome: Outcome,
    headers: list[tuple[str, str]] | None = None,
) -> bool:
    """Answer ``req`` without contacting an origin; returns the keep-alive verdict. An
    unread request body forces a close."""
    if req.body != NONE:
        keep = False
    outcome.status = status
    outcome.sent = send_page(
        sink,
        hostname,
        status,
        message,
        close=not keep,
        headers=headers,
        head_only=req.method == "HEAD",
    )
    return keep


def origin_failed(
    sink: ClientSink, hostname: str, req: Request, exc: Exception, keep: bool, outcome: Outcome
) -> bool:
    """Answer for an origin that failed before its response head (502, 504...)."""
    status = getattr(exc, "status", 502)
    # A CONNECT's target is host:port (RFC 9110 §9.3.6), not a URL.
    target = format_host_port(req.host, req.port) if req.method == "CONNECT" else req.url
    failure = outcome.upstream_tls = upstream_tls_failure(exc)
    if failure is not None:
        # The client gets the same words in the 502 page (DESIGN.md §5 rule 12).
        log.warning("%s %s: %s", req.method, target, exc)
        if outcome.on_upstream_tls is not None:
            outcome.on_upstream_tls(failure)
    else:
        log.info("%s %s: %s", req.method, target, exc)
    headers = origin_error_headers(exc)
    return local_answer(sink, hostname, req, status, str(exc), keep, outcome, headers)


# OpenSSL's reason for the TLS 1.3 alert an origin sends when it wanted a client
# certificate and got none (RFC 8446 §6.2 certificate_required).
_CLIENT_CERT_REQUIRED = frozenset({"TLSV13_ALERT_CERTIFICATE_REQUIRED"})


def upstream_tls_failure(exc: BaseException) -> str | None:
    """ "verify" when ``exc`` comes of the origin's certificate failing verification,
    "client-cert" when the origin wanted a client certificate, else None. Read from the
    ``ssl`` exception the origin error was raised from (its type and OpenSSL reason code)."""
    if isinstance(exc, OriginClientCertRequired):
        return "client-cert"  # TLS 1.2: seen in the handshake's messages (origin/tls.py)
    # A process that never imported ``ssl`` (no https origin yet) has no TLS failure to
    # read, and importing it here would cost a plain-HTTP proxy about 2 MiB (issue #21).
    ssl = sys.modules.get("ssl")
    if ssl is None:
        return None
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 8:
        if isinstance(cause, ssl.SSLCertVerificationError) and isinstance(exc, OriginTLSError):
            return "verify"
        if isinstance(cause, ssl.SSLError) and cause.reason in _CLIENT_CERT_REQUIRED:
            return "client-cert"
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return None


def origin_error_headers(exc: Exception) -> list[tuple[str, str]] | None:
    """Extra fields for the error page of an origin failure: Retry-After on the 503 of a
    request that waited ServerConnQueueTimeout at an origin's MaxConnPerServer cap."""
    if isinstance(exc, PoolQueueTimeout):
        return [("Retry-After", str(exc.retry_after_s))]
    return None
