"""The proxy is not a way into its host or its network (issue #10, DESIGN.md §5 rule 10).

Through the running proxy: a plain HTTP request reaches only SafePorts; every connection
cproxy opens (forwarding, a retry, a mapping rule's target, a CONNECT tunnel, a pooled
socket reused for another client) is checked on the address it connects to, after the
one lookup, so a name that resolves somewhere refused (DNS rebinding) gets a 403 naming
the rule and nothing is connected.

Nothing here leaves the machine. Names are answered by the pool's resolver hook (or are
``localhost``), and whatever address the old code would have connected to is the local
recording origin's. "A client that is not on loopback" is a client at 127.0.0.2 with
LoopbackDestinations narrowed to 127.0.0.1/32 ::1/128: the same rule, with a real second
source address.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cproxy.cache.urlkey import normalise_url
from cproxy.directives import config_with
from cproxy.server.destinations import LoopbackOrigins
from tests.hostile import (
    Exchange,
    OriginConn,
    RecordingOrigin,
    Script,
    exchange,
    keep_alive,
    parse_responses,
    read_all,
)
from tests.redisserver import RedisServer
from tests.support import WAIT_S, ProxyThread, start_proxy, wait_for

NARROW_LOOPBACK = {"LoopbackDestinations": "127.0.0.1/32 ::1/128"}


@pytest.fixture
def origin() -> Iterator[RecordingOrigin]:
    with RecordingOrigin() as o:
        yield o


def get(url: str, *fields: str, method: str = "GET") -> bytes:
    authority = url.split("/")[2] if "://" in url else url
    lines = [f"{method} {url} HTTP/1.1", f"Host: {authority}", *fields, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange_from(source_ip: str, port: int, data: bytes) -> Exchange:
    """`exchange` from the client address ``source_ip`` (a loopback alias)."""
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(WAIT_S)
        s.bind((source_ip, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(data)
        raw, closed = read_all(s)
    answers, leftover = parse_responses(raw, eof=closed)
    return Exchange(answers, raw, closed, leftover)


def resolve_to(proxy: ProxyThread, answers: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Make the pool's resolver answer ``answers`` (and anything else with nothing that
    exists); returns the list of names looked up, in order."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
        asked.append(host)
        out = []
        for ip, p in answers.get(host, []):
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            sockaddr = (ip, p, 0, 0) if family == socket.AF_INET6 else (ip, p)
            out.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        if not out:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return out

    proxy.runtime.pool.resolve = resolve
    return asked


def pool_totals(proxy: ProxyThread) -> dict[str, int]:
    totals: dict[str, int] = proxy.call(lambda: proxy.runtime.pool.stats()["totals"])
    return totals


def refused(ex: Exchange, rule: str) -> bool:
    return ex.statuses == [403] and rule.encode() in ex.answers[0].body


# -- ports ---------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [25, 22, 6, 1023])
def test_plain_http_only_to_safe_ports(port: int) -> None:
    with start_proxy() as proxy:
        ex = exchange(proxy.port, get(f"http://127.0.0.1:{port}/"))
    assert refused(ex, "SafePorts"), ex.raw[:300]


def test_safe_ports_is_obeyed_and_a_mapping_target_is_checked_too(
    origin: RecordingOrigin,
) -> None:
    with start_proxy(SafePorts="80 443") as proxy:
        ex = exchange(proxy.port, get(origin.url("/x")))
        assert refused(ex, "SafePorts"), ex.raw[:300]
    rules = f"Proxy /app/* http://127.0.0.1:{origin.port}/*"
    with start_proxy(SafePorts="80 443", MappingRules=rules) as proxy:
        ex = exchange(
            proxy.port, b"GET /app/x HTTP/1.1\r\nHost: cproxy\r\nConnection: close\r\n\r\n"
        )
        assert refused(ex, "SafePorts"), ex.raw[:300]
    origin.sync()
    assert origin.connections == 0
    with start_proxy(SafePorts=f"80 {origin.port - 1}-{origin.port}") as proxy:
        assert exchange(proxy.port, get(origin.url("/x"))).statuses == [200]


# -- refused addresses, literal and resolved -------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["169.254.169.254", "[fe80::1]", "[::ffff:169.254.169.254]", "0.0.0.0", "[::]", "0.1.2.3"],
)
def test_link_local_and_unspecified_destinations_are_refused(
    origin: RecordingOrigin, host: str
) -> None:
    with start_proxy() as proxy:
        # Should the old code connect anywhere, it connects to the local origin.
        everything = {h: [("127.0.0.1", origin.port)] for h in (host, host.strip("[]"))}
        resolve_to(proxy, everything)
        ex = exchange(proxy.port, get(f"http://{host}:{origin.port}/latest/meta-data/"))
    assert refused(ex, "RefusedDestinations"), ex.raw[:300]
    origin.sync()
    assert origin.connections == 0


def test_a_name_resolving_to_a_refused_address_is_refused_before_connecting(
    origin: RecordingOrigin,
) -> None:
    """DNS rebinding: the name is harmless, its address is not. 0.0.0.0 is where Linux
    connects to the host itself: the old code reached the origin through it."""
    with start_proxy() as proxy:
        asked = resolve_to(proxy, {"rebind.test": [("0.0.0.0", origin.port)]})
        ex = exchange(proxy.port, get(f"http://rebind.test:{origin.port}/"))
    assert refused(ex, "RefusedDestinations"), ex.raw[:300]
    assert asked == ["rebind.test"]  # one lookup, and the connection would use its answer
    origin.sync()
    assert origin.connections == 0


def test_each_address_is_checked_and_only_admitted_ones_are_connected(
    origin: RecordingOrigin,
) -> None:
    with RecordingOrigin() as decoy, start_proxy() as proxy:
        # The refused address comes first and leads to a listening decoy.
        answers = [("0.0.0.0", decoy.port), ("127.0.0.1", origin.port)]
        resolve_to(proxy, {"mixed.test": answers})
        ex = exchange(proxy.port, get(f"http://mixed.test:{origin.port}/"))
        assert ex.statuses == [200]
        decoy.sync()
        assert decoy.connections == 0 and origin.connections == 1


def test_a_retry_is_checked_on_its_own_lookup(origin: RecordingOrigin) -> None:
    """The first lookup is allowed; the socket goes stale; the retry's lookup now answers
    an address that is refused: the retry is refused, not connected."""

    def first_then_drop(conn: OriginConn) -> None:
        if conn.read_request() is None:
            return
        conn.reply(b"one")
        conn.read_request()  # the second request on the pooled socket: close, no answer
        conn.sock.close()

    with RecordingOrigin(first_then_drop) as flaky, start_proxy(Caching="off") as proxy:
        answers = {"flaky.test": [("127.0.0.1", flaky.port)]}
        asked = resolve_to(proxy, answers)
        url = f"http://flaky.test:{flaky.port}/"
        with contextlib.closing(socket.create_connection(("127.0.0.1", proxy.port))) as s:
            s.sendall(get(url).replace(b"Connection: close\r\n", b""))
            first, _ = parse_responses(s.recv(65536), eof=False)
        assert [a.status for a in first] == [200]
        answers["flaky.test"] = [("0.0.0.0", flaky.port)]  # rebound
        ex = exchange(proxy.port, get(url))
        assert refused(ex, "RefusedDestinations"), ex.raw[:300]
        assert asked == ["flaky.test", "flaky.test"]
        flaky.sync()
        assert flaky.connections == 1


# -- loopback destinations for loopback clients only -------------------------------------------


def test_loopback_destinations_only_for_clients_on_loopback(origin: RecordingOrigin) -> None:
    with start_proxy(**NARROW_LOOPBACK) as proxy:
        ex = exchange_from("127.0.0.2", proxy.port, get(origin.url("/x")))
        assert refused(ex, "LoopbackDestinations"), ex.raw[:300]
        # A name for loopback, resolved by the real resolver from /etc/hosts.
        ex = exchange_from("127.0.0.2", proxy.port, get(f"http://localhost:{origin.port}/x"))
        assert refused(ex, "LoopbackDestinations"), ex.raw[:300]
        origin.sync()
        assert origin.connections == 0
        # A client on those networks reaches it.
        assert exchange_from("127.0.0.1", proxy.port, get(origin.url("/x"))).statuses == [200]


def test_a_pooled_socket_is_checked_again_for_another_client(origin: RecordingOrigin) -> None:
    with start_proxy(Caching="off", **NARROW_LOOPBACK) as proxy:
        # A name, so that no literal check comes first: the pooled socket is what is checked.
        resolve_to(proxy, {"pooled.test": [("127.0.0.1", origin.port)]})
        url = f"http://pooled.test:{origin.port}/x"
        with contextlib.closing(socket.create_connection(("127.0.0.1", proxy.port))) as s:
            s.sendall(get(url).replace(b"Connection: close\r\n", b""))
            answers, _ = parse_responses(s.recv(65536), eof=False)
        assert [a.status for a in answers] == [200]
        # Released to the pool just after the answer went out.
        wait_for(lambda: pool_totals(proxy)["idle"] == 1, WAIT_S, "an idle socket")
        before = pool_totals(proxy)
        ex = exchange_from("127.0.0.2", proxy.port, get(url))
        after = pool_totals(proxy)
    assert refused(ex, "LoopbackDestinations"), ex.raw[:300]
    assert len(origin.requests()) == 1
    # It was the pooled socket that was checked (and closed), not a new one.
    assert after["reused"] == before["reused"] + 1 and after["created"] == before["created"]


def test_a_pooled_socket_is_checked_again_after_the_policy_changes(
    origin: RecordingOrigin,
) -> None:
    """A reused socket skips the check its peer passed for the same client, but only under
    the same policy: after a reload that refuses its address, it is checked (and closed)."""
    with start_proxy(Caching="off") as proxy:
        resolve_to(proxy, {"pooled.test": [("127.0.0.1", origin.port)]})
        url = f"http://pooled.test:{origin.port}/x"
        for _ in range(2):  # opened, then reused: both for this client under this policy
            with contextlib.closing(socket.create_connection(("127.0.0.1", proxy.port))) as s:
                s.sendall(get(url).replace(b"Connection: close\r\n", b""))
                answers, _ = parse_responses(s.recv(65536), eof=False)
            assert [a.status for a in answers] == [200]
            wait_for(lambda: pool_totals(proxy)["idle"] == 1, WAIT_S, "an idle socket")
        new = config_with(proxy.runtime.config, {"RefusedDestinations": "127.0.0.1/32"})
        assert proxy.call(lambda: proxy.runtime.apply(new)) == []
        before = pool_totals(proxy)
        ex = exchange_from("127.0.0.1", proxy.port, get(url))
        after = pool_totals(proxy)
    assert refused(ex, "RefusedDestinations"), ex.raw[:300]
    assert len(origin.requests()) == 2
    assert after["reused"] == before["reused"] + 1 and after["created"] == before["created"]


def test_connect_tunnels_are_checked_on_the_resolved_address(origin: RecordingOrigin) -> None:
    target = f"localhost:{origin.port}"
    with start_proxy(ConnectPorts=str(origin.port), **NARROW_LOOPBACK) as proxy:
        ex = exchange_from("127.0.0.2", proxy.port, get(target, method="CONNECT"))
        assert refused(ex, "LoopbackDestinations"), ex.raw[:300]
        origin.sync()
        assert origin.connections == 0
        here = [("127.0.0.1", origin.port)]
        resolve_to(proxy, {"tunnel.test": [("0.0.0.0", origin.port)], "127.0.0.1": here})
        ex = exchange(proxy.port, get(f"tunnel.test:{origin.port}", method="CONNECT"))
        assert refused(ex, "RefusedDestinations"), ex.raw[:300]
        origin.sync()
        assert origin.connections == 0
        ex = exchange(proxy.port, get(f"127.0.0.1:{origin.port}", method="CONNECT"), timeout_s=1)
        assert ex.raw.startswith(b"HTTP/1.1 200 ")


def fresh(conn: OriginConn) -> None:
    keep_alive(b"local secret", "Cache-Control: max-age=600\r\n")(conn)


@pytest.mark.parametrize("name", [None, "cached.test"])
@pytest.mark.parametrize("shape", ["fast lane", "general path"])
def test_a_stored_response_of_a_loopback_service_is_not_served_to_other_clients(
    name: str | None, shape: str
) -> None:
    """A loopback client's fetch from a loopback-only service is stored; a client that may
    not reach that service gets 403, not the stored copy, on the fast lane (a plain GET)
    and on the general path (here: Connection: close), by address or by name."""
    with RecordingOrigin(fresh) as origin, start_proxy(**NARROW_LOOPBACK) as proxy:
        if name is not None:
            resolve_to(proxy, {name: [("127.0.0.1", origin.port)]})
        url = f"http://{name or '127.0.0.1'}:{origin.port}/x"
        plain = get(url).replace(b"Connection: close\r\n", b"")
        request = plain if shape == "fast lane" else get(url)
        assert exchange_from("127.0.0.1", proxy.port, get(url)).statuses == [200]
        ex = exchange_from("127.0.0.2", proxy.port, request)
        assert refused(ex, "LoopbackDestinations"), ex.raw[:300]
        assert b"local secret" not in ex.raw
        # The loopback client is still answered from the cache.
        again = exchange_from("127.0.0.1", proxy.port, get(url))
        assert again.statuses == [200] and again.answers[0].body == b"local secret"
        assert len(origin.requests()) == 1


def _held(release: threading.Event) -> Script:
    """`fresh`, its first answer held until ``release`` is set (the request is read, and
    recorded, at once): the fetch is under way until then."""

    def script(conn: OriginConn) -> None:
        if conn.read_request() is None:
            return
        assert release.wait(WAIT_S), "the test never released the origin"
        head = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nCache-Control: max-age=600\r\n\r\n"
        if conn.send(head.encode() + b"local secret"):
            fresh(conn)

    return script


def test_a_leader_fetching_from_a_loopback_service_is_not_shared_with_other_clients() -> None:
    """A client that may not reach loopback, collapsed behind a loopback client's fetch of
    a loopback-only service (it asked before the fetch said where it went), gets 403, not
    the leader's stored response."""
    release = threading.Event()
    with RecordingOrigin(_held(release)) as origin, start_proxy(**NARROW_LOOPBACK) as proxy:
        resolve_to(proxy, {"cached.test": [("127.0.0.1", origin.port)]})
        url = f"http://cached.test:{origin.port}/x"
        key = normalise_url(url)
        with ThreadPoolExecutor(2) as pool:
            leader = pool.submit(exchange_from, "127.0.0.1", proxy.port, get(url))
            origin.wait_requests(1)
            follower = pool.submit(exchange_from, "127.0.0.2", proxy.port, get(url))
            wait_for(
                lambda: proxy.call(lambda: proxy.runtime.cache.inflight[key].linkcount()) == 1,
                what="the other client to wait for the leader's fetch",
            )
            release.set()
            assert leader.result().statuses == [200]
            ex = follower.result()
        assert refused(ex, "LoopbackDestinations"), ex.raw[:300]
        assert b"local secret" not in ex.raw
        assert len(origin.requests()) == 1


def test_loopback_origins_keep_the_url_being_noted_when_they_forget() -> None:
    """Past its bound the set forgets URLs that are no longer stored; the URL being noted
    is not stored yet (its response is stored after the note), so it is kept."""
    stored: set[str] = set()
    origins = LoopbackOrigins(stored.__contains__)
    for i in range(5000):
        origins.add(f"http://a.test/{i}")
    assert "http://a.test/4096" in origins  # added as the set passed its bound of 4096
    assert len(origins) == 5000 - 4096


# -- the shared tier (SharedCache): a mark that travels with the value ----------------------

SHARED = {"SharedCacheTimeout": "2 seconds", "SharedCacheRetry": "200 ms", **NARROW_LOOPBACK}


@contextlib.contextmanager
def two_nodes(origin: RecordingOrigin, redis_url: str) -> Iterator[tuple[ProxyThread, ...]]:
    """Two cproxy nodes sharing one Redis, ``cached.test`` resolving to ``origin`` on both."""
    with (
        start_proxy(SharedCache=redis_url, **SHARED) as a,
        start_proxy(SharedCache=redis_url, **SHARED) as b,
    ):
        for node in (a, b):
            resolve_to(node, {"cached.test": [("127.0.0.1", origin.port)]})
            wait_for(lambda node=node: node.runtime.cache.tier.subscribed, what="a subscription")
        yield a, b


@pytest.mark.parametrize("first", ["other client", "loopback client"])
def test_another_nodes_copy_of_a_loopback_service_is_not_served_to_other_clients(
    tmp_path: Path, first: str
) -> None:
    """Node A stores a loopback client's fetch of a loopback-only service in the shared
    tier; on node B a client that may not reach loopback gets 403 (its own destination
    check, as on A), on the general path and, once B holds the copy, on the fast lane;
    B's loopback clients are served B's copy. ``first``: who asks B first (the copy comes
    in for a client that is refused, or for one that is served)."""
    with (
        RedisServer(tmp_path / "redis") as redis_server,
        RecordingOrigin(fresh) as origin,
        two_nodes(origin, redis_server.url) as (a, b),
    ):
        url = f"http://cached.test:{origin.port}/x"
        plain = get(url).replace(b"Connection: close\r\n", b"")
        assert exchange_from("127.0.0.1", a.port, get(url)).statuses == [200]
        wait_for(lambda: a.runtime.cache.tier.writes >= 1, what="A's shared-tier write")
        if first == "loopback client":
            served = exchange_from("127.0.0.1", b.port, get(url))
            assert served.answers[0].body == b"local secret", served.raw[:300]
        for request in (get(url), plain):  # the general path, then a plain GET
            ex = exchange_from("127.0.0.2", b.port, request)
            assert refused(ex, "LoopbackDestinations"), ex.raw[:300]
            assert b"local secret" not in ex.raw
            assert normalise_url(url) in b.runtime.cache.store  # B holds the copy
        again = exchange_from("127.0.0.1", b.port, get(url))
        assert again.statuses == [200] and again.answers[0].body == b"local secret"
        assert len(origin.requests()) == 1


def test_a_node_waiting_for_anothers_fetch_of_a_loopback_service_does_not_serve_it(
    tmp_path: Path,
) -> None:
    """Collapsed across nodes: B's client (off loopback) waits for A's lease on the URL;
    A's fetch from a loopback-only service is stored; B reads it, and refuses it."""
    release = threading.Event()
    with RedisServer(tmp_path / "redis") as redis_server, RecordingOrigin(_held(release)) as origin:
        with two_nodes(origin, redis_server.url) as (a, b), ThreadPoolExecutor(2) as pool:
            url = f"http://cached.test:{origin.port}/x"
            leader = pool.submit(exchange_from, "127.0.0.1", a.port, get(url))
            origin.wait_requests(1)  # A holds the URL's lease
            waiter = pool.submit(exchange_from, "127.0.0.2", b.port, get(url))
            wait_for(lambda: b.runtime.cache.tier.lease_waits == 1, what="B to wait for A")
            release.set()
            assert leader.result().statuses == [200]
            ex = waiter.result()
        assert refused(ex, "LoopbackDestinations"), ex.raw[:300]
        assert b"local secret" not in ex.raw
        assert len(origin.requests()) == 1
