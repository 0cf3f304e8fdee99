"""Helpers for TCP tests with the Linux kernel as the peer.

``kernel_peer()`` runs a trionet stack on a TAP device it creates, moves the
TAP into a fresh namespace (tests/netns.py) where the kernel is 10.0.0.1/24,
and yields ``Peer(stack, ns, nursery)``; trionet is 10.0.0.2/24. On the way
out it cancels the nursery, closes the namespace and the stack, and checks
that the stack counted no internal error.

The kernel-side programs are the Python snippets below, run in the
namespace with ``ns.python(code)``; each prints one JSON object.
"""

from __future__ import annotations

import json
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

import trionet

try:
    from . import netns
except ImportError:
    import netns

KERNEL_IP = "10.0.0.1"
STACK_IP = "10.0.0.2"
ROOT = Path(__file__).resolve().parent.parent


@attrs.define
class Peer:
    stack: trionet.Stack
    ns: netns.NetNamespace
    nursery: trio.Nursery
    tap: str
    pcap: Path | None = None


@asynccontextmanager
async def kernel_peer(pcap: Path | None = None, *, offload: bool | None = None):
    """A stack at STACK_IP on a TAP whose other side, KERNEL_IP, is the
    kernel in a fresh namespace. ``pcap``: record every frame there.
    ``offload``: None for the TapLink's default (checksum offload and TSO
    where the kernel grants them); True to require them (the test is
    skipped where the kernel refuses), False for plain frames."""
    name = netns.unique_name("kt")
    link = trionet.TapLink(name) if offload is None else trionet.TapLink(name, offload=offload)
    if offload and not link.offload:
        await link.aclose()
        pytest.skip(f"the kernel refused the TAP offloads: {link.offload_error}")
    if pcap is not None:
        link = trionet.Capture(link, pcap)
    async with trionet.Stack() as stack:
        stack.add_interface(link, f"{STACK_IP}/24")
        with netns.NetNamespace.create("kt") as ns:
            ns.move_link(name, f"{KERNEL_IP}/24")
            async with trio.open_nursery() as nursery:
                yield Peer(stack, ns, nursery, name, pcap)
                nursery.cancel_scope.cancel()
    assert stack.stats["drop.internal.error"] == 0, stack.stats.drops()


async def echo_handler(stream: trionet.Stream) -> None:
    """The echo server handler the brief specifies."""
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def run_snippet(ns: netns.NetNamespace, code: str, *args, timeout: float) -> dict:
    """Run a snippet in ``ns`` to completion; its last stdout line, as JSON."""
    proc = await ns.run_async(*ns.python(code), *args, timeout=timeout, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise AssertionError(
            f"snippet exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return json.loads(lines[-1])


class Background:
    """A process running in a namespace whose stdout is read line by line."""

    def __init__(self, process: trio.Process):
        self.process = process
        self._buffer = b""

    async def read_line(self, timeout: float) -> str:
        with trio.fail_after(timeout):
            while b"\n" not in self._buffer:
                chunk = await self.process.stdout.receive_some(4096)
                if not chunk:
                    raise AssertionError(f"process exited early; output: {self._buffer!r}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace")

    async def read_json(self, timeout: float) -> dict:
        return json.loads(await self.read_line(timeout))

    async def finish(self, timeout: float) -> tuple[int, str]:
        """Wait for exit; return (code, the rest of stdout)."""
        with trio.fail_after(timeout):
            rest = self._buffer
            while True:
                chunk = await self.process.stdout.receive_some(65536)
                if not chunk:
                    break
                rest += chunk
            self._buffer = b""
            return await self.process.wait(), rest.decode(errors="replace")

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


@asynccontextmanager
async def background(ns: netns.NetNamespace, *argv, cwd: Path | None = None):
    """Start ``argv`` inside ``ns`` (stdout piped, stderr inherited); killed on exit."""
    process = await trio.lowlevel.open_process(
        ["ip", "netns", "exec", ns.name, *map(str, argv)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        cwd=str(cwd) if cwd is not None else None)
    bg = Background(process)
    try:
        yield bg
    finally:
        bg.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await process.wait()
        await process.stdout.aclose()


# ---------------------------------------------------------------------------
# Kernel-side snippets. argv after the code: see each one.

#: argv: host port nbytes. Sends nbytes of random data (a thread reads the
#: echo meanwhile), shuts down writing, reads to EOF.
ECHO_CLIENT = r"""
import hashlib, json, os, socket, sys, threading, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = os.urandom(n)
s = socket.create_connection((host, port), timeout=60)
start = time.monotonic()
received = []
def reader():
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        received.append(chunk)
t = threading.Thread(target=reader)
t.start()
s.sendall(data)
sent_at = time.monotonic()
s.shutdown(socket.SHUT_WR)
t.join()
elapsed = time.monotonic() - start
s.close()
back = b"".join(received)
print(json.dumps({"sent": len(data), "received": len(back),
                  "sent_sha": hashlib.sha256(data).hexdigest(),
                  "received_sha": hashlib.sha256(back).hexdigest(),
                  "send_seconds": sent_at - start, "seconds": elapsed}))
"""

#: argv: host port clients. Opens every connection at once (a barrier),
#: each sends its own message, half-closes and checks the echo.
MANY_CLIENTS = r"""
import json, socket, sys, threading
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
barrier = threading.Barrier(count)
results = [None] * count
def client(i):
    message = (f"client {i:03d} says hello; " * (1 + i % 7)).encode()
    try:
        s = socket.socket()
        s.settimeout(30)
        barrier.wait(timeout=30)
        s.connect((host, port))
        s.sendall(message)
        s.shutdown(socket.SHUT_WR)
        back = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            back += chunk
        s.close()
        results[i] = "ok" if back == message else f"mismatch {len(back)}/{len(message)}"
    except Exception as exc:
        results[i] = f"{type(exc).__name__}: {exc}"
threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"ok": results.count("ok"),
                  "errors": sorted({r for r in results if r != "ok"})}))
"""

#: argv: host port (IPv4 or IPv6). Connect and report what happened.
CONNECT = r"""
import json, socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.settimeout(10)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print(json.dumps({"result": "connected"}))
except ConnectionRefusedError as exc:
    print(json.dumps({"result": "refused", "errno": exc.errno}))
except OSError as exc:
    print(json.dumps({"result": type(exc).__name__, "errno": exc.errno}))
"""

#: argv: host reply_size seed. Listens (port printed as {"port": N}),
#: accepts one client, reads until EOF, sends random.Random(seed).randbytes
#: (reply_size) and closes; then prints what it received.
LISTENER = r"""
import hashlib, json, random, socket, sys
host, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
reply = random.Random(seed).randbytes(size)
srv = socket.socket()
srv.bind((host, 0))
srv.listen(1)
srv.settimeout(30)
print(json.dumps({"port": srv.getsockname()[1]}), flush=True)
conn, peer = srv.accept()
conn.settimeout(30)
request = b""
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    request += chunk
conn.sendall(reply)
conn.close()
print(json.dumps({"peer": list(peer), "request": len(request),
                  "request_sha": hashlib.sha256(request).hexdigest()}), flush=True)
"""

#: argv: host port. Sends, reads the echo, then closes with SO_LINGER 0
#: (an RST instead of a FIN).
RESET_CLIENT = r"""
import json, socket, struct, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
message = b"about to reset " * 100
s.sendall(message)
back = b""
while len(back) < len(message):
    chunk = s.recv(65536)
    if not chunk:
        break
    back += chunk
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print(json.dumps({"echoed": back == message}))
"""

#: argv: host port. A tiny receive buffer (set before connect, so the
#: window never shrinks); sends without reading until the send side has been
#: stuck for 0.3 s (the echo server is then blocked in send_all), then
#: resets (SO_LINGER 0).
RESET_WHILE_BLOCKED = r"""
import json, socket, struct, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.settimeout(10)
s.connect((sys.argv[1], int(sys.argv[2])))
s.setblocking(False)
chunk = b"y" * 65536
sent = 0
last = time.monotonic()
while sent < 8_000_000 and time.monotonic() - last < 0.3:
    try:
        sent += s.send(chunk)
        last = time.monotonic()
    except BlockingIOError:
        time.sleep(0.01)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print(json.dumps({"sent": sent}))
"""

#: argv: host port delay nbytes. A small receive buffer set before connect
#: (so the peer meets a zero window), sends "go" and half-closes, sleeps
#: ``delay`` seconds without reading, then reads to EOF.
SLOW_READER = r"""
import hashlib, json, socket, sys, time
host, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
s.settimeout(30)
s.connect((host, port))
s.sendall(b"go")
s.shutdown(socket.SHUT_WR)
time.sleep(delay)
back = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    back += chunk
print(json.dumps({"received": len(back), "sha": hashlib.sha256(back).hexdigest()}))
"""

#: argv: host. Listens (prints {"port": N}), accepts one client, reads
#: until it has 1000 bytes, then resets (SO_LINGER 0).
RESETTING_LISTENER = r"""
import json, socket, struct, sys
srv = socket.socket()
srv.bind((sys.argv[1], 0))
srv.listen(1)
srv.settimeout(30)
print(json.dumps({"port": srv.getsockname()[1]}), flush=True)
conn, peer = srv.accept()
conn.settimeout(30)
got = b""
while len(got) < 1000:
    chunk = conn.recv(65536)
    if not chunk:
        break
    got += chunk
conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
conn.close()
print(json.dumps({"got": len(got)}), flush=True)
"""

#: argv: host port. Sends 1000 bytes, then waits for what the server does.
SEND_THEN_WAIT = r"""
import json, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"z" * 1000)
try:
    data = s.recv(65536)
    print(json.dumps({"result": "eof" if not data else "data"}))
except ConnectionResetError as exc:
    print(json.dumps({"result": "reset", "errno": exc.errno}))
"""
