"""Pinned clients (issue #19): remember who rejected our certificate, and spot a rejection.

An app that pins its server's certificate (or ships its own trust store) aborts the TLS
handshake when it sees a certificate from cproxy's CA. Intercepting it again would fail
again, so for a while (SSLPinnedSpliceTime) the pair (client address, host) is spliced:
the app's retry goes to the origin untouched and works.

``classify_handshake_failure(exc)`` reads the exception the server-side ``do_handshake``
raised, by the ``ssl`` module's types and OpenSSL's reason codes (``exc.reason``), never
its message text, and tells a client that refused our certificate from other failures.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

import cachetools

__all__ = [
    "CERTIFICATE_ALERTS",
    "HandshakeFailure",
    "PinnedSplices",
    "PinnedStats",
    "classify_handshake_failure",
]

#: OpenSSL's reason codes for the alerts a client sends when it does not accept the
#: server's certificate: unknown_ca (48), bad_certificate (42), certificate_unknown (46),
#: unsupported_certificate (43). Expired or revoked would be a fault of ours, not pinning.
CERTIFICATE_ALERTS = frozenset(
    {
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    }
)


class HandshakeFailure(enum.Enum):
    """Why a server-side handshake with a client failed."""

    #: the client sent an alert refusing our certificate (unknown_ca, bad_certificate, ...)
    CERTIFICATE_REJECTED = "certificate rejected"
    #: the client closed (or reset) the connection during the handshake
    CLOSED = "closed during handshake"
    #: anything else: no shared protocol or cipher, garbage, a timeout, ...
    OTHER = "other"

    @property
    def pinned(self) -> bool:
        """Whether this looks like a client that will not accept our certificate: the
        (client, host) pair should be spliced for a while."""
        return self is not HandshakeFailure.OTHER


def classify_handshake_failure(exc: BaseException) -> HandshakeFailure:
    """Classify what ``SSLSocket.do_handshake`` (or ``SSLObject.do_handshake``) raised on
    the server side of a handshake with a client."""
    import ssl  # loaded already: a handshake raised ``exc``

    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return HandshakeFailure.CLOSED
    if isinstance(exc, ssl.SSLError):
        if exc.reason in CERTIFICATE_ALERTS:
            return HandshakeFailure.CERTIFICATE_REJECTED
        if exc.reason == "UNEXPECTED_EOF_WHILE_READING":
            return HandshakeFailure.CLOSED
        if isinstance(exc, ssl.SSLSyscallError):
            return HandshakeFailure.CLOSED  # EOF in violation of protocol (older OpenSSL)
        return HandshakeFailure.OTHER
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return HandshakeFailure.CLOSED
    return HandshakeFailure.OTHER


@dataclass(frozen=True)
class PinnedStats:
    remembered: int  # pairs recorded (again) since start
    hits: int  # lookups that found a live pair: connections spliced for it
    evictions: int  # pairs dropped to stay within max_entries (least recently used)
    entries: int
    max_entries: int


class _CountingLRU(cachetools.LRUCache[tuple[str, str], float]):
    evictions = 0

    def popitem(self) -> tuple[tuple[str, str], float]:
        item = super().popitem()
        self.evictions += 1
        return item


def _host_key(host: str) -> str:
    return host.strip().lower().rstrip(".")


class PinnedSplices:
    """(client address, host) pairs to splice until ``duration_s`` after the client last
    rejected our certificate; at most ``max_entries`` pairs, least recently used dropped.

    ``clock`` is monotonic seconds (injected in tests). Host names compare in lower case
    without a final dot.
    """

    def __init__(
        self,
        duration_s: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.duration_s = duration_s
        self.max_entries = max_entries
        self._clock = clock
        self._until = _CountingLRU(maxsize=max_entries)
        self._remembered = 0
        self._hits = 0

    def __len__(self) -> int:
        return len(self._until)

    def remember(self, client: str, host: str) -> None:
        """Splice ``host`` for ``client`` for the next ``duration_s``."""
        if self.duration_s <= 0:
            return
        self._until[(client, _host_key(host))] = self._clock() + self.duration_s
        self._remembered += 1

    def is_pinned(self, client: str, host: str) -> bool:
        """Whether connections from ``client`` to ``host`` are to be spliced now."""
        key = (client, _host_key(host))
        until = self._until.get(key)
        if until is None:
            return False
        if self._clock() >= until:
            del self._until[key]
            return False
        self._hits += 1
        return True

    def forget(self, client: str, host: str) -> None:
        self._until.pop((client, _host_key(host)), None)

    def set_duration(self, duration_s: float) -> None:
        """A new SSLPinnedSpliceTime: applies to pairs remembered from now on."""
        self.duration_s = duration_s

    def stats(self) -> PinnedStats:
        return PinnedStats(
            remembered=self._remembered,
            hits=self._hits,
            evictions=self._until.evictions,
            entries=len(self._until),
            max_entries=self.max_entries,
        )
