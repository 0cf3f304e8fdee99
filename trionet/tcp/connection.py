"""The TCP connection state machine, without I/O (RFC 9293).

A ``TcpConnection`` is fed segments (``on_segment``), timer expiries
(``on_timer``) and application calls (``send``, ``receive``,
``shutdown_write``, ``abort``). It never transmits anything itself: segments
to send pile up until ``pop_outgoing()``, and ``next_deadline`` says when
``on_timer`` wants to be called next.

Sequence numbers are kept *unwrapped* internally: plain Python ints that start
at the ISN (or IRS) and grow past 2**32, so every comparison is an ordinary
``<``. Incoming 32-bit values are unwrapped next to a reference point
(RCV.NXT for SEG.SEQ, SND.UNA for SEG.ACK) and outgoing ones masked. So the
public ``snd_una``/``snd_nxt``/``snd_max``/``rcv_nxt`` attributes may exceed
2**32: mask them (``& 0xFFFFFFFF``) or use ``trionet.tcp.seq``, which masks
anyway; ``info()`` reports wire values.

Contract for the wrapper: after *every* call (``on_segment``, ``on_timer``,
``send``, ``receive``, ``shutdown_write``, ``close``, ``abort``,
``set_option``) take ``pop_outgoing()`` and move the timer to
``next_deadline``. A payload handed to ``on_segment`` is copied when kept, so
the caller may reuse its buffer. Segments for a connection in TIME-WAIT that
carry a new SYN should be checked with ``accepts_syn_in_time_wait`` first.
"""

from __future__ import annotations

import enum
import logging
import math
import os
from bisect import bisect_right

import attrs

from ..wire.tcp import ACK, FIN, NO_OPTIONS, PSH, RST, SYN, TcpHeader, TcpOptions
from .buffer import ByteBuffer
from .congestion import make_congestion_control
from .rack import Rack
from .sack import EVER_RETRANS, LOST, SACKED, Scoreboard, Seg

log = logging.getLogger("trionet.tcp")
_DEBUG = logging.DEBUG

_M32 = 0xFFFFFFFF
_HALF = 1 << 31
_INF = math.inf
_TS_OPT_LEN = 12           # NOP NOP TS
_DEFAULT_MSS_V4 = 536      # RFC 9293 3.7.1
_DEFAULT_MSS_V6 = 1220
_MIN_MSS = 88              # smallest peer MSS honoured (Linux TCP_MIN_MSS)
_MIN_PMTU = 552            # smallest path MTU ICMP may set (Linux ip_rt_min_pmtu)
_MAX_WSCALE = 14           # RFC 7323 2.3
_PAWS_IDLE = 24 * 86400.0  # RFC 7323 5.5: TS.Recent older than 24 days is invalid
_WSCALE_BUFFER = 4 << 20   # window scale chosen so buffers up to 4 MiB fit (Linux: 7)
_DUPTHRESH = 3             # RFC 5681 / RFC 6675 DupThresh
_TLP_MIN_GAP = 0.002       # added to 2*SRTT with several segments out (Linux TCP_TIMEOUT_MIN)
_EPS = 1e-9

# Loss recovery states (Linux's Open / Recovery / Loss).
_OPEN = 0
_RECOVERY = 1   # fast recovery after a loss was detected (RFC 6675 / RFC 6582)
_LOSS = 2       # after an RTO, until the data then outstanding is acknowledged


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

# States in which our data/FIN may be (re)transmitted.
_SENDING_STATES = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK})
# States in which the peer may still send us data.
_RECEIVING_STATES = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2})
# States in which abort() sends a RST (RFC 9293 3.10.5).
_RST_ON_ABORT = frozenset({SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT})
_KEEPALIVE_STATES = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_2})
_CAN_SEND_STATES = frozenset({SYN_SENT, SYN_RECEIVED, ESTABLISHED, CLOSE_WAIT})


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
    return TcpHeader(header.dst_port, header.src_port, 0, (header.seq + seg_len) & _M32,
                     RST | ACK, 0)


def _wscale_for(buffer: int) -> int:
    shift = 0
    while (buffer >> shift) > 0xFFFF and shift < _MAX_WSCALE:
        shift += 1
    return shift


def our_window_scale(cfg: TcpConfig) -> int:
    """The window scale we announce for a connection with ``cfg`` (SYN
    cookies recompute it when the ACK comes)."""
    return _wscale_for(max(cfg.receive_buffer, _WSCALE_BUFFER,
                           cfg.receive_buffer_max if cfg.autotune else 0))


class TcpConnection:
    """One TCP connection's protocol state. See the module docstring."""

    __slots__ = (
        "config", "local", "remote", "state", "error", "established", "_out", "_passive",
        "next_deadline",
        # send sequence space (unwrapped)
        "iss", "snd_una", "snd_nxt", "snd_max", "snd_wnd", "snd_wl1", "snd_wl2",
        "max_snd_wnd", "_snd_buf", "_snd_buf_seq", "_fin_queued", "_fin_seq",
        # receive sequence space (unwrapped)
        "irs", "rcv_nxt", "_rcv_adv", "_rcv_buf", "_ooo", "_ooo_fin", "_fin_received",
        "_sack_recent", "_ack_pending", "_ack_coalesce_from", "_last_ack_sent", "_rcv_mss",
        # options
        "_ts_ok", "_ts_recent", "_ts_recent_stamp", "_ts_offset", "_sack_ok",
        "_snd_wscale", "_rcv_wscale", "_ws_ok", "_our_wscale", "_peer_mss", "_mss", "_syn_window",
        # RTT / retransmission
        "srtt", "rttvar", "rto", "_rtt_seq", "_rtt_time", "_retries", "retransmits",
        "_syn_retransmitted", "_persist_backoff", "_probes",
        # congestion control / loss recovery
        "cc", "_dupacks", "_in_recovery", "_recover", "_partial_seen", "_last_send",
        "_sb", "_ca", "_rack", "_rack_on", "_tlp_on", "_tlp_high", "_tlp_retrans",
        "_tlp_probe", "_prr_delivered", "_prr_out", "_recover_fs",
        "_tx_count", "rto_count", "tlp_count", "fast_recoveries", "dsacks_received", "dsacks_sent",
        "spurious_rtx", "rack_losses",
        # receive side: D-SACK to report, RTT estimate and buffer auto-tuning
        "_dsack", "_rcv_rtt", "_rcv_rtt_seq", "_rcv_rtt_time", "_rcvq_space", "_rcvq_seq",
        "_rcvq_time", "_rcvbuf_locked", "_sndbuf_locked",
        # timers
        "_t_rtx", "_t_persist", "_t_delack", "_t_keepalive", "_t_close", "_t_pto", "_t_reo",
        # misc
        "_last_recv", "_ka_probes", "_chal_start", "_chal_count", "_oow_last", "_app_closed",
        # RFC 5961 challenge ACKs sent / held back by the rate limit; the last
        # soft ICMP error (RFC 1122 4.2.3.9)
        "challenge_acks", "challenge_acks_limited", "soft_error",
    )

    def __init__(self, local, remote, iss: int, config: TcpConfig, now: float,
                 ts_offset: int | None = None, *, mss: int | None = None):
        # A private copy; ``mss`` (the route's MTU less 40) replaces config.mss.
        cfg = attrs.evolve(config) if mss is None else attrs.evolve(config, mss=mss)
        self.config = cfg
        self.local = local
        self.remote = remote
        self.state = CLOSED
        self.error: str | None = None
        self.established = False
        self._out: list = []
        self._passive = False
        self.next_deadline = _INF

        iss &= _M32
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = iss
        self.max_snd_wnd = 0
        self._snd_buf = ByteBuffer()
        self._snd_buf_seq = iss + 1
        self._fin_queued = False
        self._fin_seq: int | None = None

        self.irs = 0
        self.rcv_nxt = 0
        self._rcv_adv = 0
        self._rcv_buf = ByteBuffer()
        self._ooo: list[tuple[int, int, bytes]] = []
        self._ooo_fin: int | None = None
        self._fin_received = False
        self._sack_recent: list[int] = []
        self._ack_pending = 0
        # ACKs of one batch are coalesced only once RCV.NXT passes this: not
        # while the peer recovers from a loss (see pop_outgoing).
        self._ack_coalesce_from = 0
        self._last_ack_sent = 0
        self._rcv_mss = min(_DEFAULT_MSS_V4, cfg.mss)

        self._ts_ok = False
        self._ts_recent = 0
        self._ts_recent_stamp = now
        self._ts_offset = (int.from_bytes(os.urandom(4), "big") if ts_offset is None
                           else ts_offset) & _M32
        self._sack_ok = False
        self._snd_wscale = 0
        self._rcv_wscale = 0
        self._ws_ok = False
        self._our_wscale = our_window_scale(cfg)
        self._peer_mss = _DEFAULT_MSS_V6 if getattr(remote[0], "version", 4) == 6 \
            else _DEFAULT_MSS_V4
        self._mss = min(self._peer_mss, cfg.mss)
        self._syn_window = min(cfg.receive_buffer, 0xFFFF)

        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = cfg.rto_initial
        self._rtt_seq: int | None = None
        self._rtt_time = 0.0
        self._retries = 0
        self.retransmits = 0
        self._syn_retransmitted = False
        self._persist_backoff = 0
        self._probes = 0

        self.cc = make_congestion_control(cfg.congestion, self._mss, now, cfg.hystart)
        self._dupacks = 0
        self._in_recovery = False   # RFC 6582 fast recovery (peers without SACK)
        self._recover = iss
        self._partial_seen = False
        self._last_send = now
        self._sb = Scoreboard()
        self._ca = _OPEN
        self._rack = Rack()
        self._rack_on = False       # decided with SACK in the handshake
        self._tlp_on = False
        self._tlp_high: int | None = None  # RFC 8985 TLP.end_seq
        self._tlp_retrans = False
        self._tlp_probe = (0, 0)
        self._prr_delivered = 0
        self._prr_out = 0
        self._recover_fs = 1
        self._tx_count = 0
        self.rto_count = 0
        self.tlp_count = 0
        self.fast_recoveries = 0
        self.dsacks_received = 0
        self.dsacks_sent = 0
        self.spurious_rtx = 0
        self.rack_losses = 0

        self._dsack: tuple | None = None
        self._rcv_rtt: float | None = None
        self._rcv_rtt_seq = 0
        self._rcv_rtt_time = now
        self._rcvq_space = 0
        self._rcvq_seq = 0
        self._rcvq_time = now
        self._rcvbuf_locked = not cfg.autotune
        self._sndbuf_locked = not cfg.autotune

        self._t_rtx = _INF
        self._t_pto = _INF
        self._t_reo = _INF
        self._t_persist = _INF
        self._t_delack = _INF
        self._t_keepalive = _INF
        self._t_close = _INF

        self._last_recv = now
        self._ka_probes = 0
        self._chal_start = now
        self._chal_count = 0
        self._oow_last = -_INF
        self._app_closed = False
        self.challenge_acks = 0
        self.challenge_acks_limited = 0
        self.soft_error: str | None = None

    # ------------------------------------------------------------------
    # Opening

    @classmethod
    def connect(cls, local, remote, iss: int, config: TcpConfig, now: float,
                ts_offset: int | None = None, *, mss: int | None = None) -> TcpConnection:
        """Active open (RFC 9293 3.10.1): SYN queued, state SYN-SENT."""
        self = cls(local, remote, iss, config, now, ts_offset, mss=mss)
        self._set_state(SYN_SENT)
        self._send_syn(now)
        self._update_deadline()
        return self

    @classmethod
    def accept(cls, local, remote, syn: TcpHeader, iss: int, config: TcpConfig, now: float,
               ts_offset: int | None = None, *, mss: int | None = None) -> TcpConnection:
        """Passive open from a SYN that reached a listening port (RFC 9293
        3.10.7.2): SYN-ACK queued, state SYN-RECEIVED. Data in the SYN is not
        accepted (no TCP Fast Open); the peer sends it again."""
        self = cls(local, remote, iss, config, now, ts_offset, mss=mss)
        self._passive = True
        self._on_peer_syn(syn, now)
        self._set_state(SYN_RECEIVED)
        self._send_syn(now)
        self._update_deadline()
        return self

    @classmethod
    def from_cookie(cls, local, remote, ack: TcpHeader, iss: int, peer_mss: int,
                    snd_wscale: int | None, sack: bool, config: TcpConfig, now: float,
                    ts_offset: int, *, mss: int | None = None) -> TcpConnection:
        """Passive open from the ACK of a SYN cookie (RFC 4987 3.6): our
        SYN-ACK (ISS ``iss``) went out without state, the options come
        decoded from the cookie. Straight to ESTABLISHED; the ACK's data, if
        any, is the caller's to deliver next. Timestamps are on when the ACK
        carries them (our cookie SYN-ACK offered them only then)."""
        self = cls(local, remote, iss, config, now, ts_offset, mss=mss)
        self._passive = True
        ts = ack.options.timestamps
        syn = TcpHeader(ack.src_port, ack.dst_port, (ack.seq - 1) & _M32, 0, SYN, ack.window, 0,
                        TcpOptions(mss=peer_mss,
                                   window_scale=snd_wscale if ts is not None else None,
                                   sack_permitted=sack and ts is not None,
                                   timestamps=(ts[0], 0) if ts is not None else None))
        self._on_peer_syn(syn, now)
        self.snd_una = self.snd_nxt = self.snd_max = self.iss + 1
        self._establish(now)
        self.snd_wnd = self.max_snd_wnd = ack.window << self._snd_wscale
        self.snd_wl1 = self.rcv_nxt
        self.snd_wl2 = self.snd_una
        self._update_deadline()
        return self

    def _on_peer_syn(self, syn: TcpHeader, now: float) -> None:
        """Record IRS and negotiate options from the peer's SYN or SYN-ACK."""
        cfg = self.config
        irs = syn.seq
        self.irs = irs
        self.rcv_nxt = irs + 1
        self._last_ack_sent = irs + 1
        self._rcv_adv = irs + 1 + self._syn_window
        opts = syn.options
        if opts.mss is not None:
            self._peer_mss = max(opts.mss, _MIN_MSS)
        self._ws_ok = cfg.window_scale and opts.window_scale is not None
        if self._ws_ok:
            self._snd_wscale = min(opts.window_scale, _MAX_WSCALE)
            self._rcv_wscale = self._our_wscale
        else:
            self._snd_wscale = self._rcv_wscale = 0
        if cfg.timestamps and opts.timestamps is not None:
            self._ts_ok = True
            self._ts_recent = opts.timestamps[0]
            self._ts_recent_stamp = now
        else:
            self._ts_ok = False
        self._sack_ok = cfg.sack and opts.sack_permitted
        self._rack_on = self._sack_ok and cfg.rack
        self._tlp_on = self._rack_on and cfg.tlp
        # RFC 9293 3.7.1 / RFC 6691: payload = MSS minus the options we send.
        self._mss = max(min(self._peer_mss, cfg.mss) - (_TS_OPT_LEN if self._ts_ok else 0),
                        _MIN_MSS - _TS_OPT_LEN)
        self._rcv_mss = min(_DEFAULT_MSS_V4, self._mss)
        # SYN windows are never scaled (RFC 7323 2.2).
        self.snd_wnd = syn.window
        self.max_snd_wnd = max(self.max_snd_wnd, syn.window)
        self.snd_wl1 = irs
        self.cc.set_mss(self._mss)
        # Receive buffer auto-tuning starts from what the initial window
        # could bring in one round trip (Linux's rcvq_space).
        self._rcvq_space = min(cfg.receive_buffer, 10 * self._mss)
        self._rcvq_seq = irs + 1
        self._rcvq_time = now
        self._rcv_rtt_seq = irs + 1

    def _send_syn(self, now: float) -> None:
        """SYN (SYN-SENT) or SYN-ACK (SYN-RECEIVED), always at ISS."""
        cfg = self.config
        if self.state is SYN_SENT:
            opts = TcpOptions(
                mss=cfg.mss,
                window_scale=self._our_wscale if cfg.window_scale else None,
                sack_permitted=cfg.sack,
                timestamps=(self._tsval(now), 0) if cfg.timestamps else None)
            hdr = TcpHeader(self.local[1], self.remote[1], self.iss, 0, SYN,
                            self._syn_window, 0, opts)
        else:
            opts = TcpOptions(
                mss=cfg.mss,
                window_scale=self._our_wscale if self._ws_ok else None,
                sack_permitted=self._sack_ok,
                timestamps=(self._tsval(now), self._ts_recent) if self._ts_ok else None)
            hdr = TcpHeader(self.local[1], self.remote[1], self.iss, self.rcv_nxt & _M32,
                            SYN | ACK, self._syn_window, 0, opts)
            self._last_ack_sent = self.rcv_nxt
        self._out.append((hdr, b""))
        if self.snd_max == self.iss:
            self.snd_nxt = self.snd_max = self.iss + 1
        if self._t_rtx == _INF:
            self._t_rtx = now + self.rto
        if not self._syn_retransmitted and self._rtt_seq is None and not self._ts_ok:
            self._rtt_seq = self.iss
            self._rtt_time = now

    # ------------------------------------------------------------------
    # Status

    @property
    def readable(self) -> bool:
        return bool(self._rcv_buf) or self._fin_received or self.error is not None \
            or self.state is CLOSED

    @property
    def at_eof(self) -> bool:
        return self._fin_received and not self._rcv_buf

    @property
    def send_space(self) -> int:
        return max(self.config.send_buffer - len(self._snd_buf), 0)

    @property
    def can_send(self) -> bool:
        return self.state in _CAN_SEND_STATES and not self._fin_queued and self.error is None

    @property
    def unacked_bytes(self) -> int:
        """Bytes the application wrote that the peer has not acknowledged yet
        (sent or not; Linux's SIOCOUTQ)."""
        return len(self._snd_buf)

    @property
    def unread_bytes(self) -> int:
        """In-order data received and not yet read by the application."""
        return len(self._rcv_buf)

    @property
    def closed(self) -> bool:
        return self.state is CLOSED

    @property
    def bytes_in_flight(self) -> int:
        return self.snd_nxt - self.snd_una

    @property
    def mss(self) -> int:
        """Largest payload we put in a segment (options excluded)."""
        return self._mss

    def info(self) -> dict:
        rcv_wnd = max(self._rcv_adv - self.rcv_nxt, 0)
        return {
            "state": self.state.name,
            "srtt": self.srtt,
            "rttvar": self.rttvar,
            "rto": self.rto,
            "cwnd": self.cc.cwnd,
            "ssthresh": self.cc.ssthresh,
            "bytes_in_flight": self.snd_nxt - self.snd_una,
            "retransmits": self.retransmits,
            "snd_una": self.snd_una & _M32,
            "snd_nxt": self.snd_nxt & _M32,
            "snd_wnd": self.snd_wnd,
            "rcv_nxt": self.rcv_nxt & _M32,
            "rcv_wnd": rcv_wnd,
            "mss": self._mss,
            "peer_mss": self._peer_mss,
            "snd_wscale": self._snd_wscale,
            "rcv_wscale": self._rcv_wscale,
            "timestamps": self._ts_ok,
            "sack": self._sack_ok,
            "unacked": len(self._snd_buf),
            "unread": len(self._rcv_buf),
            "out_of_order": sum(e - s for s, e, _ in self._ooo),
            "in_recovery": self._in_recovery or self._ca != _OPEN,
            "ca_state": ("open", "recovery", "loss")[self._ca],
            "congestion": self.cc.name,
            "pipe": self._pipe(),
            "sacked_out": self._sb.sacked_out,
            "lost_out": self._sb.lost_out,
            "retrans_out": self._sb.retrans_out,
            "min_rtt": None if self._rack.min_rtt.value == _INF else self._rack.min_rtt.value,
            "rto_count": self.rto_count,
            "tlp_count": self.tlp_count,
            "fast_recoveries": self.fast_recoveries,
            "rack_losses": self.rack_losses,
            "dsacks_received": self.dsacks_received,
            "dsacks_sent": self.dsacks_sent,
            "spurious_retransmits": self.spurious_rtx,
            "reordering_seen": self._rack.reordering_seen,
            "send_buffer": self.config.send_buffer,
            "receive_buffer": self.config.receive_buffer,
            "rcv_rtt": self._rcv_rtt,
            "challenge_acks": self.challenge_acks,
            "challenge_acks_limited": self.challenge_acks_limited,
            "soft_error": self.soft_error,
            "error": self.error,
        }

    def _pipe(self) -> int:
        """RFC 6675 pipe: bytes the sender believes are in the network."""
        flight = self.snd_max - self.snd_una
        sb = self._sb
        return flight if sb.clean else sb.pipe(flight)

    def window_diagram(self) -> str:
        """Two lines picturing the send and receive windows (relative to
        SND.UNA and RCV.NXT), for debug logs."""
        una = self.snd_una
        buf_end = self._snd_buf_seq + len(self._snd_buf)
        wnd_edge = una + self.snd_wnd
        snd = (f"SND una=0 [{self.snd_nxt - una} in flight] nxt={self.snd_nxt - una}"
               f" [{max(buf_end - self.snd_nxt, 0)} queued] buf_end={buf_end - una}"
               f" | wnd_edge={wnd_edge - una} cwnd={self.cc.cwnd}"
               f"{' FIN' if self._fin_queued else ''}")
        sb = self._sb
        if not sb.clean:
            snd += (f"\n    pipe={self._pipe()} sacked={sb.sacked_out} lost={sb.lost_out}"
                    f" retrans={sb.retrans_out} sacked_ranges="
                    + " ".join(f"[{s - una},{e - una})" for s, e in sb.ranges))
        nxt = self.rcv_nxt
        holes = " ".join(f"[{s - nxt},{e - nxt})" for s, e, _ in self._ooo)
        rcv = (f"RCV unread={len(self._rcv_buf)} | nxt=0 ooo={holes or '-'}"
               f" | adv_edge={self._rcv_adv - nxt}{' FIN' if self._fin_received else ''}")
        return snd + "\n" + rcv

    def __repr__(self) -> str:
        return (f"<TcpConnection {self.local[0]}:{self.local[1]} -> "
                f"{self.remote[0]}:{self.remote[1]} {self.state.name}>")

    # ------------------------------------------------------------------
    # Output helpers

    def pop_outgoing(self) -> list:
        """The segments to send, oldest first. A pure ACK that a later
        segment of the same batch acknowledges past, from the same sequence
        number, is left out: it would leave at the same instant and tell the
        peer nothing more (one ACK per batch of received segments, as a
        stack with GRO sends). ACKs with SACK blocks (loss in progress) and
        probes (another sequence number) always go, and for 16 segments after
        out-of-order data every ACK goes (as Linux's quick-ACK mode after a
        hole, tcp_enter_quickack_mode): a sender recovering from loss with a
        small window needs every one, and one lost stretch ACK costs it an
        RTO."""
        out = self._out
        if out:
            self._out = []
            if len(out) > _ACK_COALESCE_MIN:
                out = _without_superseded_acks(out, self.rcv_nxt, self._ack_coalesce_from)
        return out

    def _tsval(self, now: float) -> int:
        return (int(now * 1000) + self._ts_offset) & _M32

    def _window_field(self) -> int:
        """The window to advertise; moves RCV.ADV (the right edge the peer
        sees) forward, never back (RFC 9293 3.8.6.2.2), with receiver SWS
        avoidance: the edge only moves by at least min(buffer/2, MSS)."""
        rcv_nxt = self.rcv_nxt
        buf = self.config.receive_buffer
        edge = rcv_nxt + buf - len(self._rcv_buf)
        adv = self._rcv_adv
        ws = self._rcv_wscale
        limit = rcv_nxt + (0xFFFF << ws)
        if edge > limit:
            edge = limit
        if edge > adv:
            step = buf >> 1
            if self._rcv_mss < step:
                step = self._rcv_mss
            if edge - adv >= step:
                adv = edge
        wnd = adv - rcv_nxt
        if wnd <= 0:
            self._rcv_adv = rcv_nxt if adv < rcv_nxt else adv
            return 0
        field = (wnd + (1 << ws) - 1) >> ws  # round up: never shrink the edge
        if field > 0xFFFF:
            field = 0xFFFF
        self._rcv_adv = rcv_nxt + (field << ws)
        return field

    def _options(self, now: float, with_sack: bool) -> TcpOptions:
        if self._ts_ok:
            if with_sack and (self._ooo or self._dsack) and self._sack_ok:
                return TcpOptions(timestamps=(self._tsval(now), self._ts_recent),
                                  sack_blocks=self._sack_blocks())
            return TcpOptions(timestamps=(self._tsval(now), self._ts_recent))
        if with_sack and (self._ooo or self._dsack) and self._sack_ok:
            return TcpOptions(sack_blocks=self._sack_blocks())
        return NO_OPTIONS

    def _emit(self, flags: int, seq: int, payload, now: float) -> None:
        """Queue one segment carrying our current ACK and window."""
        opts = self._options(now, True) if (self._ts_ok or self._ooo or self._dsack) \
            else NO_OPTIONS
        if flags & ACK:
            self._last_ack_sent = self.rcv_nxt
            self._ack_pending = 0
            self._t_delack = _INF
            ack = self.rcv_nxt & _M32
        else:
            ack = 0
        self._out.append((TcpHeader(self.local[1], self.remote[1], seq & _M32, ack, flags,
                                    self._window_field(), 0, opts), payload))

    def _send_ack(self, now: float) -> None:
        # Pure ACKs carry SND.MAX (BSD): after a go-back-N rewind SND.NXT lags.
        self._emit(ACK, self.snd_max, b"", now)

    def _send_probe(self, now: float) -> None:
        """Window or keepalive probe: SEQ = SND.UNA - 1 is out of the peer's
        window, so it answers with an ACK (as Linux's tcp_xmit_probe_skb).
        The peer discards the probe itself, ACK field included, so a pending
        ACK goes out first as a proper segment and the probe does not count
        as having acknowledged anything."""
        if self._ack_pending or self.rcv_nxt > self._last_ack_sent:
            self._send_ack(now)
        opts = self._options(now, False) if self._ts_ok else NO_OPTIONS
        self._out.append((TcpHeader(self.local[1], self.remote[1], (self.snd_una - 1) & _M32,
                                    self.rcv_nxt & _M32, ACK, self._window_field(), 0, opts),
                          b""))

    def _send_rst(self, now: float) -> None:
        self._emit(RST | ACK, self.snd_max, b"", now)

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 3.2/4.2/5.2 challenge ACK, at most challenge_ack_limit a
        second per connection (RFC 5961 7)."""
        if now - self._chal_start >= 1.0:
            self._chal_start = now
            self._chal_count = 0
        if self._chal_count < self.config.challenge_ack_limit:
            self._chal_count += 1
            self.challenge_acks += 1
            self._send_ack(now)
        else:
            self.challenge_acks_limited += 1

    def _oow_ack(self, now: float, seg_len: int, flags: int) -> None:
        """ACK an unacceptable segment (RFC 9293 3.10.7.4 first check). Pure
        ACKs are rate limited so two stacks cannot loop on them (as Linux)."""
        if seg_len == 0:
            if now - self._oow_last < self.config.invalid_ratelimit:
                return
            self._oow_last = now
        self._send_ack(now)

    def _sack_blocks(self) -> tuple:
        """RFC 2018 4: the block holding the most recently received segment
        first, then the most recently reported ones; a D-SACK block (RFC 2883
        4) goes before them all, once."""
        ranges: list[list[int]] = []
        for s, e, _ in self._ooo:
            if ranges and ranges[-1][1] == s:
                ranges[-1][1] = e
            else:
                ranges.append([s, e])
        maxb = 3 if self._ts_ok else 4
        out = []
        dsack = self._dsack
        if dsack is not None:
            self._dsack = None
            self.dsacks_sent += 1
            out.append((dsack[0] & _M32, dsack[1] & _M32))
        used = set()
        for seq in self._sack_recent:
            for i, (s, e) in enumerate(ranges):
                if s <= seq < e:
                    if i not in used:
                        used.add(i)
                        out.append((s & _M32, e & _M32))
                    break
            if len(out) >= maxb:
                return tuple(out)
        for i in range(len(ranges) - 1, -1, -1):
            if len(out) >= maxb:
                break
            if i not in used:
                out.append((ranges[i][0] & _M32, ranges[i][1] & _M32))
        return tuple(out)

    # ------------------------------------------------------------------
    # State and timers

    def _set_state(self, new: TcpState) -> None:
        if log.isEnabledFor(_DEBUG):
            log.debug("%r: %s -> %s", self, self.state.name, new.name)
        self.state = new

    def _update_deadline(self) -> None:
        d = self._t_rtx
        if self._t_persist < d:
            d = self._t_persist
        if self._t_delack < d:
            d = self._t_delack
        if self._t_keepalive < d:
            d = self._t_keepalive
        if self._t_close < d:
            d = self._t_close
        if self._t_pto < d:
            d = self._t_pto
        if self._t_reo < d:
            d = self._t_reo
        self.next_deadline = d

    def _clear_timers(self) -> None:
        self._t_rtx = self._t_persist = self._t_delack = _INF
        self._t_keepalive = self._t_close = _INF
        self._t_pto = self._t_reo = _INF

    def fail(self, error: str, now: float) -> None:
        """End at once with ``error``, sending nothing: the path to the peer
        is gone (its link broke), so no segment could reach it anyway."""
        if self.state is not CLOSED:
            self._close(error)
            self._update_deadline()

    def _close(self, error: str | None) -> None:
        if error is not None and self.error is None:
            self.error = error
        if self.state is not CLOSED:
            self._set_state(CLOSED)
        self._clear_timers()
        self._ooo = []
        self._snd_buf.clear()
        self._snd_buf_seq = self.snd_una
        self._sb = Scoreboard()

    def _enter_time_wait(self, now: float) -> None:
        self._set_state(TIME_WAIT)
        self._clear_timers()
        self._t_close = now + 2 * self.config.msl

    def _establish(self, now: float) -> None:
        self._set_state(ESTABLISHED)
        self.established = True
        if self.srtt is None:
            # RFC 6298 5.7: back to 3 s if the SYN was retransmitted and no
            # RTT sample was taken.
            self.rto = max(self.config.rto_initial, 3.0) if self._syn_retransmitted \
                else self.config.rto_initial
        self._retries = 0
        self._last_recv = now
        if self.config.keepalive:
            self._t_keepalive = now + self.config.keepalive_idle
        if self._fin_queued:
            self._set_state(FIN_WAIT_1)

    def _rtt_sample(self, r: float, now: float | None = None) -> None:
        """RFC 6298 2.2-2.4; also feeds the windowed min_RTT (RACK)."""
        if r < 0:
            return
        if now is not None:
            self._rack.min_rtt.update(now, r)
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        cfg = self.config
        rto = self.srtt + max(0.001, 4 * self.rttvar)
        self.rto = cfg.rto_min if rto < cfg.rto_min else (cfg.rto_max if rto > cfg.rto_max else rto)

    # ------------------------------------------------------------------
    # Application calls

    def send(self, data, now: float) -> int:
        """Buffer as much of ``data`` as fits; returns the count taken."""
        if self._fin_queued or self.state is CLOSED or self.state is TIME_WAIT:
            return 0
        space = self.config.send_buffer - len(self._snd_buf)
        n = len(data)
        if space <= 0 or n == 0:
            return 0
        if n > space:
            data = memoryview(data)[:space]
            n = space
        if not self._snd_buf and self.snd_una == self.snd_max and \
                now - self._last_send > self.rto and self.state in _SENDING_STATES:
            self.cc.on_idle_restart(now)  # RFC 5681 4.1
        self._snd_buf.append(data)
        if self.state in _SENDING_STATES:
            self._push(now)
        self._update_deadline()
        return n

    def receive(self, max_bytes: int, now: float) -> bytes:
        """Up to ``max_bytes`` of in-order data (b"" when none)."""
        buf = self._rcv_buf
        n = len(buf)
        if n == 0 or max_bytes <= 0:
            return b""
        data = buf.take(max_bytes)
        if not self._rcvbuf_locked:
            self._rcv_space_adjust(now)
        if self.state in _RECEIVING_STATES:
            # RFC 9293 3.8.6.2.2: announce a window that grew enough, once
            # the peer may be held back by the one it has: less than two
            # segments left, or at most half of what the last ACK offered
            # (as Linux's tcp_cleanup_rbuf). Otherwise its next segments
            # bring ACKs that carry the new window anyway.
            cfg = self.config
            cur = self._rcv_adv - self.rcv_nxt
            mss = self._rcv_mss
            if cur < 2 * mss or 2 * cur <= self._rcv_adv - self._last_ack_sent:
                grow = cfg.receive_buffer - len(buf) - cur
                if grow >= min(cfg.receive_buffer >> 1, 2 * mss) or (cur < mss and grow >= min(
                        cfg.receive_buffer >> 1, mss)):
                    self._send_ack(now)
                    self._update_deadline()
        return data

    def _rcv_space_adjust(self, now: float) -> None:
        """Receive buffer auto-tuning (Linux's dynamic right-sizing): once a
        round trip, if the application took more than in the round before,
        make room for about twice that (plus the growth trend), so the window
        never holds a fast sender back; up to ``receive_buffer_max``."""
        rtt = self._rcv_rtt if self._rcv_rtt is not None else self.srtt
        if rtt is None or now - self._rcvq_time < rtt:
            return
        copied_seq = self.rcv_nxt - len(self._rcv_buf)
        copied = copied_seq - self._rcvq_seq
        space = self._rcvq_space
        if copied > space:
            cfg = self.config
            win = 2 * copied + 16 * self._rcv_mss
            win += 2 * (win * (copied - space) // max(space, 1))
            limit = min(cfg.receive_buffer_max, 0xFFFF << self._rcv_wscale)
            if win > limit:
                win = limit
            if win > cfg.receive_buffer:
                cfg.receive_buffer = win
            self._rcvq_space = copied
        self._rcvq_seq = copied_seq
        self._rcvq_time = now

    def _rcv_rtt_measure(self, tsecr: int | None, plen: int, now: float) -> None:
        """The receiver's RTT estimate for auto-tuning (as Linux's
        rcv_rtt_est): from TSecr on full-sized data when timestamps are on,
        else the time one window of data takes to arrive."""
        if tsecr is not None:
            if plen < self._rcv_mss or not tsecr:
                return
            m = ((int(now * 1000) + self._ts_offset - tsecr) & _M32)
            if m >= _HALF:
                return
            m = max(m / 1000, 0.001)
            r = self._rcv_rtt
            self._rcv_rtt = m if r is None else r + (m - r) / 8
            return
        if self.rcv_nxt >= self._rcv_rtt_seq:
            if self._rcv_rtt_seq > self.irs + 1:
                m = max(now - self._rcv_rtt_time, 0.001)
                if self._rcv_rtt is None or m < self._rcv_rtt:
                    self._rcv_rtt = m
            self._rcv_rtt_seq = self.rcv_nxt + max(self._rcv_adv - self.rcv_nxt, self._rcv_mss)
            self._rcv_rtt_time = now

    def shutdown_write(self, now: float) -> None:
        """Send FIN after all buffered data (RFC 9293 3.10.4 CLOSE)."""
        if self._fin_queued:
            return
        st = self.state
        if st in (ESTABLISHED, CLOSE_WAIT, SYN_SENT, SYN_RECEIVED):
            self._fin_queued = True
            if st is ESTABLISHED:
                self._set_state(FIN_WAIT_1)
            elif st is CLOSE_WAIT:
                self._set_state(LAST_ACK)
            if self.state in _SENDING_STATES:
                self._push(now)
        self._update_deadline()

    def close(self, now: float) -> None:
        """Full close: the application will neither send nor read any more.
        Unread data makes it an abort (RST), as Linux does (RFC 2525 2.17);
        otherwise FIN, and FIN-WAIT-2 then times out after fin_timeout."""
        if self.state in (CLOSED, TIME_WAIT):
            return
        if self.state in (SYN_SENT, LISTEN):
            self._close(None)
            self._update_deadline()
            return
        if self._rcv_buf or self._ooo:
            self.abort(now)
            return
        self._app_closed = True
        self.shutdown_write(now)
        if self.state is FIN_WAIT_2 and self._t_close == _INF:
            self._t_close = now + self.config.fin_timeout
        self._update_deadline()

    def abort(self, now: float) -> None:
        """RST if synchronized (RFC 9293 3.10.5), then CLOSED; error stays None."""
        if self.state in _RST_ON_ABORT:
            self._send_rst(now)
        self._close(None)
        self._update_deadline()

    def set_keepalive(self, enabled: bool, now: float) -> None:
        was = self.config.keepalive
        self.config.keepalive = enabled
        if enabled and not was and self.state in _KEEPALIVE_STATES:
            self._t_keepalive = now + self.config.keepalive_idle  # as Linux
        elif not enabled:
            self._t_keepalive = _INF
        self._update_deadline()

    def set_option(self, name: str, value, now: float) -> None:
        """Change one ``TcpConfig`` setting of this connection (setsockopt)."""
        cfg = self.config
        if not hasattr(cfg, name):
            raise AttributeError(f"TcpConfig has no setting {name!r}")
        if name == "keepalive":
            self.set_keepalive(bool(value), now)
            return
        if name == "congestion":
            cc = make_congestion_control(value, self._mss, now, cfg.hystart)
            cc.take_state(self.cc)
            self.cc = cc
            cfg.congestion = cc.name
            return
        setattr(cfg, name, value)
        if name == "receive_buffer":
            self._rcvbuf_locked = True  # as SO_RCVBUF: no more auto-tuning
        elif name == "send_buffer":
            self._sndbuf_locked = True
        elif name == "autotune":
            self._rcvbuf_locked = self._sndbuf_locked = not value
        elif name in ("rack", "tlp"):
            self._rack_on = self._sack_ok and cfg.rack
            self._tlp_on = self._rack_on and cfg.tlp
            if not self._tlp_on:
                self._t_pto = _INF
        st = self.state
        if name in ("keepalive_idle", "keepalive_interval", "keepalive_count"):
            if cfg.keepalive and st in _KEEPALIVE_STATES:
                due = self._last_recv + cfg.keepalive_idle
                self._t_keepalive = due if due > now else now
        elif name == "nodelay" and value and st in _SENDING_STATES:
            self._push(now)  # release what Nagle held back
        elif name == "receive_buffer" and st in _RECEIVING_STATES:
            if cfg.receive_buffer - len(self._rcv_buf) - (self._rcv_adv - self.rcv_nxt) \
                    >= min(cfg.receive_buffer >> 1, 2 * self._rcv_mss):
                self._send_ack(now)  # window update for the larger buffer
        self._update_deadline()

    def accepts_syn_in_time_wait(self, syn: TcpHeader) -> bool:
        """Whether a new SYN for this 4-tuple may reopen it from TIME-WAIT
        (RFC 6191 / RFC 1122 4.2.2.13): newer timestamp, or higher sequence
        number when timestamps are not in use."""
        if self.state is not TIME_WAIT or not syn.flags & SYN or syn.flags & ACK:
            return False
        ts = syn.options.timestamps
        if self._ts_ok and ts is not None:
                return 0 < ((ts[0] - self._ts_recent) & _M32) < _HALF
        seq = self.rcv_nxt + (((syn.seq - self.rcv_nxt + _HALF) & _M32) - _HALF)
        return seq > self.rcv_nxt

    # ------------------------------------------------------------------
    # ICMP (the caller checked that the quoted sequence number lies in
    # SND.UNA..SND.NXT, RFC 5927 4.1)

    def on_icmp_error(self, icmp_type: int, code: int, now: float) -> bool:
        """An ICMP destination unreachable (type 3, not "fragmentation
        needed"), time exceeded (11) or parameter problem (12). For a
        handshake we answered (passive SYN-RECEIVED), net or host
        unreachable or time exceeded ends it without a RST (the SYN was
        likely spoofed; as Linux's tcp_req_err): returns True. Otherwise the
        error is soft (RFC 1122 4.2.3.9; RFC 5927 4.2 treats hard errors as
        soft in synchronized states): recorded in ``soft_error``."""
        if self.state is SYN_RECEIVED and self._passive and (
                icmp_type == 11 or (icmp_type == 3 and code in (0, 1, 6, 7))):
            self._close("unreachable")
            self._update_deadline()
            return True
        self.soft_error = f"ICMP type {icmp_type} code {code}"
        return False

    def on_path_mtu(self, mtu: int, now: float) -> bool:
        """ICMP "fragmentation needed" with the next-hop ``mtu`` (RFC 1191):
        lower the MSS to fit (never below what an MTU of 552 allows, Linux's
        min_pmtu: smaller reports are likely forged, RFC 5927 7), and resend
        at once what no longer fits, without a congestion response (as
        Linux's tcp_simple_retransmit). True if the MSS went down."""
        if self.state not in _SENDING_STATES:
            return False
        mss = max(mtu, _MIN_PMTU) - 40 - (_TS_OPT_LEN if self._ts_ok else 0)
        if mss >= self._mss:
            return False
        self._mss = mss
        self.cc.set_mss(mss)
        sb = self._sb
        data_end = self._snd_buf_seq + len(self._snd_buf)
        marked = False
        for s in sb.segs:
            if min(s.end, data_end) - s.start > mss and sb.mark_lost(s):
                marked = True
        if marked:
            if self._ca != _LOSS:
                self._recover = self.snd_max
                if self._sack_ok:
                    self._ca = _LOSS
            self._tlp_high = None
            self._t_pto = _INF
            self._retransmit_lost(now, True)
            if self._t_rtx == _INF:
                self._t_rtx = now + self.rto
        self._update_deadline()
        return True

    # ------------------------------------------------------------------
    # Sending

    def _push(self, now: float) -> None:
        """Send what the windows, Nagle and SWS avoidance allow: segments
        deemed lost first (RFC 6675 NextSeg rule 1; after an RTO that is
        go-back-N from SND.UNA, RFC 6298 5.4, skipping SACKed ranges), then
        new data (rule 2)."""
        sb = self._sb
        if sb.lost_hint != _INF:
            self._retransmit_lost(now, False)
            if sb.lost_hint != _INF:
                return  # lost data still waits for room: no new data before it
        buf_seq = self._snd_buf_seq
        data_end = buf_seq + len(self._snd_buf)
        nxt = self.snd_max
        fin = self._fin_queued
        if nxt > data_end:
            return  # FIN already sent
        mss = self._seg_mss()
        cc = self.cc
        una = self.snd_una
        cwnd = cc.cwnd
        if 0 < self._dupacks < 3 and not self._in_recovery and not self._sack_ok:
            cwnd += self._dupacks * mss  # RFC 3042 limited transmit
        flight = nxt - una
        room_c = cwnd - (flight if sb.clean else sb.pipe(flight))
        wnd_edge = una + self.snd_wnd
        sent = False
        while True:
            if nxt >= data_end:
                if fin and nxt == data_end:
                    # A bare FIN needs no window (Linux accepts one at a zero window).
                    self._send_new(nxt, data_end, True, now)
                    sent = True
                break
            n = data_end - nxt
            if n > mss:
                n = mss
            if room_c < n:
                break  # RFC 5681: cwnd allows no (whole) segment more
            room = wnd_edge - nxt
            if room <= 0:
                break
            if n > room:
                n = room
                # RFC 9293 3.8.6.2.1 sender SWS: a window-limited runt only
                # if it is at least half the largest window the peer offered.
                if n < mss and 2 * n < self.max_snd_wnd:
                    break
            elif n < mss and not fin and not self.config.nodelay and self.snd_max > una:
                break  # RFC 896 Nagle: a small segment waits for the ACKs
            end = nxt + n
            self._send_new(nxt, end, fin and end == data_end, now)
            room_c -= n
            nxt = self.snd_max
            sent = True
        if sent:
            if self._tlp_on:
                self._arm_pto(now)
        elif self.snd_una == self.snd_max and (
                data_end > self.snd_max or (fin and self._fin_seq is None)) \
                and self._t_persist == _INF and self._t_rtx == _INF:
            # Nothing in flight and the peer's window stops us: RFC 9293 3.8.6.1.
            self._persist_backoff = 0
            self._t_persist = now + self._persist_interval()

    def _send_new(self, seq: int, end: int, fin: bool, now: float) -> None:
        """Send new data [seq, end) (and FIN) and add it to the scoreboard."""
        data_end = self._snd_buf_seq + len(self._snd_buf)
        flags = ACK
        if end == data_end and end > seq:
            flags = ACK | PSH
        if fin:
            flags |= FIN
            self._fin_seq = data_end
        off = seq - self._snd_buf_seq
        self._emit(flags, seq, self._snd_buf.peek(off, end - seq) if end > seq else b"", now)
        if fin:
            end += 1
        self._tx_count += 1
        self._sb.segs.append(Seg(seq, end, now, self._tx_count))
        if self._ca == _RECOVERY:
            self._prr_out += end - seq
        self._after_send(end, now)

    def _after_send(self, nxt: int, now: float) -> None:
        if nxt > self.snd_max:
            self.snd_max = nxt
        self.snd_nxt = self.snd_max
        if self._t_rtx == _INF:
            self._t_rtx = now + self.rto
        self._t_persist = _INF
        self._last_send = now

    def _send_seg_again(self, i: int, now: float) -> Seg:
        """Retransmit scoreboard record i (cut to the current MSS first)."""
        sb = self._sb
        s = sb.segs[i]
        mss = self._seg_mss()
        data_end = self._snd_buf_seq + len(self._snd_buf)
        if min(s.end, data_end) - s.start > mss:
            sb.split(i, s.start + mss)
        pend = s.end if s.end <= data_end else data_end
        flags = ACK
        if pend == data_end and pend > s.start:
            flags |= PSH
        if s.end > data_end:
            flags |= FIN
        off = s.start - self._snd_buf_seq
        self._emit(flags, s.start, self._snd_buf.peek(off, pend - s.start)
                   if pend > s.start else b"", now)
        self.retransmits += 1
        self._last_send = now
        if log.isEnabledFor(_DEBUG):
            log.debug("%r: retransmit seq=%d len=%d", self, s.start & _M32, pend - s.start)
        return s

    def _retransmit_lost(self, now: float, force: bool) -> bool:
        """Resend segments marked lost, lowest first, while cwnd - pipe
        allows (RFC 6675 (C)); ``force`` sends the first one regardless
        (fast retransmit, RTO). A segment beyond the peer's window is sent
        only when forced, and then as a probe: it stays due, so it is the
        first thing sent once the window opens."""
        sb = self._sb
        sent = False
        while True:
            i = sb.next_lost()
            if i is None:
                return sent
            s = sb.segs[i]
            in_window = s.start < self.snd_una + self.snd_wnd
            if not force:
                if not in_window:
                    return sent
                n = min(s.end - s.start, self._seg_mss())
                if self.cc.cwnd - sb.pipe(self.snd_max - self.snd_una) < n:
                    return sent
            s = self._send_seg_again(i, now)
            if not in_window:
                return True  # a probe into a closed window: still lost
            self._tx_count += 1
            sb.on_retransmit(s, now, self._tx_count)
            if self._ca == _RECOVERY:
                self._prr_out += s.end - s.start
            if self._rtt_seq is not None:
                self._rtt_seq = None  # Karn's rule
            if self._t_rtx == _INF:
                self._t_rtx = now + self.rto
            force = False
            sent = True

    def _seg_mss(self) -> int:
        """Payload limit for the next segment: SACK blocks we attach eat
        into the MSS (RFC 2018, RFC 6691)."""
        if (self._ooo or self._dsack) and self._sack_ok:
            n = len(self._ooo) + (1 if self._dsack else 0)
            return self._mss - 4 - 8 * min(n, 3 if self._ts_ok else 4)
        return self._mss

    def _persist_interval(self) -> float:
        return min(self.rto * (1 << min(self._persist_backoff, 30)), self.config.rto_max)

    # ------------------------------------------------------------------
    # Timers

    def on_timer(self, now: float) -> None:
        if now >= self._t_pto:
            self._on_pto(now)  # before the RTO: a PTO capped at the RTO goes first
        if now >= self._t_rtx:
            self._on_rto(now)
        if now >= self._t_reo:
            self._on_reo_timer(now)
        if now >= self._t_persist:
            self._on_persist(now)
        if now >= self._t_delack:
            self._t_delack = _INF
            if self.state is not CLOSED and (self.rcv_nxt > self._last_ack_sent
                                             or self._ack_pending):
                self._send_ack(now)
        if now >= self._t_keepalive:
            self._on_keepalive(now)
        if now >= self._t_close:
            self._t_close = _INF
            if self.state in (TIME_WAIT, FIN_WAIT_2):
                self._close(None)
        self._update_deadline()

    def _on_rto(self, now: float) -> None:
        cfg = self.config
        st = self.state
        self._t_rtx = _INF
        if st is SYN_SENT or st is SYN_RECEIVED:
            limit = cfg.syn_retries if st is SYN_SENT else cfg.synack_retries
            if self._retries >= limit:
                self._close("timeout")
                return
            self._retries += 1
            self.retransmits += 1
            self._syn_retransmitted = True
            self._rtt_seq = None
            self.rto = min(self.rto * 2, cfg.rto_max)
            if log.isEnabledFor(_DEBUG):
                log.debug("%r: SYN retransmit #%d, rto=%.3f", self, self._retries, self.rto)
            self._send_syn(now)
            return
        if st not in _SENDING_STATES or self.snd_una >= self.snd_max:
            return
        if self._retries >= cfg.max_retries:
            if log.isEnabledFor(_DEBUG):
                log.debug("%r: giving up after %d retransmissions", self, self._retries)
            self._close("timeout")
            return
        self._retries += 1
        self.rto_count += 1
        flight = self.snd_max - self.snd_una
        # RFC 5681 3.1: ssthresh only on the first timeout for this data
        # (and not when recovery already reduced it).
        self.cc.on_rto(flight, now, self._retries > 1 or self._ca == _RECOVERY
                       or self._in_recovery)
        self._recover = self.snd_max  # RFC 6582 4, RFC 6675 5.1 RecoveryPoint = HighData
        self._in_recovery = False
        self._dupacks = 0
        self._rtt_seq = None
        self.rto = min(self.rto * 2, cfg.rto_max)  # RFC 6298 5.5
        self._tlp_high = None
        self._t_pto = self._t_reo = _INF
        sb = self._sb
        if sb.segs and sb.segs[0].flags & SACKED:
            sb.clear_sacks()  # the peer reneged on its SACKs (RFC 2018 8)
        # RFC 6298 5.4 / RFC 6675 5.1: everything not SACKed is due again, from
        # SND.UNA up (go-back-N over the scoreboard).
        sb.mark_all_lost()
        self._ca = _LOSS if self._sack_ok else _OPEN
        if log.isEnabledFor(_DEBUG):
            log.debug("%r: RTO #%d, rto=%.3f\n%s", self, self._retries, self.rto,
                      self.window_diagram())
        self._retransmit_lost(now, True)
        self._t_rtx = now + self.rto

    def _on_reo_timer(self, now: float) -> None:
        """RFC 8985 6.3: the reordering window of a pending segment ran out."""
        self._t_reo = _INF
        if self.state not in _SENDING_STATES or self.snd_una >= self.snd_max:
            return
        if self._rack_detect(now):
            if self._ca == _OPEN:
                self._enter_recovery(now, 0)
            self._push(now)

    def _arm_pto(self, now: float) -> None:
        """RFC 8985 7.2: schedule a tail loss probe 2*SRTT after the last
        transmission or ACK, plus the worst-case delayed ACK when a single
        segment is out; never later than the RTO would fire (the probe then
        goes at that time)."""
        if self._ca != _OPEN or self._tlp_high is not None or self.snd_max <= self.snd_una \
                or self.state not in _SENDING_STATES:
            self._t_pto = _INF
            return
        srtt = self.srtt
        if srtt is None:
            pto = 1.0
        else:
            pto = 2 * srtt
            if self.snd_max - self.snd_una <= self._mss:
                pto += self.config.tlp_max_ack_delay
            else:
                pto += _TLP_MIN_GAP
        t = now + pto
        if self._t_rtx == _INF:
            self._t_rtx = now + self.rto
        if t > self._t_rtx:
            t = self._t_rtx
        self._t_pto = t

    def _on_pto(self, now: float) -> None:
        """RFC 8985 7.3: send one probe, new data if the windows allow, else
        the highest segment again; then wait for the RTO."""
        self._t_pto = _INF
        if self.state not in _SENDING_STATES or self.snd_una >= self.snd_max \
                or self._ca != _OPEN or self._tlp_high is not None:
            return
        sb = self._sb
        data_end = self._snd_buf_seq + len(self._snd_buf)
        nxt = self.snd_max
        probe_new = nxt < data_end and nxt < self.snd_una + self.snd_wnd
        if probe_new:
            n = min(data_end - nxt, self._seg_mss(), self.snd_una + self.snd_wnd - nxt)
            end = nxt + n
            self._send_new(nxt, end, self._fin_queued and end == data_end, now)
            self._tlp_retrans = False
        else:
            segs = sb.segs
            if not segs or segs[-1].flags & SACKED:
                self._t_rtx = min(self._t_rtx, now + self.rto)
                return
            i = len(segs) - 1
            last = segs[i]
            mss = self._seg_mss()
            if min(last.end, data_end) - last.start > mss:
                sb.split(i, max(min(last.end, data_end) - mss, last.start + 1))
                i += 1
            s = self._send_seg_again(i, now)
            if not s.flags & LOST:
                self._tx_count += 1
                sb.on_retransmit(s, now, self._tx_count)
            self._tlp_retrans = True
            self._tlp_probe = (s.start, s.end)
        self.tlp_count += 1
        self._tlp_high = self.snd_max
        if log.isEnabledFor(_DEBUG):
            log.debug("%r: tail loss probe (%s)", self, "new data" if probe_new else "retransmit")
        self._t_rtx = now + self.rto

    def _on_persist(self, now: float) -> None:
        self._t_persist = _INF
        if self.state not in _SENDING_STATES:
            return
        data_end = self._snd_buf_seq + len(self._snd_buf)
        pending = data_end > self.snd_max or (self._fin_queued and self._fin_seq is None)
        if not pending or self.snd_max > self.snd_una:
            return
        if self._probes >= self.config.max_retries:
            self._close("timeout")
            return
        room = self.snd_una + self.snd_wnd - self.snd_max
        if room > 0 and data_end > self.snd_max:
            # Some window, just too small for SWS avoidance: send what fits.
            nxt = self.snd_max
            n = min(room, self._seg_mss(), data_end - nxt)
            end = nxt + n
            self._send_new(nxt, end, end == data_end and self._fin_queued, now)
            return
        # Zero window probe: an old sequence number makes the peer answer
        # with its current window.
        self._send_probe(now)
        self._probes += 1
        self._persist_backoff += 1
        self._t_persist = now + self._persist_interval()

    def _on_keepalive(self, now: float) -> None:
        cfg = self.config
        self._t_keepalive = _INF
        if not cfg.keepalive or self.state not in _KEEPALIVE_STATES:
            return
        if self.snd_max > self.snd_una or self._snd_buf:
            # Data outstanding: the retransmission timer watches the peer.
            self._t_keepalive = now + cfg.keepalive_idle
            return
        due = self._last_recv + cfg.keepalive_idle
        if now < due:
            self._t_keepalive = due
            return
        if self._ka_probes >= cfg.keepalive_count:
            if log.isEnabledFor(_DEBUG):
                log.debug("%r: keepalive: peer dead", self)
            self._send_rst(now)
            self._close("timeout")
            return
        self._send_probe(now)
        self._ka_probes += 1
        self._t_keepalive = now + cfg.keepalive_interval

    # ------------------------------------------------------------------
    # Segment arrival (RFC 9293 3.10.7)

    def on_segment(self, h: TcpHeader, payload, now: float) -> None:
        st = self.state
        if st is ESTABLISHED or (st is not SYN_SENT and st is not CLOSED and st is not LISTEN):
            self._on_segment_sync(h, payload, now)
        elif st is SYN_SENT:
            self._on_segment_syn_sent(h, payload, now)
        elif st is CLOSED:
            # RFC 9293 3.10.7.1.
            rst = reset_for(h, len(payload))
            if rst is not None:
                self._out.append((rst, b""))
        self._update_deadline()

    def _on_segment_syn_sent(self, h: TcpHeader, payload, now: float) -> None:
        """RFC 9293 3.10.7.3."""
        flags = h.flags
        ack = 0
        if flags & ACK:
            ack = self.snd_una + (((h.ack - self.snd_una + _HALF) & _M32) - _HALF)
            if ack <= self.iss or ack > self.snd_max:
                if not flags & RST:
                    self._out.append((TcpHeader(self.local[1], self.remote[1], h.ack, 0,
                                                RST, 0), b""))
                return
        if flags & RST:
            if flags & ACK:
                self._close("refused")
            return
        if not flags & SYN:
            return
        self._on_peer_syn(h, now)
        self._last_recv = now
        if flags & ACK:
            self.snd_wl2 = ack
            self._ack_syn(ack, h, now)
            self._establish(now)
            self._send_ack(now)
            if len(payload) or flags & FIN:
                self._process_data(self.irs + 1, payload, flags, now)
            self._push(now)
        else:
            # Simultaneous open (RFC 9293 3.5, figure 8).
            self._set_state(SYN_RECEIVED)
            self._send_syn(now)

    def _ack_syn(self, ack: int, h: TcpHeader, now: float) -> None:
        """Our SYN was acknowledged (SYN-SENT or SYN-RECEIVED)."""
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack
        ts = h.options.timestamps
        if self._ts_ok and ts is not None and ts[1]:
            r = ((int(now * 1000) + self._ts_offset - ts[1]) & _M32)
            if r < _HALF:
                self._rtt_sample(r / 1000)
        elif self._rtt_seq is not None:
            self._rtt_sample(now - self._rtt_time)
        self._rtt_seq = None
        self._retries = 0
        self._t_rtx = _INF if self.snd_una >= self.snd_max else now + self.rto

    def _on_segment_sync(self, h: TcpHeader, payload, now: float) -> None:
        """RFC 9293 3.10.7.4 for SYN-RECEIVED and the synchronized states."""
        flags = h.flags
        st = self.state
        plen = len(payload)
        rcv_nxt = self.rcv_nxt

        if st is SYN_RECEIVED and flags & SYN and h.seq == self.irs:
            if not flags & ACK:
                # Retransmitted SYN: answer with the SYN-ACK again (as Linux).
                self._send_syn(now)
                return
            if (not plen and h.ack == self.snd_max & _M32
                    and not flags & (RST | FIN)):
                # Simultaneous open: the peer's SYN-ACK acknowledges our SYN
                # and completes the handshake (as Linux's tcp_validate_incoming).
                ack = self.snd_max
                self._last_recv = now
                self._ack_syn(ack, h, now)
                self._establish(now)
                self.snd_wnd = h.window  # a SYN's window is never scaled
                self.snd_wl1 = rcv_nxt
                self.snd_wl2 = ack
                if self.snd_wnd > self.max_snd_wnd:
                    self.max_snd_wnd = self.snd_wnd
                self._push(now)
                return

        seq = rcv_nxt + (((h.seq - rcv_nxt + _HALF) & _M32) - _HALF)
        ts = h.options.timestamps
        if self._ts_ok and not flags & RST:
            if ts is None:
                return  # RFC 7323 3.2: drop a non-RST segment without TSopt
            # PAWS, RFC 7323 5.3 R1.
            if ((ts[0] - self._ts_recent) & _M32) >= _HALF and \
                    now - self._ts_recent_stamp <= _PAWS_IDLE:
                if flags & SYN:
                    self._challenge_ack(now)
                else:
                    self._oow_ack(now, plen + (flags & FIN), flags)
                return

        # First: sequence number (RFC 9293 3.10.7.4 table).
        seg_len = plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        wnd = self._rcv_adv - rcv_nxt
        if seg_len == 0:
            ok = seq == rcv_nxt if wnd <= 0 else rcv_nxt <= seq < rcv_nxt + wnd
        elif wnd <= 0:
            # Zero window: still take the ACK (and a bare FIN) at RCV.NXT.
            ok = seq == rcv_nxt
        else:
            end = seq + seg_len - 1
            ok = (rcv_nxt <= seq < rcv_nxt + wnd) or (rcv_nxt <= end < rcv_nxt + wnd)
        if not ok:
            if flags & RST:
                return
            if flags & SYN:
                self._challenge_ack(now)  # RFC 5961 4.2
                return
            if st is TIME_WAIT and flags & FIN:
                self._t_close = now + 2 * self.config.msl  # retransmitted FIN
            if plen and self._sack_ok and seq + plen <= rcv_nxt:
                self._dsack = (seq, seq + plen)  # RFC 2883: report the duplicate
            self._oow_ack(now, seg_len, flags)
            return

        # Second: RST (RFC 5961 3.2).
        if flags & RST:
            if seq == rcv_nxt:
                if st is SYN_RECEIVED:
                    self._close("reset" if self._passive else "refused")
                elif st in (CLOSING, LAST_ACK, TIME_WAIT):
                    self._close(None)
                else:
                    self._close("reset")
            else:
                self._challenge_ack(now)
            return

        # Fourth: SYN in a synchronized state (RFC 5961 4.2).
        if flags & SYN:
            self._challenge_ack(now)
            return

        # RFC 7323 4.3: TS.Recent update, once the ACK is found acceptable
        # too (as Linux): a segment dropped below must not move it.
        ts_update = ts is not None and self._ts_ok and seq <= self._last_ack_sent and \
            ((ts[0] - self._ts_recent) & _M32) < _HALF

        # Fifth: ACK.
        if not flags & ACK:
            return
        ack = self.snd_una + (((h.ack - self.snd_una + _HALF) & _M32) - _HALF)
        if st is SYN_RECEIVED:
            if self.snd_una < ack <= self.snd_max:
                self._ack_syn(ack, h, now)
                self._establish(now)
                self.snd_wnd = h.window << self._snd_wscale
                self.snd_wl1 = seq
                self.snd_wl2 = ack
                if self.snd_wnd > self.max_snd_wnd:
                    self.max_snd_wnd = self.snd_wnd
                st = self.state
            else:
                self._out.append((TcpHeader(self.local[1], self.remote[1], h.ack, 0, RST, 0),
                                  b""))
                return
        if ack > self.snd_max:
            # RFC 9293: ACK for data not yet sent; RFC 5961 5.2 rate limits it.
            self._challenge_ack(now)
            return
        if ack < self.snd_una - self.max_snd_wnd:
            self._challenge_ack(now)  # RFC 5961 5.2
            return
        # Only an acceptable segment counts as a sign of life (keepalive).
        self._last_recv = now
        self._ka_probes = 0
        if ts_update:
            self._ts_recent = ts[0]
            self._ts_recent_stamp = now
        if st is not TIME_WAIT:
            self._process_ack(h, seq, ack, plen, flags, now)
            st = self.state
            if st is CLOSED:
                return
        fin_acked = self._fin_seq is not None and self.snd_una > self._fin_seq
        if st is FIN_WAIT_1:
            if fin_acked:
                self._set_state(FIN_WAIT_2)
                st = FIN_WAIT_2
                if self._app_closed:
                    self._t_close = now + self.config.fin_timeout
        elif st is CLOSING:
            if fin_acked:
                self._enter_time_wait(now)
                return
        elif st is LAST_ACK:
            if fin_acked:
                self._close(None)
                return
        elif st is TIME_WAIT:
            if flags & FIN:
                self._send_ack(now)
                self._t_close = now + 2 * self.config.msl
            return

        # Sixth (URG) is not supported: urgent data is delivered inline.
        # Seventh and eighth: segment text and FIN (ignored once the peer's
        # FIN has come: CLOSE-WAIT, CLOSING, LAST-ACK).
        if plen and not self._rcvbuf_locked:
            self._rcv_rtt_measure(ts[1] if ts is not None and self._ts_ok else None, plen, now)
        if plen or flags & FIN:
            self._process_data(seq, payload, flags, now)

        if self.state in _SENDING_STATES:
            data_end = self._snd_buf_seq + len(self._snd_buf)
            nxt = self.snd_max
            if nxt < data_end or (nxt == data_end and self._fin_queued) \
                    or self._sb.lost_hint != _INF:
                self._push(now)

    def _process_ack(self, h: TcpHeader, seq: int, ack: int, plen: int, flags: int,
                     now: float) -> None:
        """RFC 9293 3.10.7.4 fifth check for ESTABLISHED and later, with loss
        recovery (SACK: RFC 6675 + RACK-TLP RFC 8985 + PRR RFC 6937; without
        SACK: RFC 5681 / RFC 6582) and RFC 6298 RTT measurement."""
        wnd = h.window << self._snd_wscale
        self._probes = 0
        if self._sack_ok:
            self._ack_sack(h, ack, now)
        else:
            self._ack_newreno(h, ack, plen, flags, wnd, now)
        # Window update (RFC 9293 3.10.7.4, SND.WL1/SND.WL2 rule).
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            if ack >= self.snd_una:
                self.snd_wnd = wnd
                self.snd_wl1 = seq
                self.snd_wl2 = ack
                if wnd > self.max_snd_wnd:
                    self.max_snd_wnd = wnd
                if wnd and self._t_persist != _INF:
                    self._t_persist = _INF
                    self._persist_backoff = 0
        if not self._sndbuf_locked:
            # Send buffer auto-tuning (as Linux's tcp_sndbuf_expand): room for
            # two congestion windows, so the application keeps the pipe full.
            want = 2 * self.cc.cwnd
            cfg = self.config
            if want > cfg.send_buffer:
                cfg.send_buffer = want if want < cfg.send_buffer_max else \
                    max(cfg.send_buffer_max, cfg.send_buffer)

    def _drop_acked(self, ack: int) -> None:
        buf_seq = self._snd_buf_seq
        upto = buf_seq + len(self._snd_buf)
        if ack < upto:
            upto = ack
        if upto > buf_seq:
            self._snd_buf.consume(upto - buf_seq)
            self._snd_buf_seq = upto
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack

    def _ack_rtt(self, ts, first, last, newly, now: float):
        """RTT from an ACK that advanced SND.UNA (RFC 7323 4.2: only those).
        Feeds SRTT/RTO (RFC 6298) and min_RTT; returns the sample for the
        congestion controller (the most recently sent segment's, if clean).

        With timestamps the sample is now - TSecr, unless the echo is older
        than the latest retransmission of the data this ACK covers: then it
        belongs to the original transmission (say, a duplicate answered with a
        stale TS.Recent after the first ACK was lost) and would add the
        retransmission timeout to the RTT (Karn's concern; RFC 3522 uses the
        same test). Without timestamps: Karn's rule on the segment records."""
        ever_latest = None
        if newly:
            for s in newly:
                if s.flags & EVER_RETRANS and (ever_latest is None or s.ts > ever_latest):
                    ever_latest = s.ts
        r = None
        if self._ts_ok:
            if ts is not None and ts[1]:
                m = (int(now * 1000) + self._ts_offset - ts[1]) & _M32
                if m < _HALF:
                    m /= 1000
                    if ever_latest is None or now - m >= ever_latest - 0.001:
                        r = m
        elif first is not None and ever_latest is None:
            r = now - first.ts
        if r is not None:
            self._rtt_sample(r, now)
        if last is not None and not last.flags & EVER_RETRANS:
            return now - last.ts
        return r

    def _ack_newreno(self, h: TcpHeader, ack: int, plen: int, flags: int, wnd: int,
                     now: float) -> None:
        """A peer without SACK: RFC 5681 fast retransmit, RFC 6582 NewReno."""
        una = self.snd_una
        sb = self._sb
        if ack > una:
            acked = ack - una
            flight = self.snd_max - una
            self._drop_acked(ack)
            first, last, newly = sb.ack(ack)
            rtt = self._ack_rtt(h.options.timestamps, first, last, newly, now)
            self._retries = 0
            cc = self.cc
            if self._in_recovery:
                if ack >= self._recover:
                    # Full ACK: RFC 6582 3.2 step 3.
                    self._in_recovery = False
                    self._dupacks = 0
                    cc.on_exit_recovery(self.snd_max - ack, now)
                else:
                    # Partial ACK: retransmit the next hole, deflate.
                    cc.on_partial_ack(acked)
                    if sb.segs:
                        sb.mark_lost(sb.segs[0])
                        self._retransmit_lost(now, True)
                    if not self._partial_seen:
                        self._partial_seen = True
                        self._t_rtx = now + self.rto
            else:
                self._dupacks = 0
                cc.on_ack(acked, flight, now, rtt, self.srtt, ack, self.snd_max)
            if ack >= self.snd_max:
                self._t_rtx = _INF
            elif not (self._in_recovery and self._partial_seen and self._t_rtx != _INF):
                self._t_rtx = now + self.rto
        elif ack == una and self.snd_max > una and plen == 0 \
                and not flags & (SYN | FIN) and wnd == self.snd_wnd:
            # Duplicate ACK (RFC 5681 2).
            self._dupacks += 1
            if self._in_recovery:
                self.cc.on_dupack_in_recovery()
            elif self._dupacks == _DUPTHRESH:
                if ack > self._recover or self._recover == self.iss:
                    # RFC 5681 3.2 fast retransmit; RFC 6582 3.2 step 2.
                    self._in_recovery = True
                    self._partial_seen = False
                    self._recover = self.snd_max
                    self.fast_recoveries += 1
                    self.cc.on_enter_recovery(self.snd_max - una, now)
                    if log.isEnabledFor(_DEBUG):
                        log.debug("%r: fast retransmit\n%s", self, self.window_diagram())
                    if sb.segs:
                        sb.mark_lost(sb.segs[0])
                        self._retransmit_lost(now, True)
                    self._t_rtx = now + self.rto

    def _ack_sack(self, h: TcpHeader, ack: int, now: float) -> None:
        """A SACK peer. The common case (nothing lost, no SACK blocks, open
        state) costs one bisect on the scoreboard and the controller's
        on_ack; the scoreboard, RACK and PRR only run when there is loss."""
        una = self.snd_una
        sb = self._sb
        cc = self.cc
        opts = h.options
        acked = 0
        delivered = 0
        rtt = None
        flight = self.snd_max - una
        if ack > una:
            acked = ack - una
            self._drop_acked(ack)
            sacked_before = sb.sacked_out
            first, last, newly = sb.ack(ack)
            delivered = acked - (sacked_before - sb.sacked_out)
            rtt = self._ack_rtt(opts.timestamps, first, last, newly, now)
            if self._rack_on:
                rack = self._rack
                if newly is None:
                    if last is not None:
                        rack.update(last, now)
                        if last.end > rack.fack:
                            rack.fack = last.end
                else:
                    echo_ok = self._echo_check(opts.timestamps)
                    for s in newly:
                        rack.update(s, now, echo_ok)
                        rack.note_delivered(s)
            self._retries = 0
        newly_sacked = 0
        dsack = None
        if opts.sack_blocks:
            newly_sacked, dsack = self._on_sack_blocks(opts.sack_blocks, ack, now,
                                                       opts.timestamps)
            delivered += newly_sacked
        if self._ca == _OPEN and sb.clean and dsack is None and self._tlp_high is None \
                and self._t_reo == _INF:
            if acked:
                cc.on_ack(acked, flight, now, rtt, self.srtt, ack, self.snd_max)
        else:
            self._sack_recovery(ack, acked, flight, delivered, newly_sacked, dsack, rtt, now)
        if acked:
            if ack >= self.snd_max:
                self._t_rtx = self._t_pto = self._t_reo = _INF
            else:
                self._t_rtx = now + self.rto  # RFC 6298 5.3
                if self._tlp_on:
                    self._arm_pto(now)

    def _echo_check(self, ts):
        """For RACK: a test whether this ACK's TSecr echoes a TSval sent at
        or after a given time (None without timestamps)."""
        if not self._ts_ok or ts is None or not ts[1]:
            return None
        tsecr = ts[1]
        tsval = self._tsval
        return lambda t: ((tsecr - tsval(t)) & _M32) < _HALF

    def _on_sack_blocks(self, blocks, ack: int, now: float, ts=None):
        """Unwrap and apply SACK blocks; returns (bytes newly SACKed, the
        D-SACK range or None). A first block below the cumulative ACK, or
        inside the second block, reports a duplicate (RFC 2883 4) and marks
        nothing."""
        una = self.snd_una
        snd_max = self.snd_max
        out = []
        dsack = None
        prev = None
        for k, (l32, r32) in enumerate(blocks):
            left = una + (((l32 - una + _HALF) & _M32) - _HALF)
            right = left + ((r32 - l32) & _M32)
            if right <= left:
                continue
            if k == 0:
                if right <= ack:
                    dsack = (left, right)
                    continue
                prev = (left, right)
                continue
            if k == 1 and prev is not None:
                if left <= prev[0] and prev[1] <= right:
                    dsack = prev
                else:
                    out.append(prev)
                prev = None
            out.append((left, right))
        if prev is not None:
            out.append(prev)
        blocks_in = []
        for left, right in out:
            if left < una:
                left = una
            if right > snd_max:
                right = snd_max
            if left < right:
                blocks_in.append((left, right))
        if not blocks_in:
            return 0, dsack
        sb = self._sb
        before = sb.sacked_out
        newly = sb.sack(blocks_in)
        if newly and self._rack_on:
            rack = self._rack
            echo_ok = self._echo_check(ts)
            for s in newly:
                rack.update(s, now, echo_ok)
                rack.note_delivered(s)
        return sb.sacked_out - before, dsack

    def _sack_recovery(self, ack: int, acked: int, flight: int, delivered: int,
                       newly_sacked: int, dsack, rtt, now: float) -> None:
        sb = self._sb
        cc = self.cc
        if dsack is not None:
            self.dsacks_received += 1
            if self._rack_on:
                self._rack.on_dsack(self.snd_una, self.snd_max)
        # RFC 8985 7.4: did a tail loss probe repair a loss?
        hi = self._tlp_high
        if hi is not None:
            if not self._tlp_retrans:
                if ack >= hi:
                    self._tlp_high = None
            elif dsack is not None and dsack[0] < self._tlp_probe[1] \
                    and dsack[1] > self._tlp_probe[0]:
                self._tlp_high = None  # the original and the probe both arrived
                self.spurious_rtx += 1
            elif ack > hi:
                self._tlp_high = None
                if self._ca == _OPEN:
                    cc.on_cwnd_reduction(self._pipe(), now)  # RFC 8985 7.4.2
            elif not acked and not newly_sacked and dsack is None and ack >= hi:
                self._tlp_high = None
        # Loss detection.
        if self._rack_on:
            self._rack_detect(now)
        else:
            if acked:
                self._dupacks = 0
            if newly_sacked:
                # RFC 6675: an ACK with new SACK information is a duplicate.
                self._dupacks += 1
                bound = sb.is_lost_bound(_DUPTHRESH, self._mss)
                if bound > self.snd_una:
                    sb.mark_lost_below(bound)
                if self._dupacks >= _DUPTHRESH and self._ca == _OPEN and sb.segs:
                    sb.mark_lost(sb.segs[0])  # RFC 6675 5 step (4.1)
        ca = self._ca
        if ca == _RECOVERY:
            if ack >= self._recover:
                self._exit_recovery(now)
            else:
                self._prr(delivered)
                return
        elif ca == _LOSS:
            if ack >= self._recover:
                self._ca = _OPEN
                if self._rack_on:
                    self._rack.on_recovery_exit()
            else:
                if acked:
                    cc.on_ack(acked, flight, now, rtt, self.srtt, ack, self.snd_max)
                return
        if sb.lost_out:
            self._enter_recovery(now, delivered)
        elif acked and ca == _OPEN:
            cc.on_ack(acked, flight, now, rtt, self.srtt, ack, self.snd_max)

    def _rack_detect(self, now: float) -> bool:
        """RFC 8985 6.2 step 5; arms the reordering timer for what may still
        turn out lost."""
        rack = self._rack
        sb = self._sb
        if rack.xmit_ts == -_INF or not sb.segs:
            self._t_reo = _INF
            return False
        reo = rack.reo_wnd(self._ca != _OPEN, sb.sacked_out > (_DUPTHRESH - 1) * self._mss,
                           self.srtt)
        lost, wait = sb.rack_candidates_lost(now, rack.tx, rack.rtt, reo)
        for s in lost:
            sb.mark_lost(s)
        if lost:
            self.rack_losses += len(lost)
        self._t_reo = now + wait if wait != _INF else _INF
        return bool(lost)

    def _enter_recovery(self, now: float, delivered: int) -> None:
        """RFC 6675 5 / RFC 6937: fast recovery with PRR."""
        self._ca = _RECOVERY
        self._recover = self.snd_max  # RecoveryPoint = HighData
        self.fast_recoveries += 1
        flight = self.snd_max - self.snd_una
        self.cc.on_enter_recovery(flight, now)
        self._prr_delivered = 0
        self._prr_out = 0
        self._recover_fs = max(flight, 1)
        self._tlp_high = None
        self._t_pto = _INF
        if log.isEnabledFor(_DEBUG):
            log.debug("%r: fast recovery\n%s", self, self.window_diagram())
        self._prr(delivered)

    def _exit_recovery(self, now: float) -> None:
        self._ca = _OPEN
        self.cc.on_exit_recovery(self._pipe(), now, sack=True)
        if self._rack_on:
            self._rack.on_recovery_exit()

    def _prr(self, delivered: int) -> None:
        """RFC 6937 3: set cwnd so that what recovery sends tracks what was
        delivered, ending near ssthresh (PRR-SSRB below it)."""
        self._prr_delivered += delivered
        mss = self._mss
        pipe = self._sb.pipe(self.snd_max - self.snd_una)
        ssthresh = self.cc.ssthresh
        if pipe > ssthresh:
            sndcnt = -(-self._prr_delivered * ssthresh // self._recover_fs) - self._prr_out
        else:
            limit = max(self._prr_delivered - self._prr_out, delivered) + mss
            sndcnt = ssthresh - pipe
            if limit < sndcnt:
                sndcnt = limit
        if sndcnt < 0:
            sndcnt = 0
        if self._prr_out == 0 and sndcnt < mss:
            sndcnt = mss  # the fast retransmit goes out at once
        self.cc.cwnd = pipe + sndcnt

    def _process_data(self, seq: int, payload, flags: int, now: float) -> None:
        """Seventh (text) and eighth (FIN) checks."""
        st = self.state
        plen = len(payload)
        fin = flags & FIN
        if st not in _RECEIVING_STATES:
            # CLOSE-WAIT, CLOSING, LAST-ACK: the peer's FIN came already.
            self._send_ack(now)
            return
        rcv_nxt = self.rcv_nxt
        ack_now = False
        if self._app_closed and plen and seq + plen > rcv_nxt:
            # Data for an application that closed: RST (as Linux, RFC 2525 2.17).
            self._send_rst(now)
            self._close(None)
            return
        if seq < rcv_nxt:
            cut = rcv_nxt - seq
            ack_now = True  # (partial) duplicate: tell the peer at once
            if plen and self._sack_ok:
                self._dsack = (seq, min(seq + plen, rcv_nxt))  # RFC 2883
            if cut >= plen:
                if fin and seq + plen == rcv_nxt:
                    payload = b""
                    plen = 0
                else:
                    self._send_ack(now)
                    return
            else:
                payload = payload[cut:]
                plen -= cut
            seq = rcv_nxt
        edge = self._rcv_adv
        if seq + plen > edge:
            # Beyond the window: trim (RFC 9293 3.10.7.4) and ACK.
            keep = edge - seq
            if keep < 0:
                keep = 0
            payload = payload[:keep]
            plen = keep
            fin = 0
            ack_now = True
        if plen > self._rcv_mss:
            self._rcv_mss = plen if plen < self.config.mss else self.config.mss
        if seq == rcv_nxt:
            filled = False
            if plen:
                self._rcv_buf.append(payload)
                rcv_nxt += plen
                if self._ooo:
                    rcv_nxt = self._ooo_pull(rcv_nxt)
                    filled = True
                    self._ack_coalesce_from = rcv_nxt + 16 * self._rcv_mss
                self.rcv_nxt = rcv_nxt
            if fin or (self._ooo_fin is not None and self._ooo_fin == rcv_nxt):
                self._ooo_fin = None
                self._on_fin(now, ack_now or filled)
                return
            if ack_now or filled:
                self._send_ack(now)
            else:
                self._ack_pending += plen
                if self._ack_pending > self._rcv_mss:
                    self._send_ack(now)  # every second full-sized segment (RFC 1122 4.2.3.2)
                elif self._t_delack == _INF:
                    self._t_delack = now + self.config.delayed_ack
        else:
            # Out of order: hold it (bounded by the window) and ACK at once
            # with SACK (RFC 5681 4.2, RFC 2018).
            self._ack_coalesce_from = rcv_nxt + 16 * self._rcv_mss
            if plen:
                if not self._ooo_insert(seq, payload) and self._sack_ok:
                    self._dsack = (seq, seq + plen)  # all of it was here already
                rs = self._sack_recent
                if seq in rs:
                    rs.remove(seq)
                rs.insert(0, seq)
                del rs[4:]
            if fin:
                self._ooo_fin = seq + plen
            self._send_ack(now)

    def _ooo_insert(self, seq: int, payload) -> bool:
        """Hold out-of-order data; False if every byte was held already."""
        ooo = self._ooo
        end = seq + len(payload)
        mv = memoryview(payload) if not isinstance(payload, memoryview) else payload
        i = bisect_right(ooo, seq, key=_start) - 1
        added = False
        if i >= 0 and ooo[i][1] > seq:
            e = ooo[i][1]
            if e >= end:
                return False
            mv = mv[e - seq:]
            seq = e
        i += 1
        while i < len(ooo) and ooo[i][0] < end:
            s, e, _ = ooo[i]
            if s > seq:
                ooo.insert(i, (seq, s, bytes(mv[:s - seq])))
                added = True
                i += 1
            if e >= end:
                return added
            mv = mv[e - seq:]
            seq = e
            i += 1
        if seq < end:
            ooo.insert(i, (seq, end, bytes(mv)))
            added = True
        return added

    def _ooo_pull(self, rcv_nxt: int) -> int:
        ooo = self._ooo
        k = 0
        buf = self._rcv_buf
        for s, e, d in ooo:
            if s > rcv_nxt:
                break
            if e > rcv_nxt:
                buf.append(d[rcv_nxt - s:] if s < rcv_nxt else d)
                rcv_nxt = e
            k += 1
        if k:
            del ooo[:k]
        if not ooo:
            self._sack_recent.clear()
        return rcv_nxt

    def _on_fin(self, now: float, ack_now: bool = True) -> None:
        """RFC 9293 3.10.7.4 eighth check. In ESTABLISHED the ACK of an
        in-order FIN is delayed (as Linux, which enters pingpong mode in
        tcp_fin): an application that closes at once sends its FIN with it."""
        self.rcv_nxt += 1
        self._fin_received = True
        self._ooo = []
        st = self.state
        if st is ESTABLISHED:
            self._set_state(CLOSE_WAIT)
            if not ack_now:
                self._ack_pending += 1
                if self._t_delack == _INF:
                    self._t_delack = now + self.config.delayed_ack
                return
        elif st is FIN_WAIT_1:
            if self._fin_seq is not None and self.snd_una > self._fin_seq:
                self._send_ack(now)
                self._enter_time_wait(now)
                return
            self._set_state(CLOSING)
        elif st is FIN_WAIT_2:
            self._send_ack(now)
            self._enter_time_wait(now)
            return
        self._send_ack(now)


def _without_superseded_acks(out: list, rcv_nxt: int, coalesce_from: int) -> list:
    """``out`` less pure ACKs superseded by its last segment, keeping one in
    _ACK_COALESCE_RUN of them (so one lost ACK costs the peer little) and
    every one below ``coalesce_from``."""
    last = out[-1][0]
    if not last.flags & ACK:
        return out
    ack, seq = last.ack, last.seq
    superseded = [h.flags == ACK and h.ack != ack and h.seq == seq and not p
                  and not h.options.sack_blocks
                  and rcv_nxt + (((h.ack - rcv_nxt + _HALF) & _M32) - _HALF) >= coalesce_from
                  for h, p in out]
    if sum(superseded) < _ACK_COALESCE_MIN:
        return out  # a small flight: every ACK counts when one is lost
    kept = []
    run = 0
    for seg, drop in zip(out, superseded):
        if drop:
            run += 1
            if run < _ACK_COALESCE_RUN:
                continue
            run = 0
        kept.append(seg)
    return kept


#: At most this many pure ACKs of one batch go as one (at least one ACK for
#: every eight full-sized segments reaches the peer).
_ACK_COALESCE_RUN = 4
#: ... and only in a batch with at least this many of them (16 segments):
#: a sender with a small window (after losses) gets every ACK.
_ACK_COALESCE_MIN = 8


def _start(entry) -> int:
    return entry[0]
