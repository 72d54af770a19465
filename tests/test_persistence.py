"""Persistent client connections: MaxPersistRequest, ProxyPersistence, HTTP/1.0, Connection:
close and pipelining, over real loopback sockets (RFC 9112 §9)."""

from __future__ import annotations

import socket

from tests.support import Origin, raw_connection, read_response, start_proxy


def _get(url: str, version: str = "1.1", extra: str = "") -> bytes:
    return f"GET {url} HTTP/{version}\r\nHost: x\r\n{extra}\r\n".encode()


def _closed(f) -> bool:  # type: ignore[no-untyped-def]
    """True when the proxy has closed the connection (EOF or reset) after the response."""
    try:
        return f.read(1) == b""
    except ConnectionResetError:
        return True


def test_max_persist_request_closes_after_the_last_allowed_request(origin: Origin) -> None:
    with start_proxy(MaxPersistRequest="3") as proxy, raw_connection(proxy.port) as sock:
        f = sock.makefile("rb")
        for i in range(3):
            sock.sendall(_get(origin.url(f"/n{i}")))
            status, headers, body = read_response(f)
            assert status == 200 and body == f"hello GET /n{i}".encode()
            if i < 2:
                assert "connection" not in headers
            else:
                assert headers["connection"] == "close"
        assert _closed(f)
    assert len(origin.requests) == 3


def test_proxy_persistence_off_closes_after_every_response(origin: Origin) -> None:
    with start_proxy(ProxyPersistence="off") as proxy:
        for i in range(3):
            with raw_connection(proxy.port) as sock:
                sock.sendall(_get(origin.url(f"/p{i}")))
                f = sock.makefile("rb")
                status, headers, body = read_response(f)
                assert status == 200 and body == f"hello GET /p{i}".encode()
                assert headers["connection"] == "close"
                assert _closed(f)


def test_http10_client_gets_its_response_then_a_close(origin: Origin) -> None:
    with start_proxy() as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(_get(origin.url("/old"), version="1.0"))
        f = sock.makefile("rb")
        status, headers, body = read_response(f)
        assert status == 200 and body == b"hello GET /old"
        assert headers["connection"] == "close"
        assert _closed(f)


def test_http10_keep_alive_request_is_still_closed(origin: Origin) -> None:
    """cproxy does not implement the HTTP/1.0 Keep-Alive extension: it closes (RFC 9112 §9.3)."""
    with start_proxy() as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(_get(origin.url("/ka"), version="1.0", extra="Connection: keep-alive\r\n"))
        f = sock.makefile("rb")
        status, headers, _ = read_response(f)
        assert status == 200 and headers["connection"] == "close"
        assert _closed(f)


def test_client_connection_close_is_honoured(origin: Origin) -> None:
    with start_proxy() as proxy, raw_connection(proxy.port) as sock:
        # A second request pipelined after the one that says close must not be served.
        sock.sendall(
            _get(origin.url("/bye"), extra="Connection: close\r\n") + _get(origin.url("/never"))
        )
        f = sock.makefile("rb")
        status, headers, body = read_response(f)
        assert status == 200 and body == b"hello GET /bye"
        assert headers["connection"] == "close"
        assert _closed(f)
    assert [r[1] for r in origin.requests] == ["/bye"]


def test_pipelined_requests_are_answered_in_order_on_one_connection(origin: Origin) -> None:
    with start_proxy() as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(b"".join(_get(origin.url(f"/pipe{i}")) for i in range(5)))
        f = sock.makefile("rb")
        bodies = []
        for _ in range(5):
            status, headers, body = read_response(f)
            assert status == 200 and "connection" not in headers
            bodies.append(body)
        # The connection is still open and usable after the pipeline.
        sock.sendall(_get(origin.url("/after")))
        assert read_response(f)[2] == b"hello GET /after"
    assert bodies == [f"hello GET /pipe{i}".encode() for i in range(5)]
    assert origin.connections == 1


def test_pipelined_requests_with_bodies_stay_in_order(origin: Origin) -> None:
    def post(i: int) -> bytes:
        body = f"body-{i}".encode()
        return (
            f"POST {origin.url(f'/post{i}')} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    with start_proxy() as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(b"".join(post(i) for i in range(5)))
        f = sock.makefile("rb")
        for i in range(5):
            assert read_response(f)[2] == f"hello POST /post{i}".encode()
    assert [(r[1], r[3]) for r in origin.requests] == [
        (f"/post{i}", f"body-{i}".encode()) for i in range(5)
    ]


def test_client_half_close_after_request_still_gets_the_response(origin: Origin) -> None:
    with start_proxy() as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(_get(origin.url("/half")))
        sock.shutdown(socket.SHUT_WR)
        f = sock.makefile("rb")
        status, _, body = read_response(f)
        assert status == 200 and body == b"hello GET /half"
        assert _closed(f)
