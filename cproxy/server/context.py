"""What a client connection carries for every request on it (issue #19).

A plain client connection has none: each request names its own target and brings its
own Proxy-Authorization. An intercepted CONNECT turns its connection into one to a single
authority, established once: every request inside is bound to that authority
(`cproxy.http.authority.bind_to_authority`), and the user the CONNECT authenticated is
the user of every request (browsers send no Proxy-Authorization inside TLS).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    """The authority (scheme, host, port) every request on the connection is bound to,
    the user the CONNECT authenticated (None: none needed), and whether the connection
    is an intercepted one (TLS terminated by cproxy)."""

    scheme: str
    host: str
    port: int
    user: str | None = None
    intercepted: bool = True
