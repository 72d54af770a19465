"""The interception CA (issue #19): files and modes, extensions, and every refusal naming
its file. Real files in tmp_path; certificates read back with ``cryptography``."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cproxy.directives import load_config
from cproxy.errors import ConfigError, CproxyError
from cproxy.intercept.ca import CAError, ca_files, ca_from_config, create_ca, load_ca


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "ca"


def test_files_and_modes_even_with_a_permissive_umask(ca_dir: Path) -> None:
    old = os.umask(0)
    try:
        ca = create_ca(ca_dir)
    finally:
        os.umask(old)
    files = ca_files(ca_dir)
    assert mode(ca_dir) == 0o700
    assert mode(files.key) == 0o600
    assert Path(ca.cert_path) == files.cert and Path(ca.key_path) == files.key
    # The client copies hold the certificate only, PEM and DER of the same certificate.
    pem = files.cert.read_bytes()
    assert b"PRIVATE KEY" not in pem and b"PRIVATE KEY" not in files.cert_der.read_bytes()
    assert x509.load_der_x509_certificate(files.cert_der.read_bytes()) == ca.cert
    assert x509.load_pem_x509_certificate(pem) == ca.cert
    assert ca.cert_der == files.cert_der.read_bytes()
    assert sorted(p.name for p in ca_dir.iterdir()) == sorted(
        p.name for p in (files.key, files.cert, files.cert_der)
    )


def test_key_is_ec_p256_and_matches(ca_dir: Path) -> None:
    ca = create_ca(ca_dir)
    key = serialization.load_pem_private_key(ca_files(ca_dir).key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert key.public_key() == ca.cert.public_key()


def test_ca_extensions(ca_dir: Path) -> None:
    cert = create_ca(ca_dir).cert
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert cert.issuer == cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "cproxy"
    # Self-signed with its own key.
    cert.verify_directly_issued_by(cert)
    now = dt.datetime.now(dt.UTC)
    assert cert.not_valid_before_utc < now < cert.not_valid_after_utc


def test_two_cas_are_told_apart(tmp_path: Path) -> None:
    a, b = create_ca(tmp_path / "a"), create_ca(tmp_path / "b")
    assert a.subject != b.subject
    assert a.fingerprint != b.fingerprint


def test_fingerprint_is_sha256_of_the_der(ca_dir: Path) -> None:
    ca = create_ca(ca_dir)
    digest = hashlib.sha256(ca.cert_der).hexdigest().upper()
    assert ca.fingerprint == ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def test_refuses_to_replace_an_existing_ca_unless_forced(ca_dir: Path) -> None:
    first = create_ca(ca_dir)
    with pytest.raises(CAError) as info:
        create_ca(ca_dir)
    assert info.value.path in (str(ca_files(ca_dir).key), str(ca_files(ca_dir).cert))
    assert load_ca(first.cert_path, first.key_path).fingerprint == first.fingerprint
    second = create_ca(ca_dir, force=True)
    assert second.fingerprint != first.fingerprint
    assert load_ca(second.cert_path, second.key_path).fingerprint == second.fingerprint
    assert mode(ca_files(ca_dir).key) == 0o600


def test_refuses_a_directory_open_to_others(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(CAError) as info:
        create_ca(shared)
    assert info.value.path == str(shared)
    assert list(shared.iterdir()) == []


def test_an_existing_private_directory_is_used(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    ca = create_ca(private)
    assert Path(ca.key_path).parent == private


# --- refusals at load ----------------------------------------------------------------------


def test_group_readable_key_is_refused_naming_the_file(ca_dir: Path) -> None:
    ca = create_ca(ca_dir)
    for bad_mode in (0o640, 0o604, 0o620):
        os.chmod(ca.key_path, bad_mode)
        with pytest.raises(CAError) as info:
            load_ca(ca.cert_path, ca.key_path)
        assert info.value.path == ca.key_path and info.value.role == "key"
        assert str(info.value).startswith(ca.key_path + ": ")
        assert f"{bad_mode:04o}" in str(info.value)
    os.chmod(ca.key_path, 0o400)
    assert load_ca(ca.cert_path, ca.key_path).fingerprint == ca.fingerprint


def _self_signed(
    tmp_path: Path, *, ca: bool | None, key_cert_sign: bool | None
) -> tuple[Path, Path]:
    """A certificate and its key (mode 0600) with the given CA flags (None: extension
    absent)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not a CA")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=10))
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    if key_cert_sign is not None:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, key_cert_sign, False, False, False),
            True,
        )
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.mark.parametrize(
    ("ca", "key_cert_sign"),
    [(False, True), (None, True), (True, False), (True, None)],
    ids=["ca-false", "no-basic-constraints", "no-keycertsign", "no-key-usage"],
)
def test_a_certificate_that_is_not_a_ca_is_refused(
    tmp_path: Path, ca: bool | None, key_cert_sign: bool | None
) -> None:
    cert_path, key_path = _self_signed(tmp_path, ca=ca, key_cert_sign=key_cert_sign)
    with pytest.raises(CAError) as info:
        load_ca(cert_path, key_path)
    assert info.value.path == str(cert_path) and info.value.role == "certificate"
    assert "not a CA" in str(info.value)


def test_a_key_of_another_ca_is_refused_naming_the_key(tmp_path: Path) -> None:
    a, b = create_ca(tmp_path / "a"), create_ca(tmp_path / "b")
    with pytest.raises(CAError) as info:
        load_ca(a.cert_path, b.key_path)
    assert info.value.path == b.key_path
    assert a.cert_path in str(info.value)


def test_missing_unparsable_and_encrypted_files_are_refused(tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "ca")
    with pytest.raises(CAError) as info:
        load_ca(tmp_path / "nope.pem", ca.key_path)
    assert info.value.path == str(tmp_path / "nope.pem")
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(CAError) as info:
        load_ca(junk, ca.key_path)
    assert info.value.path == str(junk)
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(
        ca.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    encrypted.chmod(0o600)
    with pytest.raises(CAError) as info:
        load_ca(ca.cert_path, encrypted)
    assert info.value.path == str(encrypted)
    assert isinstance(info.value, CproxyError)


def test_a_ca_outside_its_validity_is_refused(ca_dir: Path) -> None:
    ca = create_ca(ca_dir)
    after = ca.not_after.timestamp() + 1
    with pytest.raises(CAError) as info:
        load_ca(ca.cert_path, ca.key_path, clock=lambda: after)
    assert info.value.path == ca.cert_path
    before = ca.not_before.timestamp() - 1
    with pytest.raises(CAError):
        load_ca(ca.cert_path, ca.key_path, clock=lambda: before)


def test_der_certificate_loads(ca_dir: Path) -> None:
    ca = create_ca(ca_dir)
    assert load_ca(ca_files(ca_dir).cert_der, ca.key_path).fingerprint == ca.fingerprint


# --- the directives -------------------------------------------------------------------------


def _conf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cproxy.conf"
    path.write_text(text)
    return path


def test_config_names_the_ca_relative_to_the_directive_file(tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "ca")
    cfg = load_config(
        _conf(tmp_path, "SSLCACertFile = ca/ca-cert.pem\nSSLCAKeyFile = ca/ca-key.pem\n")
    )
    loaded = ca_from_config(cfg)
    assert loaded is not None and loaded.fingerprint == ca.fingerprint
    assert cfg.ssl_leaf_cache_size == 1000


def test_config_without_ca_files_has_no_ca(tmp_path: Path) -> None:
    assert ca_from_config(load_config(_conf(tmp_path, "Port = 0\n"))) is None


def test_config_error_names_directive_file_and_problem(tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "ca")
    os.chmod(ca.key_path, 0o644)
    conf = _conf(tmp_path, "SSLCACertFile = ca/ca-cert.pem\nSSLCAKeyFile = ca/ca-key.pem\n")
    with pytest.raises(ConfigError) as info:
        ca_from_config(load_config(conf))
    assert info.value.directive == "SSLCAKeyFile"
    assert info.value.path == str(conf)
    assert ca.key_path in str(info.value) and "0644" in str(info.value)


def test_config_with_one_file_only_is_an_error(tmp_path: Path) -> None:
    create_ca(tmp_path / "ca")
    conf = _conf(tmp_path, "SSLCACertFile = ca/ca-cert.pem\n")
    with pytest.raises(ConfigError) as info:
        ca_from_config(load_config(conf))
    assert info.value.directive == "SSLCAKeyFile"
