"""The miss lane (cproxy/server/misslane.py) against the general path, differentially.

The miss lane's contract is the fast lane's: for a plain GET it either declines, having
done nothing, or does exactly what the general path would have done. Here one proxy
serves each generated case twice, with the miss lane on and off, from the same starting
state (a fresh cache, the URL remembered as uncacheable by a first request whose answer
said no-store), each request followed on its connection by a canary, so the keep-alive
verdict is compared too. Generated: the request's fields, the origin's answer (status,
framing, whether the body comes with the head, cache directives, hop-by-hop fields,
Set-Cookie, Via), and the configuration (tests/test_fastlane.py's `configurations`).
The bytes the client received, the request the origin received, the cache and response
counters and the access-log line must be the same.
"""

from __future__ import annotations

import email.utils
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cproxy.directives import config_with
from cproxy.server.caching import ProxyCache
from tests.lanediff import log_mark, log_since, send, undated
from tests.support import FakeClock, Origin, ProxyThread, start_proxy
from tests.test_fastlane import PLAIN_FIELDS

FIXED_DATE = "Mon, 23 Nov 2026 10:00:00 GMT"


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    with Origin() as o:
        yield o


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyThread]:
    log = tmp_path_factory.mktemp("misslane") / "access.log"
    with start_proxy(AccessLog=str(log)) as p:
        p.access_log_path = log  # type: ignore[attr-defined]
        yield p


# -- the origin's answers ----------------------------------------------------------------

# Cache directives of the answer: most forbid storing it at once (the lane's own case),
# the rest make it storable after all, or forbid it by a later rule, or say no-store in a
# way `storable` ignores (must-understand) or that the proxy drops (a Connection option).
DIRECTIVES = [
    {"Cache-Control": "no-store"},
    {"Cache-Control": "no-store"},
    {"Cache-Control": "no-store, max-age=60"},
    {"Cache-Control": "public, No-Store"},
    {"Cache-Control": "no-store", "Expires": "Mon, 23 Nov 2026 11:00:00 GMT"},
    {"Cache-Control": "no-store, must-understand, max-age=60"},
    {"Cache-Control": "private"},
    {"Cache-Control": "max-age=60"},
    {"Cache-Control": "no-cache"},
    {"Cache-Control": "no-store", "Connection": "Cache-Control"},
    {"CDN-Cache-Control": "max-age=60", "Cache-Control": "no-store"},
    {"Cache-Control": "no-store", "Vary": "*"},
    {},
]
EXTRA_FIELDS = [
    ("Set-Cookie", "id=1"),
    ("Via", "1.1 upstream"),
    ("Connection", "close"),
    ("Connection", "keep-alive"),
    ("Keep-Alive", "timeout=5"),
    ("X-Tab", "\tv\t"),
    ("Content-Type", "text/plain"),
]
STATUSES = [200, 200, 203, 204, 301, 404, 500]


@st.composite
def answers(draw: st.DrawFn) -> tuple[int, dict[str, str], list[tuple[str, str]], str, bool]:
    """(status, directives, extra fields, framing, body with the head)."""
    return (
        draw(st.sampled_from(STATUSES)),
        draw(st.sampled_from(DIRECTIVES)),
        draw(st.lists(st.sampled_from(EXTRA_FIELDS), max_size=3)),
        draw(st.sampled_from(["length", "length", "chunked", "close"])),
        draw(st.booleans()),
    )


@st.composite
def configurations(draw: st.DrawFn, port: int) -> dict[str, str]:
    """Directives that decide how a plain miss of /m is served: mapping rules that match
    it or not, NoCaching, CacheQueries, caching itself, access lists, the ports and
    addresses plain HTTP may reach."""
    o = f"127.0.0.1:{port}"
    rules = draw(
        st.lists(
            st.sampled_from(
                [
                    "Fail /m*",
                    "Fail /nomatch/*",
                    f"Redirect /m* http://{o}/elsewhere",
                    "Map /m* /m2",
                    f"Proxy /app/* http://{o}/*",
                ]
            ),
            max_size=2,
        )
    )
    choices: dict[str, list[str]] = {
        "NoCaching": ["", f"http://{o}/m*", "http://*.example.test/*"],
        "CacheQueries": ["on", "off"],
        "Caching": ["on", "off"],
        "ProxyAccess": ["127.0.0.0/8 ::1/128", "10.0.0.0/8"],
        "ProxyPersistence": ["on", "off"],
        "SafePorts": ["80 443", "1-65535"],
        "RefusedDestinations": ["0.0.0.0/8", "127.0.0.0/8"],
        "LoopbackDestinations": ["127.0.0.0/8 ::1/128", "10.0.0.0/8"],
        "MaxPersistRequest": ["1", "100"],
    }
    directives = {"MappingRules": "\n".join(rules)}
    for name, values in choices.items():
        if draw(st.booleans()):
            directives[name] = draw(st.sampled_from(values))
    return directives


def _raw_answer(answer: tuple, path: str) -> tuple[list[bytes], bool]:
    """The origin's bytes for ``answer`` (in the pieces it writes) and whether it closes."""
    status, directives, extra, framing, whole = answer
    body = b"" if status == 204 else f"answer for {path}".encode()
    fields = [("Date", FIXED_DATE), *directives.items(), *extra]
    close = framing == "close" or ("Connection", "close") in extra
    if framing == "length" and status != 204:
        fields.append(("Content-Length", str(len(body))))
    elif framing == "chunked" and status != 204:
        fields.append(("Transfer-Encoding", "chunked"))
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    elif status == 204:
        body = b""
    head = f"HTTP/1.1 {status} Whatever\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields)
    head_bytes = (head + "\r\n").encode("latin-1")
    pieces = [head_bytes + body] if whole or not body else [head_bytes, body]
    return pieces, close


class Answers:
    """The origin route: the first request of a case (with ``X-Warm``) gets a no-store
    answer, so the URL is remembered as uncacheable; the others get the case's answer."""

    def __init__(self) -> None:
        self.answer: tuple | None = None
        self.lock = threading.Lock()

    def __call__(self, h) -> None:  # type: ignore[no-untyped-def]
        if h.headers.get("X-Warm") or self.answer is None:
            body = b"warm"
            h.wfile.write(
                b"HTTP/1.1 200 OK\r\nDate: %s\r\nCache-Control: no-store\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (FIXED_DATE.encode(), len(body), body)
            )
            return
        pieces, close = _raw_answer(self.answer, h.path)
        for piece in pieces:
            h.wfile.write(piece)
            h.wfile.flush()
        if close:
            h.close_connection = True


def _served(
    proxy: ProxyThread,
    origin: Origin,
    request: bytes,
    directives: dict[str, str],
    *,
    lane: bool,
) -> tuple:
    """What the client, the origin, the counters and the access log saw for ``request``
    (a plain GET of /m), with the miss lane on or off, after a first request made /m
    known as uncacheable."""
    rt = proxy.runtime
    before = rt.config
    clock = FakeClock()
    clock.now = email.utils.parsedate_to_datetime(FIXED_DATE).timestamp() + 30

    def fresh_cache() -> None:
        rt.cache = ProxyCache(rt.config, clock)
        rt.access_log.flush()

    proxy.call(fresh_cache)
    warm = f"GET {origin.url('/m')} HTTP/1.1\r\nHost: x\r\nX-Warm: 1\r\nConnection: close\r\n\r\n"
    assert b" 200 " in send(proxy.port, warm.encode())
    assert rt.cache is not None
    assert f"http://127.0.0.1:{origin.port}/m" in rt.cache.uncacheable
    log_size = log_mark(proxy)
    with origin.lock:
        seen = len(origin.requests)
    statuses = dict(rt.responses.by_status)
    proxy.call(lambda: rt.apply(config_with(before, directives)))
    rt.miss_lane = lane
    try:
        canary = f"GET {origin.url('/canary')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        raw = send(proxy.port, request + canary.encode())
    finally:
        rt.miss_lane = True
        proxy.call(lambda: rt.apply(before))
    cache = rt.cache
    lines = log_since(proxy, log_size)
    with origin.lock:
        received = origin.requests[seen:]
    counters = (
        cache.store.hits,
        cache.store.misses,
        cache.store.stores,
        cache.fast_hits,
        sorted(cache.uncacheable.keys()),
        {k: v - statuses.get(k, 0) for k, v in rt.responses.by_status.items()},
    )
    return undated(raw), received, counters, lines


def _request(port: int, fields: list[str]) -> bytes:
    o = f"127.0.0.1:{port}"
    text = f"GET http://{o}/m HTTP/1.1\r\nHost: {o}\r\n" + "".join(f + "\r\n" for f in fields)
    return (text + "\r\n").encode("latin-1")


def _compare(proxy: ProxyThread, origin: Origin, request: bytes, directives: dict) -> tuple:
    general = _served(proxy, origin, request, directives, lane=False)
    lane = _served(proxy, origin, request, directives, lane=True)
    assert lane == general, (request, directives)
    return lane


@pytest.mark.timeout(300)
@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
@example(data=None)
def test_miss_lane_serves_exactly_what_the_general_path_serves(
    proxy: ProxyThread, origin: Origin, data: st.DataObject | None
) -> None:
    """Generated requests, origin answers and configurations: the same bytes to the
    client and to the origin, the same counters and the same log line, both ways."""
    route = Answers()
    origin.routes["/m"] = route
    try:
        if data is None:
            route.answer = (200, {"Cache-Control": "no-store"}, [], "length", True)
            fields = ["User-Agent: curl/8.0", "Accept: */*"]
            directives: dict[str, str] = {}
        else:
            route.answer = data.draw(answers(), label="answer")
            fields = data.draw(st.lists(st.sampled_from(PLAIN_FIELDS), max_size=3), label="fields")
            directives = (
                data.draw(configurations(origin.port), label="directives")
                if data.draw(st.booleans(), label="configured")
                else {}
            )
        raw, received, _counters, _lines = _compare(
            proxy, origin, _request(origin.port, fields), directives
        )
    finally:
        origin.routes.pop("/m", None)
    if data is None:
        assert raw.startswith(b"HTTP/1.1 200 ")
        assert b"Cache-Status: cproxy; fwd=uri-miss; fwd-status=200; detail=no-store\r\n" in raw
        assert [r[1] for r in received] == ["/m", "/canary"]


def test_miss_lane_takes_the_plain_uncacheable_miss(proxy: ProxyThread, origin: Origin) -> None:
    """The lane serves a plain GET of a URL known to be uncacheable (so the differential
    test above is not comparing the general path with itself), and not a URL that is not
    known as uncacheable, nor one with its miss lane turned off."""
    route = Answers()
    route.answer = (200, {"Cache-Control": "no-store"}, [], "length", True)
    origin.routes["/m"] = route
    try:
        _served(proxy, origin, _request(origin.port, []), {}, lane=False)
        cache = proxy.runtime.cache
        assert cache is not None and cache.lane_misses == 0
        _served(proxy, origin, _request(origin.port, []), {}, lane=True)
        cache = proxy.runtime.cache
        assert cache is not None and cache.lane_misses == 1
        # A plain GET of a URL not known as uncacheable (then a canary, not a plain GET).
        o = f"127.0.0.1:{origin.port}"
        request = f"GET http://{o}/other HTTP/1.1\r\nHost: {o}\r\n\r\n"
        canary = f"GET http://{o}/canary HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert send(proxy.port, (request + canary).encode()).count(b"HTTP/1.1 200 ") == 2
        assert cache.lane_misses == 1
        assert cache.stats()["lane_misses"] == 1
    finally:
        origin.routes.pop("/m", None)


@pytest.mark.parametrize("answer", [DIRECTIVES.index(d) for d in DIRECTIVES[:8]])
def test_each_directive_is_served_as_the_general_path_serves_it(
    proxy: ProxyThread, origin: Origin, answer: int
) -> None:
    route = Answers()
    route.answer = (200, DIRECTIVES[answer], [], "length", True)
    origin.routes["/m"] = route
    try:
        _compare(proxy, origin, _request(origin.port, []), {})
    finally:
        origin.routes.pop("/m", None)
