"""One HTTP/2 stream to an origin (`H2Stream`, an `OriginStream`) and the translation of
messages to and from HTTP/2 header blocks; the connection that carries streams is
`cproxy.origin.h2conn.H2Connection` (see its docstring for the design).

Kept apart from the connection so that a proxy imports python-hyper's h2 only when it
first opens an HTTP/2 connection (about 4 MiB of memory): the pool and the exchange know
streams by this class, which needs none of h2.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

import gevent.event
import gevent.socket as gsocket

from cproxy.errors import (
    OriginError,
    OriginProtocolError,
    OriginReadTimeout,
    OriginReset,
)
from cproxy.http import Headers, Request, Response
from cproxy.http.framing import FRAMED, LENGTH, NONE
from cproxy.http.heads import forwarded_fields, reason
from cproxy.origin.stream import BodySource


class StreamCarrier(Protocol):
    """What a stream needs of its connection (`cproxy.origin.h2conn.StreamCarrier`)."""

    where: str
    sock: gsocket.socket
    admitted: object

    @property
    def peer_ip(self) -> str: ...

    def needs_ping(self) -> bool: ...

    def ping(self, timeout_s: float) -> None: ...

    def begin(self, stream: H2Stream, block: list[tuple[str, str]], *, end_stream: bool) -> int: ...

    def send_data(self, stream: H2Stream, data: bytes, *, end_stream: bool) -> None: ...

    def method_of(self, stream: H2Stream) -> str: ...

    def acknowledge(self, stream: H2Stream, size: int) -> None: ...

    def reset(self, stream: H2Stream, code: int) -> None: ...

    def stream_done(self, stream: H2Stream) -> None: ...


# RFC 9113 §7 error codes this module sends.
CANCEL = 0x8

STREAM_WINDOW_BYTES = 256 * 1024
# An idle connection unused for this long is checked with a PING before a stream is put
# on it: a NAT or firewall may have dropped it silently (a closed one is noticed at once).
PING_AFTER_IDLE_S = 10.0
# Fields that are about one HTTP/1.1 connection and must not appear in HTTP/2 (RFC 9113
# §8.2.2); most are hop-by-hop and gone already, this is the last word.
_CONNECTION_SPECIFIC = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"}
)
_CONTENT_METHODS = frozenset({"POST", "PUT", "PATCH"})


def request_header_block(req: Request, via_name: str) -> list[tuple[str, str]]:
    """The HTTP/2 header block for ``req`` (RFC 9113 §8.3.1): pseudo-header fields from the
    parsed absolute target (``:authority`` is the target's authority, never a Host field
    that disagrees with it), then the forwarded fields lower-cased, without the
    connection-specific ones (TE only as ``trailers``), and the body's length when known."""
    block = [
        (":method", req.method),
        (":scheme", req.scheme),
        (":authority", req.host_header),
        (":path", "*" if req.form == "asterisk" else req.path),
    ]
    for name, value in forwarded_fields(req, via_name):
        lower = name.lower()
        if lower in _CONNECTION_SPECIFIC:
            continue
        if lower == "te" and value.strip().lower() != "trailers":
            continue
        block.append((lower, value))
    if req.body == LENGTH:
        block.append(("content-length", str(req.content_length)))
    elif req.body == NONE and req.method in _CONTENT_METHODS:
        block.append(("content-length", "0"))
    return block


# A field name in HTTP/2: a token in lower case (RFC 9113 §8.2.1); a value: no NUL, CR or
# LF, and no white space at either end (§8.2.1). Checked here rather than by h2, whose
# general validation cost a tenth of an HTTP/2 exchange's CPU (h2_bench).
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_FIELD_VALUE = re.compile(rb"(?:[^\x00\r\n\t ](?:[^\x00\r\n]*[^\x00\r\n\t ])?)?")
# Fields that belong to an HTTP/1.1 connection: a response carrying one is malformed
# (RFC 9113 §8.2.2).
_NOT_IN_HTTP2 = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


def response_from_block(block: list[tuple[bytes, bytes]], request_method: str) -> Response:
    """A `Response` (``version`` 2) from a received header block, checked as RFC 9113
    §8.2 and §8.3.2 say (a malformed one raises `OriginProtocolError`: a 502, never
    cached, DESIGN.md §5 rule 3). Its body is framed by Content-Length when the origin
    gave one, else by the stream's end (`FRAMED`)."""
    status_text = ""
    statuses = 0
    fields: list[tuple[str, str]] = []
    for raw_name, raw_value in block:
        if not _FIELD_VALUE.fullmatch(raw_value):
            raise OriginProtocolError(f"invalid value of the field {raw_name[:40]!r}")
        if raw_name[:1] == b":":
            # Pseudo-header fields: only :status in a response, once, before the rest.
            if raw_name != b":status" or fields or statuses:
                raise OriginProtocolError(f"misplaced pseudo-header field {raw_name[:40]!r}")
            statuses += 1
            status_text = raw_value.decode("latin-1")
            continue
        if not _FIELD_NAME.fullmatch(raw_name) or raw_name in _NOT_IN_HTTP2:
            raise OriginProtocolError(f"invalid field name {raw_name[:40]!r} in HTTP/2")
        fields.append((raw_name.decode("latin-1"), raw_value.decode("latin-1")))
    if len(status_text) != 3 or not status_text.isdigit():
        raise OriginProtocolError(f"invalid :status {status_text!r}")
    status = int(status_text)
    if not 100 <= status <= 599:
        raise OriginProtocolError(f"invalid status code {status}")
    resp = Response(2, status, reason(status), Headers(fields))
    resp.keep_alive = True  # the stream ends; the connection goes on
    lengths = resp.headers.get_values("content-length")
    length = -1
    if lengths:
        values = {v.strip() for line in lengths for v in line.split(",")}
        if len(values) != 1 or not next(iter(values)).isdigit() or len(next(iter(values))) > 18:
            raise OriginProtocolError(f"invalid Content-Length {', '.join(lengths)!r}")
        length = int(next(iter(values)))
    if status < 200 or status in (204, 304) or request_method == "HEAD":
        resp.body = NONE
        if length >= 0 and status >= 200 and status != 204:
            resp.content_length = length
    elif length >= 0:
        resp.body = LENGTH
        resp.content_length = length
    else:
        resp.body = FRAMED
    return resp


class H2Stream:
    """One request on an HTTP/2 connection (an `OriginStream`)."""

    __slots__ = (
        "_acked",
        "_unacked",
        "conn",
        "done",
        "ended",
        "error",
        "expired",
        "finals",
        "interims",
        "pieces",
        "read_timeout_s",
        "reused",
        "sent_all",
        "stream_id",
        "wake",
        "window",
    )

    protocol = "2"

    def __init__(self, conn: StreamCarrier, reused: bool) -> None:
        self.conn = conn
        self.reused = reused
        self.stream_id = 0  # given when the headers go out
        self.read_timeout_s = 30.0
        self.wake = gevent.event.Event()  # set when something arrived for this stream
        self.window = gevent.event.Event()  # set when the send window may have opened
        self.interims: list[Response] = []
        self.finals: list[list[tuple[bytes, bytes]]] = []
        self.pieces: list[tuple[bytes, int]] = []  # (data, flow-controlled length)
        self._unacked = 0  # flow-controlled bytes handed to the reader, not yet acked
        self._acked = True
        self.ended = False  # END_STREAM received
        self.sent_all = False  # our END_STREAM went out
        self.error: OriginError | None = None
        self.expired = False
        self.done = False  # the slot was given back

    @property
    def peer_ip(self) -> str:
        return self.conn.peer_ip

    @property
    def sock(self) -> gsocket.socket:
        return self.conn.sock

    @property
    def admitted(self) -> object:
        return self.conn.admitted

    @admitted.setter
    def admitted(self, value: object) -> None:
        self.conn.admitted = value

    @property
    def closed(self) -> bool:
        return self.done

    # -- sending ----------------------------------------------------------------------

    def send(self, req: Request, head: bytes, via_name: str, body: BodySource | None) -> None:
        conn = self.conn
        if conn.needs_ping():
            conn.ping(min(self.read_timeout_s, 5.0))
        block = request_header_block(req, via_name)
        try:
            conn.begin(self, block, end_stream=body is None)
        except WriteFailed:
            return  # head() learns from the reader what became of the stream
        if body is None:
            self.sent_all = True
            return
        try:
            while True:
                piece = body.next_piece()
                if piece is None:
                    conn.send_data(self, b"", end_stream=True)
                    self.sent_all = True
                    return
                if piece:
                    conn.send_data(self, piece, end_stream=False)
        except WriteFailed:
            return

    # -- receiving --------------------------------------------------------------------

    def _wait(self, what: str) -> None:
        """Wait for something to arrive for this stream, within ReadTimeout."""
        self.wake.clear()
        if self.error is not None or self.ended or self.pieces or self.finals or self.interims:
            return
        if not self.wake.wait(self.read_timeout_s) or self.expired:
            self.conn.reset(self, CANCEL)
            raise OriginReadTimeout(f"{self.conn.where} sent no {what} within ReadTimeout")

    def head(self, interim: Callable[[Response], None]) -> tuple[Response, bytes]:
        while True:
            while self.interims:
                interim(self.interims.pop(0))
            if self.finals:
                resp = response_from_block(self.finals.pop(0), self.conn.method_of(self))
                return resp, b""
            if self.error is not None:
                raise self.error
            if self.ended:
                raise OriginReset(f"{self.conn.where} ended the stream without a response")
            self._wait("response")

    def recv_body(self) -> bytes:
        # What the reader took last time was written to the client (or the cache): its
        # window goes back to the origin only now (DESIGN.md §5 rule 14).
        if self._unacked:
            self.conn.acknowledge(self, self._unacked)
            self._unacked = 0
        while True:
            if self.pieces:
                data, flow = self.pieces.pop(0)
                self._unacked = flow
                return data
            if self.error is not None:
                raise self.error
            if self.ended:
                return b""
            self._wait("body")

    # -- ending -----------------------------------------------------------------------

    def finish(self, *, clean: bool) -> None:
        if self._unacked:
            self.conn.acknowledge(self, self._unacked)
            self._unacked = 0
        if not (self.ended and self.sent_all):
            self.conn.reset(self, CANCEL)
        self.conn.stream_done(self)

    def abort(self) -> None:
        if not self.done and self.stream_id and not (self.ended and self.sent_all):
            self.conn.reset(self, CANCEL)
        self.conn.stream_done(self)

    def expire(self) -> None:
        self.expired = True
        self.wake.set()

    # -- from the reader --------------------------------------------------------------

    def fail(self, error: OriginError) -> None:
        if self.error is None:
            self.error = error
        self.wake.set()
        self.window.set()


class WriteFailed(Exception):
    """The connection's socket would not take our frames (see `_flush_or_fail`)."""
