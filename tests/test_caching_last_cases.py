"""Issue #23's last conformance cases, through a real proxy and origin:

- If-Modified-Since against a stored fresh response without Last-Modified is answered 304
  by comparing with its Date (RFC 9110 §13.1.3, RFC 9111 §4.3.2);
- a request for the whole of a URL whose part is stored asks the origin for the missing
  range only (with If-Range) and completes the stored response (RFC 9111 §3.4).
"""

from __future__ import annotations

from cproxy.cache import normalise_url
from cproxy.cache.dates import format_http_date, parse_http_date
from tests.support import Origin, ProxyThread, start_proxy
from tests.test_cache_support import T0, URL, date, make_cache
from tests.test_caching_proxy import fetch, origin_requests
from tests.test_caching_ranges import BODY, _ranged_origin


def test_if_modified_since_is_compared_with_the_date_when_there_is_no_last_modified(
    proxy: ProxyThread, origin: Origin
) -> None:
    origin.routes["/d"] = lambda h: h.reply(200, b"dated", {"Cache-Control": "max-age=600"})
    url = origin.url("/d")
    status, headers, _ = fetch(proxy, url)
    assert status == 200 and "last-modified" not in headers
    stored_date = parse_http_date(headers["date"])
    assert stored_date is not None
    # Not modified since its Date (or a later time): a 304 from the cache.
    for since in (stored_date, stored_date + 60):
        status, headers, body = fetch(
            proxy, url, headers={"If-Modified-Since": format_http_date(since)}
        )
        assert (status, body) == (304, b"")
        assert headers["cache-status"].startswith("cproxy; hit")
    # Asked about a time before its Date: the stored response itself.
    status, _, body = fetch(
        proxy, url, headers={"If-Modified-Since": format_http_date(stored_date - 1)}
    )
    assert (status, body) == (200, b"dated")
    assert len(origin_requests(origin, "/d")) == 1


def test_a_whole_request_asks_the_origin_only_for_the_missing_range(
    proxy: ProxyThread, origin: Origin
) -> None:
    _ranged_origin(origin, "/big")
    url = origin.url("/big")
    status, _, body = fetch(proxy, url, headers={"Range": "bytes=0-599"})
    assert (status, body) == (206, BODY[:600])
    # The whole: the origin is asked for bytes 600-1023 only, under If-Range.
    status, headers, body = fetch(proxy, url)
    assert (status, body) == (200, BODY)
    assert "content-range" not in headers and headers["etag"] == '"r1"'
    assert headers["cache-status"].split("; ")[:2] == ["cproxy", "fwd=partial"]
    sent = origin_requests(origin, "/big")[1][2]
    assert sent["Range"] == "bytes=600-1023" and sent["If-Range"] == '"r1"'
    # Completed: the next whole request is a hit.
    status, headers, body = fetch(proxy, url)
    assert (status, body) == (200, BODY)
    assert headers["cache-status"].startswith("cproxy; hit")
    assert len(origin_requests(origin, "/big")) == 2


def test_a_prefix_missing_is_asked_for_too(proxy: ProxyThread, origin: Origin) -> None:
    _ranged_origin(origin, "/tail")
    url = origin.url("/tail")
    assert fetch(proxy, url, headers={"Range": "bytes=1000-"})[0] == 206
    status, _, body = fetch(proxy, url)
    assert (status, body) == (200, BODY)
    assert origin_requests(origin, "/tail")[1][2]["Range"] == "bytes=0-999"


def test_a_changed_representation_comes_whole(proxy: ProxyThread, origin: Origin) -> None:
    """If-Range with the parts' ETag: the origin whose representation changed sends the
    whole 200, which is relayed and stored; the old parts are never mixed in."""
    _ranged_origin(origin, "/changing", etag='"old"')
    url = origin.url("/changing")
    assert fetch(proxy, url, headers={"Range": "bytes=0-99"})[0] == 206

    def changed(h) -> None:  # type: ignore[no-untyped-def]
        fields = {"Cache-Control": "max-age=600", "ETag": '"new"'}
        if h.headers.get("If-Range") == '"new"' and h.headers.get("Range"):
            raise AssertionError("never asked: the parts have the old ETag")
        h.reply(200, b"n" * 1024, fields)

    origin.routes["/changing"] = changed
    status, headers, body = fetch(proxy, url)
    assert (status, body) == (200, b"n" * 1024) and headers["etag"] == '"new"'
    assert fetch(proxy, url)[2] == b"n" * 1024  # stored whole
    assert len(origin_requests(origin, "/changing")) == 2


def test_completion_is_not_tried_with_the_clients_own_conditionals() -> None:
    cache = make_cache()
    part = [
        ("Cache-Control", "max-age=600"),
        ("ETag", '"e"'),
        ("Content-Range", "bytes 0-9/20"),
        ("Date", date()),
    ]
    cache.store_response(
        "GET", URL, [], 206, "Partial", part, b"0123456789", request_time=T0, response_time=T0
    )
    plain = cache.lookup("GET", URL, [], T0)
    assert (plain.fwd, plain.span) == ("partial", (10, 19))
    assert ("Range", "bytes=10-19") in (plain.origin_headers or ())
    for field in ("If-None-Match", "If-Modified-Since", "If-Range"):
        value = '"e"' if field != "If-Modified-Since" else date()
        assert cache.lookup("GET", URL, [(field, value)], T0).fwd != "partial", field


def test_a_206_of_another_size_is_never_shown_and_the_whole_is_asked_again(
    proxy: ProxyThread, origin: Origin
) -> None:
    _ranged_origin(origin, "/odd")
    url = origin.url("/odd")
    assert fetch(proxy, url, headers={"Range": "bytes=0-99"})[0] == 206
    asked: list[str | None] = []

    def odd(h) -> None:  # type: ignore[no-untyped-def]
        asked.append(h.headers.get("Range"))
        fields = {"Cache-Control": "max-age=600", "ETag": '"r1"'}
        if h.headers.get("Range"):  # not the range asked for
            h.reply(206, BODY[100:200], {**fields, "Content-Range": "bytes 100-199/1024"})
        else:
            h.reply(200, BODY, fields)

    origin.routes["/odd"] = odd
    status, _, body = fetch(proxy, url)
    assert (status, body) == (200, BODY)
    assert asked == ["bytes=100-1023", None]


def test_no_completion_for_what_the_cache_could_not_hold(origin: Origin) -> None:
    big = bytes(range(256)) * 32  # 8192 bytes, more than the whole cache below

    def handler(h) -> None:  # type: ignore[no-untyped-def]
        fields = {"Cache-Control": "max-age=600", "ETag": '"b"'}
        if h.headers.get("Range") == "bytes=0-99":
            h.reply(206, big[:100], {**fields, "Content-Range": f"bytes 0-99/{len(big)}"})
        else:
            h.reply(200, big, fields)

    origin.routes["/huge"] = handler
    url = origin.url("/huge")
    # 4 K: room for the first 100 bytes' part (its size counts the memory its header
    # fields and objects hold, about 2.5 K: #21), none for the whole response.
    with start_proxy(CacheMemory="4 K", CacheFileSizeLimit="0") as proxy:
        assert fetch(proxy, url, headers={"Range": "bytes=0-99"})[0] == 206
        assert proxy.runtime.cache.store.partial(normalise_url(url)) is not None
        status, headers, body = fetch(proxy, url)
    assert (status, body) == (200, big)
    assert "fwd=partial" not in headers["cache-status"]
    assert "Range" not in origin_requests(origin, "/huge")[1][2]
