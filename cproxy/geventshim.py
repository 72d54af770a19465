"""The few gevent internals cproxy relies on, in one place.

Each one saves measurable time on the hot path (see docs/ARCHITECTURE.md, "The hot
path"), and none is gevent's public API: they have been stable since gevent 1.0, but a
gevent release could rename them. Everything else in cproxy goes through the functions
here, and tests/test_geventshim.py fails on a gevent that changed any of them, instead of
cproxy silently falling back to slower paths.

- ``socket._read_event``: the socket's read watcher, to wait for readability without a
  timer (`wait_readable_untimed`).
- ``socket._sock``: the non-blocking stdlib socket gevent wraps, for a peek that neither
  waits nor juggles timeouts (`raw_socket`).
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
