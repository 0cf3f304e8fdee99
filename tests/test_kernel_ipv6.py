"""trionet's IPv6 against the Linux kernel as the peer (issue 11).

Each test makes its own namespace (tests/netns.py) and removes it. The TAP
is opened in the root namespace and moved into the namespace (or, for the
examples/echo_server.py subprocess, a persistent TAP is moved there and the
server runs inside it), where IPv6 is switched back on: the kernel is
fd00:6::1/64 (added ``nodad``) plus its link-local address, trionet
fd00:6::2/64 plus its own link-local address. The SLAAC test runs dnsmasq
as the router advertisement daemon (prefix fd00:5::/64). Real clock; needs
root and /dev/net/tun.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

import trionet

try:
    from . import netns
    from .kernel_tcp_support import CONNECT, ECHO_CLIENT, background, run_snippet
except ImportError:
    import netns
    from kernel_tcp_support import CONNECT, ECHO_CLIENT, background, run_snippet

pytestmark = [
    *netns.KERNEL_PEER,
    pytest.mark.skipif(not os.path.isdir("/proc/sys/net/ipv6"),
                       reason="the kernel has no IPv6 (no /proc/sys/net/ipv6)"),
]

KERNEL6 = "fd00:6::1"
STACK6 = "fd00:6::2"
SLAAC_PREFIX = ipaddress.IPv6Network("fd00:5::/64")
SLAAC_KERNEL = "fd00:5::1"
ROOT = Path(__file__).resolve().parent.parent
SERVER = [sys.executable, "-u", str(ROOT / "examples" / "echo_server.py")]
ECHO_PORT = 7
HTTP_PORT = 8000
MB = 1 << 20

# Runs in the namespace: sends each message to argv[1]:argv[2] over IPv6
# and prints what came back, one JSON list.
UDP6_CLIENT = r"""
import json, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
sizes = [int(n) for n in sys.argv[3].split(",")]
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
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
        results.append({"size": size, "ok": data == message, "peer": list(peer[:2])})
        break
    else:
        results.append({"size": size, "ok": False, "peer": None})
print(json.dumps(results))
"""

# A connected UDP socket learns of the ICMPv6 port unreachable on its next call.
UDP6_REFUSED = r"""
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
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


def _no_internal_errors(stack: trionet.Stack) -> None:
    assert stack.stats["drop.internal.error"] == 0, stack.stats.drops()


# --- the kernel side ---------------------------------------------------------------


def _kernel_addresses(ns: netns.NetNamespace, ifname: str) -> list[dict]:
    out = ns.ip("-j", "-6", "addr", "show", "dev", ifname).stdout
    return [a for link in json.loads(out or "[]") for a in link.get("addr_info", [])]


def kernel_link_local(ns: netns.NetNamespace, ifname: str) -> str:
    for info in _kernel_addresses(ns, ifname):
        if info.get("scope") == "link":
            return info["local"]
    raise AssertionError(f"the kernel has no link-local address on {ifname}")


async def wait_kernel_dad(ns: netns.NetNamespace, ifname: str, timeout: float = 5) -> None:
    """Until the kernel has a link-local address on ``ifname`` and none of
    its addresses is tentative (RFC 4862 5.4)."""
    with trio.fail_after(timeout):
        while True:
            infos = _kernel_addresses(ns, ifname)
            if any(i.get("scope") == "link" for i in infos) and \
                    not any(i.get("tentative") or i.get("dadfailed") for i in infos):
                return
            await trio.sleep(0.05)


async def wait_stack_dad(iface: trionet.Interface, timeout: float = 5) -> None:
    """Until every IPv6 address of trionet's interface passed DAD."""
    with trio.fail_after(timeout):
        while True:
            v6 = [a for a in iface.addresses if a.version == 6]
            if v6 and all(a.usable for a in v6):
                return
            await trio.sleep(0.05)


async def wait_reachable(ns: netns.NetNamespace, host: str, timeout: float = 10) -> None:
    """Until ``host`` answers a ping from the kernel (a subprocess's
    addresses are tentative for a while: packets to them are dropped)."""
    with trio.fail_after(timeout):
        while True:
            result = await netns.kernel_ping(ns, host, count=1, interval=0.1, timeout=0.3)
            if result.received:
                return


def stack_link_local(iface: trionet.Interface) -> str:
    """trionet's link-local address, without its scope."""
    for entry in iface.addresses:
        if entry.origin == "link-local":
            return str(entry.interface.ip)
    raise AssertionError(f"no link-local address among {iface.addresses}")


def setup_ipv6_link(ns: netns.NetNamespace, ifname: str, cidr: str, *,
                    accept_dad: bool = True) -> None:
    """Move ``ifname`` into ``ns`` with IPv6 on: the kernel's link-local
    address (DAD as usual unless not ``accept_dad``), ``cidr`` without DAD,
    router advertisements ignored."""
    ns.move_link(ifname, None)  # moves it, IPv6 off, up
    ns.enable_ipv6(ifname, accept_ra=False, accept_dad=accept_dad)
    ns.ip("addr", "add", cidr, "dev", ifname, "nodad")


@attrs.define
class Peer6:
    stack: trionet.Stack
    iface: trionet.Interface
    ns: netns.NetNamespace
    nursery: trio.Nursery
    tap: str


@asynccontextmanager
async def ipv6_peer(pcap: Path | None = None, *, seed: int = 6, offload: bool = False):
    """trionet at STACK6 (and its link-local address) on a TAP (opened with
    ``offload``) whose other side is the kernel at KERNEL6 in a fresh
    namespace; yields once both sides' addresses passed DAD."""
    name = netns.unique_name("k6")
    link = trionet.TapLink(name, offload=offload)  # opened here, in the root namespace
    assert link.offload is offload, link.offload_error
    with netns.NetNamespace.create("k6") as ns:
        try:
            setup_ipv6_link(ns, name, f"{KERNEL6}/64")
        except BaseException:
            await link.aclose()
            raise
        if pcap is not None:
            link = trionet.Capture(link, pcap)
        async with trionet.Stack(seed=seed) as stack:
            iface = stack.add_interface(link, f"{STACK6}/64")
            async with trio.open_nursery() as nursery:
                await wait_stack_dad(iface)
                await wait_kernel_dad(ns, name)
                yield Peer6(stack, iface, ns, nursery, name)
                nursery.cancel_scope.cancel()
    _no_internal_errors(stack)


@asynccontextmanager
async def persistent_tap_in(ns: netns.NetNamespace, prefix: str):
    """A persistent TAP made in the root namespace and moved into ``ns``
    (for a subprocess that opens it by name inside ``ns``); deleted on exit."""
    tap = netns.unique_name(prefix)
    subprocess.run(["ip", "tuntap", "add", tap, "mode", "tap"], check=True, timeout=10)
    try:
        yield tap
    finally:
        ns.ip("link", "del", tap, check=False)
        if subprocess.run(["ip", "link", "show", tap], capture_output=True).returncode == 0:
            subprocess.run(["ip", "link", "del", tap], capture_output=True, timeout=10)


async def _read_until(server, word: str, timeout: float) -> str:
    with trio.fail_after(timeout):
        while True:
            line = await server.read_line(timeout)
            if word in line:
                return line


def _tcpdump(pcap: Path) -> str | None:
    if shutil.which("tcpdump") is None:
        return None
    out = subprocess.run(["tcpdump", "-r", str(pcap), "-nn", "-v"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


# --- 1. pings both ways, small and fragmented ----------------------------------------


async def test_ping_ipv6_both_ways_link_local_global_and_fragmented(tmp_path):
    pcap = tmp_path / "ping6.pcap"
    with trio.fail_after(40):
        async with ipv6_peer(pcap) as peer:
            stack, ns = peer.stack, peer.ns
            stack_ll = stack_link_local(peer.iface)
            kernel_ll = kernel_link_local(ns, peer.tap)
            assert ipaddress.IPv6Address(stack_ll).is_link_local

            # Linux pings trionet's global and link-local addresses.
            for host in (STACK6, f"{stack_ll}%{peer.tap}"):
                result = await netns.kernel_ping(ns, host, count=3, interval=0.05)
                assert (result.sent, result.received) == (3, 3), (host, result)
                # 4000 data bytes: Linux fragments the request, trionet
                # reassembles it and fragments its reply.
                before = stack.stats["ipv6.reassembled"], stack.stats["ipv6.tx_fragments"]
                result = await netns.kernel_ping(ns, host, count=3, size=4000, interval=0.05)
                assert (result.sent, result.received) == (3, 3), (host, result)
                assert stack.stats["ipv6.reassembled"] - before[0] >= 3
                assert stack.stats["ipv6.tx_fragments"] - before[1] >= 9  # 4048 bytes: 3 each
            assert stack.stats["icmp6.tx_echo_reply"] >= 12

            # The raw ICMPv6 socket fallback of kernel_ping sees the same.
            for host in (STACK6, f"{stack_ll}%{peer.tap}"):
                result = await netns.kernel_ping(ns, host, count=2, size=3000, interval=0.05,
                                                 use_ping=False)
                assert (result.tool, result.sent, result.received) == ("python", 2, 2), result

            # trionet pings the kernel's global and link-local addresses.
            reassembled = stack.stats["ipv6.reassembled"]
            for host in (KERNEL6, f"{kernel_ll}%{peer.iface.name}"):
                rtt = await stack.ping(host, timeout=2)
                assert 0 < rtt < 2
                rtt = await stack.ping(host, size=4000, timeout=2)
                assert 0 < rtt < 2
            assert stack.stats["ipv6.reassembled"] - reassembled >= 2  # the kernel's replies

    dump = _tcpdump(pcap)
    if dump is not None:
        assert f"{KERNEL6} > {STACK6}: frag" in dump  # the kernel's fragmented request
        assert f"{STACK6} > {KERNEL6}: frag" in dump  # trionet's fragmented reply/request
        assert f"{KERNEL6} > {STACK6}: [icmp6 sum ok] ICMP6, echo request" in dump
        assert f"{STACK6} > {KERNEL6}: [icmp6 sum ok] ICMP6, echo reply" in dump
        assert f"{STACK6} > {KERNEL6}: [icmp6 sum ok] ICMP6, echo request" in dump
        assert f"> {stack_ll}: [icmp6 sum ok] ICMP6, echo request" in dump
        assert f"{stack_ll} > {kernel_ll}: [icmp6 sum ok] ICMP6, echo request" in dump


# --- 2. TCP and UDP echo through examples/echo_server.py -----------------------------


async def test_echo_server_example_ipv6_tcp_1mb_and_udp(tmp_path):
    pcap = tmp_path / "echo6.pcap"
    with trio.fail_after(60):
        with netns.NetNamespace.create("k6") as ns:
            async with persistent_tap_in(ns, "k6e") as tap:
                setup_ipv6_link(ns, tap, f"{KERNEL6}/64")
                async with background(ns, *SERVER, "--tap", tap, "--address", f"{STACK6}/64",
                                      "--seed", 6, "--pcap", pcap, cwd=ROOT) as server:
                    ready = await _read_until(server, "ready", 20)
                    assert f"{STACK6}/64" in ready, ready
                    await wait_reachable(ns, STACK6)

                    result = await run_snippet(ns, ECHO_CLIENT, STACK6, ECHO_PORT, MB,
                                               timeout=40)
                    assert result["sent"] == MB
                    assert result["received"] == MB, result
                    assert result["received_sha"] == result["sent_sha"]

                    # UDP: 1452 bytes is the most one 1500-byte packet holds;
                    # the bigger ones are fragmented by Linux and by trionet.
                    sizes = [0, 1, 100, 1452, 1453, 3000, 8000]
                    proc = await ns.run_async(*ns.python(UDP6_CLIENT), STACK6, ECHO_PORT,
                                              ",".join(map(str, sizes)), timeout=30)
                    results = json.loads(proc.stdout)
                    assert [r["size"] for r in results] == sizes
                    assert [r["ok"] for r in results] == [True] * len(sizes), results
                    assert all(r["peer"] == [STACK6, ECHO_PORT] for r in results), results

                    server.process.send_signal(signal.SIGTERM)
                    code, rest = await server.finish(15)
                    assert code == 0, rest

    dump = _tcpdump(pcap)
    if dump is not None:
        # TCP over IPv6: MSS = MTU 1500 - 40 (IPv6) - 20 (TCP), both ways.
        assert f"{STACK6}.{ECHO_PORT} > {KERNEL6}." in dump
        syn_ack = [line for line in dump.splitlines()
                   if f"{STACK6}.{ECHO_PORT} > " in line and "Flags [S.]" in line]
        assert syn_ack and all("mss 1440" in line for line in syn_ack), syn_ack
        assert f"{STACK6} > {KERNEL6}: frag" in dump  # the big UDP echoes, fragmented


# --- 3. closed ports ---------------------------------------------------------------


async def test_closed_ports_over_ipv6_are_refused():
    with trio.fail_after(30):
        async with ipv6_peer() as peer:
            stack, ns = peer.stack, peer.ns
            result = await run_snippet(ns, CONNECT, STACK6, 9, timeout=20)
            assert result == {"result": "refused", "errno": errno.ECONNREFUSED}
            assert stack.stats["tcp.closed_port"] >= 1
            assert stack.stats["tcp.tx_reset"] >= 1

            proc = await ns.run_async(*ns.python(UDP6_REFUSED), STACK6, 9, timeout=20)
            assert proc.stdout.strip() == "refused", (proc.stdout, proc.stderr)
            assert stack.stats["drop.udp.no_socket"] >= 1
            assert stack.stats["icmp6.tx_error"] >= 1

            # And the other way: the kernel's RST refuses trionet's connect.
            with pytest.raises(ConnectionRefusedError):
                await stack.open_tcp_stream(KERNEL6, 9)


# --- 4. trionet fetches a page from python -m http.server --bind :: -------------------


async def _http_get(stack: trionet.Stack, host: str, port: int, path: str,
                    expect_remote: str) -> tuple[int, bytes]:
    try:
        import h11
    except ImportError:
        h11 = None
    host_header = f"[{host.split('%')[0]}]:{port}"
    async with await stack.open_tcp_stream(host, port) as stream:
        assert stream.remote_address == (expect_remote, port)
        assert ipaddress.ip_address(stream.local_address[0].split("%")[0]).version == 6
        if h11 is None:
            await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n"
                                  "Connection: close\r\n\r\n".encode())
            raw = bytearray()
            while chunk := await stream.receive_some():
                raw += chunk
            head, _, body = bytes(raw).partition(b"\r\n\r\n")
            return int(head.split()[1]), body
        connection = h11.Connection(h11.CLIENT)
        request = h11.Request(method="GET", target=path,
                              headers=[("Host", host_header), ("Connection", "close")])
        await stream.send_all(connection.send(request) + connection.send(h11.EndOfMessage()))
        status, body = None, bytearray()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some())
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, bytes(body)


async def test_fetch_page_from_linux_http_server_over_ipv6(tmp_path):
    body = os.urandom(200_000)
    (tmp_path / "file").write_bytes(body)
    with trio.fail_after(40):
        async with ipv6_peer() as peer:
            kernel_ll = kernel_link_local(peer.ns, peer.tap)
            async with background(peer.ns, sys.executable, "-u", "-m", "http.server",
                                  HTTP_PORT, "--bind", "::",
                                  "--directory", tmp_path) as server:
                line = await server.read_line(20)
                assert "Serving HTTP" in line, line
                status, got = await _http_get(peer.stack, KERNEL6, HTTP_PORT, "/file", KERNEL6)
                assert status == 200
                assert len(got) == len(body) and got == body
                # The same over link-local addresses, with a scope.
                scoped = f"{kernel_ll}%{peer.iface.name}"
                status, got = await _http_get(peer.stack, scoped, HTTP_PORT, "/file", scoped)
                assert status == 200
                assert got == body


# --- 5. SLAAC from dnsmasq's router advertisements -----------------------------------


async def test_slaac_from_dnsmasq_router_advertisements(tmp_path):
    with trio.fail_after(60):
        with netns.NetNamespace.create("k6") as ns:
            async with persistent_tap_in(ns, "k6s") as tap:
                # The kernel is the router: accept_ra=0, a global address in
                # the advertised prefix (dnsmasq advertises the prefixes of
                # its interface's addresses), its link-local address usable
                # as soon as the TAP has carrier (no DAD: an RA from a
                # tentative address is not sent).
                setup_ipv6_link(ns, tap, f"{SLAAC_KERNEL}/64", accept_dad=False)
                async with netns.dnsmasq(
                        ns, tap, tmp_path, "--port=0", "--no-ping", "--enable-ra",
                        f"--dhcp-range={SLAAC_PREFIX.network_address},ra-only,64") as log_path, \
                        background(ns, *SERVER, "--tap", tap, "--slaac",
                                   "--slaac-timeout", 20, "--seed", 5, cwd=ROOT) as server:
                    ready = await _read_until(server, "ready", 30)
                    addresses = [ipaddress.IPv6Interface(word) for word in ready.split()
                                 if ":" in word and "/" in word]
                    formed = [a.ip for a in addresses if a.ip in SLAAC_PREFIX]
                    assert formed, f"no address in {SLAAC_PREFIX}: {ready!r}\n" \
                                   f"dnsmasq: {log_path.read_text()}"
                    address = str(formed[0])
                    assert address != SLAAC_KERNEL

                    # Linux reaches the address trionet formed.
                    await wait_reachable(ns, address)
                    result = await netns.kernel_ping(ns, address, count=3, interval=0.05)
                    assert (result.sent, result.received) == (3, 3), result
                    result = await run_snippet(ns, ECHO_CLIENT, address, ECHO_PORT, 256 * 1024,
                                               timeout=30)
                    assert result["received"] == 256 * 1024, result
                    assert result["received_sha"] == result["sent_sha"]

                    server.process.send_signal(signal.SIGTERM)
                    code, rest = await server.finish(15)
                    assert code == 0, rest

                log_text = log_path.read_text()
                assert "router advertisement on" in log_text, log_text
                # Whether dnsmasq logs trionet's router solicitation depends on
                # timing: an unsolicited advertisement that arrives before the
                # first solicitation is due ends soliciting (RFC 4861 6.3.7),
                # so it is not asserted here (tests/test_ipv6_nd_stack.py
                # checks the solicitations in virtual time).


# --- 6. an offload TAP (virtio-net header, checksums left to the link) ----------------


async def test_ipv6_over_an_offload_tap_checksums_complete_both_ways():
    """On ``TapLink(offload=True)`` the stack leaves TCP and UDP checksums
    to the link: over IPv6 too the link must hand the kernel the
    pseudo-header sum (RFC 8200 8.1) with NEEDS_CSUM, or the kernel drops
    every segment; and it checks the kernel's unvouched frames itself.
    A TCP echo of 2 MiB, UDP echoes (fragmented ones among them, whose
    checksum the stack fills in before cutting them) and pings."""
    with trio.fail_after(60):
        async with ipv6_peer(offload=True) as peer:
            stack, ns = peer.stack, peer.ns
            await peer.nursery.start(stack.serve_tcp, _echo, ECHO_PORT)
            sock = await stack.open_udp_socket(ECHO_PORT)
            peer.nursery.start_soon(_udp_echo, sock)
            result = await run_snippet(ns, ECHO_CLIENT, STACK6, ECHO_PORT, 2 * MB, timeout=50)
            assert result["sent"] == result["received"] == 2 * MB
            assert result["received_sha"] == result["sent_sha"]
            replies = await run_snippet(ns, UDP6_CLIENT, STACK6, ECHO_PORT, "1,1000,3000,9000",
                                        timeout=30)
            assert all(r["ok"] for r in replies), replies
            ping = await netns.kernel_ping(ns, STACK6, count=2, size=3000, interval=0.05)
            assert ping.received == 2, ping
            snmp = ns.run("cat", "/proc/net/snmp6").stdout
            errors = {k: int(v) for k, v in (line.split() for line in snmp.splitlines())
                      if "CsumErrors" in k}
            assert not any(errors.values()), errors  # the kernel found no bad checksum
            assert not any("checksum" in k for k in stack.stats.drops()), stack.stats.drops()
            link = peer.iface.link
            # TSO both ways over IPv6 too (GSO TCPV6 frames in and out).
            assert link.stats["rx_gso_frames"] > 0 and link.stats["tx_gso_frames"] > 0
            assert stack.stats["ipv6.tx_gso"] > 0


async def _echo(stream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def _udp_echo(sock) -> None:
    while True:
        data, sender = await sock.recvfrom()
        await sock.sendto(data, sender)
