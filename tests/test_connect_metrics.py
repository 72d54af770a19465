"""Issue #24's parts shown: the dead-address memory and the DNS cache have their figures on
the status page, in /status.json and in /metrics, and they move when a real proxy meets a
refused address and looks names up.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cproxy.admin import start_admin
from cproxy.admin.connectmetrics import DEAD_FIGURES, DNS_FIGURES
from cproxy.admin.passwd import set_password
from cproxy.origin.deadaddrs import DeadAddresses
from cproxy.origin.dnscache import DNSCache
from tests.support import FakeClock, Origin, start_proxy

WAIT_S = 10.0
USER, PASSWORD = "admin", "correct horse"


def test_every_figure_the_classes_report_has_a_metric() -> None:
    assert set(DEAD_FIGURES) == set(DeadAddresses().stats())
    assert set(DNS_FIGURES) == set(DNSCache(lambda host, port: []).stats())
    names = [metric for metric, _, _ in (*DEAD_FIGURES.values(), *DNS_FIGURES.values())]
    assert len(names) == len(set(names))


def test_dead_address_counters() -> None:
    clock = FakeClock()
    dead = DeadAddresses(remember_s=60, capacity=2, clock=clock)
    dead.mark("192.0.2.1", 80)
    dead.mark("192.0.2.2", 80)
    dead.mark("192.0.2.3", 80)  # over capacity: the first is forgotten
    dead.clear("192.0.2.2", 80)
    dead.clear("192.0.2.9", 80)  # never marked: nothing cleared
    assert dead.stats() == {
        "remembered": 1,
        "marks": 3,
        "cleared": 1,
        "forgotten": 1,
        "remember_s": 60,
    }
    clock.advance(61)  # expired: not remembered any more, though not yet purged
    assert dead.stats()["remembered"] == 0


def test_dns_cache_counters() -> None:
    def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
        if host == "nx.test":
            raise socket.gaierror(socket.EAI_NONAME, "no such name")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    cache = DNSCache(resolve, positive_s=60, negative_s=10, capacity=2, clock=FakeClock())
    for host in ("a.test", "a.test", "nx.test", "nx.test", "b.test"):
        try:
            cache(host, 80)
        except socket.gaierror:
            pass
    figures = cache.stats()
    assert (figures["hits"], figures["negative_hits"], figures["misses"]) == (2, 1, 3)
    assert (figures["entries"], figures["evictions"]) == (2, 1)  # a.test made room for b.test


def in_greenlet(proxy: Any, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a greenlet of the proxy's hub (it may block, unlike `proxy.call`)."""
    done, box = threading.Event(), {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        done.set()

    proxy.call(lambda: gevent.spawn(run))
    assert done.wait(WAIT_S)
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.fixture
def proxy_with_admin(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """A real proxy opening a new origin connection per request, and its admin listener."""
    passwd = tmp_path / "cproxy.passwd"
    set_password(str(passwd), USER, PASSWORD, rounds=4)
    with start_proxy(ServerConnPool="off", AdminPasswordFile=str(passwd)) as proxy:
        admin = in_greenlet(proxy, lambda: start_admin(proxy.runtime, listener=("127.0.0.1", 0)))
        assert admin is not None
        try:
            yield proxy, f"http://127.0.0.1:{admin.address[1]}"
        finally:
            in_greenlet(proxy, lambda: admin.stop(timeout=1))


def _figures(base: str) -> tuple[dict[str, Any], dict[str, float]]:
    status = requests.get(f"{base}/status.json", auth=(USER, PASSWORD), timeout=WAIT_S)
    assert status.status_code == 200
    metrics = requests.get(f"{base}/metrics", auth=(USER, PASSWORD), timeout=WAIT_S)
    assert metrics.status_code == 200
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(metrics.text)
        for s in family.samples
        if s.name.startswith(("cproxy_dead_address", "cproxy_dns_cache"))
    }
    return status.json()["connecting"], samples


def _free_port_on(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def test_a_refused_address_and_lookups_move_the_figures(
    proxy_with_admin: tuple[Any, str],
) -> None:
    proxy, base = proxy_with_admin
    for _ in range(20):  # an origin on 127.0.0.2:P where nothing listens on 127.0.0.3:P
        port = _free_port_on("127.0.0.3")
        try:
            origin = Origin("127.0.0.2", port)
            break
        except OSError:
            continue
    else:
        raise RuntimeError("no port free on both 127.0.0.2 and 127.0.0.3")

    def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
        if host == "nx.test":
            raise socket.gaierror(socket.EAI_NONAME, "no such name")
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in ("127.0.0.3", "127.0.0.2")
        ]

    # The names go through the proxy's DNS cache to this resolver, as they would to the system's.
    proxy.runtime.dns_cache.inner = resolve
    before, before_metrics = _figures(base)
    assert before["dead_addresses"]["remembered"] == 0 and before["dns_cache"]["misses"] == 0
    assert before_metrics["cproxy_dead_addresses"] == 0
    assert before_metrics["cproxy_dns_cache_hits_total"] == 0

    with origin:
        proxies = {"http": f"http://127.0.0.1:{proxy.port}"}
        for path in ("/first", "/second"):
            r = requests.get(f"http://multi.test:{port}{path}", proxies=proxies, timeout=WAIT_S)
            assert r.status_code == 200
        for _ in range(2):
            r = requests.get(f"http://nx.test:{port}/", proxies=proxies, timeout=WAIT_S)
            assert r.status_code == 502
    assert origin.connections == 2  # ServerConnPool off: a new connection per request

    after, metrics = _figures(base)
    dead, dns = after["dead_addresses"], after["dns_cache"]
    # 127.0.0.3 refused the first request and was marked; the second tried 127.0.0.2 first.
    assert (dead["remembered"], dead["marks"], dead["cleared"]) == (1, 1, 0)
    # multi.test and nx.test looked up once each, then answered by the cache.
    assert (dns["misses"], dns["hits"], dns["negative_hits"]) == (2, 2, 1)
    assert dns["entries"] == 2 and dns["hit_ratio"] == 0.5
    assert metrics["cproxy_dead_addresses"] == 1
    assert metrics["cproxy_dead_address_marks_total"] == 1
    assert metrics["cproxy_dns_cache_entries"] == 2
    assert metrics["cproxy_dns_cache_hits_total"] == 2
    assert metrics["cproxy_dns_cache_misses_total"] == 2
    assert metrics["cproxy_dns_cache_negative_hits_total"] == 1
    assert metrics["cproxy_dns_cache_evictions_total"] == 0

    page = requests.get(f"{base}/", auth=(USER, PASSWORD), timeout=WAIT_S)
    assert page.status_code == 200
    # The figures rendered for a page without JavaScript, keyed for status.js to refresh.
    assert 'data-stat="connecting.dead_addresses.remembered"' in page.text
    assert 'data-stat="connecting.dns_cache.hits"' in page.text
