"""Cache safety against a hostile client (issue #6): what one user makes cproxy store must
never reach another user unless HTTP says it may (RFC 9111 §3, §3.5, §4, §5.2.2).

Set-Cookie, decided (issue #10): RFC 9111 allows storing a response that sets a cookie,
and cproxy stores and reuses one whose Cache-Control allows it, but without its Set-Cookie
and Set-Cookie2 fields: only the client whose own request went to the origin gets the
cookie; a hit (general path or fast lane), a 304 or a stale answer from the cache and a
collapsed waiter never do. ``private`` still keeps the whole response out of the cache.

A request whose meaning the key (the URL and the method, case-sensitive) does not capture
is never answered from, or stored in, the cache: a GET or HEAD with a body ("fat GET") is
forwarded uncached, and ``gET`` is another method than ``GET`` (RFC 9110 §9.1).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cproxy.cache import normalise_url
from tests.hostile import OriginConn, Received, RecordingOrigin, exchange, read_answers
from tests.support import WAIT_S, ProxyThread, start_proxy, wait_for

Route = Callable[[Received], tuple[str, bytes]]  # -> (extra header lines, body)


def routed(routes: dict[str, Route]) -> Callable[[OriginConn], None]:
    """Answer each request by its path; the default echoes what the origin was sent."""
    count = [0]
    lock = threading.Lock()

    def echo(r: Received) -> tuple[str, bytes]:
        with lock:
            count[0] += 1
            n = count[0]
        fields = "|".join(f"{k}={v}" for k, v in r.req.headers.items() if k.lower() != "via")
        return "Cache-Control: max-age=3600\r\n", f"#{n} {r.req.path} {fields}".encode()

    def script(conn: OriginConn) -> None:
        while True:
            r = conn.read_request()
            if r is None:
                return
            extra, body = routes.get(r.req.path, echo)(r)
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            if not conn.send(head.encode("latin-1") + body):
                return

    return script


@pytest.fixture
def proxy() -> Iterator[ProxyThread]:
    with start_proxy() as p:
        yield p


def fetch(
    proxy: ProxyThread, url: str, *fields: str, host: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    authority = url.split("/")[2]
    lines = [f"GET {url} HTTP/1.1", f"Host: {host or authority}", *fields, "Connection: close"]
    ex = exchange(proxy.port, ("\r\n".join(lines) + "\r\n\r\n").encode())
    assert len(ex.answers) == 1, ex.raw[:300]
    a = ex.answers[0]
    return a.status, {n.lower(): v for n, v in a.headers}, a.body


# -- Authorization (RFC 9111 §3.5) -----------------------------------------------------

AUTH_CASES = [
    ("max-age=3600", False),
    ("private, max-age=3600", False),
    ("no-store, public, max-age=3600", False),
    ("public, max-age=3600", True),
    ("s-maxage=3600", True),
    ("must-revalidate, max-age=3600", True),
]


@pytest.mark.parametrize(("cc", "shared"), AUTH_CASES, ids=[c for c, _ in AUTH_CASES])
def test_authorized_response_is_shared_only_when_the_response_allows(
    proxy: ProxyThread, cc: str, shared: bool
) -> None:
    def secret(r: Received) -> tuple[str, bytes]:
        return f"Cache-Control: {cc}\r\n", f"for {r.req.headers.get('authorization')}".encode()

    with RecordingOrigin(routed({"/me": secret})) as origin:
        alice = fetch(proxy, origin.url("/me"), "Authorization: Basic YWxpY2U6cHc=")
        assert alice[2] == b"for Basic YWxpY2U6cHc="
        bob = fetch(proxy, origin.url("/me"))
        assert len(origin.requests()) == (1 if shared else 2)
        if not shared:
            assert b"YWxpY2U" not in bob[2], "alice's authorized response reached bob"


# -- Set-Cookie --------------------------------------------------------------------------

COOKIE_CASES = [
    # (Cache-Control, stored at all)
    ("private, max-age=3600", False),
    ('private="Set-Cookie", max-age=3600', True),
    ('no-cache="Set-Cookie", max-age=3600', True),
    ("public, max-age=3600", True),
    ("max-age=3600", True),
]


@pytest.mark.parametrize(("cc", "stored"), COOKIE_CASES, ids=[c[0] for c in COOKIE_CASES])
def test_set_cookie_never_reaches_another_user_from_the_cache(
    proxy: ProxyThread, cc: str, stored: bool
) -> None:
    sessions = iter(range(1, 100))

    def login(r: Received) -> tuple[str, bytes]:
        n = next(sessions)
        return f"Cache-Control: {cc}\r\nSet-Cookie: session=s{n}\r\nSet-Cookie2: v={n}\r\n", b"page"

    with RecordingOrigin(routed({"/login": login})) as origin:
        first = fetch(proxy, origin.url("/login"))
        assert first[1]["set-cookie"] == "session=s1" and first[1]["set-cookie2"] == "v=1"
        second = fetch(proxy, origin.url("/login"))
        assert second[2] == b"page"
        assert len(origin.requests()) == (1 if stored else 2), "the response was not reused"
        if stored:
            assert "set-cookie" not in second[1] and "set-cookie2" not in second[1], second[1]
        else:
            assert second[1]["set-cookie"] == "session=s2"  # its own, from the origin


def fast_lane_get(proxy: ProxyThread, url: str) -> dict[str, str]:
    """A GET of the shape the fast lane serves (no Connection field, HTTP/1.1)."""
    authority = url.split("/")[2]
    with contextlib.closing(socket.create_connection(("127.0.0.1", proxy.port), WAIT_S)) as s:
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        answers, _ = read_answers(s, 1)
    assert len(answers) == 1 and answers[0].status == 200
    return {n.lower(): v for n, v in answers[0].headers}


def test_set_cookie_never_reaches_another_user_through_the_fast_lane(proxy: ProxyThread) -> None:
    def login(r: Received) -> tuple[str, bytes]:
        return "Cache-Control: public, max-age=3600\r\nSet-Cookie: session=alice\r\n", b"page"

    with RecordingOrigin(routed({"/login": login})) as origin:
        assert fast_lane_get(proxy, origin.url("/login"))["set-cookie"] == "session=alice"
        before = proxy.runtime.cache.fast_hits
        fields = fast_lane_get(proxy, origin.url("/login"))
        # Counted just after the send: wait for it.
        wait_for(lambda: proxy.runtime.cache.fast_hits == before + 1, WAIT_S, "a fast-lane hit")
        assert "set-cookie" not in fields, fields
        assert len(origin.requests()) == 1


def answering(answer: Callable[[int, Received], bytes]) -> Callable[[OriginConn], None]:
    """An origin whose n-th request (from 1) gets the raw response ``answer(n, r)``."""
    count = [0]
    lock = threading.Lock()

    def script(conn: OriginConn) -> None:
        while True:
            r = conn.read_request()
            if r is None:
                return
            with lock:
                count[0] += 1
                n = count[0]
            if not conn.send(answer(n, r)):
                return

    return script


def response(status: str, *fields: str, body: bytes = b"page") -> bytes:
    lines = [f"HTTP/1.1 {status}", *fields, f"Content-Length: {len(body)}"]
    if status.startswith("304"):
        lines, body = lines[:-1], b""
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_a_304_from_the_cache_and_a_revalidated_answer_carry_only_the_clients_own_cookie(
    proxy: ProxyThread,
) -> None:
    def answer(n: int, r: Received) -> bytes:
        if n == 1:
            return response("200 OK", "Cache-Control: max-age=0", 'ETag: "v1"', "Set-Cookie: s=1")
        assert r.req.headers.get("if-none-match") == '"v1"', r.raw_head
        return response(
            "304 Not Modified", "Cache-Control: max-age=0", 'ETag: "v1"', f"Set-Cookie: s={n}"
        )

    with RecordingOrigin(answering(answer)) as origin:
        assert fetch(proxy, origin.url("/p"))[1]["set-cookie"] == "s=1"
        # Stale: revalidated with the origin for this client, whose 304 sets s=2.
        status, fields, body = fetch(proxy, origin.url("/p"))
        assert (status, body, fields.get("set-cookie")) == (200, b"page", "s=2"), fields
        # The client's own conditional, answered from the cache after a revalidation (s=3).
        status, fields, _ = fetch(proxy, origin.url("/p"), 'If-None-Match: "v1"')
        assert status == 304 and fields.get("set-cookie") == "s=3", fields
        assert len(origin.requests()) == 3


def test_a_stale_answer_for_a_failed_origin_carries_no_cookie(proxy: ProxyThread) -> None:
    def answer(n: int, r: Received) -> bytes:
        if n == 1:
            cc = "Cache-Control: max-age=0, stale-if-error=600"
            return response("200 OK", cc, 'ETag: "1"', "Set-Cookie: session=alice", body=b"old")
        return response("500 Internal Server Error", body=b"down")

    with RecordingOrigin(answering(answer)) as origin:
        assert fetch(proxy, origin.url("/p"))[1]["set-cookie"] == "session=alice"
        status, fields, body = fetch(proxy, origin.url("/p"))
        assert (status, body) == (200, b"old") and "stale-if-error" in fields["cache-status"]
        assert "set-cookie" not in fields, fields


def test_a_collapsed_waiter_gets_no_cookie(proxy: ProxyThread) -> None:
    release = threading.Event()

    def script(conn: OriginConn) -> None:
        r = conn.read_request()
        if r is None:
            return
        release.wait(WAIT_S)
        conn.send(response("200 OK", "Cache-Control: max-age=600", "Set-Cookie: session=alice"))

    with RecordingOrigin(script) as origin:
        results: list[tuple[int, dict[str, str], bytes]] = []
        before = proxy.runtime.requests_total
        leader = threading.Thread(target=lambda: results.append(fetch(proxy, origin.url("/p"))))
        leader.start()
        origin.wait_requests(1)
        waiter = threading.Thread(target=lambda: results.append(fetch(proxy, origin.url("/p"))))
        waiter.start()
        # Once cproxy has read the second head it runs, without yielding, to the wait for
        # the leader's answer: the leader's origin may then answer.
        wait_for(lambda: proxy.runtime.requests_total == before + 2, WAIT_S, "second request")
        release.set()
        leader.join(WAIT_S)
        waiter.join(WAIT_S)
    assert len(results) == 2 and len(origin.requests()) == 1
    by_cookie = sorted(results, key=lambda a: "set-cookie" in a[1])
    collapsed, led = by_cookie
    assert led[1]["set-cookie"] == "session=alice"
    assert "collapsed" in collapsed[1]["cache-status"] and "set-cookie" not in collapsed[1]


# -- requests whose meaning the cache key does not capture -----------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_fat_get_is_forwarded_but_never_stored_answered_or_collapsed(
    proxy: ProxyThread, method: str
) -> None:
    o_reqs = []

    def answer(n: int, r: Received) -> bytes:
        o_reqs.append(r)
        body = b"body=" + r.body if r.body else b"plain"
        return response("200 OK", "Cache-Control: max-age=600", body=body)

    with RecordingOrigin(answering(answer)) as origin:
        url, authority = origin.url("/p"), f"127.0.0.1:{origin.port}"
        fat = (
            f"{method} {url} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 6\r\n"
            "Connection: close\r\n\r\nevil=1"
        ).encode()
        ex = exchange(proxy.port, fat, methods=[method])
        assert ex.statuses == [200]
        assert origin.requests()[0].body == b"evil=1"  # forwarded as sent
        # Never stored: the next plain GET goes to the origin and gets the plain answer.
        assert fetch(proxy, url)[2] == b"plain"
        assert len(origin.requests()) == 2
        # Never answered from the cache: the stored plain answer is not the fat GET's.
        ex = exchange(proxy.port, fat, methods=[method])
        assert ex.statuses == [200] and len(origin.requests()) == 3
        if method == "GET":
            assert ex.answers[0].body == b"body=evil=1"
        assert fetch(proxy, url)[2] == b"plain" and len(origin.requests()) == 3


@pytest.mark.parametrize("method", ["gET", "get", "Get", "hEAD"])
def test_method_names_are_case_sensitive_for_the_cache(proxy: ProxyThread, method: str) -> None:
    with RecordingOrigin(routed({})) as origin:
        url = origin.url("/p")
        stored = fetch(proxy, url)[2]
        assert fetch(proxy, url)[2] == stored and len(origin.requests()) == 1
        authority = f"127.0.0.1:{origin.port}"
        ex = exchange(
            proxy.port,
            f"{method} {url} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode(),
            methods=[method],
        )
        assert ex.statuses == [200], ex.raw[:200]
        sent = origin.requests()
        assert len(sent) == 2 and sent[1].req.method == method, "answered from the GET entry"


# -- unkeyed request headers cannot change what others receive ---------------------------


def test_host_header_disagreeing_with_the_absolute_uri_changes_neither_target_nor_key(
    proxy: ProxyThread,
) -> None:
    """RFC 9112 §3.2.2: the absolute URI wins over Host, for forwarding and the cache key."""
    with RecordingOrigin(routed({})) as real, RecordingOrigin(routed({})) as other:
        status, _, body = fetch(proxy, real.url("/k"), host=f"127.0.0.1:{other.port}")
        assert status == 200 and body.startswith(b"#1 /k")
        assert f"Host=127.0.0.1:{real.port}".encode() in body
        # The entry is stored under real's URL: other's URL is not served from it.
        assert fetch(proxy, other.url("/k"))[2].startswith(b"#1 /k")
        assert len(other.requests()) == 1 and len(real.requests()) == 1
        # And real's URL, asked with yet another Host, is the stored entry.
        assert fetch(proxy, real.url("/k"), host="evil.test")[2] == body
        assert len(real.requests()) == 1


@pytest.mark.parametrize(
    "field",
    [
        "X-Forwarded-Host: evil.test",
        "X-Original-URL: /admin",
        "X-Rewrite-URL: /admin",
        "X-Forwarded-Scheme: nothttp",
        "X-HTTP-Method-Override: DELETE",
        "Forwarded: host=evil.test;proto=https",
    ],
)
def test_override_headers_are_ordinary_fields_and_change_neither_key_nor_target(
    proxy: ProxyThread, field: str
) -> None:
    with RecordingOrigin(routed({})) as origin:
        _, _, body = fetch(proxy, origin.url("/page"), field)
        r = origin.requests()[0]
        assert (r.req.method, r.req.path) == ("GET", "/page")
        name, _, value = field.partition(": ")
        assert r.req.headers.get(name) == value, "the field was not passed on as sent"
        # The stored entry is /page's; /admin is a different key.
        assert fetch(proxy, origin.url("/page"))[2] == body
        assert fetch(proxy, origin.url("/admin"))[2].startswith(b"#2 /admin")
        assert [x.req.path for x in origin.requests()] == ["/page", "/admin"]


# -- key normalisation: one spelling cannot poison another URL ---------------------------


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("/a%2fb", "/a%2Fb", True),  # RFC 3986 §6.2.2.1: hex digits' case is not significant
        ("/a%2Fb", "/a/b", False),  # an encoded slash is not a slash
        ("/a%41", "/aA", False),  # kept as sent: never decoded
        ("/k", "/k?", False),
        ("/k?a=1&b=2", "/k?b=2&a=1", False),
        ("/K", "/k", False),  # the path is case-sensitive
    ],
)
def test_url_spellings_share_an_entry_only_when_equivalent(
    proxy: ProxyThread, first: str, second: str, same: bool
) -> None:
    with RecordingOrigin(routed({})) as origin:
        one = fetch(proxy, origin.url(first))[2]
        two = fetch(proxy, origin.url(second))[2]
        assert (one == two) is same, (one, two)
        assert len(origin.requests()) == (1 if same else 2)
        # Whatever was stored, the origin got each path exactly as the client sent it.
        assert origin.paths()[0] == first


def test_scheme_and_host_case_share_an_entry(proxy: ProxyThread) -> None:
    with RecordingOrigin(routed({})) as origin:
        one = fetch(proxy, f"HTTP://127.0.0.1:{origin.port}/k")[2]
        assert fetch(proxy, origin.url("/k"))[2] == one
        assert len(origin.requests()) == 1


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("HTTP://Example.TEST:80/a", "http://example.test/a"),
        ("http://example.test:80/a%2f", "http://example.test/a%2F"),
        ("http://EXAMPLE.test", "http://example.test/"),
    ],
)
def test_equivalent_urls_have_one_key(a: str, b: str) -> None:
    """The default port and case cannot be tested through the proxy without a name or
    port 80: the key function is checked directly."""
    assert normalise_url(a) == normalise_url(b)


def test_different_resources_never_share_a_key() -> None:
    keys = {
        normalise_url(u)
        for u in (
            "http://example.test/a/b",
            "http://example.test/a%2Fb",
            "http://example.test:8080/a/b",
            "https://example.test/a/b",
            "http://example.test/a/b?",
            "http://example.test/A/b",
        )
    }
    assert len(keys) == 6


def test_set_cookie_never_reaches_another_node_through_the_shared_tier(tmp_path: Path) -> None:
    from tests.redisserver import RedisServer
    from tests.test_shared_tier import nodes, tier, written

    def login(r: Received) -> tuple[str, bytes]:
        return "Cache-Control: max-age=600\r\nSet-Cookie: session=alice\r\n", b"page"

    with (
        RedisServer(tmp_path / "redis") as server,
        RecordingOrigin(routed({"/login": login})) as origin,
        nodes(server.url, 2) as (a, b),
    ):
        assert fetch(a, origin.url("/login"))[1]["set-cookie"] == "session=alice"
        written(a)
        status, fields, body = fetch(b, origin.url("/login"))
        assert (status, body) == (200, b"page") and tier(b).hits == 1
        assert "set-cookie" not in fields, fields
        assert len(origin.requests()) == 1
