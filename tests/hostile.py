"""Hostile-input harness (issue #6): exact bytes in, exact bytes out, and a recording origin.

What it gives the tests of DESIGN.md §5:

- `exchange` sends exact bytes to cproxy and reads back exactly what it answers, parsed
  strictly with the project's own response parser, and whether cproxy closed the
  connection afterwards.
- `attack` sends a bad input followed by a harmless *canary* request, both pipelined in one
  send and, on a second connection, the canary only after the answer was read. After a
  4xx with ``Connection: close`` the canary must get nothing: nothing after a framing
  error may be read as a request (§5 rule 2).
- `RecordingOrigin` is a raw TCP origin on 127.0.0.1 that records every byte it receives,
  per connection, and answers through a script that may misbehave on cue (raw bytes,
  close, reset with SO_LINGER 0, never answer, trickle, extra bytes).
- `origin_requests` parses what an origin received with cproxy's own strict parser plus
  body framing: the bytes must be exactly a sequence of complete, canonical requests
  (§5 rule 1: one framing, never a smuggled second request).
- `TALLY` counts bad inputs tried and canaries smuggled, for the figures in docs/HARDENING.md.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cproxy.cache.fields import get_first
from cproxy.errors import ProtocolError
from cproxy.http import ChunkedDecoder, Request, find_head_end, parse_request_head
from cproxy.http.message import parse_response_head
from tests.rawserver import RawServer
from tests.support import WAIT_S, wait_for

# How long to wait for cproxy to close a connection it should close. cproxy closes at
# once after a 4xx, so this only bounds a failing test.
CLOSE_WAIT_S = 5.0

# Bad inputs tried and canaries that got an answer they should not have (must stay 0).
TALLY = {"bad_inputs": 0, "smuggled": 0, "handled": 0}


# -- the client side ---------------------------------------------------------------


@dataclass
class Answer:
    """One response as the client read it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    framing: str

    def header(self, name: str) -> str | None:
        return get_first(self.headers, name)

    @property
    def closes(self) -> bool:
        return "close" in (self.header("connection") or "").lower()


@dataclass
class Exchange:
    """What cproxy sent back on one connection."""

    answers: list[Answer]
    raw: bytes
    closed: bool  # cproxy closed (EOF or reset) before the deadline
    leftover: bytes = b""  # bytes after the last complete response

    @property
    def statuses(self) -> list[int]:
        return [a.status for a in self.answers]


def parse_responses(
    data: bytes, methods: list[str] | None = None, *, eof: bool = True
) -> tuple[list[Answer], bytes]:
    """Complete responses in ``data`` and what is left over, parsed strictly.

    ``methods`` are the methods of the requests answered, in order (HEAD responses have
    no body); interim 1xx responses are returned too. A read-until-close body is
    complete only when ``eof``.
    """
    answers: list[Answer] = []
    methods = list(methods or [])
    pos = 0
    while pos < len(data):
        end = find_head_end(data[pos:], client=False)
        if end == -1:
            break
        method = methods[0] if methods else "GET"
        resp = parse_response_head(data[pos : pos + end], method)
        body_start = pos + end
        if resp.body == "none":
            body, body_end = b"", body_start
        elif resp.body == "length":
            if len(data) - body_start < resp.content_length:
                break
            body_end = body_start + resp.content_length
            body = data[body_start:body_end]
        elif resp.body == "chunked":
            decoder = ChunkedDecoder(client=False)
            pieces = decoder.feed(data[body_start:])
            if not decoder.done:
                break
            body = b"".join(pieces)
            body_end = len(data) - len(decoder.leftover)
        else:
            if not eof:
                break
            body, body_end = data[body_start:], len(data)
        answers.append(Answer(resp.status, resp.headers.items(), body, resp.body))
        if resp.status >= 200 and methods:
            methods.pop(0)
        pos = body_end
    return answers, data[pos:]


def read_all(sock: socket.socket, timeout_s: float = CLOSE_WAIT_S) -> tuple[bytes, bool]:
    """Everything until cproxy closes; (bytes, closed). ``closed`` is False on a timeout."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return data, False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data, False
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk


def read_answers(
    sock: socket.socket, n: int, methods: list[str] | None = None, timeout_s: float = WAIT_S
) -> tuple[list[Answer], bytes]:
    """Read until ``n`` final responses are complete (or cproxy closes, or the deadline)."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while True:
        answers, rest = parse_responses(data, methods, eof=False)
        if sum(a.status >= 200 for a in answers) >= n:
            return answers, rest
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return answers, rest
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            chunk = b""
        if not chunk:
            answers, rest = parse_responses(data, methods, eof=True)
            return answers, rest
        data += chunk


def exchange(
    port: int,
    data: bytes,
    *,
    methods: list[str] | None = None,
    timeout_s: float = CLOSE_WAIT_S,
) -> Exchange:
    """Send ``data`` in one send, half-close nothing, and read until cproxy closes."""
    with contextlib.closing(socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(data)
        raw, closed = read_all(s, timeout_s)
    answers, leftover = parse_responses(raw, methods, eof=closed)
    return Exchange(answers, raw, closed, leftover)


def canary(origin_port: int, path: str = "/canary") -> bytes:
    """A harmless, valid request: if it is ever answered after a 4xx, it was smuggled."""
    o = f"127.0.0.1:{origin_port}"
    return f"GET http://{o}{path} HTTP/1.1\r\nHost: {o}\r\n\r\n".encode()


@dataclass
class AttackResult:
    pipelined: Exchange  # bad input and canary in one send
    sequential: Exchange  # bad input, read the answer, then the canary
    canary_answered: bool


def attack(proxy_port: int, bad: bytes, origin_port: int) -> AttackResult:
    """Send ``bad`` then the canary, both ways; count the attempt and any smuggled canary.

    The caller checks the statuses; this records whether the canary got an answer on a
    connection whose first answer said ``Connection: close``.
    """
    TALLY["bad_inputs"] += 1
    can = canary(origin_port)
    pipelined = exchange(proxy_port, bad + can)
    with contextlib.closing(
        socket.create_connection(("127.0.0.1", proxy_port), timeout=WAIT_S)
    ) as s:
        s.sendall(bad)
        answers, rest = read_answers(s, 1, timeout_s=CLOSE_WAIT_S)
        with contextlib.suppress(OSError):
            s.sendall(can)
        raw, closed = read_all(s)
    more, leftover = parse_responses(rest + raw, eof=closed)
    sequential = Exchange(answers + more, rest + raw, closed, leftover)
    smuggled = False
    for ex in (pipelined, sequential):
        finals = [a for a in ex.answers if a.status >= 200]
        if finals and finals[0].closes and (len(finals) > 1 or ex.leftover or not ex.closed):
            smuggled = True
    if smuggled:
        TALLY["smuggled"] += 1
    return AttackResult(pipelined, sequential, smuggled)


# -- the origin side ---------------------------------------------------------------


@dataclass
class Received:
    """One request as an origin received it, parsed with cproxy's own parser."""

    req: Request
    body: bytes
    raw_head: bytes
    raw_body: bytes


def parse_requests(data: bytes) -> tuple[list[Received], bytes]:
    """Complete requests in ``data`` (strictly parsed) and the incomplete tail.

    Raises AssertionError when the bytes are not well-formed requests: an origin must
    never receive anything cproxy's own strict parser would refuse.
    """
    out: list[Received] = []
    pos = 0
    while pos < len(data):
        try:
            end = find_head_end(data[pos:])
            if end == -1:
                break
            head = data[pos : pos + end]
            req = parse_request_head(head)
            start = pos + end
            if req.body == "length":
                if len(data) - start < req.content_length:
                    break
                body = raw = data[start : start + req.content_length]
                pos = start + req.content_length
            elif req.body == "chunked":
                decoder = ChunkedDecoder(client=True)
                pieces = decoder.feed(data[start:])
                if not decoder.done:
                    break
                body = b"".join(pieces)
                pos = len(data) - len(decoder.leftover)
                raw = data[start:pos]
            else:
                body = raw = b""
                pos = start
        except ProtocolError as exc:
            raise AssertionError(f"origin received a malformed request: {exc}: {data!r}") from exc
        out.append(Received(req, body, head, raw))
    return out, data[pos:]


def assert_canonical(r: Received, hostname: str = "cproxy") -> None:
    """The forwarded head is cproxy's canonical form (§5 rule 1)."""
    req, names = r.req, [n.lower() for n, _ in r.req.headers.items()]
    assert req.form == "origin" and req.version == 1, r.raw_head
    assert names.count("host") == 1, r.raw_head
    assert not {"transfer-encoding", "content-length"} <= set(names), r.raw_head
    assert names.count("content-length") <= 1 and names.count("transfer-encoding") <= 1
    if "transfer-encoding" in names:
        assert req.headers.get("transfer-encoding") == "chunked", r.raw_head
    if "content-length" in names:
        assert req.headers.get("content-length") == str(req.content_length), r.raw_head
    for hop in ("connection", "keep-alive", "proxy-connection", "expect", "te", "upgrade"):
        assert hop not in names, (hop, r.raw_head)
    assert (req.headers.get("via") or "").endswith(hostname), r.raw_head
    if req.body == "chunked":
        # Re-chunked by cproxy: no extensions, no trailers.
        assert b";" not in r.raw_body.split(b"\r\n", 1)[0], r.raw_body
        assert r.raw_body.endswith(b"\r\n0\r\n\r\n") or r.raw_body == b"0\r\n\r\n", r.raw_body


class OriginConn:
    """The origin's side of one accepted connection; every byte read is recorded."""

    def __init__(self, sock: socket.socket, origin: RecordingOrigin, index: int) -> None:
        self.sock = sock
        self.origin = origin
        self.index = index
        self.raw = bytearray()
        self.buf = b""
        self.closed = threading.Event()  # the proxy closed or reset this connection

    def _fill(self, timeout_s: float | None) -> bool:
        try:
            self.sock.settimeout(timeout_s)
            data = self.sock.recv(65536)
        except TimeoutError:
            raise
        except OSError:
            data = b""
        if not data:
            self.closed.set()
            return False
        self.raw += data
        self.buf += data
        return True

    def read_request(self, timeout_s: float = WAIT_S) -> Received | None:
        """The next complete request, or None when the proxy closed or went silent."""
        while True:
            reqs, _ = parse_requests(self.buf)
            if reqs:
                r = reqs[0]
                self.buf = self.buf[len(r.raw_head) + len(r.raw_body) :]
                return r
            try:
                if not self._fill(timeout_s):
                    return None
            except TimeoutError:
                return None

    def read_head(self, timeout_s: float = WAIT_S) -> bytes | None:
        """Bytes up to the end of the next head, leaving the body unread."""
        while b"\r\n\r\n" not in self.buf:
            try:
                if not self._fill(timeout_s):
                    return None
            except TimeoutError:
                return None
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head + b"\r\n\r\n"

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def reply(self, body: bytes = b"ok", extra: str = "", status: int = 200) -> bool:
        head = f"HTTP/1.1 {status} OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        return self.send(head.encode("latin-1") + body)

    def trickle(self, data: bytes, gap_s: float) -> bool:
        """Send one byte at a time, ``gap_s`` apart (an origin's pace, not a test's sync)."""
        for i in range(len(data)):
            if not self.send(data[i : i + 1]):
                return False
            if self.origin.stopping.wait(gap_s):
                return False
        return True

    def reset(self) -> None:
        """Drop the connection with an RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def hold(self) -> None:
        """Never answer: keep reading (and recording) until the proxy closes or the test ends."""
        while not self.origin.stopping.is_set():
            try:
                if not self._fill(0.05):
                    return
            except TimeoutError:
                continue

    def wait_closed(self, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """True when the proxy closes (or resets) this connection within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.closed.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                self._fill(min(remaining, 0.05))
        return True


Script = Callable[[OriginConn], None]


def keep_alive(body: bytes = b"ok", extra: str = "") -> Script:
    """A well-behaved HTTP/1.1 origin: answer each request, keep the connection."""

    def script(conn: OriginConn) -> None:
        while True:
            r = conn.read_request()
            if r is None:
                return
            payload = b"" if r.req.method == "HEAD" else body
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            if not conn.send(head.encode("latin-1") + payload):
                return

    return script


class RecordingOrigin(RawServer["OriginConn"]):
    """A raw threaded origin on 127.0.0.1:0; ``script(conn)`` serves each connection."""

    backlog = 512

    def __init__(self, script: Script | None = None) -> None:
        super().__init__(script or keep_alive())
        self._markers: set[int] = set()
        self._pending_markers: set[int] = set()
        self._marked = threading.Condition(self.lock)

    def __enter__(self) -> RecordingOrigin:
        return super().__enter__()  # type: ignore[no-any-return]

    def sync(self) -> None:
        """Return once every connection made so far has been accepted and recorded.

        The kernel's accept queue is FIFO: once a marker connection made now is
        accepted, every earlier one (e.g. from cproxy) has been too.
        """
        with contextlib.closing(socket.socket()) as m:
            m.bind(("127.0.0.1", 0))  # the port is known before connecting
            port = m.getsockname()[1]
            with self.lock:
                self._pending_markers.add(port)
            m.connect(("127.0.0.1", self.port))
            with self._marked:
                ok = self._marked.wait_for(lambda: port in self._markers, WAIT_S)
            assert ok, "the origin did not accept its marker connection"

    def received(self) -> list[bytes]:
        """The exact bytes each connection received, in accept order."""
        with self.lock:
            return [bytes(c.raw) for c in self.conns]

    def requests(self) -> list[Received]:
        """Every complete request received, all connections; each must parse strictly."""
        out: list[Received] = []
        for raw in self.received():
            reqs, _ = parse_requests(raw)
            out += reqs
        return out

    def paths(self) -> list[str]:
        return [r.req.path for r in self.requests()]

    def wait_for_bytes(self, n: int, timeout_s: float = WAIT_S) -> None:
        """Return once the connections together have received at least ``n`` bytes."""
        wait_for(lambda: sum(map(len, self.received())) >= n, timeout_s, f"{n} bytes at the origin")

    def wait_requests(self, n: int, timeout_s: float = WAIT_S) -> list[Received]:
        wait_for(lambda: len(self.requests()) >= n, timeout_s, f"{n} origin requests")
        return self.requests()

    def _intercept(self, sock: socket.socket, peer: Any) -> bool:
        with self.lock:
            marker = peer[1] in self._pending_markers
        if marker:
            sock.close()
            with self._marked:
                self._markers.add(peer[1])
                self._marked.notify_all()
        return marker

    def _wrap(self, sock: socket.socket, index: int) -> OriginConn:
        return OriginConn(sock, self, index)


# -- cproxy as a separate process (for RSS figures) -------------------------------


class ProxyProcess:
    """``python -m cproxy -c FILE`` in a subprocess; the port is read back from a probe."""

    def __init__(self, conf_path: str, port: int) -> None:
        self.conf_path = conf_path
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ProxyProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cproxy", "-c", self.conf_path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "cproxy exited"
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return True
            return False

        wait_for(up, WAIT_S, "cproxy subprocess listening")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def status(self, field_name: str) -> int:
        """A ``/proc/<pid>/status`` figure in KiB (VmHWM, VmRSS)."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
        raise KeyError(field_name)

    def __exit__(self, *exc: Any) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(WAIT_S)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def free_port() -> int:
    """A port that was free a moment ago (for a subprocess that must be told its port)."""
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def many_sockets(n: int) -> Iterator[list[socket.socket]]:
    """``n`` client sockets, all closed afterwards."""
    socks: list[socket.socket] = []
    try:
        yield socks
    finally:
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()


__all__ = [
    "TALLY",
    "Answer",
    "AttackResult",
    "Exchange",
    "OriginConn",
    "ProxyProcess",
    "Received",
    "RecordingOrigin",
    "assert_canonical",
    "attack",
    "canary",
    "exchange",
    "free_port",
    "keep_alive",
    "many_sockets",
    "parse_requests",
    "parse_responses",
    "read_all",
    "read_answers",
]
