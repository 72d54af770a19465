"""The miss lane: a plain GET of a URL known to be uncacheable, served without the general path.

The commonest miss in a busy proxy is a URL whose last answer could not be stored (an
API call, a page that says ``no-store``): the cache front remembers such URLs for a few
seconds ("hit-for-miss", `ProxyCache.uncacheable`) and sends their requests straight to
the origin, uncollapsed. On the general path that request still goes through dispatch,
the cache front's lookup, collapsing and `_fetch`'s every case (validation, stale
content, the store); measured, those layers and their objects are a fifth of a pooled
1 KiB miss (issue #21). The miss lane serves exactly this request in one function, from
the `PlainGet` the fast lane already checked, and declines everything else.

Its contract is the fast lane's (tests/test_misslane.py checks it differentially over
generated requests, responses and configurations): for any plain GET it either

- declines, having sent nothing and changed nothing (no counter moved), and the general
  path serves the request as if the lane did not exist; or
- sends byte for byte what the general path would send (to the origin and to the
  client), moves the same counters, writes the same access-log line, and returns the
  same keep-alive verdict.

It takes a request only when every check of the general path is known to pass for it
and nothing else can change the outcome: the cache front's gate says the URL alone
decides (`caching.cache_front` is URL_ALONE, as for the fast lane), no shared tier and
no ParentProxy, the port is not one of cproxy's own, the destination policy lets the
port and host through, the URL is remembered as uncacheable and nothing is stored under
it, and it is not hidden from this client (`LoopbackOrigins`). For such a request the
general path's lookup is a plain uri-miss and its collapsing step forwards at once.

The origin round trip is the general one (`Requester.exchange`: the pool, the retry
rule, the destination checks); an HTTP/2 origin stream behind that seam serves the lane
too. What the lane saves is after it: a response whose body came whole with its head and
whose directives forbid storing it (`policy.says_no_store`: `storable` would refuse it
whatever else it says) is relayed at once; any other response (storable after all, a
body still to come, a 304...) is handed to the general path's second half
(`caching.answer_fetched`), so it is served, stored or refused exactly as there.
"""

from __future__ import annotations

import time
from typing import Protocol

from cproxy.cache import Lookup
from cproxy.cache.policy import says_no_store
from cproxy.directives import Config
from cproxy.errors import OriginError, OriginProtocolError
from cproxy.http.framing import LENGTH, NONE
from cproxy.http.message import client_fields
from cproxy.origin.parents import ParentSet
from cproxy.server.accesslog import AccessLog
from cproxy.server.caching import Front, ProxyCache, answer_fetched, cache_front
from cproxy.server.destinations import policy_for
from cproxy.server.exchange import Requester
from cproxy.server.fastlane import PlainGet, record_lane_request
from cproxy.server.respond import Outcome, origin_failed
from cproxy.server.responsestats import ResponseStats


class MissLaneState(Protocol):
    """What the miss lane needs of the running proxy (`cproxy.server.runtime.Runtime`)."""

    config: Config
    access_log: AccessLog
    responses: ResponseStats
    parents: ParentSet

    @property
    def cache(self) -> ProxyCache | None: ...

    def listens_on_port(self, port: int | None) -> bool: ...


# The Cache-Status line of a no-store miss the lane relays, by the lookup's figures and the
# status: the general path builds the same text with `Lookup.cache_status`, with the
# storage verdict's reason as its detail (RFC 9211), on every miss.
_MISS_STATUS: dict[tuple[str, str | None, str | None, float | None, int], str] = {}


def _miss_status_line(result: Lookup, status: int) -> str:
    key = (result.name, result.fwd, result.detail, result.ttl, status)
    line = _MISS_STATUS.get(key)
    if line is None:
        if len(_MISS_STATUS) >= 256:
            _MISS_STATUS.clear()
        status_value = result.cache_status(fwd_status=status, not_stored="no-store")
        line = _MISS_STATUS[key] = f"Cache-Status: {status_value}"
    return line


def serve_plain_miss(
    state: MissLaneState, who: Requester, plain: PlainGet, keep: bool
) -> bool | None:
    """Serve ``plain`` (which the fast lane could not answer from the cache) if it is a
    miss the lane takes; None, having done nothing, when the general path must serve it.
    ``keep`` is the client side's keep-alive verdict for a request that asks to persist;
    returns the keep-alive verdict, as the general path returns it."""
    started = time.monotonic()
    cfg = state.config
    cache = state.cache
    if cache is None or cache.tier is not None or state.parents.active:
        return None
    if cache_front(cfg, cache) is not Front.URL_ALONE:
        return None  # the general path asks the same gate (mapping rules, ProxyAuth...)
    port = plain.port
    if state.listens_on_port(port):
        return None  # perhaps aimed at cproxy itself: the general path decides
    client_ip = who.client_ip
    policy = policy_for(cfg)
    if policy.port_refusal(port) is not None or policy.literal_refusal(plain.host, client_ip):
        return None  # refused before any lookup (SafePorts, an IP literal): general path
    url_key = plain.url_key
    # Only a URL remembered as uncacheable with nothing stored under it: the general
    # path's lookup is then a plain uri-miss (no stored response, no Range for stored
    # parts) and its collapsing step forwards the request at once.
    if url_key not in cache.uncacheable or url_key in cache.store:
        return None
    if cache.loopback_origins.hidden_from(url_key, client_ip, cfg):
        return None  # the general path sends it on for its connection check
    # From here on the lane serves the request.
    cache.lane_misses += 1
    req = plain.request()
    outcome = Outcome()
    try:
        result = cache.http.lookup("GET", url_key, req.headers, cache.clock())
        # (A uri-miss, by the checks above: the lookup counts it as the general path's does.)
        request_time = cache.clock()
        outcome.cache = result.fwd or result.kind.value
        try:
            exchange = who.exchange(req, outcome)
        except (OriginError, OriginProtocolError) as exc:
            return origin_failed(who.sink, cfg.hostname, req, exc, keep, outcome)
        response_time = cache.clock()
        cache.loopback_origins.note(url_key, exchange.stream.peer_ip, policy)
        resp = exchange.resp
        kind = resp.body
        fields = client_fields(resp, cfg.hostname)
        if not (
            (kind == NONE or (kind == LENGTH and len(exchange.rest) >= resp.content_length))
            and says_no_store(fields, cache.http.settings)
        ):
            times = (request_time, response_time)
            return answer_fetched(who, cache, req, url_key, result, keep, outcome, exchange, times)
        # `storable` refuses it: remembered as uncacheable (again, if its time ran out
        # while the origin answered), relayed from memory, nothing stored.
        if url_key not in cache.uncacheable:
            cache.uncacheable[url_key] = True
        extra = _miss_status_line(result, resp.status)
        outcome.cache += ";detail=no-store"  # as the general path logs storable's reason
        return exchange.relay(keep, extra=[extra], fields=fields.items())
    finally:
        record_lane_request(
            state,
            plain,
            client_ip,
            started,
            outcome.status,
            outcome.sent,
            outcome.origin,
            outcome.cache,
            outcome.user,
            outcome.protocol,
        )
