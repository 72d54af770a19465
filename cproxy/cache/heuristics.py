"""Heuristic freshness per URL pattern (RFC 9111 §4.2.2), as IBM Caching Proxy's
``CacheDefaultExpiry url_pattern time``, ``CacheLastModifiedFactor url_pattern factor`` and
``CacheMinHold url_pattern time`` and Squid's ``refresh_pattern`` take it. Pure: no I/O.

A rule is ``(kind, pattern, value, errors)``: ``kind`` one of `KINDS`, ``pattern`` a URL
pattern whose ``*`` matches any text (matched against the whole cache key), ``value``
seconds or a factor, ``errors`` whether it also applies to the heuristically cacheable
error statuses (404, 405, 410, 414, 501); without it a rule applies below 400 only, so a
rule written for package files never keeps a 404 for a day.

Rules are asked only when the response carries no explicit freshness (s-maxage, max-age,
Expires) and its status allows a heuristic (``policy.heuristic_allowed``): they decide how
long a response that says nothing stays fresh, never whether a response that forbids
storing is stored (the storage rules run first). For each kind the first rule whose
pattern matches wins: the user's (CacheFreshnessRules) before the built-in package rules
(`PACKAGE_RULES`, CachePackageRules), before the single-valued directives (the catch-all).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import NamedTuple

DEFAULT_EXPIRY = "CacheDefaultExpiry"
LAST_MODIFIED_FACTOR = "CacheLastModifiedFactor"
MIN_HOLD = "CacheMinHold"
KINDS = (DEFAULT_EXPIRY, LAST_MODIFIED_FACTOR, MIN_HOLD)

_DAY_S = 86_400.0


class HeuristicRule(NamedTuple):
    """One freshness rule; the directive type's rules have the same four fields."""

    kind: str
    pattern: str
    value: float
    errors: bool = False


def _immutable(pattern: str) -> HeuristicRule:
    # A year, which CacheMaxExpiry (30 days by default) caps: held as long as allowed.
    return HeuristicRule(MIN_HOLD, pattern, 365 * _DAY_S)


def _changing(pattern: str) -> tuple[HeuristicRule, HeuristicRule]:
    # No heuristic lifetime at all: stored only with a validator, then revalidated on
    # every use (a 304 when unchanged).
    return (
        HeuristicRule(DEFAULT_EXPIRY, pattern, 0.0),
        HeuristicRule(LAST_MODIFIED_FACTOR, pattern, 0.0),
    )


# The built-in rules for package archives (CachePackageRules), each with its reason; the
# man page lists them from here (`PACKAGE_RULE_REASONS`).
_PACKAGE_GROUPS: tuple[tuple[str, tuple[HeuristicRule, ...]], ...] = (
    (
        "Debian and Ubuntu package files and by-hash indexes never change under their name "
        "(a new version has a new file name; by-hash names are the content's hash): held "
        "for CacheMaxExpiry.",
        tuple(_immutable(p) for p in ("*.deb", "*.udeb", "*.ddeb", "*/by-hash/*")),
    ),
    (
        "Python wheels and sdists under /packages/ never change under their name (PyPI "
        "refuses to replace a file): held for CacheMaxExpiry.",
        tuple(
            _immutable(p) for p in ("*/packages/*.whl", "*/packages/*.tar.gz", "*/packages/*.zip")
        ),
    ),
    (
        "npm tarballs (/-/name-version.tgz) never change under their name (a published "
        "version cannot be replaced): held for CacheMaxExpiry.",
        (_immutable("*/-/*.tgz"),),
    ),
    (
        "Debian and Ubuntu indexes (InRelease, Release, Release.gpg, Packages*, Sources*, "
        "Contents-*, Translation-*) change in place when the archive is updated, and apt "
        "refuses an index whose hash disagrees with a newer InRelease: never fresh by "
        "heuristic, so revalidated on every use (and not stored when the archive sends no "
        "validator).",
        tuple(
            rule
            for p in (
                "*/InRelease",
                "*/Release",
                "*/Release.gpg",
                "*/Packages*",
                "*/Sources*",
                "*/Contents-*",
                "*/Translation-*",
            )
            for rule in _changing(p)
        ),
    ),
    (
        "Python index pages (/simple/...) and npm package documents on registry.npmjs.org "
        "and registry.yarnpkg.com list new releases as they are published: never fresh by "
        "heuristic, so revalidated on every use.",
        tuple(
            rule
            for p in ("*/simple/*", "*://registry.npmjs.org/*", "*://registry.yarnpkg.com/*")
            for rule in _changing(p)
        ),
    ),
)

PACKAGE_RULES: tuple[HeuristicRule, ...] = tuple(r for _, rules in _PACKAGE_GROUPS for r in rules)

#: (the patterns, what they get and why) for the documentation.
PACKAGE_RULE_REASONS: tuple[tuple[tuple[str, ...], str], ...] = tuple(
    (tuple(dict.fromkeys(r.pattern for r in rules)), reason) for reason, rules in _PACKAGE_GROUPS
)


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A URL pattern as a regex over the whole URL: ``*`` matches any text."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


class _Rule(NamedTuple):
    needle: str  # the pattern's longest literal piece: a URL without it cannot match
    regex: re.Pattern[str]
    value: float
    errors: bool


class CompiledRules(NamedTuple):
    """Per kind, the rules in the order they are tried."""

    by_kind: dict[str, tuple[_Rule, ...]]

    def first(self, kind: str, url_key: str, error_status: bool) -> float | None:
        """The value of the first rule of ``kind`` matching ``url_key``, or None.

        A substring test of each rule's longest literal piece comes first: most URLs
        contain none of them, and it costs a fraction of a regex match (the built-in rules
        then cost about 2 us a response instead of 7)."""
        for rule in self.by_kind[kind]:
            if error_status and not rule.errors:
                continue
            if rule.needle in url_key and rule.regex.fullmatch(url_key):
                return rule.value
        return None


@functools.lru_cache(maxsize=16)
def compiled(rules: tuple[Sequence[object], ...], packages: bool) -> CompiledRules:
    """The user's ``rules`` followed, when ``packages``, by `PACKAGE_RULES`, compiled."""
    by_kind: dict[str, list[_Rule]] = {k: [] for k in KINDS}
    for rule in (*rules, *(PACKAGE_RULES if packages else ())):
        kind, pattern, value, errors = rule
        text = str(pattern)
        needle = max(text.split("*"), key=len)
        by_kind[str(kind)].append(
            _Rule(needle, pattern_regex(text), float(value), bool(errors))  # type: ignore[arg-type]
        )
    return CompiledRules({k: tuple(v) for k, v in by_kind.items()})


def heuristic_lifetime(
    *,
    rules: CompiledRules,
    url_key: str | None,
    status: int,
    date: float | None,
    last_modified: float | None,
    default_expiry_s: float,
    last_modified_factor: float,
) -> float:
    """§4.2.2: the heuristic freshness lifetime of a response with no explicit freshness.

    With Last-Modified (and a Date): factor x (Date - Last-Modified); otherwise the default
    expiry; then at least the minimum hold. Each value comes from the first matching rule
    of its kind, else the catch-all given here (no minimum hold).
    """
    error_status = status >= 400
    factor = default = hold = None
    if url_key is not None:
        factor = rules.first(LAST_MODIFIED_FACTOR, url_key, error_status)
        default = rules.first(DEFAULT_EXPIRY, url_key, error_status)
        hold = rules.first(MIN_HOLD, url_key, error_status)
    if last_modified is not None and date is not None:
        lifetime = max(
            0.0, (date - last_modified) * (last_modified_factor if factor is None else factor)
        )
    else:
        lifetime = default_expiry_s if default is None else default
    return lifetime if hold is None else max(lifetime, hold)
