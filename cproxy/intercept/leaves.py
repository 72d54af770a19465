"""Leaf certificates for intercepted hosts (issue #19), kept as ready server-side contexts.

One EC P-256 leaf key serves every host for the life of the process (made lazily, once:
``leaf_key()``), so the first handshake for a new host costs one ECDSA signature by the
CA and building a context, never a key generation. ``LeafCache.context_for(name)`` gives a
TLS server ``SSLContext`` whose certificate names exactly ``name`` (a DNS name or an IP
address), signed by the CA, and sends the chain leaf + CA. Contexts live in a bounded LRU
and are made again when less than ``renew_before_s`` of their validity remains.

Why the certificates look the way they do:

- validity 47 days at most: the shortest leaf lifetime the CA/Browser Forum schedule
  announces (from 2029), so Chromium accepts it on any date; backdated an hour for clients
  whose clock runs behind;
- a random 128-bit serial (the Baseline Requirements ask for 64 random bits at least);
- SAN only, exactly the name asked for (no wildcard, no common-name matching);
  ``extendedKeyUsage serverAuth``; the CA's key identifier as the authority key identifier.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cachetools
import gevent.ssl as gssl
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cproxy.errors import CproxyError

from .ca import CertificateAuthority

__all__ = [
    "LEAF_VALIDITY_S",
    "LeafCache",
    "LeafName",
    "LeafStats",
    "NameRefused",
    "leaf_key",
    "leaf_key_generations",
    "make_leaf",
    "parse_leaf_name",
]

_DAY_S = 86_400.0
#: Leaf lifetime: 47 days is within every step of Chromium's announced limits.
LEAF_VALIDITY_S = 47 * _DAY_S
#: Backdating, for clients whose clock is behind ours.
LEAF_BACKDATE_S = 3600.0
#: A cached leaf is made again when less than this much validity remains: far more than a
#: connection lives, so no client is shown a certificate about to expire.
LEAF_RENEW_BEFORE_S = 3 * _DAY_S


class NameRefused(CproxyError, ValueError):
    """The name asked for is neither a valid host name nor an IP address: no certificate
    is made for it (the connection should be spliced or refused)."""


# ---------------------------------------------------------------------------------------------
# Names

# A DNS label: letters, digits and hyphens, not starting or ending with a hyphen. An
# underscore is allowed too: it is not valid in host names (RFC 952), but real services use
# it (SNI carries it), and a certificate from our own CA for such a name harms nobody.
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")


@dataclass(frozen=True)
class LeafName:
    """A name a leaf is made for: ``text`` is canonical (lower case A-labels without a
    final dot, or the address as ``ipaddress`` writes it); ``ip`` is set for an address."""

    text: str
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None

    def general_name(self) -> x509.GeneralName:
        if self.ip is not None:
            return x509.IPAddress(self.ip)
        return x509.DNSName(self.text)


def parse_leaf_name(name: str) -> LeafName:
    """Check and canonicalise ``name`` (an SNI host name, a CONNECT host, ``[::1]``).

    Unicode names are turned into A-labels (IDNA); raises ``NameRefused`` for anything that
    is neither an IP address nor a host name (wildcards, spaces, empty labels, too long).
    """
    text = name.strip()
    bracketed = text.startswith("[") and text.endswith("]")
    try:
        ip = ipaddress.ip_address(text[1:-1] if bracketed else text)
    except ValueError:
        if bracketed:
            raise NameRefused(f"{name!r} is not an IP address in brackets") from None
    else:
        return LeafName(str(ip), ip)
    if text.endswith("."):
        text = text[:-1]
    try:
        ascii_name = text.encode("idna").decode("ascii").lower() if text else ""
    except UnicodeError as exc:
        raise NameRefused(f"{name!r} is not a valid host name (IDNA: {exc})") from None
    if not ascii_name or len(ascii_name) > 253:
        raise NameRefused(f"{name!r} is not a valid host name (empty or over 253 characters)")
    if not all(_LABEL.match(label) for label in ascii_name.split(".")):
        raise NameRefused(
            f"{name!r} is not a valid host name; allowed: letters, digits, hyphens and dots"
        )
    return LeafName(ascii_name, None)


# ---------------------------------------------------------------------------------------------
# The leaf key: one per process

_key_lock = threading.Lock()
_key: ec.EllipticCurvePrivateKey | None = None
_key_pem: bytes = b""
_key_generations = 0


def leaf_key() -> ec.EllipticCurvePrivateKey:
    """The process's leaf key, made at the first call (EC P-256), then always the same."""
    global _key, _key_pem, _key_generations
    if _key is None:
        with _key_lock:
            if _key is None:
                key = ec.generate_private_key(ec.SECP256R1())
                _key_pem = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                _key_generations += 1
                _key = key
    return _key


def leaf_key_generations() -> int:
    """How many leaf keys this process has made: 0 before the first leaf, then 1."""
    return _key_generations


def _leaf_key_pem() -> bytes:
    leaf_key()
    return _key_pem


def make_leaf(
    ca: CertificateAuthority, name: LeafName, *, now: float, validity_s: float = LEAF_VALIDITY_S
) -> x509.Certificate:
    """A leaf for ``name`` with the process's leaf key, signed by ``ca``; valid from an hour
    before ``now`` (seconds since the epoch) for ``validity_s`` (at most 47 days), never
    past the CA's own end."""
    validity_s = min(validity_s, LEAF_VALIDITY_S)
    start = dt.datetime.fromtimestamp(now - LEAF_BACKDATE_S, dt.UTC)
    end = min(dt.datetime.fromtimestamp(now + validity_s, dt.UTC), ca.not_after)
    key = leaf_key()
    cn = name.text if len(name.text) <= 64 else name.text[:64]  # CN is limited to 64
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        # 128 random bits (a serial must be positive: 0 is drawn once in 2**128).
        .serial_number(secrets.randbits(128) or 1)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([name.general_name()]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca.subject_key_identifier
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )


# ---------------------------------------------------------------------------------------------
# The cache of ready contexts


@dataclass(frozen=True)
class LeafStats:
    """Counters of a LeafCache since it was made."""

    generated: int  # leaves made (first use and renewals)
    renewed: int  # of which: made again because the cached one neared its end
    hits: int  # contexts served from the cache
    evictions: int  # least recently used contexts dropped to stay within max_entries
    entries: int
    max_entries: int


@dataclass(frozen=True)
class _Entry:
    context: ssl.SSLContext
    cert: x509.Certificate
    not_after: float  # seconds since the epoch


class _CountingLRU(cachetools.LRUCache[str, _Entry]):
    """An LRU that counts what it drops to make room."""

    evictions = 0

    def popitem(self) -> tuple[str, _Entry]:
        item = super().popitem()
        self.evictions += 1
        return item


class LeafCache:
    """Ready server-side TLS contexts per name, signed by ``ca``, at most ``max_entries``.

    ``clock`` gives the wall-clock time (seconds since the epoch: certificates carry dates).
    ``context_class`` makes the contexts: gevent's by default, so sockets wrapped with them
    are cooperative (cproxy does not monkey-patch); any ``ssl.SSLContext`` subclass works.
    ``memfd=False`` loads through files in a private directory even where memory files
    work (see ``_load_chain``).
    """

    def __init__(
        self,
        ca: CertificateAuthority,
        max_entries: int = 1000,
        clock: Callable[[], float] = time.time,
        *,
        validity_s: float = LEAF_VALIDITY_S,
        renew_before_s: float = LEAF_RENEW_BEFORE_S,
        context_class: type[ssl.SSLContext] = gssl.SSLContext,
        memfd: bool = True,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if not 0 <= renew_before_s < validity_s <= LEAF_VALIDITY_S:
            raise ValueError("need 0 <= renew_before_s < validity_s <= 47 days")
        self.ca = ca
        self.max_entries = max_entries
        self._clock = clock
        self._validity_s = validity_s
        self._renew_before_s = renew_before_s
        self._context_class = context_class
        self._chain_tail = ca.cert_pem
        self._ca_end = ca.not_after.timestamp()
        self._lru = _CountingLRU(maxsize=max_entries)
        self._generated = 0
        self._renewed = 0
        self._hits = 0
        # Whether to load PEMs from memory files (see _load_chain); False: private files.
        self._memfd = memfd and hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")
        self._tmpdir: str | None = None
        self._cleanup: weakref.finalize[Any, Any] | None = None

    def __len__(self) -> int:
        return len(self._lru)

    def stats(self) -> LeafStats:
        return LeafStats(
            generated=self._generated,
            renewed=self._renewed,
            hits=self._hits,
            evictions=self._lru.evictions,
            entries=len(self._lru),
            max_entries=self.max_entries,
        )

    def context_for(self, name: str) -> ssl.SSLContext:
        """The server context presenting a certificate for ``name`` (DNS name or IP).

        Raises ``NameRefused`` for a name that is neither.
        """
        leaf_name = parse_leaf_name(name)
        now = self._clock()
        entry = self._lru.get(leaf_name.text)
        if entry is not None:
            # A leaf cut short by the CA's own end cannot be bettered: keep it rather than
            # sign a new one at every handshake (the CA page warns long before).
            if entry.not_after - now > self._renew_before_s or entry.not_after >= self._ca_end:
                self._hits += 1
                return entry.context
            self._renewed += 1
        cert = make_leaf(self.ca, leaf_name, now=now, validity_s=self._validity_s)
        context = self._context(cert)
        self._generated += 1
        self._lru[leaf_name.text] = _Entry(context, cert, cert.not_valid_after_utc.timestamp())
        return context

    def certificate_for(self, name: str) -> x509.Certificate | None:
        """The certificate cached for ``name``, or None (counts as a use for the LRU order,
        not as a hit)."""
        entry = self._lru.get(parse_leaf_name(name).text)
        return entry.cert if entry is not None else None

    def close(self) -> None:
        """Remove the private temporary directory (contexts already made keep working)."""
        if self._cleanup is not None:
            self._cleanup()
        self._tmpdir = self._cleanup = None

    def _context(self, cert: x509.Certificate) -> ssl.SSLContext:
        ctx = self._context_class(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # HTTP/2 to clients is not part of interception (issue #19): offer only HTTP/1.1,
        # so a browser never speaks h2 into a connection we parse as HTTP/1.1.
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        chain = cert.public_bytes(serialization.Encoding.PEM) + self._chain_tail
        self._load_chain(ctx, chain)
        return ctx

    def _load_chain(self, ctx: ssl.SSLContext, chain: bytes) -> None:
        """``load_cert_chain`` takes file names only. Preferred: an anonymous memory file
        (``memfd_create``, opened as /proc/self/fd/N), so the leaf key never touches a
        file system; else (no memfd or no /proc) PEM files written into a private 0700
        directory (made once per cache) and deleted right after loading.

        Measured by bench/leaf_cost.py on this project's test machine (OpenSSL 3.0,
        medians per new host): the CA's signature 0.16 ms; a context with load_cert_chain
        from two files 1.38 ms, from a memfd 1.07 ms (OpenSSL 3's PEM decoding dominates
        both; the bare context is 0.15 ms); the whole miss 2.1 ms, a hit 6 µs. pyOpenSSL
        could set certificate objects without any file, but its connections are not the
        ``ssl`` module's sockets that gevent and the rest of cproxy use.
        """
        if self._memfd:
            try:
                self._load_from_memfd(ctx, chain)
                return
            except FileNotFoundError:
                self._memfd = False  # no /proc: files from now on
        self._load_from_files(ctx, chain)

    def _load_from_memfd(self, ctx: ssl.SSLContext, chain: bytes) -> None:
        fd = os.memfd_create("cproxy-leaf", os.MFD_CLOEXEC)
        try:
            os.write(fd, chain + _leaf_key_pem())
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)

    def _load_from_files(self, ctx: ssl.SSLContext, chain: bytes) -> None:
        directory = self._private_dir()
        fd_c, cert_file = tempfile.mkstemp(prefix="leaf-", suffix=".pem", dir=directory)
        fd_k, key_file = tempfile.mkstemp(prefix="key-", suffix=".pem", dir=directory)
        try:
            with os.fdopen(fd_c, "wb") as f:
                f.write(chain)
            with os.fdopen(fd_k, "wb") as f:
                f.write(_leaf_key_pem())
            ctx.load_cert_chain(cert_file, key_file)
        finally:
            os.unlink(cert_file)
            os.unlink(key_file)

    def _private_dir(self) -> str:
        if self._tmpdir is None or not os.path.isdir(self._tmpdir):
            # mkdtemp makes the directory 0700: no other user can read the key on its way.
            self._tmpdir = tempfile.mkdtemp(prefix="cproxy-leaves-")
            # Removed when the cache goes away or the interpreter exits, whichever first.
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmpdir, True)
        return self._tmpdir
