"""The origin pool's caps: per-origin connection cap with a FIFO queue, requests per
connection, the global idle cap with LRU eviction; against real loopback origins, with a
fake clock for ageing and warnings. ``created == closed + idle + in_use`` is checked after
every operation, and no origin ever holds more sockets than its cap.
"""

from __future__ import annotations

import os
import random
import socket as stdlib_socket
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import gevent.socket as gsocket
import pytest

from cproxy.errors import (
    OriginConnectError,
    PoolClosed,
    PoolQueueTimeout,
    PoolWaitAbandoned,
)
from cproxy.origin import OriginPool, format_origin
from tests.test_origin_pool import WAIT_S, FakeClock, LoopbackOrigin, free_port, sees_close

# A queue timeout no event in these tests needs to wait for (so only a real stall hits it).
LONG_S = 30.0


def check(pool: OriginPool) -> dict[str, Any]:
    """The invariants: counts add up, nothing negative, no origin above its cap."""
    stats = pool.stats()
    cap = pool.max_conn_per_origin
    for name, s in [*stats["origins"].items(), ("totals", stats["totals"])]:
        assert s["created"] == s["closed"] + s["idle"] + s["in_use"], (name, s)
        assert min(s.values()) >= 0, (name, s)
        if cap and name != "totals":
            assert s["idle"] + s["in_use"] + s["pending_connects"] <= cap, (name, s)
    idle_total = pool.max_idle_total
    if idle_total:
        assert stats["totals"]["idle"] <= idle_total
    return stats


def totals(pool: OriginPool) -> dict[str, int]:
    return pool.stats()["totals"]  # type: ignore[no-any-return]


def of(pool: OriginPool, origin: LoopbackOrigin) -> dict[str, int]:
    return pool.stats()["origins"][format_origin(origin.key)]  # type: ignore[no-any-return]


def wait_for(predicate: Any) -> None:
    """Yield to other greenlets until ``predicate()`` holds (bounded)."""
    with gevent.Timeout(WAIT_S):
        while not predicate():
            gevent.sleep(0)  # a yield to the other greenlets, not a timed wait


@pytest.fixture
def origin() -> Iterator[LoopbackOrigin]:
    o = LoopbackOrigin()
    yield o
    o.close()


@pytest.fixture
def other() -> Iterator[LoopbackOrigin]:
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
        kwargs.setdefault("queue_timeout_s", LONG_S)
        pool = OriginPool(**kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


# -- the per-origin connection cap and its queue ---------------------------------------------


def test_at_the_cap_a_request_waits_and_gets_the_released_socket(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    pool = make_pool(max_conn_per_origin=2)
    a, b = pool.acquire(origin.key), pool.acquire(origin.key)
    waiter = gevent.spawn(pool.acquire, origin.key)
    wait_for(lambda: totals(pool)["waiting"] == 1)
    assert check(pool)["totals"]["created"] == 2
    pool.release(a)
    got = waiter.get(timeout=WAIT_S)
    assert got is a and got.reused
    s = check(pool)["totals"]
    assert (s["created"], s["waits"], s["waiting"], s["in_use"]) == (2, 1, 0, 2)
    pool.release(b)
    pool.release(got)
    check(pool)


def test_queued_requests_are_served_in_arrival_order(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    pool = make_pool(max_conn_per_origin=1)
    held = pool.acquire(origin.key)
    served: list[int] = []

    def worker(n: int) -> None:
        conn = pool.acquire(origin.key)
        served.append(n)
        pool.release(conn)

    workers = []
    for n in range(8):
        workers.append(gevent.spawn(worker, n))
        wait_for(lambda n=n: totals(pool)["waiting"] == n + 1)
    # A late arrival may not overtake the queue even when it could take an idle socket.
    pool.release(held)
    gevent.joinall(workers, timeout=WAIT_S, raise_error=True)
    assert served == list(range(8))
    s = check(pool)["totals"]
    assert s["created"] == 1 and s["waits"] == 8 and s["waiting"] == 0


def test_queue_wait_times_out_with_retry_after(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool(max_conn_per_origin=1, queue_timeout_s=0.05)
    held = pool.acquire(origin.key)
    with pytest.raises(PoolQueueTimeout) as info:
        pool.acquire(origin.key)
    assert info.value.status == 503 and info.value.retry_after_s == 1
    assert "connection limit (1)" in str(info.value)
    s = check(pool)["totals"]
    assert (s["waits"], s["wait_timeouts"], s["waiting"], s["created"]) == (1, 1, 0, 1)
    assert pool.stats()["wait_times"]["count"] == 1
    # The queue left no trace: the next release goes idle and the next acquire reuses it.
    pool.release(held)
    assert pool.acquire(origin.key) is held
    pool.discard(held)


def test_a_discarded_socket_lets_the_first_waiter_open_a_new_one(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    pool = make_pool(max_conn_per_origin=1)
    held = pool.acquire(origin.key)
    waiter = gevent.spawn(pool.acquire, origin.key)
    wait_for(lambda: totals(pool)["waiting"] == 1)
    pool.discard(held)
    got = waiter.get(timeout=WAIT_S)
    assert got is not held and not got.reused
    s = check(pool)["totals"]
    assert (s["created"], s["closed"], s["in_use"]) == (2, 1, 1)
    pool.discard(got)


def test_fresh_connect_at_the_cap_closes_the_oldest_idle_socket(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    pool = make_pool(max_conn_per_origin=2)
    a, b = pool.acquire(origin.key), pool.acquire(origin.key)
    peer_a = origin.peer_of(a)
    pool.release(a)
    pool.release(b)
    fresh = pool.connect(origin.key)
    assert fresh not in (a, b) and a.closed and not b.closed
    assert sees_close(peer_a)
    s = check(pool)["totals"]
    assert (s["evicted"], s["idle"], s["in_use"]) == (1, 1, 1)
    pool.discard(fresh)


def test_a_queued_fresh_connect_is_not_given_a_pooled_socket(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    pool = make_pool(max_conn_per_origin=1)
    held = pool.acquire(origin.key)
    waiter = gevent.spawn(pool.connect, origin.key)
    wait_for(lambda: totals(pool)["waiting"] == 1)
    pool.release(held)
    got = waiter.get(timeout=WAIT_S)
    assert got is not held and held.closed and not got.reused
    check(pool)
    pool.discard(got)


def test_a_client_that_closes_leaves_the_queue(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool(max_conn_per_origin=1)
    held = pool.acquire(origin.key)
    client, proxy_side = gsocket.socketpair()
    try:
        waiter = gevent.spawn(pool.acquire, origin.key, abandon_on_eof=proxy_side)
        wait_for(lambda: totals(pool)["waiting"] == 1)
        client.close()
        with pytest.raises(PoolWaitAbandoned):
            waiter.get(timeout=WAIT_S)
        s = check(pool)["totals"]
        assert (s["waiting"], s["wait_abandoned"], s["wait_timeouts"]) == (0, 1, 0)
        pool.release(held)
        assert totals(pool)["idle"] == 1  # nobody was left to hand it to
    finally:
        proxy_side.close()


def test_a_pipelined_request_does_not_count_as_leaving(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    pool = make_pool(max_conn_per_origin=1)
    held = pool.acquire(origin.key)
    client, proxy_side = gsocket.socketpair()
    try:
        waiter = gevent.spawn(pool.acquire, origin.key, abandon_on_eof=proxy_side)
        wait_for(lambda: totals(pool)["waiting"] == 1)
        client.sendall(b"GET /next HTTP/1.1\r\n")
        gsocket.wait_read(proxy_side.fileno(), timeout=WAIT_S)
        gevent.sleep(0)  # let the watcher run
        assert totals(pool)["waiting"] == 1
        pool.release(held)
        assert waiter.get(timeout=WAIT_S) is held
        assert proxy_side.recv(100) == b"GET /next HTTP/1.1\r\n"  # left unread by the peek
        pool.discard(held)
    finally:
        client.close()
        proxy_side.close()


def test_a_killed_waiter_passes_its_grant_on(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool(max_conn_per_origin=1)
    held = pool.acquire(origin.key)
    first = gevent.spawn(pool.acquire, origin.key)
    wait_for(lambda: totals(pool)["waiting"] == 1)
    second = gevent.spawn(pool.acquire, origin.key)
    wait_for(lambda: totals(pool)["waiting"] == 2)
    # The kill is delivered after the release has granted ``held`` to ``first``.
    first.kill(block=False)
    pool.release(held)
    assert second.get(timeout=WAIT_S) is held
    first.join(WAIT_S)
    s = check(pool)["totals"]
    assert (s["waiting"], s["in_use"], s["created"]) == (0, 1, 1)
    pool.discard(held)


def test_a_failed_connect_passes_the_room_to_the_next_waiter(make_pool: Any) -> None:
    refused = free_port()

    def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
        gevent.sleep(0)  # yield like a real resolver, so the others queue meanwhile
        return [(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    pool = make_pool(max_conn_per_origin=1, resolve=resolve)
    key = ("http", "127.0.0.1", refused)
    workers = [gevent.spawn(pool.acquire, key) for _ in range(4)]
    gevent.joinall(workers, timeout=WAIT_S)
    assert all(isinstance(w.exception, OriginConnectError) for w in workers)
    s = check(pool)["totals"]
    assert s["connect_failures"] == 4 and s["waits"] == 3 and s["pending_connects"] == 0


def test_closing_the_pool_wakes_the_queue(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool(max_conn_per_origin=1)
    held = pool.acquire(origin.key)
    waiter = gevent.spawn(pool.acquire, origin.key)
    wait_for(lambda: totals(pool)["waiting"] == 1)
    pool.close()
    with pytest.raises(PoolClosed):
        waiter.get(timeout=WAIT_S)
    pool.release(held)
    assert held.closed
    check(pool)


def test_raising_the_cap_live_serves_the_queue(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool(max_conn_per_origin=1)
    held = pool.acquire(origin.key)
    waiters = [gevent.spawn(pool.acquire, origin.key) for _ in range(3)]
    wait_for(lambda: totals(pool)["waiting"] == 3)
    pool.reconfigure(
        enabled=True,
        max_idle_per_origin=64,
        idle_timeout_s=10.0,
        gc_interval_s=30.0,
        connect_timeout_s=10.0,
        max_conn_per_origin=4,
    )
    gevent.joinall(waiters, timeout=WAIT_S, raise_error=True)
    assert check(pool)["totals"]["in_use"] == 4
    for conn in [held, *(w.value for w in waiters)]:
        pool.discard(conn)


def test_an_expired_idle_socket_frees_its_room(
    origin: LoopbackOrigin, make_pool: Any, clock: FakeClock
) -> None:
    pool = make_pool(max_conn_per_origin=1, idle_timeout_s=5.0)
    conn = pool.acquire(origin.key)
    pool.release(conn)
    clock.advance(6)
    fresh = pool.acquire(origin.key)
    assert fresh is not conn and conn.closed
    s = check(pool)["totals"]
    assert (s["expired"], s["waits"]) == (1, 0)
    pool.discard(fresh)


def test_cap_events_are_warned_once_per_interval(
    origin: LoopbackOrigin, make_pool: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make_pool(max_conn_per_origin=1, queue_timeout_s=0.01)
    held = pool.acquire(origin.key)
    for _ in range(3):
        with pytest.raises(PoolQueueTimeout):
            pool.acquire(origin.key)
    warnings = [r for r in caplog.records if "origin pool" in r.getMessage()]
    assert len(warnings) == 2  # one "queued", one "queue_timeout"
    clock.advance(61)
    with pytest.raises(PoolQueueTimeout):
        pool.acquire(origin.key)
    warnings = [r.getMessage() for r in caplog.records if "origin pool" in r.getMessage()]
    assert len(warnings) == 4 and "2 more since the last warning" in warnings[-1]
    events = pool.stats()["events"]
    assert [e["kind"] for e in events] == ["queue_timeout", "queued", "queue_timeout", "queued"]
    assert events[0]["origin"] == format_origin(origin.key) and events[0]["repeats"] == 2
    pool.release(held)


# -- requests per connection -----------------------------------------------------------------


def test_a_socket_is_retired_after_max_requests(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool(max_requests_per_conn=3)
    first = pool.acquire(origin.key)
    peer = origin.peer_of(first)
    conn = first
    for _ in range(2):
        pool.release(conn)
        conn = pool.acquire(origin.key)
        assert conn is first
    pool.release(conn)  # the third exchange
    assert first.closed and sees_close(peer)
    s = check(pool)["totals"]
    assert (s["retired"], s["idle"], s["reused"]) == (1, 0, 2)
    again = pool.acquire(origin.key)
    assert again is not first
    pool.discard(again)


# -- the global idle cap ---------------------------------------------------------------------


def test_global_idle_cap_closes_the_least_recently_used_of_any_origin(
    origin: LoopbackOrigin, other: LoopbackOrigin, make_pool: Any
) -> None:
    pool = make_pool(max_idle_total=3)
    a1, a2 = pool.acquire(origin.key), pool.acquire(origin.key)
    b1, b2 = pool.acquire(other.key), pool.acquire(other.key)
    peer_a1 = origin.peer_of(a1)
    for conn in (a1, b1, a2):
        pool.release(conn)
        check(pool)
    pool.release(b2)  # a fourth idle socket: a1, the least recently released, goes
    assert a1.closed and not (b1.closed or a2.closed or b2.closed)
    assert sees_close(peer_a1)
    assert of(pool, origin)["evicted"] == 1 and of(pool, other)["evicted"] == 0
    # Reuse moves a socket to the recent end: b1 taken and released is now the newest.
    assert pool.acquire(other.key) is b2
    assert pool.acquire(other.key) is b1
    pool.release(b1)
    pool.release(b2)  # idle, oldest first: a2, b1, b2
    a3 = pool.connect(origin.key)
    pool.release(a3)  # a fourth: a2 goes, though a3 is of the same origin
    assert a2.closed and not (b1.closed or b2.closed or a3.closed)
    s = check(pool)
    assert s["totals"]["evicted"] == 2 and s["totals"]["idle"] == 3


def test_lowering_the_global_idle_cap_live_evicts_the_oldest(
    origin: LoopbackOrigin, other: LoopbackOrigin, make_pool: Any
) -> None:
    pool = make_pool()
    conns = [pool.acquire(o.key) for o in (origin, other, origin, other)]
    for conn in conns:
        pool.release(conn)
    pool.reconfigure(
        enabled=True,
        max_idle_per_origin=64,
        idle_timeout_s=10.0,
        gc_interval_s=30.0,
        connect_timeout_s=10.0,
        max_idle_total=1,
    )
    assert [c.closed for c in conns] == [True, True, True, False]
    assert check(pool)["totals"]["evicted"] == 3


def test_close_idle_gives_back_the_least_recently_used_idle_sockets(
    origin: LoopbackOrigin, other: LoopbackOrigin, make_pool: Any
) -> None:
    """Issue #22: the listener, out of descriptors at accept, asks the pool for some."""
    pool = make_pool()
    conns = [pool.acquire(o.key) for o in (origin, other, origin, other)]
    for conn in conns:
        pool.release(conn)
    fds = _open_fds()
    assert pool.close_idle(3) == 3
    assert [c.closed for c in conns] == [True, True, True, False]
    assert _open_fds() == fds - 3
    assert pool.close_idle(5) == 1
    assert pool.close_idle(5) == 0
    totals = check(pool)["totals"]
    assert (totals["evicted"], totals["idle"]) == (4, 0)


# -- everything at once ----------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("seed", [1, 2])
def test_stress_concurrent_operations_keep_every_invariant(
    seed: int, make_pool: Any, clock: FakeClock
) -> None:
    """300 greenlets across four origins (one refusing) take, use, release, discard and
    retry under every cap at once, while the test reconfigures and ages the pool; the
    invariants hold after every step and no file descriptor is left open."""
    rng = random.Random(seed)
    origins = [LoopbackOrigin() for _ in range(3)]
    keys = [o.key for o in origins] + [("http", "127.0.0.1", free_port())]
    fds_before = _open_fds()
    pool = make_pool(
        max_conn_per_origin=6,
        max_idle_per_origin=4,
        max_idle_total=8,
        max_requests_per_conn=5,
        queue_timeout_s=0.2,
    )
    outcomes: dict[str, int] = {}
    broken: list[BaseException] = []

    def worker(n: int) -> None:
        r = random.Random(seed * 1000 + n)
        for _ in range(4):
            key = r.choice(keys)
            try:
                conn = pool.connect(key) if r.random() < 0.2 else pool.acquire(key)
            except (OriginConnectError, PoolQueueTimeout) as exc:
                outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
                continue
            try:
                check(pool)
                conn.sock.sendall(b"x")  # real I/O: the origin's acceptor holds the peer
                gevent.sleep(0)
            except BaseException as exc:
                broken.append(exc)
                raise
            finally:
                (pool.release if r.random() < 0.8 else pool.discard)(conn)
            outcomes["served"] = outcomes.get("served", 0) + 1

    workers = [gevent.spawn(worker, n) for n in range(300)]
    for step in range(40):
        gevent.sleep(0)
        check(pool)
        if step % 10 == 5:
            clock.advance(rng.uniform(0, 12))
            pool.collect()
        if step % 13 == 7:
            pool.reconfigure(
                enabled=True,
                max_idle_per_origin=rng.randint(0, 4),
                idle_timeout_s=10.0,
                gc_interval_s=30.0,
                connect_timeout_s=10.0,
                max_idle_total=rng.randint(0, 8),
            )
    gevent.joinall(workers, timeout=60, raise_error=True)
    assert not broken
    s = check(pool)["totals"]
    assert s["in_use"] == 0 and s["waiting"] == 0 and s["pending_connects"] == 0
    assert outcomes["served"] > 300 and outcomes["OriginConnectError"] > 0
    pool.close()
    s = check(pool)["totals"]
    assert s["created"] == s["closed"]
    for o in origins:
        o.close()
    assert _open_fds() <= fds_before
