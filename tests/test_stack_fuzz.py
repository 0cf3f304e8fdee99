"""Fuzzing a running stack: random and mutated frames written into its NIC
from a raw cable end never raise out of a task, are counted, and leave the
stack answering ping and UDP. Virtual time (each example is its own trio.run
with an autojump MockClock)."""

from __future__ import annotations

from ipaddress import IPv4Address

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trionet
from trionet import wire
from trionet.network.fragments import fragment
from trionet.wire import (ARP_REPLY, ARP_REQUEST, BROADCAST_MAC, ETHERTYPE_IPV4, IcmpMessage,
                          build_icmpv4, build_ipv4, internet_checksum, parse_ipv4)
from trionet.wire.tcp import ACK, SYN, TcpHeader, build_tcp

from test_stack_support import (STACK_MAC, RawHost, # noqa: F401
                                stack_and_host)

STACK_IP = IPv4Address("10.0.0.1")
HOST_IP = IPv4Address("10.0.0.9")
ECHO_PORT = 7
TCP_PORT = 80


def base_frames() -> list[bytes]:
    """Valid frames of every kind the stack handles, to mutate."""
    host = RawHost(None, HOST_IP)

    def eth(packet, dst=STACK_MAC):
        return wire.build_ethernet(dst, host.mac, ETHERTYPE_IPV4, packet)

    def tcp(dst_port, flags, seq=1000, ack=0, data=b""):
        segment = build_tcp(TcpHeader(40000, dst_port, seq, ack, flags, 65535), data, HOST_IP, STACK_IP)
        return eth(host.ip_packet(STACK_IP, wire.PROTO_TCP, segment))

    echo = host.echo_request(STACK_IP, data=bytes(range(64)))
    big = host.echo_request(STACK_IP, data=bytes(3000), identification=4242)
    h, payload = parse_ipv4(big)
    pieces = [build_ipv4(p, c) for p, c in fragment(h, payload, 1500)]
    udp_closed = host.udp_packet(STACK_IP, 9, b"closed")
    tcp_segment = build_tcp(TcpHeader(40000, 81, 1, 0, SYN, 1000), b"", STACK_IP, HOST_IP)
    quoted_tcp = wire.quote_for_icmp(build_ipv4(wire.IPv4Header(STACK_IP, HOST_IP, wire.PROTO_TCP), tcp_segment))
    quoted_echo = wire.quote_for_icmp(
        build_ipv4(wire.IPv4Header(STACK_IP, HOST_IP, wire.PROTO_ICMP),
                   build_icmpv4(IcmpMessage.echo_request(1, 1, b"x"))))
    return [
        host.arp_packet(ARP_REQUEST, STACK_IP),
        host.arp_packet(ARP_REPLY, STACK_IP, target_mac=STACK_MAC, eth_dst=STACK_MAC),
        host.arp_packet(ARP_REQUEST, "10.0.0.77"),
        eth(echo),
        eth(echo, dst=BROADCAST_MAC),
        eth(host.echo_request(STACK_IP, options=bytes([0x83, 7, 4]) + bytes(4) + b"\x01")),
        eth(host.udp_packet(STACK_IP, ECHO_PORT, b"fuzz me")),
        eth(udp_closed),
        eth(host.udp_packet("10.0.0.255", ECHO_PORT, b"bcast"), dst=BROADCAST_MAC),
        tcp(TCP_PORT, SYN),
        tcp(TCP_PORT, ACK, seq=1001, ack=12345, data=b"data"),
        tcp(81, SYN),
        *(eth(p) for p in pieces),
        eth(host.ip_packet(STACK_IP, wire.PROTO_ICMP, build_icmpv4(IcmpMessage.error(3, 3, quoted_tcp)))),
        eth(host.ip_packet(STACK_IP, wire.PROTO_ICMP, build_icmpv4(IcmpMessage.error(11, 0, quoted_echo)))),
        eth(host.ip_packet(STACK_IP, wire.PROTO_ICMP, build_icmpv4(IcmpMessage.echo_reply(1, 1, b"x")))),
        eth(host.ip_packet(STACK_IP, 99, b"unknown protocol")),
    ]


BASES = base_frames()
# Byte offsets (in the frame) of length and layout fields worth breaking.
FIELDS = [12, 13, 14, 16, 17, 20, 21, 22, 23, 24, 34, 35, 36, 38, 39, 40, 41, 46, 47]


def fix_ipv4_checksum(frame: bytearray) -> None:
    """Recompute the IPv4 header checksum, so a mutated header gets past it."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return
    ihl = (frame[14] & 0x0F) * 4
    if ihl < 20 or len(frame) < 14 + ihl:
        return
    frame[24:26] = b"\0\0"
    frame[24:26] = internet_checksum(bytes(frame[14:14 + ihl])).to_bytes(2, "big")


@st.composite
def mutated_frame(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:  # pure noise, sometimes past the MAC filter
        prefix = draw(st.sampled_from([STACK_MAC, BROADCAST_MAC, b""]))
        return prefix + draw(st.binary(max_size=200))
    frame = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "set", "field", "truncate", "extend", "delete"]))
        if kind == "flip" and frame:
            pos = draw(st.integers(0, len(frame) - 1))
            frame[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and frame:
            frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
        elif kind == "field":
            pos = draw(st.sampled_from(FIELDS))
            if pos < len(frame):
                frame[pos] = draw(st.sampled_from([0, 1, 0x0F, 0x45, 0x4F, 0x80, 0xFF,
                                                   draw(st.integers(0, 255))]))
        elif kind == "truncate":
            del frame[draw(st.integers(0, len(frame))):]
        elif kind == "extend":
            frame += draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete" and frame:
            pos = draw(st.integers(0, len(frame) - 1))
            del frame[pos:pos + draw(st.integers(1, 16))]
    if draw(st.booleans()):
        fix_ipv4_checksum(frame)
    return bytes(frame)


async def still_answers(host: RawHost) -> None:
    """Ping and UDP from the raw host get their answers."""
    host.pending()  # forget what the fuzz frames provoked
    host.send_ip(host.echo_request(STACK_IP, ident=0xBEEF, seq=77, data=b"alive?"))
    while True:
        _, _, message = await host.receive_icmp(timeout=5)
        if message.type == wire.ICMP_ECHO_REPLY and (message.identifier, message.sequence) == (0xBEEF, 77):
            assert bytes(message.payload) == b"alive?"
            break
    host.send_ip(host.udp_packet(STACK_IP, ECHO_PORT, b"still there", src_port=6001))
    while True:
        _, header, payload = await host.receive_ip(wire.PROTO_UDP, timeout=5)
        udp, data = wire.parse_udp(payload, header.src, header.dst, verify_checksum=False)
        if udp.dst_port == 6001 and bytes(data) == b"still there":
            break


async def run_fuzz(frames: list[bytes], offload: bool, spread: bool) -> trionet.Stack:
    async with trio.open_nursery() as nursery:
        stack, a, host = await stack_and_host(nursery, checksum_offload=offload, latency=0.001)
        async with stack:
            stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
            sock = await stack.open_udp_socket(ECHO_PORT)

            async def echo():
                while True:
                    try:
                        data, peer = await sock.recvfrom()
                    except trio.ClosedResourceError:
                        return
                    try:
                        await sock.sendto(data, peer)
                    except OSError:
                        pass  # e.g. a spoofed source with no route back

            nursery.start_soon(echo)
            try:
                listeners = await stack.open_tcp_listeners(TCP_PORT)
            except Exception:  # the TCP layer is not this file's subject
                listeners = []
            for frame in frames:
                host.send_frame(frame)
                if spread:
                    await trio.sleep(0.3)
            await trio.sleep(40)  # past ARP retries and the reassembly timeout
            stats = stack.stats
            # Every frame the cable carried (not the oversize ones) reached the NIC.
            assert stats["ethernet.rx"] >= len([f for f in frames if len(f) <= 1514])
            await still_answers(host)
            for listener in listeners:
                await listener.aclose()
            nursery.cancel_scope.cancel()
    return stack


FUZZ_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow], deadline=None)


@FUZZ_SETTINGS
@given(frames=st.lists(mutated_frame(), min_size=1, max_size=25), offload=st.booleans(),
       spread=st.booleans())
def test_fuzzed_frames_never_break_the_stack(frames, offload, spread):
    stack = trio.run(run_fuzz, frames, offload, spread,
                     clock=trio.testing.MockClock(autojump_threshold=0))
    assert stack.stats["drop.internal.error"] == 0, stack.stats.drops()


@FUZZ_SETTINGS
@given(data=st.lists(st.binary(min_size=0, max_size=120), min_size=1, max_size=30))
def test_random_bytes_to_our_mac(data):
    frames = [STACK_MAC + d for d in data]
    stack = trio.run(run_fuzz, frames, True, False,
                     clock=trio.testing.MockClock(autojump_threshold=0))
    assert stack.stats["drop.internal.error"] == 0, stack.stats.drops()


def test_every_base_frame_is_handled(no_internal_errors):
    """The unmutated frames themselves: each handled or dropped with a reason."""
    for offload in (True, False):
        stack = trio.run(run_fuzz, BASES, offload, True,
                         clock=trio.testing.MockClock(autojump_threshold=0))
        drops = stack.stats.drops()
        assert "internal.error" not in drops
        assert stack.stats["ethernet.rx"] >= len(BASES)
        assert stack.stats["udp.rx"] >= 2 and stack.stats["icmp.rx"] >= 4


def test_every_malformed_frame_is_counted(no_internal_errors):
    """Frames that cannot be handled show up as drops, one each."""
    host = RawHost(None, HOST_IP)
    echo = host.echo_request(STACK_IP)
    bad = [
        STACK_MAC + b"\x02",  # truncated Ethernet
        wire.build_ethernet(STACK_MAC, host.mac, ETHERTYPE_IPV4, echo[:10]),  # truncated IPv4
        wire.build_ethernet(STACK_MAC, host.mac, wire.ETHERTYPE_ARP, b"\x00\x01\x08"),
        wire.build_ethernet(STACK_MAC, host.mac, 0x9000, b"loopback test"),
        wire.build_ethernet(STACK_MAC, host.mac, ETHERTYPE_IPV4, echo[:20] + b"\x08\x00"),
    ]
    stack = trio.run(run_fuzz, bad, True, True, clock=trio.testing.MockClock(autojump_threshold=0))
    drops = stack.stats.drops()
    assert drops["ethernet.truncated"] == 1
    assert drops["ipv4.truncated"] == 2
    assert drops["arp.truncated"] + drops.get("arp.unsupported", 0) == 1
    assert drops["ethernet.unknown_type"] == 1
