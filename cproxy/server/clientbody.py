"""A request body as cproxy receives it from the client (DESIGN.md §5 rules 2, 6 and 9).

A body is read whole, up to RequestBodyBuffer, before the origin sees any of the
request, so a malformed body (a bad chunk size, a body over MaxRequestBody) is answered
with its 4xx and the origin receives nothing; only a larger body is streamed on as it
arrives (nginx buffers request bodies by default for the same reason). Buffering needs
no slot (see cproxy.server.admission): a slow body does not hold up other clients.

A body must keep moving: besides ReadTimeout for any one wait, the whole body has a
deadline of RequestBodyTimeout, pushed back by one second for every RequestBodyMinRate
bytes that arrive (Apache's mod_reqtimeout ``body=20,MinRate=500``). Past it: 408.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gevent import socket

from cproxy.directives import Config
from cproxy.errors import ClientProtocolError
from cproxy.http import Request
from cproxy.http.framing import body_reader
from cproxy.http.limits import IO_CHUNK_BYTES
from cproxy.server.exchange import body_too_large
from cproxy.server.sink import ClientGone

log = logging.getLogger("cproxy")


class ClientBody:
    """One request body, read from ``sock`` after the bytes already received
    (``pending``), for the exchange (`cproxy.server.exchange.RequestBody`'s ``recv``).

    `buffer` reads ahead and checks what it read with a framing reader (so a malformed
    body or one over MaxRequestBody raises before the origin is contacted); `recv` hands
    out the raw bytes buffered, then reads on. `consumed` tells whether every byte of
    the body was handed out: otherwise the connection cannot carry another request.

    Raises ClientProtocolError (400 malformed, 408 too slow or stalled, 413 over
    MaxRequestBody) and ClientGone (the client closed mid-body).
    """

    __slots__ = (
        "buffered",
        "clock",
        "deadline",
        "limit",
        "min_rate",
        "pending",
        "raw",
        "read_timeout_s",
        "reader",
        "received",
        "sock",
    )

    def __init__(
        self,
        sock: socket.socket,
        pending: bytes,
        req: Request,
        cfg: Config,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sock = sock
        self.pending = pending
        self.reader = body_reader(req.body, req.content_length, client=True)
        self.raw: list[bytes] = []
        self.buffered = 0
        self.received = 0
        self.limit = cfg.max_request_body_bytes
        self.min_rate = cfg.request_body_min_rate_bytes
        self.read_timeout_s = cfg.read_timeout_s
        self.clock = clock
        self.deadline = clock() + cfg.request_body_timeout_s

    @property
    def consumed(self) -> bool:
        """The whole body was read and handed out."""
        return self.reader.done and not self.raw

    def buffer(self, bound_bytes: int) -> None:
        """Read until the body is complete or ``bound_bytes`` of it wait in memory."""
        while not self.reader.done and self.buffered < bound_bytes:
            data = self._recv()
            self._check(data)
            self.raw.append(data)
            self.buffered += len(data)

    def recv(self) -> bytes:
        """The next raw bytes of the body: those buffered first (and, once the body is
        complete, whatever followed it: the exchange hands that back)."""
        if self.raw:
            data = b"".join(self.raw)
            self.raw = []
            self.buffered = 0
            return data
        if self.reader.done:
            # The exchange decodes the same bytes with the same framing: it stops too.
            raise AssertionError("read past the end of the request body")
        data = self._recv()
        self._check(data)
        return data

    def _check(self, data: bytes) -> None:
        pieces = self.reader.feed(data)
        size = sum(len(p) for p in pieces)
        self.received += size
        if self.limit and self.received > self.limit:
            # A declared length was checked before the body was read: this bounds a
            # chunked body, whose size is only known as it arrives.
            raise ClientProtocolError(413, body_too_large(self.limit))
        if self.min_rate:
            self.deadline += size / self.min_rate

    def _recv(self) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        remaining = self.deadline - self.clock()
        if remaining <= 0:
            raise self._too_slow()
        sock = self.sock
        # The socket keeps ReadTimeout (the rest of the request relies on it) unless the
        # body's deadline is nearer.
        wait_s = min(self.read_timeout_s, remaining)
        if wait_s < self.read_timeout_s:
            sock.settimeout(wait_s)
        try:
            data = sock.recv(IO_CHUNK_BYTES)
        except TimeoutError as exc:
            if wait_s < self.read_timeout_s:
                raise self._too_slow() from exc
            raise ClientProtocolError(408, "The request body stalled (ReadTimeout).") from exc
        finally:
            if wait_s < self.read_timeout_s and sock.fileno() >= 0:
                sock.settimeout(self.read_timeout_s)
        if not data:
            raise ClientGone("client closed the connection during the request body")
        return data

    def _too_slow(self) -> ClientProtocolError:
        log.info("request body too slow: %d bytes received", self.received)
        return ClientProtocolError(
            408, "The request body arrived too slowly (RequestBodyTimeout, RequestBodyMinRate)."
        )
