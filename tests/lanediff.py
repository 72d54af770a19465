"""What the lanes' differential tests (test_fastlane, test_misslane) compare: the bytes a
client got and the access log lines written, with the parts that vary between two runs
of one request made equal."""

from __future__ import annotations

import contextlib
import re
import socket
from pathlib import Path

from tests.hostile import read_all
from tests.support import ProxyThread

# Access-log fields that vary between two runs of one request: the time, the response
# time, and whether a pooled origin socket was new or reused ("-", none, stays "-").
_LOG_VARIES = [
    (re.compile(rb" \[[^]]*\] "), b" [-] "),
    (re.compile(rb" [0-9.]+ms "), b" -ms "),
    (re.compile(rb" origin=(?:new|reused) "), b" origin=used "),
]
_DATE = re.compile(rb"\r\nDate: [^\r]*")


def send(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection and read until the proxy closes it."""
    with contextlib.closing(socket.create_connection(("127.0.0.1", port), timeout=5)) as s:
        s.sendall(data)
        raw, _closed = read_all(s, 5.0)
    return raw


def log_mark(proxy: ProxyThread) -> int:
    """Where the access log ends now (its lines flushed)."""
    proxy.call(proxy.runtime.access_log.flush)
    log: Path = proxy.access_log_path  # type: ignore[attr-defined]
    return log.stat().st_size


def log_since(proxy: ProxyThread, mark: int) -> bytes:
    """The access log lines written after ``mark``, their varying fields made equal."""
    proxy.call(proxy.runtime.access_log.flush)
    log: Path = proxy.access_log_path  # type: ignore[attr-defined]
    with open(log, "rb") as f:
        f.seek(mark)
        lines = f.read()
    for pattern, replacement in _LOG_VARIES:
        lines = pattern.sub(replacement, lines)
    return lines


def undated(raw: bytes) -> bytes:
    """``raw`` with every Date field's value made equal (cproxy's own answers carry the
    real time)."""
    return _DATE.sub(b"\r\nDate: -", raw)
