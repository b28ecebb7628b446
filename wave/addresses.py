"""Addresses: which hosts wave may connect to (or send clients to), and which address a client has.

A URL that came from a request (an image's registry, a layer location, a ``FROM`` line) or from an upstream
registry (a redirect, a token realm) must not make wave reach, or point clients at, loopback, private,
link-local or metadata addresses: that would expose internal services to anyone who can POST a request.

This module is the policy only — pure functions over addresses, no I/O. ``wave.http`` enforces it on every
address wave's HTTP client is about to connect to, so the check and the connection cannot disagree.
Operators trust hosts, ``host:port`` pairs or networks with ``WAVE_TRUSTED_HOSTS``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data", "metadata.azure.com",
                            "instance-data.ec2.internal"})
TRUST_SETTING = "WAVE_TRUSTED_HOSTS"
NONE = "none"  # the value that trusts nothing, not even loopback on a laptop

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_ALSO_INTERNAL = (
    ipaddress.ip_network("0.0.0.0/8"),  # "this network": 0.0.0.0 reaches the local host on Linux
    ipaddress.ip_network("fec0::/10"),  # deprecated site-local, which ipaddress calls global
    ipaddress.ip_network("64:ff9b:1::/48"),  # NAT64 for local use (RFC 8215): translates to internal hosts
)

class InternalAddress(ValueError):
    """An address wave may not connect to: internal, and not trusted by the operator."""

    def __init__(self, host: str, port: int, address: IPAddress | None) -> None:
        self.host, self.port, self.address = host, port, address
        super().__init__(f"{host_port(host, port)} is an internal address; trust it with {TRUST_SETTING}")

    @property
    def where(self) -> str:
        return host_port(self.host, self.port)


def host_port(host: str, port: int) -> str:
    """``host:port`` as a URL writes it (IPv6 literals in brackets)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible
    (``::a.b.c.d``), NAT64 (``64:ff9b::a.b.c.d``) and 6to4 (``2002:AABB:CCDD::``). Each of these reaches the
    IPv4 host, so each must be judged as that host."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = int(address)
    if address in _NAT64 or (packed >> 32 == 0 and packed > 1):
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def is_internal(address: IPAddress) -> bool:
    """Not globally routable: loopback, private, link-local, shared, reserved, multicast, ``0.0.0.0/8``,
    and any IPv6 form of such an IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None and is_internal(inner):
            return True
        if address.scope_id:
            return True
    if any(address.version == net.version and address in net for net in _ALSO_INTERNAL):
        return True
    return not address.is_global or address.is_multicast


def parse_address(text: str) -> IPAddress | None:
    """An IP literal (bracketed or not, without a zone) or None for a name."""
    try:
        return ipaddress.ip_address(text.strip("[]").split("%")[0])
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback literal (a bind address or a registry host, with or without port)."""
    name = host if host.endswith("]") or host.count(":") > 1 else host.rsplit(":", 1)[0]
    name = name.strip("[]").lower()
    if name == "localhost":
        return True
    address = parse_address(name)
    return address is not None and address.is_loopback


# --- what the operator trusts ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustEntry:
    """One trusted host (a name or an address, on one port or all), or one network."""

    text: str
    host: str | None = None  # a lowercase name, or an address in its canonical text form
    port: int | None = None  # None: every port
    network: IPNetwork | None = None
    why: str = ""  # where it comes from, for the start-up line ("" = WAVE_TRUSTED_HOSTS)

    def matches(self, host: str, port: int, address: IPAddress) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.network is not None:
            candidates = [address]
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                candidates.append(address.ipv4_mapped)
            return any(c.version == self.network.version and c in self.network for c in candidates)
        return self.host in (_normal_name(host), str(address))


def _normal_name(host: str) -> str:
    literal = parse_address(host)
    return str(literal) if literal is not None else host.lower().rstrip(".")


def parse_trust_entry(text: str, why: str = "") -> TrustEntry:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port``, a bare IPv6 address, or a CIDR network.
    ValueError names what is wrong, so a typo fails at start-up."""
    item = text.strip()
    if not item:
        raise ValueError("empty entry")
    if "/" in item:
        try:
            return TrustEntry(item, network=ipaddress.ip_network(item, strict=False), why=why)
        except ValueError:
            raise ValueError(f"{item!r} is not a CIDR network") from None
    host, port_text = item, ""
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket:
            raise ValueError(f"{item!r} has no closing bracket")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{item!r} is not [address]:port")
        port_text = rest[1:]
        if parse_address(host) is None:
            raise ValueError(f"{item!r} does not hold an IPv6 address in brackets")
    elif item.count(":") == 1:
        host, port_text = item.split(":")
    elif item.count(":") > 1 and parse_address(item) is None:
        raise ValueError(f"{item!r} is not an IPv6 address (write [address]:port for a port)")
    port: int | None = None
    if port_text or item.endswith(":"):
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{item!r} has an invalid port")
        port = int(port_text)
    if not host or any(c in host for c in " @#?"):
        raise ValueError(f"{item!r} is not a host name")
    return TrustEntry(item, host=_normal_name(host), port=port, why=why)


def parse_trust_entries(items: Iterable[str]) -> tuple[TrustEntry, ...]:
    return tuple(parse_trust_entry(item) for item in items if item.strip().lower() != NONE)


def registry_entry(key: str, plain_http: bool, why: str) -> TrustEntry:
    """A configured registry (``host`` or ``host:port``) trusted on the one port wave talks to it on."""
    entry = parse_trust_entry(key, why)
    if entry.port is None and entry.network is None:
        entry = TrustEntry(entry.text, entry.host, 80 if plain_http else 443, None, why)
    return entry


LOOPBACK = (
    TrustEntry("127.0.0.0/8", network=ipaddress.ip_network("127.0.0.0/8"), why="loopback"),
    TrustEntry("::1", host="::1", why="loopback"),
    TrustEntry("localhost", host="localhost", why="loopback"),
)


@dataclass(frozen=True)
class AddressPolicy:
    """What wave may connect to: public addresses, plus the trusted entries."""

    trusted: tuple[TrustEntry, ...] = ()
    mode: str = "strict"  # "strict" | "loopback" (the default while wave listens on loopback)

    def trusts(self, host: str, port: int, address: IPAddress) -> bool:
        return any(entry.matches(host, port, address) for entry in self.trusted)

    def check(self, host: str, port: int, addresses: Sequence[IPAddress]) -> None:
        """Raise InternalAddress unless every address is public (or trusted): one bad address among good
        ones refuses the host, since a connection may go to any of them. A metadata host name is refused
        whatever it resolves to, unless trusted by name."""
        name = _normal_name(host)
        if name in METADATA_HOSTS and not any(e.host == name and e.port in (None, port) for e in self.trusted):
            raise InternalAddress(host, port, addresses[0] if addresses else None)
        for address in addresses:
            if is_internal(address) and not self.trusts(host, port, address):
                raise InternalAddress(host, port, address)

    def describe(self) -> str:
        """The policy in one line, for the start-up log."""
        if self.mode == "loopback":
            head = (f"loopback trusted because wave listens on a loopback address ({TRUST_SETTING} unset); "
                    "other internal addresses refused")
        else:
            head = "internal addresses refused"
        extra = [e.text + (f" ({e.why})" if e.why else "") for e in self.trusted if e.why != "loopback"]
        if extra:
            return f"{head}; trusted: {', '.join(extra)}"
        return head + ("; nothing internal trusted" if self.mode == "strict" else "")


def address_policy(entries: Sequence[str], *, listen_host: str,
                   registries: Iterable[TrustEntry] = ()) -> AddressPolicy:
    """The policy for this process. ``entries`` (``WAVE_TRUSTED_HOSTS``) empty: loopback is trusted only
    while wave itself listens on loopback (a laptop, the test suite), nothing internal otherwise; ``none``
    trusts nothing. Configured registries (credentials, insecure) are trusted on their own port."""
    explicit = parse_trust_entries(entries)
    default = not entries and is_loopback_host(listen_host)
    base = LOOPBACK if default else ()
    return AddressPolicy((*base, *explicit, *registries), "loopback" if default else "strict")


# --- who the client is (metrics, access logs) --------------------------------------------------------


def client_address(peer: str | None, forwarded_for: str | None, trusted: Iterable[str]) -> str | None:
    """The client's address: the TCP peer, or — when the peer is a trusted proxy (an ingress, a load
    balancer) — the last address in ``X-Forwarded-For`` that is not a trusted proxy itself."""
    networks = [ipaddress.ip_network(t, strict=False) for t in trusted]
    if not networks or not peer or not forwarded_for:
        return peer

    def is_trusted(text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        return any(address in network for network in networks)

    if not is_trusted(peer):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer

