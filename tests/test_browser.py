"""A real browser through cproxy: headless Chromium driven by Playwright (issue #2).

Chromium bypasses proxies for loopback addresses unless told otherwise; the bypass rule
``<-loopback>`` removes that, and every test checks that the origin saw cproxy's Via header,
so a page that loaded directly would fail. HTTPS goes through a CONNECT tunnel to a TLS origin
whose certificate comes from a throw-away trustme CA; Chromium trusts exactly that key
(``--ignore-certificate-errors-spki-list``), not any certificate.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import CHROMIUM, CHROMIUM_ARGS, Origin, OriginHandler, ProxyThread, start_proxy
from tests.tls import TestCA, TLSOrigin

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="Debian chromium is not installed (scripts/test installs it; CI must not skip)",
)

# A 1x1 transparent PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

PAGE = b"""<!doctype html>
<html><head><title>through cproxy</title><link rel="icon" href="data:,">
<script src="/app.js"></script></head>
<body><h1 id="title">Hello from the origin</h1>
<p id="script">script not run</p>
<img id="pixel" src="/pixel.png" alt="pixel">
<script>setText();</script>
</body></html>"""

SCRIPT = b"function setText() { document.getElementById('script').textContent = 'script ran'; }"

SECURE_PAGE = b"""<!doctype html>
<html><head><title>secure</title><link rel="icon" href="data:,">
<script src="/secure.js"></script></head>
<body><p id="secure">waiting</p><script>secureText();</script></body></html>"""

SECURE_SCRIPT = (
    b"function secureText() {"
    b" document.getElementById('secure').textContent = 'tunnelled ' + location.protocol; }"
)


def _serve(content_type: str, body: bytes) -> Any:
    def route(h: OriginHandler) -> None:
        h.reply(200, body, {"Content-Type": content_type, "Cache-Control": "no-store"})

    return route


def _add_routes(o: Origin, routes: dict[str, tuple[str, bytes]]) -> None:
    for path, (content_type, body) in routes.items():
        o.routes[path] = _serve(content_type, body)


@pytest.fixture(scope="module")
def http_origin() -> Iterator[Origin]:
    with Origin() as o:
        _add_routes(
            o,
            {
                "/page": ("text/html; charset=utf-8", PAGE),
                "/app.js": ("text/javascript", SCRIPT),
                "/pixel.png": ("image/png", PIXEL),
                "/second": ("text/html", b"<p id='second'>second page</p>"),
            },
        )
        yield o


@pytest.fixture(scope="module")
def tls_origin(ca: TestCA) -> Iterator[TLSOrigin]:
    with TLSOrigin(ca.server_context()) as o:
        _add_routes(
            o,
            {
                "/secure": ("text/html; charset=utf-8", SECURE_PAGE),
                "/secure.js": ("text/javascript", SECURE_SCRIPT),
            },
        )
        yield o


@pytest.fixture(scope="module")
def proxy(tls_origin: TLSOrigin) -> Iterator[ProxyThread]:
    with start_proxy(ConnectPorts=str(tls_origin.port)) as p:
        yield p


@pytest.fixture(scope="module")
def browser(proxy: ProxyThread, ca: TestCA) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                *CHROMIUM_ARGS,
                f"--proxy-server=http://127.0.0.1:{proxy.port}",
                "--proxy-bypass-list=<-loopback>",
                f"--ignore-certificate-errors-spki-list={ca.spki_hash()}",
            ],
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    try:
        pg = context.new_page()
        pg.set_default_timeout(10_000)
        yield pg
    finally:
        context.close()


def _requests_for(o: Origin, paths: set[str]) -> list[tuple[str, str, dict[str, str], bytes]]:
    with o.lock:
        return [r for r in o.requests if r[1] in paths]


def test_http_page_with_sub_resources_loads_through_the_proxy(
    page: Any, http_origin: Origin
) -> None:
    response = page.goto(http_origin.url("/page"))
    assert response.status == 200
    assert response.headers["via"] == "1.1 cproxy"
    assert page.text_content("#title") == "Hello from the origin"
    page.wait_for_function("document.getElementById('pixel').complete")
    assert page.text_content("#script") == "script ran"
    assert page.eval_on_selector("#pixel", "img => img.naturalWidth") == 1

    seen = _requests_for(http_origin, {"/page", "/app.js", "/pixel.png"})
    assert sorted(path for _, path, _, _ in seen) == ["/app.js", "/page", "/pixel.png"]
    for _, path, headers, _ in seen:
        assert headers.get("Via") == "1.1 cproxy", (path, headers)
        assert "Chrome" in headers.get("User-Agent", "")

    # A second navigation, after the first page's requests completed, goes out on a
    # pooled origin connection: fewer origin connections than requests.
    before = http_origin.connections
    page.goto(http_origin.url("/second"))
    assert page.text_content("#second") == "second page"
    assert http_origin.connections == before
    assert _requests_for(http_origin, {"/second"})[0][2].get("Via") == "1.1 cproxy"


def test_https_page_loads_through_a_connect_tunnel(
    page: Any, tls_origin: TLSOrigin, http_origin: Origin
) -> None:
    response = page.goto(tls_origin.url("/secure"))
    assert response.status == 200
    page.wait_for_function("document.getElementById('secure').textContent !== 'waiting'")
    assert page.text_content("#secure") == "tunnelled https:"
    seen = _requests_for(tls_origin, {"/secure", "/secure.js"})
    assert sorted(path for _, path, _, _ in seen) == ["/secure", "/secure.js"]
    # Inside the tunnel the proxy adds nothing: the origin's requests carry no Via.
    assert all("Via" not in headers for _, _, headers, _ in seen)
    assert tls_origin.handshakes >= 1


def test_https_page_is_refused_when_its_port_is_not_a_connect_port(page: Any, ca: TestCA) -> None:
    # A second TLS origin on a port the proxy does not allow: the tunnel is refused (403),
    # which Chromium reports as a tunnel connection failure; the origin sees nothing.
    from playwright.sync_api import Error as PlaywrightError

    with TLSOrigin(ca.server_context()) as other:
        with pytest.raises(PlaywrightError, match="ERR_TUNNEL_CONNECTION_FAILED"):
            page.goto(other.url("/secure"))
        assert other.connections == 0
