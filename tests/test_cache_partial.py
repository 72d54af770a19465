"""Partial content (RFC 9111 §3.3, §3.4): 206 responses stored by range, ranges answered
from them, parts combined into a complete response; all within CacheMemory."""

from __future__ import annotations

import pytest

from cproxy.cache import LookupKind
from cproxy.cache import store as store_module
from cproxy.cache.policy import CacheSettings, content_range, storable
from tests.test_cache_support import T0, URL, date, make_cache

BODY = bytes(range(256)) * 4  # 1024 bytes, every offset recognisable
ETAG = '"v1"'


def part(first: int, last: int, etag: str = ETAG, **extra: str) -> list[tuple[str, str]]:
    fields = [
        ("Date", date()),
        ("Cache-Control", "max-age=600"),
        ("ETag", etag),
        ("Content-Type", "application/octet-stream"),
        ("Content-Range", f"bytes {first}-{last}/{len(BODY)}"),
    ]
    return fields + [(k.replace("_", "-"), v) for k, v in extra.items()]


def store_part(cache, first: int, last: int, at: float = T0, **kw: str):  # type: ignore[no-untyped-def]
    return cache.store_response(
        "GET",
        URL,
        [("Range", f"bytes={first}-{last}")],
        206,
        "Partial Content",
        part(first, last, **kw),
        BODY[first : last + 1],
        request_time=at,
        response_time=at,
    )


def ask(cache, value: str, at: float = T0 + 1, **extra: str):  # type: ignore[no-untyped-def]
    headers = [("Range", value)] + [(k.replace("_", "-"), v) for k, v in extra.items()]
    return cache.lookup("GET", URL, headers, at)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("bytes 0-9/100", (0, 9, 100)),
        ("bytes 99-99/100", (99, 99, 100)),
        ("bytes 0-9/*", None),  # unknown complete length: cannot be combined
        ("bytes 9-0/100", None),
        ("bytes 0-100/100", None),
        ("bytes */100", None),
        ("items 0-9/100", None),
    ],
)
def test_14_4_content_range_parsing(value: str, parsed: tuple[int, int, int] | None) -> None:
    assert content_range([("Content-Range", value)]) == parsed


@pytest.mark.parametrize(
    ("fields", "body_bytes", "ok"),
    [
        (part(0, 9), 10, True),
        (part(0, 9), 9, False),  # body and range disagree
        (part(0, 9, etag='W/"v1"'), 10, True),  # weak: kept, never combined
        ([f for f in part(0, 9) if f[0] != "ETag"], 10, True),  # no validator: the same
        (part(0, 9, Vary="Accept-Encoding"), 10, False),
        ([f for f in part(0, 9) if f[0] != "Content-Range"], 10, False),  # multipart
        (part(0, 9, Cache_Control="no-store"), 10, False),
    ],
)
def test_3_3_which_partial_responses_are_stored(fields, body_bytes: int, ok: bool) -> None:  # type: ignore[no-untyped-def]
    assert storable("GET", 206, [], fields, CacheSettings(), body_bytes=body_bytes)[0] is ok
    assert storable("POST", 206, [], part(0, 9), CacheSettings(), body_bytes=10)[0] is False


def test_3_3_partial_over_cache_file_size_limit_is_not_stored() -> None:
    settings = CacheSettings(cache_file_size_limit_bytes=512)  # complete length 1024
    assert storable("GET", 206, [], part(0, 9), settings, body_bytes=10) == (False, "range")


def test_3_3_range_inside_a_stored_part_is_answered_from_it() -> None:
    cache = make_cache()
    entry, why = store_part(cache, 100, 299)
    assert (entry, why) == (None, "stored-part")  # parts are not an Entry to serve
    hit = ask(cache, "bytes=150-199")
    assert hit.kind is LookupKind.HIT and hit.partial is not None and hit.span == (150, 199)
    assert hit.partial.covering(150, 199) == BODY[150:200]
    head = hit.partial.range_head(hit.age, 150, 199, b"X-Extra: 1\r\n")
    assert head.startswith(b"HTTP/1.1 206 Partial Content\r\n")
    assert b"\r\nContent-Range: bytes 150-199/1024\r\n" in head
    assert b"\r\nContent-Length: 50\r\n" in head
    assert head.count(b"Content-Range") == 1 and head.count(b"Content-Length") == 1
    assert b'\r\nETag: "v1"\r\n' in head and head.endswith(b"X-Extra: 1\r\nAge: 1\r\n\r\n")
    # Outside the part, across its edge, a suffix it does not hold, or no Range: a miss.
    for value in ("bytes=0-99", "bytes=250-300", "bytes=-10", "bytes=2000-"):
        assert ask(cache, value).kind is LookupKind.MISS, value
    assert cache.lookup("GET", URL, [], T0 + 1).kind is LookupKind.MISS
    assert cache.lookup("HEAD", URL, [("Range", "bytes=150-199")], T0 + 1).kind is (LookupKind.MISS)


def test_3_3_parts_are_reused_only_while_fresh_and_if_range_holds() -> None:
    cache = make_cache()
    store_part(cache, 0, 499)
    assert ask(cache, "bytes=0-9", If_Range=ETAG).kind is LookupKind.HIT
    assert ask(cache, "bytes=0-9", If_Range='"v2"').kind is LookupKind.MISS
    assert ask(cache, "bytes=0-9", If_None_Match=ETAG).kind is LookupKind.MISS
    assert ask(cache, "bytes=0-9", Cache_Control="no-cache").kind is LookupKind.MISS
    assert ask(cache, "bytes=0-9", at=T0 + 601).kind is LookupKind.MISS  # stale


def test_3_4_parts_under_one_strong_etag_combine_into_a_complete_response() -> None:
    cache = make_cache()
    store_part(cache, 0, 299)
    store_part(cache, 600, 1023)
    assert ask(cache, "bytes=200-700").kind is LookupKind.MISS  # the gap is not held
    assert len(cache.store.partial(URL).spans) == 2  # type: ignore[union-attr]
    entry, why = store_part(cache, 250, 650)  # overlaps both: now the whole
    assert why == "stored" and entry is not None and entry.status == 200
    assert entry.body == BODY
    assert cache.store.partial(URL) is None
    whole = cache.lookup("GET", URL, [], T0 + 1)
    assert whole.kind is LookupKind.HIT and whole.entry is not None
    assert whole.entry.body == BODY
    head = whole.response_head()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Range" not in head
    assert b"\r\nContent-Length: 1024\r\n" in head


def test_3_4_a_part_under_another_etag_replaces_the_stored_parts() -> None:
    cache = make_cache()
    store_part(cache, 0, 511)
    store_part(cache, 512, 1023, etag='"v2"')
    parts = cache.store.partial(URL)
    assert parts is not None and parts.etag == "v2" and [s for s, _ in parts.spans] == [512]
    assert ask(cache, "bytes=0-9").kind is LookupKind.MISS


def test_3_4_the_newest_parts_fields_replace_the_stored_ones() -> None:
    cache = make_cache()
    store_part(cache, 0, 99, X_Version="old")
    store_part(cache, 100, 199, X_Version="new")
    hit = ask(cache, "bytes=0-150")
    assert hit.partial is not None
    assert b"X-Version: new" in hit.partial.range_head(0, 0, 150)


def test_parts_count_in_cache_memory_and_are_evicted_with_it() -> None:
    # The parts' size is the memory they hold (#21): the 900 bytes, the meta entry's head
    # and fields and the objects' overheads.
    cache = make_cache(max_bytes=4000)
    store_part(cache, 0, 899)
    held = cache.store.current_bytes
    assert 900 + store_module.ENTRY_OVERHEAD + store_module.PARTIAL_OVERHEAD < held <= 4000
    # Another URL's response pushes the parts out: one budget for both.
    cache.store_response(
        "GET",
        "http://example.test/other",
        [],
        200,
        "OK",
        [("Cache-Control", "max-age=60")],
        b"y" * 2000,
        request_time=T0,
        response_time=T0,
    )
    assert cache.store.partial(URL) is None
    assert 0 < cache.store.current_bytes <= 4000
    # Parts larger than the whole cache are not kept.
    small = make_cache(max_bytes=800)
    assert store_part(small, 0, 899) == (None, "limit")
    assert small.store.partial(URL) is None and small.store.current_bytes == 0


def test_invalidation_and_purge_drop_the_parts() -> None:
    cache = make_cache()
    store_part(cache, 0, 99)
    cache.invalidate_after("POST", 200, URL, [])
    assert cache.store.partial(URL) is None
    store_part(cache, 0, 99)
    assert cache.store.purge(URL) is True and cache.store.partial(URL) is None


@pytest.mark.parametrize("etag", [None, 'W/"v1"'])
def test_3_4_parts_without_a_strong_etag_are_reused_but_never_combined(
    etag: str | None,
) -> None:
    cache = make_cache()

    def store_weak(first: int, last: int) -> None:
        fields = [f for f in part(first, last) if f[0] != "ETag"]
        if etag is not None:
            fields.append(("ETag", etag))
        cache.store_response(
            "GET",
            URL,
            [],
            206,
            "Partial Content",
            fields,
            BODY[first : last + 1],
            request_time=T0,
            response_time=T0,
        )

    store_weak(0, 511)
    assert ask(cache, "bytes=10-20").kind is LookupKind.HIT
    store_weak(512, 1023)  # replaces the first part: nothing says they are one representation
    assert ask(cache, "bytes=10-20").kind is LookupKind.MISS
    assert ask(cache, "bytes=600-700").kind is LookupKind.HIT
    assert cache.lookup("GET", URL, [], T0 + 1).kind is LookupKind.MISS  # never completed
