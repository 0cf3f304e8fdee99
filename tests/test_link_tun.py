"""TunLink against the real kernel, inside a network namespace this test
creates and deletes (real clock; needs root and /dev/net/tun); and
scripts/setup_tap.sh --tun."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import trio
import trio.testing

import trionet
from trionet.link import Link, TapLink, TunLink
from trionet.link import tuntap as tuntap_module

try:  # tests/ is not a package
    from . import netns
except ImportError:
    import netns

SETUP_TAP = Path(__file__).resolve().parent.parent / "scripts" / "setup_tap.sh"
KERNEL_IP = bytes([10, 99, 1, 1])
OUR_IP = bytes([10, 99, 1, 2])


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big")
    total = sum((total >> (16 * i)) & 0xFFFF for i in range(len(data) // 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def is_echo_request_for_us(packet: bytes) -> bool:
    ihl = (packet[0] & 0x0F) * 4
    return (packet[0] >> 4 == 4 and packet[9] == 1 and packet[16:20] == OUR_IP
            and packet[ihl] == 8)


def echo_reply(request: bytes) -> bytes:
    """RFC 792: the request's data back, addresses swapped (a bare packet)."""
    ihl = (request[0] & 0x0F) * 4
    total = int.from_bytes(request[2:4], "big")
    icmp = bytearray(request[ihl:total])
    icmp[0] = 0
    icmp[2:4] = b"\0\0"
    icmp[2:4] = checksum(bytes(icmp)).to_bytes(2, "big")
    header = bytearray(request[:ihl])
    header[8] = 64
    header[10:12] = b"\0\0"
    header[12:16], header[16:20] = request[16:20], request[12:16]
    header[10:12] = checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + bytes(icmp)


async def receive_until(link: Link, match, seconds: float = 5.0) -> bytes:
    with trio.fail_after(seconds):
        while True:
            for packet in await link.receive_batch():
                if match(packet):
                    return packet


def tun_flags(name: str) -> int:
    with open(f"/sys/class/net/{name}/tun_flags") as f:
        return int(f.read(), 16)


def test_tun_link_class_attributes():
    assert TunLink.ethernet is False and TunLink.needs_arp is False
    assert TapLink.ethernet is True and Link.ethernet is True
    assert trionet.TunLink is TunLink


def test_bad_arguments():
    with pytest.raises(ValueError, match="longer than 15"):
        TunLink("x" * 16)
    with pytest.raises(ValueError, match="at least 68"):
        TunLink("tun0", mtu=60)


@pytest.mark.kernel
@netns.requires_kernel_peer
@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
async def test_ping_through_a_namespace_with_bare_ip_packets(offload):
    """Bare packets both ways, on a plain TUN and on an offload one (whose
    virtio-net header the link adds and strips)."""
    name = netns.unique_name("tt")
    link = TunLink(name, offload=offload)
    try:
        assert link.name == name and link.mtu == 1500
        assert tun_flags(name) & 0x1003 == 0x1001  # IFF_TUN | IFF_NO_PI
        assert bool(tun_flags(name) & 0x4000) is offload  # IFF_VNET_HDR
        assert link.offload is offload and link.checksum_offload is offload
        assert "TunLink" in repr(link) and name in repr(link)
        with netns.NetNamespace.create("tt") as ns:
            ns.move_link(name, "10.99.1.1/24")
            ping = {}

            async def run_ping():
                ping["result"] = await netns.kernel_ping(ns, "10.99.1.2", count=1, timeout=2)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_ping)
                # The fd still works after the device moved: no ARP first,
                # the echo request comes as a bare IPv4 packet.
                echo = await receive_until(link, is_echo_request_for_us)
                assert echo[12:16] == KERNEL_IP
                link.send_frame(echo_reply(echo))
            assert ping["result"].received == 1, ping["result"]
            # Not IP: the kernel refuses it; counted, never raised.
            link.send_frame(b"\x00" * 40)
            assert link.stats["tx_dropped_error"] == 1
            link.send_frame(bytes(1501))
            assert link.stats["tx_dropped_oversize"] == 1
        assert link.stats["tx_frames"] == 1
        assert link.stats["rx_frames"] >= 1
    finally:
        await link.aclose()
    assert not os.path.exists(f"/sys/class/net/{name}")
    with pytest.raises(trio.ClosedResourceError):
        await link.receive_batch()


@pytest.mark.kernel
@netns.requires_kernel_peer
async def test_device_gone_raises_broken():
    name = netns.unique_name("tt")
    link = TunLink(name)
    try:
        ns = netns.NetNamespace.create("tt").open()
        try:
            ns.move_link(name, "10.99.1.1/24")
            outcome = []

            async def reader():
                with trio.fail_after(10):
                    try:
                        while True:
                            await link.receive_batch()
                    except trio.BrokenResourceError as exc:
                        outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.sleep(0.1)
                ns.close()  # destroys the TUN with the namespace
        finally:
            ns.close()
        [exc] = outcome
        assert "TUN device" in str(exc) and "went away" in str(exc) and name in str(exc)
        link.send_frame(b"\x45" + bytes(39))  # never raises
        assert link.stats["tx_dropped_broken"] == 1
    finally:
        await link.aclose()


@pytest.mark.kernel
@netns.requires_kernel_peer
async def test_pending_receive_raises_closed_on_aclose_and_down_drops():
    name = netns.unique_name("tt")
    link = TunLink(name, mtu=1400, offload=False)
    try:
        assert link.mtu == 1400
        link.send_frame(b"\x45" + bytes(39))  # down: dropped, counted
        assert link.stats["tx_dropped_down"] == 1
        async with trio.open_nursery() as nursery:
            async def reader():
                with pytest.raises(trio.ClosedResourceError):
                    await link.receive_batch()

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            await link.aclose()
    finally:
        await link.aclose()
    assert not os.path.exists(f"/sys/class/net/{name}")


@pytest.mark.kernel
@netns.requires_kernel_peer
def test_open_errors_give_advice():
    with pytest.raises(OSError, match="'lo'.*not a TUN"):
        TunLink("lo")
    tap = netns.unique_name("tt")
    with TapLinkHeld(tap):
        # A TAP by that name: the TUN open fails with advice, and vice versa.
        with pytest.raises(OSError, match=r"not a TUN.*setup_tap.sh .* --tun"):
            TunLink(tap)
    tun = netns.unique_name("tt")
    subprocess.run(["ip", "tuntap", "add", tun, "mode", "tun"], check=True, timeout=10)
    try:
        with pytest.raises(OSError, match="not a TAP"):
            TapLink(tun)
        # The persistent TUN opens (as setup_tap.sh --tun makes it).
        link = TunLink(tun)
        trio.run(link.aclose)
        assert os.path.exists(f"/sys/class/net/{tun}")  # persistent: still there
    finally:
        subprocess.run(["ip", "tuntap", "del", tun, "mode", "tun"], timeout=10)


class TapLinkHeld:
    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self):
        subprocess.run(["ip", "tuntap", "add", self.name, "mode", "tap"], check=True,
                       timeout=10)

    def __exit__(self, *exc):
        subprocess.run(["ip", "tuntap", "del", self.name, "mode", "tap"], timeout=10)


@pytest.mark.kernel
@netns.requires_kernel_peer
def test_setup_script_makes_and_deletes_a_tun():
    tun = netns.unique_name("st")
    with netns.NetNamespace.create("st") as ns:
        proc = subprocess.run(["bash", SETUP_TAP, tun, "10.97.2.1/24", "fd00:97:2::1/64",
                               "--tun", "--netns", ns.name, "--user", "nobody"],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert f"tuntap add dev {tun} mode tun user nobody" in proc.stdout
        assert f"created TUN {tun}" in proc.stdout
        details = ns.ip("-d", "link", "show", "dev", tun).stdout
        assert "tun type tun" in details and "persist on" in details
        addresses = ns.ip("addr", "show", "dev", tun).stdout
        assert "10.97.2.1/24" in addresses and "fd00:97:2::1/64" in addresses
        # --delete of a TUN needs --tun: a TAP delete refuses to touch it.
        wrong = subprocess.run(["bash", SETUP_TAP, tun, "--delete", "--netns", ns.name],
                               capture_output=True, text=True)
        assert wrong.returncode == 1 and "not a TAP" in wrong.stderr
        proc = subprocess.run(["bash", SETUP_TAP, tun, "--delete", "--tun", "--netns", ns.name],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert f"tuntap del dev {tun} mode tun" in proc.stdout
        assert f"deleted TUN {tun}" in proc.stdout
        assert ns.ip("link", "show", "dev", tun, check=False).returncode != 0


# --- offloads (IFF_VNET_HDR, checksum offload, TSO), as TapLink's -------------


@pytest.mark.kernel
@netns.requires_kernel_peer
async def test_offload_tun_attributes_and_cleanup():
    name = netns.unique_name("to")
    link = TunLink(name)  # offload is the default
    try:
        assert link.offload and link.checksum_offload and link.offload_error is None
        assert link.tso_max == 65535 and link.mtu == 1500 and not link.needs_arp
        assert tun_flags(name) & 0x5003 == 0x5001  # IFF_TUN | IFF_NO_PI | IFF_VNET_HDR
        assert "offload" in repr(link)
        link.send_frame(b"\x45" + bytes(39))  # down: dropped, counted
        assert link.stats["tx_dropped_down"] == 1
        link.send_frame(bytes(1501))
        link.send_frame(bytes(65536), 1448)
        assert link.stats["tx_dropped_oversize"] == 2
        link.send_frame(b"\x45" + bytes(39), 1448)  # GSO asked for, not TCP
        assert link.stats["tx_dropped_bad_gso"] == 1
    finally:
        await link.aclose()
    assert not os.path.exists(f"/sys/class/net/{name}")


def refuse(monkeypatch, what: str) -> None:
    """Make the kernel refuse ``what``: one of the offload ioctls, or
    IFF_VNET_HDR when the device is opened."""
    if what == "IFF_VNET_HDR":
        real_open = tuntap_module._open_device

        def open_device(name, flags, kind):
            if flags & tuntap_module.IFF_VNET_HDR:
                raise OSError(22, f"cannot open {kind} device {name!r}: Invalid argument")
            return real_open(name, flags, kind)

        monkeypatch.setattr(tuntap_module, "_open_device", open_device)
        return
    request = getattr(tuntap_module, f"_{what}")
    real = tuntap_module._ioctl

    def ioctl(fd, number, arg=0, *rest):
        if number == request:
            raise OSError(22, "Invalid argument")
        return real(fd, number, arg, *rest)

    monkeypatch.setattr(tuntap_module, "_ioctl", ioctl)
