"""The stack's IPv4, ICMP and UDP against the Linux kernel as the peer.

The stack runs in this process on a TAP device that is then moved into a
fresh network namespace (tests/netns.py) where the kernel has 10.0.0.1/24;
the stack is 10.0.0.2/24. Real clock; needs root and /dev/net/tun.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import trionet

try:
    from . import netns
except ImportError:
    import netns

pytestmark = netns.KERNEL_PEER

KERNEL_IP = "10.0.0.1"
STACK_IP = "10.0.0.2"
ROOT = Path(__file__).resolve().parent.parent
SERVER = [sys.executable, "-u", str(ROOT / "examples" / "echo_server.py")]

# Runs in the namespace: sends each message to argv[1]:argv[2] and prints
# what came back (hex), one JSON list.
UDP_CLIENT = r"""
import json, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
sizes = [int(n) for n in sys.argv[3].split(",")]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
results = []
for i, size in enumerate(sizes):
    message = bytes((i + j) & 0xFF for j in range(size))
    for attempt in range(3):
        s.sendto(message, (host, port))
        try:
            data, peer = s.recvfrom(65535)
        except socket.timeout:
            continue
        results.append({"size": size, "ok": data == message, "peer": list(peer)})
        break
    else:
        results.append({"size": size, "ok": False, "peer": None})
print(json.dumps(results))
"""

# A connected UDP socket learns of the port unreachable on its next call.
UDP_REFUSED = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
s.settimeout(3.0)
s.send(b"anyone there?")
try:
    s.recv(100)
    print("answered")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
"""


async def udp_echo(sock) -> None:
    while True:
        data, peer = await sock.recvfrom()
        try:
            await sock.sendto(data, peer)
        except OSError:
            pass


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
async def test_kernel_peer_ipv4_icmp_udp(tmp_path, offload):
    name = netns.unique_name("tk")
    pcap = tmp_path / "session.pcap"
    tap = trionet.TapLink(name, offload=offload)
    assert tap.offload is offload, tap.offload_error
    link = trionet.Capture(tap, pcap)
    with trio.fail_after(90):
        async with trionet.Stack() as stack, trio.open_nursery() as nursery:
            stack.add_interface(link, f"{STACK_IP}/24")
            echo_sock = await stack.open_udp_socket(7)
            nursery.start_soon(udp_echo, echo_sock)
            with netns.NetNamespace.create() as ns:
                ns.move_link(name, f"{KERNEL_IP}/24")

                result = await netns.kernel_ping(ns, STACK_IP, count=5, interval=0.1)
                assert (result.sent, result.received) == (5, 5), result

                # 4000 data bytes: fragmented by the kernel and by the stack.
                result = await netns.kernel_ping(ns, STACK_IP, count=3, size=4000, interval=0.1)
                assert (result.sent, result.received) == (3, 3), result
                assert stack.stats["ipv4.reassembled"] >= 3
                assert stack.stats["ipv4.tx_fragments"] >= 9

                # The stack pings the kernel, small and fragmented.
                rtt = await stack.ping(KERNEL_IP, timeout=2)
                assert 0 < rtt < 2
                await stack.ping(KERNEL_IP, size=4000, timeout=2)

                # UDP echo for a kernel client, one datagram over the MTU.
                proc = await ns.run_async(*ns.python(UDP_CLIENT), STACK_IP, 7, "0,1,100,1472,3000",
                                          timeout=30)
                results = json.loads(proc.stdout)
                assert [r["ok"] for r in results] == [True] * 5, results
                assert all(r["peer"] == [STACK_IP, 7] for r in results)

                # A closed port: ICMP port unreachable, ECONNREFUSED in the kernel.
                proc = await ns.run_async(*ns.python(UDP_REFUSED), STACK_IP, 9, timeout=30)
                assert proc.stdout.strip() == "refused"
                assert stack.stats["drop.udp.no_socket"] >= 1
                assert stack.stats["icmp.tx_error"] >= 1
            nursery.cancel_scope.cancel()
        assert stack.stats["drop.internal.error"] == 0, stack.stats.drops()

    frames = trionet.link.read_pcap(pcap)
    assert len(frames) > 20
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is missing: pcap written but not read back")
    out = subprocess.run(["tcpdump", "-r", str(pcap), "-nn"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert f"{KERNEL_IP} > {STACK_IP}: ICMP echo request" in out.stdout
    assert f"{STACK_IP} > {KERNEL_IP}: ICMP echo reply" in out.stdout
    assert f"{STACK_IP} > {KERNEL_IP}: ICMP echo request" in out.stdout
    assert "udp port 9 unreachable" in out.stdout


async def test_kernel_unreachable_host_and_port(tmp_path):
    """ARP for an absent neighbour fails after ~3 s (EHOSTUNREACH); the
    kernel's port unreachable reaches nothing fatal in the stack."""
    name = netns.unique_name("tk")
    with trio.fail_after(60):
        async with trionet.Stack() as stack:
            stack.add_interface(trionet.TapLink(name), f"{STACK_IP}/24")
            with netns.NetNamespace.create() as ns:
                ns.move_link(name, f"{KERNEL_IP}/24")
                start = trio.current_time()
                with pytest.raises(OSError) as info:
                    await stack.ping("10.0.0.77", timeout=10)
                assert info.value.errno == 113  # EHOSTUNREACH
                assert 2.5 < trio.current_time() - start < 5
                sock = await stack.open_udp_socket()
                await sock.sendto(b"to a closed kernel port", (KERNEL_IP, 9))
                with trio.move_on_after(1):
                    while stack.stats["icmp.rx_error"] == 0:
                        await trio.sleep(0.05)
                assert stack.stats["icmp.rx_error"] == 1
                await stack.ping(KERNEL_IP, timeout=2)
        assert stack.stats["drop.internal.error"] == 0, stack.stats.drops()


async def _read_line_with(stream, word: str, seconds: float) -> str:
    buffer = b""
    with trio.fail_after(seconds):
        while True:
            chunk = await stream.receive_some(4096)
            if not chunk:
                raise AssertionError(f"server exited before printing {word!r}: {buffer!r}")
            buffer += chunk
            for line in buffer.decode(errors="replace").splitlines():
                if word in line:
                    return line


@pytest.mark.skipif(not hasattr(trionet, "Stream"),
                    reason="examples/echo_server.py needs trionet.Stream, not exported yet")
async def test_echo_server_example(tmp_path):
    tap = netns.unique_name("te")
    pcap = tmp_path / "server.pcap"
    subprocess.run(["ip", "tuntap", "add", tap, "mode", "tap"], check=True, timeout=10)
    try:
        with trio.fail_after(120):
            with netns.NetNamespace.create() as ns:
                proc = await trio.lowlevel.open_process(
                    [*SERVER, "--tap", tap,
                     "--address", f"{STACK_IP}/24", "--pcap", str(pcap)],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(ROOT),
                    env={**os.environ, "PYTHONPATH": str(ROOT)})
                try:
                    await _read_line_with(proc.stdout, "ready", 30)
                    ns.move_link(tap, f"{KERNEL_IP}/24")
                    result = await netns.kernel_ping(ns, STACK_IP, count=20, interval=0.05)
                    assert (result.sent, result.received) == (20, 20), result
                    out = await ns.run_async(*ns.python(UDP_CLIENT), STACK_IP, 7, "5,1000,2500",
                                             timeout=30)
                    assert [r["ok"] for r in json.loads(out.stdout)] == [True] * 3, out.stdout
                    proc.send_signal(signal.SIGTERM)
                    with trio.fail_after(15):
                        code = await proc.wait()
                    assert code == 0
                finally:
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
                    proc.stdout.close() if hasattr(proc.stdout, "close") else None
                    ns.ip("link", "del", tap, check=False)
        assert len(trionet.link.read_pcap(pcap)) >= 40
    finally:
        if subprocess.run(["ip", "link", "show", tap], capture_output=True).returncode == 0:
            subprocess.run(["ip", "link", "del", tap], capture_output=True, timeout=10)
