"""The origin pool's TLS connections through a parent proxy (issue #19, `via=`): a CONNECT
to the parent, then the handshake with the origin inside, resumed as a direct one, pooled
under (origin, parent) and never handed out for another origin, another parent or a
direct request. A second cproxy is the parent; TLS origins on loopback (trustme).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cproxy.errors import ParentRefusedTunnel
from cproxy.origin import OriginConnection, OriginPool
from cproxy.origin.tls import ParentHop, tls_policy
from tests.support import ProxyThread, start_proxy
from tests.test_pool_tls import exchange
from tests.tls import TestCA, TLSOrigin


@pytest.fixture
def pool(ca: TestCA) -> Iterator[OriginPool]:
    pool = OriginPool(tls_for=tls_policy(str(ca.ca_pem), frozenset()))
    yield pool
    pool.close()


@pytest.fixture
def parent(tls_origin: TLSOrigin) -> Iterator[ProxyThread]:
    with start_proxy(Hostname="parent", ConnectPorts=str(tls_origin.port)) as p:
        yield p


def key_of(origin: TLSOrigin) -> tuple[str, str, int]:
    return ("https", "localhost", origin.port)


def connects_seen(parent: ProxyThread) -> int:
    return parent.call(lambda: parent.runtime.requests_total)  # type: ignore[no-any-return]


def test_a_tunnelled_connection_is_reused_and_its_session_resumed(
    parent: ProxyThread, tls_origin: TLSOrigin, pool: OriginPool
) -> None:
    hop = ParentHop("127.0.0.1", parent.port)
    conn = pool.acquire(key_of(tls_origin), via=hop)
    assert isinstance(conn, OriginConnection) and not conn.sock.session_reused
    assert exchange(conn, "/one") == b"hello GET /one"  # a TLS 1.3 ticket arrives with it
    pool.release(conn)
    again = pool.acquire(key_of(tls_origin), via=hop)
    assert again is conn and again.reused
    pool.release(again)
    assert connects_seen(parent) == 1
    fresh = pool.connect(key_of(tls_origin), via=hop)
    assert isinstance(fresh, OriginConnection)
    assert fresh is not conn and fresh.sock.session_reused  # resumed through the tunnel
    assert exchange(fresh, "/two") == b"hello GET /two"
    pool.discard(fresh)
    assert connects_seen(parent) == 2 and tls_origin.handshakes == 2
    stats = pool.stats()["origins"]
    [label] = stats
    assert label.startswith(f"https://localhost:{tls_origin.port} (CA ")
    assert label.endswith(f" via 127.0.0.1:{parent.port}")


def test_a_tunnel_is_never_handed_out_for_another_route(
    pool: OriginPool, tls_origin: TLSOrigin, ca: TestCA
) -> None:
    with (
        TLSOrigin(ca.server_context()) as other,
        start_proxy(ConnectPorts=f"{tls_origin.port} {other.port}") as first_parent,
        start_proxy(ConnectPorts=f"{tls_origin.port}") as second_parent,
    ):
        hop = ParentHop("127.0.0.1", first_parent.port)
        tunnelled = pool.acquire(key_of(tls_origin), via=hop)
        assert isinstance(tunnelled, OriginConnection)
        exchange(tunnelled)
        pool.release(tunnelled)
        routes = [
            (key_of(tls_origin), None),  # the same origin, direct
            (key_of(other), hop),  # another origin, the same parent
            (key_of(tls_origin), ParentHop("127.0.0.1", second_parent.port)),  # another parent
        ]
        for key, via in routes:
            conn = pool.acquire(key, via=via)
            assert conn is not tunnelled and not conn.reused, (key, via)
            exchange(conn)
            pool.release(conn)
        # The tunnel is still there for its own route.
        assert pool.acquire(key_of(tls_origin), via=hop) is tunnelled
        pool.release(tunnelled)
        assert connects_seen(first_parent) == 2 and connects_seen(second_parent) == 1
        created = pool.stats()["totals"]["created"]
        pool.close()  # the tunnels end before the parents stop (no grace period to wait)
    assert tls_origin.handshakes == 3 and other.handshakes == 1
    assert created == 4


def test_a_refused_connect_raises_and_counts_a_connect_failure(
    pool: OriginPool, tls_origin: TLSOrigin
) -> None:
    with (
        start_proxy(ConnectPorts="443") as parent,
        pytest.raises(
            ParentRefusedTunnel, match=f"answered CONNECT localhost:{tls_origin.port} with 403"
        ),
    ):
        pool.acquire(key_of(tls_origin), via=ParentHop("127.0.0.1", parent.port))
    totals: dict[str, Any] = pool.stats()["totals"]
    assert (totals["connect_failures"], totals["created"], totals["in_use"]) == (1, 0, 0)


def test_only_https_origins_are_reached_via_a_parent(pool: OriginPool) -> None:
    """A plain request goes to a parent in absolute form (keyed by the parent): asking
    for a plain origin through a parent is a caller's mistake, never a direct connection."""
    hop = ParentHop("127.0.0.1", 3128)
    for call in (pool.acquire, pool.connect, pool.connect_http1):
        with pytest.raises(ValueError, match="only https origins"):
            call(("http", "127.0.0.1", 8080), via=hop)
    assert pool.stats()["totals"]["created"] == 0
