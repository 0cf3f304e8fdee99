"""Pure ACKs of one batch of received segments go as one in four
(TcpConnection.pop_outgoing), except while the peer recovers from loss."""

import attrs
from test_tcp_connection_harness import Pair, payload_bytes

from trionet.tcp.output import without_superseded_acks
from trionet.wire.tcp import ACK


def established_pair(**kw):
    p = Pair(**kw)
    p.run(p.established)
    p.collect()
    return p


def data_segments(p, n_segments):
    """a's data segments for n_segments full segments, not yet delivered."""
    mss = p.a.mss
    p.a.cc.cwnd = 100 * mss  # past the initial window, as later in a transfer
    p.a.send(payload_bytes(n_segments * mss, 5), p.now)
    out = [seg for seg in p.a.pop_outgoing() if len(seg[1])]
    assert len(out) == n_segments
    return out


def feed(p, segments):
    """Give b a batch of segments, then take everything it would send."""
    for header, payload in segments:
        p.b.on_segment(header, payload, p.now)
    return p.b.pop_outgoing()


def test_a_batch_of_in_order_segments_is_acked_once_per_four_acks():
    p = established_pair()
    segs = data_segments(p, 32)   # 16 ACKs due (one every second full segment)
    acks = feed(p, segs)
    assert all(h.flags == ACK and not payload for h, payload in acks)
    end = (segs[-1][0].seq + len(segs[-1][1])) & 0xFFFFFFFF
    # ACKs 4, 8 and 12 (each acknowledging 8 more segments) and the last.
    assert [h.ack for h, _ in acks] == [segs[8][0].seq, segs[16][0].seq, segs[24][0].seq, end]


def test_a_small_batch_keeps_every_ack():
    # 8 ACKs, 7 of them superseded: fewer than _ACK_COALESCE_MIN, so a
    # sender with a small window (as after losses) gets every one.
    p = established_pair()
    segs = data_segments(p, 16)
    acks = feed(p, segs)
    assert [h.ack for h, _ in acks] == [segs[i][0].seq for i in range(2, 16, 2)] + [
        (segs[-1][0].seq + len(segs[-1][1])) & 0xFFFFFFFF]


def test_coalescing_across_the_sequence_number_wrap():
    # a's sequence numbers wrap to 0 within the batch, and the quick-ACK
    # mark set by a hole just before stays in force across the wrap.
    p = established_pair(iss_a=2**32 - 10 * 1448)
    segs = data_segments(p, 40)
    acks = feed(p, segs[1:2] + segs[0:1] + segs[2:20])
    # The fill's ACK and one per two segments: those up to 16 segments past
    # the fill are kept by the mark; the one past it (18) is superseded but
    # alone, too few to coalesce.
    assert len([h for h, _ in acks if not h.options.sack_blocks]) == 1 + 9
    acks = feed(p, segs[20:40])
    assert len(acks) == 10 // 4 + 1
    assert acks[-1][0].ack == (segs[-1][0].seq + len(segs[-1][1])) & 0xFFFFFFFF


def test_acks_fed_one_by_one_are_never_coalesced():
    p = established_pair()
    segs = data_segments(p, 8)
    acks = []
    for seg in segs:
        acks += feed(p, [seg])
    assert len(acks) == 4


def test_after_a_hole_every_ack_goes():
    p = established_pair()
    segs = data_segments(p, 40)
    # Segment 0 is late: 1..3 are out of order (three ACKs with SACK), then
    # it arrives and fills the hole; for the next 16 segments every ACK goes.
    acks = feed(p, segs[1:4] + segs[0:1] + segs[4:20])
    with_sack = [h for h, _ in acks if h.options.sack_blocks]
    assert len(with_sack) == 3
    plain = [h for h, _ in acks if not h.options.sack_blocks]
    assert len(plain) == 1 + 8  # the hole's fill, then one per two segments
    # Past those 16 segments, coalescing is back.
    acks = feed(p, segs[20:40])
    assert len(acks) == 10 // 4 + 1  # ACKs 4 and 8 of ten, and the last


def test_probes_and_data_are_never_dropped():
    p = established_pair()
    segs = data_segments(p, 20)
    for header, payload in segs:
        p.b.on_segment(header, payload, p.now)
    p.b.send(b"reply", p.now)                  # data carrying the newest ACK
    out = p.b.pop_outgoing()
    end = (segs[-1][0].seq + len(segs[-1][1])) & 0xFFFFFFFF
    # ACKs 1-9 are superseded by the reply (4 and 8 go); the tenth
    # acknowledges no less than the reply does, so it goes too.
    assert [(h.ack, bytes(payload)) for h, payload in out] == [
        (segs[8][0].seq, b""), (segs[16][0].seq, b""), (end, b""), (end, b"reply")]
    # A window probe (SEQ = SND.UNA - 1) among ACKs that a later one supersedes.
    out = []
    for header, payload in data_segments(p, 20):
        p.b.on_segment(header, payload, p.now)
        out += p.b.pop_outgoing()  # one segment at a time: nothing coalesced yet
        if header.seq == segs[-1][0].seq + 10 * 1448:
            last = out[-1][0]
            out.append((attrs.evolve(last, seq=(p.b.snd_una - 1) & 0xFFFFFFFF), b""))
    out = without_superseded_acks(out, p.b.rcv_nxt, 0)
    probes = [h for h, _ in out if h.seq != out[-1][0].seq]
    assert len(probes) == 1
