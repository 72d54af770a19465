"""The in-memory response store: a byte-sized LRU (cachetools) of URL keys to variants.

The primary key is the normalised URL (``urlkey.normalise_url``); each key holds a tuple of
``Entry`` variants told apart by their Vary secondary keys (RFC 9111 §4.1). An entry's size is
an estimate of the memory it holds (its head, body and key bytes, its parsed header fields
and its objects' overheads, measured: see ``entry_size``); the store never holds more than
``max_bytes`` of them, evicting least recently used URLs first.

Header values are str holding the octets of the field value one character per byte
(latin-1), the way the HTTP layer decodes them; heads are encoded back the same way.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from cachetools import Cache, LRUCache

from cproxy.cache.cachecontrol import CacheControl
from cproxy.cache.dates import format_http_date, parse_http_date
from cproxy.cache.evictinglru import EvictionCountingLRU
from cproxy.cache.fields import HeaderPairs, get_all, get_first
from cproxy.cache.policy import (
    CacheSettings,
    SecondaryKey,
    Validators,
    age_value,
    freshness_lifetime,
    headers_to_store,
    heuristic_allowed,
    initial_age,
    not_modified_headers,
    parse_etag,
    response_cache_control,
    response_date,
    secondary_key,
    selected_by_language,
    update_headers,
    vary_fields,
)

# A URL with more variants than this is usually varying on something like User-Agent; the
# oldest variants go first so one URL cannot crowd out the rest of the cache.
MAX_VARIANTS_PER_KEY = 32

# Statuses whose responses never carry a body, hence no Content-Length (RFC 9110 §8.6).
_NO_BODY_STATUSES = frozenset({204, 304})


# -- what an entry holds ------------------------------------------------------------------------
# An entry's ``size`` (what counts toward CacheMemory) is an estimate of the memory it really
# holds on CPython, not only its serialised head and body: its bytes and characters plus
# these per-object overheads, measured with tracemalloc on CPython 3.11 (64-bit) by filling a
# store with parsed responses (tests/test_cache_memory.py checks the estimate stays within
# 30% of the memory measured the same way, for several shapes of response).
#
# ENTRY_OVERHEAD, per stored response: the Entry object (17 slots, 168 bytes), its five
# floats (120), the headers of its url, head and body objects (115), the headers tuple (40),
# the CacheControl dict and its strings (about 300), the size int, and the LRU's bookkeeping
# for the URL (a slot in each of cachetools' three dicts, an OrderedDict node, the variants
# tuple: about 250). Measured: 880 +- 30 depending on how full the dicts' tables are.
ENTRY_OVERHEAD = 880
# FIELD_OVERHEAD, per stored header field (beside the value's characters): the (name, value)
# tuple (56), its slot in the headers tuple (8) and the value str's header (49). Names are
# interned in Entry.build, so the few distinct ones are shared, not held per entry.
FIELD_OVERHEAD = 113
# A varying response also holds its Vary field names (lower-cased) and its secondary key: two
# tuples (VARY_OVERHEAD) and per field a name, a (name, value) pair and a value
# (VARY_FIELD_OVERHEAD). Measured (beside the Vary field itself, a stored field): 250 for one
# field and one variant per URL, 118 each for three variants sharing a URL's bookkeeping,
# 170 more per further field.
VARY_OVERHEAD = 30
VARY_FIELD_OVERHEAD = 170
# Stored parts (PartialEntry): beside the meta entry (a bodiless Entry, sized as above), the
# PartialEntry object, its spans tuple and its own LRU key ("partial " + URL, the URL's
# characters counted again): PARTIAL_OVERHEAD; per part, a (first, data) pair, the int and
# the data bytes' header: SPAN_OVERHEAD. Measured: 300 for one part, 129 per further part.
PARTIAL_OVERHEAD = 140
SPAN_OVERHEAD = 129


def entry_size(
    url_key: str,
    head_prefix: bytes,
    body: bytes,
    headers: tuple[tuple[str, str], ...],
    vary: tuple[str, ...] | None,
    skey: SecondaryKey,
) -> int:
    """The memory, in bytes, an `Entry` of these parts holds (see ENTRY_OVERHEAD).

    Characters count one byte each: stored values are latin-1 text, held one byte a
    character by CPython (plus 24 bytes of header for a value with a non-ASCII octet)."""
    size = ENTRY_OVERHEAD + len(url_key) + len(head_prefix) + len(body)
    size += FIELD_OVERHEAD * len(headers) + sum(len(value) for _, value in headers)
    if vary:
        size += VARY_OVERHEAD + VARY_FIELD_OVERHEAD * len(vary) + sum(len(name) for name in vary)
        size += sum(len(value) for _, value in skey if value is not None)
    return size


def _encode(text: str) -> bytes:
    # Field values are octets decoded as latin-1; "replace" keeps a stray character from
    # making a response unservable (it becomes "?").
    return text.encode("latin-1", "replace")


def _dated(headers: HeaderPairs, response_time: float) -> list[tuple[str, str]]:
    """``headers`` with any Date replaced by ``response_time``: a recipient with a clock
    dates a response that has no valid Date (RFC 9110 §6.6.1)."""
    kept = [(k, v) for k, v in headers if k.lower() != "date"]
    kept.append(("Date", format_http_date(response_time)))
    return kept


@dataclass(frozen=True, slots=True, eq=False)
class Entry:
    """One stored response (a GET's), ready to serve.

    ``headers`` are the stored header fields (hop-by-hop fields, Content-Length and Age
    removed, Date added when the origin sent none). ``cc`` is the directives this cache
    obeys: a valid targeted field's (RFC 9213) or Cache-Control's. ``lifetime_s`` and
    ``initial_age_s`` are computed once at store time (§4.2.1, §4.2.3) so a hit is a
    lookup, an age, a send.
    """

    url_key: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    request_time: float
    response_time: float
    date_value: float
    age_value: int
    vary: tuple[str, ...] | None  # None: "Vary: *", never matches (§4.1)
    secondary_key: SecondaryKey
    cc: CacheControl
    lifetime_s: float
    initial_age_s: float
    head_prefix: bytes = field(repr=False)
    size: int
    # Response no-cache without field names: validate on every use (§5.2.2.4).
    always_validate: bool = False

    @classmethod
    def build(
        cls,
        *,
        url_key: str,
        status: int,
        reason: str,
        resp_headers: HeaderPairs,
        body: bytes,
        req_headers: HeaderPairs,
        request_time: float,
        response_time: float,
        settings: CacheSettings,
    ) -> Entry:
        """Make an entry from a response as received (``storable`` already said yes).

        ``request_time``/``response_time`` are when the request was sent and the response
        received (§4.2.3). A missing or invalid Date is replaced by the response time, as a
        recipient with a clock must (RFC 9110 §6.6.1).
        """
        cc, targeted = response_cache_control(resp_headers, settings)
        # Field names are interned: every entry holds "Content-Type", "Date", ... so each
        # would otherwise keep its own copy of the same few names (the parser makes new ones).
        headers = [(sys.intern(name), value) for name, value in headers_to_store(resp_headers, cc)]
        if parse_http_date(get_first(headers, "Date")) is None:
            headers = _dated(headers, response_time)
        date_value = response_date(headers, response_time)
        assert date_value is not None  # a valid Date was ensured just above
        vary = vary_fields(headers)
        age = age_value(resp_headers)
        lifetime = freshness_lifetime(
            headers,
            settings,
            heuristic_allowed(status, cc),
            date_value=date_value,
            resp_cc=cc,
            expires_ignored=targeted is not None,
            url_key=url_key,
            status=status,
        )
        lines = [f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1", "replace")]
        lines.extend(_encode(f"{name}: {value}\r\n") for name, value in headers)
        if status not in _NO_BODY_STATUSES:
            lines.append(b"Content-Length: %d\r\n" % len(body))
        head_prefix = b"".join(lines)
        stored = tuple(headers)
        skey = secondary_key(vary or (), req_headers)
        return cls(
            url_key=url_key,
            status=status,
            reason=sys.intern(reason),
            headers=stored,
            body=body,
            request_time=request_time,
            response_time=response_time,
            date_value=date_value,
            age_value=age,
            vary=vary,
            secondary_key=skey,
            cc=cc,
            lifetime_s=lifetime,
            initial_age_s=initial_age(
                date_value=date_value,
                age_value=age,
                request_time=request_time,
                response_time=response_time,
            ),
            head_prefix=head_prefix,
            size=entry_size(url_key, head_prefix, body, stored, vary, skey),
            always_validate="no-cache" in cc and cc["no-cache"] is None,
        )

    def current_age(self, now: float) -> float:
        """``current_age`` of RFC 9111 §4.2.3 at ``now``: the corrected initial age plus the
        time resident here."""
        return self.initial_age_s + (now - self.response_time)

    def head_with_age(self, age: int, extra: bytes = b"") -> bytes:
        """The full response head with ``Age: age`` (RFC 9111 §5.1) and ``extra`` lines.

        ``extra`` is pre-serialised ``Name: value\\r\\n`` lines (e.g. Cache-Status).
        """
        return b"%s%sAge: %d\r\n\r\n" % (self.head_prefix, extra, max(0, int(age)))

    def partial_head(self, age: int, first: int, last: int, extra: bytes = b"") -> bytes:
        """A 206 head for bytes ``first``..``last`` of this entry's body (RFC 9110 §15.3.7),
        or a 416 head when ``first`` is -1 (RFC 9110 §15.5.17)."""
        length = len(self.body)
        if first < 0:
            lines = [
                b"HTTP/1.1 416 Range Not Satisfiable\r\n",
                b"Content-Range: bytes */%d\r\nContent-Length: 0\r\n" % length,
            ]
        else:
            lines = [b"HTTP/1.1 206 Partial Content\r\n"]
            lines.extend(_encode(f"{name}: {value}\r\n") for name, value in self.headers)
            lines.append(b"Content-Range: bytes %d-%d/%d\r\n" % (first, last, length))
            lines.append(b"Content-Length: %d\r\n" % (last - first + 1))
        lines.append(extra)
        lines.append(b"Age: %d\r\n\r\n" % max(0, int(age)))
        return b"".join(lines)

    def not_modified_head(self, age: int, extra: bytes = b"") -> bytes:
        """A 304 head answering a client's conditional request from this entry.

        Carries the fields RFC 9110 §15.4.5 lists (Cache-Control, Content-Location, Date,
        ETag, Expires, Vary) and Last-Modified, plus Age.
        """
        lines = [b"HTTP/1.1 304 Not Modified\r\n"]
        lines.extend(
            _encode(f"{name}: {value}\r\n") for name, value in not_modified_headers(self.headers)
        )
        lines.append(extra)
        lines.append(b"Age: %d\r\n\r\n" % max(0, int(age)))
        return b"".join(lines)

    def matches(self, req_headers: HeaderPairs) -> bool:
        """Does this variant serve a request with ``req_headers`` (RFC 9111 §4.1)?"""
        if self.vary is None:
            return False
        return secondary_key(self.vary, req_headers) == self.secondary_key

    def matches_by_language(self, req_headers: HeaderPairs) -> bool:
        """Does this variant serve the request by its Content-Language (RFC 9110 §12.5.4)?
        See ``policy.selected_by_language``."""
        if not self.vary:
            return False
        return selected_by_language(self.vary, self.secondary_key, self.headers, req_headers)

    def validators(self) -> Validators:
        """This entry's validators for RFC 9111 §4.3.4 selection."""
        return Validators(
            etag=parse_etag(get_first(self.headers, "ETag")),
            last_modified=parse_http_date(get_first(self.headers, "Last-Modified")),
            recency=self.response_time,
        )

    def has_validator(self) -> bool:
        """True when the entry can be validated (it has an ETag or a Last-Modified)."""
        v = self.validators()
        return v.etag is not None or v.last_modified is not None

    def freshened(
        self,
        new_headers: HeaderPairs,
        req_headers: HeaderPairs,
        *,
        request_time: float,
        response_time: float,
        settings: CacheSettings,
    ) -> Entry:
        """A copy updated with a 304's header fields (RFC 9111 §3.2, §4.3.4).

        The body is kept; the new response's Age and Date (the response time when it has
        no Date) drive the age calculation from now on.
        """
        merged = update_headers(self.headers, new_headers)
        if parse_http_date(get_first(new_headers, "Date")) is None:
            merged = _dated(merged, response_time)
        age = get_all(new_headers, "Age")
        with_age = merged + [("Age", a) for a in age]
        return Entry.build(
            url_key=self.url_key,
            status=self.status,
            reason=self.reason,
            resp_headers=with_age,
            body=self.body,
            req_headers=req_headers,
            request_time=request_time,
            response_time=response_time,
            settings=settings,
        )


# Fields of a stored 206 that describe only its own part: left out of the head of another
# part or of the combined complete response (RFC 9111 §3.4).
_PART_FIELDS = frozenset({"content-range", "content-length"})


def _partial_size(meta: Entry, spans: tuple[tuple[int, bytes], ...]) -> int:
    """The memory stored parts hold (see PARTIAL_OVERHEAD)."""
    held = sum(SPAN_OVERHEAD + len(data) for _, data in spans)
    return meta.size + PARTIAL_OVERHEAD + len(meta.url_key) + held


@dataclass(frozen=True, slots=True, eq=False)
class PartialEntry:
    """The stored parts of one representation (RFC 9111 §3.3, §3.4): byte ranges of a
    complete length, under one strong ETag (``etag``; None: a single part that can be
    reused but not combined), with the header fields and times of the most recent 206
    (``meta``: an `Entry` with no body, for freshness and Age).

    ``spans`` are ``(first, data)`` pairs, sorted, neither overlapping nor touching
    (touching or overlapping parts are joined as they arrive).
    """

    meta: Entry
    etag: str | None
    length: int
    spans: tuple[tuple[int, bytes], ...]
    size: int

    @classmethod
    def start(
        cls, meta: Entry, etag: str | None, first: int, length: int, data: bytes
    ) -> PartialEntry:
        spans = ((first, data),)
        return cls(meta, etag, length, spans, _partial_size(meta, spans))

    @property
    def url_key(self) -> str:
        return self.meta.url_key

    def merged(self, newer: PartialEntry) -> PartialEntry:
        """These parts and ``newer``'s, under ``newer``'s header fields (§3.4: the new
        response's fields replace the stored ones). Same ETag and length assumed."""
        spans = sorted(self.spans + newer.spans, key=lambda span: span[0])
        joined: list[tuple[int, bytes]] = []
        for first, data in spans:
            if joined and first <= joined[-1][0] + len(joined[-1][1]):
                start, held = joined[-1]
                overlap = start + len(held) - first
                if overlap < len(data):
                    joined[-1] = (start, held + data[overlap:])
            else:
                joined.append((first, data))
        kept = tuple(joined)
        size = _partial_size(newer.meta, kept)
        return PartialEntry(newer.meta, newer.etag, newer.length, kept, size)

    def covering(self, first: int, last: int) -> bytes | None:
        """Bytes ``first``..``last`` (inclusive) when one stored part holds them all."""
        for start, data in self.spans:
            if start <= first and last < start + len(data):
                return data[first - start : last - start + 1]
        return None

    def missing(self) -> tuple[int, int] | None:
        """The one byte range (inclusive) the parts lack, when exactly one is missing."""
        gaps = []
        position = 0
        for first, data in self.spans:
            if first > position:
                gaps.append((position, first - 1))
            position = first + len(data)
        if position < self.length:
            gaps.append((position, self.length - 1))
        return gaps[0] if len(gaps) == 1 else None

    def complete_body(self) -> bytes | None:
        """The whole representation when the parts now cover it, else None."""
        if len(self.spans) == 1 and self.spans[0][0] == 0 and len(self.spans[0][1]) == self.length:
            return self.spans[0][1]
        return None

    def whole_headers(self) -> list[tuple[str, str]]:
        """The header fields of the complete response the parts make (§3.4), with the
        latest part's Age so its age carries over."""
        fields = [(k, v) for k, v in self.meta.headers if k.lower() not in _PART_FIELDS]
        return [*fields, ("Age", str(self.meta.age_value))]

    def range_head(self, age: int, first: int, last: int, extra: bytes = b"") -> bytes:
        """A 206 head for bytes ``first``..``last`` of the representation (RFC 9110
        §15.3.7), with ``extra`` lines and Age."""
        lines = [b"HTTP/1.1 206 Partial Content\r\n"]
        lines.extend(
            _encode(f"{name}: {value}\r\n")
            for name, value in self.meta.headers
            if name.lower() not in _PART_FIELDS
        )
        lines.append(b"Content-Range: bytes %d-%d/%d\r\n" % (first, last, self.length))
        lines.append(b"Content-Length: %d\r\n" % (last - first + 1))
        lines.append(extra)
        lines.append(b"Age: %d\r\n\r\n" % max(0, int(age)))
        return b"".join(lines)


# Partial entries live in the same LRU (one CacheMemory budget) under their own keys;
# a normalised URL never contains a space, so these never collide with URL keys.
_PARTIAL_PREFIX = "partial "


Variants = tuple[Entry, ...]


def _variants_size(variants: Variants | tuple[PartialEntry]) -> int:
    return sum(entry.size for entry in variants)


class CacheStore:
    """URL key -> variants, sized in bytes, least recently used evicted first."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.stores = 0
        self._lru = self._new_lru(max_bytes)

    def _new_lru(self, max_bytes: int) -> EvictionCountingLRU:
        return EvictionCountingLRU(max_bytes, _variants_size, self._count_eviction)

    def _count_eviction(self, _key: Any, variants: Variants) -> None:
        self.evictions += len(variants)

    @property
    def max_bytes(self) -> int:
        """The most bytes the store holds (CacheMemory)."""
        return int(self._lru.maxsize)

    @property
    def current_bytes(self) -> int:
        """The bytes held now (sum of entry sizes)."""
        return int(self._lru.currsize)

    def __len__(self) -> int:
        """The number of stored responses (variants across all keys).

        Reads through ``Cache.__getitem__``: ``LRUCache.values()`` would mark every key as
        just used and so wreck the eviction order each time the stats are read.
        """
        return sum(len(Cache.__getitem__(self._lru, key)) for key in self._lru)

    def __contains__(self, url_key: object) -> bool:
        return url_key in self._lru

    def lookup(self, url_key: str, req_headers: HeaderPairs) -> Entry | None:
        """The stored variant for this request (RFC 9111 §4.1), or None; counts hit/miss.

        When several variants match, the most recent by Date (then by response time) wins.
        """
        variants: Variants = self._lru.get(url_key, ())
        if len(variants) == 1 and variants[0].vary == ():
            # The usual case: one stored response that does not vary.
            self.hits += 1
            return variants[0]
        matching = [entry for entry in variants if entry.matches(req_headers)]
        if not matching:
            # RFC 9110 §12.5.4: a variant in the client's most preferred language serves
            # it even when the Accept-Language texts differ.
            matching = [entry for entry in variants if entry.matches_by_language(req_headers)]
        if not matching:
            self.misses += 1
            return None
        self.hits += 1
        return max(matching, key=lambda e: (e.date_value, e.response_time))

    def plain_entry(self, url_key: str) -> Entry | None:
        """The one stored response for ``url_key`` when it does not vary, else None.

        Counts nothing (the caller decides whether it is a hit) but marks the key used.
        """
        variants: Variants = self._lru.get(url_key, ())
        if len(variants) == 1 and variants[0].vary == ():
            return variants[0]
        return None

    def variants(self, url_key: str) -> Variants:
        """Every stored variant of ``url_key`` (no hit/miss counted)."""
        variants: Variants = self._lru.get(url_key, ())
        return variants

    def put(self, entry: Entry) -> bool:
        """Store ``entry``, replacing the variant with the same secondary key.

        Returns False (and stores nothing) when the entry alone is larger than
        ``max_bytes``. Older URLs are evicted as needed; never exceeds ``max_bytes``.
        """
        if entry.size > self.max_bytes:
            return False
        old: Variants = self._lru.pop(entry.url_key, ())
        kept = [v for v in old if (v.vary, v.secondary_key) != (entry.vary, entry.secondary_key)]
        kept.append(entry)
        kept = kept[-MAX_VARIANTS_PER_KEY:]
        while _variants_size(tuple(kept)) > self.max_bytes:
            kept.pop(0)
        self._lru[entry.url_key] = tuple(kept)
        self.stores += 1
        return True

    def remove(self, entry: Entry) -> bool:
        """Remove this one variant; True when it was stored."""
        old: Variants = self._lru.pop(entry.url_key, ())
        kept = tuple(v for v in old if v is not entry)
        if kept:
            self._lru[entry.url_key] = kept
        return len(kept) != len(old)

    def invalidate(self, url_key: str) -> None:
        """Drop every variant of ``url_key`` (RFC 9111 §4.4), and its stored parts; no
        error when absent."""
        self._lru.pop(url_key, None)
        self._lru.pop(_PARTIAL_PREFIX + url_key, None)

    def purge(self, url_key: str) -> bool:
        """Drop every variant of ``url_key`` and its parts; True when something was stored."""
        partial = self._lru.pop(_PARTIAL_PREFIX + url_key, None) is not None
        return (self._lru.pop(url_key, None) is not None) or partial

    # -- partial content (RFC 9111 §3.3, §3.4) ----------------------------------------------

    def partial(self, url_key: str) -> PartialEntry | None:
        """The stored parts of ``url_key``'s representation, or None (counts nothing)."""
        held = self._lru.get(_PARTIAL_PREFIX + url_key)
        return None if held is None else held[0]  # type: ignore[no-any-return]

    def put_partial(self, partial: PartialEntry) -> bool:
        """Store ``partial`` in place of the URL's parts; False (nothing stored) when it
        alone is larger than ``max_bytes``."""
        key = _PARTIAL_PREFIX + partial.url_key
        self._lru.pop(key, None)
        if partial.size > self.max_bytes:
            return False
        self._lru[key] = (partial,)
        self.stores += 1
        return True

    def drop_partial(self, url_key: str) -> None:
        """Forget ``url_key``'s parts (they became a complete response, or are outdated)."""
        self._lru.pop(_PARTIAL_PREFIX + url_key, None)

    def clear(self) -> None:
        """Drop everything (counters are kept)."""
        self._lru.clear()

    def resize(self, max_bytes: int) -> None:
        """Change ``max_bytes`` live, evicting least recently used URLs down to it."""
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        old = self._lru
        while old.currsize > max_bytes:
            old.popitem()  # counted as evictions
        new = self._new_lru(max_bytes)
        while old:
            # LRUCache.popitem (not the counting override): moving is not evicting.
            key, value = LRUCache.popitem(old)
            new[key] = value
        self._lru = new

    def stats(self) -> dict[str, int]:
        """Counters: objects, bytes, max_bytes, keys, hits, misses, evictions, stores."""
        return {
            "objects": len(self),
            "keys": len(self._lru),
            "bytes": self.current_bytes,
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "stores": self.stores,
        }
