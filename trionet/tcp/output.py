"""What a connection sends: data as windows allow (``_push``), the segments
that carry it with our ACK, window and options, ACKs, probes, resets, and
retransmissions of what was deemed lost."""

from __future__ import annotations

import logging

from ..wire.tcp import (ACK, FIN, NO_OPTIONS, PSH, RST, TcpHeader, TcpOptions, make_header,
                        timestamp_options)
from .config import HALF, INF, M32
from .recovery import RECOVERY
from .sack import Seg

log = logging.getLogger("trionet.tcp")
_DEBUG = logging.DEBUG

#: At most this many pure ACKs of one batch go as one (at least one ACK for
#: every eight full-sized segments reaches the peer).
ACK_COALESCE_RUN = 4
#: ... and only in a batch with at least this many of them (16 segments):
#: a sender with a small window (after losses) gets every ACK.
ACK_COALESCE_MIN = 8


class OutputMixin:
    """``TcpConnection``'s sending side."""

    __slots__ = ()

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
            if len(out) > ACK_COALESCE_MIN:
                out = without_superseded_acks(out, self.rcv_nxt, self._ack_coalesce_from)
        return out

    def tsval(self, now: float) -> int:
        """Our TSval at ``now`` (RFC 7323 4.1)."""
        return self.timestamps.tsval(now)

    def _window_field(self) -> int:
        """The window to advertise; moves RCV.ADV (the right edge the peer
        sees) forward, never back (RFC 9293 3.8.6.2.2), with receiver SWS
        avoidance: the edge only moves by at least min(buffer/2, MSS)."""
        rcv_nxt = self.rcv_nxt
        buf = self.config.receive_buffer
        edge = rcv_nxt + buf - len(self.receive_buffer.data)
        adv = self.rcv_adv
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
            self.rcv_adv = rcv_nxt if adv < rcv_nxt else adv
            return 0
        field = (wnd + (1 << ws) - 1) >> ws  # round up: never shrink the edge
        if field > 0xFFFF:
            field = 0xFFFF
        self.rcv_adv = rcv_nxt + (field << ws)
        return field

    def _options(self, now: float, with_sack: bool) -> TcpOptions:
        timestamps = self.timestamps
        asm = self.assembler
        sack = with_sack and (asm.segments or asm.dsack) and self._sack_ok
        if timestamps.ok:
            if sack:
                return TcpOptions(timestamps=(timestamps.tsval(now), timestamps.recent),
                                  sack_blocks=asm.sack_blocks(3))
            return timestamp_options((timestamps.tsval(now), timestamps.recent))
        if sack:
            return TcpOptions(sack_blocks=asm.sack_blocks(4))
        return NO_OPTIONS

    def _emit(self, flags: int, seq: int, payload, now: float) -> None:
        """Queue one segment carrying our current ACK and window."""
        asm = self.assembler
        opts = self._options(now, True) if (self.timestamps.ok or asm.segments or asm.dsack) \
            else NO_OPTIONS
        if flags & ACK:
            self._last_ack_sent = self.rcv_nxt
            self._ack_pending = 0
            self.timers.delack = INF
            ack = self.rcv_nxt & M32
        else:
            ack = 0
        self._out.append((make_header(self.local[1], self.remote[1], seq & M32, ack, flags,
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
        opts = self._options(now, False) if self.timestamps.ok else NO_OPTIONS
        self._out.append((TcpHeader(self.local[1], self.remote[1], (self.snd_una - 1) & M32,
                                    self.rcv_nxt & M32, ACK, self._window_field(), 0, opts),
                          b""))

    def _send_rst(self, now: float) -> None:
        self._emit(RST | ACK, self.snd_max, b"", now)

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 3.2/4.2/5.2 challenge ACK, at most challenge_ack_limit a
        second per connection (RFC 5961 7)."""
        if self.challenges.allow_challenge(now, self.config.challenge_ack_limit):
            self._send_ack(now)

    def _ack_unacceptable(self, now: float, seg_len: int) -> None:
        """ACK an unacceptable segment (RFC 9293 3.10.7.4 first check). Pure
        ACKs are rate limited so two stacks cannot loop on them (as Linux)."""
        if seg_len == 0 and not self.challenges.allow_invalid_ack(
                now, self.config.invalid_ratelimit):
            return
        self._send_ack(now)

    # --- data ------------------------------------------------------------------

    def _push(self, now: float) -> None:
        """Send what the windows, Nagle and SWS avoidance allow: segments
        deemed lost first (RFC 6675 NextSeg rule 1; after an RTO that is
        go-back-N from SND.UNA, RFC 6298 5.4, skipping SACKed ranges), then
        new data (rule 2)."""
        rec = self.recovery
        sb = rec.scoreboard
        if sb.lost_hint != INF:
            self._retransmit_lost(now, False)
            if sb.lost_hint != INF:
                return  # lost data still waits for room: no new data before it
        send_buffer = self.send_buffer
        data_end = send_buffer.seq + len(send_buffer.data)
        nxt = self.snd_max
        fin = send_buffer.fin_queued
        if nxt > data_end:
            return  # FIN already sent
        mss = self._seg_mss()
        una = self.snd_una
        cwnd = self.cc.cwnd
        dupacks = rec.dupacks
        if 0 < dupacks < 3 and rec.state != RECOVERY and not self._sack_ok:
            cwnd += dupacks * mss  # RFC 3042 limited transmit
        flight = nxt - una
        room_c = cwnd - (flight if sb.clean else sb.pipe(flight))
        wnd_edge = una + self.snd_wnd
        sent = False
        gso = self.gso_segments if mss == self._mss else 1
        while True:
            if gso > 1:
                # Several full-sized segments as one for a TSO link: what
                # the loop below would send one by one (each passes the
                # cwnd, window, SWS and Nagle checks), in one record.
                k = min(gso, (data_end - nxt) // mss, room_c // mss, (wnd_edge - nxt) // mss)
                if k >= 2:
                    end = nxt + k * mss
                    self._send_new(nxt, end, fin and end == data_end, now)
                    room_c -= k * mss
                    nxt = self.snd_max
                    sent = True
                    continue
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
        timers = self.timers
        if sent:
            if rec.tlp_on:
                self._arm_pto(now)
        elif self.snd_una == self.snd_max and (
                data_end > self.snd_max or (fin and send_buffer.fin_seq is None)) \
                and timers.persist == INF and timers.rtx == INF:
            # Nothing in flight and the peer's window stops us: RFC 9293 3.8.6.1.
            timers.persist_backoff = 0
            timers.persist = now + self._persist_interval()

    def _send_new(self, seq: int, end: int, fin: bool, now: float) -> None:
        """Send new data [seq, end) (and FIN) and add it to the scoreboard."""
        send_buffer = self.send_buffer
        data_end = send_buffer.seq + len(send_buffer.data)
        flags = ACK
        if end == data_end and end > seq:
            flags = ACK | PSH
        if fin:
            flags |= FIN
            send_buffer.fin_seq = data_end
        off = seq - send_buffer.seq
        self._emit(flags, seq, send_buffer.data.peek(off, end - seq) if end > seq else b"", now)
        if fin:
            end += 1
        rec = self.recovery
        rec.transmissions += 1
        rec.scoreboard.segs.append(Seg(seq, end, now, rec.transmissions))
        if rec.state == RECOVERY:
            rec.prr_out += end - seq
        self._after_send(end, now)

    def _after_send(self, nxt: int, now: float) -> None:
        if nxt > self.snd_max:
            self.snd_max = nxt
        self.snd_nxt = self.snd_max
        timers = self.timers
        if timers.rtx == INF:
            timers.rtx = now + self.rtt.rto
        timers.persist = INF
        self._last_send = now

    def _send_seg_again(self, i: int, now: float) -> Seg:
        """Retransmit scoreboard record i (cut to the current MSS first)."""
        sb = self.recovery.scoreboard
        s = sb.segs[i]
        mss = self._seg_mss()
        send_buffer = self.send_buffer
        data_end = send_buffer.seq + len(send_buffer.data)
        if min(s.end, data_end) - s.start > mss:
            sb.split(i, s.start + mss)
        pend = s.end if s.end <= data_end else data_end
        flags = ACK
        if pend == data_end and pend > s.start:
            flags |= PSH
        if s.end > data_end:
            flags |= FIN
        off = s.start - send_buffer.seq
        self._emit(flags, s.start, send_buffer.data.peek(off, pend - s.start)
                   if pend > s.start else b"", now)
        self.retransmits += 1
        self._last_send = now
        if log.isEnabledFor(_DEBUG):
            log.debug("%r: retransmit seq=%d len=%d", self, s.start & M32, pend - s.start)
        return s

    def _retransmit_lost(self, now: float, force: bool) -> bool:
        """Resend segments marked lost, lowest first, while cwnd - pipe
        allows (RFC 6675 (C)); ``force`` sends the first one regardless
        (fast retransmit, RTO). A segment beyond the peer's window is sent
        only when forced, and then as a probe: it stays due, so it is the
        first thing sent once the window opens."""
        rec = self.recovery
        sb = rec.scoreboard
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
            rec.transmissions += 1
            sb.on_retransmit(s, now, rec.transmissions)
            if rec.state == RECOVERY:
                rec.prr_out += s.end - s.start
            rtt = self.rtt
            if rtt.timed_seq is not None:
                rtt.timed_seq = None  # Karn's rule
            if self.timers.rtx == INF:
                self.timers.rtx = now + rtt.rto
            force = False
            sent = True

    def _seg_mss(self) -> int:
        """Payload limit for the next segment: SACK blocks we attach eat
        into the MSS (RFC 2018, RFC 6691)."""
        asm = self.assembler
        if (asm.segments or asm.dsack) and self._sack_ok:
            n = len(asm.segments) + (1 if asm.dsack else 0)
            return self._mss - 4 - 8 * min(n, 3 if self.timestamps.ok else 4)
        return self._mss


def without_superseded_acks(out: list, rcv_nxt: int, coalesce_from: int) -> list:
    """``out`` less pure ACKs superseded by its last segment, keeping one in
    ACK_COALESCE_RUN of them (so one lost ACK costs the peer little) and
    every one below ``coalesce_from``."""
    last = out[-1][0]
    if not last.flags & ACK:
        return out
    ack, seq = last.ack, last.seq
    superseded = [h.flags == ACK and h.ack != ack and h.seq == seq and not p
                  and not h.options.sack_blocks
                  and rcv_nxt + (((h.ack - rcv_nxt + HALF) & M32) - HALF) >= coalesce_from
                  for h, p in out]
    if sum(superseded) < ACK_COALESCE_MIN:
        return out  # a small flight: every ACK counts when one is lost
    kept = []
    run = 0
    for seg, drop in zip(out, superseded):
        if drop:
            run += 1
            if run < ACK_COALESCE_RUN:
                continue
            run = 0
        kept.append(seg)
    return kept
