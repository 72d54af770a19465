"""The access log: NCSA combined format plus response time, origin socket and cache status.

Lines are buffered and flushed by a greenlet once a second (and at close), so a
request costs one list append, not a write system call.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO

import gevent

log = logging.getLogger("cproxy")

FLUSH_INTERVAL_S = 1.0
# Flush early when this many lines are waiting, so a burst cannot grow the buffer without bound.
MAX_BUFFERED_LINES = 4096


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class AccessLog:
    """``path``: a file name, ``-`` for standard output, empty for no log."""

    def __init__(self, path: str) -> None:
        self._lines: list[str] = []
        self._stream: IO[str] | None = None
        self._owned = False
        self._flusher: gevent.Greenlet | None = None
        # strftime costs microseconds: format the stamp once per second.
        self._stamp_second = -1
        self._stamp = ""
        self._open(path)

    def _open(self, path: str) -> None:
        if path == "-":
            self._stream, self._owned = sys.stdout, False
        elif path:
            self._stream, self._owned = open(path, "a", encoding="utf-8"), True  # noqa: SIM115
        else:
            self._stream, self._owned = None, False

    @property
    def enabled(self) -> bool:
        """False when AccessLog is empty: callers need not even format a line."""
        return self._stream is not None

    def reopen(self, path: str) -> None:
        """Switch to another file (AccessLog changed, or log rotation)."""
        self.flush()
        if self._owned and self._stream is not None:
            self._stream.close()
        self._open(path)

    def start(self) -> None:
        if self._flusher is None:
            self._flusher = gevent.spawn(self._flush_loop)

    def _flush_loop(self) -> None:
        while True:
            gevent.sleep(FLUSH_INTERVAL_S)
            self.flush()

    def write(
        self,
        client: str,
        request_line: str,
        status: int,
        sent_bytes: int,
        referer: str | None,
        user_agent: str | None,
        elapsed_s: float,
        origin: str,
        cache: str = "-",
    ) -> None:
        """One request. ``origin`` is ``new``, ``reused`` or ``-`` (no origin socket used);
        a missing or empty ``referer`` or ``user_agent`` is logged as ``-``."""
        if self._stream is None:
            return
        now = int(time.time())
        if now != self._stamp_second:
            self._stamp_second = now
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
        stamp = self._stamp
        self._lines.append(
            f'{client} - - [{stamp}] "{_quote(request_line)}" {status} {sent_bytes} '
            f'"{_quote(referer or "-")}" "{_quote(user_agent or "-")}" '
            f"{elapsed_s * 1000:.1f}ms origin={origin} cache={cache}\n"
        )
        if len(self._lines) >= MAX_BUFFERED_LINES:
            self.flush()

    def flush(self) -> None:
        if not self._lines or self._stream is None:
            self._lines.clear()
            return
        lines, self._lines = self._lines, []
        try:
            self._stream.write("".join(lines))
            self._stream.flush()
        except OSError as exc:
            log.error("cannot write the access log: %s", exc)

    def close(self) -> None:
        if self._flusher is not None:
            self._flusher.kill()
            self._flusher = None
        self.flush()
        if self._owned and self._stream is not None:
            self._stream.close()
        self._stream = None
