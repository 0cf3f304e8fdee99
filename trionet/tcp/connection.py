"""The TCP connection state machine, without I/O (RFC 9293).

A ``TcpConnection`` is fed segments (``on_segment``), timer expiries
(``on_timer``) and application calls (``send``, ``receive``,
``shutdown_write``, ``abort``). It never transmits anything itself: segments
to send pile up until ``pop_outgoing()``, and ``next_deadline`` says when
``on_timer`` wants to be called next.

Its state is grouped into named parts (``parts.py``): the RTT estimator,
the timers, the out-of-order assembler, the send and receive buffers, the
timestamp option and the challenge-ACK limiter; loss recovery has its own
(``recovery.py``). The behaviour is split by RFC area: segment arrival in
``input.py``, sending in ``output.py``, timers in ``timers.py``, loss
recovery in ``recovery.py``; this file opens, closes and reports.

Sequence numbers are kept *unwrapped* internally: plain Python ints that start
at the ISN (or IRS) and grow past 2**32, so every comparison is an ordinary
``<``. Incoming 32-bit values are unwrapped next to a reference point
(RCV.NXT for SEG.SEQ, SND.UNA for SEG.ACK) and outgoing ones masked. So the
public ``snd_una``/``snd_nxt``/``snd_max``/``rcv_nxt`` attributes may exceed
2**32: mask them (``& 0xFFFFFFFF``) or use ``trionet.tcp.seq``, which masks
anyway; ``info()`` reports wire values.

Contract for the wrapper: after *every* call (``on_segment``, ``on_timer``,
``send``, ``receive``, ``shutdown_write``, ``close``, ``abort``,
``set_option``, ...) take ``pop_outgoing()`` and move the timer to
``next_deadline`` (``socket.TcpSocket`` does it in one place). A payload
handed to ``on_segment`` is copied when kept, so the caller may reuse its
buffer. Segments for a connection in TIME-WAIT that carry a new SYN should
be checked with ``accepts_syn_in_time_wait`` first.
"""

from __future__ import annotations

import logging

import attrs

from ..wire.tcp import ACK, SYN, TcpHeader, TcpOptions
from .config import (CAN_SEND_STATES, CLOSED, CLOSE_WAIT, DEFAULT_MSS_V4, DEFAULT_MSS_V6,
                     ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, INF, KEEPALIVE_STATES, LAST_ACK,
                     LISTEN, M32, MAX_WSCALE, MIN_MSS, MIN_PMTU, RECEIVING_STATES,
                     RST_ON_ABORT, SENDING_STATES, SYN_RECEIVED, SYN_SENT, TIME_WAIT,
                     TS_OPTION_LEN, TcpConfig, TcpState, our_window_scale, reset_for)
from .congestion import make_congestion_control
from .input import InputMixin
from .output import OutputMixin
from .parts import (Assembler, ChallengeAcks, ReceiveBuffer, RttEstimator, SendBuffer,
                    Timers, Timestamps)
from .recovery import LOSS, RECOVERY, LossRecovery, RecoveryMixin
from .sack import Scoreboard
from .timers import TimerMixin

__all__ = ["TcpConfig", "TcpConnection", "TcpState", "reset_for", "our_window_scale"]

log = logging.getLogger("trionet.tcp")
_DEBUG = logging.DEBUG


class TcpConnection(InputMixin, OutputMixin, TimerMixin, RecoveryMixin):
    """One TCP connection's protocol state. See the module docstring."""

    __slots__ = (
        "config", "local", "remote", "state", "error", "established", "_out", "_passive",
        "next_deadline", "soft_error", "_app_closed",
        # send sequence space (unwrapped) and the data behind it
        "iss", "snd_una", "snd_nxt", "snd_max", "snd_wnd", "snd_wl1", "snd_wl2",
        "max_snd_wnd", "send_buffer",
        # receive sequence space (unwrapped), the data and what is held out of order
        "irs", "rcv_nxt", "rcv_adv", "receive_buffer", "assembler", "_fin_received",
        "_ack_pending", "_ack_coalesce_from", "_last_ack_sent", "_rcv_mss",
        # negotiated options
        "timestamps", "_sack_ok", "_ws_ok", "_snd_wscale", "_rcv_wscale", "_our_wscale",
        "_peer_mss", "_mss", "_syn_window",
        # RTT, timers, retransmission, congestion and loss recovery
        "rtt", "timers", "_retries", "retransmits", "cc", "recovery", "_last_send",
        "_last_recv", "challenges",
        # full-sized segments one data segment may carry (TSO: the path's link cuts it)
        "gso_segments",
    )

    def __init__(self, local, remote, iss: int, config: TcpConfig, now: float,
                 ts_offset: int = 0, *, mss: int | None = None):
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
        self.next_deadline = INF
        #: The last soft ICMP error (RFC 1122 4.2.3.9), as text.
        self.soft_error: str | None = None
        self._app_closed = False

        iss &= M32
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = iss
        self.max_snd_wnd = 0
        self.send_buffer = SendBuffer(iss + 1, cfg.autotune)

        self.irs = 0
        self.rcv_nxt = 0
        #: RCV.ADV: the right edge of the window we last advertised.
        self.rcv_adv = 0
        self.receive_buffer = ReceiveBuffer(now, cfg.autotune)
        self.assembler = Assembler()
        self._fin_received = False
        self._ack_pending = 0
        # ACKs of one batch are coalesced only once RCV.NXT passes this: not
        # while the peer recovers from a loss (see pop_outgoing).
        self._ack_coalesce_from = 0
        self._last_ack_sent = 0
        self._rcv_mss = min(DEFAULT_MSS_V4, cfg.mss)

        self.timestamps = Timestamps(ts_offset, now)
        self._sack_ok = False
        self._ws_ok = False
        self._snd_wscale = 0
        self._rcv_wscale = 0
        self._our_wscale = our_window_scale(cfg)
        self._peer_mss = DEFAULT_MSS_V6 if getattr(remote[0], "version", 4) == 6 \
            else DEFAULT_MSS_V4
        self._mss = min(self._peer_mss, cfg.mss)
        self._syn_window = min(cfg.receive_buffer, 0xFFFF)

        self.rtt = RttEstimator(cfg)
        self.timers = Timers()
        self._retries = 0
        self.retransmits = 0
        self.cc = make_congestion_control(cfg.congestion, self._mss, now, cfg.hystart)
        self.recovery = LossRecovery(iss)
        self._last_send = now
        self._last_recv = now
        #: Set by the task from the path: >1 where the link takes TCP
        #: segments of several MSS and cuts them (TSO), so new data goes out
        #: as such segments, one scoreboard record each (Linux tcp_write_xmit).
        self.gso_segments = 1
        self.challenges = ChallengeAcks(now)

    # ------------------------------------------------------------------
    # Opening

    @classmethod
    def connect(cls, local, remote, iss: int, config: TcpConfig, now: float,
                ts_offset: int = 0, *, mss: int | None = None) -> TcpConnection:
        """Active open (RFC 9293 3.10.1): SYN queued, state SYN-SENT."""
        self = cls(local, remote, iss, config, now, ts_offset, mss=mss)
        self._set_state(SYN_SENT)
        self._send_syn(now)
        self._update_deadline()
        return self

    @classmethod
    def accept(cls, local, remote, syn: TcpHeader, iss: int, config: TcpConfig, now: float,
               ts_offset: int = 0, *, mss: int | None = None) -> TcpConnection:
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
        syn = TcpHeader(ack.src_port, ack.dst_port, (ack.seq - 1) & M32, 0, SYN, ack.window, 0,
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
        self.rcv_adv = irs + 1 + self._syn_window
        opts = syn.options
        if opts.mss is not None:
            self._peer_mss = max(opts.mss, MIN_MSS)
        self._ws_ok = cfg.window_scale and opts.window_scale is not None
        if self._ws_ok:
            self._snd_wscale = min(opts.window_scale, MAX_WSCALE)
            self._rcv_wscale = self._our_wscale
        else:
            self._snd_wscale = self._rcv_wscale = 0
        timestamps = self.timestamps
        if cfg.timestamps and opts.timestamps is not None:
            timestamps.ok = True
            timestamps.record(opts.timestamps[0], now)
        else:
            timestamps.ok = False
        self._sack_ok = cfg.sack and opts.sack_permitted
        rec = self.recovery
        rec.rack_on = self._sack_ok and cfg.rack
        rec.tlp_on = rec.rack_on and cfg.tlp
        # RFC 9293 3.7.1 / RFC 6691: payload = MSS minus the options we send.
        self._mss = max(min(self._peer_mss, cfg.mss) - (TS_OPTION_LEN if timestamps.ok else 0),
                        MIN_MSS - TS_OPTION_LEN)
        self._rcv_mss = min(DEFAULT_MSS_V4, self._mss)
        # SYN windows are never scaled (RFC 7323 2.2).
        self.snd_wnd = syn.window
        self.max_snd_wnd = max(self.max_snd_wnd, syn.window)
        self.snd_wl1 = irs
        self.cc.set_mss(self._mss)
        self.receive_buffer.start(irs + 1, min(cfg.receive_buffer, 10 * self._mss), now)

    def _send_syn(self, now: float) -> None:
        """SYN (SYN-SENT) or SYN-ACK (SYN-RECEIVED), always at ISS."""
        cfg = self.config
        timestamps = self.timestamps
        if self.state is SYN_SENT:
            opts = TcpOptions(
                mss=cfg.mss,
                window_scale=self._our_wscale if cfg.window_scale else None,
                sack_permitted=cfg.sack,
                timestamps=(timestamps.tsval(now), 0) if cfg.timestamps else None)
            hdr = TcpHeader(self.local[1], self.remote[1], self.iss, 0, SYN,
                            self._syn_window, 0, opts)
        else:
            opts = TcpOptions(
                mss=cfg.mss,
                window_scale=self._our_wscale if self._ws_ok else None,
                sack_permitted=self._sack_ok,
                timestamps=(timestamps.tsval(now), timestamps.recent) if timestamps.ok else None)
            hdr = TcpHeader(self.local[1], self.remote[1], self.iss, self.rcv_nxt & M32,
                            SYN | ACK, self._syn_window, 0, opts)
            self._last_ack_sent = self.rcv_nxt
        self._out.append((hdr, b""))
        if self.snd_max == self.iss:
            self.snd_nxt = self.snd_max = self.iss + 1
        if self.timers.rtx == INF:
            self.timers.rtx = now + self.rtt.rto
        rtt = self.rtt
        if not rtt.syn_retransmitted and rtt.timed_seq is None and not timestamps.ok:
            rtt.timed_seq = self.iss
            rtt.timed_at = now

    # ------------------------------------------------------------------
    # Status

    @property
    def readable(self) -> bool:
        return bool(self.receive_buffer.data) or self._fin_received or self.error is not None \
            or self.state is CLOSED

    @property
    def at_eof(self) -> bool:
        return self._fin_received and not self.receive_buffer.data

    @property
    def fin_received(self) -> bool:
        """The peer's FIN has arrived (in order)."""
        return self._fin_received

    @property
    def send_space(self) -> int:
        return max(self.config.send_buffer - len(self.send_buffer.data), 0)

    @property
    def can_send(self) -> bool:
        return self.state in CAN_SEND_STATES and not self.send_buffer.fin_queued \
            and self.error is None

    @property
    def unacked_bytes(self) -> int:
        """Bytes the application wrote that the peer has not acknowledged yet
        (sent or not; Linux's SIOCOUTQ)."""
        return len(self.send_buffer.data)

    @property
    def unread_bytes(self) -> int:
        """In-order data received and not yet read by the application."""
        return len(self.receive_buffer.data)

    @property
    def out_of_order_bytes(self) -> int:
        """Data held beyond a hole, waiting for it to fill."""
        return self.assembler.held_bytes

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

    @property
    def srtt(self) -> float | None:
        return self.rtt.srtt

    @property
    def rttvar(self) -> float:
        return self.rtt.rttvar

    @property
    def rto(self) -> float:
        return self.rtt.rto

    @property
    def rcv_wscale(self) -> int:
        """The shift applied to the windows we advertise (RFC 7323 2.3)."""
        return self._rcv_wscale

    @property
    def challenge_acks(self) -> int:
        """RFC 5961 challenge ACKs sent."""
        return self.challenges.sent

    @property
    def challenge_acks_limited(self) -> int:
        """RFC 5961 challenge ACKs held back by the rate limit (RFC 5961 7)."""
        return self.challenges.limited

    def info(self) -> dict:
        rcv_wnd = max(self.rcv_adv - self.rcv_nxt, 0)
        rec = self.recovery
        sb = rec.scoreboard
        rtt = self.rtt
        return {
            "state": self.state.name,
            "srtt": rtt.srtt,
            "rttvar": rtt.rttvar,
            "rto": rtt.rto,
            "cwnd": self.cc.cwnd,
            "ssthresh": self.cc.ssthresh,
            "bytes_in_flight": self.snd_nxt - self.snd_una,
            "retransmits": self.retransmits,
            "snd_una": self.snd_una & M32,
            "snd_nxt": self.snd_nxt & M32,
            "snd_wnd": self.snd_wnd,
            "rcv_nxt": self.rcv_nxt & M32,
            "rcv_wnd": rcv_wnd,
            "mss": self._mss,
            "peer_mss": self._peer_mss,
            "snd_wscale": self._snd_wscale,
            "rcv_wscale": self._rcv_wscale,
            "timestamps": self.timestamps.ok,
            "sack": self._sack_ok,
            "unacked": len(self.send_buffer.data),
            "unread": len(self.receive_buffer.data),
            "out_of_order": self.assembler.held_bytes,
            "in_recovery": rec.state >= RECOVERY,
            "ca_state": rec.state_name,
            "congestion": self.cc.name,
            "pipe": rec.pipe(self.snd_max - self.snd_una),
            "sacked_out": sb.sacked_out,
            "lost_out": sb.lost_out,
            "retrans_out": sb.retrans_out,
            "min_rtt": None if rec.rack.min_rtt.value == INF else rec.rack.min_rtt.value,
            "rto_count": rec.rto_count,
            "tlp_count": rec.tlp_count,
            "fast_recoveries": rec.fast_recoveries,
            "rack_losses": rec.rack_losses,
            "dsacks_received": rec.dsacks_received,
            "dsacks_sent": self.assembler.dsacks_sent,
            "spurious_retransmits": rec.spurious_retransmits,
            "reordering_seen": rec.rack.reordering_seen,
            "send_buffer": self.config.send_buffer,
            "receive_buffer": self.config.receive_buffer,
            "rcv_rtt": self.receive_buffer.rtt,
            "challenge_acks": self.challenges.sent,
            "challenge_acks_limited": self.challenges.limited,
            "soft_error": self.soft_error,
            "error": self.error,
        }

    def window_diagram(self) -> str:
        """Two lines picturing the send and receive windows (relative to
        SND.UNA and RCV.NXT), for debug logs."""
        una = self.snd_una
        send_buffer = self.send_buffer
        buf_end = send_buffer.end
        wnd_edge = una + self.snd_wnd
        snd = (f"SND una=0 [{self.snd_nxt - una} in flight] nxt={self.snd_nxt - una}"
               f" [{max(buf_end - self.snd_nxt, 0)} queued] buf_end={buf_end - una}"
               f" | wnd_edge={wnd_edge - una} cwnd={self.cc.cwnd}"
               f"{' FIN' if send_buffer.fin_queued else ''}")
        rec = self.recovery
        sb = rec.scoreboard
        if not sb.clean:
            snd += (f"\n    pipe={rec.pipe(self.snd_max - una)} sacked={sb.sacked_out}"
                    f" lost={sb.lost_out} retrans={sb.retrans_out} sacked_ranges="
                    + " ".join(f"[{s - una},{e - una})" for s, e in sb.ranges))
        nxt = self.rcv_nxt
        holes = " ".join(f"[{s - nxt},{e - nxt})" for s, e, _ in self.assembler.segments)
        rcv = (f"RCV unread={len(self.receive_buffer.data)} | nxt=0 ooo={holes or '-'}"
               f" | adv_edge={self.rcv_adv - nxt}{' FIN' if self._fin_received else ''}")
        return snd + "\n" + rcv

    def __repr__(self) -> str:
        return (f"<TcpConnection {self.local[0]}:{self.local[1]} -> "
                f"{self.remote[0]}:{self.remote[1]} {self.state.name}>")

    # ------------------------------------------------------------------
    # State changes

    def _set_state(self, new: TcpState) -> None:
        if log.isEnabledFor(_DEBUG):
            log.debug("%r: %s -> %s", self, self.state.name, new.name)
        self.state = new

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
        self.timers.clear()
        self.assembler.clear()
        send_buffer = self.send_buffer
        send_buffer.data.clear()
        send_buffer.seq = self.snd_una
        self.recovery.scoreboard = Scoreboard()

    def _enter_time_wait(self, now: float) -> None:
        self._set_state(TIME_WAIT)
        self.timers.clear()
        self.timers.close = now + 2 * self.config.msl

    def _establish(self, now: float) -> None:
        self._set_state(ESTABLISHED)
        self.established = True
        self.rtt.on_established()
        self._retries = 0
        self._last_recv = now
        if self.config.keepalive:
            self.timers.keepalive = now + self.config.keepalive_idle
        if self.send_buffer.fin_queued:
            self._set_state(FIN_WAIT_1)

    # ------------------------------------------------------------------
    # Application calls

    def send(self, data, now: float) -> int:
        """Buffer as much of ``data`` as fits; returns the count taken."""
        send_buffer = self.send_buffer
        if send_buffer.fin_queued or self.state is CLOSED or self.state is TIME_WAIT:
            return 0
        buffered = send_buffer.data
        space = self.config.send_buffer - len(buffered)
        n = len(data)
        if space <= 0 or n == 0:
            return 0
        if n > space:
            data = memoryview(data)[:space]
            n = space
        if not buffered and self.snd_una == self.snd_max and \
                now - self._last_send > self.rtt.rto and self.state in SENDING_STATES:
            self.cc.on_idle_restart(now)  # RFC 5681 4.1
        buffered.append(data)
        if self.state in SENDING_STATES:
            self._push(now)
        self._update_deadline()
        return n

    def receive(self, max_bytes: int, now: float) -> bytes:
        """Up to ``max_bytes`` of in-order data (b"" when none)."""
        receive_buffer = self.receive_buffer
        buf = receive_buffer.data
        if len(buf) == 0 or max_bytes <= 0:
            return b""
        data = buf.take(max_bytes)
        cfg = self.config
        if receive_buffer.autotune:
            receive_buffer.adjust_space(now, self.rcv_nxt, self.rtt.srtt, self._rcv_mss,
                                        self._rcv_wscale, cfg)
        if self.state in RECEIVING_STATES:
            # RFC 9293 3.8.6.2.2: announce a window that grew enough, once
            # the peer may be held back by the one it has: less than two
            # segments left, or at most half of what the last ACK offered
            # (as Linux's tcp_cleanup_rbuf). Otherwise its next segments
            # bring ACKs that carry the new window anyway.
            cur = self.rcv_adv - self.rcv_nxt
            mss = self._rcv_mss
            if cur < 2 * mss or 2 * cur <= self.rcv_adv - self._last_ack_sent:
                grow = cfg.receive_buffer - len(buf) - cur
                if grow >= min(cfg.receive_buffer >> 1, 2 * mss) or (cur < mss and grow >= min(
                        cfg.receive_buffer >> 1, mss)):
                    self._send_ack(now)
                    self._update_deadline()
        return data

    def shutdown_write(self, now: float) -> None:
        """Send FIN after all buffered data (RFC 9293 3.10.4 CLOSE)."""
        send_buffer = self.send_buffer
        if send_buffer.fin_queued:
            return
        st = self.state
        if st in (ESTABLISHED, CLOSE_WAIT, SYN_SENT, SYN_RECEIVED):
            send_buffer.fin_queued = True
            if st is ESTABLISHED:
                self._set_state(FIN_WAIT_1)
            elif st is CLOSE_WAIT:
                self._set_state(LAST_ACK)
            if self.state in SENDING_STATES:
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
        if self.receive_buffer.data or self.assembler.segments:
            self.abort(now)
            return
        self._app_closed = True
        self.shutdown_write(now)
        if self.state is FIN_WAIT_2 and self.timers.close == INF:
            self.timers.close = now + self.config.fin_timeout
        self._update_deadline()

    def abort(self, now: float) -> None:
        """RST if synchronized (RFC 9293 3.10.5), then CLOSED; error stays None."""
        if self.state in RST_ON_ABORT:
            self._send_rst(now)
        self._close(None)
        self._update_deadline()

    def set_keepalive(self, enabled: bool, now: float) -> None:
        was = self.config.keepalive
        self.config.keepalive = enabled
        if enabled and not was and self.state in KEEPALIVE_STATES:
            self.timers.keepalive = now + self.config.keepalive_idle  # as Linux
        elif not enabled:
            self.timers.keepalive = INF
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
        rec = self.recovery
        if name == "receive_buffer":
            self.receive_buffer.autotune = False  # as SO_RCVBUF: no more auto-tuning
        elif name == "send_buffer":
            self.send_buffer.autotune = False
        elif name == "autotune":
            self.receive_buffer.autotune = self.send_buffer.autotune = bool(value)
        elif name in ("rack", "tlp"):
            rec.rack_on = self._sack_ok and cfg.rack
            rec.tlp_on = rec.rack_on and cfg.tlp
            if not rec.tlp_on:
                self.timers.pto = INF
        st = self.state
        if name in ("keepalive_idle", "keepalive_interval", "keepalive_count"):
            if cfg.keepalive and st in KEEPALIVE_STATES:
                due = self._last_recv + cfg.keepalive_idle
                self.timers.keepalive = due if due > now else now
        elif name == "nodelay" and value and st in SENDING_STATES:
            self._push(now)  # release what Nagle held back
        elif name == "receive_buffer" and st in RECEIVING_STATES:
            if cfg.receive_buffer - len(self.receive_buffer.data) \
                    - (self.rcv_adv - self.rcv_nxt) >= min(cfg.receive_buffer >> 1, 2 * self._rcv_mss):
                self._send_ack(now)  # window update for the larger buffer
        self._update_deadline()

    # ------------------------------------------------------------------
    # ICMP (the caller checked that the quoted sequence number lies in
    # SND.UNA..SND.NXT, RFC 5927 4.1)

    def on_icmp_error(self, description: str, spoofed_syn: bool, now: float) -> bool:
        """An ICMP destination unreachable (not "fragmentation needed"),
        time exceeded or parameter problem. For a handshake we answered
        (passive SYN-RECEIVED), an error that says the peer does not exist
        (``spoofed_syn``: net or host unreachable, time exceeded) ends it
        without a RST (as Linux's tcp_req_err): returns True. Otherwise the
        error is soft (RFC 1122 4.2.3.9; RFC 5927 4.2 treats hard errors as
        soft in synchronized states): recorded in ``soft_error``."""
        if self.state is SYN_RECEIVED and self._passive and spoofed_syn:
            self._close("unreachable")
            self._update_deadline()
            return True
        self.soft_error = description
        return False

    def on_path_mtu(self, mtu: int, now: float) -> bool:
        """ICMP "fragmentation needed" with the next-hop ``mtu`` (RFC 1191):
        lower the MSS to fit (never below what an MTU of 552 allows, Linux's
        min_pmtu: smaller reports are likely forged, RFC 5927 7), and resend
        at once what no longer fits, without a congestion response (as
        Linux's tcp_simple_retransmit). True if the MSS went down."""
        if self.state not in SENDING_STATES:
            return False
        # IPv6: the MTU is at least 1280 (RFC 8201 4) and the headers take 60.
        headers = 40 if self.local[0].version == 4 else 60
        mss = max(mtu, MIN_PMTU) - headers - (TS_OPTION_LEN if self.timestamps.ok else 0)
        if mss >= self._mss:
            return False
        self._mss = mss
        self.cc.set_mss(mss)
        rec = self.recovery
        sb = rec.scoreboard
        data_end = self.send_buffer.end
        marked = False
        for s in sb.segs:
            if min(s.end, data_end) - s.start > mss and sb.mark_lost(s):
                marked = True
        if marked:
            if rec.state != LOSS:
                rec.recover = self.snd_max
                if self._sack_ok:
                    rec.state = LOSS
            rec.tlp_high = None
            self.timers.pto = INF
            self._retransmit_lost(now, True)
            if self.timers.rtx == INF:
                self.timers.rtx = now + self.rtt.rto
        self._update_deadline()
        return True
