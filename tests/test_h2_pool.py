"""The pool's HTTP/2 side (issue #20), driven directly with a fake clock against the
scripted h2 origin (tests/h2origin.py): shared connections age out after ServerConnTimeout
like idle sockets, an idle one is checked with a PING before reuse, standby keeps one
shared connection, and the accounting invariant holds with HTTP/2 connections in it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cproxy.http import find_head_end, parse_request_head
from cproxy.origin import OriginPool
from cproxy.origin.h2stream import PING_AFTER_IDLE_S, H2Stream
from tests.h2origin import H2Origin
from tests.test_origin_pool import FakeClock
from tests.test_pool_caps import wait_for  # gevent-aware: the pool runs in this thread


@pytest.fixture
def h2origin() -> Iterator[H2Origin]:
    with H2Origin() as origin:
        yield origin


@pytest.fixture
def make_pool() -> Iterator[Any]:
    pools: list[OriginPool] = []

    def make(**kwargs: Any) -> OriginPool:
        pool = OriginPool(h2c_for=lambda key: True, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def key_of(origin: H2Origin) -> tuple[str, str, int]:
    return ("http", "127.0.0.1", origin.port)


def get(pool: OriginPool, origin: H2Origin, path: str) -> bytes:
    """One GET on a stream of the pool, read whole and ended."""
    stream = pool.acquire(key_of(origin))
    assert isinstance(stream, H2Stream)
    raw = f"GET {origin.url(path)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    req = parse_request_head(raw[: find_head_end(raw)])
    stream.send(req, b"", "test", None)
    resp, body = stream.head(lambda interim: None)
    assert resp.status == 200 and resp.version == 2
    while data := stream.recv_body():
        body += data
    stream.finish(clean=True)
    return body


def check(pool: OriginPool) -> dict[str, Any]:
    stats = pool.stats()
    for name, s in [*stats["origins"].items(), ("totals", stats["totals"])]:
        assert s["created"] == s["closed"] + s["idle"] + s["in_use"] + s["h2_connections"], (
            name,
            s,
        )
    return stats


def test_a_shared_connection_ages_out_like_an_idle_socket(
    h2origin: H2Origin, make_pool: Any
) -> None:
    clock = FakeClock()
    pool = make_pool(clock=clock, idle_timeout_s=10.0)
    assert get(pool, h2origin, "/small/a") == b"small /small/a"
    assert get(pool, h2origin, "/small/b") == b"small /small/b"
    totals = check(pool)["totals"]
    assert (totals["created"], totals["h2_connections"], totals["reused"]) == (1, 1, 1)
    clock.advance(5)
    assert pool.collect() == 0
    clock.advance(6)
    assert pool.collect() == 1
    wait_for(lambda: pool.stats()["totals"]["closed"] == 1)
    totals = check(pool)["totals"]
    assert (totals["expired"], totals["h2_connections"]) == (1, 0)
    assert get(pool, h2origin, "/small/c") == b"small /small/c"
    assert h2origin.connections == 2


def test_a_connection_idle_for_long_is_pinged_before_reuse(
    h2origin: H2Origin, make_pool: Any
) -> None:
    clock = FakeClock()
    pool = make_pool(clock=clock, idle_timeout_s=3600.0)
    get(pool, h2origin, "/small/a")
    get(pool, h2origin, "/small/b")
    assert h2origin.pings == 0  # busy connections are not pinged
    clock.advance(PING_AFTER_IDLE_S + 1)
    assert get(pool, h2origin, "/small/c") == b"small /small/c"
    assert h2origin.pings == 1 and h2origin.connections == 1


def test_standby_keeps_one_shared_connection(h2origin: H2Origin, make_pool: Any) -> None:
    pool = make_pool(standby=((key_of(h2origin), 3),))
    pool.start()
    wait_for(lambda: pool.stats()["totals"]["h2_connections"] == 1)
    assert get(pool, h2origin, "/small/a") == b"small /small/a"
    totals = check(pool)["totals"]
    # The pre-opened connection carried the request; no second one was opened for the
    # count of three, which is about sockets (one HTTP/2 connection does their work).
    assert totals["created"] == 1 and h2origin.connections == 1
