"""MaxRequestBody: request bodies over the limit get 413 and never reach an origin whole."""

from __future__ import annotations

from tests.scripted import ScriptedConn, ScriptedOrigin, keep_alive_script
from tests.support import raw_connection, read_response, start_proxy, wait_for


def _post_head(url: str, framing: str) -> bytes:
    host = url.split("/")[2]
    return f"POST {url} HTTP/1.1\r\nHost: {host}\r\n{framing}\r\n".encode()


def test_declared_length_over_the_limit_gets_413_and_reaches_no_origin() -> None:
    with ScriptedOrigin(keep_alive_script()) as origin, start_proxy(MaxRequestBody="1 K") as p:
        with raw_connection(p.port) as sock:
            sock.sendall(_post_head(origin.url("/up"), "Content-Length: 1025\r\n"))
            status, headers, _ = read_response(sock)
            assert (status, headers["connection"]) == (413, "close")
            assert sock.recv(1) == b""  # nothing more is read from this connection
        assert origin.connections == 0


def test_a_body_within_the_limit_passes() -> None:
    with ScriptedOrigin(keep_alive_script()) as origin, start_proxy(MaxRequestBody="1 K") as p:
        with raw_connection(p.port) as sock:
            sock.sendall(_post_head(origin.url("/up"), "Content-Length: 1024\r\n") + b"x" * 1024)
            assert read_response(sock)[0] == 200
        assert [len(r.body) for r in origin.wait_requests(1)] == [1024]


def test_chunked_body_growing_past_the_limit_is_cut_off_with_413() -> None:
    closed = []

    def script(conn: ScriptedConn) -> None:
        # Read whatever arrives; the proxy must close before a complete request does.
        if conn.read_request() is None:
            closed.append(conn.index)

    # A body past RequestBodyBuffer streams: the origin sees part of it, then a close.
    # (Within the buffer the origin is never contacted: tests/test_hostile_requests.py.)
    with (
        ScriptedOrigin(script) as origin,
        start_proxy(MaxRequestBody="1 K", RequestBodyBuffer="256 bytes") as p,
    ):
        with raw_connection(p.port) as sock:
            chunk = b"200\r\n" + b"y" * 512 + b"\r\n"
            sock.sendall(_post_head(origin.url("/up"), "Transfer-Encoding: chunked\r\n"))
            sock.sendall(chunk)  # past RequestBodyBuffer: it goes on to the origin
            wait_for(lambda: origin.conns, what="the origin to be contacted")
            sock.sendall(chunk * 2)  # 1.5 KiB of body in all, no last chunk
            status, headers, _ = read_response(sock)
            assert (status, headers["connection"]) == (413, "close")
        wait_for(lambda: closed == [0], what="the origin connection to be closed")
        assert origin.requests == []


def test_no_limit_by_default() -> None:
    with ScriptedOrigin(keep_alive_script()) as origin, start_proxy() as p:
        with raw_connection(p.port) as sock:
            body = b"z" * 300_000
            head = _post_head(origin.url("/up"), f"Content-Length: {len(body)}\r\n")
            sock.sendall(head + body)
            assert read_response(sock)[0] == 200
        assert [len(r.body) for r in origin.wait_requests(1)] == [len(body)]
