"""TCP (RFC 9293 and the RFCs each module names).

The protocol core has no I/O: ``connection.TcpConnection`` (with its parts
in ``parts.py`` and its behaviour split into ``input``, ``output``,
``timers`` and ``recovery``), congestion control, the SACK scoreboard,
RACK, SYN cookies and ISNs. Around it: ``socket.TcpSocket``, the Trio task
of one connection; ``demux.TcpLayer``, the table of connections and
listening endpoints; ``passive.SynQueue``, a port's SYN queue; and the API,
``stream.Stream`` and ``listener.Listener``.

Importing the core needs nothing but the standard library and attrs.
"""

from .config import TcpConfig, TcpState, reset_for
from .congestion import CongestionControl, NewReno, make_congestion_control
from .connection import TcpConnection
from .isn import IsnGenerator
from .seq import seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt, seq_sub

__all__ = [
    "CongestionControl", "NewReno", "make_congestion_control",
    "TcpConfig", "TcpConnection", "TcpState", "reset_for",
    "IsnGenerator",
    "seq_add", "seq_diff", "seq_ge", "seq_gt", "seq_le", "seq_lt", "seq_sub",
]
