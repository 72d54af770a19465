"""The fast lane: a fresh cache hit for a plain GET, answered without the general path.

Most of a busy proxy's requests are the same shape: ``GET http://host/path HTTP/1.1`` with
a Host field, a few ordinary fields, and a fresh stored response. The general path parses
such a request into a `Request`, routes it, checks it for loops, consults the cache's
rules and formats the answer, in a dozen calls; measured, that is more than half of a
1 KiB hit's CPU time (issue #5). The fast lane answers exactly these requests from the
raw head in one function, and declines everything else.

Its contract, which tests/test_fastlane.py checks differentially against the general
path over generated requests: for any request head it either

- declines (returns None) having sent nothing and changed nothing, and the general path
  then parses and serves the request as if the fast lane did not exist; or
- sends byte for byte what the general path would send, counts the same hit, writes the
  same access-log line, and returns the same keep-alive verdict.

So the fast lane takes a request only when every check of the general path is known to
pass for it and no field it does not look at can change the outcome:

- the head is one strict match: method GET, an absolute-form ``http`` target already in
  its normal form (lower-case host, no default or redundant port, no fragment: the target
  *is* the cache key's URL), HTTP/1.1, and well-formed field lines;
- exactly one Host field, with a valid value; none of the fields that decide framing
  (Content-Length, Transfer-Encoding, Connection, Expect), loops (Via), ranges (Range)
  or cache reuse (`DECISIVE_FIELDS`: Cache-Control, Pragma, conditionals);
- no mapping rules, caching on with no URL rules (`HttpCache.shortcut_allowed`), the port
  is not one of cproxy's own, and the cache holds a fresh, non-varying response.
"""

from __future__ import annotations

import functools
import re
import string
import time
from typing import TYPE_CHECKING

from cproxy.cache.httpcache import DECISIVE_FIELDS
from cproxy.http.limits import MAX_HEADER_COUNT, MAX_REQUEST_LINE_BYTES
from cproxy.http.message import _REG_NAME_TEXT, _valid_host_field
from cproxy.server.caching import hit_lines, send_response, url_key_of

if TYPE_CHECKING:
    from cproxy.server.handler import ClientConnection

# The request line. The target is a normal-form absolute http URL: a lower-case host
# (checked by `_plain_host`), a port only when it is not 80 and without leading zeros, a
# path starting with "/", and no "#".
_PLAIN_GET = re.compile(
    rb"GET (http://([a-z0-9._-]+)(?::([1-9][0-9]{0,4}))?/[\x21\x22\x24-\x7e]*) HTTP/1\.1"
)
_REG_NAME = re.compile(_REG_NAME_TEXT.encode())


@functools.lru_cache(maxsize=256)
def _plain_host(host: bytes) -> bool:
    """A valid host name (as the general parser reads it) with no final dot to drop.
    Remembered: clients repeat the same few hosts."""
    return _REG_NAME.fullmatch(host) is not None and not host.endswith(b".")


# The field lines are checked with bytes.translate (C speed, no regex over every byte):
# deleting every octet a field line may hold (RFC 9110 §5.5: no controls but HTAB) must
# leave exactly one CRLF per line (so no bare CR or LF either), and the names before the
# first colons, deleted of token characters, must leave nothing.
_FIELD_OCTETS = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
_TOKEN_OCTETS = ("!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters).encode()
# Each line's name (lower-cased block, every line preceded by its LF).
_NAMES = re.compile(rb"\n([^:\n]*):")
# Fields whose presence sends the request down the general path.
_GENERAL_PATH_FIELDS = frozenset(
    name.encode()
    for name in {"content-length", "transfer-encoding", "connection", "expect", "via", "range"}
    | DECISIVE_FIELDS
)


# Field blocks up to this size have their verdicts remembered (at most 256 of them).
_MEMO_BLOCK_BYTES = 4096


def _plain_fields(block: bytes) -> tuple[str | None, str | None] | None:
    """The verdict on a field block: ``block`` runs from the LF ending the request line to
    the CRLF ending the last field line.

    None unless every line is a well-formed field line, there are at most
    `MAX_HEADER_COUNT`, exactly one Host with a valid value, and none of
    `_GENERAL_PATH_FIELDS`; else the Referer and User-Agent values, for the access log.
    """
    lowered = block.lower()
    names = _NAMES.findall(lowered)
    if (
        len(names) > MAX_HEADER_COUNT
        or block.translate(None, _FIELD_OCTETS) != b"\n" + b"\r\n" * len(names)
        or b"".join(names).translate(None, _TOKEN_OCTETS)
        or not all(names)
        or not _GENERAL_PATH_FIELDS.isdisjoint(names)
        or names.count(b"host") != 1
        or not _valid_host_field(_value(block, lowered, b"host") or "-")
    ):
        return None
    return _value(block, lowered, b"referer"), _value(block, lowered, b"user-agent")


# Clients send the same field block again and again (a browser's differ by little more
# than the request line, which is not part of the block): remember the verdicts.
_plain_fields_memo = functools.lru_cache(maxsize=256)(_plain_fields)


def _value(block: bytes, lowered: bytes, name: bytes) -> str | None:
    """The first value of field ``name`` (lower case) in a checked field block, without
    the whitespace around it; ``lowered`` is the block in lower case."""
    i = lowered.find(b"\n" + name + b":")
    if i == -1:
        return None
    i += len(name) + 2
    return block[i : block.index(b"\r", i)].strip(b" \t").decode("latin-1")


def serve_fresh_hit(cc: ClientConnection, head: bytes) -> bool | None:
    """Answer ``head`` from the cache if it is a plain GET with a fresh stored response.

    Returns None, having done nothing, when the general path must serve the request;
    otherwise the keep-alive verdict, as `ClientConnection._serve` would return it.
    """
    started = time.monotonic()
    rt = cc.rt
    cache = rt.cache
    cfg = rt.config
    if cache is None or not cfg.caching or cfg.mapping_rules or not cache.http.shortcut_allowed:
        return None
    line_end = head.find(b"\r\n")
    if line_end > MAX_REQUEST_LINE_BYTES:
        return None
    m = _PLAIN_GET.fullmatch(head, 0, line_end)
    if m is None:
        return None
    host, port_text = m.group(2, 3)
    if not _plain_host(host):
        return None
    if port_text is not None:
        port = int(port_text)
        if port == 80 or port > 65535:
            return None
    else:
        port = 80
    block = head[line_end + 1 : -2]
    check = _plain_fields_memo if len(block) <= _MEMO_BLOCK_BYTES else _plain_fields
    fields = check(block)
    if fields is None:
        return None
    for _, own_port in rt.own_addresses():
        if own_port == port:
            return None  # perhaps aimed at cproxy itself: the general path decides
    url = m.group(1).decode("ascii")
    fresh = cache.http.fresh_entry(url_key_of(url), cache.clock())
    if fresh is None:
        return None
    entry, age = fresh
    keep = cfg.proxy_persistence and cc.served < cfg.max_persist_request and not rt.stopping
    data = entry.head_with_age(int(age), hit_lines(cache.hit_status, entry.lifetime_s - age, keep))
    if cc.sock.timeout != cfg.read_timeout_s:
        cc.sock.settimeout(cfg.read_timeout_s)
    sent = 0
    try:
        send_response(cc, data, entry.body)
        sent = len(data) + len(entry.body)
        cache.fast_hits += 1
    finally:
        if rt.access_log.enabled:
            rt.access_log.write(
                cc.client_ip,
                f"GET {url} HTTP/1.1",
                entry.status,
                sent,
                fields[0],
                fields[1],
                time.monotonic() - started,
                "-",
                "hit",
            )
    return keep
