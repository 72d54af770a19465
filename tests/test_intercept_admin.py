"""HTTPS interception on the admin status page, /status.json and /metrics (issue #19)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cproxy.intercept.ca import create_ca
from tests.test_admin import CONF_TEXT, AdminSite


@pytest.fixture
def site(tmp_path: Path) -> Iterator[AdminSite]:
    ca = create_ca(tmp_path / "ca")
    conf = (
        CONF_TEXT
        + f"SSLInterception = on\nSSLCACertFile = {ca.cert_path}\nSSLCAKeyFile = {ca.key_path}\n"
    )
    s = AdminSite(tmp_path, conf_text=conf)
    yield s
    s.close()


def test_the_counters_reach_the_status_page_json_and_metrics(site: AdminSite) -> None:
    interception = site.runtime.interception
    interception.handshakes = 7
    interception.splices["listed"] += 2
    interception.splices["pinned"] += 1
    interception.handshake_failures["certificate_rejected"] += 1
    interception.upstream_verify_failures = 3
    interception.leaves.context_for("a.test")  # one leaf made

    document = site.get("/status.json").json()["interception"]
    assert document["handshakes"] == 7 and document["splices"] == 3
    assert document["splices_by_reason"]["listed"] == 2
    assert document["handshake_failures"] == 1 and document["upstream_verify_failures"] == 3
    assert document["leaves_generated"] == 1 and document["leaves_cached"] == 1
    assert document["ca_fingerprint"] == interception.ca.fingerprint

    page = site.get("/").text
    assert "HTTPS interception" in page and interception.ca.fingerprint in page

    families = {f.name: f for f in text_string_to_metric_families(site.get("/metrics").text)}
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
        if s.name.startswith("cproxy_intercept")
    }
    assert values[("cproxy_intercept_handshakes_total", ())] == 7
    assert values[("cproxy_intercept_splices_total", (("reason", "listed"),))] == 2
    assert values[("cproxy_intercept_splices_total", (("reason", "pinned"),))] == 1
    assert (
        values[("cproxy_intercept_handshake_failures_total", (("reason", "certificate_rejected"),))]
        == 1
    )
    assert values[("cproxy_intercept_upstream_verify_failures_total", ())] == 3
    assert values[("cproxy_intercept_leaves_generated_total", ())] == 1
    assert values[("cproxy_intercept_leaves_cached", ())] == 1


def test_without_interception_the_page_has_no_such_section(tmp_path: Path) -> None:
    s = AdminSite(tmp_path)
    try:
        assert s.get("/status.json").json()["interception"] is None
        assert "HTTPS interception" not in s.get("/").text
        assert "cproxy_intercept" not in s.get("/metrics").text
    finally:
        s.close()
