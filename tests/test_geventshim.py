"""The gevent internals cproxy relies on are still there (`cproxy.geventshim`).

The shim falls back quietly (slower) when a socket lacks an internal, so these tests check
the internals themselves on the installed gevent: a release that renamed one fails here,
not in a benchmark weeks later.
"""

from __future__ import annotations

import socket as stdlib_socket

import gevent
import gevent.event
from gevent import socket as gsocket
from gevent import ssl as gssl

from cproxy.geventshim import (
    plain_raw_socket,
    raw_socket,
    recv_ready,
    send_all,
    wait_readable_untimed,
)


def pair() -> tuple[gsocket.socket, gsocket.socket]:
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = gsocket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    listener.close()
    return client, server


def test_gevent_sockets_still_have_the_internals_the_shim_uses() -> None:
    client, server = pair()
    try:
        assert hasattr(client, "_read_event"), "gevent renamed socket._read_event"
        assert client._read_event is not None
        raw = raw_socket(client)
        assert raw is not None, "gevent renamed socket._sock"
        assert raw.fileno() == client.fileno()
        assert raw.gettimeout() == 0.0, "the wrapped socket is no longer non-blocking"
    finally:
        client.close()
        server.close()


def test_wait_readable_untimed_waits_for_bytes_and_ignores_the_socket_timeout() -> None:
    client, server = pair()
    try:
        client.settimeout(0.01)  # far shorter than the wait below: it must not apply
        woke = gevent.event.Event()

        def waiter() -> None:
            wait_readable_untimed(client)
            woke.set()

        g = gevent.spawn(waiter)
        assert not woke.wait(0.2)  # nothing sent yet: still waiting past the timeout
        server.sendall(b"x")
        assert woke.wait(5)
        g.join(5)
        assert client.recv(1) == b"x"
    finally:
        client.close()
        server.close()


def test_raw_socket_peeks_without_waiting() -> None:
    client, server = pair()
    try:
        raw = raw_socket(client)
        assert raw is not None
        try:
            raw.recv(1, stdlib_socket.MSG_PEEK)
            raise AssertionError("a peek at an empty socket returned")
        except BlockingIOError:
            pass
        server.close()
        gevent.socket.wait_read(client.fileno(), timeout=5)
        assert raw.recv(1, stdlib_socket.MSG_PEEK) == b""  # EOF seen by the peek
    finally:
        client.close()


def test_plain_raw_socket_is_only_for_plain_tcp_sockets() -> None:
    client, server = pair()
    try:
        assert plain_raw_socket(client) is raw_socket(client)
        # A TLS socket's raw socket carries its records: never written to directly.
        ctx = gssl.create_default_context()
        tls = ctx.wrap_socket(
            gsocket.socket(), server_hostname="origin.test", do_handshake_on_connect=False
        )
        try:
            assert plain_raw_socket(tls) is None
        finally:
            tls.close()
    finally:
        client.close()
        server.close()


def test_send_all_sends_what_the_first_send_left_waiting_for_the_reader() -> None:
    client, server = pair()
    try:
        client.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 4096)
        data = bytes(range(256)) * 16384  # 4 MiB: far more than one send() takes
        received = bytearray()

        def reader() -> None:
            while len(received) < len(data):
                chunk = server.recv(65536)
                if not chunk:
                    return
                received.extend(chunk)

        g = gevent.spawn(reader)
        send_all(client, data, plain_raw_socket(client))
        g.join(10)
        assert bytes(received) == data
    finally:
        client.close()
        server.close()


def test_recv_ready_waits_through_gevent_when_the_bytes_are_not_there() -> None:
    client, server = pair()
    try:
        client.settimeout(5)
        later = gevent.spawn_later(0.05, server.sendall, b"late")
        # No wait before it found the socket readable: the raw recv finds nothing and
        # gevent's recv waits for the bytes.
        assert recv_ready(client, 100, plain_raw_socket(client)) == b"late"
        later.join(5)
        server.sendall(b"now")
        wait_readable_untimed(client)
        assert recv_ready(client, 100, plain_raw_socket(client)) == b"now"
    finally:
        client.close()
        server.close()
