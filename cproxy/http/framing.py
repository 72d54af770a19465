"""Body framing (RFC 9112 §6): one small sans-I/O class per framing, chosen from a table.

A parsed message says how its body is framed with one of five kinds (`Request.body`,
`Response.body`): ``"none"``, ``"length"``, ``"chunked"``, ``"close"`` (read until the
peer closes; responses only), ``"framed"`` (the transport marks the end: an HTTP/2
response without Content-Length, whose stream ends with END_STREAM; responses only).
`body_reader` makes the reader for a kind (`READERS`) and `BODY_WRITERS` holds the
writer for the framing cproxy sends (h11's ``_readers.py`` / ``_writers.py`` tables are
the model). The same classes frame request bodies (client to
origin) and response bodies (origin to client), so the code that moves bytes has no
if-chain over framings: it feeds what it received to a reader, frames the pieces with a
writer, and asks the reader whether the body ended exactly.

Readers: ``feed(data) -> list[bytes]`` returns the body bytes ``data`` completed;
``done`` turns true at the end of the body, and ``leftover`` then holds whatever followed
it (a pipelined message, or bytes an origin should not have sent). ``eof()`` is called
when the peer closed: it ends an until-close body and raises for a body cut short.
``clean`` says the body ended where its framing said and nothing followed: the condition,
with both sides' keep-alive, for reusing the connection (DESIGN.md §5 rule 4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from cproxy.errors import ClientProtocolError, OriginReset, ProtocolError
from cproxy.http.chunked import LAST_CHUNK, ChunkedDecoder, encode_chunk

NONE = "none"
LENGTH = "length"
CHUNKED = "chunked"
CLOSE = "close"
FRAMED = "framed"


class BodyReader(Protocol):
    """What every reader offers (see the module's docstring)."""

    @property
    def done(self) -> bool: ...

    @property
    def leftover(self) -> bytes: ...

    @property
    def clean(self) -> bool: ...

    def feed(self, data: bytes) -> list[bytes]: ...

    def eof(self) -> None: ...


def _cut_short(client: bool, message: str) -> ProtocolError | OriginReset:
    # A client's body cut short is its fault (400); an origin's is a reset (502, or a
    # truncated relay once the head went out: DESIGN.md §5 rule 3).
    if client:
        return ClientProtocolError(400, message)
    return OriginReset(message)


class NoBody:
    """No body: done from the start; any byte fed is leftover."""

    __slots__ = ("done", "leftover")

    def __init__(self) -> None:
        self.done = True
        self.leftover = b""

    @property
    def clean(self) -> bool:
        return not self.leftover

    def feed(self, data: bytes) -> list[bytes]:
        self.leftover += data
        return []

    def eof(self) -> None:
        pass


class LengthReader:
    """Exactly ``length`` bytes (Content-Length)."""

    __slots__ = ("client", "done", "leftover", "remaining")

    def __init__(self, length: int, *, client: bool) -> None:
        self.client = client
        self.remaining = length
        self.done = length == 0
        self.leftover = b""

    @property
    def clean(self) -> bool:
        return self.done and not self.leftover

    def feed(self, data: bytes) -> list[bytes]:
        if self.done:
            self.leftover += data
            return []
        remaining = self.remaining
        if len(data) >= remaining:
            self.done = True
            self.remaining = 0
            if len(data) > remaining:
                self.leftover = data[remaining:]
                data = data[:remaining]
            return [data]
        self.remaining = remaining - len(data)
        return [data] if data else []

    def eof(self) -> None:
        if not self.done:
            who = "the client" if self.client else "the origin"
            raise _cut_short(self.client, f"{who} closed with {self.remaining} body bytes missing")


class ChunkedReader:
    """The chunked transfer coding, decoded (`ChunkedDecoder`: extensions and trailers are
    checked and dropped, never passed on)."""

    __slots__ = ("client", "decoder")

    def __init__(self, length: int = 0, *, client: bool) -> None:
        self.client = client
        self.decoder = ChunkedDecoder(client=client)

    @property
    def done(self) -> bool:
        return self.decoder.done

    @property
    def leftover(self) -> bytes:
        return self.decoder.leftover

    @property
    def clean(self) -> bool:
        return self.decoder.done and not self.decoder.leftover

    def feed(self, data: bytes) -> list[bytes]:
        return self.decoder.feed(data)

    def eof(self) -> None:
        if not self.decoder.done:
            who = "the client" if self.client else "the origin"
            raise _cut_short(self.client, f"{who} closed before the last chunk")


class UntilCloseReader:
    """A body that ends when the peer closes (RFC 9112 §6.3 item 8). It is never clean:
    the connection cannot be reused, and the body's end is not self-delimited, so it is
    never stored (DESIGN.md §5 rule 3)."""

    __slots__ = ("done", "leftover")

    clean = False

    def __init__(self, length: int = 0, *, client: bool = False) -> None:
        self.done = False
        self.leftover = b""

    def feed(self, data: bytes) -> list[bytes]:
        return [data] if data else []

    def eof(self) -> None:
        self.done = True


class FramedReader:
    """A body whose end the transport marks (an HTTP/2 stream's END_STREAM): the bytes
    arrive unframed and ``eof()`` is that end, so unlike an until-close body it is
    self-delimited (storable), and ``clean``."""

    __slots__ = ("done", "leftover")

    def __init__(self, length: int = 0, *, client: bool = False) -> None:
        self.done = False
        self.leftover = b""

    @property
    def clean(self) -> bool:
        return self.done

    def feed(self, data: bytes) -> list[bytes]:
        return [data] if data else []

    def eof(self) -> None:
        self.done = True


def _no_body(length: int = 0, *, client: bool) -> NoBody:
    return NoBody()


# The reader for each framing kind, called as reader(content_length, client=...).
READERS: dict[str, Callable[..., BodyReader]] = {
    NONE: _no_body,
    LENGTH: LengthReader,
    CHUNKED: ChunkedReader,
    CLOSE: UntilCloseReader,
    FRAMED: FramedReader,
}


def body_reader(kind: str, length: int = 0, *, client: bool) -> BodyReader:
    """A reader for a body of framing ``kind`` (``length``: its Content-Length);
    ``client`` chooses the error a malformed or cut-short body raises."""
    return READERS[kind](length, client=client)


class IdentityWriter:
    """Body bytes as they are: for Content-Length and until-close framing, whose end the
    head (the length) or the connection's close marks."""

    __slots__ = ()

    def frame(self, piece: bytes) -> bytes:
        return piece

    def end(self) -> bytes:
        return b""


class ChunkedWriter:
    """Re-chunked by cproxy: a chunk per piece, then the last chunk (no trailers)."""

    __slots__ = ()

    def frame(self, piece: bytes) -> bytes:
        return encode_chunk(piece)

    def end(self) -> bytes:
        return LAST_CHUNK


class BodyWriter(Protocol):
    def frame(self, piece: bytes) -> bytes: ...

    def end(self) -> bytes: ...


# The writer for each framing cproxy sends. Writers hold no state: one each.
BODY_WRITERS: dict[str, BodyWriter] = {
    NONE: IdentityWriter(),
    LENGTH: IdentityWriter(),
    CHUNKED: ChunkedWriter(),
    CLOSE: IdentityWriter(),
    FRAMED: IdentityWriter(),  # the transport (HTTP/2 DATA frames) marks the end
}

# How a received body is framed when relayed to a client of HTTP/1.1 (index 1) or
# HTTP/1.0 (index 0), which knows no chunked coding: an unknown length is then
# marked by closing the connection.
_RELAYED = {
    NONE: (NONE, NONE),
    LENGTH: (LENGTH, LENGTH),
    CHUNKED: (CLOSE, CHUNKED),
    CLOSE: (CLOSE, CHUNKED),
    FRAMED: (CLOSE, CHUNKED),
}


def relay_framing(kind: str, client_version: int) -> str:
    """The framing for relaying a body received as ``kind`` to a client speaking
    HTTP/1.``client_version``."""
    return _RELAYED[kind][1 if client_version >= 1 else 0]


def frame_pieces(writer: BodyWriter, pieces: list[bytes]) -> bytes:
    """``pieces`` framed by ``writer``, as one byte string."""
    if len(pieces) == 1:
        return writer.frame(pieces[0])
    return b"".join([writer.frame(p) for p in pieces])
