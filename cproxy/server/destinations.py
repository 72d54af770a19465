"""Where cproxy may connect (DESIGN.md §5 rule 10; issue #10): ports and resolved addresses.

Pure decisions, no I/O. `DestinationPolicy.port_refusal` checks a plain HTTP request's
port against SafePorts before anything else happens. `DestinationPolicy.admit` is handed
to the code that opens origin connections: it is called with each address a name resolved
to, just before connecting to that very address (no second lookup), and on the peer of a
pooled socket before it is reused, so DNS rebinding cannot get round it. It raises
`DestinationRefused` naming the directive that refused.

RefusedDestinations are refused for every client; LoopbackDestinations only for clients
whose own address is outside them (loopback targets for loopback clients). An
IPv4-mapped IPv6 address is checked as the IPv4 address it carries, on both sides.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from cproxy.directives import Config
from cproxy.directives.types import IPNetwork, PortRanges
from cproxy.errors import DestinationRefused
from cproxy.http import Request
from cproxy.origin import AddressCheck, OriginConnection, OriginPool
from cproxy.origin.h2stream import H2Stream

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# (address, client) verdicts a policy remembers before it starts over.
_REMEMBERED_VERDICTS = 8192
# Client addresses whose LoopbackDestinations verdict is remembered (then it starts over).
_REMEMBERED_CLIENTS = 4096
# URL keys remembered as fetched from LoopbackDestinations before those no longer stored
# are forgotten (see LoopbackOrigins).
_LOOPBACK_ORIGIN_KEYS = 4096


@functools.lru_cache(maxsize=1024)
def _address(text: str) -> IPAddress | None:
    """``text`` as an address, or None when it is not one. Remembered: a proxy connects to
    the same few origins and serves the same few clients again and again."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone index
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _covering(networks: tuple[IPNetwork, ...], ip: IPAddress) -> IPNetwork | None:
    for net in networks:
        if net.version == ip.version and ip in net:
            return net
    return None


@dataclass(frozen=True)
class DestinationPolicy:
    """SafePorts, RefusedDestinations and LoopbackDestinations, as one running config has them."""

    safe_ports: PortRanges
    refused: tuple[IPNetwork, ...]
    loopback: tuple[IPNetwork, ...]
    # Verdicts remembered (a few µs each with ipaddress, asked on every forwarded request;
    # a proxy sees the same origins, ports and clients again and again). Bounded.
    _ports: dict[int, str | None] = field(default_factory=dict, compare=False, repr=False)
    _addresses: dict[tuple[str, str], str | None] = field(
        default_factory=dict, compare=False, repr=False
    )
    # One check per client (see `admit`): its identity says a pooled socket passed it.
    _checks: dict[str, Callable[[str], None]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def from_config(cls, cfg: Config) -> DestinationPolicy:
        return cls(cfg.safe_ports, cfg.refused_destinations, cfg.loopback_destinations)

    def port_refusal(self, port: int) -> str | None:
        """Why a plain HTTP request to ``port`` is refused, or None."""
        try:
            return self._ports[port]
        except KeyError:
            pass
        why = None
        if port not in self.safe_ports:
            why = f"Port {port} is not one of the SafePorts this proxy forwards plain HTTP to."
        self._ports[port] = why  # at most 65535 ports
        return why

    def address_refusal(self, address: str, client_ip: str) -> str | None:
        """Why connecting to numeric ``address`` for a client at ``client_ip`` is refused,
        or None. Something that is not an address is refused (nothing to check it by)."""
        key = (address, client_ip)
        try:
            return self._addresses[key]
        except KeyError:
            pass
        why = self._address_refusal(address, client_ip)
        if len(self._addresses) >= _REMEMBERED_VERDICTS:
            self._addresses.clear()
        self._addresses[key] = why
        return why

    def _address_refusal(self, address: str, client_ip: str) -> str | None:
        ip = _address(address)
        if ip is None:
            return f"Refusing to connect to {address!r}: not an IP address."
        net = _covering(self.refused, ip)
        if net is not None:
            return f"Refusing to connect to {ip}: it is in RefusedDestinations ({net})."
        net = _covering(self.loopback, ip)
        if net is not None:
            client = _address(client_ip)
            if client is None or _covering(self.loopback, client) is None:
                return (
                    f"Refusing to connect to {ip} for this client: it is in "
                    f"LoopbackDestinations ({net}), which only clients on those networks "
                    "may reach."
                )
        return None

    def in_loopback_destinations(self, address: str) -> bool:
        """Is numeric ``address`` one that only some clients may reach?"""
        ip = _address(address)
        return ip is not None and _covering(self.loopback, ip) is not None

    def reaches_loopback(self, client_ip: str) -> bool:
        """May a client at ``client_ip`` reach LoopbackDestinations?"""
        client = _address(client_ip)
        return client is not None and _covering(self.loopback, client) is not None

    def literal_refusal(self, host: str, client_ip: str) -> str | None:
        """`address_refusal` for a target host that is an IP literal, before any lookup;
        None for a name (it is checked once resolved, by `admit`)."""
        if _address(host) is None:
            return None
        return self.address_refusal(host, client_ip)

    def admit(self, client_ip: str) -> Callable[[str], None]:
        """The check for one client's connections: raises `DestinationRefused`. The same
        object for the same client while this policy runs (bounded), so that a pooled
        socket whose peer passed it need not be checked again (`admit_reused`)."""
        try:
            return self._checks[client_ip]
        except KeyError:
            pass

        def check(address: str) -> None:
            why = self.address_refusal(address, client_ip)
            if why is not None:
                raise DestinationRefused(why)

        if len(self._checks) >= _REMEMBERED_CLIENTS:
            self._checks.clear()
        self._checks[client_ip] = check
        return check


_current: list[tuple[Config, DestinationPolicy]] = []


def policy_for(cfg: Config) -> DestinationPolicy:
    """The policy of ``cfg``, made once per running config (a new one after each change)."""
    if not _current or _current[0][0] is not cfg:
        _current[:] = [(cfg, DestinationPolicy.from_config(cfg))]
    return _current[0][1]


def destination_refusal(req: Request, cfg: Config, client_ip: str) -> str | None:
    """Why a plain HTTP request (after its mapping rules) is refused before any lookup:
    its port is not in SafePorts, or its host is an IP literal the policy refuses."""
    policy = policy_for(cfg)
    return policy.port_refusal(req.port) or policy.literal_refusal(req.host, client_ip)


def admit_reused(pool: OriginPool, conn: OriginConnection | H2Stream, admit: AddressCheck) -> None:
    """Check a pooled socket's peer for this client before reusing it: it was opened,
    perhaps, for a client allowed where this one is not. Closed when refused. A socket
    whose peer passed this very check (same policy, same client: `DestinationPolicy.admit`)
    is not checked again: the verdict could not differ."""
    if conn.admitted is admit:
        return
    try:
        admit(conn.peer_ip)
    except DestinationRefused:
        pool.discard(conn)
        raise
    conn.admitted = admit


def admitted(conn: OriginConnection | H2Stream, admit: AddressCheck) -> None:
    """``conn`` was opened with ``admit`` checking its address (`OriginPool.connect`)."""
    conn.admitted = admit


class LoopbackOrigins:
    """URL keys whose responses were fetched from a LoopbackDestinations address.

    A response from a loopback-only service, stored while a loopback client asked for it,
    must not reach a client that could not have fetched it: for such a client, a URL
    noted here is never answered from the cache, and goes to the origin, where its
    connection is checked like any other. A key is never un-noted while its response may
    still be stored (a later fetch elsewhere may not have replaced every variant); keys
    whose URL is no longer stored are forgotten when the set grows past its bound.
    """

    def __init__(self, still_stored: Callable[[str], bool]) -> None:
        self._keys: set[str] = set()
        self._still_stored = still_stored
        self._limit = _LOOPBACK_ORIGIN_KEYS
        # Per running config: client address -> may it reach LoopbackDestinations.
        self._cfg: Config | None = None
        self._reaches: dict[str, bool] = {}

    def __contains__(self, url_key: object) -> bool:
        return url_key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def note(self, url_key: str, peer_ip: str, policy: DestinationPolicy) -> None:
        """An exchange for ``url_key`` went to ``peer_ip``."""
        if url_key in self._keys or not policy.in_loopback_destinations(peer_ip):
            return
        self.add(url_key)

    def add(self, url_key: str) -> None:
        """``url_key`` was fetched from a LoopbackDestinations address: here (`note`), or
        by the node that put it in the shared tier (its value says so)."""
        if url_key in self._keys:
            return
        self._keys.add(url_key)
        if len(self._keys) > self._limit:
            # The key just added is kept: its response may be about to be stored.
            self._keys = {k for k in self._keys if k == url_key or self._still_stored(k)}
            self._limit = max(_LOOPBACK_ORIGIN_KEYS, 2 * len(self._keys))

    def hidden_from(self, url_key: str, client_ip: str, cfg: Config) -> bool:
        """Must ``url_key``'s stored response be kept from the client at ``client_ip``?
        On every hit, fast lane included: a set lookup, and for a noted URL a dict lookup."""
        if url_key not in self._keys:
            return False
        if cfg is not self._cfg:
            self._cfg, self._reaches = cfg, {}
        reaches = self._reaches.get(client_ip)
        if reaches is None:
            if len(self._reaches) >= _REMEMBERED_CLIENTS:
                self._reaches.clear()
            reaches = self._reaches[client_ip] = policy_for(cfg).reaches_loopback(client_ip)
        return not reaches
