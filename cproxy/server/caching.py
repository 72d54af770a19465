"""The cache on the forwarding path: hits, validation, request collapsing, stale content, PURGE.

`cproxy.cache` decides (RFC 9111, pure and clock-free); this module, the cache front,
does the I/O those decisions call for. It goes to origins through the same `Exchange`
as plain forwarding (`cproxy.server.exchange`), and writes answers to the requester's
`ClientSink`: it knows nothing of the client connection (a background refresh is a
`Requester` with a `DiscardSink`).

- HIT: the stored head (with Age and Cache-Status) and body in one send.
- STALE_WHILE_REVALIDATE (RFC 5861): serve the stale response, refresh it in a
  background greenlet, at most one refresh per URL at a time.
- VALIDATE: a conditional request; a 304 freshens the stored response, which is served.
- MISS: concurrent misses for one URL are collapsed: the first goes to the origin,
  the others wait (at most ReadTimeout) and are served from what it stored, or go
  to the origin themselves when nothing usable was stored.
- stale-if-error (RFC 5861 §4): a stored response stands in when the origin fails.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
from cachetools import TTLCache

from cproxy.cache import (
    CacheSettings,
    CacheStore,
    HttpCache,
    Lookup,
    LookupKind,
    cache_status,
    normalise_url,
)
from cproxy.cache.fields import has_any
from cproxy.cache.policy import (
    NEVER_REPLAYED_FIELDS,
    VALIDATOR_REQUEST_FIELDS,
    response_date,
    storable,
)
from cproxy.cache.ranges import if_range_matches, requested_range
from cproxy.directives import Config, ip_allowed
from cproxy.errors import (
    OriginConnectError,
    OriginConnectTimeout,
    OriginDNSError,
    OriginError,
    OriginProtocolError,
    OriginReset,
)
from cproxy.http import Headers, Request, Response
from cproxy.http.framing import CHUNKED, FRAMED, LENGTH, NONE
from cproxy.http.message import client_fields
from cproxy.memo import memoised_when_short
from cproxy.server.destinations import LoopbackOrigins, policy_for
from cproxy.server.exchange import Exchange, Requester
from cproxy.server.respond import Outcome, local_answer, origin_failed
from cproxy.server.sharedcache import from_shared_tier, lead_or_wait, open_tier
from cproxy.server.sink import JOIN_BODY_BYTES, DiscardSink

log = logging.getLogger("cproxy")

# How many recently uncacheable URLs are remembered, and for how long (from the first
# uncacheable answer: later ones do not extend it; a request after that is collapsed once
# more, and its answer remembers the URL again).
UNCACHEABLE_URLS = 4096
UNCACHEABLE_TTL_S = 10.0

# The failures that mean the origin could not be reached at all (RFC 9111 §4.2.4
# "disconnected"): no address, no connection, a reset or a close before any response.
# A malformed response or a ReadTimeout come from an origin that is there.
ORIGIN_UNREACHABLE = (OriginDNSError, OriginConnectError, OriginConnectTimeout, OriginReset)


# The cache key of a request's URL: hits repeat the same URLs, so the keys of
# ordinary-length ones are remembered (4096 x 1 KiB at most).
url_key_of = memoised_when_short(normalise_url, max_len=1024, maxsize=4096)


def _settings(cfg: Config) -> CacheSettings:
    settings = CacheSettings.from_config(cfg)
    return dataclasses.replace(settings, no_caching=tuple(p.text for p in cfg.no_caching))


class BodyTee:
    """Collects a response body for the cache, up to ``limit_bytes``."""

    __slots__ = ("complete", "limit_bytes", "overflow", "pieces", "size")

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.pieces: list[bytes] = []
        self.size = 0
        self.overflow = False
        self.complete = False

    def add(self, data: bytes) -> None:
        if self.overflow:
            return
        self.size += len(data)
        if self.size > self.limit_bytes:
            # Too large to store: stop holding it, keep streaming.
            self.overflow = True
            self.pieces.clear()
            return
        self.pieces.append(data)

    def body(self) -> bytes | None:
        """The whole body, or None when it was too large or did not arrive whole."""
        if self.overflow or not self.complete:
            return None
        return b"".join(self.pieces)


class ProxyCache:
    """The running cache: the store, the RFC 9111 façade, in-flight fetches and counters."""

    def __init__(self, cfg: Config, clock: Callable[[], float] = time.time) -> None:
        self.store = CacheStore(cfg.cache_memory_bytes)
        self.http = HttpCache(self.store, _settings(cfg), name=cfg.hostname)
        self.hit_status = b"Cache-Status: " + cache_status(cfg.hostname, hit=True).encode()
        self.clock = clock
        self.inflight: dict[str, gevent.event.Event] = {}
        # URLs whose last response could not be stored ("hit-for-miss", as Varnish calls
        # it): concurrent misses for them are not collapsed. Bounded in size and time.
        self.uncacheable: TTLCache[str, bool] = TTLCache(
            maxsize=UNCACHEABLE_URLS, ttl=UNCACHEABLE_TTL_S
        )
        self.refreshing: set[str] = set()
        self.collapsed = 0
        self.stale_served = 0
        self.purges = 0
        self.fast_hits = 0  # hits answered by the fast lane (cproxy.server.fastlane)
        self.lane_misses = 0  # misses served by the miss lane (cproxy.server.misslane)
        # URLs fetched from LoopbackDestinations: never served from here to clients that
        # may not reach those (DESIGN.md §5 rule 10; cproxy.server.destinations).
        self.loopback_origins = LoopbackOrigins(self.store.__contains__)
        # The shared tier (SharedCache), None when there is none; started by the runtime.
        self.tier = open_tier(cfg, self)

    def reconfigure(self, cfg: Config) -> None:
        self.store.resize(cfg.cache_memory_bytes)
        self.http.reconfigure(_settings(cfg))
        self.http.name = cfg.hostname
        self.hit_status = b"Cache-Status: " + cache_status(cfg.hostname, hit=True).encode()

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = dict(self.store.stats())
        lookups = stats["hits"] + stats["misses"]
        stats["hit_ratio"] = stats["hits"] / lookups if lookups else 0.0
        stats.update(
            collapsed=self.collapsed,
            stale_served=self.stale_served,
            purges=self.purges,
            fast_hits=self.fast_hits,
            lane_misses=self.lane_misses,
        )
        if self.tier is not None:
            stats["shared"] = self.tier.stats()
        return stats

    def store_limit_bytes(self, cfg: Config) -> int:
        """The largest body worth collecting for the store."""
        limit = cfg.cache_file_size_limit_bytes or cfg.cache_memory_bytes
        return min(limit, cfg.cache_memory_bytes)


class Front(enum.Enum):
    """What the configuration lets the cache front do with a request: the one gate that
    the general path and the fast lane both ask (`cache_front`)."""

    OFF = "off"  # no cache front: requests go to their origin directly
    RULES = "rules"  # the cache front, after mapping rules and the cache's URL rules
    # The cache front, and no rule looks at the URL: a plain GET's fresh hit is decided
    # by its URL alone (the fast lane, `cproxy.server.fastlane`, may answer it).
    URL_ALONE = "url-alone"


def cache_front(cfg: Config, cache: ProxyCache | None) -> Front:
    """The gate of the cache front, for the general path (OFF or not) and the fast lane
    (URL_ALONE only). URL_ALONE needs, beyond the front being on: no mapping rule that
    could refuse, redirect or rewrite the URL (routing runs before the cache on the
    general path), no ProxyAuth (who may have the hit is decided on the general path),
    and no cache rule (NoCaching, CacheQueries...) that looks at the URL
    (`HttpCache.shortcut_allowed`). tests/test_fastlane.py checks, over generated
    configurations, that the fast lane answers exactly as the general path wherever
    this lets it answer."""
    if cache is None or not cfg.caching:
        return Front.OFF
    if cfg.mapping_rules or cfg.proxy_auth or not cache.http.shortcut_allowed:
        return Front.RULES
    return Front.URL_ALONE


def serve_with_cache(
    who: Requester, cache: ProxyCache, req: Request, keep: bool, outcome: Outcome
) -> bool:
    """Answer ``req`` using the cache where RFC 9111 allows; returns the keep-alive verdict."""
    if req.method == "PURGE":
        return _purge(who, cache, req, keep, outcome)
    url_key = url_key_of(req.url)
    if cache.loopback_origins.hidden_from(url_key, who.client_ip, who.config):
        # Fetched from a loopback-only service for another client: this one goes to the
        # origin, where its connection is checked (and refused) like any other.
        return _fetch(who, cache, req, url_key, None, keep, outcome)
    if has_body_the_key_ignores(req):
        # DESIGN.md §5 rule 8: forwarded, never answered from the cache, stored or collapsed.
        return _fetch(who, cache, req, url_key, None, keep, outcome)
    result = cache.http.lookup(req.method, url_key, req.headers, cache.clock())
    if cache.tier is not None and result.entry is None and result.kind in _SHARED_KINDS:
        result = from_shared_tier(cache, req.method, url_key, req.headers) or result
        if cache.loopback_origins.hidden_from(url_key, who.client_ip, who.config):
            # Another node fetched it from a loopback-only service: as above.
            return _fetch(who, cache, req, url_key, None, keep, outcome)
    kind = result.kind
    if kind is LookupKind.HIT:
        outcome.cache = "hit"
        if result.partial is not None:
            return _send_part(who, result, keep, outcome)
        return _send_stored(who, cache, req, result, keep, outcome)
    if kind is LookupKind.STALE_WHILE_REVALIDATE:
        outcome.cache = "stale-while-revalidate"
        _refresh_in_background(who, cache, req, url_key, result)
        return _send_stored(who, cache, req, result, keep, outcome)
    if kind is LookupKind.ONLY_IF_CACHED:
        outcome.cache = "only-if-cached"
        return _local(
            who,
            req,
            504,
            "The response is not in the cache and the request said only-if-cached.",
            keep,
            outcome,
            [("Cache-Status", result.cache_status())],
        )
    if kind is LookupKind.MISS and req.method == "GET" and result.entry is None:
        return _collapsed_miss(who, cache, req, url_key, result, keep, outcome)
    return _fetch(who, cache, req, url_key, result, keep, outcome)


# In-process outcomes after which the shared tier is asked.
_SHARED_KINDS = (LookupKind.MISS, LookupKind.ONLY_IF_CACHED)


def has_body_the_key_ignores(req: Request) -> bool:
    """A GET or HEAD with a body ("fat GET"): the cache key (the URL) does not capture what
    the body may change in the answer, so one client's body could poison what every other
    client gets. Such a request goes to the origin as sent and its answer is relayed, but
    it is never answered from the cache, never stored and never collapsed with others."""
    return req.body != NONE and req.method in ("GET", "HEAD")


def _send_stored(
    who: Requester,
    cache: ProxyCache,
    req: Request,
    result: Lookup,
    keep: bool,
    outcome: Outcome,
    *,
    collapsed: bool = False,
    own_lines: bytes = b"",
) -> bool:
    """Send a stored response: pre-serialised head + Age + Cache-Status, then the body.

    ``own_lines``: pre-serialised fields that belong to this client alone (the Set-Cookie
    of the 304 its own request got from the origin); never part of the stored response.
    """
    entry = result.entry
    assert entry is not None
    if req.body != NONE:
        keep = False
    if result.kind is LookupKind.HIT and not (collapsed or result.fwd or result.detail):
        # The plain hit, formatted without the general Cache-Status builder.
        extra = hit_lines(cache.hit_status, result.ttl or 0.0, keep)
    else:
        status = result.cache_status(collapsed=collapsed)
        extra = b"Cache-Status: %s\r\n" % status.encode("latin-1")
        if not keep:
            extra += b"Connection: close\r\n"
    extra += own_lines
    span = _range_to_serve(req, entry) if "range" in req.headers else None
    if span is not None and not result.not_modified:
        first, last = span
        head = entry.partial_head(result.age, first, last, extra)
        body = entry.body[first : last + 1] if first >= 0 else b""
        outcome.status = 206 if first >= 0 else 416
    else:
        head = result.response_head(extra)
        body = b"" if result.not_modified or req.method == "HEAD" else entry.body
        outcome.status = 304 if result.not_modified else entry.status
    who.sink.send_response(head, body)
    outcome.sent = len(head) + len(body)
    return keep


def _send_part(who: Requester, result: Lookup, keep: bool, outcome: Outcome) -> bool:
    """A byte range answered from stored parts (RFC 9111 §3.3): a 206 with Content-Range."""
    parts, span = result.partial, result.span
    assert parts is not None and span is not None
    data = parts.covering(*span)
    assert data is not None  # the lookup checked that one part holds the range
    extra = b"Cache-Status: %s\r\n" % result.cache_status().encode("latin-1")
    if not keep:
        extra += b"Connection: close\r\n"
    head = parts.range_head(result.age, span[0], span[1], extra)
    who.sink.send_response(head, data)
    outcome.status = 206
    outcome.sent = len(head) + len(data)
    return keep


def hit_lines(hit_status: bytes, ttl: float, keep: bool) -> bytes:
    """The lines a plain fresh hit adds to its stored head: Cache-Status (RFC 9211) with
    the remaining freshness, and Connection: close when the connection ends after it.
    Shared by `_send_stored` and the fast lane (`cproxy.server.fastlane`)."""
    if keep:
        return b"%s; ttl=%d\r\n" % (hit_status, ttl // 1)
    return b"%s; ttl=%d\r\nConnection: close\r\n" % (hit_status, ttl // 1)


def _send_stale(
    who: Requester,
    cache: ProxyCache,
    req: Request,
    stale: Lookup,
    keep: bool,
    outcome: Outcome,
) -> bool:
    """stale-if-error (RFC 5861 §4) or an unreachable origin (RFC 9111 §4.2.4): a stored
    response stands in for a failed origin; the access log says which."""
    if who.sink.for_client:  # a background refresh served nobody
        cache.stale_served += 1
    outcome.cache = stale.detail or "stale-if-error"
    return _send_stored(who, cache, req, stale, keep, outcome)


def _range_to_serve(req: Request, entry: Any) -> tuple[int, int] | None:
    """The byte range of a stored 200 to answer a GET's Range with (RFC 9110 §14), if any."""
    if req.method != "GET" or entry.status != 200:
        return None
    if not if_range_matches(req.headers, entry.headers):
        return None  # §13.1.5: the representation changed: the whole response
    return requested_range(req.headers, len(entry.body))


def _collapsed_miss(
    who: Requester,
    cache: ProxyCache,
    req: Request,
    url_key: str,
    result: Lookup,
    keep: bool,
    outcome: Outcome,
) -> bool:
    """One origin request for concurrent misses of one URL; the rest wait for its result."""
    if url_key in cache.uncacheable:
        # It just answered with something we could not store: waiting for another
        # request's answer would only add its round trip to ours.
        return _fetch(who, cache, req, url_key, result, keep, outcome)
    leader = cache.inflight.get(url_key)
    if leader is not None:
        leader.wait(timeout=who.config.read_timeout_s)
        if cache.loopback_origins.hidden_from(url_key, who.client_ip, who.config):
            # The leader's fetch went to a loopback-only service: not for this client.
            return _fetch(who, cache, req, url_key, None, keep, outcome)
        again = cache.http.lookup(req.method, url_key, req.headers, cache.clock())
        if again.kind is LookupKind.HIT:
            cache.collapsed += 1
            outcome.cache = "hit-collapsed"
            return _send_stored(who, cache, req, again, keep, outcome, collapsed=True)
        # Nothing usable was stored (not storable, another variant, failure): go ourselves.
        return _fetch(who, cache, req, url_key, again, keep, outcome)
    done = gevent.event.Event()
    cache.inflight[url_key] = done
    try:
        if cache.tier is not None:
            # Across nodes: the node holding the URL's lease fetches, the others take
            # its entry from the shared tier.
            shared = lead_or_wait(cache, req.method, url_key, req.headers)
            if cache.loopback_origins.hidden_from(url_key, who.client_ip, who.config):
                # The node that held the lease fetched it from a loopback-only service.
                return _fetch(who, cache, req, url_key, None, keep, outcome)
            if shared is not None and shared.kind is LookupKind.HIT:
                cache.collapsed += 1
                outcome.cache = "hit-collapsed"
                return _send_stored(who, cache, req, shared, keep, outcome, collapsed=True)
            result = shared or result
        return _fetch(who, cache, req, url_key, result, keep, outcome)
    finally:
        if cache.tier is not None:
            cache.tier.settle(url_key)
        del cache.inflight[url_key]
        done.set()


def _with_headers(req: Request, fields: tuple[tuple[str, str], ...]) -> Request:
    clone = copy.copy(req)
    clone.headers = Headers(list(fields))
    return clone


def _fetch(
    who: Requester,
    cache: ProxyCache,
    req: Request,
    url_key: str,
    result: Lookup | None,
    keep: bool,
    outcome: Outcome,
) -> bool:
    """Forward to the origin (conditionally when validating), relay, store, invalidate."""
    cfg = who.config
    validating = result is not None and result.origin_headers is not None
    entry = result.entry if result is not None else None
    sent = _with_headers(req, result.origin_headers) if validating else req  # type: ignore[union-attr,arg-type]
    fields = req.headers
    request_time = cache.clock()
    if outcome.cache == "-":
        outcome.cache = result.fwd or result.kind.value if result is not None else "bypass"
    try:
        exchange = who.exchange(sent, outcome)
    except (OriginError, OriginProtocolError) as exc:
        if entry is not None:
            stale = cache.http.serve_stale_on_error(
                entry, fields, cache.clock(), None, unreachable=isinstance(exc, ORIGIN_UNREACHABLE)
            )
            if stale is not None:
                return _send_stale(who, cache, req, stale, keep, outcome)
        return origin_failed(who.sink, who.config.hostname, req, exc, keep, outcome)
    response_time = cache.clock()
    cache.loopback_origins.note(url_key, exchange.stream.peer_ip, policy_for(cfg))
    return answer_fetched(
        who, cache, req, url_key, result, keep, outcome, exchange, (request_time, response_time)
    )


def answer_fetched(
    who: Requester,
    cache: ProxyCache,
    req: Request,
    url_key: str,
    result: Lookup | None,
    keep: bool,
    outcome: Outcome,
    exchange: Exchange,
    times: tuple[float, float],
) -> bool:
    """The second half of `_fetch`: the origin's response head is in (``exchange``,
    requested and received at ``times``); serve it, from the cache where it only
    validated what is stored, and store it where RFC 9111 allows. The miss lane
    (`cproxy.server.misslane`) hands over here every response it does not take."""
    cfg = who.config
    validating = result is not None and result.origin_headers is not None
    entry = result.entry if result is not None else None
    fields = req.headers
    request_time, response_time = times
    resp, rest = exchange.resp, exchange.rest
    resp_fields = resp.headers

    if entry is not None and resp.status in (500, 502, 503, 504):
        stale = cache.http.serve_stale_on_error(entry, fields, response_time, resp.status)
        if stale is not None:
            exchange.discard()
            return _send_stale(who, cache, req, stale, keep, outcome)

    if validating and resp.status == 304:
        fresh = cache.http.handle_304(
            url_key,
            fields,
            resp_fields,
            request_time=request_time,
            response_time=response_time,
            validated=entry,
        )
        if fresh is not None:
            exchange.finish(clean=not rest)
            if cache.tier is not None:
                # The freshened headers, for every node, with the URL's loopback mark.
                cache.tier.store(fresh, loopback_origin=url_key in cache.loopback_origins)
            outcome.cache = "revalidated"
            served = Lookup(
                LookupKind.HIT,
                entry=fresh,
                age=int(fresh.current_age(response_time)),
                ttl=fresh.lifetime_s - fresh.current_age(response_time),
                not_modified=cache.http.client_not_modified(req.method, fields, fresh),
                fwd="stale",
                detail="revalidated",
                name=cache.http.name,
            )
            own = own_cookie_lines(resp_fields)
            return _send_stored(who, cache, req, served, keep, outcome, own_lines=own)
        if not has_any(fields, VALIDATOR_REQUEST_FIELDS):
            # The 304 is not about what we hold and the client asked unconditionally:
            # ask again without validators.
            exchange.finish(clean=not rest)
            return _fetch(who, cache, req, url_key, None, keep, outcome)

    if result is not None and result.partial is not None and result.kind is LookupKind.MISS:
        assert result.span is not None  # set with the parts by HttpCache._completion
        completed = _complete_parts(
            who,
            cache,
            req,
            url_key,
            exchange,
            result.span,
            (request_time, response_time),
            keep,
            outcome,
        )
        if completed is not None:
            return completed

    tee = None
    # The fields for the client, with the name index the policy's many lookups use.
    indexed_fields = client_fields(resp, cfg.hostname)
    stored_fields = indexed_fields.items()
    # §4.4: an unsafe method's non-error response invalidates first, so that what it may
    # store itself (a POST naming its target in Content-Location) stays.
    invalidated = cache.http.invalidate_after(req.method, resp.status, url_key, resp_fields)
    if invalidated and cache.tier is not None:
        for target in invalidated:
            cache.tier.invalidate(target)  # in the shared tier and on every node
    # Why the response is not stored (RFC 9211 detail, the access log's detail=), or None.
    not_stored: str | None = _not_a_candidate(req, resp)
    if not_stored is None:
        ok, why = storable(
            req.method,
            resp.status,
            fields,
            indexed_fields,
            cache.http.settings,
            url_key=url_key,
            body_bytes=resp.content_length if resp.body == LENGTH else None,
            # RFC 9110 §6.6.1: a missing or invalid Date is the time it was received.
            date_value=response_date(indexed_fields, response_time),
        )
        # Membership first: TTLCache's pop() and store cost three times its lookup.
        if ok:
            tee = BodyTee(cache.store_limit_bytes(cfg))
            if url_key in cache.uncacheable:
                del cache.uncacheable[url_key]
        else:
            not_stored = why
            if url_key not in cache.uncacheable and req.method == "GET":
                cache.uncacheable[url_key] = True
    stored = False
    if tee is not None and resp.body == LENGTH and resp.content_length <= JOIN_BODY_BYTES:
        # A small storable body is read whole first, so it is stored before its head goes
        # out (and Cache-Status can say so truthfully, whatever the packets were).
        exchange.read_body_ahead()
        rest = exchange.rest
    in_hand = _body_in_hand(resp, rest) if tee is not None else None
    if in_hand is not None:
        # The whole body came with the head: store it before the head goes out, so that
        # Cache-Status says "stored" only when it really was (RFC 9211 §2.7).
        stored, not_stored = _store(cache, req, url_key, resp, indexed_fields, in_hand, times)
        tee = None
    status_value = (
        result.cache_status(fwd_status=resp.status, stored=stored, not_stored=not_stored)
        if result is not None
        else cache_status(cache.http.name, fwd="bypass", fwd_status=resp.status, detail=not_stored)
    )
    keep = exchange.relay(
        keep,
        tee=tee,
        extra=[f"Cache-Status: {status_value}"],
        fields=stored_fields,
    )
    if tee is not None:
        # A streamed body: stored once it has come whole; its Cache-Status went out
        # without "stored" (it could not know), the access log says what happened.
        body = tee.body()
        if body is not None:
            stored, not_stored = _store(cache, req, url_key, resp, indexed_fields, body, times)
        else:
            not_stored = _why_not_collected(tee, cfg)
    if stored:
        outcome.cache += ";stored"
    elif not_stored is not None:
        outcome.cache += f";detail={not_stored}"
    return keep


def _not_a_candidate(req: Request, resp: Response) -> str | None:
    """Why the response to ``req`` is not even weighed for the store, or None: ``method``
    (neither a GET nor a POST, see ``_may_store``), ``body`` (a GET with a body, DESIGN.md
    §5 rule 8) or ``until-close`` (delimited by the origin closing: cproxy cannot tell a
    complete body from a cut one)."""
    if not _may_store(req):
        return "body" if req.method == "GET" else "method"
    if resp.body not in (LENGTH, CHUNKED, FRAMED, NONE):
        return "until-close"
    return None


def _why_not_collected(tee: BodyTee, cfg: Config) -> str:
    """Why a streamed body that ``storable`` accepted was not stored after all: larger
    than CacheFileSizeLimit (``too-large``) or than the cache (``limit``), or it did not
    arrive whole (``incomplete``)."""
    if not tee.overflow:
        return "incomplete"
    file_limit = cfg.cache_file_size_limit_bytes
    return "too-large" if file_limit and tee.size > file_limit else "limit"


def _complete_parts(
    who: Requester,
    cache: ProxyCache,
    req: Request,
    url_key: str,
    exchange: Exchange,
    span: tuple[int, int],
    times: tuple[float, float],
    keep: bool,
    outcome: Outcome,
) -> bool | None:
    """The origin's answer to the missing range of stored parts (``HttpCache._completion``):
    a 206 joins the parts, and the complete response they make is served to the client,
    who asked for the whole (RFC 9111 §3.4). None when the origin sent something else (a
    200: If-Range found the representation changed), which is relayed and stored as usual.
    A 206 that does not complete the parts is not shown to this client: the whole
    representation is asked for again, without Range."""
    resp = exchange.resp
    if resp.status != 206:
        return None
    body = None
    first, last = span
    # Read into memory only the range asked for (bounded by `HttpCache._completion`).
    if resp.body == LENGTH and resp.content_length == last - first + 1:
        exchange.read_body_ahead()
        body = _body_in_hand(resp, exchange.rest)
    if body is None:
        exchange.discard()  # chunked, another size, or not whole: not worth joining
    else:
        fields = client_fields(resp, who.config.hostname)
        _store(cache, req, url_key, resp, fields, body, times)
        exchange.finish(clean=len(exchange.rest) == resp.content_length)
    now = cache.clock()
    entry = cache.store.lookup(url_key, req.headers)
    if entry is None:
        again = Lookup(LookupKind.MISS, fwd="uri-miss", name=cache.http.name)
        return _fetch(who, cache, req, url_key, again, keep, outcome)
    age = entry.current_age(now)
    served = Lookup(
        LookupKind.HIT,
        entry=entry,
        age=int(age),
        ttl=entry.lifetime_s - age,
        fwd="partial",
        detail="completed",
        name=cache.http.name,
    )
    outcome.cache = "partial;stored"
    return _send_stored(who, cache, req, served, keep, outcome)


def own_cookie_lines(resp_fields: Headers) -> bytes:
    """The Set-Cookie and Set-Cookie2 lines of an origin's answer to this client's own
    request, for a response otherwise served from the cache (a 304 that freshened it).
    The store never keeps them (`NEVER_REPLAYED_FIELDS`): they reach this client only."""
    return b"".join(
        f"{name}: {value}\r\n".encode("latin-1", "replace")
        for name, value in resp_fields.items()
        if name.lower() in NEVER_REPLAYED_FIELDS
    )


def _may_store(req: Request) -> bool:
    """Is the response to ``req`` a candidate for the store? A GET's (one with a body is
    not: the key would not capture it, DESIGN.md §5 rule 8), or a POST's (RFC 9110
    §9.3.3: stored only when it names its target in Content-Location, see ``storable``)."""
    return (req.method == "GET" and req.body == NONE) or req.method == "POST"


def _body_in_hand(resp: Response, rest: bytes) -> bytes | None:
    """The whole body when it arrived with the head (``rest``), else None (still to come).

    Bytes after a Content-Length body belong to no message (RFC 9112 §6.3): they make the
    origin socket unusable, not the response incomplete, so they are left out."""
    if resp.body == NONE:
        return b""
    if resp.body == LENGTH and len(rest) >= resp.content_length:
        return rest[: resp.content_length]
    return None


def _store(
    cache: ProxyCache,
    req: Request,
    url_key: str,
    resp: Response,
    fields: Headers,
    body: bytes,
    times: tuple[float, float],
) -> tuple[bool, str | None]:
    """Store a complete origin response (RFC 9111 §3), requested and received at
    ``times``: ``(True, None)`` when it was stored (a 206 kept with the URL's other parts
    included), else ``(False, why)``."""
    entry, why = cache.http.store_response(
        req.method,
        url_key,
        req.headers,
        resp.status,
        resp.reason,
        fields,
        body,
        request_time=times[0],
        response_time=times[1],
    )
    if entry is not None and cache.tier is not None:
        # Queued: off the client's path. The mark is asked here, of the URL (as in-process
        # hiding is): `_fetch` noted the exchange's peer before storing, and an entry that
        # came from the tier was noted when copied in, so its rewrites keep the mark.
        cache.tier.store(entry, loopback_origin=url_key in cache.loopback_origins)
    if entry is not None or why == "stored-part":
        return True, None
    return False, why


def _refresh_in_background(
    who: Requester, cache: ProxyCache, req: Request, url_key: str, result: Lookup
) -> None:
    """RFC 5861 §3: revalidate a stale-while-revalidate response off the client's path."""
    if url_key in cache.refreshing:
        return
    cache.refreshing.add(url_key)
    # cproxy asks for itself: nobody reads the answer, and no client counter moves.
    # On behalf of the client whose request found the response stale: its address decides
    # where the refresh may connect (cproxy.server.destinations).
    background = Requester(who.state, DiscardSink(), who.client_ip)
    refresh = Lookup(
        LookupKind.VALIDATE,
        entry=result.entry,
        origin_headers=result.origin_headers,
        fwd="stale",
        detail="background-refresh",
        name=cache.http.name,
    )
    clone = copy.copy(req)

    def run() -> None:
        # Registered like a client connection: the reaper bounds its wait for the origin.
        who.state.connections.add(background)
        try:
            _fetch(background, cache, clone, url_key, refresh, False, Outcome())
        except Exception as exc:  # a refresh must never take the process down; log it
            log.warning("background refresh of %s failed: %s", url_key, exc)
        finally:
            who.state.connections.discard(background)
            cache.refreshing.discard(url_key)

    gevent.spawn(run)


def _purge(who: Requester, cache: ProxyCache, req: Request, keep: bool, outcome: Outcome) -> bool:
    """``PURGE <url>``: drop a URL from the cache (and the shared tier, on every node);
    only for PurgeAccess clients (none by default: PURGE carries no credentials)."""
    if not ip_allowed(who.config.purge_access, who.client_ip):
        return _local(who, req, 403, "PURGE is allowed only from PurgeAccess.", keep, outcome)
    url_key = normalise_url(req.url)
    purged = cache.store.purge(url_key)
    if cache.tier is not None:
        purged = cache.tier.purge(url_key) or purged
    cache.purges += purged
    outcome.cache = "purge"
    status = 200 if purged else 404
    message = "Purged from the cache." if purged else "The URL was not in the cache."
    return _local(who, req, status, message, keep, outcome)


def _local(
    who: Requester,
    req: Request,
    status: int,
    message: str,
    keep: bool,
    outcome: Outcome,
    headers: list[tuple[str, str]] | None = None,
) -> bool:
    return local_answer(who.sink, who.config.hostname, req, status, message, keep, outcome, headers)
