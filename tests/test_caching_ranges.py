"""Byte ranges answered from a complete stored response (RFC 9110 §14, §13.1.5, §15.3.7)."""

from __future__ import annotations

import pytest

from cproxy.cache.ranges import UNSATISFIABLE, if_range_matches, requested_range
from tests.support import Origin, OriginHandler, ProxyThread
from tests.test_caching_proxy import fetch, lowered, origin_requests, route

BODY = bytes(range(256)) * 4  # 1024 bytes, every offset recognisable


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-1", (0, 1)),
        ("bytes=1-", (1, 1023)),
        ("bytes=-1", (1023, 1023)),
        ("bytes=-5000", (0, 1023)),  # §14.1.3: a suffix longer than the body is all of it
        ("bytes=1000-5000", (1000, 1023)),  # §14.1.2: last past the end is clamped
        ("BYTES = 5-9", (5, 9)),  # unit is case-insensitive, OWS around "="
        ("bytes=1024-", UNSATISFIABLE),  # §14.1.1: first past the end
        ("bytes=-0", UNSATISFIABLE),
        ("bytes=9-5", None),  # §14.1.1: invalid: ignored, whole response
        ("bytes=0-1, 5-6", None),  # several ranges: whole response (allowed, §14.2)
        ("items=0-1", None),  # unknown unit: ignored
        ("bytes=", None),
        ("bytes=x-1", None),
    ],
)
def test_14_1_range_parsing(value: str, expected: tuple[int, int] | None) -> None:
    assert requested_range([("Range", value)], len(BODY)) == expected


def test_14_2_no_range_or_two_fields_mean_the_whole_response() -> None:
    assert requested_range([], 10) is None
    assert requested_range([("Range", "bytes=0-1"), ("Range", "bytes=2-3")], 10) is None


@pytest.mark.parametrize(
    ("if_range", "stored", "applies"),
    [
        (None, [], True),
        ('"a"', [("ETag", '"a"')], True),
        ('"a"', [("ETag", '"b"')], False),
        ('W/"a"', [("ETag", 'W/"a"')], False),  # §13.1.5: weak tags never match
        ('"a"', [("ETag", 'W/"a"')], False),
        (
            "Mon, 23 Nov 2026 10:00:00 GMT",
            [("Last-Modified", "Mon, 23 Nov 2026 10:00:00 GMT")],
            True,
        ),
        (
            "Mon, 23 Nov 2026 10:00:00 GMT",
            [("Last-Modified", "Mon, 23 Nov 2026 09:00:00 GMT")],
            False,
        ),
        ("Mon, 23 Nov 2026 10:00:00 GMT", [], False),
    ],
)
def test_13_1_5_if_range(if_range: str | None, stored: list, applies: bool) -> None:  # type: ignore[type-arg]
    req = [("If-Range", if_range)] if if_range is not None else []
    assert if_range_matches(req, stored) is applies


def _stored(proxy: ProxyThread, origin: Origin) -> str:
    route(origin, "/r", body=BODY, Cache_Control="max-age=600", ETag='"v1"')
    url = origin.url("/r")
    assert fetch(proxy, url)[2] == BODY
    return url


def test_15_3_7_range_of_a_stored_response_is_a_206_from_the_cache(
    proxy: ProxyThread, origin: Origin
) -> None:
    url = _stored(proxy, origin)
    status, headers, body = fetch(proxy, url, headers={"Range": "bytes=10-19"})
    h = lowered(headers)
    assert (status, body) == (206, BODY[10:20])
    assert h["content-range"] == "bytes 10-19/1024" and h["content-length"] == "10"
    assert h["etag"] == '"v1"' and "age" in h and "cproxy; hit" in h["cache-status"]
    assert len(origin_requests(origin, "/r")) == 1  # the range came from the cache


def test_15_5_17_range_past_the_end_is_a_416(proxy: ProxyThread, origin: Origin) -> None:
    url = _stored(proxy, origin)
    status, headers, body = fetch(proxy, url, headers={"Range": "bytes=5000-"})
    assert (status, body) == (416, b"")
    assert lowered(headers)["content-range"] == "bytes */1024"


def test_13_1_5_if_range_that_no_longer_matches_gets_the_whole_response(
    proxy: ProxyThread, origin: Origin
) -> None:
    url = _stored(proxy, origin)
    status, _, body = fetch(proxy, url, headers={"Range": "bytes=0-9", "If-Range": '"v0"'})
    assert (status, body) == (200, BODY)
    status, _, body = fetch(proxy, url, headers={"Range": "bytes=0-9", "If-Range": '"v1"'})
    assert (status, body) == (206, BODY[:10])


def test_14_2_head_and_multiple_ranges_get_the_whole_response(
    proxy: ProxyThread, origin: Origin
) -> None:
    url = _stored(proxy, origin)
    assert fetch(proxy, url, headers={"Range": "bytes=0-1,4-5"})[:3:2] == (200, BODY)
    status, headers, body = fetch(proxy, url, method="HEAD", headers={"Range": "bytes=0-1"})
    assert (status, body, lowered(headers)["content-length"]) == (200, b"", "1024")


# -- stored partial content (RFC 9111 §3.3, §3.4; issue #13 item 6) ----------------------------


def _ranged_origin(origin: Origin, path: str, etag: str = '"r1"') -> None:
    """An origin that answers a single byte range with a 206, anything else with a 200."""

    def handler(h: OriginHandler) -> None:
        fields = {"Cache-Control": "max-age=600", "ETag": etag, "Accept-Ranges": "bytes"}
        span = (
            requested_range([("Range", h.headers["Range"])], len(BODY))
            if h.headers.get("Range")
            else None
        )
        if span is None or span == UNSATISFIABLE:
            h.reply(200, BODY, fields)
            return
        first, last = span
        fields["Content-Range"] = f"bytes {first}-{last}/{len(BODY)}"
        h.reply(206, BODY[first : last + 1], fields)

    origin.routes[path] = handler


def test_3_3_3_4_partial_responses_stored_reused_and_combined(
    proxy: ProxyThread, origin: Origin
) -> None:
    _ranged_origin(origin, "/big")
    url = origin.url("/big")
    status, headers, body = fetch(proxy, url, headers={"Range": "bytes=0-499"})
    assert (status, body) == (206, BODY[:500])
    assert headers["cache-status"].endswith("; stored")
    # Inside the stored part: from the cache.
    status, headers, body = fetch(proxy, url, headers={"Range": "bytes=100-199"})
    assert (status, body) == (206, BODY[100:200])
    assert headers["content-range"] == "bytes 100-199/1024"
    assert headers["cache-status"].startswith("cproxy; hit")
    assert len(origin_requests(origin, "/big")) == 1
    # Outside it: to the origin; the two parts now make the whole.
    status, _, body = fetch(proxy, url, headers={"Range": "bytes=400-1023"})
    assert (status, body) == (206, BODY[400:])
    assert len(origin_requests(origin, "/big")) == 2
    status, headers, body = fetch(proxy, url)
    assert (status, body) == (200, BODY)
    assert "content-range" not in headers and headers["etag"] == '"r1"'
    assert headers["cache-status"].startswith("cproxy; hit")
    status, _, body = fetch(proxy, url, headers={"Range": "bytes=900-999"})
    assert (status, body) == (206, BODY[900:1000])
    assert len(origin_requests(origin, "/big")) == 2
    assert proxy.runtime.cache.store.current_bytes <= proxy.runtime.config.cache_memory_bytes
