"""The chunked transfer coding (RFC 9112 §7.1): a strict, bounded, incremental decoder.

cproxy decodes every chunked body and re-chunks it itself (DESIGN.md §5 rule 1), so
the decoder is where chunk-size, extension and trailer tricks must stop (issue #6).
"""

from __future__ import annotations

import pytest

from cproxy.errors import ClientProtocolError, OriginProtocolError, ProtocolError
from cproxy.http import ChunkedDecoder, encode_chunk
from cproxy.http.chunked import LAST_CHUNK
from cproxy.http.limits import MAX_CHUNK_LINE_BYTES, MAX_TRAILER_BYTES


def decode_at_once(body: bytes, *, client: bool = True) -> tuple[bytes, ChunkedDecoder]:
    dec = ChunkedDecoder(client=client)
    data = b"".join(dec.feed(body))
    return data, dec


def decode_bytewise(body: bytes, *, client: bool = True) -> tuple[bytes, ChunkedDecoder]:
    dec = ChunkedDecoder(client=client)
    pieces: list[bytes] = []
    for i in range(len(body)):
        pieces += dec.feed(body[i : i + 1])
    return b"".join(pieces), dec


VALID = [
    # (id, body, data)
    ("rfc9112-7.1-empty-body", b"0\r\n\r\n", b""),
    ("rfc9112-7.1-one-chunk", b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    ("rfc9112-7.1-two-chunks", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    ("rfc9112-7.1-hex-upper", b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    ("rfc9112-7.1-hex-lower", b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    ("rfc9112-7.1-leading-zeros", b"0005\r\nhello\r\n000\r\n\r\n", b"hello"),
    ("rfc9112-7.1-16-digits", b"0000000000000003\r\nabc\r\n0\r\n\r\n", b"abc"),
    ("rfc9112-7.1-data-with-crlf", b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n"),
    ("rfc9112-7.1-binary-data", b"3\r\n\x00\n\xff\r\n0\r\n\r\n", b"\x00\n\xff"),
    # RFC 9112 §7.1.1: extensions are recognised and dropped.
    ("rfc9112-7.1.1-ext-name", b"5;foo\r\nhello\r\n0\r\n\r\n", b"hello"),
    ("rfc9112-7.1.1-ext-value", b"5;foo=bar\r\nhello\r\n0;x=1\r\n\r\n", b"hello"),
    ("rfc9112-7.1.1-ext-quoted", b'5;foo="a b;c\\"d"\r\nhello\r\n0\r\n\r\n', b"hello"),
    ("rfc9112-7.1.1-ext-many", b'5;a;b=1;c="2"\r\nhello\r\n0\r\n\r\n', b"hello"),
    ("rfc9112-7.1.1-ext-bws", b"5 ; a = 1\t;\tb\r\nhello\r\n0\r\n\r\n", b"hello"),
    # RFC 9112 §7.1.2: trailers are parsed and dropped.
    ("rfc9112-7.1.2-trailer", b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n", b"hello"),
    ("rfc9112-7.1.2-trailers", b"0\r\nA: 1\r\nB:\r\nC: x y\t\r\n\r\n", b""),
]


@pytest.mark.parametrize(("body", "want"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
@pytest.mark.parametrize("client", [True, False], ids=["client", "origin"])
def test_valid_bodies_decode_the_same_bytewise_and_at_once(
    body: bytes, want: bytes, client: bool
) -> None:
    at_once, dec1 = decode_at_once(body, client=client)
    bytewise, dec2 = decode_bytewise(body, client=client)
    assert at_once == bytewise == want
    assert dec1.done and dec2.done
    assert dec1.leftover == dec2.leftover == b""


INVALID = [
    # RFC 9112 §7.1: chunk-size = 1*HEXDIG, nothing before or after but extensions.
    ("rfc9112-7.1-size-plus", b"+5\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1-size-minus", b"-5\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1-size-0x", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1-size-leading-space", b" 5\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1-size-leading-tab", b"\t5\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1-size-trailing-space", b"5 \r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1-size-space-inside", b"1 0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n"),
    ("rfc9112-7.1-size-17-digits", b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1-size-overflow", b"10000000000000000\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1-size-empty", b"\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1-size-not-hex", b"g\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1-size-underscore", b"1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n"),
    ("rfc9112-7.1-size-non-ascii-digit", b"\xd9\xa5\r\nhello\r\n0\r\n\r\n"),
    # RFC 9112 §2.2 / §7.1: CRLF only.
    ("rfc9112-7.1-bare-lf-after-size", b"5\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1-bare-cr-after-size", b"5\rhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1-bare-lf-after-data", b"5\r\nhello\n0\r\n\r\n"),
    ("rfc9112-7.1-bare-lf-last-chunk", b"5\r\nhello\r\n0\n\r\n"),
    ("rfc9112-7.1-bare-lf-end", b"5\r\nhello\r\n0\r\n\n"),
    ("rfc9112-7.1-data-too-long", b"5\r\nhelloXX\r\n0\r\n\r\n"),
    ("rfc9112-7.1-data-too-short", b"5\r\nhell\r\n0\r\n\r\n"),
    ("rfc9112-7.1-data-not-crlf", b"5\r\nhelloAB0\r\n\r\n"),
    # RFC 9112 §7.1.1: malformed extensions (a bare LF or CR in one is the classic
    # trick that makes two parsers disagree on where the chunk data starts).
    ("rfc9112-7.1.1-ext-bare-lf", b"5;a\nb\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1.1-ext-bare-cr", b"5;a\rb\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1.1-ext-nul", b"5;a\x00\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1.1-ext-no-name", b"5;\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1.1-ext-no-value", b"5;a=\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1.1-ext-unclosed-quote", b'5;a="x\r\nhello\r\n0\r\n\r\n'),
    ("rfc9112-7.1.1-ext-junk-after-quote", b'5;a="x"y\r\nhello\r\n0\r\n\r\n'),
    ("rfc9112-7.1.1-ext-space-in-value", b"5;a=b c\r\nhello\r\n0\r\n\r\n"),
    ("rfc9112-7.1.1-ext-no-semicolon", b"5 a\r\nhello\r\n0\r\n\r\n"),
    # RFC 9112 §7.1.2: trailer fields follow the field syntax.
    ("rfc9112-7.1.2-trailer-no-colon", b"0\r\nbroken\r\n\r\n"),
    ("rfc9112-7.1.2-trailer-space-before-colon", b"0\r\nX : 1\r\n\r\n"),
    ("rfc9112-7.1.2-trailer-empty-name", b"0\r\n: 1\r\n\r\n"),
    ("rfc9112-7.1.2-trailer-obs-fold", b"0\r\nX: 1\r\n 2\r\n\r\n"),
    ("rfc9112-7.1.2-trailer-nul", b"0\r\nX: a\x00b\r\n\r\n"),
    ("rfc9112-7.1.2-trailer-bare-lf", b"0\r\nX: 1\n\r\n"),
    ("rfc9112-7.1.2-trailer-bare-cr", b"0\r\nX: 1\rY: 2\r\n\r\n"),
]


@pytest.mark.parametrize("body", [c[1] for c in INVALID], ids=[c[0] for c in INVALID])
@pytest.mark.parametrize("bytewise", [False, True], ids=["at-once", "bytewise"])
def test_invalid_bodies_are_refused(body: bytes, bytewise: bool) -> None:
    with pytest.raises(ClientProtocolError) as info:
        (decode_bytewise if bytewise else decode_at_once)(body, client=True)
    assert info.value.status == 400
    with pytest.raises(OriginProtocolError):
        (decode_bytewise if bytewise else decode_at_once)(body, client=False)


def test_data_not_followed_by_crlf_is_refused_without_waiting_for_a_newline() -> None:
    dec = ChunkedDecoder(client=True)
    assert dec.feed(b"5\r\nhello\r") == [b"hello"]
    with pytest.raises(ClientProtocolError):
        dec.feed(b"X")


def test_a_chunk_line_over_the_limit_is_refused_before_it_is_complete() -> None:
    # DESIGN.md §5 rule 6: an endless chunk-size line must not grow a buffer forever.
    dec = ChunkedDecoder(client=True)
    dec.feed(b"5;a=" + b"b" * (MAX_CHUNK_LINE_BYTES - 10))
    with pytest.raises(ClientProtocolError):
        dec.feed(b"b" * 20)


def test_a_chunk_line_at_the_limit_is_accepted() -> None:
    line = b"5;a=" + b"b" * (MAX_CHUNK_LINE_BYTES - 6) + b"\r\n"
    assert len(line) == MAX_CHUNK_LINE_BYTES
    data, dec = decode_bytewise(line + b"hello\r\n0\r\n\r\n")
    assert (data, dec.done) == (b"hello", True)


def test_a_complete_chunk_line_over_the_limit_is_refused() -> None:
    line = b"5;a=" + b"b" * (MAX_CHUNK_LINE_BYTES - 5) + b"\r\n"
    with pytest.raises(ClientProtocolError):
        decode_at_once(line + b"hello\r\n0\r\n\r\n")


def test_an_endless_trailer_line_is_refused() -> None:
    dec = ChunkedDecoder(client=False)
    dec.feed(b"0\r\nX: ")
    with pytest.raises(OriginProtocolError):
        for _ in range(MAX_CHUNK_LINE_BYTES // 100 + 1):
            dec.feed(b"a" * 100)


def test_a_trailer_section_over_the_limit_is_refused() -> None:
    # Many short trailer lines, each valid, add up to more than MAX_TRAILER_BYTES.
    field = b"X-T: " + b"a" * 90 + b"\r\n"
    count = MAX_TRAILER_BYTES // len(field) + 1
    dec = ChunkedDecoder(client=True)
    dec.feed(b"0\r\n")
    with pytest.raises(ClientProtocolError):
        for _ in range(count):
            dec.feed(field)
    assert not dec.done


def test_a_trailer_section_at_the_limit_is_accepted() -> None:
    field = b"X-T: " + b"a" * 90 + b"\r\n"
    count = MAX_TRAILER_BYTES // len(field)
    data, dec = decode_at_once(b"0\r\n" + field * count + b"\r\n")
    assert (data, dec.done) == (b"", True)


@pytest.mark.parametrize(
    ("after", "split"),
    [
        (b"", False),
        (b"GET / HTTP/1.1\r\n", False),
        (b"GET / HTTP/1.1\r\n", True),
        (b"\n\x00", True),
    ],
    ids=["nothing", "pipelined-request", "pipelined-request-bytewise", "garbage-bytewise"],
)
def test_leftover_holds_the_bytes_after_the_body(after: bytes, split: bool) -> None:
    body = b"3\r\nabc\r\n0\r\nT: 1\r\n\r\n"
    dec = ChunkedDecoder(client=True)
    if split:
        for i in range(len(body)):
            dec.feed(body[i : i + 1])
        assert dec.done
        assert dec.feed(after) == []
    else:
        assert b"".join(dec.feed(body + after)) == b"abc"
    assert dec.done
    assert dec.leftover == after


def test_not_done_until_the_final_crlf() -> None:
    dec = ChunkedDecoder(client=True)
    dec.feed(b"3\r\nabc\r\n0\r\n")
    assert not dec.done
    dec.feed(b"\r")
    assert not dec.done
    dec.feed(b"\n")
    assert dec.done


def test_data_is_streamed_before_the_chunk_ends() -> None:
    # A large chunk is passed on as it arrives, not buffered whole.
    dec = ChunkedDecoder(client=False)
    assert dec.feed(b"1000\r\n" + b"a" * 10) == [b"a" * 10]
    assert dec.feed(b"b" * 5) == [b"b" * 5]


def test_a_huge_chunk_size_is_not_allocated() -> None:
    # 16 hex digits are accepted; the decoder only counts down, it never allocates.
    dec = ChunkedDecoder(client=False)
    assert dec.feed(b"ffffffffffffffff\r\nabc") == [b"abc"]
    assert not dec.done


def test_errors_say_whose_fault() -> None:
    for client, kind in ((True, ClientProtocolError), (False, OriginProtocolError)):
        with pytest.raises(ProtocolError) as info:
            ChunkedDecoder(client=client).feed(b"zz\r\n")
        assert type(info.value) is kind


@pytest.mark.parametrize(
    "pieces",
    [[b"a"], [b"hello", b" ", b"world"], [b"\r\n0\r\n\r\n"], [bytes(range(256)) * 20]],
    ids=["one-byte", "three", "framing-lookalike", "binary-5120"],
)
def test_encode_chunk_round_trips(pieces: list[bytes]) -> None:
    body = b"".join(encode_chunk(p) for p in pieces) + LAST_CHUNK
    assert decode_at_once(body)[0] == decode_bytewise(body)[0] == b"".join(pieces)


def test_encode_chunk_format() -> None:
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"


def test_encode_chunk_of_nothing_is_nothing() -> None:
    # A zero-size chunk would be the last chunk and end the body early.
    assert encode_chunk(b"") == b""
