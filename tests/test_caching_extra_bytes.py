"""A Content-Length response followed by extra bytes (issue #13 item 4), and a Cache-Status
and access log that say what really happened.

RFC 9112 §6.3: the message ends where Content-Length says; bytes after it belong to no
message. They make the origin connection unusable (it is closed, never pooled), not the
response incomplete, so the response is stored and served like any other.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cproxy.http.framing import LENGTH, body_reader
from tests.hostile import OriginConn, RecordingOrigin, exchange
from tests.support import start_proxy

CC = "Cache-Control: max-age=3600\r\n"


def test_a_length_body_with_bytes_after_it_is_complete_but_not_clean() -> None:
    """The pure rule the relay follows: ``done`` (complete, storable), not ``clean``."""
    reader = body_reader(LENGTH, 5, client=False)
    assert reader.feed(b"helloEXTRA") == [b"hello"]
    assert reader.done and not reader.clean and reader.leftover == b"EXTRA"


def _script(head: bytes, body: bytes, extra: bytes, split: bool):  # type: ignore[no-untyped-def]
    """The first request gets ``head + body + extra`` (in two sends when ``split``), then
    the connection closes; later connections get a different body."""

    def script(conn: OriginConn) -> None:
        if conn.read_request() is None:
            return
        if conn.index == 0:
            if split:
                conn.send(head)
                conn.send(body + extra)
            else:
                conn.send(head + body + extra)
            conn.sock.close()
            return
        conn.reply(b"second", CC)

    return script


def _get(port: int, origin_port: int) -> bytes:
    o = f"127.0.0.1:{origin_port}"
    return f"GET http://{o}/x HTTP/1.1\r\nHost: {o}\r\nConnection: close\r\n\r\n".encode()


@pytest.mark.parametrize(
    ("size", "split"),
    [(5, False), (5, True), (200_000, False)],  # in the head's packet, after it, streamed
)
def test_extra_bytes_after_a_length_body_stored_and_served(
    tmp_path: Path, size: int, split: bool
) -> None:
    body = bytes(i % 251 for i in range(size))
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n{CC}\r\n".encode()
    log = tmp_path / "access.log"
    with (
        RecordingOrigin(_script(head, body, b"EXTRA BYTES", split)) as origin,
        start_proxy(AccessLog=str(log)) as proxy,
    ):
        first = exchange(proxy.port, _get(proxy.port, origin.port))
        assert [(a.status, a.body) for a in first.answers] == [(200, body)]
        second = exchange(proxy.port, _get(proxy.port, origin.port))
        assert [(a.status, a.body) for a in second.answers] == [(200, body)]
        assert (second.answers[0].header("Cache-Status") or "").startswith("cproxy; hit")
        origin.sync()
        assert len(origin.requests()) == 1
        status = first.answers[0].header("Cache-Status") or ""
        if size <= 65536:
            # Small bodies are stored before the head goes out: the header can say so.
            assert status.endswith("; stored"), status
        else:
            # A streamed body is stored after its head went out: the header cannot know.
            assert "stored" not in status, status
    lines = log.read_text().splitlines()
    assert lines[0].endswith("cache=uri-miss;stored proto=1.1"), lines[0]
    assert lines[1].endswith("cache=hit proto=-"), lines[1]


def test_cache_status_never_claims_stored_when_the_store_refused(tmp_path: Path) -> None:
    """Storable by RFC 9111, but larger than the whole cache: not stored, and neither the
    Cache-Status field nor the access log says it was."""
    body = b"x" * 1500
    log = tmp_path / "access.log"

    def script(conn: OriginConn) -> None:
        while conn.read_request() is not None:
            conn.reply(body, CC)

    with (
        RecordingOrigin(script) as origin,
        start_proxy(AccessLog=str(log), CacheMemory="1600 bytes", CacheFileSizeLimit="0") as proxy,
    ):
        first = exchange(proxy.port, _get(proxy.port, origin.port))
        assert [(a.status, a.body) for a in first.answers] == [(200, body)]
        assert "stored" not in (first.answers[0].header("Cache-Status") or "")
        exchange(proxy.port, _get(proxy.port, origin.port))
        origin.sync()
        assert len(origin.requests()) == 2
    for line in log.read_text().splitlines():
        # It did not fit in CacheMemory: the detail says so (issue #23).
        assert line.endswith("cache=uri-miss;detail=limit proto=1.1"), line
