"""SYN cookies (RFC 4987 3.6), laid out as Linux does (tcp_syncookies.c).

When a listener's SYN queue is full, the SYN-ACK is sent without keeping
any state: its ISN is the cookie

    ISN = H1(4-tuple) + SEG.SEQ + (count << 24)
          + ((H2(4-tuple, SEG.SEQ, count) + mss_index) mod 2**24)

where ``count`` is a coarse clock (one tick every ``PERIOD`` seconds), H1
and H2 keyed hashes (BLAKE2s, a secret per stack) and ``mss_index`` picks
the MSS from ``MSS_TABLE``. The returning ACK acknowledges ISN + 1: the
cookie is valid if its counter is at most ``MAX_AGE - 1`` ticks old and the
low 24 bits then decode to a valid MSS index. (Unlike Linux, H2 also covers
the client's ISN, so an ACK with another SEG.SEQ does not decode to another
MSS: it fails.)

Window scale and SACK-permitted do not fit in the ISN. When the SYN carries
timestamps (RFC 7323), they travel in the low 6 bits of our TSval (as
Linux's cookie_init_timestamp): the peer echoes them in TSecr. Without
timestamps they are lost: the cookie SYN-ACK offers neither window scaling
nor SACK, so the connection runs without them (as on Linux).
"""

from __future__ import annotations

import hashlib

_M32 = 0xFFFFFFFF
_COOKIE_BITS = 24
_COOKIE_MASK = (1 << _COOKIE_BITS) - 1

#: MSS values a cookie can carry (Linux's msstab for IPv4, msstab for IPv6
#: in syncookies.c); the peer's MSS is rounded down to one of them (the
#: first if it is smaller than every one).
MSS_TABLE = (536, 1300, 1440, 1460)
MSS_TABLE_V6 = (1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60)
#: Seconds per counter tick (Linux: 60).
PERIOD = 64.0
#: A cookie is valid while its counter is at most MAX_AGE - 1 ticks old:
#: between PERIOD and MAX_AGE * PERIOD seconds (Linux MAX_SYNCOOKIE_AGE).
MAX_AGE = 2

# Timestamp option bits (Linux TSBITS): window scale in the low 4 (15 = none),
# SACK-permitted in bit 4.
_TS_BITS = 6
_TS_MASK = (1 << _TS_BITS) - 1
_WSCALE_NONE = 0xF
_SACK_BIT = 1 << 4


def _addr(ip) -> bytes:
    return ip.packed if hasattr(ip, "packed") else str(ip).encode()


class SynCookies:
    """Cookie encode/decode for one stack (its own secret)."""

    def __init__(self, secret: bytes):
        base = hashlib.blake2s(b"trionet syncookies " + secret).digest()
        self._k1 = hashlib.blake2s(base + b"1").digest()
        self._k2 = hashlib.blake2s(base + b"2").digest()
        self._kts = hashlib.blake2s(base + b"ts").digest()

    @staticmethod
    def counter(now: float) -> int:
        return int(now // PERIOD)

    def _hash(self, key: bytes, local, remote, count: int | None = None,
              client_isn: int = 0) -> int:
        h = hashlib.blake2s(key=key, digest_size=4)
        h.update(_addr(local[0]))
        h.update(local[1].to_bytes(2, "big"))
        h.update(_addr(remote[0]))
        h.update(remote[1].to_bytes(2, "big"))
        if count is not None:
            h.update((count & _M32).to_bytes(4, "big"))
            h.update(client_isn.to_bytes(4, "big"))
        return int.from_bytes(h.digest(), "big")

    @staticmethod
    def mss_index(peer_mss: int | None, version: int = 4) -> int:
        """Index of the largest table MSS not above the peer's (RFC 9293
        3.7.1: 536 when the SYN had no MSS option; RFC 8200 5: 1220 for IPv6)."""
        table = MSS_TABLE if version == 4 else MSS_TABLE_V6
        mss = (536 if version == 4 else 1220) if peer_mss is None else peer_mss
        for i in range(len(table) - 1, 0, -1):
            if mss >= table[i]:
                return i
        return 0

    def encode(self, local, remote, client_isn: int, peer_mss: int | None, now: float) -> int:
        """The ISN of a cookie SYN-ACK answering a SYN from ``remote`` (an
        (ip, port) pair) to ``local`` with sequence number ``client_isn``."""
        count = self.counter(now)
        data = self.mss_index(peer_mss, local[0].version)
        return (self._hash(self._k1, local, remote) + client_isn + ((count & 0xFF) << _COOKIE_BITS)
                + ((self._hash(self._k2, local, remote, count, client_isn) + data)
                   & _COOKIE_MASK)) & _M32

    def decode(self, local, remote, client_isn: int, cookie: int, now: float) -> int | None:
        """The MSS a valid cookie carries, or None (forged, for another
        4-tuple or client ISN, or older than MAX_AGE ticks). ``client_isn``
        is SEG.SEQ - 1 of the ACK, ``cookie`` its SEG.ACK - 1."""
        count = self.counter(now)
        value = (cookie - self._hash(self._k1, local, remote) - client_isn) & _M32
        diff = (count - (value >> _COOKIE_BITS)) & 0xFF
        if diff >= MAX_AGE:
            return None
        data = (value - self._hash(self._k2, local, remote, count - diff, client_isn)) \
            & _COOKIE_MASK
        table = MSS_TABLE if local[0].version == 4 else MSS_TABLE_V6
        if data >= len(table):
            return None
        return table[data]

    # --- timestamps --------------------------------------------------------

    def ts_offset(self, local, remote) -> int:
        """The TSval offset of connections made from cookies: a keyed hash
        of the 4-tuple, so the ACK's connection continues the SYN-ACK's clock."""
        return self._hash(self._kts, local, remote)

    @staticmethod
    def encode_tsval(tsval: int, wscale: int | None, sack: bool) -> int:
        """Our SYN-ACK's TSval with the peer's window scale and SACK-permitted
        in its low bits, never later than ``tsval`` (the clock must not jump
        back afterwards)."""
        bits = (_WSCALE_NONE if wscale is None else min(wscale, 14)) | (_SACK_BIT if sack else 0)
        value = (tsval & ~_TS_MASK & _M32) | bits
        if ((tsval - value) & _M32) >= 1 << 31:  # value is after tsval
            value = (value - (1 << _TS_BITS)) & _M32
        return value

    @staticmethod
    def decode_tsecr(tsecr: int) -> tuple[int | None, bool] | None:
        """(peer window scale or None, SACK-permitted) from the TSecr of the
        ACK; None if the bits cannot have come from us."""
        wscale = tsecr & 0xF
        if wscale == _WSCALE_NONE:
            return None, bool(tsecr & _SACK_BIT)
        if wscale > 14:
            return None
        return wscale, bool(tsecr & _SACK_BIT)
