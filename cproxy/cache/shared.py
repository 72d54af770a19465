"""Stored responses as values of the shared tier (Redis), and back: pure, no I/O.

A value carries everything RFC 9111 needs to decide on any node (§4.2.3's request and
response times, the stored header fields with the origin's Age, the Vary-selecting
request values of §4.1), so freshness, age and validation are computed by the node
that reads it exactly as by the node that stored it (clocks synchronised, as for any
HTTP cache cluster). The reading node rebuilds the `Entry` with its own settings.

Layout of a value::

    b"CPXE" | version (1 byte) | meta length (4 bytes, big-endian) | meta (JSON) | body

The meta names the URL key and the body's length; `decode_entry` checks the magic, the
version, both lengths and the key, and raises `MalformedEntry` for anything else: a value
that does not check out is never served (DESIGN.md §5.11). A value of another version is
refused so, as foreign: during a rolling upgrade it is a miss, never misread.

The meta also says whether the URL was fetched from a LoopbackDestinations address on the
node that wrote it (``loopback_origin``, since version 2): the reading node notes that
URL as its own fetch would have (`cproxy.server.destinations.LoopbackOrigins`), so a
client that may not reach loopback is not served another node's copy either.

Keys are ``<namespace>:e:<sha1 of the URL key>`` (one Redis hash per URL, one field per
variant), ``<namespace>:l:<sha1>`` (the fetch lease) and the pub/sub channel
``<namespace>:events``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from cproxy.cache.cachecontrol import delta_seconds
from cproxy.cache.policy import NEVER_REPLAYED_FIELDS, CacheSettings, SecondaryKey
from cproxy.cache.store import Entry
from cproxy.errors import CproxyError

MAGIC = b"CPXE"
# 2: the meta's loopback_origin. A version-1 value (which lacks it) is refused, not read
# as "not from loopback".
FORMAT_VERSION = 2
_PREFIX = struct.Struct(">4sBI")  # magic, version, meta length

# Pub/sub messages: one letter, a space, the URL key.
PURGED = b"p"  # drop your in-process copies of this URL
SETTLED = b"s"  # the fetch lease of this URL is over (its entry, if any, is written)


class MalformedEntry(CproxyError):
    """A value read from the shared tier is not a valid entry for the key it was read as."""


@dataclass(frozen=True, slots=True)
class SharedEntry:
    """A decoded value: the entry, and whether its URL was fetched from a
    LoopbackDestinations address (by whichever node wrote it)."""

    entry: Entry
    loopback_origin: bool


def url_digest(url_key: str) -> str:
    """A fixed-length name for a URL key (keys stay short however long the URL)."""
    return hashlib.sha1(url_key.encode("utf-8", "surrogateescape")).hexdigest()


def entry_key(namespace: str, url_key: str) -> str:
    return f"{namespace}:e:{url_digest(url_key)}"


def lease_key(namespace: str, url_key: str) -> str:
    return f"{namespace}:l:{url_digest(url_key)}"


def events_channel(namespace: str) -> str:
    return f"{namespace}:events"


def variant_field(entry: Entry) -> str:
    """The hash field of an entry's variant: its Vary names and selecting values."""
    return json.dumps([entry.vary, entry.secondary_key], separators=(",", ":"))


def event_message(kind: bytes, url_key: str) -> bytes:
    return kind + b" " + url_key.encode("utf-8", "surrogateescape")


def parse_event(message: bytes) -> tuple[bytes, str] | None:
    """``(kind, url_key)`` of a pub/sub message, None when it is not one of ours."""
    kind, sep, key = message.partition(b" ")
    if not sep or kind not in (PURGED, SETTLED) or not key:
        return None
    return kind, key.decode("utf-8", "surrogateescape")


def shared_ttl_s(entry: Entry) -> float:
    """How long the shared tier keeps ``entry``: its freshness lifetime plus its longest
    stale allowance (RFC 5861's stale-while-revalidate and stale-if-error), less the age it
    already has; 0 when it is not worth writing.

    An entry with a validator (ETag, Last-Modified) is kept a further lifetime (at least a
    minute) so that another node can still revalidate it with a 304 instead of fetching it
    whole; Redis evicts it earlier under memory pressure anyway (maxmemory + LRU/LFU).
    """
    lifetime = max(0.0, entry.lifetime_s)
    allowances = [
        float(delta_seconds(entry.cc.get("stale-while-revalidate")) or 0),
        float(delta_seconds(entry.cc.get("stale-if-error")) or 0),
    ]
    if entry.has_validator():
        allowances.append(max(lifetime, 60.0))
    ttl = lifetime + max(allowances) - max(0.0, entry.initial_age_s)
    return max(0.0, ttl)


def encode_entry(entry: Entry, *, loopback_origin: bool) -> bytes:
    """The shared-tier value of ``entry``; ``loopback_origin``: its URL was fetched from
    a LoopbackDestinations address (asked of every writer: a value without it would let
    another node serve a loopback service's response to any client)."""
    meta = {
        "key": entry.url_key,
        "status": entry.status,
        "reason": entry.reason,
        "headers": entry.headers,
        "age": entry.age_value,
        "request_time": entry.request_time,
        "response_time": entry.response_time,
        "selecting": [[name, value] for name, value in entry.secondary_key],
        "body_len": len(entry.body),
        "loopback_origin": loopback_origin,
    }
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode("utf-8", "surrogateescape")
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(meta_bytes)) + meta_bytes + entry.body


def _pairs(value: Any, what: str) -> list[tuple[str, str]]:
    if not isinstance(value, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in value
    ):
        raise MalformedEntry(f"{what} are not a list of name/value pairs")
    return [(p[0], p[1]) for p in value]


def _number(meta: dict[str, Any], name: str) -> float:
    value = meta.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedEntry(f"{name} is not a number")
    return float(value)


def decode_entry(value: bytes, url_key: str, settings: CacheSettings) -> SharedEntry:
    """The entry a shared-tier value holds for ``url_key``, with its loopback mark; raises
    `MalformedEntry` when the value is not one (foreign, truncated, another version or
    another key)."""
    if len(value) < _PREFIX.size:
        raise MalformedEntry("shorter than the entry prefix")
    magic, version, meta_len = _PREFIX.unpack_from(value)
    if magic != MAGIC:
        raise MalformedEntry("not a cproxy entry")
    if version != FORMAT_VERSION:
        raise MalformedEntry(f"format version {version}, not {FORMAT_VERSION}")
    meta_end = _PREFIX.size + meta_len
    if meta_end > len(value):
        raise MalformedEntry("meta length runs past the value")
    try:
        meta = json.loads(value[_PREFIX.size : meta_end].decode("utf-8", "surrogateescape"))
    except ValueError as exc:
        raise MalformedEntry(f"meta is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise MalformedEntry("meta is not an object")
    if meta.get("key") != url_key:
        raise MalformedEntry("stored for another URL")
    body = value[meta_end:]
    if meta.get("body_len") != len(body):
        raise MalformedEntry("body length does not match")
    status, reason, age = meta.get("status"), meta.get("reason"), meta.get("age")
    if not isinstance(status, int) or not 100 <= status <= 999 or not isinstance(reason, str):
        raise MalformedEntry("bad status line")
    if not isinstance(age, int) or age < 0:
        raise MalformedEntry("bad age")
    loopback_origin = meta.get("loopback_origin")
    if not isinstance(loopback_origin, bool):
        raise MalformedEntry("loopback_origin is not true or false")
    headers = _pairs(meta.get("headers"), "headers")
    selecting = meta.get("selecting")
    if not isinstance(selecting, list) or not all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in selecting
    ):
        raise MalformedEntry("selecting values are not name/value pairs")
    if any(name.lower() == "age" for name, _ in headers):
        raise MalformedEntry("stored headers carry an Age")
    if any(name.lower() in NEVER_REPLAYED_FIELDS for name, _ in headers):
        # cproxy never stores them (one user's state): such a value was not written by it.
        raise MalformedEntry("stored headers carry a Set-Cookie")
    req_fields = [(p[0], p[1]) for p in selecting if isinstance(p[1], str)]
    entry = Entry.build(
        url_key=url_key,
        status=status,
        reason=reason,
        # The origin's Age is kept apart from the stored fields, as Entry.build wants it.
        resp_headers=[*headers, ("Age", str(age))] if age else headers,
        body=body,
        req_headers=req_fields,
        request_time=_number(meta, "request_time"),
        response_time=_number(meta, "response_time"),
        settings=settings,
    )
    expected: SecondaryKey = tuple((p[0], p[1]) for p in selecting)
    if entry.secondary_key != expected:
        raise MalformedEntry("selecting values do not match the stored Vary")
    return SharedEntry(entry, loopback_origin)
