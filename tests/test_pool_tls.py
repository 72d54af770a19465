"""Pooled TLS to origins (issue #11): real TLS origins on loopback with trustme
certificates; verification (system store by default, ServerSSLCAFile, ServerSSLNoVerify
per origin), SNI, session resumption, the pool key including the TLS settings, and
https:// mapping targets and request targets through the running proxy.
"""

from __future__ import annotations

import contextlib
import socket as stdlib_socket
import ssl
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import gevent.socket as gsocket
import gevent.ssl as gssl
import pytest

from cproxy.errors import OriginTLSError
from cproxy.origin import OriginConnection, OriginPool
from cproxy.origin.tls import TLSSettings, tls_buffered, tls_policy
from tests.support import raw_connection, read_response, start_proxy
from tests.test_origin_pool import WAIT_S, wait_readable
from tests.test_pool_caps import check, wait_for
from tests.tls import TestCA, TLSOrigin

NO_CACHE = {"Caching": "off"}


def exchange(conn: OriginConnection, path: str = "/") -> bytes:
    """One GET on ``conn``; returns the body (the origin answers with Content-Length)."""
    conn.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = conn.sock.recv(65536)
        assert data, "the origin closed early"
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += conn.sock.recv(65536)
    return body


def localhost_resolver(host: str, port: int) -> list[tuple[Any, ...]]:
    """Every name is 127.0.0.1 (no DNS): lets a test use a host name for SNI."""
    return [(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


@pytest.fixture
def make_pool() -> Iterator[Any]:
    pools: list[OriginPool] = []

    def make(**kwargs: Any) -> OriginPool:
        pool = OriginPool(**kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def key_of(origin: TLSOrigin, host: str = "127.0.0.1") -> tuple[str, str, int]:
    return ("https", host, origin.port)


def test_a_tls_connection_is_pooled_and_reused_without_a_new_handshake(
    ca: TestCA, tls_origin: TLSOrigin, make_pool: Any
) -> None:
    pool = make_pool(tls_for=tls_policy(str(ca.ca_pem), frozenset()))
    conn = pool.acquire(key_of(tls_origin))
    assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
    assert exchange(conn, "/one") == b"hello GET /one"
    pool.release(conn)
    again = pool.acquire(key_of(tls_origin))
    assert again is conn and again.reused
    assert exchange(again, "/two") == b"hello GET /two"
    pool.release(again)
    assert tls_origin.handshakes == 1
    stats = pool.stats()["totals"]
    assert (stats["created"], stats["reused"], stats["idle"]) == (1, 1, 1)


def test_tls_buffered_sees_decrypted_bytes_and_nothing_on_a_plain_socket(
    ca: TestCA, tls_origin: TLSOrigin, make_pool: Any
) -> None:
    """The exchange waits for an origin's bytes only when the TLS layer holds none."""
    pool = make_pool(tls_for=tls_policy(str(ca.ca_pem), frozenset()))
    conn = pool.acquire(key_of(tls_origin))
    assert not tls_buffered(conn.sock)
    conn.sock.sendall(b"GET /b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = conn.sock.recv(1)  # the rest of the record stays decrypted in the TLS layer
    assert first == b"H" and tls_buffered(conn.sock)
    pool.discard(conn)
    plain = make_pool().acquire(("http", "127.0.0.1", tls_origin.port))
    assert not tls_buffered(plain.sock)
    plain.sock.close()


def test_tls_sessions_are_resumed_on_new_connections(
    ca: TestCA, tls_origin: TLSOrigin, make_pool: Any
) -> None:
    pool = make_pool(tls_for=tls_policy(str(ca.ca_pem), frozenset()))
    first = pool.connect(key_of(tls_origin))
    assert not first.sock.session_reused
    exchange(first)  # a TLS 1.3 ticket arrives with the first response
    pool.release(first)
    second = pool.connect(key_of(tls_origin))
    assert second is not first and second.sock.session_reused
    exchange(second)
    pool.discard(second)


def test_certificates_are_verified_against_the_system_store_by_default(
    tls_origin: TLSOrigin, make_pool: Any
) -> None:
    pool = make_pool()
    with pytest.raises(OriginTLSError, match="did not verify"):
        pool.acquire(key_of(tls_origin))
    stats = pool.stats()["totals"]
    assert stats["connect_failures"] == 1 and stats["created"] == 0 and stats["closed"] == 0


def test_a_certificate_for_another_name_is_refused(ca: TestCA, make_pool: Any) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.ca.issue_cert("other.test").configure_cert(context)
    with TLSOrigin(context) as origin:
        pool = make_pool(tls_for=tls_policy(str(ca.ca_pem), frozenset()))
        with pytest.raises(OriginTLSError, match="did not verify"):
            pool.acquire(key_of(origin))


def test_verification_is_off_only_for_the_listed_origin(
    tls_origin: TLSOrigin, make_pool: Any
) -> None:
    lab = key_of(tls_origin)
    pool = make_pool(tls_for=tls_policy("", frozenset({lab})), resolve=localhost_resolver)
    conn = pool.acquire(lab)
    assert exchange(conn) == b"hello GET /"
    pool.release(conn)
    # The same server under another name is another origin: verified, and refused.
    with pytest.raises(OriginTLSError):
        pool.acquire(key_of(tls_origin, host="localhost"))
    assert f"https://127.0.0.1:{tls_origin.port} (unverified)" in pool.stats()["origins"]


def test_sni_names_the_origin_host(ca: TestCA, make_pool: Any) -> None:
    names: list[str | None] = []
    context = ca.server_context()
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,misc]
    with TLSOrigin(context) as origin:
        pool = make_pool(
            tls_for=tls_policy(str(ca.ca_pem), frozenset()), resolve=localhost_resolver
        )
        conn = pool.acquire(key_of(origin, host="localhost"))
        assert exchange(conn) == b"hello GET /"
        pool.discard(conn)
    assert names == ["localhost"]


def test_the_pool_key_includes_the_tls_settings(
    ca: TestCA, tls_origin: TLSOrigin, make_pool: Any
) -> None:
    key = key_of(tls_origin)
    pool = make_pool(tls_for=tls_policy(str(ca.ca_pem), frozenset()))
    verified = pool.acquire(key)
    exchange(verified)
    pool.release(verified)
    # Live: the origin is now a lab origin. The idle socket made under the old settings
    # is closed, never handed out under the new ones.
    pool.reconfigure(
        enabled=True,
        max_idle_per_origin=64,
        idle_timeout_s=10.0,
        gc_interval_s=30.0,
        connect_timeout_s=10.0,
        tls_for=tls_policy("", frozenset({key})),
    )
    assert verified.closed
    lab = pool.acquire(key)
    assert lab is not verified and lab.tls == TLSSettings(verify=False)
    pool.release(lab)
    origins = pool.stats()["origins"]
    assert origins[f"https://127.0.0.1:{tls_origin.port} (CA {ca.ca_pem})"]["closed"] == 1
    assert origins[f"https://127.0.0.1:{tls_origin.port} (unverified)"]["idle"] == 1


# -- idle TLS sockets and what arrives on them ------------------------------------------------


class LoopbackTLSOrigin:
    """A TLS listener on 127.0.0.1:0 in this hub: each accepted socket is handshaken (TLS
    1.3, which sends its session tickets right after the handshake) and kept, untouched, for
    the test to write to or close. ``handshakes`` counts completed server handshakes."""

    def __init__(self, ca: TestCA) -> None:
        self.context = gssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        ca.cert.configure_cert(self.context)
        self.listener = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port: int = self.listener.getsockname()[1]
        self.key = ("https", "127.0.0.1", self.port)
        self.peers: dict[Any, Any] = {}
        self.handshakes = 0
        self._changed = gevent.event.Event()
        self._greenlets = [gevent.spawn(self._accept_loop)]

    def _accept_loop(self) -> None:
        while True:
            sock, addr = self.listener.accept()
            self._greenlets.append(gevent.spawn(self._handshake, sock, addr))

    def _handshake(self, sock: gsocket.socket, addr: Any) -> None:
        try:
            tls = self.context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            sock.close()
            return
        self.handshakes += 1
        self.peers[addr] = tls
        self._changed.set()

    def peer_of(self, conn: OriginConnection) -> Any:
        """The origin's end of ``conn``, once its handshake (and tickets) went out."""
        want = conn.sock.getsockname()
        with gevent.Timeout(WAIT_S):
            while want not in self.peers:
                self._changed.clear()
                self._changed.wait()
        return self.peers[want]

    def close(self) -> None:
        gevent.killall(self._greenlets)
        self.listener.close()
        for sock in self.peers.values():
            sock.close()


@pytest.fixture
def tls13_origin(ca: TestCA) -> Iterator[LoopbackTLSOrigin]:
    o = LoopbackTLSOrigin(ca)
    yield o
    o.close()


def test_peer_state_of_an_idle_tls_socket_reads_its_records(
    ca: TestCA, tls13_origin: LoopbackTLSOrigin, make_pool: Any
) -> None:
    """The session tickets a TLS 1.3 origin sends after the handshake make the socket
    readable, but carry nothing for the next request: alive. Application data nobody asked
    for is garbage; close_notify (and FIN) is the origin closing."""
    pool = make_pool(tls_for=tls_policy(str(ca.ca_pem), frozenset()))
    conn = pool.connect(tls13_origin.key)
    assert conn.sock.version() == "TLSv1.3"
    peer = tls13_origin.peer_of(conn)  # its handshake ended: the tickets are on the way
    wait_readable(conn)
    assert conn.peer_state() == "ok"
    assert conn.sock.gettimeout() is None  # the check restores blocking mode
    peer.sendall(b"x")
    wait_readable(conn)
    assert conn.peer_state() == "garbage"
    pool.discard(conn)

    conn = pool.connect(tls13_origin.key)
    peer = tls13_origin.peer_of(conn)
    peer.settimeout(0.0)  # send close_notify, without waiting for the proxy's
    with contextlib.suppress(ssl.SSLWantReadError):
        peer.unwrap()
    peer.close()  # then FIN
    wait_readable(conn)
    assert conn.peer_state() == "eof"
    pool.discard(conn)
    assert conn.peer_state() == "error"


def test_an_idle_tls_socket_that_received_session_tickets_is_reused(
    ca: TestCA, tls13_origin: LoopbackTLSOrigin, make_pool: Any
) -> None:
    """The event loop's idle watch sees the tickets too: neither it nor the peek at
    checkout may take them for an origin that went away."""
    pool = make_pool(tls_for=tls_policy(str(ca.ca_pem), frozenset()))
    conn = pool.connect(tls13_origin.key)
    tls13_origin.peer_of(conn)
    pool.release(conn)  # idle before the tickets were read by anyone
    wait_readable(conn)
    gevent.sleep(0)  # one loop turn: the idle watch runs
    again = pool.acquire(tls13_origin.key)  # verify=True: the peek runs as well
    assert again is conn and not conn.closed
    totals = check(pool)["totals"]
    assert (totals["created"], totals["reused"], totals["dropped_dead"]) == (1, 1, 0)
    pool.discard(again)


def test_pre_opened_tls_connections_are_kept_and_used(
    ca: TestCA, tls13_origin: LoopbackTLSOrigin, make_pool: Any
) -> None:
    """ServerConnStandby to a TLS 1.3 origin: the pre-opened sockets' session tickets
    must not make the pool drop and reopen them (which it did in a loop, hundreds of
    handshakes a second), and the first requests use them."""
    key = tls13_origin.key
    pool = make_pool(
        tls_for=tls_policy(str(ca.ca_pem), frozenset()), standby=((key, 2),), gc_interval_s=0
    )
    pool.start()

    def idle() -> int:
        return int(pool.stats()["totals"]["idle"])

    wait_for(lambda: tls13_origin.handshakes == 2 and idle() == 2)
    taken = [pool.acquire(key) for _ in range(2)]
    assert all(c.pre_opened and c.reused for c in taken)
    for c in taken:
        pool.discard(c)
    wait_for(lambda: tls13_origin.handshakes == 4 and idle() == 2)  # both replaced
    totals = check(pool)["totals"]
    assert (totals["created"], totals["dropped_dead"]) == (4, 0)


# -- through the proxy -----------------------------------------------------------------------


def proxy_get(port: int, target: str) -> tuple[int, dict[str, str], bytes]:
    with raw_connection(port) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        with s.makefile("rb") as f:
            return read_response(f)


def test_an_https_mapping_target_is_fetched_over_pooled_tls(
    ca: TestCA, tls_origin: TLSOrigin
) -> None:
    rules = f"Proxy /app/* https://127.0.0.1:{tls_origin.port}/*"
    with start_proxy(**NO_CACHE, MappingRules=rules, ServerSSLCAFile=str(ca.ca_pem)) as proxy:
        for i in range(3):
            status, _, body = proxy_get(proxy.port, f"/app/x{i}")
            assert (status, body) == (200, f"hello GET /x{i}".encode())
    assert tls_origin.handshakes == 1  # one TLS connection carried all three


def test_an_absolute_https_request_target_is_fetched_over_tls(
    ca: TestCA, tls_origin: TLSOrigin
) -> None:
    with start_proxy(**NO_CACHE, ServerSSLCAFile=str(ca.ca_pem)) as proxy:
        status, _, body = proxy_get(proxy.port, tls_origin.url("/abs"))
        assert (status, body) == (200, b"hello GET /abs")
    assert [r[1] for r in tls_origin.requests] == ["/abs"]


def test_an_origin_certificate_that_does_not_verify_is_a_502(tls_origin: TLSOrigin) -> None:
    with start_proxy(**NO_CACHE) as proxy:
        status, _, body = proxy_get(proxy.port, tls_origin.url("/x"))
    assert status == 502 and b"did not verify" in body
    assert tls_origin.requests == []


def test_server_ssl_no_verify_refuses_wildcards() -> None:
    from cproxy.directives import config_with, defaults
    from cproxy.errors import ConfigError

    with pytest.raises(ConfigError, match="ServerSSLNoVerify"):
        config_with(defaults(), {"ServerSSLNoVerify": "https://*"})
    with pytest.raises(ConfigError, match="scheme must be https"):
        config_with(defaults(), {"ServerSSLNoVerify": "http://lab.test"})
    cfg = config_with(defaults(), {"ServerSSLNoVerify": "https://LAB.test https://[::1]:8443/"})
    assert cfg.server_ssl_no_verify == (("https", "lab.test", 443), ("https", "::1", 8443))
    assert cfg.text("ServerSSLNoVerify") == "https://lab.test:443 https://[::1]:8443"
