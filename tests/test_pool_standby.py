"""Pre-opened origin connections (ServerConnStandby, issue #11): opened at start and after a
reconfigure, replaced when taken, expired or closed by the origin, backing off when the
origin refuses; within the caps. Against real loopback origins, with a fake clock for ageing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gevent
import pytest

from cproxy.origin import OriginPool, format_origin
from tests.support import ProxyThread, raw_connection, read_response, start_proxy
from tests.support import wait_for as wait_for_thread
from tests.test_origin_pool import FakeClock, LoopbackOrigin, free_port
from tests.test_pool_caps import check, wait_for


@pytest.fixture
def origin() -> Iterator[LoopbackOrigin]:
    o = LoopbackOrigin()
    yield o
    o.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_pool(clock: FakeClock) -> Iterator[Any]:
    pools: list[OriginPool] = []

    def make(**kwargs: Any) -> OriginPool:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("gc_interval_s", 0)  # the tests run collect() themselves
        pool = OriginPool(**kwargs)
        pools.append(pool)
        pool.start()
        return pool

    yield make
    for pool in pools:
        pool.close()


def idle_of(pool: OriginPool, origin: LoopbackOrigin) -> int:
    return int(pool.stats()["origins"].get(format_origin(origin.key), {}).get("idle", 0))


def test_standby_connections_are_opened_at_start(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool(standby=((origin.key, 3),))
    wait_for(lambda: idle_of(pool, origin) == 3)
    wait_for(lambda: len(origin.peers) == 3)
    s = check(pool)["totals"]
    assert (s["created"], s["in_use"], s["pending_connects"]) == (3, 0, 0)


def test_a_taken_standby_connection_is_replaced(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool(standby=((origin.key, 2),))
    wait_for(lambda: idle_of(pool, origin) == 2)
    conn = pool.acquire(origin.key)
    # It sat idle like a pooled socket: a safe request on it is retried if it was dead.
    assert conn.reused and conn.uses == 0
    wait_for(lambda: idle_of(pool, origin) == 2)
    s = check(pool)["totals"]
    assert (s["created"], s["in_use"], s["reused"]) == (3, 1, 1)
    pool.release(conn)  # one over the target: kept, as any idle socket
    assert idle_of(pool, origin) == 3


def test_expired_standby_connections_are_replaced(
    origin: LoopbackOrigin, make_pool: Any, clock: FakeClock
) -> None:
    pool = make_pool(standby=((origin.key, 2),), idle_timeout_s=10.0)
    wait_for(lambda: idle_of(pool, origin) == 2)
    clock.advance(11)
    assert pool.collect() == 2
    wait_for(lambda: idle_of(pool, origin) == 2)
    s = check(pool)["totals"]
    assert (s["expired"], s["created"]) == (2, 4)


def test_a_standby_connection_the_origin_closes_is_replaced(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    pool = make_pool(standby=((origin.key, 2),))
    wait_for(lambda: len(origin.peers) == 2 and idle_of(pool, origin) == 2)
    next(iter(origin.peers.values())).close()
    wait_for(lambda: check(pool)["totals"]["dropped_dead"] == 1)
    wait_for(lambda: idle_of(pool, origin) == 2)
    assert check(pool)["totals"]["created"] == 3


def test_a_refusing_origin_is_retried_with_a_growing_backoff(make_pool: Any) -> None:
    key = ("http", "127.0.0.1", free_port())
    pool = make_pool(standby=((key, 2),), standby_backoff_s=(0.01, 0.04))
    wait_for(lambda: pool.stats()["totals"]["connect_failures"] >= 5)
    state = pool.standby_state()[format_origin(key)]
    assert state["backoff_s"] == 0.04 and state["idle"] == 0  # capped at the maximum
    events = pool.stats()["events"]
    assert events[0]["kind"] == "standby_failed" and "next try in" in events[0]["message"]
    check(pool)


def test_standby_stays_within_the_connection_cap(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool(standby=((origin.key, 5),), max_conn_per_origin=2)
    wait_for(lambda: idle_of(pool, origin) == 2)
    gevent.sleep(0)
    assert check(pool)["totals"]["created"] == 2


def test_standby_listed_by_a_reconfigure_is_opened(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool()
    pool.reconfigure(
        enabled=True,
        max_idle_per_origin=64,
        idle_timeout_s=10.0,
        gc_interval_s=0,
        connect_timeout_s=10.0,
        standby=((origin.key, 2),),
    )
    wait_for(lambda: idle_of(pool, origin) == 2)
    check(pool)


# -- through the proxy -----------------------------------------------------------------------


def test_the_first_request_to_a_standby_origin_uses_a_pre_opened_connection() -> None:
    from tests.support import Origin

    with Origin() as origin:
        standby = f"http://127.0.0.1:{origin.port} 2"
        with start_proxy(Caching="off", ServerConnStandby=standby) as proxy:
            wait_for_thread(lambda: origin.connections == 2, what="2 pre-opened connections")
            wait_for_thread(lambda: totals(proxy)["idle"] == 2, what="both idle")
            with raw_connection(proxy.port) as s:
                s.sendall(f"GET {origin.url('/first')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                with s.makefile("rb") as f:
                    status, _, body = read_response(f)
            assert (status, body) == (200, b"hello GET /first")
            assert totals(proxy)["reused"] == 1
            wait_for_thread(lambda: totals(proxy)["idle"] == 3, what="the taken one replaced")
            # The origin counts a connection when its handler thread starts: wait for it.
            wait_for_thread(lambda: origin.connections == 3, what="3 origin connections")


def totals(proxy: ProxyThread) -> dict[str, Any]:
    return proxy.call(proxy.runtime.pool.stats)["totals"]  # type: ignore[no-any-return]
