"""Where a response goes: the `ClientSink` protocol, the client socket's, and a discard sink.

Everything that writes a response (the cache front, the exchange's relay, cproxy's own
answers, the fast lane) writes it through a `ClientSink`, so none of them knows about the
client connection. A background refresh writes to `DiscardSink`: nobody receives it, and
nothing that counts what clients received (stale_served, the access log) is touched.
"""

from __future__ import annotations

from typing import Protocol

from gevent import socket

from cproxy.geventshim import plain_raw_socket, send_all

# A body up to this size is joined to its head for one send(); a larger one goes with its
# head in one sendmsg(), not copied. Measured (bench/compare.py, issue #5): sendmsg() made
# 16 KiB hits no faster than joining, and 1 MiB hits 1.4x faster than two send()s.
JOIN_BODY_BYTES = 65536


class ClientGone(Exception):
    """The client closed its connection or stopped reading."""


class OutputTimeout(Exception):
    """OutputTimeout passed while sending a response to the client."""


class ClientSink(Protocol):
    """A response's destination. Raises `ClientGone` when the receiver went away."""

    @property
    def for_client(self) -> bool:
        """False for a sink nobody reads (a background refresh): counters of what clients
        received are not moved for it."""
        ...

    def send(self, data: bytes) -> None:
        """Send the next bytes of the response (its head, body parts, framing)."""
        ...

    def send_response(self, head: bytes, body: bytes) -> None:
        """Send a whole response whose body is in memory."""
        ...

    def interim(self, head: bytes) -> None:
        """Send an interim (1xx) response ahead of the final one."""
        ...


class SocketSink:
    """The client connection's socket (its timeout, ReadTimeout, bounds each send)."""

    __slots__ = ("raw", "sock")

    for_client = True

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.raw = plain_raw_socket(sock)

    def send(self, data: bytes) -> None:
        try:
            send_all(self.sock, data, self.raw)
        except (OSError, TimeoutError) as exc:
            raise ClientGone(str(exc)) from exc

    def send_response(self, head: bytes, body: bytes) -> None:
        """In one system call when the socket takes it all: joined when the body is small,
        by one sendmsg() when it is large on a plain socket (whatever that leaves goes as
        `send` sends); a large body on a TLS socket goes as two sends."""
        if len(body) <= JOIN_BODY_BYTES:
            self.send(head + body)
            return
        if self.raw is None:
            # Not a plain TCP socket (TLS: gevent's SSLSocket has no sendmsg): two sends.
            self.send(head)
            self.send(body)
            return
        sock = self.sock
        try:
            sent = sock.sendmsg([head, body])
            if sent < len(head):
                send_all(sock, head[sent:])
                sent = len(head)
            if sent - len(head) < len(body):
                send_all(sock, memoryview(body)[sent - len(head) :])
        except (OSError, TimeoutError) as exc:
            raise ClientGone(str(exc)) from exc

    def interim(self, head: bytes) -> None:
        self.send(head)


class DiscardSink:
    """A sink nobody reads: for exchanges cproxy makes for itself (background refresh)."""

    __slots__ = ()

    for_client = False

    def send(self, data: bytes) -> None:
        pass

    def send_response(self, head: bytes, body: bytes) -> None:
        pass

    def interim(self, head: bytes) -> None:
        pass
