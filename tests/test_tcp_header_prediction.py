"""Header prediction (``InputMixin._predicted``) and batched input
(``on_segments``) against the full input path, one segment at a time.

Two worlds run the same random script in lockstep: one where connections
take the fast path, one where ``header_prediction`` is off. After every
event the segments each side sends, every piece of connection state and the
next deadlines must be equal. The script mixes a lossy, duplicating,
reordering network with crafted segments (in and out of window, old and new
timestamps, SACK blocks, FIN, odd ACKs) and the application's sends,
reads, shutdowns and closes.
"""

from __future__ import annotations

import enum
import heapq
import math
import random
from collections import deque
from ipaddress import ip_address

import pytest

from trionet.tcp.config import M32, TcpConfig, TcpState
from trionet.tcp.connection import TcpConnection
from trionet.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpHeader, TcpOptions, build_tcp, parse_tcp

A_IP = ip_address("10.0.0.1")
B_IP = ip_address("10.0.0.2")


class Fast(TcpConnection):
    __slots__ = ()
    hits = [0]

    def _predicted(self, h, payload, now):
        taken = super()._predicted(h, payload, now)
        if taken:
            Fast.hits[0] += 1
        return taken


class Slow(TcpConnection):
    __slots__ = ()
    header_prediction = False


def snapshot(obj, seen=None):
    """Everything observable in ``obj``, recursively, as plain values."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, enum.Enum)):
        return obj
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, (list, tuple, deque)):
        return [snapshot(x, seen) for x in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(repr(x) for x in obj)
    if isinstance(obj, dict):
        return {repr(k): snapshot(v, seen) for k, v in obj.items()}
    if type(obj).__module__.startswith("ipaddress"):
        return str(obj)
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return "<cycle>"
    seen.add(id(obj))
    names = []
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    out = {}
    for name in names:
        if name in ("__weakref__", "__dict__"):
            continue
        value = getattr(obj, name, "<unset>")
        out[name] = "<callable>" if callable(value) and not hasattr(value, "__slots__") \
            else snapshot(value, seen)
    for name, value in getattr(obj, "__dict__", {}).items():
        out[name] = snapshot(value, seen)
    return (type(obj).__name__.replace("Fast", "").replace("Slow", ""), out)


class World:
    """Two connections and the packets between them."""

    def __init__(self, cls, cfg_a: TcpConfig, cfg_b: TcpConfig, now: float = 0.0,
                 iss: int = 1000):
        self.cls = cls
        self.cfg_b = cfg_b
        self.a = cls.connect((A_IP, 40000), (B_IP, 80), iss, cfg_a, now, ts_offset=111)
        self.b = None
        self.queue: list = []
        self.counter = 0
        self.received = {"a": bytearray(), "b": bytearray()}

    def conn(self, name):
        return self.a if name == "a" else self.b

    def outputs(self):
        got = []
        for name in ("a", "b"):
            c = self.conn(name)
            if c is not None:
                for h, p in c.pop_outgoing():
                    got.append((name, h, bytes(p)))
        return got

    def deliver_batches(self, due: list, now: float) -> None:
        """Runs of ``due`` packets to one existing connection go in one
        ``on_segments`` call."""
        i = 0
        while i < len(due):
            src = due[i][0]
            c = self.conn("b" if src == "a" else "a")
            j = i + 1
            while j < len(due) and due[j][0] == src:
                j += 1
            if c is None:
                for s, raw in due[i:j]:
                    self.deliver(s, raw, now)
            else:
                src_ip, dst_ip = (A_IP, B_IP) if src == "a" else (B_IP, A_IP)
                c.on_segments([parse_tcp(raw, src_ip, dst_ip) for _, raw in due[i:j]], now)
            i = j

    def deliver(self, src: str, raw: bytes, now: float) -> None:
        src_ip, dst_ip = (A_IP, B_IP) if src == "a" else (B_IP, A_IP)
        h, payload = parse_tcp(raw, src_ip, dst_ip)
        dst = "b" if src == "a" else "a"
        c = self.conn(dst)
        if c is None:
            if h.flags & (SYN | ACK | RST) == SYN:
                self.b = self.cls.accept((B_IP, 80), (A_IP, 40000), h, 5000, self.cfg_b, now,
                                         ts_offset=222)
            return
        c.on_segment(h, payload, now)


def _craft(rng: random.Random, c: TcpConnection, now: float):
    """A segment for ``c`` near what it expects."""
    mss = c.mss
    seq = c.rcv_nxt + rng.choice([0, 0, 0, 0, 0, -1, -mss, mss, 2 * mss,
                                  rng.randrange(-70000, 70000)])
    span = c.snd_max - c.snd_una
    ack = c.snd_una + rng.choice([0, 0, span, rng.randrange(0, span + 1), -1, span + 1,
                                  rng.randrange(-100000, 100000)])
    flags = rng.choice([ACK, ACK, ACK, ACK | PSH, ACK | PSH, ACK | PSH, ACK | FIN, ACK | 0x20,
                        ACK | 0x40, 0])
    if rng.random() < 0.03:
        flags = rng.choice([ACK | RST, RST, ACK | SYN, SYN])
    plen = rng.choice([0, 0, 1, mss, mss, rng.randrange(0, 3 * mss)])
    window = rng.choice([0xFFFF, 0xFFFF, 0, 1, rng.randrange(0, 0x10000)])
    ts = None
    t = c.timestamps
    if rng.random() < 0.9:
        tsval = (t.recent + rng.choice([0, 0, 1, 7, -1, -5, 1 << 31])) & M32
        tsecr = (t.tsval(now) - rng.choice([0, 1, 30, 5000, -3])) & M32
        ts = (tsval, tsecr)
    blocks = ()
    if rng.random() < 0.15 and span > 0:
        left = c.snd_una + rng.randrange(0, span + 1)
        blocks = ((left & M32, (left + rng.randrange(1, 3 * mss)) & M32),)
    opts = TcpOptions(timestamps=ts, sack_blocks=blocks)
    h = TcpHeader(c.remote[1], c.local[1], seq & M32, ack & M32, flags, window, 0, opts)
    return h, rng.randbytes(plen)


def lockstep(seed: int, cfg_a: TcpConfig, cfg_b: TcpConfig, steps: int) -> None:
    rng = random.Random(seed)
    worlds = [World(Fast, cfg_a, cfg_b), World(Slow, cfg_a, cfg_b)]
    now = 0.0
    loss = rng.choice([0.0, 0.01, 0.05])

    def settle():
        outs = [w.outputs() for w in worlds]
        assert outs[0] == outs[1], (seed, now)
        for name, h, p in outs[0]:
            src_ip, dst_ip = (A_IP, B_IP) if name == "a" else (B_IP, A_IP)
            raw = build_tcp(h, p, src_ip, dst_ip)
            if rng.random() < loss:
                continue
            for _ in range(2 if rng.random() < 0.01 else 1):
                t = now + 0.01 + (rng.random() * 0.004 if rng.random() < 0.1 else 0.0)
                for w in worlds:
                    w.counter += 1
                    heapq.heappush(w.queue, (t, w.counter, name, raw))
        for name in ("a", "b"):
            c0, c1 = worlds[0].conn(name), worlds[1].conn(name)
            assert (c0 is None) == (c1 is None)
            if c0 is not None:
                assert c0.next_deadline == c1.next_deadline, (seed, now, name)
                assert snapshot(c0) == snapshot(c1), (seed, now, name)

    for step in range(steps):
        settle()
        if all(c is not None and c.closed for c in (worlds[0].a, worlds[0].b)):
            # Both ended (a crafted RST, a close): a new connection.
            iss = rng.randrange(1 << 32)
            worlds = [World(Fast, cfg_a, cfg_b, now, iss), World(Slow, cfg_a, cfg_b, now, iss)]
            continue
        action = rng.random()
        name = rng.choice("ab")
        if action < 0.6:
            # Next event: a packet or a deadline.
            t = worlds[0].queue[0][0] if worlds[0].queue else math.inf
            for c in (worlds[0].a, worlds[0].b):
                if c is not None and c.next_deadline < t:
                    t = c.next_deadline
            if t == math.inf:
                continue
            now = max(now, t)
            for w in worlds:
                due = []
                while w.queue and w.queue[0][0] <= now:
                    due.append(heapq.heappop(w.queue)[2:])
                if w.cls is Fast:
                    w.deliver_batches(due, now)  # on_segments, as TcpSocket's task
                else:
                    for src, raw in due:
                        w.deliver(src, raw, now)
                for c in (w.a, w.b):
                    if c is not None and c.next_deadline <= now:
                        c.on_timer(now)
            continue
        if worlds[0].conn(name) is None:
            continue
        if action < 0.75:
            data = rng.randbytes(rng.choice([1, 100, 1448, 5000, 30000]))
            n = {w.conn(name).send(data, now) for w in worlds}
            assert len(n) == 1
        elif action < 0.85:
            size = rng.choice([1, 1000, 1 << 20])
            got = {bytes(w.conn(name).receive(size, now)) for w in worlds}
            assert len(got) == 1
        elif action < 0.95:
            c0 = worlds[0].conn(name)
            if c0.state is TcpState.CLOSED:
                continue
            h, p = _craft(rng, c0, now)
            for w in worlds:
                w.conn(name).on_segment(h, p, now)
        elif action < 0.953:
            for w in worlds:
                w.conn(name).shutdown_write(now)
        elif action < 0.955:
            for w in worlds:
                w.conn(name).close(now)
        else:
            now += rng.choice([0.001, 0.2, 1.0])
    settle()


CONFIGS = [
    {},
    {"sack": False},
    {"timestamps": False},
    {"timestamps": False, "sack": False, "window_scale": False},
    {"receive_buffer": 8192, "autotune": False},
    {"congestion": "newreno", "rack": False},
    {"nodelay": True, "send_buffer": 20000},
]


@pytest.mark.parametrize("seed", range(16))
def test_fast_path_equals_full_path(seed):
    cfg_a = TcpConfig(**CONFIGS[seed % len(CONFIGS)])
    cfg_b = TcpConfig(**CONFIGS[(seed * 3 + 1) % len(CONFIGS)])
    lockstep(seed, cfg_a, cfg_b, 1200)


def test_fast_path_is_taken():
    Fast.hits[0] = 0
    lockstep(1000, TcpConfig(), TcpConfig(), 800)
    assert Fast.hits[0] > 50
