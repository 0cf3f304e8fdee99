"""trionet against the Linux kernel with and without TAP offloads (issue 4,
section 4): every check runs on ``TapLink(name, offload=False)`` and on
``TapLink(name, offload=True)`` (IFF_VNET_HDR, checksum offload, TSO both
ways). Real clock; root and /dev/net/tun; a fresh namespace per test, the
kernel at 10.0.0.1/24 and trionet at 10.0.0.2/24."""

from __future__ import annotations

import hashlib
import io
import random
from contextlib import asynccontextmanager

import pytest
import trio

import trionet
from trionet.link import read_pcap

try:
    from . import netns
    from .kernel_tcp_support import ECHO_CLIENT, KERNEL_IP, STACK_IP, echo_handler, \
        run_snippet, background
except ImportError:
    import netns
    from kernel_tcp_support import ECHO_CLIENT, KERNEL_IP, STACK_IP, echo_handler, \
        run_snippet, background

pytestmark = netns.KERNEL_PEER

MB = 1 << 20
OFFLOAD = pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])


@asynccontextmanager
async def offload_peer(offload: bool, *, pcap=None):
    """(stack, ns, nursery, link): trionet on a TAP opened with ``offload``,
    the kernel on its other side in a fresh namespace."""
    name = netns.unique_name("ko")
    link = trionet.TapLink(name, offload=offload)
    assert link.offload is offload, link.offload_error
    outer = trionet.Capture(link, pcap) if pcap is not None else link
    async with trionet.Stack() as stack:
        stack.add_interface(outer, f"{STACK_IP}/24")
        with netns.NetNamespace.create("ko") as ns:
            ns.move_link(name, f"{KERNEL_IP}/24")
            async with trio.open_nursery() as nursery:
                yield stack, ns, nursery, link
                nursery.cancel_scope.cancel()
    assert stack.stats["drop.internal.error"] == 0, stack.stats.drops()
    # Neither side's checksums may be wrong: the stack verifies on a plain
    # TAP, the link on an offload one (where the kernel did not vouch).
    assert not any("checksum" in k for k in stack.stats.drops()), stack.stats.drops()
    assert link.stats["rx_dropped_checksum"] == 0


def report(what: str, offload: bool, nbytes: int, seconds: float) -> None:
    print(f"\n{what} ({'offload' if offload else 'plain'}): {nbytes / MB:.0f} MB in "
          f"{seconds:.2f} s, {nbytes / MB / seconds:.1f} MB/s")


# --- ping --------------------------------------------------------------------


@OFFLOAD
async def test_ping_both_ways(offload):
    with trio.fail_after(40):
        async with offload_peer(offload) as (stack, ns, nursery, link):
            for size in (56, 1472, 4000):  # 4000: fragmented both ways
                result = await netns.kernel_ping(ns, STACK_IP, count=3, size=size, interval=0.05)
                assert result.received == 3, (size, result)
            for size in (0, 56, 4000):
                assert await stack.ping(KERNEL_IP, size=size, timeout=2) > 0


# --- UDP echo ------------------------------------------------------------------

UDP_CLIENT = r"""
import json, os, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
sizes = [0, 1, 100, 1472, 1473, 8000, 30000, 65507]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
ok = []
for size in sizes:
    data = os.urandom(size)
    for attempt in range(3):
        s.sendto(data, (host, port))
        try:
            back, _ = s.recvfrom(65535)
        except socket.timeout:
            continue
        ok.append(back == data)
        break
    else:
        ok.append(False)
print(json.dumps({"ok": ok}))
"""


@OFFLOAD
async def test_udp_echo(offload):
    with trio.fail_after(60):
        async with offload_peer(offload) as (stack, ns, nursery, link):
            sock = await stack.open_udp_socket(7)

            async def echo():
                while True:
                    data, address = await sock.recvfrom()
                    await sock.sendto(data, address)

            nursery.start_soon(echo)
            result = await run_snippet(ns, UDP_CLIENT, STACK_IP, 7, timeout=50)
            assert result == {"ok": [True] * 8}


# --- TCP: echo, and bulk each way ----------------------------------------------------


@OFFLOAD
async def test_linux_client_echoes_10mb(offload):
    nbytes = 10 * MB
    with trio.fail_after(120):
        async with offload_peer(offload) as (stack, ns, nursery, link):
            await nursery.start(stack.serve_tcp, echo_handler, 7)
            result = await run_snippet(ns, ECHO_CLIENT, STACK_IP, 7, nbytes, timeout=110)
    assert result["sent"] == result["received"] == nbytes
    assert result["received_sha"] == result["sent_sha"]
    report("echo, each way", offload, nbytes, result["seconds"])
    if offload:
        assert link.stats["rx_gso_frames"] > 0 and link.stats["tx_gso_frames"] > 0


#: argv: host port nbytes seed. Sends seeded random bytes, half-closes,
#: waits for the server's close; prints the timing.
BULK_SENDER = r"""
import json, random, socket, sys, time
host, port, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = random.Random(seed).randbytes(n)
s = socket.create_connection((host, port), timeout=60)
start = time.monotonic()
s.sendall(data)
s.shutdown(socket.SHUT_WR)
while s.recv(65536):
    pass
print(json.dumps({"seconds": time.monotonic() - start}))
"""


@OFFLOAD
async def test_linux_to_trionet_bulk(offload):
    nbytes, seed = 20 * MB, 5
    digest = {}
    with trio.fail_after(120):
        async with offload_peer(offload) as (stack, ns, nursery, link):
            async def sink(stream):
                async with stream:
                    h = hashlib.sha256()
                    count = 0
                    async for chunk in stream:
                        h.update(chunk)
                        count += len(chunk)
                    digest["count"], digest["sha"] = count, h.hexdigest()

            await nursery.start(stack.serve_tcp, sink, 9)
            result = await run_snippet(ns, BULK_SENDER, STACK_IP, 9, nbytes, seed, timeout=110)
    expected = hashlib.sha256(random.Random(seed).randbytes(nbytes)).hexdigest()
    assert digest == {"count": nbytes, "sha": expected}
    report("Linux -> trionet", offload, nbytes, result["seconds"])
    if offload:
        assert link.stats["rx_gso_frames"] > 0  # the kernel's TSO frames, up to 64 KB


#: argv: host. Listens (prints {"port": N}), accepts one client, hashes
#: what it reads until EOF, closes; prints the count, hash and timing.
BULK_SINK = r"""
import hashlib, json, socket, sys, time
srv = socket.socket()
srv.bind((sys.argv[1], 0))
srv.listen(1)
srv.settimeout(30)
print(json.dumps({"port": srv.getsockname()[1]}), flush=True)
conn, _ = srv.accept()
conn.settimeout(30)
h, n, start = hashlib.sha256(), 0, None
while True:
    chunk = conn.recv(1 << 20)
    if start is None:
        start = time.monotonic()
    if not chunk:
        break
    h.update(chunk)
    n += len(chunk)
seconds = time.monotonic() - start
conn.close()
print(json.dumps({"bytes": n, "sha": h.hexdigest(), "seconds": seconds}), flush=True)
"""


@OFFLOAD
async def test_trionet_to_linux_bulk(offload):
    nbytes = 20 * MB
    data = random.Random(6).randbytes(nbytes)
    view = memoryview(data)
    with trio.fail_after(120):
        async with offload_peer(offload) as (stack, ns, nursery, link):
            async with background(ns, *ns.python(BULK_SINK), KERNEL_IP) as sink:
                port = (await sink.read_json(20))["port"]
                async with await stack.open_tcp_stream(KERNEL_IP, port) as stream:
                    for at in range(0, nbytes, 1 << 18):
                        await stream.send_all(view[at:at + (1 << 18)])
                    await stream.send_eof()
                    async for _ in stream:
                        pass
                result = await sink.read_json(60)
    assert result["bytes"] == nbytes
    assert result["sha"] == hashlib.sha256(data).hexdigest()
    report("trionet -> Linux", offload, nbytes, result["seconds"])
    if offload:
        assert link.stats["tx_gso_frames"] > 0
        assert stack.stats["tcp.tx_coalesced"] >= stack.stats["ipv4.tx_gso"] > 0


async def test_capture_on_an_offload_tap_records_the_large_frames():
    pcap = io.BytesIO()
    data = random.Random(7).randbytes(MB)
    with trio.fail_after(60):
        async with offload_peer(True, pcap=pcap) as (stack, ns, nursery, link):
            await nursery.start(stack.serve_tcp, echo_handler, 7)
            result = await run_snippet(ns, ECHO_CLIENT, STACK_IP, 7, len(data), timeout=50)
            assert result["received_sha"] == result["sent_sha"]
    frames = [f for _, f in read_pcap(pcap.getvalue())]
    assert max(len(f) for f in frames) > 1514
    assert link.stats["tx_gso_frames"] > 0


@OFFLOAD
async def test_through_the_kernel_as_a_router_to_a_plain_tap(offload):
    """trionet A (TAP opened with ``offload``) <-> the kernel forwarding <->
    trionet B (a plain TAP, which verifies every checksum). The kernel must
    complete A's partial checksums and cut A's GSO segments down to the
    plain TAP's MTU: B sees only whole, correct 1500-byte frames. B's frames
    reach A as the kernel's forwarded (checked, maybe GRO'd) ones."""
    up = random.Random(8).randbytes(8 * MB)
    down = random.Random(9).randbytes(8 * MB)
    name_a, name_b = netns.unique_name("ra"), netns.unique_name("rb")
    link_a = trionet.TapLink(name_a, offload=offload)
    link_b = trionet.TapLink(name_b, offload=False)
    got = {}
    with trio.fail_after(90):
        async with trionet.Stack() as a, trionet.Stack() as b:
            a.add_interface(link_a, "10.0.0.2/24", gateway="10.0.0.1")
            b.add_interface(link_b, "10.1.0.2/24", gateway="10.1.0.1")
            with netns.NetNamespace.create("kr") as ns:
                ns.move_link(name_a, "10.0.0.1/24")
                ns.move_link(name_b, "10.1.0.1/24")
                ns.run(*ns.python("open('/proc/sys/net/ipv4/ip_forward', 'w').write('1')"))

                async def serve(stream):
                    async with stream:
                        chunks = []
                        async for chunk in stream:
                            chunks.append(chunk)
                        got["up"] = b"".join(chunks)
                        await stream.send_all(down)

                async with trio.open_nursery() as nursery:
                    await nursery.start(b.serve_tcp, serve, 80)
                    async with await a.open_tcp_stream("10.1.0.2", 80) as stream:
                        await stream.send_all(up)
                        await stream.send_eof()
                        chunks = []
                        async for chunk in stream:
                            chunks.append(chunk)
                        got["down"] = b"".join(chunks)
                    assert await a.ping("10.1.0.2", size=3000, timeout=2) > 0
                    nursery.cancel_scope.cancel()
    assert got["up"] == up and got["down"] == down
    for stack in (a, b):
        assert stack.stats["drop.internal.error"] == 0, stack.stats.drops()
        assert not any("checksum" in k for k in stack.stats.drops()), stack.stats.drops()
    assert link_b.stats["rx_dropped_oversize"] == 0
    if offload:
        assert link_a.stats["tx_gso_frames"] > 0
        # The kernel cut them: B received many more segments than A wrote.
        assert b.stats["tcp.rx"] > 4 * link_a.stats["tx_gso_frames"]
