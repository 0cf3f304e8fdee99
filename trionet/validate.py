"""Argument checks shared by every public entry point.

Each returns the value (converted where that is the point: a port, a float
of seconds, an ``ipaddress`` object) or raises ``TypeError`` for a value of
the wrong type and ``ValueError`` for one out of range, naming the argument.
Imports nothing else of trionet, so every layer may use it.
"""

from __future__ import annotations

import math
from ipaddress import (IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address,
                       ip_network)
from typing import Any

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


def _type_name(value: Any) -> str:
    return type(value).__name__


def check_int(value: Any, what: str, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {_type_name(value)} {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = (f"at least {minimum}" if maximum is None else
                  f"at most {maximum}" if minimum is None else f"in {minimum}-{maximum}")
        raise ValueError(f"{what} must be {bounds}, not {value!r}")
    return value


def check_number(value: Any, what: str) -> float:
    """``value`` as a float (an int or a float, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, not {_type_name(value)} {value!r}")
    return float(value)


def check_seconds(value: Any, what: str, *, positive: bool = False,
                  allow_inf: bool = False) -> float:
    """``value`` as a number of seconds: >= 0 (> 0 if ``positive``), finite
    unless ``allow_inf``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {_type_name(value)}")
    value = float(value)
    if math.isnan(value) or value < 0 or (positive and value == 0) or (
            math.isinf(value) and not allow_inf):
        raise ValueError(f"{what} must be a {'positive' if positive else 'non-negative'} "
                         f"{'' if allow_inf else 'finite '}number of seconds, not {value}")
    return value


def check_probability(value: Any, what: str) -> float:
    value = check_number(value, what)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be a probability in [0, 1], not {value!r}")
    return value


def check_flag(value: Any, what: str) -> bool:
    """A bool (0 and 1 are taken too, as setsockopt takes them)."""
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{what} must be a bool, not {value!r}")


def check_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {_type_name(value)}")
    return value


def check_port(port: Any, what: str = "port", *, allow_zero: bool = True) -> int:
    """A TCP/UDP port: 1-65535, or 0 ("pick one") where ``allow_zero``."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"{what} must be an int, not {_type_name(port)}")
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ValueError(f"{what} {port} is out of range 1-65535")
    return port


def parse_address(value: Any, what: str = "address") -> IPAddress:
    """An ``ipaddress`` address from a string or an address."""
    if isinstance(value, (IPv4Address, IPv6Address)):
        return value
    if value == "localhost":
        return IPv4Address("127.0.0.1")
    try:
        return ip_address(value)
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not an IP address") from None


def parse_network(value: Any, what: str = "network") -> IPNetwork:
    """An ``ipaddress`` network from "10.1.0.0/16" or a network (host bits
    may be set: they are cleared)."""
    try:
        return ip_network(value, strict=False)
    except (ValueError, TypeError):
        raise ValueError(f"{what}: {value!r} is not a network (e.g. '10.1.0.0/16')") from None
