"""CONNECT tunnels (RFC 9110 §9.3.6): opening the origin connection and relaying bytes.

The client side (handler.py) checks the request (ConnectPorts, not aimed at cproxy) and
answers it; this module opens the connection, with the same destination checks as every
origin connection (`destinations.policy_for`), and pumps bytes both ways.
"""

from __future__ import annotations

import time

import gevent
from gevent import socket

from cproxy.directives import Config
from cproxy.http import Request
from cproxy.http.limits import IO_CHUNK_BYTES
from cproxy.origin import open_socket
from cproxy.origin.connection import Resolver, format_host_port
from cproxy.origin.deadaddrs import DeadAddresses
from cproxy.origin.parents import CONNECT_FAILURES, ParentSet, tunnel_through
from cproxy.server.destinations import policy_for


def open_tunnel(
    req: Request,
    cfg: Config,
    resolve: Resolver,
    client_ip: str,
    parents: ParentSet | None = None,
    dead: DeadAddresses | None = None,
) -> tuple[socket.socket, bytes]:
    """A plain connection for the CONNECT (outside the pool): to the target, or to the
    first ParentProxy that is up and agrees to tunnel; with it, the bytes the parent sent
    after its answer (the start of the stream). Raises OriginError. Connections race as
    the pool's do (ConnectAttemptDelay; ``dead``: the addresses that failed lately)."""
    parent = parents.pick(req.host) if parents is not None and parents.active else None
    if parent is None:
        sock = open_socket(
            req.host,
            req.port,
            timeout_s=cfg.connect_timeout_s,
            resolve=resolve,
            admit=policy_for(cfg).admit(client_ip),
            attempt_delay_s=cfg.connect_attempt_delay_s,
            dead=dead,
        )
        return sock, b""
    assert parents is not None
    while True:
        try:
            # The parent is the administrator's choice: the destination policy is the
            # parent's to apply to the target.
            sock = open_socket(
                parent.host,
                parent.port,
                timeout_s=cfg.connect_timeout_s,
                resolve=resolve,
                attempt_delay_s=cfg.connect_attempt_delay_s,
                dead=dead,
            )
        except CONNECT_FAILURES as exc:
            next_parent = parents.failover(parent, req.host, exc)  # raises when none is up
            if next_parent is None:
                raise
            parent = next_parent
            continue
        parents.mark_up(parent)
        try:
            target = format_host_port(req.host, req.port)
            return sock, tunnel_through(sock, parent.hop, target, cfg.read_timeout_s)
        except BaseException:
            sock.close()
            raise


def relay_tunnel(client: socket.socket, origin: socket.socket, idle_timeout_s: float) -> int:
    """Copy bytes both ways until both sides are done or neither sent anything for
    ``idle_timeout_s``. Returns the bytes sent to the client."""
    last_activity = [time.monotonic()]
    sent = [0, 0]

    def pump(src: socket.socket, dst: socket.socket, index: int) -> bool:
        """One direction; True when it ended with an orderly close (EOF)."""
        src.settimeout(idle_timeout_s)
        dst.settimeout(idle_timeout_s)
        while True:
            try:
                data = src.recv(IO_CHUNK_BYTES)
                if not data:
                    # Half-close: pass the EOF on, keep the other direction going.
                    dst.shutdown(socket.SHUT_WR)
                    return True
                last_activity[0] = time.monotonic()
                try:
                    dst.sendall(data)
                except TimeoutError:
                    # The receiver took nothing for ReadTimeout. Part of ``data`` may have
                    # gone out, so going on would drop bytes mid-stream: end the tunnel.
                    return False
            except TimeoutError:
                if time.monotonic() - last_activity[0] < idle_timeout_s:
                    continue  # the other direction is busy: the tunnel is not idle
                return False
            except OSError:
                return False
            sent[index] += len(data)

    up = gevent.spawn(pump, client, origin, 0)
    down = gevent.spawn(pump, origin, client, 1)
    # A reset or an idle timeout in either direction ends the whole tunnel.
    for finished in gevent.iwait([up, down]):
        if not finished.value:
            break
    gevent.killall([up, down])
    return sent[1]
