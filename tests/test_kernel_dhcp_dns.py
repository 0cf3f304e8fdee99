"""trionet joins a network by itself: dnsmasq, a real DHCP and DNS server,
on the kernel side of a TAP (issue 12).

Each test makes its own namespace (tests/netns.py) and removes it; dnsmasq
runs inside it, bound to the TAP only, with no upstream servers (names it
does not know under ``.test`` get NXDOMAIN, ``--local``). trionet takes a
lease (RFC 2131), Linux pings the leased address, trionet resolves names
with the lease's name server (RFC 1035 over UDP), and
``examples/webget.py --dhcp`` fetches ``http://web.test:8000/`` by name from
``python -m http.server``. Real clock; needs root and /dev/net/tun.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import trionet

try:
    from . import netns
    from .kernel_tcp_support import background
except ImportError:
    import netns
    from kernel_tcp_support import background

pytestmark = netns.KERNEL_PEER

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "10.77.0.1"
POOL = (ipaddress.IPv4Address("10.77.0.50"), ipaddress.IPv4Address("10.77.0.99"))
HTTP_PORT = 8000


@asynccontextmanager
async def dnsmasq(ns: netns.NetNamespace, ifname: str, tmp_path: Path):
    """dnsmasq serving DHCP (10.77.0.50-99, router and name server
    10.77.0.1, 2-minute leases) and DNS (web.test, www.test a CNAME of it,
    NXDOMAIN for other .test names) on ``ifname``."""
    async with netns.dnsmasq(
            ns, ifname, tmp_path, "--no-ping", "--dhcp-authoritative",
            f"--dhcp-range={POOL[0]},{POOL[1]},255.255.255.0,2m",
            f"--dhcp-option=option:router,{KERNEL}", f"--dhcp-option=option:dns-server,{KERNEL}",
            f"--host-record=web.test,{KERNEL}", "--cname=www.test,web.test", "--local=/test/",
            "--log-dhcp", "--log-queries") as log_path:
        yield log_path


def _delete_link(ns: netns.NetNamespace, name: str) -> None:
    """Delete a persistent TAP, in ``ns`` or still in the root namespace."""
    ns.ip("link", "del", name, check=False)
    if subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0:
        subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=10)


async def _wait_for_log(log_path: Path, text: str, timeout: float) -> str:
    with trio.move_on_after(timeout):
        while text not in log_path.read_text():
            await trio.sleep(0.05)
    return log_path.read_text()


async def test_lease_from_dnsmasq_ping_names_and_release(tmp_path):
    """RFC 2131 3.1: DISCOVER, OFFER, REQUEST, ACK with a real server; the
    lease's address answers Linux's ping; names resolve through the lease's
    name server (A, a CNAME chain, NXDOMAIN); RFC 2131 4.4.6: a normal exit
    releases the lease."""
    name = netns.unique_name("kd")
    with trio.fail_after(60):
        with netns.NetNamespace.create("kd") as ns:
            # A persistent TAP (as a host's is): closing trionet's side when
            # the stack exits leaves the kernel's interface, and its address,
            # to dnsmasq while it reads the RELEASE. Opened here, in the root
            # namespace, then moved.
            subprocess.run(["ip", "tuntap", "add", name, "mode", "tap"], check=True, timeout=10)
            link = None
            try:
                link = trionet.TapLink(name)
                ns.move_link(name, f"{KERNEL}/24")
                async with dnsmasq(ns, name, tmp_path) as log_path:
                    async with trionet.Stack(seed=12) as stack:
                        iface = stack.add_interface(link, dhcp=True)
                        with trio.fail_after(20):
                            lease = await iface.dhcp_bound()
                        assert lease is iface.dhcp_lease
                        leased = lease.address.ip
                        assert POOL[0] <= leased <= POOL[1], lease
                        assert lease.address.network == ipaddress.IPv4Network("10.77.0.0/24")
                        assert lease.router == ipaddress.IPv4Address(KERNEL)
                        assert tuple(lease.dns_servers) == (ipaddress.IPv4Address(KERNEL),)
                        assert 60 <= lease.lease_time <= 120
                        assert any(a.interface == lease.address for a in iface.addresses)
                        assert ipaddress.ip_address(KERNEL) in stack.nameservers
                        # The default route is the lease's router.
                        assert str(stack.path_to("192.0.2.1").next_hop) == KERNEL

                        # Linux reaches the leased address.
                        result = await netns.kernel_ping(ns, str(leased), count=3, interval=0.05)
                        assert (result.sent, result.received) == (3, 3), result

                        # Names through dnsmasq (RFC 1034 3.6.2: a CNAME is followed).
                        infos = await stack.getaddrinfo("web.test", HTTP_PORT,
                                                        type=socket.SOCK_STREAM)
                        assert [info[4] for info in infos] == [(KERNEL, HTTP_PORT)]
                        infos = await stack.getaddrinfo("www.test", HTTP_PORT,
                                                        family=socket.AF_INET,
                                                        type=socket.SOCK_STREAM)
                        assert [info[4] for info in infos] == [(KERNEL, HTTP_PORT)]
                        with pytest.raises(socket.gaierror) as caught:
                            await stack.getaddrinfo("nothere.test", 80)
                        assert caught.value.errno == socket.EAI_NONAME
                    log_text = await _wait_for_log(log_path, "DHCPRELEASE", 5)
                    assert "DHCPACK" in log_text, log_text
                    assert f"DHCPRELEASE({name}) {leased}" in log_text, log_text
                    assert "query[A] web.test" in log_text, log_text
            finally:
                if link is not None:
                    await link.aclose()
                _delete_link(ns, name)


async def test_webget_dhcp_fetches_a_page_by_name(tmp_path):
    """``examples/webget.py --dhcp`` on a TAP in the namespace: a lease from
    dnsmasq, ``web.test`` resolved by it, the page fetched from
    ``python -m http.server`` and written to stdout byte for byte."""
    body = os.urandom(300_000)
    site = tmp_path / "site"
    site.mkdir()
    (site / "file").write_bytes(body)
    with trio.fail_after(60):
        with netns.NetNamespace.create("kw") as ns:
            tap = netns.unique_name("kw")
            subprocess.run(["ip", "tuntap", "add", tap, "mode", "tap"], check=True, timeout=10)
            try:
                ns.move_link(tap, f"{KERNEL}/24")
                async with dnsmasq(ns, tap, tmp_path) as log_path, \
                        background(ns, sys.executable, "-u", "-m", "http.server", HTTP_PORT,
                                   "--bind", KERNEL, "--directory", site):
                    # The server is listening once a kernel connect succeeds.
                    probe = "import socket,sys; socket.create_connection((sys.argv[1], " \
                            "int(sys.argv[2])), timeout=1).close()"
                    with trio.fail_after(10):
                        while (await ns.run_async(sys.executable, "-c", probe, KERNEL, HTTP_PORT,
                                                  check=False)).returncode:
                            await trio.sleep(0.1)
                    result = await ns.run_async(
                        sys.executable, str(ROOT / "examples" / "webget.py"), "--tap", tap,
                        "--dhcp", f"http://web.test:{HTTP_PORT}/file", text=False, check=False,
                        timeout=40)
                    assert result.returncode == 0, result.stderr.decode(errors="replace")
                    assert result.stdout == body
                    log_text = log_path.read_text()
                    assert "DHCPACK" in log_text and "query[A] web.test" in log_text, log_text
            finally:
                _delete_link(ns, tap)
