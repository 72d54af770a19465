"""Real clients through cproxy: curl, Python requests and urllib (issue #2).

Each test checks what the client got and what the origin received.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support import Origin, OriginHandler, start_proxy
from tests.tls import TestCA, TLSOrigin

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def _echo_body(h: OriginHandler) -> None:
    h.reply(201, b"got " + h.body, {"Content-Type": "application/octet-stream"})


def curl(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    return subprocess.run(
        [CURL, "-sS", "--noproxy", "", "--max-time", "10", *args],
        input=input,
        capture_output=True,
        timeout=20,
        check=False,
    )


def _origin_headers(origin: Origin, index: int = 0) -> dict[str, str]:
    return {k.lower(): v for k, v in origin.requests[index][2].items()}


# --- curl -----------------------------------------------------------------------------------


@needs_curl
def test_curl_get(origin: Origin) -> None:
    with start_proxy() as proxy:
        out = curl("-x", proxy.url, "-D", "-", origin.url("/curl?q=1"))
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"\r\nVia: 1.1 cproxy" in head
    assert body == b"hello GET /curl?q=1"
    method, path, _, _ = origin.requests[0]
    assert (method, path) == ("GET", "/curl?q=1")
    headers = _origin_headers(origin)
    assert headers["via"] == "1.1 cproxy"
    assert headers["user-agent"].startswith("curl/")
    assert "proxy-connection" not in headers


@needs_curl
def test_curl_post_binary_body(origin: Origin) -> None:
    origin.routes["/upload"] = _echo_body
    payload = bytes(range(256)) * 64  # every byte value, 16 KiB
    with start_proxy() as proxy:
        out = curl("-x", proxy.url, "--data-binary", "@-", origin.url("/upload"), input=payload)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"got " + payload
    method, path, headers, body = origin.requests[0]
    assert (method, path, body) == ("POST", "/upload", payload)
    assert {k.lower(): v for k, v in headers.items()}["content-length"] == str(len(payload))


@needs_curl
def test_curl_https_through_connect(ca: TestCA, tls_origin: TLSOrigin) -> None:
    with start_proxy(ConnectPorts=str(tls_origin.port)) as proxy:
        out = curl(
            "-x",
            proxy.url,
            "--cacert",
            str(ca.ca_pem),
            tls_origin.url("/tls", host="localhost"),
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"hello GET /tls"
    assert tls_origin.requests[0][:2] == ("GET", "/tls")


@needs_curl
def test_curl_rejects_the_wrong_ca_through_the_tunnel(
    tls_origin: TLSOrigin, tmp_path: Path
) -> None:
    # The tunnel is end to end: a CA that did not sign the origin's certificate fails.
    other = TestCA(tmp_path)
    with start_proxy(ConnectPorts=str(tls_origin.port)) as proxy:
        out = curl("-x", proxy.url, "--cacert", str(other.ca_pem), tls_origin.url("/tls"))
    assert out.returncode == 60, out.stderr  # CURLE_PEER_FAILED_VERIFICATION
    assert tls_origin.requests == []


# --- requests -------------------------------------------------------------------------------


def test_requests_get_and_keep_alive(origin: Origin) -> None:
    with start_proxy() as proxy, requests.Session() as s:
        s.proxies = {"http": proxy.url}
        for i in range(3):
            r = s.get(origin.url(f"/r{i}"), timeout=10)
            assert r.status_code == 200
            assert r.text == f"hello GET /r{i}"
            assert r.headers["Via"] == "1.1 cproxy"
    assert [p for _, p, _, _ in origin.requests] == ["/r0", "/r1", "/r2"]
    assert origin.connections == 1  # the pooled origin connection was reused


def test_requests_post_with_body(origin: Origin) -> None:
    origin.routes["/form"] = _echo_body
    with start_proxy() as proxy:
        r = requests.post(
            origin.url("/form"),
            data={"a": "1", "b": "two"},
            proxies={"http": proxy.url},
            timeout=10,
        )
    assert (r.status_code, r.content) == (201, b"got a=1&b=two")
    method, path, headers, body = origin.requests[0]
    assert (method, path, body) == ("POST", "/form", b"a=1&b=two")
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["content-type"] == "application/x-www-form-urlencoded"
    assert lowered["content-length"] == "9"


def test_requests_chunked_upload_from_a_generator(origin: Origin) -> None:
    origin.routes["/stream"] = _echo_body
    parts = [b"first,", b"x" * 40000, b",last"]

    def body() -> Iterator[bytes]:
        yield from parts

    with start_proxy() as proxy:
        r = requests.put(
            origin.url("/stream"), data=body(), proxies={"http": proxy.url}, timeout=10
        )
    assert r.status_code == 201
    assert r.content == b"got " + b"".join(parts)
    method, _, headers, received = origin.requests[0]
    assert method == "PUT"
    assert received == b"".join(parts)
    # cproxy re-chunks the body itself (DESIGN.md §5 rule 1).
    assert {k.lower(): v for k, v in headers.items()}["transfer-encoding"] == "chunked"


def test_requests_head(origin: Origin) -> None:
    origin.routes["/big"] = lambda h: h.reply(200, b"z" * 5000, {"Content-Type": "text/plain"})
    with start_proxy() as proxy, requests.Session() as s:
        s.proxies = {"http": proxy.url}
        r = s.head(origin.url("/big"), timeout=10)
        assert r.status_code == 200
        assert r.content == b""
        assert r.headers["Content-Length"] == "5000"
        # The connection is still usable after a body-less HEAD response.
        r2 = s.get(origin.url("/big"), timeout=10)
        assert r2.content == b"z" * 5000
    assert [m for m, _, _, _ in origin.requests] == ["HEAD", "GET"]


def test_requests_sees_the_origins_status_and_headers(origin: Origin) -> None:
    origin.routes["/missing"] = lambda h: h.reply(404, b"nope", {"X-Origin": "yes"})
    with start_proxy() as proxy:
        r = requests.get(origin.url("/missing"), proxies={"http": proxy.url}, timeout=10)
    assert (r.status_code, r.text, r.headers["X-Origin"]) == (404, "nope", "yes")


# --- urllib ---------------------------------------------------------------------------------


def test_urllib_with_proxy_handler(origin: Origin) -> None:
    with start_proxy() as proxy:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))
        with opener.open(origin.url("/urllib"), timeout=10) as resp:
            status, via, body = resp.status, resp.headers["Via"], resp.read()
        req = urllib.request.Request(origin.url("/urllib-post"), data=b"payload", method="POST")
        with opener.open(req, timeout=10) as resp:
            post_body = resp.read()
    assert (status, via, body) == (200, "1.1 cproxy", b"hello GET /urllib")
    assert post_body == b"hello POST /urllib-post"
    assert [(m, p, b) for m, p, _, b in origin.requests] == [
        ("GET", "/urllib", b""),
        ("POST", "/urllib-post", b"payload"),
    ]
    assert _origin_headers(origin)["host"] == f"127.0.0.1:{origin.port}"


def test_urllib_gets_the_proxys_own_error_for_an_unreachable_origin() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with start_proxy() as proxy:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))
        with pytest.raises(urllib.error.HTTPError) as info:
            opener.open(f"http://127.0.0.1:{port}/", timeout=10)
        info.value.close()
    assert info.value.code == 502
