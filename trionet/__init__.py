"""trionet: a userspace TCP/IP stack in pure Python on Trio."""

from .arp import ArpConfig
from .interface import Interface
from .ipv4 import ReassemblyConfig
from . import link
from .link import Capture, LoopbackLink, TapLink, UdpTunnelLink, virtual_cable
from .route import Route
from .stack import Stack
from .stats import Stats
from .tcp.connection import TcpConfig, TcpState
from .tcp.listener import Listener
from .tcp.stream import Stream
from .udp import UdpSocket

__version__ = "0.1.0"

__all__ = [
    "ArpConfig", "Capture", "Interface", "Listener", "LoopbackLink", "ReassemblyConfig", "Route",
    "Stack", "Stats", "Stream", "TapLink", "TcpConfig", "TcpState", "UdpSocket", "UdpTunnelLink",
    "virtual_cable",
]
