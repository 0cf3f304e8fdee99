"""TapLink against the real kernel, inside a network namespace this test
creates and deletes (real clock; needs root and /dev/net/tun)."""

import os
import shutil
import struct
import subprocess

import pytest
import trio
import trio.testing

from trionet.link import Link, TapLink

try:  # tests/ is not a package
    from . import netns
except ImportError:
    import netns

KERNEL_OK = (os.geteuid() == 0 and os.path.exists("/dev/net/tun")
             and shutil.which("ip") is not None)
needs_kernel = pytest.mark.skipif(
    not KERNEL_OK,
    reason="needs root, /dev/net/tun and ip (creates a TAP and a network namespace)")

HOST_IP = bytes([10, 99, 0, 1])
OUR_IP = bytes([10, 99, 0, 2])
OUR_MAC = bytes.fromhex("020000000002")
ETH_ARP = b"\x08\x06"
ETH_IPV4 = b"\x08\x00"


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def is_arp_request_for_us(frame: bytes) -> bool:
    # RFC 826: htype, ptype, hlen, plen, oper, sha, spa, tha, tpa
    return (frame[12:14] == ETH_ARP and frame[20:22] == b"\x00\x01"
            and frame[38:42] == OUR_IP)


def arp_reply(request: bytes) -> bytes:
    their_mac = request[22:28]
    their_ip = request[28:32]
    arp = (b"\x00\x01\x08\x00\x06\x04\x00\x02" + OUR_MAC + OUR_IP + their_mac + their_ip)
    return their_mac + OUR_MAC + ETH_ARP + arp + bytes(18)  # padded to 60 bytes


def is_echo_request_for_us(frame: bytes) -> bool:
    if frame[12:14] != ETH_IPV4:
        return False
    ihl = (frame[14] & 0x0F) * 4
    return frame[23] == 1 and frame[30:34] == OUR_IP and frame[14 + ihl] == 8


def echo_reply(request: bytes) -> bytes:
    ihl = (request[14] & 0x0F) * 4
    ip = request[14:14 + ihl]
    total_length = int.from_bytes(ip[2:4], "big")
    icmp = bytearray(request[14 + ihl:14 + total_length])
    icmp[0] = 0  # echo reply (RFC 792)
    icmp[2:4] = b"\0\0"
    icmp[2:4] = checksum(bytes(icmp)).to_bytes(2, "big")
    header = bytearray(ip)
    header[8] = 64  # TTL
    header[10:12] = b"\0\0"
    header[12:16], header[16:20] = ip[16:20], ip[12:16]
    header[10:12] = checksum(bytes(header)).to_bytes(2, "big")
    return request[6:12] + OUR_MAC + ETH_IPV4 + bytes(header) + bytes(icmp)


async def receive_until(link: Link, match, seconds: float = 5.0) -> bytes:
    with trio.fail_after(seconds):
        while True:
            for frame in await link.receive_batch():
                if match(frame):
                    return frame


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Namespace:
    """A network namespace holding our TAP, configured as 10.99.0.1/24."""

    def __init__(self, tap: str) -> None:
        self.name = f"trionet-test-{os.getpid()}"
        self.tap = tap

    def __enter__(self):
        ip("netns", "add", self.name)
        try:
            ip("link", "set", self.tap, "netns", self.name)
            ip("-n", self.name, "addr", "add", "10.99.0.1/24", "dev", self.tap)
            ip("-n", self.name, "link", "set", self.tap, "up")
        except BaseException:
            self.delete()
            raise
        return self

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)

    def __exit__(self, *exc):
        self.delete()


def tap_name() -> str:
    return f"tntest{os.getpid()}"[:15]


@pytest.mark.kernel
@needs_kernel
@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
async def test_arp_and_ping_through_a_namespace(offload):
    """Raw frames both ways, on a plain TAP and on an offload one (whose
    virtio-net header the link adds and strips)."""
    link = TapLink(tap_name(), offload=offload)
    try:
        assert link.name == tap_name()
        assert link.mtu == 1500
        assert link.needs_arp and link.checksum_offload is offload
        with Namespace(link.name) as ns:
            ping = {}

            async def run_ping():
                # ping(8) where installed, else a raw ICMP socket in the namespace.
                ping["result"] = await netns.kernel_ping(
                    netns.NetNamespace(ns.name), "10.99.0.2", count=1, timeout=2)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_ping)
                # The fd still works after the device moved namespaces: the
                # kernel there asks who has 10.99.0.2.
                request = await receive_until(link, is_arp_request_for_us)
                assert request[0:6] == b"\xff" * 6
                assert request[28:32] == HOST_IP
                link.send_frame(arp_reply(request))
                echo = await receive_until(link, is_echo_request_for_us)
                assert echo[0:6] == OUR_MAC
                assert echo[26:30] == HOST_IP
                link.send_frame(echo_reply(echo))
            result = ping["result"]
            assert result.received == 1, result
        assert link.stats["tx_frames"] == 2
        assert link.stats["rx_frames"] >= 2
    finally:
        await link.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await link.receive_batch()


@pytest.mark.kernel
@needs_kernel
async def test_device_gone_raises_broken():
    link = TapLink(tap_name())
    try:
        with Namespace(link.name) as ns:
            outcome = []

            async def reader():
                with trio.fail_after(10):
                    try:
                        while True:  # skip the kernel's IPv6 chatter
                            await link.receive_batch()
                    except trio.BrokenResourceError as exc:
                        outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.sleep(0.1)
                ns.delete()  # destroys the TAP with the namespace
        [exc] = outcome
        assert "went away" in str(exc) and link.name in str(exc)
        with pytest.raises(trio.BrokenResourceError):
            await link.receive_batch()
        link.send_frame(bytes(60))  # never raises
        assert link.stats["tx_dropped_broken"] == 1
    finally:
        await link.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await link.receive_batch()


@pytest.mark.kernel
@needs_kernel
async def test_pending_receive_raises_closed_on_aclose():
    link = TapLink(tap_name())
    try:
        async with trio.open_nursery() as nursery:
            async def reader():
                with pytest.raises(trio.ClosedResourceError):
                    await link.receive_batch()

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            await link.aclose()
    finally:
        await link.aclose()
    assert not os.path.exists(f"/sys/class/net/{tap_name()}")


@pytest.mark.kernel
@needs_kernel
async def test_down_device_drops_writes():
    async with TapLink(tap_name(), offload=False) as link:
        link.send_frame(bytes(60))
        link.send_frame(bytes(2000))
        assert link.stats["tx_dropped_down"] == 1
        assert link.stats["tx_dropped_oversize"] == 1


@pytest.mark.kernel
@needs_kernel
async def test_not_a_tap_gives_a_clear_error():
    with pytest.raises(OSError, match="'lo'.*not a TAP"):
        TapLink("lo")
