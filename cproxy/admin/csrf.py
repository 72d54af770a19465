"""Forged form posts: per-user tokens and the Origin/Referer check.

HTTP Basic credentials are sent by the browser with every request to the admin, also
with a form another site makes it post. Two checks stop such posts:

* every form carries a token, an HMAC of the user name under a secret made when the
  process starts: another site cannot read or compute it;
* when the browser says where a post comes from (``Origin``, else ``Referer``), that
  host and port must be the admin's own (the ``Host`` header). Clients that send
  neither (scripts, old browsers) are still bound by the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


class CsrfGuard:
    """Makes and checks the anti-forgery token of each admin user."""

    def __init__(self, secret: bytes | None = None) -> None:
        # A new secret per process: tokens in pages rendered before a restart stop
        # working, which only costs the user a reload.
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def token(self, user: str) -> str:
        """The token to embed in every form shown to ``user``."""
        message = b"cproxy-admin-csrf\0" + user.encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def valid(self, user: str, token: str | None) -> bool:
        """True when ``token`` is ``user``'s token (compared in constant time)."""
        if not token:
            return False
        return hmac.compare_digest(self.token(user), token)


def _host_port(netloc: str, scheme: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return None
    if parts.hostname is None:
        return None
    return parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS.get(scheme, 80)


def same_origin(host_header: str | None, origin: str | None, referer: str | None) -> bool:
    """True unless the browser says the request comes from another host or port.

    ``origin`` wins over ``referer`` when both are present; ``Origin: null`` (sandboxed
    frames, some redirects) is refused. With neither header the answer is True.
    """
    source = origin if origin is not None else referer
    if source is None:
        return True
    if not host_header or source.strip() == "null":
        return False
    parts = urlsplit(source.strip())
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        return False
    mine = _host_port(host_header.strip(), parts.scheme)
    theirs = _host_port(parts.netloc, parts.scheme)
    return mine is not None and mine == theirs
