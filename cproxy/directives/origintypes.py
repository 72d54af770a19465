"""Directive value types that name origin servers (issue #11's pool directives).

Kept apart from ``types.py`` so the pool's directives can grow without touching the general
types. Same contract: ``parse(text)`` raises ``ValueError`` saying what is allowed,
``format(value)`` gives canonical text with ``parse(format(v)) == v``.

An origin is written ``scheme://host[:port]`` (an optional trailing ``/``); the value is the
pool's key ``(scheme, host, port)``: scheme and host lower-cased, an IPv6 literal without
brackets, the port filled in from the scheme. No wildcards: these directives switch
behaviour for exact origins (verification off must never cover more than the lab meant).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .types import ValueType

_ORIGIN = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r"(?::(?P<port>\d{1,5}))?/?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def parse_origin(text: str, schemes: tuple[str, ...]) -> Origin:
    """``scheme://host[:port]`` -> ``(scheme, host, port)``; raises ``ValueError``."""
    m = _ORIGIN.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not an origin written scheme://host[:port]")
    scheme = m["scheme"].lower()
    if scheme not in schemes:
        raise ValueError(f"{text!r}: the scheme must be {' or '.join(schemes)}")
    host = m["host"].lower().strip("[]")
    port = int(m["port"]) if m["port"] else _DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port out of range")
    return (scheme, host, port)


def format_origin_text(origin: Origin) -> str:
    scheme, host, port = origin
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


@dataclass(frozen=True)
class OriginList(ValueType):
    """Origins separated by white space; value a tuple of ``(scheme, host, port)``."""

    schemes: tuple[str, ...] = ("http", "https")

    @property
    def allowed(self) -> str:
        schemes = " or ".join(f"{s}://" for s in self.schemes)
        return f"origins written {schemes}host[:port], separated by spaces (no wildcards)"

    def parse(self, text: str) -> tuple[Origin, ...]:
        return tuple(dict.fromkeys(parse_origin(item, self.schemes) for item in text.split()))

    def format(self, value: Iterable[Origin]) -> str:
        return " ".join(format_origin_text(origin) for origin in value)


@dataclass(frozen=True)
class StandbyList(ValueType):
    """One ``origin count`` per line: how many idle connections to keep open to each;
    value a tuple of ``((scheme, host, port), count)``."""

    max_count: int = 64
    multiline: bool = field(default=True, init=False)

    @property
    def allowed(self) -> str:
        return (
            "one origin per line, written http://host[:port] or https://host[:port], "
            f"then how many connections to keep open to it (1 to {self.max_count})"
        )

    def parse(self, text: str) -> tuple[tuple[Origin, int], ...]:
        entries: dict[Origin, int] = {}
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise ValueError(f"{line!r}: write an origin and a count, e.g. http://a.test 4")
            count = int(parts[1])
            if not 1 <= count <= self.max_count:
                raise ValueError(f"{line!r}: the count must be 1 to {self.max_count}")
            origin = parse_origin(parts[0], ("http", "https"))
            if origin in entries:
                raise ValueError(f"{line!r}: {format_origin_text(origin)} is listed twice")
            entries[origin] = count
        return tuple(entries.items())

    def format(self, value: Iterable[tuple[Origin, int]]) -> str:
        return "\n".join(f"{format_origin_text(origin)} {count}" for origin, count in value)
