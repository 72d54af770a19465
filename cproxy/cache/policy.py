"""Pure RFC 9111 decisions for a shared cache: no I/O, no clock (``now`` is a parameter).

Every function names the section it implements. Headers are sequences of ``(name, value)``
str pairs; times are epoch seconds (floats). Decisions that cproxy makes where the RFC leaves
a choice are written down where they are made, with the reason.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from cproxy.cache.cachecontrol import (
    CacheControl,
    delta_seconds,
    field_names,
    parse_cache_control,
    parse_targeted_cache_control,
)
from cproxy.cache.dates import parse_http_date
from cproxy.cache.fields import (
    OWS,
    HeaderPairs,
    get_all,
    get_first,
    list_members,
    split_list,
)
from cproxy.cache.heuristics import compiled, heuristic_lifetime
from cproxy.cache.urlkey import origin_of, resolve_reference
from cproxy.http.syntax import HOP_BY_HOP

# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """The cache directives as plain values (names are the directives' ``attr`` names).

    ``cache_file_size_limit_bytes``, ``cache_max_expiry_s`` and ``cache_default_expiry_s``
    use 0 to mean "no limit" / "none".
    """

    caching: bool = True
    cache_file_size_limit_bytes: int = 0
    cache_max_expiry_s: float = 0.0
    cache_default_expiry_s: float = 0.0
    cache_last_modified_factor: float = 0.1
    cache_time_margin_s: float = 0.0
    no_caching: tuple[str, ...] = ()
    cache_queries: bool = True
    cache_targeted_fields: tuple[str, ...] = ()
    cache_max_stale_s: float = 0.0
    # Heuristic freshness per URL pattern (``cproxy.cache.heuristics``): the user's rules,
    # (kind, pattern, value, errors) each, and whether the built-in package rules follow.
    cache_freshness_rules: tuple[tuple[str, str, float, bool], ...] = ()
    cache_package_rules: bool = True
    cache_cookie_responses: str = "https"  # explicit | https | rfc (CacheCookieResponses)

    @classmethod
    def from_config(cls, cfg: Any) -> CacheSettings:
        """Take the cache directives from a ``Config`` (attributes named as above).

        A directive the config does not have keeps the default here.
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            if hasattr(cfg, f.name):
                value = getattr(cfg, f.name)
                values[f.name] = tuple(value) if isinstance(value, (tuple, list)) else value
        return cls(**values)


@functools.lru_cache(maxsize=64)
def _no_caching_regex(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex for the NoCaching URL patterns, where ``*`` matches any characters."""
    if not patterns:
        return None
    alternatives = "|".join(re.escape(p).replace(r"\*", ".*") for p in patterns)
    return re.compile(rf"(?:{alternatives})\Z", re.DOTALL)


def url_excluded(url_key: str, settings: CacheSettings) -> str | None:
    """Why the settings keep ``url_key`` out of the cache (``"query"``, ``"no-caching"``).

    None when the URL may be cached. Patterns are matched against the normalised key.
    """
    if not settings.cache_queries and "?" in url_key:
        return "query"
    regex = _no_caching_regex(settings.no_caching)
    if regex is not None and regex.match(url_key):
        return "no-caching"
    return None


class ResponseControl(NamedTuple):
    """The cache directives this cache obeys for a response, and where they came from."""

    cc: CacheControl
    targeted: str | None  # the targeted field used (RFC 9213), None for Cache-Control


def response_cache_control(resp_headers: HeaderPairs, settings: CacheSettings) -> ResponseControl:
    """The response directives for this cache's storage and freshness decisions.

    RFC 9213 §2.2: the first field of CacheTargetedFields (in that order) that the response
    carries with a valid value replaces Cache-Control (and Expires, see
    ``freshness_lifetime``) for this cache; an invalid one is ignored, as if absent.
    Without one, Cache-Control decides. The response itself is passed on unchanged.
    """
    for name in settings.cache_targeted_fields:
        values = get_all(resp_headers, name)
        if values:
            cc = parse_targeted_cache_control(", ".join(values))
            if cc is not None:
                return ResponseControl(cc, name)
    return ResponseControl(parse_cache_control(get_all(resp_headers, "Cache-Control")), None)


# ---------------------------------------------------------------------------------------------
# Methods and status codes

# RFC 9110 §9.2.1: the safe methods. Every other method, known or not, is unsafe (§4.4).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# RFC 9110 §15.1: status codes that are heuristically cacheable by default.
HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})

# Final status codes whose caching semantics cproxy understands (RFC 9111 §5.2.2.3,
# must-understand): the RFC 9110 codes, minus 206 and 304, which are never stored as
# complete responses here.
UNDERSTOOD_STATUSES = frozenset(
    {200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 305, 307, 308}
    | set(range(400, 418))
    | {421, 422, 426}
    | set(range(500, 506))
)

# RFC 5861 §4: the origin errors that allow serving a stale response under stale-if-error.
STALE_IF_ERROR_STATUSES = frozenset({500, 502, 503, 504})


def request_cacheable_method(method: str) -> bool:
    """True when a request with ``method`` may be answered from the cache (RFC 9111 §4).

    GET responses (and POST responses naming their target in Content-Location, see
    ``storable``) are stored; a HEAD request is answered with the head of a stored
    response (RFC 9110 §9.3.2: the same header fields as GET). A POST always goes to the
    origin.
    """
    return method in ("GET", "HEAD")


# ---------------------------------------------------------------------------------------------
# Storing responses (RFC 9111 §3)


class _StoreFacts(NamedTuple):
    method: str
    status: int
    req_cc: CacheControl
    resp_cc: CacheControl
    req_headers: HeaderPairs
    resp_headers: HeaderPairs
    settings: CacheSettings
    url_key: str | None
    body_bytes: int | None
    date_value: float | None
    targeted: bool


def _has_validator(headers: HeaderPairs) -> bool:
    """A usable ETag or Last-Modified: what `Entry.has_validator` will find when the stored
    response is to be validated (a malformed ETag validates nothing)."""
    return parse_etag(get_first(headers, "ETag")) is not None or (
        parse_http_date(get_first(headers, "Last-Modified")) is not None
    )


def _post_reusable(f: _StoreFacts) -> bool:
    """RFC 9110 §9.3.3 (and RFC 9111 §4): a POST response is cacheable, for later GETs of
    the target, only with explicit freshness (max-age, s-maxage or Expires, never a
    heuristic) and a Content-Location naming the POST's own target URI."""
    if f.method != "POST" or f.url_key is None:
        return False
    explicit = "max-age" in f.resp_cc or "s-maxage" in f.resp_cc
    if not explicit and not f.targeted:
        explicit = get_first(f.resp_headers, "Expires") is not None
    location = get_first(f.resp_headers, "Content-Location")
    if not explicit or location is None:
        return False
    return resolve_reference(f.url_key, location.strip(OWS)) == f.url_key


_CONTENT_RANGE = re.compile(r"bytes[ \t]+([0-9]{1,18})-([0-9]{1,18})/([0-9]{1,18})\Z", re.I)


def content_range(resp_headers: HeaderPairs) -> tuple[int, int, int] | None:
    """``(first, last, complete length)`` of a 206's one Content-Range (RFC 9110 §14.4),
    or None: absent, several, an unknown length (``*``), or not within the length."""
    values = get_all(resp_headers, "Content-Range")
    if len(values) != 1:
        return None
    m = _CONTENT_RANGE.fullmatch(values[0].strip(OWS))
    if m is None:
        return None
    first, last, length = (int(g) for g in m.groups())
    return (first, last, length) if first <= last < length else None


def _partial_unusable(f: _StoreFacts) -> bool:
    """§3.3: a 206 cproxy does not keep: not a GET's, not one byte range of a known
    complete length (a multipart/byteranges answer has no Content-Range), varying (parts
    of different variants must not mix), a body other than the range's size, or a
    complete length over CacheFileSizeLimit (it could never be completed). A validator is
    not needed to reuse a part as it is; parts are only combined under one strong ETag
    (§3.4, ``HttpCache._store_part``)."""
    span = content_range(f.resp_headers)
    if f.method != "GET" or span is None or vary_fields(f.resp_headers) != ():
        return True
    first, last, length = span
    if f.body_bytes is not None and f.body_bytes != last - first + 1:
        return True
    limit = f.settings.cache_file_size_limit_bytes
    return bool(limit and length > limit)


def _explicit_or_allowed(f: _StoreFacts) -> bool:
    """RFC 9111 §3: public, s-maxage (shared), max-age, Expires or a heuristic status."""
    cc = f.resp_cc
    return (
        "public" in cc
        or "s-maxage" in cc
        or "max-age" in cc
        or (get_first(f.resp_headers, "Expires") is not None and not f.targeted)
        or f.status in HEURISTIC_STATUSES
    )


def _worthless(f: _StoreFacts) -> bool:
    """A response that can never be reused: no freshness beyond CacheTimeMargin, no validator.

    cproxy's reading of CacheTimeMargin ("do not cache objects that expire sooner"): a
    response with a validator is still kept, because revalidating it costs a 304, not a body.
    """
    lifetime = freshness_lifetime(
        f.resp_headers,
        f.settings,
        heuristic_allowed(f.status, f.resp_cc),
        date_value=f.date_value,
        resp_cc=f.resp_cc,
        expires_ignored=f.targeted,
        url_key=f.url_key,
        status=f.status,
    )
    too_short = lifetime <= 0 or lifetime < f.settings.cache_time_margin_s
    return too_short and not _has_validator(f.resp_headers)


def _authorized_without_permission(f: _StoreFacts) -> bool:
    """RFC 9111 §3.5: a shared cache stores answers to Authorization requests only when
    the response has must-revalidate, public or s-maxage."""
    if get_first(f.req_headers, "Authorization") is None:
        return False
    return not ({"must-revalidate", "public", "s-maxage"} & f.resp_cc.keys())


def _no_store(f: _StoreFacts) -> bool:
    """RFC 9111 §5.2.1.5 (request) and §5.2.2.5 (response) no-store.

    §5.2.2.3: with must-understand and an understood status, the response's no-store is
    ignored (must-understand is checked before this rule).
    """
    if "no-store" in f.req_cc:
        return True
    return "no-store" in f.resp_cc and "must-understand" not in f.resp_cc


def _cookie_not_shared(f: _StoreFacts) -> bool:
    """CacheCookieResponses (issue #19; DESIGN.md §5 rule 13): a response to a request that
    carried Cookie is stored only when it says it may be shared: public, s-maxage, or
    Vary: Cookie (each cookie its own entry). Beyond RFC 9111, as Varnish's built-in rules
    go further; ``https`` applies it to https:// URLs only, ``rfc`` never."""
    mode = f.settings.cache_cookie_responses
    if mode == "rfc" or get_first(f.req_headers, "Cookie") is None:
        return False
    if mode == "https" and not (f.url_key or "").startswith("https://"):
        return False
    if "public" in f.resp_cc or "s-maxage" in f.resp_cc:
        return False
    varies = vary_fields(f.resp_headers)
    return varies is None or "cookie" not in varies


def _too_large(f: _StoreFacts) -> bool:
    limit = f.settings.cache_file_size_limit_bytes
    return bool(limit and f.body_bytes is not None and f.body_bytes > limit)


def _query_excluded(f: _StoreFacts) -> bool:
    return f.url_key is not None and url_excluded(f.url_key, f.settings) == "query"


def _pattern_excluded(f: _StoreFacts) -> bool:
    return f.url_key is not None and url_excluded(f.url_key, f.settings) == "no-caching"


# The storage rules in the order they are checked: (reason when refused, refuses?). The
# reason is a word or two that Cache-Status gives as its detail (RFC 9211 §2.8) and the
# access log's cache= field as detail=...; man/cproxy.8 lists them.
_STORE_RULES: tuple[tuple[str, Callable[[_StoreFacts], bool]], ...] = (
    ("caching-off", lambda f: not f.settings.caching),
    # GET responses are stored, and POST responses that say they are the target's
    # representation (``_post_reusable``). A HEAD response has no body to serve a GET with;
    # other methods' responses are not reusable by a GET.
    ("method", lambda f: f.method != "GET" and not _post_reusable(f)),
    # §3: the status must be final. 304 only updates stored responses (§4.3.4).
    ("status", lambda f: not 200 <= f.status <= 599 or f.status == 304),
    # §3.3/§3.4: a 206 is stored only in the shape cproxy can combine (``_partial_unusable``).
    # RFC 9110 §14.4: Content-Range means something only on 206 and 416; a 200 that
    # carries one is a complete response.
    ("range", lambda f: f.status == 206 and _partial_unusable(f)),
    # §5.2.2.3: must-understand stores only statuses whose semantics we know.
    (
        "must-understand",
        lambda f: "must-understand" in f.resp_cc and f.status not in UNDERSTOOD_STATUSES,
    ),
    ("no-store", _no_store),
    # §5.2.2.7: unqualified private forbids a shared cache to store; the qualified form
    # only forbids storing the listed fields (stripped by ``headers_to_store``).
    ("private", lambda f: "private" in f.resp_cc and f.resp_cc["private"] is None),
    ("authorization", _authorized_without_permission),
    ("cookie", _cookie_not_shared),
    # §4.1: "Vary: *" never matches a later request, so storing it is pointless.
    ("vary-star", lambda f: vary_fields(f.resp_headers) is None),
    ("query", _query_excluded),  # CacheQueries off
    ("no-caching", _pattern_excluded),  # NoCaching
    # §3: nothing allows it: no explicit freshness, not public, and a status that is not
    # heuristically cacheable (a 302, a 500...).
    ("status", lambda f: not _explicit_or_allowed(f)),
    ("too-large", _too_large),
    # No freshness (explicit, heuristic or a freshness rule's) beyond CacheTimeMargin, and
    # no validator to revalidate with: it could never be reused.
    ("no-freshness", _worthless),
)

#: Every reason ``storable`` may give (man/cproxy.8 lists them).
STORE_REASONS = tuple(dict.fromkeys(reason for reason, _ in _STORE_RULES))


def storable(
    method: str,
    status: int,
    req_headers: HeaderPairs,
    resp_headers: HeaderPairs,
    settings: CacheSettings,
    *,
    url_key: str | None = None,
    body_bytes: int | None = None,
    date_value: float | None = None,
) -> tuple[bool, str]:
    """May a shared cache store this response (RFC 9111 §3)? Returns ``(ok, reason)``.

    ``reason`` is ``"ok"`` or the first rule that refused: ``caching-off``, ``method``
    (neither GET nor a POST whose response may serve later GETs, RFC 9110 §9.3.3),
    ``status`` (not final, a 304, or nothing in §3 allows the status without explicit
    freshness), ``range`` (a 206 cproxy cannot keep), ``must-understand``, ``no-store``,
    ``private``, ``authorization``, ``cookie`` (CacheCookieResponses), ``vary-star``,
    ``query`` (CacheQueries off), ``no-caching`` (NoCaching), ``too-large``
    (CacheFileSizeLimit) or ``no-freshness`` (no freshness beyond CacheTimeMargin and no
    validator). ``date_value`` stands in for a missing or invalid Date (the response
    time). The response's directives are those of
    ``response_cache_control``: a valid targeted field (RFC 9213) replaces Cache-Control.
    """
    control = response_cache_control(resp_headers, settings)
    req_lines = get_all(req_headers, "Cache-Control")
    # Positional: a NamedTuple built from keywords costs twice as much, once per response.
    facts = _StoreFacts(
        method,
        status,
        parse_cache_control(req_lines) if req_lines else {},  # most requests have none
        control.cc,
        req_headers,
        resp_headers,
        settings,
        url_key,
        body_bytes,
        date_value,
        control.targeted is not None,
    )
    for reason, refuses in _STORE_RULES:
        if refuses(facts):
            return False, reason
    return True, "ok"


def says_no_store(resp_headers: HeaderPairs, settings: CacheSettings) -> bool:
    """Does the response forbid storing it by itself (its directives, as
    `response_cache_control` reads them, say no-store without must-understand)? Then
    `storable` refuses it whatever the other rules say (every rule refuses; none allows),
    so a caller that needs only the verdict can skip the rest: the usual uncacheable
    response is decided by one parse of a remembered Cache-Control line."""
    cc = response_cache_control(resp_headers, settings).cc
    return "no-store" in cc and "must-understand" not in cc


# Not stored (RFC 9111 §3.1): the hop-by-hop fields (the one list, shared with forwarding),
# Content-Length (re-derived from the stored body) and Age (regenerated on every use, §5.1).
NOT_STORED_FIELDS = HOP_BY_HOP | {"content-length", "age"}

# Fields that carry one user's state to that user (DESIGN.md §5 rule 8): the response is
# stored and reused without them, so a hit, a 304 or stale answer from the cache, or a
# collapsed waiter's answer never hands one client another's cookie. Only the client whose
# own request went to the origin receives them (as Squid does). RFC 9111 §3.1 allows a
# cache to store them; it never requires replaying them, and nothing in a stored response
# depends on them.
NEVER_REPLAYED_FIELDS = frozenset({"set-cookie", "set-cookie2"})


def headers_to_store(
    resp_headers: HeaderPairs, resp_cc: CacheControl | None = None
) -> list[tuple[str, str]]:
    """The response header fields a shared cache keeps (RFC 9111 §3.1).

    Drops the hop-by-hop fields, those listed in Connection, Age, Content-Length,
    `NEVER_REPLAYED_FIELDS` (Set-Cookie, Set-Cookie2), and the fields named by
    ``no-cache="..."`` (§5.2.2.4: not reusable without validation, so not kept) and
    ``private="..."`` (§5.2.2.7: a shared cache must not store them), read from
    ``resp_cc`` when given (the directives this cache obeys), else from Cache-Control.
    """
    cc = parse_cache_control(get_all(resp_headers, "Cache-Control")) if resp_cc is None else resp_cc
    drop = set(NOT_STORED_FIELDS | NEVER_REPLAYED_FIELDS)
    drop.update(name.lower() for name in list_members(resp_headers, "Connection"))
    drop.update(field_names(cc.get("no-cache")))
    drop.update(field_names(cc.get("private")))
    return [(k, v) for k, v in resp_headers if k.lower() not in drop]


# ---------------------------------------------------------------------------------------------
# Freshness (RFC 9111 §4.2)


def heuristic_allowed(status: int, resp_cc: CacheControl) -> bool:
    """§4.2.2: heuristics only for heuristically cacheable statuses or ``public`` responses."""
    return status in HEURISTIC_STATUSES or "public" in resp_cc


def _expires_value(resp_headers: HeaderPairs) -> float:
    """§5.3: the Expires time; an invalid value (e.g. ``0``) means already expired.

    Several different Expires field lines are treated as invalid (§4.2.1: use the first or
    consider the response stale; stale is the safe choice). Returns -inf for "expired".
    """
    values = get_all(resp_headers, "Expires")
    if len({v.strip(" \t") for v in values}) != 1:
        return -math.inf
    parsed = parse_http_date(values[0])
    return -math.inf if parsed is None else float(parsed)


def freshness_lifetime(
    resp_headers: HeaderPairs,
    settings: CacheSettings,
    heuristic_allowed: bool,
    *,
    date_value: float | None = None,
    resp_cc: CacheControl | None = None,
    expires_ignored: bool = False,
    url_key: str | None = None,
    status: int = 200,
) -> float:
    """The freshness lifetime in seconds (RFC 9111 §4.2.1), capped by CacheMaxExpiry.

    First match wins: s-maxage (shared cache), max-age, Expires minus Date, then, when
    ``heuristic_allowed``, CacheLastModifiedFactor x (Date - Last-Modified) (§4.2.2), else
    CacheDefaultExpiry, at least CacheMinHold; each of the three from the first freshness
    rule matching ``url_key`` for ``status`` (``cproxy.cache.heuristics``), else the
    single-valued directive. An invalid s-maxage or max-age gives 0 (stale: the most
    restrictive reading, §4.2.1). ``date_value`` stands in for a missing or invalid Date.
    ``resp_cc`` is the directives this cache obeys (``response_cache_control``); with
    ``expires_ignored`` (a targeted field decides, RFC 9213 §2.2) Expires is not read.
    """
    cc = parse_cache_control(get_all(resp_headers, "Cache-Control")) if resp_cc is None else resp_cc
    lifetime = _uncapped_lifetime(
        resp_headers, cc, settings, heuristic_allowed, date_value, expires_ignored, url_key, status
    )
    if settings.cache_max_expiry_s > 0:
        lifetime = min(lifetime, settings.cache_max_expiry_s)
    return max(0.0, lifetime)


def _uncapped_lifetime(
    resp_headers: HeaderPairs,
    cc: CacheControl,
    settings: CacheSettings,
    heuristic_ok: bool,
    date_value: float | None,
    expires_ignored: bool,
    url_key: str | None,
    status: int,
) -> float:
    for directive in ("s-maxage", "max-age"):
        if directive in cc:
            seconds = delta_seconds(cc[directive])
            return 0.0 if seconds is None else float(seconds)
    date = response_date(resp_headers, date_value)
    if not expires_ignored and get_first(resp_headers, "Expires") is not None:
        expires = _expires_value(resp_headers)
        if date is None or expires == -math.inf:
            return 0.0
        return expires - date
    if not heuristic_ok:
        return 0.0
    last_modified = parse_http_date(get_first(resp_headers, "Last-Modified"))
    # §4.2.2: a fraction of the time since the last modification, else a default.
    return heuristic_lifetime(
        rules=compiled(settings.cache_freshness_rules, settings.cache_package_rules),
        url_key=url_key,
        status=status,
        date=date,
        last_modified=None if last_modified is None else float(last_modified),
        default_expiry_s=settings.cache_default_expiry_s,
        last_modified_factor=settings.cache_last_modified_factor,
    )


def response_date(resp_headers: HeaderPairs, fallback: float | None = None) -> float | None:
    """The Date value (RFC 9110 §6.6.1) of a response, else ``fallback``."""
    parsed = parse_http_date(get_first(resp_headers, "Date"))
    return fallback if parsed is None else float(parsed)


# ---------------------------------------------------------------------------------------------
# Age (RFC 9111 §4.2.3, §5.1)


def age_value(resp_headers: HeaderPairs) -> int:
    """The Age header's value (§5.1): 0 when absent or invalid.

    §5.1: with a list-valued Age (``0, 7200`` in one line, or several Age lines) the first
    member is used and the rest discarded; a first member that is not a non-negative
    integer (``abc``, ``-7200``, ``7200.0``, ``7200;foo=bar``) is ignored, as if the field
    were absent. Values of 2^31 or more count as 2147483648 (§1.2.2), older than any
    freshness lifetime.
    """
    members = list_members(resp_headers, "Age")  # every line's members, in order
    if not members:
        return 0
    seconds = delta_seconds(members[0])
    return 0 if seconds is None else seconds


def initial_age(
    *, date_value: float, age_value: float, request_time: float, response_time: float
) -> float:
    """``corrected_initial_age`` of §4.2.3: the age when the response was received."""
    apparent_age = max(0.0, response_time - date_value)
    response_delay = response_time - request_time
    corrected_age_value = age_value + response_delay
    return max(apparent_age, corrected_age_value)


def current_age(
    *,
    date_value: float,
    age_value: float,
    request_time: float,
    response_time: float,
    now: float,
) -> float:
    """``current_age`` of §4.2.3: corrected initial age plus the time resident here."""
    resident_time = now - response_time
    return (
        initial_age(
            date_value=date_value,
            age_value=age_value,
            request_time=request_time,
            response_time=response_time,
        )
        + resident_time
    )


# ---------------------------------------------------------------------------------------------
# Request directives (RFC 9111 §5.2.1, §5.4)


@dataclass(frozen=True, slots=True)
class RequestDirectives:
    """The request's cache directives, interpreted.

    ``max_age``/``min_fresh``/``max_stale``/``stale_if_error`` are seconds or None when
    absent; ``max_stale`` is ``math.inf`` for a bare ``max-stale`` (§5.2.1.2).
    """

    no_cache: bool = False
    no_store: bool = False
    max_age: float | None = None
    max_stale: float | None = None
    min_fresh: float | None = None
    only_if_cached: bool = False
    stale_if_error: float | None = None


NO_REQUEST_DIRECTIVES = RequestDirectives()


def request_directives(req_headers: HeaderPairs) -> RequestDirectives:
    """Interpret a request's Cache-Control (§5.2.1) and Pragma (§5.4).

    Invalid values take the most restrictive reading: ``max-age`` -> 0 (validate),
    ``max-stale`` -> 0 (no staleness accepted); an invalid ``min-fresh`` or
    ``stale-if-error`` is ignored. ``Pragma: no-cache`` counts only when the request has no
    Cache-Control field (§5.4).
    """
    lines = get_all(req_headers, "Cache-Control")
    if not lines and get_first(req_headers, "Pragma") is None:
        return NO_REQUEST_DIRECTIVES  # most requests: nothing to parse
    cc = parse_cache_control(lines)
    no_cache = "no-cache" in cc
    if not lines:
        no_cache = any(m.lower() == "no-cache" for m in list_members(req_headers, "Pragma"))

    def seconds(name: str, invalid: float | None) -> float | None:
        if name not in cc:
            return None
        value = delta_seconds(cc[name])
        return invalid if value is None else float(value)

    max_stale = None
    if "max-stale" in cc:
        max_stale = math.inf if cc["max-stale"] is None else seconds("max-stale", 0.0)
    return RequestDirectives(
        no_cache=no_cache,
        no_store="no-store" in cc,
        max_age=seconds("max-age", 0.0),
        max_stale=max_stale,
        min_fresh=seconds("min-fresh", None),
        only_if_cached="only-if-cached" in cc,
        stale_if_error=seconds("stale-if-error", None),
    )


# ---------------------------------------------------------------------------------------------
# Reuse (RFC 9111 §4, §4.2.4, RFC 5861)


class Reuse(enum.Enum):
    """How a stored response may be used for a request."""

    FRESH = "fresh"  # serve it (§4.2)
    STALE_ALLOWED = "stale-allowed"  # serve it stale: the client's max-stale allows (§4.2.4)
    STALE_WHILE_REVALIDATE = "stale-while-revalidate"  # serve, refresh behind (RFC 5861 §3)
    VALIDATE = "validate"  # forward a conditional request first (§4.3)


def stale_prohibited(resp_cc: CacheControl) -> bool:
    """§4.2.4: must-revalidate, proxy-revalidate, s-maxage (§5.2.2.10 implies
    proxy-revalidate) or unqualified no-cache forbid serving the response stale."""
    if {"must-revalidate", "proxy-revalidate", "s-maxage"} & resp_cc.keys():
        return True
    return "no-cache" in resp_cc and resp_cc["no-cache"] is None


def stale_while_revalidate_s(resp_cc: CacheControl) -> float:
    """RFC 5861 §3: the stale-while-revalidate window, 0 when absent or invalid."""
    return float(delta_seconds(resp_cc.get("stale-while-revalidate")) or 0)


def stale_if_error_s(resp_cc: CacheControl, request: RequestDirectives) -> float:
    """RFC 5861 §4: the stale-if-error window from the response or the request (the larger)."""
    from_response = float(delta_seconds(resp_cc.get("stale-if-error")) or 0)
    return max(from_response, request.stale_if_error or 0.0)


def reuse(
    lifetime: float, age: float, resp_cc: CacheControl, request: RequestDirectives
) -> tuple[Reuse, str]:
    """Decide how a stored response may serve a request. Returns ``(Reuse, detail)``.

    ``detail`` says why validation is needed: ``response-no-cache`` (§5.2.2.4),
    ``request-no-cache`` (§5.2.1.4), ``request-max-age`` (§5.2.1.1: a request max-age=0
    always validates, even a response received this second), ``request-min-fresh``
    (§5.2.1.3) or ``stale`` (§4.2.4); it is ``""`` for the other outcomes.
    """
    if "no-cache" in resp_cc and resp_cc["no-cache"] is None:
        return Reuse.VALIDATE, "response-no-cache"
    if request.no_cache:
        return Reuse.VALIDATE, "request-no-cache"
    if request.max_age is not None and (request.max_age == 0 or age > request.max_age):
        return Reuse.VALIDATE, "request-max-age"
    if lifetime > age:  # §4.2: fresh when the lifetime exceeds the current age
        if request.min_fresh is not None and lifetime - age < request.min_fresh:
            return Reuse.VALIDATE, "request-min-fresh"
        return Reuse.FRESH, ""
    staleness = age - lifetime
    if stale_prohibited(resp_cc):
        return Reuse.VALIDATE, "stale"
    if request.max_stale is not None and staleness <= request.max_stale:
        return Reuse.STALE_ALLOWED, ""
    window = stale_while_revalidate_s(resp_cc)
    if window and staleness <= window:
        return Reuse.STALE_WHILE_REVALIDATE, ""
    return Reuse.VALIDATE, "stale"


def may_serve_stale_on_error(
    lifetime: float,
    age: float,
    resp_cc: CacheControl,
    request: RequestDirectives,
    origin_status: int | None,
) -> bool:
    """RFC 5861 §4: may a stale response replace an origin failure?

    ``origin_status`` is None when the origin could not be reached or answered badly, or
    the status it sent; only 500, 502, 503 and 504 count as errors. A response that is
    still fresh may always stand in; must-revalidate and friends forbid it (§4.2.4,
    §5.2.2.2: such a cache must answer 504 instead).
    """
    if origin_status is not None and origin_status not in STALE_IF_ERROR_STATUSES:
        return False
    if "no-cache" in resp_cc and resp_cc["no-cache"] is None:
        return False
    staleness = age - lifetime
    if staleness < 0:
        return True
    if stale_prohibited(resp_cc):
        return False
    return staleness <= stale_if_error_s(resp_cc, request)


def may_serve_stale_when_unreachable(
    lifetime: float,
    age: float,
    resp_cc: CacheControl,
    request: RequestDirectives,
    max_stale_s: float,
) -> bool:
    """§4.2.4: may a stored response answer a request the origin could not be reached for
    (no connection, a reset, a close before any response)?

    A disconnected cache may serve a stale response unless a directive forbids it:
    response no-cache, must-revalidate, proxy-revalidate or s-maxage (``stale_prohibited``),
    or the request's no-cache (§5.2.1.4: not without successful validation). How stale is
    bounded by ``max_stale_s`` (CacheMaxStale, Squid's max_stale) or the stale-if-error
    window (RFC 5861 §4), whichever is longer; 0 leaves stale-if-error alone.
    """
    if "no-cache" in resp_cc and resp_cc["no-cache"] is None:
        return False
    if request.no_cache:
        return False
    staleness = age - lifetime
    if staleness < 0:
        return True
    if stale_prohibited(resp_cc):
        return False
    return staleness <= max(max_stale_s, stale_if_error_s(resp_cc, request))


# ---------------------------------------------------------------------------------------------
# Vary (RFC 9111 §4.1)


def vary_fields(resp_headers: HeaderPairs) -> tuple[str, ...] | None:
    """The lowercase field names a response varies on, sorted; None when ``*`` is listed.

    ``*`` anywhere in any Vary line (``Vary: accept, *``) means the response never matches
    (§4.1).
    """
    names = {member.lower() for member in list_members(resp_headers, "Vary")}
    if "*" in names:
        return None
    return tuple(sorted(names))


SecondaryKey = tuple[tuple[str, str | None], ...]

_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\Z")


def weighted_members(members: Sequence[str]) -> list[tuple[str, float]] | None:
    """The ``(value, weight)`` pairs of an Accept-style list (RFC 9110 §12.4.2), values
    lowercased and without whitespace; None when a member does not parse (a ``q`` that
    is not a qvalue, an empty value). Parameters other than ``q`` are dropped: these
    fields (Accept-Language, Accept-Encoding) define none."""
    pairs: list[tuple[str, float]] = []
    for member in members:
        value, *params = (part.strip(OWS) for part in member.split(";"))
        if not value:
            return None
        weight = 1.0
        for param in params:
            key, _, argument = param.partition("=")
            if key.strip(OWS).lower() == "q":
                argument = argument.strip(OWS)
                if not _QVALUE.match(argument):
                    return None
                weight = float(argument)
        pairs.append((value.lower(), weight))
    return pairs


def _normalise_weighted(members: list[str]) -> str:
    """RFC 9110 §12.5.4-5: case-insensitive values whose order means nothing among equal
    weights. Sorted by weight (highest first), then by value; ``q`` written only below 1.
    A list that does not parse is compared as sent (exact, the safe reading)."""
    pairs = weighted_members(members)
    if pairs is None:
        return ", ".join(members)
    ordered = sorted(pairs, key=lambda pair: (-pair[1], pair[0]))
    return ", ".join(v if q == 1.0 else f"{v};q={q:g}" for v, q in ordered)


# Request fields whose Vary comparison knows their syntax (RFC 9110 §12.5.4, §12.5.3):
# values that differ only in case, whitespace or the order of equal-weight members select
# the same stored response. Other fields compare by their trimmed list members.
_VARY_NORMALISERS: dict[str, Callable[[list[str]], str]] = {
    "accept-language": _normalise_weighted,
    "accept-encoding": _normalise_weighted,
}


def normalised_field(req_headers: HeaderPairs, name: str) -> str | None:
    """A request field's value normalised for Vary matching (§4.1), or None when absent.

    Field lines are combined and list members trimmed of whitespace, so ``1,2``,
    `` 1, 2 `` and two lines ``1`` and ``2`` compare equal; ``_VARY_NORMALISERS`` say
    what else is the same for the fields whose syntax cproxy knows.
    """
    values = get_all(req_headers, name)
    if not values:
        return None
    members: list[str] = []
    for value in values:
        members.extend(split_list(value))
    normalise = _VARY_NORMALISERS.get(name.lower())
    return ", ".join(members) if normalise is None else normalise(members)


def preferred_language(req_headers: HeaderPairs) -> str | None:
    """The request's one most preferred language (RFC 9110 §12.5.4), lowercased: the
    Accept-Language member of the highest weight, when no other member shares that
    weight and it is a language (not ``*``) with a weight above 0; else None."""
    pairs = weighted_members(list_members(req_headers, "Accept-Language"))
    if not pairs:
        return None
    best = max(q for _, q in pairs)
    top = [v for v, q in pairs if q == best]
    if len(top) != 1 or top[0] == "*" or best <= 0:
        return None
    return top[0]


def selected_by_language(
    vary: Sequence[str],
    stored_key: SecondaryKey,
    stored_headers: HeaderPairs,
    req_headers: HeaderPairs,
) -> bool:
    """Does a stored response varying on Accept-Language serve this request although the
    Accept-Language texts differ? Yes when its Content-Language is exactly the request's
    most preferred language (``preferred_language``) and every other Vary field matches:
    the response is in the language the client wants most (RFC 9110 §12.5.4, §8.5)."""
    if "accept-language" not in vary:
        return False
    wanted = preferred_language(req_headers)
    languages = [m.lower() for m in list_members(stored_headers, "Content-Language")]
    if wanted is None or languages != [wanted]:
        return False
    return all(
        name == "accept-language" or normalised_field(req_headers, name) == stored
        for name, stored in stored_key
    )


def secondary_key(fields_: Sequence[str], req_headers: HeaderPairs) -> SecondaryKey:
    """The request's selecting header values for the Vary ``fields_`` (§4.1).

    A field absent from the request is recorded as None: it matches only a request that
    also lacks it.
    """
    return tuple((name, normalised_field(req_headers, name)) for name in fields_)


# ---------------------------------------------------------------------------------------------
# Validation (RFC 9111 §4.3, RFC 9110 §8.8.3, §13.1)


class EntityTag(NamedTuple):
    """A parsed entity-tag (RFC 9110 §8.8.3)."""

    weak: bool
    opaque: str


def parse_etag(text: str | None) -> EntityTag | None:
    """Parse an entity-tag leniently: ``"x"``, ``W/"x"``, ``w/"x"``, and the empty ``""``
    (RFC 9110 §8.8.3 allows it); an unquoted ``x`` is taken as ``"x"`` (some origins omit
    the quotes). None when there is no tag (empty input, a bare ``W/``)."""
    if text is None:
        return None
    text = text.strip(" \t")
    weak = False
    if text[:2] in ("W/", "w/"):
        weak, text = True, text[2:]
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return EntityTag(weak, text[1:-1])
    if not text:
        return None
    return EntityTag(weak, text)


def format_etag(tag: EntityTag) -> str:
    """The entity-tag as sent: ``"opaque"`` or ``W/"opaque"``."""
    return f'{"W/" if tag.weak else ""}"{tag.opaque}"'


def strong_match(a: EntityTag | None, b: EntityTag | None) -> bool:
    """RFC 9110 §8.8.3.2 strong comparison: both strong and the same opaque tag."""
    return a is not None and b is not None and not a.weak and not b.weak and a.opaque == b.opaque


def weak_match(a: EntityTag | None, b: EntityTag | None) -> bool:
    """RFC 9110 §8.8.3.2 weak comparison: the same opaque tag, weakness ignored."""
    return a is not None and b is not None and a.opaque == b.opaque


# Fields that a 304 or HEAD response must not change in a stored response (§3.2): framing,
# hop-by-hop fields, Age (taken separately), and the fields describing the stored bytes.
# Content-MD5 describes the stored body, which a 304 does not replace.
NOT_UPDATED_FIELDS = NOT_STORED_FIELDS | {"content-encoding", "content-range", "content-md5"}


def conditional_headers(stored_headers: HeaderPairs) -> list[tuple[str, str]]:
    """The validators to send to the origin for a stored response (§4.3.1).

    If-None-Match with the stored ETag (strong or weak, quoted if the origin forgot), and
    If-Modified-Since with the stored Last-Modified: §4.3.1 asks for both when one response
    is being validated; the origin ignores If-Modified-Since when If-None-Match is present.
    """
    out: list[tuple[str, str]] = []
    tag = parse_etag(get_first(stored_headers, "ETag"))
    if tag is not None:
        out.append(("If-None-Match", format_etag(tag)))
    last_modified = get_first(stored_headers, "Last-Modified")
    if last_modified is not None and parse_http_date(last_modified) is not None:
        out.append(("If-Modified-Since", last_modified.strip(" \t")))
    return out


# The client's validator fields: replaced by the stored response's when the cache
# validates (validation_request_headers).
VALIDATOR_REQUEST_FIELDS = frozenset({"if-none-match", "if-modified-since"})


def validation_request_headers(
    req_headers: HeaderPairs, stored_headers: HeaderPairs
) -> list[tuple[str, str]]:
    """The request headers to send the origin when validating a stored response (§4.3.1).

    The client's own If-None-Match / If-Modified-Since are replaced by the stored
    response's validators, so any 304 refreshes the stored response; the client's
    conditional is then answered from the refreshed entry (``client_not_modified``).
    """
    kept = [(k, v) for k, v in req_headers if k.lower() not in VALIDATOR_REQUEST_FIELDS]
    return kept + conditional_headers(stored_headers)


def update_headers(stored: HeaderPairs, new: HeaderPairs) -> list[tuple[str, str]]:
    """Freshen stored header fields with a 304's (or HEAD's) fields (§3.2, §4.3.4).

    Every field in ``new`` replaces all stored lines of that name (keeping the stored
    position); fields only in ``new`` are appended; the rest are kept. Framing and
    hop-by-hop fields, fields listed in the new Connection, Age, Content-Encoding,
    Content-Range and Content-MD5 are never taken from ``new`` (``NOT_UPDATED_FIELDS``: they
    describe the stored bytes or one hop).
    """
    skip = set(NOT_UPDATED_FIELDS)
    skip.update(name.lower() for name in list_members(new, "Connection"))
    replacement: dict[str, list[tuple[str, str]]] = {}
    for name, value in new:
        lowered = name.lower()
        if lowered not in skip:
            replacement.setdefault(lowered, []).append((name, value))
    result: list[tuple[str, str]] = []
    emitted: set[str] = set()
    for name, value in stored:
        lowered = name.lower()
        if lowered in replacement:
            if lowered not in emitted:
                result.extend(replacement[lowered])
                emitted.add(lowered)
        else:
            result.append((name, value))
    for lowered, lines in replacement.items():
        if lowered not in emitted:
            result.extend(lines)
    return result


class Validators(NamedTuple):
    """The validators of one stored response, for §4.3.4 selection."""

    etag: EntityTag | None
    last_modified: int | None
    recency: float  # larger is more recent (e.g. the response time)


def select_for_update(stored: Sequence[Validators], new_headers: HeaderPairs) -> list[int]:
    """Which stored responses a 304 (or HEAD response) freshens (§4.3.4); indexes.

    1. A strong ETag in the new response selects every stored response with the same
       strong ETag, and nothing else.
    2. Otherwise a weak ETag, or a Last-Modified, selects the most recent stored response
       with that weak-matching ETag / equal Last-Modified (cproxy treats Last-Modified as
       a weak validator, the safe reading of RFC 9110 §8.8.2.2).
    3. With no validator at all, the only stored response is selected when it has none.
    """
    tag = parse_etag(get_first(new_headers, "ETag"))
    if tag is not None and not tag.weak:
        return [i for i, v in enumerate(stored) if strong_match(v.etag, tag)]
    last_modified = parse_http_date(get_first(new_headers, "Last-Modified"))
    if tag is not None or last_modified is not None:
        candidates = [
            i
            for i, v in enumerate(stored)
            if (weak_match(v.etag, tag) if tag is not None else v.last_modified == last_modified)
        ]
        if not candidates:
            return []
        return [max(candidates, key=lambda i: stored[i].recency)]
    if len(stored) == 1 and stored[0].etag is None and stored[0].last_modified is None:
        return [0]
    return []


def client_not_modified(
    method: str,
    req_headers: HeaderPairs,
    stored_headers: HeaderPairs,
    *,
    stored_time: float | None = None,
) -> bool:
    """Does the client's conditional GET/HEAD get a 304 from this stored response?

    RFC 9111 §4.3.2 with RFC 9110 §13.1.2 and §13.2.2: If-None-Match (weak comparison,
    ``*`` matches) decides when present, and If-Modified-Since is then ignored; otherwise
    If-Modified-Since compares with the stored Last-Modified, else its Date, else
    ``stored_time``. Other methods never get a 304 here.
    """
    if method not in ("GET", "HEAD"):
        return False
    inm = get_all(req_headers, "If-None-Match")
    if inm:
        stored_tag = parse_etag(get_first(stored_headers, "ETag"))
        for member in list_members(req_headers, "If-None-Match"):
            if member == "*" or weak_match(parse_etag(member), stored_tag):
                return True
        return False
    since = parse_http_date(get_first(req_headers, "If-Modified-Since"))
    if since is None:
        return False
    modified = parse_http_date(get_first(stored_headers, "Last-Modified"))
    reference = response_date(stored_headers, stored_time) if modified is None else modified
    return reference is not None and reference <= since


# RFC 9110 §15.4.5 (and RFC 9111 §4.3.2): what a 304 built from a stored response carries.
NOT_MODIFIED_FIELDS = frozenset(
    {"cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified"}
)


def not_modified_headers(stored_headers: HeaderPairs) -> list[tuple[str, str]]:
    """The header fields of a 304 answering a client from a stored response."""
    return [(k, v) for k, v in stored_headers if k.lower() in NOT_MODIFIED_FIELDS]


# ---------------------------------------------------------------------------------------------
# Invalidation (RFC 9111 §4.4)


def invalidation_targets(
    method: str, status: int, url_key: str, resp_headers: HeaderPairs
) -> list[str]:
    """The keys an unsafe request's response invalidates (§4.4).

    A non-error (2xx or 3xx) response to an unsafe method (any method not safe by RFC 9110
    §9.2.1, known or not) invalidates the target URI and the Location and Content-Location
    URIs, the latter only when they share the target's origin (scheme, host, port).
    """
    if method in SAFE_METHODS or not 200 <= status <= 399:
        return []
    targets = [url_key]
    origin = origin_of(url_key)
    for name in ("Location", "Content-Location"):
        value = get_first(resp_headers, name)
        if value is None:
            continue
        resolved = resolve_reference(url_key, value)
        if resolved is not None and origin_of(resolved) == origin and resolved not in targets:
            targets.append(resolved)
    return targets
