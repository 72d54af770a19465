"""Pool telemetry (issue #11): /metrics has every figure the pool reports (with the origin
label bounded), the queue length and the wait histogram; the status page and status.json
list recent cap events.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cproxy.admin.poolmetrics import MAX_ORIGIN_LABELS, OTHER, POOL_FIGURES, bounded_origins
from cproxy.errors import PoolQueueTimeout
from cproxy.origin.pool import COUNTERS, GAUGES, OriginPool
from tests.test_admin import AdminSite
from tests.test_origin_pool import LoopbackOrigin


def test_every_pool_figure_has_a_metric() -> None:
    assert set(POOL_FIGURES) == set(COUNTERS) | set(GAUGES)
    pool = OriginPool()
    try:
        assert set(pool.stats()["totals"]) == set(POOL_FIGURES)
    finally:
        pool.close()


def test_the_origin_label_is_bounded_and_the_rest_adds_up() -> None:
    origins = {
        f"http://h{i}.test:80": {**dict.fromkeys(POOL_FIGURES, 0), "created": i, "reused": 1}
        for i in range(MAX_ORIGIN_LABELS + 10)
    }
    totals = dict.fromkeys(POOL_FIGURES, 0)
    for values in origins.values():
        for name, value in values.items():
            totals[name] += value
    totals["created"] += 5  # an origin the pool no longer tracks
    series = bounded_origins({"origins": origins, "totals": totals})
    assert len(series) == MAX_ORIGIN_LABELS + 1 and OTHER in series
    # The busiest are shown by name; the quietest are in "other".
    assert "http://h29.test:80" in series and "http://h0.test:80" not in series
    for name in POOL_FIGURES:
        assert sum(v[name] for v in series.values()) == totals[name]
    assert series[OTHER]["created"] == sum(range(10)) + 5


@pytest.fixture
def site(tmp_path: Path) -> Iterator[AdminSite]:
    s = AdminSite(tmp_path)
    yield s
    s.close()


def test_metrics_and_status_show_queueing_through_the_admin(site: AdminSite) -> None:
    origin = LoopbackOrigin()
    pool = site.runtime.pool
    pool.reconfigure(
        enabled=True,
        max_idle_per_origin=0,
        idle_timeout_s=10.0,
        gc_interval_s=30.0,
        connect_timeout_s=10.0,
        max_conn_per_origin=1,
        queue_timeout_s=0.01,
    )
    try:
        held = pool.acquire(origin.key)
        with pytest.raises(PoolQueueTimeout):
            pool.acquire(origin.key)
        pool.release(held)  # MaxSocketPerServer 0: closed, counted dropped_full
        label = f"http://127.0.0.1:{origin.port}"
        response = site.get("/metrics")
        assert response.status_code == 200
        samples = {
            (s.name, s.labels.get("origin") or s.labels.get("le")): s.value
            for f in text_string_to_metric_families(response.text)
            for s in f.samples
        }
        for name in ("dropped_full", "closed", "waits", "wait_timeouts"):
            assert samples[(f"cproxy_origin_pool_{name}_total", label)] == 1, name
        for name in ("dropped_dead", "connect_failures"):
            assert samples[(f"cproxy_origin_pool_{name}_total", label)] == 0, name
        assert samples[("cproxy_origin_pool_pending_connects", label)] == 0
        assert samples[("cproxy_origin_pool_waiting", label)] == 0
        assert samples[("cproxy_origin_pool_wait_seconds_count", None)] == 1
        assert samples[("cproxy_origin_pool_wait_seconds_bucket", "+Inf")] == 1
        assert samples[("cproxy_origin_pool_wait_seconds_bucket", "0.001")] == 0

        doc = site.get("/status.json").json()
        kinds = [e["kind"] for e in doc["pool"]["events"]]
        assert kinds == ["idle_full", "queue_timeout", "queued"]
        assert all(e["origin"] == label for e in doc["pool"]["events"])
        page = site.get("/").text
        assert "Recent pool events" in page and "ServerConnQueueTimeout" in page
    finally:
        origin.close()


def test_a_quiet_pool_says_so_on_the_status_page(site: AdminSite) -> None:
    page = site.get("/").text
    assert "No cap was hit" in page
    assert site.get("/status.json").json()["pool"]["events"] == []


POOL_FORM = "/config/proxy-configuration/connection-pool"


def test_the_connection_pool_form_edits_the_pool_directives_live(site: AdminSite) -> None:
    page = site.get(POOL_FORM).text
    for name in (
        "MaxConnPerServer",
        "ServerConnQueueTimeout",
        "MaxPersistRequestPerServer",
        "MaxIdleSockets",
        "ServerConnStandby",
        "ServerSSLCAFile",
        "ServerSSLNoVerify",
    ):
        assert f"d.{name}" in page, name
    origin = LoopbackOrigin()
    try:
        fields = site.form(POOL_FORM)
        fields["d.MaxConnPerServer"] = "4"
        fields["d.MaxIdleSockets"] = "100"
        fields["d.ServerConnStandby"] = f"http://127.0.0.1:{origin.port} 1"
        response = site.post(POOL_FORM, fields)
        assert response.status_code == 200 and "Applied now" in response.text
        pool = site.runtime.pool
        assert (pool.max_conn_per_origin, pool.max_idle_total) == (4, 100)
        assert pool.standby_state()[f"http://127.0.0.1:{origin.port}"]["target"] == 1
        # A bad value is refused with what is allowed, and changes nothing.
        fields = site.form(POOL_FORM)
        fields["d.ServerSSLNoVerify"] = "https://*"
        response = site.post(POOL_FORM, fields)
        assert response.status_code == 400 and "no wildcards" in response.text
        assert site.runtime.config.server_ssl_no_verify == ()
    finally:
        origin.close()
