"""New data as segments of several MSS for a link with TSO
(``TcpConnection.gso_segments``, as Linux's tcp_write_xmit builds TSO
segments): the machine sends one segment and keeps one scoreboard record
where it would send k full-sized ones; the link (here the harness, with
``socket._cut``, the software fallback) cuts it back into MSS-sized
segments, PSH and FIN on the last piece (Linux tcp_gso_segment). What
reaches the wire must be what the machine sends without it, and loss
recovery (RFC 6675, RFC 8985) must work on the larger records.
"""

from __future__ import annotations

from trionet.tcp.connection import TcpConfig
from trionet.tcp.socket import _cut
from trionet.wire.tcp import ACK, FIN, PSH, TcpHeader, TcpOptions

from test_tcp_connection_harness import Pair, payload_bytes, transfer

MSS = 1000


class TsoPair(Pair):
    """A ``Pair`` whose links cut large segments as a TSO NIC does; both
    machines get ``gso_segments`` from the start (a task sets it after its
    first flush, the SYN's), and every segment a machine sends is recorded
    before the cut."""

    def __init__(self, gso: int, **kw):
        super().__init__(**kw)
        self.gso = gso
        self.machine_sent: list[tuple[str, int, int]] = []  # (side, seq, length)

    def pump_apps(self) -> None:
        for c in (self.a, self.b):
            if c is not None:
                c.gso_segments = self.gso  # as TcpSocket.flush sets it from the path
        super().pump_apps()

    def collect(self) -> None:
        for name in ("a", "b"):
            c = self.conn(name)
            if c is None:
                continue
            out = c.pop_outgoing()
            for h, p in out:
                self.machine_sent.append((name, h.seq, len(p)))
            for h, p in _cut(out, c._mss):
                self.transmit(name, h, p)
        for h, p in self.listener_replies:
            self.transmit("b", h, p)
        self.listener_replies = []


def config() -> TcpConfig:
    return TcpConfig(mss=MSS)


def wire(pair: Pair) -> list[tuple]:
    return [(t, src, h.seq, h.ack, h.flags, h.window, n) for t, src, h, n in pair.log]


def test_cut_makes_mss_pieces_with_psh_and_fin_on_the_last():
    header = TcpHeader(1, 2, 0xFFFFFF00, 7, ACK | PSH | FIN, 100, 0, TcpOptions(timestamps=(1, 2)))
    payload = bytes(range(256)) * 10  # 2,560 bytes
    pieces = _cut([(header, payload)], 1000)
    assert [len(p) for _, p in pieces] == [1000, 1000, 560]
    assert b"".join(p for _, p in pieces) == payload
    # RFC 9293 3.4: sequence numbers wrap modulo 2**32.
    assert [h.seq for h, _ in pieces] == [0xFFFFFF00, (0xFFFFFF00 + 1000) & 0xFFFFFFFF,
                                          (0xFFFFFF00 + 2000) & 0xFFFFFFFF]
    assert [h.flags for h, _ in pieces] == [ACK, ACK, ACK | PSH | FIN]
    assert all(h.options == header.options and h.ack == 7 for h, _ in pieces)
    short = (header, b"x" * 1000)
    assert _cut([short], 1000) == [short]


def test_tso_segments_reach_the_wire_as_the_segments_sent_without_tso():
    """Lossless, both directions at once: the machine with gso_segments
    sends fewer, larger segments, and after the cut the wire carries the
    very segments (times, sequence numbers, ACKs, flags, windows, lengths)
    of the run without TSO."""
    data_ab, data_ba = payload_bytes(400_000, 1), payload_bytes(150_000, 2)
    plain = TsoPair(1, cfg_a=config(), cfg_b=config(), seed=3)
    transfer(plain, data_ab, data_ba)
    tso = TsoPair(16, cfg_a=config(), cfg_b=config(), seed=3)
    transfer(tso, data_ab, data_ba)
    assert wire(tso) == wire(plain)
    assert max(n for _, _, n in tso.machine_sent) > MSS
    assert max(n for _, _, n in plain.machine_sent) <= MSS
    data_segments = [sum(1 for _, _, n in pair.machine_sent if n) for pair in (tso, plain)]
    assert data_segments[0] < data_segments[1] / 3, data_segments
    assert tso.a.retransmits == plain.a.retransmits == 0


def test_loss_recovery_on_multi_mss_records():
    """RFC 6675 and RFC 8985 with records of several MSS: random loss,
    duplication and reordering on the wire (after the cut); every byte
    arrives once, in order, within a bound like the run without TSO."""
    for seed in range(4):
        data_ab, data_ba = payload_bytes(600_000, seed), payload_bytes(100_000, seed + 10)
        times = {}
        for gso in (1, 16):
            pair = TsoPair(gso, cfg_a=config(), cfg_b=config(), seed=seed, loss=0.03,
                           dup=0.01, jitter=0.004)
            transfer(pair, data_ab, data_ba)
            assert pair.a.retransmits > 0
            times[gso] = pair.now
        assert times[16] < 3 * times[1] + 1.0, times


def test_a_lowered_mss_cuts_records_again():
    """RFC 8201 5.2 with TSO: when the path MTU goes down, data in flight
    in large records is sent again in segments of the new MSS."""
    pair = TsoPair(16, cfg_a=config(), cfg_b=config(), seed=5)
    data = payload_bytes(50_000, 5)
    pair.apps["a"].to_send = data
    pair.apps["b"].read = True
    pair.run(lambda: pair.a is not None and pair.a.snd_max - pair.a.snd_una > 4 * MSS,
             max_time=5)
    assert any(side == "a" and n > MSS for side, _, n in pair.machine_sent)
    in_flight_end = pair.a.snd_max
    logged = len(pair.log)
    assert pair.a.on_path_mtu(576, pair.now)
    new_mss = pair.a._mss
    assert new_mss < MSS
    pair.run(lambda: len(pair.apps["b"].received) == len(data), max_time=60)
    assert bytes(pair.apps["b"].received) == data
    later = [(h.seq, n) for _, side, h, n in pair.log[logged:] if side == "a" and n]
    assert later and max(n for _, n in later) <= new_mss
    assert any(seq < in_flight_end for seq, _ in later)  # resent, smaller


class _Path:
    def __init__(self, mtu: int, tso_max: int):
        self.mtu, self.tso_max, self.offload = mtu, tso_max, True
        self.sent: list[tuple[int, int]] = []  # (segment length, gso_size)

    def output(self, path, src, dst, proto, segment, dont_fragment=True, gso_size=0):
        self.sent.append((len(segment), gso_size))


class _Network:
    def __init__(self, path: _Path):
        self.path = path

    def path_to(self, dst):
        return self.path


def test_send_segments_on_tso_and_plain_paths_and_after_the_mtu_went_down():
    """A multi-MSS segment goes whole with gso_size = MSS on a TSO path,
    cut on a plain one; after the path MTU went down (RFC 8201 5.2)
    segments that no longer fit are held back, also when none is left."""
    from collections import Counter
    from ipaddress import ip_address

    from trionet.tcp.socket import send_segments
    src, dst = ip_address("10.0.0.1"), ip_address("10.0.0.2")
    header = TcpHeader(1, 2, 1000, 7, ACK | PSH, 100, 0, TcpOptions())
    out = [(header, bytes(3000))]
    tso = _Path(1500, 65535)
    assert send_segments(_Network(tso), Counter(), src, dst, out, mss=1000) is tso
    assert tso.sent == [(3020, 1000)]
    plain = _Path(1500, 0)
    send_segments(_Network(plain), Counter(), src, dst, out, mss=1000)
    assert plain.sent == [(1020, 0)] * 3
    lowered = _Path(576, 65535)
    assert send_segments(_Network(lowered), Counter(), src, dst, out, 1500, mss=1000) is lowered
    assert lowered.sent == []
