"""Test harness: cproxy in a thread of its own (with its own gevent hub), real origins.

cproxy runs in a background thread so tests can use ordinary blocking clients
(urllib, requests, raw sockets, curl) against it. Origins are real HTTP/1.1
servers on 127.0.0.1, port 0, that count the connections they accept.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from cproxy.directives import Config, config_with, defaults

WAIT_S = 10.0

# Debian's Chromium, started the way this machine needs: no sandbox (tests run as root),
# no GPU, and none of the background traffic a closed network refuses.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def wait_for(predicate: Callable[[], Any], timeout_s: float = WAIT_S, what: str = "") -> Any:
    """Poll ``predicate`` until it is truthy; fail after ``timeout_s``.

    Used only where no event exists to wait on (e.g. a counter in another process
    or thread); the poll interval is short and the wait is bounded.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.005)


class FakeClock:
    """Epoch seconds that move only when told (starts at the real time: Date stays sane).

    Install it as ``proxy.runtime.cache.clock`` to age cached responses without sleeping.
    """

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_config(**directives: str) -> Config:
    """Defaults for tests: ephemeral port, no admin, no access log, quiet errors."""
    base = {"Port": "0", "AdminPort": "0", "AccessLog": "", "LogLevel": "warning"}
    base.update(directives)
    return config_with(defaults(), base)


class ProxyThread:
    """cproxy serving in a background thread. Use as a context manager."""

    def __init__(self, config: Config, config_path: str | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self._ready = threading.Event()
        self._stop_requested: Any = None
        self._error: BaseException | None = None
        self.server: Any = None
        self.runtime: Any = None
        self._thread = threading.Thread(target=self._run, name="cproxy", daemon=True)

    def _run(self) -> None:
        import gevent
        import gevent.event

        from cproxy.server.proxy import ProxyServer
        from cproxy.server.runtime import Runtime

        try:
            self.runtime = Runtime(self.config, self.config_path)
            self.server = ProxyServer(self.runtime)
            self.server.start()
            self.hub = gevent.get_hub()
            stop = gevent.event.Event()
            # A thread-safe way to wake this hub from the test's thread.
            self._async = self.hub.loop.async_()
            self._async.start(stop.set)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._ready.set()
        stop.wait()
        self.server.stop(grace_s=2)
        self._async.close()

    def __enter__(self) -> ProxyThread:
        self._thread.start()
        assert self._ready.wait(WAIT_S), "cproxy did not start"
        if self._error:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self._async.send()
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), "cproxy did not stop"

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in cproxy's hub (thread-safe) and return its result."""

        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc
            done.set()

        self.hub.loop.run_callback_threadsafe(run)
        assert done.wait(WAIT_S)
        if "error" in box:
            raise box["error"]
        return box.get("value")

    @property
    def port(self) -> int:
        return int(self.server.address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_proxy(**directives: str) -> ProxyThread:
    return ProxyThread(test_config(**directives))


Handler = Callable[["OriginHandler"], None]


class OriginHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler; per-path behaviour comes from the server's routes."""

    protocol_version = "HTTP/1.1"
    # Head and body are written separately: without this, Nagle's algorithm and the
    # proxy's delayed ACK add 40 ms to every response.
    disable_nagle_algorithm = True
    server: Origin

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1
            self.server.open_sockets.append(self.connection)

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.body = _read_chunked(self.rfile)
        else:
            self.body = self.rfile.read(length) if length else b""
        with self.server.lock:
            self.server.requests.append((self.command, self.path, dict(self.headers), self.body))
        route = self.server.routes.get(self.path.split("?")[0], self.server.default_route)
        route(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = do_TRACE = _dispatch

    def reply(
        self,
        status: int = 200,
        body: bytes = b"ok",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _read_chunked(rfile: Any) -> bytes:
    out = b""
    while True:
        size = int(rfile.readline().split(b";")[0], 16)
        if not size:
            while rfile.readline() not in (b"\r\n", b""):
                pass
            return out
        out += rfile.read(size)
        rfile.readline()


def _default_route(h: OriginHandler) -> None:
    h.reply(200, f"hello {h.command} {h.path}".encode(), {"Content-Type": "text/plain"})


class Origin(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A real HTTP/1.1 origin on 127.0.0.1:0 (or ``host``:``port``) that records what it
    receives."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), OriginHandler)
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.open_sockets: list[socket.socket] = []
        self.routes: dict[str, Handler] = {}
        self.default_route: Handler = _default_route
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Origin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        with self.lock:
            for s in self.open_sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        self.server_close()


@contextlib.contextmanager
def raw_connection(port: int, timeout_s: float = WAIT_S) -> Iterator[socket.socket]:
    """A plain blocking TCP connection to 127.0.0.1:port."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    try:
        yield s
    finally:
        s.close()


def read_response(source: Any) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response (Content-Length, chunked or until close).

    ``source`` is a socket or, to read several pipelined responses, one file made by
    ``sock.makefile("rb")`` and passed to every call.
    """
    f = source.makefile("rb") if isinstance(source, socket.socket) else source
    status_line = f.readline()
    if not status_line:
        raise ConnectionError("connection closed before a response")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = _read_chunked(f)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = f.read()
    return status, headers, body
