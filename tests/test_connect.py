"""CONNECT tunnels over real loopback sockets: TLS through the proxy, policy, data flow,
half-close, the idle timeout and the MaxActiveThreads slot a tunnel holds (issue #2)."""

from __future__ import annotations

import array
import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.support import WAIT_S, Origin, raw_connection, read_response, start_proxy
from tests.tls import EchoServer, TestCA, TLSOrigin


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer(tail=b"--the origin's last words--") as e:
        yield e


def read_head(sock: socket.socket) -> tuple[int, bytes, bytes]:
    """Read a response head byte-exactly; returns (status, head, bytes read past it)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(4096)
        if not data:
            raise ConnectionError(f"closed before the end of the head: {buf!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, rest


def open_tunnel(sock: socket.socket, authority: str) -> tuple[int, bytes, bytes]:
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    return read_head(sock)


def recv_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return out
        out += data


def test_requests_over_https_through_connect(ca: TestCA, tls_origin: TLSOrigin) -> None:
    with start_proxy(ConnectPorts=str(tls_origin.port)) as proxy:
        r = requests.get(
            tls_origin.url("/secure?x=1", host="localhost"),
            proxies={"https": proxy.url},
            verify=str(ca.ca_pem),
            timeout=10,
        )
        assert r.status_code == 200
        assert r.text == "hello GET /secure?x=1"
        # The tunnel is opaque: no Via from cproxy inside it.
        assert "Via" not in r.headers
    assert tls_origin.handshakes == 1
    method, path, headers, _ = tls_origin.requests[0]
    assert (method, path) == ("GET", "/secure?x=1")
    assert "via" not in {k.lower() for k in headers}


def test_connect_to_a_denied_port_is_refused_without_contacting_it(echo: EchoServer) -> None:
    # Default ConnectPorts is 443 only.
    with start_proxy() as proxy, raw_connection(proxy.port) as sock:
        status, head, rest = open_tunnel(sock, f"127.0.0.1:{echo.port}")
        assert status == 403
        assert b"connection: close" in head.lower()
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        assert len(rest + recv_all(sock)) == length  # then the proxy closes
    assert echo.accepted == 0


def test_connect_without_a_port_is_a_bad_request(echo: EchoServer) -> None:
    with start_proxy(ConnectPorts=str(echo.port)) as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(b"CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, headers, _ = read_response(sock)
    assert status == 400
    assert headers["connection"] == "close"
    assert echo.accepted == 0


def test_tunnel_carries_many_kib_both_ways(echo: EchoServer) -> None:
    payload = os.urandom(512 * 1024)
    with start_proxy(ConnectPorts=str(echo.port)) as proxy, raw_connection(proxy.port) as sock:
        status, _, rest = open_tunnel(sock, f"127.0.0.1:{echo.port}")
        assert (status, rest) == (200, b"")
        errors: list[BaseException] = []

        def send() -> None:
            try:
                sock.sendall(payload)
            except BaseException as exc:
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        got = b""
        while len(got) < len(payload):
            data = sock.recv(65536)
            assert data, f"tunnel closed after {len(got)} bytes"
            got += data
        sender.join(10)
        assert not errors
        assert got == payload
    assert echo.received == len(payload)


def test_bytes_sent_right_after_connect_reach_the_origin(echo: EchoServer) -> None:
    # A client may pipeline its first tunnel bytes behind the CONNECT head.
    with start_proxy(ConnectPorts=str(echo.port)) as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(
            f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\nHost: x\r\n\r\nearly bytes".encode()
        )
        status, _, rest = read_head(sock)
        assert status == 200
        while len(rest) < len(b"early bytes"):
            rest += sock.recv(100)
        assert rest == b"early bytes"


def test_half_close_from_the_client_still_delivers_the_origins_remaining_data(
    echo: EchoServer,
) -> None:
    with start_proxy(ConnectPorts=str(echo.port)) as proxy, raw_connection(proxy.port) as sock:
        status, _, _ = open_tunnel(sock, f"127.0.0.1:{echo.port}")
        assert status == 200
        sock.sendall(b"x" * 70000)
        sock.shutdown(socket.SHUT_WR)
        # The echo server sees EOF only if cproxy passed our half-close on; it then sends
        # its tail and closes, and all of it must still reach us.
        assert recv_all(sock) == b"x" * 70000 + echo.tail
    # The echo thread closes its socket and then sets the event: our EOF can come first.
    assert echo.closed.wait(WAIT_S)


def test_idle_tunnel_is_closed_after_read_timeout(echo: EchoServer) -> None:
    with (
        start_proxy(ConnectPorts=str(echo.port), ReadTimeout="300 ms") as proxy,
        raw_connection(proxy.port) as sock,
    ):
        status, _, _ = open_tunnel(sock, f"127.0.0.1:{echo.port}")
        assert status == 200
        sock.sendall(b"ping")
        assert sock.recv(10) == b"ping"
        idle_from = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(10) == b""  # EOF, not a socket.timeout
        idle_s = time.monotonic() - idle_from
    assert 0.25 <= idle_s < 3.0
    assert echo.closed.wait(5), "cproxy did not close its origin side of the tunnel"


def test_active_tunnel_is_not_closed_by_read_timeout(echo: EchoServer) -> None:
    # Traffic in one direction keeps the tunnel alive though each pump waits ReadTimeout.
    with (
        start_proxy(ConnectPorts=str(echo.port), ReadTimeout="200 ms") as proxy,
        raw_connection(proxy.port) as sock,
    ):
        status, _, _ = open_tunnel(sock, f"127.0.0.1:{echo.port}")
        assert status == 200
        deadline = time.monotonic() + 0.8  # four ReadTimeouts of steady traffic
        while time.monotonic() < deadline:
            sock.sendall(b"tick")
            assert sock.recv(4) == b"tick"
        sock.sendall(b"tock")
        assert sock.recv(4) == b"tock"


def test_a_tunnel_holds_one_max_active_threads_slot(echo: EchoServer, origin: Origin) -> None:
    with (
        start_proxy(ConnectPorts=str(echo.port), MaxActiveThreads="1") as proxy,
        raw_connection(proxy.port) as tunnel,
        raw_connection(proxy.port) as second,
    ):
        status, _, _ = open_tunnel(tunnel, f"127.0.0.1:{echo.port}")
        assert status == 200
        second.sendall(f"GET {origin.url('/queued')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        # Held in the listen backlog, not refused: nothing comes back while the tunnel is open.
        second.settimeout(0.3)
        with pytest.raises(TimeoutError):
            second.recv(1)
        assert origin.requests == []
        tunnel.sendall(b"still here")
        assert tunnel.recv(100) == b"still here"
        tunnel.close()
        second.settimeout(10)
        status, _, body = read_response(second)
    assert (status, body) == (200, b"hello GET /queued")


def test_connect_to_a_closed_port_is_a_bad_gateway() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with start_proxy(ConnectPorts=str(port)) as proxy, raw_connection(proxy.port) as sock:
        status, headers, _ = read_response_after_connect(sock, f"127.0.0.1:{port}")
    assert status == 502
    assert headers["connection"] == "close"


def read_response_after_connect(
    sock: socket.socket, authority: str
) -> tuple[int, dict[str, str], bytes]:
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    return read_response(sock)


def test_a_client_that_stops_reading_never_gets_a_stream_with_a_gap() -> None:
    # The origin streams 32 MB of numbered words (more than the kernel buffers on the way
    # hold); the client keeps sending (so the tunnel is not idle) but reads nothing for five
    # ReadTimeouts. cproxy may end the tunnel, but what the client receives must be an exact
    # prefix of what the origin sent: a send that timed out part-way must not be skipped over.
    words = array.array("I", range(8 << 20))
    if sys.byteorder == "little":
        words.byteswap()
    pattern = words.tobytes()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    done = threading.Event()

    def origin() -> None:
        conn, _ = listener.accept()
        with conn:

            def sink() -> None:
                with contextlib.suppress(OSError):
                    while conn.recv(65536):
                        pass

            threading.Thread(target=sink, daemon=True).start()
            with contextlib.suppress(OSError):
                conn.sendall(pattern)
                conn.shutdown(socket.SHUT_WR)
            done.wait(10)

    server = threading.Thread(target=origin, daemon=True)
    server.start()
    got = b""
    try:
        with (
            start_proxy(ConnectPorts=str(port), ReadTimeout="200 ms") as proxy,
            raw_connection(proxy.port) as sock,
        ):
            status, _, got = open_tunnel(sock, f"127.0.0.1:{port}")
            assert status == 200
            pace = threading.Event()  # never set: only paces the loop
            stop_at = time.monotonic() + 1.0
            with contextlib.suppress(OSError):  # cproxy may end the tunnel meanwhile
                while time.monotonic() < stop_at:
                    sock.sendall(b"k")
                    pace.wait(0.01)
            with contextlib.suppress(ConnectionResetError):
                while data := sock.recv(65536):
                    got += data
    finally:
        done.set()
        listener.close()
        server.join(10)
    assert len(got) > 0, "nothing came through the tunnel"
    # (Compared outside the assert: pytest would otherwise render 32 MB of bytes.)
    exact_prefix = pattern.startswith(got)
    assert exact_prefix, f"the {len(got)} bytes received are not what the origin sent"
