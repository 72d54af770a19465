# ruff: noqa: E501  (the case tables keep one case per line)
"""Hostile request framing and syntax through the running proxy (issue #6, DESIGN.md §5).

Each case names the RFC 9112 (or RFC 9110) section it follows. A refused input must get
the status the RFC asks for with ``Connection: close``; the connection is closed after it
(a canary request, pipelined behind it or sent after the answer, gets nothing), and the
origin receives nothing: no bytes at all, for errors in the head as for errors in a body
(bodies up to RequestBodyBuffer are read whole before the origin sees the request; a
larger one streams, and an origin that saw part of a bad one is closed: see
tests/test_hostile_clients.py).

Accepted-but-canonicalised inputs (duplicate identical Content-Length, leading zeros,
``Chunked``, chunk extensions, trailers) reach the origin as exactly one canonical request,
followed by the canary: never a second, smuggled one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile import (
    TALLY,
    RecordingOrigin,
    assert_canonical,
    attack,
    canary,
    exchange,
)
from tests.support import ProxyThread, start_proxy

HP = "{o}"  # replaced by the origin's host:port


def msg(*lines: str | bytes, body: bytes = b"") -> bytes:
    """A request from its lines, CRLF-terminated, then ``body``."""
    raw = [x.encode("latin-1") if isinstance(x, str) else x for x in lines]
    return b"\r\n".join(raw) + b"\r\n\r\n" + body


def post(*fields: str | bytes, body: bytes = b"", version: str = "1.1") -> bytes:
    return msg(f"POST http://{HP}/x HTTP/{version}", f"Host: {HP}", *fields, body=body)


def get(*fields: str | bytes, line: str | bytes = f"GET http://{HP}/x HTTP/1.1") -> bytes:
    return msg(line, f"Host: {HP}", *fields)


def chunked(body: bytes) -> bytes:
    return post("Transfer-Encoding: chunked", body=body)


# (id, RFC section, request bytes, status, where the error is: "head" or "body")
REFUSED = [
    # -- Content-Length and Transfer-Encoding together or malformed --------------------
    ("cl+te", "9112 §6.1, §6.3 item 3", post("Content-Length: 5", "Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400, "head"),
    ("te+cl", "9112 §6.1, §6.3 item 3", post("Transfer-Encoding: chunked", "Content-Length: 0", body=b"0\r\n\r\n"), 400, "head"),
    ("cl-conflicting", "9112 §6.3 item 5", post("Content-Length: 5", "Content-Length: 6", body=b"hello!"), 400, "head"),
    ("cl-conflicting-list", "9112 §6.3 item 5", post("Content-Length: 5, 6", body=b"hello!"), 400, "head"),
    ("cl-plus", "9110 §8.6", post("Content-Length: +5", body=b"hello"), 400, "head"),
    ("cl-minus", "9110 §8.6", post("Content-Length: -5", body=b"hello"), 400, "head"),
    ("cl-inner-space", "9110 §8.6", post("Content-Length: 1 0", body=b"hello"), 400, "head"),
    ("cl-hex", "9110 §8.6", post("Content-Length: 0x5", body=b"hello"), 400, "head"),
    ("cl-float", "9110 §8.6", post("Content-Length: 5.0", body=b"hello"), 400, "head"),
    ("cl-empty", "9110 §8.6", post("Content-Length: ", body=b"hello"), 400, "head"),
    ("cl-19-digits", "9112 §6.3 item 5", post("Content-Length: " + "9" * 19), 400, "head"),
    ("cl-40-digits", "9112 §6.3 item 5", post("Content-Length: " + "1" * 40), 400, "head"),
    ("cl-nbsp", "9110 §5.6.3 (OWS is SP/HTAB)", post(b"Content-Length: 5\xa0", body=b"hello"), 400, "head"),
    ("te-gzip", "9112 §6.3 item 4", post("Transfer-Encoding: gzip", body=b"hello"), 400, "head"),
    ("te-chunked-identity", "9112 §6.3 item 4", post("Transfer-Encoding: chunked, identity", body=b"0\r\n\r\n"), 400, "head"),
    ("te-xchunked", "9112 §6.3 item 4", post("Transfer-Encoding: xchunked", body=b"0\r\n\r\n"), 400, "head"),
    ("te-chunked-twice", "9112 §6.1", post("Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"), 400, "head"),
    ("te-two-fields", "9112 §6.1", post("Transfer-Encoding: chunked", "Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400, "head"),
    ("te-quoted", "9112 §6.3 item 4", post('Transfer-Encoding: "chunked"', body=b"0\r\n\r\n"), 400, "head"),
    ("te-vtab", "9110 §5.5", post(b"Transfer-Encoding: \x0bchunked", body=b"0\r\n\r\n"), 400, "head"),
    ("te-empty", "9112 §6.3 item 4", post("Transfer-Encoding: ", body=b"0\r\n\r\n"), 400, "head"),
    ("te-unknown-coding", "9112 §6.1 (SHOULD 501)", post("Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"), 501, "head"),
    ("te-http10", "9112 §6.1", post("Transfer-Encoding: chunked", body=b"0\r\n\r\n", version="1.0"), 400, "head"),
    # -- chunked body framing (RFC 9112 §7.1) ------------------------------------------
    ("chunk-minus", "9112 §7.1", chunked(b"-5\r\nhello\r\n0\r\n\r\n"), 400, "body"),
    ("chunk-plus", "9112 §7.1", chunked(b"+5\r\nhello\r\n0\r\n\r\n"), 400, "body"),
    ("chunk-0x", "9112 §7.1", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), 400, "body"),
    ("chunk-space", "9112 §7.1", chunked(b"5 \r\nhello\r\n0\r\n\r\n"), 400, "body"),
    ("chunk-17-digits", "9112 §7.1 (overflow)", chunked(b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n"), 400, "body"),
    ("chunk-overflow-f", "9112 §7.1 (overflow)", chunked(b"f" * 17 + b"\r\nhello\r\n0\r\n\r\n"), 400, "body"),
    ("chunk-empty-size", "9112 §7.1", chunked(b"\r\nhello\r\n0\r\n\r\n"), 400, "body"),
    ("chunk-ext-bare-cr", "9112 §7.1.1", chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n"), 400, "body"),
    ("chunk-ext-bare-lf", "9112 §7.1.1", chunked(b"5;a\nb\r\nhello\r\n0\r\n\r\n"), 400, "body"),
    ("chunk-ext-nul", "9112 §7.1.1", chunked(b"5;a=\x00\r\nhello\r\n0\r\n\r\n"), 400, "body"),
    ("chunk-size-bare-lf", "9112 §7.1, §2.2", chunked(b"5\nhello\r\n0\r\n\r\n"), 400, "body"),
    ("chunk-data-too-long", "9112 §7.1", chunked(b"3\r\nhello\r\n0\r\n\r\n"), 400, "body"),
    ("chunk-data-bare-lf", "9112 §7.1", chunked(b"5\r\nhello\n0\r\n\r\n"), 400, "body"),
    ("chunk-last-bare-lf", "9112 §7.1", chunked(b"5\r\nhello\r\n0\n\n"), 400, "body"),
    ("trailer-malformed", "9112 §7.1.2", chunked(b"0\r\nno colon here\r\n\r\n"), 400, "body"),
    ("trailer-ws-before-colon", "9112 §7.1.2, §5.1", chunked(b"0\r\nContent-Length : 5\r\n\r\n"), 400, "body"),
    # -- line endings, field syntax ---------------------------------------------------
    ("bare-lf-everywhere", "9112 §2.2", f"GET http://{HP}/x HTTP/1.1\nHost: {HP}\n\n".encode(), 400, "head"),
    ("bare-lf-one-line", "9112 §2.2", f"GET http://{HP}/x HTTP/1.1\r\nHost: {HP}\nX: y\r\n\r\n".encode(), 400, "head"),
    ("bare-lf-blank-line", "9112 §2.2", f"GET http://{HP}/x HTTP/1.1\r\nHost: {HP}\r\n\n".encode(), 400, "head"),
    ("bare-cr-request-line", "9112 §2.2", f"GET http://{HP}/x HTTP/1.1\rHost: {HP}\r\n\r\n".encode(), 400, "head"),
    ("bare-cr-value", "9112 §2.2", get(b"X: a\rb"), 400, "head"),
    ("obs-fold", "9112 §5.2", get("X: a", " b"), 400, "head"),
    ("obs-fold-tab", "9112 §5.2", get("X: a", "\tb"), 400, "head"),
    ("ws-first-field", "9112 §2.2", msg(f"GET http://{HP}/x HTTP/1.1", f" Host: {HP}"), 400, "head"),
    ("ws-before-colon", "9112 §5.1", get("X-A : b"), 400, "head"),
    ("ws-before-colon-cl", "9112 §5.1", post("Content-Length : 5", body=b"hello"), 400, "head"),
    ("ws-before-colon-te", "9112 §5.1", post("Transfer-Encoding : chunked", body=b"0\r\n\r\n"), 400, "head"),
    ("tab-before-colon", "9112 §5.1", get("X-A\t: b"), 400, "head"),
    ("empty-name", "9110 §5.1", get(": b"), 400, "head"),
    ("nul-in-name", "9110 §5.1", get(b"X\x00A: b"), 400, "head"),
    ("nul-in-value", "9110 §5.5", get(b"X-A: a\x00b"), 400, "head"),
    ("ctl-in-value", "9110 §5.5", get(b"X-A: a\x01b"), 400, "head"),
    ("del-in-value", "9110 §5.5", get(b"X-A: a\x7fb"), 400, "head"),
    ("esc-in-value", "9110 §5.5", get(b"X-A: \x1b[31m"), 400, "head"),
    ("non-token-name", "9110 §5.1", get(b"X(A): b"), 400, "head"),
    ("utf8-name", "9110 §5.1", get("Xé: b".encode()), 400, "head"),
    # -- request line: method, target, version ----------------------------------------
    ("method-not-token", "9112 §3.1", get(line=f"G@T http://{HP}/x HTTP/1.1"), 400, "head"),
    ("method-nul", "9112 §3.1", get(line=f"GET\x00 http://{HP}/x HTTP/1.1".encode()), 400, "head"),
    ("method-empty", "9112 §3", get(line=f" http://{HP}/x HTTP/1.1"), 400, "head"),
    ("double-space", "9112 §3", get(line=f"GET  http://{HP}/x HTTP/1.1"), 400, "head"),
    ("tab-separator", "9112 §3", get(line=f"GET\thttp://{HP}/x HTTP/1.1"), 400, "head"),
    ("trailing-space", "9112 §3", get(line=f"GET http://{HP}/x HTTP/1.1 "), 400, "head"),
    ("version-1.10", "9112 §2.3", get(line=f"GET http://{HP}/x HTTP/1.10"), 400, "head"),
    ("version-lowercase", "9112 §2.3", get(line=f"GET http://{HP}/x http/1.1"), 400, "head"),
    ("version-no-minor", "9112 §2.3", get(line=f"GET http://{HP}/x HTTP/1"), 400, "head"),
    ("version-missing", "9112 §3 (no HTTP/0.9)", f"GET http://{HP}/x\r\n\r\n".encode(), 400, "head"),
    ("version-2.0", "9112 §2.3, 9110 §15.6.6", get(line=f"GET http://{HP}/x HTTP/2.0"), 505, "head"),
    ("version-3.0", "9112 §2.3, 9110 §15.6.6", get(line=f"GET http://{HP}/x HTTP/3.0"), 505, "head"),
    ("h2-preface", "9113 §3.4 / 9110 §15.6.6", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "head"),
    ("target-fragment", "9112 §3.2", get(line=f"GET http://{HP}/x#frag HTTP/1.1"), 400, "head"),
    ("target-space", "9112 §3.2", get(line=f"GET http://{HP}/a b HTTP/1.1"), 400, "head"),
    ("target-non-ascii", "9112 §3.2", get(line=f"GET http://{HP}/\xe9 HTTP/1.1".encode("latin-1")), 400, "head"),
    ("target-userinfo", "9110 §4.2.4", get(line=f"GET http://user:pw@{HP}/x HTTP/1.1"), 400, "head"),
    ("target-bad-host", "9112 §3.2.2", get(line="GET http://a!b/x HTTP/1.1"), 400, "head"),
    ("target-empty-host", "9112 §3.2.2", get(line="GET http:///x HTTP/1.1"), 400, "head"),
    ("target-empty-label", "RFC 3986 §3.2.2", get(line="GET http://127.0.0..1/x HTTP/1.1"), 400, "head"),
    ("target-label-64", "RFC 1035 §2.3.4", get(line=f"GET http://{'a' * 64}.test/x HTTP/1.1"), 400, "head"),
    ("target-port-too-big", "9112 §3.2.2", get(line="GET http://127.0.0.1:99999/x HTTP/1.1"), 400, "head"),
    ("target-port-sign", "9112 §3.2.2", get(line="GET http://127.0.0.1:+80/x HTTP/1.1"), 400, "head"),
    ("host-missing", "9112 §3.2", msg(f"GET http://{HP}/x HTTP/1.1"), 400, "head"),
    ("host-twice", "9112 §3.2", get(f"Host: {HP}"), 400, "head"),
    ("host-two-values", "9112 §3.2", msg(f"GET http://{HP}/x HTTP/1.1", f"Host: {HP}, {HP}"), 400, "head"),
    ("authority-form-get", "9112 §3.2.3", get(line=f"GET {HP} HTTP/1.1"), 400, "head"),
    ("asterisk-form-get", "9112 §3.2.4", get(line="GET * HTTP/1.1"), 400, "head"),
    ("connect-origin-form", "9112 §3.2.3", get(line="CONNECT /x HTTP/1.1"), 400, "head"),
    ("connect-no-port", "9112 §3.2.3", get(line="CONNECT 127.0.0.1 HTTP/1.1"), 400, "head"),
    # -- expectations and bounds --------------------------------------------------------
    ("expect-unknown", "9110 §10.1.1", get("Expect: x-magic"), 417, "head"),
    ("expect-two", "9110 §10.1.1", post("Expect: 100-continue, x-magic", "Content-Length: 1", body=b"a"), 417, "head"),
    ("request-line-too-long", "9112 §3 (414)", get(line=f"GET http://{HP}/{'a' * 9000} HTTP/1.1"), 414, "head"),
    ("header-section-too-big", "RFC 6585 §5 (431)", get(*[f"X-{i}: {'v' * 1000}" for i in range(70)]), 431, "head"),
    ("one-huge-field", "RFC 6585 §5 (431)", get("X-Big: " + "v" * 70000), 431, "head"),
    ("too-many-fields", "RFC 6585 §5 (431)", get(*[f"X-{i}: v" for i in range(101)]), 431, "head"),
    ("leading-empty-lines-unbounded", "9112 §2.2, counted as head (431)", b"\r\n" * 33_000 + get(), 431, "head"),
]  # fmt: skip


@pytest.fixture(scope="module")
def origin() -> Iterator[RecordingOrigin]:
    with RecordingOrigin() as o:
        yield o


@pytest.fixture(scope="module")
def proxy() -> Iterator[ProxyThread]:
    # Short timeouts bound a case where cproxy wrongly waits for more bytes.
    with start_proxy(InputTimeout="3 seconds", ReadTimeout="3 seconds") as p:
        yield p


def fill(template: bytes, origin: RecordingOrigin) -> bytes:
    return template.replace(b"{o}", f"127.0.0.1:{origin.port}".encode())


@pytest.mark.parametrize(
    ("section", "bad", "status", "where"),
    [pytest.param(*case[1:], id=case[0]) for case in REFUSED],
)
def test_refused_input_gets_its_status_closes_and_reaches_no_origin(
    proxy: ProxyThread,
    origin: RecordingOrigin,
    section: str,
    bad: bytes,
    status: int,
    where: str,
) -> None:
    first_conn = origin.connections
    result = attack(proxy.port, fill(bad, origin), origin.port)
    for ex in (result.pipelined, result.sequential):
        finals = [a for a in ex.answers if a.status >= 200]
        assert [a.status for a in finals] == [status], (section, ex.raw[:300])
        assert finals[0].closes, f"{section}: a {status} must carry Connection: close"
        assert ex.closed, f"{section}: cproxy kept the connection open after a {status}"
        assert not ex.leftover, ex.leftover
    assert not result.canary_answered
    origin.sync()  # every connection cproxy made has now been accepted
    new = origin.received()[first_conn:]
    # An error in the head, or in a body (read whole up to RequestBodyBuffer before the
    # origin sees anything): the origin receives nothing at all.
    assert not any(new), f"{section} (error in the {where}): the origin received {new!r}"
    assert "/canary" not in origin.paths()
    TALLY["handled"] += 1


# (id, RFC section, request bytes, the body the origin must receive, its framing)
ACCEPTED = [
    ("cl-duplicate-identical", "9112 §6.3 item 5", post("Content-Length: 5", "Content-Length: 5", body=b"hello"), b"hello", "length"),
    ("cl-list-identical", "9112 §6.3 item 5", post("Content-Length: 5, 5", body=b"hello"), b"hello", "length"),
    ("cl-leading-zeros", "9110 §8.6", post("Content-Length: 005", body=b"hello"), b"hello", "length"),
    ("cl-ows", "9110 §5.5", post("Content-Length: \t 5 \t", body=b"hello"), b"hello", "length"),
    ("cl-zero-post", "9112 §6.3 item 6", post("Content-Length: 0"), b"", "length"),
    ("post-no-length", "9112 §6.3 item 7", post(), b"", "length"),
    ("te-Chunked", "9112 §7 (case-insensitive)", post("Transfer-Encoding: Chunked", body=b"5\r\nhello\r\n0\r\n\r\n"), b"hello", "chunked"),
    ("te-CHUNKED-ows", "9110 §5.5", post("Transfer-Encoding:  CHUNKED ", body=b"5\r\nhello\r\n0\r\n\r\n"), b"hello", "chunked"),
    ("chunk-ext", "9112 §7.1.1 (dropped)", chunked(b"5;name=value;x\r\nhello\r\n0;last\r\n\r\n"), b"hello", "chunked"),
    ("chunk-ext-quoted-crlf-lookalike", "9112 §7.1.1", chunked(b'5;a="0\\r\\n\\r\\nGET /smuggled"\r\nhello\r\n0\r\n\r\n'), b"hello", "chunked"),
    ("chunk-uppercase-zeros", "9112 §7.1", chunked(b"000A\r\n0123456789\r\n00\r\n\r\n"), b"0123456789", "chunked"),
    ("trailer-sets-framing", "9112 §7.1.2 (dropped)", chunked(b"5\r\nhello\r\n0\r\nContent-Length: 100\r\nTransfer-Encoding: identity\r\nHost: evil.test\r\n\r\n"), b"hello", "chunked"),
    ("chunk-body-looks-like-request", "9112 §7.1", chunked(b"1b\r\nGET /smuggled HTTP/1.1\r\nX: \r\n0\r\n\r\n"), b"GET /smuggled HTTP/1.1\r\nX: ", "chunked"),
    ("cl-body-looks-like-request", "9112 §6.2", post("Content-Length: 25", body=b"GET /smuggled HTTP/1.1\r\n\r\n"[:25]), b"GET /smuggled HTTP/1.1\r\n\r"[:25], "length"),
    ("expect-100-continue", "9110 §10.1.1", post("Expect: 100-continue", "Content-Length: 5", body=b"hello"), b"hello", "length"),
    ("leading-empty-lines", "9112 §2.2", b"\r\n\r\n" + post("Content-Length: 5", body=b"hello"), b"hello", "length"),
    ("connection-names-framing", "9110 §7.6.1", post("Connection: Content-Length, X-Hop", "X-Hop: 1", "Content-Length: 5", body=b"hello"), b"hello", "length"),
    ("http10-with-length", "9112 §6.3", post("Content-Length: 5", body=b"hello", version="1.0"), b"hello", "length"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("section", "sent", "body", "framing"),
    [pytest.param(*case[1:], id=case[0]) for case in ACCEPTED],
)
def test_accepted_input_reaches_the_origin_as_one_canonical_request(
    proxy: ProxyThread,
    origin: RecordingOrigin,
    section: str,
    sent: bytes,
    body: bytes,
    framing: str,
) -> None:
    TALLY["bad_inputs"] += 1
    before = len(origin.requests())
    close_canary = canary(origin.port).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    ex = exchange(proxy.port, fill(sent, origin) + close_canary)
    finals = [a.status for a in ex.answers if a.status >= 200]
    http10 = b"HTTP/1.0\r\n" in sent
    # An HTTP/1.0 request closes after its answer: the canary must then get nothing.
    assert finals == ([200] if http10 else [200, 200]), (section, ex.raw[:300])
    assert ex.closed and not ex.leftover
    got = origin.wait_requests(before + len(finals))[before:]
    assert len(got) == len(finals), f"{section}: the origin received {len(got)} requests"
    first = got[0]
    assert_canonical(first)
    assert (first.req.method, first.req.path, first.body) == ("POST", "/x", body), section
    assert first.req.body == ("none" if framing == "length" and not body else framing), section
    names = {n.lower() for n, _ in first.req.headers.items()}
    assert not names & {"expect", "x-hop", "trailer"}, first.raw_head
    if len(got) > 1:
        assert got[1].req.path == "/canary"
    assert "/smuggled" not in origin.paths()
    TALLY["handled"] += 1


def test_absolute_uri_wins_over_a_disagreeing_host(
    proxy: ProxyThread, origin: RecordingOrigin
) -> None:
    """RFC 9112 §3.2.2: with absolute-form the Host field is ignored and replaced."""
    before = len(origin.requests())
    ex = exchange(
        proxy.port,
        fill(msg(f"GET http://{HP}/x HTTP/1.1", "Host: evil.test", "Connection: close"), origin),
    )
    assert ex.statuses == [200]
    r = origin.wait_requests(before + 1)[before]
    assert r.req.headers.get_all("host") == [f"127.0.0.1:{origin.port}"]


def test_zz_tally() -> None:
    """The figures for docs/HARDENING.md: every bad input handled, no canary smuggled."""
    print(f"\nhostile: {TALLY['bad_inputs']} bad inputs so far, {TALLY['smuggled']} smuggled")
    assert TALLY["smuggled"] == 0
    assert TALLY["bad_inputs"] >= len(REFUSED) + len(ACCEPTED) or TALLY["bad_inputs"] == 0
