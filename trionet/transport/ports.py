"""Ephemeral ports (RFC 6056), for every transport."""

from __future__ import annotations

import errno
import hashlib
import os
import random
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

#: RFC 6056 2.1 suggests 1024-65535; Linux's default range (ip_local_port_range).
EPHEMERAL_LOW = 32768
EPHEMERAL_HIGH = 60999


#: A binding's address: one of ours, a family's wildcard (0.0.0.0, or ::
#: for an IPV6_V6ONLY socket) or None (every address of both families).
ANY_IPV4 = IPv4Address(0)
ANY_IPV6 = IPv6Address(0)


def family_wildcard(address) -> IPv4Address | IPv6Address:
    """The wildcard of ``address``'s family (a key bindings are looked up by)."""
    return ANY_IPV4 if address.version == 4 else ANY_IPV6


def bindings_overlap(a, b) -> bool:
    """Whether two bindings of one port would take the same datagrams
    (as BSD sockets: a wildcard covers its family, None both)."""
    if a is None or b is None:
        return True
    if a.version != b.version:
        return False
    return a == b or a.is_unspecified or b.is_unspecified


def address_bytes(ip) -> bytes:
    """An address (or None: "any") as bytes to hash."""
    return ip.packed if hasattr(ip, "packed") else str(ip).encode()


class EphemeralPortAllocator:
    """RFC 6056 3.3.4, Algorithm 4 ("double-hash port selection").

    A keyed hash F(local IP, remote IP, remote port) gives the starting offset,
    so different destinations see unrelated port sequences; a second keyed
    hash G picks one of ``table_size`` counters that advances on every
    allocation, so successive connections to the same destination do not
    reuse a port too soon. ``secret`` comes from the stack (its seed makes
    the ports repeatable); without one, from ``rng`` or the OS.
    """

    TABLE_SIZE = 256

    def __init__(self, low: int = EPHEMERAL_LOW, high: int = EPHEMERAL_HIGH,
                 secret: bytes | None = None, rng: random.Random | None = None):
        if not 0 < low <= high <= 65535:
            raise ValueError(f"bad ephemeral port range {low}-{high}")
        self.low = low
        self.high = high
        if secret is None:
            secret = rng.randbytes(32) if rng is not None else os.urandom(32)
        self._random = random.Random(hashlib.blake2s(secret + b"R").digest())
        self._key_f = hashlib.blake2s(secret + b"F").digest()
        self._key_g = hashlib.blake2s(secret + b"G").digest()
        self._table = [0] * self.TABLE_SIZE

    def _hash(self, key: bytes, local_ip, remote_ip, remote_port: int) -> int:
        h = hashlib.blake2s(key=key, digest_size=4)
        h.update(address_bytes(local_ip))
        h.update(address_bytes(remote_ip))
        h.update(remote_port.to_bytes(2, "big"))
        return int.from_bytes(h.digest(), "big")

    def allocate(self, local_ip, remote_ip, remote_port: int,
                 in_use: Callable[[int], bool]) -> int:
        """A port for a socket from ``local_ip`` to (``remote_ip``,
        ``remote_port``) (None and 0 for a socket not connected) that
        ``in_use`` says is free; OSError(EADDRNOTAVAIL) when none is."""
        num = self.high - self.low + 1
        if remote_ip is None:
            # Not connected (bind to port 0): RFC 6056 3.3.1, Algorithm 1,
            # random tries, then a scan from a random place.
            for _ in range(min(num, 64)):
                port = self._random.randint(self.low, self.high)
                if not in_use(port):
                    return port
            offset = self._random.randrange(num)
            for i in range(num):
                port = self.low + (offset + i) % num
                if not in_use(port):
                    return port
            raise OSError(errno.EADDRNOTAVAIL, "no free ephemeral port")
        offset = self._hash(self._key_f, local_ip, remote_ip, remote_port)
        index = self._hash(self._key_g, local_ip, remote_ip, remote_port) % self.TABLE_SIZE
        start = self._table[index]
        for i in range(num):
            port = self.low + (offset + start + i) % num
            if not in_use(port):
                self._table[index] = start + i + 1
                return port
        raise OSError(errno.EADDRNOTAVAIL, "no free ephemeral port")
