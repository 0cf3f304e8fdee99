"""Initial sequence numbers (RFC 6528) and ephemeral ports (RFC 6056)."""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Callable

_MASK32 = 0xFFFFFFFF


def _key(secret: bytes | None, rng) -> bytes:
    if secret is None:
        return rng.randbytes(32) if rng is not None else os.urandom(32)
    if len(secret) > 32:  # blake2s keys are at most 32 bytes
        return hashlib.blake2s(secret).digest()
    return secret


def _addr_bytes(ip) -> bytes:
    return ip.packed if hasattr(ip, "packed") else str(ip).encode()


class IsnGenerator:
    """ISN = M + F(localip, localport, remoteip, remoteport, secretkey)
    (RFC 6528 3): M is a timer ticking every 4 microseconds, F a keyed
    BLAKE2s hash of the 4-tuple. Every stack gets its own secret."""

    def __init__(self, secret: bytes | None = None, clock: Callable[[], float] = time.monotonic):
        self._key = _key(secret, None)
        self._clock = clock

    def isn(self, local_ip, local_port: int, remote_ip, remote_port: int) -> int:
        h = hashlib.blake2s(key=self._key, digest_size=4)
        h.update(_addr_bytes(local_ip))
        h.update(local_port.to_bytes(2, "big"))
        h.update(_addr_bytes(remote_ip))
        h.update(remote_port.to_bytes(2, "big"))
        m = int(self._clock() * 250_000)  # 4 us ticks
        return (m + int.from_bytes(h.digest(), "big")) & _MASK32

    __call__ = isn


class EphemeralPortAllocator:
    """RFC 6056 3.3.4, Algorithm 4 ("double-hash port selection").

    A keyed hash F(local IP, remote IP, remote port) gives the starting offset,
    so different destinations see unrelated port sequences; a second keyed
    hash G picks one of ``table_size`` counters that advances on every
    allocation, so successive connections to the same destination do not
    reuse a port too soon.
    """

    TABLE_SIZE = 256

    def __init__(self, low: int = 32768, high: int = 60999, secret: bytes | None = None,
                 rng=None):
        if not 0 < low <= high <= 65535:
            raise ValueError(f"bad ephemeral port range {low}-{high}")
        self.low = low
        self.high = high
        key = _key(secret, rng)
        self._key_f = hashlib.blake2s(key + b"F").digest()
        self._key_g = hashlib.blake2s(key + b"G").digest()
        self._table = [0] * self.TABLE_SIZE

    def _hash(self, key: bytes, local_ip, remote_ip, remote_port: int) -> int:
        h = hashlib.blake2s(key=key, digest_size=4)
        h.update(_addr_bytes(local_ip))
        h.update(_addr_bytes(remote_ip))
        h.update(remote_port.to_bytes(2, "big"))
        return int.from_bytes(h.digest(), "big")

    def allocate(self, local_ip, remote_ip, remote_port: int,
                 in_use: Callable[[int], bool]) -> int:
        num = self.high - self.low + 1
        offset = self._hash(self._key_f, local_ip, remote_ip, remote_port)
        index = self._hash(self._key_g, local_ip, remote_ip, remote_port) % self.TABLE_SIZE
        start = self._table[index]
        for i in range(num):
            port = self.low + (offset + start + i) % num
            if not in_use(port):
                self._table[index] = start + i + 1
                return port
        raise OSError(errno.EADDRNOTAVAIL, "no free ephemeral port")
