"""The fast lane: a fresh cache hit for a plain GET, answered without the general path.

Most of a busy proxy's requests are the same shape: ``GET http://host/path HTTP/1.1`` with
a Host field, a few ordinary fields, and a fresh stored response. The general path parses
such a request into a `Request`, routes it, checks it for loops, consults the cache's
rules and formats the answer, in a dozen calls; measured, that is more than half of a
1 KiB hit's CPU time (issue #5). The fast lane answers exactly these requests from the
raw head in one function, and declines everything else.

It works in two steps. `plain_get` recognises the request shape and checks the head as
strictly as `parse_request_head` (the field lines go through the same parser, and its
verdict on a field block is remembered, since clients send the same block again and
again). `serve_fresh_hit` then answers it from the cache if it can. When it cannot (a
miss, a stale response...), the general path serves the request from
`PlainGet.request()`, the `Request` that `parse_request_head` would have built, so the
head is not parsed twice.

Its contract, which tests/test_fastlane.py checks differentially against the general
path over generated requests: for any request head it either

- declines, having sent nothing and changed nothing, and the general path serves the
  request as if the fast lane did not exist; or
- sends byte for byte what the general path would send, counts the same hit, writes the
  same access-log line, and returns the same keep-alive verdict.

So the fast lane takes a request only when every check of the general path is known to
pass for it and no field it does not look at can change the outcome:

- the head is one strict match: method GET, an absolute-form ``http`` target already in
  its normal form (lower-case host, no default or redundant port, no fragment: the target
  *is* the cache key's URL), HTTP/1.1, and well-formed field lines;
- exactly one Host field, with a valid value; none of the fields that decide framing
  (Content-Length, Transfer-Encoding, Connection unless all it says is keep-alive,
  Expect), loops (Via), ranges (Range) or cache reuse (`DECISIVE_FIELDS`: Cache-Control,
  Pragma, conditionals);
- the cache front's gate says the URL alone decides (`caching.cache_front`, which the
  general path asks too: no mapping rules, caching on with no URL rules), the port
  is not one of cproxy's own, and the cache holds a fresh, non-varying response.
"""

from __future__ import annotations

import functools
import re
import time
from typing import Protocol

from cproxy.cache.httpcache import DECISIVE_FIELDS
from cproxy.directives import Config
from cproxy.errors import ClientProtocolError
from cproxy.http import Headers, Request
from cproxy.http.limits import MAX_REQUEST_LINE_BYTES
from cproxy.http.message import DEFAULT_PORTS, REG_NAME_TEXT, parse_field_block, valid_host_field
from cproxy.server.accesslog import AccessLog
from cproxy.server.caching import Front, ProxyCache, cache_front, hit_lines, url_key_of
from cproxy.server.responsestats import ResponseStats
from cproxy.server.sink import ClientSink

# The request line. The target is a normal-form absolute http URL: a lower-case host of
# at most 253 characters, as DNS allows (checked by `_plain_host`), a port only when it is
# not 80 and without leading zeros, a path starting with "/", and no "#".
_PLAIN_GET = re.compile(
    rb"GET (http://([a-z0-9._-]{1,253})(?::([1-9][0-9]{0,4}))?(/[\x21\x22\x24-\x7e]*)) HTTP/1\.1"
)
_REG_NAME = re.compile(REG_NAME_TEXT.encode())
# Fields whose presence sends the request down the general path (Connection too, unless
# all it says is keep-alive: see `_plain_fields`).
_GENERAL_PATH_FIELDS = frozenset(
    {"content-length", "transfer-encoding", "expect", "via", "range"} | DECISIVE_FIELDS
)


@functools.lru_cache(maxsize=256)
def _plain_host(host: bytes) -> bool:
    """A valid host name (as the general parser reads it) with no final dot to drop.
    Remembered: clients repeat the same few hosts (at most 253 bytes, by `_PLAIN_GET`)."""
    return _REG_NAME.fullmatch(host) is not None and not host.endswith(b".")


class _Fields:
    """A checked field block: its fields and index as `parse_request_head` makes them."""

    __slots__ = ("index", "pairs", "referer", "user_agent")

    def __init__(self, headers: Headers) -> None:
        self.pairs = tuple(headers)
        # Shared by every request with this block: Headers never change an index in place.
        self.index = headers.by_name()
        # What the access log shows of the block, read as the general path reads it, once.
        self.referer = headers.get("referer")
        self.user_agent = headers.get("user-agent")


def _plain_fields(block: bytes) -> _Fields | None:
    """The verdict on a field block (every field line with its CRLF): the parsed fields
    when the general parser accepts them, there is exactly one Host with a valid value,
    and none of `_GENERAL_PATH_FIELDS`; else None."""
    try:
        headers = parse_field_block(block, True)
    except ClientProtocolError:
        return None
    index = headers.by_name()
    hosts = index.get("host", ())
    if len(hosts) != 1 or not valid_host_field(hosts[0]):
        return None
    if not _GENERAL_PATH_FIELDS.isdisjoint(index):
        return None
    if "connection" in index:
        # Browsers (Firefox on every request) say "Connection: keep-alive", which for
        # an HTTP/1.1 request changes nothing the general path would do with a hit; any
        # other option (close, a field named hop-by-hop) is the general path's to read.
        options = headers.get_tokens("connection")
        if not options or any(option != "keep-alive" for option in options):
            return None
    return _Fields(headers)


# Clients send the same field block again and again (a browser's differ by little more
# than the request line, which is not part of the block): remember the verdicts.
# Bounded as `cproxy.memo` bounds its memos (only short arguments are kept), with the
# length checked by `plain_get` itself: one Python call less per request than the wrapper.
_FIELDS_MEMO_BYTES = 4096
_remembered_fields = functools.lru_cache(maxsize=256)(_plain_fields)


class PlainGet:
    """A request head of the shape the fast lane takes, checked."""

    __slots__ = ("fields", "host", "path", "port", "request_line", "target", "url_key")

    def __init__(self, line: _Line, fields: _Fields) -> None:
        self.target, self.host, self.port, self.path, self.url_key, self.request_line = line
        self.fields = fields

    def request(self) -> Request:
        """The `Request` that `parse_request_head` makes of this head (and, for a head
        from `bound_get`, `bind_to_authority` then makes of it)."""
        headers = Headers.with_index(list(self.fields.pairs), self.fields.index)
        req = Request("GET", self.target, 1, headers)
        req.form, req.scheme, req.host, req.port, req.path = (
            "absolute",
            "https" if self.target.startswith("https://") else "http",
            self.host,
            self.port,
            self.path,
        )
        return req


# A plain request line, read: target (also the URL: it is in normal form), host, port,
# path, the cache key of the URL, and the line as the access log shows it.
_Line = tuple[str, str, int, str, str, str]


def _plain_line(line: bytes) -> _Line | None:
    """The verdict on a request line (without its CRLF): read when it is a plain GET's."""
    m = _PLAIN_GET.fullmatch(line)
    if m is None:
        return None
    target, host, port_text, path = m.groups()
    if not _plain_host(host):
        return None
    if port_text is not None:
        port = int(port_text)
        if port == 80 or port > 65535:
            return None
    else:
        port = 80
    url = target.decode("ascii")
    return (
        url,
        host.decode("ascii"),
        port,
        path.decode("ascii"),
        url_key_of(url),
        f"GET {url} HTTP/1.1",
    )


# A proxy sees the same request lines again and again (every hit of a hot URL): the
# verdict on a line is remembered, as the field blocks' is, and a hit's line costs one
# lookup instead of a regular expression, three decodings and the URL's key.
_LINE_MEMO_BYTES = 1024
_remembered_line = functools.lru_cache(maxsize=1024)(_plain_line)


def plain_get(head: bytes) -> PlainGet | None:
    """``head`` as a `PlainGet`, or None when it is not one (the general path then parses
    it, and refuses it if it is malformed)."""
    line_end = head.find(b"\r\n")
    if line_end > MAX_REQUEST_LINE_BYTES:
        return None
    raw_line = head[:line_end]
    line = _remembered_line(raw_line) if line_end <= _LINE_MEMO_BYTES else _plain_line(raw_line)
    if line is None:
        return None
    block = head[line_end + 2 : -2]
    fields = _remembered_fields(block) if len(block) <= _FIELDS_MEMO_BYTES else _plain_fields(block)
    if fields is None:
        return None
    return PlainGet(line, fields)


# -- inside an intercepted connection (issue #19) ---------------------------------------------

# An origin-form GET, as browsers send inside TLS: the path as `_PLAIN_GET` takes it.
_BOUND_GET = re.compile(rb"GET (/[\x21\x22\x24-\x7e]*) HTTP/1\.1")


def _bound_line(line: bytes, scheme: str, host: str, port: int) -> _Line | None:
    """The verdict on an origin-form request line inside a connection bound to
    ``scheme://host:port`` (an IPv6 literal is left to the general path)."""
    m = _BOUND_GET.fullmatch(line)
    if m is None or ":" in host:
        return None
    path = m.group(1).decode("ascii")
    authority = host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    url = f"{scheme}://{authority}{path}"
    return (url, host, port, path, url_key_of(url), f"GET {url} HTTP/1.1")


_remembered_bound_line = functools.lru_cache(maxsize=1024)(_bound_line)


def bound_get(head: bytes, scheme: str, host: str, port: int) -> PlainGet | None:
    """`plain_get` for a connection whose requests are bound to ``scheme://host:port``
    (an intercepted one): an origin-form GET whose one Host field names exactly that
    authority as its URL writes it (``a.example``, or ``a.example:8443`` for another port)
    is what `bind_to_authority` would make the absolute request of this URL; anything
    else, another spelling of the same authority included, is the general path's to bind
    or refuse with 421."""
    line_end = head.find(b"\r\n")
    if line_end > _LINE_MEMO_BYTES:
        return None
    line = _remembered_bound_line(head[:line_end], scheme, host, port)
    if line is None:
        return None
    block = head[line_end + 2 : -2]
    fields = _remembered_fields(block) if len(block) <= _FIELDS_MEMO_BYTES else _plain_fields(block)
    if fields is None:
        return None
    authority = line[0][len(scheme) + 3 : len(line[0]) - len(line[3])]
    if fields.index["host"][0] != authority:
        return None
    return PlainGet(line, fields)


class FastLaneState(Protocol):
    """What the fast lane needs of the running proxy (`cproxy.server.runtime.Runtime`)."""

    config: Config
    access_log: AccessLog
    responses: ResponseStats

    @property
    def cache(self) -> ProxyCache | None: ...

    def listens_on_port(self, port: int | None) -> bool: ...


def record_lane_request(
    state: FastLaneState,
    plain: PlainGet,
    client_ip: str,
    started: float,
    status: int,
    sent: int,
    origin: str,
    cache: str,
    user: str | None = None,
    protocol: str = "-",
) -> None:
    """What the general path records of a request a lane served (the response counters
    and the access log line), without an Outcome of the general path's to carry it.
    ``started`` is the lane's monotonic start; the rest are the log line's fields."""
    elapsed_s = time.monotonic() - started
    state.responses.record(status, elapsed_s)
    if state.access_log.enabled:
        fields = plain.fields
        state.access_log.write(
            client_ip,
            plain.request_line,
            status,
            sent,
            fields.referer,
            fields.user_agent,
            elapsed_s,
            origin,
            cache,
            user,
            protocol,
        )


def serve_fresh_hit(
    state: FastLaneState, sink: ClientSink, client_ip: str, plain: PlainGet, keep: bool
) -> bool | None:
    """Answer ``plain`` from the cache if it has a fresh stored response.

    ``keep`` is the client side's keep-alive verdict for a request that asks to persist
    (a plain GET does). Returns None, having done nothing, when the general path must
    serve the request; otherwise the keep-alive verdict, as the general path returns it.
    """
    started = time.monotonic()
    cache = state.cache
    if cache is None or cache_front(state.config, cache) is not Front.URL_ALONE:
        return None  # the general path asks the same gate (`cache_front`)
    if state.listens_on_port(plain.port):
        return None  # perhaps aimed at cproxy itself: the general path decides
    url_key = plain.url_key
    if cache.loopback_origins.hidden_from(url_key, client_ip, state.config):
        return None  # from a loopback-only service: the general path refuses it
    fresh = cache.http.fresh_entry(url_key, cache.clock())
    if fresh is None:
        return None
    entry, age = fresh
    data = entry.head_with_age(int(age), hit_lines(cache.hit_status, entry.lifetime_s - age, keep))
    sent = 0
    try:
        sink.send_response(data, entry.body)
        sent = len(data) + len(entry.body)
        cache.fast_hits += 1
    finally:
        record_lane_request(state, plain, client_ip, started, entry.status, sent, "-", "hit")
    return keep
