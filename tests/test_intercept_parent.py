"""HTTPS interception with a ParentProxy (issue #19): the requests inside an intercepted
connection reach their origin over TLS connections made *through* the parent (CONNECT,
then the handshake with the origin inside the tunnel), verified as direct ones and pooled
per parent and origin. Real parts: a second cproxy as the parent, TLS origins trusted
through ServerSSLCAFile (nginx, and the recording Python origin), clients trusting only
cproxy's CA.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cproxy.admin.passwd import set_password
from tests import support
from tests.intercepting import (
    Lab,
    cacheable,
    get,
    issuer,
    localhost_resolver,
    running,
    tls_origin,
    tunnel,
)
from tests.nginxorigin import NginxOrigin
from tests.support import WAIT_S, ProxyThread, read_response, wait_for
from tests.tls import TestCA


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


@contextlib.contextmanager
def parent_proxy(*ports: int, **more: str) -> Iterator[ProxyThread]:
    """A second cproxy as the parent: CONNECT allowed to ``ports``, every name 127.0.0.1,
    a JSON access log (``parent.log``) to count what it was asked."""
    directives = {
        "Hostname": "parent",
        "ConnectPorts": " ".join(str(p) for p in ports) or "443",
        "AccessLogFormat": "json",
        **more,
    }
    with ProxyThread(support.test_config(**directives)) as parent:
        parent.call(lambda: setattr(parent.runtime.pool, "resolve", localhost_resolver))
        yield parent


def parent_lines(parent: ProxyThread, log: Path, count: int) -> list[dict[str, object]]:
    """The parent's access log once it has ``count`` lines (a tunnel's line is written
    when it ends: after the child closed its pooled connections)."""

    def lines() -> list[dict[str, object]]:
        parent.call(lambda: parent.runtime.access_log.flush())
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    wait_for(lambda: len(lines()) >= count, what=f"{count} lines in the parent's log")
    return lines()


def requests_seen(parent: ProxyThread) -> int:
    """Requests (CONNECTs included) the parent has read so far."""
    return parent.call(lambda: parent.runtime.requests_total)  # type: ignore[no-any-return]


def pool_origins(proxy: ProxyThread) -> dict[str, dict[str, int]]:
    return proxy.call(lambda: proxy.runtime.pool.stats()["origins"])  # type: ignore[no-any-return]


def test_intercepted_requests_go_over_one_pooled_tls_connection_through_the_parent(
    lab: Lab, tmp_path: Path, ca: TestCA
) -> None:
    """nginx (HTTP/2 by ALPN) as the origin: a miss, its hit, more misses on two
    intercepted connections, all over one TLS connection made through the parent, which
    saw one CONNECT and nothing in cleartext."""
    log = tmp_path / "parent.log"
    with NginxOrigin(tmp_path / "nginx", ca) as nginx:
        nginx.add_file("img.png", b"p" * 2048)
        port = nginx.port
        with parent_proxy(port, AccessLog=str(log)) as parent:
            directives = {
                "ServerSSLCAFile": str(ca.ca_pem),
                "ParentProxy": f"127.0.0.1:{parent.port}",
            }
            with running(lab.proxy(port, **directives)) as child:
                # nginx says no-store for /files/ and /small/: three misses, on two
                # intercepted connections.
                with tunnel(child, "localhost", port, lab.client_context()) as tls:
                    assert "cproxy" in issuer(tls)  # intercepted, not spliced
                    reader = tls.makefile("rb")
                    status, _, body = get(tls, "/files/img.png", f"localhost:{port}", reader=reader)
                    assert (status, body) == (200, b"p" * 2048)
                    status, _, body = get(tls, "/small/one", f"localhost:{port}", reader=reader)
                    assert (status, body) == (200, b"small /small/one")
                with tunnel(child, "localhost", port, lab.client_context()) as tls:
                    status, _, body = get(tls, "/small/two", f"localhost:{port}")
                    assert (status, body) == (200, b"small /small/two")
                assert requests_seen(parent) == 1
                origins = pool_origins(child)
                stats = child.call(lambda: child.runtime.stats())
            lines = parent_lines(parent, log, 1)
    # The parent was asked one CONNECT, for the origin, and nothing else.
    assert [(line["method"], line["target"]) for line in lines] == [
        ("CONNECT", f"localhost:{port}")
    ], lines
    # One connection reached nginx, speaking HTTP/2 (ALPN through the tunnel).
    rows = nginx.requests()
    assert [row[3] for row in rows] == ["/files/img.png", "/small/one", "/small/two"]
    assert len({row[0] for row in rows}) == 1 and {row[2] for row in rows} == {"HTTP/2.0"}
    # Pooled under the origin and the parent, never under the origin alone.
    key = next(k for k in origins if k.startswith(f"https://localhost:{port}"))
    assert key.endswith(f" via 127.0.0.1:{parent.port}") and len(origins) == 1, origins
    assert origins[key]["created"] == 1 and origins[key]["h2_streams"] == 3
    assert stats["interception"]["handshakes"] == 2
    assert sum(stats["interception"]["splices"].values()) == 0
    assert stats["parents"][0]["state"] == "up"


def test_a_hit_is_served_from_the_cache_and_tunnels_are_reused_across_clients(
    lab: Lab, tmp_path: Path
) -> None:
    """The recording origin (HTTP/1.1): the second request is a hit, later misses from
    other intercepted connections reuse the one tunnelled TLS connection."""
    log = tmp_path / "parent.log"
    with tls_origin(lab.origin_context()) as origin:
        origin.default_route = cacheable
        with parent_proxy(origin.port, AccessLog=str(log)) as parent:
            with running(lab.proxy(origin.port, ParentProxy=f"127.0.0.1:{parent.port}")) as child:
                with tunnel(child, "a.test", origin.port, lab.client_context()) as tls:
                    reader = tls.makefile("rb")
                    first = get(tls, "/img.png", f"a.test:{origin.port}", reader=reader)
                    second = get(tls, "/img.png", f"a.test:{origin.port}", reader=reader)
                assert first[0] == second[0] == 200 and first[2] == second[2] == b"x" * 1024
                assert "hit" in second[1]["cache-status"]
                for path in ("/a", "/b"):
                    with tunnel(child, "a.test", origin.port, lab.client_context()) as tls:
                        assert get(tls, path, f"a.test:{origin.port}")[0] == 200
                assert requests_seen(parent) == 1
            lines = parent_lines(parent, log, 1)
    assert [p for _, p, _, _ in origin.requests] == ["/img.png", "/a", "/b"]
    assert origin.connections == 1 and origin.handshakes == 1
    assert [line["method"] for line in lines] == ["CONNECT"]
    # Via from the child alone: the parent carried bytes it could not read.
    via = dict(origin.requests[0][2])["Via"]
    assert via.startswith("1.1 ") and "parent" not in via, via


def test_the_parents_login_is_sent_with_the_connect(lab: Lab, tmp_path: Path) -> None:
    users = tmp_path / "parent.passwd"
    set_password(str(users), "child", "child-secret", rounds=4)
    log = tmp_path / "parent.log"
    with (
        tls_origin(lab.origin_context()) as origin,
        parent_proxy(
            origin.port, AccessLog=str(log), ProxyAuth="on", ProxyAuthPasswordFile=str(users)
        ) as parent,
    ):
        creds = tmp_path / "parents.cred"
        creds.write_text(f"127.0.0.1:{parent.port} child:child-secret\n")
        address = f"127.0.0.1:{parent.port}"
        with running(lab.proxy(origin.port, ParentProxy=address)) as child:
            with tunnel(child, "a.test", origin.port, lab.client_context()) as tls:
                status, _, body = get(tls, "/", f"a.test:{origin.port}")
            # Without credentials the parent refuses the CONNECT: a page saying so.
            assert status == 502 and b"answered CONNECT" in body and b"407" in body
        parent_lines(parent, log, 1)
        with running(
            lab.proxy(origin.port, ParentProxy=address, ParentProxyCredentials=str(creds))
        ) as child:
            with tunnel(child, "a.test", origin.port, lab.client_context()) as tls:
                status, _, body = get(tls, "/", f"a.test:{origin.port}")
            assert (status, body) == (200, b"hello GET /")
        lines = parent_lines(parent, log, 2)
    assert [(line["method"], line["status"], line["user"]) for line in lines] == [
        ("CONNECT", 407, None),
        ("CONNECT", 200, "child"),
    ]


@pytest.mark.parametrize("make_context", ["expired_context", "self_signed_context"])
def test_an_origin_failing_verification_through_the_parent_gets_the_502_page(
    lab: Lab, make_context: str
) -> None:
    with (
        tls_origin(getattr(lab, make_context)()) as origin,
        parent_proxy(origin.port) as parent,
        running(lab.proxy(origin.port, ParentProxy=f"127.0.0.1:{parent.port}")) as child,
    ):
        origin.default_route = cacheable
        with tunnel(child, "a.test", origin.port, lab.client_context()) as tls:
            status, _, body = get(tls, "/secret", f"a.test:{origin.port}")
        assert status == 502
        assert f"the certificate of a.test:{origin.port} did not verify" in body.decode()
        assert origin.requests == []
        stats = child.call(lambda: child.runtime.stats())
    assert stats["interception"]["upstream_verify_failures"] == 1
    # The parent answered (it tunnelled): it is up; the origin was the problem.
    assert stats["parents"][0]["state"] == "up"


def test_a_parent_refusing_the_connect_gives_a_page_saying_so(lab: Lab) -> None:
    with (
        tls_origin(lab.origin_context()) as origin,
        parent_proxy(443) as parent,  # its ConnectPorts leave the origin's port out
        running(lab.proxy(origin.port, ParentProxy=f"127.0.0.1:{parent.port}")) as child,
    ):
        with tunnel(child, "a.test", origin.port, lab.client_context()) as tls:
            status, _, body = get(tls, "/", f"a.test:{origin.port}")
        stats = child.call(lambda: child.runtime.stats())
    text = body.decode()
    assert status == 502
    assert f"parent proxy 127.0.0.1:{parent.port} answered CONNECT a.test:{origin.port}" in text
    assert "403" in text and origin.requests == []
    assert stats["parents"][0]["state"] == "up"


def test_a_parent_that_never_answers_the_connect_gives_a_504_page(lab: Lab) -> None:
    """A parent that takes the connection and says nothing: 504 when the connect budget
    (ConnectTimeout) is spent, the parent not marked down (it was reached)."""
    silent = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            accepted.append(silent.accept()[0])
        done.wait(WAIT_S)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        port = silent.getsockname()[1]
        with (
            tls_origin(lab.origin_context()) as origin,
            running(
                lab.proxy(origin.port, ParentProxy=f"127.0.0.1:{port}", ConnectTimeout="1 second")
            ) as child,
            tunnel(child, "a.test", origin.port, lab.client_context()) as tls,
        ):
            status, _, body = get(tls, "/", f"a.test:{origin.port}")
            stats = child.call(lambda: child.runtime.stats())
        assert status == 504
        assert f"parent proxy 127.0.0.1:{port} did not answer CONNECT a.test:{origin.port}" in (
            body.decode()
        )
        assert stats["parents"][0]["state"] == "up" and origin.requests == []
    finally:
        done.set()
        silent.close()
        for sock in accepted:
            sock.close()
        thread.join(WAIT_S)


def test_a_parent_that_cannot_be_reached_fails_over_to_the_next(lab: Lab) -> None:
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        dead = hole.getsockname()[1]
    with (
        tls_origin(lab.origin_context()) as origin,
        parent_proxy(origin.port) as parent,
        running(
            lab.proxy(origin.port, ParentProxy=f"127.0.0.1:{dead} 127.0.0.1:{parent.port}")
        ) as child,
    ):
        with tunnel(child, "a.test", origin.port, lab.client_context()) as tls:
            assert get(tls, "/over", f"a.test:{origin.port}")[:3:2] == (200, b"hello GET /over")
        first, second = child.call(lambda: child.runtime.stats())["parents"]
    assert (first["state"], first["failures"]) == ("down", 1)
    assert (second["state"], second["requests"]) == ("up", 1)


def test_no_proxy_hosts_are_reached_directly(lab: Lab) -> None:
    with (
        tls_origin(lab.origin_context()) as origin,
        parent_proxy(origin.port) as parent,
        running(
            lab.proxy(origin.port, ParentProxy=f"127.0.0.1:{parent.port}", NoProxy="a.test")
        ) as child,
    ):
        with tunnel(child, "a.test", origin.port, lab.client_context()) as tls:
            assert get(tls, "/direct", f"a.test:{origin.port}")[0] == 200
        origins = pool_origins(child)
        assert requests_seen(parent) == 0
    assert [k for k in origins if "via" in k] == [] and len(origins) == 1


def test_a_clients_absolute_form_https_request_goes_through_the_parents_tunnel_too(
    lab: Lab, tmp_path: Path
) -> None:
    """A plain client's ``GET https://...`` takes the same path as an intercepted one: a
    TLS connection through the parent, verified by cproxy, shared with intercepted
    requests (one connection, one CONNECT), and the same cache entry."""
    log = tmp_path / "parent.log"
    with tls_origin(lab.origin_context()) as origin:
        origin.default_route = cacheable
        with parent_proxy(origin.port, AccessLog=str(log)) as parent:
            with running(lab.proxy(origin.port, ParentProxy=f"127.0.0.1:{parent.port}")) as child:
                url = f"https://a.test:{origin.port}/shared"
                with socket.create_connection(("127.0.0.1", child.port), timeout=WAIT_S) as s:
                    head = f"GET {url} HTTP/1.1\r\nHost: a.test:{origin.port}\r\n\r\n"
                    s.sendall(head.encode())
                    status, headers, body = read_response(s.makefile("rb"))
                assert (status, body) == (200, b"x" * 1024)
                with tunnel(child, "a.test", origin.port, lab.client_context()) as tls:
                    status, headers, _ = get(tls, "/shared", f"a.test:{origin.port}")
                    assert status == 200 and "hit" in headers["cache-status"]
                    assert get(tls, "/other", f"a.test:{origin.port}")[0] == 200
                assert requests_seen(parent) == 1
            lines = parent_lines(parent, log, 1)
    assert [line["method"] for line in lines] == ["CONNECT"]
    assert origin.connections == 1 and [p for _, p, _, _ in origin.requests] == [
        "/shared",
        "/other",
    ]


def test_a_websocket_goes_through_the_parent_on_a_tunnel_of_its_own(lab: Lab) -> None:
    from tests.test_intercept import WS_REQUEST, WebSocketOrigin

    origin = WebSocketOrigin(lab.origin_context())
    try:
        with (
            parent_proxy(origin.port) as parent,
            running(lab.proxy(origin.port, ParentProxy=f"127.0.0.1:{parent.port}")) as child,
            tunnel(child, "a.test", origin.port, lab.client_context()) as tls,
            tls.makefile("rb") as reader,
        ):
            tls.sendall(WS_REQUEST.format(port=origin.port).encode())
            status, headers, _ = read_response(reader)
            assert status == 101 and headers["upgrade"] == "websocket"
            frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # a masked "Hello"
            tls.sendall(frame)
            assert reader.read(len(frame)) == frame
            assert requests_seen(parent) == 1
            origins = pool_origins(child)
        assert [k for k in origins if k.endswith(f"via 127.0.0.1:{parent.port}")], origins
    finally:
        origin.close()
