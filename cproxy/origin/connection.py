"""One proxy-to-origin TCP connection, and how it is opened.

Opening a connection resolves the origin's name, then races connections to its addresses
(RFC 8305, `cproxy.origin.eyeballs`) within a single connect-timeout budget, and maps every
failure onto the typed errors of ``cproxy.errors`` with a message naming ``host:port`` and each
address with its outcome: the client sees that message on its 502/504 page.

All I/O uses gevent's socket module explicitly: cproxy runs without monkey-patching.
"""

from __future__ import annotations

import functools
import ipaddress
import socket as _stdlib_socket
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.socket as gsocket

from cproxy.errors import (
    OriginConnectError,
    OriginConnectTimeout,
    OriginDNSError,
)
from cproxy.geventshim import plain_raw_socket, raw_socket
from cproxy.origin.deadaddrs import DeadAddresses
from cproxy.origin.eyeballs import (
    ATTEMPT_DELAY_S,
    CONNECTED,
    DEAD_KINDS,
    NOT_TRIED,
    POLICY,
    TIMED_OUT,
    Attempt,
    interleave,
    race,
)
from cproxy.origin.tls import read_idle_records

OriginKey = tuple[str, str, int]
"""``(scheme, host, port)``: host lowercased, an IPv6 literal without brackets."""

AddressCheck = Callable[[str], None]
"""``admit(address)`` raises `DestinationRefused` when cproxy must not connect to the
numeric ``address`` (DESIGN.md §5 rule 10); returns None otherwise."""

Resolver = Callable[[str, int], list[tuple[Any, ...]]]
"""``resolve(host, port)`` returns ``getaddrinfo``-style 5-tuples
``(family, type, proto, canonname, sockaddr)``; raises ``socket.gaierror`` when the name does not
resolve."""


@functools.lru_cache(maxsize=1024)
def origin_key(scheme: str, host: str, port: int) -> OriginKey:
    """Return the canonical key for an origin: scheme and host lowercased, brackets stripped.

    Two spellings of the same origin (``EXAMPLE.test`` and ``example.test``, ``[::1]`` and
    ``::1``) must share one idle list, or pooling silently stops working for one of them.
    Remembered (a pure function of a few origins, asked twice per exchange: by the
    exchange and by the pool); a refused key raises each time.
    """
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port)
    if not 0 < port < 65536:
        raise ValueError(f"origin port out of range: {port}")
    if not host:
        raise ValueError("origin host is empty")
    return (scheme.lower(), host, port)


def format_host_port(host: str, port: int) -> str:
    """``host:port`` as a user writes it: an IPv6 literal goes in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_origin(key: OriginKey) -> str:
    """The origin as a URL prefix, e.g. ``http://example.test:80`` (used as the stats key)."""
    scheme, host, port = key
    return f"{scheme}://{format_host_port(host, port)}"


def peer_address(sock: gsocket.socket) -> str:
    """The numeric address ``sock`` is connected to; "" when the socket cannot say."""
    try:
        return str(sock.getpeername()[0])
    except (OSError, IndexError, TypeError):
        return ""


def default_resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """Resolve with gevent's resolver (cooperative: other greenlets run meanwhile).

    An IP address literal is its own answer: gevent's default resolver hands even those to
    its thread pool, about 90 µs each (bench/dns_cache.py), on every new connection to a
    mapping rule's ``http://127.0.0.1:9000`` target. Unusual spellings (``0x7f.1``) and
    zoned IPv6 literals still go to getaddrinfo, which reads them as it always did.
    """
    if "%" not in host:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            if ip.version == 6:
                return [(_AF_INET6, _SOCK_STREAM, _IPPROTO_TCP, "", (host, port, 0, 0))]
            return [(_AF_INET, _SOCK_STREAM, _IPPROTO_TCP, "", (host, port))]
    return gsocket.getaddrinfo(host, port, 0, gsocket.SOCK_STREAM, gsocket.IPPROTO_TCP)


_AF_INET, _AF_INET6 = gsocket.AF_INET, gsocket.AF_INET6
_SOCK_STREAM, _IPPROTO_TCP = gsocket.SOCK_STREAM, gsocket.IPPROTO_TCP


class OriginConnection:
    """A connected socket to one origin, owned by whoever holds it.

    ``sock`` is connected, has ``TCP_NODELAY`` set (requests are written whole, so Nagle's
    algorithm only adds latency) and is blocking-with-gevent (no timeout: the forwarding code sets
    its own read/write timeouts). ``uses`` counts the exchanges completed on the socket: the pool
    increments it on each ``release``. ``reused`` says whether this checkout came from the idle
    pool, i.e. whether the origin may have closed the socket under us (DESIGN §5 rule 5).
    """

    __slots__ = (
        "_closed",
        "_idle_watch",
        "_on_close",
        "_peer_ip",
        "_reused",
        "admitted",
        "created_at",
        "heard_while_idle",
        "idle_since",
        "key",
        "on_heard",
        "pre_opened",
        "raw",
        "sock",
        "tls",
        "uses",
    )

    def __init__(
        self,
        key: OriginKey,
        sock: gsocket.socket,
        created_at: float,
        on_close: Callable[[OriginConnection], None] | None = None,
        tls: Any = None,
    ) -> None:
        self.key = key
        self.sock = sock
        # For the first send and recv of each exchange (None for TLS: see geventshim).
        self.raw = plain_raw_socket(sock)
        # The TLSSettings an https connection was made with (part of its pool key), or None.
        self.tls = tls
        self.created_at = created_at
        self.idle_since = created_at
        self.uses = 0
        self._reused = False
        self._closed = False
        self._on_close = on_close
        self._idle_watch: Any = None
        self.heard_while_idle = False
        # Called (from the event loop) when the idle socket is heard from: the pool's
        # standby keeper replaces a pre-opened socket the origin closed.
        self.on_heard: Callable[[OriginConnection], None] | None = None
        # Opened ahead of any request (ServerConnStandby): it sat idle like a pooled one,
        # so the origin may have closed it, and a safe request is retried (DESIGN §5.5).
        self.pre_opened = False
        self._peer_ip: str | None = None
        # The address check (an `AddressCheck`, opaque to the pool) this socket's peer last
        # passed: the server checks a reused socket again only for another check.
        self.admitted: object = None

    @property
    def reused(self) -> bool:
        """True when this checkout came from the idle pool (``uses > 0`` at checkout time)."""
        return self._reused

    @property
    def peer_ip(self) -> str:
        """The numeric address the socket is connected to (checked again, for the client
        at hand, each time a pooled socket is reused); "" when the socket cannot say."""
        if self._peer_ip is None:
            self._peer_ip = peer_address(self.sock)
        return self._peer_ip

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run."""
        return self._closed

    def _checkout(self) -> None:
        """Record a checkout from the idle pool (called by ``OriginPool``)."""
        self._reused = self.uses > 0 or self.pre_opened

    def watch_idle(self) -> None:
        """While the socket is idle in the pool, note when it becomes readable (the origin
        closed it or sent bytes nobody asked for) in ``heard_while_idle``.

        The event loop does this for free, where a peek at checkout is a system call. It
        also keeps the loop's interest in the socket unbroken between uses: libev would
        otherwise forget the socket while it is idle and register it again on the next
        read, a failing epoll_ctl() (EEXIST) per exchange, measured with strace.
        """
        watch = self._idle_watch
        if watch is None:
            watch = self._idle_watch = gevent.get_hub().loop.io(self.sock.fileno(), 1)
        self.heard_while_idle = False
        watch.start(self._heard)

    def _heard(self) -> None:
        self._idle_watch.stop()  # EOF stays readable: one notice is enough
        if self.tls is not None and read_idle_records(self.sock) == "ok":
            # Records for the TLS layer alone (a TLS 1.3 origin's session tickets arrive
            # after the handshake): read now, and the socket is idle and usable again.
            self._idle_watch.start(self._heard)
            return
        self.heard_while_idle = True
        if self.on_heard is not None:
            self.on_heard(self)

    def unwatch_idle(self) -> None:
        """Stop `watch_idle` (at checkout). The socket counts as heard from if the loop saw
        it readable in its latest poll but has not yet run the callback (the same batch of
        events as the request about to use it)."""
        watch = self._idle_watch
        if watch is not None:
            if watch.pending:
                self.heard_while_idle = self.tls is None or read_idle_records(self.sock) != "ok"
            watch.stop()

    def close(self) -> None:
        """Close the socket (idempotent). Prefer ``OriginPool.discard`` when done with it."""
        if self._closed:
            return
        self._closed = True
        if self._idle_watch is not None:
            self._idle_watch.close()
            self._idle_watch = None
        # Tell the pool first so its counters are right even if closing the socket raises.
        if self._on_close is not None:
            self._on_close(self)
        self.sock.close()

    def peer_state(self) -> str:
        """Check, without blocking, whether the idle socket is still usable.

        Returns ``"ok"`` when nothing is waiting (the normal idle state), ``"eof"`` when the
        origin closed it, ``"garbage"`` when bytes arrived that no request asked for (reusing it
        would splice them into the next response), ``"error"`` when the socket is reset or gone.
        """
        if self._closed or self.sock.fileno() < 0:
            return "error"
        pending = getattr(self.sock, "pending", None)
        if pending is not None and pending():
            return "garbage"  # TLS: decrypted bytes nobody asked for are buffered already
        # The peek goes to the socket gevent wraps, which is in non-blocking mode: it
        # raises at once when nothing is waiting, where gevent's own recv() would wait.
        # (Measured: the wrapper's timeout juggling was most of a pooled miss's checkout.)
        raw = raw_socket(self.sock)
        if raw is None or raw.gettimeout() != 0.0:
            if self.tls is not None:
                return read_idle_records(self.sock)
            return self._peer_state_via_timeout()
        try:
            data = raw.recv(1, _stdlib_socket.MSG_PEEK)
        except BlockingIOError:
            return "ok"
        except OSError:
            return "error"
        if data and self.tls is not None:
            # Ciphertext: session tickets look the same as a response nobody asked for
            # until the TLS layer reads the records.
            return read_idle_records(self.sock)
        return "garbage" if data else "eof"

    def _peer_state_via_timeout(self) -> str:
        timeout = self.sock.gettimeout()
        # Timeout 0 makes gevent's recv raise instead of waiting: a true non-blocking peek.
        self.sock.settimeout(0.0)
        try:
            data = self.sock.recv(1, _stdlib_socket.MSG_PEEK)
        except BlockingIOError:
            return "ok"
        except OSError:
            return "error"
        finally:
            if self.sock.fileno() >= 0:
                self.sock.settimeout(timeout)
        return "garbage" if data else "eof"

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self.sock.fileno()}"
        return f"<OriginConnection {format_origin(self.key)} {state} uses={self.uses}>"


def _describe(exc: BaseException) -> str:
    """A short cause for an error page: the OS's words, without Python's decoration."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _sockaddr_text(family: int, sockaddr: tuple[Any, ...]) -> str:
    if family in (gsocket.AF_INET, gsocket.AF_INET6):
        return format_host_port(str(sockaddr[0]), int(sockaddr[1]))
    return str(sockaddr)


def open_socket(
    host: str,
    port: int,
    *,
    timeout_s: float,
    resolve: Resolver,
    admit: AddressCheck | None = None,
    attempt_delay_s: float = ATTEMPT_DELAY_S,
    dead: DeadAddresses | None = None,
) -> gsocket.socket:
    """Resolve ``host`` and race connections to its addresses (RFC 8305, `eyeballs.race`)
    within ``timeout_s``; return the first socket that connects.

    Addresses are interleaved by family (the family getaddrinfo prefers first), those
    ``dead`` remembers as failed recently go last, and a new attempt starts every
    ``attempt_delay_s`` while earlier ones are pending, at once when one fails. What each
    address did is remembered in ``dead`` (a failure marks it, a success clears it).

    ``admit`` is asked about each resolved address just before connecting to it, and the
    connection goes to exactly the address it admitted (one lookup, so a name cannot
    resolve to a checked address and then to another). Addresses it refuses are skipped;
    when it refuses all of them, its first `DestinationRefused` is raised and nothing was
    connected.

    The budget covers resolution and every address tried. Raises ``OriginDNSError`` (name
    does not resolve), ``OriginConnectTimeout`` (budget spent with an attempt pending or an
    address not reached) or ``OriginConnectError`` (every address refused or was
    unreachable); each message names ``host:port`` and every address with its outcome.
    """
    where = format_host_port(host, port)
    # Real time, not the pool's injectable clock: this bounds an actual wait on the network.
    deadline = time.monotonic() + timeout_s

    timer = gevent.Timeout(timeout_s)
    timer.start()
    try:
        infos = resolve(host, port)
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        raise OriginConnectTimeout(f"resolving {where} timed out after {timeout_s:g} s") from None
    except (gsocket.gaierror, gsocket.herror, UnicodeError) as exc:
        # herror: the resolver's own failure; UnicodeError: a host name IDNA cannot encode.
        raise OriginDNSError(f"cannot resolve {where}: {_describe(exc)}") from exc
    finally:
        timer.close()
    if not infos:
        raise OriginDNSError(f"cannot resolve {where}: no addresses")

    ordered = interleave(infos)
    if dead is not None:
        ordered = dead.order(ordered, _ip_port)
    sock, attempts = race(ordered, deadline=deadline, attempt_delay_s=attempt_delay_s, admit=admit)
    if dead is not None:
        for attempt in attempts:
            address = attempt.address()
            if address is None:
                continue
            if attempt.kind == CONNECTED:
                dead.clear(*address)
            elif attempt.kind in DEAD_KINDS:
                dead.mark(*address)
    if sock is not None:
        return sock

    refusals = [a.refusal for a in attempts if a.refusal is not None]
    if refusals and all(a.kind == POLICY for a in attempts):
        raise refusals[0]
    causes = "; ".join(_attempt_text(a, where) for a in attempts) or "no address tried"
    if any(a.kind in (TIMED_OUT, NOT_TRIED) for a in attempts):
        raise OriginConnectTimeout(
            f"connecting to {where} timed out after {timeout_s:g} s ({causes})"
        )
    raise OriginConnectError(f"cannot connect to {where}: {causes}")


def _ip_port(info: tuple[Any, ...]) -> tuple[str, int] | None:
    if info[0] in (gsocket.AF_INET, gsocket.AF_INET6):
        return str(info[4][0]), int(info[4][1])
    return None


def _attempt_text(attempt: Attempt, where: str) -> str:
    """``127.0.0.1:80 Connection refused``; an address literal is tried as itself, so its
    outcome alone (the message names it once already)."""
    tried = _sockaddr_text(attempt.family, attempt.sockaddr)
    return attempt.outcome if tried == where else f"{tried} {attempt.outcome}"
