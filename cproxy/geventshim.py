"""The few gevent internals cproxy relies on, in one place.

Each one saves measurable time on the hot path (see docs/ARCHITECTURE.md, "The hot
path"), and none is gevent's public API: they have been stable since gevent 1.0, but a
gevent release could rename them. Everything else in cproxy goes through the functions
here, and tests/test_geventshim.py fails on a gevent that changed any of them, instead of
cproxy silently falling back to slower paths.

- ``socket._read_event``: the socket's read watcher, to wait for readability without a
  timer (`wait_readable_untimed`).
- ``socket._sock``: the non-blocking stdlib socket gevent wraps, for a peek that neither
  waits nor juggles timeouts (`raw_socket`), and for the first send or recv of a plain TCP
  socket (`plain_raw_socket`, `send_all`, `recv_ready`).
"""

from __future__ import annotations

import socket as stdlib_socket

from gevent import socket as gsocket


def wait_readable_untimed(sock: gsocket.socket) -> None:
    """Wait (cooperatively) until ``sock`` has bytes or EOF to read, with no timeout of its
    own whatever the socket's: the caller bounds the wait some other way (cproxy: the
    runtime's reaper shuts the socket down), so the socket keeps its timeout rather than
    having it set and reset around each wait (a gevent timer costs about 10 µs).

    gevent's recv() makes the system call first and waits only after EAGAIN; waiting first
    saves that wasted call and its exception when the bytes are not there yet. Raises
    OSError when the socket is shut down or closed under the wait. A socket without
    gevent's watcher returns at once, and the caller's recv() does the waiting.
    """
    event = getattr(sock, "_read_event", None)
    if event is not None:
        gsocket.wait(event)


def raw_socket(sock: gsocket.socket) -> stdlib_socket.SocketType | None:
    """The C-level socket a gevent socket wraps (non-blocking), or None."""
    raw = getattr(sock, "_sock", None)
    # SocketType is the C socket type that both the stdlib's and gevent's sockets extend.
    return raw if isinstance(raw, stdlib_socket.SocketType) else None


def plain_raw_socket(sock: gsocket.socket) -> stdlib_socket.SocketType | None:
    """`raw_socket` for a plain gevent TCP socket, None for anything else: a TLS socket's
    raw socket carries its records, which only the TLS layer may read or write."""
    return raw_socket(sock) if type(sock) is gsocket.socket else None


def send_all(
    sock: gsocket.socket, data: bytes | memoryview, raw: stdlib_socket.SocketType | None = None
) -> None:
    """Send all of ``data`` on ``sock``, waiting (bounded by the socket's timeout) only for
    what the first send() left. ``raw``: `plain_raw_socket` of ``sock``, whose send() goes
    straight to the system call: gevent's Python send() around it costs about 0.2 µs, twice
    per miss and once per hit. gevent's sendall() costs more still per call (it asks the
    socket for its buffer size first), so it only carries what the first send left."""
    if raw is not None:
        try:
            sent = raw.send(data)
        except BlockingIOError:
            sent = 0
    else:
        sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def recv_ready(
    sock: gsocket.socket, size: int, raw: stdlib_socket.SocketType | None = None
) -> bytes:
    """recv() on a socket a wait just found readable: with ``raw`` (`plain_raw_socket`),
    straight to the system call, and through gevent's recv() (which waits) only when the
    bytes were not there after all."""
    if raw is not None:
        try:
            return raw.recv(size)
        except BlockingIOError:
            pass
    return sock.recv(size)
