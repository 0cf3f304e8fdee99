"""Segment arrival (RFC 9293 3.10.7): the checks in order, the ACK's effect
on the send side, and the text and FIN given to the receive side."""

from __future__ import annotations

from ..wire.tcp import ACK, FIN, PSH, RST, SYN, TcpHeader
from .config import (CLOSE_WAIT, CLOSED, CLOSING, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, HALF,
                     INF, LAST_ACK, LISTEN, M32, RECEIVING_STATES, SENDING_STATES,
                     SYN_RECEIVED, SYN_SENT, TIME_WAIT, reset_for)
from .recovery import DISORDER, OPEN


class InputMixin:
    """``TcpConnection``'s input side."""

    __slots__ = ()

    #: Header prediction (``_predicted``) on; tests turn it off to compare
    #: against the full path.
    header_prediction = True

    def on_segment(self, h: TcpHeader, payload, now: float) -> None:
        self._input(h, payload, now)
        self._update_deadline()

    def on_segments(self, batch, now: float) -> None:
        """``on_segment`` for each (header, payload) of ``batch`` in turn,
        with ``next_deadline`` updated once, after the last."""
        for h, payload in batch:
            self._input(h, payload, now)
        self._update_deadline()

    def _input(self, h: TcpHeader, payload, now: float) -> None:
        st = self.state
        if st is ESTABLISHED and self.header_prediction and self._predicted(h, payload, now):
            return
        if st is ESTABLISHED or (st is not SYN_SENT and st is not CLOSED and st is not LISTEN):
            self._on_segment_synchronized(h, payload, now)
        elif st is SYN_SENT:
            self._on_segment_syn_sent(h, payload, now)
        elif st is CLOSED:
            # RFC 9293 3.10.7.1.
            rst = reset_for(h, len(payload))
            if rst is not None:
                self._out.append((rst, b""))

    def accepts_syn_in_time_wait(self, syn: TcpHeader) -> bool:
        """Whether a new SYN for this 4-tuple may reopen it from TIME-WAIT
        (RFC 6191 / RFC 1122 4.2.2.13): newer timestamp, or higher sequence
        number when timestamps are not in use."""
        if self.state is not TIME_WAIT or not syn.flags & SYN or syn.flags & ACK:
            return False
        ts = syn.options.timestamps
        timestamps = self.timestamps
        if timestamps.ok and ts is not None:
            return 0 < ((ts[0] - timestamps.recent) & M32) < HALF
        seq = self.rcv_nxt + (((syn.seq - self.rcv_nxt + HALF) & M32) - HALF)
        return seq > self.rcv_nxt

    def _on_segment_syn_sent(self, h: TcpHeader, payload, now: float) -> None:
        """RFC 9293 3.10.7.3."""
        flags = h.flags
        ack = 0
        if flags & ACK:
            ack = self.snd_una + (((h.ack - self.snd_una + HALF) & M32) - HALF)
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
        timestamps = self.timestamps
        rtt = self.rtt
        if timestamps.ok and ts is not None and ts[1]:
            r = timestamps.echo_age_ms(ts[1], now)
            if r < HALF:
                self._rtt_sample(r / 1000)
        elif rtt.timed_seq is not None:
            self._rtt_sample(now - rtt.timed_at)
        rtt.timed_seq = None
        self._retries = 0
        self.timers.rtx = INF if self.snd_una >= self.snd_max else now + rtt.rto

    def _predicted(self, h: TcpHeader, payload, now: float) -> bool:
        """Header prediction (RFC 9293 3.10.7.4's common case; as BSD's
        tcp_input and Linux's tcp_rcv_established fast path): in ESTABLISHED,
        a segment with only ACK (and PSH) set, at RCV.NXT, an ACK within
        SND.UNA..SND.MAX, no SACK blocks, a timestamp that passes PAWS, and
        data (if any) that fits the window with nothing held out of order.
        Does what ``_on_segment_synchronized`` would do for it, with fewer
        checks and calls; False (nothing changed) for any other segment."""
        if h.flags & ~PSH != ACK:
            return False
        rcv_nxt = self.rcv_nxt
        if h.seq != rcv_nxt & M32:
            return False
        opts = h.options
        if opts.sack_blocks:
            return False
        ts = opts.timestamps
        timestamps = self.timestamps
        ts_ok = timestamps.ok
        if ts_ok and (ts is None or timestamps.is_old(ts[0], now)):
            return False
        plen = len(payload)
        if plen:
            asm = self.assembler
            if (plen > self.rcv_adv - rcv_nxt or asm.segments or asm.fin is not None
                    or self._app_closed):
                return False
        una = self.snd_una
        ack = una + (((h.ack - una + HALF) & M32) - HALF)
        if ack < una or ack > self.snd_max:
            return False

        # The fifth check (ACK), as the full path orders it.
        self._last_recv = now
        timers = self.timers
        timers.keepalive_probes = 0
        if ts_ok and rcv_nxt <= self._last_ack_sent and ((ts[0] - timestamps.recent) & M32) < HALF:
            timestamps.recent = ts[0]  # RFC 7323 4.3
            timestamps.recent_stamp = now
        rec = self.recovery
        if (ack == una and self._sack_ok and rec.state <= DISORDER
                and rec.scoreboard.clean and rec.tlp_high is None and timers.reo == INF):
            # Nothing acknowledged, nothing lost: only the window may change.
            rec.state = OPEN
            timers.zero_window_probes = 0
            wnd = h.window << self._snd_wscale
            if self.snd_wl1 < rcv_nxt or (self.snd_wl1 == rcv_nxt and self.snd_wl2 <= ack):
                self.snd_wnd = wnd
                self.snd_wl1 = rcv_nxt
                self.snd_wl2 = ack
                if wnd > self.max_snd_wnd:
                    self.max_snd_wnd = wnd
                if wnd and timers.persist != INF:
                    timers.persist = INF
                    timers.persist_backoff = 0
            send_buffer = self.send_buffer
            if send_buffer.autotune:
                send_buffer.grow(self.cc.cwnd, self.config)
        else:
            self._process_ack(h, rcv_nxt, ack, plen, h.flags, now)

        # The seventh check (text), in order: the in-sequence branch of
        # ``_process_data``.
        if plen:
            receive_buffer = self.receive_buffer
            if receive_buffer.autotune:
                self._measure_receiver_rtt(ts[1] if ts is not None and ts_ok else None,
                                           plen, now)
            if plen > self._rcv_mss:
                mss = self.config.mss
                self._rcv_mss = plen if plen < mss else mss
            receive_buffer.data.append(payload)
            self.rcv_nxt = rcv_nxt + plen
            self._ack_pending += plen
            if self._ack_pending > self._rcv_mss:
                self._send_ack(now)  # every second full-sized segment (RFC 1122 4.2.3.2)
            elif timers.delack == INF:
                timers.delack = now + self.config.delayed_ack

        send_buffer = self.send_buffer
        data_end = send_buffer.seq + len(send_buffer.data)
        nxt = self.snd_max
        if nxt < data_end or (nxt == data_end and send_buffer.fin_queued) \
                or rec.scoreboard.lost_hint != INF:
            self._push(now)
        return True

    def _on_segment_synchronized(self, h: TcpHeader, payload, now: float) -> None:
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
            if (not plen and h.ack == self.snd_max & M32
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

        seq = rcv_nxt + (((h.seq - rcv_nxt + HALF) & M32) - HALF)
        ts = h.options.timestamps
        timestamps = self.timestamps
        if timestamps.ok and not flags & RST:
            if ts is None:
                # RFC 7323 3.2: drop a non-RST segment without TSopt. A SYN
                # goes on to its challenge ACK below (RFC 5961 4.2): a
                # restarted peer's new SYN is not part of our agreement.
                if not flags & SYN:
                    return
            elif timestamps.is_old(ts[0], now):  # PAWS, RFC 7323 5.3 R1
                if flags & SYN:
                    self._challenge_ack(now)
                else:
                    self._ack_unacceptable(now, plen + (flags & FIN))
                return

        # First: sequence number (RFC 9293 3.10.7.4 table).
        seg_len = plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        wnd = self.rcv_adv - rcv_nxt
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
                self.timers.close = now + 2 * self.config.msl  # retransmitted FIN
            if plen and self._sack_ok and seq + plen <= rcv_nxt:
                self.assembler.dsack = (seq, seq + plen)  # RFC 2883: report the duplicate
            self._ack_unacceptable(now, seg_len)
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
        ts_update = ts is not None and timestamps.ok and seq <= self._last_ack_sent and \
            timestamps.is_newer(ts[0])

        # Fifth: ACK.
        if not flags & ACK:
            return
        ack = self.snd_una + (((h.ack - self.snd_una + HALF) & M32) - HALF)
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
        self.timers.keepalive_probes = 0
        if ts_update:
            timestamps.record(ts[0], now)
        if st is not TIME_WAIT:
            self._process_ack(h, seq, ack, plen, flags, now)
            st = self.state
            if st is CLOSED:
                return
        send_buffer = self.send_buffer
        fin_acked = send_buffer.fin_seq is not None and self.snd_una > send_buffer.fin_seq
        if st is FIN_WAIT_1:
            if fin_acked:
                self._set_state(FIN_WAIT_2)
                st = FIN_WAIT_2
                if self._app_closed:
                    self.timers.close = now + self.config.fin_timeout
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
                self.timers.close = now + 2 * self.config.msl
            return

        # Sixth (URG) is not supported: urgent data is delivered inline.
        # Seventh and eighth: segment text and FIN (ignored once the peer's
        # FIN has come: CLOSE-WAIT, CLOSING, LAST-ACK).
        if plen and self.receive_buffer.autotune:
            self._measure_receiver_rtt(ts[1] if ts is not None and timestamps.ok else None,
                                       plen, now)
        if plen or flags & FIN:
            self._process_data(seq, payload, flags, now)

        if self.state in SENDING_STATES:
            data_end = send_buffer.seq + len(send_buffer.data)
            nxt = self.snd_max
            if nxt < data_end or (nxt == data_end and send_buffer.fin_queued) \
                    or self.recovery.scoreboard.lost_hint != INF:
                self._push(now)

    def _measure_receiver_rtt(self, tsecr: int | None, plen: int, now: float) -> None:
        """The receiver's RTT estimate for auto-tuning (as Linux's
        rcv_rtt_est): from TSecr on full-sized data when timestamps are on,
        else the time one window of data takes to arrive."""
        receive_buffer = self.receive_buffer
        if tsecr is not None:
            if tsecr:
                receive_buffer.measure_rtt_by_echo(self.timestamps.echo_age_ms(tsecr, now), plen,
                                                   self._rcv_mss)
            return
        receive_buffer.measure_rtt_by_window(self.rcv_nxt, self.irs, self.rcv_adv - self.rcv_nxt,
                                             self._rcv_mss, now)

    def _process_ack(self, h: TcpHeader, seq: int, ack: int, plen: int, flags: int,
                     now: float) -> None:
        """RFC 9293 3.10.7.4 fifth check for ESTABLISHED and later, with loss
        recovery (``recovery.py``) and RFC 6298 RTT measurement."""
        wnd = h.window << self._snd_wscale
        self.timers.zero_window_probes = 0
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
                timers = self.timers
                if wnd and timers.persist != INF:
                    timers.persist = INF
                    timers.persist_backoff = 0
        if self.send_buffer.autotune:
            self.send_buffer.grow(self.cc.cwnd, self.config)

    def _drop_acked(self, ack: int) -> None:
        self.send_buffer.acknowledged(ack)
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack

    def _process_data(self, seq: int, payload, flags: int, now: float) -> None:
        """Seventh (text) and eighth (FIN) checks."""
        st = self.state
        plen = len(payload)
        fin = flags & FIN
        if st not in RECEIVING_STATES:
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
        asm = self.assembler
        if seq < rcv_nxt:
            cut = rcv_nxt - seq
            ack_now = True  # (partial) duplicate: tell the peer at once
            if plen and self._sack_ok:
                asm.dsack = (seq, min(seq + plen, rcv_nxt))  # RFC 2883
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
        edge = self.rcv_adv
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
                self.receive_buffer.data.append(payload)
                rcv_nxt += plen
                if asm.segments:
                    rcv_nxt = asm.pull(rcv_nxt, self.receive_buffer.data)
                    filled = True
                    self._ack_coalesce_from = rcv_nxt + 16 * self._rcv_mss
                self.rcv_nxt = rcv_nxt
            if fin or (asm.fin is not None and asm.fin == rcv_nxt):
                asm.fin = None
                self._on_fin(now, ack_now or filled)
                return
            if ack_now or filled:
                self._send_ack(now)
            else:
                self._ack_pending += plen
                if self._ack_pending > self._rcv_mss:
                    self._send_ack(now)  # every second full-sized segment (RFC 1122 4.2.3.2)
                elif self.timers.delack == INF:
                    self.timers.delack = now + self.config.delayed_ack
        else:
            # Out of order: hold it (bounded by the window) and ACK at once
            # with SACK (RFC 5681 4.2, RFC 2018).
            self._ack_coalesce_from = rcv_nxt + 16 * self._rcv_mss
            if plen:
                if not asm.insert(seq, payload) and self._sack_ok:
                    asm.dsack = (seq, seq + plen)  # all of it was here already
                asm.note_received(seq)
            if fin:
                asm.fin = seq + plen
            self._send_ack(now)

    def _on_fin(self, now: float, ack_now: bool = True) -> None:
        """RFC 9293 3.10.7.4 eighth check. In ESTABLISHED the ACK of an
        in-order FIN is delayed (as Linux, which enters pingpong mode in
        tcp_fin): an application that closes at once sends its FIN with it."""
        self.rcv_nxt += 1
        self._fin_received = True
        self.assembler.clear()
        st = self.state
        if st is ESTABLISHED:
            self._set_state(CLOSE_WAIT)
            if not ack_now:
                self._ack_pending += 1
                if self.timers.delack == INF:
                    self.timers.delack = now + self.config.delayed_ack
                return
        elif st is FIN_WAIT_1:
            send_buffer = self.send_buffer
            if send_buffer.fin_seq is not None and self.snd_una > send_buffer.fin_seq:
                self._send_ack(now)
                self._enter_time_wait(now)
                return
            self._set_state(CLOSING)
        elif st is FIN_WAIT_2:
            self._send_ack(now)
            self._enter_time_wait(now)
            return
        self._send_ack(now)
