"""`OriginStream`: one request and its response on an origin connection, whatever the
protocol (the seam between the exchange and HTTP/1.1 or HTTP/2).

An exchange (`cproxy.server.exchange`) asks the pool for a stream, sends the request on
it, reads the final response head, reads the body piece by piece, and ends it. Over
HTTP/1.1 a stream is the exclusive use of a socket (`cproxy.server.exchange.H1Stream`:
the codec as it always was); over HTTP/2 it is one stream of a shared connection
(`cproxy.origin.h2conn.H2Stream`). Ending a stream is the protocol's business: a clean
HTTP/1.1 stream gives its socket back to the pool, an HTTP/2 stream frees its slot on the
connection; a stream abandoned early closes its socket (HTTP/1.1) or is reset (HTTP/2),
and a ReadTimeout ends only that stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from cproxy.http import Request, Response


class BodySource(Protocol):
    """A request body as decoded pieces (the client's framing removed), for a protocol
    that frames the body itself (HTTP/2 DATA frames)."""

    def next_piece(self) -> bytes | None:
        """The next piece of the body (b"" may be returned), None at its end."""
        ...

    def rewind(self) -> bool:
        """Start again from the first piece, for sending the request once more; False
        when the pieces sent so far were not kept (a body over the replay limit)."""
        ...


class OriginStream(Protocol):
    """One request/response on an origin connection (see the module docstring)."""

    @property
    def reused(self) -> bool:
        """Whether the connection carried requests before this one (DESIGN.md §5 rule 5)."""
        ...

    @property
    def peer_ip(self) -> str:
        """The numeric address of the origin ("" when unknown)."""
        ...

    @property
    def protocol(self) -> str:
        """The protocol that reached the origin, for the access log: "1.1" or "2"."""
        ...

    def send(self, req: Request, head: bytes, via_name: str, body: BodySource | None) -> None:
        """Send the request: HTTP/1.1 writes ``head`` (built by the caller, perhaps for a
        parent proxy) and streams the client's body itself; HTTP/2 builds its header
        block from ``req`` and `forwarded_fields` and sends ``body``'s pieces."""
        ...

    def head(self, interim: Callable[[Response], None]) -> tuple[Response, bytes]:
        """Wait for the final response head (interim ones go to ``interim``); returns it
        and the body bytes that came with it. Bounded by ReadTimeout (see `expire`)."""
        ...

    def recv_body(self) -> bytes:
        """The next bytes of the response body; b"" at its end (or the connection's)."""
        ...

    def finish(self, *, clean: bool) -> None:
        """The response was read (``clean``: exactly, and the stream may be reused)."""
        ...

    def abort(self) -> None:
        """Abandon the stream without reading the rest of its response."""
        ...

    def expire(self) -> None:
        """Called by the runtime's reaper past ReadTimeout: wake the greenlet waiting for
        the head, which then raises `OriginReadTimeout`; only this stream ends."""
        ...
