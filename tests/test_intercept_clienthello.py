"""The ClientHello peek (issue #19): real hellos from Python's ssl (MemoryBIO) and from curl,
split at every point and re-cut into many records; garbage, non-TLS and oversized input.
The reader must never raise."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cproxy.intercept.clienthello import (
    MAX_HELLO_RECORDS,
    ClientHello,
    HelloPeek,
    Verdict,
    peek_client_hello,
)
from tests.tlsmemory import client_hello


def python_hello(
    sni: str | None = "www.example.test",
    alpn: list[str] | None = None,
    max_version: ssl.TLSVersion | None = None,
) -> bytes:
    ctx = ssl.create_default_context()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if max_version is not None:
        ctx.maximum_version = max_version
    if sni is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return client_hello(ctx, sni)


HELLO = python_hello(alpn=["h2", "http/1.1"])


def records(hello_bytes: bytes, cuts: list[int]) -> bytes:
    """The same ClientHello re-cut into several handshake records at ``cuts`` (offsets
    into the handshake message); the record version of the original is kept."""
    assert hello_bytes[0] == 0x16
    length = int.from_bytes(hello_bytes[3:5], "big")
    message = hello_bytes[5 : 5 + length]
    rest = hello_bytes[5 + length :]
    assert not rest  # one record in what Python sends
    points = sorted({c for c in cuts if 0 < c < len(message)})
    out = b""
    for start, end in zip([0, *points], [*points, len(message)], strict=True):
        out += hello_bytes[:3] + (end - start).to_bytes(2, "big") + message[start:end]
    return out


def hello_of(peek: HelloPeek) -> ClientHello:
    assert peek.verdict is Verdict.CLIENT_HELLO, peek
    assert peek.hello is not None
    return peek.hello


def test_python_hello_with_sni_and_alpn() -> None:
    hello = hello_of(peek_client_hello(HELLO))
    assert hello.sni == "www.example.test"
    assert hello.alpn == ("h2", "http/1.1")
    assert hello.record_version in (0x0301, 0x0303)
    assert hello.legacy_version == 0x0303
    assert 0x0304 in hello.supported_versions
    assert hello.length == len(HELLO)


def test_hello_without_sni() -> None:
    hello = hello_of(peek_client_hello(python_hello(sni=None)))
    assert hello.sni is None and hello.alpn == ()


def test_ip_address_sends_no_sni() -> None:
    # RFC 6066: no server_name for an address, so the CONNECT authority must decide.
    ctx = ssl.create_default_context()
    assert hello_of(peek_client_hello(client_hello(ctx, "127.0.0.1"))).sni is None


def test_tls12_only_client() -> None:
    hello = hello_of(peek_client_hello(python_hello(max_version=ssl.TLSVersion.TLSv1_2)))
    assert hello.sni == "www.example.test"
    assert 0x0304 not in hello.supported_versions


def test_sni_is_lower_cased() -> None:
    assert hello_of(peek_client_hello(python_hello(sni="WWW.Example.TEST"))).sni == (
        "www.example.test"
    )


def test_every_strict_prefix_needs_more() -> None:
    for end in range(len(HELLO)):
        assert peek_client_hello(HELLO[:end]).verdict is Verdict.NEED_MORE, end
    assert peek_client_hello(HELLO).verdict is Verdict.CLIENT_HELLO


def test_bytes_after_the_hello_are_left_alone() -> None:
    # e.g. TLS 1.3 early data or a client that sent its next record already
    hello = hello_of(peek_client_hello(HELLO + b"\x17\x03\x03\x00\x05hello"))
    assert hello.length == len(HELLO)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(HELLO)), max_size=20))
def test_any_record_split_gives_the_same_hello(cuts: list[int]) -> None:
    data = records(HELLO, cuts)
    expected = hello_of(peek_client_hello(HELLO))
    got = hello_of(peek_client_hello(data))
    assert (got.sni, got.alpn, got.supported_versions) == (
        expected.sni,
        expected.alpn,
        expected.supported_versions,
    )
    assert got.length == len(data)
    # ...and every prefix of the re-cut bytes (any read boundary) needs more.
    for end in sorted({len(data) * k // 7 for k in range(7)}):
        assert peek_client_hello(data[:end]).verdict is Verdict.NEED_MORE


def test_a_hello_over_too_many_records_is_too_large() -> None:
    data = records(HELLO, list(range(1, MAX_HELLO_RECORDS + 5)))
    peek = peek_client_hello(data)
    assert peek.verdict is Verdict.TOO_LARGE and peek.reason
    # The verdict comes as soon as the limit is passed, without the rest.
    assert peek_client_hello(data[: 6 * (MAX_HELLO_RECORDS + 1)]).verdict is Verdict.TOO_LARGE


def _big_hello(size: int) -> bytes:
    """A valid ClientHello made large with a padding-like unknown extension, cut into
    records of at most 2**14 bytes."""
    length = int.from_bytes(HELLO[3:5], "big")
    message = bytearray(HELLO[5 : 5 + length])
    # The extensions block is at the end: its length is the two bytes before it. Append an
    # unknown extension (type 0xfafa) of the wanted size.
    body = message[4:]
    pos = 2 + 32
    pos += 1 + body[pos]
    pos += 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 1 + body[pos]
    ext_len = int.from_bytes(body[pos : pos + 2], "big")
    extra = b"\xfa\xfa" + size.to_bytes(2, "big") + b"\x00" * size
    body[pos : pos + 2] = (ext_len + len(extra)).to_bytes(2, "big")
    body += extra
    message = bytearray(b"\x01" + len(body).to_bytes(3, "big")) + body
    out = b""
    for start in range(0, len(message), 1 << 14):
        chunk = bytes(message[start : start + (1 << 14)])
        out += HELLO[:3] + len(chunk).to_bytes(2, "big") + chunk
    return out


def test_a_large_hello_over_two_records_is_read() -> None:
    data = _big_hello(12_000)
    assert hello_of(peek_client_hello(data)).sni == "www.example.test"


def test_a_hello_over_the_byte_limit_is_too_large() -> None:
    data = _big_hello(20_000)
    assert peek_client_hello(data).verdict is Verdict.TOO_LARGE
    # Known from the handshake header, before the body arrives.
    assert peek_client_hello(data[:9]).verdict is Verdict.TOO_LARGE


@pytest.mark.parametrize(
    "data",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\x80\x2e\x01\x00\x02",  # SSLv2-style hello
        b"\x16\x02\x00",  # handshake type byte, record major 2
        b"\x16\x03\x09",  # unknown record minor
        b"P",  # one byte suffices
    ],
)
def test_not_tls(data: bytes) -> None:
    peek = peek_client_hello(data)
    assert peek.verdict is Verdict.NOT_TLS and peek.reason


def test_empty_needs_more() -> None:
    assert peek_client_hello(b"").verdict is Verdict.NEED_MORE


def _replace_message(message: bytes) -> bytes:
    return HELLO[:3] + len(message).to_bytes(2, "big") + message


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"\x16\x03\x01\x00\x00", "empty record"),
        (b"\x16\x03\x01\x40\x01" + b"\x01" * 10, "record over 2**14"),
        (_replace_message(b"\x02\x00\x00\x04abcd"), "ServerHello, not ClientHello"),
        (_replace_message(b"\x01\x00\x00\x04\x03\x03ab"), "truncated body"),
        (
            HELLO[:3] + b"\x00\x05" + HELLO[5:10] + b"\x15\x03\x03\x00\x02\x02\x28",
            "an alert record inside the hello",
        ),
        (
            _replace_message(HELLO[5:] + b"\x0b\x00\x00\x00"),
            "a second handshake message in the record",
        ),
    ],
)
def test_malformed(data: bytes, what: str) -> None:
    peek = peek_client_hello(data)
    assert peek.verdict is Verdict.MALFORMED, what
    assert peek.reason


def test_a_truncated_extension_is_malformed() -> None:
    length = int.from_bytes(HELLO[3:5], "big")
    message = bytearray(HELLO[5 : 5 + length])
    # Claim one byte more for the whole hello body than the extensions provide: the
    # parser must find the extension vector short, not read past it.
    message = message[:-1]
    message[1:4] = (len(message) - 4).to_bytes(3, "big")
    assert peek_client_hello(_replace_message(bytes(message))).verdict is Verdict.MALFORMED


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_garbage_never_raises(data: bytes) -> None:
    peek = peek_client_hello(data)
    assert isinstance(peek.verdict, Verdict)
    assert (peek.hello is not None) == (peek.verdict is Verdict.CLIENT_HELLO)


@settings(max_examples=300)
@given(
    position=st.integers(min_value=0, max_value=len(HELLO) - 1),
    value=st.integers(min_value=0, max_value=255),
    cut=st.integers(min_value=0, max_value=len(HELLO)),
)
def test_a_corrupted_hello_never_raises(position: int, value: int, cut: int) -> None:
    data = bytearray(HELLO)
    data[position] = value
    peek = peek_client_hello(bytes(data[:cut]))
    assert isinstance(peek.verdict, Verdict)


def test_curl_hello() -> None:
    """What curl (OpenSSL or GnuTLS builds alike) sends, captured on a loopback socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = bytearray()
    done = threading.Event()

    def capture() -> None:
        listener.settimeout(20)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(20)
            while peek_client_hello(received).verdict is Verdict.NEED_MORE:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                received.extend(chunk)
        done.set()

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    subprocess.run(
        [
            "curl", "-s", "-o", "/dev/null", "--max-time", "10",
            "--resolve", f"curl.example.test:{port}:127.0.0.1",
            f"https://curl.example.test:{port}/",
        ],
        timeout=30,
        check=False,
    )  # fmt: skip
    assert done.wait(20)
    thread.join(5)
    listener.close()
    hello = hello_of(peek_client_hello(bytes(received)))
    assert hello.sni == "curl.example.test"
    assert "http/1.1" in hello.alpn
