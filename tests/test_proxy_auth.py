"""Proxy authentication (ProxyAuth, issue #15) through the running proxy.

Real clients authenticate: curl (plain and CONNECT), Python requests, pip (downloading
from a package index the test serves on loopback) and headless Chromium through
Playwright. What the origin receives is checked too: never Proxy-Authorization, and
nothing at all for a refused request.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

from cproxy.admin.passwd import set_password
from tests.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    FakeClock,
    Origin,
    OriginHandler,
    ProxyThread,
    raw_connection,
    read_response,
    start_proxy,
)
from tests.tls import TestCA, TLSOrigin

USER, PASSWORD = "alice", "wonder land"
CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


@pytest.fixture
def passwd(tmp_path: Path) -> Path:
    path = tmp_path / "proxy.passwd"
    # Low bcrypt cost in tests: the cost is a parameter of the hash, not of the check.
    set_password(str(path), USER, PASSWORD, rounds=4)
    return path


def auth_proxy(passwd: Path, **directives: str) -> ProxyThread:
    return start_proxy(ProxyAuth="on", ProxyAuthPasswordFile=str(passwd), **directives)


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    return subprocess.run(
        [CURL, "-sS", "--noproxy", "", "--max-time", "10", *args],
        capture_output=True,
        timeout=20,
        check=False,
    )


def origin_saw_no_proxy_credentials(origin: Origin) -> bool:
    return all(
        "proxy-authorization" not in {k.lower() for k in h} for _, _, h, _ in origin.requests
    )


@needs_curl
def test_curl_gets_407_without_credentials_and_the_page_with_them(
    passwd: Path, origin: Origin, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    with auth_proxy(passwd, AccessLog=str(log), AccessLogFormat="combined") as proxy:
        refused = curl("-i", "-x", proxy.url, origin.url("/private"))
        assert refused.returncode == 0, refused.stderr
        head = refused.stdout.split(b"\r\n\r\n", 1)[0].decode()
        assert head.startswith("HTTP/1.1 407 ")
        assert 'Proxy-Authenticate: Basic realm="cproxy"' in head
        assert origin.requests == []  # nothing reached the origin
        wrong = curl(
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            proxy.url,
            "-U",
            f"{USER}:nope",
            origin.url("/private"),
        )
        assert wrong.stdout == b"407"
        ok = curl("-x", proxy.url, "-U", f"{USER}:{PASSWORD}", origin.url("/private"))
        assert ok.stdout == b"hello GET /private", ok.stderr
    assert len(origin.requests) == 1 and origin_saw_no_proxy_credentials(origin)
    lines = log.read_text().splitlines()
    assert lines[-1].startswith(f"127.0.0.1 - {USER} ["), lines
    assert lines[0].startswith("127.0.0.1 - - [") and '" 407 ' in lines[0]


@needs_curl
def test_connect_needs_credentials_too(passwd: Path, ca: TestCA, tls_origin: TLSOrigin) -> None:
    url = tls_origin.url("/tls", host="localhost")
    with auth_proxy(passwd, ConnectPorts=str(tls_origin.port)) as proxy:
        with raw_connection(proxy.port) as sock:
            target = f"localhost:{tls_origin.port}"
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            status, headers, _ = read_response(sock)
        assert status == 407 and headers["proxy-authenticate"].startswith("Basic realm=")
        assert tls_origin.requests == []
        ok = curl("-x", proxy.url, "-U", f"{USER}:{PASSWORD}", "--cacert", str(ca.ca_pem), url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == b"hello GET /tls"


def test_requests_authenticates_and_a_hit_needs_credentials_too(
    passwd: Path, origin: Origin
) -> None:
    origin.routes["/kept"] = lambda h: h.reply(200, b"kept", {"Cache-Control": "max-age=60"})
    with auth_proxy(passwd) as proxy:
        with_user = {"http": f"http://{USER}:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{proxy.port}"}
        for _ in range(2):
            r = requests.get(origin.url("/kept"), proxies=with_user, timeout=10)
            assert (r.status_code, r.text) == (200, "kept")
        assert proxy.runtime.cache.stats()["hits"] == 1
        anonymous = requests.get(origin.url("/kept"), proxies={"http": proxy.url}, timeout=10)
        assert anonymous.status_code == 407  # a stored response is no way round the login
    assert len(origin.requests) == 1 and origin_saw_no_proxy_credentials(origin)


def test_failed_attempts_are_throttled_per_address(passwd: Path, origin: Origin) -> None:
    from cproxy.server.auth import FAILURE_WINDOW_S, MAX_FAILURES, ProxyAuthenticator

    clock = FakeClock()
    with auth_proxy(passwd) as proxy:
        proxy.runtime.proxy_auth = ProxyAuthenticator(clock=clock)
        wrong = {"http": f"http://{USER}:guess@127.0.0.1:{proxy.port}"}
        codes = [
            requests.get(origin.url("/x"), proxies=wrong, timeout=10).status_code
            for _ in range(MAX_FAILURES)
        ]
        assert codes == [407] * MAX_FAILURES
        throttled = requests.get(origin.url("/x"), proxies=wrong, timeout=10)
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
        # The right password is not even checked from that address until the window ends.
        right = {"http": f"http://{USER}:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{proxy.port}"}
        assert requests.get(origin.url("/x"), proxies=right, timeout=10).status_code == 429
        clock.advance(FAILURE_WINDOW_S + 1)  # the window has passed
        assert requests.get(origin.url("/x"), proxies=right, timeout=10).status_code == 200
    assert origin.requests and origin_saw_no_proxy_credentials(origin)


def test_exempt_networks_need_no_credentials(passwd: Path, origin: Origin) -> None:
    with auth_proxy(passwd, ProxyAuthExempt="127.0.0.0/8") as proxy:
        r = requests.get(origin.url("/free"), proxies={"http": proxy.url}, timeout=10)
    assert r.status_code == 200
    with auth_proxy(passwd, ProxyAuthExempt="10.0.0.0/8") as proxy:
        r = requests.get(origin.url("/free"), proxies={"http": proxy.url}, timeout=10)
    assert r.status_code == 407


def test_the_admin_password_file_serves_when_no_file_of_its_own(
    passwd: Path, origin: Origin
) -> None:
    with start_proxy(ProxyAuth="on", AdminPasswordFile=str(passwd)) as proxy:
        url = f"http://{USER}:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{proxy.port}"
        r = requests.get(origin.url("/admin-file"), proxies={"http": url}, timeout=10)
    assert r.status_code == 200


# --- pip, from a package index on loopback ---------------------------------------------------


def tiny_wheel() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as wheel:
        files = {
            "tinypkg/__init__.py": "",
            "tinypkg-1.0.dist-info/METADATA": (
                "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n"
            ),
            "tinypkg-1.0.dist-info/WHEEL": (
                "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            ),
        }
        record = "".join(f"{name},,\n" for name in files) + "tinypkg-1.0.dist-info/RECORD,,\n"
        files["tinypkg-1.0.dist-info/RECORD"] = record
        for name, text in files.items():
            wheel.writestr(name, text)
    return out.getvalue()


def test_pip_downloads_through_the_authenticating_proxy(
    passwd: Path, origin: Origin, tmp_path: Path
) -> None:
    wheel = tiny_wheel()
    name = "tinypkg-1.0-py3-none-any.whl"

    def index(h: OriginHandler) -> None:
        page = f'<html><body><a href="/files/{name}">{name}</a></body></html>'
        h.reply(200, page.encode(), {"Content-Type": "text/html"})

    origin.routes["/simple/tinypkg/"] = index
    origin.routes[f"/files/{name}"] = lambda h: h.reply(
        200, wheel, {"Content-Type": "application/octet-stream"}
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    with auth_proxy(passwd) as proxy:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-cache-dir",
                "--index-url",
                origin.url("/simple/"),
                "--proxy",
                f"http://{USER}:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{proxy.port}",
                "-d",
                str(tmp_path / "dl"),
                "tinypkg",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "dl" / name).read_bytes() == wheel
    assert any(path == f"/files/{name}" for _, path, _, _ in origin.requests)
    assert origin_saw_no_proxy_credentials(origin)


# --- Chromium --------------------------------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="Debian chromium is not installed (scripts/test installs it; CI must not skip)",
)
def test_chromium_logs_in_to_the_proxy(passwd: Path, origin: Origin) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    origin.routes["/page"] = lambda h: h.reply(
        200, b"<title>t</title><p id='p'>behind a login</p>", {"Content-Type": "text/html"}
    )
    with auth_proxy(passwd) as proxy, playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                *CHROMIUM_ARGS,
                # Nothing but loopback resolves: no request can leave the machine.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            ],
            proxy={
                "server": proxy.url,
                "bypass": "<-loopback>",
                "username": USER,
                "password": PASSWORD,
            },
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(origin.url("/page"))
            assert page.locator("#p").text_content() == "behind a login"
        finally:
            browser.close()
    seen = [h for _, path, h, _ in origin.requests if path == "/page"]
    assert seen and all(dict(h).get("Via") == "1.1 cproxy" for h in seen)
    assert origin_saw_no_proxy_credentials(origin)
