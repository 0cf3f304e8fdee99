"""Initial sequence numbers (RFC 6528)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable

from ..transport.ports import address_bytes

_MASK32 = 0xFFFFFFFF


class IsnGenerator:
    """ISN = M + F(localip, localport, remoteip, remoteport, secretkey)
    (RFC 6528 3): M is a timer ticking every 4 microseconds, F a keyed
    BLAKE2s hash of the 4-tuple. Every stack gets its own secret."""

    def __init__(self, secret: bytes | None = None, clock: Callable[[], float] = time.monotonic):
        if secret is None:
            secret = os.urandom(32)
        elif len(secret) > 32:  # blake2s keys are at most 32 bytes
            secret = hashlib.blake2s(secret).digest()
        self._key = secret
        self._clock = clock

    def isn(self, local_ip, local_port: int, remote_ip, remote_port: int) -> int:
        h = hashlib.blake2s(key=self._key, digest_size=4)
        h.update(address_bytes(local_ip))
        h.update(local_port.to_bytes(2, "big"))
        h.update(address_bytes(remote_ip))
        h.update(remote_port.to_bytes(2, "big"))
        m = int(self._clock() * 250_000)  # 4 us ticks
        return (m + int.from_bytes(h.digest(), "big")) & _MASK32

    __call__ = isn
