"""Connection racing (RFC 8305 Happy Eyeballs) and the dead-address memory (issue #24),
over real loopback sockets.

A black-holed address: a listener on 127.0.0.1:P with ``listen(0)`` and its accept queue
filled by one connection nobody accepts. The kernel then drops further SYNs (checked on this
machine, gVisor's netstack as much as Linux: the next connect waits until its timeout), which
is what a dead server in a DNS round robin or a broken IPv6 route looks like. The live
origin listens on 127.0.0.2:P (all of 127/8 is loopback), and a resolver the test injects
(the ``resolve`` every origin connection takes, `OriginPool.resolve` for the proxy) says the
name has both addresses.

No timed assertions: ordering is shown with a ConnectAttemptDelay so long that waiting for it
would overrun ConnectTimeout, and the only time bound is ConnectTimeout itself.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import pytest
import requests

from cproxy.directives import config_with
from cproxy.errors import DestinationRefused, OriginConnectError, OriginConnectTimeout
from cproxy.origin import OriginPool, default_resolve, open_socket
from cproxy.origin.deadaddrs import DeadAddresses
from cproxy.origin.eyeballs import CANCELLED, CONNECTED, FAILED, OVERTAKEN, interleave, race
from tests.support import FakeClock, Origin, start_proxy

WAIT_S = 10.0
LONG_DELAY_S = 60.0  # an attempt delay no test may wait for: it would overrun ConnectTimeout

Info = tuple[Any, ...]


def info(host: str, port: int) -> Info:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockaddr: tuple[Any, ...] = (host, port, 0, 0) if ":" in host else (host, port)
    return (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)


def resolver(*hosts: str) -> Any:
    """A resolver that gives every name ``hosts`` (in this order) on the asked port."""

    def resolve(host: str, port: int) -> list[Info]:
        return [info(h, port) for h in hosts]

    return resolve


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def _warm_hub() -> None:
    """The event loop opens descriptors of its own on first use (epoll, its wake-up
    pipe): let that happen before a test counts descriptors."""
    listener = LiveListener("127.0.0.1", 0)
    try:
        port = listener.sock.getsockname()[1]
        open_socket("127.0.0.1", port, timeout_s=WAIT_S, resolve=resolver("127.0.0.1")).close()
    finally:
        listener.close()


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


class BlackHole:
    """A listener whose accept queue is full, so that the kernel drops new SYNs."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.fillers: list[socket.socket] = []
        try:
            # An earlier test's TIME_WAIT on host:port must not make bind() fail.
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((host, port))
            self.listener.listen(0)
            self.port: int = self.listener.getsockname()[1]
            for _ in range(64):
                s = socket.socket(family, socket.SOCK_STREAM)
                self.fillers.append(s)
                s.settimeout(0.2)
                try:
                    s.connect((host, self.port))
                except TimeoutError:
                    s.close()
                    self.fillers.pop()
                    if self.fillers:
                        # This SYN was dropped: the queue is full (the probe is closed, so
                        # only the fillers remain).
                        return
                    # Even the first connect was slow (a loaded machine): try again.
            raise RuntimeError("the kernel accepted 64 connects on a listen(0) socket")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for s in self.fillers:
            s.close()
        self.listener.close()


class LiveListener:
    """A listener the kernel completes handshakes for (nobody needs to accept)."""

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.sock.listen(16)
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def on_one_port(
    dead: tuple[str, ...], live: tuple[str, ...] = (), origin_on: str | None = None
) -> Iterator[tuple[int, Origin | None]]:
    """Black holes on each ``dead`` host, listeners on each ``live`` host and a real HTTP
    origin on ``origin_on``, all on one port P (a name's addresses share its port); yields
    P and the origin. Another port when P is taken on one of the hosts."""
    for _ in range(20):
        with contextlib.ExitStack() as stack:
            try:
                first = BlackHole(dead[0])
                stack.callback(first.close)
                port = first.port
                for host in dead[1:]:
                    stack.callback(BlackHole(host, port).close)
                for host in live:
                    stack.callback(LiveListener(host, port).close)
                origin = stack.enter_context(Origin(origin_on, port)) if origin_on else None
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            yield port, origin
            return
    raise RuntimeError(f"no port free on all of {dead + live}")


@contextlib.contextmanager
def dead_and_live(dead_host: str = "127.0.0.1", live_host: str = "127.0.0.2") -> Iterator[int]:
    """A black hole on dead_host:P and a live listener on live_host:P; yields P."""
    with on_one_port((dead_host,), (live_host,)) as (port, _):
        yield port


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on (so a connect is refused)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# -- ordering (pure) ---------------------------------------------------------------------------


def test_interleave_alternates_families_starting_with_the_first() -> None:
    a6, b6, c6 = info("::1", 1), info("::2", 1), info("::3", 1)
    a4, b4 = info("127.0.0.1", 1), info("127.0.0.2", 1)
    assert interleave([a6, b6, c6, a4, b4]) == [a6, a4, b6, b4, c6]
    assert interleave([a4, b4, a6]) == [a4, a6, b4]
    assert interleave([a4, b4]) == [a4, b4]
    assert interleave([]) == []


def test_dead_addresses_go_last_until_they_expire() -> None:
    clock = FakeClock()
    dead = DeadAddresses(remember_s=600, clock=clock)
    items = [("10.0.0.1", 80), ("10.0.0.2", 80), ("10.0.0.3", 80)]
    dead.mark("10.0.0.1", 80)
    assert dead.order(items, lambda x: x) == [items[1], items[2], items[0]]
    # Another port of the same address is not dead: a refused port says nothing of others.
    assert not dead.is_dead("10.0.0.1", 443)
    clock.advance(599)
    assert dead.is_dead("10.0.0.1", 80)
    clock.advance(1)
    assert not dead.is_dead("10.0.0.1", 80)
    assert dead.order(items, lambda x: x) == items
    assert len(dead) == 0


def test_dead_addresses_success_clears_and_capacity_bounds() -> None:
    dead = DeadAddresses(remember_s=600, capacity=2, clock=FakeClock())
    dead.mark("10.0.0.1", 80)
    dead.mark("10.0.0.2", 80)
    dead.mark("10.0.0.3", 80)  # the least recently marked is forgotten
    assert dead.snapshot() == [("10.0.0.2", 80), ("10.0.0.3", 80)]
    dead.clear("10.0.0.2", 80)
    assert dead.snapshot() == [("10.0.0.3", 80)]
    dead.remember_s = 0  # off: forgets and remembers nothing
    dead.mark("10.0.0.4", 80)
    assert len(dead) == 0
    with pytest.raises(ValueError):
        DeadAddresses(remember_s=-1)


# -- racing ----------------------------------------------------------------------------------


def test_black_holed_first_address_loses_to_the_second() -> None:
    with dead_and_live() as port:
        before = open_fds()
        dead = DeadAddresses()
        sock = open_socket(
            "multi.test",
            port,
            timeout_s=WAIT_S,
            resolve=resolver("127.0.0.1", "127.0.0.2"),
            dead=dead,
        )
        try:
            assert sock.getpeername() == ("127.0.0.2", port)
            assert sock.gettimeout() is None  # blocking-with-gevent, as before
            # The loser (still in SYN_SENT) was closed: only the winner is left open.
            assert open_fds() == before + 1
        finally:
            sock.close()
        assert open_fds() == before
        # Overtaken by an address started after it: remembered as dead; the winner is not.
        assert dead.snapshot() == [("127.0.0.1", port)]


def test_race_reports_what_became_of_each_address() -> None:
    with dead_and_live() as port:
        refused = free_port("127.0.0.3")
        infos = [info("127.0.0.3", refused), info("127.0.0.1", port), info("127.0.0.2", port)]
        sock, attempts = race(infos, deadline=time.monotonic() + WAIT_S, attempt_delay_s=0.05)
        assert sock is not None
        sock.close()
        assert [a.kind for a in attempts] == [FAILED, OVERTAKEN, CONNECTED]
        assert "refused" in attempts[0].outcome.lower()
        assert all(a.sock is None for a in attempts)


def test_refused_first_address_falls_back_at_once() -> None:
    with dead_and_live() as port:
        # 127.0.0.3:P refuses. Were the next address started only after the attempt delay,
        # ConnectTimeout would run out first.
        resolve = resolver("127.0.0.3", "127.0.0.2")
        sock = open_socket(
            "multi.test", port, timeout_s=WAIT_S, resolve=resolve, attempt_delay_s=LONG_DELAY_S
        )
        assert sock.getpeername() == ("127.0.0.2", port)
        sock.close()


def test_black_hole_first_with_a_long_delay_times_out() -> None:
    """The control for the next test: without the memory, the long delay keeps the live
    address waiting, so ConnectTimeout runs out (the test below could fail)."""
    with dead_and_live() as port:
        before = open_fds()
        with pytest.raises(OriginConnectTimeout) as caught:
            open_socket(
                "multi.test",
                port,
                timeout_s=0.5,
                resolve=resolver("127.0.0.1", "127.0.0.2"),
                attempt_delay_s=LONG_DELAY_S,
            )
        message = str(caught.value)
        assert f"127.0.0.1:{port} timed out" in message
        assert f"127.0.0.2:{port} not tried" in message
        assert open_fds() == before


def test_dead_address_is_tried_last_on_the_next_request() -> None:
    with dead_and_live() as port:
        clock = FakeClock()
        dead = DeadAddresses(remember_s=600, clock=clock)
        resolve = resolver("127.0.0.1", "127.0.0.2")
        first = open_socket("multi.test", port, timeout_s=WAIT_S, resolve=resolve, dead=dead)
        first.close()
        # Now the live address goes first: no wait for the attempt delay, however long.
        for _ in range(3):
            again = open_socket(
                "multi.test",
                port,
                timeout_s=2.0,
                resolve=resolve,
                dead=dead,
                attempt_delay_s=LONG_DELAY_S,
            )
            assert again.getpeername() == ("127.0.0.2", port)
            again.close()
        # Remembered for DeadAddressTimeout only: then the black hole leads again.
        clock.advance(600)
        with pytest.raises(OriginConnectTimeout):
            open_socket(
                "multi.test",
                port,
                timeout_s=0.5,
                resolve=resolve,
                dead=dead,
                attempt_delay_s=LONG_DELAY_S,
            )
        # That timeout marked it again.
        assert dead.is_dead("127.0.0.1", port)


def test_a_success_clears_the_mark() -> None:
    with dead_and_live() as port:
        dead = DeadAddresses()
        dead.mark("127.0.0.2", port)
        sock = open_socket(
            "127.0.0.2", port, timeout_s=WAIT_S, resolve=resolver("127.0.0.2"), dead=dead
        )
        sock.close()
        assert not dead.is_dead("127.0.0.2", port)


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1 on this machine")
def test_both_families_black_holed_ipv6_first() -> None:
    with dead_and_live("::1", "127.0.0.1") as port:
        before = open_fds()
        # getaddrinfo's order (IPv6 first, as a system preferring it gives) is kept, and
        # the families alternate: ::1, 127.0.0.1, ::2 (never reached).
        resolve = resolver("::1", "::2", "127.0.0.1")
        dead = DeadAddresses()
        sock = open_socket("dual.test", port, timeout_s=WAIT_S, resolve=resolve, dead=dead)
        try:
            assert sock.family == socket.AF_INET
            assert sock.getpeername() == ("127.0.0.1", port)
            assert open_fds() == before + 1
        finally:
            sock.close()
        assert open_fds() == before
        assert dead.is_dead("::1", port)


def test_every_address_dead_times_out_naming_each() -> None:
    with on_one_port(("127.0.0.1", "127.0.0.2")) as (port, _):
        before = open_fds()
        dead = DeadAddresses()
        with pytest.raises(OriginConnectTimeout) as caught:
            open_socket(
                "dead.test",
                port,
                timeout_s=0.6,
                resolve=resolver("127.0.0.1", "127.0.0.2"),
                attempt_delay_s=0.1,
                dead=dead,
            )
        message = str(caught.value)
        assert message.startswith(f"connecting to dead.test:{port} timed out after 0.6 s")
        assert f"127.0.0.1:{port} timed out" in message
        assert f"127.0.0.2:{port} timed out" in message
        assert caught.value.status == 504
        assert open_fds() == before
        assert sorted(dead.snapshot()) == [("127.0.0.1", port), ("127.0.0.2", port)]


def test_every_address_refused_names_each() -> None:
    port = free_port()
    with pytest.raises(OriginConnectError) as caught:
        open_socket(
            "closed.test", port, timeout_s=WAIT_S, resolve=resolver("127.0.0.1", "127.0.0.2")
        )
    message = str(caught.value)
    assert message.startswith(f"cannot connect to closed.test:{port}: ")
    assert f"127.0.0.1:{port} Connection refused" in message
    assert f"127.0.0.2:{port} Connection refused" in message
    assert caught.value.status == 502


def test_policy_refusal_is_named_and_never_connected() -> None:
    port = free_port()

    def admit(address: str) -> None:
        if address == "127.0.0.3":
            raise DestinationRefused("Refusing to connect to 127.0.0.3.")

    with pytest.raises(OriginConnectError) as caught:
        open_socket(
            "mixed.test",
            port,
            timeout_s=WAIT_S,
            resolve=resolver("127.0.0.3", "127.0.0.1"),
            admit=admit,
        )
    message = str(caught.value)
    assert f"127.0.0.3:{port} refused by policy" in message
    assert f"127.0.0.1:{port} Connection refused" in message
    # Refused for every address: the policy's own 403, nothing connected.
    with pytest.raises(DestinationRefused):
        open_socket(
            "mixed.test", port, timeout_s=WAIT_S, resolve=resolver("127.0.0.3"), admit=admit
        )


def test_killed_caller_leaves_no_socket() -> None:
    with on_one_port(("127.0.0.1", "127.0.0.2", "127.0.0.3")) as (port, _):
        before = open_fds()
        resolved = gevent.event.Event()

        def resolve(host: str, p: int) -> list[Info]:
            resolved.set()
            return [info(h, p) for h in ("127.0.0.1", "127.0.0.2", "127.0.0.3")]

        worker = gevent.spawn(
            open_socket, "dead.test", port, timeout_s=WAIT_S, resolve=resolve, attempt_delay_s=0
        )
        assert resolved.wait(WAIT_S)
        gevent.idle()  # the worker is now waiting on its three attempts
        assert open_fds() == before + 3
        worker.kill(block=True, timeout=WAIT_S)
        assert worker.dead
        assert open_fds() == before
        # The caller's own timeout fires inside the race: the same.
        with pytest.raises(gevent.Timeout), gevent.Timeout(0.3):
            open_socket("dead.test", port, timeout_s=WAIT_S, resolve=resolve, attempt_delay_s=0.05)
        assert open_fds() == before


def test_attempts_started_after_the_winner_are_not_marked_dead() -> None:
    with on_one_port(("127.0.0.1", "127.0.0.3"), ("127.0.0.2",)) as (port, _):
        # A delay of 0 starts all three before any answers: the black hole started
        # before the winner was overtaken (dead), the one started after it was only
        # cancelled (no verdict).
        infos = [info("127.0.0.1", port), info("127.0.0.2", port), info("127.0.0.3", port)]
        sock, attempts = race(infos, deadline=time.monotonic() + WAIT_S, attempt_delay_s=0)
        assert sock is not None
        sock.close()
        assert [a.kind for a in attempts] == [OVERTAKEN, CONNECTED, CANCELLED]
        dead = DeadAddresses()
        sock = open_socket(
            "multi.test",
            port,
            timeout_s=WAIT_S,
            resolve=resolver("127.0.0.1", "127.0.0.2", "127.0.0.3"),
            attempt_delay_s=0,
            dead=dead,
        )
        sock.close()
        assert dead.snapshot() == [("127.0.0.1", port)]


# -- the pool --------------------------------------------------------------------------------


def test_pool_caps_count_only_the_winner() -> None:
    with dead_and_live() as port:
        pool = OriginPool(
            max_conn_per_origin=1,
            connect_timeout_s=WAIT_S,
            resolve=resolver("127.0.0.1", "127.0.0.2"),
        )
        try:
            before = open_fds()
            key = ("http", "multi.test", port)
            conn = pool.acquire(key)
            assert conn.peer_ip == "127.0.0.2"
            stats = pool.stats()["origins"][f"http://multi.test:{port}"]
            assert stats["created"] == 1 and stats["in_use"] == 1
            assert stats["pending_connects"] == 0 and stats["connect_failures"] == 0
            assert open_fds() == before + 1  # the race's loser is gone
            pool.release(conn)
            again = pool.acquire(key)  # the cap of 1 holds only the winner: reused
            assert again is conn and again.reused
            pool.release(again)
            assert pool.dead_addresses.is_dead("127.0.0.1", port)
        finally:
            pool.close()


# -- through the proxy: a mapping rule's target, a CONNECT tunnel, the error page --------------


@contextlib.contextmanager
def dead_and_live_origin() -> Iterator[tuple[int, Origin]]:
    """A black hole on 127.0.0.1:P and a real HTTP origin on 127.0.0.2:P."""
    with on_one_port(("127.0.0.1",), origin_on="127.0.0.2") as (port, origin):
        assert origin is not None
        yield port, origin


def test_mapping_rule_target_races(tmp_path: Any) -> None:
    with dead_and_live_origin() as (port, origin):
        rules = f"Proxy /app/* http://multi.test:{port}/*"
        with start_proxy(MappingRules=rules, ConnectTimeout="10 seconds") as proxy:
            proxy.runtime.pool.resolve = resolver("127.0.0.1", "127.0.0.2")
            r = requests.get(f"{proxy.url}/app/page", timeout=WAIT_S)
            assert r.status_code == 200
            assert r.text == "hello GET /page"
            assert proxy.call(lambda: proxy.runtime.dead_addresses.snapshot()) == [
                ("127.0.0.1", port)
            ]
        assert origin.connections == 1


def test_connect_tunnel_races() -> None:
    with dead_and_live_origin() as (port, origin):
        proxy_thread = start_proxy(ConnectPorts=str(port), ConnectTimeout="10 seconds")
        with proxy_thread as proxy:
            proxy.runtime.pool.resolve = resolver("127.0.0.1", "127.0.0.2")
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S) as s:
                authority = f"multi.test:{port}"
                s.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
                f = s.makefile("rb")
                assert f.readline().split()[1] == b"200"
                while f.readline() not in (b"\r\n", b""):
                    pass
                s.sendall(b"GET /through HTTP/1.1\r\nHost: multi.test\r\nConnection: close\r\n\r\n")
                assert f.readline().split()[1] == b"200"
                assert b"hello GET /through" in f.read()
            assert proxy.call(lambda: proxy.runtime.dead_addresses.snapshot()) == [
                ("127.0.0.1", port)
            ]
        assert origin.connections == 1


def test_every_address_dead_gives_504_naming_each(caplog: pytest.LogCaptureFixture) -> None:
    with contextlib.ExitStack() as stack:
        port, _ = stack.enter_context(on_one_port(("127.0.0.1", "127.0.0.2")))
        # The error log is the "cproxy" logger (ErrorLog is where the command points it).
        logger = logging.getLogger("cproxy")
        logger.addHandler(caplog.handler)
        stack.callback(logger.removeHandler, caplog.handler)
        stack.enter_context(caplog.at_level(logging.INFO, logger="cproxy"))
        with start_proxy(ConnectTimeout="1 second", LogLevel="info") as proxy:
            proxy.runtime.pool.resolve = resolver("127.0.0.1", "127.0.0.2")
            r = requests.get(
                f"http://dead.test:{port}/x", proxies={"http": proxy.url}, timeout=WAIT_S
            )
            assert r.status_code == 504
        logged = [rec.getMessage() for rec in caplog.records if "dead.test" in rec.getMessage()]
        assert logged, caplog.text
        for text in (r.text, logged[0]):
            assert f"127.0.0.1:{port} timed out" in text
            assert f"127.0.0.2:{port} timed out" in text


def test_an_address_literal_is_its_own_answer() -> None:
    """`default_resolve` answers IP literals without a lookup (bench/dns_cache.py: 2 µs
    instead of ~50), with what getaddrinfo would have said; other spellings still go to
    getaddrinfo."""
    for host in ("127.0.0.1", "::1"):
        want = socket.getaddrinfo(host, 80, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        assert default_resolve(host, 80) == want
    assert default_resolve("0x7f.1", 80)[0][4] == ("127.0.0.1", 80)


def test_standby_connections_race() -> None:
    with dead_and_live() as port:
        key = ("http", "multi.test", port)
        pool = OriginPool(
            gc_interval_s=0,
            connect_timeout_s=WAIT_S,
            standby=((key, 1),),
            resolve=resolver("127.0.0.1", "127.0.0.2"),
        )
        try:
            pool.start()
            with gevent.Timeout(WAIT_S):
                while pool.stats()["origins"].get(f"http://multi.test:{port}", {}).get("idle") != 1:
                    gevent.sleep(0)  # a yield to the keeper, not a timed wait
            conn = pool.acquire(key)
            assert conn.peer_ip == "127.0.0.2" and conn.reused  # the pre-opened one
            pool.release(conn)
            assert pool.dead_addresses.is_dead("127.0.0.1", port)
        finally:
            pool.close()


def test_directives_apply_live() -> None:
    with dead_and_live_origin() as (port, _origin), start_proxy(ConnectTimeout="1 second") as proxy:
        proxy.runtime.pool.resolve = resolver("127.0.0.1", "127.0.0.2")
        url = f"http://multi.test:{port}/x"
        proxies = {"http": proxy.url}

        def apply(**changes: str) -> None:
            rt = proxy.runtime
            proxy.call(lambda: rt.apply(config_with(rt.config, changes)))

        # A delay longer than ConnectTimeout: the live address is never reached, and
        # without a memory of dead addresses the next request does no better.
        apply(ConnectAttemptDelay="1 minute", DeadAddressTimeout="0")
        for _ in range(2):
            r = requests.get(url, proxies=proxies, timeout=WAIT_S)
            assert r.status_code == 504
            assert f"127.0.0.2:{port} not tried" in r.text
        assert proxy.call(lambda: len(proxy.runtime.dead_addresses)) == 0
        # Remembered again: the timed out address goes last, the next request connects.
        apply(ConnectAttemptDelay="1 minute", DeadAddressTimeout="10 minutes")
        assert requests.get(url, proxies=proxies, timeout=WAIT_S).status_code == 504
        assert requests.get(url, proxies=proxies, timeout=WAIT_S).status_code == 200
        # The default delay: racing finds the live address even with nothing remembered.
        apply(ConnectAttemptDelay="250 ms", DeadAddressTimeout="0")
        assert requests.get(url + "?2", proxies=proxies, timeout=WAIT_S).status_code == 200


def test_parent_proxy_connections_race() -> None:
    """A ParentProxy named by a name with a black-holed address: the child reaches the
    parent's live address over its pool."""
    with contextlib.ExitStack() as stack:
        origin = stack.enter_context(Origin())
        # The parent listens on 127.0.0.2:P, beside a black hole on 127.0.0.1:P.
        for _ in range(20):
            hole = BlackHole("127.0.0.1")
            try:
                parent = stack.enter_context(
                    start_proxy(Hostname="parent", BindAddress="127.0.0.2", Port=str(hole.port))
                )
            except OSError:
                hole.close()
                continue
            stack.callback(hole.close)
            break
        port = hole.port
        child = stack.enter_context(
            start_proxy(
                Hostname="child", ParentProxy=f"parents.test:{port}", ConnectTimeout="10 seconds"
            )
        )
        child.runtime.pool.resolve = resolver("127.0.0.1", "127.0.0.2")
        r = requests.get(origin.url("/via"), proxies={"http": child.url}, timeout=WAIT_S)
        assert r.status_code == 200 and r.text == "hello GET /via"
        assert "parent" in r.headers["Via"] and "child" in r.headers["Via"]
        assert child.call(lambda: child.runtime.dead_addresses.snapshot()) == [("127.0.0.1", port)]
        assert parent.runtime.requests_total >= 1


def test_one_winner_when_several_connect_at_once() -> None:
    listener = LiveListener("127.0.0.1", 0)
    try:
        port = listener.sock.getsockname()[1]
        same = info("127.0.0.1", port)  # a name may resolve to one address twice
        sock, attempts = race(
            [same, same, same], deadline=time.monotonic() + WAIT_S, attempt_delay_s=0
        )
        assert sock is not None
        sock.close()
        # One winner (the earliest started among those that connected in the same turn of
        # the loop; which ones did is the kernel's business), the others closed, no verdict.
        kinds = [a.kind for a in attempts]
        assert sorted(kinds) == sorted([CONNECTED, CANCELLED, CANCELLED])
        assert all(a.sock is None for a in attempts)
    finally:
        listener.close()


def test_a_socket_this_host_cannot_make_is_not_the_address_fault() -> None:
    with dead_and_live() as port:
        # socket() itself fails (TCP family, UDP protocol): the next address is tried at
        # once, and the first is not remembered as dead (too many open files, no IPv6 here,
        # say nothing about the address).
        broken = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_UDP, "", ("127.0.0.3", port))
        dead = DeadAddresses()
        sock = open_socket(
            "multi.test",
            port,
            timeout_s=WAIT_S,
            resolve=lambda host, p: [broken, info("127.0.0.2", p)],
            attempt_delay_s=LONG_DELAY_S,
            dead=dead,
        )
        assert sock.getpeername() == ("127.0.0.2", port)
        sock.close()
        assert len(dead) == 0
