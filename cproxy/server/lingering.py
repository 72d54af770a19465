"""Closing a client connection after an error without losing the error (nginx's
lingering close).

When cproxy answers while the client is still sending (a head over the limit, a body it
refuses, an origin's early answer to an upload), closing at once with unread input
makes the kernel send a reset: a client still writing then sees "connection reset"
instead of the status, and some stacks discard the response they had received. So the
connection stops being read as requests, says it is done (FIN after the response), and
reads and drops what still arrives, for a short bounded time and number of bytes, until
the client closes; then it closes.
"""

from __future__ import annotations

import time

from gevent import socket

from cproxy.http.limits import IO_CHUNK_BYTES

# Longest a lingering close waits for the client to stop sending, in all. nginx waits up
# to 30 s (lingering_time); a client that reads its response closes long before, and
# one that keeps sending is not worth holding a connection for longer than this.
LINGER_TOTAL_S = 2.0

# Longest wait for each further byte (nginx: lingering_timeout 5 s): a client that has
# gone quiet has read its answer or will not.
LINGER_IDLE_S = 1.0

# Most bytes read and dropped: past it the rest of an upload is cut (reset). 8 MiB goes
# by in milliseconds on a LAN and bounds what a hostile client can make us read.
LINGER_MAX_BYTES = 8 << 20


def linger_close(sock: socket.socket) -> int:
    """Half-close ``sock`` after the response already sent, drain it within the bounds
    above, then close it. Returns the bytes drained (for tests and logs)."""
    drained = 0
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_TOTAL_S
        while drained < LINGER_MAX_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(min(remaining, LINGER_IDLE_S))
            data = sock.recv(IO_CHUNK_BYTES)
            if not data:
                break
            drained += len(data)
    except OSError:
        # Reset, timed out, or already shut down: nothing more to wait for.
        pass
    finally:
        sock.close()
    return drained
