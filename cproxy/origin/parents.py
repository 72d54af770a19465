"""Parent proxies (ParentProxy): proxy chaining, as the Caching Proxy's http_proxy and
Squid's ``cache_peer ... parent``.

`ParentSet` holds the configured parents in order, each with its state. `pick(host)`
gives the first parent that is up (or whose ParentRetry time has passed), or None when
the host goes direct (no parents configured, or NoProxy covers it); `NoParentAvailable`
when every parent is down. `mark_down` / `mark_up` record what a connection attempt
found. Plain requests go to the parent in absolute form over the origin pool (the pool
key is the parent's address, so one pooled socket carries requests for many origins);
CONNECT is sent on to the parent. ``https://`` requests (intercepted ones, and a client's
absolute-form ones) are never sent to a parent in cleartext: the pool opens a TLS
connection to the origin *through* the parent (`tunnel_through`, then the handshake
inside; `cproxy.origin.tls.ParentHop`), verified as a direct one, and keeps it for that
origin. Credentials for a parent come from
ParentProxyCredentials, a file of ``host:port user:password`` lines, and are sent as the
parent's own Proxy-Authorization: a client's credentials are never passed on.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gevent import socket as gsocket

from cproxy.directives import Config
from cproxy.directives.types import direct_match
from cproxy.errors import (
    CproxyError,
    NoParentAvailable,
    OriginConnectError,
    OriginConnectTimeout,
    OriginDNSError,
    OriginError,
    ParentRefusedTunnel,
    ParentTunnelTimeout,
)

from .connection import OriginKey, format_host_port, origin_key
from .tls import ParentHop

log = logging.getLogger("cproxy")


# What makes a parent "down": it could not be reached at all (a parent that answers,
# even with an error status, is up).
CONNECT_FAILURES = (OriginDNSError, OriginConnectError, OriginConnectTimeout)


class ParentCredentialsError(CproxyError):
    """A line of ParentProxyCredentials is not ``host:port user:password``."""


@dataclass
class Parent:
    """One parent proxy and what the last attempts found."""

    host: str
    port: int
    authorization: str | None = None  # the Proxy-Authorization value to send it
    down_until: float = 0.0
    failures: int = 0
    last_error: str = ""
    requests: int = 0
    key: OriginKey = field(init=False)

    def __post_init__(self) -> None:
        self.key = origin_key("http", self.host, self.port)

    @property
    def address(self) -> str:
        return format_host_port(self.host, self.port)

    @property
    def hop(self) -> ParentHop:
        """The parent as the pool's TLS connections through it know it (with its login)."""
        return ParentHop(self.host, self.port, self.authorization)


def read_credentials(path: str) -> dict[tuple[str, int], str]:
    """{(host, port): Proxy-Authorization value} from ``host:port user:password`` lines."""
    out: dict[tuple[str, int], str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            address, _, secret = line.partition(" ")
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or ":" not in secret.strip():
                raise ParentCredentialsError(f"{path}:{number}: expected 'host:port user:password'")
            token = base64.b64encode(secret.strip().encode("utf-8")).decode("ascii")
            out[(host.strip("[]").lower(), int(port))] = f"Basic {token}"
    return out


class ParentSet:
    """The configured parents, in order, with their up/down state."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.parents: list[Parent] = []
        self._no_proxy: tuple[Any, ...] = ()
        self._retry_s = 30.0

    @property
    def active(self) -> bool:
        return bool(self.parents)

    def configure(self, cfg: Config) -> None:
        """Take ParentProxy, ParentProxyCredentials, ParentRetry and NoProxy from ``cfg``;
        a parent listed before keeps its state. A credentials file that cannot be read
        is logged and its parents are used without credentials."""
        credentials: dict[tuple[str, int], str] = {}
        path = cfg.resolve_path("ParentProxyCredentials")
        if path:
            try:
                credentials = read_credentials(path)
            except (OSError, ParentCredentialsError) as exc:
                log.error("ParentProxyCredentials not used: %s", exc)
        old = {(p.host, p.port): p for p in self.parents}
        parents = []
        for host, port in cfg.parent_proxy:
            parent = old.get((host, port)) or Parent(host, port)
            parent.authorization = credentials.get((host.lower(), port))
            parents.append(parent)
        self.parents = parents
        self._no_proxy = cfg.no_proxy
        self._retry_s = cfg.parent_retry_s

    def pick(self, host: str) -> Parent | None:
        """The parent for a request to ``host``: None to go direct; raises
        NoParentAvailable when every parent is down."""
        if not self.parents or direct_match(self._no_proxy, host):
            return None
        now = self._clock()
        for parent in self.parents:
            if parent.down_until <= now:
                return parent
        names = ", ".join(p.address for p in self.parents)
        raise NoParentAvailable(f"no parent proxy is available ({names} marked down)")

    def mark_down(self, parent: Parent, reason: str) -> None:
        """``parent`` failed: skip it for ParentRetry."""
        parent.failures += 1
        parent.last_error = reason
        parent.down_until = self._clock() + self._retry_s
        log.warning(
            "parent proxy %s marked down for %g s: %s", parent.address, self._retry_s, reason
        )

    def failover(self, parent: Parent, host: str, exc: BaseException) -> Parent | None:
        """``parent`` could not be reached (``exc``, one of CONNECT_FAILURES): mark it down
        and give the next parent for ``host``; None when NoProxy now sends it direct (the
        caller re-raises ``exc``). Raises NoParentAvailable when none is left."""
        self.mark_down(parent, str(exc))
        return self.pick(host)

    def mark_up(self, parent: Parent) -> None:
        """``parent`` answered."""
        parent.requests += 1
        if parent.down_until:
            log.info("parent proxy %s is up again", parent.address)
            parent.down_until = 0.0

    def stats(self) -> list[dict[str, Any]]:
        """Each parent's state, for the status page and status.json."""
        now = self._clock()
        return [
            {
                "parent": p.address,
                "state": "down" if p.down_until > now else "up",
                "retry_in_s": max(0.0, round(p.down_until - now, 1)),
                "failures": p.failures,
                "requests": p.requests,
                "last_error": p.last_error,
                "credentials": p.authorization is not None,
            }
            for p in self.parents
        ]


def parent_request_head(head: bytes, method: str, url: str, authorization: str | None) -> bytes:
    """``head`` (as built for the origin) for a parent: the absolute-form target, and the
    parent's own Proxy-Authorization when it has credentials."""
    _, _, rest = head.partition(b"\r\n")
    first = f"{method} {url} HTTP/1.1\r\n".encode("latin-1")
    if authorization is not None:
        first += f"Proxy-Authorization: {authorization}\r\n".encode("latin-1")
    return first + rest


def connect_request(target: str, authorization: str | None) -> bytes:
    """The CONNECT cproxy sends a parent for a client's tunnel to ``target`` (host:port)."""
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if authorization is not None:
        lines.append(f"Proxy-Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# The longest response head a parent may send to a CONNECT; real ones are tiny.
MAX_CONNECT_RESPONSE_BYTES = 16 * 1024
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r\n")


def tunnel_through(sock: gsocket.socket, parent: ParentHop, target: str, timeout_s: float) -> bytes:
    """Ask ``parent`` (connected on ``sock``) for a tunnel to ``target``; returns the bytes
    that came after its response head (the start of the tunnelled stream). Raises
    ParentRefusedTunnel for a non-2xx answer, ParentTunnelTimeout when no whole answer
    came within ``timeout_s``, OriginError for a broken one."""
    sock.settimeout(timeout_s)
    try:
        sock.sendall(connect_request(target, parent.authorization))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise OriginError(f"parent proxy {parent.address} closed during CONNECT")
            data += chunk
            if len(data) > MAX_CONNECT_RESPONSE_BYTES:
                raise OriginError(f"parent proxy {parent.address}: CONNECT answer too long")
    except TimeoutError as exc:
        raise ParentTunnelTimeout(
            f"parent proxy {parent.address} did not answer CONNECT {target} "
            f"within {round(timeout_s, 1):g} s"
        ) from exc
    except OSError as exc:
        raise OriginError(f"parent proxy {parent.address} failed during CONNECT: {exc}") from exc
    finally:
        sock.settimeout(None)
    head, _, rest = data.partition(b"\r\n\r\n")
    m = _STATUS_LINE.match(head + b"\r\n")
    if m is None:
        raise OriginError(f"parent proxy {parent.address} sent a malformed CONNECT answer")
    status = int(m.group(1))
    if not 200 <= status < 300:
        raise ParentRefusedTunnel(
            f"parent proxy {parent.address} answered CONNECT {target} with {status}"
        )
    return rest
