"""The interface layer: a link with its addresses, its NIC task, and
neighbour resolution (ARP for IPv4)."""

from .arp import ArpCache, ArpConfig
from .interface import AddressState, Callbacks, Interface, InterfaceAddress

__all__ = ["AddressState", "ArpCache", "ArpConfig", "Callbacks", "Interface", "InterfaceAddress"]
