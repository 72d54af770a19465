"""WebSocket upgrades inside intercepted connections (issue #19): relayed after the 101.

A browser opens ``wss://`` over its intercepted connection with an ordinary GET carrying
``Upgrade: websocket`` and ``Connection: Upgrade``. The request is sent to the origin on a
fresh verified TLS connection of the pool (never a pooled one: it will not come back),
with the two hop-by-hop fields the upgrade needs and nothing else changed (through a
ParentProxy, a TLS connection made through the parent's tunnel, as for every https
request); a ``101`` is
passed to the client and from then on both connections are one tunnel, relayed as a
CONNECT tunnel is (`relay_tunnel`), until either side closes or neither sends anything
for ReadTimeout. Any other answer becomes a 502: a failed upgrade is not a response the
client's HTTP reader expects on this connection. Nothing of it is cached.

Plain-HTTP upgrades keep being refused as before (they are not intercepted traffic).
"""

from __future__ import annotations

from typing import Any

from gevent import socket

from cproxy.errors import OriginProtocolError, OriginReset
from cproxy.http import Request, find_head_end
from cproxy.http.framing import NONE
from cproxy.http.heads import origin_request_head
from cproxy.http.limits import IO_CHUNK_BYTES, MAX_HEAD_BYTES
from cproxy.http.message import parse_response_head, response_fields_for_client
from cproxy.origin import OriginConnection, OriginPool, origin_key
from cproxy.origin.parents import CONNECT_FAILURES, ParentSet
from cproxy.server.destinations import policy_for
from cproxy.server.respond import Outcome
from cproxy.server.sink import ClientSink
from cproxy.server.tunnel import relay_tunnel


def websocket_upgrade(req: Request) -> bool:
    """Is ``req`` a WebSocket opening handshake (RFC 6455 §4.1)?"""
    return (
        req.method == "GET"
        and req.body == NONE
        and "websocket" in req.headers.get_tokens("upgrade")
        and "upgrade" in req.headers.get_tokens("connection")
    )


def relay_websocket(
    state: Any,
    sink: ClientSink,
    client: socket.socket,
    req: Request,
    outcome: Outcome,
    client_ip: str,
    early: bytes,
) -> None:
    """Upgrade ``req`` at its origin and relay both ways until the end (see the module's
    docstring). ``early``: bytes the client sent after its request head. Raises
    OriginError / OriginProtocolError before the 101 (the caller answers 502)."""
    cfg = state.config
    pool = state.pool
    conn = _connect_http1(state, req, client, client_ip)
    try:
        osock = conn.sock
        osock.settimeout(cfg.read_timeout_s)
        upgrade = ", ".join(req.headers.get_values("upgrade"))
        head = origin_request_head(req, cfg.hostname)[:-2]
        osock.sendall(head + f"Connection: Upgrade\r\nUpgrade: {upgrade}\r\n\r\n".encode("latin-1"))
        data = b""
        end = -1
        while end == -1:
            try:
                chunk = osock.recv(IO_CHUNK_BYTES)
            except OSError as exc:  # TimeoutError included
                raise OriginReset(f"{req.host_header}: no answer to the upgrade: {exc}") from exc
            if not chunk:
                raise OriginReset(f"{req.host_header} closed instead of answering the upgrade")
            data += chunk
            if len(data) > MAX_HEAD_BYTES + IO_CHUNK_BYTES:
                raise OriginProtocolError("response head too large")
            end = find_head_end(data, client=False)
        resp = parse_response_head(data[:end], "GET")
        if resp.status != 101:
            raise OriginProtocolError(
                f"{req.host_header} answered {resp.status} to the WebSocket upgrade"
            )
        lines = ["HTTP/1.1 101 Switching Protocols"]
        lines += [f"{n}: {v}" for n, v in response_fields_for_client(resp, cfg.hostname)]
        protocols = ", ".join(resp.headers.get_values("upgrade"))
        lines += ["Connection: Upgrade", f"Upgrade: {protocols}"]
        answer = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        sink.send(answer + data[end:])
        outcome.status, outcome.origin, outcome.sent = 101, "new", len(answer) + len(data) - end
        if early:
            osock.sendall(early)
        outcome.sent += relay_tunnel(client, osock, cfg.read_timeout_s)
    finally:
        pool.discard(conn)


def _connect_http1(
    state: Any, req: Request, client: socket.socket, client_ip: str
) -> OriginConnection:
    """A fresh HTTP/1.1 connection to ``req``'s origin, whatever the origin speaks to the
    pool: an upgrade takes the connection over, which an HTTP/2 stream cannot be (RFC
    8441's extended CONNECT aside). Through the first ParentProxy that is up, as
    `cproxy.server.exchange` routes an https request; the next one when it cannot be
    reached."""
    pool: OriginPool = state.pool
    key = origin_key(req.scheme, req.host, req.port)
    parents: ParentSet = state.parents
    parent = parents.pick(req.host) if parents.active else None
    while True:
        try:
            if parent is None:
                return pool.connect_http1(
                    key, abandon_on_eof=client, admit=policy_for(state.config).admit(client_ip)
                )
            conn = pool.connect_http1(key, abandon_on_eof=client, via=parent.hop)
        except CONNECT_FAILURES as exc:
            if parent is None:
                raise
            parent = parents.failover(parent, req.host, exc)
            if parent is None:  # NoProxy changed meanwhile
                raise
            continue
        parents.mark_up(parent)
        return conn
