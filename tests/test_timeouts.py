"""Timeouts over real loopback sockets: each fires as handler.py documents, and not early.

InputTimeout (request head), PersistTimeout (idle between requests), ReadTimeout (a
stalled socket: client body, silent or stalling origin, client not reading), OutputTimeout
(the whole response to the client). Values are short; every wait is bounded.
"""

from __future__ import annotations

import socket
import threading
import time

from tests.scripted import ScriptedConn, ScriptedOrigin
from tests.support import Origin, raw_connection, read_response, start_proxy

SLACK_S = 0.5  # scheduling slack on a loaded machine; bounds stay far below the defaults


def _get(url: str, extra: str = "") -> bytes:
    return f"GET {url} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def _recv_until_closed(sock: socket.socket) -> bytes:
    """Everything until EOF (or reset): the client's view of a closed connection."""
    out = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return out
            out += data
    except ConnectionResetError:
        return out


def _trickle_until_answer(sock: socket.socket, data: bytes, gap_s: float) -> bytes:
    """Send ``data`` one byte every ``gap_s`` (a slowloris) until the proxy answers or closes."""
    sock.settimeout(gap_s)
    for i in range(len(data)):
        try:
            sock.sendall(data[i : i + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            got = sock.recv(65536)
        except TimeoutError:
            continue
        sock.settimeout(5)
        return got + _recv_until_closed(sock)
    sock.settimeout(5)
    return _recv_until_closed(sock)


# -- InputTimeout --------------------------------------------------------------------------


def test_slowloris_head_gets_408_and_close_within_input_timeout(origin: Origin) -> None:
    endless_head = _get(origin.url("/")).rstrip(b"\r\n") + b"\r\nX-Slow: " + b"a" * 10_000
    with start_proxy(InputTimeout="400 ms") as proxy, raw_connection(proxy.port) as sock:
        t0 = time.monotonic()
        answer = _trickle_until_answer(sock, endless_head, 0.02)
        elapsed = time.monotonic() - t0
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert b"connection: close" in head
    assert 0.4 <= elapsed < 0.4 + SLACK_S, elapsed
    assert origin.requests == []


def test_the_reaper_outlives_a_connection_that_fails_its_check(origin: Origin) -> None:
    """Every idle and origin wait depends on the runtime's reaper: one connection whose
    check raises must not stop it for the others."""

    class Broken:
        def expire_if_idle(self, now: float) -> None:
            raise RuntimeError("broken on purpose")

        def close_if_idle(self) -> None:
            pass

    with start_proxy(InputTimeout="300 ms") as proxy:
        proxy.call(lambda: proxy.runtime.connections.add(Broken()))
        with raw_connection(proxy.port) as sock:
            t0 = time.monotonic()
            status, _, _ = read_response(sock)
            elapsed = time.monotonic() - t0
    assert status == 408
    assert 0.3 <= elapsed < 0.3 + SLACK_S


def test_input_timeout_counts_from_accept_not_from_the_first_byte(origin: Origin) -> None:
    """handler.py: 'from accepting the connection (first request) ... to the end of that
    request's head'. A client silent for most of InputTimeout, then trickling, must not
    get a second full InputTimeout."""
    endless_head = b"GET " + origin.url("/").encode() + b" HTTP/1.1\r\nX-Slow: " + b"a" * 10_000
    with start_proxy(InputTimeout="600 ms") as proxy, raw_connection(proxy.port) as sock:
        t0 = time.monotonic()
        sock.settimeout(0.4)
        try:
            early = sock.recv(1)  # nothing is expected this early: silence for 0.4 s
        except TimeoutError:
            early = b""
        assert early == b""
        answer = _trickle_until_answer(sock, endless_head, 0.02)
        elapsed = time.monotonic() - t0
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    assert 0.6 <= elapsed < 0.6 + 0.3, elapsed


def test_no_request_at_all_gets_408_after_input_timeout(origin: Origin) -> None:
    with start_proxy(InputTimeout="300 ms") as proxy, raw_connection(proxy.port) as sock:
        t0 = time.monotonic()
        status, headers, _ = read_response(sock)
        elapsed = time.monotonic() - t0
        assert sock.recv(1) == b""
    assert status == 408 and headers["connection"] == "close"
    assert 0.3 <= elapsed < 0.3 + SLACK_S


def test_head_trickled_within_input_timeout_is_served(origin: Origin) -> None:
    data = _get(origin.url("/slow-but-ok"))
    with start_proxy(InputTimeout="2 seconds") as proxy, raw_connection(proxy.port) as sock:
        # 10 pieces 60 ms apart: slow, but the head is complete well within InputTimeout.
        step = len(data) // 10 + 1
        done = threading.Event()
        for i in range(0, len(data), step):
            sock.sendall(data[i : i + step])
            done.wait(0.06)  # pacing the client, not synchronising with the proxy
        status, _, body = read_response(sock)
    assert status == 200 and body == b"hello GET /slow-but-ok"


# -- PersistTimeout -------------------------------------------------------------------------


def test_idle_persistent_connection_is_closed_after_persist_timeout(origin: Origin) -> None:
    with start_proxy(PersistTimeout="300 ms") as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(_get(origin.url("/a")))
        f = sock.makefile("rb")
        assert read_response(f)[0] == 200
        t0 = time.monotonic()
        assert f.read(1) == b""  # closed quietly: no 408, no bytes at all
        elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed < 0.3 + SLACK_S, elapsed


def test_requests_within_persist_timeout_reuse_the_connection(origin: Origin) -> None:
    pause = threading.Event()
    with start_proxy(PersistTimeout="400 ms") as proxy, raw_connection(proxy.port) as sock:
        f = sock.makefile("rb")
        t0 = time.monotonic()
        for i in range(5):
            if i:
                pause.wait(0.2)  # idle half of PersistTimeout; 5 x 0.2 s > PersistTimeout
            sock.sendall(_get(origin.url(f"/n{i}")))
            status, headers, body = read_response(f)
            assert status == 200 and body == f"hello GET /n{i}".encode()
            assert "connection" not in headers
        assert time.monotonic() - t0 > 0.4  # the timer restarts after each response


# -- ReadTimeout ------------------------------------------------------------------------------


def test_stalled_request_body_gets_408_and_close() -> None:
    def script(conn: ScriptedConn) -> None:
        conn.hold()

    with (
        ScriptedOrigin(script) as origin,
        start_proxy(ReadTimeout="300 ms") as proxy,
        raw_connection(proxy.port) as sock,
    ):
        # The clock starts before the send: cproxy's wait for the rest of the body starts
        # as soon as the first bytes are in, which may be before sendall() returns here.
        t0 = time.monotonic()
        sock.sendall(
            f"POST {origin.url('/up')} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n".encode()
            + b"0123456789"
        )
        status, headers, _ = read_response(sock)
        elapsed = time.monotonic() - t0
        assert sock.recv(1) == b""
        # The body is read (up to RequestBodyBuffer) before the origin sees the request:
        # the origin was never contacted.
        assert not origin.conns
    assert status == 408 and headers["connection"] == "close"
    assert 0.3 <= elapsed < 0.3 + SLACK_S


def test_origin_that_never_answers_gets_504_with_a_page() -> None:
    def script(conn: ScriptedConn) -> None:
        if conn.read_request():
            conn.hold()

    with (
        ScriptedOrigin(script) as origin,
        start_proxy(ReadTimeout="300 ms") as proxy,
        raw_connection(proxy.port) as sock,
    ):
        sock.sendall(_get(origin.url("/silent")))
        t0 = time.monotonic()
        status, headers, body = read_response(sock)
        elapsed = time.monotonic() - t0
        assert origin.conns[0].eof.wait(5)  # the silent origin connection is dropped
        assert proxy.call(proxy.runtime.pool.stats)["totals"]["idle"] == 0
    assert status == 504
    assert headers["content-type"].startswith("text/html")
    assert b"ReadTimeout" in body and f"127.0.0.1:{origin.port}".encode() in body
    assert 0.3 <= elapsed < 0.3 + SLACK_S
    assert len(origin.requests) == 1  # a GET that timed out is not sent again


def test_origin_stalling_mid_body_truncates_the_response() -> None:
    def script(conn: ScriptedConn) -> None:
        if conn.read_request():
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
            conn.hold()

    with (
        ScriptedOrigin(script) as origin,
        start_proxy(ReadTimeout="300 ms") as proxy,
        raw_connection(proxy.port) as sock,
    ):
        sock.sendall(_get(origin.url("/stall")))
        t0 = time.monotonic()
        data = _recv_until_closed(sock)
        elapsed = time.monotonic() - t0
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: 1000" in head.lower()
    assert body == b"x" * 100  # closed before Content-Length bytes: visibly truncated
    assert 0.3 <= elapsed < 0.3 + SLACK_S


# -- a client that never reads: OutputTimeout and ReadTimeout free the slot ------------------


def _endless_origin_script(conn: ScriptedConn) -> None:
    """Answer with a 1 GiB Content-Length body streamed until the proxy goes away."""
    if conn.read_request() is None:
        return
    if conn.requests[-1].target.endswith("/small"):
        conn.reply(200, b"small")
        return
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
    block = b"z" * 65536
    while not conn.origin.stopping.is_set() and conn.send(block):
        pass


def _slot_freed_after_stuck_reader(directives: dict[str, str], bound_s: float) -> float:
    with (
        ScriptedOrigin(_endless_origin_script) as origin,
        start_proxy(MaxActiveThreads="1", **directives) as proxy,
        socket.socket() as stuck,
    ):
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", proxy.port))
        stuck.sendall(_get(origin.url("/big")))
        origin.wait_requests(1)
        t0 = time.monotonic()
        # The one slot is busy with `stuck`; this client waits in the listen backlog.
        with raw_connection(proxy.port) as second:
            second.sendall(_get(origin.url("/small")))
            status, _, body = read_response(second)
        elapsed = time.monotonic() - t0
        assert status == 200 and body == b"small"
        stats = proxy.call(proxy.runtime.pool.stats)["totals"]
        assert stats["created"] == stats["closed"] + stats["idle"] + stats["in_use"]
        assert stats["in_use"] == 0
    assert elapsed < bound_s + SLACK_S, elapsed
    return elapsed


def test_client_that_never_reads_is_dropped_after_output_timeout() -> None:
    elapsed = _slot_freed_after_stuck_reader(
        {"OutputTimeout": "500 ms", "ReadTimeout": "1 minute"}, 0.5
    )
    assert elapsed >= 0.4  # not earlier than OutputTimeout (minus the head start)


def test_client_that_never_reads_is_dropped_after_read_timeout() -> None:
    _slot_freed_after_stuck_reader({"OutputTimeout": "1 minute", "ReadTimeout": "300 ms"}, 0.3)
