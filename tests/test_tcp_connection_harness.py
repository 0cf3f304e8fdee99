"""A tiny deterministic network for sans-I/O TCP tests, plus tests of it.

``Pair`` wires an active ``TcpConnection`` ("a", the client) to a passive one
("b", created by an emulated listener when the SYN arrives) through a seeded
random network: loss, duplication, reordering (jitter), per-direction latency
and an optional bottleneck rate with a drop-tail queue. Time is a fake clock
that jumps to the next packet arrival or connection deadline. Every segment
goes through ``build_tcp`` / ``parse_tcp``, so the wire codec is exercised too.

Other test modules import this one (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from ipaddress import ip_address

from trionet.tcp.connection import TcpConfig, TcpConnection, TcpState, reset_for
from trionet.wire.tcp import ACK, RST, SYN, build_tcp, parse_tcp

A_IP = ip_address("10.0.0.1")
B_IP = ip_address("10.0.0.2")
A_PORT = 40000
B_PORT = 80


class App:
    """What the application on one side does: write ``to_send``, read
    everything (unless ``read`` is False), optionally shut down writing once
    all is written."""

    def __init__(self, to_send: bytes = b"", read: bool = True, shutdown: bool = False):
        self.to_send = to_send
        self.offset = 0
        self.read = read
        self.shutdown = shutdown
        self.received = bytearray()
        self.shut = False

    def pump(self, conn: TcpConnection, now: float) -> None:
        if conn is None:
            return
        if self.offset < len(self.to_send) and conn.can_send:
            n = conn.send(memoryview(self.to_send)[self.offset:self.offset + 65536], now)
            self.offset += n
        if self.shutdown and not self.shut and self.offset >= len(self.to_send) and \
                conn.state in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
            self.shut = True
            conn.shutdown_write(now)
        if self.read:
            while True:
                data = conn.receive(1 << 20, now)
                if not data:
                    break
                self.received += data


class Pair:
    def __init__(self, *, cfg_a: TcpConfig | None = None, cfg_b: TcpConfig | None = None,
                 seed: int = 0, loss: float = 0.0, dup: float = 0.0, jitter: float = 0.0,
                 latency: float = 0.01, latency_ba: float | None = None,
                 rate: float | None = None, queue_limit: int = 100,
                 iss_a: int = 1000, iss_b: int = 5000, start: float = 0.0,
                 listen: bool = True, connect: bool = True):
        self.now = start
        self.rng = random.Random(seed)
        self.loss, self.dup, self.jitter = loss, dup, jitter
        self.latency = {"a": latency, "b": latency if latency_ba is None else latency_ba}
        self.rate = rate
        self.queue_limit = queue_limit
        self.busy = {"a": start, "b": start}
        self.inflight = {"a": 0, "b": 0}
        self.cfg_a = cfg_a or TcpConfig()
        self.cfg_b = cfg_b or TcpConfig()
        self.iss_b = iss_b
        self.listen = listen
        self.queue: list = []
        self.counter = 0
        self.log: list = []  # (time, src, header, payload_len)
        self.drop = None     # optional callable(src, header, payload) -> bool
        self.apps = {"a": App(read=False), "b": App(read=False)}
        self.a: TcpConnection | None = None
        self.b: TcpConnection | None = None
        self.listener_replies: list = []
        if connect:
            self.a = TcpConnection.connect((A_IP, A_PORT), (B_IP, B_PORT), iss_a, self.cfg_a,
                                           self.now, ts_offset=111)

    # -- network ------------------------------------------------------
    def conn(self, name):
        return self.a if name == "a" else self.b

    def collect(self) -> None:
        for name in ("a", "b"):
            c = self.conn(name)
            if c is None:
                continue
            for h, p in c.pop_outgoing():
                self.transmit(name, h, p)
        for h, p in self.listener_replies:
            self.transmit("b", h, p)
        self.listener_replies = []

    def transmit(self, src: str, h, payload) -> None:
        src_ip, dst_ip = (A_IP, B_IP) if src == "a" else (B_IP, A_IP)
        raw = build_tcp(h, bytes(payload), src_ip, dst_ip)
        self.log.append((self.now, src, h, len(payload)))
        if self.drop is not None and self.drop(src, h, payload):
            return
        if self.loss and self.rng.random() < self.loss:
            return
        copies = 2 if self.dup and self.rng.random() < self.dup else 1
        for _ in range(copies):
            t = self.now
            if self.rate is not None:
                if self.inflight[src] >= self.queue_limit:
                    return  # drop-tail
                start = max(t, self.busy[src])
                t = start + (len(raw) + 40) / self.rate
                self.busy[src] = t
                self.inflight[src] += 1
            t += self.latency[src]
            if self.jitter:
                t += self.rng.random() * self.jitter
            self.counter += 1
            heapq.heappush(self.queue, (t, self.counter, src, raw))

    def deliver(self, src: str, raw: bytes) -> None:
        if self.rate is not None:
            self.inflight[src] -= 1
        src_ip, dst_ip = (A_IP, B_IP) if src == "a" else (B_IP, A_IP)
        h, payload = parse_tcp(raw, src_ip, dst_ip)
        dst = "b" if src == "a" else "a"
        c = self.conn(dst)
        if c is None or (c.closed and dst == "b"):
            if dst == "b" and self.listen and h.flags & (SYN | ACK | RST) == SYN:
                self.b = TcpConnection.accept((B_IP, B_PORT), (A_IP, A_PORT), h, self.iss_b,
                                              self.cfg_b, self.now, ts_offset=222)
                return
            rst = reset_for(h, len(payload))
            if rst is not None:
                self.listener_replies.append((rst, b""))
            return
        c.on_segment(h, payload, self.now)

    def next_time(self) -> float:
        t = self.queue[0][0] if self.queue else math.inf
        for c in (self.a, self.b):
            if c is not None and c.next_deadline < t:
                t = c.next_deadline
        return t

    def pump_apps(self) -> None:
        for name in ("a", "b"):
            self.apps[name].pump(self.conn(name), self.now)

    def step(self) -> bool:
        self.pump_apps()
        self.collect()
        t = self.next_time()
        if t == math.inf:
            return False
        self.now = max(self.now, t)
        while self.queue and self.queue[0][0] <= self.now:
            _, _, src, raw = heapq.heappop(self.queue)
            self.deliver(src, raw)
            self.pump_apps()
            self.collect()
        for c in (self.a, self.b):
            if c is not None and c.next_deadline <= self.now:
                c.on_timer(self.now)
        return True

    def run(self, until=None, max_time: float = 10_000.0, max_steps: int = 2_000_000) -> None:
        """Step until ``until()`` is true, nothing is left to happen, or the
        clock passes ``max_time``."""
        for _ in range(max_steps):
            if until is not None and until():
                return
            if not self.step():
                return
            if self.now > max_time:
                return
        raise AssertionError("too many steps")

    def run_for(self, duration: float) -> None:
        end = self.now + duration
        while True:
            self.pump_apps()
            self.collect()
            if self.next_time() > end:
                self.now = end
                return
            self.step()

    def established(self) -> bool:
        return (self.a is not None and self.b is not None
                and self.a.state is TcpState.ESTABLISHED and self.b.state is TcpState.ESTABLISHED)

    def sent_by(self, src: str, since: float = -1.0):
        return [(t, h, n) for t, s, h, n in self.log if s == src and t >= since]


def sha(data) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


def payload_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def transfer(pair: Pair, a_to_b: bytes, b_to_a: bytes, max_time: float = 5000.0) -> None:
    """Both directions at once, both sides shut down after writing; runs
    until both have received everything and EOF."""
    pair.apps["a"] = App(a_to_b, shutdown=True)
    pair.apps["b"] = App(b_to_a, shutdown=True)

    def done():
        return (pair.b is not None and pair.a.at_eof and pair.b.at_eof
                and len(pair.apps["b"].received) == len(a_to_b)
                and len(pair.apps["a"].received) == len(b_to_a))

    pair.run(done, max_time=max_time)
    assert done(), (pair.a.info(), pair.b and pair.b.info(), pair.now)
    assert sha(pair.apps["b"].received) == sha(a_to_b)
    assert sha(pair.apps["a"].received) == sha(b_to_a)


# -- tests of the harness itself -------------------------------------------

def test_harness_handshake_and_quiet():
    p = Pair()
    p.run(p.established)
    assert p.established()
    assert abs(p.now - 0.03) < 1e-9  # SYN, SYN-ACK, ACK
    # Nothing more happens by itself: no timer armed on an idle connection.
    p.run_for(10.0)
    assert p.a.next_deadline == math.inf and p.b.next_deadline == math.inf
