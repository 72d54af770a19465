"""Corners of RFC 9111 that the public HTTP caching test suite (cache-tests.fyi) checks.

Each test is a port of one of that suite's *required* tests (its id in the docstring), run
through cproxy as a forward proxy with a real origin. The suite's 3-second pauses are fake
clock advances; ``Date: 0`` in the suite is the origin's current time here.
"""

from __future__ import annotations

import http.client
import time
from email.utils import formatdate

import pytest

from tests.support import WAIT_S, FakeClock, Origin, OriginHandler, ProxyThread

PAUSE_S = 3  # the suite's pause_after


def http_date(offset_s: float = 0) -> str:
    return formatdate(time.time() + offset_s, usegmt=True)


Fields = list[tuple[str, str]]


def raw_reply(h: OriginHandler, status: int, body: bytes, fields: Fields) -> None:
    """Send exactly these fields (duplicates kept, no automatic Date) and ``body``."""
    h.send_response_only(status)
    for name, value in fields:
        h.send_header(name, value)
    if status not in (204, 304) and not any(n.lower() == "content-length" for n, _ in fields):
        h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD" and status not in (204, 304):
        h.wfile.write(body)


def serve(origin: Origin, path: str, *answers: tuple[int, Fields]) -> None:
    """The origin answers the n-th request for ``path`` with ``answers[n]`` (the last repeats).

    Bodies say which request they answer (``req 1``), so a cached reuse is visible.
    """
    count = {"n": 0}

    def handler(h: OriginHandler) -> None:
        count["n"] += 1
        status, fields = answers[min(count["n"], len(answers)) - 1]
        raw_reply(h, status, f"req {count['n']}".encode(), fields)

    origin.routes[path] = handler


def get(
    proxy: ProxyThread, url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=WAIT_S)
    try:
        conn.request(method, url, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.msg, resp.read()
    finally:
        conn.close()


def reused_after_pause(
    proxy: ProxyThread, clock: FakeClock, origin: Origin, fields: Fields, status: int = 200
) -> bool:
    """The suite's common shape: store a response, pause, ask again; was it reused?"""
    serve(origin, "/t", (status, fields))
    body = b"" if status == 204 else b"req 1"
    assert get(proxy, origin.url("/t"))[::2] == (status, body)
    clock.advance(PAUSE_S)
    second = get(proxy, origin.url("/t"))
    assert second[0] == status
    reused = len(origin.requests) == 1
    assert reused is (second[2] == body)
    return reused


# -- Expires (RFC 9111 §5.3, §4.2.1) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("expires", "reused"),
    [
        (3600, True),  # freshness-expires-future
        (-3600, False),  # freshness-expires-past
        ("0", False),  # freshness-expires-invalid: an invalid date means already expired
        ("garbage", False),
        ("Mon, 32 Foo 2020 99:99:99 GMT", False),
    ],
)
def test_5_3_expires_parsing(
    proxy: ProxyThread, clock: FakeClock, origin: Origin, expires: int | str, reused: bool
) -> None:
    value = http_date(expires) if isinstance(expires, int) else expires
    fields = [("Date", http_date()), ("Expires", value)]
    assert reused_after_pause(proxy, clock, origin, fields) is reused


def test_5_3_max_age_overrides_expires_in_the_past(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    """freshness-max-age-expires: max-age wins over Expires (§4.2.1)."""
    fields = [("Date", http_date()), ("Cache-Control", "max-age=3600"), ("Expires", http_date(-10))]
    assert reused_after_pause(proxy, clock, origin, fields)


def test_4_2_1_expires_relative_to_date_not_local_clock(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    """freshness-expires-old-date: Date an hour ago, Expires 1h after it: lifetime 3600 s,
    age 3600 s by the apparent age: stale."""
    fields = [("Date", http_date(-3600)), ("Expires", http_date(0))]
    assert not reused_after_pause(proxy, clock, origin, fields)


@pytest.mark.parametrize("date_value", ["foo", "", "Mon, 32 Foo 2020 99:99:99 GMT"])
def test_6_6_1_invalid_date_with_future_expires_is_stored_and_reused(
    proxy: ProxyThread, clock: FakeClock, origin: Origin, date_value: str
) -> None:
    """freshness-expires-invalid-date (RFC 9110 §6.6.1): an invalid Date is replaced by the
    time the response was received, so a future Expires still gives it freshness."""
    fields = [("Date", date_value), ("Expires", http_date(3600))]
    assert reused_after_pause(proxy, clock, origin, fields)


def test_6_6_1_no_date_with_future_expires_is_stored_and_reused(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    """freshness-expires-future without Date: RFC 9110 §6.6.1 dates it at reception, so
    the storability check (which needs a Date to weigh Expires against) stores it, as
    HttpCache.store_response would (issue #12)."""
    assert reused_after_pause(proxy, clock, origin, [("Expires", http_date(3600))])


# -- Age (RFC 9111 §5.1, §4.2.3) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("ages", "reused"),
    [
        (["7200"], False),  # freshness-max-age-age: Age counts against max-age
        # §5.1: not a non-negative integer: ignored, as if absent, so still fresh.
        (["abc"], True),  # age-parse-nonnumeric
        (["-7200"], True),  # age-parse-negative
        (["7200.0"], True),  # age-parse-float
        (["7200;foo=bar"], True),  # age-parse-parameter
        (["7200;foo=111"], True),  # age-parse-numeric-parameter
        (["2147483647"], False),  # age-parse-large-minus-one
        (["2147483648"], False),  # age-parse-large
        (["99999999999999999999"], False),  # age-parse-larger (far past 2^31)
        # §5.1: a list (one line or several): the first member counts.
        (["7200, 0"], False),  # age-parse-suffix
        (["0, 7200"], True),  # age-parse-prefix
        (["7200", "0"], False),  # age-parse-suffix-twoline
        (["0", "7200"], True),  # age-parse-prefix-twoline
        (["0, 0"], True),  # age-parse-dup-0
        (["0", "0"], True),  # age-parse-dup-0-twoline
        (["3600, 3600"], False),  # age-parse-dup-old, with max-age=3600 here: 3600 + pause
    ],
)
def test_5_1_age_parsing(
    proxy: ProxyThread, clock: FakeClock, origin: Origin, ages: list[str], reused: bool
) -> None:
    fields = [("Date", http_date()), ("Cache-Control", "max-age=3600")]
    fields += [("Age", a) for a in ages]
    assert reused_after_pause(proxy, clock, origin, fields) is reused


def test_5_1_age_of_a_hit_includes_the_origins_age(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    """freshness-max-age-age / headers: the served Age is at least the origin's plus the
    time the response was resident (§4.2.3)."""
    serve(
        origin,
        "/t",
        (200, [("Date", http_date()), ("Cache-Control", "max-age=3600"), ("Age", "100")]),
    )
    get(proxy, origin.url("/t"))
    clock.advance(PAUSE_S)
    _, headers, body = get(proxy, origin.url("/t"))
    assert body == b"req 1"
    assert int(headers["Age"]) >= 100 + PAUSE_S


# -- Cache-Control parsing (RFC 9111 §5.2, RFC 9110 §5.6.2) -----------------------------------


@pytest.mark.parametrize(
    ("cache_control", "reused"),
    [
        (["max-age='3600'"], False),  # cc-resp-max-age-single-quoted
        (['extension="max-age=3600", max-age=1'], False),  # max-age inside a quoted string
        (['max-age=1, extension="max-age=3600"'], False),
        (['extension="max-age=3600", max-age="1"'], False),
        (['max-age="1", extension="max-age=3600"'], False),
        (["max-age=003600"], True),  # leading zeros
        (["MAX-AGE=3600"], True),  # directive names are case-insensitive
        (["foo=bar, max-age=3600, baz"], True),  # unknown directives ignored
        (["  max-age=3600 ,, public  "], True),  # odd spacing and empty list members
        (["max-age=3600", "public"], True),  # two field lines make one list
        (['foo="a, b", max-age=3600'], True),  # a quoted comma is not a separator
    ],
)
def test_5_2_cache_control_parsing(
    proxy: ProxyThread, clock: FakeClock, origin: Origin, cache_control: list[str], reused: bool
) -> None:
    fields = [("Date", http_date())] + [("Cache-Control", v) for v in cache_control]
    assert reused_after_pause(proxy, clock, origin, fields) is reused


# -- s-maxage, private, no-cache, must-understand (RFC 9111 §5.2.2) ---------------------------


@pytest.mark.parametrize(
    ("cache_control", "reused"),
    [
        ("max-age=1, s-maxage=3600", True),  # freshness-max-age-s-maxage-shared-shorter
        ("max-age=3600, s-maxage=1", False),  # freshness-max-age-s-maxage-shared-longer
        ("s-maxage=1, max-age=3600", False),  # ...-reversed
        ("s-maxage=3600", True),  # freshness-s-maxage-shared
    ],
)
def test_5_2_2_10_s_maxage_wins_over_max_age_in_a_shared_cache(
    proxy: ProxyThread, clock: FakeClock, origin: Origin, cache_control: str, reused: bool
) -> None:
    fields = [("Date", http_date()), ("Cache-Control", cache_control)]
    assert reused_after_pause(proxy, clock, origin, fields) is reused


def test_5_2_2_10_s_maxage_on_separate_lines(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    """freshness-max-age-s-maxage-shared-longer-multiple."""
    fields = [
        ("Date", http_date()),
        ("Cache-Control", "max-age=3600"),
        ("Cache-Control", "s-maxage=1"),
    ]
    assert not reused_after_pause(proxy, clock, origin, fields)


@pytest.mark.parametrize("cache_control", ["private, max-age=3600", "PRIVATE, max-age=3600"])
def test_5_2_2_7_private_not_stored_by_shared_cache(
    proxy: ProxyThread, clock: FakeClock, origin: Origin, cache_control: str
) -> None:
    """cc-resp-private-shared (and the case-insensitive variant)."""
    fields = [("Date", http_date()), ("Cache-Control", cache_control)]
    assert not reused_after_pause(proxy, clock, origin, fields)


def test_5_2_2_7_private_field_is_not_stored_but_response_is(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    """§5.2.2.7: ``private="X-Secret"``: the response may be stored without that field."""
    fields = [
        ("Date", http_date()),
        ("Cache-Control", 'private="X-Secret", max-age=3600'),
        ("X-Secret", "user data"),
        ("X-Public", "shared"),
    ]
    serve(origin, "/t", (200, fields))
    first = get(proxy, origin.url("/t"))
    assert first[1]["X-Secret"] == "user data"  # the first client gets it
    clock.advance(PAUSE_S)
    _, headers, body = get(proxy, origin.url("/t"))
    assert body == b"req 1"
    assert headers["X-Secret"] is None
    assert headers["X-Public"] == "shared"


def test_5_2_2_4_no_cache_field_is_not_served_without_validation(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    """§5.2.2.4: ``no-cache="Set-Cookie"``: the rest may be reused, that field may not."""
    fields = [
        ("Date", http_date()),
        ("Cache-Control", 'no-cache="Set-Cookie", max-age=3600'),
        ("Set-Cookie", "session=1"),
    ]
    serve(origin, "/t", (200, fields))
    get(proxy, origin.url("/t"))
    clock.advance(PAUSE_S)
    _, headers, body = get(proxy, origin.url("/t"))
    if body == b"req 1":  # reused: then without the field
        assert headers["Set-Cookie"] is None


@pytest.mark.parametrize("cache_control", ["no-cache", "no-cache, max-age=3600", "NO-CACHE"])
def test_5_2_2_4_response_no_cache_validates_every_time(
    proxy: ProxyThread, clock: FakeClock, origin: Origin, cache_control: str
) -> None:
    """cc-resp-no-cache, cc-resp-no-cache-case-insensitive."""
    fields = [("Date", http_date()), ("Cache-Control", cache_control), ("ETag", '"n"')]
    serve(origin, "/t", (200, fields), (304, [("ETag", '"n"')]))
    get(proxy, origin.url("/t"))
    status, _, body = get(proxy, origin.url("/t"))
    assert (status, body) == (200, b"req 1")
    assert len(origin.requests) == 2
    assert origin.requests[1][2].get("If-None-Match") == '"n"'


@pytest.mark.parametrize(
    ("cache_control", "reused"),
    [("no-store", False), ("NO-STORE", False), ("max-age=3600, no-store", False)],
)
def test_5_2_2_5_no_store(
    proxy: ProxyThread, clock: FakeClock, origin: Origin, cache_control: str, reused: bool
) -> None:
    fields = [("Date", http_date()), ("Cache-Control", cache_control)]
    assert reused_after_pause(proxy, clock, origin, fields) is reused


@pytest.mark.parametrize(("status", "reused"), [(200, True), (299, False), (599, False)])
def test_5_2_2_3_must_understand(
    proxy: ProxyThread, clock: FakeClock, origin: Origin, status: int, reused: bool
) -> None:
    """cc-resp-must-understand-no-store / status-599-must-understand: must-understand
    overrides no-store only for status codes the cache understands."""
    fields = [("Date", http_date()), ("Cache-Control", "max-age=3600, must-understand, no-store")]
    assert reused_after_pause(proxy, clock, origin, fields, status=status) is reused


# -- heuristic freshness (RFC 9111 §4.2.2, RFC 9110 §15.1) ------------------------------------


@pytest.mark.parametrize(
    ("status", "reused"),
    [
        (200, True),
        (203, True),
        (204, True),
        (404, True),
        (410, True),
        (301, True),
        (308, True),
        (201, False),
        (302, False),
        (303, False),
        (307, False),
        (403, False),
        (500, False),
    ],
)
def test_4_2_2_heuristic_freshness_by_status(
    proxy: ProxyThread, clock: FakeClock, origin: Origin, status: int, reused: bool
) -> None:
    """heuristic-{code}-cached / -not_cached: Last-Modified a day ago, no explicit freshness."""
    fields = [("Date", http_date()), ("Last-Modified", http_date(-86400))]
    if status in (301, 302, 303, 307, 308):
        fields.append(("Location", "/elsewhere"))
    assert reused_after_pause(proxy, clock, origin, fields, status=status) is reused


def test_4_2_2_no_freshness_and_no_validator_is_not_reused(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    """freshness-none."""
    assert not reused_after_pause(proxy, clock, origin, [("Date", http_date())])


# -- Vary (RFC 9111 §4.1) ---------------------------------------------------------------------


@pytest.mark.parametrize("vary", ["*", "Accept, *", "*, Accept"])
def test_4_1_vary_star_anywhere_in_the_list(
    proxy: ProxyThread, clock: FakeClock, origin: Origin, vary: str
) -> None:
    """vary-star, vary-list-star."""
    fields = [("Date", http_date()), ("Cache-Control", "max-age=3600"), ("Vary", vary)]
    assert not reused_after_pause(proxy, clock, origin, fields)


def test_4_1_vary_star_on_a_second_line(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    fields = [("Date", http_date()), ("Cache-Control", "max-age=3600")]
    fields += [("Vary", "Accept"), ("Vary", "*")]
    assert not reused_after_pause(proxy, clock, origin, fields)


def test_4_1_vary_matching_and_mismatching_requests(proxy: ProxyThread, origin: Origin) -> None:
    """vary-match, vary-no-match, vary-omit, vary-invalidate (a new variant is stored)."""
    fields = [("Date", http_date()), ("Cache-Control", "max-age=3600"), ("Vary", "Foo")]
    serve(origin, "/t", (200, fields))
    assert get(proxy, origin.url("/t"), {"Foo": "1"})[2] == b"req 1"
    assert get(proxy, origin.url("/t"), {"Foo": "1"})[2] == b"req 1"
    assert get(proxy, origin.url("/t"), {"Foo": "2"})[2] == b"req 2"
    assert get(proxy, origin.url("/t"))[2] == b"req 3"  # absent does not match "1" or "2"
    assert get(proxy, origin.url("/t"), {"Foo": "2"})[2] == b"req 2"
    assert get(proxy, origin.url("/t"), {"Foo": "1"})[2] == b"req 1"


def test_4_1_vary_field_name_case_and_whitespace(proxy: ProxyThread, origin: Origin) -> None:
    """vary-normalise-space and the case-insensitive field names."""
    fields = [("Date", http_date()), ("Cache-Control", "max-age=3600"), ("Vary", "FOO ,  bar")]
    serve(origin, "/t", (200, fields))
    get(proxy, origin.url("/t"), {"foo": "1", "Bar": "2"})
    assert get(proxy, origin.url("/t"), {"Foo": "1", "BAR": "2"})[2] == b"req 1"


def test_4_1_vary_on_normalised_accept_language_and_encoding(
    proxy: ProxyThread, origin: Origin
) -> None:
    """RFC 9110 §12.5.4-5: case, whitespace and the order of equal-weight members do not
    make another variant; the variant in the most preferred language is selected."""
    fields = [("Date", http_date()), ("Cache-Control", "max-age=3600")]
    fields += [("Vary", "Accept-Language, Accept-Encoding"), ("Content-Language", "fr")]
    serve(origin, "/t", (200, fields))
    first = {"Accept-Language": "fr, de;q=0.5, en;q=0.5", "Accept-Encoding": "gzip, br"}
    assert get(proxy, origin.url("/t"), first)[2] == b"req 1"
    same = {"Accept-Language": "FR ,en;q=0.50,de ; q=0.5", "Accept-Encoding": "BR,gzip"}
    assert get(proxy, origin.url("/t"), same)[2] == b"req 1"
    french_first = {"Accept-Language": "en;q=0.9, fr-ch;q=0.1, fr", "Accept-Encoding": "br, gzip"}
    assert get(proxy, origin.url("/t"), french_first)[2] == b"req 1"
    english_first = {"Accept-Language": "en, fr;q=0.9", "Accept-Encoding": "gzip, br"}
    assert get(proxy, origin.url("/t"), english_first)[2] == b"req 2"
    assert len(origin.requests) == 2


# -- request directives (RFC 9111 §5.2.1, §5.4) -----------------------------------------------


@pytest.mark.parametrize(
    "request_headers",
    [
        {"Cache-Control": "no-cache"},  # ccreq-no-cache
        {"Cache-Control": "max-age=0"},  # ccreq-max-age-0
        {"Pragma": "no-cache"},  # pragma-request-no-cache (no Cache-Control)
        {"Cache-Control": "max-age=1"},  # ccreq-max-age: the response is 3 s old
        {"Cache-Control": "min-fresh=7200"},  # ccreq-min-fresh
    ],
)
def test_5_2_1_request_directives_force_going_to_the_origin(
    proxy: ProxyThread, clock: FakeClock, origin: Origin, request_headers: dict[str, str]
) -> None:
    fields = [("Date", http_date()), ("Cache-Control", "max-age=3600"), ("ETag", '"r"')]
    serve(origin, "/t", (200, fields), (304, [("ETag", '"r"')]))
    get(proxy, origin.url("/t"))
    clock.advance(PAUSE_S)
    status, _, body = get(proxy, origin.url("/t"), request_headers)
    assert (status, body) == (200, b"req 1")
    assert len(origin.requests) == 2  # validated with the origin


def test_5_2_1_request_max_stale_allows_a_stale_response(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    """ccreq-max-stale."""
    serve(origin, "/t", (200, [("Date", http_date()), ("Cache-Control", "max-age=1")]))
    get(proxy, origin.url("/t"))
    clock.advance(PAUSE_S)
    assert get(proxy, origin.url("/t"), {"Cache-Control": "max-stale=1000"})[2] == b"req 1"


def test_5_2_1_5_request_no_store_is_not_stored(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    """ccreq-no-store."""
    serve(origin, "/t", (200, [("Date", http_date()), ("Cache-Control", "max-age=3600")]))
    get(proxy, origin.url("/t"), {"Cache-Control": "no-store"})
    assert get(proxy, origin.url("/t"))[2] == b"req 2"


# -- validation and 304 updates (RFC 9111 §4.3, §3.2) -----------------------------------------


@pytest.mark.parametrize(
    ("header", "old", "new"),
    [
        ("Test-Header", "A", "B"),
        ("X-Test-Header", "A", "B"),
        ("Content-Foo", "A", "B"),  # a Content-* field that does not describe the body
        ("X-Content-Foo", "A", "B"),
        ("Cache-Control", "max-age=1", "max-age=3600"),
    ],
)
def test_3_2_304_updates_stored_header_fields(
    proxy: ProxyThread, clock: FakeClock, origin: Origin, header: str, old: str, new: str
) -> None:
    """304-etag-update-response-{field}: required updates, then served from the cache."""
    first = [("Date", http_date()), (header, old), ("ETag", '"u"')]
    later = [("Date", http_date()), (header, new), ("ETag", '"u"')]
    if header != "Cache-Control":
        first.append(("Cache-Control", "max-age=1"))
        later.append(("Cache-Control", "max-age=3600"))
    serve(origin, "/t", (200, first), (304, later))
    get(proxy, origin.url("/t"))
    clock.advance(PAUSE_S)
    status, headers, body = get(proxy, origin.url("/t"))
    assert (status, body, headers[header]) == (200, b"req 1", new)
    assert origin.requests[1][2].get("If-None-Match") == '"u"'
    _, headers, body = get(proxy, origin.url("/t"))
    assert (body, headers[header]) == (b"req 1", new)
    assert len(origin.requests) == 2


def test_3_2_304_does_not_change_content_length(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    """304-etag-update-response-Content-Length (noUpdate): the stored body's length stays."""
    first = [("Date", http_date()), ("Cache-Control", "max-age=1"), ("ETag", '"c"')]
    later = [("Date", http_date()), ("Cache-Control", "max-age=3600"), ("ETag", '"c"')]
    serve(origin, "/t", (200, first), (304, [*later, ("Content-Length", "10")]))
    get(proxy, origin.url("/t"))
    clock.advance(PAUSE_S)
    status, headers, body = get(proxy, origin.url("/t"))
    assert (status, body, headers["Content-Length"]) == (200, b"req 1", "5")


def test_3_2_304_lm_keeps_stored_fields_it_omits(
    proxy: ProxyThread, clock: FakeClock, origin: Origin
) -> None:
    """304-lm-use-stored-Test-Header."""
    lm = "Wed, 01 Jan 2020 00:00:00 GMT"
    first = [("Date", http_date()), ("Cache-Control", "max-age=2"), ("Last-Modified", lm)]
    serve(origin, "/t", (200, [*first, ("Test-Header", "A")]), (304, [("Last-Modified", lm)]))
    get(proxy, origin.url("/t"))
    clock.advance(PAUSE_S)
    status, headers, body = get(proxy, origin.url("/t"))
    assert (status, body, headers["Test-Header"]) == (200, b"req 1", "A")
    assert origin.requests[1][2].get("If-Modified-Since") == lm


@pytest.mark.parametrize(
    ("stored", "client"),
    [
        ('"abc"', '"abc"'),
        ('W/"abc"', '"abc"'),
        ('"abc"', 'W/"abc"'),
        ('"abc"', '"x", "abc"'),
        ('"abc"', "*"),
    ],
)
def test_4_3_2_client_if_none_match_gets_304_with_etag(
    proxy: ProxyThread, origin: Origin, stored: str, client: str
) -> None:
    """conditional-etag-*-match: weak comparison; the 304 carries the ETag (RFC 9110 §15.4.5)."""
    serve(
        origin,
        "/t",
        (200, [("Date", http_date()), ("Cache-Control", "max-age=3600"), ("ETag", stored)]),
    )
    get(proxy, origin.url("/t"))
    status, headers, body = get(proxy, origin.url("/t"), {"If-None-Match": client})
    assert (status, body) == (304, b"")
    assert headers["ETag"] == stored
    assert len(origin.requests) == 1


def test_4_3_2_client_if_none_match_mismatch_gets_the_body(
    proxy: ProxyThread, origin: Origin
) -> None:
    serve(
        origin,
        "/t",
        (200, [("Date", http_date()), ("Cache-Control", "max-age=3600"), ("ETag", '"abc"')]),
    )
    get(proxy, origin.url("/t"))
    status, _, body = get(proxy, origin.url("/t"), {"If-None-Match": '"other"'})
    assert (status, body) == (200, b"req 1")


def test_4_3_2_client_if_modified_since_gets_304(proxy: ProxyThread, origin: Origin) -> None:
    """conditional-lm-fresh."""
    lm = http_date(-86400)
    serve(
        origin,
        "/t",
        (200, [("Date", http_date()), ("Cache-Control", "max-age=3600"), ("Last-Modified", lm)]),
    )
    get(proxy, origin.url("/t"))
    status, _, _ = get(proxy, origin.url("/t"), {"If-Modified-Since": http_date()})
    assert status == 304
    status, _, body = get(proxy, origin.url("/t"), {"If-Modified-Since": http_date(-2 * 86400)})
    assert (status, body) == (200, b"req 1")


# -- invalidation (RFC 9111 §4.4) ------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest.mark.parametrize("where", ["target", "Location", "Content-Location"])
def test_4_4_invalidation(proxy: ProxyThread, origin: Origin, method: str, where: str) -> None:
    """invalidate-{method}, invalidate-{method}-location, invalidate-{method}-cl."""
    cached_reply = [("Date", http_date()), ("Cache-Control", "max-age=3600")]
    count = {"get": 0}

    def target(h: OriginHandler) -> None:
        if h.command == "GET":
            count["get"] += 1
            raw_reply(h, 200, f"req {count['get']}".encode(), cached_reply)
        else:
            raw_reply(h, 200, b"done", [])

    origin.routes["/t"] = target
    origin.routes["/other"] = lambda h: raw_reply(h, 200, b"done", [(where, "/t")])
    unsafe_path = "/t" if where == "target" else "/other"
    assert get(proxy, origin.url("/t"))[2] == b"req 1"
    assert get(proxy, origin.url("/t"))[2] == b"req 1"
    assert get(proxy, origin.url(unsafe_path), method=method)[0] == 200
    assert get(proxy, origin.url("/t"))[2] == b"req 2"


def test_4_4_location_of_another_origin_is_not_invalidated(
    proxy: ProxyThread, origin: Origin
) -> None:
    """§4.4: only same-origin Location / Content-Location URIs are invalidated."""
    with Origin() as other:
        serve(other, "/t", (200, [("Date", http_date()), ("Cache-Control", "max-age=3600")]))
        origin.routes["/post"] = lambda h: raw_reply(h, 200, b"ok", [("Location", other.url("/t"))])
        get(proxy, other.url("/t"))
        get(proxy, origin.url("/post"), method="POST")
        assert get(proxy, other.url("/t"))[2] == b"req 1"
