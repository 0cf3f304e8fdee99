"""Congestion control: how big the congestion window is.

The connection does loss *detection* (duplicate ACKs, recovery point,
partial ACKs, RTO; RFC 5681 3.2 and RFC 6582 3.2) and tells the controller
what happened; the controller only moves ``cwnd`` and ``ssthresh`` (in bytes).
A CUBIC controller or SACK-based recovery (RFC 6675) fits behind the same
calls: recovery logic calls ``on_enter_recovery`` / ``on_exit_recovery``, the
controller decides the numbers.
"""

from __future__ import annotations

INITIAL_WINDOW_SEGMENTS = 10  # RFC 6928, as Linux


class CongestionControl:
    """Interface. ``flight`` arguments are bytes in flight before the event."""

    name = "none"

    def __init__(self, mss: int, now: float = 0.0):
        self.mss = mss
        self.cwnd = INITIAL_WINDOW_SEGMENTS * mss
        self.ssthresh = 1 << 62  # "arbitrarily high" (RFC 5681 3.1)

    def set_mss(self, mss: int) -> None:
        """The sender MSS became known (after the handshake)."""
        if mss != self.mss:
            self.cwnd = self.cwnd // self.mss * mss
            self.mss = mss

    @property
    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    def on_ack(self, acked: int, flight: int, now: float, rtt: float | None) -> None:
        """New data was acknowledged outside loss recovery."""

    def on_enter_recovery(self, flight: int, now: float) -> None:
        """Fast retransmit after the third duplicate ACK."""

    def on_dupack_in_recovery(self) -> None:
        """A further duplicate ACK during fast recovery."""

    def on_partial_ack(self, acked: int) -> None:
        """An ACK below the recovery point during fast recovery."""

    def on_exit_recovery(self, flight: int) -> None:
        """A full ACK ended fast recovery; ``flight`` is what is still out."""

    def on_rto(self, flight: int, now: float, repeated: bool = False) -> None:
        """The retransmission timer expired (``repeated``: again, for the
        same data, so ssthresh stays as it is; RFC 5681 3.1)."""

    def on_idle_restart(self, now: float) -> None:
        """Sending resumes after an idle period longer than the RTO
        (RFC 5681 4.1): restart from no more than the initial window."""
        self.cwnd = min(self.cwnd, INITIAL_WINDOW_SEGMENTS * self.mss)


class NewReno(CongestionControl):
    """RFC 5681 slow start and congestion avoidance with RFC 6582 NewReno
    fast recovery."""

    name = "newreno"

    def __init__(self, mss: int, now: float = 0.0):
        super().__init__(mss, now)
        self._ca_acked = 0  # bytes acked toward the next cwnd increase in CA

    def on_ack(self, acked: int, flight: int, now: float, rtt: float | None) -> None:
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

    def on_enter_recovery(self, flight: int, now: float) -> None:
        # RFC 5681 3.2 step 2-3 (equation 4), RFC 6582 3.2 step 2.
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh + 3 * self.mss
        self._ca_acked = 0

    def on_dupack_in_recovery(self) -> None:
        self.cwnd += self.mss  # RFC 5681 3.2 step 4 (inflation)

    def on_partial_ack(self, acked: int) -> None:
        # RFC 6582 3.2 step 3: deflate by the amount acked, add back one SMSS
        # if at least one SMSS was acked.
        cwnd = self.cwnd - acked
        if acked >= self.mss:
            cwnd += self.mss
        self.cwnd = max(cwnd, self.mss)

    def on_exit_recovery(self, flight: int) -> None:
        # RFC 6582 3.2 step 3, full ACK, option (1).
        self.cwnd = min(self.ssthresh, max(flight, self.mss) + self.mss)
        self._ca_acked = 0

    def on_rto(self, flight: int, now: float, repeated: bool = False) -> None:
        # RFC 5681 3.1 equation 4 and the loss window of 1 SMSS.
        if not repeated:
            self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._ca_acked = 0


_CONTROLLERS = {"newreno": NewReno, "reno": NewReno}


def make_congestion_control(name: str, mss: int, now: float = 0.0) -> CongestionControl:
    try:
        cls = _CONTROLLERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown congestion control {name!r}") from None
    return cls(mss, now)
