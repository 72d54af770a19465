"""Parent proxies (ParentProxy, issue #15), with a second cproxy as the parent.

A child cproxy sends plain requests to the parent in absolute form over its pool and
HTTPS as CONNECT through it; the parent's login comes from ParentProxyCredentials and a
client's own credentials never go on; a parent that cannot be reached is marked down and
the next one used, retried after ParentRetry; NoProxy goes direct; the status page shows
each parent's state.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cproxy.admin.passwd import set_password
from cproxy.origin.parents import ParentSet
from tests.support import FakeClock, Origin, ProxyThread, start_proxy
from tests.tls import TestCA, TLSOrigin


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def parent() -> Iterator[ProxyThread]:
    with start_proxy(Hostname="parent") as p:
        yield p


def via_of(origin: Origin, path: str) -> str:
    return next(dict(h).get("Via", "") for _, p, h, _ in origin.requests if p == path)


def test_plain_requests_go_through_the_parent_over_the_pool(
    parent: ProxyThread, origin: Origin
) -> None:
    with start_proxy(Hostname="child", ParentProxy=f"127.0.0.1:{parent.port}") as child:
        with requests.Session() as s:
            s.proxies = {"http": child.url}
            for path in ("/one", "/two"):
                r = s.get(origin.url(path), timeout=10)
                assert (r.status_code, r.text) == (200, f"hello GET {path}")
        pool = child.runtime.pool.stats()
        state = child.runtime.stats()["parents"]
    assert via_of(origin, "/one") == "1.1 child, 1.1 parent"
    # Both requests went on one pooled socket to the parent, keyed by its address.
    to_parent = pool["origins"][f"http://127.0.0.1:{parent.port}"]
    assert (to_parent["created"], to_parent["reused"]) == (1, 1)
    assert len(pool["origins"]) == 1  # nothing went to the origin directly
    assert state[0]["state"] == "up" and state[0]["requests"] == 2


def test_https_goes_as_connect_through_the_parent(ca: TestCA, tls_origin: TLSOrigin) -> None:
    port = tls_origin.port
    with (
        start_proxy(Hostname="parent", ConnectPorts=str(port)) as parent,
        start_proxy(ConnectPorts=str(port), ParentProxy=f"127.0.0.1:{parent.port}") as child,
    ):
        r = requests.get(
            tls_origin.url("/secret", host="localhost"),
            proxies={"https": child.url},
            verify=str(ca.ca_pem),
            timeout=10,
        )
        assert (r.status_code, r.text) == (200, "hello GET /secret")
        assert parent.runtime.requests_total == 1  # the CONNECT came through the parent
        assert child.runtime.stats()["parents"][0]["requests"] == 1


def test_the_parents_login_comes_from_the_credentials_file(tmp_path: Path, origin: Origin) -> None:
    users = tmp_path / "parent.passwd"
    set_password(str(users), "child", "child-secret", rounds=4)
    log = tmp_path / "parent-access.log"
    with start_proxy(
        Hostname="parent",
        ProxyAuth="on",
        ProxyAuthPasswordFile=str(users),
        AccessLog=str(log),
        AccessLogFormat="json",
    ) as parent:
        creds = tmp_path / "parents.cred"
        creds.write_text(f"# parent logins\n127.0.0.1:{parent.port} child:child-secret\n")
        address = f"127.0.0.1:{parent.port}"
        with start_proxy(ParentProxy=address) as child:
            # Without credentials the parent's 407 comes back.
            r = requests.get(origin.url("/no-login"), proxies={"http": child.url}, timeout=10)
            assert r.status_code == 407
        with start_proxy(ParentProxy=address, ParentProxyCredentials=str(creds)) as child:
            # The client's own Proxy-Authorization is for the child, never passed on.
            client = {"http": f"http://alice:not-for-the-parent@127.0.0.1:{child.port}"}
            r = requests.get(origin.url("/login"), proxies=client, timeout=10)
            assert (r.status_code, r.text) == (200, "hello GET /login")
            assert child.runtime.stats()["parents"][0]["credentials"] is True
    import json

    users_seen = [json.loads(line)["user"] for line in log.read_text().splitlines()]
    assert users_seen == [None, "child"]
    assert all("proxy-authorization" not in {k.lower() for k in h} for *_, h, _ in origin.requests)


def test_a_parent_that_fails_is_marked_down_and_retried_later(
    parent: ProxyThread, origin: Origin
) -> None:
    dead = closed_port()
    listed = f"127.0.0.1:{dead} 127.0.0.1:{parent.port}"
    with start_proxy(Hostname="child", ParentProxy=listed, ParentRetry="30 seconds") as child:
        clock = FakeClock()
        parents = ParentSet(clock=clock)
        parents.configure(child.runtime.config)
        child.runtime.parents = parents
        r = requests.get(origin.url("/failover"), proxies={"http": child.url}, timeout=10)
        assert r.status_code == 200 and via_of(origin, "/failover").endswith("1.1 parent")
        first, second = child.runtime.stats()["parents"]
        assert (first["state"], first["failures"], second["state"]) == ("down", 1, "up")
        assert "127.0.0.1" in first["last_error"] and 0 < first["retry_in_s"] <= 30
        # While it is down it is not tried again...
        requests.get(origin.url("/again"), proxies={"http": child.url}, timeout=10)
        assert child.runtime.stats()["parents"][0]["failures"] == 1
        # ...and after ParentRetry it is.
        clock.advance(31)
        requests.get(origin.url("/later"), proxies={"http": child.url}, timeout=10)
        assert child.runtime.stats()["parents"][0]["failures"] == 2


def test_all_parents_down_is_a_502_not_a_direct_request(origin: Origin) -> None:
    with start_proxy(ParentProxy=f"127.0.0.1:{closed_port()}") as child:
        r = requests.get(origin.url("/nowhere"), proxies={"http": child.url}, timeout=10)
        again = requests.get(origin.url("/nowhere"), proxies={"http": child.url}, timeout=10)
    assert r.status_code == 502 and again.status_code == 502
    assert "no parent proxy is available" in again.text
    assert origin.requests == []


def test_no_proxy_goes_direct(parent: ProxyThread, origin: Origin) -> None:
    with start_proxy(
        Hostname="child", ParentProxy=f"127.0.0.1:{parent.port}", NoProxy="127.0.0.0/8"
    ) as child:
        r = requests.get(origin.url("/direct"), proxies={"http": child.url}, timeout=10)
    assert r.status_code == 200
    assert via_of(origin, "/direct") == "1.1 child"
    assert parent.runtime.requests_total == 0


def test_the_status_page_shows_each_parent(tmp_path: Path, parent: ProxyThread) -> None:
    from tests.test_admin import AdminSite

    dead = closed_port()
    site = AdminSite(
        tmp_path,
        conf_text=(
            "Port = 0\nAdminPort = 0\nAccessLog =\n"
            f"ParentProxy = 127.0.0.1:{dead} 127.0.0.1:{parent.port}\n"
        ),
    )
    try:
        site.runtime.parents.mark_down(site.runtime.parents.parents[0], "connection refused")
        html = site.get("/").text
        document = site.get("/status.json").json()
    finally:
        site.close()
    assert f'<code>127.0.0.1:{dead}</code></td><td class="parent-down">down' in html
    assert f'<code>127.0.0.1:{parent.port}</code></td><td class="parent-up">up' in html
    assert [p["state"] for p in document["parents"]] == ["down", "up"]
