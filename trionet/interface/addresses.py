"""An interface's addresses and their states (RFC 4862 5.5.4 names them)."""

from __future__ import annotations

import enum
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

import attrs

_LINK_LOCAL_TOP10 = 0x3FA  # fe80::/10


class AddressState(str, enum.Enum):
    """An address's life: IPv4 addresses are preferred from the start; an
    IPv6 one is tentative until duplicate address detection passes (RFC
    4862 5.4), then preferred, deprecated once its preferred lifetime ends
    (still used, but not for new connections), or duplicate (never used).
    Each is also its name as a string: ``state == "preferred"``."""
    TENTATIVE = "tentative"
    PREFERRED = "preferred"
    DEPRECATED = "deprecated"
    DUPLICATE = "duplicate"


#: States in which an address may be used (RFC 4862 5.5.4).
USABLE = frozenset({AddressState.PREFERRED, AddressState.DEPRECATED})


@attrs.define(slots=True, eq=False)
class InterfaceAddress:
    """One address of an interface, with its prefix, its state, and (for an
    IPv6 link-local address) the interface's name as its scope."""
    interface: IPv4Interface | IPv6Interface
    state: AddressState = AddressState.PREFERRED
    #: Where it came from: "static", "link-local", "slaac", "dhcp".
    origin: str = "static"
    scope: str | None = None

    @property
    def ip(self):
        """The address; a link-local IPv6 one carries its interface as scope."""
        ip = self.interface.ip
        if self.scope is not None and ip.version == 6 and int(ip) >> 118 == _LINK_LOCAL_TOP10:
            return IPv6Address(f"{ip}%{self.scope}")
        return ip

    @property
    def network(self):
        return self.interface.network

    @property
    def version(self) -> int:
        return self.interface.version

    @property
    def usable(self) -> bool:
        return self.state in USABLE

    @property
    def broadcast(self) -> IPv4Address | None:
        """The directed broadcast address; None for IPv6 and on /31 and /32,
        which have none (RFC 3021: both addresses of a /31 are hosts)."""
        network = self.interface.network
        if network.version != 4 or network.prefixlen >= 31:
            return None
        return network.broadcast_address

    def __repr__(self) -> str:
        return f"<{self.interface} {self.state.value}>"


_LIMITED_BROADCAST = IPv4Address("255.255.255.255")


def parse_host_address(value, *, loopback_link: bool = False) -> IPv4Interface | IPv6Interface:
    """A host's address with its prefix, of either family; ValueError naming
    ``address`` for one that cannot be a host's (RFC 1122 3.2.1.3, RFC
    4291 2.5/2.7; ::1 only on a ``loopback_link``)."""
    from ipaddress import ip_interface

    if isinstance(value, (IPv4Interface, IPv6Interface)):
        parsed = value
    else:
        if not isinstance(value, str) or "/" not in value:
            raise ValueError(f"address: {value!r} is not an address with a prefix "
                             "(e.g. '10.0.0.2/24' or 'fd00::2/64')")
        try:
            parsed = ip_interface(value)
        except ValueError:
            raise ValueError(f"address: {value!r} is not an address with a prefix "
                             "(e.g. '10.0.0.2/24' or 'fd00::2/64')") from None
    ip, network = parsed.ip, parsed.network
    if ip.is_multicast or ip.is_unspecified or ip == _LIMITED_BROADCAST:
        raise ValueError(f"address: {ip} cannot be a host's address")
    if ip.version == 4:
        if network.prefixlen < 31 and ip in (network.network_address, network.broadcast_address):
            which = "network" if ip == network.network_address else "broadcast"
            raise ValueError(f"address: {ip} is the {which} address of {network}, "
                             "not a host on it")
    elif ip.is_loopback and not loopback_link:
        # RFC 4291 2.5.3: never assigned to a physical interface.
        raise ValueError(f"address: {ip} is the loopback address: only a loopback link holds it")
    elif network.prefixlen < 127 and ip == network.network_address:
        # RFC 4291 2.6.1: the subnet-router anycast address.
        raise ValueError(f"address: {ip} is the subnet-router anycast address of {network}")
    return parsed
