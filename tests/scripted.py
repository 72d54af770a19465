"""A scripted raw-socket origin for tests that need an origin to misbehave.

`ScriptedOrigin(script)` listens on 127.0.0.1:0 and runs ``script(conn)`` in a thread for
every accepted connection. The script reads requests with `ScriptedConn.read_request` and
answers with exactly the bytes it chooses (`send`), stalls (`hold`), closes or resets.
The origin records every request it read and counts connections, and `wait_eof` observes
the proxy closing a socket.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cproxy.cache.fields import get_first
from tests.rawserver import RawServer
from tests.support import WAIT_S, wait_for


@dataclass
class Req:
    """One request as the origin read it: head parsed, body decoded, raw bytes kept."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_body: bytes
    conn_index: int

    def header(self, name: str) -> str | None:
        return get_first(self.headers, name)

    def names(self) -> set[str]:
        return {n.lower() for n, _ in self.headers}


@dataclass
class ScriptedConn:
    """The origin's side of one accepted connection."""

    sock: socket.socket
    origin: ScriptedOrigin
    index: int
    buf: bytes = b""
    requests: list[Req] = field(default_factory=list)
    # Set when this side sees the proxy close or reset the connection.
    eof: threading.Event = field(default_factory=threading.Event)

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise
        except OSError:
            self.eof.set()
            raise
        if not data:
            self.eof.set()
            return False
        self.buf += data
        return True

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_request(self, idle_timeout_s: float | None = WAIT_S) -> Req | None:
        """The next request, or None on EOF, reset, or no first byte within the idle timeout."""
        self.sock.settimeout(idle_timeout_s)
        try:
            if not self.buf and not self._fill():
                return None
        except OSError:  # includes TimeoutError
            return None
        self.sock.settimeout(WAIT_S)
        try:
            first = self._line()
            while not first:  # RFC 9112 §2.2: leading empty lines
                first = self._line()
            head = first + b"\r\n"
            while True:
                line = self._line()
                if not line:
                    break
                head += line + b"\r\n"
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            headers = [
                (n.strip(), v.strip()) for n, _, v in (x.partition(":") for x in lines[1:] if x)
            ]
            req = Req(method, target, version, headers, b"", b"", self.index)
            te = (req.header("transfer-encoding") or "").lower()
            if te == "chunked":
                raw = b""
                while True:
                    size_line = self._line()
                    raw += size_line + b"\r\n"
                    size = int(size_line.split(b";")[0], 16)
                    if size == 0:
                        while True:
                            trailer = self._line()
                            raw += trailer + b"\r\n"
                            if not trailer:
                                break
                        break
                    chunk = self._exact(size)
                    req.body += chunk
                    raw += chunk + self._exact(2)
                req.raw_body = raw
            elif req.header("content-length"):
                req.body = req.raw_body = self._exact(int(req.header("content-length") or 0))
        except (OSError, EOFError):
            return None
        self.requests.append(req)
        self.origin.record(req)
        return req

    def send(self, data: bytes) -> bool:
        """Send ``data``; False when the proxy has gone."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def reply(self, status: int = 200, body: bytes = b"ok", extra: str = "") -> bool:
        """A Content-Length response; ``extra`` is more header lines, each ending in CRLF."""
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        return self.send(head.encode("latin-1") + body)

    def wait_eof(self, timeout_s: float = WAIT_S) -> bool:
        """Read and drop bytes; True when the proxy closes (or resets) within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.eof.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(min(remaining, 0.05))
            try:
                if not self.sock.recv(65536):
                    self.eof.set()
            except TimeoutError:
                if self.origin.stopping.is_set():
                    return False
            except OSError:
                self.eof.set()
        return True

    def hold(self) -> None:
        """Stall: wait until the test ends or the proxy closes the connection."""
        self.wait_eof(1e9)

    def reset(self) -> None:
        """Close with an RST (SO_LINGER 0), as an origin does that drops a connection."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


Script = Callable[[ScriptedConn], None]


class ScriptedOrigin(RawServer["ScriptedConn"]):
    """A threaded raw TCP origin on 127.0.0.1:0; ``script(conn)`` serves each connection."""

    def __init__(self, script: Script) -> None:
        super().__init__(script)
        self.closed_by_script = 0
        self.requests: list[Req] = []

    def __enter__(self) -> ScriptedOrigin:
        return super().__enter__()  # type: ignore[no-any-return]

    def record(self, req: Req) -> None:
        with self.lock:
            self.requests.append(req)

    def _wrap(self, sock: socket.socket, index: int) -> ScriptedConn:
        return ScriptedConn(sock, self, index)

    def wait_requests(self, n: int, timeout_s: float = WAIT_S) -> list[Req]:
        wait_for(lambda: len(self.requests) >= n, timeout_s, f"{n} origin requests")
        return self.requests


def keep_alive_script(body: bytes = b"ok", idle_timeout_s: float = WAIT_S) -> Script:
    """Answer every request with ``body``; close after ``idle_timeout_s`` without a request
    between two requests. A new connection's first request is waited for ``WAIT_S``, as a
    real server waits far longer than a 50 ms test value for it (nginx's
    client_header_timeout: 60 s): a fresh connection that a loaded proxy took 50 ms to use
    is not the stale pooled socket these tests are about (seen once as a 502)."""

    def script(conn: ScriptedConn) -> None:
        timeout_s = WAIT_S
        while True:
            req = conn.read_request(timeout_s)
            timeout_s = idle_timeout_s
            if req is None:
                return
            if not conn.reply(200, body if req.method != "HEAD" else b""):
                return

    return script
