"""Leaf certificates and their cache (issue #19): real TLS handshakes (loopback sockets with
gevent, as the server will run them, and MemoryBIO) by Python clients that trust only the
CA; the certificates' fields; the LRU bound; renewal with an injected clock; one key."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import gevent
import gevent.socket as gsocket
import gevent.ssl as gssl
import gevent.subprocess
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from cproxy.intercept.ca import CertificateAuthority, create_ca
from cproxy.intercept.leaves import (
    LEAF_VALIDITY_S,
    LeafCache,
    NameRefused,
    leaf_key,
    leaf_key_generations,
    parse_leaf_name,
)
from tests.support import FakeClock
from tests.tlsmemory import handshake

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return create_ca(tmp_path_factory.mktemp("interception") / "ca")


def trusting(
    ca: CertificateAuthority, cls: type[ssl.SSLContext] = ssl.SSLContext
) -> ssl.SSLContext:
    """A client context that trusts only ``ca`` (no system store), hostname checked."""
    ctx = cls(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=ca.cert_pem.decode())
    return ctx


def test_gevent_client_over_loopback_verifies_a_dns_leaf(ca: CertificateAuthority) -> None:
    """The default context (gevent's) in a greenlet server on 127.0.0.1, as the proxy will
    use it; the client trusts only the CA and checks the name."""
    cache = LeafCache(ca, 10)
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    got: dict[str, object] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        ctx = cache.context_for("www.example.test")
        assert isinstance(ctx, gssl.SSLContext)
        tls = ctx.wrap_socket(conn, server_side=True)
        got["server_alpn"] = tls.selected_alpn_protocol()
        tls.sendall(tls.recv(100).upper())
        tls.close()

    server = gevent.spawn(serve)
    client_ctx = trusting(ca, gssl.SSLContext)
    client_ctx.set_alpn_protocols(["h2", "http/1.1"])
    with gevent.Timeout(20):
        raw = gsocket.create_connection(("127.0.0.1", port))
        with client_ctx.wrap_socket(raw, server_hostname="www.example.test") as tls:
            tls.sendall(b"ping")
            assert tls.recv(100) == b"PING"
            assert tls.selected_alpn_protocol() == "http/1.1"
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            peer = tls.getpeercert()
        server.get()
    listener.close()
    assert peer["subjectAltName"] == (("DNS", "www.example.test"),)
    assert got["server_alpn"] == "http/1.1"


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "[2001:db8::5]"])
def test_an_ip_address_gets_an_ip_san_that_verifies(ca: CertificateAuthority, address: str) -> None:
    cache = LeafCache(ca, 10, context_class=ssl.SSLContext)
    hs = handshake(cache.context_for(address), trusting(ca), address.strip("[]"))
    assert hs.client_error is None and hs.server_error is None
    cert = cache.certificate_for(address)
    assert cert is not None
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(address.strip("[]"))]
    assert san.get_values_for_type(x509.DNSName) == []


def test_the_leaf_does_not_verify_for_another_name(ca: CertificateAuthority) -> None:
    cache = LeafCache(ca, 10, context_class=ssl.SSLContext)
    hs = handshake(cache.context_for("a.example.test"), trusting(ca), "b.example.test")
    assert isinstance(hs.client_error, ssl.SSLCertVerificationError)


def test_a_client_not_trusting_the_ca_refuses(ca: CertificateAuthority, tmp_path: Path) -> None:
    other = create_ca(tmp_path / "other")
    cache = LeafCache(ca, 10, context_class=ssl.SSLContext)
    hs = handshake(cache.context_for("a.example.test"), trusting(other), "a.example.test")
    assert isinstance(hs.client_error, ssl.SSLCertVerificationError)


def test_leaf_fields(ca: CertificateAuthority) -> None:
    clock = FakeClock()
    cache = LeafCache(ca, 10, clock, context_class=ssl.SSLContext)
    cache.context_for("Www.Example.TEST.")
    cert = cache.certificate_for("www.example.test")
    assert cert is not None
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.DNSName("www.example.test")]  # exactly the name, canonical
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca.subject_key_identifier.digest
    assert cert.issuer == ca.cert.subject
    cert.verify_directly_issued_by(ca.cert)
    now = dt.datetime.fromtimestamp(clock.now, dt.UTC)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime <= dt.timedelta(days=47) + dt.timedelta(hours=1)
    assert cert.not_valid_after_utc - now <= dt.timedelta(seconds=LEAF_VALIDITY_S)
    assert dt.timedelta(minutes=30) <= now - cert.not_valid_before_utc <= dt.timedelta(hours=2)
    assert cert.public_key() == leaf_key().public_key()


def test_serials_are_random_and_wide(ca: CertificateAuthority) -> None:
    cache = LeafCache(ca, 100, context_class=ssl.SSLContext)
    serials = set()
    for i in range(40):
        cache.context_for(f"h{i}.example.test")
        cert = cache.certificate_for(f"h{i}.example.test")
        assert cert is not None
        serials.add(cert.serial_number)
    assert len(serials) == 40
    assert all(0 < s < 2**128 for s in serials)
    # 40 draws of 128 bits: the largest has its top bits set with near certainty.
    assert max(serials).bit_length() > 120


def test_the_chain_sent_includes_the_ca(ca: CertificateAuthority, tmp_path: Path) -> None:
    """openssl s_client shows what the server sent: leaf and CA."""
    cache = LeafCache(ca, 10)
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        tls = cache.context_for("chain.example.test").wrap_socket(conn, server_side=True)
        tls.recv(1)  # until the client closes
        tls.close()

    server = gevent.spawn(serve)
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    proc = gevent.subprocess.Popen(
        [
            "openssl", "s_client", "-connect", f"127.0.0.1:{port}",
            "-servername", "chain.example.test", "-showcerts",
            "-CAfile", str(tmp_path / "ca.pem"), "-verify_return_error",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    with gevent.Timeout(30):
        out, _ = proc.communicate()
        server.join()
    listener.close()
    assert proc.returncode == 0, out
    assert out.count(b"-----BEGIN CERTIFICATE-----") == 2
    assert b"Verify return code: 0 (ok)" in out


def test_idna_names_become_a_labels(ca: CertificateAuthority) -> None:
    assert parse_leaf_name("bücher.example").text == "xn--bcher-kva.example"
    cache = LeafCache(ca, 10, context_class=ssl.SSLContext)
    hs = handshake(cache.context_for("bücher.example"), trusting(ca), "xn--bcher-kva.example")
    assert hs.client_error is None and hs.server_error is None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "*.example.com",
        "a b.example",
        "a..b",
        "-a.example",
        "a-.example",
        "exa/mple",
        "a" * 64 + ".example",
        ".".join(["abcdefghij"] * 24),  # 263 characters
        "host:443",
        "[not-an-ip]",
        "\x00.example",
    ],
)
def test_invalid_names_are_refused(ca: CertificateAuthority, bad: str) -> None:
    cache = LeafCache(ca, 10, context_class=ssl.SSLContext)
    with pytest.raises(NameRefused):
        cache.context_for(bad)
    assert cache.stats().generated == 0
    assert isinstance(NameRefused("x"), ValueError)


def test_hits_return_the_same_context(ca: CertificateAuthority) -> None:
    cache = LeafCache(ca, 10, context_class=ssl.SSLContext)
    first = cache.context_for("a.example.test")
    assert cache.context_for("A.example.test.") is first
    stats = cache.stats()
    assert (stats.generated, stats.hits, stats.entries) == (1, 1, 1)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_context_settings(ca: CertificateAuthority) -> None:
    ctx = LeafCache(ca, 10, context_class=ssl.SSLContext).context_for("a.example.test")
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    # A client that offers only TLS 1.1 gets no handshake.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    hs = handshake(ctx, old, "a.example.test")
    assert hs.server_error is not None or hs.client_error is not None
    assert hs.client.version() is None


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_memory_files_leave_no_file_and_no_descriptor(ca: CertificateAuthority) -> None:
    cache = LeafCache(ca, 100, context_class=ssl.SSLContext)
    cache.context_for("warm.example.test")
    before = open_fds()
    for i in range(50):
        cache.context_for(f"m{i}.example.test")
    assert open_fds() == before
    assert cache._tmpdir is None  # the key never went to a file system


@pytest.mark.parametrize("memfd", [True, False], ids=["memfd", "files"])
def test_both_ways_of_loading_give_a_verified_handshake(
    ca: CertificateAuthority, memfd: bool
) -> None:
    cache = LeafCache(ca, 10, context_class=ssl.SSLContext, memfd=memfd)
    for name in ("load.example.test", "127.0.0.2"):
        hs = handshake(cache.context_for(name), trusting(ca), name)
        assert hs.client_error is None and hs.server_error is None
        assert hs.client.getpeercert() is not None
    cache.close()


def test_temporary_files_are_deleted_and_private(ca: CertificateAuthority) -> None:
    cache = LeafCache(ca, 10, context_class=ssl.SSLContext, memfd=False)
    cache.context_for("a.example.test")
    directory = cache._tmpdir
    assert directory is not None
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert os.listdir(directory) == []
    cache.close()
    assert not os.path.exists(directory)
    # A closed cache makes a new directory when it needs one.
    cache.context_for("b.example.test")
    assert cache._tmpdir is not None and os.listdir(cache._tmpdir) == []
    cache.close()


@pytest.mark.timeout(600)
def test_ten_thousand_names_stay_within_max_entries(ca: CertificateAuthority) -> None:
    cache = LeafCache(ca, 100, context_class=ssl.SSLContext)
    fds = open_fds()
    for i in range(10_000):
        cache.context_for(f"host{i}.example.test")
        assert len(cache) <= 100
    stats = cache.stats()
    assert (stats.generated, stats.evictions, stats.entries) == (10_000, 9_900, 100)
    assert open_fds() == fds
    # The most recent names are the ones kept; the first ones were dropped.
    assert cache.certificate_for("host9999.example.test") is not None
    assert cache.certificate_for("host0.example.test") is None
    assert leaf_key_generations() == 1


def test_least_recently_used_goes_first(ca: CertificateAuthority) -> None:
    cache = LeafCache(ca, 2, context_class=ssl.SSLContext)
    a = cache.context_for("a.test")
    cache.context_for("b.test")
    assert cache.context_for("a.test") is a  # a is now the most recent
    cache.context_for("c.test")  # evicts b
    assert cache.context_for("a.test") is a
    stats = cache.stats()
    assert stats.evictions == 1 and stats.generated == 3
    cache.context_for("b.test")
    assert cache.stats().generated == 4


def test_renewed_before_expiry(ca: CertificateAuthority) -> None:
    clock = FakeClock()
    cache = LeafCache(ca, 10, clock, context_class=ssl.SSLContext)
    first = cache.context_for("a.example.test")
    old = cache.certificate_for("a.example.test")
    assert old is not None
    end = old.not_valid_after_utc.timestamp()
    clock.now = end - 4 * 86_400  # 4 days left: still served
    assert cache.context_for("a.example.test") is first
    clock.now = end - 2 * 86_400  # 2 days left: made again
    second = cache.context_for("a.example.test")
    assert second is not first
    new = cache.certificate_for("a.example.test")
    assert new is not None and new.not_valid_after_utc > old.not_valid_after_utc
    assert new.serial_number != old.serial_number
    stats = cache.stats()
    assert (stats.generated, stats.renewed, stats.hits) == (2, 1, 1)
    # The renewed leaf is valid at the (fake) present, signed by the CA.
    assert new.not_valid_before_utc.timestamp() < clock.now < new.not_valid_after_utc.timestamp()
    new.verify_directly_issued_by(ca.cert)


def test_leaves_never_outlive_the_ca(ca: CertificateAuthority) -> None:
    clock = FakeClock()
    clock.now = ca.not_after.timestamp() - 5 * 86_400
    cache = LeafCache(ca, 10, clock, context_class=ssl.SSLContext)
    cache.context_for("a.example.test")
    cert = cache.certificate_for("a.example.test")
    assert cert is not None and cert.not_valid_after_utc <= ca.not_after
    # Within the renewal window, yet no better leaf can be made: not signed again.
    first = cache.context_for("a.example.test")
    clock.advance(3 * 86_400)
    assert cache.context_for("a.example.test") is first
    assert cache.stats().generated == 1


def test_one_key_generation_per_process(tmp_path: Path) -> None:
    """A fresh process: no key before the first leaf, one key for every host after."""
    script = f"""
import ssl
from cproxy.intercept.ca import create_ca
from cproxy.intercept import leaves
ca = create_ca({str(tmp_path / "ca")!r})
cache = leaves.LeafCache(ca, 10, context_class=ssl.SSLContext)
print(leaves.leaf_key_generations())
keys = set()
for name in ("a.test", "b.test", "127.0.0.1", "c.test"):
    cache.context_for(name)
    keys.add(cache.certificate_for(name).public_key().public_numbers().x)
other = leaves.LeafCache(ca, 10, context_class=ssl.SSLContext)
other.context_for("d.test")
keys.add(other.certificate_for("d.test").public_key().public_numbers().x)
print(leaves.leaf_key_generations(), len(keys))
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout.split()
    assert out == ["0", "1", "1"]


def test_bad_settings_are_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError):
        LeafCache(ca, 0)
    with pytest.raises(ValueError):
        LeafCache(ca, 10, validity_s=48 * 86_400)
    with pytest.raises(ValueError):
        LeafCache(ca, 10, validity_s=86_400, renew_before_s=2 * 86_400)
