"""The interception CA as the admin shows it (issue #19): fingerprint, validity and the
certificate for download, PEM or DER.

Only SSLCACertFile is read: the admin never opens the key file, so no page or download can
leak it. The file is read at each request, so the page shows what is on disk now (and says
so when it no longer loads) without a restart.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

# Days before the CA's end from which the page warns: clients must install a new CA by then.
WARN_BEFORE_DAYS = 60


@dataclass(frozen=True)
class CAView:
    """What the CA page shows. ``configured`` is False when SSLCACertFile is empty;
    ``error`` says why the named file cannot be shown (then the figures are empty)."""

    configured: bool
    cert_path: str = ""
    error: str = ""
    subject: str = ""
    fingerprint: str = ""
    not_before: str = ""
    not_after: str = ""
    days_left: int = 0
    expiring: bool = False
    pem: bytes = b""
    der: bytes = b""


def ca_view(config: Any, now: dt.datetime | None = None) -> CAView:
    """Read SSLCACertFile (relative to the directive file) for the page and downloads."""
    path = config.resolve_path("SSLCACertFile")
    if not path:
        return CAView(configured=False)
    # cryptography is imported on first use: the admin is often run without interception.
    from cryptography.hazmat.primitives import serialization

    from cproxy.intercept.ca import CAError, fingerprint_sha256, load_ca_certificate

    try:
        cert = load_ca_certificate(path)
    except CAError as exc:
        return CAView(configured=True, cert_path=path, error=str(exc))
    now = now or dt.datetime.now(dt.UTC)
    left = cert.not_valid_after_utc - now
    return CAView(
        configured=True,
        cert_path=path,
        subject=cert.subject.rfc4514_string(),
        fingerprint=fingerprint_sha256(cert),
        not_before=f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
        not_after=f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
        days_left=left.days,
        expiring=left < dt.timedelta(days=WARN_BEFORE_DAYS),
        pem=cert.public_bytes(serialization.Encoding.PEM),
        der=cert.public_bytes(serialization.Encoding.DER),
    )


#: Download name -> (CAView attribute, content type). application/x-x509-ca-cert makes
#: browsers and phones offer to install the certificate as a CA.
DOWNLOADS: dict[str, tuple[str, str]] = {
    "cproxy-ca.pem": ("pem", "application/x-pem-file"),
    "cproxy-ca.der": ("der", "application/x-x509-ca-cert"),
}
