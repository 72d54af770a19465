"""Helpers for the HTTPS interception tests (issue #19): cproxy's CA, a TLS origin with a
certificate from another test CA that cproxy trusts (ServerSSLCAFile), and a client that
CONNECTs through cproxy and trusts only cproxy's CA.

Every name resolves to 127.0.0.1 inside cproxy (`localhost_resolver`): no DNS, and the
names still reach SNI and the certificates.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trustme

from cproxy.intercept.ca import CertificateAuthority, create_ca
from tests.support import WAIT_S, ProxyThread, read_response, test_config
from tests.tls import TLSOrigin

ORIGIN_NAMES = ("a.test", "b.test", "splice.test", "127.0.0.1", "localhost")


def localhost_resolver(host: str, port: int) -> list[tuple[Any, ...]]:
    """Every name is 127.0.0.1 (no DNS)."""
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


class Lab:
    """cproxy's interception CA and a test CA for origins, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca: CertificateAuthority = create_ca(directory / "cproxy-ca")
        self.origin_ca = trustme.CA()
        self.origin_ca_pem = directory / "origin-ca.pem"
        self.origin_ca.cert_pem.write_to_path(str(self.origin_ca_pem))

    def origin_context(
        self, *names: str, ca: trustme.CA | None = None, **kw: Any
    ) -> ssl.SSLContext:
        """A server context with a certificate for ``names`` (default: ORIGIN_NAMES)."""
        cert = (ca or self.origin_ca).issue_cert(*(names or ORIGIN_NAMES), **kw)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        return ctx

    def expired_context(self) -> ssl.SSLContext:
        past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        return self.origin_context(not_before=past, not_after=past + dt.timedelta(days=30))

    def self_signed_context(self) -> ssl.SSLContext:
        """Signed by a CA cproxy does not trust."""
        return self.origin_context(ca=trustme.CA())

    def client_context(self) -> ssl.SSLContext:
        """A client trusting cproxy's CA only."""
        ctx = ssl.create_default_context(cafile=str(self.ca.cert_path))
        return ctx

    def directives(self, *ports: int, **more: str) -> dict[str, str]:
        return {
            "SSLInterception": "on",
            "SSLCACertFile": str(self.ca.cert_path),
            "SSLCAKeyFile": str(self.ca.key_path),
            "ServerSSLCAFile": str(self.origin_ca_pem),
            "ConnectPorts": " ".join(str(p) for p in (443, *ports)),
            **more,
        }

    def proxy(self, *ports: int, **more: str) -> ProxyThread:
        """cproxy intercepting, CONNECT allowed to ``ports`` (and 443)."""
        return ProxyThread(test_config(**self.directives(*ports, **more)))


def cacheable(h: object) -> None:
    """An origin route: 1 KiB that any cache may keep for ten minutes."""
    h.reply(  # type: ignore[attr-defined]
        200,
        b"x" * 1024,
        {"Cache-Control": "max-age=600", "Content-Type": "application/octet-stream"},
    )


@contextlib.contextmanager
def running(proxy: ProxyThread) -> Iterator[ProxyThread]:
    with proxy:
        proxy.call(lambda: setattr(proxy.runtime.pool, "resolve", localhost_resolver))
        yield proxy


@contextlib.contextmanager
def tls_origin(context: ssl.SSLContext) -> Iterator[TLSOrigin]:
    origin = TLSOrigin(context)
    with origin:
        yield origin


def connect(proxy: ProxyThread, host: str, port: int, timeout_s: float = WAIT_S) -> socket.socket:
    """A TCP connection to cproxy that sent CONNECT host:port and read the 200."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout_s)
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(1)
        if not data:
            sock.close()
            raise ConnectionError(f"cproxy closed after CONNECT: {head!r}")
        head += data
    status = int(head.split()[1])
    if status != 200:
        sock.close()
        raise ConnectionError(f"CONNECT answered {status}")
    return sock


def tunnel(
    proxy: ProxyThread,
    host: str,
    port: int,
    context: ssl.SSLContext,
    sni: str | None = None,
) -> ssl.SSLSocket:
    """CONNECT, then the TLS handshake with ``context`` (SNI and name checked: ``sni``)."""
    sock = connect(proxy, host, port)
    try:
        return context.wrap_socket(sock, server_hostname=sni or host)
    except BaseException:
        sock.close()
        raise


def get(
    tls: ssl.SSLSocket, path: str, host: str, *fields: str, reader: Any = None
) -> tuple[int, dict[str, str], bytes]:
    """One GET on an open TLS tunnel (keep-alive); ``reader``: a makefile to reuse."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *fields]
    tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    return read_response(reader if reader is not None else tls.makefile("rb"))


def issuer(tls: ssl.SSLSocket) -> str:
    """The issuer of the certificate ``tls`` was shown, as text."""
    cert: Any = tls.getpeercert()
    return repr(cert["issuer"])
