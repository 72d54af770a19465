"""Forwarding, end to end: methods and bodies, framing both ways, hop-by-hop fields, Via,
Max-Forwards, Expect, loops, self-targets, mapping rules, access, and 1 GiB bodies in
bounded memory (cproxy as a subprocess)."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scripted import ScriptedConn, ScriptedOrigin
from tests.support import WAIT_S, Origin, raw_connection, read_response, start_proxy

NO_CACHE = {"Caching": "off"}


def _request(method: str, url: str, body: bytes | None = None, extra: str = "") -> bytes:
    head = f"{method} {url} HTTP/1.1\r\nHost: x\r\n{extra}"
    if body is not None:
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + (body or b"")


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _recv_all(sock: socket.socket) -> bytes:
    out = b""
    while data := sock.recv(65536):
        out += data
    return out


# -- methods and request bodies -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", None),
        ("HEAD", None),
        ("POST", b"post body"),
        ("PUT", b"put body"),
        ("DELETE", b"delete body"),
        ("PATCH", b"patch body"),
        ("OPTIONS", b"options body"),
    ],
)
def test_every_method_reaches_the_origin_in_origin_form(
    origin: Origin, method: str, body: bytes | None
) -> None:
    with start_proxy(**NO_CACHE) as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(_request(method, origin.url("/m/x?q=1"), body))
        f = sock.makefile("rb")
        if method == "HEAD":
            f.readline()
            while f.readline() not in (b"\r\n", b""):
                pass
            status = 200
        else:
            status, _, got = read_response(f)
            assert got == f"hello {method} /m/x?q=1".encode()
    assert status == 200
    [(m, path, headers, seen)] = origin.requests
    assert (m, path, seen) == (method, "/m/x?q=1", body or b"")
    lowered = _lower(headers)
    assert lowered["host"] == f"127.0.0.1:{origin.port}"
    if body is not None:
        assert lowered["content-length"] == str(len(body))


def test_chunked_request_body_is_rechunked_with_the_same_content() -> None:
    def script(conn: ScriptedConn) -> None:
        if conn.read_request() is not None:
            conn.reply(200, b"got it")

    raw = b"5;ext=1\r\nhello\r\n1\r\n \r\n00006\r\nchunky\r\n0\r\nX-Trailer: t\r\n\r\n"
    with (
        ScriptedOrigin(script) as origin,
        start_proxy(**NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        sock.sendall(
            f"POST {origin.url('/c')} HTTP/1.1\r\nHost: x\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
            + raw
        )
        assert read_response(sock)[2] == b"got it"
    [req] = origin.requests
    assert req.header("transfer-encoding") == "chunked"
    assert req.header("content-length") is None
    assert req.body == b"hello chunky"
    # Our own framing: no client chunk extension, no leading zeros; ends with the last chunk.
    assert b"ext" not in req.raw_body and b"00006" not in req.raw_body
    assert req.raw_body.endswith(b"0\r\n\r\n")


def test_content_length_request_body_keeps_its_length() -> None:
    def script(conn: ScriptedConn) -> None:
        if conn.read_request() is not None:
            conn.reply(200, b"ok")

    body = bytes(range(256)) * 100
    with (
        ScriptedOrigin(script) as origin,
        start_proxy(**NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        sock.sendall(_request("PUT", origin.url("/l"), body))
        assert read_response(sock)[0] == 200
    [req] = origin.requests
    assert req.header("content-length") == str(len(body))
    assert req.header("transfer-encoding") is None
    assert req.body == body


# -- response framing ---------------------------------------------------------------------

CHUNKED_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;x=y\r\nabcd\r\n3\r\nefg\r\n0\r\nX-T: 1\r\n\r\n"
)
UNTIL_CLOSE_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close body"


def _one_response_script(response: bytes, close: bool) -> ScriptedOrigin:
    def script(conn: ScriptedConn) -> None:
        while conn.read_request() is not None:
            conn.send(response)
            if close:
                return

    return ScriptedOrigin(script)


# The two streamed framings an origin may use, and the body each carries.
STREAMED_RESPONSES = pytest.mark.parametrize(
    ("response", "close", "body"),
    [(CHUNKED_RESPONSE, False, b"abcdefg"), (UNTIL_CLOSE_RESPONSE, True, b"until close body")],
    ids=["chunked", "until-close"],
)


@STREAMED_RESPONSES
def test_streamed_responses_reach_http11_clients_rechunked(
    response: bytes, close: bool, body: bytes
) -> None:
    with (
        _one_response_script(response, close) as origin,
        start_proxy(**NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        f = sock.makefile("rb")
        for i in range(2):  # the client connection persists after a re-chunked body
            sock.sendall(_request("GET", origin.url(f"/s{i}")))
            status, headers, got = read_response(f)
            assert status == 200 and got == body
            assert headers["transfer-encoding"] == "chunked"
            assert "content-length" not in headers and "connection" not in headers


@STREAMED_RESPONSES
def test_streamed_responses_reach_http10_clients_delimited_by_close(
    response: bytes, close: bool, body: bytes
) -> None:
    with (
        _one_response_script(response, close) as origin,
        start_proxy(**NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        sock.sendall(f"GET {origin.url('/old')} HTTP/1.0\r\n\r\n".encode())
        data = _recv_all(sock)
    head, _, got = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
    assert b"connection: close" in head.lower()
    assert got == body


def test_head_response_keeps_content_length_and_has_no_body(origin: Origin) -> None:
    with start_proxy(**NO_CACHE) as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(_request("HEAD", origin.url("/h")) + _request("GET", origin.url("/after")))
        f = sock.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 200")
        head = b""
        while (line := f.readline()) not in (b"\r\n", b""):
            head += line
        assert f"content-length: {len(b'hello HEAD /h')}".encode() in head.lower()
        # The very next bytes are the second response: HEAD had no body.
        assert read_response(f)[2] == b"hello GET /after"


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body(status: int) -> None:
    def script(conn: ScriptedConn) -> None:
        while (req := conn.read_request()) is not None:
            if req.target == "/empty":
                conn.send(f'HTTP/1.1 {status} X\r\nETag: "e"\r\n\r\n'.encode())
            else:
                conn.reply(200, b"next")

    with (
        ScriptedOrigin(script) as origin,
        start_proxy(**NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        sock.sendall(_request("GET", origin.url("/empty")) + _request("GET", origin.url("/n")))
        f = sock.makefile("rb")
        got_status, headers, body = read_response(f)
        assert (got_status, body) == (status, b"")
        assert "transfer-encoding" not in headers
        assert read_response(f)[2] == b"next"


# -- header fields: hop-by-hop and Via ----------------------------------------------------


def test_hop_by_hop_fields_never_reach_the_origin_nor_the_client() -> None:
    def script(conn: ScriptedConn) -> None:
        if conn.read_request() is not None:
            conn.reply(
                200,
                b"ok",
                "Connection: X-Secret-Resp, keep-alive\r\nX-Secret-Resp: 1\r\n"
                "Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic realm=origin\r\n"
                "Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Kept: yes\r\n"
                "Via: 1.1 upstream\r\n",
            )

    extra = (
        "Connection: X-Secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n"
        "Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n"
        "Upgrade: websocket\r\nProxy-Authorization: Basic dTpw\r\nX-Kept: yes\r\n"
    )
    with (
        ScriptedOrigin(script) as origin,
        start_proxy(**NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        sock.sendall(_request("GET", origin.url("/hop"), extra=extra))
        status, headers, _ = read_response(sock)
    [req] = origin.requests
    forbidden = {
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
    }
    assert not forbidden & req.names(), req.headers
    assert req.header("x-kept") == "yes"
    assert req.header("via") == "1.1 cproxy"
    assert status == 200
    assert not {"x-secret-resp", "keep-alive", "proxy-authenticate", "upgrade"} & set(headers)
    assert "proxy-connection" not in headers
    assert headers["x-kept"] == "yes"
    assert headers["via"] == "1.1 upstream, 1.1 cproxy"


# -- Max-Forwards, Expect, loops, self-targets ------------------------------------------------


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE"])
def test_max_forwards_zero_is_answered_by_the_proxy(origin: Origin, method: str) -> None:
    with start_proxy(**NO_CACHE, TraceEnable="on") as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(_request(method, origin.url("/mf"), extra="Max-Forwards: 0\r\n"))
        status, headers, body = read_response(sock)
    assert status == 200
    if method == "OPTIONS":
        assert "GET" in headers["allow"]
    else:
        assert headers["content-type"] == "message/http"
        assert body.startswith(b"TRACE ")
    assert origin.requests == []


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE"])
def test_max_forwards_is_decremented(origin: Origin, method: str) -> None:
    with start_proxy(**NO_CACHE, TraceEnable="on") as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(_request(method, origin.url("/mf"), extra="Max-Forwards: 2\r\n"))
        assert read_response(sock)[0] == 200
    [(m, _, headers, _)] = origin.requests
    assert m == method and _lower(headers)["max-forwards"] == "1"


def test_expect_100_continue_gets_100_then_the_final_response() -> None:
    def script(conn: ScriptedConn) -> None:
        if (req := conn.read_request()) is not None:
            conn.reply(201, b"stored " + req.body)

    with (
        ScriptedOrigin(script) as origin,
        start_proxy(**NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        sock.sendall(
            f"PUT {origin.url('/e')} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        f = sock.makefile("rb")
        # The client waits for the 100 before sending its body.
        assert f.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert f.readline() == b"\r\n"
        sock.sendall(b"data")
        status, _, body = read_response(f)
    assert (status, body) == (201, b"stored data")
    [req] = origin.requests
    assert req.header("expect") is None


def test_via_loop_gets_508_and_the_origin_sees_nothing(origin: Origin) -> None:
    with start_proxy() as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(_request("GET", origin.url("/loop"), extra="Via: 1.1 cproxy\r\n"))
        assert read_response(sock)[0] == 508
    assert origin.requests == [] and origin.connections == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_request_aimed_at_the_proxy_itself_is_refused(host: str) -> None:
    with start_proxy() as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(_request("GET", f"http://{host}:{proxy.port}/"))
        status, _, body = read_response(sock)
    assert status == 403 and b"itself" in body


def test_origin_form_without_a_proxy_rule_gets_400(origin: Origin) -> None:
    with start_proxy() as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(b"GET /just/a/path HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock)[0] == 400
    assert origin.requests == []


def test_mapping_rules(origin: Origin) -> None:
    # Checked in order, first match wins; Map rewrites and checking goes on below it.
    rules = (
        "Map /old/* /app/new/*\n"
        f"Proxy /app/* http://127.0.0.1:{origin.port}/*\n"
        "Fail /private/*\n"
        "Redirect /moved/* http://example.test/*\n"
        "Map /late/* /app/late/*\n"
        f"Fail http://127.0.0.1:{origin.port}/blocked/*\n"
    )
    with (
        start_proxy(MappingRules=rules, **NO_CACHE) as proxy,
        raw_connection(proxy.port) as sock,
    ):
        f = sock.makefile("rb")

        def get(target: str) -> tuple[int, dict[str, str], bytes]:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            return read_response(f)

        assert get("/app/a/b?c=1")[2] == b"hello GET /a/b?c=1"  # reverse proxy
        assert get("/private/x")[0] == 403
        status, headers, _ = get("/moved/page")
        assert (status, headers["location"]) == (302, "http://example.test/page")
        assert get("/old/thing")[2] == b"hello GET /new/thing"  # Map, then Proxy
        assert get(origin.url("/blocked/y"))[0] == 403  # URL pattern on an absolute form
        assert get(origin.url("/free"))[2] == b"hello GET /free"  # no rule: forwarded
        # A Map below the Proxy rule rewrites too late for it: no Proxy rule follows.
        assert get("/late/z")[0] == 400
    assert [r[1] for r in origin.requests] == ["/a/b?c=1", "/new/thing", "/free"]


def test_refused_origin_port_gets_502_naming_host_and_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        with start_proxy() as proxy, raw_connection(proxy.port) as sock:
            sock.sendall(_request("GET", f"http://127.0.0.1:{port}/"))
            status, _, body = read_response(sock)
    assert status == 502
    assert f"127.0.0.1:{port}".encode() in body


def test_client_outside_proxy_access_gets_403(origin: Origin) -> None:
    with start_proxy(ProxyAccess="10.0.0.0/8") as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(_request("GET", origin.url("/")))
        status, headers, _ = read_response(sock)
    assert status == 403 and headers["connection"] == "close"
    assert origin.requests == []


# -- 1 GiB bodies through a cproxy subprocess, in bounded memory ------------------------------

GIB = 1 << 30
BLOCK = bytes(range(256)) * 256  # 64 KiB; GIB is a whole number of blocks
MAX_HWM_KIB = 150 * 1024


def _blocks(total: int) -> Iterator[bytes]:
    for _ in range(total // len(BLOCK)):
        yield BLOCK


def _expected_crc() -> int:
    crc = 0
    for block in _blocks(GIB):
        crc = zlib.crc32(block, crc)
    return crc


def _streaming_script(conn: ScriptedConn) -> None:
    """Uploads: count and checksum the body as it streams, answer with the figures.
    Downloads (GET /download): stream 1 GiB of generated bytes with Content-Length."""
    sock = conn.sock
    sock.settimeout(WAIT_S)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method = lines[0].split(" ")[0]
    fields = {n.strip().lower(): v.strip() for n, _, v in (x.partition(":") for x in lines[1:])}
    if method == "GET":
        sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {GIB}\r\n\r\n".encode())
        for block in _blocks(GIB):
            sock.sendall(block)
        return
    count, crc = 0, 0
    if "content-length" in fields:
        remaining = int(fields["content-length"])
        data = rest
        while True:
            count += len(data)
            crc = zlib.crc32(data, crc)
            remaining -= len(data)
            if remaining <= 0:
                break
            data = sock.recv(min(1 << 20, remaining))
            if not data:
                return
    else:
        assert fields["transfer-encoding"] == "chunked"
        buf = rest
        while True:
            while b"\r\n" not in buf:
                buf += sock.recv(1 << 20)
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            while len(buf) < size + 2:
                more = sock.recv(1 << 20)
                if not more:
                    return
                buf += more
            assert buf[size : size + 2] == b"\r\n"
            chunk, buf = buf[:size], buf[size + 2 :]
            count += len(chunk)
            crc = zlib.crc32(chunk, crc)
    body = f"{count} {crc}".encode()
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


@contextlib.contextmanager
def _cproxy_subprocess(tmp_path: Path) -> Iterator[tuple[int, int]]:
    conf = tmp_path / "cproxy.conf"
    conf.write_text(
        'Port = 0\nBindAddress = 127.0.0.1\nAdminPort = 0\nAccessLog = ""\n'
        "ErrorLog = -\nLogLevel = info\nCaching = off\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cproxy", "-c", str(conf)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    drain = None
    try:
        port = 0
        assert proc.stderr is not None
        deadline = time.monotonic() + WAIT_S
        while not port and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
        assert port, "cproxy did not start"
        # Keep draining its log so it never blocks on a full pipe.
        drain = threading.Thread(target=proc.stderr.read, daemon=True)
        drain.start()
        yield proc.pid, port
    finally:
        proc.terminate()
        try:
            proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(WAIT_S)
        if drain is not None:
            drain.join(WAIT_S)
        if proc.stderr is not None:
            proc.stderr.close()


def _vm_hwm_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    assert m
    return int(m.group(1))


def _upload(port: int, url: str, chunked: bool) -> bytes:
    with raw_connection(port, timeout_s=60) as sock:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {GIB}"
        sock.sendall(f"POST {url} HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n".encode())
        chunk_head = b"%x\r\n" % len(BLOCK)
        for block in _blocks(GIB):
            if chunked:
                sock.sendall(chunk_head + block + b"\r\n")
            else:
                sock.sendall(block)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 200
    return body


def test_1gib_bodies_pass_through_in_bounded_memory(tmp_path: Path) -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the subprocess's peak memory")
    timings = {}
    expected_crc = _expected_crc()
    with ScriptedOrigin(_streaming_script) as origin, _cproxy_subprocess(tmp_path) as (pid, port):
        baseline = _vm_hwm_kib(pid)
        for chunked in (False, True):
            t0 = time.monotonic()
            assert _upload(port, origin.url("/up"), chunked) == f"{GIB} {expected_crc}".encode()
            timings["chunked upload" if chunked else "length upload"] = time.monotonic() - t0
        t0 = time.monotonic()
        with raw_connection(port, timeout_s=60) as sock:
            sock.sendall(_request("GET", origin.url("/download")))
            f = sock.makefile("rb", buffering=1 << 20)
            status_line = f.readline()
            headers = b""
            while (line := f.readline()) != b"\r\n":
                headers += line.lower()
            count, crc = 0, 0
            while count < GIB:
                data = f.read(min(1 << 20, GIB - count))
                if not data:
                    break
                count += len(data)
                crc = zlib.crc32(data, crc)
        timings["download"] = time.monotonic() - t0
        peak = _vm_hwm_kib(pid)
    assert status_line.startswith(b"HTTP/1.1 200")
    assert f"content-length: {GIB}".encode() in headers
    assert (count, crc) == (GIB, expected_crc)
    print("1 GiB transfers (s):", {k: round(v, 2) for k, v in timings.items()})
    print(f"cproxy VmHWM: {baseline} KiB at start, {peak} KiB after")
    assert peak < MAX_HWM_KIB, f"cproxy peak memory {peak} KiB (started at {baseline} KiB)"
