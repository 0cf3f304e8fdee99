"""Congestion control: how big the congestion window is.

The connection does loss *detection* (RACK-TLP, the SACK scoreboard, or
duplicate ACKs for peers without SACK) and loss *recovery* (which segment
goes next; PRR paces recovery when SACK is on); it tells the controller what
happened and the controller moves ``cwnd`` and ``ssthresh`` (in bytes).

Events, in the order a connection sees them:

- ``on_ack``: new data acknowledged outside recovery (slow start,
  congestion avoidance);
- ``on_enter_recovery``: a loss was detected (fast retransmit); the
  controller sets ssthresh, and cwnd as RFC 6582 inflates it (a SACK
  connection then overrides cwnd with PRR, RFC 6937);
- ``on_dupack_in_recovery`` / ``on_partial_ack``: RFC 6582 inflation and
  deflation (peers without SACK only);
- ``on_exit_recovery``: the recovery point was acknowledged;
- ``on_rto``: the retransmission timer expired;
- ``on_cwnd_reduction``: a loss repaired without recovery (a TLP probe was
  the only copy delivered, RFC 8985 7.4.2): ssthresh and cwnd go down once.
"""

from __future__ import annotations

import math

INITIAL_WINDOW_SEGMENTS = 10  # RFC 6928, as Linux
_INFINITE_SSTHRESH = 1 << 62  # "arbitrarily high" (RFC 5681 3.1)


class CongestionControl:
    """Interface and the parts every controller shares. ``flight`` arguments
    are bytes in flight before the event."""

    name = "none"
    __slots__ = ("mss", "cwnd", "ssthresh")

    def __init__(self, mss: int, now: float = 0.0):
        self.mss = mss
        self.cwnd = INITIAL_WINDOW_SEGMENTS * mss
        self.ssthresh = _INFINITE_SSTHRESH

    def set_mss(self, mss: int) -> None:
        """The sender MSS became known (after the handshake)."""
        if mss != self.mss:
            self.cwnd = self.cwnd // self.mss * mss
            self.mss = mss

    @property
    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    def take_state(self, other: CongestionControl) -> None:
        """Continue from another controller's window (a switch mid-connection)."""
        self.cwnd = other.cwnd
        self.ssthresh = other.ssthresh

    def on_ack(self, acked: int, flight: int, now: float, rtt: float | None,
               srtt: float | None = None, ack: int = 0, snd_nxt: int = 0) -> None:
        """New data was acknowledged outside loss recovery. ``rtt`` is this
        ACK's RTT sample (None without one), ``srtt`` the smoothed RTT, ``ack``
        and ``snd_nxt`` mark rounds (HyStart++)."""

    def loss_ssthresh(self, flight: int, now: float) -> int:
        """A congestion event: update internal state, return the new ssthresh."""
        return max(flight // 2, 2 * self.mss)

    def on_enter_recovery(self, flight: int, now: float) -> None:
        # RFC 5681 3.2 steps 2-3, RFC 6582 3.2 step 2 (cwnd inflated by 3 SMSS).
        self.ssthresh = self.loss_ssthresh(flight, now)
        self.cwnd = self.ssthresh + 3 * self.mss

    def on_dupack_in_recovery(self) -> None:
        self.cwnd += self.mss  # RFC 5681 3.2 step 4 (inflation)

    def on_partial_ack(self, acked: int) -> None:
        # RFC 6582 3.2 step 3: deflate by the amount acked, add back one SMSS
        # if at least one SMSS was acked.
        cwnd = self.cwnd - acked
        if acked >= self.mss:
            cwnd += self.mss
        self.cwnd = max(cwnd, self.mss)

    def on_exit_recovery(self, flight: int, now: float = 0.0, sack: bool = False) -> None:
        """A full ACK ended recovery; ``flight`` is what is still out. With
        SACK (PRR, RFC 6937 3) cwnd = ssthresh; without, RFC 6582 3.2 step 3
        option (1)."""
        if sack:
            self.cwnd = self.ssthresh
        else:
            self.cwnd = min(self.ssthresh, max(flight, self.mss) + self.mss)
        self._reduced(now)

    def on_cwnd_reduction(self, flight: int, now: float) -> None:
        """RFC 8985 7.4.2: the loss of a tail segment repaired by a TLP."""
        self.ssthresh = self.loss_ssthresh(flight, now)
        self.cwnd = min(self.cwnd, self.ssthresh)
        self._reduced(now)

    def on_rto(self, flight: int, now: float, repeated: bool = False) -> None:
        """The retransmission timer expired (``repeated``: again, for the
        same data, so ssthresh stays as it is; RFC 5681 3.1)."""
        if not repeated:
            self.ssthresh = self.loss_ssthresh(flight, now)
        self.cwnd = self.mss  # RFC 5681 3.1 loss window
        self._after_rto(now)

    def on_idle_restart(self, now: float) -> None:
        """Sending resumes after an idle period longer than the RTO
        (RFC 5681 4.1): restart from no more than the initial window."""
        self.cwnd = min(self.cwnd, INITIAL_WINDOW_SEGMENTS * self.mss)

    def _reduced(self, now: float) -> None:
        """cwnd was just reduced: a new growth epoch starts."""

    def _after_rto(self, now: float) -> None:
        pass

    def debug_state(self) -> dict:
        return {}


class NewReno(CongestionControl):
    """RFC 5681 slow start and congestion avoidance with RFC 6582 NewReno
    fast recovery."""

    name = "newreno"
    __slots__ = ("_ca_acked",)

    def __init__(self, mss: int, now: float = 0.0):
        super().__init__(mss, now)
        self._ca_acked = 0  # bytes acked toward the next cwnd increase in CA

    def on_ack(self, acked, flight, now, rtt, srtt=None, ack=0, snd_nxt=0) -> None:
        mss = self.mss
        cwnd = self.cwnd
        # Grow only while the window is what limits the sender (RFC 7661's
        # concern; the test is Linux's tcp_is_cwnd_limited).
        if cwnd < self.ssthresh:
            if 2 * flight < cwnd:
                return
            # RFC 5681 3.1 (with RFC 3465 L=1 SMSS): cwnd += min(N, SMSS).
            cwnd += acked if acked < mss else mss
            if cwnd > self.ssthresh:
                cwnd = self.ssthresh
            self.cwnd = cwnd
        else:
            if flight + mss < cwnd:
                return
            # RFC 5681 3.1, byte counting: one SMSS per cwnd of acked data.
            self._ca_acked += acked
            if self._ca_acked >= cwnd:
                self._ca_acked -= cwnd
                self.cwnd = cwnd + mss

    def loss_ssthresh(self, flight: int, now: float) -> int:
        # RFC 5681 3.1 equation 4.
        self._ca_acked = 0
        return max(flight // 2, 2 * self.mss)

    def _after_rto(self, now: float) -> None:
        self._ca_acked = 0


# HyStart++ constants (RFC 9406 4.3).
_HS_MIN_RTT_THRESH = 0.004
_HS_MAX_RTT_THRESH = 0.016
_HS_MIN_RTT_DIVISOR = 8
_HS_N_RTT_SAMPLE = 8
_HS_CSS_GROWTH_DIVISOR = 4
_HS_CSS_ROUNDS = 5
_HS_L = 8  # no pacing: at most L*SMSS of growth per ACK


class Cubic(CongestionControl):
    """CUBIC (RFC 9438) with HyStart++ (RFC 9406) in the initial slow start.

    Windows are bytes; the RFC's formulas in segments are scaled by the MSS.
    """

    name = "cubic"
    C = 0.4            # RFC 9438 4.1
    BETA = 0.7         # beta_cubic
    ALPHA = 3 * (1 - BETA) / (1 + BETA)  # RFC 9438 4.3 alpha_cubic
    fast_convergence = True
    __slots__ = ("hystart", "w_max", "cwnd_prior", "k", "epoch_start", "cwnd_epoch", "w_est",
                 "alpha", "_acc", "_rto_epoch", "_hs_window_end", "_hs_last_min",
                 "_hs_cur_min", "_hs_samples", "_hs_css", "_hs_css_baseline",
                 "_hs_css_rounds", "hystart_exit")

    def __init__(self, mss: int, now: float = 0.0, hystart: bool = True):
        super().__init__(mss, now)
        self.hystart = hystart
        self.w_max = 0.0          # bytes; 0: no congestion event yet
        self.cwnd_prior = 0.0
        self.k = 0.0
        self.epoch_start: float | None = None
        self.cwnd_epoch = 0.0
        self.w_est = 0.0
        self.alpha = self.ALPHA
        self._acc = 0.0           # fractional bytes of growth not yet in cwnd
        self._rto_epoch = False
        # HyStart++ round state.
        self._hs_window_end: int | None = None
        self._hs_last_min = math.inf
        self._hs_cur_min = math.inf
        self._hs_samples = 0
        self._hs_css = False
        self._hs_css_baseline = math.inf
        self._hs_css_rounds = 0
        self.hystart_exit: str | None = None   # why slow start ended early (for tests)

    def take_state(self, other: CongestionControl) -> None:
        super().take_state(other)
        self.epoch_start = None

    def _grow(self, inc: float) -> None:
        acc = self._acc + inc
        whole = int(acc)
        self._acc = acc - whole
        self.cwnd += whole

    def w_cubic(self, t: float) -> float:
        """RFC 9438 figure 1 in bytes: C*(t-K)^3 + W_max."""
        d = t - self.k
        return self.C * d * d * d * self.mss + self.w_max

    def on_ack(self, acked, flight, now, rtt, srtt=None, ack=0, snd_nxt=0) -> None:
        mss = self.mss
        if self.cwnd < self.ssthresh:
            if self.hystart and self.ssthresh >= _INFINITE_SSTHRESH:
                self._hystart_round(rtt, ack, snd_nxt)
                if self.cwnd >= self.ssthresh:
                    return
            if 2 * flight < self.cwnd:
                return
            inc = acked if acked < _HS_L * mss else _HS_L * mss
            if self._hs_css:
                self._grow(inc / _HS_CSS_GROWTH_DIVISOR)  # RFC 9406 4.3 CSS
            else:
                cwnd = self.cwnd + inc  # RFC 5681 3.1 slow start
                self.cwnd = cwnd if cwnd < self.ssthresh else self.ssthresh
            return
        if flight + mss < self.cwnd:
            return  # not cwnd-limited (RFC 9438 5.8)
        cwnd = self.cwnd
        if self.epoch_start is None:
            # RFC 9438 4.2: a congestion avoidance stage begins.
            self.epoch_start = now
            self.cwnd_epoch = cwnd
            self.w_est = cwnd
            self.alpha = 1.0 if cwnd >= self.cwnd_prior else self.ALPHA
            if self._rto_epoch or self.w_max <= cwnd:
                # RFC 9438 4.8 (after a timeout) or no larger W_max known.
                self._rto_epoch = False
                self.w_max = cwnd
                self.k = 0.0
            else:
                self.k = ((self.w_max - cwnd) / (self.C * mss)) ** (1 / 3)
        t = now - self.epoch_start
        rtt_s = srtt if srtt is not None else (rtt or 0.0)
        # RFC 9438 4.3: Reno-friendly estimate.
        self.w_est += self.alpha * mss * acked / cwnd
        if self.alpha != 1.0 and self.w_est >= self.cwnd_prior:
            self.alpha = 1.0
        if self.w_cubic(t) < self.w_est:
            target = self.w_est  # Reno-friendly region
            if target > cwnd:
                self._grow(target - cwnd)
            return
        # RFC 9438 4.4/4.5: concave and convex regions.
        target = self.w_cubic(t + rtt_s)
        if target < cwnd:
            target = cwnd
        elif target > 1.5 * cwnd:
            target = 1.5 * cwnd
        self._grow((target - cwnd) * acked / cwnd)

    def _hystart_round(self, rtt, ack: int, snd_nxt: int) -> None:
        """RFC 9406 4.2: per-round minimum RTT; leave slow start for
        conservative slow start when it rises, and CSS for congestion
        avoidance after CSS_ROUNDS rounds."""
        if self._hs_window_end is None or ack >= self._hs_window_end:
            self._hs_window_end = snd_nxt
            self._hs_last_min = self._hs_cur_min
            self._hs_cur_min = math.inf
            self._hs_samples = 0
            if self._hs_css:
                self._hs_css_rounds += 1
                if self._hs_css_rounds >= _HS_CSS_ROUNDS:
                    self.ssthresh = self.cwnd  # RFC 9406: enter congestion avoidance
                    self._hs_css = False
                    self.hystart_exit = "css"
                    return
        if rtt is None:
            return
        if rtt < self._hs_cur_min:
            self._hs_cur_min = rtt
        self._hs_samples += 1
        if self._hs_samples < _HS_N_RTT_SAMPLE:
            return
        cur, last = self._hs_cur_min, self._hs_last_min
        if not self._hs_css:
            if last != math.inf:
                thresh = min(max(last / _HS_MIN_RTT_DIVISOR, _HS_MIN_RTT_THRESH),
                             _HS_MAX_RTT_THRESH)
                if cur >= last + thresh:
                    self._hs_css = True
                    self._hs_css_baseline = cur
                    self._hs_css_rounds = 0
        elif cur < self._hs_css_baseline:
            # RFC 9406: the RTT increase was spurious; back to slow start.
            self._hs_css = False
            self._hs_css_baseline = math.inf

    def loss_ssthresh(self, flight: int, now: float) -> int:
        cwnd = self.cwnd
        # RFC 9438 4.7 fast convergence.
        if self.fast_convergence and cwnd < self.w_max:
            self.w_max = cwnd * (1 + self.BETA) / 2
        else:
            self.w_max = cwnd
        self.cwnd_prior = cwnd
        self._hs_css = False
        self.epoch_start = None
        # RFC 9438 4.6: ssthresh = cwnd * beta_cubic, at least 2 SMSS.
        return max(int(cwnd * self.BETA), 2 * self.mss)

    def _reduced(self, now: float) -> None:
        self.epoch_start = None

    def _after_rto(self, now: float) -> None:
        self.epoch_start = None
        self._rto_epoch = True
        self._hs_css = False

    def on_idle_restart(self, now: float) -> None:
        super().on_idle_restart(now)
        self.epoch_start = None  # RFC 9438 5.8: idle time is no growth time

    def debug_state(self) -> dict:
        return {"w_max": self.w_max, "k": self.k, "epoch_start": self.epoch_start,
                "w_est": self.w_est, "hystart_css": self._hs_css}


_CONTROLLERS = {"newreno": NewReno, "reno": NewReno, "cubic": Cubic}


def make_congestion_control(name: str, mss: int, now: float = 0.0,
                            hystart: bool = True) -> CongestionControl:
    try:
        cls = _CONTROLLERS[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown congestion control {name!r}; known: "
                         f"{', '.join(sorted(_CONTROLLERS))}") from None
    if cls is Cubic:
        return cls(mss, now, hystart=hystart)
    return cls(mss, now)
