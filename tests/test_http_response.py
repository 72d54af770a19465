"""Origin response heads: the framing table of RFC 9112 §6.3 and strict syntax (issue #6).

A malformed response must become a 502 and never be cached (DESIGN.md §5 rule 3),
so every rejection here is an `OriginProtocolError`; a connection is reused only
when the response is self-delimited and neither side asked to close (rule 4).
"""

from __future__ import annotations

import pytest

from cproxy.errors import OriginProtocolError
from cproxy.http import Headers, Response, find_head_end, parse_response_head
from cproxy.http.limits import MAX_HEAD_BYTES, MAX_HEADER_COUNT
from cproxy.http.message import (
    NOT_FORWARDED,
    client_fields,
    response_fields_for_client,
    says_close,
)


def head(status_line: str | bytes, *fields: str | bytes) -> bytes:
    raw = [x.encode("latin-1") if isinstance(x, str) else x for x in (status_line, *fields)]
    return b"\r\n".join(raw) + b"\r\n\r\n"


def parse(data: bytes, method: str = "GET") -> Response:
    end = find_head_end(data, client=False)
    assert end == len(data), "the test head must be exactly one complete head"
    return parse_response_head(data[:end], method)


def refused(data: bytes, method: str = "GET") -> OriginProtocolError:
    with pytest.raises(OriginProtocolError) as info:
        end = find_head_end(data, client=False)
        parse_response_head(data[:end] if end != -1 else data, method)
    assert info.value.status == 502
    return info.value


OK = "HTTP/1.1 200 OK"

# (id, method, head, body kind, content_length, keep_alive)
FRAMING = [
    # RFC 9112 §6.3 item 1: HEAD, 1xx, 204 and 304 end at the head, whatever the fields say.
    ("rfc9112-6.3.1-head", "HEAD", head(OK, "Content-Length: 10"), "none", 10, True),
    ("rfc9112-6.3.1-head-chunked", "HEAD", head(OK, "Transfer-Encoding: chunked"), "none", 0, True),
    ("rfc9112-6.3.1-100", "GET", head("HTTP/1.1 100 Continue"), "none", 0, True),
    ("rfc9112-6.3.1-103", "GET", head("HTTP/1.1 103 Early Hints", "Link: </a>"), "none", 0, True),
    (
        "rfc9112-6.3.1-204",
        "GET",
        head("HTTP/1.1 204 No Content", "Content-Length: 5"),
        "none",
        0,
        True,
    ),
    ("rfc9112-6.3.1-304", "GET", head("HTTP/1.1 304 Not Modified"), "none", 0, True),
    (
        "rfc9112-6.3.1-304-length",
        "GET",
        head("HTTP/1.1 304 Not Modified", "Content-Length: 7"),
        "none",
        7,
        True,
    ),
    (
        "rfc9112-6.3.1-304-chunked",
        "GET",
        head("HTTP/1.1 304 Not Modified", "Transfer-Encoding: chunked"),
        "none",
        0,
        True,
    ),
    # RFC 9112 §6.3 item 2: a 2xx to CONNECT is a tunnel, never a reusable HTTP connection.
    ("rfc9112-6.3.2-connect-200", "CONNECT", head(OK, "Content-Length: 5"), "none", 0, False),
    (
        "rfc9112-6.3.2-connect-407",
        "CONNECT",
        head("HTTP/1.1 407 Auth", "Content-Length: 5"),
        "length",
        5,
        True,
    ),
    # RFC 9112 §6.3 item 4: chunked last -> chunked; another final coding -> read until close.
    ("rfc9112-6.3.4-chunked", "GET", head(OK, "Transfer-Encoding: chunked"), "chunked", 0, True),
    (
        "rfc9112-6.3.4-chunked-case",
        "GET",
        head(OK, "Transfer-Encoding: Chunked "),
        "chunked",
        0,
        True,
    ),
    # RFC 9112 §6.3 item 6: a valid Content-Length.
    ("rfc9112-6.3.6-length", "GET", head(OK, "Content-Length: 12"), "length", 12, True),
    ("rfc9112-6.3.6-length-zero", "GET", head(OK, "Content-Length: 0"), "length", 0, True),
    (
        "rfc9112-6.3.5-duplicate-length",
        "GET",
        head(OK, "Content-Length: 3", "Content-Length: 3"),
        "length",
        3,
        True,
    ),
    ("rfc9112-6.3.5-duplicate-list", "GET", head(OK, "Content-Length: 3, 03"), "length", 3, True),
    (
        "rfc9112-6.3.6-post",
        "POST",
        head("HTTP/1.1 201 Created", "Content-Length: 2"),
        "length",
        2,
        True,
    ),
    # RFC 9112 §6.3 item 8: no framing -> the body runs until close, never reusable.
    ("rfc9112-6.3.8-until-close", "GET", head(OK), "close", 0, False),
    (
        "rfc9112-6.3.8-until-close-keep-alive",
        "GET",
        head(OK, "Connection: keep-alive"),
        "close",
        0,
        False,
    ),
    # RFC 9112 §9.3 / §9.6: persistence.
    (
        "rfc9112-9.6-close",
        "GET",
        head(OK, "Content-Length: 1", "Connection: close"),
        "length",
        1,
        False,
    ),
    (
        "rfc9112-9.6-close-listed",
        "GET",
        head(OK, "Content-Length: 1", "Connection: x, Close"),
        "length",
        1,
        False,
    ),
    # An HTTP/1.0 origin is never reused: a keep-alive 1.0 origin is not worth the risk.
    ("rfc9112-9.3-http10", "GET", head("HTTP/1.0 200 OK", "Content-Length: 1"), "length", 1, False),
    (
        "rfc9112-9.3-http10-keep-alive",
        "GET",
        head("HTTP/1.0 200 OK", "Content-Length: 1", "Connection: keep-alive"),
        "length",
        1,
        False,
    ),
    (
        "rfc9110-2.5-http11-higher-minor",
        "GET",
        head("HTTP/1.7 200 OK", "Content-Length: 1"),
        "length",
        1,
        True,
    ),
]


@pytest.mark.parametrize(
    ("method", "data", "body", "length", "keep"),
    [c[1:] for c in FRAMING],
    ids=[c[0] for c in FRAMING],
)
def test_framing(method: str, data: bytes, body: str, length: int, keep: bool) -> None:
    resp = parse(data, method)
    assert (resp.body, resp.content_length, resp.keep_alive) == (body, length, keep)
    # Framing is rebuilt by the proxy: it never forwards the origin's framing fields.
    forwarded = {n.lower() for n, _ in resp.headers.end_to_end()}
    assert not forwarded & {"content-length", "transfer-encoding", "connection"}


ERRORS = [
    # A transfer coding other than chunked would reach the client unlabelled once the
    # hop-by-hop Transfer-Encoding field is dropped: refused (DESIGN.md §5 rule 3).
    ("rfc9112-6.3.4-gzip-final", "GET", head(OK, "Transfer-Encoding: gzip")),
    ("rfc9112-6.3.4-chunked-gzip", "GET", head(OK, "Transfer-Encoding: chunked, gzip")),
    # RFC 9110 §5.6.3: OWS is SP and HTAB only; "chunked" + NBSP is some other coding.
    ("rfc9110-5.6.3-nbsp-is-not-ows", "GET", head(OK, b"Transfer-Encoding: chunked\xa0")),
    # RFC 9112 §6.3 item 3: both framings -> refuse, never guess which one wins.
    ("rfc9112-6.3.3-te-and-cl", "GET", head(OK, "Transfer-Encoding: chunked", "Content-Length: 5")),
    (
        "rfc9112-6.3.3-cl-and-te-close",
        "GET",
        head(OK, "Content-Length: 5", "Transfer-Encoding: gzip"),
    ),
    # Codings we cannot remove while keeping the framing exact.
    ("rfc9112-7-gzip-chunked", "GET", head(OK, "Transfer-Encoding: gzip, chunked")),
    ("rfc9112-6.1-chunked-twice", "GET", head(OK, "Transfer-Encoding: chunked, chunked")),
    # RFC 9112 §6.1: Transfer-Encoding from an HTTP/1.0 origin means faulty framing.
    ("rfc9112-6.1-te-in-http10", "GET", head("HTTP/1.0 200 OK", "Transfer-Encoding: chunked")),
    # RFC 9112 §6.3 item 5: invalid or conflicting Content-Length.
    ("rfc9112-6.3.5-cl-conflict", "GET", head(OK, "Content-Length: 3", "Content-Length: 4")),
    ("rfc9112-6.3.5-cl-conflict-list", "GET", head(OK, "Content-Length: 3, 4")),
    ("rfc9112-6.3.5-cl-sign", "GET", head(OK, "Content-Length: -1")),
    ("rfc9112-6.3.5-cl-hex", "GET", head(OK, "Content-Length: 0x1")),
    ("rfc9112-6.3.5-cl-empty", "GET", head(OK, "Content-Length:")),
    ("rfc9112-6.3.5-cl-huge", "GET", head(OK, "Content-Length: " + "1" * 19)),
    ("rfc9112-6.3.5-cl-nbsp", "GET", head(OK, b"Content-Length: 1\xa0")),
    ("rfc9110-8.6-head-cl-conflict", "HEAD", head(OK, "Content-Length: 3, 4")),
    ("rfc9110-8.6-304-cl-invalid", "GET", head("HTTP/1.1 304 Not Modified", "Content-Length: x")),
    # RFC 9112 §4: status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ].
    ("rfc9112-4-two-digit-status", "GET", head("HTTP/1.1 20 OK")),
    ("rfc9112-4-four-digit-status", "GET", head("HTTP/1.1 2000 OK")),
    ("rfc9112-4-status-letters", "GET", head("HTTP/1.1 2x0 OK")),
    ("rfc9110-15-status-below-100", "GET", head("HTTP/1.1 099 Odd")),
    ("rfc9110-15-status-above-599", "GET", head("HTTP/1.1 600 Odd", "Content-Length: 0")),
    ("rfc9112-4-no-version", "GET", head("200 OK")),
    ("rfc9112-4-lowercase-version", "GET", head("http/1.1 200 OK")),
    ("rfc9112-4-two-spaces", "GET", head("HTTP/1.1  200 OK")),
    ("rfc9112-4-leading-space", "GET", head(" HTTP/1.1 200 OK")),
    ("rfc9112-4-control-in-reason", "GET", head(b"HTTP/1.1 200 O\x00K")),
    ("rfc9112-4-garbage", "GET", head("<html>")),
    ("rfc9112-2.3-http2", "GET", head("HTTP/2 200")),
    ("rfc9112-2.3-http2.0", "GET", head("HTTP/2.0 200 OK")),
    ("rfc9112-2.3-http0.9", "GET", head("HTTP/0.9 200 OK")),
    ("rfc9112-2.3-two-digit-minor", "GET", head("HTTP/1.10 200 OK")),
    # RFC 9112 §5: field syntax is as strict for origins as for clients (except obs-fold).
    ("rfc9112-5.1-space-before-colon", "GET", head(OK, "Content-Length : 5")),
    ("rfc9112-5.1-empty-name", "GET", head(OK, ": x")),
    ("rfc9112-5.1-no-colon", "GET", head(OK, "garbage")),
    ("rfc9110-5.5-nul-in-value", "GET", head(OK, b"X: a\x00b")),
    ("rfc9110-5.5-cr-in-value", "GET", head(OK, b"X: a\rb")),
    ("rfc9112-5.2-fold-without-field", "GET", head(OK, " folded")),
    ("rfc9112-5.2-fold-with-control", "GET", head(OK, "X: a", b" b\x01")),
    ("rfc9112-2.2-bare-lf", "GET", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
    ("rfc9112-2.2-bare-lf-in-line", "GET", b"HTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n"),
]


@pytest.mark.parametrize(("method", "data"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_errors(method: str, data: bytes) -> None:
    refused(data, method)


def test_obs_fold_in_a_response_is_replaced_by_a_space() -> None:
    # RFC 9112 §5.2: a proxy may replace each obs-fold with SP before forwarding.
    resp = parse(head(OK, "Content-Length: 0", "X-Long: a", " b", "\tc", "X-Next: d"))
    assert resp.headers.get("x-long") == "a b c"
    assert resp.headers.get("x-next") == "d"
    assert all("\r" not in v and "\n" not in v for _, v in resp.headers.items())


def test_obs_fold_adds_no_stray_spaces() -> None:
    resp = parse(head(OK, "Content-Length: 0", "X-Empty:", " a", "X-Blank: b", " \t"))
    assert resp.headers.get("x-empty") == "a"
    assert resp.headers.get("x-blank") == "b"


def test_status_line_parts() -> None:
    resp = parse(head(b"HTTP/1.1 404 Not\tFound \xe9", "Content-Length: 0"))
    assert (resp.version, resp.status, resp.reason) == (1, 404, "Not\tFound \xe9")


@pytest.mark.parametrize(
    "line",
    ["HTTP/1.1 200", "HTTP/1.1 200 "],
    ids=["rfc9112-4-no-reason-no-space", "rfc9112-4-empty-reason"],
)
def test_empty_reason_is_accepted(line: str) -> None:
    # RFC 9112 §4: a client SHOULD ignore the reason-phrase; many origins omit it.
    resp = parse(head(line, "Content-Length: 0"))
    assert (resp.status, resp.reason) == (200, "")


def test_head_over_the_limit_is_refused() -> None:
    field = b"X-Big: " + b"a" * 1000 + b"\r\n"
    data = b"HTTP/1.1 200 OK\r\n" + field * (MAX_HEAD_BYTES // len(field) + 1)
    with pytest.raises(OriginProtocolError):
        find_head_end(data, client=False)
    with pytest.raises(OriginProtocolError):
        parse_response_head(data + b"\r\n", "GET")


@pytest.mark.parametrize(
    ("count", "ok"),
    [(MAX_HEADER_COUNT, True), (MAX_HEADER_COUNT + 1, False)],
    ids=["rfc6585-5-at-limit", "rfc6585-5-over-limit"],
)
def test_header_count_limit(count: int, ok: bool) -> None:
    data = head(OK, "Content-Length: 0", *[f"X-{i}: v" for i in range(count - 1)])
    if ok:
        assert len(parse(data).headers) == count
    else:
        refused(data)


def test_incomplete_head_is_refused_by_the_parser() -> None:
    with pytest.raises(OriginProtocolError):
        # Cutting four bytes off would leave a valid head: "X: abcd".
        parse_response_head(b"HTTP/1.1 200 OK\r\nX: abcdef\r\n", "GET")


def test_find_head_end_ignores_a_body_with_bare_lfs() -> None:
    data = head(OK, "Content-Length: 4")
    assert find_head_end(data + b"\n\n\r\n", client=False) == len(data)


def test_long_status_line_is_not_a_414() -> None:
    # The request-line limit is for clients; an origin's head is bounded by MAX_HEAD_BYTES.
    data = ("HTTP/1.1 200 " + "a" * 9000).encode()
    assert find_head_end(data, client=False) == -1


def test_end_to_end_drops_hop_by_hop_fields_of_a_response() -> None:
    resp = parse(
        head(
            OK,
            "Connection: close, X-Hop",
            "X-Hop: 1",
            "Keep-Alive: timeout=5",
            "Proxy-Authenticate: Basic",
            "Trailer: X-T",
            "Upgrade: h2c",
            "Transfer-Encoding: chunked",
            "Cache-Control: max-age=60",
            "Set-Cookie: a=b",
        )
    )
    assert resp.headers.end_to_end() == [("Cache-Control", "max-age=60"), ("Set-Cookie", "a=b")]


CLIENT_FIELD_HEADS = [
    pytest.param(
        ("Server: nginx", "Content-Length: 3", "Connection: keep-alive", "Cache-Control: no-store"),
        [("Server", "nginx"), ("Cache-Control", "no-store"), ("Via", "1.1 proxy.test")],
        id="usual",
    ),
    pytest.param(
        ("Via: 1.0 a", "X-A: 1", "vIA: 1.1 b", "Content-Length: 0"),
        [("X-A", "1"), ("Via", "1.0 a, 1.1 b, 1.1 proxy.test")],
        id="earlier-via-entries-merged",
    ),
    pytest.param(
        ("CONNECTION: X-Hop, Close", "x-hop: 1", "X-HOP: 2", "Set-Cookie: a", "Set-Cookie: b"),
        [("Set-Cookie", "a"), ("Set-Cookie", "b"), ("Via", "1.1 proxy.test")],
        id="connection-listed-any-case",
    ),
    pytest.param(
        ("Connection: x-a", "Connection: x-b", "X-A: 1", "X-B: 2", "X-C: 3"),
        [("X-C", "3"), ("Via", "1.1 proxy.test")],
        id="two-connection-lines",
    ),
    pytest.param(
        ("Connection: via", "Via: 1.0 a", "Content-Length: 0"),
        [("Via", "1.0 a, 1.1 proxy.test")],
        id="connection-names-via",
    ),
]


@pytest.mark.parametrize(("fields", "expected"), CLIENT_FIELD_HEADS)
def test_client_fields_and_their_index_agree_with_a_fresh_index(
    fields: tuple[str, ...], expected: list[tuple[str, str]]
) -> None:
    # client_fields derives its index from the response's instead of building one: it
    # must be exactly the index that its fields would get, and response_fields_for_client
    # must give the same fields.
    resp = parse(head(OK, *fields))
    client = client_fields(resp, "proxy.test")
    assert list(client) == expected
    assert client.by_name() == Headers(list(expected)).by_name()
    assert response_fields_for_client(resp, "proxy.test") == expected
    # The response's own index is left as it was.
    assert resp.headers.by_name() == Headers(list(resp.headers)).by_name()


def test_client_fields_can_be_changed_without_touching_the_response() -> None:
    resp = parse(head(OK, "Set-Cookie: a", "Content-Length: 0"))
    client = client_fields(resp, "proxy.test")
    client.add("Set-Cookie", "b")
    client.remove("Via")
    assert client.get_all("set-cookie") == ["a", "b"]
    assert resp.headers.get_all("set-cookie") == ["a"]
    assert resp.headers.get_values("set-cookie") == ["a"]


def test_end_to_end_leaves_out_the_names_the_caller_rewrites() -> None:
    resp = parse(head(OK, "Connection: X-Hop", "X-Hop: 1", "Date: d", "X-Other: 2", "Age: 3"))
    dropped = NOT_FORWARDED | {"date", "age"}
    assert resp.headers.end_to_end(dropped) == [("X-Other", "2")]
    assert resp.headers.end_to_end() == [("Date", "d"), ("X-Other", "2"), ("Age", "3")]
    # Nothing to drop: the fields, as a new list.
    plain = Headers([("X-A", "1")])
    assert plain.end_to_end(dropped) == [("X-A", "1")]
    assert plain.end_to_end(dropped) is not plain.items()


@pytest.mark.parametrize(
    ("values", "close"),
    [
        (None, False),
        ([], False),
        (["keep-alive"], False),
        (["Keep-Alive, CLOSE"], True),
        (["x-enclosed"], False),
        (['x-a="close"'], False),
        (["keep-alive", " close "], True),
        (["closed"], False),
    ],
)
def test_says_close_finds_the_close_option_only(values: list[str] | None, close: bool) -> None:
    assert says_close(values) is close
