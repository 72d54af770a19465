"""TLS to origins (issue #11): the settings a pooled connection is keyed by, their contexts,
and the client handshake, with the standard ``ssl`` module through gevent (``gevent.ssl``,
so a handshake yields to other greenlets instead of blocking the process).

Certificates are verified against the system store unless ``ServerSSLCAFile`` names
another CA file; verification is off only for origins listed in ``ServerSSLNoVerify``
(test labs), never by a global switch. SNI is sent for host names. TLS sessions are
resumed: the pool keeps the latest session per origin and offers it on the next handshake
(sessions belong to one SSLContext, so contexts are made once per settings).

An origin that asks for a client certificate (cproxy has none to give) is told apart from
other handshake failures (`OriginClientCertRequired`): TLS 1.3 has an alert for it, read
from the exception's OpenSSL reason by the server side; TLS 1.2 has none (the origin
sends the generic handshake_failure, as for no shared cipher), so the handshake's
messages are watched for the origin's CertificateRequest (`_HandshakeWatch`, see there).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import gevent

from cproxy.errors import OriginConnectTimeout, OriginTLSError

if TYPE_CHECKING:
    import ssl

    import gevent.socket as gsocket

# ``ssl`` (and gevent.ssl) are imported by the functions that make or read a TLS
# connection, not here: loading OpenSSL costs a process about 2 MiB of its memory, and a
# proxy whose origins are all plain HTTP never needs it (issue #21, tests/test_import_weight.py).


class OriginClientCertRequired(OriginTLSError):
    """The origin asked for a client certificate during the handshake (a CertificateRequest)
    and then ended the handshake with an alert: cproxy has no certificate to give."""


@dataclass(frozen=True)
class ParentHop:
    """A parent proxy (ParentProxy) that TLS connections to an origin are made through: a
    ``CONNECT host:port`` to it, then the handshake with the origin inside its tunnel."""

    host: str
    port: int
    # The parent's own Proxy-Authorization value (ParentProxyCredentials), or None.
    authorization: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TLSSettings:
    """How a TLS connection to an origin is made and checked: part of the pool key, so
    sockets made under other settings are never handed out for these."""

    verify: bool = True
    ca_file: str = ""  # "" = the system store
    # The protocols offered in ALPN, preferred first: ("h2", "http/1.1") where HTTP/2 to
    # the origin is on (ServerHTTP2), () for none (the origin speaks HTTP/1.1).
    alpn: tuple[str, ...] = ()
    # The parent proxy the connection is tunnelled through, or None (direct). Part of the
    # key, so a tunnel through one parent is never used for a request routed to another,
    # nor a direct socket for a request that must go through a parent; the origin's
    # authority is the other part of the key, so a tunnel is never reused for another
    # origin. It does not change the SSLContext (`client_context` ignores it).
    via: ParentHop | None = None

    def label(self) -> str:
        """A suffix for the stats key when the settings are not the default."""
        if not self.verify:
            checked = " (unverified)"
        else:
            checked = f" (CA {self.ca_file})" if self.ca_file else ""
        return checked + (f" via {self.via.address}" if self.via is not None else "")


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


# OpenSSL's message callback (SSL_CTX_set_msg_callback), as CPython exposes it on an
# SSLContext since 3.8: ``_msg_callback``, a debugging hook called with every TLS message
# (and record header) a connection of that context reads or writes. Set here through the
# attribute of the C type under ``ssl.SSLContext`` (``_ssl._SSLContext``), which takes the
# callable as is and passes it the wire's numbers (RFC 8446 §4 and §6), for two reasons:
# gevent's SSLContext overrides the property with a setter that leaves ``ssl.SSLContext``
# rebound to gevent's class for the whole process (as monkey-patching would; urllib3's
# contexts then recurse without end: seen in this test suite), and the ``ssl`` module's
# own wrapper turns three numbers into enums on every call (1.7 us each, most of the
# hook's cost per handshake, bench/tls_msg_callback.py).
# Looked up with ``ssl`` at the first origin handshake (`_hook_available`), not at import.
_C_HOOK: Any = None
_MSG_CALLBACK: bool | None = None  # None: not looked up yet; False: this Python has none
_HANDSHAKE = 22
_ALERT = 21
_CERTIFICATE_REQUEST = 13
# The alerts a server ends a handshake with when it wanted a certificate and got none:
# handshake_failure (OpenSSL, HAProxy), bad_certificate (Go, Java), unsupported_certificate,
# certificate_unknown, unknown_ca, access_denied, certificate_required (TLS 1.3's own).
_REFUSAL_ALERTS = frozenset({40, 42, 43, 46, 48, 49, 116})


class _HandshakeWatch:
    """What an origin's handshake showed: whether the origin sent a CertificateRequest,
    and the last alert it sent (None: none).

    The hook is set on a context only while at least one of its handshakes is under way
    (`_watch` / `_unwatch`: a count per context), so an established connection pays for
    it only while another connection of its context shakes hands (a Python call per
    record, measured in bench/tls_msg_callback.py). OpenSSL copies the hook into each
    connection when it is made, and CPython looks up the context's callable at each call,
    so every origin connection, made while its own handshake is counted, can be watched
    and costs a C-level check, not a Python call, once the count is back to 0."""

    __slots__ = ("alert", "certificate_request")

    def __init__(self) -> None:
        self.certificate_request = False
        self.alert: int | None = None

    @property
    def client_cert_refused(self) -> bool:
        """The origin asked for a certificate, then ended the handshake with an alert that
        refuses one (a close without an alert, or another alert, is not taken for it)."""
        return self.certificate_request and self.alert in _REFUSAL_ALERTS


# The watches of handshakes under way, by the file descriptor of their socket (open
# throughout; the hook is handed gevent's inner socket object, not the SSLSocket, and
# both answer fileno()), and the handshakes under way per context (by id(): a context
# stays alive while one of its sockets does).
_watches: dict[int, _HandshakeWatch] = {}
_watching: dict[int, int] = {}


def _observe(
    conn: object, direction: str, version: object, content_type: int, msg_type: int, data: bytes
) -> None:
    """The context's hook. Never raises: an exception here would surface from the
    connection's next TLS call."""
    if direction != "read":
        return
    try:
        watch = _watches.get(conn.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return
    if watch is None:
        return
    if content_type == _HANDSHAKE and msg_type == _CERTIFICATE_REQUEST:
        watch.certificate_request = True
    elif content_type == _ALERT:
        watch.alert = int(msg_type)


def _hook_available() -> bool:
    """Whether this Python's ssl has the message hook (`_C_HOOK` set when it has)."""
    global _C_HOOK, _MSG_CALLBACK
    if _MSG_CALLBACK is None:
        import ssl

        context_type = getattr(getattr(ssl, "_ssl", None), "_SSLContext", None)
        hook = vars(context_type).get("_msg_callback") if context_type is not None else None
        _C_HOOK = hook
        _MSG_CALLBACK = hook is not None and hasattr(hook, "__set__")
    return _MSG_CALLBACK


def _watch(ctx: ssl.SSLContext) -> None:
    """A handshake of ``ctx`` starts: the hook is on (before the connection is made)."""
    if not _hook_available():
        return
    key = id(ctx)
    count = _watching.get(key, 0)
    if count == 0:
        _C_HOOK.__set__(ctx, _observe)
    _watching[key] = count + 1


def _unwatch(ctx: ssl.SSLContext) -> None:
    """A handshake of ``ctx`` ended; the last one turns the hook off."""
    if not _hook_available():
        return
    key = id(ctx)
    count = _watching.get(key, 0) - 1
    if count > 0:
        _watching[key] = count
        return
    _watching.pop(key, None)
    _C_HOOK.__set__(ctx, None)


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
    verify; `OriginClientCertRequired` when the origin asked for a client certificate
    and then refused the handshake) or ``OriginConnectTimeout``.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        # One context whatever the route (a session resumes only on its own context).
        ctx = client_context(replace(settings, via=None) if settings.via else settings)
    except (OSError, ValueError) as exc:
        sock.close()
        raise OriginTLSError(f"TLS to {where} cannot start: {exc}") from exc
    _watch(ctx)
    try:
        return _handshake(ctx, sock, host, where, session, deadline)
    finally:
        _unwatch(ctx)


def _handshake(
    ctx: ssl.SSLContext,
    sock: gsocket.socket,
    host: str,
    where: str,
    session: ssl.SSLSession | None,
    deadline: float,
) -> ssl.SSLSocket:
    import ssl  # loaded already: ``ctx`` is an SSLContext

    try:
        tls = ctx.wrap_socket(
            sock,
            server_hostname=host,
            do_handshake_on_connect=False,
            session=session,
        )
    except (OSError, ValueError) as exc:
        sock.close()
        raise OriginTLSError(f"TLS to {where} cannot start: {exc}") from exc
    fd = tls.fileno()
    watch = _watches[fd] = _HandshakeWatch()
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
        if watch.client_cert_refused:
            raise OriginClientCertRequired(
                f"{where} asked for a client certificate, which cproxy does not have "
                f"(TLS handshake failed: {exc})"
            ) from exc
        raise OriginTLSError(f"TLS handshake with {where} failed: {exc}") from exc
    except BaseException:
        tls.close()
        raise
    finally:
        timer.close()
        _watches.pop(fd, None)
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
