"""trionet: a userspace TCP/IP stack in pure Python on Trio."""

from .arp import ArpConfig
from .interface import Interface
from .ipv4 import ReassemblyConfig
from .link import Capture, LoopbackLink, TapLink, UdpTunnelLink, virtual_cable
from .route import Route
from .stack import Stack
from .stats import Stats
from .udp import UdpSocket

__version__ = "0.1.0"

__all__ = [
    "ArpConfig", "Capture", "Interface", "LoopbackLink", "ReassemblyConfig", "Route", "Stack",
    "Stats", "TapLink", "UdpSocket", "UdpTunnelLink", "virtual_cable",
]
