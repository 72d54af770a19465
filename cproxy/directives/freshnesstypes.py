"""The value type of CacheFreshnessRules: heuristic freshness per URL pattern (issue #23).

IBM Caching Proxy writes these as repeated directives, one URL pattern then a value:
``CacheDefaultExpiry http://*/*.deb 30 days``, ``CacheLastModifiedFactor http://*.htm* 0.2``,
``CacheMinHold http://*/pool/* 1 day``. A directive file read by configobj holds each name
once (a repeated name is an error), so, like the mapping rules (``MappingRules``: lines
``Proxy pattern target``), the lines are the value of one multi-line directive, each line
in IBM's own words. The single-valued CacheDefaultExpiry and CacheLastModifiedFactor stay
the catch-all. Same contract as ``types.py``: ``parse(text)`` raises ``ValueError`` saying
what is allowed, ``format(value)`` gives canonical text with ``parse(format(v)) == v``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, NamedTuple

from .types import PATTERN_ALLOWED, Factor, RuleList, Time, ValueType, check_pattern, is_pattern

# A freshness rule's value types: times up to ten years (CacheMaxExpiry caps them anyway),
# factors from 0 to 1 as CacheLastModifiedFactor takes them.
_KINDS: dict[str, ValueType] = {
    "CacheDefaultExpiry": Time(0, 3650 * 86_400.0),
    "CacheLastModifiedFactor": Factor(0.0, 1.0),
    "CacheMinHold": Time(0, 3650 * 86_400.0),
}
_BY_LOWER = {name.lower(): name for name in _KINDS}

# The flag that lets a rule apply to error statuses (404, 410...) too.
ERRORS_FLAG = "errors"


def per_pattern_hint(name: str, value: str | None = None) -> str:
    """Where IBM's per-pattern directive ``name`` goes in a cproxy file (for the error a
    user who wrote it IBM's way gets: repeated, CacheMinHold alone, or a ``value`` that
    starts with a URL pattern), or "" for any other name or value."""
    kind = _BY_LOWER.get(name.lower())
    words = value.split() if value is not None else []
    if kind is None or (value is not None and (len(words) < 2 or not is_pattern(words[0]))):
        return ""
    return f" (per URL pattern, write {kind} pattern value as a line of CacheFreshnessRules)"


class FreshnessRule(NamedTuple):
    """``kind pattern value [errors]``: one heuristic freshness rule.

    The field order is the cache's (``cproxy.cache.heuristics.HeuristicRule``): the cache
    settings take these tuples as they are.
    """

    kind: str
    pattern: str
    value: float
    errors: bool = False

    @property
    def target(self) -> str:
        """The value as written (with the errors flag), shown in the rule table."""
        text = _KINDS[self.kind].format(self.value)
        return f"{text} {ERRORS_FLAG}" if self.errors else text

    def __str__(self) -> str:
        return f"{self.kind} {self.pattern} {self.target}"


def parse_freshness_rule(line: str) -> FreshnessRule:
    """Parse one ``Kind pattern value [errors]`` line; raise ValueError saying what is wrong."""
    words = line.split()
    shown = line.strip()
    kind = _BY_LOWER.get(words[0].lower()) if words else None
    if kind is None:
        raise ValueError(f"{shown!r}: a rule starts with one of {', '.join(_KINDS)}")
    errors = len(words) > 3 and words[-1].lower() == ERRORS_FLAG
    value_words = words[2 : len(words) - errors]
    if len(words) < 2 or not value_words:
        what = "factor" if kind == "CacheLastModifiedFactor" else "time"
        raise ValueError(f"{shown!r}: write {kind} pattern {what} [{ERRORS_FLAG}]")
    pattern = words[1]
    check_pattern(pattern)
    try:
        value = _KINDS[kind].parse(" ".join(value_words))
    except ValueError as exc:
        raise ValueError(f"{shown!r}: {exc}") from exc
    return FreshnessRule(kind, pattern, value, errors)


class FreshnessRuleList(RuleList):
    """Freshness rules, one per line; value a tuple of `FreshnessRule`. For each kind the
    first rule whose pattern matches wins. Blank lines and ``#`` lines are ignored."""

    kind_names: ClassVar[tuple[str, ...]] = tuple(_KINDS)
    target_label: ClassVar[str] = "Value"
    target_placeholder: ClassVar[str] = "30 days  (a factor for CacheLastModifiedFactor)"
    pattern_placeholder: ClassVar[str] = "*.deb"
    empty_text: ClassVar[str] = "No rules: the single-valued directives apply to every URL."

    @property
    def allowed(self) -> str:
        return (
            f"one rule per line: Kind pattern value [{ERRORS_FLAG}], Kind one of "
            f"{', '.join(_KINDS)}; the value a time (a factor from 0 to 1 for "
            f"CacheLastModifiedFactor); {ERRORS_FLAG} lets the rule apply to error statuses "
            f"too; {PATTERN_ALLOWED}"
        )

    def parse_line(self, line: str) -> FreshnessRule:  # type: ignore[override]
        return parse_freshness_rule(line)

    def parse(self, text: str) -> tuple[FreshnessRule, ...]:  # type: ignore[override]
        return tuple(
            parse_freshness_rule(line)
            for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")
        )

    def format(self, value: Iterable[FreshnessRule]) -> str:  # type: ignore[override]
        return "\n".join(str(rule) for rule in value)
