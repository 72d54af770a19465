"""Headless Chromium through an intercepting cproxy (issue #19).

Chromium trusts cproxy's CA the way a user's browser would: through an NSS database made
with ``certutil`` in a temporary HOME (no ``--ignore-certificate-errors`` of any kind). A
page with an image is loaded twice over HTTPS, each time in a fresh browser context (its
own empty HTTP cache); the second time cproxy serves both from its cache: the origin sees
each path once, and the access log says so.

Nothing leaves the machine: cproxy resolves the test's names to 127.0.0.1 and refuses
every other name before any DNS lookup (its resolver is replaced), and Chromium resolves
nothing itself but loopback (``--host-resolver-rules``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.intercepting import Lab, tls_origin
from tests.support import CHROMIUM, CHROMIUM_ARGS, WAIT_S, OriginHandler

pytestmark = pytest.mark.skipif(
    (shutil.which("chromium") is None or shutil.which("certutil") is None)
    and not os.environ.get("CI"),
    reason="Debian chromium / libnss3-tools are not installed (scripts/test installs them)",
)

PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
PAGE = b"""<!doctype html>
<html><head><title>intercepted</title><link rel="icon" href="data:,"></head>
<body><h1 id="title">cached over https</h1><img id="pixel" src="/pixel.png" alt="pixel">
</body></html>"""

NAME = "shop.test"


def only_test_names(host: str, port: int) -> list[tuple[Any, ...]]:
    """cproxy's resolver in this test: the test's name is 127.0.0.1; every other name is
    refused without a lookup, so nothing a browser asks for can leave the machine."""
    if host not in (NAME, "127.0.0.1"):
        raise socket.gaierror(socket.EAI_NONAME, f"{host} is not a test name")
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


def nss_home(tmp_path: Path, ca_pem: str) -> Path:
    """A HOME whose NSS database trusts ``ca_pem`` for web sites (what Debian's Chromium
    reads, and what a user does with certutil)."""
    home = tmp_path / "home"
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    subprocess.run(
        ["certutil", "-N", "--empty-password", "-d", f"sql:{db}"], check=True, timeout=30
    )
    subprocess.run(
        ["certutil", "-A", "-t", "C,,", "-n", "cproxy", "-i", ca_pem, "-d", f"sql:{db}"],
        check=True,
        timeout=30,
    )
    return home


def test_chromium_gets_the_second_visit_from_cproxys_cache(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.intercepting import running

    lab = Lab(tmp_path)
    log_path = tmp_path / "access.log"

    def serve(content_type: str, body: bytes) -> Any:
        def route(h: OriginHandler) -> None:
            h.reply(200, body, {"Content-Type": content_type, "Cache-Control": "max-age=600"})

        return route

    with tls_origin(lab.origin_context(NAME)) as origin:
        origin.routes["/page"] = serve("text/html; charset=utf-8", PAGE)
        origin.routes["/pixel.png"] = serve("image/png", PIXEL)
        proxy_thread = lab.proxy(origin.port, AccessLog=str(log_path), AccessLogFormat="json")
        with running(proxy_thread) as proxy:
            proxy.call(lambda: setattr(proxy.runtime.pool, "resolve", only_test_names))
            home = nss_home(tmp_path, str(lab.ca.cert_path))
            url = f"https://{NAME}:{origin.port}/page"
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=CHROMIUM,
                    args=[
                        *CHROMIUM_ARGS,
                        f"--proxy-server=http://127.0.0.1:{proxy.port}",
                        "--proxy-bypass-list=<-loopback>",
                        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    ],
                    env={**os.environ, "HOME": str(home)},
                    timeout=WAIT_S * 1000,
                )
                try:
                    for _visit in range(2):
                        # A fresh context each time: the browser's own cache starts empty.
                        context = browser.new_context()
                        try:
                            page = context.new_page()
                            page.set_default_timeout(10_000)
                            response = page.goto(url)
                            assert response is not None and response.status == 200
                            assert page.text_content("#title") == "cached over https"
                            page.wait_for_function("document.getElementById('pixel').complete")
                            width = page.eval_on_selector("#pixel", "img => img.naturalWidth")
                            assert width == 1
                            security = response.security_details()
                            assert security is not None and "cproxy" in security["issuer"]
                        finally:
                            context.close()
                finally:
                    browser.close()
            proxy.call(lambda: proxy.runtime.access_log.flush())
            stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        # The origin saw each path once: the second visit came from cproxy's cache.
        paths = sorted(path for _, path, _, _ in origin.requests)
        assert paths == ["/page", "/pixel.png"], paths
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    gets = [(x["target"], str(x["cache"]).split(";")[0]) for x in lines if x["method"] == "GET"]
    base = f"https://{NAME}:{origin.port}"
    for target in (f"{base}/page", f"{base}/pixel.png"):
        assert [cache for t, cache in gets if t == target] == ["uri-miss", "hit"], gets
    assert stats["handshakes"] >= 2
