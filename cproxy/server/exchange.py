"""One origin round trip: the `Exchange`, and the `Requester` that makes exchanges.

An exchange takes a socket from the pool (or opens one), sends the request's head and
body, reads the final response head (relaying interim 1xx heads), relays the body to a
`ClientSink`, and gives the socket back to the pool or closes it by DESIGN.md §5 rule 4.
Misses, validations, background refreshes and plain forwarding all use it; it knows
nothing of the cache (a cache front passes a tee that collects the body) and nothing of
the client connection (it writes to a sink and reads a request body from a
`RequestBody`).

The wait for an origin's response head has no timer of its own: the runtime's reaper
calls `Requester.expire_if_idle`, which ends a wait past ReadTimeout (see handler.py).
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable
from typing import Any, Protocol

import gevent
from gevent import socket

from cproxy.directives import Config
from cproxy.errors import (
    ClientProtocolError,
    OriginError,
    OriginNoResponse,
    OriginProtocolError,
    OriginReadTimeout,
    OriginReset,
    OriginUnprocessed,
    ProtocolError,
)
from cproxy.geventshim import recv_ready, send_all, wait_readable_untimed
from cproxy.http import Request, Response, find_head_end
from cproxy.http.framing import (
    BODY_WRITERS,
    CLOSE,
    LENGTH,
    NONE,
    BodyReader,
    BodyWriter,
    body_reader,
    frame_pieces,
    relay_framing,
)
from cproxy.http.heads import interim_response_head, origin_request_head, relayed_response_head
from cproxy.http.limits import IO_CHUNK_BYTES
from cproxy.http.message import parse_response_head, response_fields_for_client
from cproxy.origin import OriginConnection, OriginPool, origin_key
from cproxy.origin.connection import OriginKey
from cproxy.origin.h2stream import H2Stream
from cproxy.origin.parents import CONNECT_FAILURES, Parent, ParentSet, parent_request_head
from cproxy.origin.retry import Retry
from cproxy.origin.stream import BodySource, OriginStream
from cproxy.origin.tls import ParentHop, tls_buffered
from cproxy.server.destinations import admit_reused, admitted, policy_for
from cproxy.server.respond import Outcome
from cproxy.server.sink import ClientGone, ClientSink, OutputTimeout

log = logging.getLogger("cproxy")

TO_SELF = "Refusing to forward a request to cproxy itself."


def body_too_large(limit_bytes: int) -> str:
    return f"The request body is larger than {limit_bytes} bytes (MaxRequestBody)."


class ProxyState(Protocol):
    """What an exchange needs of the running proxy (`cproxy.server.runtime.Runtime`)."""

    config: Config
    pool: OriginPool
    parents: ParentSet
    connections: set[Any]

    def own_addresses(self) -> list[tuple[str, int]]: ...


class RequestBody(Protocol):
    """Where a request's body comes from (the client connection)."""

    def recv(self) -> bytes:
        """The next bytes from the client; raises `ClientGone` at EOF and
        `ClientProtocolError` (408) when they stall."""
        ...

    def unread(self, data: bytes) -> None:
        """Bytes after the body (the next request), handed back."""
        ...


class Tee(Protocol):
    """Collects a relayed body (the cache's `BodyTee`); ``complete`` is set after the relay:
    whether the body arrived whole and self-delimited (DESIGN.md §5 rule 3)."""

    complete: bool

    def add(self, data: bytes) -> None: ...


class Requester:
    """Who asks for exchanges: a client connection, or cproxy itself (a background refresh,
    with a `DiscardSink` and no body). The reaper reaches the current exchange through it."""

    __slots__ = ("abandon_on_eof", "body", "client_ip", "current", "sink", "state")

    def __init__(
        self,
        state: ProxyState,
        sink: ClientSink,
        client_ip: str,
        body: RequestBody | None = None,
        abandon_on_eof: socket.socket | None = None,
    ) -> None:
        self.state = state
        self.sink = sink
        self.client_ip = client_ip
        self.body = body
        # The client's socket: a request queued at an origin's connection cap leaves the
        # queue when it closes (`OriginPool.acquire`). None for cproxy's own requests.
        self.abandon_on_eof = abandon_on_eof
        self.current: Exchange | None = None

    @property
    def config(self) -> Config:
        return self.state.config

    def exchange(self, req: Request, outcome: Outcome) -> Exchange:
        """Send ``req`` to its origin and read the final response head: the exchange, with
        its connection holding the body. Raises OriginError / OriginProtocolError (the
        socket is discarded), or ClientProtocolError (403) for a target that resolved to
        one of cproxy's own listeners."""
        exchange = self.current = Exchange(self, req, outcome)
        exchange.start()
        return exchange

    def expire_if_idle(self, now: float) -> None:
        """Called by the runtime's reaper: end a wait for a response head past ReadTimeout."""
        exchange = self.current
        if exchange is not None:
            exchange.expire_if_idle(now)

    def close_if_idle(self) -> None:
        """At shutdown: nothing to do (an exchange is never idle)."""


class Exchange:
    """One request to an origin and its response (see the module's docstring)."""

    __slots__ = (
        "awaiting",
        "cfg",
        "cut",
        "deadline",
        "outcome",
        "req",
        "requester",
        "resp",
        "rest",
        "stream",
    )

    stream: OriginStream
    resp: Response

    def __init__(self, requester: Requester, req: Request, outcome: Outcome) -> None:
        self.requester = requester
        # The configuration for the whole exchange, read once (a reload applies to the
        # next request, as everywhere else).
        self.cfg = requester.state.config
        self.req = req
        self.outcome = outcome
        self.rest = b""
        # The stream whose response head is awaited, until deadline (ReadTimeout): the
        # runtime's reaper ends that wait (see expire_if_idle).
        self.awaiting: OriginStream | None = None
        self.deadline = 0.0
        # The origin answered before it had the whole request body (see _early_response).
        self.cut = False

    # -- sending the request, reading the response head ----------------------------

    def start(self) -> None:
        requester = self.requester
        cfg = self.cfg
        pool = requester.state.pool
        req = self.req
        has_body = req.body != NONE
        head = origin_request_head(req, cfg.hostname)
        # ParentProxy: the request goes through the first parent that is up (unless NoProxy
        # sends it direct); see `_route`.
        parents = requester.state.parents
        parent = parents.pick(req.host) if parents.active else None
        key, via, sent_head = _route(req, head, parent)
        if req.expect_continue and has_body:
            # We answer the expectation ourselves (RFC 9110 §10.1.1 lets a proxy do so)
            # and stream the body on: the origin never sees Expect.
            requester.sink.interim(b"HTTP/1.1 100 Continue\r\n\r\n")
            req.expect_continue = False
        # Every connection opened or reused for this request, including a retry's, is
        # checked on its resolved address (DESIGN.md §5 rule 10).
        admit = policy_for(cfg).admit(requester.client_ip)
        retry: Retry | None = Retry.first(req.method, has_body)
        body: _BodyFeed | None = None
        refused_by: object = None  # the HTTP/2 connection that refused the request
        while retry is not None:
            # At MaxConnPerServer the request queues; the client closing leaves the queue.
            abandon = requester.abandon_on_eof
            # A parent is configured by the administrator, not chosen by the client: the
            # destination policy applies to the origin (at the parent), not to the parent.
            check = admit if parent is None else None
            try:
                if retry.fresh_socket:
                    conn = pool.connect(
                        key, abandon_on_eof=abandon, admit=check, avoid=refused_by, via=via
                    )
                else:
                    conn = pool.acquire(
                        key,
                        verify=retry.verify_pooled,
                        abandon_on_eof=abandon,
                        admit=check,
                        via=via,
                    )
                    if check is not None and conn.reused:
                        admit_reused(pool, conn, check)
            except CONNECT_FAILURES as exc:
                if parent is None:
                    raise
                # The parent cannot be reached: the next one (pick raises when none is up).
                parent = parents.failover(parent, req.host, exc)
                if parent is None:  # NoProxy changed meanwhile
                    raise
                key, via, sent_head = _route(req, head, parent)
                continue
            if parent is not None:
                parents.mark_up(parent)
            reused = conn.reused
            if reused:
                self.outcome.origin = "reused"
            else:
                self.outcome.origin = "new"
                if check is not None:
                    admitted(conn, check)  # its address was checked as it was opened
                if self._is_own_listener(_socket_of(conn)):
                    # A name that resolved to one of our own listeners: refuse before a
                    # byte is sent, rather than wait for the Via loop check on the second
                    # pass.
                    pool.discard(conn)
                    raise ClientProtocolError(403, TO_SELF)
            stream: OriginStream
            if isinstance(conn, H2Stream):
                conn.read_timeout_s = cfg.read_timeout_s  # each wait on it (a timer)
                stream = conn
            else:
                stream = H1Stream(self, conn)
            self.stream = stream
            self.outcome.protocol = stream.protocol
            if body is None and has_body and stream.protocol == "2":
                body = _BodyFeed(self)  # kept across attempts, so a retry can replay it
            try:
                try:
                    stream.send(req, sent_head, cfg.hostname, body)
                except _EarlyResponse as early:
                    self.cut = True
                    self.resp, self.rest = self._early_response(stream, early)
                else:
                    self.resp, self.rest = stream.head(self._interim)
                return
            except OriginUnprocessed as exc:
                stream.abort()
                # RFC 9113 §8.7: the origin did no work on it; sent again (as often as
                # `Retry` allows), with its body replayed when it was small enough to keep.
                retry = retry.after_unprocessed(refused=exc.refused)
                if exc.refused and isinstance(stream, H2Stream):
                    refused_by = stream.conn  # sent again elsewhere when there is room
                if retry is None or (body is not None and not body.rewind()):
                    raise OriginReset(str(exc)) from exc
                log.debug("sending %s %s again: %s", req.method, req.url, exc)
            except OriginNoResponse as exc:
                stream.abort()
                # A stale pooled socket (the origin closed it as we used it) is worth one
                # more try, for a request that cannot duplicate work (DESIGN.md §5 rule 5).
                retry = retry.after_no_response(reused=reused)
                if retry is None:
                    raise
                log.debug("retrying %s %s on a fresh socket: %s", req.method, req.url, exc)
            except BaseException:
                stream.abort()
                raise

    def _interim(self, resp: Response) -> None:
        """An interim (1xx) response: relayed to an HTTP/1.1 client, except 100 Continue
        (cproxy answered the expectation itself)."""
        if self.req.version >= 1 and resp.status != 100:
            self.requester.sink.interim(interim_response_head(resp))

    def _early_response(
        self, stream: OriginStream, early: _EarlyResponse
    ) -> tuple[Response, bytes]:
        """The origin answered (or closed) before taking the whole body, as a server
        refusing an upload does (413, 401...): its answer, if it sent a whole head, is
        relayed with ``Connection: close`` (the rest of the client's body is never read:
        the client side closes with a lingering close), and the origin socket is closed."""
        try:
            resp, rest = stream.head(self._interim)
        except OriginNoResponse as exc:
            raise OriginReset(str(early)) from exc
        log.info("%s %s: the origin answered before the whole body", self.req.method, self.req.url)
        return resp, rest

    def _is_own_listener(self, sock: socket.socket) -> bool:
        """Is ``sock`` connected to one of cproxy's own listening sockets?"""
        try:
            peer_ip, peer_port = sock.getpeername()[:2]
        except OSError:
            return False
        for host, port in self.requester.state.own_addresses():
            if port != peer_port:
                continue
            if host == peer_ip or host in ("0.0.0.0", "::"):
                return True
        return False

    def expire_if_idle(self, now: float) -> None:
        """End a wait for the response head that is past its deadline: the stream wakes
        the waiting greenlet, which reports the timeout. Over HTTP/1.1 the socket is
        discarded, never reused; over HTTP/2 only the stream is reset."""
        stream = self.awaiting
        if stream is not None and now >= self.deadline:
            self.awaiting = None
            stream.expire()

    # -- relaying the response -----------------------------------------------------

    def relay(
        self,
        keep: bool,
        *,
        tee: Tee | None = None,
        extra: list[str] | None = None,
        fields: list[tuple[str, str]] | None = None,
    ) -> bool:
        """Send the response to the sink, streaming its body from the origin; returns
        whether the client connection may carry another request.

        ``tee`` collects the body for the cache; ``tee.complete`` tells whether it
        arrived whole and self-delimited (DESIGN.md §5 rule 3: nothing else is stored).
        ``fields``: `response_fields_for_client` of the response, when the caller has them.
        """
        req, resp, stream, outcome = self.req, self.resp, self.stream, self.outcome
        cfg = self.cfg
        # After an early answer the client's body is unread: this response closes.
        keep = keep and not self.cut
        if fields is None:
            fields = response_fields_for_client(resp, cfg.hostname)
        framing = relay_framing(resp.body, req.version)
        head = relayed_response_head(resp, fields, framing, keep=keep, extra=extra)
        outcome.status = resp.status
        rest = self.rest
        # A response that came whole with its head goes out from memory, bounded by
        # ReadTimeout for each send like a stored one; only one whose body is still to
        # come from the origin needs OutputTimeout's timer (a gevent Timeout per response).
        if resp.body == NONE or (resp.body == LENGTH and len(rest) >= resp.content_length):
            return self._relay_whole(head, tee, keep)
        timer = gevent.Timeout(cfg.output_timeout_s, OutputTimeout)
        timer.start()
        reader = body_reader(resp.body, resp.content_length, client=False)
        clean = False
        try:
            clean = self._relay_body(reader, BODY_WRITERS[framing], head, tee)
        except (OriginError, OriginProtocolError, ProtocolError) as exc:
            log.info("response from %s truncated: %s", req.host_header, exc)
            keep = False
        except OutputTimeout:
            log.info("OutputTimeout sending %s to %s", req.url, self.requester.client_ip)
            stream.abort()
            raise
        except ClientGone:
            # The client stopped reading (ReadTimeout) or went away: the origin socket
            # still holds the rest of the body, so it can only be closed (HTTP/2: reset).
            stream.abort()
            raise
        except BaseException:
            # Killed (a shutdown): an HTTP/2 stream must give its slot back, a socket
            # must not wait for the collector.
            stream.abort()
            raise
        finally:
            timer.close()
        if tee is not None:
            # Complete: the body ended where its own framing said. Bytes after it spoil
            # the origin socket (not clean), not the message; an until-close body is not
            # self-delimited, so it never counts as complete.
            tee.complete = reader.done and resp.body != CLOSE
        self.finish(clean=clean)
        # An unclean origin socket (bytes left over, read-until-close body) is the origin
        # side's problem only: the client's response went out whole and self-delimited
        # (a truncated one raised above and cleared ``keep``), so its connection persists.
        return keep and framing != CLOSE

    def _relay_whole(self, head: bytes, tee: Tee | None, keep: bool) -> bool:
        """`relay` for a response whose body came whole with its head (most small ones):
        one send from memory, with no reader, writer or OutputTimeout timer (measured: the
        general loop costs a pooled 1 KiB miss a few µs more). Bytes after a Content-Length
        body (or any after a bodiless response) make the origin socket unclean."""
        resp, rest = self.resp, self.rest
        length = resp.content_length if resp.body == LENGTH else 0
        body = rest[:length] if len(rest) > length else rest
        try:
            self.requester.sink.send(head + body if body else head)
        except ClientGone:
            self.discard()  # it still holds what the client did not take: close it
            raise
        self.outcome.sent = len(head) + len(body)
        if tee is not None:
            if body:
                tee.add(body)
            tee.complete = True
        self.finish(clean=len(rest) == length)
        return keep  # framed by length (or bodiless), never by closing

    def _relay_body(
        self, reader: BodyReader, writer: BodyWriter, head: bytes, tee: Tee | None
    ) -> bool:
        """Send ``head`` and the body ``reader`` reads from what came with the head and then
        from the origin, framed by ``writer``; True when the origin socket is clean (the
        body ended where its framing said, and nothing followed it)."""
        sink, outcome, rest = self.requester.sink, self.outcome, self.rest
        outcome.sent = 0
        try:
            pieces = reader.feed(rest) if rest else []
        except ProtocolError:
            # The head goes out before the body turned out malformed: the client sees
            # a truncated response (DESIGN.md §5 rule 3), as if it had come later.
            sink.send(head)
            outcome.sent = len(head)
            raise
        out = head + frame_pieces(writer, pieces) if pieces else head
        while True:
            if tee is not None:
                for piece in pieces:
                    tee.add(piece)
            if reader.done:
                out += writer.end()
            if out:
                sink.send(out)
                outcome.sent += len(out)
            if reader.done:
                return reader.clean
            data = self._recv_origin()
            if data:
                pieces = reader.feed(data)
                out = frame_pieces(writer, pieces)
            else:
                reader.eof()  # raises when the body was cut short
                pieces, out = [], b""

    def read_body_ahead(self) -> None:
        """Read the rest of a Content-Length body into ``rest`` before relaying (for a
        small body the cache stores before its head goes out). Each read is bounded by
        ReadTimeout and all of them by OutputTimeout (a trickling origin); a failure or the
        deadline stops the reading, and the relay, with its own OutputTimeout, meets the
        problem again and handles it."""
        resp = self.resp
        rest = self.rest
        # A silent Timeout (False) ends the with-block quietly when it fires.
        with gevent.Timeout(self.cfg.output_timeout_s, False):
            try:
                while len(rest) < resp.content_length:
                    data = self._recv_origin()
                    if not data:
                        break
                    rest += data
            except OriginError as exc:
                log.debug("reading a small body ahead stopped: %s", exc)
        self.rest = rest

    def _recv_origin(self) -> bytes:
        return self.stream.recv_body()

    def finish(self, *, clean: bool) -> None:
        """End the stream after the response: its socket is reused only when the response
        ended exactly (``clean``: no bytes left over) and the origin keeps it open
        (DESIGN.md §5 rule 4); otherwise closed (HTTP/2: the stream is reset if open)."""
        self.stream.finish(clean=clean and self.resp.keep_alive and not self.cut)

    def discard(self) -> None:
        """Abandon the stream without reading the response's body (HTTP/1.1: the socket
        is closed)."""
        self.stream.abort()


class _EarlyResponse(Exception):
    """The origin sent something (or closed) before it had the whole request body."""


class H1Stream:
    """An `OriginStream` over HTTP/1.1: the exclusive use of one pooled socket (the codec
    as it always was). Ending it hands the socket back to the pool or closes it."""

    # It holds the requester, not the exchange: an exchange refers to its stream, and a
    # reference back would make every exchange a cycle for the garbage collector.
    __slots__ = ("cfg", "conn", "expired", "pool", "req", "requester")

    protocol = "1.1"

    def __init__(self, exchange: Exchange, conn: OriginConnection) -> None:
        self.requester = exchange.requester
        self.cfg = exchange.cfg
        self.req = exchange.req
        self.conn = conn
        self.pool = self.requester.state.pool
        self.expired = False
        read_timeout_s = self.cfg.read_timeout_s
        if conn.sock.timeout != read_timeout_s:  # a pooled socket has it already
            conn.sock.settimeout(read_timeout_s)

    @property
    def reused(self) -> bool:
        return self.conn.reused

    @property
    def peer_ip(self) -> str:
        return self.conn.peer_ip

    def send(self, req: Request, head: bytes, via_name: str, body: BodySource | None) -> None:
        """Send the head and stream the body. A failure before the whole request went
        out is an `OriginNoResponse` only if no body byte was taken from the client."""
        conn = self.conn
        osock = conn.sock
        if req.body == NONE:
            try:
                send_all(osock, head, conn.raw)
            except OSError as exc:
                raise OriginNoResponse(f"sending the request failed: {exc}") from exc
            return
        try:
            send_all(osock, head)
        except OSError as exc:
            raise OriginReset(f"sending the request to the origin failed: {exc}") from exc
        if body is not None:
            # Sent before over HTTP/2 and not processed there: its kept pieces again.
            writer = BODY_WRITERS[req.body]
            try:
                while (piece := body.next_piece()) is not None:
                    if piece:
                        osock.sendall(writer.frame(piece))
                osock.sendall(writer.end())
            except OSError as exc:
                raise OriginReset(f"sending the request to the origin failed: {exc}") from exc
            return
        self._stream_request_body(
            osock,
            body_reader(req.body, req.content_length, client=True),
            BODY_WRITERS[req.body],
            watch_early=conn.raw is not None,
        )

    def _stream_request_body(
        self, osock: socket.socket, reader: BodyReader, writer: BodyWriter, *, watch_early: bool
    ) -> None:
        """Copy the request body from the client to the origin, re-framed by ``writer``;
        what follows it goes back to the client side (the next request).

        ``watch_early``: poll for an answer before each send (plain sockets only: on a TLS
        socket, TLS 1.3 session tickets arriving after the handshake make it readable with
        no answer there, and reading for one would wait while the origin waits for the
        rest of the body; an origin that stops reading to answer is still caught when a
        send fails)."""
        source = self.requester.body
        if source is None:
            raise AssertionError("a request with a body needs a RequestBody to read it from")
        limit = self.cfg.max_request_body_bytes
        received = 0
        # An origin may answer before it has the whole body: polled before each send, so
        # that answer is read (and relayed) rather than lost in a reset.
        watch = select.poll() if watch_early else None
        if watch is not None:
            watch.register(osock.fileno(), select.POLLIN)
        while not reader.done:
            pieces = reader.feed(source.recv())
            if limit:
                # A declared length was checked against the limit before: this bounds
                # a chunked body, whose size is only known as it arrives.
                received += sum(len(p) for p in pieces)
                if received > limit:
                    # The origin has part of the request: start() discards its socket.
                    raise ClientProtocolError(413, body_too_large(limit))
            out = frame_pieces(writer, pieces) if pieces else b""
            if reader.done:
                out += writer.end()
            if out:
                if watch is not None and watch.poll(0):
                    raise _EarlyResponse("the origin answered before the whole body was sent")
                try:
                    osock.sendall(out)
                except OSError as exc:
                    # The origin closed: it may have answered first (see _early_response).
                    raise _EarlyResponse(f"the origin stopped taking the body: {exc}") from exc
        source.unread(reader.leftover)

    def head(self, interim: Callable[[Response], None]) -> tuple[Response, bytes]:
        """Read the final response head (interim 1xx ones go to ``interim``)."""
        req = self.req
        conn = self.conn
        osock = conn.sock
        buf = b""
        while True:
            try:
                if not buf and not tls_buffered(osock):
                    # The origin is still working on the request: no speculative recv.
                    self._wait_for_origin(osock)
                    data = recv_ready(osock, IO_CHUNK_BYTES, conn.raw)
                else:
                    data = osock.recv(IO_CHUNK_BYTES)
            except TimeoutError as exc:
                raise OriginReadTimeout(
                    f"{req.host_header} sent no response within ReadTimeout"
                ) from exc
            except OSError as exc:
                if not buf:
                    raise OriginNoResponse(f"connection failed: {exc}") from exc
                raise OriginReset(f"{req.host_header} reset the connection: {exc}") from exc
            if not data:
                if not buf:
                    raise OriginNoResponse("the origin closed the connection without a response")
                raise OriginReset(f"{req.host_header} closed the connection mid-response")
            buf += data
            end = find_head_end(buf, client=False)
            while end != -1:
                resp = parse_response_head(buf[:end], req.method)
                buf = buf[end:]
                if resp.status >= 200:
                    return resp, buf
                if resp.status == 101:
                    raise OriginProtocolError("origin switched protocols, which was not asked")
                interim(resp)
                end = find_head_end(buf, client=False) if buf else -1

    def _wait_for_origin(self, osock: socket.socket) -> None:
        """Wait until the origin starts its response, for at most ReadTimeout (raises
        TimeoutError). The deadline is kept by the runtime's reaper rather than a gevent
        timer, which would cost a few µs per exchange (measured: 3.7 µs to start and close
        one); it fires at most one reaper tick late."""
        exchange = self.requester.current  # the exchange this stream serves
        if exchange is None:
            raise AssertionError("an HTTP/1.1 stream outside an exchange")
        exchange.deadline = time.monotonic() + self.cfg.read_timeout_s
        exchange.awaiting = self
        try:
            wait_readable_untimed(osock)
        except OSError:
            # gevent cancels a wait on a socket shut down under it (cancel_wait_ex).
            if not self.expired:
                raise
        finally:
            exchange.awaiting = None
        if self.expired:
            self.expired = False
            raise TimeoutError("no response within ReadTimeout")

    def expire(self) -> None:
        """Past ReadTimeout: the waiting greenlet wakes (EOF) and, seeing ``expired``,
        reports the timeout; the socket is discarded, never reused."""
        self.expired = True
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def recv_body(self) -> bytes:
        try:
            return self.conn.sock.recv(IO_CHUNK_BYTES)
        except TimeoutError as exc:
            raise OriginReadTimeout("the origin stalled during the response body") from exc
        except OSError as exc:
            raise OriginReset(
                f"the origin reset the connection during the response body: {exc}"
            ) from exc

    def finish(self, *, clean: bool) -> None:
        if clean:
            self.pool.release(self.conn)
        else:
            self.pool.discard(self.conn)

    def abort(self) -> None:
        self.pool.discard(self.conn)


class _BodyFeed:
    """The client's request body as decoded pieces (`BodySource`), for HTTP/2. The pieces
    are kept while they total at most `REPLAY_LIMIT_BYTES`, so a request the origin did
    not process (REFUSED_STREAM, GOAWAY) can be sent again with its body intact."""

    __slots__ = ("exchange", "kept", "overflowed", "position", "reader", "received")

    def __init__(self, exchange: Exchange) -> None:
        req = exchange.req
        self.exchange = exchange
        self.reader = body_reader(req.body, req.content_length, client=True)
        self.kept: list[bytes] = []
        self.overflowed = False
        self.position = 0  # into ``kept``, while replaying
        self.received = 0

    def next_piece(self) -> bytes | None:
        if self.position < len(self.kept):
            self.position += 1
            return self.kept[self.position - 1]
        reader = self.reader
        if reader.done:
            return None
        source = self.exchange.requester.body
        if source is None:
            raise AssertionError("a request with a body needs a RequestBody to read it from")
        pieces = reader.feed(source.recv())
        if reader.done:
            source.unread(reader.leftover)
        data = b"".join(pieces)
        self.received += len(data)
        limit = self.exchange.cfg.max_request_body_bytes
        if limit and self.received > limit:
            raise ClientProtocolError(413, body_too_large(limit))
        if not self.overflowed:
            if self.received <= REPLAY_LIMIT_BYTES:
                self.kept.append(data)
                self.position = len(self.kept)
            else:
                self.overflowed = True
                self.kept = []
                self.position = 0
        return data

    def rewind(self) -> bool:
        if self.overflowed:
            return False
        self.position = 0
        return True


# A request body up to this size is kept while it is sent over HTTP/2, so that it can be
# sent again when the origin did not process it; a larger one is not retried (502).
REPLAY_LIMIT_BYTES = 1 << 20


def _route(
    req: Request, head: bytes, parent: Parent | None
) -> tuple[OriginKey, ParentHop | None, bytes]:
    """Where ``req`` goes: (the pool key, the parent its TLS connection is made through,
    the head to send). Direct without a parent. Through one, a plain ``http://`` request
    goes to the parent in absolute form on a pooled socket to the parent (whose key is
    the parent's address); an ``https://`` one (intercepted, or a client's absolute-form
    target) goes on a pooled TLS connection to the origin made through the parent
    (CONNECT, then TLS inside, verified as a direct one): never to the parent in
    cleartext, so what was encrypted from the client stays encrypted to the origin, and
    every cached ``https://`` response came over a connection cproxy verified itself."""
    if parent is None:
        return origin_key(req.scheme, req.host, req.port), None, head
    if req.scheme == "https":
        return origin_key("https", req.host, req.port), parent.hop, head
    return parent.key, None, parent_request_head(head, req.method, req.url, parent.authorization)


def _socket_of(conn: OriginConnection | H2Stream) -> socket.socket:
    return conn.sock
