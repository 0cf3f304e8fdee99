"""IPv6 address autoconfiguration without I/O: the link-local address,
duplicate address detection and stateless addresses (RFC 4862) with stable
interface identifiers (RFC 7217), router solicitation (RFC 4861 6.3.7), and
what a host keeps from router advertisements (RFC 4861 6.3.4; DNS servers,
RFC 8106).

``AddressConfigurator`` only decides. Each of its methods that can change
something returns a list of events, in the order the caller must act on
them; after each call the caller moves its timer to ``next_deadline()`` and
calls ``poll`` when that time comes. The events and what the caller does:

- ``SendRouterSolicitation(source)``: send a router solicitation from
  ``source`` (the unspecified address until the link-local address is
  usable: then without a source link-layer address option, RFC 4861 4.1)
  to ff02::2, hop limit 255.
- ``SendDadSolicitation(target)``: having joined ``target``'s
  solicited-node group, send a neighbour solicitation for ``target`` from
  the unspecified address to that group, with no source link-layer address
  option (RFC 4862 5.4.2).
- ``AddressChanged(address, state, origin)``: TENTATIVE: add the address
  (not usable yet: only DAD traffic; RFC 4862 5.4); PREFERRED or
  DEPRECATED: update its state; None: remove it; DUPLICATE: DAD failed,
  never use it (RFC 4862 5.4.5) - the configurator has forgotten it, the
  caller removes it or keeps it flagged. No event about it follows.
- ``RouterChanged(router, lifetime)``: a default router was added, or its
  advertised lifetime changed (seconds); None: remove it.
- ``PrefixChanged(network, on_link)``: add or remove an on-link prefix.
- ``LinkParameters(mtu, hop_limit, reachable_time, retrans_timer)``: apply
  each field that is not None (seconds for the two times; the caller hands
  them to its ``NeighbourCache``).
- ``DnsServers(servers)``: the whole current list of recursive DNS servers,
  (address, expiry time), most preferred first, after any change.
- ``Refused(reason, detail)``: something was dropped (a bound was reached
  or a value made no sense); the caller counts ``stats.drop(reason)``.

The caller also does what needs the packet around a message (RFC 4861 6.1.2,
7.1: hop limit 255, a link-local source for router advertisements) and
tells ``on_dad_conflict`` about a neighbour advertisement for a tentative
address, or a DAD solicitation (from ::) for one that is not its own (RFC
4862 5.4.3, 5.4.4). Solicitations from a unicast source for a tentative
address are dropped, not answered (``is_tentative``).
"""

from __future__ import annotations

import enum
import hashlib
import math
import random
from ipaddress import IPv6Address, IPv6Interface, IPv6Network

import attrs

from ..validate import check_int, check_seconds
from ..wire.icmpv6 import INFINITE_LIFETIME, PrefixInformation, RdnssOption, RouterAdvertisement
from ..wire.ipv6 import IPV6_MIN_MTU
from .addresses import AddressState

INF = math.inf
TENTATIVE = AddressState.TENTATIVE
PREFERRED = AddressState.PREFERRED
DEPRECATED = AddressState.DEPRECATED
DUPLICATE = AddressState.DUPLICATE

#: RFC 7217 7: new identifiers tried after a DAD failure, and the bound of
#: the random delay before each.
IDGEN_RETRIES = 3
IDGEN_DELAY = 1.0
#: RFC 4862 5.5.3 (e).
TWO_HOURS = 7200.0
#: RFC 4861 6.2.1: AdvReachableTime is at most an hour; the same sanity
#: bound is put on the retransmission timer.
MAX_ND_TIME_MS = 3_600_000
LINK_LOCAL_PREFIX = IPv6Network("fe80::/64")
_LOOPBACK = IPv6Network("::1/128")
_V4_MAPPED = IPv6Network("::ffff:0:0/96")
UNSPECIFIED = IPv6Address("::")
_IID_MASK = (1 << 64) - 1
_MAX_DAD_COUNTER = 255  # DAD_Counter is hashed as one octet


class AddressOrigin(enum.Enum):
    LINK_LOCAL = "link-local"
    STATIC = "static"
    SLAAC = "slaac"


@attrs.frozen(slots=True)
class AutoconfConfig:
    """Defaults from RFC 4861 10 and RFC 4862 5.1; the bounds are ours."""

    #: DupAddrDetectTransmits; 0 turns DAD off.
    dad_transmits: int = 1
    #: RetransTimer, until a router advertises another.
    retrans_timer: float = 1.0
    rtr_solicitations: int = 3
    rtr_solicitation_interval: float = 4.0
    max_rtr_solicitation_delay: float = 1.0
    #: Form addresses from advertised prefixes (RFC 4862 5.5).
    slaac: bool = True
    #: Prefixes SLAAC forms addresses for; more are refused.
    max_addresses: int = 16
    max_routers: int = 8
    #: On-link prefixes kept.
    max_prefixes: int = 16
    #: RFC 8106 5.3.1: a full list replaces the server expiring first.
    max_dns_servers: int = 3

    def __attrs_post_init__(self) -> None:
        check_int(self.dad_transmits, "dad_transmits", 0, 255)
        check_seconds(self.retrans_timer, "retrans_timer", positive=True)
        check_int(self.rtr_solicitations, "rtr_solicitations", 0)
        check_seconds(self.rtr_solicitation_interval, "rtr_solicitation_interval", positive=True)
        check_seconds(self.max_rtr_solicitation_delay, "max_rtr_solicitation_delay")
        for name in ("max_addresses", "max_routers", "max_prefixes", "max_dns_servers"):
            check_int(getattr(self, name), name, 0)


# --- events ---------------------------------------------------------------


@attrs.frozen(slots=True)
class SendRouterSolicitation:
    source: IPv6Address


@attrs.frozen(slots=True)
class SendDadSolicitation:
    target: IPv6Address


@attrs.frozen(slots=True)
class AddressChanged:
    address: IPv6Interface
    #: None: removed.
    state: AddressState | None
    origin: AddressOrigin


@attrs.frozen(slots=True)
class RouterChanged:
    router: IPv6Address
    #: Advertised router lifetime in seconds; None: no longer a default
    #: router.
    lifetime: float | None


@attrs.frozen(slots=True)
class PrefixChanged:
    network: IPv6Network
    on_link: bool


@attrs.frozen(slots=True)
class LinkParameters:
    """Values a router advertised that differ from those last reported;
    None: keep the current one."""

    mtu: int | None = None
    hop_limit: int | None = None
    #: Seconds: the new BaseReachableTime.
    reachable_time: float | None = None
    #: Seconds: the new RetransTimer.
    retrans_timer: float | None = None


@attrs.frozen(slots=True)
class DnsServers:
    #: (server, expiry time; infinity for ever), most preferred first.
    servers: tuple[tuple[IPv6Address, float], ...]


@attrs.frozen(slots=True)
class Refused:
    #: A stats drop reason, "autoconf.<what>".
    reason: str
    detail: str = ""


Event = (SendRouterSolicitation | SendDadSolicitation | AddressChanged | RouterChanged
         | PrefixChanged | LinkParameters | DnsServers | Refused)


# --- state ----------------------------------------------------------------


@attrs.define(slots=True)
class _Address:
    interface: IPv6Interface
    origin: AddressOrigin
    state: AddressState = TENTATIVE
    #: TENTATIVE: when the next DAD solicitation goes, or DAD ends.
    dad_at: float = INF
    dad_sent: int = 0
    #: The DAD_Counter its identifier was made with (RFC 7217 5) and the
    #: retries after conflicts so far (RFC 7217 6).
    counter: int = 0
    retries: int = 0


@attrs.define(slots=True)
class _Slaac:
    """A prefix SLAAC formed an address for (RFC 4862 5.5.3); kept until
    its valid lifetime ends even when DAD failed for good (``address``
    None), so that later advertisements do not start over."""

    preferred_until: float
    valid_until: float
    address: IPv6Address | None = None


@attrs.define(slots=True)
class _Router:
    lifetime: float
    expires: float


def _seconds(lifetime: int) -> float:
    """An advertised lifetime; all ones is infinity (RFC 4861 4.6.2)."""
    return INF if lifetime == INFINITE_LIFETIME else float(lifetime)


def reserved_iid(iid: int) -> bool:
    """Reserved interface identifiers (RFC 5453 and the IANA registry it
    made): the subnet-router anycast one (0), 0200:5EFF:FE00:0000 to
    0200:5EFF:FEFF:FFFF, and the subnet anycast range FDFF:FFFF:FFFF:FF80
    on (RFC 2526)."""
    return (iid == 0 or 0x02005EFFFE000000 <= iid <= 0x02005EFFFEFFFFFF
            or iid >= 0xFDFFFFFFFFFFFF80)


def stable_iid(prefix: IPv6Network, net_iface: bytes, dad_counter: int, secret: bytes,
               network_id: bytes = b"") -> int:
    """RFC 7217 5: F(Prefix, Net_Iface, Network_ID, DAD_Counter,
    secret_key), with F the first 64 bits of SHA-256 over the
    concatenation (the /64 prefix as 8 octets, the counter as one); the
    identifier is those 64 bits."""
    data = (prefix.network_address.packed[:8] + bytes(net_iface) + network_id
            + bytes((dad_counter,)) + secret)
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


class AddressConfigurator:
    """The IPv6 addresses, default routers, on-link prefixes and DNS
    servers of one interface (see the module docstring for the events).

    ``mac`` is the interface's Ethernet address (RFC 7217's Net_Iface);
    ``rng`` the stack's seeded generator (every delay is drawn from it);
    ``secret`` RFC 7217's secret_key, at least 16 bytes: the same secret
    gives the same addresses on the same link. ``link_mtu``: an advertised
    MTU above it is ignored (RFC 4861 6.3.4).
    """

    def __init__(self, mac: bytes, config: AutoconfConfig | None, rng: random.Random,
                 secret: bytes, *, link_mtu: int | None = None):
        if len(mac) != 6:
            raise ValueError("MAC addresses must be 6 bytes")
        if not isinstance(secret, (bytes, bytearray)) or len(secret) < 16:
            # RFC 7217 5: secret_key SHOULD be at least 128 bits.
            raise ValueError("secret must be at least 16 bytes")
        self.mac = bytes(mac)
        self.config = config or AutoconfConfig()
        self._rng = rng
        self._secret = bytes(secret)
        self._link_mtu = link_mtu
        #: RetransTimer for DAD; a router advertisement may change it.
        self.retrans_timer = self.config.retrans_timer
        self._started = False
        self._addresses: dict[IPv6Address, _Address] = {}
        self._link_local: IPv6Address | None = None
        self._slaac: dict[IPv6Network, _Slaac] = {}
        self._routers: dict[IPv6Address, _Router] = {}
        self._on_link: dict[IPv6Network, float] = {}
        self._dns: dict[IPv6Address, float] = {}
        self._rs_at = INF
        self._rs_sent = 0
        #: The link parameters last reported (mtu, hop limit, reachable
        #: time, retrans timer).
        self._params: list = [None, None, None, None]

    # --- queries ---------------------------------------------------------

    @property
    def link_local(self) -> IPv6Address | None:
        """The current link-local address (tentative or not), None before
        ``start`` or after DAD failed for good."""
        return self._link_local

    def addresses(self) -> dict[IPv6Address, tuple[IPv6Interface, AddressState, AddressOrigin]]:
        return {ip: (a.interface, a.state, a.origin) for ip, a in self._addresses.items()}

    def is_tentative(self, ip: IPv6Address) -> bool:
        address = self._addresses.get(ip)
        return address is not None and address.state is TENTATIVE

    def routers(self) -> dict[IPv6Address, float]:
        """Default routers and when each expires."""
        return {ip: r.expires for ip, r in self._routers.items()}

    def on_link_prefixes(self) -> dict[IPv6Network, float]:
        """On-link prefixes and when each expires."""
        return dict(self._on_link)

    def dns_servers(self) -> tuple[tuple[IPv6Address, float], ...]:
        return tuple(self._dns.items())

    def next_deadline(self) -> float:
        deadline = self._rs_at
        for address in self._addresses.values():
            if address.state is TENTATIVE and address.dad_at < deadline:
                deadline = address.dad_at
        for record in self._slaac.values():
            deadline = min(deadline, record.valid_until)
            address = self._addresses.get(record.address) if record.address is not None else None
            if address is not None and address.state is PREFERRED:
                deadline = min(deadline, record.preferred_until)
        for router in self._routers.values():
            deadline = min(deadline, router.expires)
        for expires in self._on_link.values():
            deadline = min(deadline, expires)
        for expires in self._dns.values():
            deadline = min(deadline, expires)
        return deadline

    # --- addresses -------------------------------------------------------

    def start(self, now: float) -> list[Event]:
        """The interface came up: the link-local address (stable
        identifier) goes TENTATIVE, and its first DAD solicitation and the
        first router solicitation are each delayed by a random time up to
        MAX_RTR_SOLICITATION_DELAY (RFC 4862 5.4.2, RFC 4861 6.3.7)."""
        if self._started:
            raise RuntimeError("already started")
        self._started = True
        config = self.config
        events: list[Event] = []
        self._new_link_local(0, 0, now, config.max_rtr_solicitation_delay, events)
        if config.rtr_solicitations:
            self._rs_at = now + self._rng.uniform(0.0, config.max_rtr_solicitation_delay)
            self._rs_sent = 0
        return events

    def add_address(self, interface: IPv6Interface, now: float) -> list[Event]:
        """A static address: TENTATIVE, DAD starts at once (RFC 4862 5.4)."""
        if not isinstance(interface, IPv6Interface):
            raise TypeError(f"address must be an IPv6Interface, not {type(interface).__name__}")
        ip = interface.ip
        if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
            raise ValueError(f"{ip} cannot be an interface address")
        if ip in self._addresses:
            raise ValueError(f"{ip} is configured already")
        address = _Address(interface, AddressOrigin.STATIC)
        self._addresses[ip] = address
        events: list[Event] = [AddressChanged(interface, TENTATIVE, AddressOrigin.STATIC)]
        self._begin_dad(address, now, 0.0, events)
        return events

    def remove_address(self, ip: IPv6Address, now: float) -> list[Event]:
        """Remove any address (a SLAAC one is formed again by the next
        advertisement of its prefix)."""
        address = self._addresses.pop(ip, None)
        if address is None:
            return []
        if address.origin is AddressOrigin.LINK_LOCAL:
            self._link_local = None
        elif address.origin is AddressOrigin.SLAAC:
            self._slaac.pop(address.interface.network, None)
        return [AddressChanged(address.interface, None, address.origin)]

    def on_dad_conflict(self, ip: IPv6Address, now: float) -> list[Event]:
        """Another node uses or tries ``ip`` (RFC 4862 5.4.3, 5.4.4). A
        tentative address becomes DUPLICATE and is forgotten; a stable
        identifier (link-local or SLAAC) is made again with the next
        DAD_Counter, after a random delay up to IDGEN_DELAY, at most
        IDGEN_RETRIES times (RFC 7217 6). Nothing happens for an address
        that is not tentative (empty list)."""
        address = self._addresses.get(ip)
        if address is None or address.state is not TENTATIVE:
            return []
        del self._addresses[ip]
        origin = address.origin
        events: list[Event] = [AddressChanged(address.interface, DUPLICATE, origin)]
        retries = address.retries + 1
        if origin is AddressOrigin.LINK_LOCAL:
            self._link_local = None
            if retries <= IDGEN_RETRIES:
                self._new_link_local(address.counter + 1, retries, now, IDGEN_DELAY, events)
            else:
                # RFC 4862 5.4.5: the caller may now disable IPv6 here.
                events.append(Refused("autoconf.link_local_duplicate", str(ip)))
        elif origin is AddressOrigin.SLAAC:
            record = self._slaac.get(address.interface.network)
            if record is not None:
                record.address = None
                if retries <= IDGEN_RETRIES:
                    self._form(address.interface.network, record, address.counter + 1, retries,
                               now, IDGEN_DELAY, events)
        return events

    def _new_link_local(self, counter: int, retries: int, now: float, max_delay: float,
                        events: list[Event]) -> None:
        ip = self._new_address(LINK_LOCAL_PREFIX, AddressOrigin.LINK_LOCAL, counter, retries,
                               now, max_delay, events)
        if ip is not None:
            self._link_local = ip

    def _form(self, network: IPv6Network, record: _Slaac, counter: int, retries: int,
              now: float, max_delay: float, events: list[Event]) -> None:
        """RFC 4862 5.5.3 (d): a stable address in ``network``."""
        ip = self._new_address(network, AddressOrigin.SLAAC, counter, retries, now, max_delay,
                               events)
        if ip is not None:
            record.address = ip

    def _new_address(self, network: IPv6Network, origin: AddressOrigin, counter: int,
                     retries: int, now: float, max_delay: float,
                     events: list[Event]) -> IPv6Address | None:
        """A stable address in ``network``, tentative, its DAD begun after
        a random delay up to ``max_delay``; None when no identifier is left."""
        made = self._stable_address(network, counter)
        if made is None:
            events.append(Refused("autoconf.no_identifier", str(network)))
            return None
        ip, counter = made
        address = _Address(IPv6Interface((ip, 64)), origin, counter=counter, retries=retries)
        self._addresses[ip] = address
        events.append(AddressChanged(address.interface, TENTATIVE, origin))
        delay = self._rng.uniform(0.0, max_delay) if max_delay else 0.0
        self._begin_dad(address, now, delay, events)
        return ip

    def _stable_address(self, network: IPv6Network, counter: int) -> tuple[IPv6Address, int] | None:
        """RFC 7217 5: an identifier that is not reserved and not in use in
        the prefix already; either counts as a conflict (next counter)."""
        base = int(network.network_address) & ~_IID_MASK
        while counter <= _MAX_DAD_COUNTER:
            iid = stable_iid(network, self.mac, counter, self._secret)
            ip = IPv6Address(base | iid)
            if not reserved_iid(iid) and ip not in self._addresses:
                return ip, counter
            counter += 1
        return None

    def _begin_dad(self, address: _Address, now: float, delay: float,
                   events: list[Event]) -> None:
        address.dad_sent = 0
        address.dad_at = now + delay
        if delay <= 0 or not self.config.dad_transmits:
            self._dad_step(address, now, events)

    def _dad_step(self, address: _Address, now: float, events: list[Event]) -> None:
        """RFC 4862 5.4.2: DupAddrDetectTransmits solicitations RetransTimer
        apart; unique once RetransTimer passed after the last one."""
        if address.dad_sent < self.config.dad_transmits:
            address.dad_sent += 1
            address.dad_at = now + self.retrans_timer
            events.append(SendDadSolicitation(address.interface.ip))
            return
        address.dad_at = INF
        address.state = PREFERRED
        if address.origin is AddressOrigin.SLAAC:
            record = self._slaac.get(address.interface.network)
            if record is not None and record.preferred_until <= now:
                address.state = DEPRECATED
        events.append(AddressChanged(address.interface, address.state, address.origin))

    # --- routers ---------------------------------------------------------

    def on_router_advertisement(self, ra: RouterAdvertisement, source: IPv6Address,
                                now: float) -> list[Event]:
        """RFC 4861 6.3.4 for a valid advertisement from ``source``; the
        neighbour cache's part (``NeighbourCache.on_router``) is the
        caller's."""
        if not source.is_link_local:
            return [Refused("autoconf.ra_source", str(source))]  # RFC 4861 6.1.2
        if not 0 <= ra.router_lifetime <= 0xFFFF:
            return [Refused("autoconf.bad_router_lifetime", str(ra.router_lifetime))]
        events: list[Event] = []
        if ra.router_lifetime:
            # RFC 4861 6.3.7: a default router answered: no more solicitations.
            self._rs_at = INF
        self._router(source, ra.router_lifetime, now, events)
        self._link_parameters(ra, events)
        for option in ra.prefixes:
            self._prefix(option, now, events)
        if ra.rdnss:
            self._rdnss(ra.rdnss, now, events)
        return events

    def remove_router(self, router: IPv6Address, now: float) -> list[Event]:
        """Drop ``router`` from the default router list, as when its
        neighbour entry's IsRouter flag went false (RFC 4861 7.2.5)."""
        if self._routers.pop(router, None) is None:
            return []
        return [RouterChanged(router, None)]

    def _router(self, source: IPv6Address, lifetime: int, now: float,
                events: list[Event]) -> None:
        router = self._routers.get(source)
        if not lifetime:
            # RFC 4861 6.3.4: a zero lifetime times the router out at once.
            if router is not None:
                del self._routers[source]
                events.append(RouterChanged(source, None))
            return
        if router is None:
            if len(self._routers) >= self.config.max_routers:
                events.append(Refused("autoconf.too_many_routers", str(source)))
                return
            self._routers[source] = _Router(float(lifetime), now + lifetime)
            events.append(RouterChanged(source, float(lifetime)))
            return
        router.expires = now + lifetime
        if router.lifetime != lifetime:
            router.lifetime = float(lifetime)
            events.append(RouterChanged(source, float(lifetime)))

    def _link_parameters(self, ra: RouterAdvertisement, events: list[Event]) -> None:
        mtu = hop_limit = reachable = retrans = None
        if ra.mtu is not None:
            # RFC 4861 6.3.4: at least the IPv6 minimum, at most the link's.
            if ra.mtu < IPV6_MIN_MTU or (self._link_mtu is not None and ra.mtu > self._link_mtu):
                events.append(Refused("autoconf.bad_mtu", str(ra.mtu)))
            else:
                mtu = ra.mtu
        if 0 < ra.cur_hop_limit <= 255:
            hop_limit = ra.cur_hop_limit
        if ra.reachable_time:
            if ra.reachable_time > MAX_ND_TIME_MS:
                events.append(Refused("autoconf.bad_reachable_time", str(ra.reachable_time)))
            else:
                reachable = ra.reachable_time / 1000.0
        if ra.retrans_timer:
            if ra.retrans_timer > MAX_ND_TIME_MS:
                events.append(Refused("autoconf.bad_retrans_timer", str(ra.retrans_timer)))
            else:
                retrans = ra.retrans_timer / 1000.0
                self.retrans_timer = retrans
        new = [mtu, hop_limit, reachable, retrans]
        changed = [v if v is not None and v != old else None
                   for v, old in zip(new, self._params)]
        if any(v is not None for v in changed):
            self._params = [v if v is not None else old for v, old in zip(new, self._params)]
            events.append(LinkParameters(*changed))

    # --- prefixes --------------------------------------------------------

    def _prefix(self, option: PrefixInformation, now: float, events: list[Event]) -> None:
        network = option.network
        first = network.network_address
        if first.is_link_local:
            # RFC 4861 6.3.4, RFC 4862 5.5.3 (b): the link-local prefix.
            events.append(Refused("autoconf.prefix_link_local", str(network)))
            return
        if (first.is_multicast or first.is_unspecified or network.subnet_of(_LOOPBACK)
                or network.overlaps(_V4_MAPPED)):
            # Not a prefix of this link: multicast, ::/0 and ::, ::1, IPv4-mapped (RFC 4291 2.5).
            events.append(Refused("autoconf.bad_prefix", str(network)))
            return
        valid = _seconds(option.valid_lifetime)
        preferred = _seconds(option.preferred_lifetime)
        if preferred > valid:
            # RFC 4862 5.5.3 (c); an on-link prefix with them is no saner.
            events.append(Refused("autoconf.bad_prefix_lifetimes", str(network)))
            return
        if option.on_link:
            self._on_link_prefix(network, valid, now, events)
        if option.autonomous and self.config.slaac:
            self._slaac_prefix(network, valid, preferred, now, events)

    def _on_link_prefix(self, network: IPv6Network, valid: float, now: float,
                        events: list[Event]) -> None:
        """RFC 4861 6.3.4: add, refresh, or (lifetime 0) time out at once."""
        if network in self._on_link:
            if valid:
                self._on_link[network] = now + valid
            else:
                del self._on_link[network]
                events.append(PrefixChanged(network, False))
        elif valid:
            if len(self._on_link) >= self.config.max_prefixes:
                events.append(Refused("autoconf.too_many_prefixes", str(network)))
                return
            self._on_link[network] = now + valid
            events.append(PrefixChanged(network, True))

    def _slaac_prefix(self, network: IPv6Network, valid: float, preferred: float, now: float,
                      events: list[Event]) -> None:
        if network.prefixlen != 64:
            # RFC 4862 5.5.3 (d): prefix and identifier must make 128 bits
            # (64-bit identifiers on Ethernet, RFC 2464 4).
            events.append(Refused("autoconf.prefix_length", str(network)))
            return
        record = self._slaac.get(network)
        if record is None:
            if not valid:
                return  # RFC 4862 5.5.3 (d): nothing to form
            if len(self._slaac) >= self.config.max_addresses:
                events.append(Refused("autoconf.too_many_addresses", str(network)))
                return
            record = _Slaac(now + preferred, now + valid)
            self._slaac[network] = record
            self._form(network, record, 0, 0, now, 0.0, events)
            return
        # RFC 4862 5.5.3 (e): the preferred lifetime is reset; the valid
        # lifetime only within the two-hour rule.
        record.preferred_until = now + preferred
        remaining = record.valid_until - now
        if valid > TWO_HOURS or valid > remaining:
            record.valid_until = now + valid
        elif remaining > TWO_HOURS:
            record.valid_until = now + TWO_HOURS
        # (remaining <= two hours: the advertised valid lifetime is ignored)
        address = self._addresses.get(record.address) if record.address is not None else None
        if address is None:
            return
        if address.state is PREFERRED and record.preferred_until <= now:
            address.state = DEPRECATED  # RFC 4862 5.5.4
            events.append(AddressChanged(address.interface, DEPRECATED, address.origin))
        elif address.state is DEPRECATED and record.preferred_until > now:
            address.state = PREFERRED  # a renewed preferred lifetime
            events.append(AddressChanged(address.interface, PREFERRED, address.origin))

    # --- DNS servers -----------------------------------------------------

    def _rdnss(self, options: tuple[RdnssOption, ...], now: float, events: list[Event]) -> None:
        """RFC 8106 5.3.1: add or refresh each server; lifetime 0 removes
        it; a full list replaces the entry expiring first."""
        before = tuple(self._dns.items())
        limit = self.config.max_dns_servers
        for option in options:
            lifetime = _seconds(option.lifetime)
            for server in option.addresses:
                if server.is_multicast or server.is_unspecified or server.is_loopback:
                    events.append(Refused("autoconf.bad_dns_server", str(server)))
                    continue
                if not lifetime:
                    self._dns.pop(server, None)
                elif server in self._dns:
                    self._dns[server] = now + lifetime
                elif limit:
                    if len(self._dns) >= limit:
                        del self._dns[min(self._dns, key=self._dns.__getitem__)]
                    self._dns[server] = now + lifetime
                else:
                    events.append(Refused("autoconf.too_many_dns_servers", str(server)))
        if tuple(self._dns.items()) != before:
            events.append(DnsServers(tuple(self._dns.items())))

    # --- timers ----------------------------------------------------------

    def poll(self, now: float) -> list[Event]:
        """Every timer due at ``now``, each consumed: lifetimes first, then
        DAD, then router solicitation (which may use a link-local address
        that DAD just confirmed)."""
        events: list[Event] = []
        for network, record in list(self._slaac.items()):
            address = self._addresses.get(record.address) if record.address is not None else None
            if record.valid_until <= now:
                # RFC 4862 5.5.4: the valid lifetime ended: removed.
                del self._slaac[network]
                if address is not None:
                    del self._addresses[record.address]
                    events.append(AddressChanged(address.interface, None, address.origin))
            elif (address is not None and address.state is PREFERRED
                  and record.preferred_until <= now):
                address.state = DEPRECATED  # RFC 4862 5.5.4
                events.append(AddressChanged(address.interface, DEPRECATED, address.origin))
        for address in list(self._addresses.values()):
            if address.state is TENTATIVE and address.dad_at <= now:
                self._dad_step(address, now, events)
        if self._rs_at <= now:
            events.append(SendRouterSolicitation(self._rs_source()))
            self._rs_sent += 1
            self._rs_at = (now + self.config.rtr_solicitation_interval
                           if self._rs_sent < self.config.rtr_solicitations else INF)
        for ip, router in list(self._routers.items()):
            if router.expires <= now:
                del self._routers[ip]
                events.append(RouterChanged(ip, None))
        for network, expires in list(self._on_link.items()):
            if expires <= now:
                del self._on_link[network]
                events.append(PrefixChanged(network, False))
        if any(expires <= now for expires in self._dns.values()):
            self._dns = {ip: t for ip, t in self._dns.items() if t > now}
            events.append(DnsServers(tuple(self._dns.items())))
        return events

    def _rs_source(self) -> IPv6Address:
        # RFC 4861 6.3.7, RFC 4862 5.4: a tentative address is not a source.
        address = self._addresses.get(self._link_local) if self._link_local is not None else None
        if address is not None and address.state in (PREFERRED, DEPRECATED):
            return address.interface.ip
        return UNSPECIFIED
