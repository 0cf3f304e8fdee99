"""Loss recovery over the sans-I/O harness: SACK scoreboard (RFC 6675),
RACK-TLP (RFC 8985), D-SACK (RFC 2883), PRR (RFC 6937), RTO go-back-N
(RFC 6298 5.4), RTT sampling under loss (RFC 7323 4.2 / RFC 6298).

Times are virtual; bounds are loose and behavioural (DEVELOPERS.md).
"""

import pytest

from test_tcp_connection_harness import App, Pair, payload_bytes, sha
from trionet.tcp.connection import TcpConfig
from trionet.tcp.sack import LOST, SACKED, Scoreboard, Seg
from trionet.wire.tcp import ACK, TcpHeader, TcpOptions

M = 0xFFFFFFFF


def established(**kw):
    p = Pair(**kw)
    p.run(p.established)
    return p


def drop_first_tx(p, offsets):
    """Drop a's first transmission of the data segments at these byte
    offsets (from the first data byte)."""
    base = (p.a.snd_una) & M
    pending = {(base + o) & M for o in offsets}

    def drop(src, h, payload):
        if src == "a" and len(payload) and h.seq in pending:
            pending.discard(h.seq)
            return True
        return False
    return drop


def send_and_finish(p, n_bytes, seed=1, max_time=1000):
    data = payload_bytes(n_bytes, seed)
    t0 = p.now
    p.apps["a"] = App(data)
    p.apps["b"] = App()
    p.run(lambda: len(p.apps["b"].received) == len(data), max_time=p.now + max_time)
    assert sha(p.apps["b"].received) == sha(data)
    return p.now - t0


def a_data(p, since=0.0):
    """(time, offset, length) of a's data segments."""
    base = p.a.iss + 1
    return [(t, (h.seq - base) & M, n) for t, h, n in p.sent_by("a", since) if n]


# -- scoreboard unit tests ------------------------------------------------------

def _board(n, mss=100, start=1000):
    sb = Scoreboard()
    for i in range(n):
        sb.segs.append(Seg(start + i * mss, start + (i + 1) * mss, 0.0, i + 1))
    return sb


def test_scoreboard_sack_marks_splits_and_counts():
    sb = _board(10)
    newly = sb.sack([(1300, 1500)])
    assert [s.start for s in newly] == [1300, 1400]
    assert sb.sacked_out == 200 and sb.ranges == [[1300, 1500]]
    # A block that is already known marks nothing; a partial one splits.
    assert sb.sack([(1300, 1500)]) == []
    newly = sb.sack([(1250, 1300)])
    assert [(s.start, s.end) for s in newly] == [(1250, 1300)]
    assert sb.ranges == [[1250, 1500]] and sb.sacked_out == 250
    assert sb.pipe(1000) == 750
    # RFC 6675 IsLost: > 2 SMSS SACKed above (100-byte segments).
    assert sb.is_lost_bound(3, 100) == 1250
    assert sb.mark_lost_below(1250) == 3  # 1000, 1100, 1200 (split at 1250)
    assert sb.lost_out == 250 and sb.pipe(1000) == 500
    # The cumulative ACK takes SACKed and lost records off the counters.
    sb.ack(1500)
    assert sb.clean and sb.ranges == [] and sb.segs[0].start == 1500


def test_scoreboard_rto_marks_everything_not_sacked():
    sb = _board(6)
    sb.sack([(1200, 1300)])
    sb.mark_all_lost()
    flags = [s.flags & (LOST | SACKED) for s in sb.segs]
    assert flags == [LOST, LOST, SACKED, LOST, LOST, LOST]
    assert sb.pipe(600) == 0
    i = sb.next_lost()
    assert sb.segs[i].start == 1000


# -- SACK recovery -------------------------------------------------------------------

def test_several_losses_in_one_window_repaired_in_about_one_rtt():
    p = established(latency=0.02)            # RTT 40 ms
    mss = p.a.mss
    p.drop = drop_first_tx(p, [m * mss for m in (12, 15, 17, 21, 22)])
    send_and_finish(p, 80 * mss)
    info = p.a.info()
    assert info["retransmits"] == 5
    assert info["rto_count"] == 0 and info["fast_recoveries"] == 1
    rtx = [(t, off) for t, off, n in a_data(p)
           if off in {m * mss for m in (12, 15, 17, 21, 22)}]
    first = {}
    for t, off in rtx:
        first.setdefault(off, []).append(t)
    repairs = [ts[1] for ts in first.values()]
    # All five holes are resent within one round trip of the first repair.
    assert max(repairs) - min(repairs) < 0.045


def test_sack_recovery_without_rack_uses_dupthresh():
    p = established(latency=0.02, cfg_a=TcpConfig(rack=False))
    mss = p.a.mss
    p.drop = drop_first_tx(p, [10 * mss, 14 * mss, 20 * mss])
    send_and_finish(p, 60 * mss)
    info = p.a.info()
    assert info["retransmits"] == 3 and info["rto_count"] == 0
    assert info["fast_recoveries"] == 1 and info["tlp_count"] == 0


def test_lost_retransmission_found_by_rack_without_rto():
    p = established(latency=0.02)
    mss = p.a.mss
    base = p.a.snd_una & M
    target = (base + 10 * mss) & M
    seen = []

    def drop(src, h, payload):
        # The original and the first retransmission of one segment are lost.
        if src == "a" and len(payload) and h.seq == target and len(seen) < 2:
            seen.append(h)
            return True
        return False
    p.drop = drop
    send_and_finish(p, 120 * mss)
    info = p.a.info()
    assert len(seen) == 2
    assert info["rto_count"] == 0
    assert info["retransmits"] == 2


def test_non_sack_peer_recovers_with_newreno():
    p = established(latency=0.02, cfg_b=TcpConfig(sack=False))
    assert not p.a.info()["sack"]
    mss = p.a.mss
    p.drop = drop_first_tx(p, [5 * mss, 9 * mss])
    send_and_finish(p, 50 * mss)
    info = p.a.info()
    assert info["retransmits"] == 2 and info["rto_count"] == 0
    assert info["fast_recoveries"] == 1 and info["tlp_count"] == 0


# -- RACK reordering window ------------------------------------------------------------

@pytest.mark.parametrize("jitter", [0.002, 0.005])
def test_mild_reordering_causes_no_spurious_retransmission(jitter):
    # Jitter reorders segments by up to a few ms; RTT 40 ms, so RACK's
    # reordering window (min_RTT/4 once reordering was seen) absorbs it.
    p = established(latency=0.02, jitter=jitter, seed=5)
    send_and_finish(p, 1_000_000)
    info = p.a.info()
    assert info["reordering_seen"]
    assert info["retransmits"] == 0 and info["fast_recoveries"] == 0


def test_reordering_with_dupthresh_only_is_worse():
    # The same network with RACK off: RFC 6675's DupThresh takes reordering
    # for loss (and D-SACKs tell the sender so afterwards).
    p = established(latency=0.02, jitter=0.005, seed=5, cfg_a=TcpConfig(rack=False))
    send_and_finish(p, 300_000)
    info = p.a.info()
    assert info["retransmits"] > 0 and info["dsacks_received"] > 0


# -- tail loss probe ---------------------------------------------------------------------

@pytest.mark.parametrize("lost_tail", [2, 3])
def test_tail_loss_recovered_by_probe_not_rto(lost_tail):
    p = established(latency=0.02)
    mss = p.a.mss
    n = 30
    p.drop = drop_first_tx(p, [(n - k) * mss for k in range(1, lost_tail + 1)])
    elapsed = send_and_finish(p, n * mss)
    info = p.a.info()
    assert info["rto_count"] == 0
    assert info["tlp_count"] >= 1
    assert elapsed < 0.4  # RTO would be >= 0.2 s after the last ACK, plus repair


def test_single_segment_tail_loss_probe():
    # One segment in flight: PTO = 2*SRTT + WCDelAckT, capped at the RTO.
    p = established(latency=0.05)  # RTT 100 ms
    mss = p.a.mss
    n = 21
    p.drop = drop_first_tx(p, [(n - 1) * mss])
    send_and_finish(p, n * mss)
    info = p.a.info()
    assert info["rto_count"] == 0 and info["tlp_count"] == 1


def test_tlp_off_falls_back_to_rto():
    p = established(latency=0.02, cfg_a=TcpConfig(tlp=False))
    mss = p.a.mss
    n = 30
    p.drop = drop_first_tx(p, [(n - 2) * mss, (n - 1) * mss])
    send_and_finish(p, n * mss)
    info = p.a.info()
    assert info["tlp_count"] == 0 and info["rto_count"] >= 1


def test_spurious_probe_detected_by_dsack():
    # The last segment's ACK is only delayed (a slow delayed-ACK timer), not
    # lost: the probe duplicates data the receiver has, its D-SACK says so,
    # and the sender does not cut cwnd (RFC 8985 7.4.2). An odd number of
    # segments, so the last one waits for the delayed-ACK timer.
    p = established(latency=0.02)
    mss = p.a.mss
    data = payload_bytes(7 * mss, 3)
    p.apps["b"] = App()
    p.b.config.delayed_ack = 0.5
    p.a.send(data, p.now)
    p.run(lambda: len(p.apps["b"].received) == len(data), max_time=p.now + 5)
    p.run_for(2.0)
    info = p.a.info()
    assert info["tlp_count"] == 1 and info["rto_count"] == 0
    assert p.b.info()["dsacks_sent"] == 1 and info["dsacks_received"] == 1
    assert info["spurious_retransmits"] == 1
    assert info["ssthresh"] > 1 << 40  # no congestion response
    assert p.a.recovery.tlp_high is None


def test_dead_network_probe_then_rto_backoff():
    # A PTO later than the RTO is capped at it: the first expiry sends the
    # probe, then RTOs back off from there (RFC 8985 7.2, RFC 6298 5.5).
    p = established()
    p.drop = lambda src, h, payload: True
    t0 = p.now
    p.a.send(b"x" * 100, p.now)
    p.run_for(2.0)
    sends = [t - t0 for t, h, n in p.sent_by("a", t0) if n == 100]
    assert sends == pytest.approx([0.0, 0.2, 0.4, 0.8, 1.6])
    info = p.a.info()
    assert info["tlp_count"] == 1 and info["rto_count"] == 3
    assert info["retransmits"] == 4


# -- D-SACK -------------------------------------------------------------------------------

def test_duplicates_are_reported_by_dsack_and_not_taken_for_loss():
    p = established(latency=0.01, dup=0.2, seed=3)
    send_and_finish(p, 400_000)
    info = p.a.info()
    assert p.b.info()["dsacks_sent"] > 0
    assert info["dsacks_received"] > 0
    assert info["retransmits"] == 0 and info["fast_recoveries"] == 0


# -- RTO ------------------------------------------------------------------------------------

def _from_b(p, window, now):
    b = p.b
    opts = TcpOptions(timestamps=(b.tsval(now), b.timestamps.recent))
    return TcpHeader(80, 40000, b.snd_max & M, b.rcv_nxt & M, ACK, window, 0, opts)


def test_rto_into_zero_window_resends_head_first_when_window_opens():
    """The bug seen against Linux: RTO retransmissions into a zero window,
    then the window reopens: the lost head must go before any new data."""
    p = established(latency=0.01)
    mss = p.a.mss
    base = p.a.snd_una
    blackhole = {"on": True}

    def drop(src, h, payload):
        # Everything a sends from offset 5 MSS on disappears for now.
        return blackhole["on"] and src == "a" and len(payload) and \
            ((h.seq - base) & M) >= 5 * mss
    p.drop = drop
    p.apps["b"] = App()
    p.a.send(payload_bytes(40 * mss, 9), p.now)
    p.run_for(0.1)  # the fifth segment's ACK is a delayed one (40 ms)
    assert p.a.snd_una - base == 5 * mss
    # The peer shrinks its window to zero (as Linux under memory pressure).
    p.a.on_segment(_from_b(p, 0, p.now), b"", p.now)
    p.run_for(3.0)  # RTOs: the head goes out as a probe into the zero window
    assert p.a.info()["rto_count"] >= 2
    blackhole["on"] = False
    t_open = p.now
    p.a.on_segment(_from_b(p, 2048, p.now), b"", p.now)
    p.collect()
    after = [off for t, off, n in a_data(p, t_open)]
    assert after and after[0] == 5 * mss, after[:5]
    p.run(lambda: len(p.apps["b"].received) == 40 * mss, max_time=p.now + 30)
    assert len(p.apps["b"].received) == 40 * mss


def test_rto_go_back_n_skips_sacked_data():
    p = established(latency=0.01)
    mss = p.a.mss
    base = p.a.snd_una
    offs = {0, 1, 2, 6, 7}   # segments lost (every copy) until we say so
    state = {"on": True}

    def drop(src, h, payload):
        if not state["on"] or src != "a" or not len(payload):
            return False
        return ((h.seq - base) & M) // mss in offs
    p.drop = drop
    p.apps["b"] = App()
    p.a.send(payload_bytes(10 * mss, 10), p.now)
    p.run_for(0.05)
    assert p.a.info()["sacked_out"] == 5 * mss  # 3, 4, 5, 8, 9
    t_before = p.now
    state["on"] = False
    p.run(lambda: len(p.apps["b"].received) == 10 * mss, max_time=p.now + 10)
    assert p.a.info()["rto_count"] >= 1
    resent = sorted({off // mss for t, off, n in a_data(p, t_before)})
    assert resent == [0, 1, 2, 6, 7]


def test_rtt_estimate_not_inflated_by_heavy_loss():
    # 30% loss each way used to push SRTT to tens of seconds (stale echoed
    # timestamps counted the retransmission timeouts as round-trip time).
    for seed in (1, 2, 3):
        p = established(latency=0.01, loss=0.3, seed=seed)
        peak = {"srtt": 0.0}
        data = payload_bytes(100_000, seed)
        p.apps["a"] = App(data)
        p.apps["b"] = App()

        def done():
            if p.a.srtt is not None and p.a.srtt > peak["srtt"]:
                peak["srtt"] = p.a.srtt
            return len(p.apps["b"].received) == len(data)
        p.run(done, max_time=p.now + 5000)
        assert done()
        assert peak["srtt"] < 0.5, (seed, peak)


# -- goodput under random loss ------------------------------------------------------

@pytest.mark.parametrize("loss, size, bound", [(0.01, 2_000_000, 10.0),
                                               (0.05, 1_000_000, 15.0)])
def test_lossy_bulk_finishes_in_bounded_virtual_time(loss, size, bound):
    p = established(latency=0.01, loss=loss, rate=12.5e6, queue_limit=200, seed=7)
    elapsed = send_and_finish(p, size, max_time=1000)
    assert elapsed < bound
    assert p.a.info()["rto_count"] <= 3
