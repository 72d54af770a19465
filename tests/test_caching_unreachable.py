"""A stale stored response instead of a 502 when the origin cannot be reached (issue #13
item 3; RFC 9111 §4.2.4, CacheMaxStale after Squid's max_stale).

The origin is a real loopback server that stops being reachable in three ways: its port
closed (connection refused), a reset, or a close before any response. Time moves with the
fake clock on the proxy's cache.
"""

from __future__ import annotations

import http.client
import re
import threading
from pathlib import Path

import pytest

from tests.hostile import OriginConn, RecordingOrigin
from tests.support import WAIT_S, FakeClock, start_proxy

CC_OK = 'Cache-Control: max-age=10\r\nETag: "v1"\r\n'


def _get(port: int, url: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _origin(failure: str, fields: str) -> tuple[RecordingOrigin, threading.Event]:
    """Answers normally until ``down`` is set, then fails in the way ``failure`` names."""
    down = threading.Event()

    def script(conn: OriginConn) -> None:
        while conn.read_request() is not None:
            if not down.is_set():
                conn.reply(b"the stored copy", fields)
                continue
            if failure == "reset":
                conn.reset()
            else:  # "close": the connection ends without any response
                conn.sock.close()
            return

    return RecordingOrigin(script), down


@pytest.mark.parametrize("failure", ["reset", "close", "refused"])
def test_unreachable_origin_gets_the_stale_copy_not_a_502(tmp_path: Path, failure: str) -> None:
    log = tmp_path / "access.log"
    origin, down = _origin(failure, CC_OK)
    with origin, start_proxy(AccessLog=str(log), CacheMaxStale="1 day") as proxy:
        clock = FakeClock()
        proxy.runtime.cache.clock = clock
        url = f"http://127.0.0.1:{origin.port}/page"
        assert _get(proxy.port, url)[::2] == (200, b"the stored copy")
        down.set()
        if failure == "refused":
            origin.__exit__(None, None, None)  # the port is closed from now on
        clock.advance(3600)  # stale for an hour, well inside CacheMaxStale
        status, headers, body = _get(proxy.port, url)
        assert (status, body) == (200, b"the stored copy")
        # ttl is -3590, or -3591 when the origin's Date was rounded down a second.
        assert re.fullmatch(
            r"cproxy; fwd=stale; ttl=-359[01]; detail=origin-unreachable", headers["cache-status"]
        ), headers["cache-status"]
        assert int(headers["age"]) >= 3600
        clock.advance(86400)  # past CacheMaxStale: the failure goes to the client
        assert _get(proxy.port, url)[0] in (502, 504)
    lines = log.read_text().splitlines()
    assert " cache=origin-unreachable proto=" in lines[1], lines[1]


def test_must_revalidate_response_is_never_served_stale_for_an_unreachable_origin() -> None:
    origin, down = _origin("reset", 'Cache-Control: max-age=10, must-revalidate\r\nETag: "v1"\r\n')
    with origin, start_proxy() as proxy:
        clock = FakeClock()
        proxy.runtime.cache.clock = clock
        url = f"http://127.0.0.1:{origin.port}/page"
        assert _get(proxy.port, url)[0] == 200
        down.set()
        clock.advance(60)
        assert _get(proxy.port, url)[0] == 502
