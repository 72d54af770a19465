"""cproxy's interception CA (issue #19): create one, load one with its safety checks.

A CA directory made by ``create_ca`` (``cproxy ca init -d DIR``) holds:

- ``ca-key.pem``: the EC P-256 private key, mode 0600, in a directory of mode 0700. It never
  leaves this file: the admin pages offer only the certificate.
- ``ca-cert.pem``: the CA certificate alone (what SSLCACertFile names and what clients
  install); ``ca-cert.der``: the same in DER, which Windows and Android import more easily.

``load_ca`` refuses, with a ``CAError`` naming the file and the problem, a key readable or
writable by group or others, a certificate that is not a CA (no ``CA:TRUE`` basic
constraints or no ``keyCertSign``), a key that is not the certificate's, an unreadable or
unparsable file, an encrypted key and a certificate outside its validity.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from cproxy.errors import ConfigError, CproxyError

if TYPE_CHECKING:
    from cproxy.directives import Config

__all__ = [
    "CAError",
    "CAFiles",
    "CertificateAuthority",
    "SigningKey",
    "ca_files",
    "ca_from_config",
    "create_ca",
    "fingerprint_sha256",
    "load_ca",
    "load_ca_certificate",
]

#: The private key types a CA may have: both sign with SHA-256 in ``cert.sign``.
SigningKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

KEY_NAME = "ca-key.pem"
CERT_NAME = "ca-cert.pem"
CERT_DER_NAME = "ca-cert.der"
# Ten years: a private root is checked by no browser's validity limit (those apply to
# leaves), and re-installing a CA in every client is the costly step; leaves are short.
CA_VALIDITY_DAYS = 3650
# A little backdating so a client whose clock runs a few minutes behind accepts a new CA.
CA_BACKDATE_S = 3600


class CAError(CproxyError):
    """The CA files cannot be used (or made): ``str()`` is ``path: problem``; ``role`` says
    which file of the pair was at fault ("certificate", "key"; "" for a directory)."""

    def __init__(self, message: str, *, path: str | os.PathLike[str], role: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = os.fspath(path)
        self.role = role

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class CAFiles:
    """Where ``create_ca`` puts a CA's files in ``directory``."""

    directory: Path
    key: Path
    cert: Path
    cert_der: Path


def ca_files(directory: str | os.PathLike[str]) -> CAFiles:
    """The file names of the CA kept in ``directory``."""
    d = Path(directory)
    return CAFiles(d, d / KEY_NAME, d / CERT_NAME, d / CERT_DER_NAME)


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """The SHA-256 fingerprint as colon-separated upper-case hex, as openssl and the
    browsers' certificate viewers print it (``AB:CD:...``)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


@dataclass(frozen=True)
class CertificateAuthority:
    """A loaded, checked CA: its certificate, its signing key and where they came from."""

    cert: x509.Certificate
    key: SigningKey
    cert_path: str
    key_path: str

    @property
    def cert_pem(self) -> bytes:
        """The certificate alone, PEM (safe to hand to anyone)."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_der(self) -> bytes:
        """The certificate alone, DER."""
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def fingerprint(self) -> str:
        return fingerprint_sha256(self.cert)

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    @property
    def not_before(self) -> dt.datetime:
        return self.cert.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    @property
    def subject_key_identifier(self) -> x509.SubjectKeyIdentifier:
        """The SKI leaves name as their authority key identifier."""
        try:
            return self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:
            return x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())


# ---------------------------------------------------------------------------------------------
# Creating


def _private_directory(directory: Path) -> None:
    """Make ``directory`` with mode 0700, or accept an existing one only if it is private."""
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        st = directory.stat()
        if not stat.S_ISDIR(st.st_mode):
            raise CAError("exists and is not a directory", path=directory) from None
        if st.st_mode & 0o077:
            raise CAError(
                f"the directory is open to group or others (mode {st.st_mode & 0o777:04o}); "
                "the CA key must live in a private directory: chmod 700 it or name a new one",
                path=directory,
            ) from None
    except OSError as exc:
        raise CAError(
            f"cannot create the directory: {exc.strerror or exc}", path=directory
        ) from exc
    os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, created with ``mode`` (never wider first)."""
    fd, tmp = tempfile.mkstemp(prefix=".cproxy-", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def create_ca(
    directory: str | os.PathLike[str],
    *,
    common_name: str = "cproxy interception CA",
    force: bool = False,
    clock: Callable[[], float] = time.time,
) -> CertificateAuthority:
    """Create a new CA in ``directory`` (made 0700 when missing) and return it loaded.

    Refuses (``CAError``) to replace an existing key or certificate unless ``force``, and
    to use an existing directory open to group or others.
    """
    files = ca_files(directory)
    if not force:
        for existing in (files.key, files.cert):
            if existing.exists():
                raise CAError(
                    "a CA exists already; --force replaces it (every client must then "
                    "install the new certificate)",
                    path=existing,
                )
    _private_directory(files.directory)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.fromtimestamp(clock(), dt.UTC)
    # The random part keeps two installations' CAs apart in a trust store's list.
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} {secrets.token_hex(4)}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cproxy"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(seconds=CA_BACKDATE_S))
        .not_valid_after(now + dt.timedelta(days=CA_VALIDITY_DAYS))
        # Path length 0: this CA signs leaves only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        _write_file(files.key, key_pem, 0o600)
        _write_file(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        _write_file(files.cert_der, cert.public_bytes(serialization.Encoding.DER), 0o644)
    except OSError as exc:
        raise CAError(f"cannot write the CA: {exc.strerror or exc}", path=files.directory) from exc
    return load_ca(files.cert, files.key, clock=clock)


# ---------------------------------------------------------------------------------------------
# Loading


def _read(path: Path, role: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CAError("file not found", path=path, role=role) from None
    except OSError as exc:
        raise CAError(f"cannot read the file: {exc.strerror or exc}", path=path, role=role) from exc


def _load_certificate(path: Path) -> x509.Certificate:
    data = _read(path, "certificate")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CAError(
            f"not a PEM or DER certificate ({exc})", path=path, role="certificate"
        ) from exc


def _check_is_ca(cert: x509.Certificate, path: Path) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CAError(
            "the certificate is not a CA certificate (no basic constraints CA:TRUE); "
            "create one with cproxy ca init",
            path=path,
            role="certificate",
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or not usage.key_cert_sign:
        raise CAError(
            "the certificate is not a CA certificate (its key usage lacks keyCertSign); "
            "create one with cproxy ca init",
            path=path,
            role="certificate",
        )


def _check_key_mode(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CAError("file not found", path=path, role="key") from None
    except OSError as exc:
        raise CAError(
            f"cannot read the file: {exc.strerror or exc}", path=path, role="key"
        ) from exc
    if mode & 0o077:
        raise CAError(
            f"the CA key is readable or writable by group or others (mode {mode & 0o777:04o}); "
            f"allowed: owner only: chmod 600 {path}",
            path=path,
            role="key",
        )


def _load_key(path: Path) -> SigningKey:
    data = _read(path, "key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # encrypted, and we have no password
        raise CAError(
            "the key is encrypted; cproxy needs an unencrypted key (mode 0600)", path=path
        ) from exc
    except ValueError as exc:
        raise CAError(f"not a PEM private key ({exc})", path=path, role="key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CAError(
            f"a {type(key).__name__} key cannot sign leaves here; allowed: EC or RSA", path=path
        )
    return key


def _spki(key: object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_ca_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """The CA certificate at ``path`` alone, checked to be a CA, without touching the key:
    for showing and handing out (the admin pages). Raises ``CAError``."""
    cert = _load_certificate(Path(path))
    _check_is_ca(cert, Path(path))
    return cert


def load_ca(
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    *,
    clock: Callable[[], float] = time.time,
) -> CertificateAuthority:
    """Load and check the CA certificate at ``cert_path`` and its key at ``key_path``.

    Raises ``CAError`` (``str()`` = ``file: problem``) for: a missing or unreadable file; a
    key readable or writable by group or others (checked before the key is read); a
    certificate that is not a CA; an encrypted or unparsable key; a key that does not
    match the certificate; a certificate not valid at ``clock()`` (expired or not yet).
    """
    cert_file, key_file = Path(cert_path), Path(key_path)
    cert = _load_certificate(cert_file)
    _check_is_ca(cert, cert_file)
    _check_key_mode(key_file)
    key = _load_key(key_file)
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise CAError(
            f"the key does not match the certificate {cert_file} (a key of another CA?)",
            path=key_file,
            role="key",
        )
    now = dt.datetime.fromtimestamp(clock(), dt.UTC)
    if now > cert.not_valid_after_utc:
        raise CAError(
            f"the CA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
            "create a new CA",
            path=cert_file,
            role="certificate",
        )
    if now < cert.not_valid_before_utc:
        raise CAError(
            f"the CA certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
            "UTC (is the clock right?)",
            path=cert_file,
            role="certificate",
        )
    return CertificateAuthority(
        cert=cert, key=key, cert_path=os.fspath(cert_file), key_path=os.fspath(key_file)
    )


def ca_from_config(
    cfg: Config, *, clock: Callable[[], float] = time.time
) -> CertificateAuthority | None:
    """The CA named by SSLCACertFile and SSLCAKeyFile (relative names taken from the
    directive file's directory), or None when neither is set.

    Raises ``ConfigError`` naming the directive file, the directive, the CA file and the
    problem when only one is set or the files fail ``load_ca``'s checks: cproxy refuses to
    start with a CA it cannot use safely.
    """
    cert = cfg.resolve_path("SSLCACertFile")
    key = cfg.resolve_path("SSLCAKeyFile")
    if not cert and not key:
        return None
    if not cert or not key:
        missing, given = (
            ("SSLCACertFile", "SSLCAKeyFile") if not cert else ("SSLCAKeyFile", "SSLCACertFile")
        )
        raise ConfigError(
            f"{missing} is empty while {given} names a file; "
            "allowed: both files (cproxy ca init makes them) or neither",
            path=cfg.source_path,
            directive=missing,
        )
    try:
        return load_ca(cert, key, clock=clock)
    except CAError as exc:
        directive = "SSLCAKeyFile" if exc.role == "key" else "SSLCACertFile"
        raise ConfigError(str(exc), path=cfg.source_path, directive=directive) from exc
