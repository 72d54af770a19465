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

from cproxy.geventshim import raw_socket, wait_readable_untimed


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
