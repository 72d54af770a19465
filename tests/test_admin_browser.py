"""End to end in headless Chromium: log in, change MaxPersistRequest, apply, see it work.

The browser (playwright, sync API) runs in a real thread from gevent's pool while the
test greenlet waits cooperatively, so the admin and proxy greenlets keep serving it.
After the change the test checks the directive file on disk and then the running proxy:
a client connection is closed after the new number of requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.socket as gsocket
import pytest
from gevent.pywsgi import WSGIServer

from cproxy.admin.status import SAMPLE_INTERVAL_S, StatsHistory
from cproxy.server.proxy import ProxyServer
from tests.support import CHROMIUM, CHROMIUM_ARGS
from tests.test_admin import PASSWORD, PERFORMANCE, USER, WAIT_S, AdminSite

playwright_api = pytest.importorskip("playwright.sync_api")

BROWSER_WAIT_MS = 15_000

# The proxy listens on a port the system picks; the server's own admin start is off
# (AdminPort = 0) because the test starts the admin itself on port 0.
CONF_TEXT = """\
# cproxy browser test
Port = 0
AdminPort = 0

# Performance
MaxPersistRequest = 100  # requests per client connection
"""


def _origin_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = b"hello from origin\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def proxied_site(tmp_path: Path) -> Iterator[tuple[AdminSite, ProxyServer, int]]:
    site = AdminSite(tmp_path, conf_text=CONF_TEXT)
    origin = WSGIServer(("127.0.0.1", 0), _origin_app, log=None)
    origin.start()
    proxy = ProxyServer(site.runtime)
    proxy.start()
    try:
        yield site, proxy, origin.server_port
    finally:
        proxy.stop(grace_s=1)
        origin.stop(timeout=1)
        site.close()


def _apply_in_browser(base: str, value: str) -> str:
    """Log in, set MaxPersistRequest on the Performance form, apply; return the banner text."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD})
            page = context.new_page()
            page.set_default_timeout(BROWSER_WAIT_MS)
            page.goto(base + "/")
            page.get_by_role("link", name="Performance", exact=True).click()
            page.wait_for_url(re.compile(re.escape(PERFORMANCE) + "$"))
            field = page.locator("#in-MaxPersistRequest")
            assert field.input_value() == "100"
            field.fill(value)
            page.get_by_role("button", name="Apply").click()
            banner = page.locator(".banner.ok")
            banner.wait_for()
            text = banner.inner_text()
            assert page.locator("#in-MaxPersistRequest").input_value() == value
            return text
        finally:
            browser.close()


def _read_response(sock: gsocket.socket, buf: bytes) -> tuple[dict[str, str], bytes]:
    """Read one response head and its Content-Length body; returns (headers, leftover)."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, "connection closed before a response arrived"
        buf += data
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 200"), lines[0]
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    length = int(headers["content-length"])
    while len(buf) < length:
        data = sock.recv(65536)
        assert data, "connection closed inside a response body"
        buf += data
    return headers, buf[length:]


def test_browser_changes_max_persist_request_and_the_proxy_follows(
    proxied_site: tuple[AdminSite, ProxyServer, int],
) -> None:
    site, proxy, origin_port = proxied_site
    with gevent.Timeout(90):
        banner = gevent.get_hub().threadpool.apply(_apply_in_browser, (site.base, "3"))
    assert "MaxPersistRequest" in banner

    # The file on disk holds the new value, with its comments.
    text = site.conf.read_text()
    assert re.search(r"^MaxPersistRequest = 3 ", text, re.M), text
    assert "# requests per client connection" in text
    assert "# cproxy browser test" in text and "# Performance" in text
    assert site.runtime.config.max_persist_request == 3

    # The running proxy closes a client connection after 3 requests.
    host, port = proxy.address
    request = (
        f"GET http://127.0.0.1:{origin_port}/ HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n\r\n"
    ).encode()
    with gevent.Timeout(WAIT_S), gsocket.create_connection((host, port)) as sock:
        buf = b""
        for number in (1, 2, 3):
            sock.sendall(request)
            headers, buf = _read_response(sock, buf)
            closing = headers.get("connection", "").lower() == "close"
            assert closing == (number == 3), (number, headers)
        assert buf == b""
        assert sock.recv(1) == b""  # the proxy closed its end


def _status_page_with_credentials_in_the_url(url: str) -> dict[str, Any]:
    """Open the status page as ``url`` (user:password@ in it); wait for its first refresh;
    return what the page shows."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()  # no login but the URL's
            page.set_default_timeout(BROWSER_WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            page.wait_for_function(
                "() => /^(live|not updating)/.test(document.getElementById('live').textContent)"
            )
            return {
                "live": page.locator("#live").inner_text(),
                "lines": {
                    chart: page.locator(f"#{chart} path.line").count()
                    for chart in ("chart-rps", "chart-hit")
                },
                "ticks": {
                    chart: page.locator(f"#{chart} text[data-axis='time']").all_text_contents()
                    for chart in ("chart-rps", "chart-hit")
                },
                "errors": errors,
            }
        finally:
            browser.close()


def test_the_status_page_opened_with_credentials_in_its_url_updates_and_labels_time(
    tmp_path: Path,
) -> None:
    """Issue #22: http://user:pass@127.0.0.1:8081/ showed "not updating" and empty charts
    (the page's fetches inherited the credentials, which browsers refuse); the charts had
    no time axis."""
    site = AdminSite(tmp_path)
    try:
        site.server.stop_sampler()
        now = [0.0]
        history = site.server.app.history = StatsHistory(clock=lambda: now[0])
        for step in range(4):
            site.runtime.requests_total = 50 * step
            history.record(site.runtime.stats())
            now[0] += SAMPLE_INTERVAL_S
        port = site.base.rsplit(":", 1)[1]
        url = f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/"
        with gevent.Timeout(90):
            shown = gevent.get_hub().threadpool.apply(
                _status_page_with_credentials_in_the_url, (url,)
            )
    finally:
        site.close()
    assert shown["live"].startswith("live"), shown
    assert shown["errors"] == [], shown
    assert shown["lines"]["chart-rps"] == 1, shown  # the requests/s series is drawn
    for chart, ticks in shown["ticks"].items():
        assert len(ticks) == 5 and ticks[-1] == "now", (chart, ticks)
        assert all(re.fullmatch(r"\d{1,2}:\d{2}( [AP]M)?", t) for t in ticks[:-1]), ticks
