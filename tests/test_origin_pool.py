"""Tests for cproxy.origin: the origin pool against real loopback origins.

Every origin is a listening socket on 127.0.0.1 port 0; an acceptor greenlet keeps the accepted
sockets so a test can look at the origin's side of any pooled connection (did it see EOF?) or act
on it (close it, send stray bytes). Ageing uses a fake clock; waits are on events or socket
readiness, each bounded.
"""

from __future__ import annotations

import random
import socket as stdlib_socket
import time
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import gevent.socket as gsocket
import pytest

from cproxy.errors import (
    OriginConnectError,
    OriginConnectTimeout,
    OriginDNSError,
    OriginError,
    PoolClosed,
)
from cproxy.origin import OriginConnection, OriginPool, format_origin, origin_key

WAIT_S = 5.0  # bound on every wait for something that should happen at once on loopback


class FakeClock:
    """A clock the test moves by hand, for idle ageing."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LoopbackOrigin:
    """A listening socket on 127.0.0.1:0 whose accepted sockets the test can reach."""

    def __init__(self) -> None:
        self.listener = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port: int = self.listener.getsockname()[1]
        self.key = ("http", "127.0.0.1", self.port)
        self.peers: dict[Any, gsocket.socket] = {}
        self._accepted = gevent.event.Event()
        self._acceptor = gevent.spawn(self._accept_loop)

    def _accept_loop(self) -> None:
        while True:
            sock, addr = self.listener.accept()
            self.peers[addr] = sock
            self._accepted.set()

    def peer_of(self, conn: OriginConnection) -> gsocket.socket:
        """The origin's end of ``conn`` (waits, bounded, for the acceptor to take it)."""
        want = conn.sock.getsockname()
        with gevent.Timeout(WAIT_S):
            while want not in self.peers:
                self._accepted.clear()
                self._accepted.wait()
        return self.peers[want]

    def close(self) -> None:
        self._acceptor.kill()
        self.listener.close()
        for sock in self.peers.values():
            sock.close()


def sees_close(peer: gsocket.socket) -> bool:
    """Read the origin's end until EOF or reset, bounded; True when the proxy closed it."""
    peer.settimeout(WAIT_S)
    try:
        while peer.recv(4096):
            pass
    except ConnectionResetError:
        # The proxy closed with unread bytes in its buffer, so the kernel sent RST: still closed.
        return True
    except TimeoutError:
        return False
    return True


def wait_readable(conn: OriginConnection) -> None:
    """Wait, bounded, until the origin's FIN or bytes have reached the proxy's end."""
    gsocket.wait_read(conn.sock.fileno(), timeout=WAIT_S)


def free_port() -> int:
    """A loopback port nobody listens on: bind one, note it, close it."""
    s = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def assert_invariant(pool: OriginPool) -> None:
    stats = pool.stats()
    for name, s in [*stats["origins"].items(), ("totals", stats["totals"])]:
        assert s["created"] == s["closed"] + s["idle"] + s["in_use"], (name, s)
        assert min(s.values()) >= 0, (name, s)


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
        pool = OriginPool(**kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


# -- keys ------------------------------------------------------------------------------------


def test_origin_key_is_canonical() -> None:
    assert origin_key("HTTP", "Example.TEST", 80) == ("http", "example.test", 80)
    assert origin_key("http", "[::1]", 8080) == ("http", "::1", 8080)
    assert format_origin(("http", "::1", 8080)) == "http://[::1]:8080"
    with pytest.raises(ValueError, match="port"):
        origin_key("http", "a.test", 0)


def test_acquire_normalises_the_key(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool()
    conn = pool.acquire(("HTTP", "127.0.0.1", origin.port))
    assert conn.key == origin.key
    pool.release(conn)
    again = pool.acquire(origin.key)
    assert again is conn
    pool.discard(again)


# -- fresh connections and reuse -------------------------------------------------------------


def test_fresh_connection_is_ready_to_use(
    origin: LoopbackOrigin, make_pool: Any, clock: FakeClock
) -> None:
    pool = make_pool()
    conn = pool.acquire(origin.key)
    assert conn.key == origin.key
    assert conn.uses == 0 and not conn.reused
    assert conn.created_at == clock.now
    assert conn.sock.getsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY) != 0
    assert conn.sock.gettimeout() is None
    # The socket really is connected to our origin: bytes go through both ways.
    peer = origin.peer_of(conn)
    conn.sock.sendall(b"ping")
    peer.settimeout(WAIT_S)
    assert peer.recv(4) == b"ping"
    pool.discard(conn)


def test_lifo_reuse_most_recently_released_first(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool()
    a, b, c = (pool.acquire(origin.key) for _ in range(3))
    for conn in (a, b, c):
        pool.release(conn)
    assert pool.stats()["origins"][format_origin(origin.key)]["idle"] == 3
    got = [pool.acquire(origin.key) for _ in range(3)]
    assert got == [c, b, a]
    assert all(conn.reused and conn.uses == 1 for conn in got)
    # The idle list is empty now, so the next one is fresh.
    fresh = pool.acquire(origin.key)
    assert fresh not in got and not fresh.reused
    stats = pool.stats()["totals"]
    assert stats["created"] == 4 and stats["reused"] == 3 and stats["in_use"] == 4
    for conn in [*got, fresh]:
        pool.discard(conn)
    assert_invariant(pool)


def test_connect_never_reuses(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool()
    conn = pool.acquire(origin.key)
    pool.release(conn)
    fresh = pool.connect(origin.key)
    assert fresh is not conn and not fresh.reused
    assert pool.stats()["totals"]["idle"] == 1
    pool.discard(fresh)


def test_max_idle_per_origin_is_enforced(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool(max_idle_per_origin=2)
    conns = [pool.acquire(origin.key) for _ in range(3)]
    peers = [origin.peer_of(c) for c in conns]
    for conn in conns:
        pool.release(conn)
    s = pool.stats()["origins"][format_origin(origin.key)]
    assert s["idle"] == 2 and s["dropped_full"] == 1 and s["closed"] == 1
    assert conns[2].closed
    assert sees_close(peers[2])
    assert_invariant(pool)


def test_origins_have_separate_idle_lists(make_pool: Any) -> None:
    one, two = LoopbackOrigin(), LoopbackOrigin()
    try:
        pool = make_pool(max_idle_per_origin=1)
        a, b = pool.acquire(one.key), pool.acquire(two.key)
        pool.release(a)
        pool.release(b)
        assert pool.acquire(two.key) is b
        assert pool.acquire(one.key) is a
        pool.discard(a)
        pool.discard(b)
        assert set(pool.stats()["origins"]) == {format_origin(one.key), format_origin(two.key)}
    finally:
        one.close()
        two.close()


# -- ageing ----------------------------------------------------------------------------------


def test_expired_idle_socket_is_never_handed_out(
    origin: LoopbackOrigin, make_pool: Any, clock: FakeClock
) -> None:
    pool = make_pool(idle_timeout_s=10.0)
    conn = pool.acquire(origin.key)
    peer = origin.peer_of(conn)
    pool.release(conn)
    clock.advance(10.0)  # exactly the timeout: still usable ("idle longer than" the timeout)
    assert pool.acquire(origin.key) is conn
    pool.release(conn)
    clock.advance(10.001)
    fresh = pool.acquire(origin.key)
    assert fresh is not conn and not fresh.reused
    assert conn.closed
    s = pool.stats()["totals"]
    assert s["expired"] == 1 and s["reused"] == 1
    assert sees_close(peer)
    pool.discard(fresh)
    assert_invariant(pool)


def test_collect_closes_only_expired_sockets(
    origin: LoopbackOrigin, make_pool: Any, clock: FakeClock
) -> None:
    pool = make_pool(idle_timeout_s=10.0)
    old, young = pool.acquire(origin.key), pool.acquire(origin.key)
    old_peer = origin.peer_of(old)
    pool.release(old)
    clock.advance(6)
    pool.release(young)
    clock.advance(5)  # old idle 11 s, young 5 s
    assert pool.collect() == 1
    assert sees_close(old_peer)
    assert not young.closed
    assert pool.collect() == 0
    assert pool.acquire(origin.key) is young
    pool.discard(young)
    assert pool.stats()["totals"]["expired"] == 1
    assert_invariant(pool)


def _closed_event(peer: gsocket.socket) -> gevent.event.Event:
    """An event set when the origin's end of a connection sees the proxy close it."""
    closed = gevent.event.Event()

    def watch() -> None:
        if sees_close(peer):
            closed.set()

    gevent.spawn(watch)
    return closed


def test_collector_greenlet_runs_on_its_own(
    origin: LoopbackOrigin, make_pool: Any, clock: FakeClock
) -> None:
    pool = make_pool(idle_timeout_s=10.0, gc_interval_s=0.01)
    conn = pool.acquire(origin.key)
    pool.release(conn)
    closed = _closed_event(origin.peer_of(conn))
    clock.advance(11)
    pool.start()
    assert pool.collector_running
    assert closed.wait(WAIT_S), "the collector did not close the expired socket"
    assert pool.stats()["totals"]["expired"] == 1
    pool.close()
    assert not pool.collector_running


def test_collector_picks_up_a_new_interval_without_restart(
    origin: LoopbackOrigin, make_pool: Any, clock: FakeClock
) -> None:
    pool = make_pool(idle_timeout_s=10.0, gc_interval_s=3600.0)
    pool.start()
    conn = pool.acquire(origin.key)
    pool.release(conn)
    closed = _closed_event(origin.peer_of(conn))
    clock.advance(11)
    # With the hour-long interval the socket would stay; the new interval must take effect now.
    pool.reconfigure(
        enabled=True,
        max_idle_per_origin=64,
        idle_timeout_s=10.0,
        gc_interval_s=0.01,
        connect_timeout_s=10.0,
    )
    assert closed.wait(WAIT_S), "the collector kept the old interval"


def test_collector_does_not_close_fresh_sockets(
    origin: LoopbackOrigin, make_pool: Any, clock: FakeClock
) -> None:
    pool = make_pool(idle_timeout_s=10.0, gc_interval_s=0.01)
    old, young = pool.acquire(origin.key), pool.acquire(origin.key)
    pool.release(old)
    clock.advance(5)
    pool.release(young)
    closed = _closed_event(origin.peer_of(old))
    clock.advance(6)  # old idle 11 s (expired), young idle 6 s
    pool.start()
    assert closed.wait(WAIT_S)
    assert not young.closed
    assert pool.acquire(origin.key) is young
    pool.discard(young)


# -- liveness at checkout --------------------------------------------------------------------


def test_socket_closed_by_origin_while_idle_is_replaced(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    pool = make_pool()
    conn = pool.acquire(origin.key)
    pool.release(conn)
    origin.peer_of(conn).close()
    wait_readable(conn)  # the origin's FIN has arrived
    fresh = pool.acquire(origin.key)
    assert fresh is not conn and not fresh.reused
    assert conn.closed
    assert pool.stats()["totals"]["dropped_dead"] == 1
    pool.discard(fresh)
    assert_invariant(pool)


def test_socket_with_unexpected_bytes_is_dropped(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool()
    conn = pool.acquire(origin.key)
    pool.release(conn)
    peer = origin.peer_of(conn)
    peer.sendall(b"HTTP/1.1 200 OK\r\n\r\n")  # a response nobody asked for
    wait_readable(conn)
    fresh = pool.acquire(origin.key)
    assert fresh is not conn
    assert pool.stats()["totals"]["dropped_dead"] == 1
    assert sees_close(peer)
    pool.discard(fresh)


def test_peer_state_of_an_idle_socket(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool()
    conn = pool.acquire(origin.key)
    assert conn.peer_state() == "ok"
    assert conn.sock.gettimeout() is None  # the peek restores blocking mode
    peer = origin.peer_of(conn)
    peer.sendall(b"x")
    wait_readable(conn)
    assert conn.peer_state() == "garbage"
    assert conn.sock.recv(1) == b"x"  # peeking consumed nothing
    peer.close()
    wait_readable(conn)
    assert conn.peer_state() == "eof"
    pool.discard(conn)
    assert conn.peer_state() == "error"


# -- disabled pool ---------------------------------------------------------------------------


def test_disabled_pool_always_connects_and_release_closes(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    pool = make_pool(enabled=False)
    first = pool.acquire(origin.key)
    peer = origin.peer_of(first)
    pool.release(first)
    assert first.closed
    assert sees_close(peer)
    second = pool.acquire(origin.key)
    assert second is not first and not second.reused
    pool.release(second)
    s = pool.stats()["totals"]
    assert s == {**s, "created": 2, "closed": 2, "idle": 0, "in_use": 0, "reused": 0}
    assert_invariant(pool)


# -- connect errors --------------------------------------------------------------------------


def test_connect_refused_is_origin_connect_error(make_pool: Any) -> None:
    port = free_port()
    pool = make_pool()
    with pytest.raises(OriginConnectError) as info:
        pool.acquire(("http", "127.0.0.1", port))
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "refused" in message.lower()
    assert info.value.status == 502
    s = pool.stats()["origins"][f"http://127.0.0.1:{port}"]
    assert s["connect_failures"] == 1 and s["pending_connects"] == 0 and s["created"] == 0


def test_dns_failure_is_origin_dns_error(make_pool: Any) -> None:
    def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
        raise gsocket.gaierror(stdlib_socket.EAI_NONAME, "Name or service not known")

    pool = make_pool(resolve=resolve)
    with pytest.raises(OriginDNSError) as info:
        pool.acquire(("http", "nosuch.test", 80))
    assert "nosuch.test:80" in str(info.value)
    assert "Name or service not known" in str(info.value)
    assert info.value.status == 502
    assert pool.stats()["totals"]["connect_failures"] == 1


def test_resolver_returning_nothing_is_origin_dns_error(make_pool: Any) -> None:
    pool = make_pool(resolve=lambda host, port: [])
    with pytest.raises(OriginDNSError, match=r"empty\.test:80"):
        pool.connect(("http", "empty.test", 80))


def _loopback_info(port: int) -> tuple[Any, ...]:
    return (gsocket.AF_INET, gsocket.SOCK_STREAM, gsocket.IPPROTO_TCP, "", ("127.0.0.1", port))


def test_each_resolved_address_is_tried_in_turn(origin: LoopbackOrigin, make_pool: Any) -> None:
    dead = free_port()
    pool = make_pool(resolve=lambda host, port: [_loopback_info(dead), _loopback_info(port)])
    conn = pool.acquire(("http", "multi.test", origin.port))
    assert conn.sock.getpeername() == ("127.0.0.1", origin.port)
    assert origin.peer_of(conn) is not None
    pool.discard(conn)
    assert pool.stats()["totals"]["connect_failures"] == 0


def test_all_addresses_refused_lists_each_cause(make_pool: Any) -> None:
    ports = [free_port(), free_port()]
    pool = make_pool(resolve=lambda host, port: [_loopback_info(p) for p in ports])
    with pytest.raises(OriginConnectError) as info:
        pool.acquire(("http", "multi.test", 80))
    message = str(info.value)
    assert message.startswith("cannot connect to multi.test:80")
    for p in ports:
        assert f"127.0.0.1:{p}" in message


def _full_backlog_listener() -> tuple[gsocket.socket, list[gsocket.socket]]:
    """A loopback listener that never accepts, with its backlog filled.

    Once the accept queue is full Linux drops further SYNs, so a new connect hangs until its
    timeout. Fills until a probe connect times out; returns the listener and the fillers.
    """
    listener = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers: list[gsocket.socket] = []
    for _ in range(64):
        s = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
        s.settimeout(0.2)
        fillers.append(s)
        try:
            s.connect(listener.getsockname())
        except TimeoutError:
            return listener, fillers
    for s in fillers:
        s.close()
    listener.close()
    pytest.skip("this kernel accepted 64 connects on a listen(0) socket; cannot force a timeout")


def test_connect_timeout_on_loopback_with_full_backlog(make_pool: Any) -> None:
    listener, fillers = _full_backlog_listener()
    try:
        port = listener.getsockname()[1]
        pool = make_pool(connect_timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(OriginConnectTimeout) as info:
            pool.acquire(("http", "127.0.0.1", port))
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < WAIT_S
        assert f"127.0.0.1:{port}" in str(info.value) and "timed out" in str(info.value)
        assert info.value.status == 504
        s = pool.stats()["totals"]
        assert s["connect_failures"] == 1 and s["pending_connects"] == 0
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_one_timeout_budget_covers_every_address(make_pool: Any) -> None:
    listener, fillers = _full_backlog_listener()
    try:
        port = listener.getsockname()[1]
        # Three black-holed addresses: a budget per address would take 0.9 s or more.
        pool = make_pool(connect_timeout_s=0.3, resolve=lambda host, p: [_loopback_info(port)] * 3)
        started = time.monotonic()
        with pytest.raises(OriginConnectTimeout):
            pool.connect(("http", "slow.test", port))
        assert time.monotonic() - started < 0.8
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_resolution_that_hangs_is_a_connect_timeout(make_pool: Any) -> None:
    never = gevent.event.Event()

    def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
        never.wait()  # a resolver that never answers; the pool's budget must cut it off
        raise AssertionError("unreachable")

    pool = make_pool(connect_timeout_s=0.1, resolve=resolve)
    with pytest.raises(OriginConnectTimeout, match=r"resolving slow\.test:80 timed out"):
        pool.acquire(("http", "slow.test", 80))
    assert pool.stats()["totals"]["pending_connects"] == 0


def test_pending_connects_counts_greenlets_waiting_to_connect(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    arrived, go = gevent.event.Event(), gevent.event.Event()
    waiting = 0

    def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
        nonlocal waiting
        waiting += 1
        if waiting == 5:
            arrived.set()
        go.wait()
        return [_loopback_info(port)]

    pool = make_pool(resolve=resolve)
    workers = [gevent.spawn(pool.acquire, origin.key) for _ in range(5)]
    assert arrived.wait(WAIT_S)
    s = pool.stats()["totals"]
    assert s["pending_connects"] == 5 and s["created"] == 0
    go.set()
    gevent.joinall(workers, timeout=WAIT_S, raise_error=True)
    conns = [w.value for w in workers]
    assert len(set(conns)) == 5
    s = pool.stats()["totals"]
    assert s["pending_connects"] == 0 and s["created"] == 5 and s["in_use"] == 5
    for conn in conns:
        pool.release(conn)
    assert pool.stats()["totals"]["idle"] == 5


# -- reconfigure and close -------------------------------------------------------------------


def _settings(**changes: Any) -> dict[str, Any]:
    base = {
        "enabled": True,
        "max_idle_per_origin": 64,
        "idle_timeout_s": 10.0,
        "gc_interval_s": 30.0,
        "connect_timeout_s": 10.0,
    }
    return {**base, **changes}


def test_reconfigure_trims_oldest_idle_above_new_max(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    pool = make_pool(max_idle_per_origin=4)
    conns = [pool.acquire(origin.key) for _ in range(4)]
    peers = [origin.peer_of(c) for c in conns]
    for conn in conns:
        pool.release(conn)
    pool.reconfigure(**_settings(max_idle_per_origin=1))
    assert [c.closed for c in conns] == [True, True, True, False]
    for peer in peers[:3]:
        assert sees_close(peer)
    s = pool.stats()["totals"]
    assert s["idle"] == 1 and s["dropped_full"] == 3
    assert pool.max_idle_per_origin == 1
    assert pool.acquire(origin.key) is conns[3]
    pool.discard(conns[3])
    assert_invariant(pool)


def test_reconfigure_disable_closes_all_idle(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool()
    conns = [pool.acquire(origin.key) for _ in range(3)]
    for conn in conns:
        pool.release(conn)
    pool.reconfigure(**_settings(enabled=False))
    assert all(c.closed for c in conns)
    assert pool.stats()["totals"]["idle"] == 0
    assert not pool.enabled
    fresh = pool.acquire(origin.key)
    pool.release(fresh)
    assert fresh.closed
    assert_invariant(pool)


def test_reconfigure_rejects_bad_values_and_changes_nothing(make_pool: Any) -> None:
    pool = make_pool(max_idle_per_origin=5)
    with pytest.raises(ValueError, match="connect_timeout_s"):
        pool.reconfigure(**_settings(max_idle_per_origin=1, connect_timeout_s=0))
    assert pool.max_idle_per_origin == 5
    with pytest.raises(ValueError, match="max_idle_per_origin"):
        OriginPool(max_idle_per_origin=-1)


def test_close_then_acquire_raises_pool_closed(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool()
    idle, busy = pool.acquire(origin.key), pool.acquire(origin.key)
    idle_peer = origin.peer_of(idle)
    pool.release(idle)
    pool.close()
    assert idle.closed and sees_close(idle_peer)
    with pytest.raises(PoolClosed):
        pool.acquire(origin.key)
    with pytest.raises(PoolClosed):
        pool.connect(origin.key)
    with pytest.raises(PoolClosed):
        pool.start()
    # A connection still in use when the pool closed is closed when it comes back.
    assert not busy.closed
    pool.release(busy)
    assert busy.closed
    assert_invariant(pool)


def test_close_while_connecting_does_not_leak_the_socket(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    arrived, go = gevent.event.Event(), gevent.event.Event()

    def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
        arrived.set()
        go.wait()
        return [_loopback_info(port)]

    pool = make_pool(resolve=resolve)
    worker = gevent.spawn(pool.acquire, origin.key)
    assert arrived.wait(WAIT_S)
    pool.close()
    go.set()
    worker.join(timeout=WAIT_S)
    assert isinstance(worker.exception, PoolClosed)
    s = pool.stats()["totals"]
    assert s["created"] == 0 and s["in_use"] == 0 and s["pending_connects"] == 0


# -- misuse and accounting -------------------------------------------------------------------


def test_release_twice_is_refused(origin: LoopbackOrigin, make_pool: Any) -> None:
    pool = make_pool()
    conn = pool.acquire(origin.key)
    pool.release(conn)
    with pytest.raises(ValueError, match="released twice"):
        pool.release(conn)
    assert pool.stats()["totals"]["idle"] == 1


def test_discard_counts_once_and_release_after_discard_is_ignored(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    pool = make_pool()
    conn = pool.acquire(origin.key)
    peer = origin.peer_of(conn)
    pool.discard(conn)
    pool.discard(conn)
    pool.release(conn)
    s = pool.stats()["totals"]
    assert s["discarded"] == 1 and s["closed"] == 1 and s["idle"] == 0
    assert sees_close(peer)


def test_closing_a_connection_directly_keeps_the_counts(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    pool = make_pool()
    conn = pool.acquire(origin.key)
    conn.close()
    s = pool.stats()["totals"]
    assert s["in_use"] == 0 and s["closed"] == 1 and s["discarded"] == 0
    assert_invariant(pool)


def test_tracked_origins_are_bounded_but_totals_kept(make_pool: Any) -> None:
    def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
        raise gsocket.gaierror(stdlib_socket.EAI_NONAME, "Name or service not known")

    pool = make_pool(resolve=resolve)
    pool.max_tracked_origins = 8
    for i in range(50):
        with pytest.raises(OriginDNSError):
            pool.acquire(("http", f"host{i}.test", 80))
    stats = pool.stats()
    assert len(stats["origins"]) <= 8
    assert stats["totals"]["connect_failures"] == 50


def test_origins_with_open_sockets_are_never_forgotten(
    origin: LoopbackOrigin, make_pool: Any
) -> None:
    def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
        if host == "127.0.0.1":
            return [_loopback_info(port)]
        raise gsocket.gaierror(stdlib_socket.EAI_NONAME, "Name or service not known")

    pool = make_pool(resolve=resolve)
    pool.max_tracked_origins = 4
    conn = pool.acquire(origin.key)
    pool.release(conn)
    for i in range(20):
        with pytest.raises(OriginDNSError):
            pool.acquire(("http", f"host{i}.test", 80))
    assert pool.stats()["origins"][format_origin(origin.key)]["idle"] == 1
    assert pool.acquire(origin.key) is conn
    pool.discard(conn)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_stats_invariant_after_mixed_workload(seed: int, make_pool: Any, clock: FakeClock) -> None:
    rng = random.Random(seed)
    origins = [LoopbackOrigin(), LoopbackOrigin()]
    refused = ("http", "127.0.0.1", free_port())
    pool = make_pool(max_idle_per_origin=3, idle_timeout_s=10.0)
    held: list[OriginConnection] = []
    try:
        for _ in range(300):
            op = rng.choice(
                [
                    *("acquire", "acquire", "connect", "release", "release", "discard"),
                    *("advance", "collect", "origin_closes", "close_direct", "refused"),
                    "reconfigure",
                ]
            )
            if op in ("acquire", "connect") and len(held) < 12:
                key = rng.choice(origins).key
                held.append(getattr(pool, op)(key))
            elif op in ("release", "discard", "close_direct") and held:
                conn = held.pop(rng.randrange(len(held)))
                if op == "close_direct":
                    conn.close()
                else:
                    getattr(pool, op)(conn)
            elif op == "advance":
                clock.advance(rng.uniform(0, 6))
            elif op == "collect":
                pool.collect()
            elif op == "origin_closes":
                o = rng.choice(origins)
                if o.peers:
                    o.peers[rng.choice(list(o.peers))].close()
            elif op == "refused":
                with pytest.raises(OriginError):
                    pool.acquire(refused)
            elif op == "reconfigure":
                pool.reconfigure(
                    **_settings(
                        enabled=rng.random() < 0.8,
                        max_idle_per_origin=rng.randint(0, 4),
                        idle_timeout_s=10.0,
                    )
                )
            assert_invariant(pool)
            totals = pool.stats()["totals"]
            assert totals["in_use"] == len(held)
            assert all(
                s["idle"] <= pool.max_idle_per_origin for s in pool.stats()["origins"].values()
            )
        for conn in held:
            pool.release(conn)
        pool.close()
        assert_invariant(pool)
        totals = pool.stats()["totals"]
        assert totals["idle"] == 0 and totals["in_use"] == 0
        assert totals["created"] == totals["closed"] > 0
    finally:
        for o in origins:
            o.close()
