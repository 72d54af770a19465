"""Value types of directives: how a value is typed, checked, stored and written back.

Every type turns the text a person types into a typed value with ``parse`` (raising
``ValueError`` whose message says what is allowed) and writes a value back as canonical text
with ``format``, so that ``parse(format(v)) == v``. ``unit`` is shown next to form fields,
``allowed`` is a one-line description of the valid values (used in error messages, the man
page and the forms), and ``suffix`` is appended to a directive's attribute name so a limit
carries its unit in its name (``persist_timeout_s``, ``cache_memory_bytes``).

Values are immutable (ints, floats, strings, tuples, frozen dataclasses) so a ``Config``
snapshot can be shared between greenlets without copying.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ValueType:
    """Base of the directive value types (see the module docstring for the contract)."""

    #: shown next to a form field; empty when the value speaks for itself, as times and
    #: sizes do: their text carries its own unit ("30 minutes", "64 M"), so a fixed label
    #: such as "seconds" would contradict it
    unit: str = ""
    #: appended to the directive's attribute name: Time -> "_s", Size -> "_bytes"
    suffix: str = ""
    #: True when the value is written one item per line (forms use a text area)
    multiline: bool = False

    @property
    def allowed(self) -> str:
        """One line describing the valid values, for error messages, docs and forms."""
        raise NotImplementedError

    def parse(self, text: str) -> Any:
        """Turn typed text into a value; raise ``ValueError`` saying what is wrong."""
        raise NotImplementedError

    def format(self, value: Any) -> str:
        """Write a value back as canonical text, so that ``parse(format(v)) == v``."""
        raise NotImplementedError


_NUMBER = r"\d+(?:\.\d+)?|\.\d+"


def _scaled(text: str) -> tuple[int, int]:
    """A number as `_NUMBER` matches it, exactly: ``(n, places)`` for n / 10**places.

    Integers rather than ``decimal``: that module is about 0.4 MiB of every proxy
    process, imported for these few sums (issue #21)."""
    whole, _, fraction = text.partition(".")
    try:
        return int(whole + fraction), len(fraction)
    except ValueError as exc:  # more digits than int() reads; the regexes allow only digits
        raise ValueError(f"{text!r} has too many digits") from exc


# ---------------------------------------------------------------------------------------------
# Time


# Unit words people type, mapped to milliseconds. Months and years are left out on purpose:
# their length varies, and "30 days" says exactly what is meant.
_TIME_UNITS_MS: dict[str, int] = {
    **dict.fromkeys(("ms", "msec", "msecs", "millisecond", "milliseconds"), 1),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1000),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60_000),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3_600_000),
    **dict.fromkeys(("d", "day", "days"), 86_400_000),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86_400_000),
}
_TIME_UNIT_HELP = "ms, seconds (s, sec), minutes (min), hours (h, hr), days (d), weeks (w)"
# Canonical output, largest unit first; weeks are not used so "30 days" stays "30 days".
_TIME_FORMAT_UNITS: tuple[tuple[int, str, str], ...] = (
    (86_400_000, "day", "days"),
    (3_600_000, "hour", "hours"),
    (60_000, "minute", "minutes"),
    (1000, "second", "seconds"),
    (1, "ms", "ms"),
)
_TIME_TERM = re.compile(rf"\s*({_NUMBER})\s*([A-Za-z]+)\s*")


def _format_ms(total_ms: int) -> str:
    if total_ms == 0:
        return "0"
    parts = []
    for size, one, many in _TIME_FORMAT_UNITS:
        count, total_ms = divmod(total_ms, size)
        if count:
            parts.append(f"{count} {one if count == 1 else many}")
    return " ".join(parts)


@dataclass(frozen=True)
class Time(ValueType):
    """A duration: number + unit terms that add up (``1 hour 30 minutes``); value in seconds.

    The value is a float number of seconds with millisecond resolution; ``0`` alone means
    zero. A number without a unit is rejected: "30" could mean seconds or minutes.
    """

    min_s: float = 0.0
    max_s: float = 365 * 86_400.0
    suffix: str = field(default="_s", init=False)

    @property
    def allowed(self) -> str:
        return (
            f"a time from {_format_ms(round(self.min_s * 1000))} to "
            f"{_format_ms(round(self.max_s * 1000))}: number + unit, parts add up "
            f"(e.g. 1 hour 30 minutes); units {_TIME_UNIT_HELP}"
        )

    def parse(self, text: str) -> float:
        stripped = text.strip()
        # The sum of the terms in ms, exactly: total / 10**places.
        total, places = 0, 0
        if not re.fullmatch(r"0+(?:\.0*)?", stripped):
            pos = 0
            if not stripped:
                raise ValueError(f"a time is needed (units: {_TIME_UNIT_HELP})")
            while pos < len(stripped):
                m = _TIME_TERM.match(stripped, pos)
                if m is None:
                    raise ValueError(
                        f"{text.strip()!r} is not a time: write a number and a unit, "
                        f"e.g. 4 seconds (units: {_TIME_UNIT_HELP})"
                    )
                unit_ms = _TIME_UNITS_MS.get(m.group(2).lower())
                if unit_ms is None:
                    raise ValueError(f"unknown time unit {m.group(2)!r} (units: {_TIME_UNIT_HELP})")
                n, term_places = _scaled(m.group(1))
                if term_places > places:
                    total *= 10 ** (term_places - places)
                    places = term_places
                total += n * unit_ms * 10 ** (places - term_places)
                pos = m.end()
        total_ms, finer = divmod(total, 10**places)
        if finer:
            raise ValueError(f"{text.strip()!r} is finer than the 1 ms resolution")
        seconds = total_ms / 1000
        if not self.min_s <= seconds <= self.max_s:
            raise ValueError(f"{_format_ms(total_ms)} is out of range")
        return seconds

    def format(self, value: float) -> str:
        return _format_ms(round(value * 1000))


# ---------------------------------------------------------------------------------------------
# Size


# Binary multiples (K = 1024), as IBM Caching Proxy and Squid read them.
_SIZE_UNITS: dict[str, int] = {
    **dict.fromkeys(("b", "byte", "bytes"), 1),
    **dict.fromkeys(("k", "kb", "kib"), 1 << 10),
    **dict.fromkeys(("m", "mb", "mib"), 1 << 20),
    **dict.fromkeys(("g", "gb", "gib"), 1 << 30),
    **dict.fromkeys(("t", "tb", "tib"), 1 << 40),
}
_SIZE_UNIT_HELP = "bytes (B), K, M, G, T (binary: K = 1024; KB, MB, GB also accepted)"
_SIZE_FORMAT_UNITS: tuple[tuple[int, str], ...] = (
    (1 << 40, "T"),
    (1 << 30, "G"),
    (1 << 20, "M"),
    (1 << 10, "K"),
)
_SIZE = re.compile(rf"({_NUMBER})\s*([A-Za-z]+)")


def _format_size(n: int) -> str:
    if n == 0:
        return "0"
    for size, name in _SIZE_FORMAT_UNITS:
        if n % size == 0:
            return f"{n // size} {name}"
    return f"{n} bytes"


@dataclass(frozen=True)
class Size(ValueType):
    """A byte count written as number + unit (``64 M``, ``512 K``, ``100 bytes``); value int.

    ``0`` alone means zero. A bare number is rejected: "CacheMemory = 64" is far more likely
    a forgotten "M" than a 64-byte cache.
    """

    min_bytes: int = 0
    max_bytes: int = 1 << 40
    suffix: str = field(default="_bytes", init=False)

    @property
    def allowed(self) -> str:
        return (
            f"a size from {_format_size(self.min_bytes)} to {_format_size(self.max_bytes)}: "
            f"number + unit, e.g. 64 M; units {_SIZE_UNIT_HELP}"
        )

    def parse(self, text: str) -> int:
        stripped = text.strip()
        if re.fullmatch(r"0+", stripped):
            n = 0
        else:
            m = _SIZE.fullmatch(stripped)
            if m is None:
                raise ValueError(
                    f"{stripped!r} is not a size: write a number and a unit, e.g. 64 M "
                    f"(units: {_SIZE_UNIT_HELP})"
                )
            unit = _SIZE_UNITS.get(m.group(2).lower())
            if unit is None:
                raise ValueError(f"unknown size unit {m.group(2)!r} (units: {_SIZE_UNIT_HELP})")
            number, places = _scaled(m.group(1))
            n, fraction = divmod(number * unit, 10**places)
            if fraction:
                raise ValueError(f"{stripped!r} is not a whole number of bytes")
        if not self.min_bytes <= n <= self.max_bytes:
            raise ValueError(f"{_format_size(n)} is out of range")
        return n

    def format(self, value: int) -> str:
        return _format_size(value)


# ---------------------------------------------------------------------------------------------
# Switch, Integer, Factor, Text, Host, Choice

_SWITCH_WORDS: dict[str, bool] = {
    "on": True,
    "yes": True,
    "true": True,
    "off": False,
    "no": False,
    "false": False,
}


@dataclass(frozen=True)
class Switch(ValueType):
    """``on`` or ``off`` (also yes/no, true/false, any case); value bool, written on/off."""

    @property
    def allowed(self) -> str:
        return "on or off"

    def parse(self, text: str) -> bool:
        value = _SWITCH_WORDS.get(text.strip().lower())
        if value is None:
            raise ValueError(f"{text.strip()!r} is not a switch")
        return value

    def format(self, value: bool) -> str:
        return "on" if value else "off"


@dataclass(frozen=True)
class Integer(ValueType):
    """A whole number in ``[min, max]``."""

    min: int = 0
    max: int = 2**31 - 1

    @property
    def allowed(self) -> str:
        return f"a whole number from {self.min} to {self.max}"

    def parse(self, text: str) -> int:
        stripped = text.strip()
        if not re.fullmatch(r"[+-]?\d+", stripped):
            raise ValueError(f"{stripped!r} is not a whole number")
        n = int(stripped)
        if not self.min <= n <= self.max:
            raise ValueError(f"{n} is out of range")
        return n

    def format(self, value: int) -> str:
        return str(value)


@dataclass(frozen=True)
class Factor(ValueType):
    """A decimal number in ``[min, max]`` (``0.1``); value float."""

    min: float = 0.0
    max: float = 1.0

    @property
    def allowed(self) -> str:
        return f"a number from {self.min:g} to {self.max:g}, e.g. 0.1"

    def parse(self, text: str) -> float:
        stripped = text.strip()
        if not re.fullmatch(rf"[+-]?(?:{_NUMBER})", stripped):
            raise ValueError(f"{stripped!r} is not a number")
        x = float(stripped)
        if not (math.isfinite(x) and self.min <= x <= self.max):
            raise ValueError(f"{stripped} is out of range")
        return x

    def format(self, value: float) -> str:
        # repr() is the shortest text that reads back as the same float.
        return repr(float(value))


@dataclass(frozen=True)
class Text(ValueType):
    """One line of free text, such as a file name; ``allow_empty`` says whether "" is valid."""

    allow_empty: bool = False
    description: str = "text on one line"

    @property
    def allowed(self) -> str:
        return self.description + ("" if not self.allow_empty else " (may be empty)")

    def parse(self, text: str) -> str:
        if "\n" in text or "\r" in text:
            raise ValueError("text must be on one line")
        value = text.strip()
        if not value and not self.allow_empty:
            raise ValueError("a value is needed")
        return value

    def format(self, value: str) -> str:
        return value


_DNS_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


@dataclass(frozen=True)
class Host(ValueType):
    """An IP address (``127.0.0.1``, ``::1``) or a DNS host name; value str."""

    @property
    def allowed(self) -> str:
        return "an IPv4 or IPv6 address or a host name"

    def parse(self, text: str) -> str:
        value = text.strip()
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass  # not an address literal: it may still be a host name
        if not _DNS_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is neither an IP address nor a host name")
        return value.lower()

    def format(self, value: str) -> str:
        return value


@dataclass(frozen=True)
class HostList(ValueType):
    """Host names or IP addresses, space or comma separated; value a tuple of str (names in
    lower case, addresses in their canonical form)."""

    @property
    def allowed(self) -> str:
        return "host names or IP addresses separated by spaces, e.g. proxy.example.lan 10.0.0.5"

    def parse(self, text: str) -> tuple[str, ...]:
        return tuple(Host().parse(item) for item in _split(text))

    def format(self, value: Iterable[str]) -> str:
        return " ".join(value)


@dataclass(frozen=True)
class ListenHosts(HostList):
    """Addresses to listen on (BindAddress, AdminAddress): a `HostList` of at least one
    entry, none twice. ``127.0.0.1 ::1`` serves IPv4 and IPv6 loopback at once."""

    @property
    def allowed(self) -> str:
        return "IPv4 or IPv6 addresses or host names separated by spaces, e.g. 127.0.0.1 ::1"

    def parse(self, text: str) -> tuple[str, ...]:
        hosts: list[str] = []
        for item in _split(text):
            host = Host().parse(item)
            if host in hosts:
                raise ValueError(f"{item!r} is given twice")
            hosts.append(host)
        if not hosts:
            raise ValueError("at least one address is needed")
        return tuple(hosts)


@dataclass(frozen=True, init=False)
class Choice(ValueType):
    """One word out of a fixed list (any case); value the canonical lower-case word."""

    choices: tuple[str, ...]

    def __init__(self, *choices: str) -> None:
        object.__setattr__(self, "choices", tuple(c.lower() for c in choices))

    @property
    def allowed(self) -> str:
        return "one of " + ", ".join(self.choices)

    def parse(self, text: str) -> str:
        value = text.strip().lower()
        if value not in self.choices:
            raise ValueError(f"{text.strip()!r} is not a choice")
        return value

    def format(self, value: str) -> str:
        return value


# ---------------------------------------------------------------------------------------------
# Lists: addresses, ports, URL patterns

_LIST_SEPARATORS = re.compile(r"[\s,]+")


def _split(text: str) -> list[str]:
    return [item for item in _LIST_SEPARATORS.split(text.strip()) if item]


@dataclass(frozen=True)
class AddressList(ValueType):
    """IP networks or addresses, space or comma separated; value a tuple of ip networks.

    A network with host bits set (``10.0.0.1/8``) is rejected rather than silently widened:
    it is usually a typo, and an access list is the wrong place to guess.
    """

    @property
    def allowed(self) -> str:
        return "IPv4/IPv6 addresses or networks separated by spaces, e.g. 10.0.0.0/8 ::1"

    def parse(self, text: str) -> tuple[IPNetwork, ...]:
        networks = []
        for item in _split(text):
            try:
                networks.append(ipaddress.ip_network(item, strict=True))
            except ValueError as exc:
                try:
                    wide = ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or network") from exc
                raise ValueError(f"{item!r} has host bits set; did you mean {wide}?") from exc
        return tuple(networks)

    def format(self, value: Iterable[IPNetwork]) -> str:
        return " ".join(str(n) for n in value)


@dataclass(frozen=True)
class HostPortList(ValueType):
    """``host:port`` entries (``[v6]:port`` for IPv6; an ``http://`` prefix and a trailing
    ``/`` are accepted, as people copy proxy URLs), space separated; value a tuple of
    (host, port) with the host as `Host` gives it."""

    @property
    def allowed(self) -> str:
        return "host:port entries separated by spaces, e.g. parent.example:3128 [::1]:8080"

    def parse(self, text: str) -> tuple[tuple[str, int], ...]:
        items: list[tuple[str, int]] = []
        for item in text.split():
            bare = item.removeprefix("http://").rstrip("/")
            host, sep, port = bare.rpartition(":")
            if not sep or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{item!r} is not host:port")
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
            elif ":" in host:
                raise ValueError(f"{item!r}: write an IPv6 address in brackets, [::1]:8080")
            entry = (Host().parse(host), int(port))
            if entry in items:
                raise ValueError(f"{item!r} is given twice")
            items.append(entry)
        return tuple(items)

    def format(self, value: Iterable[tuple[str, int]]) -> str:
        return " ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in value)


@dataclass(frozen=True)
class DirectList(ValueType):
    """Domains and IP networks, space or comma separated; value a tuple whose items are
    lower-case domain names (str, without a leading dot) or ip networks.

    A domain covers itself and every name under it: ``example.com`` matches
    ``example.com`` and ``www.example.com``; ``.example.com`` and ``*.example.com`` are
    accepted as the same thing, as people write it in no_proxy lists.
    """

    @property
    def allowed(self) -> str:
        return "domains and IP networks separated by spaces, e.g. example.com 10.0.0.0/8"

    def parse(self, text: str) -> tuple[str | IPNetwork, ...]:
        items: list[str | IPNetwork] = []
        for item in _split(text):
            try:
                items.append(ipaddress.ip_network(item, strict=True))
                continue
            except ValueError:
                pass
            domain = item.lower().removeprefix("*.").removeprefix(".").rstrip(".")
            if "/" in item or not _DNS_NAME.fullmatch(domain):
                raise ValueError(f"{item!r} is neither a domain nor an IP network")
            items.append(domain)
        return tuple(items)

    def format(self, value: Iterable[str | IPNetwork]) -> str:
        return " ".join(str(item) for item in value)


def direct_match(items: Iterable[str | IPNetwork], host: str) -> bool:
    """True when ``host`` (a name or an address literal) is covered by a DirectList."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        name = host.lower().rstrip(".")
        return any(
            isinstance(item, str) and (name == item or name.endswith("." + item)) for item in items
        )
    return any(
        not isinstance(item, str) and ip.version == item.version and ip in item for item in items
    )


def ip_allowed(networks: Iterable[IPNetwork], address: str) -> bool:
    """True when ``address`` (as the socket reports it) lies in one of ``networks``.

    An IPv4-mapped IPv6 address (``::ffff:10.1.2.3``, seen on dual-stack sockets) is checked
    as the IPv4 address it carries, so IPv4 access lists keep working there.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone index
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


@dataclass(frozen=True)
class PortList(ValueType):
    """TCP port numbers 1-65535, space or comma separated; value a tuple of ints."""

    @property
    def allowed(self) -> str:
        return "port numbers from 1 to 65535 separated by spaces, e.g. 443 8443"

    def parse(self, text: str) -> tuple[int, ...]:
        ports = []
        for item in _split(text):
            if not item.isdigit() or not 1 <= int(item) <= 65535:
                raise ValueError(f"{item!r} is not a port number")
            ports.append(int(item))
        return tuple(ports)

    def format(self, value: Iterable[int]) -> str:
        return " ".join(str(p) for p in value)


@dataclass(frozen=True)
class PortRanges:
    """Ports and port ranges, inclusive: ``443 in ports`` asks whether 443 is covered."""

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and any(lo <= port <= hi for lo, hi in self.ranges)


@dataclass(frozen=True)
class PortRangeList(ValueType):
    """TCP ports and inclusive ranges (``1025-65535``), space or comma separated, as Squid's
    ``Safe_ports``; value a `PortRanges`."""

    @property
    def allowed(self) -> str:
        return "port numbers or ranges from 1 to 65535 separated by spaces, e.g. 80 443 1025-65535"

    def parse(self, text: str) -> PortRanges:
        ranges = []
        for item in _split(text):
            lo_text, dash, hi_text = item.partition("-")
            bounds = (lo_text, hi_text) if dash else (lo_text, lo_text)
            if not all(b.isdigit() and 1 <= int(b) <= 65535 for b in bounds):
                raise ValueError(f"{item!r} is not a port number or range")
            lo, hi = int(bounds[0]), int(bounds[1])
            if lo > hi:
                raise ValueError(f"{item!r} is an empty range; did you mean {hi}-{lo}?")
            ranges.append((lo, hi))
        return PortRanges(tuple(ranges))

    def format(self, value: PortRanges) -> str:
        return " ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in value.ranges)


# RFC 9110 §5.1: a field name is a token.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


@dataclass(frozen=True)
class FieldNameList(ValueType):
    """HTTP field names (RFC 9110 §5.1), space or comma separated, in order; value a tuple
    of str as typed (field names compare case-insensitively)."""

    @property
    def allowed(self) -> str:
        return "HTTP field names separated by spaces, e.g. CDN-Cache-Control (may be empty)"

    def parse(self, text: str) -> tuple[str, ...]:
        names: list[str] = []
        for item in _split(text):
            if not _FIELD_NAME.match(item):
                raise ValueError(f"{item!r} is not an HTTP field name")
            if item.lower() not in (n.lower() for n in names):
                names.append(item)
        return tuple(names)

    def format(self, value: Iterable[str]) -> str:
        return " ".join(value)


# A pattern is matched against the request target as the server sees it: an absolute URL
# ("http://host/path") for proxy requests, a path ("/path") for requests sent to cproxy as a
# web server. "*" alone matches everything.
_PATTERN_START = re.compile(r"(?:https?://|/|\*)", re.IGNORECASE)
PATTERN_ALLOWED = "URL patterns starting with http://, https://, / or *; * matches any text"


def is_pattern(item: str) -> bool:
    """Is ``item`` a URL pattern (starts with http://, https://, / or *; no white space)?"""
    return bool(_PATTERN_START.match(item)) and not any(c.isspace() for c in item)


def check_pattern(item: str) -> None:
    if not is_pattern(item):
        raise ValueError(f"{item!r} is not a URL pattern")


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    # Each "*" captures as little as it can; the match must cover the whole URL.
    return re.compile("(.*?)".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


@dataclass(frozen=True)
class Pattern:
    """A URL pattern with ``*`` wildcards, matched case-sensitively against a whole URL.

    The server is expected to pass URLs with the scheme and host in lower case (they are
    case-insensitive in HTTP, while the path is not).
    """

    text: str

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return _pattern_regex(self.text)

    def match(self, url: str) -> tuple[str, ...] | None:
        """The texts matched by each ``*`` in order, or None when ``url`` does not match."""
        m = self._regex.fullmatch(url)
        return None if m is None else m.groups()


@dataclass(frozen=True)
class PatternList(ValueType):
    """URL patterns with ``*`` wildcards separated by white space; value a tuple of Pattern.

    Only white space separates patterns: a comma is a legal URL character.
    """

    @property
    def allowed(self) -> str:
        return PATTERN_ALLOWED + ", separated by spaces"

    def parse(self, text: str) -> tuple[Pattern, ...]:
        patterns = []
        for item in text.split():
            check_pattern(item)
            patterns.append(Pattern(item))
        return tuple(patterns)

    def format(self, value: Iterable[Pattern]) -> str:
        return " ".join(p.text for p in value)


# ---------------------------------------------------------------------------------------------
# Mapping rules


@dataclass(frozen=True)
class _RuleKind:
    name: str
    needs_target: bool
    # How the target must start, and the words for the error message; None: anything.
    target_start: re.Pattern[str] | None
    target_help: str


# The mapping rule kinds (IBM Caching Proxy's names), as a table.
RULE_KINDS: dict[str, _RuleKind] = {
    k.name.lower(): k
    for k in (
        _RuleKind("Proxy", True, re.compile(r"https?://", re.I), "an http:// or https:// URL"),
        _RuleKind("Map", True, re.compile(r"(?:https?://|/)", re.I), "a path or URL"),
        _RuleKind("Redirect", True, re.compile(r"(?:https?://|/)", re.I), "a path or URL"),
        _RuleKind("Fail", False, None, "nothing"),
    )
}


@dataclass(frozen=True)
class Rule:
    """One mapping rule: ``kind`` (Proxy, Fail, Map, Redirect), ``pattern``, ``target``.

    The n-th ``*`` in the target stands for the text the n-th ``*`` of the pattern matched.
    ``target`` is None for Fail.
    """

    kind: str
    pattern: str
    target: str | None = None

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return _pattern_regex(self.pattern)

    def match(self, url: str) -> str | None:
        """The rewritten target when ``url`` matches (``url`` itself for Fail), else None."""
        m = self._regex.fullmatch(url)
        if m is None:
            return None
        if self.target is None:
            return url
        pieces = self.target.split("*")
        out = [pieces[0]]
        for captured, piece in zip(m.groups(), pieces[1:], strict=False):
            out.append(captured)
            out.append(piece)
        return "".join(out)

    def __str__(self) -> str:
        return " ".join(p for p in (self.kind, self.pattern, self.target) if p is not None)


def parse_rule(line: str) -> Rule:
    """Parse one ``Kind pattern [target]`` line into a Rule; raise ValueError if wrong."""
    words = line.split()
    kinds = ", ".join(k.name for k in RULE_KINDS.values())
    kind = RULE_KINDS.get(words[0].lower()) if words else None
    if kind is None:
        raise ValueError(f"{line.strip()!r}: a rule starts with one of {kinds}")
    want = 3 if kind.needs_target else 2
    if len(words) != want:
        shape = f"{kind.name} pattern" + (" target" if kind.needs_target else "")
        raise ValueError(f"{line.strip()!r}: write {shape}")
    pattern = words[1]
    check_pattern(pattern)
    target = words[2] if kind.needs_target else None
    if target is not None:
        if kind.target_start is not None and not kind.target_start.match(target):
            raise ValueError(f"{line.strip()!r}: the target must be {kind.target_help}")
        if target.count("*") > pattern.count("*"):
            raise ValueError(f"{line.strip()!r}: the target has more * than the pattern")
    return Rule(kind.name, pattern, target)


@dataclass(frozen=True)
class RuleList(ValueType):
    """Mapping rules, one per line, checked in order; value a tuple of Rule.

    Blank lines and lines starting with ``#`` inside the value are ignored.
    """

    multiline: bool = field(default=True, init=False)
    kinds_help: ClassVar[str] = ", ".join(k.name for k in RULE_KINDS.values())
    # What the admin's rule editor shows (cproxy.admin): the kinds offered, the third
    # column's title, the inputs' placeholders and the empty table's text.
    kind_names: ClassVar[tuple[str, ...]] = tuple(k.name for k in RULE_KINDS.values())
    target_label: ClassVar[str] = "Target"
    target_placeholder: ClassVar[str] = "http://127.0.0.1:9000/*  (empty for Fail)"
    pattern_placeholder: ClassVar[str] = "/app/*"
    empty_text: ClassVar[str] = "No rules: every request goes to the host named in its URL."

    @property
    def allowed(self) -> str:
        return (
            f"one rule per line: Kind pattern target, Kind one of {self.kinds_help} "
            f"(Fail has no target); {PATTERN_ALLOWED}"
        )

    def parse_line(self, line: str) -> Rule:
        """One rule from its line (the admin's rule editor adds rules one at a time)."""
        return parse_rule(line)

    def parse(self, text: str) -> tuple[Rule, ...]:
        rules = []
        for line in text.splitlines():
            if line.strip() and not line.strip().startswith("#"):
                rules.append(parse_rule(line))
        return tuple(rules)

    def format(self, value: Iterable[Rule]) -> str:
        return "\n".join(str(rule) for rule in value)


# --- the shared cache tier's address (issue #14) -----------------------------------------------

# Schemes of SharedCache: (TLS, Redis Cluster) for each.
_SHARED_SCHEMES = {
    "redis": (False, False),
    "rediss": (True, False),
    "redis+cluster": (False, True),
    "rediss+cluster": (True, True),
}
_REDIS_NODE = re.compile(r"\[?(?P<host>[A-Za-z0-9.:-]+?)\]?(?::(?P<port>\d{1,5}))?")


@dataclass(frozen=True)
class RedisTarget:
    """Where the shared tier lives: one Redis server, or the seed nodes of a Redis Cluster."""

    tls: bool
    cluster: bool
    nodes: tuple[tuple[str, int], ...]
    db: int = 0
    username: str = ""

    def __str__(self) -> str:
        scheme = ("rediss" if self.tls else "redis") + ("+cluster" if self.cluster else "")
        user = f"{self.username}@" if self.username else ""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.nodes)
        db = f"/{self.db}" if self.db else ""
        return f"{scheme}://{user}{hosts}{db}"


@dataclass(frozen=True)
class SharedCacheURL(ValueType):
    """``redis://host:port/db``, ``rediss://`` (TLS), ``redis+cluster://h1:p1,h2:p2`` (Redis
    Cluster seed nodes; ``rediss+cluster://`` with TLS), or empty for none; value a
    `RedisTarget` or None. A password in the URL is refused: it would be shown on the forms
    and in logs, so it is read from a file instead."""

    @property
    def allowed(self) -> str:
        return (
            "empty, or redis://[user@]host[:port][/db], rediss://... (TLS), or "
            "redis+cluster://host:port,host:port (rediss+cluster:// with TLS)"
        )

    def parse(self, text: str) -> RedisTarget | None:
        value = text.strip()
        if not value:
            return None
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in _SHARED_SCHEMES:
            raise ValueError(f"{value!r}: the scheme must be one of {', '.join(_SHARED_SCHEMES)}")
        tls, cluster = _SHARED_SCHEMES[scheme.lower()]
        authority, _, path = rest.partition("/")
        user, at, hosts = authority.rpartition("@")
        if at and ":" in user:
            raise ValueError("no password in the URL: put it in SharedCachePasswordFile")
        if at and not user:
            raise ValueError("an empty user name before @")
        nodes = []
        for item in hosts.split(","):
            match = _REDIS_NODE.fullmatch(item.strip())
            if match is None or not item.strip():
                raise ValueError(f"{item.strip()!r} is not host[:port]")
            port = int(match["port"] or 6379)
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is not between 1 and 65535")
            nodes.append((Host().parse(match["host"]), port))
        if len(nodes) > 1 and not cluster:
            raise ValueError("several hosts are only for redis+cluster:// seed nodes")
        db = 0
        if path:
            if not path.isdigit() or int(path) > 15:
                raise ValueError(f"database {path!r} is not a number from 0 to 15")
            db = int(path)
            if cluster and db:
                raise ValueError("Redis Cluster has only database 0")
        return RedisTarget(tls, cluster, tuple(nodes), db, user)

    def format(self, value: RedisTarget | None) -> str:
        return "" if value is None else str(value)
