"""Not an open proxy (issue #6, DESIGN.md §5 rule 7), through the running proxy.

Clients outside ProxyAccess are refused; CONNECT goes only to ConnectPorts; a request
aimed at one of cproxy's own listeners is refused however the address is spelled (every
loopback address, the unspecified address, the numeric forms the C resolver accepts, an
IPv4-mapped IPv6 literal), including the admin port; a request that already passed
through this proxy (its Via entry) gets 508.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cproxy.admin.passwd import set_password
from tests.hostile import RecordingOrigin, exchange, free_port
from tests.support import start_proxy


@pytest.fixture
def origin() -> Iterator[RecordingOrigin]:
    with RecordingOrigin() as o:
        yield o


def request(target: str, *fields: str, method: str = "GET") -> bytes:
    authority = target.split("/")[2] if "://" in target else target
    lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_client_outside_proxy_access_is_refused_and_nothing_else_is_read(
    origin: RecordingOrigin,
) -> None:
    with start_proxy(ProxyAccess="10.0.0.0/8") as proxy:
        ex = exchange(proxy.port, request(origin.url("/a")) + request(origin.url("/b")))
    assert ex.statuses == [403] and ex.answers[0].closes and ex.closed
    origin.sync()
    assert origin.connections == 0


def test_connect_only_to_connect_ports(origin: RecordingOrigin) -> None:
    target = f"127.0.0.1:{origin.port}"
    with start_proxy() as proxy:  # ConnectPorts = 443
        ex = exchange(proxy.port, request(target, method="CONNECT"))
    assert ex.statuses == [403] and ex.closed
    origin.sync()
    assert origin.connections == 0
    with start_proxy(ConnectPorts=str(origin.port)) as proxy:
        ex = exchange(proxy.port, request(target, method="CONNECT"), timeout_s=1)
    assert ex.raw.startswith(b"HTTP/1.1 200 ")
    origin.sync()
    assert origin.connections == 1


SELF_HOSTS = [
    "127.0.0.1",
    "localhost",
    "LOCALHOST",
    "localhost.",
    "a.localhost",
    "127.0.0.2",  # any loopback alias
    "127.255.255.254",
    "0.0.0.0",
    "[::1]",
    "[::]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "127.1",  # inet_aton's short forms: getaddrinfo connects them to 127.0.0.1
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "cproxy",  # the Hostname directive
]


@pytest.mark.parametrize("host", SELF_HOSTS)
def test_request_aimed_at_the_proxy_itself_is_refused(host: str) -> None:
    with start_proxy() as proxy:
        before = proxy.runtime.requests_total
        ex = exchange(proxy.port, request(f"http://{host}:{proxy.port}/x", "Connection: close"))
        handled = proxy.runtime.requests_total - before
    # 403 at once: not a 508 from a second pass through the proxy.
    assert ex.statuses == [403], ex.raw[:300]
    assert handled == 1, "the request was forwarded to cproxy itself"


@pytest.mark.parametrize("method", ["GET", "CONNECT"])
def test_request_aimed_at_the_admin_port_is_refused(tmp_path: Path, method: str) -> None:
    passwd = tmp_path / "cproxy.passwd"
    set_password(str(passwd), "admin", "pw", rounds=4)
    admin = free_port()
    with start_proxy(
        AdminPort=str(admin), AdminPasswordFile=str(passwd), ConnectPorts=f"443 {admin}"
    ) as proxy:
        assert any(p == admin for _, p in proxy.runtime.admin_addresses)
        for host in ("127.0.0.1", "localhost", "127.0.0.3"):
            target = f"{host}:{admin}" if method == "CONNECT" else f"http://{host}:{admin}/"
            ex = exchange(proxy.port, request(target, "Connection: close", method=method))
            assert ex.statuses == [403], (host, ex.raw[:300])


@pytest.mark.parametrize(
    "via",
    ["1.1 cproxy", "1.0 upstream, 1.1 cproxy", "1.1 CPROXY", "HTTP/1.1 cproxy (cproxy)"],
)
def test_via_loop_gets_508_and_reaches_no_origin(origin: RecordingOrigin, via: str) -> None:
    with start_proxy() as proxy:
        ex = exchange(proxy.port, request(origin.url("/x"), f"Via: {via}", "Connection: close"))
    assert ex.statuses == [508]
    origin.sync()
    assert origin.connections == 0


def test_another_proxys_via_is_not_a_loop(origin: RecordingOrigin) -> None:
    with start_proxy() as proxy:
        ex = exchange(
            proxy.port,
            request(origin.url("/x"), "Via: 1.1 cproxy-2, 1.1 notcproxy", "Connection: close"),
        )
    assert ex.statuses == [200]
    assert origin.requests()[0].req.headers.get("via") == "1.1 cproxy-2, 1.1 notcproxy, 1.1 cproxy"


def test_connect_port_of_the_proxy_itself_is_refused() -> None:
    port = free_port()
    with start_proxy(Port=str(port), ConnectPorts=f"443 {port}") as proxy:
        for host in ("127.0.0.1", "127.0.0.9", "localhost", "[::1]", "0.0.0.0"):
            ex = exchange(proxy.port, request(f"{host}:{port}", method="CONNECT"))
            assert ex.statuses == [403], (host, ex.raw[:200])


def test_a_name_resolving_to_the_proxy_is_refused_before_anything_is_sent() -> None:
    """DESIGN.md §5 rule 7: a host name cproxy cannot recognise as its own (here a made-up
    name whose lookup the test answers with cproxy's own address) is caught when the
    connection lands on cproxy's listener, with a 403, not one pass later by the Via check."""
    with start_proxy() as proxy:
        own = ("127.0.0.1", proxy.port)
        proxy.runtime.pool._resolve = lambda host, port: [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", own)
        ]
        before = proxy.runtime.requests_total
        ex = exchange(
            proxy.port, request(f"http://proxy-alias.test:{proxy.port}/x", "Connection: close")
        )
        handled = proxy.runtime.requests_total - before
    assert ex.statuses == [403], ex.raw[:300]
    assert handled == 1, "the request was forwarded to cproxy itself"
