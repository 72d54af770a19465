"""Listening sockets for the proxy and admin ports: several addresses on one port.

``BindAddress = 127.0.0.1 ::1`` gives one socket per address. IPv6 sockets are IPv6
only (IPV6_V6ONLY), so ``0.0.0.0 ::`` can be listed together. With port 0 the first
socket's ephemeral port is used for the others, so every address serves one port.
Addresses print as users write them, IPv6 in brackets (``[::1]:8080``).
"""

from __future__ import annotations

from collections.abc import Iterable

from gevent import socket

from cproxy.errors import CproxyError
from cproxy.origin.connection import format_host_port as format_address


class ListenError(CproxyError):
    """An address could not be bound: ``str()`` names it and the system's reason."""

    def __init__(self, address: str, reason: OSError) -> None:
        super().__init__(f"cannot listen on {address}: {reason.strerror or reason}")
        self.address = address
        self.reason = reason


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket, not listening yet (IPv4 or IPv6 by the address's form)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def bind_sockets(hosts: Iterable[str], port: int) -> list[socket.socket]:
    """One bound socket per host, all on ``port`` (port 0: the first one's). Raises
    ListenError naming the address that failed; nothing stays bound then."""
    socks: list[socket.socket] = []
    try:
        for host in hosts:
            try:
                sock = bind_socket(host, port)
            except OSError as exc:
                raise ListenError(format_address(host, port), exc) from exc
            socks.append(sock)
            port = port or int(sock.getsockname()[1])
    except ListenError:
        for sock in socks:
            sock.close()
        raise
    return socks


def listen_sockets(hosts: Iterable[str], port: int, backlog: int) -> list[socket.socket]:
    """`bind_sockets`, then listening."""
    socks = bind_sockets(hosts, port)
    for sock in socks:
        sock.listen(backlog)
    return socks


def listen_socket(host: str, port: int, backlog: int) -> socket.socket:
    """One bound, listening socket."""
    return listen_sockets([host], port, backlog)[0]


__all__ = [
    "ListenError",
    "bind_socket",
    "bind_sockets",
    "format_address",
    "listen_socket",
    "listen_sockets",
]
