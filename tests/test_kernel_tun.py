"""The stack on a TUN (bare IP packets, no ARP or neighbour discovery)
with the Linux kernel as the peer, in a namespace each test makes: Linux
pings the stack over IPv4 and IPv6 and runs a TCP echo through it, in
process and with examples/echo_server.py --tun. Real clock; needs root and
/dev/net/tun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import trionet

try:
    from . import netns
    from .test_kernel_ipv4 import _read_line_with
except ImportError:
    import netns
    from test_kernel_ipv4 import _read_line_with

pytestmark = netns.KERNEL_PEER

ROOT = Path(__file__).resolve().parent.parent
SERVER = [sys.executable, "-u", str(ROOT / "examples" / "echo_server.py")]
KERNEL4, STACK4 = "10.96.0.1", "10.96.0.2"
KERNEL6, STACK6 = "fd00:96::1", "fd00:96::2"

# Runs in the namespace: a TCP echo exchange with argv[1]:argv[2] (argv[3]
# bytes, then a half-close), and a UDP one; prints what came back as JSON.
CLIENT = r"""
import json, socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
data = bytes((i * 7) & 0xFF for i in range(size))
s = socket.create_connection((host, port), timeout=10)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
u = socket.socket(family, socket.SOCK_DGRAM)
u.settimeout(2)
udp = False
for attempt in range(3):
    u.sendto(b"datagram", (host, port))
    try:
        udp = u.recvfrom(100)[0] == b"datagram"
        break
    except socket.timeout:
        pass
print(json.dumps({"tcp": got == data, "received": len(got), "udp": udp}))
"""


def configure_kernel_side(ns: netns.NetNamespace, tun: str) -> None:
    """Move ``tun`` into ``ns`` with the kernel's addresses of both
    families (IPv6 on: the kernel's MLD and solicitations reach the stack,
    which drops them, counted)."""
    subprocess.run(["ip", "link", "set", "dev", tun, "netns", ns.name], check=True, timeout=10)
    ns.ip("addr", "add", f"{KERNEL4}/24", "dev", tun)
    ns.ip("-6", "addr", "add", f"{KERNEL6}/64", "dev", tun, "nodad")
    ns.ip("link", "set", "dev", tun, "up")


async def echo(stream: trionet.Stream) -> None:
    async with stream:
        try:
            async for data in stream:
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass


async def udp_echo(sock) -> None:
    while True:
        data, peer = await sock.recvfrom()
        try:
            await sock.sendto(data, peer)
        except OSError:
            pass


async def check_from_kernel(ns: netns.NetNamespace) -> None:
    for host in (STACK4, STACK6):
        result = await netns.kernel_ping(ns, host, count=5, interval=0.05)
        assert (result.sent, result.received) == (5, 5), (host, result)
        proc = await ns.run_async(*ns.python(CLIENT), host, 7, 200_000, timeout=60)
        outcome = json.loads(proc.stdout)
        assert outcome == {"tcp": True, "received": 200_000, "udp": True}, (host, outcome)


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
async def test_kernel_pings_and_tcp_echo_over_a_tun(tmp_path, offload):
    """Both ways: a plain TUN, and one with the virtio-net header, checksum
    offload and TSO (the default), where the kernel's TCP hands the stack
    GSO packets and takes the stack's."""
    tun = netns.unique_name("ku")
    pcap = tmp_path / "tun.pcap"
    tun_link = trionet.TunLink(tun, offload=offload)
    assert tun_link.offload is offload, tun_link.offload_error
    link = trionet.Capture(tun_link, pcap)
    with trio.fail_after(90):
        async with trionet.Stack(seed=12) as stack, trio.open_nursery() as nursery:
            iface = stack.add_interface(link, f"{STACK4}/24")
            iface.add_address(f"{STACK6}/64")
            await nursery.start(stack.serve_tcp, echo, 7)
            nursery.start_soon(udp_echo, await stack.open_udp_socket(7))
            with netns.NetNamespace.create("ku") as ns:
                configure_kernel_side(ns, tun)
                await check_from_kernel(ns)
                # And the stack pings the kernel, both families; 4000 bytes
                # go fragmented both ways.
                await stack.ping(KERNEL4, timeout=2)
                await stack.ping(KERNEL6, timeout=2)
                await stack.ping(KERNEL4, size=4000, timeout=2)
                await stack.ping(KERNEL6, size=4000, timeout=2)
            nursery.cancel_scope.cancel()
        stats = stack.stats
        assert stats["tun.rx"] > 0 and stats["ethernet.rx"] == 0
        assert stats["arp.tx_request"] == 0 and stats["drop.internal.error"] == 0
        assert stats["ipv4.reassembled"] >= 1 and stats["ipv6.reassembled"] >= 1
        assert not any("checksum" in k for k in stats.drops()), stats.drops()
        assert tun_link.stats["rx_dropped_checksum"] == 0
        if offload:
            # 200 KB each way, both families: large segments came and went.
            assert tun_link.stats["rx_gso_frames"] > 0, tun_link.stats
            assert tun_link.stats["tx_gso_frames"] > 0, tun_link.stats
    with open(pcap, "rb") as f:
        assert struct.unpack_from("<I", f.read(24), 20)[0] == 101  # LINKTYPE_RAW
    if shutil.which("tcpdump") is None:
        return
    out = subprocess.run(["tcpdump", "-r", str(pcap), "-nn"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert f"{KERNEL4} > {STACK4}: ICMP echo request" in out.stdout
    assert f"{STACK6} > {KERNEL6}: ICMP6, echo reply" in out.stdout


async def test_echo_server_example_over_a_tun():
    tun = netns.unique_name("ke")
    subprocess.run(["ip", "tuntap", "add", tun, "mode", "tun"], check=True, timeout=10)
    try:
        with trio.fail_after(120):
            with netns.NetNamespace.create("ke") as ns:
                proc = await trio.lowlevel.open_process(
                    [*SERVER, "--tun", tun, "--address", f"{STACK4}/24",
                     "--address", f"{STACK6}/64"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(ROOT),
                    env={**os.environ, "PYTHONPATH": str(ROOT)})
                try:
                    line = await _read_line_with(proc.stdout, "ready", 30)
                    assert f"on {tun}" in line and STACK6 in line
                    configure_kernel_side(ns, tun)
                    await check_from_kernel(ns)
                    proc.send_signal(signal.SIGTERM)
                    with trio.fail_after(15):
                        code = await proc.wait()
                    assert code == 0
                finally:
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
                    ns.ip("link", "del", tun, check=False)
    finally:
        if subprocess.run(["ip", "link", "show", tun], capture_output=True).returncode == 0:
            subprocess.run(["ip", "link", "del", tun], capture_output=True, timeout=10)


def test_examples_refuse_tap_and_tun_together():
    for example in ("echo_server.py", "webget.py"):
        proc = subprocess.run([sys.executable, str(ROOT / "examples" / example), "--tap", "a",
                               "--tun", "b", "--address", "10.0.0.2/24", "http://x/"],
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 2 and "not allowed with argument" in proc.stderr, proc.stderr
