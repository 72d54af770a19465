"""One greenlet per client connection: read requests, forward them, stream responses back.

The timeouts, precisely (each is a directive, see cproxy.conf(5)):

- InputTimeout: from accepting the connection (first request) or from the first
  byte of a later request (a pipelined one already read: from when cproxy turns to
  it), to the end of that request's head. Fires -> 408, close.
- PersistTimeout: on a persistent connection, from the end of a response to the
  first byte of the next request. Fires -> the connection is closed quietly.
- ReadTimeout: any single wait, once a request head is in, for bytes from the client
  (its body) or the origin (its response), or for either to take bytes we send.
  Fires -> 504 if the origin was silent before its response head, 408 if the
  client's body stalled, 502 if the origin stopped taking the body; otherwise the
  connection is closed. A CONNECT tunnel ends when neither side sent anything for
  ReadTimeout, or when one side took nothing we sent for that long.
- RequestBodyTimeout (+ one second per RequestBodyMinRate bytes received): the whole
  request body, from the end of its head. Fires -> 408, close (cproxy.server.clientbody).
- OutputTimeout: from sending the head of a response relayed from an origin until
  the last byte of its body, including waits for the origin's body. Fires -> close.
  Stored (cache) and cproxy's own responses, and relayed ones that arrived whole with
  their head, are sent from memory and bounded by ReadTimeout alone.

The waits for a request's first byte (InputTimeout for the first request,
PersistTimeout) and for an origin's response head (ReadTimeout) have no timer of their
own: the runtime's reaper ends them, at most one tick late (an eighth of the shortest of
the three, within 5 ms .. 250 ms).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import TYPE_CHECKING

import gevent
from gevent import socket

from cproxy.directives import ip_allowed
from cproxy.errors import (
    ClientProtocolError,
    OriginError,
    OriginProtocolError,
)
from cproxy.http import Request, find_head_end, parse_request_head
from cproxy.http.authority import bind_to_authority
from cproxy.http.framing import (
    LENGTH,
    NONE,
)
from cproxy.http.heads import (
    trace_echo,
)
from cproxy.http.limits import IO_CHUNK_BYTES
from cproxy.http.message import (
    skip_empty_lines,
)
from cproxy.origin.connection import format_host_port
from cproxy.server import routing
from cproxy.server.caching import Front, cache_front, serve_with_cache
from cproxy.server.clientbody import ClientBody
from cproxy.server.context import ConnectionContext
from cproxy.server.destinations import destination_refusal, policy_for
from cproxy.server.exchange import TO_SELF, Requester, body_too_large
from cproxy.server.fastlane import bound_get, plain_get, serve_fresh_hit
from cproxy.server.interception import (
    HandshakeRefused,
    NoLeaf,
    hello_splice,
    peek_hello,
    scope_splice,
)
from cproxy.server.misslane import serve_plain_miss
from cproxy.server.pac import is_pac_request, pac_response
from cproxy.server.pages import error_response
from cproxy.server.respond import Outcome, local_answer, origin_failed, send_page
from cproxy.server.sink import ClientGone, OutputTimeout, SocketSink
from cproxy.server.trace import Refusal, allowed_methods, is_trace, trace_refusal
from cproxy.server.transport import ClientTransport
from cproxy.server.tunnel import open_tunnel, relay_tunnel
from cproxy.server.upgrade import relay_websocket, websocket_upgrade

if TYPE_CHECKING:
    from cproxy.server.runtime import Runtime

log = logging.getLogger("cproxy")


def handle_client(runtime: Runtime, sock: socket.socket, address: tuple) -> None:
    """gevent StreamServer handler."""
    conn = ClientConnection(runtime, sock, address)
    if runtime.admission.admit(conn):
        conn.run()
    else:
        refuse_connection(runtime, sock)


def refuse_connection(runtime: Runtime, sock: socket.socket) -> None:
    """At a connection cap with every connection being served: a 503 and a close."""
    page = error_response(
        503,
        "Too many connections are being served; try again shortly.",
        hostname=runtime.config.hostname,
        close=True,
        extra_headers=[("Retry-After", "1")],
    )
    try:
        sock.settimeout(1.0)
        sock.sendall(page)
    except OSError:
        pass  # the refusal is a courtesy: the client may already be gone
    finally:
        sock.close()


class ClientConnection:
    """Serves the requests of one client connection, in order."""

    def __init__(self, runtime: Runtime, sock: socket.socket, address: tuple) -> None:
        self.rt = runtime
        self.sock = sock
        self.transport = ClientTransport(sock)
        # Set by an intercepted CONNECT: every later request is bound to its authority.
        self.context: ConnectionContext | None = None
        self.client_ip = address[0]
        self.buf = b""
        self.served = 0
        # Set once an answer went out that ends the connection while the client may
        # still be sending: it is then closed by `linger_close`, not at once.
        self.linger = False
        # The body of the request being served, once received (see _receive_body).
        self.body: ClientBody | None = None
        # Closed by admission (cproxy.server.admission) to make room for a new client;
        # it may be while it waits for a request head, since waiting_since (else 0).
        self.evicted = False
        self.waiting_since = 0.0
        # True while waiting for the first byte of a request: shutdown may close it at once,
        # and the runtime's reaper ends the wait at idle_deadline (see _read_head).
        self.idle = False
        self.idle_deadline = 0.0
        self.idle_expired = False
        # Set when the wait for a request was ended by shutting the socket down (reaper,
        # eviction, shutdown): the connection is ending.
        self.woken = False
        # Responses go out through the sink; exchanges with origins are made through the
        # requester, which reads request bodies from this connection (recv, unread).
        self.sink = SocketSink(sock)
        self.requester = Requester(
            runtime, self.sink, self.client_ip, body=self, abandon_on_eof=sock
        )
        # InputTimeout for the first request counts from here, not from its first byte.
        self.accepted_at = time.monotonic()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- the connection loop -------------------------------------------------------

    def run(self) -> None:
        cfg = self.rt.config
        self.rt.connections.add(self)
        try:
            if not ip_allowed(cfg.proxy_access, self.client_ip):
                log.warning("client %s refused: not in ProxyAccess", self.client_ip)
                self._send_error(403, "This client is not allowed to use the proxy.", close=True)
                return
            while not self.rt.stopping:
                head = self._read_head()
                if head is None:
                    return
                self.served += 1
                self.rt.requests_total += 1
                self._ready_to_answer()
                context = self.context
                if not self.rt.fast_lane:
                    plain = None
                elif context is None:
                    plain = plain_get(head)
                else:
                    # Inside an intercepted connection only origin-form GETs for its own
                    # authority (`bound_get`); the rest is bound, or refused, in `_serve`.
                    plain = bound_get(head, context.scheme, context.host, context.port)
                keep = None
                if plain is not None:
                    slots = self.rt.slots
                    slots.acquire()
                    try:
                        keep = serve_fresh_hit(
                            self.rt, self.sink, self.client_ip, plain, self.persists()
                        )
                        if keep is None and self.rt.miss_lane and context is None:
                            # Not inside an intercepted connection: its origin TLS failures
                            # are acted on by _serve (_upstream_tls_failed).
                            keep = serve_plain_miss(self.rt, self.requester, plain, self.persists())
                    finally:
                        slots.release()
                    if keep is not None and context is not None:
                        self.rt.interception.intercepted_requests += 1
                if keep is None:
                    req = plain.request() if plain is not None else parse_request_head(head)
                    keep = self._serve(req)
                if not keep:
                    return
        except ClientProtocolError as exc:
            self._send_error(exc.status, exc.message, close=True)
        except (ClientGone, OSError, OutputTimeout):
            pass
        finally:
            self.rt.connections.discard(self)
            linger = self.linger and not self.evicted
            if linger:
                # Lingering is waiting too: admission may cut it short for a new client.
                self.waiting_since = time.monotonic()
            self.transport.close(linger=linger)
            self.rt.admission.leave(self)

    def _rebind(self, sock: socket.socket, context: ConnectionContext) -> None:
        """Carry on over ``sock`` (the TLS layer over this connection's socket, after an
        intercepted CONNECT's handshake), every request bound to ``context``: the sink,
        the requester and the transport follow the new socket; admission, the reaper's
        deadlines and the teardown stay this connection's."""
        self.sock = sock
        self.transport = ClientTransport(sock, tls=True)
        self.context = context
        self.buf = b""
        self.sink = SocketSink(sock)
        self.requester = Requester(
            self.rt, self.sink, self.client_ip, body=self, abandon_on_eof=sock
        )

    def has_input(self) -> bool:
        """Bytes from the client wait unread in the socket (a peek that never blocks)."""
        return self.transport.has_input()

    def evict(self) -> None:
        """Admission closes this connection, which is waiting for a request head (or
        lingering), to admit another: its wait ends at once (EOF), quietly."""
        self.evicted = self.woken = True
        self.transport.wake(socket.SHUT_RDWR)

    def expire_if_idle(self, now: float) -> None:
        """Called by the runtime's reaper: end a wait for a request, or for an origin's
        response head, that is past its deadline."""
        if self.idle and now >= self.idle_deadline:
            self.idle_expired = self.woken = True
            # The blocked recv returns b"" at once; the socket can still send a 408.
            self.transport.wake(socket.SHUT_RD)
        self.requester.expire_if_idle(now)

    def close_if_idle(self) -> None:
        """At shutdown: end a connection that is between requests."""
        if self.idle:
            self.woken = True
            self.transport.wake(socket.SHUT_RDWR)

    def _read_head(self) -> bytes | None:
        """The next request head, or None when the client is done (EOF, idle, evicted).
        While it waits the connection holds no slot and may be evicted."""
        self.waiting_since = time.monotonic()
        try:
            return self._receive_head()
        finally:
            self.waiting_since = 0.0

    def _receive_head(self) -> bytes | None:
        cfg = self.rt.config
        sock = self.sock
        first = self.served == 0
        buf = self.buf
        if not buf:
            # The wait for a request's first byte: InputTimeout from accept for the first
            # request, PersistTimeout after a response. It has no timer: the runtime's
            # reaper ends it (expire_if_idle). A busy persistent connection waits here once
            # per request, and a timer would cost about 10 µs each time.
            if first:
                self.idle_deadline = self.accepted_at + cfg.input_timeout_s
            else:
                self.idle_deadline = time.monotonic() + cfg.persist_timeout_s
            self.idle = True
            try:
                self.transport.wait_readable()
                if self.transport.tls and self.woken:
                    # Woken by a shutdown of the raw socket: reading now would make
                    # OpenSSL see a truncated stream and send the client a fatal alert.
                    buf = b""
                else:
                    buf = self.transport.recv_ready(IO_CHUNK_BYTES)
            except OSError:
                # gevent cancels a wait on a socket shut down under it (cancel_wait_ex).
                if not self.idle_expired:
                    raise
                buf = b""
            finally:
                self.idle = False
            if not buf:
                if first and self.idle_expired:
                    self._send_error(408, "No request arrived in time (InputTimeout).", close=True)
                return None
        deadline = None
        skipped = 0
        while True:
            # RFC 9112 §2.2: ignore empty lines before a request line (counted as head).
            if buf[:2] == b"\r\n":
                n = skip_empty_lines(buf)
                skipped, buf = skipped + n, buf[n:]
            end = find_head_end(buf, skipped=skipped)
            if end != -1:
                break
            if deadline is None:
                deadline = (self.accepted_at if first else time.monotonic()) + cfg.input_timeout_s
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._send_error(408, "The request head did not arrive in time.", close=True)
                return None
            # InputTimeout alone bounds the head: a timeout goes round to the 408 above.
            sock.settimeout(remaining)
            try:
                data = sock.recv(IO_CHUNK_BYTES)
            except TimeoutError:
                continue
            if not data:
                return None
            buf += data
        self.buf = buf[end:]
        return buf[:end]

    # -- one request ---------------------------------------------------------------

    def persists(self) -> bool:
        """The connection's keep-alive state: whether it may carry another request after
        this one, for a request that asks to persist (the general path and the fast lane
        both take their verdict from here)."""
        cfg = self.rt.config
        return (
            cfg.proxy_persistence and self.served < cfg.max_persist_request and not self.rt.stopping
        )

    def _ready_to_answer(self) -> None:
        """Once a request head is in, every wait is bounded by ReadTimeout (a pooled
        socket is set already: gevent's settimeout costs ~1.5 µs)."""
        timeout = self.rt.config.read_timeout_s
        if self.sock.timeout != timeout:
            self.sock.settimeout(timeout)

    def _serve(self, req: Request) -> bool:
        """Answer ``req``; returns whether the connection may carry another request."""
        started = time.monotonic()
        keep = req.keep_alive and self.persists()
        outcome = Outcome()
        self.body = None
        context = self.context
        try:
            if context is not None:
                # Before anything else looks at it (DESIGN.md §5 rule 13): 421 otherwise.
                bind_to_authority(req, context.scheme, context.host, context.port)
                outcome.on_upstream_tls = self._upstream_tls_failed
            keep = self._dispatch(req, keep, outcome)
            if req.body != NONE and not self._body_consumed():
                # Part of the body is unread (refused, or the origin answered early): the
                # connection ends, without a reset for a client still sending.
                keep = False
                self.linger = True
        except ClientProtocolError as exc:
            outcome.status = exc.status
            outcome.sent = self._send_error(exc.status, exc.message, close=True)
            keep = False
        finally:
            elapsed_s = time.monotonic() - started
            self.rt.responses.record(outcome.status, elapsed_s)
            if context is not None:
                self.rt.interception.intercepted_requests += 1
            if self.rt.access_log.enabled:
                self.rt.access_log.write(
                    self.client_ip,
                    f"{req.method} {req.target} HTTP/1.{req.version}",
                    outcome.status,
                    outcome.sent,
                    req.headers.get("referer"),
                    req.headers.get("user-agent"),
                    elapsed_s,
                    outcome.origin,
                    outcome.cache,
                    outcome.user,
                    outcome.protocol,
                )
        return keep

    def _upstream_tls_failed(self, failure: str) -> None:
        """TLS to an intercepted request's origin failed (before its 502 goes out)."""
        interception = self.rt.interception
        if failure == "verify":
            interception.upstream_verify_failures += 1
        elif failure == "client-cert" and self.context is not None:
            interception.client_cert_wanted(self.context.host)

    def _body_consumed(self) -> bool:
        """Was the request body read whole? Asked after `_dispatch`, which may have set
        ``body`` (a method, so no type checker carries over ``_serve``'s ``body = None``)."""
        return self.body is not None and self.body.consumed

    def _dispatch(self, req: Request, keep: bool, outcome: Outcome) -> bool:
        cfg = self.rt.config
        context = self.context
        if context is not None:
            # Authenticated once, at the CONNECT: browsers send no Proxy-Authorization
            # inside TLS.
            outcome.user = context.user
        elif is_pac_request(req, cfg):  # before ProxyAuth: browsers fetch it without a login
            return self._send_pac(req, keep, outcome)
        elif cfg.proxy_auth:
            verdict = self.rt.proxy_auth.check(req, self.client_ip, cfg)
            if isinstance(verdict, Refusal):
                return self._refuse(req, verdict, keep, outcome)
            outcome.user = verdict
        if _via_loop(req, cfg.hostname):
            return self._local_error(req, 508, "Forwarding loop detected (Via).", keep, outcome)
        if req.method == "CONNECT":
            return self._tunnel(req, outcome)
        route = routing.route(req, cfg.mapping_rules) if cfg.mapping_rules else routing.NO_ROUTE
        if route.status:
            return self._local_error(req, route.status, route.message, keep, outcome, route.headers)
        if req.form != "absolute" and not route.proxied:
            return self._local_error(
                req,
                400,
                "cproxy is a forward proxy: configure it as your HTTP proxy, "
                "or add a Proxy mapping rule for this path.",
                keep,
                outcome,
            )
        if self._aims_at_self(req):
            return self._local_error(req, 403, TO_SELF, keep, outcome)
        off_limits = destination_refusal(req, cfg, self.client_ip)
        if off_limits is not None:
            return self._local_error(req, 403, off_limits, keep, outcome)
        limit = cfg.max_request_body_bytes
        if limit and req.body == LENGTH and req.content_length > limit:
            return self._local_error(req, 413, body_too_large(limit), False, outcome)
        if is_trace(req.method):
            refused = trace_refusal(req, cfg)
            if refused is not None:
                return self._refuse(req, refused, keep, outcome)
        if req.method in ("OPTIONS", "TRACE"):
            answered = self._max_forwards(req, keep, outcome)
            if answered is not None:
                return answered
        if self.context is not None and websocket_upgrade(req):
            return self._websocket(req, outcome)
        return self._forward(req, keep, outcome)

    def _websocket(self, req: Request, outcome: Outcome) -> bool:
        """A WebSocket inside an intercepted connection (cproxy.server.upgrade): a slot
        for as long as it lasts, as a tunnel; the connection ends with it."""
        slots = self.rt.slots
        slots.acquire()
        try:
            early, self.buf = self.buf, b""
            relay_websocket(self.rt, self.sink, self.sock, req, outcome, self.client_ip, early)
        except (OriginError, OriginProtocolError) as exc:
            origin_failed(self.sink, self.rt.config.hostname, req, exc, False, outcome)
        finally:
            slots.release()
        return False

    # -- answers of our own --------------------------------------------------------

    def _local_error(
        self,
        req: Request,
        status: int,
        message: str,
        keep: bool,
        outcome: Outcome,
        headers: list[tuple[str, str]] | None = None,
    ) -> bool:
        """Answer without contacting an origin. An unread request body forces a close."""
        hostname = self.rt.config.hostname
        return local_answer(self.sink, hostname, req, status, message, keep, outcome, headers)

    def _send_pac(self, req: Request, keep: bool, outcome: Outcome) -> bool:
        """The PAC file (ProxyPac), naming the host:port the browser reached us on."""
        if req.body != NONE:
            keep = False
        # An HTTP/1.0 request may have no Host: name the address it reached then.
        local = self.sock.getsockname()
        reached = req.host_header if req.host else format_host_port(local[0], local[1])
        data = pac_response(req, self.rt.config, reached, keep)
        self.sink.send(data)
        outcome.status, outcome.sent = 200, len(data)
        return keep

    def _refuse(self, req: Request, refusal: Refusal, keep: bool, outcome: Outcome) -> bool:
        """`_local_error` for a policy's `Refusal`."""
        headers = list(refusal.headers)
        return self._local_error(req, refusal.status, refusal.message, keep, outcome, headers)

    def _send_error(
        self,
        status: int,
        message: str,
        *,
        close: bool,
        headers: list[tuple[str, str]] | None = None,
        head_only: bool = False,
    ) -> int:
        """An error page for the connection itself (refused client, bad or late head)."""
        if close:
            # Input may be unread (a refused head or body): close without a reset.
            self.linger = True
        try:
            self.sock.settimeout(self.rt.config.read_timeout_s)
        except OSError:
            return 0
        hostname = self.rt.config.hostname
        return send_page(
            self.sink, hostname, status, message, close=close, headers=headers, head_only=head_only
        )

    def _max_forwards(self, req: Request, keep: bool, outcome: Outcome) -> bool | None:
        """RFC 9110 §7.6.2: Max-Forwards 0 means the proxy answers OPTIONS/TRACE itself."""
        value = req.headers.get("max-forwards")
        if value is None:
            return None
        try:
            remaining = int(value.strip())
        except ValueError:
            remaining = -1
        if remaining < 0:
            return self._local_error(req, 400, "Invalid Max-Forwards.", keep, outcome)
        if remaining > 0:
            req.headers.set("Max-Forwards", str(remaining - 1))
            return None
        if req.body != NONE:
            keep = False
        if req.method == "OPTIONS":
            allow = allowed_methods(self.rt.config)
            head = f"HTTP/1.1 200 OK\r\nAllow: {allow}\r\nContent-Length: 0\r\n"
            body = b""
        else:
            body = trace_echo(req)
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: message/http\r\nContent-Length: {len(body)}\r\n"
            )
        head += "Connection: close\r\n\r\n" if not keep else "\r\n"
        data = head.encode("latin-1") + body
        self.sink.send(data)
        outcome.status, outcome.sent = 200, len(data)
        return keep

    def _aims_at_self(self, req: Request) -> bool:
        """True when the target is one of cproxy's own listeners (DESIGN.md §5 rule 7)."""
        if not self.rt.listens_on_port(req.port):
            return False
        own = self.rt.own_addresses()
        host = req.host
        if host == "localhost" or host.endswith(".localhost"):
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            try:
                # The legacy numeric forms getaddrinfo connects to (127.1, 2130706433,
                # 0x7f000001, 0177.0.0.1) name an address too.
                ip = ipaddress.ip_address(socket.inet_aton(host))
            except OSError:
                return host == self.rt.config.hostname.lower()
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_loopback or ip.is_unspecified or str(ip) in {host for host, _ in own}

    # -- forwarding ----------------------------------------------------------------

    def _forward(self, req: Request, keep: bool, outcome: Outcome) -> bool:
        if req.body != NONE:
            self.body = self._receive_body(req)
        # The request is in: it takes a slot for as long as it is served.
        slots = self.rt.slots
        slots.acquire()
        try:
            return self._forward_in_slot(req, keep, outcome)
        finally:
            slots.release()

    def _forward_in_slot(self, req: Request, keep: bool, outcome: Outcome) -> bool:
        cache = self.rt.cache
        if cache is not None and cache_front(self.rt.config, cache) is not Front.OFF:
            return serve_with_cache(self.requester, cache, req, keep, outcome)
        try:
            exchange = self.requester.exchange(req, outcome)
        except (OriginError, OriginProtocolError) as exc:
            return origin_failed(self.sink, self.rt.config.hostname, req, exc, keep, outcome)
        return exchange.relay(keep)

    # -- the request body, read by the exchange (exchange.RequestBody) ---------------

    def _receive_body(self, req: Request) -> ClientBody:
        """Read the request body up to RequestBodyBuffer before anything goes to an
        origin (see cproxy.server.clientbody): a malformed one gets its 4xx here."""
        cfg = self.rt.config
        if req.expect_continue:
            # We answer the expectation ourselves (RFC 9110 §10.1.1 lets a proxy do so):
            # the origin never sees Expect.
            self.sink.interim(b"HTTP/1.1 100 Continue\r\n\r\n")
            req.expect_continue = False
        body = ClientBody(self.sock, self.buf, req, cfg)
        self.buf = b""
        body.buffer(cfg.request_body_buffer_bytes)
        return body

    def recv(self) -> bytes:
        """The next bytes of the request from the client."""
        if self.body is not None:
            return self.body.recv()
        if self.buf:
            data, self.buf = self.buf, b""
            return data
        try:
            data = self.sock.recv(IO_CHUNK_BYTES)
        except TimeoutError as exc:
            raise ClientProtocolError(408, "The request body stalled (ReadTimeout).") from exc
        if not data:
            raise ClientGone("client closed the connection during the request body")
        return data

    def unread(self, data: bytes) -> None:
        """Bytes after the request body: the start of the next request."""
        self.buf = data

    # -- CONNECT -------------------------------------------------------------------

    def _tunnel(self, req: Request, outcome: Outcome) -> bool:
        """A CONNECT: refused, intercepted (SSLInterception) or tunnelled. A tunnel is a
        request being served for as long as it lasts: it holds a slot."""
        cfg = self.rt.config
        if req.port not in cfg.connect_ports:
            self._local_error(
                req, 403, f"CONNECT to port {req.port} is not allowed.", False, outcome
            )
            return False
        if self._aims_at_self(req):
            self._local_error(req, 403, "Refusing to tunnel to cproxy itself.", False, outcome)
            return False
        if cfg.ssl_interception and self.rt.interception.ready:
            return self._connect_intercepting(req, outcome)
        slots = self.rt.slots
        slots.acquire()
        try:
            return self._tunnel_in_slot(req, outcome)
        finally:
            slots.release()

    def _tunnel_in_slot(self, req: Request, outcome: Outcome) -> bool:
        cfg = self.rt.config
        try:
            pool = self.rt.pool
            osock, early = open_tunnel(
                req, cfg, pool.resolve, self.client_ip, self.rt.parents, pool.dead_addresses
            )
        except OriginError as exc:
            origin_failed(self.sink, cfg.hostname, req, exc, False, outcome)
            return False
        outcome.origin = "new"
        outcome.status = 200
        try:
            self.sink.send(b"HTTP/1.1 200 Connection Established\r\n\r\n" + early)
            if self.buf:
                osock.sendall(self.buf)
                self.buf = b""
            outcome.sent = relay_tunnel(self.sock, osock, cfg.read_timeout_s)
        finally:
            osock.close()
        return False

    # -- CONNECT with SSLInterception on (cproxy.server.interception) ----------------

    def _connect_intercepting(self, req: Request, outcome: Outcome) -> bool:
        """Answer 200 at once, then intercept or splice (see cproxy.server.interception).
        Returns True when the connection carries on as an intercepted one (`_rebind`):
        the access log's CONNECT line is written then, its cache column saying
        ``intercepted``, ``spliced:REASON`` or ``refused:REASON``. Neither the ClientHello
        peek nor the handshake holds a slot; both together are bounded by InputTimeout."""
        cfg = self.rt.config
        interception = self.rt.interception
        host = req.host
        # An address literal is checked before the 200, as plain requests' are before any
        # lookup; a name is checked on each address it resolves to, when connected to.
        off_limits = policy_for(cfg).literal_refusal(host, self.client_ip)
        if off_limits is not None:
            self._local_error(req, 403, off_limits, False, outcome)
            return False
        reason = scope_splice(
            cfg,
            self.client_ip,
            host,
            interception.pinned,
            interception.client_cert_hosts,
        )
        outcome.status = 200
        answer = b"HTTP/1.1 200 Connection Established\r\n\r\n"
        self.sink.send(answer)
        outcome.sent = len(answer)
        if reason is None and self.buf:
            # Bytes sent before our answer were read with the CONNECT: a TLS layer cannot
            # be given them back, so the connection is tunnelled with them.
            reason = "early-bytes"
        tls = None
        if reason is None:
            deadline = time.monotonic() + cfg.input_timeout_s
            try:
                tls, reason = self._hello_and_handshake(host, deadline)
            except HandshakeRefused as exc:
                log.info("CONNECT %s from %s refused: %s", req.target, self.client_ip, exc)
                outcome.cache = f"refused:{exc.reason}"
                # What the client sent is unread (peeked): a lingering close, not a reset.
                self.linger = True
                return False
        if reason is not None:
            return self._splice(req, outcome, reason)
        assert tls is not None
        outcome.cache = "intercepted"
        self._rebind(tls, ConnectionContext("https", host, req.port, outcome.user))
        return True

    def _hello_and_handshake(
        self, host: str, deadline: float
    ) -> tuple[socket.socket | None, str | None]:
        """Peek at the ClientHello and, unless it says to splice, complete the client's
        handshake: (the TLS socket, None) or (None, the splice reason)."""
        interception = self.rt.interception
        timer = gevent.Timeout(max(deadline - time.monotonic(), 0.001))
        timer.start()
        try:
            peek = peek_hello(self.sock)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            interception.handshake_failures["no-hello"] += 1
            raise HandshakeRefused(
                "no-hello", "no ClientHello arrived within InputTimeout"
            ) from None
        finally:
            timer.close()
        if peek is None:
            interception.handshake_failures["no-hello"] += 1
            raise HandshakeRefused("no-hello", "the client closed before its ClientHello")
        try:
            reason = hello_splice(peek, host)
        except HandshakeRefused:
            interception.handshake_failures["malformed-hello"] += 1
            raise
        if reason is not None:
            return None, reason
        remaining = max(deadline - time.monotonic(), 0.001)
        try:
            return interception.handshake(self.sock, self.client_ip, host, remaining), None
        except NoLeaf:
            return None, "no-leaf"

    def _splice(self, req: Request, outcome: Outcome, reason: str) -> bool:
        """Tunnel the connection untouched (after the 200 already sent): a failure to reach
        the origin can only close it."""
        cfg = self.rt.config
        self.rt.interception.splices[reason] += 1
        outcome.cache = f"spliced:{reason}"
        slots = self.rt.slots
        slots.acquire()
        try:
            try:
                osock, early = open_tunnel(
                    req, cfg, self.rt.pool.resolve, self.client_ip, self.rt.parents
                )
            except (OriginError, ClientProtocolError) as exc:
                log.info("CONNECT %s (spliced, %s): %s", req.target, reason, exc)
                outcome.status = getattr(exc, "status", 502)
                return False
            outcome.origin = "new"
            try:
                if early:
                    self.sink.send(early)
                if self.buf:
                    osock.sendall(self.buf)
                    self.buf = b""
                outcome.sent += relay_tunnel(self.sock, osock, cfg.read_timeout_s)
            finally:
                osock.close()
        finally:
            slots.release()
        return False


def _via_loop(req: Request, hostname: str) -> bool:
    """True when our own Via entry is already on the request: it has been here before."""
    me = hostname.lower()
    for element in req.headers.get_tokens("via"):
        parts = element.split()
        if len(parts) >= 2 and parts[1] == me:
            return True
    return False
