"""Clients that are still sending when cproxy answers, and request bodies (issue #10,
DESIGN.md §5 rules 2, 6 and 9; docs/ARCHITECTURE.md "The client side").

- An error answered while the client is still sending reaches it, followed by an
  orderly close (FIN), never a reset: cproxy closes the way nginx's lingering close does.
- An origin that answers an upload early (413) and closes: its answer reaches the client.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from tests.hostile import OriginConn, RecordingOrigin, parse_requests, parse_responses
from tests.support import WAIT_S, start_proxy, wait_for

MIB = 1 << 20


def send_quietly(sock: socket.socket, data: bytes) -> threading.Thread:
    """Send ``data`` from a thread, as a client still uploading does; errors end it."""

    def run() -> None:
        with contextlib.suppress(OSError):
            sock.sendall(data)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def read_to_end(sock: socket.socket, timeout_s: float = WAIT_S) -> tuple[bytes, str]:
    """Everything cproxy sends and how the connection ended: "eof" (an orderly close),
    "reset", or "timeout"."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return data, "timeout"
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data, "timeout"
        except ConnectionResetError:
            return data, "reset"
        if not chunk:
            return data, "eof"
        data += chunk


# (id, request bytes: the part cproxy refuses, then what the client goes on sending)
STILL_SENDING = [
    ("head-too-large-431", 431, "GET http://{o}/x HTTP/1.1\r\nHost: {o}\r\nX-Big: ", b"v" * MIB),
    ("request-line-too-long-414", 414, "GET http://{o}/", b"a" * MIB),
    (
        "declared-body-too-large-413",
        413,
        "POST http://{o}/x HTTP/1.1\r\nHost: {o}\r\nContent-Length: 1048576\r\n\r\n",
        b"b" * MIB,
    ),
    (
        "bad-chunk-size-400",
        400,
        "POST http://{o}/x HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"c" * MIB,
    ),
]


@pytest.mark.parametrize(
    ("status", "start", "rest"), [pytest.param(*c[1:], id=c[0]) for c in STILL_SENDING]
)
def test_an_error_reaches_a_client_still_sending_then_an_orderly_close(
    status: int, start: str, rest: bytes
) -> None:
    with RecordingOrigin() as origin, start_proxy(MaxRequestBody="1 K") as proxy:
        o = f"127.0.0.1:{origin.port}"
        for _ in range(3):
            with contextlib.closing(socket.create_connection(("127.0.0.1", proxy.port))) as s:
                sender = send_quietly(s, start.replace("{o}", o).encode() + rest)
                data, end = read_to_end(s)
                sender.join(WAIT_S)
            answers, _ = parse_responses(data)
            assert [a.status for a in answers] == [status], data[:200]
            assert answers[0].closes
            # Closed with a FIN after the answer: the client saw no reset.
            assert end == "eof", end


def test_an_origins_early_413_to_a_large_upload_reaches_the_client() -> None:
    """The origin reads the head, answers 413 and closes with the body unread (its
    kernel resets the connection): every try, the client gets the origin's 413."""

    def refuse(conn: OriginConn) -> None:
        if conn.read_head() is not None:
            conn.send(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n"
                b"Connection: close\r\n\r\ntoo big!"
            )
        conn.sock.close()

    with RecordingOrigin(refuse) as origin, start_proxy() as proxy:
        o = f"127.0.0.1:{origin.port}"
        body = b"u" * (8 * MIB)
        head = f"POST http://{o}/up HTTP/1.1\r\nHost: {o}\r\nContent-Length: {len(body)}\r\n\r\n"
        got = []
        for _ in range(9):
            with contextlib.closing(socket.create_connection(("127.0.0.1", proxy.port))) as s:
                sender = send_quietly(s, head.encode() + body)
                data, _end = read_to_end(s)
                sender.join(WAIT_S)
            answers, _ = parse_responses(data)
            got.append([(a.status, a.body) for a in answers])
        assert got == [[(413, b"too big!")]] * 9


def test_a_body_over_the_buffer_streams_and_an_origin_that_saw_part_of_a_bad_one_is_closed() -> (
    None
):
    """RequestBodyBuffer 1 K: 4 KiB of good chunks go on to the origin before a bad chunk
    size arrives; the client gets 400, the origin never a complete request, and cproxy
    closes that origin connection."""
    with RecordingOrigin() as origin, start_proxy(RequestBodyBuffer="1 K") as proxy:
        o = f"127.0.0.1:{origin.port}"
        head = f"POST http://{o}/x HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\n\r\n"
        good = b"400\r\n" + b"g" * 1024 + b"\r\n"
        with contextlib.closing(socket.create_connection(("127.0.0.1", proxy.port))) as s:
            s.sendall(head.encode() + good * 4)
            origin.wait_for_bytes(4096)
            s.sendall(b"zz\r\n")
            data, end = read_to_end(s)
        answers, _ = parse_responses(data)
        assert [a.status for a in answers] == [400] and end == "eof"
        [conn] = origin.conns
        assert parse_requests(bytes(conn.raw))[0] == []
        assert conn.wait_closed()


def test_a_body_trickling_below_the_minimum_rate_gets_408_and_reaches_no_origin() -> None:
    """RequestBodyTimeout 1 second, RequestBodyMinRate 100 bytes: a body sent at 20
    bytes a second (each byte well within ReadTimeout) is cut at about 1.2 s."""
    with (
        RecordingOrigin() as origin,
        start_proxy(RequestBodyTimeout="1 second", RequestBodyMinRate="100 bytes") as proxy,
    ):
        o = f"127.0.0.1:{origin.port}"
        head = f"POST http://{o}/x HTTP/1.1\r\nHost: {o}\r\nContent-Length: 1000\r\n\r\n"
        pace = threading.Event()
        with contextlib.closing(socket.create_connection(("127.0.0.1", proxy.port))) as s:
            s.sendall(head.encode())
            started = time.monotonic()
            s.setblocking(False)
            data = b""
            while time.monotonic() - started < WAIT_S:
                with contextlib.suppress(BlockingIOError):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                with contextlib.suppress(OSError):
                    s.send(b"x")
                pace.wait(0.05)  # the client's pace: 20 bytes a second
            elapsed = time.monotonic() - started
        answers, _ = parse_responses(data)
        assert [a.status for a in answers] == [408], data[:200]
        assert elapsed < WAIT_S / 2
        origin.sync()
        assert not any(origin.received())


def connect_from(source_ip: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(WAIT_S)
    s.bind((source_ip, 0))
    s.connect(("127.0.0.1", port))
    return s


def test_at_the_per_address_cap_the_longest_waiting_connection_makes_room() -> None:
    """MaxClientConnectionsPerAddress 3: a fourth connection from 127.0.0.2 closes the
    one that has waited longest for a request head; other addresses are not touched."""
    with RecordingOrigin() as origin, start_proxy(MaxClientConnectionsPerAddress="3") as proxy:
        other = connect_from("127.0.0.3", proxy.port)
        socks = [connect_from("127.0.0.2", proxy.port) for _ in range(3)]
        wait_for(lambda: len(proxy.runtime.connections) == 4, what="4 connections")
        socks.append(connect_from("127.0.0.2", proxy.port))
        data, end = read_to_end(socks[0])
        assert (data, end) == (b"", "eof")  # closed quietly: it had sent nothing
        # The others still serve requests, the newest one included.
        o = f"127.0.0.1:{origin.port}"
        for s in [*socks[1:], other]:
            s.sendall(
                f"GET http://{o}/x HTTP/1.1\r\nHost: {o}\r\nConnection: close\r\n\r\n".encode()
            )
            answers, _ = parse_responses(read_to_end(s)[0])
            assert [a.status for a in answers] == [200]
        for s in [*socks, other]:
            s.close()


def test_a_connection_being_served_is_never_cut_to_admit_another() -> None:
    """MaxClientConnectionsPerAddress 1: while 127.0.0.2's one connection is being served
    (its origin holds the answer), a second one from that address is refused with 503;
    the first gets its answer."""
    release = threading.Event()

    def held(conn: OriginConn) -> None:
        if conn.read_request() is not None:
            release.wait(WAIT_S)
            conn.reply(b"held")

    with RecordingOrigin(held) as origin, start_proxy(MaxClientConnectionsPerAddress="1") as proxy:
        o = f"127.0.0.1:{origin.port}"
        served = connect_from("127.0.0.2", proxy.port)
        served.sendall(f"GET http://{o}/h HTTP/1.1\r\nHost: {o}\r\n\r\n".encode())
        origin.wait_requests(1)
        with contextlib.closing(connect_from("127.0.0.2", proxy.port)) as late:
            answers, _ = parse_responses(read_to_end(late)[0])
        assert [a.status for a in answers] == [503]
        release.set()
        with contextlib.closing(served):
            served.settimeout(WAIT_S)
            answers, _ = parse_responses(served.recv(65536), eof=False)
        assert [(a.status, a.body) for a in answers] == [(200, b"held")]
