"""The access log: one line per request, in the format AccessLogFormat chooses.

Formats (a table, `FORMATS`):

* ``cproxy``: NCSA combined plus response time, origin socket, cache result and the
  protocol that reached the origin (``proto=1.1``, ``proto=2`` for HTTP/2, ``proto=-``);
* ``combined``: NCSA combined exactly (Apache's and nginx's default; GoAccess reads it);
* ``squid``: Squid's native format (``%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %un
  %Sh/%<a %mt``), for tools written for Squid;
* ``json``: one JSON object per line (``origin_protocol`` for the protocol).

Lines are buffered and written by a greenlet every `FLUSH_INTERVAL_S` (and at close,
and as soon as `MAX_BUFFERED_LINES` wait), so a request costs one format and one list
append, not a write system call. The price: a crash (kill -9, power loss) loses the lines
not yet written, at most the last second's and never more than `MAX_BUFFERED_LINES`.
SIGTERM, reopening and a change of file write them first.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import IO, NamedTuple

import gevent

log = logging.getLogger("cproxy")

FLUSH_INTERVAL_S = 1.0
# Flush early when this many lines are waiting, so a burst cannot grow the buffer without bound.
# A flush holds the waiting lines three times over (their figures, the formatted text and
# its encoding): 4,096 lines were 3 MiB of the proxy's peak RSS under the benchmark's load
# (issue #21); 512 are a few hundred KiB and still a batch (a write per 512 requests).
MAX_BUFFERED_LINES = 512


def _quote(text: str) -> str:
    # Three per line, on every request: most texts have nothing to escape, and the two
    # membership tests cost less than the two replace() calls.
    if "\\" not in text and '"' not in text:
        return text
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _token(text: str | None) -> str:
    """A field that must stay one word (a user name): spaces and quotes escaped."""
    if not text:
        return "-"
    return _quote(text).replace(" ", "%20")


# Squid's result codes for cproxy's cache results; anything else is a miss.
_SQUID_CODES = {
    "hit": "TCP_MEM_HIT",
    "hit-collapsed": "TCP_MEM_HIT",
    "stale-while-revalidate": "TCP_STALE_HIT",
    "stale-if-error": "TCP_REFRESH_FAIL_OLD",
    "revalidated": "TCP_REFRESH_UNMODIFIED",
    "only-if-cached": "TCP_MISS",
    "purge": "TCP_MISS",
}


class _Line(NamedTuple):
    """Everything a format may show of one request."""

    client: str
    request_line: str
    status: int
    sent_bytes: int
    referer: str | None
    user_agent: str | None
    elapsed_s: float
    origin: str
    cache: str
    user: str | None
    protocol: str
    now: float


class AccessLog:
    """``path``: a file name, ``-`` for standard output, empty for no log; ``fmt``: a
    name in `FORMATS`."""

    def __init__(self, path: str, fmt: str = "cproxy") -> None:
        # The requests not yet written: their figures, as `_Line`'s fields (see `write`).
        self._pending: list[tuple] = []
        self._stream: IO[str] | None = None
        self._owned = False
        self._flusher: gevent.Greenlet | None = None
        self.path = path
        # strftime costs microseconds: format the stamp once per second.
        self._stamp_second = -1
        self._stamp = ""
        self.format = fmt
        self._open(path)

    @property
    def format(self) -> str:
        """The format's name (AccessLogFormat); set it to switch formats."""
        return self._format_name

    @format.setter
    def format(self, name: str) -> None:
        self._format_name = name
        self._format_line: Callable[[AccessLog, _Line], str] = FORMATS[name]

    def _open(self, path: str) -> None:
        self.path = path
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

    def reopen(self, path: str | None = None) -> None:
        """Write what is buffered, close, and open ``path`` (default: the same name again,
        so that after log rotation moved the file, lines go to a new one)."""
        self.flush()
        if self._owned and self._stream is not None:
            self._stream.close()
        self._open(self.path if path is None else path)

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
        user: str | None = None,
        protocol: str = "-",
    ) -> None:
        """One request. ``origin`` is ``new``, ``reused`` or ``-`` (no origin socket used);
        ``protocol`` the one that reached the origin (``1.1``, ``2``) or ``-``; a missing
        or empty ``referer``, ``user_agent`` or ``user`` is logged as ``-``.

        The line is kept as its figures and formatted when the buffer is written
        (`flush`), with the lines before it: formatting one line in the middle of its
        request measured about 5 µs inside a busy proxy (its code and data cold after
        the request's own work), formatting them in a batch about 1 µs each. A crash
        loses what a buffered line would have lost: at most a second, or 512 lines."""
        if self._stream is None:
            return
        pending = self._pending
        # A plain tuple (one bytecode to build), read back as a `_Line` by `flush`.
        pending.append(
            (
                client,
                request_line,
                status,
                sent_bytes,
                referer,
                user_agent,
                elapsed_s,
                origin,
                cache,
                user,
                protocol,
                time.time(),
            )
        )
        if len(pending) >= MAX_BUFFERED_LINES:
            self.flush()

    def _format(self, pending: list[tuple]) -> str:
        """The buffered requests' lines, in the current format."""
        if self._format_line is _cproxy_line:
            stamp = self.ncsa_stamp
            return "".join(
                [
                    f"{client} - {_token(user) if user else '-'} [{stamp(now)}] "
                    f'"{_quote(request_line)}" {status} {sent} '
                    f'"{_quote(referer or "-")}" "{_quote(user_agent or "-")}" '
                    f"{elapsed_s * 1000:.1f}ms origin={origin} cache={cache} proto={protocol}\n"
                    for (
                        client,
                        request_line,
                        status,
                        sent,
                        referer,
                        user_agent,
                        elapsed_s,
                        origin,
                        cache,
                        user,
                        protocol,
                        now,
                    ) in pending
                ]
            )
        format_line = self._format_line
        return "".join([format_line(self, _Line._make(figures)) for figures in pending])

    def ncsa_stamp(self, now: float) -> str:
        """``[10/Oct/2000:13:55:36 -0700]``'s inside, computed once per second."""
        second = int(now)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
        return self._stamp

    def flush(self) -> None:
        if not self._pending or self._stream is None:
            self._pending.clear()
            return
        pending, self._pending = self._pending, []
        try:
            self._stream.write(self._format(pending))
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


def _cproxy_line(log_: AccessLog, x: _Line) -> str:
    # Never called: AccessLog._format formats this one inline, a batch at a time. Kept
    # so the table is complete.
    raise AssertionError("the cproxy format is written inline")


def _combined_line(log_: AccessLog, x: _Line) -> str:
    return (
        f"{x.client} - {_token(x.user)} [{log_.ncsa_stamp(x.now)}] "
        f'"{_quote(x.request_line)}" {x.status} {x.sent_bytes} '
        f'"{_quote(x.referer or "-")}" "{_quote(x.user_agent or "-")}"\n'
    )


def _squid_line(log_: AccessLog, x: _Line) -> str:
    method, _, rest = x.request_line.partition(" ")
    target = rest.rsplit(" ", 1)[0] if " " in rest else rest
    if x.status in (403, 407):
        code = "TCP_DENIED"
    elif method == "CONNECT":
        code = "TCP_TUNNEL"
    else:
        code = _SQUID_CODES.get(x.cache, "TCP_MISS")
    peer = "HIER_NONE/-" if x.origin == "-" else f"HIER_DIRECT/{_host_of(method, target)}"
    return (
        f"{x.now:.3f} {round(x.elapsed_s * 1000):6d} {x.client} {code}/{x.status:03d} "
        f"{x.sent_bytes} {method} {target} {_token(x.user)} {peer} -\n"
    )


def _host_of(method: str, target: str) -> str:
    """The origin host of an absolute URL, or of a CONNECT's host:port."""
    if method == "CONNECT":
        return target.rsplit(":", 1)[0].strip("[]")
    _, _, rest = target.partition("://")
    authority = rest.split("/", 1)[0]
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    return authority.rsplit(":", 1)[0] if ":" in authority else authority or "-"


def _json_line(log_: AccessLog, x: _Line) -> str:
    method, _, rest = x.request_line.partition(" ")
    target, _, version = rest.rpartition(" ")
    millis = int(x.now % 1 * 1000)
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(x.now)) + f".{millis:03d}Z",
        "client": x.client,
        "user": x.user or None,
        "method": method,
        "target": target,
        "version": version,
        "status": x.status,
        "bytes": x.sent_bytes,
        "referer": x.referer or None,
        "user_agent": x.user_agent or None,
        "elapsed_ms": round(x.elapsed_s * 1000, 3),
        "origin": x.origin,
        "cache": x.cache,
        "origin_protocol": x.protocol,
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


#: AccessLogFormat's values, each with the function writing its line.
FORMATS: dict[str, Callable[[AccessLog, _Line], str]] = {
    "cproxy": _cproxy_line,
    "combined": _combined_line,
    "squid": _squid_line,
    "json": _json_line,
}
