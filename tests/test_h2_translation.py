"""Request and response translation for HTTP/2 origins (issue #20), with plain values:
the same forwarded fields as the HTTP/1.1 head (`forwarded_fields`), pseudo-header fields
from the parsed target, no connection-specific fields (RFC 9113 §8.2.2), and responses
framed by Content-Length or by the stream's end."""

from __future__ import annotations

import pytest

from cproxy.errors import OriginProtocolError
from cproxy.http import find_head_end, parse_request_head
from cproxy.http.framing import FRAMED, LENGTH, NONE
from cproxy.http.heads import forwarded_fields, origin_request_head
from cproxy.http.message import client_fields
from cproxy.origin.h2stream import request_header_block, response_from_block


def request(raw: bytes):  # type: ignore[no-untyped-def]
    end = find_head_end(raw)
    return parse_request_head(raw[:end])


HOPPY = (
    b"POST https://example.test:8443/x?y=1 HTTP/1.1\r\nHost: example.test:8443\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
    b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers, gzip\r\n"
    b"Upgrade: h2c\r\nExpect: 100-continue\r\nVia: 1.1 other\r\nX-End: 2\r\n\r\n"
)


def test_both_protocols_forward_the_same_fields() -> None:
    req = request(HOPPY)
    fields = forwarded_fields(req, "me")
    assert fields == [("X-End", "2"), ("Via", "1.1 other, 1.1 me")]
    head = origin_request_head(req, "me").decode()
    for name, value in fields:
        assert f"\r\n{name}: {value}\r\n" in head


def test_the_header_block_has_pseudo_fields_and_no_connection_specific_ones() -> None:
    block = request_header_block(request(HOPPY), "me")
    assert block[:4] == [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "example.test:8443"),
        (":path", "/x?y=1"),
    ]
    names = [name for name, _ in block]
    assert all(name == name.lower() for name in names)
    for banned in (
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "host",
        "x-hop",
        "expect",
    ):
        assert banned not in names
    assert ("x-end", "2") in block and ("via", "1.1 other, 1.1 me") in block
    # A chunked body has no length: the DATA frames and END_STREAM carry it.
    assert "content-length" not in names


def test_authority_comes_from_the_target_not_a_disagreeing_host() -> None:
    req = request(b"GET https://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n")
    block = dict(request_header_block(req, "me"))
    assert block[":authority"] == "a.test"


def test_lengths_in_the_header_block() -> None:
    req = request(b"PUT https://h.test/ HTTP/1.1\r\nHost: h.test\r\nContent-Length: 007\r\n\r\n")
    assert ("content-length", "7") in request_header_block(req, "me")
    req = request(b"POST https://h.test/ HTTP/1.1\r\nHost: h.test\r\n\r\n")
    assert ("content-length", "0") in request_header_block(req, "me")
    req = request(b"GET https://h.test/ HTTP/1.1\r\nHost: h.test\r\n\r\n")
    assert "content-length" not in dict(request_header_block(req, "me"))


def test_a_well_formed_block_with_empty_and_inner_spaced_values_is_accepted() -> None:
    block = [(b":status", b"200"), (b"x-empty", b""), (b"x-a", b"a b\tc"), (b"set-cookie", b"k=v")]
    resp = response_from_block(block, "GET")
    assert resp.headers.get("x-empty") == "" and resp.headers.get("x-a") == "a b\tc"


def test_responses_are_framed_by_length_or_by_the_streams_end() -> None:
    resp = response_from_block([(b":status", b"200"), (b"content-length", b"5")], "GET")
    assert (resp.body, resp.content_length, resp.version) == (LENGTH, 5, 2)
    resp = response_from_block([(b":status", b"200"), (b"x-a", b"1")], "GET")
    assert resp.body == FRAMED and resp.headers.get("x-a") == "1"
    resp = response_from_block([(b":status", b"200"), (b"content-length", b"5")], "HEAD")
    assert resp.body == NONE and resp.content_length == 5
    resp = response_from_block([(b":status", b"304")], "GET")
    assert resp.body == NONE
    # Via names the protocol the response came in.
    assert client_fields(resp, "me").get("via") == "2 me"


@pytest.mark.parametrize(
    "block",
    [
        [(b":status", b"2000")],
        [(b":status", b"099")],
        [],
        [(b":status", b"200"), (b"content-length", b"1"), (b"content-length", b"2")],
        [(b":status", b"200"), (b"content-length", b"-1")],
        [(b":status", b"200"), (b"X-Upper", b"1")],
        [(b":status", b"200"), (b"x-a", b"line\r\nbreak")],
        [(b":status", b"200"), (b"x-a", b" padded")],
        [(b":status", b"200"), (b"x-a", b"nul\x00")],
        [(b":status", b"200"), (b"bad name", b"1")],
        [(b"x-a", b"1"), (b":status", b"200")],
        [(b":status", b"200"), (b":status", b"200")],
        [(b":status", b"200"), (b":path", b"/")],
        [(b":status", b"200"), (b"connection", b"close")],
        [(b":status", b"200"), (b"transfer-encoding", b"chunked")],
        [(b":status", b"200"), (b"upgrade", b"h2c")],
    ],
)
def test_a_malformed_response_block_is_refused(block: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(OriginProtocolError):
        response_from_block(block, "GET")
