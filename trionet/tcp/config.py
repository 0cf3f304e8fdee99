"""TCP settings, states and the constants the connection's parts share."""

from __future__ import annotations

import enum
import math

import attrs

from ..wire.tcp import ACK, FIN, RST, SYN, TcpHeader

M32 = 0xFFFFFFFF
HALF = 1 << 31
INF = math.inf
TS_OPTION_LEN = 12         # NOP NOP TS
DEFAULT_MSS_V4 = 536       # RFC 9293 3.7.1
DEFAULT_MSS_V6 = 1220      # RFC 8200 5: 1280 - 60
MIN_MSS = 88               # smallest peer MSS honoured (Linux TCP_MIN_MSS)
MIN_PMTU = 552             # smallest path MTU ICMP may set (Linux ip_rt_min_pmtu)
MAX_WSCALE = 14            # RFC 7323 2.3
PAWS_IDLE = 24 * 86400.0   # RFC 7323 5.5: TS.Recent older than 24 days is invalid
WSCALE_BUFFER = 4 << 20    # window scale chosen so buffers up to 4 MiB fit (Linux: 7)
DUPTHRESH = 3              # RFC 5681 / RFC 6675 DupThresh
TLP_MIN_GAP = 0.002        # added to 2*SRTT with several segments out (Linux TCP_TIMEOUT_MIN)


class TcpState(enum.Enum):
    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RECEIVED = "SYN_RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"
    CLOSED = "CLOSED"


LISTEN = TcpState.LISTEN
SYN_SENT = TcpState.SYN_SENT
SYN_RECEIVED = TcpState.SYN_RECEIVED
ESTABLISHED = TcpState.ESTABLISHED
FIN_WAIT_1 = TcpState.FIN_WAIT_1
FIN_WAIT_2 = TcpState.FIN_WAIT_2
CLOSE_WAIT = TcpState.CLOSE_WAIT
CLOSING = TcpState.CLOSING
LAST_ACK = TcpState.LAST_ACK
TIME_WAIT = TcpState.TIME_WAIT
CLOSED = TcpState.CLOSED

#: States in which our data/FIN may be (re)transmitted.
SENDING_STATES = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK})
#: States in which the peer may still send us data.
RECEIVING_STATES = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2})
#: States in which abort() sends a RST (RFC 9293 3.10.5).
RST_ON_ABORT = frozenset({SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT})
KEEPALIVE_STATES = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_2})
CAN_SEND_STATES = frozenset({SYN_SENT, SYN_RECEIVED, ESTABLISHED, CLOSE_WAIT})


@attrs.define(slots=True)
class TcpConfig:
    """Per-connection settings. ``TcpConnection`` copies the config it is
    given, so changing a socket's options later goes through the
    connection (``conn.config``), not through a shared instance."""

    mss: int = 1460                 # MSS we advertise (route MTU - 40)
    send_buffer: int = 262144
    receive_buffer: int = 262144
    nodelay: bool = True            # Nagle (RFC 896) off, as trio's SocketStream
    keepalive: bool = False
    keepalive_idle: float = 7200.0
    keepalive_interval: float = 75.0
    keepalive_count: int = 9
    rto_initial: float = 1.0        # RFC 6298 2.1
    rto_min: float = 0.2            # Linux TCP_RTO_MIN
    rto_max: float = 60.0           # RFC 6298 2.5
    max_retries: int = 15           # Linux tcp_retries2
    syn_retries: int = 6            # Linux tcp_syn_retries
    synack_retries: int = 5         # Linux tcp_synack_retries
    msl: float = 30.0               # TIME-WAIT lasts 2*MSL (Linux: 60 s)
    delayed_ack: float = 0.04       # Linux TCP_DELACK_MIN
    window_scale: bool = True       # RFC 7323
    timestamps: bool = True         # RFC 7323
    sack: bool = True               # RFC 2018
    challenge_ack_limit: int = 10   # challenge ACKs per second per connection (RFC 5961 7)
    invalid_ratelimit: float = 0.5  # min gap between out-of-window dupacks (Linux tcp_invalid_ratelimit)
    fin_timeout: float = 60.0       # FIN-WAIT-2 after close() (Linux tcp_fin_timeout)
    congestion: str = "cubic"       # "cubic" (RFC 9438) or "newreno" (RFC 5681/6582)
    hystart: bool = True            # HyStart++ (RFC 9406) in CUBIC's initial slow start
    rack: bool = True               # RACK-TLP loss detection (RFC 8985) when SACK is on
    tlp: bool = True                # tail loss probes (RFC 8985 7); needs rack
    tlp_max_ack_delay: float = 0.2  # RFC 8985 WCDelAckT, added to the PTO for one segment
    receive_buffer_max: int = 6 << 20  # receive buffer auto-tuning limit (Linux tcp_rmem[2])
    send_buffer_max: int = 4 << 20     # send buffer auto-tuning limit (Linux tcp_wmem[2])
    autotune: bool = True           # grow the buffers (setting either one by hand stops it)


def reset_for(header: TcpHeader, payload_len: int) -> TcpHeader | None:
    """The RST answering a segment that reached no connection (RFC 9293
    3.10.7.1); None for a RST (never answer a reset)."""
    flags = header.flags
    if flags & RST:
        return None
    if flags & ACK:
        return TcpHeader(header.dst_port, header.src_port, header.ack, 0, RST, 0)
    seg_len = payload_len + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
    return TcpHeader(header.dst_port, header.src_port, 0, (header.seq + seg_len) & M32,
                     RST | ACK, 0)


def window_scale_for(buffer: int) -> int:
    """The smallest shift that lets a 16-bit window cover ``buffer``."""
    shift = 0
    while (buffer >> shift) > 0xFFFF and shift < MAX_WSCALE:
        shift += 1
    return shift


def our_window_scale(cfg: TcpConfig) -> int:
    """The window scale we announce for a connection with ``cfg`` (SYN
    cookies recompute it when the ACK comes)."""
    return window_scale_for(max(cfg.receive_buffer, WSCALE_BUFFER,
                                cfg.receive_buffer_max if cfg.autotune else 0))

