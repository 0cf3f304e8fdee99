"""IPv4: fragment()/Reassembler without I/O; the NIC and IPv4 input/output,
ICMP errors and forwarding over virtual cables (RFC 791, 792, 1122, 1812).
Virtual time throughout."""

from __future__ import annotations

import errno
import random
from ipaddress import IPv4Address, IPv4Network, IPv6Address

import pytest
import trio

import trionet
from trionet import wire
from trionet.network.fragments import Reassembler, ReassemblyConfig, copied_options, fragment
from trionet.network.routes import Route, RouteTable
from trionet.wire import (ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY,
                          ICMP_TIME_EXCEEDED, IPv4Header, WireError, build_ethernet, build_ipv4,
                          parse_ipv4)

from test_stack_support import (HOST_MAC, STACK_MAC, RawHost, decode_quote,  # noqa: F401
                                stack_and_host)

SRC = IPv4Address("10.0.0.9")
DST = IPv4Address("10.0.0.1")


def header(**fields) -> IPv4Header:
    fields.setdefault("identification", 77)
    return IPv4Header(SRC, DST, wire.PROTO_UDP, **fields)


def pieces_of(payload: bytes, mtu: int, **fields):
    """The (header, payload bytes, raw packet) of each fragment."""
    out = []
    for h, chunk in fragment(header(**fields), payload, mtu):
        raw = build_ipv4(h, chunk)
        out.append((h, bytes(chunk), raw))
    return out


# --- fragment() ---------------------------------------------------------------------


def test_fragment_sizes_offsets_flags():
    payload = bytes(range(256)) * 16  # 4096 bytes
    pieces = pieces_of(payload, 1500)
    assert [h.fragment_offset for h, _, _ in pieces] == [0, 1480, 2960]
    assert [len(c) for _, c, _ in pieces] == [1480, 1480, 1136]
    assert [h.more_fragments for h, _, _ in pieces] == [True, True, False]
    assert all(len(raw) <= 1500 for _, _, raw in pieces)
    assert b"".join(c for _, c, _ in pieces) == payload
    assert {h.identification for h, _, _ in pieces} == {77}


def test_fragment_payload_boundaries_are_multiples_of_8():
    pieces = pieces_of(bytes(1000), 101)  # room 81 -> 80 bytes a piece
    assert all(len(c) == 80 for _, c, _ in pieces[:-1])
    assert sum(len(c) for _, c, _ in pieces) == 1000


def test_fragment_of_a_fragment_keeps_offsets_and_more_fragments():
    pieces = pieces_of(bytes(2000), 600, fragment_offset=1480, more_fragments=True)
    assert [h.fragment_offset for h, _, _ in pieces] == [1480, 2056, 2632, 3208]
    assert all(h.more_fragments for h, _, _ in pieces)  # not the datagram's end


def test_fragment_copies_only_copied_options():
    # Record route (type 7, not copied) and a copied option (type 0x83, LSRR).
    rr = bytes([7, 7, 4]) + bytes(4)
    lsrr = bytes([0x83, 7, 4]) + bytes(4)
    assert copied_options(rr + lsrr) == lsrr
    assert copied_options(bytes([1, 1]) + lsrr + bytes([0, 0])) == lsrr
    pieces = pieces_of(bytes(3000), 1500, options=rr + lsrr + b"\x00\x00")
    assert pieces[0][0].options == rr + lsrr + b"\x00\x00"
    assert all(h.options == lsrr for h, _, _ in pieces[1:])
    assert all(len(raw) <= 1500 for _, _, raw in pieces)


def test_fragment_mtu_too_small():
    with pytest.raises(ValueError):
        fragment(header(), bytes(100), 24)


# --- Reassembler ----------------------------------------------------------------------


def feed(reassembler, pieces, now=0.0):
    result = None
    for h, chunk, raw in pieces:
        parsed, payload = parse_ipv4(raw)
        got = reassembler.add(parsed, payload, raw, now)
        if got is not None:
            assert result is None
            result = got
    return result


@pytest.mark.parametrize("order", ["forward", "reverse", "shuffled"])
def test_reassembly_orders(order):
    payload = bytes(random.Random(1).randbytes(5000))
    pieces = pieces_of(payload, 576)
    if order == "reverse":
        pieces.reverse()
    elif order == "shuffled":
        random.Random(2).shuffle(pieces)
    r = Reassembler()
    h, whole, first_raw = feed(r, pieces)
    assert whole == payload
    assert not h.is_fragment and h.src == SRC and h.identification == 77
    assert parse_ipv4(first_raw)[0].fragment_offset == 0
    assert len(r) == 0 and r.bytes_held == 0


def test_reassembly_ignores_exact_duplicates():
    payload = bytes(range(200)) * 20
    pieces = pieces_of(payload, 1500)
    assert len(pieces) == 3
    r = Reassembler()
    assert feed(r, [pieces[0], pieces[2]]) is None
    held = r.bytes_held
    assert feed(r, [pieces[0], pieces[2], pieces[0]]) is None
    assert r.bytes_held == held  # duplicates cost nothing
    _, whole, _ = feed(r, [pieces[1]])
    assert whole == payload


def test_reassembly_overlap_discards_the_datagram():
    payload = bytes(3000)
    r = Reassembler()
    feed(r, pieces_of(payload, 1500)[:1])
    # Same id, a fragment overlapping the first (offset 8, 800 bytes).
    h = header(fragment_offset=8, more_fragments=True)
    raw = build_ipv4(h, bytes(800))
    with pytest.raises(WireError) as info:
        r.add(*parse_ipv4(raw), raw, 0.0)
    assert info.value.reason == "ipv4.fragment_overlap"
    assert len(r) == 0 and r.bytes_held == 0


def test_reassembly_same_offset_different_bytes_is_overlap():
    r = Reassembler()
    raw1 = build_ipv4(header(more_fragments=True), bytes(16))
    raw2 = build_ipv4(header(more_fragments=True), b"\x01" * 16)
    r.add(*parse_ipv4(raw1), raw1, 0.0)
    with pytest.raises(WireError, match="overlap"):
        r.add(*parse_ipv4(raw2), raw2, 0.0)


def test_reassembly_inconsistent_ends():
    r = Reassembler()
    last1 = build_ipv4(header(fragment_offset=800), bytes(100))
    last2 = build_ipv4(header(fragment_offset=1600), bytes(100))
    r.add(*parse_ipv4(last1), last1, 0.0)
    with pytest.raises(WireError) as info:
        r.add(*parse_ipv4(last2), last2, 0.0)
    assert info.value.reason == "ipv4.fragment_inconsistent"
    assert len(r) == 0
    # A non-final fragment reaching past the known end.
    r.add(*parse_ipv4(last1), last1, 0.0)
    past = build_ipv4(header(fragment_offset=1600, more_fragments=True), bytes(8))
    with pytest.raises(WireError, match="inconsistent"):
        r.add(*parse_ipv4(past), past, 0.0)


def test_reassembly_duplicate_final_with_other_flags_is_not_a_duplicate():
    r = Reassembler()
    final = build_ipv4(header(fragment_offset=800), bytes(96))
    middle = build_ipv4(header(fragment_offset=800, more_fragments=True), bytes(96))
    r.add(*parse_ipv4(final), final, 0.0)
    with pytest.raises(WireError):
        r.add(*parse_ipv4(middle), middle, 0.0)
    assert len(r) == 0


def test_reassembly_non_final_must_be_multiple_of_8():
    r = Reassembler()
    raw = build_ipv4(header(more_fragments=True), bytes(13))
    with pytest.raises(WireError) as info:
        r.add(*parse_ipv4(raw), raw, 0.0)
    assert info.value.reason == "ipv4.bad_fragment"
    assert len(r) == 0


def test_reassembly_timeout():
    r = Reassembler()  # 30 s
    pieces = pieces_of(bytes(3000), 1500)
    feed(r, pieces[:1], now=100.0)
    other = pieces_of(bytes(3000), 1500, identification=78)
    feed(r, other[1:2], now=110.0)  # no first fragment
    assert r.next_deadline() == 130.0
    assert r.expire(129.9) == []
    assert r.expire(130.0) == [pieces[0][2]]  # the first fragment, for the quote
    assert r.timed_out == 1 and len(r) == 1
    assert r.next_deadline() == 140.0
    assert r.expire(140.0) == []  # nothing to quote: no ICMP error
    assert r.timed_out == 2 and len(r) == 0 and r.bytes_held == 0
    assert r.next_deadline() == float("inf")


def test_reassembly_memory_bound():
    cost = Reassembler.FRAGMENT_COST
    a = pieces_of(bytes(4000), 1500, identification=1)
    held_a = 1480 + cost + len(a[0][2]) + 1480 + cost  # payloads, costs, first raw copy
    r = Reassembler(ReassemblyConfig(max_bytes=held_a + 1000))
    feed(r, a[:2])
    assert r.bytes_held == held_a
    b = pieces_of(bytes(4000), 1500, identification=2)
    with pytest.raises(WireError) as info:
        feed(r, b[:1])
    assert info.value.reason == "ipv4.reassembly_full"
    assert r.bytes_held == held_a and len(r) == 1  # the new one was refused
    # The datagram that would overflow while growing is given up.
    with pytest.raises(WireError):
        feed(r, a[2:])
    assert r.bytes_held == 0 and len(r) == 0
    # Room again: a datagram completes.
    c = pieces_of(bytes(2000), 1500, identification=3)
    assert feed(r, c)[1] == bytes(2000)
    assert r.bytes_held == 0


def test_reassembly_memory_bound_counts_tiny_fragments():
    """Regression: only payload bytes were counted, so a flood of 1-byte
    fragments (each its own datagram) held far more memory than max_bytes."""
    r = Reassembler(ReassemblyConfig(max_bytes=100_000))
    refused = 0
    for ident in range(10_000):
        raw = build_ipv4(header(identification=ident, fragment_offset=8), b"x")
        try:
            r.add(*parse_ipv4(raw), raw, 0.0)
        except WireError as exc:
            assert exc.reason == "ipv4.reassembly_full"
            refused += 1
    assert len(r) == 100_000 // (1 + Reassembler.FRAGMENT_COST)
    assert refused == 10_000 - len(r)
    assert r.bytes_held <= 100_000


def test_reassembly_max_fragments():
    r = Reassembler(ReassemblyConfig(max_fragments=4))
    pieces = pieces_of(bytes(800), 100)  # 10 pieces of 80
    feed(r, pieces[:4])
    with pytest.raises(WireError) as info:
        feed(r, pieces[4:5])
    assert info.value.reason == "ipv4.too_many_fragments"
    assert len(r) == 0 and r.bytes_held == 0


def test_reassembly_keys_are_separate():
    r = Reassembler()
    p1 = pieces_of(b"\x01" * 2000, 1500, identification=5)
    p2 = pieces_of(b"\x02" * 2000, 1500, identification=6)
    assert feed(r, [p1[0], p2[0]]) is None
    assert feed(r, [p2[1]])[1] == b"\x02" * 2000
    assert feed(r, [p1[1]])[1] == b"\x01" * 2000


# --- routing table ---------------------------------------------------------------------


def test_longest_prefix_match():
    table = RouteTable()
    routes = {}
    for net in ["0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32"]:
        routes[net] = Route(IPv4Network(net), IPv4Address("192.0.2.1"), net)
        table.add(routes[net])
    cases = {"8.8.8.8": "0.0.0.0/0", "10.9.9.9": "10.0.0.0/8", "10.1.9.9": "10.1.0.0/16",
             "10.1.2.9": "10.1.2.0/24", "10.1.2.3": "10.1.2.3/32"}
    for dst, net in cases.items():
        assert table.lookup(IPv4Address(dst)) is routes[net]
    # Added in another order, same answers (and the lookup cache is reset).
    table2 = RouteTable()
    for net in reversed(list(routes)):
        table2.add(routes[net])
    for dst, net in cases.items():
        assert table2.lookup(IPv4Address(dst)) is routes[net]


def test_route_metric_and_duplicates():
    table = RouteTable()
    far = Route(IPv4Network("10.0.0.0/8"), None, "far", metric=5)
    near = Route(IPv4Network("10.0.0.0/8"), None, "near", metric=1)
    table.add(far)
    assert table.lookup(IPv4Address("10.1.1.1")) is far
    table.add(near)  # the cached answer must not stick
    assert table.lookup(IPv4Address("10.1.1.1")) is near
    with pytest.raises(ValueError):
        table.add(Route(IPv4Network("10.0.0.0/8"), None, "again", metric=1))
    assert table.lookup(IPv4Address("11.0.0.1")) is None
    assert table.lookup(IPv6Address("::1")) is None
    assert near.next_hop(IPv4Address("10.2.2.2")) == IPv4Address("10.2.2.2")


def test_stack_route_lookup_and_path():
    a, b = trionet.virtual_cable()
    c, d = trionet.virtual_cable(mtu=1000)
    stack = trionet.Stack(seed=1)
    i0 = stack.add_interface(a, "10.0.0.2/24", gateway="10.0.0.1")
    i1 = stack.add_interface(c, "10.5.0.2/16")
    stack.add_route("10.9.0.0/16", gateway="10.5.0.1")
    stack.add_route("10.9.9.0/24", gateway="10.0.0.254")
    path = stack.path_to(IPv4Address("10.9.1.1"))
    assert (path.interface, path.next_hop, path.mtu) == (i1, IPv4Address("10.5.0.1"), 1000)
    path = stack.path_to(IPv4Address("10.9.9.1"))
    assert (path.interface, path.next_hop) == (i0, IPv4Address("10.0.0.254"))
    path = stack.path_to(IPv4Address("8.8.8.8"))
    assert (path.interface, path.next_hop, path.source) == (i0, IPv4Address("10.0.0.1"), i0.ip)
    path = stack.path_to(IPv4Address("10.5.3.3"))
    assert (path.interface, path.next_hop, path.source) == (i1, IPv4Address("10.5.3.3"), i1.ip)
    assert stack.path_to(i1.ip).local


def test_add_interface_argument_errors():
    a, _ = trionet.virtual_cable()
    stack = trionet.Stack()
    with pytest.raises(TypeError, match="link"):
        stack.add_interface("eth0", "10.0.0.2/24")
    for bad in ["10.0.0.300/24", "bogus", "10.0.0.2/33", 17]:
        with pytest.raises(ValueError, match="address"):
            stack.add_interface(a, bad)
    with pytest.raises(ValueError, match="gateway"):
        stack.add_interface(a, "10.0.0.2/24", gateway="not-an-ip")
    with pytest.raises(ValueError, match="gateway"):
        stack.add_interface(a, "10.0.0.2/24", gateway="10.9.0.1")  # not on the network
    for bad in ["02:00:00:00:00", "zz:00:00:00:00:01", b"\x02\x00", 1234, "01:00:5e:00:00:01"]:
        with pytest.raises(ValueError, match="mac"):
            stack.add_interface(a, "10.0.0.2/24", mac=bad)
    small, _ = trionet.virtual_cable(mtu=60)
    with pytest.raises(ValueError, match="mtu"):
        stack.add_interface(small, "10.0.0.2/24")
    # Nothing was left half-added by the failures above.
    assert stack.interfaces == [] and len(stack.routes) == 0
    stack.add_interface(a, "10.0.0.2/24", mac="02:00:00:00:00:02")
    with pytest.raises(ValueError, match="address"):
        stack.add_interface(trionet.virtual_cable()[0], "10.0.0.2/16")  # assigned already


def test_two_interfaces_with_gateways():
    stack = trionet.Stack()
    stack.add_interface(trionet.virtual_cable()[0], "10.0.0.2/24", gateway="10.0.0.1")
    stack.add_interface(trionet.virtual_cable()[0], "10.1.0.2/24", gateway="10.1.0.1")
    assert stack.path_to(IPv4Address("8.8.8.8")).next_hop == IPv4Address("10.0.0.1")


def test_add_route_argument_errors():
    a, _ = trionet.virtual_cable()
    stack = trionet.Stack()
    iface = stack.add_interface(a, "10.0.0.2/24")
    other = trionet.Stack().add_interface(trionet.virtual_cable()[0], "10.0.0.3/24")
    with pytest.raises(ValueError, match="network"):
        stack.add_route("10.1.0.0/40", gateway="10.0.0.1")
    with pytest.raises(ValueError, match="network"):
        stack.add_route(None, gateway="10.0.0.1")
    with pytest.raises(ValueError, match="gateway"):
        stack.add_route("10.1.0.0/16", gateway="10.0.0.x")
    with pytest.raises(ValueError, match="gateway"):
        stack.add_route("10.1.0.0/16", gateway="10.7.0.1")  # on no connected network
    with pytest.raises(ValueError, match="gateway or an interface"):
        stack.add_route("10.1.0.0/16")
    with pytest.raises(ValueError, match="interface"):
        stack.add_route("10.1.0.0/16", gateway="10.0.0.1", interface=other)
    with pytest.raises(ValueError, match="interface"):
        stack.add_route("10.1.0.0/16", interface="eth0")
    route = stack.add_route("10.1.0.0/16", gateway="10.0.0.1")
    assert route.interface is iface and route.gateway == IPv4Address("10.0.0.1")
    with pytest.raises(ValueError):
        stack.add_route("10.1.0.0/16", gateway="10.0.0.1")  # exists already
    stack.add_route("10.1.0.0/16", gateway="10.0.0.5", metric=1)


async def test_no_route_raises_enetunreach(autojump_clock):
    a, _ = trionet.virtual_cable()
    async with trionet.Stack() as stack:
        stack.add_interface(a, "10.0.0.2/24")
        with pytest.raises(OSError) as info:
            await stack.ping("10.9.9.9")
        assert info.value.errno == errno.ENETUNREACH
        sock = await stack.open_udp_socket()
        with pytest.raises(OSError) as info:
            await sock.sendto(b"x", ("10.9.9.9", 9))
        assert info.value.errno == errno.ENETUNREACH


# --- the NIC -----------------------------------------------------------------------------


async def test_nic_demux_and_filtering(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery)
    async with stack:
        iface = stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        assert iface.mtu == 1500
        request = host.echo_request("10.0.0.1")
        host.send_ip(request, dst_mac=bytes.fromhex("02aabbccddee"))  # another host's MAC
        host.send_ip(request, dst_mac=bytes.fromhex("01005e000001"))  # a multicast group
        host.send_frame(build_ethernet(STACK_MAC, HOST_MAC, wire.ETHERTYPE_IPV6, bytes(40)))  # version 0
        host.send_frame(build_ethernet(STACK_MAC, HOST_MAC, 0x8100, bytes(46)))  # 802.1Q
        host.send_frame(STACK_MAC + HOST_MAC)  # no ethertype
        await trio.sleep(1)
        assert host.ip_frames() == []
        drops = stack.stats.drops()
        assert drops["ethernet.other_host"] == 1 and drops["ethernet.multicast"] == 1
        assert drops["ethernet.unknown_type"] == 1 and drops["ethernet.truncated"] == 1
        assert drops["ipv6.bad_version"] == 1
        # To our MAC and to the broadcast MAC: answered.
        host.send_ip(request)
        host.send_ip(host.echo_request("10.0.0.1", seq=2), dst_mac=wire.BROADCAST_MAC)
        for seq in (1, 2):
            _, _, message = await host.receive_icmp()
            assert (message.type, message.sequence) == (ICMP_ECHO_REPLY, seq)


async def test_ethernet_padding_is_ignored(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        host.send_ip(host.echo_request("10.0.0.1", data=b"") + bytes(18))  # padded to 60
        _, header, message = await host.receive_icmp()
        assert message.type == ICMP_ECHO_REPLY and bytes(message.payload) == b""
        assert header.dst == host.ip


# --- IPv4 input and ICMP -------------------------------------------------------------


async def test_ping_fragmented_both_ways(autojump_clock):
    a, b = trionet.virtual_cable(seed=5, latency=0.01)
    async with trionet.Stack(seed=1) as s1, trionet.Stack(seed=2) as s2:
        s1.add_interface(a, "10.0.0.1/24")
        s2.add_interface(b, "10.0.0.2/24")
        await s1.ping("10.0.0.2")
        rtt = await s1.ping("10.0.0.2", size=4000)
        assert rtt == pytest.approx(0.02)
        for s in (s1, s2):
            assert s.stats["ipv4.tx_fragments"] == 3 and s.stats["ipv4.reassembled"] == 1
        assert a.stats["tx_dropped_oversize"] == b.stats["tx_dropped_oversize"] == 0
        await s2.ping("10.0.0.1", size=65507)  # the largest: 45 fragments
        assert s2.stats["ipv4.reassembled"] == 2


async def test_ping_and_udp_with_loss(autojump_clock):
    a, b = trionet.virtual_cable(seed=11, latency=0.005, loss=0.2)
    async with trionet.Stack(seed=1) as s1, trionet.Stack(seed=2) as s2:
        s1.add_interface(a, "10.0.0.1/24")
        s2.add_interface(b, "10.0.0.2/24")
        answered = lost = 0
        for _ in range(50):
            for attempt in range(20):
                try:
                    await s1.ping("10.0.0.2", timeout=0.5)
                    answered += 1
                    break
                except TimeoutError:
                    lost += 1
                except OSError as exc:
                    # Three ARP exchanges lost in a row (about 5% at this
                    # loss): host unreachable, as on Linux; the next tries again.
                    assert exc.errno == errno.EHOSTUNREACH
                    lost += 1
            else:
                pytest.fail("20 pings in a row were lost")
        assert answered == 50 and lost > 0

        server = await s2.open_udp_socket(7)
        client = await s1.open_udp_socket()

        async def echo():
            while True:
                data, peer = await server.recvfrom()
                await server.sendto(data, peer)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            for i in range(30):
                message = b"message %d" % i
                for attempt in range(20):
                    await client.sendto(message, ("10.0.0.2", 7))
                    with trio.move_on_after(0.5):
                        while True:  # a late echo of an earlier try may come first
                            data, peer = await client.recvfrom()
                            if data == message:
                                break
                        assert peer == ("10.0.0.2", 7)
                        break
                else:
                    pytest.fail("20 UDP tries in a row were lost")
            nursery.cancel_scope.cancel()


async def test_reassembly_timeout_sends_time_exceeded(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery, checksum_offload=False)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        whole = host.echo_request("10.0.0.1", data=bytes(3000))
        h, payload = parse_ipv4(whole)
        pieces = [build_ipv4(p, c) for p, c in fragment(h, payload, 1500)]
        start = trio.current_time()
        host.send_ip(pieces[0])  # the first fragment only
        host.send_ip(pieces[0])  # and a duplicate of it
        at, header, message = await host.receive_icmp(timeout=60)
        assert at - start == pytest.approx(30.0)
        assert (message.type, message.code) == (ICMP_TIME_EXCEEDED, wire.TIME_EXCEEDED_REASSEMBLY)
        assert header.src == IPv4Address("10.0.0.1") and header.dst == host.ip
        quoted, first8 = decode_quote(message)
        assert quoted.identification == h.identification and quoted.more_fragments
        assert first8 == pieces[0][20:28]
        assert stack.stats["drop.ipv4.reassembly_timeout"] == 1

        # Without the first fragment: dropped and counted, no ICMP (RFC 792).
        host.send_ip(pieces[1])
        await trio.sleep(40)
        assert stack.stats["drop.ipv4.reassembly_timeout"] == 2
        assert host.pending() == []
        assert stack.resources()["reassembly_bytes"] == 0


async def test_reassembly_then_answer(nursery, autojump_clock):
    """Fragments from a hand-made sender, out of order: one reply."""
    stack, a, host = await stack_and_host(nursery, checksum_offload=False)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        whole = host.echo_request("10.0.0.1", data=bytes(range(256)) * 8, seq=9)
        h, payload = parse_ipv4(whole)
        pieces = [build_ipv4(p, c) for p, c in fragment(h, payload, 576)]
        for piece in reversed(pieces):
            host.send_ip(piece)
        replies = []
        while sum(len(p) for _, p in replies) < 8 + 2048:
            _, header, payload = await host.receive_ip(wire.PROTO_ICMP)
            assert len(payload) + 20 <= 1500
            replies.append((header.fragment_offset, payload))
        data = b"".join(p for _, p in sorted(replies))
        message = wire.parse_icmpv4(data)
        assert message.type == ICMP_ECHO_REPLY and message.sequence == 9
        assert bytes(message.payload) == bytes(range(256)) * 8


async def test_ttl_one_is_delivered_locally_and_ours_is_64(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        host.send_ip(host.echo_request("10.0.0.1", ttl=1))  # RFC 1122 3.2.1.7
        _, header, message = await host.receive_icmp()
        assert message.type == ICMP_ECHO_REPLY and header.ttl == 64
        host.send_ip(host.echo_request("10.0.0.1", ttl=0))
        _, header, message = await host.receive_icmp()
        assert message.type == ICMP_ECHO_REPLY


async def test_unknown_protocol_gets_protocol_unreachable(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery, checksum_offload=False)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        packet = host.ip_packet("10.0.0.1", 200, b"whatever payload")
        host.send_ip(packet)
        _, header, message = await host.receive_icmp()
        assert (message.type, message.code) == (ICMP_DEST_UNREACHABLE, wire.UNREACH_PROTOCOL)
        quoted, first8 = decode_quote(message)
        assert quoted.protocol == 200 and first8 == b"whatever"
        assert stack.stats["drop.ipv4.unknown_protocol"] == 1
        # Sent to the broadcast address: no error (RFC 1122 3.2.2).
        host.send_ip(host.ip_packet("10.0.0.255", 200, b"x"), dst_mac=wire.BROADCAST_MAC)
        await trio.sleep(1)
        assert host.pending() == []
        assert stack.stats["drop.ipv4.unknown_protocol"] == 2


async def test_bad_checksums_dropped_and_counted(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery, checksum_offload=False)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        good = bytearray(host.echo_request("10.0.0.1"))
        bad_ip = bytearray(good)
        bad_ip[10] ^= 0xFF  # header checksum
        host.send_ip(bytes(bad_ip))
        bad_icmp = bytearray(good)
        bad_icmp[22] ^= 0xFF  # ICMP checksum
        host.send_ip(bytes(bad_icmp))
        bad_udp = bytearray(host.udp_packet("10.0.0.1", 9, b"data"))
        bad_udp[26] ^= 0xFF  # UDP checksum
        host.send_ip(bytes(bad_udp))
        await trio.sleep(1)
        assert host.pending() == []
        drops = stack.stats.drops()
        assert drops == {"ipv4.bad_checksum": 1, "icmp.bad_checksum": 1, "udp.bad_checksum": 1}
        # The good one is answered, and what the stack sends checks out
        # (receive_icmp verifies the IPv4 and ICMP checksums here).
        host.send_ip(bytes(good))
        _, _, message = await host.receive_icmp()
        assert message.type == ICMP_ECHO_REPLY


async def test_malformed_headers_dropped(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        good = host.echo_request("10.0.0.1")
        cases = {
            "ipv4.bad_version": bytes([0x65]) + good[1:],
            "ipv4.bad_header_length": bytes([0x44]) + good[1:],
            "ipv4.truncated": good[:30],
            "ipv4.bad_total_length": good[:2] + (10).to_bytes(2, "big") + good[4:],
            "ipv4.bad_source": host.echo_request("10.0.0.1", src=IPv4Address("224.0.0.1")),
            "ipv4.not_for_us": host.echo_request("10.0.0.2"),
            "ipv4.multicast": host.echo_request("224.0.0.1"),
        }
        for packet in cases.values():
            host.send_ip(packet)
        await trio.sleep(1)
        assert host.pending() == []
        assert stack.stats.drops() == {reason: 1 for reason in cases}


async def test_icmp_errors_are_not_answered_with_errors(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        # An ICMP error quoting a UDP datagram to a closed port of ours... is
        # not answered; nor is an unknown-protocol datagram from a broadcast source.
        udp = host.udp_packet("10.0.0.1", 9, b"x")
        error = wire.build_icmpv4(wire.IcmpMessage.error(3, 3, wire.quote_for_icmp(udp)))
        host.send_ip(host.ip_packet("10.0.0.1", wire.PROTO_ICMP, error))
        host.send_ip(host.ip_packet("10.0.0.1", 200, b"x", src=IPv4Address("10.0.0.255")))
        await trio.sleep(1)
        assert host.pending() == []
        assert stack.stats["icmp.rx_error"] == 1 and stack.stats["icmp.tx_error"] == 0


async def test_icmp_error_rate_limit(nursery, autojump_clock):
    stack, a, host = await stack_and_host(
        nursery, stack_kwargs=dict(icmp_error_rate=10.0, icmp_error_burst=5))
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        for port in range(100, 120):
            host.send_ip(host.udp_packet("10.0.0.1", port, b"x"))
        await trio.sleep(0.01)
        assert stack.stats["icmp.tx_error"] == 5
        assert stack.stats["drop.icmp.rate_limited"] == 15
        await trio.sleep(1)
        for port in range(100, 120):
            host.send_ip(host.udp_packet("10.0.0.1", port, b"x"))
        await trio.sleep(0.01)
        assert stack.stats["icmp.tx_error"] == 10  # refilled to the burst


async def test_mtu_from_the_link(autojump_clock):
    a, b = trionet.virtual_cable(seed=2, mtu=576)
    async with trionet.Stack(seed=1) as s1, trionet.Stack(seed=2) as s2:
        i1 = s1.add_interface(a, "10.0.0.1/24")
        s2.add_interface(b, "10.0.0.2/24")
        assert i1.mtu == 576
        await s1.ping("10.0.0.2", size=1000)
        assert s1.stats["ipv4.tx_fragments"] == 2
        assert a.stats["tx_dropped_oversize"] == b.stats["tx_dropped_oversize"] == 0


# --- forwarding ----------------------------------------------------------------------

R_MAC_A = bytes.fromhex("0200000000a1")


def three_stacks(routed_stacks, *, raw_a: bool = False, **options):
    """A (10.0.1.2) -- R (10.0.1.1 | 10.0.2.1, forwarding) -- B (10.0.2.2).
    With ``raw_a`` the left side is a RawHost (10.0.1.9) instead of stack A."""
    make_a = (lambda end: RawHost(end, "10.0.1.9")) if raw_a else None
    return tuple(routed_stacks(router_mac=R_MAC_A, make_a=make_a, **options))


async def test_forwarding_ping_and_udp(routed_stacks, autojump_clock):
    a, router, b = three_stacks(routed_stacks, latency=0.01)
    async with a, router, b:
        await a.ping("10.0.2.2")
        assert await a.ping("10.0.2.2") == pytest.approx(0.04)
        await b.ping("10.0.1.2", size=4000)
        # The router's own addresses answer too, on both sides.
        await a.ping("10.0.2.1")
        server = await b.open_udp_socket(53)
        client = await a.open_udp_socket()
        await client.sendto(b"query", ("10.0.2.2", 53))
        data, (host, port) = await server.recvfrom()
        assert data == b"query" and host == "10.0.1.2" and port == client.local_port
        await server.sendto(b"answer" * 500, (host, port))  # fragmented
        assert await client.recvfrom() == (b"answer" * 500, ("10.0.2.2", 53))
        assert router.stats["ipv4.forwarded"] >= 6
        assert router.stats["icmp.tx_echo_reply"] == 1


async def test_forwarding_decrements_ttl(routed_stacks, autojump_clock, nursery):
    a, router, b = three_stacks(routed_stacks, raw_a=True)
    await nursery.start(a.run)
    async with router, b:
        a.send_ip(a.echo_request("10.0.2.2", ttl=2), dst_mac=R_MAC_A)
        _, header, message = await a.receive_icmp()
        assert message.type == ICMP_ECHO_REPLY and header.src == IPv4Address("10.0.2.2")
        assert header.ttl == 63  # B's 64, less one at the router
        assert b.stats["ipv4.rx"] == 1


async def test_forwarding_ttl_one_time_exceeded(routed_stacks, autojump_clock, nursery):
    a, router, b = three_stacks(routed_stacks, raw_a=True)
    await nursery.start(a.run)
    async with router, b:
        request = a.echo_request("10.0.2.2", ttl=1, seq=7)
        a.send_ip(request, dst_mac=R_MAC_A)
        _, header, message = await a.receive_icmp()
        assert (message.type, message.code) == (ICMP_TIME_EXCEEDED, wire.TIME_EXCEEDED_TTL)
        assert header.src == IPv4Address("10.0.1.1")  # the router, on our side
        quoted, first8 = decode_quote(message)
        assert quoted.dst == IPv4Address("10.0.2.2") and quoted.ttl == 1
        assert first8 == request[20:28]
        assert router.stats["drop.ipv4.ttl_expired"] == 1
        assert b.stats["ipv4.rx"] == 0


async def test_time_exceeded_reaches_a_stack_ping(routed_stacks, autojump_clock):
    a, router, b = three_stacks(routed_stacks)
    async with a, router, b:
        await a.ping("10.0.2.2")
        path = a.path_to(IPv4Address("10.0.2.2"))
        # A request with TTL 1 dies at the router (RFC 1812 5.3.1).
        results = []

        async def waiter():
            try:
                await a.ping("10.0.2.2", timeout=2, ttl=1)
            except OSError as exc:
                results.append(exc.errno)

        await waiter()
        assert results == [errno.EHOSTUNREACH]
        assert path.source == IPv4Address("10.0.1.2")


async def test_forwarding_no_route_net_unreachable(routed_stacks, autojump_clock, nursery):
    a, router, b = three_stacks(routed_stacks, raw_a=True)
    await nursery.start(a.run)
    async with router, b:
        a.send_ip(a.echo_request("192.0.2.7"), dst_mac=R_MAC_A)
        _, header, message = await a.receive_icmp()
        assert (message.type, message.code) == (ICMP_DEST_UNREACHABLE, wire.UNREACH_NET)
        assert header.src == IPv4Address("10.0.1.1")
        assert decode_quote(message)[0].dst == IPv4Address("192.0.2.7")
        assert router.stats["drop.ipv4.no_route"] == 1


async def test_forwarding_no_route_reaches_a_stack_ping(routed_stacks, autojump_clock):
    a, router, b = three_stacks(routed_stacks)
    async with a, router, b:
        with pytest.raises(OSError) as info:
            await a.ping("192.0.2.7")
        assert info.value.errno == errno.ENETUNREACH


async def test_forwarding_unresolved_next_hop_host_unreachable(routed_stacks, autojump_clock):
    a, router, b = three_stacks(routed_stacks)
    async with a, router, b:
        with pytest.raises(OSError) as info:
            await a.ping("10.0.2.99", timeout=5)  # nobody there behind the router
        assert info.value.errno == errno.EHOSTUNREACH
        assert router.stats["drop.arp.unresolved"] == 1


async def test_forwarding_dont_fragment_too_big(routed_stacks, autojump_clock, nursery):
    a, router, b = three_stacks(routed_stacks, raw_a=True, mtu_b=1000)
    await nursery.start(a.run)
    async with router, b:
        big = a.echo_request("10.0.2.2", data=bytes(1200), dont_fragment=True)
        a.send_ip(big, dst_mac=R_MAC_A)
        _, header, message = await a.receive_icmp()
        assert (message.type, message.code) == (ICMP_DEST_UNREACHABLE, wire.UNREACH_FRAG_NEEDED)
        assert message.next_hop_mtu == 1000  # RFC 1191
        assert header.src == IPv4Address("10.0.1.1")
        assert router.stats["drop.ipv4.fragmentation_needed"] == 1
        # Without DF the router fragments it, and B's reply comes back in pieces.
        a.send_ip(a.echo_request("10.0.2.2", data=bytes(1200), seq=2), dst_mac=R_MAC_A)
        replies = []
        while sum(len(p) for _, p in replies) < 1208:
            _, header, payload = await a.receive_ip(wire.PROTO_ICMP)
            replies.append((header.fragment_offset, payload))
        assert len(replies) == 2
        message = wire.parse_icmpv4(b"".join(p for _, p in sorted(replies)), verify_checksum=False)
        assert message.type == ICMP_ECHO_REPLY and message.sequence == 2


async def test_forwarding_refragments_fragments(routed_stacks, autojump_clock):
    a, router, b = three_stacks(routed_stacks, mtu_b=576)
    async with a, router, b:
        await a.ping("10.0.2.2", size=4000)  # 3 fragments, each split again
        assert b.stats["ipv4.reassembled"] == 1
        assert router.stats["ipv4.forwarded"] >= 6


async def test_forwarding_off_drops(routed_stacks, autojump_clock, nursery):
    a, router, b = three_stacks(routed_stacks, raw_a=True)
    router.forwarding = False
    await nursery.start(a.run)
    async with router, b:
        a.send_ip(a.echo_request("10.0.2.2"), dst_mac=R_MAC_A)
        await trio.sleep(1)
        assert a.pending() == []
        assert router.stats["drop.ipv4.not_for_us"] == 1


async def test_forwarding_refuses_martians_and_directed_broadcast(routed_stacks, autojump_clock, nursery):
    a, router, b = three_stacks(routed_stacks, raw_a=True)
    await nursery.start(a.run)
    async with router, b:
        for packet in [a.echo_request("127.0.0.1"), a.echo_request("0.1.2.3"),
                       a.echo_request("10.0.2.2", src=IPv4Address("127.0.0.1")),
                       a.echo_request("10.0.2.2", src=IPv4Address("10.0.1.255")),
                       a.echo_request("10.0.2.255")]:
            a.send_ip(packet, dst_mac=R_MAC_A)
        await trio.sleep(1)
        assert a.pending() == [] and b.stats["ipv4.rx"] == 0
        assert router.stats["drop.ipv4.martian"] == 4
        assert router.stats["drop.ipv4.directed_broadcast"] == 1
