"""The fast lane (cproxy/server/fastlane.py) against the general path, differentially.

The fast lane's contract: for any request it either declines, or sends exactly what the
general path would have sent, counts the same and logs the same. Here one proxy serves
every generated request twice, once with the fast lane and once without, each time from
the same starting state (a fresh cache holding the same stored response, a fake clock),
followed on the same connection by a canary request, so the keep-alive verdict is
compared too. The bytes the client received, the cache counters and the access-log line
must be the same. The configurations and stored responses are generated too (mapping
rules, NoCaching, CacheQueries, access lists...): deleting the fast lane's configuration
gate (`caching.cache_front` is URL_ALONE), or either half of it, fails
`test_fast_lane_obeys_every_configuration_as_the_general_path_does`.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cproxy.directives import config_with
from cproxy.http import Request, parse_request_head
from cproxy.server.caching import ProxyCache
from cproxy.server.fastlane import plain_get
from tests.lanediff import log_mark, log_since, send, undated
from tests.support import FakeClock, Origin, ProxyThread, start_proxy

FIXED_DATE = "Mon, 23 Nov 2026 10:00:00 GMT"
# What Chromium sends for a page (bench/benchlib.py's browser-header scenario).
BROWSER_HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-GB,en;q=0.9",
    "Accept-Encoding": "gzip, deflate",
    "Cookie": "session=3f2a9c0d1e7b4a6f; theme=dark",
    "Referer": "http://127.0.0.1/index.html",
    "Upgrade-Insecure-Requests": "1",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Site": "same-origin",
}


def _stored_route(h) -> None:  # type: ignore[no-untyped-def]
    h.reply(
        200,
        f"stored {h.path}".encode(),
        {"Cache-Control": "max-age=3600", "Date": FIXED_DATE, "Content-Type": "text/plain"},
    )


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    with Origin() as o:
        o.default_route = _stored_route
        yield o


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyThread]:
    log = tmp_path_factory.mktemp("fastlane") / "access.log"
    with start_proxy(AccessLog=str(log)) as p:
        p.access_log_path = log  # type: ignore[attr-defined]
        yield p


def _reset(proxy: ProxyThread, clock: FakeClock) -> None:
    def fresh_cache() -> None:
        rt = proxy.runtime
        rt.cache = ProxyCache(rt.config, clock)
        rt.access_log.flush()

    proxy.call(fresh_cache)


def _served(proxy: ProxyThread, origin: Origin, request: bytes, *, fast: bool) -> tuple:
    """What the client, the counters and the access log saw for ``request``."""
    clock = FakeClock()
    clock.now = email.utils.parsedate_to_datetime(FIXED_DATE).timestamp() + 30
    _reset(proxy, clock)
    canary = f"GET {origin.url('/canary')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    warm = f"GET {origin.url('/r')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert b" 200 " in send(proxy.port, warm.encode())
    log_size = log_mark(proxy)
    proxy.runtime.fast_lane = fast
    try:
        raw = send(proxy.port, request + canary.encode())
    finally:
        proxy.runtime.fast_lane = True
    cache = proxy.runtime.cache
    lines = log_since(proxy, log_size)
    # cproxy's own answers (errors) carry the real time in Date; stored ones FIXED_DATE.
    counters = (cache.store.hits, cache.store.misses, cache.store.stores)
    return undated(raw), counters, lines, cache.fast_hits


# -- generated requests ----------------------------------------------------------------


def _targets(port: int) -> st.SearchStrategy[str]:
    hosts = st.sampled_from(
        ["127.0.0.1", "127.0.0.1.", "LOCALHOST", "localhost", "127.1", "bad_host!", "a..b"]
    )
    ports = st.sampled_from([f":{port}", f":0{port}", ":80", "", ":", ":99999"])
    paths = st.sampled_from(["/r", "/r?", "/r?q=1", "/r#f", "", "?x", "/R", "/%2f", "/r/../r"])
    schemes = st.sampled_from(["http://", "HTTP://", "https://", "ftp://"])
    absolute = st.builds(lambda s, h, p, x: s + h + p + x, schemes, hosts, ports, paths)
    return st.one_of(absolute, st.sampled_from(["/r", "*", "x"]))


FIELDS = [
    "Host: {host}",
    "Host: {host}",
    "host:{host}",
    "HOST: \t{host} \t",
    "Host: other.example",
    "Host: ",
    "Host: bad host",
    "User-Agent: curl/8.0",
    "Referer: http://example/\xe9",
    "Accept: */*",
    "Cookie: a=1",
    "Cache-Control: no-cache",
    "cache-control: max-age=0",
    "Cache-Control: only-if-cached",
    "Pragma: no-cache",
    "If-None-Match: *",
    'If-None-Match: "x"',
    "If-Modified-Since: " + FIXED_DATE,
    "Range: bytes=0-3",
    "If-Range: " + FIXED_DATE,
    "Connection: close",
    "Connection: keep-alive",
    "Connection: Keep-Alive, close",
    "Connection: keep-alive, X-Tab",
    "Proxy-Connection: keep-alive",
    "Via: 1.1 elsewhere",
    "Via: 1.1 {me}",
    "Content-Length: 0",
    "Expect: 100-continue",
    "Max-Forwards: 0",
    "X-Obs: caf\xe9",
    "X-Ctl: a\x01b",
    "X-Bare-LF: a\nb",
    "X-Bare-CR: a\rb",
    "X-Bare-LF-End: a\n",
    "Bad Name: x",
    ": empty name",
    "NoColon",
    " folded",
    "X-Tab:\tvalue\t",
]


# Fields of a plain request: the fast lane takes a request with any of these.
PLAIN_FIELDS = [
    "User-Agent: curl/8.0",
    "Accept: */*",
    "Cookie: a=1",
    "Referer: http://example/",
    "Proxy-Connection: keep-alive",
    "Connection: keep-alive",
    "X-Tab:\tvalue\t",
]


@st.composite
def requests(draw: st.DrawFn, port: int, me: str) -> bytes:
    """A plain GET of the stored URL with up to three changes: another method, target or
    version, one more field from `FIELDS`, or no Host field."""
    method, target, version = "GET", f"http://127.0.0.1:{port}/r", "HTTP/1.1"
    fields = ["Host: {host}", *draw(st.lists(st.sampled_from(PLAIN_FIELDS), max_size=3))]
    for change in draw(
        st.lists(
            st.sampled_from(["method", "target", "version", "field"] * 3 + ["no-host"]), max_size=3
        )
    ):
        if change == "method":
            method = draw(st.sampled_from(["HEAD", "get", "POST", "PURGE", "OPTIONS"]))
        elif change == "target":
            target = draw(_targets(port))
        elif change == "version":
            version = draw(st.sampled_from(["HTTP/1.0", "HTTP/1.2", "HTTP/2.0"]))
        elif change == "field":
            fields.insert(draw(st.integers(0, len(fields))), draw(st.sampled_from(FIELDS)))
        elif "Host: {host}" in fields:
            fields.remove("Host: {host}")
    text = f"{method} {target} {version}\r\n"
    text += "".join(f.format(host=f"127.0.0.1:{port}", me=me) + "\r\n" for f in fields)
    return (text + "\r\n").encode("latin-1")


@pytest.mark.timeout(120)
@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
@example(data=None)
def test_fast_lane_serves_exactly_what_the_general_path_serves(
    proxy: ProxyThread, origin: Origin, data: st.DataObject | None
) -> None:
    if data is None:
        # The case the fast lane exists for: a browser's plain GET of a stored URL.
        o = f"127.0.0.1:{origin.port}"
        fields = "".join(f"{k}: {v}\r\n" for k, v in BROWSER_HEADERS.items())
        request = f"GET http://{o}/r HTTP/1.1\r\nHost: {o}\r\n{fields}\r\n".encode()
    else:
        me = proxy.runtime.config.hostname
        request = data.draw(requests(origin.port, me), label="request")
    general = _served(proxy, origin, request, fast=False)
    fast = _served(proxy, origin, request, fast=True)
    assert general[3] == 0
    assert fast[:3] == general[:3], request
    if data is None:
        assert fast[3] == 1, "the fast lane declined a plain hit"


def _plain(port: int, extra: str = "") -> bytes:
    o = f"127.0.0.1:{port}"
    return f"GET http://{o}/r HTTP/1.1\r\nHost: {o}\r\n{extra}\r\n".encode("latin-1")


@pytest.mark.parametrize(
    "extra",
    [
        *(f + "\r\n" for f in FIELDS if "{" not in f),
        "X-A: 1\r\n" * 100,  # with Host, one more than MAX_HEADER_COUNT
    ],
)
def test_each_field_alone_is_served_as_the_general_path_serves_it(
    proxy: ProxyThread, origin: Origin, extra: str
) -> None:
    request = _plain(origin.port, extra)
    assert (
        _served(proxy, origin, request, fast=True)[:3]
        == _served(proxy, origin, request, fast=False)[:3]
    )


@pytest.mark.parametrize(
    "host", ["bad host", "", "a..b", "[::1]", "x:99999", "127.0.0.1:0", "Example.COM.", "é"]
)
def test_each_host_value_is_served_as_the_general_path_serves_it(
    proxy: ProxyThread, origin: Origin, host: str
) -> None:
    request = f"GET {origin.url('/r')} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("latin-1")
    assert (
        _served(proxy, origin, request, fast=True)[:3]
        == _served(proxy, origin, request, fast=False)[:3]
    )


@pytest.mark.parametrize(
    "directives",
    [{"MaxPersistRequest": "1"}, {"ProxyPersistence": "off"}, {"Caching": "off"}],
)
def test_directives_the_fast_lane_reads_are_obeyed(
    proxy: ProxyThread, origin: Origin, directives: dict[str, str]
) -> None:
    rt = proxy.runtime
    before = rt.config
    proxy.call(lambda: rt.apply(config_with(before, directives)))
    try:
        request = _plain(origin.port) * 2
        general = _served(proxy, origin, request, fast=False)
        assert _served(proxy, origin, request, fast=True)[:3] == general[:3]
    finally:
        proxy.call(lambda: rt.apply(before))


# -- the Request handed to the general path --------------------------------------------


def _state(req: Request) -> dict[str, object]:
    # Every public value of the request (its slots and properties), read from the object,
    # not from ``__slots__``: a class compiled by setup.py's mypyc build has none.
    names = [n for n in dir(req) if not n.startswith("_") and not callable(getattr(req, n))]
    state = {name: getattr(req, name) for name in names if name != "headers"}
    return state | {"fields": list(req.headers), "index": req.headers.by_name()}


@settings(max_examples=300, deadline=None, database=None)
@given(request=requests(8080, "cproxy"))
@example(request=_plain(8080, "User-Agent: x\r\nX-Tab:\tv \r\n"))
def test_plain_get_builds_the_request_that_parse_request_head_builds(request: bytes) -> None:
    plain = plain_get(request)
    if plain is None:
        return
    assert _state(plain.request()) == _state(parse_request_head(request))


def test_plain_get_requests_do_not_share_mutable_headers() -> None:
    plain = plain_get(_plain(8080, "Accept: */*\r\n"))
    assert plain is not None
    first = plain.request()
    first.headers.add("X-Added", "1")
    first.headers.set("Accept", "text/html")
    assert _state(plain.request()) == _state(parse_request_head(_plain(8080, "Accept: */*\r\n")))


# -- what the fast lane takes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "taken"),
    [
        ("", True),
        ("User-Agent: curl/8.5.0\r\nAccept: */*\r\n", True),
        ("Proxy-Connection: Keep-Alive\r\n", True),
        ("Cache-Control: max-age=0\r\n", False),
        ("Connection: keep-alive\r\n", True),  # Firefox sends it on every request
        ("Connection: Keep-Alive, keep-alive\r\nConnection: keep-alive\r\n", True),
        ("Connection: close\r\n", False),
        ("Connection: keep-alive, close\r\n", False),
        ("Connection: keep-alive, X-Secret\r\n", False),
        ("Connection: \r\n", False),
        ("Range: bytes=0-1\r\n", False),
    ],
)
def test_fast_lane_takes_plain_hits_and_leaves_the_rest(
    proxy: ProxyThread, origin: Origin, extra: str, taken: bool
) -> None:
    o = f"127.0.0.1:{origin.port}"
    request = f"GET http://{o}/r HTTP/1.1\r\nHost: {o}\r\n{extra}\r\n".encode()
    raw, _counters, _log, fast_hits = _served(proxy, origin, request, fast=True)
    assert raw.startswith(b"HTTP/1.1 20")
    assert fast_hits == (1 if taken else 0)


# -- generated configurations and stored responses ---------------------------------------

# Stored responses: fresh, stale, varying, private, always validated, shared-cache-stale.
STORED = [
    {"Cache-Control": "max-age=3600"},
    {"Cache-Control": "max-age=10"},  # stale at the test's clock (30 s after Date)
    {"Cache-Control": "max-age=3600", "Vary": "Accept"},
    {"Cache-Control": "max-age=3600", "Vary": "*"},
    {"Cache-Control": "no-cache, max-age=3600"},
    {"Cache-Control": "s-maxage=0, max-age=3600"},
    {"Cache-Control": "max-age=3600, must-revalidate"},
    {"Cache-Control": "max-age=10, stale-while-revalidate=1000"},
    {"Expires": "Mon, 23 Nov 2026 11:00:00 GMT"},
    {"Last-Modified": "Mon, 23 Nov 2026 09:00:00 GMT"},
]


@st.composite
def configurations(draw: st.DrawFn, port: int) -> dict[str, str]:
    """Directives that may change how a stored URL is answered (issue #12): mapping rules
    that match it or not, NoCaching, CacheQueries, access lists, caching itself."""
    o = f"127.0.0.1:{port}"
    rules = draw(
        st.lists(
            st.sampled_from(
                [
                    "Fail /r*",
                    "Fail /nomatch/*",
                    f"Fail http://{o}/r*",
                    f"Redirect /r* http://{o}/elsewhere",
                    "Map /r* /r2",
                    "Map /nomatch/* /x",
                    f"Proxy /app/* http://{o}/*",
                ]
            ),
            max_size=2,
        )
    )
    choices: dict[str, list[str]] = {
        "NoCaching": ["", f"http://{o}/r*", "http://*.example.test/*", f"http://{o}/*"],
        "CacheQueries": ["on", "off"],
        "Caching": ["on", "off"],
        "ProxyAccess": ["127.0.0.0/8 ::1/128", "10.0.0.0/8"],
        "PurgeAccess": ["", "127.0.0.0/8"],
        "ProxyPersistence": ["on", "off"],
    }
    directives = {"MappingRules": "\n".join(rules)}
    for name, values in choices.items():
        if draw(st.booleans()):
            directives[name] = draw(st.sampled_from(values))
    return directives


def _served_under(
    proxy: ProxyThread,
    origin: Origin,
    path: str,
    stored: dict[str, str],
    directives: dict[str, str],
    request: bytes,
    *,
    fast: bool,
) -> tuple:
    """`_served`, with ``path`` stored (``stored`` fields) under the default configuration
    and then ``request`` answered under ``directives``."""
    rt = proxy.runtime
    before = rt.config
    clock = FakeClock()
    clock.now = email.utils.parsedate_to_datetime(FIXED_DATE).timestamp() + 30
    _reset(proxy, clock)
    warm = f"GET {origin.url(path)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert b" 200 " in send(proxy.port, warm.encode())
    log_size = log_mark(proxy)
    proxy.call(lambda: rt.apply(config_with(before, directives)))
    rt.fast_lane = fast
    try:
        canary = f"GET {origin.url('/canary')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        raw = send(proxy.port, request + canary.encode())
    finally:
        rt.fast_lane = True
        proxy.call(lambda: rt.apply(before))
    cache = rt.cache
    lines = log_since(proxy, log_size)
    counters = (cache.store.hits, cache.store.misses, cache.store.stores)
    return undated(raw), counters, lines, cache.fast_hits


@pytest.mark.timeout(300)
@settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
@example(data=None)
def test_fast_lane_obeys_every_configuration_as_the_general_path_does(
    proxy: ProxyThread, origin: Origin, data: st.DataObject | None
) -> None:
    """Generated configurations and stored responses, and plain GETs of the stored URL:
    the fast lane answers exactly as the general path, or declines. Without its
    configuration gate it would serve a stored response that a Fail rule refuses or a
    NoCaching pattern excludes."""
    if data is None:
        # The case that went unseen: a Fail rule added after the URL was stored.
        path, stored, directives = "/r", STORED[0], {"MappingRules": "Fail /r*"}
    else:
        path = data.draw(st.sampled_from(["/r", "/r?q=1"]), label="path")
        stored = data.draw(st.sampled_from(STORED), label="stored")
        directives = data.draw(configurations(origin.port), label="directives")

    def route(h) -> None:  # type: ignore[no-untyped-def]
        fields = {"Date": FIXED_DATE, "Content-Type": "text/plain", **stored}
        h.reply(200, f"stored {h.path}".encode(), fields)

    for p in ("/r", "/r2", "/elsewhere"):
        origin.routes[p] = route
    try:
        o = f"127.0.0.1:{origin.port}"
        request = f"GET http://{o}{path} HTTP/1.1\r\nHost: {o}\r\nAccept: */*\r\n\r\n".encode()
        args = (proxy, origin, path, stored, directives, request)
        general = _served_under(*args, fast=False)
        fast = _served_under(*args, fast=True)
    finally:
        for p in ("/r", "/r2", "/elsewhere"):
            origin.routes.pop(p, None)
    assert general[3] == 0
    assert fast[:3] == general[:3], (directives, stored, path)
    if data is None:
        assert b" 403 " in general[0].split(b"\r\n", 1)[0]
