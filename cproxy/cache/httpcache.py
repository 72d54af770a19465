"""The cache façade the server calls: pure decisions over a ``CacheStore``.

``HttpCache`` never does I/O and never reads a clock: the caller passes ``now`` and the
request/response times. The forwarding path uses it like this::

    result = cache.lookup(method, url_key, req_headers, now)
    HIT                     -> send result.response_head() (+ entry.body unless HEAD or 304)
    STALE_WHILE_REVALIDATE  -> the same, then refresh in the background with
                               result.origin_headers and store_response / handle_304
    VALIDATE                -> send result.origin_headers to the origin;
                               304 -> entry = handle_304(..., validated=result.entry)
                                      (None: send the request again unconditionally)
                               200 etc. -> store_response(...)
                               error -> serve_stale_on_error(...) or pass the error on
    MISS                    -> forward the client's request; store_response(...)
    BYPASS                  -> forward; do not store
    ONLY_IF_CACHED          -> answer 504 (RFC 9111 §5.2.1.7)
    after any response      -> invalidate_after(method, status, url_key, resp_headers)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cproxy.cache.cachestatus import cache_status
from cproxy.cache.fields import HeaderPairs, get_first, has_any
from cproxy.cache.policy import (
    CacheSettings,
    Reuse,
    client_not_modified,
    content_range,
    invalidation_targets,
    may_serve_stale_on_error,
    may_serve_stale_when_unreachable,
    parse_etag,
    request_cacheable_method,
    request_directives,
    response_date,
    reuse,
    select_for_update,
    storable,
    url_excluded,
    validation_request_headers,
)
from cproxy.cache.ranges import UNSATISFIABLE, if_range_matches, requested_range
from cproxy.cache.store import CacheStore, Entry, PartialEntry


class LookupKind(enum.Enum):
    """What the server does with a request, as decided by ``HttpCache.lookup``."""

    HIT = "hit"
    STALE_WHILE_REVALIDATE = "stale-while-revalidate"
    VALIDATE = "validate"
    MISS = "miss"
    BYPASS = "bypass"
    ONLY_IF_CACHED = "only-if-cached"


# Not frozen: a frozen dataclass's __init__ costs a setattr call per field, and one
# Lookup is made per request. Treat it as read-only all the same.
@dataclass(slots=True)
class Lookup:
    """The outcome of a cache lookup.

    ``entry``/``age`` are set for HIT, STALE_WHILE_REVALIDATE and VALIDATE.
    ``not_modified``: answer the client's own conditional request with a 304 from ``entry``.
    ``origin_headers``: the request header fields to send the origin for VALIDATE and
    STALE_WHILE_REVALIDATE (the client's, with the stored validators).
    ``fwd``/``detail``/``ttl`` feed the Cache-Status field (RFC 9211).
    """

    kind: LookupKind
    entry: Entry | None = None
    age: int = 0
    not_modified: bool = False
    origin_headers: tuple[tuple[str, str], ...] | None = None
    fwd: str | None = None
    detail: str | None = None
    ttl: float | None = None
    name: str = "cproxy"
    # A HIT answered from stored parts (RFC 9111 §3.3): the parts and the byte range;
    # or a MISS completing them (fwd=partial): the parts and the range asked of the origin.
    partial: PartialEntry | None = None
    span: tuple[int, int] | None = None

    def cache_status(
        self,
        *,
        fwd_status: int | None = None,
        stored: bool = False,
        collapsed: bool = False,
        not_stored: str | None = None,
    ) -> str:
        """The Cache-Status member for this outcome (RFC 9211), e.g. ``cproxy; hit; ttl=5``.

        ``not_stored``: why the forwarded response was not stored (``policy.storable``'s
        reason); it replaces the lookup's own detail, being what the reader wants to know.
        """
        hit = self.kind in (LookupKind.HIT, LookupKind.STALE_WHILE_REVALIDATE) and not self.fwd
        return cache_status(
            self.name,
            hit=hit,
            fwd=self.fwd,
            fwd_status=fwd_status,
            ttl=self.ttl,
            stored=stored,
            collapsed=collapsed,
            detail=not_stored or self.detail,
        )

    def response_head(self, extra: bytes | None = None, *, collapsed: bool = False) -> bytes:
        """The head to send for a HIT: the stored head (or a 304 for the client's own
        conditional request) with Age and the ``extra`` lines, by default the Cache-Status
        field; the server passes its own (Cache-Status, Connection, this client's cookie)."""
        if self.entry is None:
            raise ValueError(f"no stored response to send for a {self.kind.value} lookup")
        if extra is None:
            status = self.cache_status(collapsed=collapsed)
            extra = f"Cache-Status: {status}\r\n".encode("latin-1")
        if self.not_modified:
            return self.entry.not_modified_head(self.age, extra)
        return self.entry.head_with_age(self.age, extra)


# Request fields that can change how a stored response is used (§4, §5.2.1, §5.4,
# RFC 9110 §13): without any of them a fresh stored response is simply served.
DECISIVE_FIELDS = frozenset(
    {
        "cache-control",
        "pragma",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
    }
)


# A client's own conditionals: a range from stored parts is not answered with them (the
# origin decides). If-Range is checked separately (RFC 9110 §13.1.5).
CONDITIONAL_FIELDS = frozenset(
    {"if-match", "if-none-match", "if-modified-since", "if-unmodified-since"}
)


# Request fields that keep a whole-representation GET from being completed from stored
# parts: the client's own conditionals (the origin decides those) and If-Range.
COMPLETION_BLOCKERS = CONDITIONAL_FIELDS | {"if-range", "range"}


class HttpCache:
    """RFC 9111 shared-cache behaviour over a ``CacheStore``; pure and clock-free."""

    def __init__(self, store: CacheStore, settings: CacheSettings, *, name: str = "cproxy") -> None:
        self.store = store
        self.name = name
        # The outcome of the usual miss is the same value every time, and a Lookup is
        # read-only: one is shared (building one cost about 1.5 us of a pooled miss's CPU
        # in the server's profile). Rebuilt when the name changes (a reload).
        self._uri_miss = Lookup(LookupKind.MISS, fwd="uri-miss", name=name)
        self.reconfigure(settings)

    def reconfigure(self, settings: CacheSettings) -> None:
        """Apply new cache settings (the store's size is changed with ``store.resize``)."""
        self.settings = settings
        # The fresh-hit shortcut in `lookup` skips the URL rules: only when there are none.
        self._shortcut = settings.caching and settings.cache_queries and not settings.no_caching

    # -- lookup ----------------------------------------------------------------------------

    @property
    def shortcut_allowed(self) -> bool:
        """May `fresh_entry` answer a GET without `DECISIVE_FIELDS`? Not when caching is
        off or URL rules (NoCaching, CacheQueries off) must be consulted."""
        return self._shortcut

    def fresh_entry(self, url_key: str, now: float) -> tuple[Entry, float] | None:
        """The common hit, decided in a few steps: ``(entry, current age)`` when the one
        stored response for ``url_key`` has no Vary and no response no-cache and is still
        fresh at ``now``; else None, with nothing counted.

        Only for a GET without any of `DECISIVE_FIELDS`, and only when
        `shortcut_allowed`. For such a request it is exactly what the general path of
        `lookup` concludes (§4.2): a HIT with this entry and age.
        """
        entry = self.store.plain_entry(url_key)
        if entry is None or entry.always_validate:
            return None
        age = entry.initial_age_s + (now - entry.response_time)
        if entry.lifetime_s > age:
            self.store.hits += 1
            return entry, age
        return None

    def lookup(self, method: str, url_key: str, req_headers: HeaderPairs, now: float) -> Lookup:
        """Decide how to answer a request (RFC 9111 §4) at time ``now``."""
        if method == "GET" and self._shortcut and not has_any(req_headers, DECISIVE_FIELDS):
            fresh = self.fresh_entry(url_key, now)
            if fresh is not None:
                return Lookup(
                    LookupKind.HIT,
                    entry=fresh[0],
                    age=int(fresh[1]),
                    ttl=fresh[0].lifetime_s - fresh[1],
                    name=self.name,
                )
            if url_key not in self.store:
                # Nothing stored under the URL, and no request directive (only-if-cached)
                # or precondition to weigh: the general path's verdict, in one step.
                parts = self._from_parts(url_key, req_headers, now)
                if parts is None:
                    parts = self._completion(url_key, req_headers)
                if parts is not None:
                    return parts
                self.store.misses += 1
                miss = self._uri_miss
                if miss.name != self.name:
                    miss = self._uri_miss = Lookup(LookupKind.MISS, fwd="uri-miss", name=self.name)
                return miss
        # Method names are case-sensitive (RFC 9110 §9.1): "gET" is not GET, so it is
        # never answered from a GET's stored response.
        if not self.settings.caching:
            return self._result(LookupKind.BYPASS, fwd="bypass", detail="caching-off")
        if not request_cacheable_method(method):
            return self._result(LookupKind.BYPASS, fwd="method")
        excluded = url_excluded(url_key, self.settings)
        if excluded is not None:
            return self._result(LookupKind.BYPASS, fwd="bypass", detail=excluded)
        request = request_directives(req_headers)
        if get_first(req_headers, "If-Match") or get_first(req_headers, "If-Unmodified-Since"):
            # Preconditions about the origin's current state: let the origin decide.
            return self._result(LookupKind.MISS, fwd="request", detail="precondition")
        if method == "GET" and url_key not in self.store:
            parts = self._from_parts(url_key, req_headers, now)
            if parts is None and not request.only_if_cached:
                parts = self._completion(url_key, req_headers)
            if parts is not None:
                return parts
        entry = self.store.lookup(url_key, req_headers)
        if entry is None:
            if request.only_if_cached:
                return self._result(LookupKind.ONLY_IF_CACHED, detail="only-if-cached")
            fwd = "vary-miss" if url_key in self.store else "uri-miss"
            return self._result(LookupKind.MISS, fwd=fwd)
        age = entry.current_age(now)
        decision, why = reuse(entry.lifetime_s, age, entry.cc, request)
        ttl = entry.lifetime_s - age
        if decision is not Reuse.VALIDATE:
            kind = (
                LookupKind.STALE_WHILE_REVALIDATE
                if decision is Reuse.STALE_WHILE_REVALIDATE
                else LookupKind.HIT
            )
            return self._result(
                kind,
                entry=entry,
                age=int(age),
                ttl=ttl,
                not_modified=self.client_not_modified(method, req_headers, entry),
                origin_headers=(
                    tuple(validation_request_headers(req_headers, entry.headers))
                    if kind is LookupKind.STALE_WHILE_REVALIDATE
                    else None
                ),
                detail=decision.value if decision is not Reuse.FRESH else None,
            )
        if request.only_if_cached:
            # §5.2.1.7: the origin may not be contacted, and the entry is not usable as is.
            return self._result(LookupKind.ONLY_IF_CACHED, entry=entry, detail=why)
        fwd = "request" if why.startswith("request-") else "stale"
        if not entry.has_validator():
            # Nothing to validate with: forward the client's request as it is.
            return self._result(LookupKind.MISS, entry=entry, ttl=ttl, fwd=fwd, detail=why)
        return self._result(
            LookupKind.VALIDATE,
            entry=entry,
            age=int(age),
            ttl=ttl,
            origin_headers=tuple(validation_request_headers(req_headers, entry.headers)),
            fwd=fwd,
            detail=why,
        )

    def _from_parts(self, url_key: str, req_headers: HeaderPairs, now: float) -> Lookup | None:
        """A GET's single byte range answered from stored parts (RFC 9111 §3.3: a partial
        request wholly within what is stored), or None. Only when no complete response is
        stored, the range lies inside one stored part, If-Range (if any) still holds,
        there is no other conditional, and the parts may be reused as they are (§4)."""
        if get_first(req_headers, "Range") is None:
            return None
        parts = self.store.partial(url_key)
        if parts is None or has_any(req_headers, CONDITIONAL_FIELDS):
            return None
        span = requested_range(req_headers, parts.length)
        if span is None or span == UNSATISFIABLE or parts.covering(*span) is None:
            return None
        if not if_range_matches(req_headers, parts.meta.headers):
            return None
        meta = parts.meta
        age = meta.current_age(now)
        decision, _ = reuse(meta.lifetime_s, age, meta.cc, request_directives(req_headers))
        if decision not in (Reuse.FRESH, Reuse.STALE_ALLOWED):
            return None  # forwarded as it is; the origin's new part replaces or joins these
        self.store.hits += 1
        return self._result(
            LookupKind.HIT, partial=parts, span=span, age=int(age), ttl=meta.lifetime_s - age
        )

    def _completion(self, url_key: str, req_headers: HeaderPairs) -> Lookup | None:
        """A GET for the whole representation of which parts are stored (RFC 9111 §3.4):
        ask the origin only for the one missing byte range, under If-Range with the parts'
        strong ETag (RFC 9110 §13.1.5), so a changed representation comes whole instead.
        A MISS with ``fwd=partial``, the parts and the range asked for; None when the
        request has its own Range or conditionals, the parts have no strong ETag, or more
        than one range is missing."""
        if get_first(req_headers, "Range") is not None:
            return None
        parts = self.store.partial(url_key)
        if parts is None or parts.etag is None or has_any(req_headers, COMPLETION_BLOCKERS):
            return None
        span = parts.missing()
        # The completed response must be storable as a whole (CacheFileSizeLimit, and the
        # cache itself): else the whole is simply forwarded and streamed.
        limit = self.settings.cache_file_size_limit_bytes or self.store.max_bytes
        if span is None or parts.length > min(limit, self.store.max_bytes):
            return None
        fields = [(k, v) for k, v in req_headers if k.lower() not in COMPLETION_BLOCKERS]
        fields += [("Range", f"bytes={span[0]}-{span[1]}"), ("If-Range", f'"{parts.etag}"')]
        return self._result(
            LookupKind.MISS, fwd="partial", partial=parts, span=span, origin_headers=tuple(fields)
        )

    def _result(self, kind: LookupKind, **fields: object) -> Lookup:
        return Lookup(kind, name=self.name, **fields)  # type: ignore[arg-type]

    def client_not_modified(self, method: str, req_headers: HeaderPairs, entry: Entry) -> bool:
        """Does the client's own conditional request get a 304 from ``entry``?"""
        return client_not_modified(
            method, req_headers, entry.headers, stored_time=entry.response_time
        )

    # -- responses from the origin -----------------------------------------------------------

    def store_response(
        self,
        method: str,
        url_key: str,
        req_headers: HeaderPairs,
        status: int,
        reason: str,
        resp_headers: HeaderPairs,
        body: bytes,
        *,
        request_time: float,
        response_time: float,
    ) -> tuple[Entry | None, str]:
        """Store a complete origin response when RFC 9111 §3 allows.

        Returns ``(entry, "stored")`` or ``(None, reason)`` with the reason from
        ``policy.storable`` (or ``"limit"`` when it does not fit in the whole cache,
        CacheMemory). A 206 is kept with the URL's parts (``_store_part``):
        ``(None, "stored-part")``, or the complete entry once the parts make one. A
        response that is not storable leaves
        older stored responses in place.
        """
        date_value = response_date(resp_headers, response_time)
        ok, why = storable(
            method,
            status,
            req_headers,
            resp_headers,
            self.settings,
            url_key=url_key,
            body_bytes=len(body),
            date_value=date_value,
        )
        if not ok:
            return None, why
        if status == 206:
            return self._store_part(
                url_key, req_headers, reason, resp_headers, body, request_time, response_time
            )
        entry = Entry.build(
            url_key=url_key,
            status=status,
            reason=reason,
            resp_headers=resp_headers,
            body=body,
            req_headers=req_headers,
            request_time=request_time,
            response_time=response_time,
            settings=self.settings,
        )
        if not self.store.put(entry):
            return None, "limit"
        return entry, "stored"

    def _store_part(
        self,
        url_key: str,
        req_headers: HeaderPairs,
        reason: str,
        resp_headers: HeaderPairs,
        body: bytes,
        request_time: float,
        response_time: float,
    ) -> tuple[Entry | None, str]:
        """Keep a 206 (``storable`` said yes) with the URL's other parts (RFC 9111 §3.4):
        joined to them under the same strong ETag and length, else replacing them (a part
        without a strong ETag is kept alone); when the parts cover the whole
        representation they become a complete 200 entry. Returns ``(None, "stored-part")``
        for parts kept, ``(entry, "stored")`` for a completed response."""
        span = content_range(resp_headers)
        assert span is not None  # storable checked it
        first, _last, length = span
        tag = parse_etag(get_first(resp_headers, "ETag"))
        strong = None if tag is None or tag.weak else tag.opaque
        meta = Entry.build(
            url_key=url_key,
            status=206,
            reason=reason,
            resp_headers=resp_headers,
            body=b"",
            req_headers=req_headers,
            request_time=request_time,
            response_time=response_time,
            settings=self.settings,
        )
        parts = PartialEntry.start(meta, strong, first, length, body)
        held = self.store.partial(url_key)
        # §3.4: parts combine only under the same strong validator (and length).
        same = held is not None and (held.etag, held.length) == (strong, length)
        if held is not None and same and strong is not None:
            parts = held.merged(parts)
        whole = parts.complete_body()
        if whole is None:
            # Not an Entry to serve: the parts stay in-process (never in a shared tier).
            return None, ("stored-part" if self.store.put_partial(parts) else "limit")
        self.store.drop_partial(url_key)
        entry = Entry.build(
            url_key=url_key,
            status=200,
            reason="OK",
            resp_headers=parts.whole_headers(),
            body=whole,
            req_headers=req_headers,
            request_time=request_time,
            response_time=response_time,
            settings=self.settings,
        )
        if not self.store.put(entry):
            return None, "limit"
        return entry, "stored"

    def handle_304(
        self,
        url_key: str,
        req_headers: HeaderPairs,
        resp_headers: HeaderPairs,
        *,
        request_time: float,
        response_time: float,
        validated: Entry | None = None,
    ) -> Entry | None:
        """Freshen stored responses with an origin 304 (RFC 9111 §4.3.3, §4.3.4, §3.2).

        Updates every stored variant the 304 selects. Returns the freshened form of
        ``validated`` (the entry whose validators were sent), ready to serve, or None when
        the 304 does not apply to it: then the caller repeats the request unconditionally
        (or, when the client's own conditional was forwarded, passes the 304 on).
        A freshened response that is no longer storable (e.g. the 304 says no-store) is
        served once but removed from the store.
        """
        variants = self.store.variants(url_key)
        selected = select_for_update([v.validators() for v in variants], resp_headers)
        no_validator = get_first(resp_headers, "ETag") is None and (
            get_first(resp_headers, "Last-Modified") is None
        )
        if not selected and no_validator and validated is not None and validated in variants:
            # The origin answered our conditional without repeating the validator: the 304
            # can only be about the response whose validators we sent.
            selected = [variants.index(validated)]
        result: Entry | None = None
        for index in selected:
            old = variants[index]
            new = old.freshened(
                resp_headers,
                req_headers,
                request_time=request_time,
                response_time=response_time,
                settings=self.settings,
            )
            ok, _ = storable(
                "GET", new.status, req_headers, list(new.headers), self.settings, url_key=url_key
            )
            self.store.remove(old)
            if ok:
                self.store.put(new)
            if old is validated:
                result = new
        return result

    def serve_stale_on_error(
        self,
        entry: Entry,
        req_headers: HeaderPairs,
        now: float,
        origin_status: int | None,
        *,
        unreachable: bool = False,
    ) -> Lookup | None:
        """A stale (or fresh) stored response standing in for an origin failure.

        ``origin_status`` is None when the origin failed outright, else its status.
        RFC 5861 §4 (stale-if-error) first; with ``unreachable`` (the origin could not be
        connected to, reset, or closed without a response) also RFC 9111 §4.2.4 within
        CacheMaxStale (``may_serve_stale_when_unreachable``); Cache-Status then says
        ``detail=origin-unreachable``. Returns a HIT-like Lookup to send, or None when
        the error must go to the client.
        """
        age = entry.current_age(now)
        request = request_directives(req_headers)
        if may_serve_stale_on_error(entry.lifetime_s, age, entry.cc, request, origin_status):
            detail = "stale-if-error"
        elif unreachable and may_serve_stale_when_unreachable(
            entry.lifetime_s, age, entry.cc, request, self.settings.cache_max_stale_s
        ):
            detail = "origin-unreachable"
        else:
            return None
        return self._result(
            LookupKind.HIT,
            entry=entry,
            age=int(age),
            ttl=entry.lifetime_s - age,
            fwd="stale",
            detail=detail,
            not_modified=self.client_not_modified("GET", req_headers, entry),
        )

    def invalidate_after(
        self, method: str, status: int, url_key: str, resp_headers: HeaderPairs
    ) -> list[str]:
        """Invalidate after an unsafe request's non-error response (RFC 9111 §4.4).

        Returns the keys invalidated (empty for safe methods and error statuses).
        """
        targets = invalidation_targets(method, status, url_key, resp_headers)
        for target in targets:
            self.store.invalidate(target)
        return targets
