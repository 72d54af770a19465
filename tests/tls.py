"""TLS helpers for tests: a trustme certificate authority, an HTTPS origin and a TCP echo peer.

Everything listens on 127.0.0.1, port 0. The HTTPS origin reuses ``tests.support``'s
recording origin (routes, request log, connection count) with TLS added per connection,
so a test can check what arrived through a CONNECT tunnel.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.support import Origin


class TestCA:
    """A throw-away CA and a server certificate for 127.0.0.1 and localhost."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_pem = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        return ctx

    def spki_hash(self) -> str:
        """base64(sha256(SubjectPublicKeyInfo)) of the server certificate, as Chromium's
        ``--ignore-certificate-errors-spki-list`` wants it."""
        cert = x509.load_pem_x509_certificate(self.cert.cert_chain_pems[0].bytes())
        spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class TLSOrigin(Origin):
    """``tests.support.Origin`` speaking HTTPS; the handshake runs in the handler thread."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self.context = context
        self.handshakes = 0

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with self.lock:
            self.handshakes += 1
        try:
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"


class EchoServer:
    """Echoes every byte back; on the client's EOF sends ``tail`` and then closes.

    ``accepted`` counts connections; ``closed`` is set when a connection has ended.
    """

    def __init__(self, tail: bytes = b"") -> None:
        self.tail = tail
        self.accepted = 0
        self.received = 0
        self.closed = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                self.received += len(data)
                conn.sendall(data)
            if self.tail:
                conn.sendall(self.tail)
        except OSError:
            pass
        finally:
            conn.close()
            self.closed.set()

    def __enter__(self) -> EchoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
