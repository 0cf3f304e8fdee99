"""TCP: the protocol core without I/O (state machine, ISNs, ports,
congestion control). The Trio-facing wrapper lives elsewhere."""

from .congestion import CongestionControl, NewReno, make_congestion_control
from .connection import TcpConfig, TcpConnection, TcpState, reset_for
from .isn import EphemeralPortAllocator, IsnGenerator
from .seq import seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt, seq_sub

__all__ = [
    "CongestionControl", "NewReno", "make_congestion_control",
    "TcpConfig", "TcpConnection", "TcpState", "reset_for",
    "EphemeralPortAllocator", "IsnGenerator",
    "seq_add", "seq_diff", "seq_ge", "seq_gt", "seq_le", "seq_lt", "seq_sub",
]
