"""The cache through the running proxy: real clients, cproxy, a real origin (issue #3).

Each test names the RFC 9111 (or RFC 5861) section it checks. Time moves with a fake
clock installed on ``proxy.runtime.cache.clock``; nothing sleeps to synchronise.
"""

from __future__ import annotations

import http.client
import socket
import threading
from pathlib import Path

import pytest

from cproxy.cache import normalise_url
from tests.support import (
    WAIT_S,
    FakeClock,
    Origin,
    OriginHandler,
    ProxyThread,
    raw_connection,
    read_response,
    start_proxy,
    wait_for,
)

Response = tuple[int, dict[str, str], bytes]


def fetch(
    proxy: ProxyThread,
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Response:
    """One request through the proxy in absolute form, on a connection of its own."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=WAIT_S)
    try:
        conn.request(method, url, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def route(origin: Origin, path: str, status: int = 200, body: bytes = b"", **headers: str):
    """A fixed answer for ``path``; header names use _ for - (Cache_Control=...)."""
    fields = {k.replace("_", "-"): v for k, v in headers.items()}

    def handler(h: OriginHandler) -> None:
        h.reply(status, body or path.encode(), fields)

    origin.routes[path] = handler


def origin_requests(origin: Origin, path: str) -> list[tuple[str, str, dict[str, str], bytes]]:
    with origin.lock:
        return [r for r in origin.requests if r[1].split("?")[0] == path]


def lowered(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


# -- fresh hits (RFC 9111 §4, §4.2, §5.1; RFC 9211) -------------------------------------------


def test_4_2_fresh_hit_contacts_no_origin_and_carries_age_and_cache_status(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    route(origin, "/fresh", body=b"fresh body", Cache_Control="max-age=100")
    first = fetch(proxy, origin.url("/fresh"))
    assert first[0] == 200 and first[2] == b"fresh body"
    assert "age" not in first[1]
    clock.advance(30)
    status, headers, body = fetch(proxy, origin.url("/fresh"))
    assert (status, body) == (200, b"fresh body")
    assert len(origin.requests) == 1
    assert headers["cache-status"].startswith("cproxy; hit")
    assert 30 <= int(headers["age"]) <= 32  # §4.2.3: resident time (+1 s of Date rounding)


# -- validation (RFC 9111 §4.3, §3.2) ---------------------------------------------------------


def test_4_3_expired_entry_revalidated_with_etag_and_304_updates_stored_headers(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    def handler(h: OriginHandler) -> None:
        if h.headers.get("If-None-Match") == '"v1"':
            h.reply(304, b"", {"ETag": '"v1"', "Cache-Control": "max-age=500", "X-Custom": "b"})
        else:
            h.reply(
                200, b"body v1", {"ETag": '"v1"', "Cache-Control": "max-age=100", "X-Custom": "a"}
            )

    origin.routes["/etag"] = handler
    assert fetch(proxy, origin.url("/etag"))[1]["x-custom"] == "a"
    clock.advance(200)
    status, headers, body = fetch(proxy, origin.url("/etag"))
    assert (status, body) == (200, b"body v1")
    assert len(origin.requests) == 2
    assert lowered(origin.requests[1][2])["if-none-match"] == '"v1"'
    # §3.2: the 304's fields replace the stored ones.
    assert headers["x-custom"] == "b"
    assert headers["cache-control"] == "max-age=500"
    # Fresh again under the new max-age=500. The origin's Date is real time, 200 s behind
    # the fake clock, so the freshened response already has an apparent age of 200 (§4.2.3).
    clock.advance(100)
    status, headers, body = fetch(proxy, origin.url("/etag"))
    assert (status, body, headers["x-custom"]) == (200, b"body v1", "b")
    assert headers["cache-status"].startswith("cproxy; hit")
    assert len(origin.requests) == 2


def test_4_3_expired_entry_revalidated_with_last_modified(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    lm = "Wed, 01 Jan 2020 00:00:00 GMT"

    def handler(h: OriginHandler) -> None:
        if h.headers.get("If-Modified-Since") == lm:
            h.reply(304, b"", {"Last-Modified": lm, "X-Version": "2"})
        else:
            h.reply(200, b"lm body", {"Last-Modified": lm, "Cache-Control": "max-age=100"})

    origin.routes["/lm"] = handler
    fetch(proxy, origin.url("/lm"))
    clock.advance(200)
    status, headers, body = fetch(proxy, origin.url("/lm"))
    assert (status, body, headers["x-version"]) == (200, b"lm body", "2")
    assert len(origin.requests) == 2
    assert lowered(origin.requests[1][2])["if-modified-since"] == lm
    assert "if-none-match" not in lowered(origin.requests[1][2])


def test_4_3_2_clients_conditional_request_answered_304_from_fresh_entry(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    route(origin, "/cond", body=b"x" * 50, ETag='"abc"', Cache_Control="max-age=100")
    fetch(proxy, origin.url("/cond"))
    status, headers, body = fetch(proxy, origin.url("/cond"), headers={"If-None-Match": '"abc"'})
    assert (status, body) == (304, b"")
    assert headers["etag"] == '"abc"'
    status, _, body = fetch(proxy, origin.url("/cond"), headers={"If-None-Match": '"other"'})
    assert (status, body) == (200, b"x" * 50)
    assert len(origin.requests) == 1


def test_4_head_answered_from_stored_get(proxy: ProxyThread, origin: Origin) -> None:
    route(origin, "/head", body=b"0123456789", Cache_Control="max-age=100", X_Kind="get")
    fetch(proxy, origin.url("/head"))
    status, headers, body = fetch(proxy, origin.url("/head"), method="HEAD")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == "10"
    assert headers["x-kind"] == "get"
    assert [r[0] for r in origin.requests] == ["GET"]


# -- Vary (RFC 9111 §4.1) ---------------------------------------------------------------------


def test_4_1_vary_accept_encoding_stores_one_variant_per_value(
    proxy: ProxyThread, origin: Origin
) -> None:
    def handler(h: OriginHandler) -> None:
        enc = h.headers.get("Accept-Encoding", "none")
        h.reply(
            200,
            f"body for {enc}".encode(),
            {"Vary": "Accept-Encoding", "Cache-Control": "max-age=100"},
        )

    origin.routes["/vary"] = handler
    for _ in range(3):
        for enc in ("gzip", "br"):
            status, _, body = fetch(proxy, origin.url("/vary"), headers={"Accept-Encoding": enc})
            assert (status, body) == (200, f"body for {enc}".encode())
    assert len(origin.requests) == 2


def test_4_1_vary_star_never_served_from_cache(proxy: ProxyThread, origin: Origin) -> None:
    route(origin, "/star", Vary="*", Cache_Control="max-age=100")
    for _ in range(3):
        assert fetch(proxy, origin.url("/star"))[0] == 200
    assert len(origin.requests) == 3


# -- what is not stored (RFC 9111 §3, §3.5, §5.2.2.5, §5.2.2.7) --------------------------------


@pytest.mark.parametrize(
    ("response_headers", "request_headers"),
    [
        ({"Cache-Control": "max-age=100, no-store"}, {}),  # §5.2.2.5
        ({"Cache-Control": "max-age=100, private"}, {}),  # §5.2.2.7
        ({"Cache-Control": "max-age=100"}, {"Authorization": "Basic dTpw"}),  # §3.5
    ],
    ids=["no-store", "private", "authorization"],
)
def test_3_responses_a_shared_cache_must_not_store(
    proxy: ProxyThread,
    origin: Origin,
    response_headers: dict[str, str],
    request_headers: dict[str, str],
) -> None:
    origin.routes["/ns"] = lambda h: h.reply(200, b"secret", response_headers)
    for _ in range(2):
        assert fetch(proxy, origin.url("/ns"), headers=request_headers)[2] == b"secret"
    assert len(origin.requests) == 2
    assert proxy.runtime.cache.stats()["objects"] == 0


def test_3_5_authorization_with_public_is_stored(proxy: ProxyThread, origin: Origin) -> None:
    route(origin, "/pub", Cache_Control="public, max-age=100")
    for _ in range(2):
        fetch(proxy, origin.url("/pub"), headers={"Authorization": "Basic dTpw"})
    assert len(origin.requests) == 1


# -- request directives (RFC 9111 §5.2.1) ----------------------------------------------------


@pytest.mark.parametrize("directive", ["no-cache", "max-age=0"])
def test_5_2_1_request_no_cache_and_max_age_0_force_validation(
    proxy: ProxyThread, origin: Origin, directive: str
) -> None:
    def handler(h: OriginHandler) -> None:
        if h.headers.get("If-None-Match") == '"e"':
            h.reply(304, b"", {"ETag": '"e"'})
        else:
            h.reply(200, b"stored", {"ETag": '"e"', "Cache-Control": "max-age=100"})

    origin.routes["/rq"] = handler
    fetch(proxy, origin.url("/rq"))
    status, _, body = fetch(proxy, origin.url("/rq"), headers={"Cache-Control": directive})
    assert (status, body) == (200, b"stored")
    assert len(origin.requests) == 2
    assert lowered(origin.requests[1][2])["if-none-match"] == '"e"'


def test_5_2_1_7_only_if_cached_miss_gets_504(proxy: ProxyThread, origin: Origin) -> None:
    status, _, _ = fetch(proxy, origin.url("/oic"), headers={"Cache-Control": "only-if-cached"})
    assert status == 504
    assert origin.requests == []
    route(origin, "/oic", body=b"now cached", Cache_Control="max-age=100")
    fetch(proxy, origin.url("/oic"))
    status, _, body = fetch(proxy, origin.url("/oic"), headers={"Cache-Control": "only-if-cached"})
    assert (status, body) == (200, b"now cached")


# -- invalidation (RFC 9111 §4.4) ------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_4_4_unsafe_method_with_2xx_invalidates_target(
    proxy: ProxyThread, origin: Origin, method: str
) -> None:
    def handler(h: OriginHandler) -> None:
        if h.command == "GET":
            h.reply(200, b"cached", {"Cache-Control": "max-age=100"})
        else:
            h.reply(200, b"done")

    origin.routes["/inv"] = handler
    fetch(proxy, origin.url("/inv"))
    fetch(proxy, origin.url("/inv"))
    assert len(origin.requests) == 1
    assert fetch(proxy, origin.url("/inv"), method=method, body=b"x")[0] == 200
    fetch(proxy, origin.url("/inv"))
    assert [r[0] for r in origin.requests] == ["GET", method, "GET"]


def test_rfc9110_9_3_3_post_response_naming_its_target_serves_a_later_get(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    """A POST response with explicit freshness and Content-Location equal to the target
    is stored (after the POST invalidated the old copy, §4.4) and answers the next GET."""
    url = origin.url("/doc")

    def handler(h: OriginHandler) -> None:
        if h.command == "POST":
            fields = {"Cache-Control": "max-age=100", "Content-Location": url}
            h.reply(200, b"after post " + h.body, fields)
        else:
            h.reply(200, b"from get", {"Cache-Control": "max-age=100"})

    origin.routes["/doc"] = handler
    assert fetch(proxy, url)[2] == b"from get"
    assert fetch(proxy, url, method="POST", body=b"v2")[2] == b"after post v2"
    clock.advance(30)
    status, headers, body = fetch(proxy, url)
    assert (status, body) == (200, b"after post v2")
    assert headers["cache-status"].startswith("cproxy; hit")
    assert [r[0] for r in origin_requests(origin, "/doc")] == ["GET", "POST"]
    # Another POST always reaches the origin.
    assert fetch(proxy, url, method="POST", body=b"v3")[2] == b"after post v3"
    assert fetch(proxy, url)[2] == b"after post v3"
    assert [r[0] for r in origin_requests(origin, "/doc")] == ["GET", "POST", "POST"]


def test_rfc9110_9_3_3_post_response_without_its_own_location_is_not_reused(
    proxy: ProxyThread, origin: Origin
) -> None:
    url = origin.url("/form")
    route(origin, "/form", Cache_Control="max-age=100", Content_Location=origin.url("/else"))
    fetch(proxy, url, method="POST", body=b"x")
    fetch(proxy, url)
    assert [r[0] for r in origin_requests(origin, "/form")] == ["POST", "GET"]


def test_4_4_unsafe_method_with_error_status_does_not_invalidate(
    proxy: ProxyThread, origin: Origin
) -> None:
    def handler(h: OriginHandler) -> None:
        if h.command == "GET":
            h.reply(200, b"cached", {"Cache-Control": "max-age=100"})
        else:
            h.reply(500, b"failed")

    origin.routes["/inv5"] = handler
    fetch(proxy, origin.url("/inv5"))
    fetch(proxy, origin.url("/inv5"), method="POST", body=b"x")
    fetch(proxy, origin.url("/inv5"))
    assert [r[0] for r in origin.requests] == ["GET", "POST"]


@pytest.mark.parametrize("field", ["Location", "Content-Location"])
def test_4_4_location_and_content_location_of_same_origin_invalidated(
    proxy: ProxyThread, origin: Origin, field: str
) -> None:
    route(origin, "/target", Cache_Control="max-age=100")
    origin.routes["/submit"] = lambda h: h.reply(201, b"made", {field: "/target"})
    fetch(proxy, origin.url("/target"))
    fetch(proxy, origin.url("/target"))
    assert len(origin_requests(origin, "/target")) == 1
    fetch(proxy, origin.url("/submit"), method="POST", body=b"x")
    fetch(proxy, origin.url("/target"))
    assert len(origin_requests(origin, "/target")) == 2


# -- request collapsing ----------------------------------------------------------------------


def test_4_100_concurrent_misses_make_exactly_one_origin_request(
    proxy: ProxyThread, origin: Origin
) -> None:
    release = threading.Event()
    body = b"hot object " * 100

    def handler(h: OriginHandler) -> None:
        release.wait(WAIT_S)
        h.reply(200, body, {"Cache-Control": "max-age=100"})

    origin.routes["/hot"] = handler
    results: list[Response] = []
    lock = threading.Lock()

    def client() -> None:
        r = fetch(proxy, origin.url("/hot"))
        with lock:
            results.append(r)

    threads = [threading.Thread(target=client) for _ in range(100)]
    for t in threads:
        t.start()
    cache = proxy.runtime.cache
    key = normalise_url(origin.url("/hot"))

    def waiters() -> int:
        leader = cache.inflight.get(key)
        return leader.linkcount() if leader is not None else -1

    # One leader at the origin, 99 greenlets waiting on its event.
    wait_for(lambda: proxy.call(waiters) == 99, what="99 collapsed waiters")
    assert len(origin.requests) == 1
    release.set()
    for t in threads:
        t.join(WAIT_S)
    assert len(results) == 100
    assert all(r[0] == 200 and r[2] == body for r in results)
    assert len(origin.requests) == 1
    assert cache.stats()["collapsed"] == 99


# -- incomplete and oversized responses (RFC 9111 §3, §3.3) -----------------------------------


def test_3_truncated_origin_response_is_not_stored_and_reaches_client_truncated(
    proxy: ProxyThread, origin: Origin
) -> None:
    def handler(h: OriginHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.send_header("Cache-Control", "max-age=100")
        h.end_headers()
        h.wfile.write(b"0123456789")
        h.wfile.flush()
        h.close_connection = True

    origin.routes["/trunc"] = handler
    for expected_origin_requests in (1, 2):
        with raw_connection(proxy.port) as sock:
            sock.sendall(f"GET {origin.url('/trunc')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            f = sock.makefile("rb")
            assert f.readline().split()[1] == b"200"
            while f.readline() not in (b"\r\n", b""):
                pass
            assert f.read() == b"0123456789"  # then EOF: the connection was closed early
        assert len(origin.requests) == expected_origin_requests
    assert proxy.runtime.cache.stats()["objects"] == 0


def test_3_response_over_cache_file_size_limit_is_streamed_whole_not_stored(
    origin: Origin,
) -> None:
    big = bytes(range(256)) * 40  # 10 KiB
    route(origin, "/big", body=big, Cache_Control="max-age=100")
    route(origin, "/small", body=b"s" * 100, Cache_Control="max-age=100")
    with start_proxy(CacheFileSizeLimit="4 K") as proxy:
        for _ in range(2):
            assert fetch(proxy, origin.url("/big"))[2] == big
            assert fetch(proxy, origin.url("/small"))[2] == b"s" * 100
        assert len(origin_requests(origin, "/big")) == 2
        assert len(origin_requests(origin, "/small")) == 1


@pytest.mark.parametrize("size", [65537, 8 << 20])
def test_stored_body_larger_than_a_socket_buffer_is_served_whole_and_byte_exact(
    origin: Origin, size: int
) -> None:
    """A stored body above 64 KiB goes out with its head in one sendmsg(); what the socket
    did not take goes out after it, in order (8 MiB does not fit a loopback buffer)."""
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    route(origin, "/large", body=body, Cache_Control="max-age=100")
    with start_proxy(CacheMemory="64 M") as proxy:
        assert fetch(proxy, origin.url("/large"))[2] == body
        status, headers, again = fetch(proxy, origin.url("/large"))
        assert (status, again == body) == (200, True)
        assert "hit" in lowered(headers)["cache-status"]
        assert len(origin_requests(origin, "/large")) == 1


def test_lru_eviction_keeps_within_cache_memory_and_recently_used_survive(origin: Origin) -> None:
    body = b"z" * 10240
    for i in range(20):
        route(origin, f"/o{i}", body=body, Cache_Control="max-age=1000")
    with start_proxy(CacheMemory="64 K") as proxy:
        cache = proxy.runtime.cache
        for i in range(20):
            assert fetch(proxy, origin.url(f"/o{i}"))[2] == body
            assert fetch(proxy, origin.url("/o0"))[2] == body  # keep /o0 recently used
            stats = cache.stats()
            assert stats["bytes"] <= stats["max_bytes"] == 65536
        stats = cache.stats()
        assert stats["evictions"] >= 13  # at most 6 objects of ~10 KiB fit in 64 KiB
        assert 1 <= stats["objects"] <= 6
        assert len(origin_requests(origin, "/o0")) == 1  # never evicted
        before = len(origin.requests)
        assert fetch(proxy, origin.url("/o19"))[2] == body  # the newest survives too
        assert len(origin.requests) == before
        fetch(proxy, origin.url("/o1"))  # long evicted: back to the origin
        assert len(origin.requests) == before + 1


# -- stale-if-error and stale-while-revalidate (RFC 5861, RFC 9111 §4.2.4) ---------------------


def test_rfc5861_4_stale_if_error_when_origin_is_down(proxy: ProxyThread, clock: FakeClock) -> None:
    with Origin() as down:
        route(down, "/sie", body=b"old but good", Cache_Control="max-age=1, stale-if-error=1000")
        assert fetch(proxy, down.url("/sie"))[2] == b"old but good"
        url = down.url("/sie")
    clock.advance(60)  # stale, and the origin's port is now closed
    status, headers, body = fetch(proxy, url)
    assert (status, body) == (200, b"old but good")
    assert "stale-if-error" in headers["cache-status"]
    clock.advance(2000)  # beyond stale-if-error: CacheMaxStale (1 week) for a closed port
    status, headers, body = fetch(proxy, url)
    assert (status, body) == (200, b"old but good")
    assert "detail=origin-unreachable" in headers["cache-status"]
    clock.advance(8 * 86400)  # beyond both: the error goes through
    assert fetch(proxy, url)[0] in (502, 504)


def test_rfc5861_4_stale_if_error_when_origin_answers_503(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    state = {"down": False}

    def handler(h: OriginHandler) -> None:
        if state["down"]:
            h.reply(503, b"busy")
        else:
            h.reply(200, b"good", {"Cache-Control": "max-age=1, stale-if-error=1000"})

    origin.routes["/s503"] = handler
    fetch(proxy, origin.url("/s503"))
    state["down"] = True
    clock.advance(60)
    status, _, body = fetch(proxy, origin.url("/s503"))
    assert (status, body) == (200, b"good")
    assert len(origin.requests) == 2


def test_4_2_4_must_revalidate_forbids_stale_if_error(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    state = {"down": False}

    def handler(h: OriginHandler) -> None:
        if state["down"]:
            h.reply(503, b"busy")
        else:
            cc = "max-age=1, must-revalidate, stale-if-error=1000"
            h.reply(200, b"good", {"Cache-Control": cc})

    origin.routes["/mr"] = handler
    fetch(proxy, origin.url("/mr"))
    state["down"] = True
    clock.advance(60)
    assert fetch(proxy, origin.url("/mr"))[0] == 503


def test_rfc5861_3_stale_while_revalidate_serves_stale_and_refreshes_once(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    hold = threading.Event()
    version = {"n": 1}

    def handler(h: OriginHandler) -> None:
        n = version["n"]
        if n > 1:
            hold.wait(WAIT_S)  # keep the background refresh in flight
        # The refreshed copy gets a long max-age: the origin's Date comes from the real
        # clock, so after the fake 30 s it already has an apparent age of 30 s (§4.2.3).
        max_age = 1 if n == 1 else 1000
        h.reply(
            200,
            f"v{n}".encode(),
            {"Cache-Control": f"max-age={max_age}, stale-while-revalidate=1000"},
        )

    origin.routes["/swr"] = handler
    assert fetch(proxy, origin.url("/swr"))[2] == b"v1"
    version["n"] = 2
    clock.advance(30)
    for _ in range(3):  # stale served at once while one refresh is held at the origin
        status, headers, body = fetch(proxy, origin.url("/swr"))
        assert (status, body) == (200, b"v1")
        assert "cproxy; hit" in headers["cache-status"]
    wait_for(lambda: len(origin.requests) == 2, what="the background refresh")
    hold.set()
    key = normalise_url(origin.url("/swr"))
    wait_for(lambda: not proxy.call(lambda: key in proxy.runtime.cache.refreshing))
    assert fetch(proxy, origin.url("/swr"))[2] == b"v2"
    assert len(origin.requests) == 2


def test_background_refresh_from_a_silent_origin_ends_after_read_timeout(
    origin: Origin,
) -> None:
    """The wait for the origin's answer is bounded by ReadTimeout for a background refresh
    too (the runtime's reaper ends it), so the URL can be refreshed again afterwards."""
    release = threading.Event()
    calls = {"n": 0}

    def handler(h: OriginHandler) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            release.wait(WAIT_S)  # the refresh gets no answer until the test is done
            return
        h.reply(200, b"v", {"Cache-Control": "max-age=1, stale-while-revalidate=1000"})

    origin.routes["/silent"] = handler
    try:
        with start_proxy(ReadTimeout="300 ms") as proxy:
            clock = FakeClock()
            proxy.runtime.cache.clock = clock
            key = normalise_url(origin.url("/silent"))
            assert fetch(proxy, origin.url("/silent"))[2] == b"v"
            clock.advance(30)
            assert fetch(proxy, origin.url("/silent"))[2] == b"v"  # stale, refresh starts
            wait_for(lambda: calls["n"] == 2, what="the background refresh")
            wait_for(
                lambda: not proxy.call(lambda: key in proxy.runtime.cache.refreshing),
                what="the refresh to give up after ReadTimeout",
            )
    finally:
        release.set()


def test_background_refresh_that_falls_back_to_a_large_stale_copy_does_not_fail(
    origin: Origin, caplog: pytest.LogCaptureFixture
) -> None:
    """stale-if-error inside a background refresh 'sends' the stored copy to nobody; a body
    over 64 KiB goes by sendmsg(), which the stand-in socket must take too."""
    body = b"b" * (100 * 1024)
    calls = {"n": 0}

    def handler(h: OriginHandler) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            h.reply(503, b"down", {"Content-Type": "text/plain"})
            return
        cc = "max-age=1, stale-while-revalidate=1000, stale-if-error=1000"
        h.reply(200, body, {"Cache-Control": cc})

    origin.routes["/big-swr"] = handler
    with start_proxy() as proxy:
        clock = FakeClock()
        proxy.runtime.cache.clock = clock
        key = normalise_url(origin.url("/big-swr"))
        assert fetch(proxy, origin.url("/big-swr"))[2] == body
        clock.advance(30)
        with caplog.at_level("WARNING", logger="cproxy"):
            assert fetch(proxy, origin.url("/big-swr"))[2] == body  # stale; refresh starts
            wait_for(lambda: calls["n"] == 2, what="the background refresh")
            wait_for(lambda: not proxy.call(lambda: key in proxy.runtime.cache.refreshing))
    assert not [r for r in caplog.records if "background refresh" in r.getMessage()]


def test_a_failed_background_refresh_counts_no_stale_served(origin: Origin) -> None:
    """stale_served counts stale responses clients received because the origin failed; a
    background refresh that fell back to its stored copy (stale-if-error) sent it to
    nobody, so it must not count (issue #12)."""
    calls = {"n": 0}

    def handler(h: OriginHandler) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            h.reply(503, b"down", {"Content-Type": "text/plain"})
            return
        cc = "max-age=1, stale-while-revalidate=1000, stale-if-error=1000"
        h.reply(200, b"v1", {"Cache-Control": cc})

    origin.routes["/swr-fail"] = handler
    with start_proxy() as proxy:
        clock = FakeClock()
        proxy.runtime.cache.clock = clock
        key = normalise_url(origin.url("/swr-fail"))
        assert fetch(proxy, origin.url("/swr-fail"))[2] == b"v1"
        clock.advance(30)
        status, _headers, body = fetch(proxy, origin.url("/swr-fail"))  # stale; refresh starts
        assert (status, body) == (200, b"v1")
        wait_for(lambda: calls["n"] == 2, what="the background refresh")
        wait_for(lambda: not proxy.call(lambda: key in proxy.runtime.cache.refreshing))
        stats = proxy.call(proxy.runtime.cache.stats)
    assert stats["stale_served"] == 0


# -- PURGE and the cache directives ----------------------------------------------------------


def _purge(port: int, url: str) -> int:
    with raw_connection(port) as sock:
        sock.sendall(f"PURGE {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return read_response(sock)[0]


def test_purge_from_purge_access_removes_entry(origin: Origin) -> None:
    route(origin, "/p", Cache_Control="max-age=100")
    with start_proxy(PurgeAccess="127.0.0.0/8") as proxy:
        fetch(proxy, origin.url("/p"))
        assert _purge(proxy.port, origin.url("/p")) == 200
        assert _purge(proxy.port, origin.url("/p")) == 404
        fetch(proxy, origin.url("/p"))
        assert len(origin.requests) == 2
        assert proxy.runtime.cache.stats()["purges"] == 1


def test_purge_from_outside_purge_access_is_refused(origin: Origin) -> None:
    route(origin, "/p", Cache_Control="max-age=100")
    with start_proxy(PurgeAccess="10.0.0.0/8") as proxy:
        fetch(proxy, origin.url("/p"))
        assert _purge(proxy.port, origin.url("/p")) == 403
        fetch(proxy, origin.url("/p"))
        assert len(origin.requests) == 1  # still cached


def test_caching_off_never_stores(origin: Origin) -> None:
    route(origin, "/c", Cache_Control="max-age=100")
    with start_proxy(Caching="off") as proxy:
        for _ in range(3):
            fetch(proxy, origin.url("/c"))
        assert proxy.runtime.cache.stats()["objects"] == 0
    assert len(origin.requests) == 3


def test_cache_queries_off_does_not_store_query_urls(origin: Origin) -> None:
    route(origin, "/q", Cache_Control="max-age=100")
    with start_proxy(CacheQueries="off") as proxy:
        for _ in range(2):
            fetch(proxy, origin.url("/q?a=1"))
            fetch(proxy, origin.url("/q"))
    assert [r[1] for r in origin.requests] == ["/q?a=1", "/q", "/q?a=1"]


def test_no_caching_pattern_excludes_matching_urls(origin: Origin) -> None:
    route(origin, "/private/x", Cache_Control="max-age=100")
    route(origin, "/public/x", Cache_Control="max-age=100")
    pattern = f"http://127.0.0.1:{origin.port}/private/*"
    with start_proxy(NoCaching=pattern) as proxy:
        for _ in range(2):
            fetch(proxy, origin.url("/private/x"))
            fetch(proxy, origin.url("/public/x"))
    assert len(origin_requests(origin, "/private/x")) == 2
    assert len(origin_requests(origin, "/public/x")) == 1


def test_access_log_records_cache_status(origin: Origin, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    route(origin, "/logged", Cache_Control="max-age=100")
    with start_proxy(AccessLog=str(log)) as proxy:
        fetch(proxy, origin.url("/logged"))
        fetch(proxy, origin.url("/logged"))
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    assert "cache=uri-miss" in lines[0] and "/logged" in lines[0]
    assert lines[1].endswith("cache=hit proto=-")


def test_closed_port_helper_is_really_closed() -> None:
    """Guard for the stale-if-error test: a port whose origin stopped refuses connections."""
    with Origin() as o:
        port = o.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
