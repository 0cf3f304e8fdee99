"""Loss recovery: what an ACK tells the sender about loss, and what it does.

One state for both kinds of peer, as Linux's ``ca_state``: OPEN, DISORDER
(duplicate ACKs or SACKed data, no loss deemed yet), RECOVERY (fast
recovery after a loss) and LOSS (after an RTO, until the data then
outstanding is acknowledged). Peers with SACK get RFC 6675 recovery with
RACK-TLP (RFC 8985) and PRR (RFC 6937); peers without, RFC 5681 fast
retransmit and RFC 6582 NewReno.
"""

from __future__ import annotations

import logging

from ..wire.tcp import FIN, SYN, TcpHeader
from .config import DUPTHRESH, HALF, INF, M32
from .rack import Rack
from .sack import EVER_RETRANS, Scoreboard

log = logging.getLogger("trionet.tcp")
_DEBUG = logging.DEBUG

OPEN = 0
DISORDER = 1
RECOVERY = 2
LOSS = 3
STATE_NAMES = ("open", "disorder", "recovery", "loss")


class LossRecovery:
    """The sender's loss state: the scoreboard of segments in flight, RACK's
    variables, where recovery ends, PRR's counters, the tail loss probe, and
    counts of what happened."""

    __slots__ = ("state", "dupacks", "recover", "partial_seen", "scoreboard", "rack",
                 "rack_on", "tlp_on", "tlp_high", "tlp_retransmitted", "tlp_probe",
                 "prr_delivered", "prr_out", "recover_flight", "transmissions",
                 "rto_count", "tlp_count", "fast_recoveries", "dsacks_received",
                 "spurious_retransmits", "rack_losses")

    def __init__(self, iss: int):
        self.state = OPEN
        self.dupacks = 0
        #: RFC 6582 "recover" / RFC 6675 RecoveryPoint.
        self.recover = iss
        #: NewReno: a partial ACK was seen in this recovery (RFC 6582 3.2 step 5).
        self.partial_seen = False
        self.scoreboard = Scoreboard()
        self.rack = Rack()
        self.rack_on = False       # decided with SACK in the handshake
        self.tlp_on = False
        self.tlp_high: int | None = None  # RFC 8985 TLP.end_seq
        self.tlp_retransmitted = False
        self.tlp_probe = (0, 0)
        self.prr_delivered = 0
        self.prr_out = 0
        self.recover_flight = 1    # RFC 6937 RecoverFS
        #: Transmissions so far: orders segments by when they were sent (RACK).
        self.transmissions = 0
        self.rto_count = 0
        self.tlp_count = 0
        self.fast_recoveries = 0
        self.dsacks_received = 0
        self.spurious_retransmits = 0
        self.rack_losses = 0

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]

    def pipe(self, flight: int) -> int:
        """RFC 6675 pipe: bytes the sender believes are in the network."""
        sb = self.scoreboard
        return flight if sb.clean else sb.pipe(flight)


class RecoveryMixin:
    """``TcpConnection``'s ACK processing for loss detection and recovery."""

    __slots__ = ()

    def _rtt_sample(self, r: float, now: float | None = None) -> None:
        """RFC 6298 2.2-2.4; also feeds the windowed min_RTT (RACK)."""
        if r < 0:
            return
        if now is not None:
            self.recovery.rack.min_rtt.update(now, r)
        self.rtt.sample(r)

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
        timestamps = self.timestamps
        if timestamps.ok:
            if ts is not None and ts[1]:
                m = timestamps.echo_age_ms(ts[1], now)
                if m < HALF:
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
        rec = self.recovery
        sb = rec.scoreboard
        timers = self.timers
        if ack > una:
            acked = ack - una
            flight = self.snd_max - una
            self._drop_acked(ack)
            first, last, newly = sb.ack(ack)
            rtt = self._ack_rtt(h.options.timestamps, first, last, newly, now)
            self._retries = 0
            cc = self.cc
            if rec.state == RECOVERY:
                if ack >= rec.recover:
                    # Full ACK: RFC 6582 3.2 step 3.
                    rec.state = OPEN
                    rec.dupacks = 0
                    cc.on_exit_recovery(self.snd_max - ack, now)
                else:
                    # Partial ACK: retransmit the next hole, deflate.
                    cc.on_partial_ack(acked)
                    if sb.segs:
                        sb.mark_lost(sb.segs[0])
                        self._retransmit_lost(now, True)
                    if not rec.partial_seen:
                        rec.partial_seen = True
                        timers.rtx = now + self.rtt.rto
            else:
                rec.dupacks = 0
                rec.state = OPEN
                cc.on_ack(acked, flight, now, rtt, self.rtt.srtt, ack, self.snd_max)
            if ack >= self.snd_max:
                timers.rtx = INF
            elif not (rec.state == RECOVERY and rec.partial_seen and timers.rtx != INF):
                timers.rtx = now + self.rtt.rto
        elif ack == una and self.snd_max > una and plen == 0 \
                and not flags & (SYN | FIN) and wnd == self.snd_wnd:
            # Duplicate ACK (RFC 5681 2).
            rec.dupacks += 1
            if rec.state == RECOVERY:
                self.cc.on_dupack_in_recovery()
                return
            rec.state = DISORDER
            if rec.dupacks == DUPTHRESH:
                if ack > rec.recover or rec.recover == self.iss:
                    # RFC 5681 3.2 fast retransmit; RFC 6582 3.2 step 2.
                    rec.state = RECOVERY
                    rec.partial_seen = False
                    rec.recover = self.snd_max
                    rec.fast_recoveries += 1
                    self.cc.on_enter_recovery(self.snd_max - una, now)
                    if log.isEnabledFor(_DEBUG):
                        log.debug("%r: fast retransmit\n%s", self, self.window_diagram())
                    if sb.segs:
                        sb.mark_lost(sb.segs[0])
                        self._retransmit_lost(now, True)
                    timers.rtx = now + self.rtt.rto

    def _ack_sack(self, h: TcpHeader, ack: int, now: float) -> None:
        """A SACK peer. The common case (nothing lost, no SACK blocks, open
        state) costs one bisect on the scoreboard and the controller's
        on_ack; the scoreboard, RACK and PRR only run when there is loss."""
        una = self.snd_una
        rec = self.recovery
        sb = rec.scoreboard
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
            if rec.rack_on:
                rack = rec.rack
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
        timers = self.timers
        if rec.state <= DISORDER and sb.clean and dsack is None and rec.tlp_high is None \
                and timers.reo == INF:
            rec.state = OPEN
            if acked:
                cc.on_ack(acked, flight, now, rtt, self.rtt.srtt, ack, self.snd_max)
        else:
            self._sack_recovery(ack, acked, flight, delivered, newly_sacked, dsack, rtt, now)
            if rec.state <= DISORDER:
                rec.state = DISORDER if sb.sacked_out else OPEN
        if acked:
            if ack >= self.snd_max:
                timers.rtx = timers.pto = timers.reo = INF
            else:
                timers.rtx = now + self.rtt.rto  # RFC 6298 5.3
                if rec.tlp_on:
                    self._arm_pto(now)

    def _echo_check(self, ts):
        """For RACK: a test whether this ACK's TSecr echoes a TSval sent at
        or after a given time (None without timestamps)."""
        timestamps = self.timestamps
        if not timestamps.ok or ts is None or not ts[1]:
            return None
        tsecr = ts[1]
        tsval = timestamps.tsval
        return lambda t: ((tsecr - tsval(t)) & M32) < HALF

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
            left = una + (((l32 - una + HALF) & M32) - HALF)
            right = left + ((r32 - l32) & M32)
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
        rec = self.recovery
        sb = rec.scoreboard
        before = sb.sacked_out
        newly = sb.sack(blocks_in)
        if newly and rec.rack_on:
            rack = rec.rack
            echo_ok = self._echo_check(ts)
            for s in newly:
                rack.update(s, now, echo_ok)
                rack.note_delivered(s)
        return sb.sacked_out - before, dsack

    def _sack_recovery(self, ack: int, acked: int, flight: int, delivered: int,
                       newly_sacked: int, dsack, rtt, now: float) -> None:
        rec = self.recovery
        sb = rec.scoreboard
        cc = self.cc
        if dsack is not None:
            rec.dsacks_received += 1
            if rec.rack_on:
                rec.rack.on_dsack(self.snd_una, self.snd_max)
        # RFC 8985 7.4: did a tail loss probe repair a loss?
        hi = rec.tlp_high
        if hi is not None:
            if not rec.tlp_retransmitted:
                if ack >= hi:
                    rec.tlp_high = None
            elif dsack is not None and dsack[0] < rec.tlp_probe[1] \
                    and dsack[1] > rec.tlp_probe[0]:
                rec.tlp_high = None  # the original and the probe both arrived
                rec.spurious_retransmits += 1
            elif ack > hi:
                rec.tlp_high = None
                if rec.state <= DISORDER:
                    cc.on_cwnd_reduction(rec.pipe(self.snd_max - self.snd_una), now)  # RFC 8985 7.4.2
            elif not acked and not newly_sacked and dsack is None and ack >= hi:
                rec.tlp_high = None
        # Loss detection.
        if rec.rack_on:
            self._rack_detect(now)
        else:
            if acked:
                rec.dupacks = 0
            if newly_sacked:
                # RFC 6675: an ACK with new SACK information is a duplicate.
                rec.dupacks += 1
                bound = sb.is_lost_bound(DUPTHRESH, self._mss)
                if bound > self.snd_una:
                    sb.mark_lost_below(bound)
                if rec.dupacks >= DUPTHRESH and rec.state <= DISORDER and sb.segs:
                    sb.mark_lost(sb.segs[0])  # RFC 6675 5 step (4.1)
        state = rec.state
        if state == RECOVERY:
            if ack >= rec.recover:
                self._exit_recovery(now)
            else:
                self._prr(delivered)
                return
        elif state == LOSS:
            if ack >= rec.recover:
                rec.state = OPEN
                if rec.rack_on:
                    rec.rack.on_recovery_exit()
            else:
                if acked:
                    cc.on_ack(acked, flight, now, rtt, self.rtt.srtt, ack, self.snd_max)
                return
        if sb.lost_out:
            self._enter_recovery(now, delivered)
        elif acked and state <= DISORDER:
            cc.on_ack(acked, flight, now, rtt, self.rtt.srtt, ack, self.snd_max)

    def _rack_detect(self, now: float) -> bool:
        """RFC 8985 6.2 step 5; arms the reordering timer for what may still
        turn out lost."""
        rec = self.recovery
        rack = rec.rack
        sb = rec.scoreboard
        if rack.xmit_ts == -INF or not sb.segs:
            self.timers.reo = INF
            return False
        reo = rack.reo_wnd(rec.state >= RECOVERY, sb.sacked_out > (DUPTHRESH - 1) * self._mss,
                           self.rtt.srtt)
        lost, wait = sb.rack_candidates_lost(now, rack.tx, rack.rtt, reo)
        for s in lost:
            sb.mark_lost(s)
        if lost:
            rec.rack_losses += len(lost)
        self.timers.reo = now + wait if wait != INF else INF
        return bool(lost)

    def _enter_recovery(self, now: float, delivered: int) -> None:
        """RFC 6675 5 / RFC 6937: fast recovery with PRR."""
        rec = self.recovery
        rec.state = RECOVERY
        rec.recover = self.snd_max  # RecoveryPoint = HighData
        rec.fast_recoveries += 1
        flight = self.snd_max - self.snd_una
        self.cc.on_enter_recovery(flight, now)
        rec.prr_delivered = 0
        rec.prr_out = 0
        rec.recover_flight = max(flight, 1)
        rec.tlp_high = None
        self.timers.pto = INF
        if log.isEnabledFor(_DEBUG):
            log.debug("%r: fast recovery\n%s", self, self.window_diagram())
        self._prr(delivered)

    def _exit_recovery(self, now: float) -> None:
        rec = self.recovery
        rec.state = OPEN
        self.cc.on_exit_recovery(rec.pipe(self.snd_max - self.snd_una), now, sack=True)
        if rec.rack_on:
            rec.rack.on_recovery_exit()

    def _prr(self, delivered: int) -> None:
        """RFC 6937 3: set cwnd so that what recovery sends tracks what was
        delivered, ending near ssthresh (PRR-SSRB below it)."""
        rec = self.recovery
        rec.prr_delivered += delivered
        mss = self._mss
        pipe = rec.scoreboard.pipe(self.snd_max - self.snd_una)
        ssthresh = self.cc.ssthresh
        if pipe > ssthresh:
            sndcnt = -(-rec.prr_delivered * ssthresh // rec.recover_flight) - rec.prr_out
        else:
            limit = max(rec.prr_delivered - rec.prr_out, delivered) + mss
            sndcnt = ssthresh - pipe
            if limit < sndcnt:
                sndcnt = limit
        if sndcnt < 0:
            sndcnt = 0
        if rec.prr_out == 0 and sndcnt < mss:
            sndcnt = mss  # the fast retransmit goes out at once
        self.cc.cwnd = pipe + sndcnt
