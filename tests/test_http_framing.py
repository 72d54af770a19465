"""Body framing classes and head serialisers (`cproxy.http.framing`, `cproxy.http.heads`).

Sans-I/O: bytes in, pieces out. The relay code in cproxy/server moves bytes through these
classes only, so the framing rules (DESIGN.md §5 rules 1, 3 and 4) are checked here on
plain bytes, fed whole and byte by byte.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cproxy.errors import ClientProtocolError, OriginProtocolError, OriginReset
from cproxy.http import Headers, find_head_end, parse_request_head, parse_response_head
from cproxy.http.chunked import LAST_CHUNK, encode_chunk
from cproxy.http.framing import (
    BODY_WRITERS,
    CHUNKED,
    CLOSE,
    FRAMED,
    LENGTH,
    NONE,
    READERS,
    body_reader,
    frame_pieces,
    relay_framing,
)
from cproxy.http.heads import (
    interim_response_head,
    origin_request_head,
    reason,
    relayed_response_head,
    trace_echo,
)
from cproxy.http.message import Response


def feed_all(reader, chunks: list[bytes]) -> bytes:  # type: ignore[no-untyped-def]
    out = b""
    for chunk in chunks:
        out += b"".join(reader.feed(chunk))
    return out


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def test_the_table_has_one_reader_and_one_writer_per_kind() -> None:
    assert set(READERS) == set(BODY_WRITERS) == {NONE, LENGTH, CHUNKED, CLOSE, FRAMED}


def test_a_framed_body_ends_at_the_transports_end_and_is_self_delimited() -> None:
    # An HTTP/2 response without Content-Length: its stream's END_STREAM is its end.
    reader = body_reader(FRAMED, client=False)
    assert reader.feed(b"abc") == [b"abc"] and reader.feed(b"") == []
    assert not reader.done and not reader.clean
    reader.eof()
    assert reader.done and reader.clean
    # Relayed chunked to HTTP/1.1 clients, by closing to HTTP/1.0 ones.
    assert relay_framing(FRAMED, 1) == CHUNKED and relay_framing(FRAMED, 0) == CLOSE


@pytest.mark.parametrize("split", [False, True], ids=["whole", "bytewise"])
def test_length_reader_stops_at_the_length_and_keeps_what_follows(split: bool) -> None:
    data = b"hello" + b"GET / HTTP/1.1\r\n"
    reader = body_reader(LENGTH, 5, client=False)
    body = feed_all(reader, bytewise(data) if split else [data])
    assert body == b"hello"
    assert reader.done
    assert reader.leftover == b"GET / HTTP/1.1\r\n"
    assert not reader.clean  # bytes after the body: the socket is not reusable


def test_length_reader_exact_is_clean() -> None:
    reader = body_reader(LENGTH, 3, client=False)
    assert reader.feed(b"ab") == [b"ab"]
    assert not reader.done
    assert reader.feed(b"c") == [b"c"]
    assert reader.done and reader.clean


@pytest.mark.parametrize(("client", "error"), [(False, OriginReset), (True, ClientProtocolError)])
def test_length_reader_cut_short_raises_for_whom(client: bool, error: type) -> None:
    reader = body_reader(LENGTH, 10, client=client)
    reader.feed(b"abc")
    with pytest.raises(error, match="7 body bytes missing"):
        reader.eof()


def test_chunked_reader_decodes_and_keeps_what_follows() -> None:
    data = b"5\r\nhello\r\n0\r\nX-Trailer: dropped\r\n\r\nNEXT"
    for chunks in ([data], bytewise(data)):
        reader = body_reader(CHUNKED, client=False)
        assert feed_all(reader, chunks) == b"hello"
        assert reader.done and reader.leftover == b"NEXT" and not reader.clean


def test_chunked_reader_cut_short_and_malformed() -> None:
    reader = body_reader(CHUNKED, client=False)
    reader.feed(b"5\r\nhel")
    with pytest.raises(OriginReset, match="before the last chunk"):
        reader.eof()
    with pytest.raises(OriginProtocolError):
        body_reader(CHUNKED, client=False).feed(b"zz\r\n")
    with pytest.raises(ClientProtocolError):
        body_reader(CHUNKED, client=True).feed(b"zz\r\n")


def test_until_close_reader_ends_at_eof_and_is_never_clean() -> None:
    reader = body_reader(CLOSE, client=False)
    assert reader.feed(b"abc") == [b"abc"]
    assert reader.feed(b"") == []
    assert not reader.done
    reader.eof()
    assert reader.done and not reader.clean


def test_no_body_is_done_at_once_and_bytes_fed_are_leftover() -> None:
    reader = body_reader(NONE, client=False)
    assert reader.done and reader.clean
    assert reader.feed(b"x") == []
    assert reader.leftover == b"x" and not reader.clean
    reader.eof()  # nothing was expected: not an error


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=8))
def test_chunked_writer_round_trips_through_the_reader(pieces: list[bytes]) -> None:
    writer = BODY_WRITERS[CHUNKED]
    wire = frame_pieces(writer, pieces) + writer.end()
    reader = body_reader(CHUNKED, client=True)
    assert feed_all(reader, [wire]) == b"".join(pieces)
    assert reader.clean


def test_identity_writers_and_the_last_chunk() -> None:
    for kind in (NONE, LENGTH, CLOSE):
        writer = BODY_WRITERS[kind]
        assert frame_pieces(writer, [b"a", b"b"]) == b"ab"
        assert writer.end() == b""
    assert BODY_WRITERS[CHUNKED].end() == LAST_CHUNK
    assert frame_pieces(BODY_WRITERS[CHUNKED], [b"abc"]) == encode_chunk(b"abc")


@pytest.mark.parametrize(
    ("kind", "version", "expected"),
    [
        (NONE, 1, NONE),
        (NONE, 0, NONE),
        (LENGTH, 0, LENGTH),
        (LENGTH, 1, LENGTH),
        (CHUNKED, 1, CHUNKED),
        (CHUNKED, 0, CLOSE),  # an HTTP/1.0 client knows no chunked coding
        (CLOSE, 1, CHUNKED),  # re-chunked: the client's connection can persist
        (CLOSE, 0, CLOSE),
    ],
)
def test_relay_framing(kind: str, version: int, expected: str) -> None:
    assert relay_framing(kind, version) == expected


def response(head: bytes, method: str = "GET") -> Response:
    return parse_response_head(head, method)


def test_relayed_head_framing_lines() -> None:
    resp = response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\n\r\n")
    head = relayed_response_head(resp, [("X-A", "1")], LENGTH, keep=True, extra=["X-B: 2"])
    assert head == b"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-B: 2\r\nContent-Length: 3\r\n\r\n"
    head = relayed_response_head(resp, [], CHUNKED, keep=False)
    assert head == b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    head = relayed_response_head(resp, [], CLOSE, keep=True)
    assert head == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"


def test_relayed_head_of_a_bodiless_response_keeps_the_representation_length() -> None:
    # RFC 9110 §8.6: HEAD and 304 keep Content-Length; 204 never has one.
    resp = response(b"HTTP/1.1 200 OK\r\nContent-Length: 0042\r\n\r\n", "HEAD")
    assert b"Content-Length: 42\r\n" in relayed_response_head(resp, [], NONE, keep=True)
    resp = response(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert b"Content-Length" not in relayed_response_head(resp, [], NONE, keep=True)


def test_relayed_head_without_a_reason_gets_the_standard_one() -> None:
    resp = response(b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n")
    assert relayed_response_head(resp, [], LENGTH, keep=True).startswith(
        b"HTTP/1.1 404 Not Found\r\n"
    )
    assert reason(599) == "Unknown"


def request(raw: bytes):  # type: ignore[no-untyped-def]
    end = find_head_end(raw)
    return parse_request_head(raw[:end])


def test_origin_request_head_is_built_from_the_parsed_request() -> None:
    req = request(
        b"POST http://example.test/x HTTP/1.1\r\nHost: example.test\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
        b"Expect: 100-continue\r\nVia: 1.1 other\r\nX-End: 2\r\n\r\n"
    )
    head = origin_request_head(req, "me")
    assert head == (
        b"POST /x HTTP/1.1\r\nHost: example.test\r\nX-End: 2\r\n"
        b"Via: 1.1 other, 1.1 me\r\nTransfer-Encoding: chunked\r\n\r\n"
    )


def test_origin_request_head_content_length_and_empty_post() -> None:
    req = request(b"PUT http://h.test/ HTTP/1.1\r\nHost: h.test\r\nContent-Length: 007\r\n\r\n")
    assert b"Content-Length: 7\r\n" in origin_request_head(req, "me")
    req = request(b"POST http://h.test/ HTTP/1.0\r\n\r\n")
    head = origin_request_head(req, "me")
    assert b"Content-Length: 0\r\n" in head and b"Via: 1.0 me\r\n" in head
    req = request(b"GET http://h.test/ HTTP/1.1\r\nHost: h.test\r\n\r\n")
    assert b"Content-Length" not in origin_request_head(req, "me")


def test_interim_head_and_trace_echo() -> None:
    resp = Response(1, 103, "Early Hints", Headers([("Link", "</a>"), ("Connection", "x")]))
    assert interim_response_head(resp) == b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    req = request(b"TRACE http://h.test/ HTTP/1.1\r\nHost: h.test\r\nX-A: 1\r\n\r\n")
    assert trace_echo(req) == b"TRACE http://h.test/ HTTP/1.1\r\nHost: h.test\r\nX-A: 1\r\n\r\n"
