"""TLS to origins (issue #11): the settings a pooled connection is keyed by, their contexts,
and the client handshake, with the standard ``ssl`` module through gevent (``gevent.ssl``,
so a handshake yields to other greenlets instead of blocking the process).

Certificates are verified against the system store unless ``ServerSSLCAFile`` names
another CA file; verification is off only for origins listed in ``ServerSSLNoVerify``
(test labs), never by a global switch. SNI is sent for host names. TLS sessions are
resumed: the pool keeps the latest session per origin and offers it on the next handshake
(sessions belong to one SSLContext, so contexts are made once per settings).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gevent

from cproxy.errors import OriginConnectTimeout, OriginTLSError

if TYPE_CHECKING:
    import ssl

    import gevent.socket as gsocket

# ``ssl`` (and gevent.ssl) are imported by the functions that make or read a TLS
# connection, not here: loading OpenSSL costs a process about 2 MiB of its memory, and a
# proxy whose origins are all plain HTTP never needs it (issue #21, tests/test_import_weight.py).


@dataclass(frozen=True)
class TLSSettings:
    """How a TLS connection to an origin is checked: part of the pool key, so sockets made
    under other settings are never handed out for these."""

    verify: bool = True
    ca_file: str = ""  # "" = the system store
    # The protocols offered in ALPN, preferred first: ("h2", "http/1.1") where HTTP/2 to
    # the origin is on (ServerHTTP2), () for none (the origin speaks HTTP/1.1).
    alpn: tuple[str, ...] = ()

    def label(self) -> str:
        """A suffix for the stats key when the settings are not the default."""
        if not self.verify:
            return " (unverified)"
        return f" (CA {self.ca_file})" if self.ca_file else ""


DEFAULT_TLS = TLSSettings()


@functools.lru_cache(maxsize=32)
def client_context(settings: TLSSettings) -> ssl.SSLContext:
    """The SSLContext for ``settings`` (one per settings: sessions are tied to it).

    Raises ``OSError``/``ssl.SSLError`` when the CA file cannot be read.
    """
    # gevent's SSLContext, so sockets it wraps are cooperative (its create_default_context
    # would give the stdlib's). PROTOCOL_TLS_CLIENT: certificate and host name checked,
    # TLS 1.2 at least, as create_default_context sets up.
    import ssl

    import gevent.ssl as gssl

    ctx = gssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if settings.ca_file:
        ctx.load_verify_locations(cafile=settings.ca_file)
    else:
        ctx.load_default_certs()
    if not settings.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if settings.alpn:
        ctx.set_alpn_protocols(list(settings.alpn))
    return ctx


# What a connection offers in ALPN when HTTP/2 to its origin is on: h2 first, HTTP/1.1
# for an origin that does not speak it (RFC 7301: the server picks).
ALPN_H2 = ("h2", "http/1.1")


def tls_policy(
    ca_file: str,
    unverified: frozenset[tuple[str, str, int]],
    h2_for: Callable[[tuple[str, str, int]], bool] | None = None,
) -> Callable[[tuple[str, str, int]], TLSSettings]:
    """``tls_for(key)`` for the pool: verification off only for the ``unverified`` origins
    (ServerSSLNoVerify), the CA file of ServerSSLCAFile (or the system store) for the rest;
    h2 offered in ALPN to the origins ``h2_for`` accepts (ServerHTTP2)."""
    settings = {
        (verify, h2): TLSSettings(
            verify=verify, ca_file=ca_file if verify else "", alpn=ALPN_H2 if h2 else ()
        )
        for verify in (True, False)
        for h2 in (True, False)
    }

    def tls_for(key: tuple[str, str, int]) -> TLSSettings:
        h2 = h2_for(key) if h2_for is not None else False
        return settings[key not in unverified, h2]

    return tls_for


def start_tls(
    sock: gsocket.socket,
    host: str,
    port: int,
    settings: TLSSettings,
    *,
    session: ssl.SSLSession | None,
    deadline: float,
) -> ssl.SSLSocket:
    """Wrap connected ``sock`` and do the client handshake by ``deadline`` (monotonic).

    Sends SNI for a host name (RFC 6066 forbids it for an address; the certificate is then
    checked against the address), offers ``session`` for resumption. On failure closes
    ``sock`` and raises ``OriginTLSError`` (the cause, e.g. the certificate did not
    verify) or ``OriginConnectTimeout``.
    """
    import ssl

    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        ctx = client_context(settings)
        tls = ctx.wrap_socket(
            sock,
            server_hostname=host,
            do_handshake_on_connect=False,
            session=session,
        )
    except (OSError, ValueError) as exc:
        sock.close()
        raise OriginTLSError(f"TLS to {where} cannot start: {exc}") from exc
    remaining = deadline - time.monotonic()
    timer = gevent.Timeout(max(remaining, 0.001))
    timer.start()
    try:
        tls.do_handshake()
    except gevent.Timeout as exc:
        tls.close()
        if exc is not timer:
            raise
        raise OriginConnectTimeout(f"TLS handshake with {where} timed out") from None
    except ssl.SSLCertVerificationError as exc:
        tls.close()
        reason = exc.verify_message or exc.reason or str(exc)
        raise OriginTLSError(f"the certificate of {where} did not verify: {reason}") from exc
    except (ssl.SSLError, OSError) as exc:
        tls.close()
        raise OriginTLSError(f"TLS handshake with {where} failed: {exc}") from exc
    except BaseException:
        tls.close()
        raise
    finally:
        timer.close()
    return tls


def tls_buffered(sock: object) -> bool:
    """True when a TLS socket holds decrypted bytes already: waiting for the socket to
    become readable would then wait for bytes that have arrived."""
    # Looked up on the class: on a plain gevent socket an instance lookup of a missing
    # name goes through its __getattr__ to the inner socket and raises AttributeError,
    # which cost several µs on every pooled miss's response head (py-spy, issue #12).
    pending = getattr(type(sock), "pending", None)
    return pending is not None and pending(sock) > 0


def read_idle_records(sock: ssl.SSLSocket) -> str:
    """Read, without waiting, what arrived on an idle TLS socket, and say what it was:
    ``"ok"`` when the records were for the TLS layer alone (TLS 1.3 session tickets, which
    an origin sends after the handshake, or a key update: nothing for the next request, and
    the socket no longer readable), ``"garbage"`` for application data nobody asked for
    (one byte of it is consumed: the socket is to be closed), ``"eof"`` when the origin
    closed (close_notify, or a FIN without it), ``"error"`` when the socket is reset, broken
    or closed. Safe to call from an event-loop callback: with timeout 0 nothing waits.

    The raw socket cannot tell these apart: every one of them makes it readable, and a
    peek sees ciphertext. The socket's timeout is restored.
    """
    import ssl  # loaded already: ``sock`` is a TLS socket

    try:
        timeout = sock.gettimeout()
    except OSError:
        return "error"
    sock.settimeout(0.0)
    try:
        data = sock.recv(1)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return "ok"  # whole records read, none of them application data
    except (OSError, ValueError):
        return "error"  # ssl.SSLError is an OSError; ValueError: closed or unwrapped
    finally:
        if sock.fileno() >= 0:
            sock.settimeout(timeout)
    return "garbage" if data else "eof"


def negotiated_protocol(sock: object) -> str:
    """The protocol ALPN chose on a TLS socket ("h2", "http/1.1"), or "" (none offered or
    accepted, or a plain socket)."""
    selected = getattr(sock, "selected_alpn_protocol", None)
    return (selected() or "") if selected is not None else ""


def tls_session(sock: object) -> ssl.SSLSession | None:
    """The TLS session of ``sock`` worth offering again, or None (plain socket, none yet)."""
    session = getattr(sock, "session", None)
    if session is None:
        return None
    import ssl  # loaded already: only a TLS socket has a session

    return session if isinstance(session, ssl.SSLSession) else None
