"""A SYN flood from spoofed addresses against trionet's echo server, with a
Linux client connecting through it (SYN cookies, RFC 4987 3.6).

The flood is 20,000 SYN frames written into the TAP from inside the test
namespace (an AF_PACKET socket bound to the TAP there), from random
addresses in 10.0.0.0/24 and other private ranges, with random MACs, as fast
as the sender goes: every frame stays on that TAP. The TAP's queue is made
long enough to hold the whole flood (txqueuelen), so trionet sees every SYN
and the Linux client's SYN waits behind them. Meanwhile a Linux client
connects and echoes 256 KB; the test checks it gets through, and that
trionet's connection table and SYN queue stay within their bounds and its
memory within FLOOD_RSS_BOUND. Real clock; needs root and /dev/net/tun.
"""

from __future__ import annotations

import json
import subprocess
import time

import trio

try:
    from . import netns
    from .kernel_tcp_support import STACK_IP, echo_handler, kernel_peer, run_snippet
except ImportError:
    import netns
    from kernel_tcp_support import STACK_IP, echo_handler, kernel_peer, run_snippet

pytestmark = netns.KERNEL_PEER

ECHO_PORT = 7
FLOOD_SYNS = 20_000
#: RSS growth allowed during the flood: the SYN queue full of handshakes
#: (about 10 KB each: 4096 are some 40 MB) plus the flood's transient
#: garbage. README "Bounds" documents it.
FLOOD_RSS_BOUND = 100 << 20

#: argv: ifname dst_mac dst_ip dst_port count seed. Builds ``count`` SYN
#: frames from random private sources, sends them on an AF_PACKET socket
#: bound to ``ifname`` as fast as it can (waiting only when the kernel
#: says ENOBUFS), printing {"sent": 2000} on the way and a summary at the end.
FLOOD = r"""
import errno, json, random, socket, struct, sys, time
ifname, dst_mac, dst_ip, dport = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3], int(sys.argv[4])
count, seed = int(sys.argv[5]), int(sys.argv[6])
rng = random.Random(seed)
dst = socket.inet_aton(dst_ip)

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def source():
    r = rng.random()
    if r < 0.7:   # on the TAP's own network, never its two real hosts
        return bytes((10, 0, 0, rng.randrange(3, 255)))
    if r < 0.8:
        return bytes((10, rng.randrange(1, 255), rng.randrange(256), rng.randrange(1, 255)))
    if r < 0.9:
        return bytes((172, rng.randrange(16, 32), rng.randrange(256), rng.randrange(1, 255)))
    return bytes((192, 168, rng.randrange(256), rng.randrange(1, 255)))

frames = []
for i in range(count):
    src = source()
    mac = bytes(((rng.randrange(256) & 0xFC) | 0x02,)) + rng.randbytes(5)
    # SYN with Linux's options: MSS 1460, SACK-permitted, timestamps, NOP, WS 7.
    opts = struct.pack("!BBHBBBBII", 2, 4, 1460, 4, 2, 8, 10, rng.getrandbits(32), 0) + b"\x01\x03\x03\x07"
    tcp = struct.pack("!HHIIBBHHH", rng.randrange(1024, 65536), dport, rng.getrandbits(32), 0,
                      (20 + len(opts)) // 4 << 4, 0x02, 64240, 0, 0) + opts
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xFFFF, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    frames.append(dst_mac + mac + b"\x08\x00" + ip + tcp)

sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((ifname, 0))
print(json.dumps({"built": len(frames)}), flush=True)
waits = 0
start = time.monotonic()
for i, frame in enumerate(frames):
    while True:
        try:
            sock.send(frame)
            break
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            waits += 1
            time.sleep(0.0002)
    if i + 1 == 2000:
        print(json.dumps({"sent": i + 1}), flush=True)
elapsed = time.monotonic() - start
print(json.dumps({"sent": len(frames), "seconds": elapsed, "enobufs_waits": waits}), flush=True)
"""

#: argv: host port nbytes. Times the connect, then echoes nbytes.
TIMED_ECHO_CLIENT = r"""
import hashlib, json, os, socket, sys, threading, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = os.urandom(n)
start = time.monotonic()
s = socket.create_connection((host, port), timeout=30)
connected = time.monotonic()
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
s.shutdown(socket.SHUT_WR)
t.join()
back = b"".join(received)
print(json.dumps({"connect_seconds": connected - start, "seconds": time.monotonic() - start,
                  "ok": back == data, "received": len(back)}))
"""


def _syn_retransmits(ns) -> int:
    """The namespace kernel's TCPSynRetrans counter (/proc/net/netstat)."""
    lines = ns.run("cat", "/proc/net/netstat").stdout.splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table.get("TCPSynRetrans", -1))
    return -1


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def test_linux_client_connects_through_a_syn_flood():
    with trio.fail_after(60):
        async with kernel_peer() as peer:
            stack = peer.stack
            (listener,) = await peer.nursery.start(stack.serve_tcp, echo_handler, ECHO_PORT)
            # Warm up: ARP both ways, a first echo.
            warm = await run_snippet(peer.ns, TIMED_ECHO_CLIENT, STACK_IP, ECHO_PORT, 1000,
                                     timeout=20)
            assert warm["ok"], warm
            # Room for the whole flood in the TAP's queue (kernel side).
            peer.ns.ip("link", "set", "dev", peer.tap, "txqueuelen", FLOOD_SYNS + 5000)
            mac = stack.interfaces[0].mac.hex()
            rss_before = _rss()
            samples = {"embryos": 0, "connections": 0, "rss": rss_before}
            rx_before = stack.stats["tcp.rx"]
            progress = []  # (time, SYNs processed)

            async def monitor():
                while True:
                    samples["embryos"] = max(samples["embryos"], listener.embryos)
                    samples["connections"] = max(samples["connections"],
                                                 len(stack.tcp.connections))
                    samples["rss"] = max(samples["rss"], _rss())
                    progress.append((time.monotonic(), stack.stats["tcp.rx"] - rx_before))
                    await trio.sleep(0.01)

            peer.nursery.start_soon(monitor)
            process = await trio.lowlevel.open_process(
                ["ip", "netns", "exec", peer.ns.name, *peer.ns.python(FLOOD), peer.tap, mac,
                 STACK_IP, str(ECHO_PORT), str(FLOOD_SYNS), "1"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            try:
                lines = []
                buffer = b""

                async def next_line():
                    nonlocal buffer
                    while b"\n" not in buffer:
                        chunk = await process.stdout.receive_some(4096)
                        assert chunk, f"flood exited early: {buffer!r}"
                        buffer += chunk
                    line, buffer = buffer.split(b"\n", 1)
                    lines.append(json.loads(line))
                    return lines[-1]

                assert (await next_line())["built"] == FLOOD_SYNS
                assert (await next_line())["sent"] == 2000
                # The flood is on: a Linux client connects and echoes.
                client = await run_snippet(peer.ns, TIMED_ECHO_CLIENT, STACK_IP, ECHO_PORT,
                                           256 * 1024, timeout=40)
                flood = await next_line()
                assert flood["sent"] == FLOOD_SYNS
                await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
                    with trio.CancelScope(shield=True):
                        await process.wait()
                await process.stdout.aclose()
            # trionet works through what is queued.
            while stack.stats["tcp.rx"] - rx_before < FLOOD_SYNS:
                await trio.sleep(0.05)
            await trio.sleep(0.05)
            assert client["ok"], client
            syn_retrans = _syn_retransmits(peer.ns)
            # And a client after the flood too.
            after = await run_snippet(peer.ns, TIMED_ECHO_CLIENT, STACK_IP, ECHO_PORT, 65536,
                                      timeout=20)
            assert after["ok"], after
            stats = stack.stats
            # Bounds held: the SYN queue, the connection table, memory.
            assert samples["embryos"] <= listener.syn_backlog
            assert samples["connections"] <= listener.syn_backlog + 4
            assert samples["connections"] <= stack.tcp.max_connections
            growth = samples["rss"] - rss_before
            assert growth < FLOOD_RSS_BOUND, growth
            assert stats["tcp.syncookies_sent"] > 0
            assert stats["drop.internal.error"] == 0
            first = next(t for t, n in progress if n > 0)
            last = next(t for t, n in progress if n >= FLOOD_SYNS)
            print(f"\nflood: {FLOOD_SYNS} SYNs sent in {flood['seconds']:.2f} s "
                  f"({FLOOD_SYNS / flood['seconds']:.0f}/s, ENOBUFS waits "
                  f"{flood['enobufs_waits']}); trionet absorbed them in "
                  f"{last - first:.2f} s (~{FLOOD_SYNS / max(last - first, 1e-3):.0f} SYNs/s)")
            print(f"cookies sent {stats['tcp.syncookies_sent']}, cookies ok "
                  f"{stats['tcp.syncookies_ok']}, passive opens {stats['tcp.passive_opens']}, "
                  f"no route {stats['drop.tcp.no_route']}; max embryos {samples['embryos']} "
                  f"(bound {listener.syn_backlog}), max connections {samples['connections']}")
            print(f"Linux client during the flood: connect {client['connect_seconds']:.3f} s "
                  f"(SYN retransmissions: {syn_retrans}), echo 256 KB done in "
                  f"{client['seconds']:.3f} s; after: connect {after['connect_seconds']:.3f} s")
            print(f"RSS growth {growth / 2**20:.1f} MiB (bound {FLOOD_RSS_BOUND >> 20} MiB)")
