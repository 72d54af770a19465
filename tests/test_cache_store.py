"""The byte-sized LRU store and URL keys (RFC 9111 §2, §4.1)."""

from __future__ import annotations

import pytest

from cproxy.cache import CacheSettings, CacheStore, Entry, normalise_url
from cproxy.cache import store as store_module
from tests.test_cache_support import T0


def entry(url: str, body_len: int = 100, req=(), vary: str | None = None) -> Entry:  # type: ignore[no-untyped-def]
    headers = [("Cache-Control", "max-age=60"), ("Date", "Tue, 14 Nov 2023 22:13:20 GMT")]
    if vary:
        headers.append(("Vary", vary))
    return Entry.build(
        url_key=url,
        status=200,
        reason="OK",
        resp_headers=headers,
        body=b"x" * body_len,
        req_headers=list(req),
        request_time=T0,
        response_time=T0,
        settings=CacheSettings(),
    )


def test_entry_head_serialised_with_age_and_content_length() -> None:
    e = entry("http://a/x", 3)
    head = e.head_with_age(7, b"X-Extra: 1\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n")
    assert head.endswith(b"Content-Length: 3\r\nX-Extra: 1\r\nAge: 7\r\n\r\n")
    # The size counts what the entry holds (#21): the serialised head, body and key bytes,
    # plus the measured overheads of the entry's objects and of each parsed header field.
    values = len("max-age=60") + len("Tue, 14 Nov 2023 22:13:20 GMT")
    held = len(e.head_prefix) + 3 + len("http://a/x") + values
    assert e.size == held + store_module.ENTRY_OVERHEAD + 2 * store_module.FIELD_OVERHEAD


def test_lru_eviction_never_exceeds_max_bytes() -> None:
    size = entry("http://a/0").size
    store = CacheStore(size * 3 + 10)
    for i in range(10):
        assert store.put(entry(f"http://a/{i}"))
        assert store.current_bytes <= store.max_bytes
    assert store.stats()["objects"] == 3 and store.evictions == 7
    assert store.lookup("http://a/9", []) is not None
    assert store.lookup("http://a/0", []) is None


def test_lru_order_follows_lookups() -> None:
    size = entry("http://a/0").size
    store = CacheStore(size * 2 + 5)
    store.put(entry("http://a/0"))
    store.put(entry("http://a/1"))
    store.lookup("http://a/0", [])  # now 1 is the least recently used
    store.put(entry("http://a/2"))
    assert "http://a/0" in store and "http://a/1" not in store


def test_object_larger_than_cache_refused() -> None:
    store = CacheStore(500)
    assert not store.put(entry("http://a/big", 1000))
    assert store.stats()["objects"] == 0 and store.stores == 0


def test_resize_evicts_down_live_and_keeps_lru_order() -> None:
    size = entry("http://a/0").size
    store = CacheStore(size * 4)
    for i in range(4):
        store.put(entry(f"http://a/{i}"))
    store.lookup("http://a/0", [])
    store.resize(size * 2)
    assert store.max_bytes == size * 2 and store.current_bytes <= size * 2
    assert "http://a/0" in store and "http://a/3" in store and store.evictions == 2
    store.put(entry("http://a/4"))  # evicts the LRU one, http://a/3
    assert "http://a/0" in store and "http://a/3" not in store


def test_variants_share_a_key_and_are_replaced_by_secondary_key() -> None:
    store = CacheStore(1 << 20)
    store.put(entry("http://a/v", 10, [("Accept", "a")], "Accept"))
    store.put(entry("http://a/v", 20, [("Accept", "b")], "Accept"))
    store.put(entry("http://a/v", 30, [("Accept", "a")], "Accept"))
    assert store.stats()["objects"] == 2 and store.stats()["keys"] == 1
    found = store.lookup("http://a/v", [("accept", "a")])
    assert found is not None and len(found.body) == 30


def test_purge_invalidate_and_stats() -> None:
    store = CacheStore(1 << 20)
    store.put(entry("http://a/p"))
    assert store.purge("http://a/p") is True and store.purge("http://a/p") is False
    store.invalidate("http://a/none")
    store.lookup("http://a/p", [])
    stats = store.stats()
    assert stats["misses"] == 1 and stats["stores"] == 1 and stats["bytes"] == 0


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("HTTP://Example.COM:80", "http://example.com/"),
        ("https://h:443/a", "https://h/a"),
        ("http://h:8080/a", "http://h:8080/a"),
        ("http://h/a%2fb%7e", "http://h/a%2Fb%7E"),
        ("http://h/a%2Fb", "http://h/a%2Fb"),
        ("http://h/A?Q=1#frag", "http://h/A?Q=1"),
        ("http://u:p@h/", "http://h/"),
        ("http://[::1]:80/", "http://[::1]/"),
    ],
)
def test_2_primary_key_normalisation(url: str, key: str) -> None:
    assert normalise_url(url) == key


def test_2_query_is_part_of_the_key_and_relative_urls_rejected() -> None:
    assert normalise_url("http://h/a?x=1") != normalise_url("http://h/a?x=2")
    assert normalise_url("http://h/a%2Fb") != normalise_url("http://h/a/b")
    with pytest.raises(ValueError):
        normalise_url("/relative")
