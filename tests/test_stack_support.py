"""Helpers the stack tests share (tests/test_stack_*.py), and their own
sanity tests.

``RawHost`` drives the far end of a virtual cable by hand: it answers ARP for
its address (if told to), records every frame with its arrival time, and
builds and decodes frames with ``trionet.wire``. (The check that no stack
counted ``drop.internal.error`` is conftest.py's, for every test.)
"""

from __future__ import annotations

import math
from ipaddress import IPv4Address

import pytest
import trio

import trionet
from trionet import wire
from trionet.wire import (ARP_REPLY, ARP_REQUEST, BROADCAST_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4,
                          ArpPacket, IcmpMessage, IPv4Header, build_ethernet, build_icmpv4,
                          build_ipv4, build_udp, parse_arp, parse_ethernet, parse_icmpv4,
                          parse_ipv4)

STACK_MAC = bytes.fromhex("020000000001")
HOST_MAC = bytes.fromhex("020000000009")


class RawHost:
    """A host made of a raw ``CableEnd``: tests write and read frames by hand."""

    def __init__(self, end, ip="10.0.0.9", mac: bytes = HOST_MAC, *, answer_arp: bool = True,
                 ipv6: bool = False):
        self.end = end
        self.ip = IPv4Address(ip)
        self.mac = mac
        self.answer_arp = answer_arp
        #: An IPv4-only host (``ipv6`` False) keeps the IPv6 frames the stack
        #: sends by itself (neighbour discovery, MLD reports) apart, in
        #: ``ipv6_frames``, out of ``frames`` and of the ``receive`` queue.
        self.ipv6 = ipv6
        self.ipv6_frames: list[tuple[float, bytes]] = []
        #: Every frame received: (arrival time, frame).
        self.frames: list[tuple[float, bytes]] = []
        self._send, self._receive = trio.open_memory_channel(math.inf)
        self._ip_id = 1000

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                batch = await self.end.receive_batch()
            except trio.ClosedResourceError:
                return
            now = trio.current_time()
            for frame in batch:
                if not self.ipv6 and frame[12:14] == b"\x86\xdd":
                    self.ipv6_frames.append((now, frame))
                    continue
                self.frames.append((now, frame))
                if self.answer_arp:
                    self._maybe_answer_arp(frame)
                self._send.send_nowait((now, frame))

    def _maybe_answer_arp(self, frame: bytes) -> None:
        eth, payload = parse_ethernet(frame)
        if eth.ethertype != ETHERTYPE_ARP:
            return
        arp = parse_arp(payload)
        if arp.operation == ARP_REQUEST and arp.target_ip == self.ip:
            reply = ArpPacket(ARP_REPLY, self.mac, self.ip, arp.sender_mac, arp.sender_ip)
            self.send_frame(build_ethernet(arp.sender_mac, self.mac, ETHERTYPE_ARP, reply.build()))

    # --- sending --------------------------------------------------------------

    def send_frame(self, frame: bytes) -> None:
        self.end.send_frame(frame)

    def send_ip(self, packet: bytes, dst_mac: bytes = STACK_MAC) -> None:
        self.send_frame(build_ethernet(dst_mac, self.mac, ETHERTYPE_IPV4, packet))

    def next_id(self) -> int:
        self._ip_id += 1
        return self._ip_id

    def ip_packet(self, dst, protocol: int, payload: bytes, **fields) -> bytes:
        """An IPv4 packet from this host, header checksum computed."""
        fields.setdefault("identification", self.next_id())
        header = IPv4Header(fields.pop("src", self.ip), IPv4Address(dst), protocol, **fields)
        return build_ipv4(header, payload)

    def echo_request(self, dst, ident: int = 0x1234, seq: int = 1, data: bytes = b"ping",
                     **fields) -> bytes:
        icmp = build_icmpv4(IcmpMessage.echo_request(ident, seq, data))
        return self.ip_packet(dst, wire.PROTO_ICMP, icmp, **fields)

    def udp_packet(self, dst, dst_port: int, data: bytes, src_port: int = 5555, **fields) -> bytes:
        src = fields.get("src", self.ip)
        udp = build_udp(src_port, dst_port, data, src, IPv4Address(dst))
        return self.ip_packet(dst, wire.PROTO_UDP, udp, **fields)

    def arp_packet(self, operation: int, target_ip, *, sender_ip=None, sender_mac=None,
                   target_mac: bytes = bytes(6), eth_dst: bytes = BROADCAST_MAC) -> bytes:
        sender_mac = sender_mac or self.mac
        packet = ArpPacket(operation, sender_mac, IPv4Address(sender_ip or self.ip), target_mac,
                           IPv4Address(target_ip))
        return build_ethernet(eth_dst, sender_mac, ETHERTYPE_ARP, packet.build())

    # --- receiving ------------------------------------------------------------

    async def receive(self, predicate=lambda frame: True, timeout: float = 10.0) -> tuple[float, bytes]:
        """The next frame (arrival time, bytes) that satisfies ``predicate``."""
        with trio.fail_after(timeout):
            while True:
                at, frame = await self._receive.receive()
                if predicate(frame):
                    return at, frame

    async def receive_ip(self, protocol: int | None = None, timeout: float = 10.0):
        """The next IPv4 packet: (arrival time, header, payload bytes).
        Its header checksum is checked unless the cable offloads checksums."""
        def wanted(frame):
            eth, payload = parse_ethernet(frame)
            if eth.ethertype != ETHERTYPE_IPV4:
                return False
            return protocol is None or parse_ipv4(payload, verify_checksum=False)[0].protocol == protocol
        at, frame = await self.receive(wanted, timeout)
        header, payload = parse_ipv4(parse_ethernet(frame)[1],
                                     verify_checksum=not self.end.checksum_offload)
        return at, header, bytes(payload)

    async def receive_icmp(self, timeout: float = 10.0):
        """The next ICMP message: (arrival time, IPv4 header, IcmpMessage)."""
        at, header, payload = await self.receive_ip(wire.PROTO_ICMP, timeout)
        return at, header, parse_icmpv4(payload, verify_checksum=not self.end.checksum_offload)

    def pending(self) -> list[bytes]:
        """Frames received and not consumed yet by ``receive*``."""
        out = []
        while True:
            try:
                out.append(self._receive.receive_nowait()[1])
            except trio.WouldBlock:
                return out

    def arp_requests(self) -> list[tuple[float, ArpPacket]]:
        """Every ARP request received so far (all frames, consumed or not)."""
        found = []
        for at, frame in self.frames:
            eth, payload = parse_ethernet(frame)
            if eth.ethertype == ETHERTYPE_ARP:
                arp = parse_arp(payload)
                if arp.operation == ARP_REQUEST:
                    found.append((at, arp))
        return found

    def arp_replies(self) -> list[tuple[float, ArpPacket, bytes]]:
        found = []
        for at, frame in self.frames:
            eth, payload = parse_ethernet(frame)
            if eth.ethertype == ETHERTYPE_ARP:
                arp = parse_arp(payload)
                if arp.operation == ARP_REPLY:
                    found.append((at, arp, eth.dst))
        return found

    def ip_frames(self) -> list[tuple[float, IPv4Header, bytes]]:
        found = []
        for at, frame in self.frames:
            eth, payload = parse_ethernet(frame)
            if eth.ethertype == ETHERTYPE_IPV4:
                header, data = parse_ipv4(payload, verify_checksum=False)
                found.append((at, header, bytes(data)))
        return found


async def stack_and_host(nursery, *, stack_kwargs=None, host_ip="10.0.0.9", answer_arp=True,
                         address="10.0.0.1/24", **cable_kwargs):
    """A running Stack on end ``a`` of a virtual cable (MAC STACK_MAC) and a
    RawHost on end ``b``; the caller enters the returned stack."""
    cable_kwargs.setdefault("seed", 1)
    a, b = trionet.virtual_cable(**cable_kwargs)
    stack = trionet.Stack(seed=cable_kwargs["seed"], **(stack_kwargs or {}))
    host = RawHost(b, host_ip, answer_arp=answer_arp)
    await nursery.start(host.run)
    return stack, a, host


def decode_quote(message: IcmpMessage) -> tuple[IPv4Header, bytes]:
    """The quoted datagram of an ICMP error: its header and the 8 bytes after."""
    quoted = bytes(message.payload)
    ihl = (quoted[0] & 0x0F) * 4
    # The quote is cut short: parse only the header part.
    header, _ = parse_ipv4(quoted[:ihl] + bytes(max(0, ((quoted[2] << 8) | quoted[3]) - ihl)),
                           verify_checksum=False)
    return header, quoted[ihl:ihl + 8]


# --- sanity tests of the helpers --------------------------------------------------


async def test_raw_host_answers_arp_and_records(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery, latency=0.005)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        # The stack resolves the raw host, then its echo request arrives.
        with pytest.raises(TimeoutError):  # the raw host does not answer pings
            await stack.ping("10.0.0.9", timeout=0.2)
        at, header, message = await host.receive_icmp()
        assert header.src == IPv4Address("10.0.0.1") and header.dst == host.ip
        assert message.type == wire.ICMP_ECHO_REQUEST
        assert [arp.target_ip for _, arp in host.arp_requests()] == [host.ip]


async def test_decode_quote_round_trip():
    host = RawHost(None, "10.0.0.9")
    packet = host.udp_packet("10.0.0.1", 9, b"hello")
    quote = wire.quote_for_icmp(packet)
    header, first8 = decode_quote(IcmpMessage.error(3, 3, quote))
    assert header.dst == IPv4Address("10.0.0.1") and header.protocol == wire.PROTO_UDP
    assert first8 == packet[20:28]
