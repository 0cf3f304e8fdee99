"""Links: whole Ethernet frames in and out (TAP, loopback, in-memory cable,
an in-memory switch, Ethernet over UDP, and a pcap-writing wrapper), or
bare IP packets (TUN)."""

from .base import Link
from .cable import CableEnd, virtual_cable
from .capture import Capture, PcapWriter, read_pcap
from .loopback import LoopbackLink
from .switch import Switch, SwitchPort
from .tap import TapLink
from .tun import TunLink
from .tunnel import UdpTunnelLink

__all__ = [
    "Link",
    "LoopbackLink",
    "virtual_cable",
    "CableEnd",
    "TapLink",
    "TunLink",
    "UdpTunnelLink",
    "Capture",
    "PcapWriter",
    "read_pcap",
    "Switch",
    "SwitchPort",
]
