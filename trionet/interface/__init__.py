"""The interface layer: a link with its addresses, its NIC task, and
neighbour resolution (ARP for IPv4; Neighbor Discovery, multicast
listening and address autoconfiguration for IPv6)."""

from .addresses import AddressState, InterfaceAddress, parse_host_address
from .arp import ArpCache, ArpConfig
from .autoconf import AutoconfConfig
from .interface import Callbacks, Interface
from .ndp import NdpConfig

__all__ = ["AddressState", "ArpCache", "ArpConfig", "AutoconfConfig", "Callbacks", "Interface",
           "InterfaceAddress", "NdpConfig", "parse_host_address"]
