"""Which Host values name the admin listener (issue #10: DNS rebinding).

A page on ``evil.example`` whose name is made to resolve to 127.0.0.1 sends its requests,
from the user's browser, to whatever listens there, and the browser treats the answers
as ``evil.example``'s own: the page could read the admin's status and forms with the
user's cached credentials. Such requests carry ``Host: evil.example``, so the admin
answers only requests whose Host names it: localhost, the Hostname directive, the
machine's host name, AdminHostNames, or an IP address the listener has (any address when
it listens on all of them; loopback addresses always, when it listens on loopback).
An IP literal cannot be rebound: a browser's origin for it is that address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

_WILDCARDS = frozenset({"0.0.0.0", "::"})


def host_of(header: str) -> str | None:
    """The host part of a Host field value, lower-cased, without port or brackets; None
    when the value is malformed."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        after = value[end + 1 :] if end != -1 else ""
        if end == -1 or (after and not (after[0] == ":" and after[1:].isdigit())):
            return None
        return value[1:end] or None
    host, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return host.rstrip(".") or None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def admin_host_allowed(
    header: str | None, *, names: Iterable[str], listening_on: Iterable[str]
) -> bool:
    """Does the Host field ``header`` name this admin listener?

    ``names``: the host names it answers to besides localhost and the machine's name;
    ``listening_on``: the addresses it is bound to.
    """
    if header is None:
        return False
    host = host_of(header)
    if host is None:
        return False
    ip = _ip(host)
    if ip is None:
        known = {"localhost", socket.gethostname().lower(), *(n.lower() for n in names)}
        return host in known
    bound = list(listening_on)
    if any(b in _WILDCARDS for b in bound):
        return True
    own = {_ip(b) for b in bound}
    if ip in own:
        return True
    return ip.is_loopback and any(b is not None and b.is_loopback for b in own)
