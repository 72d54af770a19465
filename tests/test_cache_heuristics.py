"""Heuristic freshness per URL pattern (issue #23): CacheFreshnessRules, the built-in
package rules (CachePackageRules) and the single-valued catch-all (RFC 9111 §4.2.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cproxy.cache import CacheSettings
from cproxy.cache.heuristics import PACKAGE_RULES
from cproxy.cache.policy import freshness_lifetime, storable
from cproxy.directives import DIRECTIVES, defaults
from cproxy.directives.config import config_with, load_config
from cproxy.directives.freshnesstypes import FreshnessRule, FreshnessRuleList
from cproxy.errors import ConfigError
from tests.test_cache_support import T0, date

DAY = 86_400.0
MAX = 30 * DAY  # CacheMaxExpiry's default, which caps every lifetime
RULES = FreshnessRuleList()


def settings(text: str = "", **kw: object) -> CacheSettings:
    values: dict[str, object] = {"cache_max_expiry_s": MAX, **kw}
    return CacheSettings(cache_freshness_rules=RULES.parse(text), **values)  # type: ignore[arg-type]


def life(url: str, headers=(), s: CacheSettings | None = None, status: int = 200) -> float:  # type: ignore[no-untyped-def]
    return freshness_lifetime(
        [("Date", date()), *headers],
        s or settings(),
        True,
        date_value=T0,
        url_key=url,
        status=status,
    )


def test_first_matching_rule_of_each_kind_wins() -> None:
    s = settings(
        """
        CacheDefaultExpiry http://a.test/x/* 1 hour
        CacheDefaultExpiry http://a.test/* 1 minute
        CacheLastModifiedFactor http://a.test/x/* 0.5
        """
    )
    assert life("http://a.test/x/1", s=s) == 3600
    assert life("http://a.test/y", s=s) == 60
    assert life("http://b.test/y", s=s) == 0  # the catch-all: CacheDefaultExpiry 0
    lm = [("Last-Modified", date(-1000))]
    assert life("http://a.test/x/1", lm, s) == 500  # its own factor
    assert life("http://a.test/y", lm, s) == 100  # the catch-all factor, 0.1


def test_min_hold_is_a_floor_for_both_heuristics() -> None:
    s = settings("CacheMinHold http://a.test/* 2 hours")
    assert life("http://a.test/z", s=s) == 7200
    assert life("http://a.test/z", [("Last-Modified", date(-10 * 3600 * 10))], s) == 36000


def test_rules_never_touch_explicit_freshness() -> None:
    s = settings("CacheMinHold * 1 day\nCacheDefaultExpiry * 1 day")
    assert life("http://a.test/", [("Cache-Control", "max-age=5")], s) == 5
    assert life("http://a.test/", [("Expires", date(10))], s) == 10
    assert life("http://a.test/", [("Cache-Control", "max-age=0")], s) == 0


def test_error_statuses_only_when_the_rule_says_errors() -> None:
    s = settings(
        "CacheDefaultExpiry */favicon.ico 1 day\nCacheDefaultExpiry */robots.txt 1 hour errors"
    )
    assert life("http://a.test/favicon.ico", s=s) == DAY
    assert life("http://a.test/favicon.ico", s=s, status=404) == 0
    assert life("http://a.test/robots.txt", s=s, status=404) == 3600
    assert life("http://a.test/robots.txt", s=s, status=410) == 3600


def test_the_catch_all_keeps_todays_meaning() -> None:
    # A file written before the rules: CacheDefaultExpiry alone applies to every URL,
    # errors included, as it did.
    s = settings(cache_default_expiry_s=600.0, cache_package_rules=False)
    assert life("http://a.test/x", s=s) == 600
    assert life("http://a.test/x", s=s, status=404) == 600


@pytest.mark.parametrize(
    "url",
    [
        "http://deb.test/debian/pool/main/h/hello/hello_2.10-3_amd64.deb",
        "http://deb.test/debian/pool/main/d/d-i/x_1_amd64.udeb",
        "http://deb.test/ubuntu/pool/main/h/hello/hello-dbgsym_1_amd64.ddeb",
        "http://deb.test/debian/dists/stable/main/binary-amd64/by-hash/SHA256/ab12",
        "http://files.test/packages/ab/cd/ef/pkg-1.0-py3-none-any.whl",
        "http://files.test/packages/ab/cd/ef/pkg-1.0.tar.gz",
        "http://files.test/packages/ab/cd/ef/pkg-1.0.zip",
        "http://registry.test/left-pad/-/left-pad-1.3.0.tgz",
        "http://registry.test/@scope/name/-/name-1.0.0.tgz",
    ],
)
def test_package_files_are_held_as_long_as_allowed(url: str) -> None:
    assert life(url) == MAX
    lm = [("Last-Modified", date(-100))]
    assert life(url, lm) == MAX  # a recent Last-Modified does not shorten it
    assert life(url, status=404) == 0  # a missing package is not kept
    assert storable("GET", 200, [], [("Date", date())], settings(), url_key=url) == (True, "ok")
    off = settings(cache_package_rules=False)
    assert life(url, s=off) == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://deb.test/debian/dists/stable/InRelease",
        "http://deb.test/debian/dists/stable/Release",
        "http://deb.test/debian/dists/stable/Release.gpg",
        "http://deb.test/debian/dists/stable/main/binary-amd64/Packages.xz",
        "http://deb.test/debian/dists/stable/main/source/Sources.gz",
        "http://deb.test/debian/dists/stable/main/Contents-amd64.gz",
        "http://deb.test/debian/dists/stable/main/i18n/Translation-en.bz2",
        "http://pypi.test/simple/requests/",
        "http://registry.npmjs.org/left-pad",
    ],
)
def test_package_indexes_are_revalidated(url: str) -> None:
    lm = [("Last-Modified", date(-100 * DAY))]
    assert life(url, lm) == 0  # not 10 days from the 0.1 factor
    assert life(url, lm, settings(cache_package_rules=False)) == 10 * DAY
    # With a validator it is kept, to be revalidated; without one there is no reuse.
    assert storable("GET", 200, [], [("Date", date()), *lm], settings(), url_key=url)[0]
    assert storable("GET", 200, [], [("Date", date())], settings(), url_key=url) == (
        False,
        "no-freshness",
    )


def test_user_rules_come_before_the_package_rules() -> None:
    url = "http://deb.test/debian/dists/stable/InRelease"
    assert life(url, s=settings("CacheDefaultExpiry */InRelease 5 minutes")) == 300


@pytest.mark.parametrize("reason", ["no-store", "private", "authorization"])
def test_min_hold_never_stores_what_the_response_forbids(reason: str) -> None:
    s = settings("CacheMinHold * 1 day")
    url = "http://a.test/pool/x.deb"
    req, resp = [], [("Date", date())]
    if reason == "authorization":
        req = [("Authorization", "Basic eDp5")]
    else:
        resp.append(("Cache-Control", reason))
    assert storable("GET", 200, req, resp, s, url_key=url) == (False, reason)


def test_every_package_rule_is_documented() -> None:
    doc = DIRECTIVES["CachePackageRules"].doc
    for rule in PACKAGE_RULES:
        assert rule.pattern in doc, rule.pattern


# -- the directive ------------------------------------------------------------------------


def test_rules_parse_and_format_back() -> None:
    text = (
        "cachedefaultexpiry  http://*/*.deb  1 hour 30 minutes\n"
        "# a comment\n\n"
        "CacheLastModifiedFactor * 0.2\n"
        "CacheMinHold /x/* 2 days ERRORS"
    )
    rules = RULES.parse(text)
    assert rules == (
        FreshnessRule("CacheDefaultExpiry", "http://*/*.deb", 5400.0, False),
        FreshnessRule("CacheLastModifiedFactor", "*", 0.2, False),
        FreshnessRule("CacheMinHold", "/x/*", 172800.0, True),
    )
    assert RULES.parse(RULES.format(rules)) == rules
    assert str(rules[2]) == "CacheMinHold /x/* 2 days errors"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("CacheMaxExpiry * 1 day", "a rule starts with one of"),
        ("CacheDefaultExpiry *", "write CacheDefaultExpiry pattern time"),
        ("CacheDefaultExpiry * 30", "not a time"),
        ("CacheLastModifiedFactor * 2", "out of range"),
        ("CacheMinHold nohost 1 day", "is not a URL pattern"),
        ("CacheMinHold * errors", "not a time"),
    ],
)
def test_a_bad_rule_is_refused_with_what_is_allowed(line: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        RULES.parse(line)
    with pytest.raises(ConfigError) as info:
        config_with(defaults(), {"CacheFreshnessRules": line})
    assert info.value.directive == "CacheFreshnessRules"


def test_config_gives_the_cache_its_rules() -> None:
    cfg = config_with(
        defaults(),
        {"CacheFreshnessRules": "CacheMinHold *.iso 7 days", "CachePackageRules": "off"},
    )
    s = CacheSettings.from_config(cfg)
    assert s.cache_package_rules is False
    assert s.cache_freshness_rules == (("CacheMinHold", "*.iso", 7 * DAY, False),)
    assert defaults().cache_package_rules is True


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("CacheDefaultExpiry = http://*/*.deb 30 days\n", "is not a time"),
        ("CacheDefaultExpiry = 1 day\nCacheDefaultExpiry = 2 days\n", "given twice"),
        ("CacheMinHold = *.deb 30 days\n", "unknown directive"),
        ("CacheLastModifiedFactor = *.html 0.2\n", "is not a number"),
    ],
)
def test_ibm_style_lines_at_the_top_level_point_to_the_rules(
    tmp_path: Path, text: str, words: str
) -> None:
    conf = tmp_path / "cproxy.conf"
    conf.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(conf))
    message = str(info.value)
    assert words in message and "line of CacheFreshnessRules" in message, message
    assert info.value.line is not None


def test_a_plain_bad_time_gets_no_pattern_hint(tmp_path: Path) -> None:
    conf = tmp_path / "cproxy.conf"
    conf.write_text("CacheDefaultExpiry = 30\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(conf))
    assert "CacheFreshnessRules" not in str(info.value)
