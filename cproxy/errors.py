"""Every error cproxy raises on purpose derives from CproxyError.

The names say what happened and whose fault it was (DESIGN.md §4.5): a
ClientProtocolError is the client's (answered with a 4xx), an OriginError is
the origin's or the network's (answered with 502 or 504).
"""

from __future__ import annotations


class CproxyError(Exception):
    """Base of all cproxy errors."""


class ConfigError(CproxyError):
    """A directive file or a directive value is wrong.

    str() gives one line: ``path:line: Directive: what is wrong; what is allowed``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        directive: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.directive = directive

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        who = f"{self.directive}: " if self.directive else ""
        return f"{where}{who}{self.message}"


class ProtocolError(CproxyError):
    """An HTTP message broke the syntax or framing rules."""


class ClientProtocolError(ProtocolError):
    """The client sent something we refuse; answer with ``status`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DestinationRefused(ClientProtocolError):
    """cproxy will not connect where the request points (SafePorts, RefusedDestinations,
    LoopbackDestinations): answered with 403 and a page naming the rule. Raised before
    any connection to the refused address is attempted."""

    def __init__(self, message: str) -> None:
        super().__init__(403, message)


class OriginProtocolError(ProtocolError):
    """The origin sent a malformed response: the client gets a 502."""

    status = 502


class OriginError(CproxyError):
    """Talking to the origin failed; ``status`` is what the client gets."""

    status = 502


class OriginDNSError(OriginError):
    """The origin's host name did not resolve."""


class OriginConnectError(OriginError):
    """The origin refused the connection or was unreachable."""


class OriginConnectTimeout(OriginError):
    """The origin did not accept the connection within the connect timeout."""

    status = 504


class OriginTLSError(OriginError):
    """TLS to the origin failed: its certificate did not verify, or the handshake failed."""


class OriginReadTimeout(OriginError):
    """The origin sent nothing for ReadTimeout."""

    status = 504


class OriginReset(OriginError):
    """The origin closed or reset the connection before the response was complete."""


class OriginNoResponse(OriginReset):
    """The origin connection failed before any byte of a response arrived: perhaps a
    pooled socket the origin had closed, so the request may be sent again
    (`cproxy.origin.retry`)."""


class OriginUnprocessed(OriginReset):
    """The origin said it did not process the request and may be sent it again, whatever
    the method (RFC 9113 §8.7): an HTTP/2 stream above a GOAWAY's last stream id, or one
    reset with REFUSED_STREAM (``refused``). `cproxy.origin.retry.Retry.after_unprocessed`
    decides."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class PoolClosed(CproxyError):
    """The origin pool was closed; no connection can be taken from it."""


class NotCheckedOut(CproxyError, ValueError):
    """A connection handed back to a pool it was not checked out of (released twice?):
    a bug in the caller."""


class PoolQueueTimeout(OriginError):
    """The origin's connection cap (MaxConnPerServer) stayed reached for the whole queue
    wait (ServerConnQueueTimeout): the client gets 503 with ``Retry-After``."""

    status = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PoolWaitAbandoned(OriginError):
    """The client closed its connection while its request waited for an origin
    connection: the request left the queue (nobody reads the answer)."""

    status = 503


# The parents' errors are here rather than in origin/parents.py: a module the compiled
# build compiles drops the class attributes (``status``) of a subclass of a class defined
# in Python (docs/ARCHITECTURE.md; tests/test_compiled_classes.py).
class NoParentAvailable(OriginError):
    """Every ParentProxy is marked down: the request is answered with 502."""

    status = 502


class ParentRefusedTunnel(OriginError):
    """The parent answered a CONNECT with something other than 2xx."""

    status = 502


class ParentTunnelTimeout(OriginError):
    """A parent did not answer a CONNECT in time, or the TLS handshake with the origin
    through its tunnel did not finish: the parent is up (it took the connection)."""

    status = 504
