"""HTTPS interception (issue #19): which CONNECTs are intercepted, the ClientHello peek, the
client handshake, and what is counted.

After a CONNECT passed the checks every CONNECT passes (ProxyAccess, ProxyAuth,
ConnectPorts, not aimed at cproxy, the destination policy for an address literal) and got
its ``200``, the connection is either *intercepted* (cproxy completes the client's TLS
handshake with a leaf certificate of its CA for the CONNECT host and serves the requests
inside like plain ones) or *spliced* (tunnelled untouched, as without interception). With
a ParentProxy, the requests inside reach their origin over TLS connections made through
the parent's tunnel (`cproxy.server.exchange`), so a parent changes nothing here. The
decision, in this order (the first that applies):

====================  ===============================================================
splice reason         when
====================  ===============================================================
client-not-listed     SSLInterceptClients is set and does not cover the client
listed                SSLSpliceHosts covers the host
not-listed            SSLInterceptHosts is set and does not cover the host
client-cert           the origin asked for a client certificate before
pinned                this client rejected our certificate for this host lately
early-bytes           the client sent bytes before our 200 (they are already read)
not-tls               the first bytes are not a TLS handshake
too-large             a ClientHello too large to read whole (16 KiB)
sni-mismatch          the ClientHello names another host than the CONNECT
no-leaf               the host is not a name or address a certificate can carry
====================  ===============================================================

A malformed ClientHello, or none within InputTimeout, is refused (the connection is
closed); so is a client whose handshake with us fails. The peek neither consumes bytes nor
holds a MaxActiveThreads slot: it waits with SO_RCVLOWAT, so the kernel wakes it only when
more bytes than it has already seen arrived (a ClientHello split over many segments costs a
wake-up per segment, never a busy loop).
"""

from __future__ import annotations

import logging
import socket as stdlib_socket
from collections import Counter
from typing import TYPE_CHECKING, Any

import cachetools
import gevent
from gevent import socket

from cproxy.directives import Config, ip_allowed
from cproxy.directives.types import direct_match
from cproxy.errors import ConfigError
from cproxy.geventshim import raw_socket, wait_readable_untimed
from cproxy.intercept.clienthello import MAX_HELLO_BYTES, HelloPeek, Verdict, peek_client_hello
from cproxy.intercept.pinning import PinnedSplices, classify_handshake_failure

if TYPE_CHECKING:
    # The CA and the leaves need ``cryptography`` (several MiB of a process): imported
    # when SSLInterception is first on (`Interception.configure`), as the shared tier's
    # redis-py is (tests/test_import_weight.py).
    from cproxy.intercept.ca import CertificateAuthority
    from cproxy.intercept.leaves import LeafCache

log = logging.getLogger("cproxy")

# Hosts whose origin asked for a client certificate, remembered (then spliced) at most.
MAX_CLIENT_CERT_HOSTS = 10_000
# The peek reads at most this much: a whole ClientHello of MAX_HELLO_BYTES in records of
# up to 16 KiB each, with their 5-byte headers.
_PEEK_BYTES = MAX_HELLO_BYTES + 64 * 5 + 4

SPLICE_REASONS = (
    "client-not-listed",
    "listed",
    "not-listed",
    "client-cert",
    "pinned",
    "early-bytes",
    "not-tls",
    "too-large",
    "sni-mismatch",
    "no-leaf",
)
REFUSAL_REASONS = ("malformed-hello", "no-hello", "handshake-failed", "certificate-rejected")


class NoLeaf(Exception):
    """The CONNECT host is not a name or address a certificate can carry."""


class HandshakeRefused(Exception):
    """The client's TLS handshake with cproxy failed; ``reason`` is one of REFUSAL_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def scope_splice(
    cfg: Config,
    client_ip: str,
    host: str,
    pinned: PinnedSplices,
    client_cert_hosts: Any,
) -> str | None:
    """Why a CONNECT to ``host`` from ``client_ip`` is spliced whatever its ClientHello
    says (the first rows of the module's table), or None."""
    if cfg.ssl_intercept_clients and not ip_allowed(cfg.ssl_intercept_clients, client_ip):
        return "client-not-listed"
    if direct_match(cfg.ssl_splice_hosts, host):
        return "listed"
    if cfg.ssl_intercept_hosts and not direct_match(cfg.ssl_intercept_hosts, host):
        return "not-listed"
    if host in client_cert_hosts:
        return "client-cert"
    if pinned.is_pinned(client_ip, host):
        return "pinned"
    return None


def hello_splice(peek: HelloPeek, host: str) -> str | None:
    """Why a connection whose first bytes are ``peek`` is spliced, or None to intercept.
    Raises `HandshakeRefused` for a malformed ClientHello."""
    verdict = peek.verdict
    if verdict is Verdict.NOT_TLS:
        return "not-tls"
    if verdict is Verdict.TOO_LARGE:
        return "too-large"
    if verdict is not Verdict.CLIENT_HELLO or peek.hello is None:
        raise HandshakeRefused("malformed-hello", peek.reason or "malformed ClientHello")
    sni = peek.hello.sni
    if sni is not None and sni.rstrip(".") != host:
        # Never intercepted under either name (DESIGN.md §5 rule 13): the CONNECT's checks
        # were made for one host, the client would verify our certificate for the other.
        return "sni-mismatch"
    return None


def peek_hello(sock: socket.socket) -> HelloPeek | None:
    """The verdict on the client's first bytes, read without consuming them; None when the
    client closed first. The caller bounds the wait (a gevent Timeout)."""
    raw = raw_socket(sock)
    if raw is None:
        raise TypeError("peek_hello needs a plain socket")
    seen = 0
    try:
        while True:
            try:
                data = raw.recv(_PEEK_BYTES, stdlib_socket.MSG_PEEK)
            except BlockingIOError:
                data = None
            if data is not None:
                if not data:
                    return None
                peek = peek_client_hello(data)
                if peek.verdict is not Verdict.NEED_MORE:
                    return peek
                if len(data) >= _PEEK_BYTES:  # cannot happen: the parser bounds it first
                    return HelloPeek(Verdict.TOO_LARGE, reason="ClientHello too large")
                seen = len(data)
                # Readable again only once more than what we saw is there (or at EOF).
                raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVLOWAT, seen + 1)
            wait_readable_untimed(sock)
    finally:
        if seen:
            try:
                raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVLOWAT, 1)
            except OSError:
                pass


class Interception:
    """The running proxy's interception state: the CA, its leaf contexts, the pinned-client
    memory, the hosts whose origins want client certificates, and the counters."""

    def __init__(self) -> None:
        self.ca: CertificateAuthority | None = None
        self.leaves: LeafCache | None = None
        self.pinned = PinnedSplices(3600.0)
        self.client_cert_hosts: cachetools.LRUCache[str, bool] = cachetools.LRUCache(
            maxsize=MAX_CLIENT_CERT_HOSTS
        )
        self.handshakes = 0
        self.handshake_failures: Counter[str] = Counter()
        self.splices: Counter[str] = Counter()
        self.upstream_verify_failures = 0
        self.intercepted_requests = 0

    @property
    def ready(self) -> bool:
        """A CA is loaded: CONNECTs may be intercepted (SSLInterception decides)."""
        return self.leaves is not None

    def configure(self, cfg: Config) -> None:
        """Take ``cfg``'s interception directives. Raises ConfigError when SSLInterception
        is on without a usable CA (the state is then left as it was)."""
        self.pinned.set_duration(cfg.ssl_pinned_splice_time_s)
        if not cfg.ssl_interception:
            return
        from cproxy.intercept.ca import ca_from_config
        from cproxy.intercept.leaves import LeafCache

        ca = ca_from_config(cfg)
        if ca is None:
            raise ConfigError(
                "SSLInterception is on but SSLCACertFile and SSLCAKeyFile are empty; "
                "allowed: off, or on with the CA files (cproxy ca init -d DIR makes them)",
                path=cfg.source_path,
                directive="SSLInterception",
            )
        size = cfg.ssl_leaf_cache_size
        if (
            self.ca is None
            or self.leaves is None
            or self.ca.fingerprint != ca.fingerprint
            or self.leaves.max_entries != size
        ):
            if self.leaves is not None:
                self.leaves.close()
            self.leaves = LeafCache(ca, size)
        self.ca = ca

    def client_cert_wanted(self, host: str) -> None:
        """``host``'s origin asked for a client certificate: splice it from now on."""
        if host not in self.client_cert_hosts:
            log.warning("%s asks for a client certificate: spliced from now on", host)
        self.client_cert_hosts[host] = True

    def handshake(
        self, sock: socket.socket, client_ip: str, host: str, timeout_s: float
    ) -> socket.socket:
        """The client's TLS handshake with our leaf for ``host`` over ``sock``, by
        ``timeout_s``: the TLS socket. Raises `HandshakeRefused` (counted; a client that
        rejected our certificate is remembered in the pinned memory), or `NoLeaf`."""
        import ssl

        from cproxy.intercept.leaves import NameRefused
        from cproxy.server.clienttls import ClientTLSSocket

        assert self.leaves is not None
        try:
            context = self.leaves.context_for(host)
        except NameRefused as exc:
            raise NoLeaf(str(exc)) from exc
        # Our socket class: it can look ahead for the pool's watch on a queued request.
        context.sslsocket_class = ClientTLSSocket
        tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        timer = gevent.Timeout(timeout_s)
        timer.start()
        try:
            tls.do_handshake()
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            tls.close()
            self.handshake_failures["timeout"] += 1
            raise HandshakeRefused(
                "handshake-failed", "the TLS handshake did not finish within InputTimeout"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            tls.close()
            failure = classify_handshake_failure(exc)
            self.handshake_failures[failure.name.lower()] += 1
            if failure.pinned:
                self.pinned.remember(client_ip, host)
                raise HandshakeRefused(
                    "certificate-rejected",
                    f"the client rejected our certificate for {host} ({failure.value}: {exc}); "
                    "spliced for this client for SSLPinnedSpliceTime",
                ) from exc
            raise HandshakeRefused("handshake-failed", f"TLS handshake failed: {exc}") from exc
        finally:
            timer.close()
        self.handshakes += 1
        return tls

    def stats(self) -> dict[str, Any]:
        """Figures for the status page and /metrics."""
        leaves = self.leaves.stats() if self.leaves is not None else None
        pinned = self.pinned.stats()
        return {
            "ready": self.ready,
            "ca_fingerprint": self.ca.fingerprint if self.ca is not None else "",
            "handshakes": self.handshakes,
            "handshake_failures": dict(self.handshake_failures),
            "splices": {reason: self.splices.get(reason, 0) for reason in SPLICE_REASONS},
            "upstream_verify_failures": self.upstream_verify_failures,
            "intercepted_requests": self.intercepted_requests,
            "leaves_generated": leaves.generated if leaves else 0,
            "leaves_cache_hits": leaves.hits if leaves else 0,
            "leaves_cached": leaves.entries if leaves else 0,
            "leaves_max": leaves.max_entries if leaves else 0,
            "pinned_pairs": pinned.entries,
        }


__all__ = [
    "REFUSAL_REASONS",
    "SPLICE_REASONS",
    "HandshakeRefused",
    "Interception",
    "NoLeaf",
    "hello_splice",
    "peek_hello",
    "scope_splice",
]
