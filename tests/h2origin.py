"""A small scripted HTTP/2 origin (cleartext, prior knowledge) on python-hyper h2, for the
faults a real server does not produce on demand: GOAWAY in the middle of a batch of
streams or every N requests, REFUSED_STREAM, a low stream limit or window, a response
that is never sent, a large response read slowly.

One thread per connection runs h2's server side over a blocking socket on 127.0.0.1
(port 0). Paths:

- ``/small/...``: ``small <path>`` with Content-Length.
- ``/nolength/...``: the same without Content-Length (the stream's end frames it).
- ``/echo``: the request body's length and SHA-256, once the body has come whole.
- ``/refuse-once``: REFUSED_STREAM the first time, then as ``/echo``.
- ``/big``: ``big_bytes`` bytes, sent as the client's windows allow.
- ``/never``: no response at all.
- ``/cache/...``: like ``/nolength/`` but storable (``Cache-Control: max-age=60``).
- ``/badstatus``: a response whose ``:status`` is not a status code.
- ``/hints``: a 103 Early Hints response, then ``small /hints`` without Content-Length,
  then trailers.

Connection behaviours are constructor arguments (see `H2Origin`). Every request is
recorded (`requests`: connection number, stream id, method, path, body) and so is the
most streams ever open at once on a connection (`max_open`).
"""

from __future__ import annotations

import hashlib
import socket
import threading
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings


class H2Origin:
    """See the module docstring.

    ``max_streams``: SETTINGS_MAX_CONCURRENT_STREAMS announced. ``initial_window``: the
    stream window announced (the client's request bodies wait for it). ``goaway_every``:
    after that many requests on a connection, GOAWAY naming the last one, close when the
    streams it covers are answered (nginx's keepalive_requests). ``goaway_hold``:
    ``(n, k)``: hold every response until ``n`` streams are open, then GOAWAY with the
    ``k``-th stream as last stream id, answer streams up to it and never the others (on the
    first connection; later ones answer at once). ``hold_first``: hold the first responses
    of a connection until that many requests are open, then answer them all (so that many
    streams are surely open at once). ``lower_after``: once that many requests were
    answered on a connection, lower the stream limit to 1 (a SETTINGS frame mid-flight).
    (Not the window: h2's server side does not shrink its own view of open streams'
    windows when its lowered INITIAL_WINDOW_SIZE is acknowledged, so it would wait for
    bytes the client may no longer send; the client's side of that ends at ReadTimeout.)
    """

    def __init__(
        self,
        *,
        max_streams: int | None = None,
        initial_window: int | None = None,
        goaway_every: int | None = None,
        goaway_hold: tuple[int, int] | None = None,
        hold_first: int = 0,
        lower_after: int = 0,
        big_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self.max_streams = max_streams
        self.initial_window = initial_window
        self.goaway_every = goaway_every
        self.goaway_hold = goaway_hold
        self.hold_first = hold_first
        self.lower_after = lower_after
        self.big_bytes = big_bytes
        self.lock = threading.Lock()
        self.requests: list[tuple[int, int, str, str, bytes]] = []
        self.max_open: list[int] = []  # per connection
        self.big_sent = 0  # bytes of /big handed to h2 (what the client's windows let out)
        self.refused = 0
        self.pings = 0
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> H2Origin:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop = True
        self.sock.close()
        with self.lock:
            for s in self._conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for t in self._threads:
            t.join(5)

    def _accept(self) -> None:
        while not self._stop:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                number = self.connections
                self.max_open.append(0)
                self._conns.append(s)
            t = threading.Thread(target=_Conn(self, s, number).run, daemon=True)
            self._threads.append(t)
            t.start()


class _Conn:
    def __init__(self, origin: H2Origin, sock: socket.socket, number: int) -> None:
        self.origin = origin
        self.sock = sock
        self.number = number
        config = h2.config.H2Configuration(
            client_side=False, header_encoding="latin-1", validate_outbound_headers=False
        )
        self.h2 = h2.connection.H2Connection(config=config)
        self.heads: dict[int, dict[str, str]] = {}
        self.bodies: dict[int, bytes] = {}
        self.outbound: dict[int, memoryview] = {}  # response bytes waiting for windows
        self.held: list[int] = []  # complete requests whose answer waits (goaway_hold)
        self.open: set[int] = set()
        self.answered = 0
        self.goaway_last: int | None = None
        self.arrived: list[int] = []

    def run(self) -> None:
        o = self.origin
        settings: dict[int, int] = {}
        if o.max_streams is not None:
            settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = o.max_streams
        if o.initial_window is not None:
            settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = o.initial_window
        self.h2.initiate_connection()
        if settings:
            # Effective when the client acknowledges them, as a real server's are.
            self.h2.update_settings(settings)
        self.flush()
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return
                for event in self.h2.receive_data(data):
                    self.on_event(event)
                self.pump()
                self.flush()
                if self.goaway_last is not None and not self.pending_below_last():
                    # GOAWAY sent and every stream it covers answered: close, lingering
                    # as servers do, so that the client reads everything we sent
                    # instead of a reset for the frames it sent meanwhile.
                    self.sock.shutdown(socket.SHUT_WR)
                    self.sock.settimeout(5)
                    while self.sock.recv(65536):
                        pass
                    return
        except (OSError, h2.exceptions.ProtocolError):
            return
        finally:
            self.sock.close()

    def pending_below_last(self) -> bool:
        last = self.goaway_last or 0
        return any(sid <= last for sid in (*self.open, *self.outbound))

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def on_event(self, event: Any) -> None:
        o = self.origin
        if isinstance(event, h2.events.RequestReceived):
            sid = event.stream_id
            self.heads[sid] = dict(event.headers)
            self.bodies[sid] = b""
            self.open.add(sid)
            self.arrived.append(sid)
            with o.lock:
                o.max_open[self.number - 1] = max(o.max_open[self.number - 1], len(self.open))
            path = self.heads[sid][":path"]
            if path == "/refuse-once":
                with o.lock:
                    first = o.refused == 0
                    o.refused += 1
                if first:
                    self.h2.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
                    self.open.discard(sid)
                    return
            # StreamEnded follows (in the same batch for a request without a body).
        elif isinstance(event, h2.events.DataReceived):
            sid = event.stream_id
            if sid in self.bodies and sid in self.open:
                self.bodies[sid] += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, sid)
        elif isinstance(event, h2.events.StreamEnded):
            if event.stream_id in self.open:
                self.complete(event.stream_id)
        elif isinstance(event, h2.events.PingReceived):
            with o.lock:
                o.pings += 1  # h2 sends the acknowledgement itself
        elif isinstance(event, h2.events.StreamReset):
            self.open.discard(event.stream_id)
            self.outbound.pop(event.stream_id, None)

    def complete(self, sid: int) -> None:
        o = self.origin
        head = self.heads[sid]
        with o.lock:
            o.requests.append((self.number, sid, head[":method"], head[":path"], self.bodies[sid]))
        if o.goaway_hold is not None and self.number == 1 and self.goaway_last is None:
            self.held.append(sid)
            n, k = o.goaway_hold
            if len(self.held) >= n:
                self.goaway_last = sorted(self.held)[k - 1]
                self.send_goaway(self.goaway_last)
                for held in sorted(self.held):
                    if held <= self.goaway_last:
                        self.answer(held)
                    else:
                        self.open.discard(held)  # never answered: not processed
            return
        if o.hold_first and self.answered == 0:
            self.held.append(sid)
            if len(self.held) < o.hold_first:
                return
            for held in self.held:
                self.answer(held)
            return
        if self.goaway_last is not None and sid > self.goaway_last:
            self.open.discard(sid)
            return
        self.answer(sid)

    def send_goaway(self, last: int) -> None:
        self.h2.close_connection(last_stream_id=last)
        # h2 closes its state machine on GOAWAY (issue 1181): streams up to ``last``
        # are still to be answered, so it goes back to open.
        self.h2.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN

    def answer(self, sid: int) -> None:
        o = self.origin
        path = self.heads[sid][":path"]
        body = self.bodies[sid]
        if path == "/never":
            return
        if path in ("/echo", "/refuse-once"):
            payload = f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()
        elif path == "/big":
            payload = b"x" * o.big_bytes
        else:
            payload = f"small {path}".encode()
        if path == "/hints":
            self.h2.send_headers(sid, [(":status", "103"), ("link", "</a.css>; rel=preload")])
            self.h2.send_headers(sid, [(":status", "200"), ("cache-control", "no-store")])
            self.h2.send_data(sid, b"small /hints")
            self.h2.send_headers(sid, [("x-checksum", "abc")], end_stream=True)
            self.open.discard(sid)
            return
        if path == "/badstatus":
            self.h2.send_headers(sid, [(":status", "2x0")], end_stream=True)
            self.open.discard(sid)
            return
        cache = "max-age=60" if path.startswith("/cache/") else "no-store"
        headers = [(":status", "200"), ("cache-control", cache)]
        if not path.startswith(("/nolength/", "/cache/")):
            headers.append(("content-length", str(len(payload))))
        self.h2.send_headers(sid, headers)
        self.outbound[sid] = memoryview(payload)
        self.answered += 1
        if o.lower_after and self.answered == o.lower_after:
            self.h2.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        if (
            o.goaway_every is not None
            and self.goaway_last is None
            and self.answered >= o.goaway_every
        ):
            self.goaway_last = max(self.arrived)
            self.send_goaway(self.goaway_last)

    def pump(self) -> None:
        """Send what the windows allow of every waiting response."""
        for sid in list(self.outbound):
            view = self.outbound[sid]
            while True:
                try:
                    window = self.h2.local_flow_control_window(sid)
                except h2.exceptions.StreamClosedError:
                    del self.outbound[sid]
                    break
                size = min(len(view), window, self.h2.max_outbound_frame_size)
                if size <= 0 and view:
                    break
                chunk, view = view[:size], view[size:]
                self.h2.send_data(sid, bytes(chunk), end_stream=not view)
                if self.heads[sid][":path"] == "/big":
                    with self.origin.lock:
                        self.origin.big_sent += len(chunk)
                if not view:
                    del self.outbound[sid]
                    self.open.discard(sid)
                    break
                self.outbound[sid] = view
