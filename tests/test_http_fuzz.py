"""Property tests for the sans-I/O HTTP layer (issues #2 and #6).

Whatever bytes arrive, the parsers either return a message or raise the typed
error that names whose fault it was, within bounded time; an accepted request has
exactly one framing; and what cproxy encodes, it decodes back unchanged.

Every test has a fixed ``max_examples`` and ``deadline`` so the file stays well
under 20 s in CI, and no example database is written.
"""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cproxy.errors import ClientProtocolError, OriginProtocolError
from cproxy.http import (
    ChunkedDecoder,
    Request,
    encode_chunk,
    find_head_end,
    parse_request_head,
    parse_response_head,
)
from cproxy.http.chunked import LAST_CHUNK
from cproxy.http.limits import MAX_CHUNK_LINE_BYTES, MAX_HEAD_BYTES

# The deadline is generous so a loaded CI machine does not make it flaky; it still
# catches anything close to a hang (each example is a few hundred bytes).
FUZZ = settings(
    max_examples=200,
    deadline=2000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SMALL = settings(FUZZ, max_examples=100)

# Pieces that hit the interesting branches far more often than uniform bytes do.
_REQUEST_PIECES = [
    b"GET",
    b"POST",
    b"CONNECT",
    b"OPTIONS",
    b"HEAD",
    b" ",
    b"\t",
    b"/",
    b"*",
    b"http://",
    b"https://",
    b"HTTP://",
    b"a.test",
    b"[::1]",
    b"[",
    b"]",
    b":",
    b"80",
    b"@",
    b"#",
    b"?",
    b"%",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"\r\n",
    b"\r",
    b"\n",
    b"\x00",
    b"\xa0",
    b"\x0b",
    b"Host",
    b"Content-Length",
    b"Transfer-Encoding",
    b"Connection",
    b"Expect",
    b"chunked",
    b"gzip",
    b"close",
    b"100-continue",
    b",",
    b";",
    b"0",
    b"5",
    b"-1",
    b"0x",
    b"999999999999999999999",
]
_RESPONSE_PIECES = [
    b"HTTP/1.1 ",
    b"HTTP/1.0 ",
    b"HTTP/2 ",
    b"200",
    b"204",
    b"304",
    b"100",
    b"600",
    b"20",
    b" OK",
    *_REQUEST_PIECES,
]


def _pieces(pieces: list[bytes]) -> st.SearchStrategy[bytes]:
    element = st.one_of(st.sampled_from(pieces), st.binary(min_size=1, max_size=4))
    return st.lists(element, max_size=40).map(b"".join)


request_like = st.one_of(
    st.binary(max_size=300),
    _pieces(_REQUEST_PIECES),
    st.tuples(
        st.sampled_from([b"GET / HTTP/1.1", b"POST http://a.test/ HTTP/1.1", b"PUT / HTTP/1.0"]),
        st.lists(_pieces(_REQUEST_PIECES), max_size=6),
    ).map(lambda t: b"\r\n".join([t[0], b"Host: a.test", *t[1]])),
)
response_like = st.one_of(
    st.binary(max_size=300),
    _pieces(_RESPONSE_PIECES),
    st.tuples(
        st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK", b"HTTP/1.1 304 NM"]),
        st.lists(_pieces(_RESPONSE_PIECES), max_size=6),
    ).map(lambda t: b"\r\n".join([t[0], *t[1]])),
)
methods = st.sampled_from(["GET", "HEAD", "POST", "CONNECT", "OPTIONS"])


def _as_head(data: bytes) -> bytes:
    """Half the time hand the parser a well-terminated head, as the server does."""
    return data + b"\r\n\r\n"


# --- robustness: typed errors only, bounded results ----------------------------------


@FUZZ
@given(data=request_like, terminate=st.booleans())
def test_find_head_end_returns_a_head_boundary_or_a_typed_error(
    data: bytes, terminate: bool
) -> None:
    buf = _as_head(data) if terminate else data
    try:
        end = find_head_end(buf)
    except ClientProtocolError as exc:
        assert exc.status in (400, 414, 431)
        return
    if end == -1:
        assert b"\r\n\r\n" not in buf
        assert len(buf) <= MAX_HEAD_BYTES
    else:
        assert 4 <= end <= min(len(buf), MAX_HEAD_BYTES)
        assert buf[end - 4 : end] == b"\r\n\r\n"
        assert b"\r\n\r\n" not in buf[: end - 2]
        if b"\n" in buf[:end].replace(b"\r\n", b""):
            # A whole head's bare LFs are left to the parser, which refuses them.
            with pytest.raises(ClientProtocolError) as refused:
                parse_request_head(buf[:end])
            assert refused.value.status == 400


@FUZZ
@given(data=request_like, terminate=st.booleans())
def test_parse_request_head_raises_only_client_protocol_errors(
    data: bytes, terminate: bool
) -> None:
    try:
        req = parse_request_head(_as_head(data) if terminate else data)
    except ClientProtocolError as exc:
        assert 400 <= exc.status <= 505
        return
    check_one_framing(req)


@FUZZ
@given(data=response_like, method=methods, terminate=st.booleans())
def test_parse_response_head_raises_only_origin_protocol_errors(
    data: bytes, method: str, terminate: bool
) -> None:
    buf = _as_head(data) if terminate else data
    try:
        find_head_end(buf, client=False)
        resp = parse_response_head(buf, method)
    except OriginProtocolError as exc:
        assert exc.status == 502
        return
    assert resp.body in ("none", "length", "chunked", "close")
    assert 100 <= resp.status <= 599
    if resp.body == "close":
        assert not resp.keep_alive
    if resp.body == "length":
        assert {int(v) for v in ",".join(resp.headers.get_all("content-length")).split(",")} == {
            resp.content_length
        }


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=300),
        _pieces([b"0", b"5", b"a", b"F", b"\r\n", b"\n", b"\r", b";", b"=", b'"', b"x:", b" "]),
    ),
    client=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=5),
)
def test_chunked_decoder_raises_only_typed_errors_and_stays_bounded(
    data: bytes, client: bool, cuts: list[int]
) -> None:
    dec = ChunkedDecoder(client=client)
    error = ClientProtocolError if client else OriginProtocolError
    out = b""
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    try:
        for a, b in itertools.pairwise(bounds):
            out += b"".join(dec.feed(data[a:b]))
    except error:
        return
    # Never more data out than bytes in; never an unbounded line buffer.
    assert len(out) <= len(data)
    assert len(dec._line) <= MAX_CHUNK_LINE_BYTES
    if dec.done:
        assert data.endswith(dec.leftover)


@FUZZ
@given(
    data=_pieces([b"3", b"\r\n", b"abc", b"0", b";x", b"T: 1", b"\n"]),
    cut=st.integers(min_value=0, max_value=200),
)
# Found by Hypothesis: bytes fed after the last chunk (even none) replaced the leftover.
@example(data=b"0\r\n\r\n3", cut=6)
@example(data=b"0\r\n\r\n33", cut=0)
def test_chunked_decoder_result_does_not_depend_on_how_bytes_arrive(data: bytes, cut: int) -> None:
    def run(parts: list[bytes]) -> tuple[object, ...]:
        dec = ChunkedDecoder(client=True)
        out = b""
        try:
            for part in parts:
                out += b"".join(dec.feed(part))
        except ClientProtocolError:
            return ("error",)
        return (out, dec.done, dec.leftover if dec.done else None)

    cut = min(cut, len(data))
    assert run([data]) == run([data[:cut], data[cut:]])
    assert run([data]) == run([data[i : i + 1] for i in range(len(data))]) or not data


# --- valid requests parse to what was sent -----------------------------------------

_alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
_label = st.tuples(
    st.sampled_from(_alnum), st.text(_alnum + "-", max_size=6), st.sampled_from(_alnum)
).map("".join)
hosts = st.one_of(
    st.lists(_label, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: ipaddress.IPv6Address(a).compressed),
)
_pchar = st.sampled_from("abcXYZ019-._~!$&'()*+,;=:@%")
paths = st.lists(st.text(_pchar, max_size=8), max_size=4).map(lambda s: "/" + "/".join(s))
queries = st.one_of(
    st.just(""), st.text(st.sampled_from("ab=&?/%+"), max_size=10).map("?{}".format)
)
_reserved = {"host", "content-length", "transfer-encoding", "expect", "connection"}
field_names = st.text("AbcXyz019!#$%&'*+.^_`|~-", min_size=1, max_size=12).filter(
    lambda n: n.lower() not in _reserved
)
field_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=20,
).map(lambda v: v.strip(" \t"))


def _case(text: str, flips: list[bool]) -> str:
    return "".join(
        c.upper() if f else c for c, f in zip(text, flips + [False] * len(text), strict=False)
    )


@FUZZ
@given(
    method=st.text("ABCDEGHLOPSTU-", min_size=1, max_size=8).filter(lambda m: m != "CONNECT"),
    host=hosts,
    port=st.one_of(st.none(), st.integers(min_value=1, max_value=65535)),
    path=paths,
    query=queries,
    fields=st.lists(st.tuples(field_names, field_values), max_size=8),
    flips=st.lists(st.booleans(), max_size=30),
    version=st.sampled_from([0, 1]),
)
def test_generated_valid_requests_parse_to_the_same_fields(
    method: str,
    host: str,
    port: int | None,
    path: str,
    query: str,
    fields: list[tuple[str, str]],
    flips: list[bool],
    version: int,
) -> None:
    authority = f"[{host}]" if ":" in host else host
    if port is not None:
        authority += f":{port}"
    target = f"{_case('http', flips)}://{_case(authority, flips[4:])}{path}{query}"
    lines = [f"{method} {target} HTTP/1.{version}", "Host: ignored.test"]
    lines += [f"{n}: {v}" for n, v in fields]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    assert find_head_end(data) == len(data)
    req = parse_request_head(data)
    assert (req.method, req.version, req.form) == (method, version, "absolute")
    assert (req.host, req.port, req.path) == (host, port or 80, path + query)
    shown = f"[{host}]" if ":" in host else host
    assert req.url == f"http://{shown}{'' if port in (None, 80) else f':{port}'}{path}{query}"
    assert req.headers.items()[1:] == fields
    assert req.keep_alive is (version == 1)
    assert (req.body, req.content_length) == ("none", 0)


# --- an accepted request has one framing, and its forwarded form reads the same -------


def check_one_framing(req: Request) -> None:
    """DESIGN.md §5 rule 1: one body kind, one canonical Content-Length."""
    te = req.headers.get_all("transfer-encoding")
    cl = req.headers.get_all("content-length")
    assert req.body in ("none", "length", "chunked")
    assert not (te and cl)
    if req.body == "chunked":
        assert req.version == 1
        assert [c.strip(" \t").lower() for v in te for c in v.split(",")] == ["chunked"]
    else:
        assert not te
    if req.body == "length":
        assert req.content_length > 0
    if cl:
        values = {int(c.strip(" \t")) for v in cl for c in v.split(",")}
        assert values == {req.content_length}
    else:
        assert req.content_length == 0
    forwarded = {n.lower() for n, _ in req.headers.end_to_end()}
    assert not forwarded & {"content-length", "transfer-encoding", "connection"}


def forwarded_head(req: Request) -> bytes:
    """The head a proxy builds from the parsed form (never from the raw bytes), as the
    server's handler does: Host rebuilt, Expect answered by the proxy itself."""
    lines = [f"{req.method} {req.path} HTTP/1.1", f"Host: {req.host_header}"]
    lines += [
        f"{n}: {v}" for n, v in req.headers.end_to_end() if n.lower() not in ("host", "expect")
    ]
    if req.body == "length":
        lines.append(f"Content-Length: {req.content_length}")
    elif req.body == "chunked":
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_framing_fields = st.lists(
    st.sampled_from(
        [
            "Content-Length: 5",
            "Content-Length: 05",
            "Content-Length: 5, 5",
            "Content-Length: 6",
            "Content-Length: 0",
            "Content-Length: +5",
            "Content-Length:  5 ",
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: CHUNKED ",
            "Transfer-Encoding: gzip",
            "Transfer-Encoding: chunked, chunked",
            "Connection: close",
            "Connection: X-A",
            "X-A: 1",
            "Keep-Alive: 1",
            "Expect: 100-continue",
            "Accept: */*",
        ]
    ),
    max_size=5,
)


@SMALL
@given(
    first=st.sampled_from(
        [
            "POST /p HTTP/1.1",
            "PUT http://a.test:8080/x?y HTTP/1.1",
            "POST / HTTP/1.0",
            "GET / HTTP/1.1",
        ]
    ),
    fields=_framing_fields,
)
def test_accepted_requests_have_one_framing_and_forward_unambiguously(
    first: str, fields: list[str]
) -> None:
    data = ("\r\n".join([first, "Host: a.test", *fields]) + "\r\n\r\n").encode()
    try:
        req = parse_request_head(data)
    except ClientProtocolError:
        return
    check_one_framing(req)
    again = parse_request_head(forwarded_head(req))
    check_one_framing(again)
    assert (again.body, again.content_length) == (req.body, req.content_length)
    assert (again.host, again.port, again.path) == (req.host, req.port, req.path)


# --- encode_chunk round trip -----------------------------------------------------------


@FUZZ
@given(
    pieces=st.lists(st.binary(max_size=64), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
    client=st.booleans(),
    after=st.binary(max_size=8),
)
def test_encoded_bodies_decode_to_the_same_bytes_however_they_are_split(
    pieces: list[bytes], cuts: list[int], client: bool, after: bytes
) -> None:
    wire = b"".join(encode_chunk(p) for p in pieces) + LAST_CHUNK
    stream = wire + after
    bounds = sorted({0, len(stream), *(c for c in cuts if c <= len(stream))})
    dec = ChunkedDecoder(client=client)
    out = b""
    leftover = b""
    for a, b in itertools.pairwise(bounds):
        was_done = dec.done
        out += b"".join(dec.feed(stream[a:b]))
        if dec.done:
            leftover += stream[a:b] if was_done else dec.leftover
    assert dec.done
    assert out == b"".join(pieces)
    assert leftover == after
