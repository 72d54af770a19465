"""Methods one user could turn against another (issue #10), through the running proxy.

- TRACE echoes the request it answers: it is refused with 405 unless TraceEnable is on,
  in every letter case, and even when on it never carries Cookie, Authorization or
  Proxy-Authorization (answered by cproxy with Max-Forwards 0, or forwarded).
- PURGE drops a URL for everybody and carries no credentials: only clients in
  PurgeAccess (empty by default) may send it, whatever AdminAccess says.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile import RecordingOrigin, exchange, keep_alive
from tests.support import start_proxy

SECRETS = (
    "Cookie: session=alice-secret",
    "Authorization: Basic YWxpY2U6c2VjcmV0",
    "Proxy-Authorization: Basic cHJveHk6c2VjcmV0",
)


@pytest.fixture
def origin() -> Iterator[RecordingOrigin]:
    with RecordingOrigin() as o:
        yield o


def request(method: str, url: str, *fields: str) -> bytes:
    authority = url.split("/")[2]
    lines = [f"{method} {url} HTTP/1.1", f"Host: {authority}", *fields, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("method", ["TRACE", "trace", "Trace"])
@pytest.mark.parametrize("max_forwards", ["Max-Forwards: 0", "Max-Forwards: 3", None])
def test_trace_is_refused_by_default_and_reaches_no_origin(
    origin: RecordingOrigin, method: str, max_forwards: str | None
) -> None:
    fields = [*SECRETS, "X-Marker: 1"] + ([max_forwards] if max_forwards else [])
    with start_proxy() as proxy:
        ex = exchange(proxy.port, request(method, origin.url("/t"), *fields))
    assert ex.statuses == [405], ex.raw[:300]
    allow = ex.answers[0].header("allow") or ""
    assert "GET" in allow and "TRACE" not in allow
    assert b"secret" not in ex.raw and b"YWxpY2U" not in ex.raw
    origin.sync()
    assert origin.requests() == [], "the TRACE reached the origin"


def test_enabled_trace_answered_by_cproxy_never_echoes_credentials(
    origin: RecordingOrigin,
) -> None:
    with start_proxy(TraceEnable="on") as proxy:
        ex = exchange(
            proxy.port,
            request("TRACE", origin.url("/t"), *SECRETS, "X-Marker: 1", "Max-Forwards: 0"),
        )
    assert ex.statuses == [200]
    echo = ex.answers[0].body
    assert echo.startswith(b"TRACE ") and b"X-Marker: 1" in echo, echo
    for field in SECRETS:
        assert field.split(":")[0].encode() not in echo, echo
    assert b"secret" not in ex.raw and b"YWxpY2U" not in ex.raw
    origin.sync()
    assert origin.connections == 0


@pytest.mark.parametrize("method", ["TRACE", "trace"])
def test_enabled_trace_reaches_the_origin_without_credentials(
    origin: RecordingOrigin, method: str
) -> None:
    with start_proxy(TraceEnable="on", Caching="off") as proxy:
        ex = exchange(
            proxy.port,
            request(method, origin.url("/t"), *SECRETS, "X-Marker: 1", "Max-Forwards: 2"),
        )
    assert ex.statuses == [200]
    [sent] = origin.requests()
    assert sent.req.method == method and sent.req.headers.get("x-marker") == "1"
    for name in ("cookie", "authorization", "proxy-authorization"):
        assert name not in sent.req.headers, sent.raw_head
    assert b"secret" not in sent.raw_head and b"YWxpY2U" not in sent.raw_head


def cached_then_purged(proxy_port: int, origin: RecordingOrigin) -> tuple[int, int]:
    """Store /p, PURGE it; returns (PURGE status, origin requests after one more GET)."""
    url = origin.url("/p")
    get = request("GET", url)
    assert exchange(proxy_port, get).statuses == [200]
    purge = exchange(proxy_port, request("PURGE", url))
    assert exchange(proxy_port, get).statuses == [200]
    return purge.statuses[0], len(origin.requests())


FRESH = keep_alive(b"page", "Cache-Control: max-age=600\r\n")


def test_purge_from_admin_access_without_purge_access_is_refused() -> None:
    # The default AdminAccess (loopback) no longer lets a client PURGE: PurgeAccess is empty.
    with RecordingOrigin(FRESH) as origin, start_proxy() as proxy:
        status, origin_requests = cached_then_purged(proxy.port, origin)
    assert status == 403
    assert origin_requests == 1, "the entry was purged"


def test_purge_from_purge_access_is_obeyed() -> None:
    with RecordingOrigin(FRESH) as origin, start_proxy(PurgeAccess="127.0.0.1/32") as proxy:
        status, origin_requests = cached_then_purged(proxy.port, origin)
    assert status == 200 and origin_requests == 2
