"""The TLS socket of an intercepted client connection (issue #19), apart from
`cproxy.server.transport` so that only a proxy that intercepts imports ``ssl`` for it
(issue #21: OpenSSL costs a process about 2 MiB of memory).
"""

from __future__ import annotations

import ssl
from typing import Any

import gevent.ssl as gssl

from cproxy.http.limits import IO_CHUNK_BYTES


class ClientTLSSocket(gssl.SSLSocket):
    """gevent's TLS socket for an intercepted client, with a look-ahead for the origin
    pool's watch on a request queued at MaxConnPerServer (`look_ahead`).

    That watch must tell a client that closed from one that sent more, and on a TLS
    connection only the TLS layer can: a close_notify and a pipelined request are both
    just records on the raw socket. Reading through the TLS layer takes the application
    data out of it, so what `look_ahead` read is kept here and handed out first by every
    read (``recv``, ``recv_into`` and ``read`` all come through `read`), and `pending`
    counts it, so a wait for input returns at once. Made by an SSLContext whose
    ``sslsocket_class`` is this class (the attribute ``ssl`` documents for that).
    """

    _early = b""  # read by look_ahead, not yet handed out (an instance attribute once set)

    def read(self, nbytes: int = 1024, buffer: Any = None) -> Any:
        early = self._early
        if not early:
            return super().read(nbytes, buffer)
        size = nbytes or len(early)
        taken, self._early = early[:size], early[size:]
        if buffer is None:
            return taken
        memoryview(buffer)[: len(taken)] = taken
        return len(taken)

    def pending(self) -> int:
        return len(self._early) + super().pending()

    def look_ahead(self) -> str:
        """Read what the client sent, without waiting: ``"nothing"`` when the records
        were for the TLS layer alone (or only part of one came), ``"input"`` when it sent
        bytes (kept for the next read), ``"eof"`` when it closed (close_notify, a FIN, a
        reset). Safe from an event-loop callback: with timeout 0 nothing waits."""
        try:
            timeout = self.gettimeout()
        except OSError:
            return "eof"
        self.settimeout(0.0)
        try:
            data = super().read(IO_CHUNK_BYTES)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return "nothing"
        except (OSError, ValueError):  # ssl.SSLError is an OSError; ValueError: closed
            return "eof"
        finally:
            if self.fileno() >= 0:
                self.settimeout(timeout)
        if not data:
            return "eof"
        self._early += data
        return "input"


__all__ = ["ClientTLSSocket"]
