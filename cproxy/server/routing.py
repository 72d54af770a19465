"""Mapping rules (MappingRules): Proxy, Fail, Map, Redirect, checked in file order.

The first Proxy, Fail or Redirect rule that matches decides; a Map rule rewrites
the URL and checking goes on with the rewritten URL (IBM Caching Proxy semantics).
A pattern that starts with ``/`` is matched against the request's path, any other
against the absolute URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cproxy.errors import ClientProtocolError
from cproxy.http import Request
from cproxy.http.message import DEFAULT_PORTS, split_authority_path


@dataclass
class Route:
    """How to answer: ``status`` set: answer locally; ``proxied``: a Proxy rule chose the origin."""

    status: int = 0
    message: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    proxied: bool = False


# What route() concludes when no rule applies (shared: treat it as read-only).
NO_ROUTE = Route()


def route(req: Request, rules: tuple) -> Route:
    """Apply ``rules`` to ``req``; a Proxy rule rewrites ``req``'s target in place."""
    for rule in rules:
        subject = req.path if rule.pattern.startswith("/") else req.url
        result = rule.match(subject)
        if result is None:
            continue
        kind = rule.kind.lower()
        if kind == "fail":
            return Route(status=403, message="Access to this URL is refused by a Fail rule.")
        if kind == "redirect":
            return Route(status=302, message=f"Moved to {result}", headers=[("Location", result)])
        if kind == "map":
            if result.startswith("/"):
                req.path = result
            else:
                retarget(req, result)
            continue
        # Proxy: the result is the absolute URL to fetch.
        retarget(req, result)
        return Route(proxied=True)
    return NO_ROUTE


def retarget(req: Request, url: str) -> None:
    """Point ``req`` at absolute http or https URL ``url`` (scheme, host, port, path)."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise ClientProtocolError(502, f"mapping rule produced an unusable URL {url!r}")
    host, port, path = split_authority_path(rest)
    req.scheme, req.host, req.path = scheme, host, path
    req.port = port if port is not None else DEFAULT_PORTS[scheme]
