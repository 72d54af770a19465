"""Read a TLS ClientHello from the bytes after CONNECT, without I/O (issue #19).

``peek_client_hello(data)`` looks at the bytes received so far (peeked, not consumed: the
caller passes them on untouched when it splices) and answers with a ``HelloPeek``:

- ``NEED_MORE``: a TLS handshake so far, but the ClientHello is not complete yet;
- ``NOT_TLS``: the first bytes are not a TLS handshake record (SSH over 443, plain HTTP,
  SSLv2): tunnel them untouched;
- ``MALFORMED``: TLS records whose content is not a valid ClientHello;
- ``TOO_LARGE``: a ClientHello over ``max_bytes`` or spread over more than ``max_records``
  records: the peek gives up (splice or refuse, never buffer without bound);
- ``CLIENT_HELLO``: ``hello`` is the parsed ClientHello (SNI, ALPN, versions).

The ClientHello may be split over several records (RFC 8446 §5.1 lets a handshake message
span records) and those over any number of reads. Nothing raises: every input, however
broken, gets one of these verdicts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "MAX_HELLO_BYTES",
    "MAX_HELLO_RECORDS",
    "ClientHello",
    "HelloPeek",
    "Verdict",
    "peek_client_hello",
]

#: The largest ClientHello read: real ones are 200-2000 bytes (post-quantum key shares
#: bring Chromium's to about 1.8 KB); 16 KiB leaves room for many extensions and bounds
#: what one connection makes us buffer before deciding.
MAX_HELLO_BYTES = 16 * 1024
#: The most records one ClientHello may span: clients send one (or two when it is large);
#: a hello cut into 1-byte records is an attack on the reader, not a client.
MAX_HELLO_RECORDS = 32

_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_RECORD_HEADER = 5
# RFC 8446 §5.1: a plaintext record carries at most 2**14 bytes.
_MAX_RECORD = 1 << 14

_EXT_SERVER_NAME = 0
_EXT_ALPN = 16
_EXT_SUPPORTED_VERSIONS = 43


class Verdict(enum.Enum):
    NEED_MORE = "need more"
    NOT_TLS = "not TLS"
    MALFORMED = "malformed"
    TOO_LARGE = "too large"
    CLIENT_HELLO = "client hello"


@dataclass(frozen=True)
class ClientHello:
    """What interception decides on. ``sni`` is the server_name host name as sent (ASCII,
    lower-cased), or None; ``alpn`` the protocols offered, in order; ``record_version``
    the first record's version (e.g. 0x0301); ``legacy_version`` the hello's (0x0303 for
    TLS 1.2 and 1.3); ``supported_versions`` from that extension (TLS 1.3 clients)."""

    sni: str | None
    alpn: tuple[str, ...]
    record_version: int
    legacy_version: int
    supported_versions: tuple[int, ...]
    #: bytes of ``data`` the records carrying the ClientHello take (headers included)
    length: int


@dataclass(frozen=True)
class HelloPeek:
    verdict: Verdict
    hello: ClientHello | None = None
    #: why, for the log, when the verdict is NOT_TLS, MALFORMED or TOO_LARGE
    reason: str = ""


_NEED_MORE = HelloPeek(Verdict.NEED_MORE)


class _Malformed(Exception):
    pass


class _Reader:
    """Bounds-checked reading of a byte string; any overrun is ``_Malformed``."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise _Malformed(f"{what} runs past the end of the ClientHello")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, len_size: int, what: str) -> _Reader:
        return _Reader(self.take(self.uint(len_size, f"length of {what}"), what))

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def peek_client_hello(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = MAX_HELLO_BYTES,
    max_records: int = MAX_HELLO_RECORDS,
) -> HelloPeek:
    """The verdict on ``data``, the bytes received so far after the CONNECT's head."""
    data = bytes(data)
    if not data:
        return _NEED_MORE
    # The first record's header says whether this is TLS at all; judge each byte as soon
    # as it is there, so non-TLS is spliced without waiting for more.
    if data[0] != _HANDSHAKE:
        return HelloPeek(Verdict.NOT_TLS, reason=f"first byte {data[0]:#04x} is not a handshake")
    if len(data) >= 2 and data[1] != 0x03:
        return HelloPeek(Verdict.NOT_TLS, reason=f"record version major {data[1]} is not 3")
    if len(data) >= 3 and data[2] > 0x04:
        return HelloPeek(Verdict.NOT_TLS, reason=f"record version minor {data[2]} is unknown")
    body = bytearray()
    pos = 0
    records = 0
    wanted: int | None = None  # the ClientHello's length, once its 4-byte header is in
    record_version = 0
    while wanted is None or len(body) < wanted:
        if records >= max_records:
            return HelloPeek(
                Verdict.TOO_LARGE, reason=f"the ClientHello spans more than {max_records} records"
            )
        header = data[pos : pos + _RECORD_HEADER]
        if len(header) >= 1 and header[0] != _HANDSHAKE:
            return HelloPeek(
                Verdict.MALFORMED,
                reason=f"record type {header[0]} inside the ClientHello (not a handshake)",
            )
        if len(header) >= 2 and header[1] != 0x03:
            return HelloPeek(Verdict.MALFORMED, reason="a record's version is not 3.x")
        if len(header) < _RECORD_HEADER:
            return _NEED_MORE
        length = int.from_bytes(header[3:5], "big")
        if records == 0:
            record_version = int.from_bytes(header[1:3], "big")
        if length == 0:
            # RFC 8446 §5.1: zero-length handshake fragments are not allowed.
            return HelloPeek(Verdict.MALFORMED, reason="an empty handshake record")
        if length > _MAX_RECORD:
            return HelloPeek(Verdict.MALFORMED, reason=f"a record of {length} bytes (max 16384)")
        fragment = data[pos + _RECORD_HEADER : pos + _RECORD_HEADER + length]
        body += fragment
        records += 1
        if wanted is None and len(body) >= 4:
            if body[0] != _CLIENT_HELLO:
                return HelloPeek(
                    Verdict.MALFORMED, reason=f"handshake type {body[0]} is not a ClientHello"
                )
            wanted = 4 + int.from_bytes(body[1:4], "big")
            if wanted > max_bytes:
                return HelloPeek(
                    Verdict.TOO_LARGE,
                    reason=f"a ClientHello of {wanted - 4} bytes (max {max_bytes})",
                )
        if len(fragment) < length:
            return _NEED_MORE
        pos += _RECORD_HEADER + length
    if len(body) > wanted:
        # Another handshake message after the ClientHello in the same flight: a client
        # must wait for the server's answer first.
        return HelloPeek(Verdict.MALFORMED, reason="bytes after the ClientHello in its record")
    try:
        hello = _parse_hello(bytes(body[4:wanted]), record_version, pos)
    except _Malformed as exc:
        return HelloPeek(Verdict.MALFORMED, reason=str(exc))
    return HelloPeek(Verdict.CLIENT_HELLO, hello)


def _parse_hello(body: bytes, record_version: int, length: int) -> ClientHello:
    r = _Reader(body)
    legacy_version = r.uint(2, "the version")
    if legacy_version >> 8 != 3:
        raise _Malformed(f"ClientHello version {legacy_version:#06x} is not 3.x")
    r.take(32, "the random")
    session_id = r.vector(1, "the session id")
    if session_id.left > 32:
        raise _Malformed("a session id over 32 bytes")
    suites = r.vector(2, "the cipher suites")
    if suites.left == 0 or suites.left % 2:
        raise _Malformed("the cipher suite list is empty or of odd length")
    if r.vector(1, "the compression methods").left == 0:
        raise _Malformed("no compression method")
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    if r.left:
        extensions = r.vector(2, "the extensions")
        if r.left:
            raise _Malformed("bytes after the extensions")
        seen: set[int] = set()
        while extensions.left:
            ext_type = extensions.uint(2, "an extension type")
            ext = extensions.vector(2, "an extension")
            if ext_type in seen:
                raise _Malformed(f"extension {ext_type} given twice")
            seen.add(ext_type)
            if ext_type == _EXT_SERVER_NAME:
                sni = _server_name(ext)
            elif ext_type == _EXT_ALPN:
                alpn = _alpn(ext)
            elif ext_type == _EXT_SUPPORTED_VERSIONS:
                versions = _versions(ext)
    return ClientHello(
        sni=sni,
        alpn=alpn,
        record_version=record_version,
        legacy_version=legacy_version,
        supported_versions=versions,
        length=length,
    )


def _server_name(ext: _Reader) -> str | None:
    names = ext.vector(2, "the server name list")
    if ext.left:
        raise _Malformed("bytes after the server name list")
    host: str | None = None
    while names.left:
        kind = names.uint(1, "a server name type")
        name = names.vector(2, "a server name").data
        if kind != 0:
            continue  # only host_name (0) is defined; others are skipped (RFC 6066 §3)
        if host is not None:
            raise _Malformed("two host names in server_name")
        if not name:
            raise _Malformed("an empty host name in server_name")
        try:
            host = name.decode("ascii").lower()
        except UnicodeDecodeError:
            raise _Malformed("a server name that is not ASCII") from None
    return host


def _alpn(ext: _Reader) -> tuple[str, ...]:
    protocols = ext.vector(2, "the ALPN list")
    if ext.left:
        raise _Malformed("bytes after the ALPN list")
    out: list[str] = []
    while protocols.left:
        proto = protocols.vector(1, "an ALPN protocol").data
        if not proto:
            raise _Malformed("an empty ALPN protocol name")
        out.append(proto.decode("latin-1"))
    if not out:
        raise _Malformed("an empty ALPN list")
    return tuple(out)


def _versions(ext: _Reader) -> tuple[int, ...]:
    versions = ext.vector(1, "the supported versions")
    if ext.left or versions.left % 2 or not versions.left:
        raise _Malformed("a malformed supported_versions extension")
    return tuple(versions.uint(2, "a version") for _ in range(versions.left // 2))
