"""The named parts of a TCP connection's state, each with the rules of its
RFC: the RTT estimator, the timers, the out-of-order assembler, the send and
receive buffers, the timestamp option and the challenge-ACK limiter.

They hold state and small pure rules; the connection (``connection.py`` and
its mixins) decides when they are consulted.
"""

from __future__ import annotations

from bisect import bisect_right

from .buffer import ByteBuffer
from .config import HALF, INF, M32, PAWS_IDLE, TcpConfig


class RttEstimator:
    """RFC 6298: SRTT, RTTVAR and RTO, and the one segment timed when
    timestamps are off (Karn's rule: never a retransmitted one)."""

    __slots__ = ("config", "srtt", "rttvar", "rto", "timed_seq", "timed_at",
                 "syn_retransmitted")

    def __init__(self, config: TcpConfig):
        self.config = config
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = config.rto_initial
        #: The sequence number being timed (None: none) and when it was sent.
        self.timed_seq: int | None = None
        self.timed_at = 0.0
        #: Our SYN (or SYN-ACK) went more than once (RFC 6298 5.7).
        self.syn_retransmitted = False

    def sample(self, r: float) -> None:
        """RFC 6298 2.2-2.4."""
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        cfg = self.config
        rto = self.srtt + max(0.001, 4 * self.rttvar)
        self.rto = cfg.rto_min if rto < cfg.rto_min else (cfg.rto_max if rto > cfg.rto_max else rto)

    def back_off(self) -> None:
        """RFC 6298 5.5: double the RTO, up to the maximum."""
        self.rto = min(self.rto * 2, self.config.rto_max)

    def on_established(self) -> None:
        """RFC 6298 5.7: back to 3 s if the SYN was retransmitted and no RTT
        sample was taken."""
        if self.srtt is None:
            cfg = self.config
            self.rto = max(cfg.rto_initial, 3.0) if self.syn_retransmitted else cfg.rto_initial


class Timers:
    """Every timer of a connection as a deadline (INF when not armed), and
    the backoff counters that go with them. The connection's task keeps one
    cancel scope whose deadline is ``earliest()``."""

    __slots__ = ("rtx", "pto", "reo", "persist", "delack", "keepalive", "close",
                 "persist_backoff", "zero_window_probes", "keepalive_probes")

    def __init__(self) -> None:
        self.rtx = INF          # retransmission (RFC 6298)
        self.pto = INF          # tail loss probe (RFC 8985 7)
        self.reo = INF          # RACK reordering window (RFC 8985 6.3)
        self.persist = INF      # zero-window probe (RFC 9293 3.8.6.1)
        self.delack = INF       # delayed ACK (RFC 1122 4.2.3.2)
        self.keepalive = INF    # RFC 1122 4.2.3.6
        self.close = INF        # TIME-WAIT (2*MSL) or FIN-WAIT-2 after close()
        self.persist_backoff = 0
        self.zero_window_probes = 0
        self.keepalive_probes = 0

    def earliest(self) -> float:
        d = self.rtx
        if self.persist < d:
            d = self.persist
        if self.delack < d:
            d = self.delack
        if self.keepalive < d:
            d = self.keepalive
        if self.close < d:
            d = self.close
        if self.pto < d:
            d = self.pto
        if self.reo < d:
            d = self.reo
        return d

    def clear(self) -> None:
        self.rtx = self.persist = self.delack = INF
        self.keepalive = self.close = INF
        self.pto = self.reo = INF


def _start(entry) -> int:
    return entry[0]


class Assembler:
    """Out-of-order data held until the hole before it fills (RFC 9293
    3.10.7.4, seventh check), and the SACK blocks that report it (RFC 2018
    4) with a pending D-SACK (RFC 2883).

    ``segments`` is a sorted list of (start, end, bytes), unwrapped sequence
    numbers, never overlapping."""

    __slots__ = ("segments", "fin", "recent", "dsack", "dsacks_sent")

    def __init__(self) -> None:
        self.segments: list[tuple[int, int, bytes]] = []
        #: Where an out-of-order FIN sits (its sequence number), or None.
        self.fin: int | None = None
        #: Starts of the most recently received out-of-order segments (RFC 2018 4).
        self.recent: list[int] = []
        #: A duplicate range to report once in a D-SACK block, or None.
        self.dsack: tuple[int, int] | None = None
        self.dsacks_sent = 0

    @property
    def held_bytes(self) -> int:
        return sum(e - s for s, e, _ in self.segments)

    def clear(self) -> None:
        self.segments = []

    def insert(self, seq: int, payload) -> bool:
        """Hold out-of-order data; False if every byte was held already."""
        ooo = self.segments
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

    def note_received(self, seq: int) -> None:
        """``seq`` starts the most recently received out-of-order segment."""
        recent = self.recent
        if seq in recent:
            recent.remove(seq)
        recent.insert(0, seq)
        del recent[4:]

    def pull(self, rcv_nxt: int, buffer: ByteBuffer) -> int:
        """Move what now follows ``rcv_nxt`` into ``buffer``; the new RCV.NXT."""
        ooo = self.segments
        k = 0
        for s, e, d in ooo:
            if s > rcv_nxt:
                break
            if e > rcv_nxt:
                buffer.append(d[rcv_nxt - s:] if s < rcv_nxt else d)
                rcv_nxt = e
            k += 1
        if k:
            del ooo[:k]
        if not ooo:
            self.recent.clear()
        return rcv_nxt

    def sack_blocks(self, max_blocks: int) -> tuple:
        """RFC 2018 4: the block holding the most recently received segment
        first, then the most recently reported ones; a D-SACK block (RFC 2883
        4) goes before them all, once."""
        ranges: list[list[int]] = []
        for s, e, _ in self.segments:
            if ranges and ranges[-1][1] == s:
                ranges[-1][1] = e
            else:
                ranges.append([s, e])
        out = []
        dsack = self.dsack
        if dsack is not None:
            self.dsack = None
            self.dsacks_sent += 1
            out.append((dsack[0] & M32, dsack[1] & M32))
        used = set()
        for seq in self.recent:
            for i, (s, e) in enumerate(ranges):
                if s <= seq < e:
                    if i not in used:
                        used.add(i)
                        out.append((s & M32, e & M32))
                    break
            if len(out) >= max_blocks:
                return tuple(out)
        for i in range(len(ranges) - 1, -1, -1):
            if len(out) >= max_blocks:
                break
            if i not in used:
                out.append((ranges[i][0] & M32, ranges[i][1] & M32))
        return tuple(out)


class SendBuffer:
    """What the application wrote and the peer has not acknowledged: the
    bytes from sequence number ``seq`` on, and our FIN after them."""

    __slots__ = ("data", "seq", "fin_queued", "fin_seq", "autotune")

    def __init__(self, seq: int, autotune: bool):
        self.data = ByteBuffer()
        self.seq = seq
        #: The application closed its side: FIN follows the data.
        self.fin_queued = False
        #: The FIN's sequence number once sent, else None.
        self.fin_seq: int | None = None
        #: Grow ``send_buffer`` with the congestion window (cleared by
        #: setting send_buffer by hand, as SO_SNDBUF).
        self.autotune = autotune

    @property
    def end(self) -> int:
        return self.seq + len(self.data)

    def acknowledged(self, ack: int) -> None:
        """Release the bytes below ``ack``."""
        seq = self.seq
        upto = seq + len(self.data)
        if ack < upto:
            upto = ack
        if upto > seq:
            self.data.consume(upto - seq)
            self.seq = upto

    def grow(self, cwnd: int, config: TcpConfig) -> None:
        """Auto-tuning (as Linux's tcp_sndbuf_expand): room for two
        congestion windows, so the application keeps the pipe full."""
        want = 2 * cwnd
        if want > config.send_buffer:
            config.send_buffer = want if want < config.send_buffer_max else \
                max(config.send_buffer_max, config.send_buffer)


class ReceiveBuffer:
    """In-order data the application has not read, and the state of
    receive-buffer auto-tuning (Linux's dynamic right-sizing): the
    receiver's RTT estimate and how much the application read per round."""

    __slots__ = ("data", "autotune", "rtt", "rtt_seq", "rtt_time", "space", "space_seq",
                 "space_time")

    def __init__(self, now: float, autotune: bool):
        self.data = ByteBuffer()
        #: Grow ``receive_buffer`` (cleared by setting it by hand, as SO_RCVBUF).
        self.autotune = autotune
        self.rtt: float | None = None
        self.rtt_seq = 0
        self.rtt_time = now
        self.space = 0
        self.space_seq = 0
        self.space_time = now

    def start(self, rcv_nxt: int, initial_space: int, now: float) -> None:
        """The peer's ISN is known: auto-tuning starts from what the
        initial window could bring in one round trip (Linux's rcvq_space)."""
        self.space = initial_space
        self.space_seq = rcv_nxt
        self.space_time = now
        self.rtt_seq = rcv_nxt

    def adjust_space(self, now: float, rcv_nxt: int, srtt: float | None, rcv_mss: int,
                     rcv_wscale: int, config: TcpConfig) -> None:
        """Once a round trip, if the application took more than in the round
        before, make room for about twice that (plus the growth trend), so the
        window never holds a fast sender back; up to ``receive_buffer_max``."""
        rtt = self.rtt if self.rtt is not None else srtt
        if rtt is None or now - self.space_time < rtt:
            return
        copied_seq = rcv_nxt - len(self.data)
        copied = copied_seq - self.space_seq
        space = self.space
        if copied > space:
            win = 2 * copied + 16 * rcv_mss
            win += 2 * (win * (copied - space) // max(space, 1))
            limit = min(config.receive_buffer_max, 0xFFFF << rcv_wscale)
            if win > limit:
                win = limit
            if win > config.receive_buffer:
                config.receive_buffer = win
            self.space = copied
        self.space_seq = copied_seq
        self.space_time = now

    def measure_rtt_by_echo(self, echo_age_ms: int, plen: int, rcv_mss: int) -> None:
        """The receiver's RTT from TSecr on full-sized data (as Linux's
        rcv_rtt_est with timestamps); ``echo_age_ms`` is now - TSecr."""
        if plen < rcv_mss or echo_age_ms >= HALF:
            return
        m = max(echo_age_ms / 1000, 0.001)
        r = self.rtt
        self.rtt = m if r is None else r + (m - r) / 8

    def measure_rtt_by_window(self, rcv_nxt: int, irs: int, window: int, rcv_mss: int,
                              now: float) -> None:
        """Without timestamps: the time one window of data takes to arrive."""
        if rcv_nxt >= self.rtt_seq:
            if self.rtt_seq > irs + 1:
                m = max(now - self.rtt_time, 0.001)
                if self.rtt is None or m < self.rtt:
                    self.rtt = m
            self.rtt_seq = rcv_nxt + max(window, rcv_mss)
            self.rtt_time = now


class Timestamps:
    """The timestamp option (RFC 7323): whether it is in use, TS.Recent and
    when it was set, and our clock's offset (one per connection, from the
    stack's secret, RFC 7323 5.4)."""

    __slots__ = ("ok", "recent", "recent_stamp", "offset")

    def __init__(self, offset: int, now: float):
        self.ok = False
        self.recent = 0
        self.recent_stamp = now
        self.offset = offset & M32

    def tsval(self, now: float) -> int:
        """Our clock (milliseconds) as sent in TSval."""
        return (int(now * 1000) + self.offset) & M32

    def echo_age_ms(self, tsecr: int, now: float) -> int:
        """Milliseconds since we sent the TSval echoed in ``tsecr`` (>= 2**31
        when it lies in the future: not ours)."""
        return (int(now * 1000) + self.offset - tsecr) & M32

    def is_old(self, tsval: int, now: float) -> bool:
        """PAWS (RFC 7323 5.3 R1): ``tsval`` is older than TS.Recent, and
        TS.Recent is not older than 24 days."""
        return ((tsval - self.recent) & M32) >= HALF and now - self.recent_stamp <= PAWS_IDLE

    def is_newer(self, tsval: int) -> bool:
        """``tsval`` is TS.Recent or later."""
        return ((tsval - self.recent) & M32) < HALF

    def record(self, tsval: int, now: float) -> None:
        self.recent = tsval
        self.recent_stamp = now


class ChallengeAcks:
    """RFC 5961 7: challenge ACKs at most ``limit`` a second per connection;
    and the rate limit on ACKs for out-of-window pure ACKs (as Linux's
    tcp_invalid_ratelimit), so two stacks cannot loop on them."""

    __slots__ = ("window_start", "in_window", "sent", "limited", "last_invalid_ack")

    def __init__(self, now: float):
        self.window_start = now
        self.in_window = 0
        #: Challenge ACKs sent, and held back by the limit.
        self.sent = 0
        self.limited = 0
        self.last_invalid_ack = -INF

    def allow_challenge(self, now: float, limit: int) -> bool:
        if now - self.window_start >= 1.0:
            self.window_start = now
            self.in_window = 0
        if self.in_window < limit:
            self.in_window += 1
            self.sent += 1
            return True
        self.limited += 1
        return False

    def allow_invalid_ack(self, now: float, gap: float) -> bool:
        if now - self.last_invalid_ack < gap:
            return False
        self.last_invalid_ack = now
        return True
