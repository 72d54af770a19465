"""The core proxy over real loopback sockets: persistence, pooling, MaxActiveThreads."""

from __future__ import annotations

import threading

import requests

from tests.support import Origin, OriginHandler, raw_connection, read_response, start_proxy


def _get(sock, url: str, extra: str = "") -> tuple[int, dict[str, str], bytes]:
    host = url.split("/")[2]
    sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
    return read_response(sock)


def test_100_requests_on_one_client_connection_use_one_origin_connection(origin: Origin) -> None:
    with start_proxy() as proxy, raw_connection(proxy.port) as sock:
        f = sock.makefile("rb")
        for i in range(100):
            sock.sendall(f"GET {origin.url(f'/n{i}')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, _, body = read_response(f)
            assert status == 200
            assert body == f"hello GET /n{i}".encode()
    assert origin.connections == 1
    assert len(origin.requests) == 100


def test_pool_off_opens_one_origin_connection_per_request(origin: Origin) -> None:
    with start_proxy(ServerConnPool="off") as proxy, raw_connection(proxy.port) as sock:
        f = sock.makefile("rb")
        for i in range(100):
            sock.sendall(f"GET {origin.url(f'/n{i}')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert read_response(f)[0] == 200
    assert origin.connections == 100


def test_forwarded_request_is_rebuilt_in_origin_form(origin: Origin) -> None:
    with start_proxy() as proxy:
        r = requests.get(
            origin.url("/a?b=1"),
            proxies={"http": proxy.url},
            headers={"Connection": "X-Private", "X-Private": "secret", "Keep-Alive": "5"},
            timeout=10,
        )
    assert r.status_code == 200
    assert r.headers["Via"] == "1.1 cproxy"
    method, path, headers, _ = origin.requests[0]
    assert (method, path) == ("GET", "/a?b=1")
    lowered = {k.lower(): v for k, v in headers.items()}
    assert "x-private" not in lowered and "keep-alive" not in lowered
    assert "proxy-connection" not in lowered
    assert lowered["via"] == "1.1 cproxy"
    assert lowered["host"] == f"127.0.0.1:{origin.port}"


def test_max_active_threads_holds_clients_instead_of_refusing(origin: Origin) -> None:
    release = threading.Event()
    lock = threading.Lock()
    active = [0, 0]  # current, peak

    def slow(h: OriginHandler) -> None:
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        release.wait(10)
        with lock:
            active[0] -= 1
        h.reply(200, b"slow")

    origin.routes["/slow"] = slow
    results: list[int] = []

    with start_proxy(MaxActiveThreads="2", ServerConnPool="off") as proxy:

        def client(i: int) -> None:
            # Distinct URLs: concurrent misses for one URL would be collapsed by the cache.
            r = requests.get(origin.url(f"/slow?{i}"), proxies={"http": proxy.url}, timeout=20)
            with lock:
                results.append(r.status_code)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        # Two requests reach the origin; the other three wait for a slot.
        from tests.support import wait_for

        wait_for(lambda: active[0] == 2, what="two active requests")
        # All five are accepted: three wait for a slot inside cproxy, not in the backlog.
        wait_for(lambda: proxy.runtime.slots.waiting == 3, what="three requests queued")
        assert len(origin.requests) == 2
        release.set()
        for t in threads:
            t.join(20)
    assert results == [200] * 5
    assert active[1] == 2
