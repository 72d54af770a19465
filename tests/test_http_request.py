"""Request heads: strict parsing, bounds and the forwarded form (issues #2 and #6).

Every rejection case names the RFC 9112 / RFC 9110 section it follows and the
status the client gets (DESIGN.md §5 rules 1, 2 and 6). Where the RFC leaves a
choice, cproxy rejects rather than guesses.
"""

from __future__ import annotations

import copy

import pytest

from cproxy.errors import ClientProtocolError
from cproxy.http import Headers, Request, find_head_end, parse_request_head
from cproxy.http.limits import MAX_HEAD_BYTES, MAX_HEADER_COUNT, MAX_REQUEST_LINE_BYTES


def head(*lines: str | bytes) -> bytes:
    """A request head from its lines (request line first), ending in the blank line."""
    raw = [line.encode("latin-1") if isinstance(line, str) else line for line in lines]
    return b"\r\n".join(raw) + b"\r\n\r\n"


def get(*fields: str | bytes, line: str | bytes = "GET / HTTP/1.1") -> bytes:
    return head(line, "Host: example.test", *fields)


def post(*fields: str | bytes) -> bytes:
    return head("POST /upload HTTP/1.1", "Host: example.test", *fields)


def parse(data: bytes) -> Request:
    """What the server does: find the head's end, then parse exactly that head."""
    end = find_head_end(data)
    assert end == len(data), "the test head must be exactly one complete head"
    return parse_request_head(data[:end])


def rejected(data: bytes) -> ClientProtocolError:
    """The error for ``data``, whether find_head_end or the parser finds it."""
    with pytest.raises(ClientProtocolError) as info:
        end = find_head_end(data)
        parse_request_head(data[:end] if end != -1 else data)
    return info.value


# --- framing: Content-Length and Transfer-Encoding --------------------------------

FRAMING_ERRORS = [
    # RFC 9112 §6.1 / §6.3 item 3: both framings at once is the classic smuggling vector.
    ("cl-and-te", post("Content-Length: 5", "Transfer-Encoding: chunked"), 400),
    ("te-and-cl", post("Transfer-Encoding: chunked", "Content-Length: 0"), 400),
    # RFC 9112 §6.3 item 5: differing Content-Length values are unrecoverable.
    ("cl-conflicting-fields", post("Content-Length: 5", "Content-Length: 6"), 400),
    ("cl-conflicting-list", post("Content-Length: 5, 6"), 400),
    # RFC 9110 §8.6: Content-Length = 1*DIGIT; nothing else.
    ("cl-plus-sign", post("Content-Length: +5"), 400),
    ("cl-minus-sign", post("Content-Length: -5"), 400),
    ("cl-space-inside", post("Content-Length: 1 0"), 400),
    ("cl-hex", post("Content-Length: 0x10"), 400),
    ("cl-hex-digits", post("Content-Length: 1a"), 400),
    ("cl-empty", post("Content-Length: "), 400),
    ("cl-empty-list-element", post("Content-Length: 5,"), 400),
    ("cl-decimal-point", post("Content-Length: 5.0"), 400),
    ("cl-19-digits", post("Content-Length: 1000000000000000000"), 400),
    ("cl-huge", post("Content-Length: " + "9" * 40), 400),
    ("cl-nbsp-suffix", post(b"Content-Length: 5\xa0"), 400),
    ("cl-superscript-digit", post(b"Content-Length: \xb2"), 400),
    # RFC 9112 §6.1: chunked must be the final coding, applied once; §7: other codings
    # are not implemented (501). Anything we cannot frame exactly is refused.
    ("te-xchunked", post("Transfer-Encoding: xchunked"), 400),
    ("te-chunked-identity", post("Transfer-Encoding: chunked, identity"), 400),
    ("te-identity", post("Transfer-Encoding: identity"), 400),
    ("te-chunked-twice-list", post("Transfer-Encoding: chunked, chunked"), 400),
    (
        "te-chunked-twice-fields",
        post("Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
        400,
    ),
    ("te-empty", post("Transfer-Encoding: "), 400),
    ("te-chunked-trailing-comma", post("Transfer-Encoding: chunked,"), 400),
    ("te-chunked-parameter", post("Transfer-Encoding: chunked;q=1"), 400),
    ("te-chunked-nbsp", post(b"Transfer-Encoding: chunked\xa0"), 400),
    ("te-chunked-vertical-tab", post(b"Transfer-Encoding: chunked\x0b"), 400),
    ("te-gzip-chunked", post("Transfer-Encoding: gzip, chunked"), 501),
    (
        "te-gzip-then-chunked-fields",
        post("Transfer-Encoding: gzip", "Transfer-Encoding: chunked"),
        501,
    ),
    # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
    ("te-in-http10", head("POST / HTTP/1.0", "Transfer-Encoding: chunked"), 400),
]


@pytest.mark.parametrize(
    ("data", "status"), [c[1:] for c in FRAMING_ERRORS], ids=[c[0] for c in FRAMING_ERRORS]
)
def test_framing_errors(data: bytes, status: int) -> None:
    assert rejected(data).status == status


FRAMING_OK = [
    # (id, head, body kind, content_length)
    ("no-body", get(), "none", 0),
    ("cl-zero", post("Content-Length: 0"), "none", 0),
    ("cl-plain", post("Content-Length: 42"), "length", 42),
    # RFC 9112 §6.3 item 5: identical duplicates may be accepted as one value.
    ("cl-duplicate-fields", post("Content-Length: 7", "Content-Length: 7"), "length", 7),
    ("cl-duplicate-list", post("Content-Length: 7, 7"), "length", 7),
    # RFC 9110 §8.6: 1*DIGIT, so leading zeros are the decimal value.
    ("cl-leading-zeros", post("Content-Length: 0010"), "length", 10),
    ("cl-duplicate-leading-zeros", post("Content-Length: 10", "Content-Length: 010"), "length", 10),
    ("cl-18-digits", post("Content-Length: 999999999999999999"), "length", 999999999999999999),
    ("cl-ows-around", post("Content-Length: \t 5 \t"), "length", 5),
    # RFC 9112 §7: transfer-coding names are case-insensitive.
    ("te-chunked", post("Transfer-Encoding: chunked"), "chunked", 0),
    ("te-chunked-upper", post("Transfer-Encoding: CHUNKED"), "chunked", 0),
    ("te-chunked-mixed", post("Transfer-Encoding: ChUnKeD"), "chunked", 0),
    # RFC 9112 §5.1: OWS around the field value is not part of it.
    ("te-chunked-trailing-ows", post("Transfer-Encoding: chunked "), "chunked", 0),
    ("te-chunked-tab-ows", post("Transfer-Encoding:\tchunked\t"), "chunked", 0),
]


@pytest.mark.parametrize(
    ("data", "body", "length"), [c[1:] for c in FRAMING_OK], ids=[c[0] for c in FRAMING_OK]
)
def test_framing_accepted(data: bytes, body: str, length: int) -> None:
    req = parse(data)
    assert (req.body, req.content_length) == (body, length)
    # DESIGN.md §5 rule 1: the framing fields are rebuilt, never forwarded as received.
    forwarded = {n.lower() for n, _ in req.headers.end_to_end()}
    assert not forwarded & {"content-length", "transfer-encoding"}


# --- syntax of the head: line endings, field lines ---------------------------------

SYNTAX_ERRORS = [
    # RFC 9112 §2.2: bare LF may be accepted, but a proxy that does reads the message
    # differently from a server that does not.
    ("bare-lf-blank-line", b"GET / HTTP/1.1\r\nHost: a\n\n", 400),
    ("bare-lf-all-lines", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare-lf-after-request-line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    ("bare-lf-inside-field", b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),
    ("bare-lf-before-blank", b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
    # RFC 9112 §2.2: a bare CR outside a CRLF is invalid.
    ("bare-cr-in-value", get(b"X: a\rb"), 400),
    ("bare-cr-end-of-value", get(b"X: a\r"), 400),
    ("bare-cr-in-name", get(b"X\r: a"), 400),
    ("bare-cr-in-request-line", head(b"GET /\r HTTP/1.1", "Host: a"), 400),
    # RFC 9112 §5.2: obs-fold in a request is rejected with 400.
    ("obs-fold-space", get("X: a", " b"), 400),
    ("obs-fold-tab", get("X: a", "\tb"), 400),
    ("obs-fold-first-field", head("GET / HTTP/1.1", " Host: a"), 400),
    # RFC 9112 §5.1: no whitespace between field name and colon.
    ("space-before-colon", head("GET / HTTP/1.1", "Host : a"), 400),
    ("tab-before-colon", head("GET / HTTP/1.1", "Host\t: a"), 400),
    ("space-in-name", get("X Y: a"), 400),
    # RFC 9110 §5.1 / §5.5: names are tokens, values have no controls.
    ("nul-in-value", get(b"X: a\x00b"), 400),
    ("nul-in-name", get(b"X\x00: a"), 400),
    ("control-in-value", get(b"X: a\x01b"), 400),
    ("del-in-value", get(b"X: a\x7fb"), 400),
    ("escape-in-value", get(b"X: \x1b[31m"), 400),
    ("non-token-name", get("X(y): a"), 400),
    ("non-ascii-name", get(b"X\xe9: a"), 400),
    ("empty-name", get(": a"), 400),
    ("no-colon", get("X-No-Colon"), 400),
]


@pytest.mark.parametrize(
    ("data", "status"), [c[1:] for c in SYNTAX_ERRORS], ids=[c[0] for c in SYNTAX_ERRORS]
)
def test_syntax_errors(data: bytes, status: int) -> None:
    assert rejected(data).status == status


def test_bare_lf_is_refused_before_the_head_is_complete() -> None:
    # RFC 9112 §2.2: no need to wait for a CRLF CRLF that a bare-LF client never sends.
    with pytest.raises(ClientProtocolError) as info:
        find_head_end(b"GET / HTTP/1.1\nHost: a\n")
    assert info.value.status == 400


def test_head_ends_at_the_first_blank_line() -> None:
    # RFC 9112 §2.1: what follows the first empty line is the body or the next message.
    first = get()
    assert find_head_end(first + b"X: b\r\n\r\n") == len(first)


def test_body_bytes_after_the_head_do_not_matter_to_find_head_end() -> None:
    # Pipelined body bytes may hold anything, bare LFs included.
    data = post("Content-Length: 4") + b"a\n\nb"
    assert find_head_end(data) == len(data) - 4


def test_field_values_keep_obs_text_and_lose_ows() -> None:
    req = parse(get(b"X-Latin: \t caf\xe9 \t", "X-Tab: a\tb"))
    assert req.headers.get("x-latin") == "caf\xe9"
    assert req.headers.get("x-tab") == "a\tb"


def test_headers_lookup_is_case_insensitive_and_keeps_order_and_case() -> None:
    req = parse(get("X-A: 1", "x-a: 2", "Accept: */*"))
    assert req.headers.get_all("X-A") == ["1", "2"]
    assert [n for n, _ in req.headers.items()] == ["Host", "X-A", "x-a", "Accept"]
    assert "ACCEPT" in req.headers
    assert "nope" not in req.headers


# --- the request line ---------------------------------------------------------------

REQUEST_LINE_ERRORS = [
    # RFC 9110 §9.1: method = token.
    ("method-with-slash", "GE/T / HTTP/1.1", 400),
    ("method-with-paren", "G(ET / HTTP/1.1", 400),
    ("method-empty", " / HTTP/1.1", 400),
    ("method-non-ascii", b"G\xc9T / HTTP/1.1", 400),
    # RFC 9112 §2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive.
    ("version-two-digit-minor", "GET / HTTP/1.10", 400),
    ("version-no-minor", "GET / HTTP/1", 400),
    ("version-lowercase", "GET / http/1.1", 400),
    ("version-missing", "GET /", 400),
    ("version-trailing-junk", "GET / HTTP/1.1x", 400),
    # RFC 9112 §3: exactly one SP between the parts.
    ("two-spaces-after-method", "GET  / HTTP/1.1", 400),
    ("two-spaces-before-version", "GET /  HTTP/1.1", 400),
    ("leading-space", " GET / HTTP/1.1", 400),
    ("trailing-space", "GET / HTTP/1.1 ", 400),
    ("tab-separator", "GET\t/ HTTP/1.1", 400),
    ("space-in-target", "GET /a b HTTP/1.1", 400),
    # RFC 9110 §6.2 / §15.6.6: other major versions get 505.
    ("http-2", "GET / HTTP/2.0", 505),
    ("http-2-preface", "PRI * HTTP/2.0", 505),
    ("http-0-9", "GET / HTTP/0.9", 505),
    ("http-3", "GET / HTTP/3.0", 505),
]


@pytest.mark.parametrize(
    ("line", "status"),
    [c[1:] for c in REQUEST_LINE_ERRORS],
    ids=[c[0] for c in REQUEST_LINE_ERRORS],
)
def test_request_line_errors(line: str | bytes, status: int) -> None:
    assert rejected(head(line, "Host: example.test")).status == status


def test_http2_connection_preface_gets_505() -> None:
    # RFC 9113 §3.4: the prior-knowledge preface looks like a request head.
    data = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    end = find_head_end(data)
    with pytest.raises(ClientProtocolError) as info:
        parse_request_head(data[:end])
    assert info.value.status == 505


@pytest.mark.parametrize(
    ("line", "version", "keep_alive"),
    [
        ("GET / HTTP/1.1", 1, True),
        ("GET / HTTP/1.0", 0, False),
        # RFC 9110 §2.5: a higher minor version is answered as the highest we speak.
        ("GET / HTTP/1.2", 1, True),
        ("GET / HTTP/1.9", 1, True),
    ],
    ids=["rfc9112-2.3-http11", "rfc9112-2.3-http10", "rfc9110-2.5-http12", "rfc9110-2.5-http19"],
)
def test_versions(line: str, version: int, keep_alive: bool) -> None:
    req = parse(get(line=line))
    assert (req.version, req.keep_alive) == (version, keep_alive)


@pytest.mark.parametrize("method", ["GET", "M-SEARCH", "x!#$%&'*+.^_`|~", "PROPFIND"], ids=str)
def test_token_methods_are_kept_verbatim(method: str) -> None:
    # RFC 9110 §9.1: methods are case-sensitive tokens.
    assert parse(get(line=f"{method} / HTTP/1.1")).method == method


def test_request_line_at_the_limit_is_accepted() -> None:
    target = "/" + "a" * (MAX_REQUEST_LINE_BYTES - len("GET / HTTP/1.1"))
    line = f"GET {target} HTTP/1.1"
    assert len(line) == MAX_REQUEST_LINE_BYTES
    assert parse(get(line=line)).path == target


def test_request_line_over_the_limit_is_414_when_parsed() -> None:
    # RFC 9112 §3: a server that receives a longer request-target than it accepts -> 414.
    line = "GET /" + "a" * MAX_REQUEST_LINE_BYTES + " HTTP/1.1"
    assert rejected(get(line=line)).status == 414


@pytest.mark.parametrize(
    "data",
    [
        b"GET /" + b"a" * MAX_REQUEST_LINE_BYTES,
        # A CR at the end may be half of the CRLF, but the line is already too long.
        b"GET /" + b"a" * MAX_REQUEST_LINE_BYTES + b" HTTP/1.1\r",
        # The CRLF came, but after the limit: no need to wait for the rest of the head.
        b"GET /" + b"a" * MAX_REQUEST_LINE_BYTES + b" HTTP/1.1\r\nHost: a\r\n",
    ],
    ids=["rfc9112-3-no-crlf-yet", "rfc9112-3-half-crlf", "rfc9112-3-crlf-beyond-limit"],
)
def test_request_line_over_the_limit_is_414_before_the_head_is_complete(data: bytes) -> None:
    with pytest.raises(ClientProtocolError) as info:
        find_head_end(data)
    assert info.value.status == 414


def test_partial_request_line_at_the_limit_waits_for_more() -> None:
    line = b"GET /" + b"a" * (MAX_REQUEST_LINE_BYTES - 5)
    assert len(line) == MAX_REQUEST_LINE_BYTES
    assert find_head_end(line) == -1
    assert find_head_end(line + b"\r") == -1


def test_head_over_the_limit_is_431_before_it_is_complete() -> None:
    # RFC 6585 §5: 431 Request Header Fields Too Large; DESIGN.md §5 rule 6.
    field = b"X-Big: " + b"a" * 1000 + b"\r\n"
    data = b"GET / HTTP/1.1\r\n" + field * (MAX_HEAD_BYTES // len(field) + 1)
    with pytest.raises(ClientProtocolError) as info:
        find_head_end(data)
    assert info.value.status == 431


def test_complete_head_over_the_limit_is_431() -> None:
    field = "X-Big: " + "a" * 1000
    data = get(*[field] * (MAX_HEAD_BYTES // len(field) + 1))
    assert len(data) > MAX_HEAD_BYTES
    with pytest.raises(ClientProtocolError) as info:
        find_head_end(data)
    assert info.value.status == 431
    # The parser enforces the bound on its own too.
    with pytest.raises(ClientProtocolError) as info:
        parse_request_head(data)
    assert info.value.status == 431


def test_head_at_the_limit_is_accepted() -> None:
    base = get("X-Pad: ")
    data = get("X-Pad: " + "a" * (MAX_HEAD_BYTES - len(base)))
    assert len(data) == MAX_HEAD_BYTES
    assert len(parse(data).headers.get("x-pad") or "") == MAX_HEAD_BYTES - len(base)


@pytest.mark.parametrize(
    ("count", "ok"),
    [(MAX_HEADER_COUNT, True), (MAX_HEADER_COUNT + 1, False)],
    ids=["rfc6585-5-at-limit", "rfc6585-5-over-limit"],
)
def test_header_count_limit(count: int, ok: bool) -> None:
    data = get(*[f"X-{i}: v" for i in range(count - 1)])  # plus Host
    if ok:
        assert len(parse(data).headers) == count
    else:
        assert rejected(data).status == 431


def test_incomplete_head_is_refused_by_the_parser() -> None:
    # The parser is given exactly one head; a missing blank line is a caller's
    # error that must not shave the last bytes off a field.
    with pytest.raises(ClientProtocolError) as info:
        parse_request_head(b"GET / HTTP/1.1\r\nHost: example.test\r\n")
    assert info.value.status == 400


# --- request targets ----------------------------------------------------------------

TARGET_ERRORS = [
    # RFC 9112 §3.2: no fragment in a request-target.
    ("fragment-origin-form", get(line="GET /a#frag HTTP/1.1"), 400),
    ("fragment-absolute-form", get(line="GET http://a.test/#x HTTP/1.1"), 400),
    # RFC 9110 §4.2.4: userinfo in an http URI is deprecated and a phishing aid.
    ("userinfo", get(line="GET http://user@a.test/ HTTP/1.1"), 400),
    ("userinfo-password", get(line="GET http://u:p@a.test/ HTTP/1.1"), 400),
    ("userinfo-connect", get(line="CONNECT u@a.test:443 HTTP/1.1"), 400),
    # RFC 9112 §3.2: Host is required on HTTP/1.1; more than one is a 400.
    ("host-missing", head("GET / HTTP/1.1"), 400),
    ("host-missing-absolute-form", head("GET http://a.test/ HTTP/1.1"), 400),
    ("host-twice", get("Host: other.test"), 400),
    ("host-twice-same", get("Host: example.test"), 400),
    ("host-twice-http10", head("GET / HTTP/1.0", "Host: a", "Host: b"), 400),
    # RFC 9110 §7.2 / RFC 3986 §3.2: Host = uri-host [ ":" port ].
    ("host-space", head("GET / HTTP/1.1", "Host: a b"), 400),
    ("host-userinfo", head("GET / HTTP/1.1", "Host: u@a.test"), 400),
    ("host-path", head("GET / HTTP/1.1", "Host: a.test/x"), 400),
    ("host-comma-list", head("GET / HTTP/1.1", "Host: a.test, b.test"), 400),
    ("host-bad-port", head("GET / HTTP/1.1", "Host: a.test:http"), 400),
    ("host-port-zero", head("GET / HTTP/1.1", "Host: a.test:0"), 400),
    ("host-port-too-big", head("GET / HTTP/1.1", "Host: a.test:65536"), 400),
    ("host-two-ports", head("GET / HTTP/1.1", "Host: a.test:80:80"), 400),
    ("host-bad-ipv6", head("GET / HTTP/1.1", "Host: [::g]"), 400),
    ("host-unclosed-ipv6", head("GET / HTTP/1.1", "Host: [::1"), 400),
    ("host-percent", head("GET / HTTP/1.1", "Host: a%2etest"), 400),
    ("host-non-ascii", head("GET / HTTP/1.1", b"Host: caf\xe9.test"), 400),
    # RFC 9112 §3.2.3: authority-form is only for CONNECT.
    ("authority-form-get", get(line="GET a.test:80 HTTP/1.1"), 400),
    ("connect-no-port", get(line="CONNECT a.test HTTP/1.1"), 400),
    ("connect-empty-port", get(line="CONNECT a.test: HTTP/1.1"), 400),
    ("connect-origin-form", get(line="CONNECT / HTTP/1.1"), 400),
    ("connect-absolute-form", get(line="CONNECT http://a.test:80/ HTTP/1.1"), 400),
    ("connect-bad-port", get(line="CONNECT a.test:99999 HTTP/1.1"), 400),
    # RFC 9112 §3.2.4: asterisk-form is only for OPTIONS.
    ("asterisk-get", get(line="GET * HTTP/1.1"), 400),
    # RFC 9112 §3.2: the target is one of the four forms.
    ("relative-path", get(line="GET a/b HTTP/1.1"), 400),
    ("unknown-scheme", get(line="GET ftp://a.test/ HTTP/1.1"), 400),
    ("scheme-without-slashes", get(line="GET http:a.test/ HTTP/1.1"), 400),
    ("absolute-empty-host", get(line="GET http:///x HTTP/1.1"), 400),
    ("absolute-bad-host", get(line="GET http://a_b!/ HTTP/1.1"), 400),
    ("absolute-bad-port", get(line="GET http://a.test:x/ HTTP/1.1"), 400),
    ("absolute-ipv6-zone", get(line="GET http://[fe80::1%25eth0]/ HTTP/1.1"), 400),
    ("absolute-ipv6-unbracketed", get(line="GET http://::1/ HTTP/1.1"), 400),
]


def test_an_https_absolute_form_target_is_parsed_for_the_proxy_to_fetch_over_tls() -> None:
    # Issue #11: the proxy originates TLS for an absolute https:// target (RFC 9110 §4.2.2
    # lets clients send one to a proxy); the port defaults to 443.
    req = parse_request_head(get(line="GET https://A.test/x?y HTTP/1.1"))
    assert (req.form, req.scheme, req.host, req.port, req.path) == (
        "absolute",
        "https",
        "a.test",
        443,
        "/x?y",
    )
    assert req.url == "https://a.test/x?y"


@pytest.mark.parametrize(
    ("data", "status"), [c[1:] for c in TARGET_ERRORS], ids=[c[0] for c in TARGET_ERRORS]
)
def test_target_errors(data: bytes, status: int) -> None:
    assert rejected(data).status == status


TARGETS_OK = [
    # (id, request line, Host field or None, form, host, port, path, url)
    (
        "rfc9112-3.2.1-origin-form",
        "GET /a/b?q=1 HTTP/1.1",
        "example.test",
        ("origin", "example.test", 80, "/a/b?q=1", "http://example.test/a/b?q=1"),
    ),
    (
        "rfc9112-3.2.1-origin-form-host-port",
        "GET / HTTP/1.1",
        "Example.TEST:8080",
        ("origin", "example.test", 8080, "/", "http://example.test:8080/"),
    ),
    (
        "rfc9112-3.2.1-host-ipv6",
        "GET / HTTP/1.1",
        "[::1]:81",
        ("origin", "::1", 81, "/", "http://[::1]:81/"),
    ),
    (
        "rfc3986-3.2.3-host-empty-port",
        "GET / HTTP/1.1",
        "a.test:",
        ("origin", "a.test", 80, "/", "http://a.test/"),
    ),
    (
        "rfc9112-3.2.2-absolute-form",
        "GET http://a.test/x?y=1&z HTTP/1.1",
        "ignored.test",
        ("absolute", "a.test", 80, "/x?y=1&z", "http://a.test/x?y=1&z"),
    ),
    (
        "rfc9112-3.2.2-absolute-form-port",
        "GET http://a.test:8080/x HTTP/1.1",
        "a.test",
        ("absolute", "a.test", 8080, "/x", "http://a.test:8080/x"),
    ),
    (
        "rfc9112-3.2.2-absolute-form-default-port-explicit",
        "GET http://a.test:80/ HTTP/1.1",
        "a.test",
        ("absolute", "a.test", 80, "/", "http://a.test/"),
    ),
    (
        "rfc9110-4.2.3-empty-path-is-slash",
        "GET http://a.test HTTP/1.1",
        "a.test",
        ("absolute", "a.test", 80, "/", "http://a.test/"),
    ),
    (
        "rfc9110-4.2.3-query-without-path",
        "GET http://a.test?q HTTP/1.1",
        "a.test",
        ("absolute", "a.test", 80, "/?q", "http://a.test/?q"),
    ),
    (
        "rfc9110-4.2.3-case-insensitive-scheme-host",
        "GET HTTP://A.Test/Path HTTP/1.1",
        "a.test",
        ("absolute", "a.test", 80, "/Path", "http://a.test/Path"),
    ),
    (
        "rfc9112-3.2.2-absolute-ipv6",
        "GET http://[2001:db8::1]:8080/p HTTP/1.1",
        "x",
        ("absolute", "2001:db8::1", 8080, "/p", "http://[2001:db8::1]:8080/p"),
    ),
    (
        "rfc9112-3.2.2-absolute-ipv6-default-port",
        "GET http://[::1]/ HTTP/1.1",
        "x",
        ("absolute", "::1", 80, "/", "http://[::1]/"),
    ),
    (
        "rfc9112-3.2.2-absolute-ipv4",
        "GET http://192.0.2.7:81/ HTTP/1.1",
        "x",
        ("absolute", "192.0.2.7", 81, "/", "http://192.0.2.7:81/"),
    ),
    (
        "rfc9112-3.2.2-at-sign-in-path-is-not-userinfo",
        "GET http://a.test/u@b HTTP/1.1",
        "a.test",
        ("absolute", "a.test", 80, "/u@b", "http://a.test/u@b"),
    ),
    (
        "rfc9112-3.2.2-absolute-form-http10-no-host",
        "GET http://a.test/ HTTP/1.0",
        None,
        ("absolute", "a.test", 80, "/", "http://a.test/"),
    ),
    (
        "rfc9112-3.2.3-connect",
        "CONNECT a.test:443 HTTP/1.1",
        "a.test:443",
        ("authority", "a.test", 443, "", None),
    ),
    (
        "rfc9112-3.2.3-connect-ipv6",
        "CONNECT [::1]:8443 HTTP/1.1",
        "[::1]:8443",
        ("authority", "::1", 8443, "", None),
    ),
    (
        "rfc9112-3.2.4-asterisk",
        "OPTIONS * HTTP/1.1",
        "a.test",
        ("asterisk", "a.test", 80, "*", None),
    ),
]


@pytest.mark.parametrize(
    ("line", "host", "want"), [c[1:] for c in TARGETS_OK], ids=[c[0] for c in TARGETS_OK]
)
def test_targets(line: str, host: str | None, want: tuple[str, str, int, str, str | None]) -> None:
    req = parse(head(line) if host is None else head(line, f"Host: {host}"))
    form, host_name, port, path, url = want
    assert (req.form, req.host, req.port, req.path) == (form, host_name, port, path)
    if url is not None:
        assert req.url == url


def test_absolute_form_ignores_the_host_field() -> None:
    # RFC 9112 §3.2.2: the proxy MUST ignore the received Host and use the target's.
    req = parse(get(line="GET http://origin.test:8080/ HTTP/1.1"))
    assert (req.host, req.port) == ("origin.test", 8080)
    assert req.host_header == "origin.test:8080"
    assert req.url == "http://origin.test:8080/"


@pytest.mark.parametrize(
    ("host", "want"),
    [("a.test", "a.test"), ("a.test:80", "a.test"), ("a.test:81", "a.test:81"), ("[::1]", "[::1]")],
    ids=["rfc9110-7.2-plain", "rfc9110-7.2-default-port", "rfc9110-7.2-port", "rfc9110-7.2-ipv6"],
)
def test_host_header_to_forward(host: str, want: str) -> None:
    assert parse(head("GET / HTTP/1.1", f"Host: {host}")).host_header == want


# --- Expect, Connection and the forwarded fields -----------------------------------

EXPECT_CASES = [
    # (id, request line, Expect values, expect_continue or an error status)
    ("rfc9110-10.1.1-continue", "GET / HTTP/1.1", ["100-continue"], True),
    ("rfc9110-10.1.1-continue-case", "GET / HTTP/1.1", ["100-Continue"], True),
    ("rfc9110-10.1.1-none", "GET / HTTP/1.1", [], False),
    ("rfc9110-10.1.1-ignored-on-http10", "GET / HTTP/1.0", ["100-continue"], False),
    ("rfc9110-10.1.1-other-ignored-on-http10", "GET / HTTP/1.0", ["fly"], False),
    ("rfc9110-10.1.1-unknown-417", "GET / HTTP/1.1", ["fly"], 417),
    ("rfc9110-10.1.1-continue-with-param-417", "GET / HTTP/1.1", ["100-continue;x=1"], 417),
    ("rfc9110-10.1.1-continue-and-other-417", "GET / HTTP/1.1", ["100-continue, fly"], 417),
    ("rfc9110-10.1.1-two-fields-417", "GET / HTTP/1.1", ["100-continue", "fly"], 417),
    ("rfc9110-10.1.1-nbsp-417", "GET / HTTP/1.1", ["100-continue\xa0"], 417),
]


@pytest.mark.parametrize(
    ("line", "values", "want"), [c[1:] for c in EXPECT_CASES], ids=[c[0] for c in EXPECT_CASES]
)
def test_expect(line: str, values: list[str], want: bool | int) -> None:
    data = head(line, "Host: a.test", *[f"Expect: {v}" for v in values])
    if isinstance(want, bool):
        assert parse(data).expect_continue is want
    else:
        assert rejected(data).status == want


KEEP_ALIVE_CASES = [
    ("rfc9112-9.3-http11-default", "GET / HTTP/1.1", [], True),
    ("rfc9112-9.6-http11-close", "GET / HTTP/1.1", ["Connection: close"], False),
    ("rfc9112-9.6-http11-close-case", "GET / HTTP/1.1", ["Connection: Keep-Alive, CLOSE"], False),
    (
        "rfc9112-9.6-http11-close-second-field",
        "GET / HTTP/1.1",
        ["Connection: x", "Connection: close"],
        False,
    ),
    ("rfc9112-9.3-http11-keep-alive", "GET / HTTP/1.1", ["Connection: keep-alive"], True),
    ("rfc9112-9.3-http10-default", "GET / HTTP/1.0", [], False),
    # RFC 9112 §9.3 / Appendix C.2.2: a proxy must not keep HTTP/1.0 clients alive.
    ("rfc9112-9.3-http10-keep-alive", "GET / HTTP/1.0", ["Connection: keep-alive"], False),
    (
        "rfc9112-9.3-http10-proxy-keep-alive",
        "GET / HTTP/1.0",
        ["Proxy-Connection: keep-alive"],
        False,
    ),
]


@pytest.mark.parametrize(
    ("line", "fields", "keep"),
    [c[1:] for c in KEEP_ALIVE_CASES],
    ids=[c[0] for c in KEEP_ALIVE_CASES],
)
def test_keep_alive(line: str, fields: list[str], keep: bool) -> None:
    assert parse(head(line, "Host: a.test", *fields)).keep_alive is keep


def test_end_to_end_drops_hop_by_hop_connection_listed_and_framing_fields() -> None:
    # RFC 9110 §7.6.1: hop-by-hop fields and those the Connection field names are
    # not forwarded; framing is rebuilt by the sender (DESIGN.md §5 rule 1).
    req = parse(
        post(
            "Connection: keep-alive, X-Secret, Upgrade",
            "Connection: x-other",
            "Keep-Alive: timeout=5",
            "Proxy-Connection: keep-alive",
            "Proxy-Authorization: Basic Zm9vOmJhcg==",
            "TE: trailers",
            "Trailer: X-T",
            "Upgrade: websocket",
            "X-Secret: 1",
            "X-OTHER: 2",
            "Content-Length: 3",
            "Accept: text/html",
            "Cookie: a=b",
        )
    )
    assert req.headers.end_to_end() == [
        ("Host", "example.test"),
        ("Accept", "text/html"),
        ("Cookie", "a=b"),
    ]


def test_end_to_end_drops_transfer_encoding() -> None:
    req = parse(post("Transfer-Encoding: chunked", "X-Keep: 1"))
    assert req.headers.end_to_end() == [("Host", "example.test"), ("X-Keep", "1")]


def test_headers_set_remove_copy() -> None:
    h = Headers([("A", "1"), ("a", "2"), ("B", "3")])
    c = h.copy()
    h.set("A", "9")
    assert h.items() == [("B", "3"), ("A", "9")]
    assert c.get_all("a") == ["1", "2"]
    h.remove("b")
    assert len(h) == 1
    assert h.get("missing", "dflt") == "dflt"


def test_get_tokens_splits_lists_and_lowercases() -> None:
    h = Headers([("Connection", " Keep-Alive ,, Close"), ("connection", "X-Y")])
    assert h.get_tokens("CONNECTION") == ["keep-alive", "close", "x-y"]


def test_a_copied_request_has_every_slot_of_the_original() -> None:
    """`copy.copy` (the cache front's validation and background refresh clone requests)
    keeps every parsed value: `Request.__copy__` is written out, so it must name them all."""
    req = parse_request_head(
        b"POST http://example.test:8080/p?q HTTP/1.0\r\nHost: example.test:8080\r\n"
        b"Content-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    )
    clone = copy.copy(req)
    assert clone is not req
    # Read from the object, not ``__slots__`` (a class compiled by mypyc has none).
    names = [n for n in dir(req) if not n.startswith("_") and not callable(getattr(req, n))]
    assert {"body", "content_length", "expect_continue", "form", "port"} <= set(names)
    for name in names:
        assert getattr(clone, name) == getattr(req, name), name
    assert clone.headers is req.headers  # shallow, as copy.copy is
