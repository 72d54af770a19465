"""The client connection's socket, plain TCP or TLS (an intercepted CONNECT, issue #19).

The handler reads requests and the sink writes responses through the socket as it is;
what differs between plain and TLS lives here, in one place, instead of through the
handler (docs/ARCHITECTURE.md, "HTTPS interception"):

- Readiness: a TLS socket may hold decrypted bytes already (`pending`), and waiting for
  the file descriptor would then wait for bytes that have arrived; its raw socket carries
  records, so a peek there sees ciphertext (a close_notify looks like input).
- Waking a waiter (the reaper's InputTimeout, eviction, shutdown) shuts the *raw* socket
  down: gevent's ``SSLSocket.shutdown`` drops the TLS object, and the 408 sent next would
  go out in cleartext inside the TLS stream.
- Closing: a TLS connection sends close_notify and closes; it does not linger (a lingering
  read would have to decrypt what it drops, and a TLS client that still sends after our
  close_notify gets nothing more from us either way).

The TLS socket class itself is in `cproxy.server.clienttls`, imported with the first
intercepted handshake: this module is imported by every proxy, and ``ssl`` costs a process
about 2 MiB it needs only for TLS (issue #21).
"""

from __future__ import annotations

from gevent import socket

from cproxy.geventshim import (
    plain_raw_socket,
    raw_socket,
    recv_ready,
    wait_readable_untimed,
)
from cproxy.server.lingering import linger_close


class ClientTransport:
    """One client socket and how to wait on, wake and close it."""

    __slots__ = ("raw", "sock", "tls")

    def __init__(self, sock: socket.socket, *, tls: bool = False) -> None:
        self.sock = sock
        self.tls = tls
        # The C-level socket for the fast first recv of a plain connection; None for TLS.
        self.raw = None if tls else plain_raw_socket(sock)

    def buffered(self) -> bool:
        """Decrypted bytes wait in the TLS layer (never for a plain socket)."""
        return self.tls and self.sock.pending() > 0  # type: ignore[attr-defined]

    def wait_readable(self) -> None:
        """Wait, with no timer of its own (see `wait_readable_untimed`), until a recv will
        not block for want of bytes: at once when the TLS layer holds some."""
        if self.tls and self.sock.pending() > 0:  # type: ignore[attr-defined]
            return
        wait_readable_untimed(self.sock)

    def recv_ready(self, size: int) -> bytes:
        """recv() after `wait_readable`."""
        return recv_ready(self.sock, size, self.raw)

    def has_input(self) -> bool:
        """Bytes from the client wait unread (a check that never blocks). For TLS, bytes
        decrypted or records not yet read count (a close_notify too: erring towards
        "busy" only spares a connection from eviction)."""
        if self.buffered():
            return True
        raw = raw_socket(self.sock)
        if raw is None:
            return False
        try:
            return bool(raw.recv(1, socket.MSG_PEEK))
        except OSError:  # BlockingIOError: nothing there
            return False

    def wake(self, how: int) -> None:
        """Shut the connection down under a blocked wait (``socket.SHUT_RD`` ends a wait
        for a request and still lets an answer go out; ``SHUT_RDWR`` ends everything). A
        TLS connection is shut for reading only, through the raw socket, so it keeps its
        TLS layer for that answer and for its close_notify; the waiter must not read
        from it then (OpenSSL would take the EOF for a truncation and send an alert)."""
        if self.tls:
            # The read side only: the close that follows still sends close_notify.
            target, how = raw_socket(self.sock), socket.SHUT_RD
        else:
            target = self.sock
        try:
            (target or self.sock).shutdown(how)
        except OSError:
            pass

    def close(self, *, linger: bool) -> None:
        """Close the connection: a plain one lingering when its answer may race the
        client's input (`linger_close`); a TLS one after close_notify, without waiting for
        the client's."""
        if not self.tls:
            if linger:
                linger_close(self.sock)
            else:
                self.sock.close()
            return
        try:
            # Non-blocking: the first SSL_shutdown writes close_notify; waiting for the
            # client's would only hold the connection open (RFC 8446 §6.1 allows closing).
            self.sock.settimeout(0.0)
            self.sock.unwrap()  # type: ignore[attr-defined]
        except (OSError, ValueError):  # ssl.SSLError is an OSError
            pass  # SSLWantReadError: ours went out, theirs is not awaited
        finally:
            self.sock.close()
