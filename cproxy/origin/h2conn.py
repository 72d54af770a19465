"""HTTP/2 to origins (issue #20): one connection shared by many streams, on python-hyper's
sans-I/O ``h2`` (framing, HPACK, flow-control arithmetic, the stream state machines).

`H2Connection` owns the socket. One reader greenlet per connection reads frames, feeds
``h2`` and hands each event to its stream; every request's greenlet waits on its own
stream (`H2Stream`: a gevent Event and a list of received pieces), so one slow stream
never holds up another. Writes go through one lock (gevent lets one greenlet write a
socket at a time); ``h2`` itself is only touched between yields, so its state needs none.

Flow control (DESIGN.md §5 rule 14): received DATA is acknowledged only when the stream's
reader asks for the next piece, that is after the previous one was written to the client
(`ClientSink.send` returns once the client took it) or the cache. A client that stops
reading stalls only its own stream, whose window fills at `STREAM_WINDOW_BYTES`; the
connection's window is opened to `STREAM_WINDOW_BYTES` times the stream cap at the start,
so stalled streams can never starve the others, and memory per connection is bounded by
the windows.

GOAWAY: no new stream is opened on the connection; streams above its last stream id end
with `OriginUnprocessed` (sent again by the exchange, whatever the method); streams at or
below it finish. ``h2`` closes its whole connection state machine on receiving GOAWAY
(python-hyper/h2 issue 1181), after which any frame for a remaining stream is a protocol
error, and the frames after GOAWAY in the same read are lost with the exception (nginx
sends GOAWAY before the last response when it reaches keepalive_requests).
`_ClientConnection` puts the machine back in its open state as the GOAWAY frame is
processed, which is safe because this module never opens a stream on a connection that
received GOAWAY (``closing``).

REFUSED_STREAM is `OriginUnprocessed` too; any other reset is an `OriginReset` (502, or a
truncated response once the head went out, as over HTTP/1.1). ReadTimeout on a stream
resets that stream (CANCEL), never the connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.socket as gsocket
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from cproxy.errors import (
    OriginConnectError,
    OriginConnectTimeout,
    OriginError,
    OriginNoResponse,
    OriginProtocolError,
    OriginReadTimeout,
    OriginReset,
    OriginUnprocessed,
)
from cproxy.http.limits import IO_CHUNK_BYTES, MAX_HEAD_BYTES
from cproxy.origin.connection import OriginKey, format_origin, peer_address
from cproxy.origin.h2stream import (
    PING_AFTER_IDLE_S,
    STREAM_WINDOW_BYTES,
    H2Stream,
    WriteFailed,
    response_from_block,
)

log = logging.getLogger(__name__)


class H2Connection:
    """An HTTP/2 connection to one origin, carrying up to ``max_streams`` streams."""

    def __init__(
        self,
        key: OriginKey,
        sock: gsocket.socket,
        created_at: float,
        *,
        tls: Any,
        stream_cap: int,
        on_stream_done: Callable[[H2Connection], None],
        on_close: Callable[[H2Connection], None],
        on_goaway: Callable[[H2Connection], None],
        count: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self.where = format_origin(key)
        self.sock = sock
        self.tls = tls
        self.created_at = created_at
        self.idle_since = created_at
        self._clock = clock
        self.stream_cap = max(1, stream_cap)
        self._on_stream_done = on_stream_done
        self._on_close = on_close
        self._on_goaway = on_goaway
        # ``count(name)``: the pool's counter of that name, moved by one.
        self._count = count if count is not None else _no_count
        self.streams: dict[int, H2Stream] = {}
        self._methods: dict[int, str] = {}
        self.in_flight = 0  # streams granted and not yet done (includes reserved ones)
        self.opened = 0  # streams ever granted (MaxPersistRequestPerServer counts these)
        self.started = False  # start() succeeded: the pool counts it
        self.closing = False  # GOAWAY received or sent: no new streams
        self.closed = False
        self.goaway_last_id: int | None = None
        self.window_stalls = 0  # times a sender waited for the peer's window
        self.admitted: object = None
        self._peer_ip: str | None = None
        self._write_lock = gevent.lock.Semaphore()
        self._pong = gevent.event.Event()
        self._settings_seen = gevent.event.Event()
        self._reader: gevent.Greenlet | None = None
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
        )
        self.h2 = _ClientConnection(config=config)

    # -- life ---------------------------------------------------------------------------

    def start(self, timeout_s: float) -> None:
        """Send the preface and our settings, open the connection window for every
        stream, start the reader, and wait for the origin's SETTINGS: until they arrive
        its stream limit is unknown, and streams opened beyond it would be refused.
        (A server sends them at once, so this costs at most the time its first frame
        takes.) Raises `OriginConnectTimeout` or `OriginConnectError`."""
        conn = self.h2
        conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW_BYTES,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEAD_BYTES,
            },
        )
        conn.initiate_connection()
        # The connection window at least the streams' windows together, so streams
        # stalled by slow clients can never take the whole connection's window.
        want = STREAM_WINDOW_BYTES * self.stream_cap
        conn.increment_flow_control_window(want - 65535)
        failed = OriginConnectTimeout(f"{self.where} sent no HTTP/2 SETTINGS in time")
        try:
            with gevent.Timeout(timeout_s, failed):
                try:
                    self._flush()
                except OSError as exc:
                    raise OriginConnectError(f"{self.where}: HTTP/2 preface failed: {exc}") from exc
                self._reader = gevent.spawn(self._read_loop)
                self._settings_seen.wait()
            if self.closed:
                raise OriginConnectError(
                    f"{self.where} closed the connection at the HTTP/2 preface"
                )
        except BaseException:
            self.close()  # not yet the pool's: it hears nothing of it
            raise
        self.started = True

    @property
    def peer_ip(self) -> str:
        if self._peer_ip is None:
            self._peer_ip = peer_address(self.sock)
        return self._peer_ip

    @property
    def max_streams(self) -> int:
        """Streams this connection may carry at once: the origin's limit or ours."""
        return min(self.h2.remote_settings.max_concurrent_streams, self.stream_cap)

    def buffered_bytes(self) -> int:
        """Response body bytes received and not yet taken by their streams' readers:
        at most the streams' windows (`STREAM_WINDOW_BYTES` each)."""
        return sum(len(data) for stream in self.streams.values() for data, _ in stream.pieces)

    def has_room(self, max_requests: int = 0) -> bool:
        """May one more stream be granted on this connection now?"""
        if self.closing or self.closed:
            return False
        if max_requests and self.opened >= max_requests:
            return False
        return self.in_flight < self.max_streams

    def grant(self, reused: bool) -> H2Stream:
        """Reserve a stream (the caller checked `has_room`)."""
        self.in_flight += 1
        self.opened += 1
        return H2Stream(self, reused)

    def needs_ping(self) -> bool:
        return self.in_flight <= 1 and self._clock() - self.idle_since > PING_AFTER_IDLE_S

    def ping(self, timeout_s: float) -> None:
        """Check a connection that sat idle: the origin must answer a PING in time, or the
        connection is closed and the request goes to a fresh one (a stale pooled socket)."""
        self._pong.clear()
        self.h2.ping(b"cproxyok")
        try:
            self._flush()
        except OSError as exc:
            self.close()
            raise OriginNoResponse(f"{self.where} is gone after idling: {exc}") from exc
        if not self._pong.wait(timeout_s):
            self.close()
            raise OriginNoResponse(f"{self.where} did not answer a PING after idling")

    def close(self) -> None:
        """Close the socket; every open stream fails (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.closing = True
        self._fail_all(OriginReset(f"{self.where} closed the HTTP/2 connection"), unsent=None)
        self._settings_seen.set()  # a start() waiting for them ends
        if self.started:
            self._on_close(self)
        reader = self._reader
        if reader is not None and reader is not gevent.getcurrent():
            reader.kill(block=False)
        try:
            self.sock.close()
        except OSError:
            pass

    def shutdown(self) -> None:
        """Tell the origin we open no more streams (GOAWAY), close once none is left."""
        if self.closed:
            return
        if not self.closing:
            self.closing = True
            try:
                self.h2.close_connection()
                self._flush()
            except (OSError, h2.exceptions.ProtocolError):
                pass
        if self.in_flight == 0:
            self.close()

    # -- used by streams ----------------------------------------------------------------

    def method_of(self, stream: H2Stream) -> str:
        return self._methods.get(stream.stream_id, "GET")

    def begin(self, stream: H2Stream, block: list[tuple[str, str]], *, end_stream: bool) -> int:
        if self.closed or self.closing:
            raise OriginUnprocessed(f"{self.where} is closing its HTTP/2 connection")
        conn = self.h2
        stream_id = conn.get_next_available_stream_id()
        try:
            conn.send_headers(stream_id, block, end_stream=end_stream)
        except h2.exceptions.TooManyStreamsError as exc:
            # The origin lowered its limit since the stream was granted: not processed.
            raise OriginUnprocessed(f"{self.where}: {exc}") from exc
        except h2.exceptions.ProtocolError as exc:
            raise OriginProtocolError(f"cannot send the request over HTTP/2: {exc}") from exc
        self.streams[stream_id] = stream
        self._methods[stream_id] = block[0][1]
        stream.stream_id = stream_id
        self._flush_or_fail()
        return stream_id

    def send_data(self, stream: H2Stream, data: bytes, *, end_stream: bool) -> None:
        """Send ``data`` on ``stream`` as the origin's windows allow (waiting for them)."""
        conn = self.h2
        view = memoryview(data)
        while True:
            if stream.error is not None:
                raise stream.error
            if not view and end_stream:
                conn.end_stream(stream.stream_id)
                self._flush_or_fail()
                return
            if not view:
                return
            window = conn.local_flow_control_window(stream.stream_id)
            if window <= 0:
                self.window_stalls += 1
                self._count("h2_window_stalls")
                stream.window.clear()
                if not stream.window.wait(stream.read_timeout_s):
                    self.reset(stream, h2.errors.ErrorCodes.CANCEL)
                    raise OriginReadTimeout(f"{self.where} took no request body within ReadTimeout")
                continue
            size = min(len(view), window, conn.max_outbound_frame_size)
            last = end_stream and size == len(view)
            conn.send_data(stream.stream_id, bytes(view[:size]), end_stream=last)
            view = view[size:]
            self._flush_or_fail()
            if last:
                return

    def acknowledge(self, stream: H2Stream, size: int) -> None:
        if self.closed:
            return
        try:
            self.h2.acknowledge_received_data(size, stream.stream_id)
            self._flush()
        except (OSError, h2.exceptions.ProtocolError) as exc:
            log.debug("%s: acknowledging data failed: %s", self.where, exc)

    def reset(self, stream: H2Stream, code: int) -> None:
        if self.closed or not stream.stream_id:
            return
        try:
            self.h2.reset_stream(stream.stream_id, code)
            self._flush()
        except h2.exceptions.StreamClosedError:
            pass  # already closed on both sides
        except (OSError, h2.exceptions.ProtocolError) as exc:
            log.debug("%s: resetting stream %d failed: %s", self.where, stream.stream_id, exc)
        stream.ended = True
        stream.sent_all = True

    def stream_done(self, stream: H2Stream) -> None:
        """The stream's slot is free again (called once per granted stream)."""
        if stream.done:
            return
        stream.done = True
        # What it received and nobody will read still counts against the connection's
        # window: hand it back, or every abandoned stream would shrink it for good.
        unread = stream._unacked + sum(flow for _, flow in stream.pieces)
        stream.pieces.clear()
        stream._unacked = 0
        if unread and stream.stream_id:
            self.acknowledge(stream, unread)
        self.streams.pop(stream.stream_id, None)
        self._methods.pop(stream.stream_id, None)
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle_since = self._clock()
        if self.closing and self.in_flight == 0:
            self.close()
        self._on_stream_done(self)

    # -- I/O ----------------------------------------------------------------------------

    def _flush(self) -> None:
        with self._write_lock:
            data = self.h2.data_to_send()
            if data:
                self.sock.sendall(data)

    def _flush_or_fail(self) -> None:
        """Send what h2 has for the socket. When the socket will not take it, the origin
        is closing it (perhaps after a GOAWAY still unread in our buffer): no stream is
        opened on it again, and what happened to the streams is left to the reader to
        learn (GOAWAY: not processed; the end of the connection: no response), rather
        than guessed here. Raises `WriteFailed` to stop the caller's sending."""
        try:
            self._flush()
        except OSError as exc:
            log.debug("%s: writing failed: %s", self.where, exc)
            self.closing = True
            try:
                self.sock.shutdown(gsocket.SHUT_WR)
            except OSError:
                pass
            raise WriteFailed(str(exc)) from exc

    def _read_loop(self) -> None:
        try:
            while not self.closed:
                try:
                    data = self.sock.recv(IO_CHUNK_BYTES)
                except OSError as exc:
                    log.debug("%s: HTTP/2 connection failed: %s", self.where, exc)
                    break
                if not data:
                    break
                try:
                    events = self.h2.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    log.info("%s: HTTP/2 protocol error: %s", self.where, exc)
                    try:
                        self._flush()  # h2's GOAWAY for it
                    except OSError:
                        pass
                    break
                for event in events:
                    self._dispatch(event)
                try:
                    self._flush()  # SETTINGS and PING acks, WINDOW_UPDATEs
                except OSError:
                    break
        finally:
            if not self.closed:
                self.closed_by_peer()

    def closed_by_peer(self) -> None:
        # Streams that saw nothing of a response are "no response" (a stale connection:
        # retried by DESIGN.md §5 rule 5's rule); others were cut short.
        self.closing = True
        self.close()

    def _fail_all(self, error: OriginError, *, unsent: int | None) -> None:
        for stream_id, stream in list(self.streams.items()):
            if unsent is not None and stream_id <= unsent:
                continue
            if stream.ended:
                continue  # it has its whole response
            if unsent is not None:
                self._count("h2_unprocessed")
                stream.fail(OriginUnprocessed(str(error)))
            elif not stream.finals and not stream.pieces and stream.error is None:
                stream.fail(OriginNoResponse(str(error)))
            else:
                stream.fail(error)

    def _dispatch(self, event: h2.events.Event) -> None:
        stream_id = getattr(event, "stream_id", None)
        stream = self.streams.get(stream_id) if stream_id else None
        if isinstance(event, h2.events.ResponseReceived):
            if stream is not None:
                stream.finals.append(list(event.headers or []))
                stream.wake.set()
        elif isinstance(event, h2.events.InformationalResponseReceived):
            if stream is not None:
                try:
                    stream.interims.append(response_from_block(list(event.headers or []), "GET"))
                    stream.wake.set()
                except OriginProtocolError as exc:
                    stream.fail(OriginReset(str(exc)))
        elif isinstance(event, h2.events.DataReceived):
            if stream is None:
                # A stream we gave up: hand its window back at once.
                if event.flow_controlled_length and stream_id:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
                return
            stream.pieces.append((event.data or b"", event.flow_controlled_length or 0))
            stream.wake.set()
        elif isinstance(event, h2.events.StreamEnded):
            if stream is not None:
                stream.ended = True
                stream.wake.set()
        elif isinstance(event, h2.events.StreamReset):
            if stream is not None:
                code = event.error_code
                if code == h2.errors.ErrorCodes.REFUSED_STREAM:
                    self._count("h2_unprocessed")
                    stream.fail(OriginUnprocessed(f"{self.where} refused the stream", refused=True))
                elif not stream.ended:
                    stream.fail(OriginReset(f"{self.where} reset the stream ({code!s})"))
                stream.ended = True
                stream.sent_all = True
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id:
                if stream is not None:
                    stream.window.set()
            else:
                for each in self.streams.values():
                    each.window.set()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._settings_seen.set()
            for each in self.streams.values():
                each.window.set()  # a new initial window may open a stalled sender
            self._on_stream_done(self)  # a new stream limit may let waiters in
        elif isinstance(event, h2.events.PingAckReceived):
            self._pong.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._on_goaway_event(event)

    def _on_goaway_event(self, event: h2.events.ConnectionTerminated) -> None:
        last = event.last_stream_id if event.last_stream_id is not None else 0
        self.goaway_last_id = last
        self.closing = True
        code = event.error_code
        self._fail_all(
            OriginUnprocessed(f"{self.where} sent GOAWAY ({code!s}, last stream {last})"),
            unsent=last,
        )
        self._on_goaway(self)
        if self.in_flight == 0:
            self.close()


def _no_count(name: str) -> None:
    pass


class _ClientConnection(h2.connection.H2Connection):
    """h2's connection, except that receiving GOAWAY leaves it open for the streams at
    or below the GOAWAY's last stream id (python-hyper/h2 issue 1181: h2 closes its
    whole state machine, and every later frame of those streams is a protocol error)."""

    def _receive_goaway_frame(self, frame: Any) -> Any:
        result = super()._receive_goaway_frame(frame)
        self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return result
