"""The Linux side of the benchmarks: socket snippets run inside network
namespaces, and the Trio helpers that start them and read their output.

Every snippet is a small Python program run as ``python -u -c CODE PARAMS``
inside a namespace (``ip netns exec``); PARAMS is one JSON object. Each
prints JSON objects, one a line: ``{"ready": true}`` once it listens (the
servers), then its results. Every loop in them is bounded in count and in
time (``deadline`` seconds from the start).

Namespaces come from tests/netns.py (NetNamespace, link_namespaces): their
names start with ``trionet-<pid>-``, so whatever a killed process leaves is
found and removed by ``netns.cleanup_run_namespaces("trionet-<pid>-")``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

import netns  # noqa: E402  (tests/netns.py: the kernel-peer harness)

__all__ = ["netns", "Peer", "peer", "run_peer", "tune_namespace", "enable_ipv6", "SINK", "SENDER",
           "ECHO_SERVER", "BULK_ECHO_CLIENT", "RTT_CLIENT", "CONNECT_CLIENT", "HOLD_CLIENT",
           "CHECKSUM_PROBE",
           "stream_sha256", "cyclic_block"]


# ---------------------------------------------------------------------------
# Test data: a random block of odd length sent round and round, so a shifted,
# duplicated or missing segment changes the SHA-256 of the stream.

BLOCK_SIZE = (4 << 20) + 13


def cyclic_block(seed: int) -> bytes:
    import random
    return random.Random(seed).randbytes(BLOCK_SIZE)


def stream_sha256(block: bytes, size: int) -> str:
    """SHA-256 of the first ``size`` bytes of ``block`` repeated."""
    import hashlib
    h = hashlib.sha256()
    view = memoryview(block)
    left = size
    while left:
        n = min(left, len(block))
        h.update(view[:n])
        left -= n
    return h.hexdigest()


# ---------------------------------------------------------------------------
# Snippets. Shared prologue: params, a deadline, out() prints one JSON line.

_PROLOGUE = r"""
import hashlib, json, os, random, selectors, socket, sys, threading, time
P = json.loads(sys.argv[1])
START = time.monotonic()
DEADLINE = START + P.get("deadline", 60)
def out(**kw):
    sys.stdout.write(json.dumps(kw) + "\n"); sys.stdout.flush()
def left():
    return max(0.05, DEADLINE - time.monotonic())
# The address family of P["host"] (an IPv6 address has a colon).
FAMILY = socket.AF_INET6 if ":" in P.get("host", "") else socket.AF_INET
"""

#: Listens on P["host"]:P["port"], accepts one connection, reads to EOF while
#: hashing; timed from accept to EOF. Then closes (the sender sees EOF).
SINK = _PROLOGUE + r"""
ls = socket.socket(FAMILY); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((P["host"], P["port"])); ls.listen(8); ls.settimeout(left())
out(ready=True)
s, _ = ls.accept()
t0 = time.perf_counter()
s.settimeout(left())
h = hashlib.sha256(); n = 0
buf = bytearray(1 << 18); view = memoryview(buf)
while True:
    k = s.recv_into(buf)
    if not k:
        break
    h.update(view[:k]); n += k
    if time.monotonic() > DEADLINE:
        break
t1 = time.perf_counter()
s.close()
out(bytes=n, sha256=h.hexdigest(), seconds=t1 - t0)
"""

#: Connects to P["host"]:P["port"] and sends P["size"] bytes of the cyclic
#: block (seed P["seed"]), shuts down writing, waits for the peer's EOF.
SENDER = _PROLOGUE + r"""
block = random.Random(P["seed"]).randbytes(P["block"])
h = hashlib.sha256(); left_ = P["size"]; view = memoryview(block)
while left_:
    k = min(left_, len(block)); h.update(view[:k]); left_ -= k
s = socket.create_connection((P["host"], P["port"]), timeout=left())
t0 = time.perf_counter()
left_ = P["size"]; chunk = 1 << 18; pos = 0
while left_:
    k = min(left_, chunk, len(block) - pos)
    s.sendall(view[pos:pos + k]); left_ -= k; pos = (pos + k) % len(block)
    if time.monotonic() > DEADLINE:
        break
s.shutdown(socket.SHUT_WR)
sent_at = time.perf_counter()
while s.recv(65536):
    pass
t1 = time.perf_counter()
s.close()
out(bytes=P["size"] - left_, sha256=h.hexdigest(), send_seconds=sent_at - t0, seconds=t1 - t0)
"""

#: A selectors echo server on P["host"]:P["port"] (the Linux reference for
#: the echo and connection cases). Runs until killed or the deadline.
ECHO_SERVER = _PROLOGUE + r"""
sel = selectors.DefaultSelector()
ls = socket.socket(FAMILY); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((P["host"], P["port"])); ls.listen(4096); ls.setblocking(False)
sel.register(ls, selectors.EVENT_READ, None)
pending = {}
out(ready=True)
while time.monotonic() < DEADLINE:
    for key, ev in sel.select(timeout=1.0):
        s = key.fileobj
        if s is ls:
            while True:
                try:
                    c, _ = ls.accept()
                except BlockingIOError:
                    break
                c.setblocking(False)
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(c, selectors.EVENT_READ, None)
            continue
        if ev & selectors.EVENT_WRITE:
            data = pending.pop(s, b"")
            try:
                k = s.send(data)
            except OSError:
                k = len(data)
            if k < len(data):
                pending[s] = data[k:]
            else:
                sel.modify(s, selectors.EVENT_READ)
            continue
        try:
            data = s.recv(65536)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            data = b""
        if not data:
            sel.unregister(s); s.close(); pending.pop(s, None)
            continue
        try:
            k = s.send(data)
        except BlockingIOError:
            k = 0
        except OSError:
            k = len(data)
        if k < len(data):
            # Back-pressure (bulk echo): read nothing more until this is out.
            pending[s] = data[k:]
            sel.modify(s, selectors.EVENT_WRITE)
"""

#: Bulk echo client: connects, sends P["size"] bytes of the cyclic block
#: (seed P["seed"]) from a thread, reads the echo at the same time in the main
#: thread (counting and hashing), half-closes after the last byte and reads to
#: EOF. Timed from the first byte sent to the echo's EOF.
BULK_ECHO_CLIENT = _PROLOGUE + r"""
block = random.Random(P["seed"]).randbytes(P["block"])
view = memoryview(block)
expected = hashlib.sha256(); left_ = P["size"]
while left_:
    k = min(left_, len(block)); expected.update(view[:k]); left_ -= k
s = socket.create_connection((P["host"], P["port"]), timeout=left())
s.settimeout(left())
sender = {}
def send():
    try:
        left_ = P["size"]; chunk = 1 << 18; pos = 0
        while left_:
            k = min(left_, chunk, len(block) - pos)
            s.sendall(view[pos:pos + k]); left_ -= k; pos = (pos + k) % len(block)
            if time.monotonic() > DEADLINE:
                break
        sender["sent"] = P["size"] - left_
        sender["send_seconds"] = time.perf_counter() - t0
        s.shutdown(socket.SHUT_WR)
    except Exception as exc:
        sender["send_error"] = repr(exc)
h = hashlib.sha256(); n = 0
buf = bytearray(1 << 18); bv = memoryview(buf)
t0 = time.perf_counter()
thread = threading.Thread(target=send); thread.start()
while True:
    k = s.recv_into(buf)
    if not k:
        break
    h.update(bv[:k]); n += k
    if time.monotonic() > DEADLINE:
        break
t1 = time.perf_counter()
thread.join(timeout=left())
s.close()
out(bytes=n, sha256=h.hexdigest(), expected_sha256=expected.hexdigest(), seconds=t1 - t0,
    **sender)
"""

#: Connects, then P["count"] round trips of P["size"] bytes (after
#: P["warmup"] untimed ones); prints the round-trip times' statistics.
RTT_CLIENT = _PROLOGUE + r"""
s = socket.create_connection((P["host"], P["port"]), timeout=left())
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg = (bytes(range(256)) * (P["size"] // 256 + 1))[:P["size"]]
def once():
    s.sendall(msg); got = 0
    while got < len(msg):
        k = len(s.recv(len(msg) - got))
        if not k:
            raise EOFError("echo server closed")
        got += k
for _ in range(P["warmup"]):
    once()
rtts = []
for _ in range(P["count"]):
    t0 = time.perf_counter(); once(); rtts.append(time.perf_counter() - t0)
    if time.monotonic() > DEADLINE:
        break
s.close()
rtts.sort()
out(count=len(rtts), median=rtts[len(rtts) // 2],
    p99=rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))], min=rtts[0], max=rtts[-1])
"""

#: P["parallel"] threads, each: connect, one P["size"]-byte echo, close; for
#: P["seconds"] or until P["max"] connections in all. Prints the rate.
CONNECT_CLIENT = _PROLOGUE + r"""
msg = b"x" * P["size"]
lock = threading.Lock(); counts = {"ok": 0, "errors": 0, "started": 0}; errors = {}
stop_at = time.monotonic() + P["seconds"]
def worker():
    while time.monotonic() < stop_at:
        with lock:
            if counts["started"] >= P["max"]:
                return
            counts["started"] += 1
        try:
            s = socket.socket(FAMILY)
            s.settimeout(5)
            s.connect((P["host"], P["port"]))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(msg); got = 0
            while got < len(msg):
                k = len(s.recv(len(msg) - got))
                if not k:
                    raise EOFError("closed early")
                got += k
            s.close()
            with lock:
                counts["ok"] += 1
        except Exception as exc:
            s.close()
            with lock:
                counts["errors"] += 1
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
t0 = time.perf_counter()
threads = [threading.Thread(target=worker) for _ in range(P["parallel"])]
for t in threads: t.start()
for t in threads: t.join(timeout=left())
t1 = time.perf_counter()
out(connections=counts["ok"], errors=counts["errors"], error_kinds=errors, seconds=t1 - t0,
    rate=counts["ok"] / (t1 - t0))
"""

#: Opens P["count"] connections (at most P["window"] handshakes at once) and
#: holds them; prints {"established": n}. On the stdin line "echo": one
#: 64-byte echo through every connection (at most P["echo_window"] at once;
#: 0: all at once), prints {"echoed": n}. On "close"
#: or EOF: closes them all and exits.
HOLD_CLIENT = _PROLOGUE + r"""
import resource
need = P["count"] + 1024
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < need:
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(need, hard)))
sel = selectors.DefaultSelector()
socks = []; pending = 0; started = 0; failed = 0; errors = {}
t0 = time.perf_counter()
while (started < P["count"] or pending) and time.monotonic() < DEADLINE:
    while started < P["count"] and pending < P["window"]:
        s = socket.socket(FAMILY); s.setblocking(False)
        started += 1
        err = s.connect_ex((P["host"], P["port"]))
        if err not in (0, 115):  # EINPROGRESS
            failed += 1; s.close(); errors[os.strerror(err)] = errors.get(os.strerror(err), 0) + 1
            continue
        sel.register(s, selectors.EVENT_WRITE); pending += 1
    for key, _ in sel.select(timeout=1.0):
        s = key.fileobj; sel.unregister(s); pending -= 1
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            failed += 1; s.close(); errors[os.strerror(err)] = errors.get(os.strerror(err), 0) + 1
        else:
            socks.append(s)
t1 = time.perf_counter()
out(established=len(socks), failed=failed, errors=errors, seconds=t1 - t0)
msg = bytes(range(64))
for line in sys.stdin:
    cmd = line.strip()
    if cmd != "echo":
        break
    # At most P["echo_window"] echoes in flight.
    sel = selectors.DefaultSelector()
    t0 = time.perf_counter(); sent = 0; echoed = 0; bad = 0; nxt = 0; inflight = 0
    window = P.get("echo_window") or len(socks)
    stop = time.monotonic() + P.get("echo_timeout", 60)
    while (nxt < len(socks) or inflight) and time.monotonic() < stop:
        while nxt < len(socks) and inflight < window:
            s = socks[nxt]; nxt += 1
            try:
                s.send(msg); sent += 1
            except OSError:
                bad += 1; continue
            sel.register(s, selectors.EVENT_READ, [b""]); inflight += 1
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(64 - len(key.data[0]))
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                bad += 1; sel.unregister(s); inflight -= 1; continue
            key.data[0] += data
            if len(key.data[0]) == 64:
                sel.unregister(s); inflight -= 1
                if key.data[0] == msg: echoed += 1
                else: bad += 1
    out(echoed=echoed, sent=sent, bad=bad, seconds=time.perf_counter() - t0)
for s in socks:
    s.close()
"""

#: Connects to P["host"]:P["port"] (a closed port: the answer is a RST) with
#: a timeout shorter than the kernel's first SYN retransmission (1 s), then
#: reads the namespace's TCP InCsumErrors (/proc/net/snmp): whether the
#: kernel took the peer's segments or dropped them for their checksums.
CHECKSUM_PROBE = _PROLOGUE + r"""
s = socket.socket(FAMILY); s.settimeout(P.get("timeout", 0.3))
try:
    s.connect((P["host"], P["port"])); outcome = "connected"
except ConnectionRefusedError:
    outcome = "refused"
except OSError as exc:
    outcome = type(exc).__name__
s.close()
lines = [l.split() for l in open("/proc/net/snmp") if l.startswith("Tcp:")]
csum = int(dict(zip(lines[0], lines[1])).get("InCsumErrors", 0))
out(outcome=outcome, tcp_in_csum_errors=csum)
"""


# ---------------------------------------------------------------------------
# Running snippets from Trio


class Peer:
    """A snippet running in a namespace; stdout read as JSON lines, stdin
    writable. Killed when its ``peer()`` context ends."""

    def __init__(self, process: trio.Process, what: str):
        self.process = process
        self.what = what
        self._buffer = b""

    async def read_json(self, timeout: float) -> dict:
        try:
            with trio.fail_after(timeout):
                while b"\n" not in self._buffer:
                    chunk = await self.process.stdout.receive_some(65536)
                    if not chunk:
                        code = await self.process.wait()
                        raise RuntimeError(f"{self.what} exited ({code}) early; output: "
                                           f"{self._buffer.decode(errors='replace')!r}")
                    self._buffer += chunk
        except trio.TooSlowError:
            raise TimeoutError(f"{self.what}: no output within {timeout} s") from None
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    async def send_line(self, line: str) -> None:
        await self.process.stdin.send_all(line.encode() + b"\n")

    async def close_stdin(self) -> None:
        await self.process.stdin.aclose()

    async def wait(self, timeout: float) -> int:
        with trio.fail_after(timeout):
            return await self.process.wait()


@asynccontextmanager
async def peer(ns, code: str, params: dict, *, stdin: bool = False):
    """Start snippet ``code`` with ``params`` inside ``ns``; kill it on exit.
    stderr is inherited (a snippet's traceback shows in the case's output)."""
    argv = ["ip", "netns", "exec", ns.name, sys.executable, "-u", "-c", code, json.dumps(params)]
    process = await trio.lowlevel.open_process(
        argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE)
    p = Peer(process, f"snippet in {ns.name}")
    try:
        yield p
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await process.wait()
        if process.stdin is not None:
            with trio.CancelScope(shield=True):
                await process.stdin.aclose()
        with trio.CancelScope(shield=True):
            await process.stdout.aclose()


async def run_peer(ns, code: str, params: dict, *, timeout: float) -> dict:
    """Run a snippet to completion; return its last JSON line."""
    async with peer(ns, code, params) as p:
        try:
            with trio.fail_after(timeout):
                out = b""
                while True:
                    chunk = await p.process.stdout.receive_some(65536)
                    if not chunk:
                        break
                    out += chunk
                code_ = await p.process.wait()
        except trio.TooSlowError:
            raise TimeoutError(f"snippet did not finish within {timeout} s") from None
    lines = out.decode(errors="replace").strip().splitlines()
    if code_ != 0 or not lines:
        raise RuntimeError(f"snippet exited {code_}; output: {out!r}")
    return json.loads(lines[-1])


def tune_namespace(ns) -> None:
    """Client-side sysctls for many short connections (per namespace, so
    nothing outside the namespace changes): a wide ephemeral port range."""
    ns.run("sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=10000 65000", check=False)


def enable_ipv6(ns, ifname: str, cidr: str) -> None:
    """Give the kernel IPv6 on ``ifname`` in ``ns`` with the address
    ``cidr`` ("fd77::1/64"). The netns helpers (``move_link``,
    ``link_namespaces``) turn IPv6 off on the links they set up, so it is
    turned on again here; the address skips duplicate address detection
    (``nodad``, RFC 4862 5.4 would hold it tentative for a second) so the
    case can start at once. Router advertisements stay ignored."""
    if hasattr(ns, "enable_ipv6"):  # the harness's own (tests/netns.py)
        ns.enable_ipv6(ifname)
    else:
        for key, value in (("accept_ra", 0), ("disable_ipv6", 0)):
            path = f"/proc/sys/net/ipv6/conf/{ifname}/{key}"
            ns.run(*ns.python(f"open({path!r}, 'w').write('{value}')"))
    ns.ip("-6", "addr", "add", cidr, "dev", ifname, "nodad")
