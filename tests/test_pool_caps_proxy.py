"""The origin pool's caps through the running proxy, against real loopback origins:
MaxConnPerServer holds under 200 concurrent clients, every queued request is answered or
gets 503 with Retry-After after ServerConnQueueTimeout, a client that leaves is taken out
of the queue, MaxPersistRequestPerServer retires origin connections.
"""

from __future__ import annotations

import select
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.scripted import ScriptedConn, ScriptedOrigin
from tests.support import (
    WAIT_S,
    ProxyThread,
    raw_connection,
    read_response,
    start_proxy,
    wait_for,
)

NO_CACHE = {"Caching": "off"}


class GatedOrigin:
    """A keep-alive origin that holds every response until ``gate`` is set, and counts the
    connections open to it at once (accepted, not yet closed by the proxy).

    A connection the proxy closed counts as closed from the moment its FIN is here, not
    from when its handler thread gets round to reading it: the proxy may close a socket
    (MaxPersistRequestPerServer, MaxIdleSockets) and open the next one at once, and on
    loopback the FIN is queued before close() returns. So at each accept the others are
    looked at without waiting (readable and a peek of nothing: closed)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.socks: set[socket.socket] = set()
        self.peak = 0
        self.server = ScriptedOrigin(self._script)

    def _script(self, conn: ScriptedConn) -> None:
        with self.lock:
            self.socks = {s for s in self.socks if not _closed_by_peer(s)}
            self.socks.add(conn.sock)
            self.peak = max(self.peak, len(self.socks))
        try:
            while (req := conn.read_request(idle_timeout_s=60)) is not None:
                self.gate.wait(60)
                if not conn.reply(200, f"ok {req.target}".encode()):
                    return
        finally:
            with self.lock:
                self.socks.discard(conn.sock)

    def __enter__(self) -> GatedOrigin:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        self.server.__exit__(*exc)


def _closed_by_peer(sock: socket.socket) -> bool:
    """Has the other side closed ``sock`` (its FIN or a reset is here)? Never waits and
    reads nothing: poll's POLLRDHUP says so (Linux)."""
    watch = select.poll()
    try:
        watch.register(sock, select.POLLRDHUP)
    except (OSError, ValueError):
        return True  # already closed here
    return any(event & CLOSED_EVENTS for _, event in watch.poll(0))


CLOSED_EVENTS = select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL


def pool_totals(proxy: ProxyThread) -> dict[str, Any]:
    totals: dict[str, Any] = proxy.call(proxy.runtime.pool.stats)["totals"]
    assert totals["created"] == totals["closed"] + totals["idle"] + totals["in_use"], totals
    return totals


def get(proxy: ProxyThread, url: str) -> tuple[int, dict[str, str], bytes]:
    with raw_connection(proxy.port, timeout_s=60) as s:
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        with s.makefile("rb") as f:
            return read_response(f)


def test_an_origin_never_sees_more_than_max_conn_per_server_under_200_clients() -> None:
    with (
        GatedOrigin() as origin,
        start_proxy(
            **NO_CACHE, MaxConnPerServer="4", MaxActiveThreads="250", ServerConnQueueTimeout="60 s"
        ) as proxy,
        ThreadPoolExecutor(200) as clients,
    ):
        url = origin.server.url("/")
        futures = [clients.submit(get, proxy, f"{url}n{i}") for i in range(200)]
        # Hold the origin until most requests wait in the queue, then let everything go.
        wait_for(lambda: pool_totals(proxy)["waiting"] >= 150, 60, "150 queued requests")
        assert origin.peak == 4
        origin.gate.set()
        results = [f.result(timeout=60) for f in futures]
        totals = pool_totals(proxy)
    assert [status for status, _, _ in results] == [200] * 200
    assert sorted(body for _, _, body in results) == sorted(
        f"ok /n{i}".encode() for i in range(200)
    )
    assert origin.peak == 4 and origin.server.connections == 4
    assert totals["waits"] >= 150 and totals["wait_timeouts"] == 0 and totals["waiting"] == 0


def test_every_queued_request_is_answered_or_gets_503_after_the_queue_timeout() -> None:
    with (
        GatedOrigin() as origin,
        start_proxy(**NO_CACHE, MaxConnPerServer="2", ServerConnQueueTimeout="300 ms") as proxy,
        ThreadPoolExecutor(20) as clients,
    ):
        url = origin.server.url("/")
        futures = [clients.submit(get, proxy, f"{url}q{i}") for i in range(20)]
        # The 18 that found no connection time out while the origin holds the first two.
        wait_for(lambda: pool_totals(proxy)["wait_timeouts"] == 18, 30, "18 queue timeouts")
        origin.gate.set()
        results = [f.result(timeout=30) for f in futures]
        totals = pool_totals(proxy)
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] * 2 + [503] * 18
    for status, headers, body in results:
        if status == 503:
            assert headers["retry-after"] == "1"
            assert b"connection limit (2)" in body
    assert origin.peak == 2
    assert totals["waiting"] == 0 and totals["waits"] == 18


def test_a_client_that_goes_away_leaves_the_queue() -> None:
    with (
        GatedOrigin() as origin,
        start_proxy(**NO_CACHE, MaxConnPerServer="1", ServerConnQueueTimeout="60 s") as proxy,
        ThreadPoolExecutor(1) as first_client,
    ):
        first = first_client.submit(get, proxy, origin.server.url("/first"))
        wait_for(lambda: pool_totals(proxy)["in_use"] == 1, what="the first request sent")
        with raw_connection(proxy.port) as s:
            s.sendall(f"GET {origin.server.url('/gone')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            wait_for(lambda: pool_totals(proxy)["waiting"] == 1, what="the second queued")
            s.shutdown(socket.SHUT_WR)
            wait_for(lambda: pool_totals(proxy)["wait_abandoned"] == 1, what="it leaves")
        assert pool_totals(proxy)["waiting"] == 0
        origin.gate.set()
        assert first.result(timeout=WAIT_S)[0] == 200
    assert [r.target for r in origin.server.requests] == ["/first"]


def test_max_persist_request_per_server_retires_origin_connections() -> None:
    with (
        GatedOrigin() as origin,
        start_proxy(**NO_CACHE, MaxPersistRequestPerServer="3") as proxy,
    ):
        origin.gate.set()
        for i in range(7):
            assert get(proxy, origin.server.url(f"/r{i}"))[0] == 200
        totals = pool_totals(proxy)
    assert origin.server.connections == 3  # 3 + 3 + 1 requests
    assert totals["retired"] == 2 and totals["reused"] == 4


def test_pool_caps_apply_live(tmp_path: Any) -> None:
    with GatedOrigin() as origin, start_proxy(**NO_CACHE) as proxy:
        from cproxy.directives import config_with

        new = config_with(
            proxy.runtime.config,
            {"MaxConnPerServer": "3", "MaxIdleSockets": "2", "MaxPersistRequestPerServer": "9"},
        )
        assert proxy.call(lambda: proxy.runtime.apply(new)) == []
        pool = proxy.runtime.pool
        assert (pool.max_conn_per_origin, pool.max_idle_total, pool.max_requests_per_conn) == (
            3,
            2,
            9,
        )
        origin.gate.set()
        assert get(proxy, origin.server.url("/"))[0] == 200


def test_stress_300_requests_over_three_origins_under_every_cap_leak_nothing() -> None:
    """300 requests from 100 concurrent clients over three origins, with the connection
    cap, the request limit and the global idle cap all biting: every request answered, the
    caps held at each origin, the pool's counts add up, and once everything is stopped no
    socket is left open (/proc/self/fd; the proxy thread's gevent hub keeps its epoll and
    eventfd descriptors after the thread ends, so only sockets are counted)."""
    fds_before = open_sockets()
    origins = [GatedOrigin() for _ in range(3)]
    for o in origins:
        o.__enter__()
        o.gate.set()
    try:
        with (
            start_proxy(
                **NO_CACHE,
                MaxConnPerServer="3",
                MaxPersistRequestPerServer="5",
                MaxIdleSockets="4",
                ServerConnQueueTimeout="60 s",
                MaxActiveThreads="200",
            ) as proxy,
            ThreadPoolExecutor(100) as clients,
        ):
            urls = [origins[i % 3].server.url(f"/s{i}") for i in range(300)]
            results = [f.result(timeout=60) for f in [clients.submit(get, proxy, u) for u in urls]]
            totals = pool_totals(proxy)
            assert totals["in_use"] == 0 and totals["waiting"] == 0
            assert totals["idle"] <= 4 and totals["retired"] > 0
        assert [status for status, _, _ in results] == [200] * 300
        assert all(o.peak <= 3 for o in origins)
    finally:
        for o in origins:
            o.__exit__(None, None, None)
    assert open_sockets() <= fds_before


def open_sockets() -> int:
    import os

    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass  # the listing's own descriptor, closed already
    return count
