"""Value types of directives: parsing as people type, canonical text, round trips."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cproxy.directives.types import (
    AddressList,
    Choice,
    Factor,
    Host,
    Integer,
    Pattern,
    PatternList,
    PortList,
    PortRangeList,
    PortRanges,
    Rule,
    RuleList,
    Size,
    Switch,
    Text,
    Time,
    ip_allowed,
)

DAY = 86_400.0


# --- Time ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("4 seconds", 4.0),
        ("1 second", 1.0),
        ("1 hour 30 minutes", 5400.0),
        ("500 ms", 0.5),
        ("2 minutes", 120.0),
        ("1 day", DAY),
        ("30 days", 30 * DAY),
        ("0", 0.0),
        ("  0  ", 0.0),
        ("5s", 5.0),
        ("3 sec", 3.0),
        ("10 min", 600.0),
        ("2 h", 7200.0),
        ("1 hr 1 min 1 s", 3661.0),
        ("1h30min", 5400.0),
        ("1.5 hours", 5400.0),
        ("2 d", 2 * DAY),
        ("1 week", 7 * DAY),
        ("4 SECONDS", 4.0),
    ],
)
def test_time_parses_what_people_type(text: str, seconds: float) -> None:
    assert Time(0, 3650 * DAY).parse(text) == seconds


@pytest.mark.parametrize("text", ["30", "", "4 fortnights", "seconds", "4 seconds ago", "-1 s"])
def test_time_rejects_other_text_and_lists_the_units(text: str) -> None:
    with pytest.raises(ValueError) as info:
        Time().parse(text)
    if text.strip():
        assert "minutes" in str(info.value) and "ms" in str(info.value)


def test_time_rejects_finer_than_a_millisecond() -> None:
    with pytest.raises(ValueError, match="1 ms resolution"):
        Time().parse("0.0001 s")


def test_time_terms_add_up_exactly() -> None:
    # Exact sums (integers, not decimal's 28 digits): a term finer than 1 ms is refused
    # even beside a large one, and fractions that add up to whole ms are accepted.
    assert Time().parse("0.5 ms 0.5 ms") == 0.001
    assert (
        Time().parse("0.0000000000000000000000000000001 s 0.9999999999999999999999999999999 s") == 1
    )
    with pytest.raises(ValueError, match="1 ms resolution"):
        Time().parse("1.5 min 0.00000000000000000000000000000000000000001 s")
    with pytest.raises(ValueError, match="too many digits"):
        Time().parse("1" * 5000 + " ms")


def test_time_range_is_checked_and_described() -> None:
    t = Time(0.001, DAY)
    with pytest.raises(ValueError, match="out of range"):
        t.parse("2 days")
    with pytest.raises(ValueError, match="out of range"):
        t.parse("0")
    assert "from 1 ms to 1 day" in t.allowed


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5400.0, "1 hour 30 minutes"), (0.5, "500 ms"), (0.0, "0"), (61.0, "1 minute 1 second")],
)
def test_time_canonical_text(seconds: float, text: str) -> None:
    assert Time().format(seconds) == text


@given(st.integers(min_value=0, max_value=365 * 86_400_000))
def test_time_round_trips(ms: int) -> None:
    t = Time()
    assert t.parse(t.format(ms / 1000)) == ms / 1000


def test_time_text_carries_its_unit_so_forms_add_no_label() -> None:
    assert (Time().unit, Time().suffix) == ("", "_s")


# --- Size ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("64 M", 64 << 20),
        ("512 K", 512 << 10),
        ("1 G", 1 << 30),
        ("64 MB", 64 << 20),
        ("64m", 64 << 20),
        ("100 bytes", 100),
        ("1 byte", 1),
        ("100 B", 100),
        ("0", 0),
        ("1.5 K", 1536),
        ("2 KiB", 2048),
    ],
)
def test_size_parses_binary_multiples(text: str, n: int) -> None:
    assert Size().parse(text) == n


@pytest.mark.parametrize("text", ["64", "64 X", "M", "", "1.3 bytes", "-1 K"])
def test_size_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        Size().parse(text)


def test_size_bare_number_message_lists_units() -> None:
    with pytest.raises(ValueError, match="K = 1024"):
        Size().parse("64")


def test_size_fractions_must_come_to_whole_bytes() -> None:
    assert Size().parse("1.5 K") == 1536
    assert Size().parse("0.25 K") == 256
    for text in ("0.1 K", "0.5 b", "1.0000000000000000000000000000001 M"):
        with pytest.raises(ValueError, match="whole number of bytes"):
            Size().parse(text)


def test_size_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        Size(0, 1 << 20).parse("2 M")


@pytest.mark.parametrize(
    ("n", "text"),
    [(64 << 20, "64 M"), (3072, "3 K"), (1536, "1536 bytes"), (0, "0"), (1 << 30, "1 G")],
)
def test_size_canonical_text(n: int, text: str) -> None:
    # A whole number of the largest unit that divides the size: 1.5 K is written in bytes.
    assert Size().format(n) == text


@given(st.integers(min_value=0, max_value=1 << 40))
def test_size_round_trips(n: int) -> None:
    assert Size().parse(Size().format(n)) == n


# --- Switch, Integer, Factor, Text, Host, Choice --------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("on", True), ("OFF", False), ("yes", True), ("No", False), ("true", True), ("FALSE", False)],
)
def test_switch_words(text: str, value: bool) -> None:
    assert Switch().parse(text) is value
    assert Switch().format(value) == ("on" if value else "off")


@pytest.mark.parametrize("text", ["1", "", "enabled"])
def test_switch_rejects_other_words(text: str) -> None:
    with pytest.raises(ValueError):
        Switch().parse(text)


def test_integer_range_and_syntax() -> None:
    i = Integer(1, 64)
    assert i.parse(" 8 ") == 8
    for bad in ("0", "65", "eight", "8.0", ""):
        with pytest.raises(ValueError):
            i.parse(bad)
    assert i.allowed == "a whole number from 1 to 64"


def test_factor_range_and_round_trip() -> None:
    f = Factor(0, 1)
    assert f.parse("0.1") == 0.1
    assert f.parse(f.format(0.1)) == 0.1
    for bad in ("1.5", "-0.1", "nan", "inf", "x"):
        with pytest.raises(ValueError):
            f.parse(bad)


def test_text_one_line_and_empty() -> None:
    assert Text(allow_empty=True).parse("") == ""
    with pytest.raises(ValueError):
        Text().parse("")
    with pytest.raises(ValueError):
        Text().parse("a\nb")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("0:0::1", "::1"),
        ("Proxy.Example", "proxy.example"),
    ],
)
def test_host_accepts_addresses_and_names(text: str, value: str) -> None:
    assert Host().parse(text) == value


@pytest.mark.parametrize("text", ["", "a b", "-bad", "x_y", "1.2.3.4/8"])
def test_host_rejects_others(text: str) -> None:
    with pytest.raises(ValueError):
        Host().parse(text)


def test_choice_is_case_insensitive_and_canonical_lower() -> None:
    c = Choice("debug", "info")
    assert c.parse("INFO") == "info"
    with pytest.raises(ValueError):
        c.parse("verbose")
    assert c.allowed == "one of debug, info"


# --- Lists --------------------------------------------------------------------------------


def test_address_list_space_or_comma_separated() -> None:
    value = AddressList().parse("127.0.0.0/8 ::1, 10.0.0.0/8,192.168.1.5")
    assert value == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.5/32"),
    )
    assert AddressList().format(value) == "127.0.0.0/8 ::1/128 10.0.0.0/8 192.168.1.5/32"
    assert AddressList().parse(AddressList().format(value)) == value
    assert AddressList().parse("") == ()


def test_address_list_rejects_host_bits_with_a_suggestion() -> None:
    with pytest.raises(ValueError, match=r"did you mean 10\.0\.0\.0/8\?"):
        AddressList().parse("10.0.0.1/8")


def test_address_list_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not an IP"):
        AddressList().parse("127.0.0.0/8 localhost")


def test_ip_allowed_handles_v4_v6_and_mapped_addresses() -> None:
    nets = AddressList().parse("10.0.0.0/8 ::1")
    assert ip_allowed(nets, "10.1.2.3")
    assert ip_allowed(nets, "::ffff:10.1.2.3")
    assert ip_allowed(nets, "::1")
    assert not ip_allowed(nets, "11.0.0.1")
    assert not ip_allowed(nets, "::2")
    assert not ip_allowed((), "127.0.0.1")


def test_port_list() -> None:
    assert PortList().parse("443, 8443 563") == (443, 8443, 563)
    assert PortList().format((443, 8443)) == "443 8443"
    for bad in ("0", "65536", "https", "-1"):
        with pytest.raises(ValueError):
            PortList().parse(bad)


def test_port_range_list() -> None:
    ports = PortRangeList().parse("80, 443 1025-65535 21")
    assert ports == PortRanges(((80, 80), (443, 443), (1025, 65535), (21, 21)))
    assert PortRangeList().format(ports) == "80 443 1025-65535 21"
    assert 80 in ports and 1025 in ports and 65535 in ports and 21 in ports
    assert 25 not in ports and 1024 not in ports and "80" not in ports
    assert PortRangeList().parse("") == PortRanges(())
    for bad in ("0", "65536", "https", "-1", "1-", "5-3", "1-70000", "1--2"):
        with pytest.raises(ValueError):
            PortRangeList().parse(bad)


def test_pattern_list_and_matching() -> None:
    pats = PatternList().parse("http://*.example.test/* /private/*")
    assert pats == (Pattern("http://*.example.test/*"), Pattern("/private/*"))
    assert pats[0].match("http://www.example.test/a/b") == ("www", "a/b")
    assert pats[0].match("http://example.test/") is None
    assert pats[1].match("/private/") == ("",)
    assert pats[1].match("/Private/x") is None  # paths are case-sensitive
    assert PatternList().parse(PatternList().format(pats)) == pats
    # a comma belongs to the URL, it does not separate patterns
    assert PatternList().parse("/a,b/*") == (Pattern("/a,b/*"),)


@pytest.mark.parametrize("text", ["example.test/*", "ftp://x/*", "www.*"])
def test_pattern_list_rejects_non_url_patterns(text: str) -> None:
    with pytest.raises(ValueError, match="not a URL pattern"):
        PatternList().parse(text)


def test_pattern_starting_with_a_wildcard_matches_any_url() -> None:
    (pattern,) = PatternList().parse("*.jpg")
    assert pattern.match("http://x.test/a.jpg") == ("http://x.test/a",)


# --- Mapping rules ------------------------------------------------------------------------

RULES = """
    # comments and blank lines inside the value are ignored
    Proxy     /app/*      http://127.0.0.1:9000/*

    fail      /private/*
    Map       /old/*      /new/*
    REDIRECT  /moved/*    http://example.test/*
"""


def test_rule_list_parses_kinds_in_order() -> None:
    rules = RuleList().parse(RULES)
    assert rules == (
        Rule("Proxy", "/app/*", "http://127.0.0.1:9000/*"),
        Rule("Fail", "/private/*", None),
        Rule("Map", "/old/*", "/new/*"),
        Rule("Redirect", "/moved/*", "http://example.test/*"),
    )
    assert RuleList().parse(RuleList().format(rules)) == rules
    assert RuleList().format(rules).splitlines()[1] == "Fail /private/*"


def test_rule_match_rewrites_with_the_matched_part() -> None:
    proxy, fail, map_, _redirect = RuleList().parse(RULES)
    assert proxy.match("/app/x/y?q=1") == "http://127.0.0.1:9000/x/y?q=1"
    assert proxy.match("/other") is None
    assert fail.match("/private/secret") == "/private/secret"
    assert map_.match("/old/page") == "/new/page"


def test_rule_match_several_wildcards_in_order() -> None:
    rule = Rule("Map", "http://*.example.test/*", "http://example.test/*/*")
    assert rule.match("http://www.example.test/a") == "http://example.test/www/a"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Pass /a/* /b/*", "starts with one of"),
        ("Proxy /a/*", "write Proxy pattern target"),
        ("Fail /a/* /b/*", "write Fail pattern"),
        ("Proxy /a/* /b/*", "http:// or https:// URL"),
        ("Map /a /b/*", "more \\* than the pattern"),
        ("Map a/* /b/*", "not a URL pattern"),
    ],
)
def test_rule_list_rejects_bad_rules(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RuleList().parse(line)
