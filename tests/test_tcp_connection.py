"""Handshake, data transfer and close in every order, over the test network."""

import pytest

from test_tcp_connection_harness import A_IP, B_IP, App, Pair, payload_bytes, sha, transfer
from trionet.tcp.connection import TcpConfig, TcpConnection, TcpState
from trionet.wire.tcp import ACK, SYN

S = TcpState


def test_active_passive_handshake():
    p = Pair()
    p.run(p.established)
    syn = p.log[0][2]
    assert syn.flags == SYN and syn.seq == 1000
    synack = p.log[1][2]
    assert synack.flags == SYN | ACK and synack.seq == 5000 and synack.ack == 1001
    ack = p.log[2][2]
    assert ack.flags == ACK and ack.seq == 1001 and ack.ack == 5001
    assert p.a.established and p.b.established
    assert p.a.error is None and p.b.error is None


def test_small_exchange():
    p = Pair()
    p.run(p.established)
    p.a.send(b"hello", p.now)
    p.run(lambda: p.b.readable)
    assert p.b.receive(100, p.now) == b"hello"
    p.b.send(b"world", p.now)
    p.run(lambda: p.a.readable)
    assert p.a.receive(3, p.now) == b"wor"
    assert p.a.receive(100, p.now) == b"ld"
    assert p.a.receive(100, p.now) == b""


def _close_all(p):
    p.run(lambda: p.a.closed and p.b.closed, max_time=p.now + 10_000)


def test_close_client_first():
    p = Pair()
    p.run(p.established)
    p.a.shutdown_write(p.now)
    assert p.a.state is S.FIN_WAIT_1
    p.run(lambda: p.b.at_eof)
    assert p.b.state is S.CLOSE_WAIT
    p.run(lambda: p.a.state is S.FIN_WAIT_2)
    p.b.shutdown_write(p.now)
    assert p.b.state is S.LAST_ACK
    p.run(lambda: p.a.state is S.TIME_WAIT)
    t_tw = p.now
    p.run(lambda: p.b.closed)
    assert p.b.error is None
    p.run(lambda: p.a.closed)
    assert p.now == pytest.approx(t_tw + 60.0)
    assert p.a.error is None


def test_close_server_first():
    p = Pair()
    p.run(p.established)
    p.b.shutdown_write(p.now)
    p.run(lambda: p.a.at_eof)
    assert p.a.state is S.CLOSE_WAIT
    p.a.shutdown_write(p.now)
    p.run(lambda: p.b.state is S.TIME_WAIT)
    p.run(lambda: p.a.closed)
    assert p.b.state is S.TIME_WAIT
    _close_all(p)
    assert p.a.error is None and p.b.error is None


def test_simultaneous_close():
    p = Pair()
    p.run(p.established)
    p.a.shutdown_write(p.now)
    p.b.shutdown_write(p.now)
    p.run(lambda: p.a.state is S.CLOSING and p.b.state is S.CLOSING)
    p.run(lambda: p.a.state is S.TIME_WAIT and p.b.state is S.TIME_WAIT)
    t = p.now
    _close_all(p)
    assert p.now == pytest.approx(t + 60.0)


def test_half_close_data_flows_after_fin():
    p = Pair()
    p.run(p.established)
    p.a.send(b"request", p.now)
    p.a.shutdown_write(p.now)
    p.run(lambda: p.b.at_eof or p.b.unread_bytes == 0 and p.b.fin_received)
    assert p.b.receive(100, p.now) == b"request"
    assert p.b.at_eof
    data = payload_bytes(300_000, 1)
    p.apps["b"] = App(data, read=False, shutdown=True)
    p.apps["a"] = App()
    p.run(lambda: p.a.at_eof)
    assert sha(p.apps["a"].received) == sha(data)
    _close_all(p)
    assert p.a.error is None and p.b.error is None


def test_simultaneous_open():
    p = Pair(listen=False, connect=False)
    a = TcpConnection.connect((A_IP, 40000), (B_IP, 80), 1000, TcpConfig(), 0.0, ts_offset=1)
    b = TcpConnection.connect((B_IP, 80), (A_IP, 40000), 7000, TcpConfig(), 0.0, ts_offset=2)
    p.a, p.b = a, b
    p.run(lambda: a.state is S.ESTABLISHED and b.state is S.ESTABLISHED, max_time=10)
    assert a.established and b.established
    assert p.now < 1.0  # no retransmission was needed
    transfer(p, payload_bytes(100_000, 2), payload_bytes(50_000, 3))


def test_bulk_transfer_clean():
    p = Pair()
    transfer(p, payload_bytes(1_500_000, 4), payload_bytes(1_200_000, 5))
    assert p.a.retransmits == 0 and p.b.retransmits == 0
    _close_all(p)


@pytest.mark.parametrize("loss", [0.01, 0.10, 0.30])
def test_bulk_transfer_lossy(loss):
    p = Pair(seed=int(loss * 1000), loss=loss, dup=0.02, jitter=0.005)
    transfer(p, payload_bytes(1_100_000, 6), payload_bytes(1_050_000, 7), max_time=100_000)
    _close_all(p)


def test_bulk_transfer_reordering_and_duplication():
    p = Pair(seed=9, dup=0.1, jitter=0.03, latency=0.005)
    transfer(p, payload_bytes(1_200_000, 8), payload_bytes(1_000_000, 9))


def test_bulk_transfer_bottleneck():
    # A 1 MB/s bottleneck with a 30-packet queue: losses from congestion.
    p = Pair(rate=1_000_000, queue_limit=30, latency=0.02)
    transfer(p, payload_bytes(2_000_000, 10), b"", max_time=10_000)
    assert p.a.retransmits > 0
    assert p.now < 10  # ~2 s of transmission; recovery must not stall


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), loss=st.sampled_from([0, 0.01, 0.05, 0.15]),
       dup=st.sampled_from([0, 0.05]), jitter=st.sampled_from([0, 0.002, 0.02]),
       opts=st.booleans(), nodelay=st.booleans(),
       rbuf=st.sampled_from([4096, 65536, 262144]), mss=st.sampled_from([536, 1460, 8960]),
       rate=st.sampled_from([None, 3e6]), n_ab=st.integers(0, 200_000),
       n_ba=st.integers(0, 200_000), iss=st.integers(0, 2**32 - 1))
def test_random_networks_transfer_exactly(seed, loss, dup, jitter, opts, nodelay, rbuf, mss,
                                          rate, n_ab, n_ba, iss):
    ca = TcpConfig(timestamps=opts, sack=opts, window_scale=opts, nodelay=nodelay,
                   receive_buffer=rbuf, mss=mss)
    cb = TcpConfig(receive_buffer=262144 if rbuf == 4096 else rbuf)
    p = Pair(cfg_a=ca, cfg_b=cb, seed=seed, loss=loss, dup=dup, jitter=jitter, rate=rate,
             iss_a=iss, iss_b=(iss * 7 + 3) & 0xFFFFFFFF)
    transfer(p, payload_bytes(n_ab, seed & 0xFFFF), payload_bytes(n_ba, seed >> 16),
             max_time=1_000_000)
    _close_all(p)
    assert p.a.closed and p.b.closed and p.a.error is None and p.b.error is None
