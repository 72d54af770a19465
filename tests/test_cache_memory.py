"""CacheMemory bounds the memory the in-memory cache really holds (#21).

The store is filled through its own API with responses parsed by the proxy's HTTP parser
(so header names and values are new objects, as when an origin sends them), and the memory
the held entries take is measured with tracemalloc: it must be within TOLERANCE of what the
store says it holds, for each shape of response, and within CacheMemory (plus TOLERANCE)
once the store evicts.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from cproxy.cache import CacheSettings, CacheStore, Entry
from cproxy.cache.store import PartialEntry
from cproxy.http.message import parse_response_head

TOLERANCE = 0.30
SETTINGS = CacheSettings()
T = 1_700_000_000.0


def parsed_entry(
    i: int,
    body_len: int,
    extra_fields: int = 0,
    *,
    vary: str = "",
    req: tuple[tuple[str, str], ...] = (),
    status: str = "200 OK",
    more: tuple[str, ...] = (),
) -> Entry:
    """Entry ``i`` built from a response head as the origin side parses it."""
    lines = [
        f"HTTP/1.1 {status}",
        "Date: Tue, 14 Nov 2023 22:13:20 GMT",
        "Cache-Control: public, max-age=3600",
        "Content-Type: text/html; charset=utf-8",
        f'ETag: "{i:08x}-5f1e"',
        "Last-Modified: Mon, 13 Nov 2023 10:00:00 GMT",
        "Server: origin/1.0",
        f"Content-Length: {body_len}",
        *more,
        *([f"Vary: {vary}"] if vary else []),
        *(f"X-Trace-{j}: span={j};id={i:012d}" for j in range(extra_fields)),
    ]
    resp = parse_response_head(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), "GET")
    return Entry.build(
        url_key=f"http://origin.test/assets/{i:08d}/file.bin",
        status=resp.status,
        reason=resp.reason,
        resp_headers=resp.headers,
        body=bytes(body_len),  # a new object per response, as a received body is
        req_headers=list(req),
        request_time=T + i,
        response_time=T + i + 0.25,
        settings=SETTINGS,
    )


Fill = Callable[[CacheStore, int, int], None]


def fill_plain(body_len: int, extra_fields: int = 0) -> Fill:
    def fill(store: CacheStore, n: int, start: int) -> None:
        for i in range(start, start + n):
            store.put(parsed_entry(i, body_len, extra_fields))

    return fill


def fill_variants(store: CacheStore, n: int, start: int) -> None:
    # Three variants per URL, told apart by Accept-Encoding (RFC 9111 §4.1).
    for i in range(start, start + n):
        coding = ("gzip", "br", "identity")[i % 3]
        req = (("Accept-Encoding", coding),)
        store.put(parsed_entry(i // 3, 1024, vary="Accept-Encoding", req=req))


def fill_parts(store: CacheStore, n: int, start: int) -> None:
    # Stored parts of a representation (RFC 9111 §3.4): two 4 KiB parts per URL.
    length = 1 << 20
    for i in range(start, start + n):
        more = (f"Content-Range: bytes 0-4095/{length}",)
        meta = parsed_entry(i, 0, status="206 Partial Content", more=more)
        first = PartialEntry.start(meta, "v1", 0, length, bytes(4096))
        second = PartialEntry.start(meta, "v1", 65536, length, bytes(4096))
        store.put_partial(first.merged(second))


SHAPES: dict[str, tuple[Fill, int]] = {
    "tiny body, 46 header fields": (fill_plain(16, 40), 800),
    "1 KiB, 6 header fields": (fill_plain(1024), 1500),
    "1 KiB, 12 header fields": (fill_plain(1024, 6), 1500),
    "64 KiB": (fill_plain(65536), 60),
    "1 KiB, 3 Vary variants per URL": (fill_variants, 1500),
    "stored parts": (fill_parts, 400),
}


@contextmanager
def traced() -> Iterator[list[int]]:
    """Yields a list that holds, after the block, the bytes allocated in it and still held."""
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    held = [0]
    try:
        before = tracemalloc.get_traced_memory()[0]
        yield held
        gc.collect()
        held[0] = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not was_tracing:
            tracemalloc.stop()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_size_the_store_reports_is_the_memory_its_entries_hold(shape: str) -> None:
    fill, n = SHAPES[shape]
    with traced() as held:
        store = CacheStore(1 << 40)
        fill(store, n, 0)
    assert store.evictions == 0 and store.stores == n
    ratio = held[0] / store.current_bytes
    assert 1 - TOLERANCE <= ratio <= 1 + TOLERANCE, (shape, held[0], store.current_bytes)


def test_memory_stays_within_cache_memory_once_the_store_evicts() -> None:
    cache_memory = 2 << 20
    fills = [fill_plain(16, 40), fill_plain(1024), fill_variants, fill_parts, fill_plain(65536)]
    with traced() as held:
        store = CacheStore(cache_memory)
        # Batches of each shape, each batch new URLs, about three times what fits.
        for batch in range(60):
            fills[batch % len(fills)](store, 40 if batch % len(fills) != 4 else 4, batch * 1000)
    assert store.evictions > 0
    assert store.current_bytes <= cache_memory
    # The store is close to full, and the memory it holds is what CacheMemory allows.
    assert store.current_bytes > cache_memory * 0.9
    assert held[0] <= cache_memory * (1 + TOLERANCE), held[0]
    assert held[0] >= cache_memory * (1 - TOLERANCE), held[0]
