"""Sequence-number arithmetic modulo 2**32 (RFC 9293 3.4).

``a < b`` means ``b`` is at most 2**31 - 1 ahead of ``a``. The connection
state machine itself keeps sequence numbers "unwrapped" (plain Python ints
that grow past 2**32), converting at the wire with ``unwrap``; these helpers
serve code that works on raw 32-bit values.
"""

SEQ_MOD = 1 << 32
SEQ_MASK = SEQ_MOD - 1
_HALF = 1 << 31


def seq_lt(a: int, b: int) -> bool:
    return 0 < ((b - a) & SEQ_MASK) < _HALF


def seq_le(a: int, b: int) -> bool:
    return ((b - a) & SEQ_MASK) < _HALF


def seq_gt(a: int, b: int) -> bool:
    return 0 < ((a - b) & SEQ_MASK) < _HALF


def seq_ge(a: int, b: int) -> bool:
    return ((a - b) & SEQ_MASK) < _HALF


def seq_add(a: int, n: int) -> int:
    return (a + n) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` in [-2**31, 2**31)."""
    return ((a - b + _HALF) & SEQ_MASK) - _HALF


seq_sub = seq_diff


def seq_in_window(x: int, left: int, size: int) -> bool:
    """``left <= x < left + size`` modulo 2**32."""
    return ((x - left) & SEQ_MASK) < size


def unwrap(wire: int, near: int) -> int:
    """The unwrapped value congruent to the 32-bit ``wire`` closest to the
    unwrapped reference ``near``."""
    return near + (((wire - near + _HALF) & SEQ_MASK) - _HALF)
