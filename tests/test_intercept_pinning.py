"""Pinned clients (issue #19): the memory of pairs to splice (expiry with an injected clock,
the LRU bound) and the classifier, fed by real server-side handshake failures: clients that
do not trust the CA or check another name (MemoryBIO), a client that closes during the
handshake (loopback socket), and failures that are not about our certificate."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from cproxy.intercept.ca import CertificateAuthority, create_ca
from cproxy.intercept.leaves import LeafCache
from cproxy.intercept.pinning import (
    HandshakeFailure,
    PinnedSplices,
    classify_handshake_failure,
)
from tests.support import FakeClock
from tests.tlsmemory import client_hello, handshake


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return create_ca(tmp_path_factory.mktemp("pinning") / "ca")


@pytest.fixture(scope="module")
def leaves(ca: CertificateAuthority) -> LeafCache:
    return LeafCache(ca, 10, context_class=ssl.SSLContext)


# --- the memory ------------------------------------------------------------------------------


def test_a_pair_is_spliced_for_the_duration_then_forgotten() -> None:
    clock = FakeClock()
    pinned = PinnedSplices(3600, clock=clock)
    assert not pinned.is_pinned("10.0.0.1", "app.example")
    pinned.remember("10.0.0.1", "App.Example.")
    assert pinned.is_pinned("10.0.0.1", "app.example")
    # Per client and per host.
    assert not pinned.is_pinned("10.0.0.2", "app.example")
    assert not pinned.is_pinned("10.0.0.1", "other.example")
    clock.advance(3599)
    assert pinned.is_pinned("10.0.0.1", "app.example")
    clock.advance(1)
    assert not pinned.is_pinned("10.0.0.1", "app.example")
    assert len(pinned) == 0
    stats = pinned.stats()
    assert (stats.remembered, stats.hits) == (1, 2)


def test_remembering_again_extends() -> None:
    clock = FakeClock()
    pinned = PinnedSplices(100, clock=clock)
    pinned.remember("c", "h")
    clock.advance(90)
    pinned.remember("c", "h")
    clock.advance(90)
    assert pinned.is_pinned("c", "h")


def test_a_new_duration_applies_to_new_pairs() -> None:
    clock = FakeClock()
    pinned = PinnedSplices(100, clock=clock)
    pinned.remember("c", "old")
    pinned.set_duration(10)
    pinned.remember("c", "new")
    clock.advance(50)
    assert pinned.is_pinned("c", "old") and not pinned.is_pinned("c", "new")


def test_zero_duration_remembers_nothing() -> None:
    pinned = PinnedSplices(0, clock=FakeClock())
    pinned.remember("c", "h")
    assert not pinned.is_pinned("c", "h") and len(pinned) == 0


def test_memory_is_bounded_least_recently_used_first() -> None:
    clock = FakeClock()
    pinned = PinnedSplices(3600, max_entries=100, clock=clock)
    for i in range(10_000):
        pinned.remember(f"10.0.{i // 256}.{i % 256}", "app.example")
        assert len(pinned) <= 100
    assert pinned.stats().evictions == 9_900
    assert pinned.is_pinned("10.0.39.15", "app.example")  # the last one
    assert not pinned.is_pinned("10.0.0.0", "app.example")  # the first one


def test_forget() -> None:
    pinned = PinnedSplices(3600, clock=FakeClock())
    pinned.remember("c", "h")
    pinned.forget("c", "H")
    assert not pinned.is_pinned("c", "h")
    pinned.forget("c", "never")  # no error


# --- the classifier, from real handshakes -------------------------------------------------


def trusting(ca: CertificateAuthority) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=ca.cert_pem.decode())
    return ctx


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_a_client_that_does_not_trust_the_ca(
    leaves: LeafCache, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    client = trusting(create_ca(tmp_path / "other"))
    client.maximum_version = version
    hs = handshake(leaves.context_for("app.example"), client, "app.example")
    assert isinstance(hs.client_error, ssl.SSLCertVerificationError)
    assert hs.server_error is not None
    kind = classify_handshake_failure(hs.server_error)
    assert kind is HandshakeFailure.CERTIFICATE_REJECTED and kind.pinned


def test_a_client_checking_another_name(leaves: LeafCache, ca: CertificateAuthority) -> None:
    hs = handshake(leaves.context_for("app.example"), trusting(ca), "other.example")
    assert isinstance(hs.client_error, ssl.SSLCertVerificationError)
    assert hs.server_error is not None
    assert classify_handshake_failure(hs.server_error) is HandshakeFailure.CERTIFICATE_REJECTED


def test_a_close_during_the_handshake_in_memory(
    leaves: LeafCache, ca: CertificateAuthority
) -> None:
    hs = handshake(
        leaves.context_for("app.example"), trusting(ca), "app.example", close_after_hello=True
    )
    assert hs.server_error is not None
    assert classify_handshake_failure(hs.server_error) is HandshakeFailure.CLOSED


@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_close_during_the_handshake_on_a_socket(leaves: LeafCache, how: str) -> None:
    """A real client socket sends its ClientHello and goes away; the server's
    do_handshake fails, and that counts as a pinned client."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    failure: list[BaseException] = []
    done = threading.Event()

    def serve() -> None:
        listener.settimeout(20)
        conn, _ = listener.accept()
        conn.settimeout(20)
        tls = leaves.context_for("app.example").wrap_socket(
            conn, server_side=True, do_handshake_on_connect=False
        )
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            failure.append(exc)
        finally:
            tls.close()
            done.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
        client.sendall(client_hello(server_hostname="app.example"))
        if how == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
    assert done.wait(20)
    thread.join(5)
    listener.close()
    assert len(failure) == 1
    assert classify_handshake_failure(failure[0]) is HandshakeFailure.CLOSED


def test_no_shared_protocol_is_not_pinning(leaves: LeafCache, ca: CertificateAuthority) -> None:
    server = leaves.context_for("app.example")
    client = trusting(ca)
    client.set_ciphers("AES128-SHA")  # a TLS 1.2 cipher with no forward secrecy
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    hs = handshake(server, client, "app.example")
    assert hs.server_error is not None
    kind = classify_handshake_failure(hs.server_error)
    assert kind is HandshakeFailure.OTHER and not kind.pinned


def test_garbage_is_not_pinning(leaves: LeafCache) -> None:
    server = leaves.context_for("app.example").wrap_bio(
        incoming := ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True
    )
    incoming.write(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")
    with pytest.raises(ssl.SSLError) as info:
        server.do_handshake()
    assert classify_handshake_failure(info.value) is HandshakeFailure.OTHER


def test_other_exceptions() -> None:
    assert classify_handshake_failure(ConnectionResetError()) is HandshakeFailure.CLOSED
    assert classify_handshake_failure(BrokenPipeError()) is HandshakeFailure.CLOSED
    assert classify_handshake_failure(TimeoutError()) is HandshakeFailure.OTHER
    assert classify_handshake_failure(ValueError()) is HandshakeFailure.OTHER
