"""Congestion control in virtual time: CUBIC (RFC 9438) against its window
curve, NewReno (RFC 5681/6582) against its linear growth and halving,
HyStart++ (RFC 9406), switching controllers, and buffer auto-tuning."""

import pytest

from test_tcp_connection_harness import App, Pair, payload_bytes, sha
from trionet.tcp.congestion import Cubic, NewReno, make_congestion_control
from trionet.tcp.connection import TcpConfig

M = 0xFFFFFFFF


def established(**kw):
    p = Pair(**kw)
    p.run(p.established)
    return p


def drop_once_when(p, cond):
    """Drop the first data segment a sends once cond() holds."""
    state = {"done": False, "time": None}

    def drop(src, h, payload):
        if not state["done"] and src == "a" and len(payload) and cond():
            state["done"] = True
            state["time"] = p.now
            return True
        return False
    p.drop = drop
    return state


# -- controller unit tests ------------------------------------------------------

def test_make_congestion_control_names():
    assert isinstance(make_congestion_control("cubic", 1000), Cubic)
    assert isinstance(make_congestion_control("NewReno", 1000), NewReno)
    with pytest.raises(ValueError, match="unknown congestion control"):
        make_congestion_control("vegas", 1000)


def test_cubic_reduction_and_fast_convergence():
    cc = Cubic(1000)
    cc.cwnd = 100_000
    cc.on_enter_recovery(100_000, 0.0)
    assert cc.ssthresh == 70_000            # beta_cubic = 0.7 (RFC 9438 4.6)
    assert cc.w_max == 100_000
    cc.on_exit_recovery(60_000, 1.0, sack=True)
    assert cc.cwnd == 70_000
    # A loss below the previous W_max: fast convergence (RFC 9438 4.7).
    cc.cwnd = 80_000
    cc.on_enter_recovery(80_000, 2.0)
    assert cc.w_max == pytest.approx(80_000 * (1 + 0.7) / 2)
    assert cc.ssthresh == 56_000


def test_cubic_window_function_in_segments():
    cc = Cubic(1000)
    cc.w_max = 100_000
    cc.k = (100 * 0.3 / 0.4) ** (1 / 3)
    assert cc.w_cubic(0.0) == pytest.approx(70_000)      # W_max * beta at t = 0
    assert cc.w_cubic(cc.k) == pytest.approx(100_000)    # plateau at K
    assert cc.w_cubic(cc.k + 2) == pytest.approx(100_000 + 0.4 * 8 * 1000)


def test_newreno_halves_on_loss():
    cc = NewReno(1000)
    cc.cwnd = 40_000
    cc.on_enter_recovery(40_000, 0.0)
    assert cc.ssthresh == 20_000
    cc.on_exit_recovery(30_000, 0.1, sack=True)
    assert cc.cwnd == 20_000


# -- CUBIC in virtual time --------------------------------------------------------

def test_cubic_follows_the_window_curve_after_a_loss():
    p = established(latency=0.05)   # RTT 100 ms, no bottleneck, no other loss
    a = p.a
    mss = a.mss
    loss = drop_once_when(p, lambda: a.cc.cwnd >= 120 * mss)
    data = payload_bytes(60_000_000, 1)
    p.apps["a"] = App(data)
    p.apps["b"] = App()
    p.run(lambda: loss["done"] and a.info()["ca_state"] == "recovery", max_time=60)
    w_max = a.cc.w_max / mss          # cwnd when the loss was detected (segments)
    assert a.cc.ssthresh == int(a.cc.w_max * 0.7)
    p.run(lambda: a.cc.epoch_start is not None, max_time=p.now + 10)
    t0 = a.cc.epoch_start
    k = (w_max * (1 - 0.7) / 0.4) ** (1 / 3)   # RFC 9438 equation 2
    samples = []
    end = t0 + 1.6 * k

    def done():
        samples.append((p.now - t0, a.cc.cwnd / mss))
        return p.now >= end
    p.run(done, max_time=end + 1)
    assert a.info()["fast_recoveries"] == 1 and a.info()["rto_count"] == 0
    checked = 0
    for t, cwnd in samples:
        if t < 0.2:
            continue
        expected = 0.4 * (t - k) ** 3 + w_max     # RFC 9438 equation 1
        assert abs(cwnd - expected) <= 0.06 * w_max + 2, (t, cwnd, expected, w_max)
        checked += 1
    assert checked > 100
    # Concave below W_max, plateau near it, convex above.
    at = {round(t, 1): c for t, c in samples}
    assert at[round(k, 1)] == pytest.approx(w_max, rel=0.05)


def test_newreno_grows_one_segment_per_rtt_and_halves_on_loss():
    p = established(latency=0.05, cfg_a=TcpConfig(congestion="newreno"))
    a = p.a
    mss = a.mss
    assert a.cc.name == "newreno"
    a.cc.ssthresh = 20 * mss   # congestion avoidance from 20 segments
    data = payload_bytes(30_000_000, 2)
    p.apps["a"] = App(data)
    p.apps["b"] = App()
    p.run(lambda: a.cc.cwnd >= 20 * mss, max_time=10)
    c0 = a.cc.cwnd
    p.run_for(2.0)                                   # 20 round trips
    grown = (a.cc.cwnd - c0) / mss
    assert 18 <= grown <= 21, grown
    # One loss: ssthresh = FlightSize / 2 (RFC 5681 eq. 4); after recovery
    # cwnd = ssthresh.
    flight_before = {}
    loss = drop_once_when(p, lambda: flight_before.setdefault("f", a.snd_max - a.snd_una) > 0)
    p.run(lambda: loss["done"] and a.info()["ca_state"] == "recovery", max_time=p.now + 5)
    cwnd_at_loss = a.cc.ssthresh * 2
    assert abs(a.cc.ssthresh - flight_before["f"] / 2) <= 2 * mss
    p.run(lambda: a.info()["ca_state"] == "open", max_time=p.now + 5)
    assert abs(a.cc.cwnd - cwnd_at_loss / 2) <= 2 * mss


def test_hystart_leaves_slow_start_before_the_queue_overflows():
    # 2 MB/s bottleneck, 20 ms base RTT, a deep queue: the RTT rises as the
    # queue fills, HyStart++ moves to conservative slow start and then
    # congestion avoidance with no loss.
    def run(hystart):
        p = established(latency=0.01, rate=2e6, queue_limit=600,
                        cfg_a=TcpConfig(hystart=hystart))
        send = payload_bytes(3_000_000, 3)
        p.apps["a"] = App(send)
        p.apps["b"] = App()
        p.run(lambda: len(p.apps["b"].received) == len(send), max_time=100)
        return p
    p = run(True)
    assert p.a.cc.hystart_exit == "css"
    assert p.a.retransmits == 0
    assert p.a.cc.ssthresh < 1 << 40
    q = run(False)
    assert q.a.retransmits > 0  # plain slow start overflows the queue


def test_set_option_switches_controller_mid_transfer():
    p = established(latency=0.01)
    a = p.a
    assert a.cc.name == "cubic" and a.config.congestion == "cubic"
    data = payload_bytes(2_000_000, 4)
    p.apps["a"] = App(data)
    p.apps["b"] = App()
    p.run_for(0.1)
    cwnd = a.cc.cwnd
    a.set_option("congestion", "newreno", p.now)
    assert a.cc.name == "newreno" and a.config.congestion == "newreno"
    assert a.cc.cwnd == cwnd
    with pytest.raises(ValueError):
        a.set_option("congestion", "bogus", p.now)
    p.run(lambda: len(p.apps["b"].received) == len(data), max_time=100)
    assert sha(p.apps["b"].received) == sha(data)


# -- buffer auto-tuning -------------------------------------------------------------

def _bulk_time(cfg_b, size=16_000_000):
    p = established(latency=0.05, cfg_b=cfg_b)    # RTT 100 ms, no bottleneck
    data = payload_bytes(size, 5)
    t0 = p.now
    p.apps["a"] = App(data)
    p.apps["b"] = App()
    p.run(lambda: len(p.apps["b"].received) == len(data), max_time=1000)
    assert sha(p.apps["b"].received) == sha(data)
    return p.now - t0, p


def test_receive_buffer_autotuning_opens_the_window():
    fixed, pf = _bulk_time(TcpConfig(autotune=False))
    auto, pa = _bulk_time(TcpConfig())
    cfg = pa.b.config
    assert cfg.receive_buffer > 2_000_000
    assert cfg.receive_buffer <= cfg.receive_buffer_max
    assert pf.b.config.receive_buffer == 262144
    # A 256 KB window over 100 ms carries ~2.6 MB/s; the tuned one much more.
    assert auto < fixed / 3, (auto, fixed)
    # The sender's buffer grew with its window too.
    assert pa.a.config.send_buffer > 262144
    assert pa.a.config.send_buffer <= pa.a.config.send_buffer_max


def test_setting_a_buffer_stops_autotuning():
    p = established(latency=0.05)
    p.b.set_option("receive_buffer", 100_000, p.now)
    p.a.set_option("send_buffer", 150_000, p.now)
    data = payload_bytes(3_000_000, 6)
    p.apps["a"] = App(data)
    p.apps["b"] = App()
    p.run(lambda: len(p.apps["b"].received) == len(data), max_time=1000)
    assert p.b.config.receive_buffer == 100_000
    assert p.a.config.send_buffer == 150_000
