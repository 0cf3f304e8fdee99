"""What a connection does when one of its timers fires: retransmission
(RFC 6298), tail loss probe and reordering window (RFC 8985), persist
(RFC 9293 3.8.6.1), delayed ACK, keepalive (RFC 1122 4.2.3.6), TIME-WAIT
and FIN-WAIT-2."""

from __future__ import annotations

import logging

from .config import (CLOSED, FIN_WAIT_2, INF, KEEPALIVE_STATES, SENDING_STATES, SYN_RECEIVED,
                     SYN_SENT, TIME_WAIT, TLP_MIN_GAP)
from .recovery import DISORDER, LOSS, OPEN, RECOVERY
from .sack import LOST, SACKED

log = logging.getLogger("trionet.tcp")
_DEBUG = logging.DEBUG


class TimerMixin:
    """``TcpConnection``'s timer events."""

    __slots__ = ()

    def _update_deadline(self) -> None:
        self.next_deadline = self.timers.earliest()

    def _persist_interval(self) -> float:
        return min(self.rtt.rto * (1 << min(self.timers.persist_backoff, 30)),
                   self.config.rto_max)

    def on_timer(self, now: float) -> None:
        timers = self.timers
        if now >= timers.pto:
            self._on_pto(now)  # before the RTO: a PTO capped at the RTO goes first
        if now >= timers.rtx:
            self._on_rto(now)
        if now >= timers.reo:
            self._on_reo_timer(now)
        if now >= timers.persist:
            self._on_persist(now)
        if now >= timers.delack:
            timers.delack = INF
            if self.state is not CLOSED and (self.rcv_nxt > self._last_ack_sent
                                             or self._ack_pending):
                self._send_ack(now)
        if now >= timers.keepalive:
            self._on_keepalive(now)
        if now >= timers.close:
            timers.close = INF
            if self.state in (TIME_WAIT, FIN_WAIT_2):
                self._close(None)
        self._update_deadline()

    def _on_rto(self, now: float) -> None:
        cfg = self.config
        st = self.state
        timers = self.timers
        rtt = self.rtt
        timers.rtx = INF
        if st is SYN_SENT or st is SYN_RECEIVED:
            limit = cfg.syn_retries if st is SYN_SENT else cfg.synack_retries
            if self._retries >= limit:
                self._close("timeout")
                return
            self._retries += 1
            self.retransmits += 1
            rtt.syn_retransmitted = True
            rtt.timed_seq = None
            rtt.back_off()
            if log.isEnabledFor(_DEBUG):
                log.debug("%r: SYN retransmit #%d, rto=%.3f", self, self._retries, rtt.rto)
            self._send_syn(now)
            return
        if st not in SENDING_STATES or self.snd_una >= self.snd_max:
            return
        if self._retries >= cfg.max_retries:
            if log.isEnabledFor(_DEBUG):
                log.debug("%r: giving up after %d retransmissions", self, self._retries)
            self._close("timeout")
            return
        self._retries += 1
        rec = self.recovery
        rec.rto_count += 1
        flight = self.snd_max - self.snd_una
        # RFC 5681 3.1: ssthresh only on the first timeout for this data
        # (and not when recovery already reduced it).
        self.cc.on_rto(flight, now, self._retries > 1 or rec.state == RECOVERY)
        rec.recover = self.snd_max  # RFC 6582 4, RFC 6675 5.1 RecoveryPoint = HighData
        rec.dupacks = 0
        rtt.timed_seq = None
        rtt.back_off()  # RFC 6298 5.5
        rec.tlp_high = None
        timers.pto = timers.reo = INF
        sb = rec.scoreboard
        if sb.segs and sb.segs[0].flags & SACKED:
            sb.clear_sacks()  # the peer reneged on its SACKs (RFC 2018 8)
        # RFC 6298 5.4 / RFC 6675 5.1: everything not SACKed is due again, from
        # SND.UNA up (go-back-N over the scoreboard).
        sb.mark_all_lost()
        rec.state = LOSS if self._sack_ok else OPEN
        if log.isEnabledFor(_DEBUG):
            log.debug("%r: RTO #%d, rto=%.3f\n%s", self, self._retries, rtt.rto,
                      self.window_diagram())
        self._retransmit_lost(now, True)
        timers.rtx = now + rtt.rto

    def _on_reo_timer(self, now: float) -> None:
        """RFC 8985 6.3: the reordering window of a pending segment ran out."""
        self.timers.reo = INF
        if self.state not in SENDING_STATES or self.snd_una >= self.snd_max:
            return
        if self._rack_detect(now):
            if self.recovery.state <= DISORDER:
                self._enter_recovery(now, 0)
            self._push(now)

    def _arm_pto(self, now: float) -> None:
        """RFC 8985 7.2: schedule a tail loss probe 2*SRTT after the last
        transmission or ACK, plus the worst-case delayed ACK when a single
        segment is out; never later than the RTO would fire (the probe then
        goes at that time)."""
        rec = self.recovery
        timers = self.timers
        if rec.state >= RECOVERY or rec.tlp_high is not None or self.snd_max <= self.snd_una \
                or self.state not in SENDING_STATES:
            timers.pto = INF
            return
        srtt = self.rtt.srtt
        if srtt is None:
            pto = 1.0
        else:
            pto = 2 * srtt
            if self.snd_max - self.snd_una <= self._mss:
                pto += self.config.tlp_max_ack_delay
            else:
                pto += TLP_MIN_GAP
        t = now + pto
        if timers.rtx == INF:
            timers.rtx = now + self.rtt.rto
        if t > timers.rtx:
            t = timers.rtx
        timers.pto = t

    def _on_pto(self, now: float) -> None:
        """RFC 8985 7.3: send one probe, new data if the windows allow, else
        the highest segment again; then wait for the RTO."""
        rec = self.recovery
        timers = self.timers
        timers.pto = INF
        if self.state not in SENDING_STATES or self.snd_una >= self.snd_max \
                or rec.state >= RECOVERY or rec.tlp_high is not None:
            return
        sb = rec.scoreboard
        send_buffer = self.send_buffer
        data_end = send_buffer.end
        nxt = self.snd_max
        probe_new = nxt < data_end and nxt < self.snd_una + self.snd_wnd
        if probe_new:
            n = min(data_end - nxt, self._seg_mss(), self.snd_una + self.snd_wnd - nxt)
            end = nxt + n
            self._send_new(nxt, end, send_buffer.fin_queued and end == data_end, now)
            rec.tlp_retransmitted = False
        else:
            segs = sb.segs
            if not segs or segs[-1].flags & SACKED:
                timers.rtx = min(timers.rtx, now + self.rtt.rto)
                return
            i = len(segs) - 1
            last = segs[i]
            mss = self._seg_mss()
            if min(last.end, data_end) - last.start > mss:
                sb.split(i, max(min(last.end, data_end) - mss, last.start + 1))
                i += 1
            s = self._send_seg_again(i, now)
            if not s.flags & LOST:
                rec.transmissions += 1
                sb.on_retransmit(s, now, rec.transmissions)
            rec.tlp_retransmitted = True
            rec.tlp_probe = (s.start, s.end)
        rec.tlp_count += 1
        rec.tlp_high = self.snd_max
        if log.isEnabledFor(_DEBUG):
            log.debug("%r: tail loss probe (%s)", self, "new data" if probe_new else "retransmit")
        timers.rtx = now + self.rtt.rto

    def _on_persist(self, now: float) -> None:
        timers = self.timers
        timers.persist = INF
        if self.state not in SENDING_STATES:
            return
        send_buffer = self.send_buffer
        data_end = send_buffer.end
        pending = data_end > self.snd_max or (send_buffer.fin_queued and send_buffer.fin_seq is None)
        if not pending or self.snd_max > self.snd_una:
            return
        if timers.zero_window_probes >= self.config.max_retries:
            self._close("timeout")
            return
        room = self.snd_una + self.snd_wnd - self.snd_max
        if room > 0 and data_end > self.snd_max:
            # Some window, just too small for SWS avoidance: send what fits.
            nxt = self.snd_max
            n = min(room, self._seg_mss(), data_end - nxt)
            end = nxt + n
            self._send_new(nxt, end, end == data_end and send_buffer.fin_queued, now)
            return
        # Zero window probe: an old sequence number makes the peer answer
        # with its current window.
        self._send_probe(now)
        timers.zero_window_probes += 1
        timers.persist_backoff += 1
        timers.persist = now + self._persist_interval()

    def _on_keepalive(self, now: float) -> None:
        cfg = self.config
        timers = self.timers
        timers.keepalive = INF
        if not cfg.keepalive or self.state not in KEEPALIVE_STATES:
            return
        if self.snd_max > self.snd_una or self.send_buffer.data:
            # Data outstanding: the retransmission timer watches the peer.
            timers.keepalive = now + cfg.keepalive_idle
            return
        due = self._last_recv + cfg.keepalive_idle
        if now < due:
            timers.keepalive = due
            return
        if timers.keepalive_probes >= cfg.keepalive_count:
            if log.isEnabledFor(_DEBUG):
                log.debug("%r: keepalive: peer dead", self)
            self._send_rst(now)
            self._close("timeout")
            return
        self._send_probe(now)
        timers.keepalive_probes += 1
        timers.keepalive = now + cfg.keepalive_interval
