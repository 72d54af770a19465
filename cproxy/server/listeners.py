"""Listening sockets for the proxy and admin ports: several addresses on one port.

``BindAddress = 127.0.0.1 ::1`` gives one socket per address. IPv6 sockets are IPv6
only (IPV6_V6ONLY), so ``0.0.0.0 ::`` can be listed together. With port 0 the first
socket's ephemeral port is used for the others, so every address serves one port.
Addresses print as users write them, IPv6 in brackets (``[::1]:8080``).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from gevent import socket
from gevent.server import StreamServer

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


log = logging.getLogger("cproxy")

# Out of descriptors at accept with nothing to give back: stop accepting for this long,
# doubled while it lasts, up to the most. Clients wait in the kernel's backlog meanwhile
# (not refused), and the process does not spin on a listener that stays readable.
EXHAUSTED_PAUSE_S = 0.02
EXHAUSTED_PAUSE_MAX_S = 1.0
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


class ProxyListener(StreamServer):  # type: ignore[misc]
    """A StreamServer that survives running out of file descriptors (EMFILE, ENFILE).

    At accept it asks ``give_back`` to free descriptors (the origin pool closes idle
    sockets) and accepts again; when nothing could be freed it stops accepting for a
    short pause that doubles while the shortage lasts. The error log says so once per
    episode, and once when accepting works again. (gevent's own handling of an accept
    error is the pause alone, with a traceback printed every time.)
    """

    def __init__(
        self,
        listener: socket.socket,
        handle: Callable[..., Any],
        *,
        spawn: Any,
        give_back: Callable[[], int],
    ) -> None:
        super().__init__(listener, handle, spawn=spawn)
        self._give_back = give_back
        self._pause_s = 0.0  # > 0 during an episode
        self._given_back = 0
        self._resume: gevent.Greenlet | None = None

    def do_read(self) -> Any:
        try:
            accepted = super().do_read()
        except OSError as exc:
            if exc.errno not in _OUT_OF_DESCRIPTORS:
                raise
            self._out_of_descriptors(exc)
            return None
        if accepted and self._pause_s:
            log.warning(
                "accepting again after running out of file descriptors "
                "(%d idle origin sockets closed)",
                self._given_back,
            )
            self._pause_s = 0.0
            self._given_back = 0
        return accepted

    def _out_of_descriptors(self, exc: OSError) -> None:
        freed = self._give_back()
        if not self._pause_s:
            log.error(
                "out of file descriptors at accept (%s): closed %d idle origin sockets%s",
                exc.strerror,
                freed,
                "" if freed else "; pausing accept until some are free",
            )
            self._pause_s = EXHAUSTED_PAUSE_S
        self._given_back += freed
        if freed:
            return  # accept again at once: the listener is still readable
        pause = self._pause_s
        self._pause_s = min(pause * 2, EXHAUSTED_PAUSE_MAX_S)
        self.stop_accepting()
        self._resume = gevent.spawn_later(pause, self._accept_again)

    def _accept_again(self) -> None:
        self._resume = None
        if self.started:
            self.start_accepting()

    def close(self) -> None:
        if self._resume is not None:
            self._resume.kill(block=False)
        super().close()


__all__ = [
    "ListenError",
    "ProxyListener",
    "bind_socket",
    "bind_sockets",
    "format_address",
    "listen_socket",
    "listen_sockets",
]
