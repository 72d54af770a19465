"""Admin pages as a new administrator meets them (issue #15): labels, a broken file, metrics.

A real admin listener on loopback (tests.test_admin.AdminSite); each test failed before
its fix.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cproxy.server.proxy import ProxyServer
from tests.support import Origin
from tests.test_admin import PERFORMANCE, TIMEOUTS, AdminSite, fetch, field_section


@pytest.fixture
def site(tmp_path: Path) -> Iterator[AdminSite]:
    s = AdminSite(tmp_path)
    yield s
    s.close()


def test_time_and_size_fields_carry_their_own_unit_not_a_seconds_label(site: AdminSite) -> None:
    html = site.get(TIMEOUTS).text
    output = field_section(html, "OutputTimeout")
    assert 'value="30 minutes"' in output
    # The text says minutes: no fixed "seconds" label beside it.
    assert not re.search(r'class="unit"[^<]*>\s*seconds', output), output
    assert ">seconds<" not in output


def test_a_directive_file_broken_on_disk_is_reported_on_every_page(site: AdminSite) -> None:
    assert "does not load" not in site.get("/").text
    site.conf.write_text(site.conf.read_text() + "ReadTimeout = soon\n")
    for path in ("/", PERFORMANCE):
        html = site.get(path).text
        banner = re.search(r'<div class="banner error" role="alert">(.*?)</div>', html, re.S)
        assert banner is not None, path
        text = banner.group(1)
        assert f"{site.conf}:" in text and "ReadTimeout: &#39;soon&#39; is not a time" in text
        assert "cannot be saved" in text and "a SIGHUP keeps the running configuration" in text
    document = site.get("/status.json").json()
    assert "ReadTimeout" in document["directive_file_problem"]
    # Fixed again: the warning goes.
    site.conf.write_text(site.conf.read_text().replace("ReadTimeout = soon\n", ""))
    assert "does not load" not in site.get(PERFORMANCE).text
    assert site.get("/status.json").json()["directive_file_problem"] is None


def test_metrics_give_the_status_figures_codes_and_a_latency_histogram(
    tmp_path: Path, origin: Origin
) -> None:
    origin.routes["/cached"] = lambda h: h.reply(200, b"kept", {"Cache-Control": "max-age=60"})
    origin.routes["/missing"] = lambda h: h.reply(404, b"no such page")
    site = AdminSite(tmp_path, conf_text="Port = 0\nAdminPort = 0\nAccessLog =\n")
    proxy = ProxyServer(site.runtime)
    proxy.start()
    try:
        proxies = {"http": f"http://127.0.0.1:{proxy.address[1]}"}
        codes = [
            fetch("GET", url, proxies=proxies).status_code
            for url in (
                origin.url("/cached"),
                origin.url("/cached"),  # a hit, answered by the fast lane
                origin.url("/missing"),
                f"http://127.0.0.1:{closed_port()}/",
            )
        ]
        assert codes == [200, 200, 404, 502]
        text = site.get("/metrics").text
    finally:
        proxy.stop(grace_s=1)
        site.close()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("cproxy_responses_total", code="200") == 2
    assert value("cproxy_responses_total", code="404") == 1
    assert value("cproxy_responses_total", code="502") == 1
    assert value("cproxy_request_duration_seconds_count") == 4
    assert value("cproxy_request_duration_seconds_bucket", le="+Inf") == 4
    assert 0 < value("cproxy_request_duration_seconds_sum") < 60
    # What status.json shows is there too.
    assert value("cproxy_uptime_seconds") > 0
    assert value("cproxy_connections_max_active") == 100
    assert value("cproxy_cache_hits_total") == 1
    assert 0 < value("cproxy_cache_hit_ratio") <= 1
    assert value("cproxy_config_pending_restart") == 0
    assert value("cproxy_config_file_loads") == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
