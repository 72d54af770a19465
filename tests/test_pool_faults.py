"""The origin connection pool under faults (DESIGN.md §5 rules 4 and 5), end to end.

Scripted raw-socket origins close idle keep-alive sockets, reset reused ones, send
bytes nobody asked for, or ask to close; cproxy must lose no request, never send a
POST twice, and never reuse a socket that is not clean.
"""

from __future__ import annotations

import contextlib
import random
import threading
from typing import Any

from tests.scripted import ScriptedConn, ScriptedOrigin, keep_alive_script
from tests.support import ProxyThread, raw_connection, read_response, start_proxy, wait_for

NO_CACHE = {"Caching": "off"}


def _get(url: str) -> bytes:
    return f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def _post(url: str, body: bytes) -> bytes:
    head = f"POST {url} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _totals(proxy: ProxyThread) -> dict[str, Any]:
    totals = proxy.call(proxy.runtime.pool.stats)["totals"]
    # The pool's accounting invariant holds whatever happened.
    assert totals["created"] == totals["closed"] + totals["idle"] + totals["in_use"], totals
    return totals


def test_1000_gets_through_origins_that_close_idle_sockets_after_50_ms() -> None:
    """10 clients x 100 GETs with random 0-100 ms gaps, each client to an origin of its own
    (so its gaps are the pooled socket's idle times): about half of them cross the origin's
    50 ms idle close, so stale pooled sockets are met all the time."""
    errors: list[str] = []
    lock = threading.Lock()
    with contextlib.ExitStack() as stack:
        origins = [
            stack.enter_context(ScriptedOrigin(keep_alive_script(b"pong", idle_timeout_s=0.05)))
            for _ in range(10)
        ]
        proxy = stack.enter_context(start_proxy(**NO_CACHE))

        def client(n: int) -> None:
            rng = random.Random(1000 + n)
            pause = threading.Event()
            try:
                with raw_connection(proxy.port) as sock:
                    f = sock.makefile("rb")
                    for i in range(100):
                        pause.wait(rng.uniform(0, 0.1))  # pacing the load, not synchronising
                        sock.sendall(_get(origins[n].url(f"/r{i}")))
                        status, _, body = read_response(f)
                        if status != 200 or body != b"pong":
                            with lock:
                                errors.append(f"client {n} request {i}: {status} {body[:60]!r}")
            except Exception as exc:
                with lock:
                    errors.append(f"client {n}: {exc!r}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        totals = _totals(proxy)
    assert errors == []
    for o in origins:
        assert sorted(r.target for r in o.requests) == sorted(f"/r{i}" for i in range(100))
    # The faults did happen: many sockets were closed by the origins and replaced.
    assert sum(o.connections for o in origins) > 200
    assert totals["reused"] > 200
    assert totals["dropped_dead"] > 100


def _reset_on_reuse(conn: ScriptedConn) -> None:
    """Answer the first request of a connection; reset the connection at the second."""
    if conn.read_request() is None:
        return
    conn.reply(200, b"first")
    if conn.read_request() is not None:
        conn.reset()


def test_posts_are_never_sent_twice_to_an_origin_that_resets_reused_sockets() -> None:
    with (
        ScriptedOrigin(_reset_on_reuse) as origin,
        start_proxy(**NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        f = sock.makefile("rb")
        for i in range(20):
            sock.sendall(_get(origin.url(f"/g{i}")))
            assert read_response(f)[:3:2] == (200, b"first")
            sock.sendall(_post(origin.url(f"/p{i}"), f"post-{i}".encode()))
            assert read_response(f)[:3:2] == (200, b"first")
        _totals(proxy)
    posts = [r.body for r in origin.requests if r.method == "POST"]
    assert sorted(posts) == sorted(f"post-{i}".encode() for i in range(20))
    # Every POST went out on a fresh socket, as the first request of its connection.
    assert all(len(c.requests) >= 1 and c.requests[0].method for c in origin.conns)
    assert all(r.method != "POST" for c in origin.conns for r in c.requests[1:])


def test_post_reset_by_the_origin_gets_502_and_is_not_retried() -> None:
    def script(conn: ScriptedConn) -> None:
        if conn.read_request() is not None:
            conn.reset()

    with (
        ScriptedOrigin(script) as origin,
        start_proxy(**NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        sock.sendall(_post(origin.url("/pay"), b"once"))
        status, _, body = read_response(sock)
        totals = _totals(proxy)
    assert status == 502 and b"reset" in body
    assert [r.body for r in origin.requests] == [b"once"]
    assert origin.connections == 1
    assert totals["in_use"] == 0


def test_get_reset_on_a_fresh_socket_is_not_retried() -> None:
    """Rule 5 retries only on a reused socket: a fresh one failing means the origin failed."""

    def script(conn: ScriptedConn) -> None:
        if conn.read_request() is not None:
            conn.reset()

    with (
        ScriptedOrigin(script) as origin,
        start_proxy(**NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        sock.sendall(_get(origin.url("/x")))
        status, _, _ = read_response(sock)
        _totals(proxy)
    assert status == 502
    assert origin.connections == 1 and len(origin.requests) == 1


def test_collector_closes_sockets_idle_past_server_conn_timeout() -> None:
    with (
        ScriptedOrigin(keep_alive_script(b"x")) as origin,
        start_proxy(ServerConnGCRun="100 ms", ServerConnTimeout="300 ms", **NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        sock.sendall(_get(origin.url("/a")))
        assert read_response(sock)[0] == 200
        assert _totals(proxy)["idle"] == 1
        conn = origin.conns[0]
        # The origin observes cproxy closing the idle socket: after ServerConnTimeout, and
        # within one collector interval of it.
        assert not conn.eof.wait(0.25)
        assert conn.eof.wait(5)
        totals = _totals(proxy)
    assert totals["expired"] == 1 and totals["idle"] == 0


def test_idle_socket_closed_by_the_origin_is_not_used_again() -> None:
    closed = threading.Event()

    def script(conn: ScriptedConn) -> None:
        # A keep-alive answer, then the origin closes the idle socket (no Connection: close).
        if conn.read_request() is not None:
            conn.reply(200, f"conn{conn.index}".encode())
            conn.sock.close()
            closed.set()

    with (
        ScriptedOrigin(script) as origin,
        start_proxy(**NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        f = sock.makefile("rb")
        sock.sendall(_get(origin.url("/1")))
        assert read_response(f)[2] == b"conn0"
        assert closed.wait(5)
        sock.sendall(_get(origin.url("/2")))
        status, _, body = read_response(f)
        totals = _totals(proxy)
    assert (status, body) == (200, b"conn1")
    assert totals["dropped_dead"] == 1
    assert [r.target for r in origin.requests] == ["/1", "/2"]  # nothing was lost or resent


def test_response_with_connection_close_is_not_pooled() -> None:
    def script(conn: ScriptedConn) -> None:
        if conn.read_request() is not None:
            conn.reply(200, b"bye", "Connection: close\r\n")
            conn.wait_eof()  # the origin leaves it to cproxy to close

    with (
        ScriptedOrigin(script) as origin,
        start_proxy(**NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        f = sock.makefile("rb")
        sock.sendall(_get(origin.url("/1")))
        status, headers, body = read_response(f)
        assert (status, body) == (200, b"bye")
        assert "connection" not in headers  # the origin's close is hop-by-hop
        assert origin.conns[0].eof.wait(5)
        assert _totals(proxy)["idle"] == 0
        sock.sendall(_get(origin.url("/2")))
        assert read_response(f)[2] == b"bye"
    assert origin.connections == 2


def test_extra_bytes_after_content_length_make_the_socket_unusable() -> None:
    def script(conn: ScriptedConn) -> None:
        while (req := conn.read_request()) is not None:
            if req.target == "/first":
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")
            else:
                conn.reply(200, b"fine")

    with (
        ScriptedOrigin(script) as origin,
        start_proxy(**NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        f = sock.makefile("rb")
        sock.sendall(_get(origin.url("/first")))
        assert read_response(f)[2] == b"ok"
        assert origin.conns[0].eof.wait(5)  # cproxy closed that socket
        sock.sendall(_get(origin.url("/second")))
        assert read_response(f)[2] == b"fine"
        totals = _totals(proxy)
    assert [r.conn_index for r in origin.requests] == [0, 1]
    assert totals["reused"] == 0


def test_bytes_arriving_on_an_idle_socket_make_it_unusable() -> None:
    """An origin that sends an unasked-for response while idle must not have it spliced
    into the next client's response."""
    pooled = threading.Event()
    sent_garbage = threading.Event()

    def script(conn: ScriptedConn) -> None:
        while (req := conn.read_request()) is not None:
            conn.reply(200, f"real {req.target}".encode())
            if conn.index == 0:
                pooled.wait(5)
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
                sent_garbage.set()

    with (
        ScriptedOrigin(script) as origin,
        start_proxy(**NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        f = sock.makefile("rb")
        sock.sendall(_get(origin.url("/1")))
        assert read_response(f)[2] == b"real /1"
        wait_for(lambda: _totals(proxy)["idle"] == 1, what="the socket to be pooled")
        pooled.set()
        assert sent_garbage.wait(5)
        # Wait until the forged bytes sit in cproxy's receive buffer for that socket.
        wait_for(
            lambda: (
                proxy.call(
                    lambda: [
                        c.peer_state() for o in proxy.runtime.pool._origins.values() for c in o.idle
                    ]
                )
                == ["garbage"]
            ),
            what="forged bytes to reach the idle socket",
        )
        sock.sendall(_get(origin.url("/2")))
        status, _, body = read_response(f)
        totals = _totals(proxy)
    assert (status, body) == (200, b"real /2")
    assert totals["dropped_dead"] == 1
    assert [r.conn_index for r in origin.requests] == [0, 1]
