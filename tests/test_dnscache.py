"""The cache in front of the origin resolver (DNSCacheTimeout, DNSNegativeCacheTimeout;
issue #24): kept for a fixed time with an injected clock, bounded, temporary failures never
kept; in the proxy, a name is looked up once for many new connections."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import requests

from cproxy.origin.dnscache import DNSCache
from tests.support import FakeClock, Origin, start_proxy

WAIT_S = 10.0


class Counting:
    """A resolver that counts its lookups and answers from a table (or raises)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail: dict[str, socket.gaierror] = {}

    def __call__(self, host: str, port: int) -> list[tuple[Any, ...]]:
        self.calls.append((host, port))
        if host in self.fail:
            raise self.fail[host]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))]


def test_answers_are_kept_for_the_positive_time() -> None:
    inner, clock = Counting(), FakeClock()
    cache = DNSCache(inner, positive_s=60, negative_s=10, clock=clock)
    first = cache("a.test", 80)
    first.clear()  # a caller changing its copy does not change the cache
    assert cache("a.test", 80) == inner("a.test", 80)
    assert len(inner.calls) == 2  # one lookup for the cache, one by the test itself
    assert cache("a.test", 443)[0][4] == ("127.0.0.1", 443)  # another port: its own entry
    clock.advance(59)
    cache("a.test", 80)
    assert inner.calls.count(("a.test", 80)) == 2
    clock.advance(1)
    cache("a.test", 80)
    assert inner.calls.count(("a.test", 80)) == 3
    assert (cache.hits, cache.misses) == (2, 3)


def test_a_name_that_does_not_exist_is_kept_for_the_negative_time() -> None:
    inner, clock = Counting(), FakeClock()
    inner.fail["gone.test"] = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    cache = DNSCache(inner, positive_s=60, negative_s=10, clock=clock)
    for _ in range(3):
        with pytest.raises(socket.gaierror) as caught:
            cache("gone.test", 80)
        assert caught.value.errno == socket.EAI_NONAME
        assert "not known" in str(caught.value)
    assert len(inner.calls) == 1
    clock.advance(10)
    with pytest.raises(socket.gaierror):
        cache("gone.test", 80)
    assert len(inner.calls) == 2


def test_temporary_failures_are_never_kept() -> None:
    inner = Counting()
    inner.fail["flaky.test"] = socket.gaierror(socket.EAI_AGAIN, "Temporary failure")
    cache = DNSCache(inner, positive_s=60, negative_s=10, clock=FakeClock())
    for _ in range(2):
        with pytest.raises(socket.gaierror):
            cache("flaky.test", 80)
    assert len(inner.calls) == 2
    del inner.fail["flaky.test"]
    cache("flaky.test", 80)
    cache("flaky.test", 80)
    assert len(inner.calls) == 3


def test_bounded_and_off() -> None:
    inner = Counting()
    cache = DNSCache(inner, positive_s=60, negative_s=10, capacity=2, clock=FakeClock())
    for name in ("a.test", "b.test", "a.test", "c.test"):  # b is the least recently used
        cache(name, 80)
    assert len(cache) == 2
    cache("a.test", 80)
    cache("b.test", 80)
    assert [h for h, _ in inner.calls] == ["a.test", "b.test", "c.test", "b.test"]
    cache.reconfigure(0, 0)  # off: forgets and keeps nothing
    assert len(cache) == 0
    cache("a.test", 80)
    cache("a.test", 80)
    assert len(cache) == 0 and len(inner.calls) == 6
    with pytest.raises(ValueError):
        cache.reconfigure(-1, 0)


def test_the_proxy_looks_a_name_up_once_for_many_new_connections() -> None:
    inner = Counting()
    with Origin() as origin, start_proxy(ServerConnPool="off") as proxy:
        rt = proxy.runtime
        assert rt.pool.resolve is rt.dns_cache  # every origin connection goes through it
        rt.dns_cache.inner = inner
        for n in range(3):
            url = f"http://cached.test:{origin.port}/{n}"
            r = requests.get(url, proxies={"http": proxy.url}, timeout=WAIT_S)
            assert r.status_code == 200
        assert origin.connections == 3  # three new connections (ServerConnPool off) ...
        assert inner.calls == [("cached.test", origin.port)]  # ... one lookup
