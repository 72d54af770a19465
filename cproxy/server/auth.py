"""Proxy authentication (ProxyAuth): HTTP Basic against a bcrypt password file.

``ProxyAuthenticator.check`` is called once per request, for plain requests and CONNECT
alike, before anything is forwarded. It answers with the user name (for the access
log), None (authentication off, or the client is in ProxyAuthExempt), or a `Refusal`:

* 407 with ``Proxy-Authenticate: Basic realm="..."`` when credentials are missing or
  wrong (RFC 9110 §11.7.1);
* 429 with Retry-After once an address has failed `MAX_FAILURES` times within
  `FAILURE_WINDOW_S`: its attempts are then refused without running bcrypt until the
  window ends, so guessing costs the guesser time and the proxy nothing.

The password file and its verifier are the admin's (cproxy.admin.auth): the same
format, written by ``cproxy passwd``, re-read when it changes. Verdicts are remembered
for a while (keyed by an HMAC, never the password), because a browser sends its
credentials with every request and bcrypt costs a quarter of a second on purpose.
Proxy-Authorization itself is a hop-by-hop field here: it is never forwarded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cachetools

from cproxy.directives import Config, ip_allowed
from cproxy.http import Request
from cproxy.server.trace import Refusal

if TYPE_CHECKING:
    from cproxy.admin.auth import PasswordVerifier

log = logging.getLogger("cproxy")

# Failed attempts an address may make within the window before it is throttled: enough
# for a person mistyping a password, far too few for guessing.
MAX_FAILURES = 5
FAILURE_WINDOW_S = 60.0
# Addresses whose failures are remembered at once (a bound, like every table here).
MAX_TRACKED_ADDRESSES = 10_000
# A verdict is reused this long, and for this many distinct credentials: browsers send
# Proxy-Authorization with every request, and a proxy has more users than its admin.
VERDICT_TTL_S = 300.0
VERDICT_ENTRIES = 4096


class ProxyAuthenticator:
    """Per-runtime state: the verifier for the current password file, failures by address."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._verifier: tuple[Path, PasswordVerifier] | None = None
        # address -> (failures, time of the last); an entry ends a window after its last
        self._failures: cachetools.TTLCache[str, tuple[int, float]] = cachetools.TTLCache(
            maxsize=MAX_TRACKED_ADDRESSES, ttl=FAILURE_WINDOW_S, timer=clock
        )

    def password_file(self, cfg: Config) -> Path:
        """ProxyAuthPasswordFile, or the admin's AdminPasswordFile when it is empty."""
        name = "ProxyAuthPasswordFile" if cfg.proxy_auth_password_file else "AdminPasswordFile"
        return Path(cfg.resolve_path(name))

    def _verifier_for(self, cfg: Config) -> PasswordVerifier:
        path = self.password_file(cfg)
        if self._verifier is None or self._verifier[0] != path:
            from cproxy.admin.auth import PasswordFile, PasswordVerifier

            verifier = PasswordVerifier(
                PasswordFile(path), ttl_s=VERDICT_TTL_S, max_entries=VERDICT_ENTRIES
            )
            self._verifier = (path, verifier)
        return self._verifier[1]

    def check(self, req: Request, client_ip: str, cfg: Config) -> str | Refusal | None:
        """The user name, None (no authentication needed), or the refusal to send."""
        if not cfg.proxy_auth or ip_allowed(cfg.proxy_auth_exempt, client_ip):
            return None
        now = self._clock()
        failures, last = self._failures.get(client_ip, (0, now))
        if failures >= MAX_FAILURES:
            retry_s = max(1, int(last + FAILURE_WINDOW_S - now + 0.999))
            return Refusal(
                429,
                "Too many failed proxy logins from this address; try again later.",
                (("Retry-After", str(retry_s)),),
            )
        # Imported here, not at the top: with its hashlib, hmac and bcrypt it costs a
        # proxy without ProxyAuth about 4 MiB (OpenSSL's libcrypto; issue #21).
        from cproxy.admin.auth import parse_basic_authorization

        credentials = parse_basic_authorization(req.headers.get("proxy-authorization"))
        if credentials is not None and self._verifier_for(cfg).verify(
            credentials.user, credentials.password
        ):
            return credentials.user
        if credentials is not None or req.headers.get("proxy-authorization") is not None:
            # Wrong or malformed credentials count; a first request without any does not
            # (clients send none until challenged).
            self._failures[client_ip] = (failures + 1, now)
            shown = credentials.user if credentials is not None else "(malformed)"
            log.warning("proxy login from %s failed for user %r", client_ip, shown)
        return challenge(cfg)


def challenge(cfg: Config) -> Refusal:
    """The 407 asking for credentials in ProxyAuthRealm."""
    realm = cfg.proxy_auth_realm.replace("\\", "").replace('"', "'")
    return Refusal(
        407,
        "This proxy needs a user name and password.",
        (("Proxy-Authenticate", f'Basic realm="{realm}", charset="UTF-8"'),),
    )
