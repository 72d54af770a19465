"""An intercepted (TLS) client queued at an origin's connection cap (MaxConnPerServer=1):
the pool watches the client while it waits, and on a TLS connection the raw socket carries
records, so a close_notify and a pipelined request both look like input there. A client
that closes (close_notify, then FIN) must leave the queue; one that sends more must keep
its place, and the bytes it sent must reach its next request.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.intercepting import Lab, get, running, tls_origin, tunnel
from tests.support import WAIT_S, ProxyThread, read_response, wait_for


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def totals(proxy: ProxyThread) -> dict[str, Any]:
    return proxy.call(proxy.runtime.pool.stats)["totals"]  # type: ignore[no-any-return]


@contextlib.contextmanager
def one_connection_held(lab: Lab) -> Iterator[tuple[Any, ProxyThread, threading.Event]]:
    """A TLS origin whose ``/hold`` waits for the gate, cproxy intercepting with
    MaxConnPerServer=1, and a first intercepted client holding the only connection."""
    gate = threading.Event()

    def hold(h: Any) -> None:
        gate.wait(WAIT_S)
        h.reply(200, b"held", {"Cache-Control": "no-store"})

    with (
        tls_origin(lab.origin_context()) as origin,
        running(
            lab.proxy(
                origin.port, Caching="off", MaxConnPerServer="1", ServerConnQueueTimeout="60 s"
            )
        ) as proxy,
        ThreadPoolExecutor(1) as pool,
    ):
        origin.routes["/hold"] = hold

        def first() -> int:
            with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
                return get(tls, "/hold", f"a.test:{origin.port}")[0]

        held = pool.submit(first)
        wait_for(lambda: totals(proxy)["in_use"] == 1, what="the first request sent")
        try:
            yield origin, proxy, gate
        finally:
            gate.set()
        assert held.result(timeout=WAIT_S) == 200


def test_an_intercepted_client_that_closes_while_queued_leaves_the_queue(lab: Lab) -> None:
    with one_connection_held(lab) as (origin, proxy, gate):
        tls = tunnel(proxy, "a.test", origin.port, lab.client_context())
        tls.sendall(f"GET /gone HTTP/1.1\r\nHost: a.test:{origin.port}\r\n\r\n".encode())
        wait_for(lambda: totals(proxy)["waiting"] == 1, what="the second queued")
        tls.settimeout(0.0)  # send close_notify without waiting for cproxy's
        with contextlib.suppress(ssl.SSLError):  # SSLWantReadError, or what cproxy sent
            tls.unwrap()
        tls.close()  # then FIN
        wait_for(lambda: totals(proxy)["wait_abandoned"] == 1, what="it leaves the queue")
        assert totals(proxy)["waiting"] == 0
        gate.set()
    assert [r[1] for r in origin.requests] == ["/hold"]


def test_an_intercepted_client_that_sends_more_while_queued_keeps_its_place(lab: Lab) -> None:
    with one_connection_held(lab) as (origin, proxy, gate):
        with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
            tls.sendall(f"GET /one HTTP/1.1\r\nHost: a.test:{origin.port}\r\n\r\n".encode())
            wait_for(lambda: totals(proxy)["waiting"] == 1, what="the second queued")
            tls.sendall(
                f"GET /two HTTP/1.1\r\nHost: a.test:{origin.port}\r\n\r\n".encode()
            )  # pipelined
            # Two turns of cproxy's event loop: the watch on the queued client has seen
            # the new records (they were on its socket before the first turn began).
            proxy.call(lambda: None)
            proxy.call(lambda: None)
            assert totals(proxy)["waiting"] == 1
            gate.set()
            reader = tls.makefile("rb")
            one = read_response(reader)
            two = read_response(reader)
        assert (one[0], one[2], two[0], two[2]) == (200, b"hello GET /one", 200, b"hello GET /two")
        assert totals(proxy)["wait_abandoned"] == 0
    assert [r[1] for r in origin.requests] == ["/hold", "/one", "/two"]
