"""Who may use the admin: client networks, HTTP Basic, the bcrypt password file.

The password file holds one ``user:bcrypt-hash`` line per user (``#`` comments and
blank lines are allowed). It is written by ``cproxy passwd`` (see passwd.py) and read
again whenever it changes on disk, so a password update needs no restart.

bcrypt is slow on purpose (a quarter of a second per check is normal), and a status page
refreshing itself sends the same credentials again and again. ``PasswordVerifier`` so
keeps each verdict for a short while, keyed by an HMAC (under a per-process secret) of
the user, the password and the stored hash: the cache never holds a password, the key
cannot be looked up without the secret, and a changed hash makes old entries unreachable.
The bcrypt run itself happens in gevent's thread pool (bcrypt releases the GIL), so a
login does not stall the proxy's greenlets.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import cachetools

from cproxy.directives.types import IPNetwork, ip_allowed

log = logging.getLogger("cproxy.admin")

# A verdict is reused this long: long enough for a page and its XHR refreshes, short
# enough that a removed user or changed password stops working almost at once.
VERIFY_CACHE_TTL_S = 60.0
# Bounded so that a flood of distinct guesses cannot grow memory.
VERIFY_CACHE_MAX_ENTRIES = 256
# Longest Authorization header value we decode; real ones are far shorter.
MAX_AUTHORIZATION_CHARS = 4096


# Failed logins an address may make before it is locked out (a mistyped password or two,
# a password manager's stale entry), then how long the first lockout lasts; each further
# failure doubles it, up to the longest. 5 guesses, then 1 s, 2 s, 4 s ... 5 minutes: a
# guesser gets a few hundred tries a day per address, a user who mistyped waits a second.
LOGIN_FREE_FAILURES = 5
LOGIN_LOCKOUT_FIRST_S = 1.0
LOGIN_LOCKOUT_MAX_S = 300.0
# Addresses remembered at once (bounded: a flood of addresses cannot grow memory; the
# oldest are forgotten first).
LOGIN_THROTTLE_MAX_ADDRESSES = 4096


class PasswordFileError(ValueError):
    """The password file exists but a line in it is malformed."""


def valid_user_name(user: str) -> bool:
    """True when ``user`` can be stored in a password file and sent with HTTP Basic."""
    return (
        0 < len(user) <= 64
        and ":" not in user
        and user.isprintable()
        and not any(ch.isspace() for ch in user)
    )


def parse_password_file(text: str, path: str = "<password file>") -> dict[str, bytes]:
    """Parse ``user:hash`` lines into {user: bcrypt hash}; raises PasswordFileError."""
    users: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not valid_user_name(user) or not hashed.startswith("$2"):
            raise PasswordFileError(f"{path}:{number}: expected 'user:bcrypt-hash'")
        users[user] = hashed.encode("ascii", "replace")
    return users


def read_password_file(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """Read a password file; raises OSError when unreadable, PasswordFileError when bad."""
    with open(path, encoding="utf-8") as handle:
        return parse_password_file(handle.read(), str(path))


class PasswordFile:
    """A password file re-read whenever its modification time or size changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def users(self) -> dict[str, bytes]:
        """Return {user: hash}; an unreadable or malformed file yields no users (logged)."""
        try:
            st = self.path.stat()
        except OSError as exc:
            log.error("admin password file %s unreadable: %s", self.path, exc)
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._users = read_password_file(self.path)
                except (OSError, PasswordFileError, UnicodeDecodeError) as exc:
                    # Refuse everyone rather than run on a half-understood file.
                    log.error("admin password file %s rejected: %s", self.path, exc)
                    self._users = {}
                self._stamp = stamp
            return self._users


def _run_in_threadpool(func: Callable[[], bool]) -> bool:
    """Run a GIL-releasing call in gevent's thread pool so greenlets keep running."""
    import gevent

    return bool(gevent.get_hub().threadpool.apply(func))


class PasswordVerifier:
    """Checks user/password pairs against a PasswordFile, caching verdicts briefly."""

    def __init__(
        self,
        passwords: PasswordFile,
        *,
        ttl_s: float = VERIFY_CACHE_TTL_S,
        max_entries: int = VERIFY_CACHE_MAX_ENTRIES,
        run: Callable[[Callable[[], bool]], bool] = _run_in_threadpool,
    ) -> None:
        self.passwords = passwords
        self._key_secret = secrets.token_bytes(32)
        self._cache: cachetools.TTLCache[bytes, bool] = cachetools.TTLCache(
            maxsize=max_entries, ttl=ttl_s
        )
        self._run = run
        self.bcrypt_runs = 0  # how many real bcrypt checks ran (tests watch this)

    def _key(self, user: str, password: str, hashed: bytes) -> bytes:
        material = b"\0".join((user.encode(), password.encode(), hashed))
        return hmac.new(self._key_secret, material, hashlib.sha256).digest()

    def verify(self, user: str, password: str) -> bool:
        """True when ``password`` is ``user``'s current password."""
        hashed = self.passwords.users().get(user)
        if hashed is None:
            return False
        key = self._key(user, password, hashed)
        verdict = self._cache.get(key)
        if verdict is None:
            self.bcrypt_runs += 1
            verdict = self._run(lambda: _checkpw(password, hashed))
            self._cache[key] = verdict
        return verdict


class LoginThrottle:
    """Failed admin logins per client address, and the lockouts they earn.

    Each address has its own count: a guesser at one address is locked out (answered 429
    with Retry-After, with no password check at all, so it cannot keep the bcrypt
    threads busy either) while logins from every other address go on as before. A
    successful login clears its address's count. A lockout is logged once, when it
    starts; so is every failure (by the caller).
    """

    def __init__(
        self,
        *,
        free_failures: int = LOGIN_FREE_FAILURES,
        first_lockout_s: float = LOGIN_LOCKOUT_FIRST_S,
        max_lockout_s: float = LOGIN_LOCKOUT_MAX_S,
        max_addresses: int = LOGIN_THROTTLE_MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.first_lockout_s = first_lockout_s
        self.max_lockout_s = max_lockout_s
        self.clock = clock
        # address -> [failures, locked until]; an entry outlives its longest lockout.
        self._failures: cachetools.TTLCache[str, list[float]] = cachetools.TTLCache(
            maxsize=max_addresses, ttl=max_lockout_s * 2, timer=clock
        )

    def retry_after_s(self, address: str) -> float:
        """Seconds until ``address`` may try again; 0 when it may now."""
        state = self._failures.get(address)
        if state is None:
            return 0.0
        return max(0.0, state[1] - self.clock())

    def failed(self, address: str) -> float:
        """Count a failed login from ``address``; returns the lockout it now has (0: none)."""
        state = self._failures.get(address) or [0, 0.0]
        state[0] += 1
        over = int(state[0]) - self.free_failures
        lockout = 0.0
        if over > 0:
            lockout = min(self.max_lockout_s, self.first_lockout_s * 2 ** min(over - 1, 30))
            state[1] = self.clock() + lockout
            log.warning(
                "admin logins from %s locked out for %g s after %d failures",
                address,
                lockout,
                int(state[0]),
            )
        self._failures[address] = state  # (re)sets the entry's time to live
        return lockout

    def succeeded(self, address: str) -> None:
        """A successful login: ``address`` starts again with a clean count."""
        self._failures.pop(address, None)


def _checkpw(password: str, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password.encode("utf-8"), hashed)
    except ValueError as exc:
        # A corrupt hash in the file: nobody can log in as that user; say why.
        log.error("admin password file holds an unusable hash: %s", exc)
        return False


@dataclass(frozen=True)
class Credentials:
    """User and password from an HTTP Basic Authorization header."""

    user: str
    password: str


def parse_basic_authorization(header: str | None) -> Credentials | None:
    """Decode ``Authorization: Basic ...``; None when absent or malformed."""
    if not header or len(header) > MAX_AUTHORIZATION_CHARS:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return Credentials(user, password)


def client_allowed(address: str, networks: Iterable[IPNetwork]) -> bool:
    """True when the client ``address`` lies in one of ``networks`` (AdminAccess).

    IPv4 clients seen through an IPv6 socket match IPv4 networks (see ``ip_allowed``).
    An address that does not parse (e.g. a Unix socket's empty peer) is never allowed.
    """
    try:
        return ip_allowed(networks, address)
    except ValueError:
        return False
