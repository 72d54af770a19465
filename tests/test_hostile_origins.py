# ruff: noqa: E501  (the case table keeps one case per line)
"""Bad origin responses through the running proxy (issue #6, DESIGN.md §5 rules 3 and 4).

Every first response from the origin is made cacheable (``Cache-Control: max-age=3600``)
and then broken in one way. The client must get a 502/504, or a response that is visibly
truncated (the connection closes before the body is complete); nothing may be cached (a
second request for the URL reaches the origin again) and the origin socket that carried
the bad response is never reused (the second request arrives on a new origin connection,
and cproxy closes the old one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from tests.hostile import (
    OriginConn,
    Received,
    RecordingOrigin,
    exchange,
    parse_responses,
)
from tests.support import ProxyThread, start_proxy

CC = "Cache-Control: max-age=3600\r\n"
GOOD = f"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n{CC}\r\ngood".encode()

# A misbehaviour gets the connection and the request; it returns False to end the
# connection (after closing or resetting it itself), True to go on serving it.
Misbehaviour = Callable[[OriginConn, Received], bool]


def raw(data: bytes, then: str = "keep") -> Misbehaviour:
    """Answer with exactly ``data``; then keep the connection, close it, or reset it."""

    def act(conn: OriginConn, _: Received) -> bool:
        conn.send(data)
        if then == "reset":
            conn.reset()
        elif then == "close":
            conn.sock.close()
        return then == "keep"

    return act


def never(conn: OriginConn, _: Received) -> bool:
    conn.hold()
    return False


def trickled(data: bytes, gap_s: float) -> Misbehaviour:
    def act(conn: OriginConn, _: Received) -> bool:
        return conn.trickle(data, gap_s)

    return act


def head(*lines: str) -> bytes:
    return ("HTTP/1.1 200 OK\r\n" + "".join(f"{x}\r\n" for x in lines) + CC + "\r\n").encode()


def first_bad_then_good(bad: Misbehaviour) -> Callable[[OriginConn], None]:
    """The origin script: the first request of the test misbehaves, later ones get GOOD."""
    served = [0]
    lock = threading.Lock()

    def script(conn: OriginConn) -> None:
        while True:
            r = conn.read_request()
            if r is None:
                return
            with lock:
                served[0] += 1
                first = served[0] == 1
            if first:
                if not bad(conn, r):
                    return
            elif not conn.send(GOOD if r.req.method != "HEAD" else GOOD[:-4]):
                return

    return script


# (id, what the origin does, what the client gets: a status, or "truncated")
CASES = [
    ("cl-and-te", raw(head("Content-Length: 5", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n"), 502),
    ("cl-conflicting", raw(head("Content-Length: 5", "Content-Length: 6") + b"hello!"), 502),
    ("cl-negative", raw(head("Content-Length: -1") + b"hello"), 502),
    ("cl-hex", raw(head("Content-Length: 0x5") + b"hello"), 502),
    ("cl-huge", raw(head("Content-Length: " + "9" * 30) + b"hello"), 502),
    ("te-gzip-chunked", raw(head("Transfer-Encoding: gzip, chunked") + b"0\r\n\r\n"), 502),
    ("te-chunked-twice", raw(head("Transfer-Encoding: chunked, chunked") + b"0\r\n\r\n"), 502),
    ("te-on-http10", raw(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n" + CC.encode() + b"\r\n5\r\nhello\r\n0\r\n\r\n"), 502),
    ("status-garbage", raw(b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n"), 502),
    ("status-600", raw(b"HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n"), 502),
    ("not-http", raw(b"ICY 200 OK\r\nContent-Length: 0\r\n\r\n"), 502),
    ("http09-body", raw(b"hello, no head at all\r\n\r\n", then="close"), 502),
    ("http2-answer", raw(b"HTTP/2 200\r\nContent-Length: 0\r\n\r\n"), 502),
    ("bare-lf-head", raw(b"HTTP/1.1 200 OK\nContent-Length: 4\n\ngood"), 502),
    ("nul-in-field", raw(head("X-A: a\x00b", "Content-Length: 4") + b"good"), 502),
    ("space-before-colon", raw(head("Content-Length : 4") + b"good"), 502),
    ("head-too-large", raw(head(*[f"X-{i}: {'v' * 1000}" for i in range(70)], "Content-Length: 4") + b"good"), 502),
    ("unasked-101", raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\nConnection: upgrade\r\n\r\n"), 502),
    ("close-before-response", raw(b"", then="close"), 502),
    ("reset-before-response", raw(b"", then="reset"), 502),
    ("half-head-then-close", raw(b"HTTP/1.1 200 OK\r\nContent-Le", then="close"), 502),
    ("never-answers", never, 504),
    ("chunk-size-garbage", raw(head("Transfer-Encoding: chunked") + b"zz\r\nhello\r\n0\r\n\r\n"), "truncated"),
    ("chunk-size-overflow", raw(head("Transfer-Encoding: chunked") + b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n"), "truncated"),
    ("chunk-missing-crlf", raw(head("Transfer-Encoding: chunked") + b"5\r\nhelloXX0\r\n\r\n"), "truncated"),
    ("chunk-bare-lf", raw(head("Transfer-Encoding: chunked") + b"5\nhello\r\n0\r\n\r\n"), "truncated"),
    ("chunked-truncated", raw(head("Transfer-Encoding: chunked") + b"5\r\nhello\r\n", then="close"), "truncated"),
    ("length-truncated", raw(head("Content-Length: 100") + b"only ten b", then="close"), "truncated"),
    ("reset-mid-body", raw(head("Content-Length: 100") + b"only ten b", then="reset"), "truncated"),
    ("stall-mid-body", lambda c, r: raw(head("Content-Length: 100") + b"only ten b")(c, r) and never(c, r), "truncated"),
]  # fmt: skip


@pytest.fixture(scope="module")
def proxy() -> Iterator[ProxyThread]:
    with start_proxy(ReadTimeout="1 second", OutputTimeout="5 seconds") as p:
        yield p


def get(origin: RecordingOrigin, path: str, method: str = "GET") -> bytes:
    o = f"127.0.0.1:{origin.port}"
    return f"{method} http://{o}{path} HTTP/1.1\r\nHost: {o}\r\nConnection: close\r\n\r\n".encode()


def second_request_goes_to_a_new_origin_connection(
    proxy: ProxyThread, origin: RecordingOrigin, path: str
) -> None:
    """Nothing was cached and the bad socket was not reused."""
    again = exchange(proxy.port, get(origin, path))
    assert again.statuses == [200] and again.answers[0].body == b"good", again.raw[:200]
    origin.sync()
    reqs = [(c.index, r) for c in origin.conns for r in _complete(c)]
    assert [r.req.path for _, r in reqs] == [path, path], "the second request was not forwarded"
    assert reqs[0][0] != reqs[1][0], "the origin socket of the bad response was reused"
    assert origin.conns[reqs[0][0]].wait_closed(), "cproxy kept the bad origin socket open"


def _complete(conn: OriginConn) -> list[Received]:
    from tests.hostile import parse_requests

    return parse_requests(bytes(conn.raw))[0]


@pytest.mark.parametrize(("bad", "expect"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_origin_response_is_refused_or_truncated_never_cached_never_reused(
    proxy: ProxyThread, bad: Misbehaviour, expect: int | str
) -> None:
    with RecordingOrigin(first_bad_then_good(bad)) as origin:
        ex = exchange(proxy.port, get(origin, "/r"))
        assert ex.closed
        if expect == "truncated":
            assert ex.raw.startswith(b"HTTP/1.1 200 "), ex.raw[:200]
            complete = [a for a in ex.answers if a.status >= 200]
            assert complete == [], f"a truncated body reached the client as complete: {ex.raw!r}"
        else:
            assert ex.statuses == [expect], ex.raw[:300]
        second_request_goes_to_a_new_origin_connection(proxy, origin, "/r")


def test_more_bytes_than_declared_are_dropped_and_the_socket_discarded(
    proxy: ProxyThread,
) -> None:
    """The message ended where Content-Length said: it is complete, so it is stored and
    served (issue #13 item 4); only the origin socket is unusable (closed, not pooled)."""
    bad = raw(head("Content-Length: 5") + b"helloEXTRA BYTES")
    with RecordingOrigin(first_bad_then_good(bad)) as origin:
        ex = exchange(proxy.port, get(origin, "/r"))
        assert [(a.status, a.body) for a in ex.answers] == [(200, b"hello")] and not ex.leftover
        again = exchange(proxy.port, get(origin, "/r"))
        assert [(a.status, a.body) for a in again.answers] == [(200, b"hello")], again.raw
        assert b"Cache-Status: cproxy; hit" in again.raw
        origin.sync()
        assert [len(_complete(c)) for c in origin.conns] == [1], "the stored copy was not used"
        assert origin.conns[0].wait_closed(), "cproxy kept the bad origin socket open"


def test_more_bytes_than_declared_on_an_uncacheable_response_discard_the_socket(
    proxy: ProxyThread,
) -> None:
    nostore = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Control: no-store\r\n\r\n"
    bad = raw(nostore + b"helloEXTRA BYTES")
    with RecordingOrigin(first_bad_then_good(bad)) as origin:
        ex = exchange(proxy.port, get(origin, "/r"))
        assert [(a.status, a.body) for a in ex.answers] == [(200, b"hello")] and not ex.leftover
        second_request_goes_to_a_new_origin_connection(proxy, origin, "/r")


def test_second_response_for_one_request_never_reaches_the_next_client(
    proxy: ProxyThread,
) -> None:
    """An origin that answers twice must not poison the next request's response."""
    injected = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n" + CC.encode() + b"\r\ninjected"
    # Not storable, so that the next requests go to the origin (a stored "hello" would
    # answer them: the first message itself is complete).
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Control: no-store\r\n\r\nhello"
    bad = raw(first + injected)
    with RecordingOrigin(first_bad_then_good(bad)) as origin:
        o = f"127.0.0.1:{origin.port}"
        two = f"GET http://{o}/r HTTP/1.1\r\nHost: {o}\r\n\r\n" * 2
        ex = exchange(proxy.port, two.encode() + get(origin, "/r"))
        assert [(a.status, a.body) for a in ex.answers] == [
            (200, b"hello"),
            (200, b"good"),
            (200, b"good"),
        ], ex.raw
        origin.sync()
        assert [len(_complete(c)) for c in origin.conns][:1] == [1]


def test_head_response_with_a_body_does_not_poison_the_socket(proxy: ProxyThread) -> None:
    bad = raw(head("Content-Length: 5") + b"hello")
    with RecordingOrigin(first_bad_then_good(bad)) as origin:
        ex = exchange(proxy.port, get(origin, "/r", "HEAD"), methods=["HEAD"])
        assert [(a.status, a.body) for a in ex.answers] == [(200, b"")]
        assert ex.answers[0].header("content-length") == "5"
        second_request_goes_to_a_new_origin_connection(proxy, origin, "/r")


def test_interim_100_and_103_before_the_final_response(proxy: ProxyThread) -> None:
    """100 is consumed by cproxy (it answered any Expect itself); 103 reaches an HTTP/1.1
    client; the final response is relayed and, being fresh, cached."""
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    bad = raw(interim + head("Content-Length: 4") + b"fine")
    with RecordingOrigin(first_bad_then_good(bad)) as origin:
        ex = exchange(proxy.port, get(origin, "/r"))
        assert ex.statuses == [103, 200], ex.raw
        assert ex.answers[0].header("link") == "</s.css>; rel=preload"
        assert ex.answers[1].body == b"fine"
        hit = exchange(proxy.port, get(origin, "/r"))
        assert [(a.status, a.body) for a in hit.answers] == [(200, b"fine")]
        assert len(origin.requests()) == 1


def test_slow_origin_within_read_timeout_completes(proxy: ProxyThread) -> None:
    """Byte by byte, each gap well under ReadTimeout (1 s): the response completes."""
    body = head("Content-Length: 20") + b"0123456789abcdefghij"
    with RecordingOrigin(first_bad_then_good(trickled(body, 0.005))) as origin:
        ex = exchange(proxy.port, get(origin, "/r"))
        assert [(a.status, a.body) for a in ex.answers] == [(200, b"0123456789abcdefghij")]


def test_output_timeout_bounds_a_trickling_origin() -> None:
    """Each byte within ReadTimeout, but the whole body takes longer than OutputTimeout:
    the client's response is cut at OutputTimeout and nothing is cached."""
    body = head("Content-Length: 400") + b"x" * 400
    with (
        start_proxy(ReadTimeout="1 second", OutputTimeout="1 second") as proxy,
        RecordingOrigin(first_bad_then_good(trickled(body, 0.01))) as origin,
    ):
        ex = exchange(proxy.port, get(origin, "/r"), timeout_s=4)
        assert ex.closed and ex.raw.startswith(b"HTTP/1.1 200 ")
        assert parse_responses(ex.raw)[0] == []
        second_request_goes_to_a_new_origin_connection(proxy, origin, "/r")
