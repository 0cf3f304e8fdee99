"""RACK-TLP state (RFC 8985) and a windowed minimum filter for min_RTT.

The connection owns the timers and the scoreboard (``sack.Scoreboard``);
``Rack`` keeps RACK's per-connection variables and its rules: which
delivered segment is the most recently sent (step 2), whether reordering
was seen (step 3), and the reordering window with its D-SACK adaptation
(step 4). Loss detection itself (step 5) walks the scoreboard.
"""

from __future__ import annotations

import math

from .sack import EVER_RETRANS

MIN_RTT_WINDOW = 300.0   # seconds, as Linux's tcp_min_rtt_wlen
_REO_PERSIST = 16        # RFC 8985 6.2 step 4: DSACK-free recoveries before the reset


class WindowedMin:
    """The minimum of the samples seen over the last ``window`` seconds,
    kept as three candidates (best, second, third, each newer than the one
    before) so an expiring minimum is replaced without storing every sample
    (the scheme Linux's min_rtt filter follows)."""

    __slots__ = ("window", "_v", "_t")

    def __init__(self, window: float = MIN_RTT_WINDOW):
        self.window = window
        self._v = [math.inf, math.inf, math.inf]
        self._t = [0.0, 0.0, 0.0]

    @property
    def value(self) -> float:
        return self._v[0]

    def update(self, now: float, v: float) -> float:
        vals, times = self._v, self._t
        w = self.window
        if v <= vals[0] or now - times[2] > w:
            vals[0] = vals[1] = vals[2] = v
            times[0] = times[1] = times[2] = now
            return v
        if v <= vals[1]:
            vals[1] = vals[2] = v
            times[1] = times[2] = now
        elif v <= vals[2]:
            vals[2] = v
            times[2] = now
        age = now - times[0]
        if age > w:
            # The best expired: promote the others.
            vals[0], vals[1], vals[2] = vals[1], vals[2], v
            times[0], times[1], times[2] = times[1], times[2], now
            if now - times[0] > w:
                vals[0], vals[1] = vals[1], vals[2]
                times[0], times[1] = times[1], times[2]
        elif times[1] == times[0] and age > w / 4:
            # A quarter window passed with one candidate: take a second one.
            vals[1] = vals[2] = v
            times[1] = times[2] = now
        elif times[2] == times[1] and age > w / 2:
            vals[2] = v
            times[2] = now
        return vals[0]


class Rack:
    """RACK's variables (RFC 8985 6.1)."""

    __slots__ = ("xmit_ts", "tx", "rtt", "fack", "reordering_seen", "reo_wnd_mult",
                 "reo_wnd_persist", "dsack_round", "min_rtt")

    def __init__(self):
        self.xmit_ts = -math.inf   # send time of the most recently sent delivered segment
        self.tx = -1                # its transmission number (see sack.Seg)
        self.rtt = 0.0
        self.fack = 0              # highest sequence number delivered (ACKed or SACKed)
        self.reordering_seen = False
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = 0
        self.dsack_round: int | None = None
        self.min_rtt = WindowedMin()

    def update(self, seg, now: float, echo_ok=None) -> None:
        """Step 2 for one newly delivered segment (ACKed or SACKed).
        ``echo_ok(ts)``, when timestamps are on, tells whether the ACK's TSecr
        is at least the TSval sent at time ts."""
        ts = seg.ts
        rtt = now - ts
        if seg.flags & EVER_RETRANS and rtt < self.min_rtt.value - 1e-6:
            # Faster than any round trip seen: maybe the ACK of an earlier
            # transmission (Linux's test), unless TSecr shows the echo is of
            # this one (RFC 8985; a SACK's TSecr is usually older, RFC 7323
            # 4.3, so TSecr alone cannot decide).
            if echo_ok is None or not echo_ok(ts):
                return
        if seg.tx > self.tx:
            self.xmit_ts = ts
            self.tx = seg.tx
            self.rtt = rtt

    def note_delivered(self, seg) -> None:
        """Step 3: a never-retransmitted segment delivered below the highest
        delivered sequence number was reordered."""
        end = seg.end
        if end < self.fack:
            if not seg.flags & EVER_RETRANS:
                self.reordering_seen = True
        else:
            self.fack = end

    def on_dsack(self, snd_una: int, snd_nxt: int) -> None:
        """Step 4: grow the reordering window once per round that sees a D-SACK."""
        if self.dsack_round is not None and snd_una >= self.dsack_round:
            self.dsack_round = None
        if self.dsack_round is None:
            self.dsack_round = snd_nxt
            self.reo_wnd_mult += 1
            self.reo_wnd_persist = _REO_PERSIST

    def on_recovery_exit(self) -> None:
        self.reo_wnd_persist -= 1
        if self.reo_wnd_persist <= 0:
            self.reo_wnd_mult = 1

    def reo_wnd(self, in_recovery: bool, enough_sacked: bool, srtt: float | None) -> float:
        """Step 4 RACK_update_reo_wnd()'s result."""
        if not self.reordering_seen and (in_recovery or enough_sacked):
            return 0.0
        m = self.min_rtt.value
        if m == math.inf:
            m = srtt or 0.0
        w = self.reo_wnd_mult * m / 4
        if srtt is not None and w > srtt:
            w = srtt
        return w
