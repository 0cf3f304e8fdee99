"""The network layer: routes and paths, IPv4 input, output, forwarding,
fragmentation and reassembly, and ICMP."""

from .fragments import Reassembler, ReassemblyConfig, fragment
from .icmp import ErrorKind, IcmpError
from .layer import NetworkLayer
from .routes import Path, Route, RouteTable

__all__ = ["ErrorKind", "IcmpError", "NetworkLayer", "Path", "Reassembler", "ReassemblyConfig",
           "Route", "RouteTable", "fragment"]
