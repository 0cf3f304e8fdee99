"""trionet: a userspace TCP/IP stack in pure Python on Trio.

The public names below are imported on first use, so that importing one
layer (``trionet.wire``, ``trionet.tcp.connection``) does not import the
others, nor Trio or python-pytun.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "AddressState": "trionet.interface.addresses",
    "ArpConfig": "trionet.interface.arp",
    "AutoconfConfig": "trionet.interface.autoconf",
    "Capture": "trionet.link.capture",
    "DhcpConfig": "trionet.dhcp.client",
    "DhcpLease": "trionet.dhcp.machine",
    "Interface": "trionet.interface.interface",
    "InterfaceAddress": "trionet.interface.addresses",
    "Listener": "trionet.tcp.listener",
    "LoopbackLink": "trionet.link.loopback",
    "NdpConfig": "trionet.interface.ndp",
    "ReassemblyConfig": "trionet.network.fragments",
    "Route": "trionet.network.routes",
    "Stack": "trionet.api.stack",
    "Stats": "trionet.stats",
    "Stream": "trionet.tcp.stream",
    "TapLink": "trionet.link.tap",
    "TcpConfig": "trionet.tcp.config",
    "TcpForwarder": "trionet.tcp.listener",
    "TcpState": "trionet.tcp.config",
    "TunLink": "trionet.link.tun",
    "UdpForwarder": "trionet.transport.udp",
    "UdpSocket": "trionet.transport.udp",
    "UdpTunnelLink": "trionet.link.tunnel",
    "virtual_cable": "trionet.link.cable",
    "use_stack": "trionet.api.sockets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trionet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
