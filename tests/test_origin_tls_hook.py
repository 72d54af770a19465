"""The origin handshake's message watch (cproxy/origin/tls.py, `_HandshakeWatch`): a TLS 1.2
origin that asks for a client certificate and then refuses the handshake is told apart
from other failures, also among concurrent handshakes of one context, and the hook is
off again once no handshake is under way. Real TLS servers on loopback (Python's ssl in
threads), cproxy's `start_tls` under gevent.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import gevent.socket as gsocket
import pytest
import trustme

from cproxy.errors import OriginTLSError
from cproxy.origin import tls as origin_tls
from cproxy.origin.tls import OriginClientCertRequired, TLSSettings, client_context, start_tls
from tests.support import WAIT_S

pytestmark = pytest.mark.skipif(
    not origin_tls._hook_available(), reason="this Python's ssl has no message hook"
)


class Server:
    """A TLS server on 127.0.0.1 answering each connection's handshake, then one echo."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(WAIT_S)
        tls = self.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        with contextlib.suppress(OSError), tls:
            tls.do_handshake()
            tls.sendall(tls.recv(100))
            while tls.recv(100):
                pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(WAIT_S)


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, TLSSettings]:
    ca = trustme.CA()
    path = Path(tmp_path_factory.mktemp("hook")) / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, TLSSettings(ca_file=str(path))


def server_context(ca: trustme.CA, *, wants_cert: bool, tls12: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("origin.test").configure_cert(ctx)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if wants_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(ctx)
    return ctx


@contextlib.contextmanager
def serving(context: ssl.SSLContext) -> Iterator[Server]:
    server = Server(context)
    try:
        yield server
    finally:
        server.close()


def handshake(port: int, settings: TLSSettings) -> ssl.SSLSocket:
    sock = gsocket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    return start_tls(
        sock, "origin.test", port, settings, session=None, deadline=time.monotonic() + WAIT_S
    )


def hook_state(settings: TLSSettings) -> tuple[object, dict[int, object], dict[int, int]]:
    """The hook on the context (None: off), the watches and the per-context counts."""
    hook = origin_tls._C_HOOK.__get__(client_context(settings))
    return hook, dict(origin_tls._watches), dict(origin_tls._watching)


def test_the_hook_leaves_the_ssl_module_alone(trust: tuple[trustme.CA, TLSSettings]) -> None:
    """gevent's SSLContext property for the hook rebinds ``ssl.SSLContext`` to gevent's class
    for the whole process; cproxy sets the hook beneath it, so ``ssl`` stays as it was
    (urllib3's contexts recursed without end after the first origin handshake otherwise)."""
    ca, settings = trust
    before = ssl.SSLContext
    with serving(server_context(ca, wants_cert=False)) as server:
        handshake(server.port, settings).close()
    assert ssl.SSLContext is before
    ssl.create_default_context().minimum_version = ssl.TLSVersion.TLSv1_2


def test_a_refused_certificate_request_is_recognised_among_concurrent_handshakes(
    trust: tuple[trustme.CA, TLSSettings],
) -> None:
    ca, settings = trust
    with (
        serving(server_context(ca, wants_cert=True)) as strict,
        serving(server_context(ca, wants_cert=False)) as plain,
    ):
        # Interleaved on one context: each handshake's messages are its own.
        jobs = [
            gevent.spawn(handshake, port, settings)
            for _ in range(5)
            for port in (strict.port, plain.port)
        ]
        gevent.joinall(jobs, timeout=WAIT_S)
        for job, port in zip(jobs, [strict.port, plain.port] * 5, strict=True):
            assert job.ready()
            if port == strict.port:
                assert isinstance(job.exception, OriginClientCertRequired), job.exception
                assert "asked for a client certificate" in str(job.exception)
            else:
                assert job.exception is None, job.exception
                tls = job.value
                tls.sendall(b"ping")  # an established connection works as before
                assert tls.recv(4) == b"ping"
                tls.close()
        # No handshake under way: the hook is off and nothing is remembered.
        assert hook_state(settings) == (None, {}, {})


def test_a_tls_1_2_failure_before_any_certificate_request_is_a_plain_tls_error(
    trust: tuple[trustme.CA, TLSSettings],
) -> None:
    ca, settings = trust
    context = server_context(ca, wants_cert=True)
    context.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA")  # none cproxy offers
    with serving(context) as server, pytest.raises(OriginTLSError) as caught:
        handshake(server.port, settings)
    assert not isinstance(caught.value, OriginClientCertRequired)
    assert hook_state(settings) == (None, {}, {})


def test_an_optional_certificate_request_is_not_a_failure(
    trust: tuple[trustme.CA, TLSSettings],
) -> None:
    ca, settings = trust
    context = server_context(ca, wants_cert=False)
    context.verify_mode = ssl.CERT_OPTIONAL  # asks, takes none
    ca.configure_trust(context)
    with serving(context) as server:
        tls = handshake(server.port, settings)
        tls.sendall(b"ok")
        assert tls.recv(2) == b"ok"
        tls.close()


def test_without_the_hook_the_refusal_is_a_plain_tls_error(
    trust: tuple[trustme.CA, TLSSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, settings = trust
    monkeypatch.setattr(origin_tls, "_MSG_CALLBACK", False)
    with (
        serving(server_context(ca, wants_cert=True)) as server,
        pytest.raises(OriginTLSError) as caught,
    ):
        handshake(server.port, settings)
    assert not isinstance(caught.value, OriginClientCertRequired)
    assert "handshake failure" in str(caught.value)
