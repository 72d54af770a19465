"""Shared-tier values (cproxy.cache.shared) and the circuit breaker: pure, no Redis."""

from __future__ import annotations

import json

import pytest

from cproxy.cache.policy import CacheSettings
from cproxy.cache.shared import (
    FORMAT_VERSION,
    PURGED,
    SETTLED,
    MalformedEntry,
    decode_entry,
    encode_entry,
    event_message,
    parse_event,
    shared_ttl_s,
)
from cproxy.cache.store import Entry
from cproxy.directives.types import RedisTarget, SharedCacheURL
from cproxy.sharedtier.breaker import BreakerState, CircuitBreaker
from tests.support import FakeClock

SETTINGS = CacheSettings()
NOW = 1_800_000_000.0


def entry(headers: list[tuple[str, str]] | None = None, **req: str) -> Entry:
    return Entry.build(
        url_key="http://example.test/a",
        status=200,
        reason="OK",
        resp_headers=headers
        or [("Cache-Control", "max-age=60"), ("Date", "Fri, 15 Jan 2027 08:00:00 GMT")],
        body=b"the body",
        req_headers=list(req.items()),
        request_time=NOW - 1,
        response_time=NOW,
        settings=SETTINGS,
    )


def test_an_entry_survives_the_round_trip() -> None:
    original = entry(
        [
            ("Cache-Control", "max-age=60"),
            ("Vary", "Accept-Language"),
            ("Age", "7"),
            ("ETag", '"x"'),
        ],
        **{"Accept-Language": "fr, en"},
    )
    shared = decode_entry(encode_entry(original, loopback_origin=False), original.url_key, SETTINGS)
    assert not shared.loopback_origin
    back = shared.entry
    for name in (
        "status",
        "reason",
        "headers",
        "body",
        "request_time",
        "response_time",
        "age_value",
        "vary",
        "secondary_key",
        "lifetime_s",
        "initial_age_s",
        "head_prefix",
    ):
        assert getattr(back, name) == getattr(original, name), name
    assert back.matches([("Accept-Language", "fr,en")])
    assert not back.matches([("Accept-Language", "de")])


def test_an_entry_without_a_selecting_field_keeps_matching_only_requests_without_it() -> None:
    original = entry([("Cache-Control", "max-age=60"), ("Vary", "Cookie")])
    value = encode_entry(original, loopback_origin=False)
    back = decode_entry(value, original.url_key, SETTINGS).entry
    assert back.secondary_key == (("cookie", None),)
    assert back.matches([]) and not back.matches([("Cookie", "a=1")])


def _broken(value: bytes, start: int, replacement: bytes) -> bytes:
    return value[:start] + replacement + value[start + len(replacement) :]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: b"",
        lambda v: b"garbage that is not an entry",
        lambda v: _broken(v, 0, b"XXXX"),  # magic
        lambda v: _broken(v, 4, bytes([FORMAT_VERSION + 1])),  # a later version
        lambda v: v[:-1],  # body shorter than said
        lambda v: v + b"x",  # longer
        lambda v: _broken(v, 5, b"\xff\xff\xff\xff"),  # meta length past the end
        lambda v: _broken(v, 9, b"["),  # meta not JSON
    ],
)
def test_a_malformed_value_is_refused(mangle: object) -> None:
    value = encode_entry(entry(), loopback_origin=False)
    with pytest.raises(MalformedEntry):
        decode_entry(mangle(value), "http://example.test/a", SETTINGS)  # type: ignore[operator]


def test_a_value_for_another_url_is_refused() -> None:
    with pytest.raises(MalformedEntry, match="another URL"):
        decode_entry(
            encode_entry(entry(), loopback_origin=False), "http://example.test/b", SETTINGS
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "200"),
        ("status", 42),
        ("age", -1),
        ("headers", [["only-a-name"]]),
        ("headers", [["Age", "3"]]),
        ("headers", [["Set-Cookie", "session=someone-elses"]]),
        ("selecting", "x"),
        ("request_time", "yesterday"),
        ("selecting", [["accept-language", "en"]]),  # does not match the stored Vary
        ("loopback_origin", None),
        ("loopback_origin", 1),
    ],
)
def test_a_value_with_bad_meta_is_refused(field: str, value: object) -> None:
    good = encode_entry(entry(), loopback_origin=False)
    # Re-framed untouched, the value is read: it is the change that is refused.
    assert decode_entry(_with_meta(good), "http://example.test/a", SETTINGS).entry.body
    with pytest.raises(MalformedEntry):
        decode_entry(_with_meta(good, **{field: value}), "http://example.test/a", SETTINGS)


def _with_meta(value: bytes, version: int | None = None, **changes: object) -> bytes:
    """``value`` with its meta changed (None: the field removed), re-framed."""
    meta_len = int.from_bytes(value[5:9], "big")
    meta = json.loads(value[9 : 9 + meta_len])
    for name, new in changes.items():
        if new is None:
            meta.pop(name, None)
        else:
            meta[name] = new
    raw = json.dumps(meta).encode()
    prefix = b"CPXE" + bytes([FORMAT_VERSION if version is None else version])
    return prefix + len(raw).to_bytes(4, "big") + raw + value[9 + meta_len :]


def test_the_loopback_mark_survives_the_round_trip() -> None:
    """Issue #10: a URL fetched from LoopbackDestinations says so to the node reading it."""
    for mark in (True, False):
        value = encode_entry(entry(), loopback_origin=mark)
        shared = decode_entry(value, "http://example.test/a", SETTINGS)
        assert shared.loopback_origin is mark
        assert shared.entry.body == b"the body"


def test_a_value_of_format_version_1_is_refused_as_foreign() -> None:
    """A version-1 value has no loopback mark: read, it would pass for "not from
    loopback", so it is refused (a miss on the node reading it), not misread."""
    assert FORMAT_VERSION == 2
    old = _with_meta(encode_entry(entry(), loopback_origin=True), 1, loopback_origin=None)
    with pytest.raises(MalformedEntry, match="format version 1"):
        decode_entry(old, "http://example.test/a", SETTINGS)


def test_shared_expiry_is_freshness_plus_the_longest_stale_allowance() -> None:
    base = [("Date", "Fri, 15 Jan 2027 08:00:00 GMT")]
    # Each entry is 1 s old when stored (its request took 1 s, RFC 9111 §4.2.3).
    assert shared_ttl_s(entry([("Cache-Control", "max-age=60"), *base])) == 59
    swr = [("Cache-Control", "max-age=60, stale-while-revalidate=30, stale-if-error=600")]
    assert shared_ttl_s(entry([*swr, *base])) == 659
    # An entry with a validator stays long enough for another node to revalidate it.
    assert shared_ttl_s(entry([("Cache-Control", "max-age=600"), ("ETag", '"v"'), *base])) == 1199
    assert shared_ttl_s(entry([("Cache-Control", "max-age=0"), *base])) == 0
    # The age it already has counts.
    assert shared_ttl_s(entry([("Cache-Control", "max-age=60"), ("Age", "50"), *base])) == 9


def test_events() -> None:
    assert parse_event(event_message(PURGED, "http://a/é")) == (PURGED, "http://a/é")
    assert parse_event(event_message(SETTLED, "http://a/")) == (SETTLED, "http://a/")
    for junk in (b"", b"p", b"x http://a/", b"p "):
        assert parse_event(junk) is None


def test_shared_cache_url_refuses_a_password() -> None:
    with pytest.raises(ValueError, match="SharedCachePasswordFile"):
        SharedCacheURL().parse("redis://user:secret@127.0.0.1:6379/0")
    target = SharedCacheURL().parse("rediss+cluster://app@10.0.0.1:7000,10.0.0.2")
    assert target == RedisTarget(True, True, (("10.0.0.1", 7000), ("10.0.0.2", 6379)), 0, "app")


def test_breaker_opens_probes_and_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures_to_open=3, open_s=2.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.success()  # a success in between resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.advance(2.0)
    assert breaker.allow()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN and not breaker.allow()
    breaker.failure()  # the probe failed: open again at once
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.advance(2.0)
    assert breaker.allow()
    breaker.success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow() and breaker.opens == 2


def test_an_abandoned_probe_lets_another_go() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures_to_open=1, open_s=2.0, clock=clock)
    breaker.failure()
    clock.advance(2.0)
    assert breaker.allow() and not breaker.allow()
    breaker.abandon()  # the probing greenlet was killed
    assert breaker.allow()
