"""Cache safety against a hostile client (issue #6): what one user makes cproxy store must
never reach another user unless HTTP says it may (RFC 9111 §3, §3.5, §4, §5.2.2).

Set-Cookie, decided: RFC 9111 does not forbid storing a response that sets a cookie, so
cproxy stores one whose Cache-Control allows it (e.g. ``public, max-age``), Set-Cookie
included, as the RFC says. What an origin can use to keep a cookie private is honoured:
``private`` (nothing stored), ``private="Set-Cookie"`` and ``no-cache="Set-Cookie"`` (the
field is never served to another user from the cache).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from cproxy.cache import normalise_url
from tests.hostile import OriginConn, Received, RecordingOrigin, exchange
from tests.support import ProxyThread, start_proxy

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
    # (Cache-Control, stored at all, may the stored Set-Cookie reach another user)
    ("private, max-age=3600", False, False),
    ('private="Set-Cookie", max-age=3600', True, False),
    ('no-cache="Set-Cookie", max-age=3600', True, False),
    ("public, max-age=3600", True, True),  # allowed by RFC 9111; the origin asked for it
    # Also allowed by RFC 9111, and what cproxy does; nginx and Varnish refuse to cache a
    # Set-Cookie response by default. Recorded here so a change of policy is deliberate.
    ("max-age=3600", True, True),
]


@pytest.mark.parametrize(
    ("cc", "stored", "cookie_shared"), COOKIE_CASES, ids=[c[0] for c in COOKIE_CASES]
)
def test_set_cookie_reaches_another_user_only_when_the_origin_allows(
    proxy: ProxyThread, cc: str, stored: bool, cookie_shared: bool
) -> None:
    sessions = iter(range(1, 100))

    def login(r: Received) -> tuple[str, bytes]:
        return f"Cache-Control: {cc}\r\nSet-Cookie: session=s{next(sessions)}\r\n", b"page"

    with RecordingOrigin(routed({"/login": login})) as origin:
        first = fetch(proxy, origin.url("/login"))
        assert first[1]["set-cookie"] == "session=s1"
        second = fetch(proxy, origin.url("/login"))
        if not cookie_shared:
            assert second[1].get("set-cookie") != "session=s1", "a user got another's cookie"
        if not stored:
            assert len(origin.requests()) == 2


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
