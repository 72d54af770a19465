"""The chunked transfer coding (RFC 9112 §7.1): an incremental decoder and an encoder.

cproxy never forwards chunk framing as received: bodies are decoded here and,
when they must stay chunked, re-chunked by `encode_chunk` (DESIGN.md §5 rule 1).
Chunk extensions and trailer fields are parsed, checked and dropped.
"""

from __future__ import annotations

import re

from cproxy.errors import ClientProtocolError, OriginProtocolError, ProtocolError
from cproxy.http.limits import MAX_CHUNK_LINE_BYTES, MAX_CHUNK_SIZE_DIGITS, MAX_TRAILER_BYTES

LAST_CHUNK = b"0\r\n\r\n"

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# chunk-ext (RFC 9112 §7.1.1), exactly: extensions are dropped, but one that two
# parsers could split differently is refused rather than guessed at.
_EXT = (
    rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
)
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]+)(" + _EXT + rb")\r\n")
_TRAILER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*\r\n")

# Decoder states.
_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


def encode_chunk(data: bytes) -> bytes:
    """One chunk carrying ``data``; b"" gives b"" (a zero-size chunk would end the body)."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


class ChunkedDecoder:
    """Feed it the bytes of a chunked body as they arrive; it returns the data.

    ``client`` chooses the error type: a client's bad framing is a 400
    (`ClientProtocolError`), an origin's is an `OriginProtocolError` (502).
    After the last chunk and trailers, ``done`` is true and ``leftover`` holds
    whatever followed the body (the next pipelined message, or garbage).
    """

    __slots__ = ("_line", "_remaining", "_state", "_trailer_bytes", "client", "done", "leftover")

    def __init__(self, *, client: bool) -> None:
        self.client = client
        self.done = False
        self.leftover = b""
        self._state = _SIZE
        self._remaining = 0
        self._line = b""
        self._trailer_bytes = 0

    def _error(self, message: str) -> ProtocolError:
        if self.client:
            return ClientProtocolError(400, message)
        return OriginProtocolError(message)

    def feed(self, data: bytes) -> list[bytes]:
        """Decode ``data``; returns the body pieces it completed (possibly none)."""
        if self.done:
            # Bytes fed after the body are more of what followed it.
            self.leftover += data
            return []
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end and not self.done:
            if self._state == _DATA:
                take = min(self._remaining, end - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _DATA_END
                continue
            nl = data.find(b"\n", pos)
            if nl == -1:
                self._line += data[pos:]
                if self._state == _DATA_END and not b"\r\n".startswith(self._line):
                    # Refuse at once rather than buffer up to a line's limit.
                    raise self._error("chunk data not followed by CRLF")
                if len(self._line) > MAX_CHUNK_LINE_BYTES:
                    raise self._error("chunk line too long")
                break
            line = self._line + data[pos : nl + 1]
            self._line = b""
            pos = nl + 1
            if len(line) > MAX_CHUNK_LINE_BYTES:
                raise self._error("chunk line too long")
            self._line_done(line)
        if self.done:
            self.leftover = data[pos:]
        return out

    def _line_done(self, line: bytes) -> None:
        if self._state == _SIZE:
            m = _SIZE_LINE.fullmatch(line)
            if m is None or len(m.group(1)) > MAX_CHUNK_SIZE_DIGITS:
                raise self._error(f"invalid chunk size line {line[:40]!r}")
            self._remaining = int(m.group(1), 16)
            self._state = _DATA if self._remaining else _TRAILER
        elif self._state == _DATA_END:
            if line != b"\r\n":
                raise self._error("chunk data not followed by CRLF")
            self._state = _SIZE
        else:  # _TRAILER
            if line == b"\r\n":
                self.done = True
                return
            self._trailer_bytes += len(line)
            if self._trailer_bytes > MAX_TRAILER_BYTES:
                raise self._error("trailer section too large")
            if not _TRAILER_LINE.fullmatch(line):
                raise self._error("malformed trailer field")
