"""RFC 5961, PAWS, window edges, reassembly, option negotiation, reset_for,
and random segment sequences (hypothesis)."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_tcp_connection_harness import A_IP, B_IP, App, Pair, payload_bytes, sha, transfer
from trionet.tcp.connection import TcpConfig, TcpConnection, TcpState, reset_for
from trionet.wire.tcp import ACK, FIN, PSH, RST, SYN, URG, TcpHeader, TcpOptions

S = TcpState
M = 0xFFFFFFFF


def established(**kw):
    p = Pair(**kw)
    p.run(p.established)
    return p


def from_a(p, flags, seq_off=0, ack_off=0, payload=b"", window=2048, ts=None, opts=None):
    """Inject a segment "from a" into b, relative to what b expects."""
    b = p.b
    if opts is None:
        tsval = p.a.tsval(p.now) if ts is None else ts
        opts = TcpOptions(timestamps=(tsval, b.tsval(p.now))) if b.timestamps.ok else TcpOptions()
    h = TcpHeader(40000, 80, (b.rcv_nxt + seq_off) & M, (b.snd_nxt + ack_off) & M, flags,
                  window, 0, opts)
    b.on_segment(h, memoryview(payload), p.now)
    return b.pop_outgoing()


# -- RFC 5961 ----------------------------------------------------------------

def test_rst_exact_sequence_resets():
    p = established()
    out = from_a(p, RST)
    assert out == []
    assert p.b.closed and p.b.error == "reset" and p.b.readable


def test_rst_in_window_gets_challenge_ack():
    p = established()
    out = from_a(p, RST, seq_off=1000)
    assert p.b.state is S.ESTABLISHED
    assert len(out) == 1 and out[0][0].flags == ACK
    assert out[0][0].ack == p.b.rcv_nxt & M


def test_rst_out_of_window_ignored():
    p = established()
    assert from_a(p, RST, seq_off=10_000_000) == []
    assert from_a(p, RST, seq_off=-1) == []
    assert p.b.state is S.ESTABLISHED


def test_syn_in_established_gets_challenge_ack():
    p = established()
    for off in (0, 100, -5000, 10_000_000):
        out = from_a(p, SYN, seq_off=off)
        assert [h.flags for h, _ in out] == [ACK]
        assert p.b.state is S.ESTABLISHED


def test_syn_without_timestamps_gets_challenge_ack_on_a_timestamp_connection():
    """RFC 5961 4.2: a restarted peer's new SYN is answered with a challenge
    ACK whether or not it carries a timestamp option: it is not part of the
    old connection's timestamp agreement (RFC 7323 3.2 drops only non-SYN
    segments without one), and the ACK lets the peer clear the connection."""
    p = established()
    assert p.b.timestamps.ok
    for off in (0, 100, -5000, 10_000_000):
        out = from_a(p, SYN, seq_off=off, opts=TcpOptions(mss=1460))
        assert [h.flags for h, _ in out] == [ACK]
        assert out[0][0].ack == p.b.rcv_nxt & M
        assert p.b.state is S.ESTABLISHED
    # Other segments without the option are still dropped (RFC 7323 3.2).
    assert from_a(p, ACK, payload=b"data", opts=TcpOptions()) == []
    assert p.b.unread_bytes == 0


def test_challenge_acks_rate_limited():
    p = established(cfg_b=TcpConfig(challenge_ack_limit=5))
    n = sum(len(from_a(p, RST, seq_off=100 + i)) for i in range(50))
    assert n == 5
    p.now += 1.0
    n = sum(len(from_a(p, SYN | ACK, seq_off=i)) for i in range(50))
    assert n == 5
    assert p.b.state is S.ESTABLISHED


def test_ack_of_unsent_data_dropped_and_acked():
    p = established()
    out = from_a(p, ACK | PSH, ack_off=5000, payload=b"data")
    assert len(out) == 1 and out[0][0].flags == ACK
    assert p.b.receive(100, p.now) == b""  # segment dropped
    assert p.b.snd_una == p.b.snd_max


def test_ack_too_old_dropped():
    p = established()
    out = from_a(p, ACK | PSH, ack_off=-(2 ** 30), payload=b"data")
    assert [h.flags for h, _ in out] == [ACK]
    assert p.b.receive(100, p.now) == b""


# -- PAWS and timestamps -------------------------------------------------------

def test_paws_drops_old_timestamp():
    p = established()
    p.now += 1.0
    out = from_a(p, ACK | PSH, payload=b"new", ts=p.a.tsval(p.now))
    assert p.b.receive(100, p.now) == b"new"
    p.b.pop_outgoing()  # the window update (the SYN-ACK's window was capped at 64 KiB)
    # A segment whose TSval is older than TS.Recent: dropped, dup ACK sent.
    out = from_a(p, ACK | PSH, payload=b"old", ts=p.a.tsval(p.now) - 500)
    assert p.b.receive(100, p.now) == b""
    assert [h.flags for h, _ in out] == [ACK]
    # RST is exempt from PAWS (as Linux).
    from_a(p, RST, ts=1)
    assert p.b.closed


def test_missing_timestamp_dropped():
    p = established()
    from_a(p, ACK | PSH, payload=b"hi", opts=TcpOptions())
    assert p.b.receive(100, p.now) == b""
    from_a(p, ACK | PSH, payload=b"hi")
    assert p.b.receive(100, p.now) == b"hi"


def test_rtt_measured_from_timestamps():
    p = established(latency=0.05)
    assert p.a.srtt == pytest.approx(0.1, abs=0.002)
    p.a.send(b"x" * 5000, p.now)
    p.run_for(1.0)
    assert p.a.srtt == pytest.approx(0.1, abs=0.05)  # delayed ACKs add a little
    assert p.a.rto == pytest.approx(max(0.2, p.a.srtt + 4 * p.a.rttvar))


# -- windows -----------------------------------------------------------------

def test_data_beyond_window_trimmed_and_acked():
    p = established(cfg_b=TcpConfig(receive_buffer=8192))
    b = p.b
    wnd = b.rcv_adv - b.rcv_nxt
    assert wnd > 0
    out = from_a(p, ACK, seq_off=wnd - 10, payload=b"q" * 100)
    # Only the 10 bytes inside the window are kept (out of order), ACKed at once with SACK.
    assert len(out) == 1
    h = out[0][0]
    assert h.ack == b.rcv_nxt & M
    assert h.options.sack_blocks == (((b.rcv_nxt + wnd - 10) & M, (b.rcv_nxt + wnd) & M),)
    assert b.out_of_order_bytes == 10


def test_old_and_overlapping_data_trimmed():
    p = established()
    from_a(p, ACK, payload=b"0123456789")
    # A retransmission overlapping 5 old bytes and 5 new ones.
    out = from_a(p, ACK, seq_off=-5, payload=b"56789abcde")
    assert p.b.receive(100, p.now) == b"0123456789abcde"
    assert out and out[0][0].flags == ACK  # duplicate part: immediate ACK
    # Entirely old: dropped, ACKed.
    out = from_a(p, ACK, seq_off=-15, payload=b"0123456789")
    assert p.b.receive(100, p.now) == b""
    assert len(out) == 1


def test_out_of_order_reassembly_and_sack():
    p = established()
    b = p.b
    data = payload_bytes(20_000, 30)
    chunks = [(i, data[i:i + 1000]) for i in range(0, 20_000, 1000)]
    rng = random.Random(3)
    # Overlapping duplicates too.
    extra = [(i + 500, data[i + 500:i + 1700]) for i in range(0, 18_000, 3000)]
    order = chunks[1:] + extra
    rng.shuffle(order)
    base = b.rcv_nxt
    for off, chunk in order:
        out = from_a(p, ACK, seq_off=off - (b.rcv_nxt - base), payload=chunk)
        # Every out-of-order arrival is ACKed at once, with SACK blocks.
        assert out and out[-1][0].options.sack_blocks
        first = out[-1][0].options.sack_blocks[0]
        assert ((off + base) & M) >= first[0] or first[0] > first[1]  # holds newest
    assert b.receive(100_000, p.now) == b""
    out = from_a(p, ACK, seq_off=0, payload=chunks[0][1])
    assert out and out[0][0].options.sack_blocks == ()  # hole filled: ACK at once
    assert b.receive(100_000, p.now) == data


def test_receive_window_never_shrinks():
    p = Pair(cfg_b=TcpConfig(receive_buffer=50_000), seed=4, loss=0.02, jitter=0.004)
    p.run(p.established)
    data = payload_bytes(600_000, 31)
    p.apps["a"] = App(data)
    rng = random.Random(5)

    class SlowReader(App):
        def pump(self, conn, now):
            if conn is not None and rng.random() < 0.05:
                self.received += conn.receive(rng.randrange(1, 20_000), now)

    p.apps["b"] = SlowReader()
    for _ in range(100):
        p.run(lambda: len(p.apps["b"].received) == len(data), max_time=5000)
        p.apps["b"].received += p.b.receive(1 << 20, p.now)  # the network went quiet
    assert sha(p.apps["b"].received) == sha(data)
    edge = None
    ws = p.b.rcv_wscale
    for t, src, h, n in p.log:
        if src == "b" and h.flags & ACK and not h.flags & SYN:
            right = h.ack + (h.window << ws)
            if edge is not None:
                assert right >= edge, "window shrank"
            edge = right


def test_sender_respects_peer_window():
    p = established(cfg_b=TcpConfig(receive_buffer=10_000, window_scale=False))
    p.a.send(b"w" * 50_000, p.now)
    out = p.a.pop_outgoing()
    assert sum(len(x) for _, x in out) <= 10_000
    for header, payload in out:
        p.transmit("a", header, payload)
    p.apps["b"] = App()
    p.run(lambda: len(p.apps["b"].received) == 50_000, max_time=100)


def test_nagle_when_enabled():
    p = established(cfg_a=TcpConfig(nodelay=False))
    p.a.send(b"a", p.now)
    p.a.send(b"b", p.now)
    p.a.send(b"c", p.now)
    out = p.a.pop_outgoing()
    assert [bytes(x) for _, x in out] == [b"a"]  # the rest waits for the ACK
    for header, payload in out:
        p.transmit("a", header, payload)
    p.apps["b"] = App()
    p.run(lambda: p.apps["b"].received == bytearray(b"abc"))
    p2 = established()
    p2.a.send(b"a", p2.now)
    p2.a.send(b"b", p2.now)
    assert len(p2.a.pop_outgoing()) == 2  # nodelay (default): sent at once


# -- options -------------------------------------------------------------------

@pytest.mark.parametrize("a_opts", [True, False])
@pytest.mark.parametrize("b_opts", [True, False])
def test_options_negotiation(a_opts, b_opts):
    ca = TcpConfig(mss=1400, window_scale=a_opts, timestamps=a_opts, sack=a_opts)
    cb = TcpConfig(mss=1000, window_scale=b_opts, timestamps=b_opts, sack=b_opts)
    p = established(cfg_a=ca, cfg_b=cb)
    both = a_opts and b_opts
    syn = p.log[0][2].options
    synack = p.log[1][2].options
    assert syn.mss == 1400 and synack.mss == 1000
    assert (syn.timestamps is not None) == a_opts
    assert (synack.timestamps is not None) == both
    assert synack.sack_permitted == both and (synack.window_scale is not None) == both
    for c in (p.a, p.b):
        info = c.info()
        assert info["timestamps"] == both and info["sack"] == both
        assert (info["snd_wscale"] != 0) == both and (info["rcv_wscale"] != 0) == both
        # The smaller MSS wins; timestamps take 12 bytes of it.
        assert info["mss"] == 1000 - (12 if both else 0)
    ack = p.log[2][2].options
    assert (ack.timestamps is not None) == both
    transfer(p, payload_bytes(200_000, 40), payload_bytes(100_000, 41))
    for t, src, h, n in p.log:
        assert n <= 1000 - (12 if both else 0)
        if not both and not h.flags & SYN:
            assert h.options.timestamps is None and not h.options.sack_blocks


def test_peer_without_mss_option_gets_536():
    syn = TcpHeader(40000, 80, 77, 0, SYN, 65535)
    b = TcpConnection.accept((B_IP, 80), (A_IP, 40000), syn, 1, TcpConfig(), 0.0)
    assert b.mss == 536
    out = b.pop_outgoing()
    assert out[0][0].options == TcpOptions(mss=1460)


def test_big_window_scale_clamped_to_14():
    syn = TcpHeader(40000, 80, 77, 0, SYN, 65535, 0, TcpOptions(window_scale=20))
    b = TcpConnection.accept((B_IP, 80), (A_IP, 40000), syn, 1, TcpConfig(), 0.0)
    assert b.info()["snd_wscale"] == 14


# -- reset_for -----------------------------------------------------------------

def test_reset_for():
    assert reset_for(TcpHeader(1, 2, 3, 4, RST, 0), 0) is None
    assert reset_for(TcpHeader(1, 2, 3, 4, RST | ACK, 0), 0) is None
    r = reset_for(TcpHeader(1, 2, 100, 555, ACK | PSH, 9), 50)
    assert (r.src_port, r.dst_port, r.seq, r.ack, r.flags) == (2, 1, 555, 0, RST)
    r = reset_for(TcpHeader(1, 2, 100, 0, SYN, 9), 0)
    assert (r.seq, r.ack, r.flags) == (0, 101, RST | ACK)
    r = reset_for(TcpHeader(1, 2, M, 0, SYN | FIN, 9), 10)
    assert r.ack == 11
    r = reset_for(TcpHeader(1, 2, 7, 0, 0, 9), 3)
    assert (r.seq, r.ack, r.flags) == (0, 10, RST | ACK)


def test_closed_connection_answers_with_reset():
    p = established()
    p.b.abort(p.now)
    out = p.b.pop_outgoing()
    assert [h.flags for h, _ in out] == [RST | ACK]
    assert p.b.closed and p.b.error is None
    out = from_a(p, ACK | PSH, payload=b"late")
    assert [h.flags for h, _ in out] == [RST]


def test_close_with_unread_data_sends_rst():
    p = established()
    from_a(p, ACK | PSH, payload=b"unread")
    p.b.close(p.now)
    assert [h.flags for h, _ in p.b.pop_outgoing()] == [RST | ACK]
    assert p.b.closed


def test_fin_queued_before_establishment():
    p = Pair()
    p.a.send(b"early", p.now)
    p.a.shutdown_write(p.now)
    assert p.a.state is S.SYN_SENT
    p.apps["b"] = App()
    p.run(lambda: p.b is not None and p.b.at_eof)
    assert p.apps["b"].received == bytearray(b"early")
    assert p.a.state in (S.FIN_WAIT_1, S.FIN_WAIT_2)


def test_sequence_wraparound():
    p = Pair(iss_a=M - 3000, iss_b=M - 10)
    transfer(p, payload_bytes(300_000, 50), payload_bytes(300_000, 51))


# -- random segments never crash -----------------------------------------------

seg = st.tuples(
    st.sampled_from([0, ACK, ACK | PSH, ACK | FIN, RST, RST | ACK, SYN, SYN | ACK, FIN, ACK | URG,
                     ACK | SYN | FIN | RST]),
    st.integers(-70_000, 70_000),       # seq offset from rcv_nxt
    st.integers(-70_000, 70_000),       # ack offset from snd_nxt
    st.integers(0, 3000),               # payload length
    st.integers(0, 65535),              # window
    st.sampled_from([None, "ok", "old", "none"]),
    st.floats(0, 5),                    # time step
)


@settings(max_examples=150, deadline=None)
@given(st.lists(seg, max_size=40), st.booleans(), st.booleans())
def test_random_segments_never_raise(segments, ts, active_side):
    cfg = TcpConfig(timestamps=ts, receive_buffer=20_000)
    p = established(cfg_a=cfg, cfg_b=cfg)
    p.a.send(b"s" * 30_000, p.now)
    p.b.send(b"t" * 30_000, p.now)
    p.run_for(0.05)
    c = p.a if active_side else p.b
    peer = p.b if active_side else p.a
    for flags, so, ao, n, wnd, tsmode, dt in segments:
        p.now += dt
        if tsmode == "none" or not ts:
            opts = TcpOptions()
        else:
            tv = peer.tsval(p.now) - (100_000 if tsmode == "old" else 0)
            opts = TcpOptions(timestamps=(tv & M, c.tsval(p.now)))
        h = TcpHeader(peer.local[1], c.local[1], (c.rcv_nxt + so) & M, (c.snd_nxt + ao) & M,
                      flags, wnd, 0, opts)
        c.on_segment(h, memoryview(b"r" * n), p.now)
        if c.next_deadline <= p.now:
            c.on_timer(p.now)
        c.receive(5000, p.now)
        c.send(b"u" * 1000, p.now)
        for hh, pl in c.pop_outgoing():
            assert 0 <= hh.window <= 0xFFFF and len(pl) <= c.mss
        assert c.snd_una <= c.snd_nxt <= c.snd_max
        assert c.unread_bytes <= 20_000 + 4096
        c.window_diagram()
        c.info()


# -- loss recovery -------------------------------------------------------------

def _drop_data_seqs(p, seqs):
    """Drop a's first transmission of the data segments at these offsets."""
    base = (p.a.snd_una) & M
    pending = {(base + s) & M for s in seqs}

    def drop(src, h, payload):
        if src == "a" and len(payload) and h.seq in pending:
            pending.discard(h.seq)
            return True
        return False
    return drop


def test_fast_retransmit_no_rto():
    p = established(latency=0.02)
    mss = p.a.mss
    p.drop = _drop_data_seqs(p, [5 * mss])
    data = payload_bytes(60 * mss, 60)
    p.apps["a"] = App(data)
    p.apps["b"] = App()
    p.run(lambda: len(p.apps["b"].received) == len(data), max_time=100)
    assert sha(p.apps["b"].received) == sha(data)
    assert p.a.retransmits == 1
    assert p.now < 0.5  # well under one RTO (fast retransmit after 3 dupacks)
    assert p.a.cc.ssthresh < 1 << 40  # recovery happened


def test_newreno_partial_ack_recovers_several_losses_without_rto():
    p = established(latency=0.02)
    mss = p.a.mss
    p.drop = _drop_data_seqs(p, [3 * mss, 6 * mss, 8 * mss])
    data = payload_bytes(40 * mss, 61)
    p.apps["a"] = App(data)
    p.apps["b"] = App()
    p.run(lambda: len(p.apps["b"].received) == len(data), max_time=100)
    assert sha(p.apps["b"].received) == sha(data)
    assert p.a.retransmits == 3
    assert p.now < 0.5


def test_receiver_sends_sack_blocks_for_holes():
    p = established()
    mss = p.a.mss
    p.drop = _drop_data_seqs(p, [2 * mss, 5 * mss])
    p.a.send(payload_bytes(8 * mss, 62), p.now)
    p.run_for(0.015)  # data arrived at b, b's ACKs in flight
    acks = [h for t, s, h, n in p.log if s == "b" and h.options.sack_blocks]
    base = (p.b.irs + 1) & M
    assert acks[0].options.sack_blocks == (((base + 3 * mss) & M, (base + 4 * mss) & M),)
    last = acks[-1].options.sack_blocks
    # Most recent block first, the older one after it.
    assert last == (((base + 6 * mss) & M, (base + 8 * mss) & M),
                    ((base + 3 * mss) & M, (base + 5 * mss) & M))


# -- FIN and handshake corner cases ------------------------------------------------

def test_fin_with_data_and_out_of_order_fin():
    p = established()
    b = p.b
    # FIN carried by a segment that arrives before the data preceding it.
    out = from_a(p, ACK | FIN, seq_off=5, payload=b"world")
    assert b.state is S.ESTABLISHED and not b.at_eof and out  # held, dup ACK sent
    out = from_a(p, ACK, payload=b"hello")
    assert b.state is S.CLOSE_WAIT
    assert out[-1][0].ack == b.rcv_nxt & M
    assert b.receive(100, p.now) == b"helloworld" and b.at_eof


def test_rst_in_syn_received():
    p = Pair()
    p.drop = lambda src, h, payload: src == "a" and h.flags == ACK
    p.run_for(0.015)
    assert p.b.state is S.SYN_RECEIVED
    h = TcpHeader(40000, 80, p.b.rcv_nxt & M, 0, RST, 0)
    p.b.on_segment(h, b"", p.now)
    assert p.b.closed and p.b.error == "reset"


def test_syn_received_bad_ack_gets_reset():
    p = Pair()
    p.drop = lambda src, h, payload: src == "a" and h.flags == ACK
    p.run_for(0.015)
    h = TcpHeader(40000, 80, p.b.rcv_nxt & M, 12345, ACK, 100, 0,
                  TcpOptions(timestamps=(p.a.tsval(p.now), p.b.tsval(p.now))))
    p.b.on_segment(h, b"", p.now)
    out = p.b.pop_outgoing()
    assert [(x.flags, x.seq) for x, _ in out] == [(RST, 12345)]
    assert p.b.state is S.SYN_RECEIVED


def test_syn_ack_with_bad_ack_in_syn_sent():
    c = TcpConnection.connect((A_IP, 40000), (B_IP, 80), 1000, TcpConfig(), 0.0)
    c.pop_outgoing()
    h = TcpHeader(80, 40000, 9, 5555, SYN | ACK, 100)
    c.on_segment(h, b"", 0.01)
    assert [(x.flags, x.seq) for x, _ in c.pop_outgoing()] == [(RST, 5555)]
    assert c.state is S.SYN_SENT
    # A RST without ACK is ignored in SYN-SENT; one with a bad ACK too.
    c.on_segment(TcpHeader(80, 40000, 9, 0, RST, 0), b"", 0.02)
    c.on_segment(TcpHeader(80, 40000, 9, 5555, RST | ACK, 0), b"", 0.02)
    assert c.state is S.SYN_SENT
    c.abort(0.03)
    assert c.pop_outgoing() == [] and c.closed  # no RST from SYN-SENT


def test_data_in_syn_not_accepted():
    syn = TcpHeader(40000, 80, 77, 0, SYN, 65535, 0, TcpOptions(mss=1460))
    b = TcpConnection.accept((B_IP, 80), (A_IP, 40000), syn, 1, TcpConfig(), 0.0)
    synack = b.pop_outgoing()[0][0]
    assert synack.ack == 78 and b.receive(100, 0) == b""


def test_reset_keeps_received_data_readable():
    p = established()
    from_a(p, ACK | PSH, payload=b"last words")
    from_a(p, RST | ACK, seq_off=0)
    assert p.b.closed and p.b.error == "reset"
    assert p.b.readable and p.b.receive(100, p.now) == b"last words"
