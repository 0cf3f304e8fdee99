"""UDP sockets and ICMP echo over virtual cables (RFC 768, RFC 792,
RFC 1122 3.2.2 and 4.1). Virtual time throughout."""

from __future__ import annotations

import errno
from ipaddress import IPv4Address

import pytest
import trio

import trionet
from trionet import wire
from trionet.wire import ICMP_DEST_UNREACHABLE

from test_stack_support import (STACK_MAC, decode_quote, # noqa: F401
                                stack_and_host)


def pair(*, seed=1, **cable):
    a, b = trionet.virtual_cable(seed=seed, **cable)
    s1, s2 = trionet.Stack(seed=seed * 10 + 1), trionet.Stack(seed=seed * 10 + 2)
    s1.add_interface(a, "10.0.0.1/24")
    s2.add_interface(b, "10.0.0.2/24")
    return s1, s2, a, b


async def echo_forever(sock):
    while True:
        data, peer = await sock.recvfrom()
        await sock.sendto(data, peer)


async def test_udp_echo(autojump_clock):
    s1, s2, _, _ = pair(latency=0.002)
    async with s1, s2, trio.open_nursery() as nursery:
        server = await s2.open_udp_socket(7)
        nursery.start_soon(echo_forever, server)
        client = await s1.open_udp_socket()
        for data in [b"hello", b"", bytes(range(256)) * 4, b"x" * 1472, b"y" * 1473,
                     b"z" * 65507]:
            await client.sendto(data, ("10.0.0.2", 7))
            got, peer = await client.recvfrom()
            assert got == data and peer == ("10.0.0.2", 7)
        assert client.local_address == ("0.0.0.0", client.local_port)
        assert s1.stats["udp.tx"] == 6 and s1.stats["udp.rx"] == 6
        nursery.cancel_scope.cancel()


async def test_udp_to_our_own_address(autojump_clock):
    s1, s2, _, _ = pair()
    async with s1, s2:
        a = await s1.open_udp_socket(1000)
        b = await s1.open_udp_socket(2000, local_address="10.0.0.1")
        await a.sendto(b"to myself", ("10.0.0.1", 2000))
        assert await b.recvfrom() == (b"to myself", ("10.0.0.1", 1000))
        await b.sendto(b"back", ("10.0.0.1", 1000))
        assert await a.recvfrom() == (b"back", ("10.0.0.1", 2000))
        assert await s1.ping("10.0.0.1") == 0.0
        await s1.ping("10.0.0.1", size=30000)


async def test_closed_port_gets_port_unreachable(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery, checksum_offload=False)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        datagram = host.udp_packet("10.0.0.1", 9999, b"anyone?", src_port=4321)
        host.send_ip(datagram)
        _, header, message = await host.receive_icmp()
        assert (message.type, message.code) == (ICMP_DEST_UNREACHABLE, wire.UNREACH_PORT)
        assert header.src == IPv4Address("10.0.0.1") and header.dst == host.ip
        quoted, first8 = decode_quote(message)
        assert quoted.src == host.ip and quoted.dst == IPv4Address("10.0.0.1")
        assert quoted.protocol == wire.PROTO_UDP
        assert first8 == datagram[20:28]  # the UDP header: ports, length, checksum
        assert int.from_bytes(first8[0:2], "big") == 4321
        assert int.from_bytes(first8[2:4], "big") == 9999
        assert stack.stats["drop.udp.no_socket"] == 1
        # Broadcast to a closed port: dropped, no error (RFC 1122 3.2.2).
        host.send_ip(host.udp_packet("10.0.0.255", 9999, b"x"), dst_mac=wire.BROADCAST_MAC)
        host.send_ip(host.udp_packet("255.255.255.255", 9999, b"x"), dst_mac=wire.BROADCAST_MAC)
        await trio.sleep(1)
        assert host.pending() == []
        assert stack.stats["drop.udp.no_socket"] == 3


async def test_port_unreachable_between_stacks(autojump_clock):
    s1, s2, _, _ = pair()
    async with s1, s2:
        sock = await s1.open_udp_socket()
        await sock.sendto(b"x", ("10.0.0.2", 9))
        await trio.sleep(1)
        assert s2.stats["icmp.tx_error"] == 1 and s1.stats["icmp.rx_error"] == 1


async def test_udp_broadcast_and_zero_checksum_received(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery, checksum_offload=False)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        sock = await stack.open_udp_socket(67)
        host.send_ip(host.udp_packet("10.0.0.255", 67, b"directed"), dst_mac=wire.BROADCAST_MAC)
        host.send_ip(host.udp_packet("255.255.255.255", 67, b"limited"), dst_mac=wire.BROADCAST_MAC)
        no_sum = bytearray(host.udp_packet("10.0.0.1", 67, b"no checksum"))
        no_sum[26:28] = b"\0\0"  # RFC 768: zero means none was computed
        host.send_ip(bytes(no_sum))
        got = [await sock.recvfrom() for _ in range(3)]
        assert [d for d, _ in got] == [b"directed", b"limited", b"no checksum"]


async def test_eaddrinuse_and_binding_rules(autojump_clock):
    a, _ = trionet.virtual_cable()
    c, _ = trionet.virtual_cable()
    async with trionet.Stack() as stack:
        stack.add_interface(a, "10.0.0.1/24")
        stack.add_interface(c, "10.1.0.1/24")
        s = await stack.open_udp_socket(5000)
        with pytest.raises(OSError) as info:
            await stack.open_udp_socket(5000)
        assert info.value.errno == errno.EADDRINUSE
        with pytest.raises(OSError) as info:
            await stack.open_udp_socket(5000, local_address="10.0.0.1")
        assert info.value.errno == errno.EADDRINUSE
        # Two specific addresses may share a port; the wildcard may not join them.
        x = await stack.open_udp_socket(6000, local_address="10.0.0.1")
        y = await stack.open_udp_socket(6000, local_address="10.1.0.1")
        with pytest.raises(OSError) as info:
            await stack.open_udp_socket(6000)
        assert info.value.errno == errno.EADDRINUSE
        assert x.local_address == ("10.0.0.1", 6000) and y.local_address == ("10.1.0.1", 6000)
        with pytest.raises(OSError) as info:
            await stack.open_udp_socket(7000, local_address="10.9.9.9")
        assert info.value.errno == errno.EADDRNOTAVAIL
        wildcard = await stack.open_udp_socket(7000, local_address="0.0.0.0")
        assert wildcard.local_address == ("0.0.0.0", 7000)
        with pytest.raises(OSError) as info:
            await stack.open_udp_socket(7000, local_address="10.0.0.1")
        assert info.value.errno == errno.EADDRINUSE
        # Closing frees the port.
        await s.aclose()
        again = await stack.open_udp_socket(5000)
        assert again.local_port == 5000


async def test_port_argument_errors(autojump_clock):
    a, _ = trionet.virtual_cable()
    async with trionet.Stack() as stack:
        stack.add_interface(a, "10.0.0.1/24")
        with pytest.raises(TypeError, match="local_port"):
            await stack.open_udp_socket("53")
        with pytest.raises(TypeError, match="local_port"):
            await stack.open_udp_socket(True)
        with pytest.raises(ValueError, match="local_port"):
            await stack.open_udp_socket(70000)
        with pytest.raises(ValueError, match="local_address"):
            await stack.open_udp_socket(0, local_address="nowhere")
        sock = await stack.open_udp_socket()
        with pytest.raises(ValueError, match="port"):
            await sock.sendto(b"x", ("10.0.0.2", 0))
        with pytest.raises(ValueError, match="address"):
            await sock.sendto(b"x", ("10.0.0.256", 7))
        with pytest.raises(OSError) as info:
            await sock.sendto(bytes(65508), ("10.0.0.2", 7))
        assert info.value.errno == errno.EMSGSIZE


async def test_ephemeral_ports(autojump_clock):
    a, _ = trionet.virtual_cable()
    async with trionet.Stack(seed=9) as stack:
        stack.add_interface(a, "10.0.0.1/24")
        socks = [await stack.open_udp_socket() for _ in range(200)]
        ports = [s.local_port for s in socks]
        assert len(set(ports)) == 200  # all different
        assert all(32768 <= p <= 60999 for p in ports)  # RFC 6056 / Linux range
        assert ports != sorted(ports)  # randomised (RFC 6056 3.3.1)


async def test_receive_queue_bounded_and_counted(autojump_clock):
    a, b = trionet.virtual_cable(seed=1)
    s1 = trionet.Stack(seed=1)
    s2 = trionet.Stack(seed=2, udp_queue_size=4)
    s1.add_interface(a, "10.0.0.1/24")
    s2.add_interface(b, "10.0.0.2/24")
    async with s1, s2:
        server = await s2.open_udp_socket(7)
        client = await s1.open_udp_socket()
        for i in range(10):
            await client.sendto(b"%d" % i, ("10.0.0.2", 7))
        await trio.sleep(1)
        assert s2.stats["drop.udp.receive_queue_full"] == 6
        assert [(await server.recvfrom())[0] for _ in range(4)] == [b"0", b"1", b"2", b"3"]
        await client.sendto(b"later", ("10.0.0.2", 7))  # room again
        assert (await server.recvfrom())[0] == b"later"


async def test_closed_socket(autojump_clock):
    a, _ = trionet.virtual_cable()
    async with trionet.Stack() as stack:
        stack.add_interface(a, "10.0.0.1/24")
        sock = await stack.open_udp_socket(5000)

        async def close_soon():
            await trio.sleep(1)
            await sock.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_soon)
            with pytest.raises(trio.ClosedResourceError):
                await sock.recvfrom()  # woken by the close
        with pytest.raises(trio.ClosedResourceError):
            await sock.sendto(b"x", ("10.0.0.2", 7))
        with pytest.raises(trio.ClosedResourceError):
            await sock.recvfrom()
        await sock.aclose()  # idempotent
        async with await stack.open_udp_socket(5001) as other:
            pass
        with pytest.raises(trio.ClosedResourceError):
            await other.recvfrom()


async def test_stack_exit_closes_sockets(autojump_clock):
    a, _ = trionet.virtual_cable()
    async with trionet.Stack() as stack:
        stack.add_interface(a, "10.0.0.1/24")
        sock = await stack.open_udp_socket(5000)
    with pytest.raises(trio.ClosedResourceError):
        await sock.recvfrom()


async def test_bound_address_filters(autojump_clock):
    a, b = trionet.virtual_cable(seed=1)
    c, d = trionet.virtual_cable(seed=2)
    s1 = trionet.Stack(seed=1)
    s1.add_interface(a, "10.0.0.1/24")
    s1.add_interface(c, "10.1.0.1/24")
    s2 = trionet.Stack(seed=2)
    s2.add_interface(b, "10.0.0.2/24")
    s2.add_interface(d, "10.1.0.2/24")
    async with s1, s2:
        only0 = await s1.open_udp_socket(5000, local_address="10.0.0.1")
        client = await s2.open_udp_socket()
        await client.sendto(b"to 1.1", ("10.1.0.1", 5000))
        await client.sendto(b"to 0.1", ("10.0.0.1", 5000))
        data, (host, _) = await only0.recvfrom()
        assert data == b"to 0.1" and host == "10.0.0.2"
        await trio.sleep(1)
        assert s1.stats["drop.udp.no_socket"] == 1
        # Replies leave from the bound address.
        await only0.sendto(b"reply", ("10.0.0.2", client.local_port))
        assert await client.recvfrom() == (b"reply", ("10.0.0.1", 5000))


# --- ping -------------------------------------------------------------------------


async def test_ping_rtt_is_twice_the_latency(autojump_clock):
    s1, s2, _, _ = pair(latency=0.025)
    async with s1, s2:
        await s1.ping("10.0.0.2")  # resolves first (ARP adds one more round trip)
        for size in (0, 56, 1472, 3000):
            assert await s1.ping("10.0.0.2", size=size) == pytest.approx(0.05)
        assert await s2.ping(IPv4Address("10.0.0.1")) == pytest.approx(0.05)


async def test_ping_timeout_and_arguments(autojump_clock):
    s1, s2, a, _ = pair(latency=0.01)
    async with s1, s2:
        await s1.ping("10.0.0.2")
        a.loss = 1.0
        start = trio.current_time()
        with pytest.raises(TimeoutError):
            await s1.ping("10.0.0.2", timeout=2.5)
        assert trio.current_time() - start == pytest.approx(2.5)
        with pytest.raises(ValueError, match="host"):
            await s1.ping("10.0.0.x")
        with pytest.raises(ValueError, match="size"):
            await s1.ping("10.0.0.2", size=-1)
        with pytest.raises(ValueError, match="size"):
            await s1.ping("10.0.0.2", size=65508)
        with pytest.raises(ValueError, match="timeout"):
            await s1.ping("10.0.0.2", timeout=0)
        assert s1.resources()["pings"] == 0  # nothing left behind


async def test_late_or_forged_echo_replies_dropped(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery, latency=0.01)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        reply = wire.build_icmpv4(wire.IcmpMessage.echo_reply(1, 1, b"x"))
        host.send_ip(host.ip_packet("10.0.0.1", wire.PROTO_ICMP, reply))
        await trio.sleep(0.1)
        assert stack.stats["drop.icmp.unexpected_echo_reply"] == 1


async def test_concurrent_pings(autojump_clock):
    s1, s2, _, _ = pair(latency=0.01)
    async with s1, s2:
        rtts = []

        async def one(size):
            rtts.append(await s1.ping("10.0.0.2", size=size, timeout=2))

        async with trio.open_nursery() as nursery:
            for size in range(0, 2000, 100):
                nursery.start_soon(one, size)
        assert len(rtts) == 20


async def test_broadcast_ping_ignored(autojump_clock):
    s1, s2, _, _ = pair(latency=0.01)
    async with s1, s2:
        with pytest.raises(TimeoutError):
            await s1.ping("10.0.0.255")
        s1.add_route("0.0.0.0/0", interface=s1.interfaces[0])  # where 255.255.255.255 goes
        with pytest.raises(TimeoutError):
            await s1.ping("255.255.255.255")
        assert s2.stats["drop.icmp.broadcast_echo"] == 2
        assert s2.stats["icmp.tx_echo_reply"] == 0
        assert s1.stats["arp.tx_request"] == 0  # broadcasts need no ARP


async def test_several_stacks_in_one_process(autojump_clock):
    """Pairs with the same addresses on separate cables share nothing."""
    pairs = [pair(seed=n, latency=0.001 * n) for n in range(1, 5)]

    async def run_pair(n, s1, s2):
        async with s1, s2, trio.open_nursery() as nursery:
            server = await s2.open_udp_socket(7)
            nursery.start_soon(echo_forever, server)
            client = await s1.open_udp_socket()
            for i in range(n * 3):
                assert await s1.ping("10.0.0.2", size=n * 500) > 0
                await client.sendto(b"pair %d" % n, ("10.0.0.2", 7))
                assert await client.recvfrom() == (b"pair %d" % n, ("10.0.0.2", 7))
            await s2.ping("10.0.0.1")
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for n, (s1, s2, _, _) in enumerate(pairs, 1):
            nursery.start_soon(run_pair, n, s1, s2)
    for n, (s1, s2, _, _) in enumerate(pairs, 1):
        assert s1.stats["icmp.rx"] == n * 3 + 1
        assert s2.stats["udp.rx"] == n * 3
        assert s1.interfaces[0].mac != s2.interfaces[0].mac


async def test_stack_on_loopback_link(autojump_clock):
    async with trionet.Stack() as stack:
        stack.add_interface(trionet.LoopbackLink(), "127.0.0.1/8")
        assert await stack.ping("127.0.0.1") == 0.0
        await stack.ping("127.0.0.1", size=20000)
        server = await stack.open_udp_socket(7)
        client = await stack.open_udp_socket()
        await client.sendto(b"loop", ("localhost", 7))
        assert await server.recvfrom() == (b"loop", ("127.0.0.1", client.local_port))
        assert stack.stats["arp.tx_request"] == 0


async def test_interface_added_while_running(autojump_clock):
    a, b = trionet.virtual_cable(seed=1)
    async with trionet.Stack(seed=1) as s1, trionet.Stack(seed=2) as s2:
        s2.add_interface(b, "10.0.0.2/24")
        await trio.sleep(1)
        s1.add_interface(a, "10.0.0.1/24")
        await s1.ping("10.0.0.2")


async def test_link_closed_under_the_stack(autojump_clock):
    """Regression: the cached path kept using a closed link."""
    s1, s2, a, b = pair()
    async with s1, s2:
        await s1.ping("10.0.0.2")
        await a.aclose()
        await trio.sleep(0.1)
        assert not s1.interfaces[0].up
        with pytest.raises(OSError) as info:
            await s1.ping("10.0.0.2")
        assert info.value.errno == errno.ENETUNREACH


async def test_backup_route_used_when_link_goes_down(autojump_clock):
    a, b = trionet.virtual_cable(seed=1)
    c, d = trionet.virtual_cable(seed=2)
    s1 = trionet.Stack(seed=1)
    s1.add_interface(a, "10.0.0.1/24")
    s1.add_interface(c, "10.1.0.1/24")
    s1.add_route("10.9.0.0/16", gateway="10.0.0.2", metric=0)
    s1.add_route("10.9.0.0/16", gateway="10.1.0.2", metric=10)
    s2 = trionet.Stack(seed=2)
    s2.add_interface(b, "10.0.0.2/24")
    s2.add_interface(d, "10.1.0.2/24")
    s2.add_interface(trionet.LoopbackLink(), "10.9.0.1/16")
    async with s1, s2:
        assert s1.path_to(IPv4Address("10.9.0.1")).interface is s1.interfaces[0]
        await s1.ping("10.9.0.1")
        await a.aclose()
        await trio.sleep(0.1)
        assert s1.path_to(IPv4Address("10.9.0.1")).interface is s1.interfaces[1]
        await s1.ping("10.9.0.1")


async def test_multicast_destination_maps_to_a_group_mac(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery)
    async with stack:
        iface = stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        stack.add_route("224.0.0.0/4", interface=iface)
        sock = await stack.open_udp_socket()
        await sock.sendto(b"group", ("239.129.2.3", 5000))
        at, frame = await host.receive()
        assert frame[:6] == bytes.fromhex("01005e010203")  # RFC 1112 6.4
        assert host.arp_requests() == []


async def test_point_to_point_31_has_no_broadcast(autojump_clock):
    """RFC 3021: on a /31 both addresses are hosts; the peer's address is
    resolved by ARP, not sent to as a broadcast."""
    a, b = trionet.virtual_cable(seed=1)
    s1, s2 = trionet.Stack(seed=1), trionet.Stack(seed=2)
    i1 = s1.add_interface(a, "10.0.0.0/31")
    i2 = s2.add_interface(b, "10.0.0.1/31")
    async with s1, s2:
        await s1.ping("10.0.0.1")
        await s2.ping("10.0.0.0")
        assert i1.broadcast is None and i2.broadcast is None
        assert i1.arp.entries() == {IPv4Address("10.0.0.1"): i2.mac}
        assert s1.stats["arp.tx_request"] == 1
