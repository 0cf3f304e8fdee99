"""The sender's retransmission queue and SACK scoreboard (RFC 6675, RFC 2018).

Every segment sent and not yet cumulatively acknowledged has a ``Seg``
record: its sequence range (unwrapped, FIN included), when it was last sent,
and flags (SACKed, lost, retransmitted). Byte counters give RFC 6675's
``pipe`` in O(1), counted the Linux way:

    pipe = in flight - sacked - lost + retransmitted-and-outstanding

With no loss and no SACK blocks every record is flag-free and the counters
are zero: a cumulative ACK is one bisect and one slice deletion.
Retransmitted segments also sit in ``rtx`` (an insertion-ordered dict, so
in the order they were last sent) for RACK's time-ordered scan (RFC 8985
6.2); original transmissions are already time-ordered by sequence number.
"""

from __future__ import annotations

from bisect import bisect_right
from operator import attrgetter, itemgetter

SACKED = 1        # covered by a SACK block
LOST = 2          # deemed lost (RFC 6675 IsLost, RACK, RTO): to be retransmitted
RETRANS = 4       # retransmitted and the retransmission is still outstanding
EVER_RETRANS = 8  # retransmitted at least once (Karn's rule, RACK)

_end = attrgetter("end")
_range_end = itemgetter(1)
_NO_HINT = float("inf")


class Seg:
    """``tx`` numbers transmissions in the order they happened: RACK's
    "sent after" test (RFC 8985 6.2) uses it, since many segments share one
    timestamp and a retransmission's sequence number says nothing of when it
    was sent."""

    __slots__ = ("start", "end", "ts", "flags", "tx")

    def __init__(self, start: int, end: int, ts: float, tx: int, flags: int = 0):
        self.start = start
        self.end = end
        self.ts = ts
        self.tx = tx
        self.flags = flags

    def __repr__(self) -> str:
        names = "".join(c for bit, c in ((SACKED, "S"), (LOST, "L"), (RETRANS, "R"),
                                         (EVER_RETRANS, "e")) if self.flags & bit)
        return f"Seg({self.start}-{self.end} t={self.ts:.4f} {names or '-'})"


class Scoreboard:
    __slots__ = ("segs", "sacked_out", "lost_out", "retrans_out", "ranges", "lost_hint",
                 "rtx", "rack_scan", "high_sacked")

    def __init__(self):
        self.segs: list[Seg] = []
        self.sacked_out = 0
        self.lost_out = 0
        self.retrans_out = 0
        self.ranges: list[list[int]] = []   # SACKed ranges above SND.UNA, merged
        self.lost_hint = _NO_HINT            # no lost, unretransmitted segment below this
        self.rtx: dict[Seg, None] = {}       # retransmitted, outstanding: send order
        self.rack_scan = 0                   # no RACK candidate among originals below this
        self.high_sacked = 0

    @property
    def clean(self) -> bool:
        return not (self.sacked_out or self.lost_out or self.retrans_out)

    def pipe(self, flight: int) -> int:
        """RFC 6675 SetPipe(), in bytes."""
        return flight - self.sacked_out - self.lost_out + self.retrans_out

    def index(self, seq: int) -> int:
        """Index of the first segment ending after ``seq``."""
        return bisect_right(self.segs, seq, key=_end)

    def split(self, i: int, at: int) -> None:
        """Cut segment i at ``at`` (counters are per byte: unchanged)."""
        s = self.segs[i]
        t = Seg(at, s.end, s.ts, s.tx, s.flags)
        s.end = at
        self.segs.insert(i + 1, t)
        if s.flags & RETRANS:
            # Keep the send order: the new half right after the old one.
            items = list(self.rtx)
            k = items.index(s)
            items.insert(k + 1, t)
            self.rtx = dict.fromkeys(items)

    # -- cumulative ACK -------------------------------------------------------

    def ack(self, ack: int):
        """Drop what ``ack`` covers. Returns (first, last, delivered) where
        first/last are the lowest and highest records fully acknowledged (None
        when none) and delivered lists the records newly delivered (not SACKed
        before), or None on the fast path where that is all of them."""
        segs = self.segs
        k = bisect_right(segs, ack, key=_end)
        first = last = None
        delivered = None
        if k:
            first = segs[0]
            last = segs[k - 1]
            if not self.clean:
                delivered = []
                rtx = self.rtx
                for s in segs[:k]:
                    f = s.flags
                    n = s.end - s.start
                    if f & SACKED:
                        self.sacked_out -= n
                        continue
                    if f & LOST:
                        self.lost_out -= n
                    if f & RETRANS:
                        self.retrans_out -= n
                        rtx.pop(s, None)
                    delivered.append(s)
            del segs[:k]
        if segs and segs[0].start < ack:
            # Partly acknowledged: trim the head (as Linux's tcp_trim_head).
            s = segs[0]
            n = ack - s.start
            f = s.flags
            if f & SACKED:
                self.sacked_out -= n
            else:
                if f & LOST:
                    self.lost_out -= n
                if f & RETRANS:
                    self.retrans_out -= n
            s.start = ack
        rs = self.ranges
        if rs:
            j = 0
            while j < len(rs) and rs[j][1] <= ack:
                j += 1
            if j:
                del rs[:j]
            if rs and rs[0][0] < ack:
                rs[0][0] = ack
        if self.lost_hint < ack:
            self.lost_hint = ack if self.lost_out else _NO_HINT
        return first, last, delivered

    # -- SACK -------------------------------------------------------------------

    def _add_range(self, left: int, right: int) -> list:
        """Merge [left, right) into the SACKed ranges; return its parts that
        were not SACKed before."""
        rs = self.ranges
        j = bisect_right(rs, left - 1, key=_range_end)  # first range ending at/after left
        start_j = j
        cur = left
        nl, nr = left, right
        parts = []
        while j < len(rs) and rs[j][0] <= right:
            rl, rr = rs[j]
            if rl > cur:
                parts.append((cur, rl))
            if rr > cur:
                cur = rr
            if rl < nl:
                nl = rl
            if rr > nr:
                nr = rr
            j += 1
        if cur < right:
            parts.append((cur, right))
        rs[start_j:j] = [[nl, nr]]
        return parts

    def sack(self, blocks) -> list:
        """Mark the segments the (unwrapped, clipped) blocks cover; returns
        the newly SACKed records."""
        newly = []
        segs = self.segs
        rtx = self.rtx
        for left, right in blocks:
            for pl, pr in self._add_range(left, right):
                i = bisect_right(segs, pl, key=_end)
                if i < len(segs) and segs[i].start < pl:
                    self.split(i, pl)
                    i += 1
                while i < len(segs) and segs[i].start < pr:
                    s = segs[i]
                    if s.end > pr:
                        self.split(i, pr)
                    f = s.flags
                    if not f & SACKED:
                        n = s.end - s.start
                        if f & LOST:
                            self.lost_out -= n
                        if f & RETRANS:
                            self.retrans_out -= n
                            rtx.pop(s, None)
                        s.flags = (f & EVER_RETRANS) | SACKED
                        self.sacked_out += n
                        newly.append(s)
                        if s.end > self.high_sacked:
                            self.high_sacked = s.end
                    i += 1
        return newly

    def clear_sacks(self) -> None:
        """Forget all SACK information (the receiver reneged, RFC 2018 8)."""
        for s in self.segs:
            s.flags &= ~SACKED
        self.sacked_out = 0
        self.ranges = []
        self.high_sacked = 0

    # -- loss marking -------------------------------------------------------------

    def mark_lost(self, s: Seg) -> bool:
        f = s.flags
        if f & SACKED:
            return False
        n = s.end - s.start
        if f & RETRANS:
            # A retransmission was lost too (RACK): due again.
            self.retrans_out -= n
            self.rtx.pop(s, None)
            f &= ~RETRANS
        elif f & LOST:
            return False
        if not f & LOST:
            self.lost_out += n
            f |= LOST
        s.flags = f
        if s.start < self.lost_hint:
            self.lost_hint = s.start
        return True

    def mark_lost_below(self, seq: int) -> int:
        """RFC 6675 IsLost as a sweep: every un-SACKed segment starting below
        ``seq`` that is not already lost. Returns how many were marked."""
        count = 0
        for s in self.segs:
            if s.start >= seq:
                break
            if not s.flags & (SACKED | LOST | RETRANS):
                self.mark_lost(s)
                count += 1
        return count

    def is_lost_bound(self, dupthresh: int, mss: int) -> int:
        """The sequence number below which RFC 6675 IsLost() holds for an
        un-SACKed segment: more than (DupThresh - 1) * SMSS bytes, or
        DupThresh separate ranges, SACKed above it (0: nowhere)."""
        need = (dupthresh - 1) * mss
        total = 0
        rs = self.ranges
        n = len(rs)
        for j in range(n - 1, -1, -1):
            rl, rr = rs[j]
            total += rr - rl
            if total > need or n - j >= dupthresh:
                return rl
        return 0

    def mark_all_lost(self) -> None:
        """RTO (RFC 6675 5.1, RFC 6298 5.4): everything not SACKed is resent."""
        lost = 0
        for s in self.segs:
            f = s.flags
            if f & SACKED:
                continue
            s.flags = (f & EVER_RETRANS) | LOST
            lost += s.end - s.start
        self.lost_out = lost
        self.retrans_out = 0
        self.rtx.clear()
        self.lost_hint = self.segs[0].start if self.segs else _NO_HINT

    def on_retransmit(self, s: Seg, now: float, tx: int) -> None:
        """``s`` was sent again (transmission number ``tx``)."""
        f = s.flags
        if not f & RETRANS:
            self.retrans_out += s.end - s.start
            s.flags = f | RETRANS | EVER_RETRANS
        rtx = self.rtx
        rtx.pop(s, None)
        rtx[s] = None
        s.ts = now
        s.tx = tx

    def next_lost(self, start_index: int = 0):
        """Index of the first lost, not yet retransmitted segment at or after
        ``lost_hint`` (or None; the hint then moves past the end)."""
        segs = self.segs
        hint = self.lost_hint
        if hint == _NO_HINT:
            return None
        i = bisect_right(segs, hint, key=_end)
        n = len(segs)
        while i < n:
            if segs[i].flags & (SACKED | LOST | RETRANS) == LOST:
                self.lost_hint = segs[i].start
                return i
            i += 1
        self.lost_hint = _NO_HINT
        return None

    # -- RACK (RFC 8985 6.2 step 5) -----------------------------------------------

    def rack_candidates_lost(self, now: float, rack_tx: int, rtt: float, reo_wnd: float):
        """Segments RACK deems lost now, and the time left until the next one
        may be (math.inf if none is pending). Walks the outstanding segments
        in send order and stops at the first that was sent after the RACK
        segment or whose time has not come."""
        lost = []
        wait = _NO_HINT
        for s in self.rtx:
            if s.tx > rack_tx:
                break
            remaining = s.ts + rtt + reo_wnd - now
            if remaining <= 1e-9:
                lost.append(s)
            else:
                wait = remaining
                break
        segs = self.segs
        i = bisect_right(segs, self.rack_scan, key=_end)
        n = len(segs)
        scan = None
        while i < n:
            s = segs[i]
            i += 1
            if s.flags:
                continue
            if s.tx > rack_tx:
                if scan is None:
                    scan = s.start
                break
            remaining = s.ts + rtt + reo_wnd - now
            if remaining <= 1e-9:
                lost.append(s)
            else:
                if scan is None:
                    scan = s.start
                if remaining < wait:
                    wait = remaining
                break
        self.rack_scan = scan if scan is not None else (segs[-1].end if segs else 0)
        return lost, wait
