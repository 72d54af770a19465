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
    OriginNoResponse,
    OriginProtocolError,
    OriginReadTimeout,
    OriginReset,
    PoolQueueTimeout,
    ProtocolError,
)
from cproxy.geventshim import wait_readable_untimed
from cproxy.http import Request, Response, find_head_end, parse_request_head
from cproxy.http.framing import (
    BODY_WRITERS,
    CLOSE,
    LENGTH,
    NONE,
    BodyReader,
    BodyWriter,
    body_reader,
    frame_pieces,
    relay_framing,
)
from cproxy.http.heads import (
    interim_response_head,
    origin_request_head,
    relayed_response_head,
    trace_echo,
)
from cproxy.http.limits import IO_CHUNK_BYTES
from cproxy.http.message import (
    parse_response_head,
    response_fields_for_client,
    skip_empty_lines,
)
from cproxy.origin import OriginConnection, default_resolve, open_socket, origin_key
from cproxy.origin.connection import format_host_port
from cproxy.origin.retry import Retry
from cproxy.server import routing
from cproxy.server.caching import BodyTee, serve_with_cache
from cproxy.server.fastlane import plain_get, serve_fresh_hit
from cproxy.server.pac import is_pac_request, pac_response
from cproxy.server.pages import error_response
from cproxy.server.trace import Refusal, allowed_methods, is_trace, trace_refusal

if TYPE_CHECKING:
    from cproxy.server.runtime import Runtime

log = logging.getLogger("cproxy")


# Refusals given both before contacting an origin and once its socket is open.
_TO_SELF = "Refusing to forward a request to cproxy itself."


def _body_too_large(limit_bytes: int) -> str:
    return f"The request body is larger than {limit_bytes} bytes (MaxRequestBody)."


class OutputTimeout(Exception):
    """OutputTimeout passed while sending a response to the client."""


class ClientGone(Exception):
    """The client closed its connection or stopped reading."""


def handle_client(runtime: Runtime, sock: socket.socket, address: tuple) -> None:
    """gevent StreamServer handler."""
    ClientConnection(runtime, sock, address).run()


class ClientConnection:
    """Serves the requests of one client connection, in order."""

    def __init__(self, runtime: Runtime, sock: socket.socket, address: tuple) -> None:
        self.rt = runtime
        self.sock = sock
        self.client_ip = address[0]
        self.buf = b""
        self.served = 0
        # True while waiting for the first byte of a request: shutdown may close it at once,
        # and the runtime's reaper ends the wait at idle_deadline (see _read_head).
        self.idle = False
        self.idle_deadline = 0.0
        self.idle_expired = False
        # The origin socket whose response head is awaited, until origin_deadline
        # (ReadTimeout): the runtime's reaper ends that wait too (see _wait_for_origin).
        self.awaiting_origin: socket.socket | None = None
        self.origin_deadline = 0.0
        self.origin_expired = False
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
                plain = plain_get(head) if self.rt.fast_lane else None
                keep = serve_fresh_hit(self, plain) if plain is not None else None
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
            self.sock.close()

    def expire_if_idle(self, now: float) -> None:
        """Called by the runtime's reaper: end a wait for a request, or for an origin's
        response head, that is past its deadline."""
        if self.idle and now >= self.idle_deadline:
            self.idle_expired = True
            try:
                # The blocked recv returns b"" at once; the socket can still send a 408.
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        osock = self.awaiting_origin
        if osock is not None and now >= self.origin_deadline:
            # The waiting greenlet wakes (EOF) and, seeing origin_expired, reports the
            # timeout; the socket is discarded, never reused.
            self.awaiting_origin = None
            self.origin_expired = True
            try:
                osock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close_if_idle(self) -> None:
        """At shutdown: end a connection that is between requests."""
        if self.idle:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _read_head(self) -> bytes | None:
        """The next request head, or None when the client is done (EOF or idle)."""
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
                wait_readable_untimed(sock)
                buf = sock.recv(IO_CHUNK_BYTES)
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

    def _serve(self, req: Request) -> bool:
        """Answer ``req``; returns whether the connection may carry another request."""
        cfg = self.rt.config
        started = time.monotonic()
        keep = (
            req.keep_alive
            and cfg.proxy_persistence
            and self.served < cfg.max_persist_request
            and not self.rt.stopping
        )
        if self.sock.timeout != cfg.read_timeout_s:
            self.sock.settimeout(cfg.read_timeout_s)
        outcome = _Outcome()
        try:
            keep = self._dispatch(req, keep, outcome)
        except ClientProtocolError as exc:
            outcome.status = exc.status
            outcome.sent = self._send_error(exc.status, exc.message, close=True)
            keep = False
        finally:
            elapsed_s = time.monotonic() - started
            self.rt.responses.record(outcome.status, elapsed_s)
            if self.rt.access_log.enabled:
                self._log(req, outcome, elapsed_s)
        return keep

    def _log(self, req: Request, outcome: _Outcome, elapsed_s: float) -> None:
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
        )

    def _dispatch(self, req: Request, keep: bool, outcome: _Outcome) -> bool:
        cfg = self.rt.config
        if is_pac_request(req, cfg):  # before ProxyAuth: browsers fetch it without a login
            return self._send_pac(req, keep, outcome)
        if cfg.proxy_auth:
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
            return self._local_error(req, 403, _TO_SELF, keep, outcome)
        limit = cfg.max_request_body_bytes
        if limit and req.body == LENGTH and req.content_length > limit:
            return self._local_error(req, 413, _body_too_large(limit), False, outcome)
        if is_trace(req.method):
            refused = trace_refusal(req, cfg)
            if refused is not None:
                return self._refuse(req, refused, keep, outcome)
        if req.method in ("OPTIONS", "TRACE"):
            answered = self._max_forwards(req, keep, outcome)
            if answered is not None:
                return answered
        return self._forward(req, keep, outcome)

    # -- answers of our own --------------------------------------------------------

    def _local_error(
        self,
        req: Request,
        status: int,
        message: str,
        keep: bool,
        outcome: _Outcome,
        headers: list[tuple[str, str]] | None = None,
    ) -> bool:
        """Answer without contacting an origin. An unread request body forces a close."""
        if req.body != NONE:
            keep = False
        outcome.status = status
        outcome.sent = self._send_error(
            status, message, close=not keep, headers=headers, head_only=req.method == "HEAD"
        )
        return keep

    def _send_pac(self, req: Request, keep: bool, outcome: _Outcome) -> bool:
        """The PAC file (ProxyPac), naming the host:port the browser reached us on."""
        if req.body != NONE:
            keep = False
        # An HTTP/1.0 request may have no Host: name the address it reached then.
        local = self.sock.getsockname()
        reached = req.host_header if req.host else format_host_port(local[0], local[1])
        data = pac_response(req, self.rt.config, reached, keep)
        self._send_client(data)
        outcome.status, outcome.sent = 200, len(data)
        return keep

    def _refuse(self, req: Request, refusal: Refusal, keep: bool, outcome: _Outcome) -> bool:
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
        data = error_response(
            status,
            message,
            hostname=self.rt.config.hostname,
            close=close,
            extra_headers=headers,
            head_only=head_only,
        )
        try:
            self.sock.settimeout(self.rt.config.read_timeout_s)
            self.sock.sendall(data)
        except OSError:
            return 0
        return len(data)

    def _max_forwards(self, req: Request, keep: bool, outcome: _Outcome) -> bool | None:
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
        self.sock.sendall(data)
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

    def _is_own_listener(self, sock: socket.socket) -> bool:
        """Is ``sock`` connected to one of cproxy's own listening sockets?"""
        try:
            peer_ip, peer_port = sock.getpeername()[:2]
        except OSError:
            return False
        for host, port in self.rt.own_addresses():
            if port != peer_port:
                continue
            if host == peer_ip or host in ("0.0.0.0", "::"):
                return True
        return False

    # -- forwarding ----------------------------------------------------------------

    def _forward(self, req: Request, keep: bool, outcome: _Outcome) -> bool:
        cache = self.rt.cache
        if cache is not None and self.rt.config.caching:
            return serve_with_cache(self, cache, req, keep, outcome)
        try:
            conn, resp, rest = self._exchange(req, outcome)
        except (OriginError, OriginProtocolError) as exc:
            return self._origin_failed(req, exc, keep, outcome)
        return self._relay_response(req, conn, resp, rest, keep, outcome)

    def _exchange(
        self, req: Request, outcome: _Outcome
    ) -> tuple[OriginConnection, Response, bytes]:
        """Send ``req`` to its origin and read the final response head.

        Returns the origin connection (still holding the body), the response and the
        body bytes already read. Raises OriginError / OriginProtocolError; the
        connection is discarded on failure.
        """
        cfg = self.rt.config
        pool = self.rt.pool
        key = origin_key(req.scheme, req.host, req.port)
        has_body = req.body != NONE
        head = origin_request_head(req, self.rt.config.hostname)
        if req.expect_continue and has_body:
            # We answer the expectation ourselves (RFC 9110 §10.1.1 lets a proxy do so)
            # and stream the body on: the origin never sees Expect.
            self._send_client(b"HTTP/1.1 100 Continue\r\n\r\n")
            req.expect_continue = False
        retry: Retry | None = Retry(req.method, has_body)
        while retry is not None:
            # At MaxConnPerServer the request queues; the client closing leaves the queue.
            if retry.fresh_socket:
                conn = pool.connect(key, abandon_on_eof=self.sock)
            else:
                conn = pool.acquire(key, verify=retry.verify_pooled, abandon_on_eof=self.sock)
            outcome.origin = "reused" if conn.reused else "new"
            if not conn.reused and self._is_own_listener(conn.sock):
                # A name that resolved to one of our own listeners: refuse before a byte is
                # sent, rather than wait for the Via loop check on the second pass.
                pool.discard(conn)
                raise ClientProtocolError(403, _TO_SELF)
            try:
                if conn.sock.timeout != cfg.read_timeout_s:  # a pooled socket has it already
                    conn.sock.settimeout(cfg.read_timeout_s)
                self._send_request(conn, req, head)
                resp, rest = self._read_response_head(conn, req)
                return conn, resp, rest
            except OriginNoResponse as exc:
                pool.discard(conn)
                # A stale pooled socket (the origin closed it as we used it) is worth one
                # more try, for a request that cannot duplicate work (DESIGN.md §5 rule 5).
                retry = retry.after_no_response(reused=conn.reused)
                if retry is None:
                    raise
                log.debug("retrying %s %s on a fresh socket: %s", req.method, req.url, exc)
            except BaseException:
                pool.discard(conn)
                raise
        raise AssertionError("unreachable: the loop returns or raises")

    def _send_request(self, conn: OriginConnection, req: Request, head: bytes) -> None:
        """Send the head and stream the body. A failure before the whole request went
        out is a `OriginNoResponse` only if no body byte was taken from the client."""
        osock = conn.sock
        if req.body == NONE:
            try:
                _send_all(osock, head)
            except OSError as exc:
                raise OriginNoResponse(f"sending the request failed: {exc}") from exc
            return
        try:
            _send_all(osock, head)
        except OSError as exc:
            raise OriginReset(f"sending the request to the origin failed: {exc}") from exc
        self._stream_request_body(
            osock, body_reader(req.body, req.content_length, client=True), BODY_WRITERS[req.body]
        )

    def _recv_client(self) -> bytes:
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

    def _send_origin(self, osock: socket.socket, data: bytes) -> None:
        try:
            osock.sendall(data)
        except OSError as exc:
            raise OriginReset(f"the origin stopped taking the request body: {exc}") from exc

    def _stream_request_body(
        self, osock: socket.socket, reader: BodyReader, writer: BodyWriter
    ) -> None:
        """Copy the request body from the client to the origin, re-framed by ``writer``;
        what follows it stays in ``self.buf`` (the next request)."""
        limit = self.rt.config.max_request_body_bytes
        received = 0
        while not reader.done:
            pieces = reader.feed(self._recv_client())
            if limit:
                # A declared length was checked against the limit before: this bounds
                # a chunked body, whose size is only known as it arrives.
                received += sum(len(p) for p in pieces)
                if received > limit:
                    # The origin has part of the request: _exchange discards its socket.
                    raise ClientProtocolError(413, _body_too_large(limit))
            out = frame_pieces(writer, pieces) if pieces else b""
            if reader.done:
                out += writer.end()
            if out:
                self._send_origin(osock, out)
        self.buf = reader.leftover

    def _read_response_head(self, conn: OriginConnection, req: Request) -> tuple[Response, bytes]:
        """Read the final response head (interim 1xx ones are relayed to the client)."""
        osock = conn.sock
        buf = b""
        while True:
            try:
                if not buf:
                    # The origin is still working on the request: no speculative recv.
                    self._wait_for_origin(osock)
                data = osock.recv(IO_CHUNK_BYTES)
            except TimeoutError as exc:
                raise OriginReadTimeout(
                    f"{req.host_header} sent no response within ReadTimeout"
                ) from exc
            except OSError as exc:
                if not buf:
                    raise OriginNoResponse(f"connection failed: {exc}") from exc
                raise OriginReset(f"{req.host_header} reset the connection: {exc}") from exc
            if not data:
                if not buf:
                    raise OriginNoResponse("the origin closed the connection without a response")
                raise OriginReset(f"{req.host_header} closed the connection mid-response")
            buf += data
            end = find_head_end(buf, client=False)
            while end != -1:
                resp = parse_response_head(buf[:end], req.method)
                buf = buf[end:]
                if resp.status >= 200:
                    return resp, buf
                if resp.status == 101:
                    raise OriginProtocolError("origin switched protocols, which was not asked")
                if req.version >= 1 and resp.status != 100:
                    self._send_client(interim_response_head(resp))
                end = find_head_end(buf, client=False) if buf else -1

    def _wait_for_origin(self, osock: socket.socket) -> None:
        """Wait until the origin starts its response, for at most ReadTimeout (raises
        TimeoutError). The deadline is kept by the runtime's reaper rather than a gevent
        timer, which would cost a few µs per exchange (measured: 3.7 µs to start and close
        one); it fires at most one reaper tick late."""
        self.origin_deadline = time.monotonic() + self.rt.config.read_timeout_s
        self.awaiting_origin = osock
        try:
            wait_readable_untimed(osock)
        except OSError:
            # gevent cancels a wait on a socket shut down under it (cancel_wait_ex).
            if not self.origin_expired:
                raise
        finally:
            self.awaiting_origin = None
        if self.origin_expired:
            self.origin_expired = False
            raise TimeoutError("no response within ReadTimeout")

    def _send_client(self, data: bytes) -> None:
        try:
            _send_all(self.sock, data)
        except (OSError, TimeoutError) as exc:
            raise ClientGone(str(exc)) from exc

    def _send_client_parts(self, head: bytes, body: bytes) -> None:
        """`_send_client` for ``head + body`` without joining them: one sendmsg(), and
        whatever it left goes as `_send_client` sends."""
        try:
            sent = self.sock.sendmsg([head, body])
            if sent < len(head):
                _send_all(self.sock, head[sent:])
                sent = len(head)
            if sent - len(head) < len(body):
                _send_all(self.sock, memoryview(body)[sent - len(head) :])
        except (OSError, TimeoutError) as exc:
            raise ClientGone(str(exc)) from exc

    def _client_head(
        self,
        req: Request,
        resp: Response,
        keep: bool,
        extra: list[str] | None = None,
        fields: list[tuple[str, str]] | None = None,
    ) -> tuple[bytes, str]:
        """The response head for the client and the framing of the body we send.

        ``fields``: `response_fields_for_client` of ``resp``, when the caller has them.
        """
        if fields is None:
            fields = response_fields_for_client(resp, self.rt.config.hostname)
        framing = relay_framing(resp.body, req.version)
        return relayed_response_head(resp, fields, framing, keep=keep, extra=extra), framing

    def _relay_response(
        self,
        req: Request,
        conn: OriginConnection,
        resp: Response,
        rest: bytes,
        keep: bool,
        outcome: _Outcome,
        tee: BodyTee | None = None,
        extra: list[str] | None = None,
        fields: list[tuple[str, str]] | None = None,
    ) -> bool:
        """Send the response to the client, streaming its body from ``conn``.

        ``tee`` collects the body for the cache; ``tee.complete`` tells whether it
        arrived whole and self-delimited (DESIGN.md §5 rule 3: nothing else is stored).
        """
        cfg = self.rt.config
        head, framing = self._client_head(req, resp, keep, extra, fields)
        outcome.status = resp.status
        clean = False
        # A response that came whole with its head goes out from memory, bounded by
        # ReadTimeout for each send like a stored one; only one whose body is still to
        # come from the origin needs OutputTimeout's timer (a gevent Timeout per response).
        whole = resp.body == NONE or (resp.body == LENGTH and len(rest) >= resp.content_length)
        timer = None if whole else gevent.Timeout(cfg.output_timeout_s, OutputTimeout)
        if timer is not None:
            timer.start()
        reader = body_reader(resp.body, resp.content_length, client=False)
        try:
            clean = self._relay_body(conn, reader, BODY_WRITERS[framing], head, rest, outcome, tee)
        except (OriginError, OriginProtocolError, ProtocolError) as exc:
            log.info("response from %s truncated: %s", req.host_header, exc)
            keep = False
        except OutputTimeout:
            log.info("OutputTimeout sending %s to %s", req.url, self.client_ip)
            self.rt.pool.discard(conn)
            raise
        except ClientGone:
            # The client stopped reading (ReadTimeout) or went away: the origin socket
            # still holds the rest of the body, so it can only be closed.
            self.rt.pool.discard(conn)
            raise
        finally:
            if timer is not None:
                timer.close()
        if tee is not None:
            # Complete: the body ended where its own framing said. Bytes after it spoil
            # the origin socket (not clean), not the message; an until-close body is not
            # self-delimited, so it never counts as complete.
            tee.complete = reader.done and resp.body != CLOSE
        self._done_with_origin(conn, resp, clean=clean)
        # An unclean origin socket (bytes left over, read-until-close body) is the origin
        # side's problem only: the client's response went out whole and self-delimited
        # (a truncated one raised above and cleared ``keep``), so its connection persists.
        return keep and framing != CLOSE

    def _done_with_origin(self, conn: OriginConnection, resp: Response, *, clean: bool) -> None:
        """Hand ``conn`` back to the pool after ``resp``: reused only when the response
        ended exactly (``clean``: no bytes left over) and the origin keeps it open."""
        if clean and resp.keep_alive:
            self.rt.pool.release(conn)
        else:
            self.rt.pool.discard(conn)

    def _recv_origin(self, conn: OriginConnection, what: str) -> bytes:
        try:
            data = conn.sock.recv(IO_CHUNK_BYTES)
        except TimeoutError as exc:
            raise OriginReadTimeout(f"the origin stalled during {what}") from exc
        except OSError as exc:
            raise OriginReset(f"the origin reset the connection during {what}: {exc}") from exc
        return data

    def _relay_body(
        self,
        conn: OriginConnection,
        reader: BodyReader,
        writer: BodyWriter,
        head: bytes,
        rest: bytes,
        outcome: _Outcome,
        tee: BodyTee | None,
    ) -> bool:
        """Send ``head`` and the body ``reader`` reads from ``rest`` and then ``conn``,
        framed by ``writer``; True when the origin socket is clean (the body ended
        where its framing said, and nothing followed it)."""
        outcome.sent = 0
        try:
            pieces = reader.feed(rest) if rest else []
        except ProtocolError:
            # The head goes out before the body turned out malformed: the client sees
            # a truncated response (DESIGN.md §5 rule 3), as if it had come later.
            self._send_client(head)
            outcome.sent = len(head)
            raise
        out = head + frame_pieces(writer, pieces) if pieces else head
        while True:
            if tee is not None:
                for piece in pieces:
                    tee.add(piece)
            if reader.done:
                out += writer.end()
            if out:
                self._send_client(out)
                outcome.sent += len(out)
            if reader.done:
                return reader.clean
            data = self._recv_origin(conn, "the response body")
            if data:
                pieces = reader.feed(data)
                out = frame_pieces(writer, pieces)
            else:
                reader.eof()  # raises when the body was cut short
                pieces, out = [], b""

    def _origin_failed(self, req: Request, exc: Exception, keep: bool, outcome: _Outcome) -> bool:
        status = getattr(exc, "status", 502)
        # A CONNECT's target is host:port (RFC 9110 §9.3.6), not a URL.
        target = format_host_port(req.host, req.port) if req.method == "CONNECT" else req.url
        log.info("%s %s: %s", req.method, target, exc)
        return self._local_error(
            req, status, str(exc), keep, outcome, headers=origin_error_headers(exc)
        )

    # -- CONNECT -------------------------------------------------------------------

    def _tunnel(self, req: Request, outcome: _Outcome) -> bool:
        cfg = self.rt.config
        if req.port not in cfg.connect_ports:
            self._local_error(
                req, 403, f"CONNECT to port {req.port} is not allowed.", False, outcome
            )
            return False
        if self._aims_at_self(req):
            self._local_error(req, 403, "Refusing to tunnel to cproxy itself.", False, outcome)
            return False
        try:
            osock = open_socket(
                req.host,
                req.port,
                timeout_s=cfg.connect_timeout_s,
                resolve=default_resolve,
            )
        except OriginError as exc:
            self._origin_failed(req, exc, False, outcome)
            return False
        outcome.origin = "new"
        outcome.status = 200
        try:
            self._send_client(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            if self.buf:
                osock.sendall(self.buf)
                self.buf = b""
            outcome.sent = _relay_tunnel(self.sock, osock, cfg.read_timeout_s)
        finally:
            osock.close()
        return False


def origin_error_headers(exc: Exception) -> list[tuple[str, str]] | None:
    """Extra fields for the error page of an origin failure: Retry-After on the 503 of a
    request that waited ServerConnQueueTimeout at an origin's MaxConnPerServer cap."""
    if isinstance(exc, PoolQueueTimeout):
        return [("Retry-After", str(exc.retry_after_s))]
    return None


class _Outcome:
    """What the access log records of one request."""

    __slots__ = ("cache", "origin", "sent", "status", "user")

    def __init__(self) -> None:
        self.status = 0
        self.sent = 0
        self.origin = "-"
        self.cache = "-"
        self.user: str | None = None  # who authenticated (ProxyAuth), if anyone


def _send_all(sock: socket.socket, data: bytes | memoryview) -> None:
    """Send all of ``data``. One send() usually takes a whole head or small response;
    gevent's sendall() costs more per call (it asks the socket for its buffer size
    first), so it only carries what the first send() left."""
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def _via_loop(req: Request, hostname: str) -> bool:
    """True when our own Via entry is already on the request: it has been here before."""
    me = hostname.lower()
    for element in req.headers.get_tokens("via"):
        parts = element.split()
        if len(parts) >= 2 and parts[1] == me:
            return True
    return False


def _relay_tunnel(client: socket.socket, origin: socket.socket, idle_timeout_s: float) -> int:
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
