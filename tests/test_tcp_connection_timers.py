"""Retransmission, SYN retries, persist, keepalive, TIME-WAIT, delayed ACK."""

import math

import pytest

from test_tcp_connection_harness import App, Pair, payload_bytes, sha
from trionet.tcp.connection import TcpConfig, TcpState
from trionet.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpHeader, TcpOptions

S = TcpState


def _gaps(times):
    return [round(b - a, 6) for a, b in zip(times, times[1:])]


def test_rto_backoff_doubles_to_max_then_gives_up():
    # Tail loss probes off: with them the first timeout is a probe instead
    # (RFC 8985 7.2; see test_tcp_recovery.py).
    p = Pair(cfg_a=TcpConfig(rto_max=60.0, max_retries=15, tlp=False))
    p.run(p.established)
    p.drop = lambda src, h, payload: True  # the network dies
    t0 = p.now
    p.a.send(b"x" * 100, p.now)
    p.run(lambda: p.a.closed, max_time=100_000)
    assert p.a.error == "timeout" and p.a.state is S.CLOSED
    sends = [t for t, h, n in p.sent_by("a", t0) if n == 100]
    assert len(sends) == 16  # the original and 15 retransmissions
    assert sends[0] == t0
    expected = [0.2 * 2 ** i for i in range(15)]
    expected = [min(x, 60.0) for x in expected]
    assert _gaps(sends) == pytest.approx(expected)
    # Gives up one (maximal) RTO after the last retransmission.
    assert p.now - sends[-1] == pytest.approx(60.0)
    assert p.a.retransmits == 15


def test_syn_retries_then_timeout():
    # With Linux's TCP_RTO_MAX of 120 s the timeline is Linux's exactly.
    p = Pair(cfg_a=TcpConfig(syn_retries=6, rto_max=120.0), listen=False)
    p.drop = lambda src, h, payload: True
    p.run(lambda: p.a.closed, max_time=1000)
    syns = [t for t, h, n in p.sent_by("a") if h.flags == SYN]
    assert syns == pytest.approx([0, 1, 3, 7, 15, 31, 63])
    assert p.now == pytest.approx(127)
    assert p.a.error == "timeout"
    # The default rto_max (60 s) caps the last wait.
    p = Pair(cfg_a=TcpConfig(syn_retries=6), listen=False)
    p.drop = lambda src, h, payload: True
    p.run(lambda: p.a.closed, max_time=1000)
    assert p.now == pytest.approx(123) and p.a.error == "timeout"


def test_rst_in_syn_sent_is_refused():
    p = Pair(listen=False)
    p.run(lambda: p.a.closed, max_time=10)
    assert p.a.error == "refused"
    rst = [h for t, s, h, n in p.log if s == "b"][0]
    assert rst.flags == RST | ACK and rst.ack == 1001


def test_syn_ack_lost_handshake_still_completes_and_rto_is_3s():
    dropped = []

    def drop(src, h, payload):
        if src == "b" and h.flags == SYN | ACK and not dropped:
            dropped.append(h)
            return True
        return False

    p = Pair(cfg_a=TcpConfig(timestamps=False), cfg_b=TcpConfig(timestamps=False))
    p.drop = drop
    p.run(p.established, max_time=10)
    assert p.established()
    # RFC 6298 5.7: SYN retransmitted and no RTT sample -> RTO 3 s.
    assert p.a.srtt is None and p.a.rto == 3.0


def test_retransmitted_syn_gets_syn_ack_again():
    dropped = []

    def drop(src, h, payload):
        if src == "b" and h.flags == SYN | ACK and not dropped:
            dropped.append(h)
            return True
        return False

    p = Pair()
    p.drop = drop
    p.run(p.established, max_time=10)
    synacks = [t for t, h, n in p.sent_by("b") if h.flags == SYN | ACK]
    # The second SYN-ACK answers the retransmitted SYN (at 1 s + 10 ms), not b's timer.
    assert synacks[1] == pytest.approx(1.01)


def test_zero_window_probes_with_backoff_then_completes():
    data = payload_bytes(1_000_000, 20)
    p = Pair(cfg_b=TcpConfig(receive_buffer=65536))
    p.run(p.established)
    p.apps["a"] = App(data)
    p.apps["b"] = App(read=False)
    p.run_for(200.0)
    b = p.b
    assert b.rcv_adv - b.rcv_nxt == 0  # window closed
    assert b.unread_bytes >= 65536 - 200
    probes = [t for t, h, n in p.sent_by("a") if n == 0 and h.seq == (p.a.snd_una - 1) & 0xFFFFFFFF]
    assert len(probes) >= 5
    gaps = _gaps(probes)
    assert gaps[:4] == pytest.approx([0.4, 0.8, 1.6, 3.2], rel=0.01)
    assert max(gaps) <= 60.0 + 1e-6
    assert p.a.error is None and p.a.state is S.ESTABLISHED  # never gives up
    # The reader wakes up: the transfer completes.
    p.apps["b"].read = True
    p.run(lambda: len(p.apps["b"].received) == len(data), max_time=2000)
    assert sha(p.apps["b"].received) == sha(data)


def test_zero_window_update_lost_recovered_by_probe():
    data = payload_bytes(200_000, 21)
    p = Pair(cfg_b=TcpConfig(receive_buffer=32768))
    p.run(p.established)
    p.apps["a"] = App(data)
    p.run_for(5.0)
    # Lose b's window update.
    p.drop = lambda src, h, payload: src == "b"
    p.apps["b"] = App(read=True)
    p.run_for(0.5)
    p.drop = None
    p.run(lambda: len(p.apps["b"].received) == len(data), max_time=1000)
    assert sha(p.apps["b"].received) == sha(data)


def _ka_cfg(**kw):
    return TcpConfig(keepalive=True, keepalive_idle=100.0, keepalive_interval=10.0,
                     keepalive_count=3, **kw)


def test_keepalive_detects_dead_peer():
    p = Pair(cfg_a=_ka_cfg())
    p.run(p.established)
    t0 = p.now
    p.drop = lambda src, h, payload: src == "b"  # b is gone
    p.run(lambda: p.a.closed, max_time=10_000)
    assert p.a.error == "timeout"
    # Established at 0.02 (a's last received segment).
    probes = [t for t, h, n in p.sent_by("a", t0) if h.flags == ACK]
    assert probes == pytest.approx([0.02 + 100, 0.02 + 110, 0.02 + 120])
    assert p.now == pytest.approx(0.02 + 100 + 10 * 3)
    p.collect()
    last = p.sent_by("a")[-1][1]
    assert last.flags & RST


def test_keepalive_alive_peer_stays_up():
    p = Pair(cfg_a=_ka_cfg())
    p.run(p.established)
    p.run_for(1000.0)
    assert p.a.state is S.ESTABLISHED and p.a.error is None
    probes = [t for t, h, n in p.sent_by("a", 1.0)]
    assert 8 <= len(probes) <= 11  # one probe per idle period, each answered


def test_keepalive_off_is_quiet():
    p = Pair()
    p.run(p.established)
    n = len(p.log)
    p.run_for(100_000.0)
    assert len(p.log) == n
    assert p.a.next_deadline == math.inf


def test_time_wait_is_exactly_two_msl():
    p = Pair(cfg_a=TcpConfig(msl=7.5))
    p.run(p.established)
    p.a.shutdown_write(p.now)
    p.b.shutdown_write(p.now)
    p.run(lambda: p.a.state is S.TIME_WAIT)
    t = p.now
    assert p.a.next_deadline == pytest.approx(t + 15.0)
    p.run(lambda: p.a.closed, max_time=1000)
    assert p.now == pytest.approx(t + 15.0)


def test_time_wait_restarts_on_retransmitted_fin():
    p = Pair(cfg_a=TcpConfig(msl=10))
    p.run(p.established)
    p.a.shutdown_write(p.now)
    p.run(lambda: p.a.state is S.FIN_WAIT_2)
    # b's FIN reaches a, a's final ACK is lost: b retransmits its FIN.
    p.drop = lambda src, h, payload: src == "a" and h.flags == ACK and p.a.state is S.TIME_WAIT \
        and not getattr(p, "_dropped", False) and not setattr(p, "_dropped", True)
    p.b.shutdown_write(p.now)
    p.run(lambda: p.a.state is S.TIME_WAIT)
    t_enter = p.now
    p.run(lambda: p.b.closed, max_time=100)
    t_refin = [t for t, h, n in p.sent_by("b") if h.flags & FIN][-1]
    assert t_refin > t_enter
    p.run(lambda: p.a.closed, max_time=100)
    # The TIME-WAIT clock restarted when the retransmitted FIN arrived.
    assert p.now == pytest.approx(t_refin + 0.01 + 20.0)


def test_fin_wait_2_timeout_after_close():
    p = Pair(cfg_a=TcpConfig(fin_timeout=60.0))
    p.run(p.established)
    p.a.close(p.now)
    p.run(lambda: p.a.state is S.FIN_WAIT_2)
    t = p.now
    p.run(lambda: p.a.closed, max_time=1000)
    assert p.now == pytest.approx(t + 60.0)
    assert p.b.state is S.CLOSE_WAIT


def test_fin_wait_2_no_timeout_after_half_close():
    p = Pair()
    p.run(p.established)
    p.a.shutdown_write(p.now)
    p.run_for(1000.0)
    assert p.a.state is S.FIN_WAIT_2


def test_delayed_ack_timing():
    p = Pair()
    p.run(p.established)
    t0 = p.now
    p.a.send(b"x" * 100, p.now)
    p.run(lambda: any(n == 0 for t, h, n in p.sent_by("b", t0)))
    ack_t = [t for t, h, n in p.sent_by("b", t0)][0]
    assert ack_t == pytest.approx(t0 + 0.01 + 0.04)  # latency + delayed ACK
    # Two full-sized segments: ACKed at once.
    t1 = p.now
    p.a.send(b"y" * (2 * p.a.mss), p.now)
    p.run(lambda: len(p.sent_by("b", t1)) > 0)
    assert p.sent_by("b", t1)[0][0] == pytest.approx(t1 + 0.01)
    assert len(p.sent_by("b", t1)) == 1


def test_read_opens_window_with_update():
    p = Pair(cfg_b=TcpConfig(receive_buffer=16384))
    p.run(p.established)
    p.a.send(b"z" * 40000, p.now)
    p.run_for(0.5)
    assert p.b.rcv_adv - p.b.rcv_nxt == 0
    p.b.receive(100, p.now)  # too little to announce (receiver SWS)
    assert p.b.pop_outgoing() == []
    p.b.receive(8000, p.now)
    out = p.b.pop_outgoing()
    # The new edge: what the reads freed (minus at most a few granules of
    # rounding; the window scale is 7, as Linux).
    assert len(out) == 1 and 7000 <= out[0][0].window << p.b.rcv_wscale <= 8100


def test_set_option_keepalive_and_nodelay():
    p = Pair(cfg_a=TcpConfig(nodelay=False))
    p.run(p.established)
    p.a.set_option("keepalive_idle", 50.0, p.now)
    p.a.set_option("keepalive_interval", 5.0, p.now)
    p.a.set_option("keepalive_count", 2, p.now)
    t0 = p.now
    p.a.set_option("keepalive", True, p.now)
    assert p.a.next_deadline == pytest.approx(t0 + 50.0)
    p.drop = lambda src, h, payload: src == "b"
    p.run(lambda: p.a.closed, max_time=1000)
    assert p.a.error == "timeout" and p.now == pytest.approx(t0 + 50 + 10)
    # nodelay: turning it on releases what Nagle held.
    p = Pair(cfg_a=TcpConfig(nodelay=False))
    p.run(p.established)
    p.a.send(b"1", p.now)
    p.a.send(b"2", p.now)
    assert len(p.a.pop_outgoing()) == 1
    p.a.set_option("nodelay", True, p.now)
    assert [bytes(x) for _, x in p.a.pop_outgoing()] == [b"2"]
    assert p.a.unread_bytes == 0
    with pytest.raises(AttributeError):
        p.a.set_option("bogus", 1, p.now)


def test_probe_does_not_swallow_pending_ack():
    # Found against Linux: the peer discards a probe (old SEQ) including its
    # ACK field, so a delayed ACK must still go out as a proper segment.
    p = Pair(cfg_a=TcpConfig(receive_buffer=4096), cfg_b=TcpConfig(delayed_ack=5.0))
    p.run(p.established)
    p.b.send(b"b" * 20000, p.now)
    p.run_for(1.0)
    b = p.b
    assert b.snd_wnd == 0 and b.timers.persist < math.inf
    t = b.timers.persist - 0.001
    h = TcpHeader(40000, 80, p.a.snd_nxt & 0xFFFFFFFF, b.snd_una & 0xFFFFFFFF, ACK | PSH, 0, 0,
                  TcpOptions(timestamps=(p.a.tsval(t), b.timestamps.recent)))
    b.on_segment(h, b"0123456789", t)
    assert b.pop_outgoing() == []  # the ACK is delayed
    b.on_timer(b.timers.persist)
    out = [x for x, _ in b.pop_outgoing()]
    assert [(x.seq, x.ack) for x in out] == [
        (b.snd_max & 0xFFFFFFFF, b.rcv_nxt & 0xFFFFFFFF),      # the pending ACK, in window
        ((b.snd_una - 1) & 0xFFFFFFFF, b.rcv_nxt & 0xFFFFFFFF)]  # then the probe
    assert b.timers.delack == math.inf
