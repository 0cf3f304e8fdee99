"""The DHCPv4 client on a running stack (RFC 2131, RFC 5227), in virtual time.

A DHCP server written here (``TestServer``, on a ``RawHost`` at a switch
port) answers the client's broadcasts; a second stack on the switch is a
peer for ping and TCP. The server records every message it receives with its
time and how it was addressed, so the tests check what went on the wire.
"""

from __future__ import annotations

import math
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
import trio

import trionet
from trionet.link.switch import Switch
from trionet.wire import (ARP_REPLY, ARP_REQUEST, BROADCAST_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4,
                          PROTO_UDP, parse_arp, parse_ethernet, parse_ipv4, parse_udp)
from trionet.wire.dhcp import (BOOTREPLY, DHCPACK, DHCPDECLINE, DHCPDISCOVER, DHCPNAK,
                               DHCPOFFER, DHCPRELEASE, DHCPREQUEST, OPTION_CLIENT_ID,
                               DhcpMessage, build_dhcp, parse_dhcp)

try:
    from .test_stack_support import RawHost
except ImportError:
    from test_stack_support import RawHost

CLIENT_MAC = bytes.fromhex("02000000c11e")
SERVER_MAC = bytes.fromhex("02000000d0c9")
SQUATTER_MAC = bytes.fromhex("02000000bad0")
SERVER = IPv4Address("10.0.0.1")
LIMITED = IPv4Address("255.255.255.255")


class TestServer:
    """A small DHCP server: one address to give at a time (``address``)."""

    __test__ = False

    def __init__(self, link, *, address="10.0.0.50", lease_time=3600, t1=None, t2=None,
                 router="10.0.0.1", dns=("10.0.0.53", "10.0.0.54"), mtu=None):
        self.host = RawHost(link, SERVER, SERVER_MAC)
        self.address = IPv4Address(address)
        self.lease_time = lease_time
        self.t1 = t1
        self.t2 = t2
        self.router = router
        self.dns = dns
        self.mtu = mtu
        #: DISCOVERs to ignore (offers "lost").
        self.ignore_discovers = 0
        #: REQUESTs to answer with a NAK.
        self.nak_requests = 0
        #: Whether to answer unicast (renewing) and broadcast REQUESTs.
        self.answer_unicast = True
        self.answer_broadcast = True
        #: Send an ARP reply for the address from another MAC when probed.
        self.squat = False
        #: Every DHCP message received: (time, message, IP header, Ethernet dst).
        self.received: list[tuple[float, DhcpMessage, object, bytes]] = []

    def of_type(self, kind: int) -> list[tuple[float, DhcpMessage, object, bytes]]:
        return [r for r in self.received if r[1].message_type == kind]

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.host.run)
            task_status.started()
            while True:
                at, frame = await self.host.receive(timeout=math.inf)
                self._frame(at, frame)

    def _frame(self, at: float, frame: bytes) -> None:
        eth, payload = parse_ethernet(frame)
        if eth.ethertype == ETHERTYPE_ARP:
            arp = parse_arp(payload)
            # RFC 5227 2.1.1: a probe has sender IP 0.0.0.0.
            if self.squat and arp.operation == ARP_REQUEST and arp.sender_ip.is_unspecified \
                    and arp.target_ip == self.address:
                self.host.send_frame(self.host.arp_packet(
                    ARP_REPLY, arp.target_ip, sender_ip=arp.target_ip, sender_mac=SQUATTER_MAC,
                    target_mac=arp.sender_mac, eth_dst=arp.sender_mac))
            return
        if eth.ethertype != ETHERTYPE_IPV4:
            return
        ip, ip_payload = parse_ipv4(payload, verify_checksum=False)
        if ip.protocol != PROTO_UDP:
            return
        udp, data = parse_udp(ip_payload, ip.src, ip.dst, verify_checksum=False)
        if udp.dst_port != 67:
            return
        assert udp.src_port == 68
        msg = parse_dhcp(data)
        self.received.append((at, msg, ip, bytes(eth.dst)))
        kind = msg.message_type
        if kind == DHCPDISCOVER:
            if self.ignore_discovers:
                self.ignore_discovers -= 1
                return
            self._reply(msg, DHCPOFFER, self.address)
        elif kind == DHCPREQUEST:
            unicast = ip.dst != LIMITED
            if (unicast and not self.answer_unicast) or (not unicast and not self.answer_broadcast):
                return
            wanted = msg.requested_ip or msg.ciaddr
            if self.nak_requests or wanted != self.address:
                self.nak_requests = max(self.nak_requests - 1, 0)
                self._reply(msg, DHCPNAK, IPv4Address(0))
                return
            self._reply(msg, DHCPACK, self.address)

    def _reply(self, request: DhcpMessage, kind: int, yiaddr: IPv4Address) -> None:
        options = [(53, bytes((kind,))), (54, SERVER.packed)]
        if kind != DHCPNAK:
            options += [(51, self.lease_time.to_bytes(4, "big")), (1, bytes((255, 255, 255, 0)))]
            if self.router:
                options.append((3, IPv4Address(self.router).packed))
            if self.dns:
                options.append((6, b"".join(IPv4Address(d).packed for d in self.dns)))
            if self.t1 is not None:
                options.append((58, self.t1.to_bytes(4, "big")))
            if self.t2 is not None:
                options.append((59, self.t2.to_bytes(4, "big")))
            if self.mtu is not None:
                options.append((26, self.mtu.to_bytes(2, "big")))
        reply = DhcpMessage(BOOTREPLY, request.xid, request.chaddr, options,
                            flags=request.flags, yiaddr=yiaddr)
        # RFC 2131 4.1: to ciaddr when set (renewing), else broadcast (the
        # client asked for it); a NAK always goes broadcast.
        if request.ciaddr.is_unspecified or kind == DHCPNAK:
            dst, dst_mac = LIMITED, BROADCAST_MAC
        else:
            dst, dst_mac = request.ciaddr, request.chaddr
        packet = self.host.udp_packet(dst, 68, build_dhcp(reply), src_port=67)
        self.host.send_ip(packet, dst_mac)


async def start(nursery, server_options=None, *, peer=False):
    """The switch, the server (running) and, with ``peer``, a running stack
    at 10.0.0.2 (its exit stack entered by the caller)."""
    switch = Switch(seed=1, latency=0.001)
    server = TestServer(switch.add_port("server"), **(server_options or {}))
    await nursery.start(server.run)
    return switch, server


async def bound(iface, timeout: float = 60.0):
    with trio.fail_after(timeout):
        return await iface.dhcp_bound()


async def test_lease_configures_address_routes_and_name_servers(autojump_clock):
    """RFC 2131 4.4.1 (DISCOVER, OFFER, REQUEST, ACK from 0.0.0.0 to the
    broadcast), RFC 2132 3.3/3.5/3.8/5.1 (mask, router, DNS, MTU), RFC 5227
    2.1.1 (the address probed before use)."""
    async with trio.open_nursery() as nursery:
        switch, server = await start(nursery, {"mtu": 1400})
        async with trionet.Stack(seed=5) as peer, trionet.Stack(seed=7) as stack:
            peer.add_interface(switch.add_port("peer"), "10.0.0.2/24")
            iface = stack.add_interface(switch.add_port("client"), dhcp=True, mac=CLIENT_MAC)
            assert iface.dhcp_lease is None
            lease = await bound(iface)
            assert lease is iface.dhcp_lease
            assert lease.ip == IPv4Address("10.0.0.50") and lease.prefix_length == 24
            assert lease.address == IPv4Interface("10.0.0.50/24")
            assert lease.interface == IPv4Interface("10.0.0.50/24")
            assert lease.router == SERVER and lease.server_id == SERVER
            assert lease.dns_servers == (IPv4Address("10.0.0.53"), IPv4Address("10.0.0.54"))
            assert lease.mtu == 1400 and lease.lease_time == 3600
            # The address, its connected route and the default route.
            entry = next(a for a in iface.addresses if a.version == 4)
            assert entry.interface == IPv4Interface("10.0.0.50/24") and entry.origin == "dhcp"
            routes = [(r.network, r.gateway) for r in stack.routes if r.network.version == 4]
            assert (IPv4Network("10.0.0.0/24"), None) in routes
            assert (IPv4Network("0.0.0.0/0"), SERVER) in routes
            assert iface.mtu == 1400
            if hasattr(stack, "nameservers"):
                assert IPv4Address("10.0.0.53") in [IPv4Address(str(a)) for a in
                                                    stack.nameservers]
            assert stack.path_to("192.0.2.1").next_hop == SERVER
            # The peer reaches the leased address.
            await peer.ping("10.0.0.50", timeout=2)
            # On the wire: DISCOVER and REQUEST broadcast from 0.0.0.0, the
            # broadcast flag set, client id 61 = type 1 + MAC (RFC 2132 9.14).
            discover = server.of_type(DHCPDISCOVER)[0]
            request = server.of_type(DHCPREQUEST)[0]
            for _, msg, ip, eth_dst in (discover, request):
                assert ip.src == IPv4Address(0) and ip.dst == LIMITED
                assert eth_dst == BROADCAST_MAC and msg.broadcast
                assert msg.chaddr == CLIENT_MAC
                assert msg.option(OPTION_CLIENT_ID) == b"\x01" + CLIENT_MAC
            assert request[1].requested_ip == IPv4Address("10.0.0.50")
            assert request[1].server_id == SERVER and request[1].xid == discover[1].xid
            # RFC 5227 2.1.1: ARP probes (sender 0.0.0.0) before, then an
            # announcement (2.3).
            arp = [parse_arp(parse_ethernet(f)[1]) for _, f in server.host.frames
                   if parse_ethernet(f)[0].ethertype == ETHERTYPE_ARP]
            probes = [a for a in arp if a.sender_ip.is_unspecified
                      and a.target_ip == lease.ip]
            assert len(probes) == 3
            assert any(a.sender_ip == a.target_ip == lease.ip for a in arp)
            assert stack.stats["dhcp.leases"] == 1
            assert stack.stats["dhcp.tx_discover"] == 1
        nursery.cancel_scope.cancel()


async def test_lost_offers_are_retransmitted_with_backoff(autojump_clock):
    """RFC 2131 4.1: retransmission after 4, 8, ... s, each randomised by
    +-1 s, and a new DISCOVER keeps the client going until a server answers."""
    async with trio.open_nursery() as nursery:
        switch, server = await start(nursery)
        server.ignore_discovers = 3
        async with trionet.Stack(seed=7) as stack:
            iface = stack.add_interface(switch.add_port("client"), dhcp=True, mac=CLIENT_MAC)
            await bound(iface, 120)
            times = [at for at, *_ in server.of_type(DHCPDISCOVER)]
            assert len(times) == 4
            gaps = [b - a for a, b in zip(times, times[1:])]
            for gap, base in zip(gaps, (4, 8, 16)):
                assert base - 1 <= gap <= base + 1, gaps
            # 'secs' counts from the first DISCOVER (RFC 2131 table 5).
            assert server.of_type(DHCPDISCOVER)[-1][1].secs >= 25
        nursery.cancel_scope.cancel()


async def test_nak_restarts_from_init(autojump_clock):
    """RFC 2131 3.1 step 5 / 4.4.1: a DHCPNAK sends the client back to INIT:
    a new DISCOVER, then the lease."""
    async with trio.open_nursery() as nursery:
        switch, server = await start(nursery)
        server.nak_requests = 1
        async with trionet.Stack(seed=7) as stack:
            iface = stack.add_interface(switch.add_port("client"), dhcp=True, mac=CLIENT_MAC)
            lease = await bound(iface)
            assert lease.ip == IPv4Address("10.0.0.50")
            assert len(server.of_type(DHCPDISCOVER)) == 2
            assert len(server.of_type(DHCPREQUEST)) == 2
            assert stack.stats["dhcp.rx_nak"] == 1
        nursery.cancel_scope.cancel()


async def test_renew_at_t1_is_unicast_to_the_server(autojump_clock):
    """RFC 2131 4.4.5: at T1 the client sends a REQUEST to the server that
    gave the lease, unicast from the leased address with ciaddr set; the
    ACK extends the lease."""
    async with trio.open_nursery() as nursery:
        switch, server = await start(nursery, {"lease_time": 200, "t1": 100, "t2": 175})
        async with trionet.Stack(seed=7) as stack:
            iface = stack.add_interface(switch.add_port("client"), dhcp=True, mac=CLIENT_MAC)
            lease = await bound(iface)
            await trio.sleep(lease.t1_at - trio.current_time() + 5)
            at, msg, ip, eth_dst = server.of_type(DHCPREQUEST)[-1]
            assert at == pytest.approx(lease.t1_at, abs=0.1)
            assert ip.src == lease.ip and ip.dst == SERVER and eth_dst == SERVER_MAC
            assert msg.ciaddr == lease.ip
            assert msg.requested_ip is None and msg.server_id is None
            renewed = iface.dhcp_lease
            assert renewed is not lease and renewed.ip == lease.ip
            assert renewed.acquired_at == pytest.approx(at, abs=0.1)
            assert stack.stats["dhcp.renewals"] == 1
            assert stack.path_to("192.0.2.1").next_hop == SERVER
        nursery.cancel_scope.cancel()


async def test_rebind_at_t2_is_broadcast(autojump_clock):
    """RFC 2131 4.4.5: when the server does not answer the renewal, at T2
    the client broadcasts its REQUEST (REBINDING), and any server's ACK
    extends the lease."""
    async with trio.open_nursery() as nursery:
        switch, server = await start(nursery, {"lease_time": 200, "t1": 100, "t2": 175})
        server.answer_unicast = False
        async with trionet.Stack(seed=7) as stack:
            iface = stack.add_interface(switch.add_port("client"), dhcp=True, mac=CLIENT_MAC)
            lease = await bound(iface)
            await trio.sleep(lease.t2_at - trio.current_time() + 5)
            requests = server.of_type(DHCPREQUEST)[1:]
            unicast = [r for r in requests if r[2].dst == SERVER]
            broadcast = [r for r in requests if r[2].dst == LIMITED]
            assert unicast and unicast[0][0] == pytest.approx(lease.t1_at, abs=0.1)
            assert broadcast[0][0] == pytest.approx(lease.t2_at, abs=0.1)
            _, msg, ip, eth_dst = broadcast[0]
            assert ip.src == lease.ip and eth_dst == BROADCAST_MAC
            assert msg.ciaddr == lease.ip and msg.server_id is None
            assert iface.dhcp_lease.acquired_at == pytest.approx(lease.t2_at, abs=0.1)
            assert any(a.version == 4 for a in iface.addresses)
        nursery.cancel_scope.cancel()


async def test_expiry_removes_address_routes_and_breaks_connections(autojump_clock):
    """RFC 2131 4.4.5: with no ACK by the end of the lease the client stops
    using the address (and starts over in INIT): the address, its connected
    route and the default route go; TCP connections from it end at once,
    and a UDP socket bound to it can send no more."""
    async with trio.open_nursery() as nursery:
        switch, server = await start(nursery, {"lease_time": 120})
        async with trionet.Stack(seed=5) as peer, trionet.Stack(seed=7) as stack:
            peer.add_interface(switch.add_port("peer"), "10.0.0.2/24")

            async def echo(stream):
                async for data in stream:
                    await stream.send_all(data)
            async with trio.open_nursery() as inner:
                await inner.start(peer.serve_tcp, echo, 7)
                iface = stack.add_interface(switch.add_port("client"), dhcp=True, mac=CLIENT_MAC)
                lease = await bound(iface)
                stream = await stack.open_tcp_stream("10.0.0.2", 7)
                await stream.send_all(b"hello")
                assert await stream.receive_some() == b"hello"
                sock = await stack.open_udp_socket(5000, local_address="10.0.0.50")
                server.answer_unicast = server.answer_broadcast = False
                server.ignore_discovers = 1000
                await trio.sleep(lease.expires_at - trio.current_time() - 1)
                assert iface.dhcp_lease is not None
                await trio.sleep(2)
                assert iface.dhcp_lease is None
                assert not any(a.version == 4 for a in iface.addresses)
                assert not [r for r in stack.routes if r.network.version == 4]
                assert not stack.is_local_address("10.0.0.50")
                with trio.fail_after(1):
                    with pytest.raises(trio.BrokenResourceError, match="address"):
                        await stream.receive_some()
                with pytest.raises(OSError) as info:
                    await sock.sendto(b"x", ("10.0.0.2", 9))
                assert info.value.errno == 99  # EADDRNOTAVAIL
                assert stack.stats["dhcp.lost_expired"] == 1
                assert stack.stats["tcp.broken_by_address_removed"] == 1
                # Back to INIT: DISCOVERs again.
                assert server.of_type(DHCPDISCOVER)[-1][0] >= lease.expires_at
                await stream.aclose()
                inner.cancel_scope.cancel()
        nursery.cancel_scope.cancel()


async def test_conflict_on_arp_probe_declines_and_waits(autojump_clock):
    """RFC 5227 2.1.1: an ARP reply from another MAC for the probed address
    is a conflict; RFC 2131 3.1 step 5: the client sends DHCPDECLINE and
    restarts no sooner than 10 s later."""
    async with trio.open_nursery() as nursery:
        switch, server = await start(nursery)
        server.squat = True
        async with trionet.Stack(seed=7) as stack:
            iface = stack.add_interface(switch.add_port("client"), dhcp=True, mac=CLIENT_MAC)
            with trio.fail_after(30):
                while not server.of_type(DHCPDECLINE):
                    await trio.sleep(0.1)
            declined_at, decline, ip, eth_dst = server.of_type(DHCPDECLINE)[0]
            assert ip.src == IPv4Address(0) and ip.dst == LIMITED
            assert decline.requested_ip == IPv4Address("10.0.0.50")
            assert decline.server_id == SERVER and decline.ciaddr == IPv4Address(0)
            assert not any(a.version == 4 for a in iface.addresses)
            assert iface.dhcp_lease is None
            # The server gives another address this time.
            server.squat = False
            server.address = IPv4Address("10.0.0.51")
            lease = await bound(iface)
            assert lease.ip == IPv4Address("10.0.0.51")
            second = server.of_type(DHCPDISCOVER)[1][0]
            assert second - declined_at >= 10 - 1e-6
            assert stack.stats["dhcp.conflicts"] == 1
        nursery.cancel_scope.cancel()


async def test_release_on_normal_exit(autojump_clock):
    """RFC 2131 4.4.6: the client gives its lease back (DHCPRELEASE,
    unicast to the server, ciaddr the address) when the stack exits
    normally, and not when it exits by an exception."""
    async with trio.open_nursery() as nursery:
        switch, server = await start(nursery)
        async with trionet.Stack(seed=7) as stack:
            iface = stack.add_interface(switch.add_port("client"), dhcp=True, mac=CLIENT_MAC)
            lease = await bound(iface)
        await trio.sleep(1)
        (_, msg, ip, eth_dst), = server.of_type(DHCPRELEASE)
        assert ip.dst == SERVER and ip.src == lease.ip and eth_dst == SERVER_MAC
        assert msg.ciaddr == lease.ip and msg.server_id == SERVER
        assert msg.requested_ip is None
        assert stack.stats["dhcp.tx_release"] == 1

        class Boom(Exception):
            pass
        with pytest.raises(Boom):
            async with trionet.Stack(seed=8) as stack:
                iface = stack.add_interface(switch.add_port("client2"), dhcp=True,
                                            mac=bytes.fromhex("02000000c11f"))
                await bound(iface)
                raise Boom
        await trio.sleep(1)
        assert len(server.of_type(DHCPRELEASE)) == 1
        nursery.cancel_scope.cancel()


async def test_init_reboot_asks_for_the_remembered_address(autojump_clock):
    """RFC 2131 3.2 / 4.3.2: with a remembered address the client broadcasts
    a REQUEST for it (option 50, no server id, ciaddr 0) instead of a
    DISCOVER; the ACK binds it. A NAK sends it to INIT (3.2 step 3)."""
    async with trio.open_nursery() as nursery:
        switch, server = await start(nursery, {"address": "10.0.0.77"})
        config = trionet.DhcpConfig(requested_address="10.0.0.77")
        async with trionet.Stack(seed=7) as stack:
            iface = stack.add_interface(switch.add_port("client"), dhcp=config, mac=CLIENT_MAC)
            lease = await bound(iface)
            assert lease.ip == IPv4Address("10.0.0.77")
            assert not server.of_type(DHCPDISCOVER)
            _, msg, ip, _ = server.of_type(DHCPREQUEST)[0]
            assert msg.requested_ip == IPv4Address("10.0.0.77")
            assert msg.server_id is None and msg.ciaddr == IPv4Address(0)
            assert ip.dst == LIMITED
        # Remembered address no longer valid: NAK, then DISCOVER.
        server.received.clear()
        config = trionet.DhcpConfig(requested_address="10.0.0.99")
        async with trionet.Stack(seed=9) as stack:
            iface = stack.add_interface(switch.add_port("client3"), dhcp=config, mac=CLIENT_MAC)
            lease = await bound(iface)
            assert lease.ip == IPv4Address("10.0.0.77")
            assert server.of_type(DHCPDISCOVER)
        nursery.cancel_scope.cancel()


async def test_api_errors(autojump_clock):
    async with trionet.Stack(seed=7) as stack:
        a, _ = trionet.virtual_cable()
        iface = stack.add_interface(a, "10.0.0.5/24")
        with pytest.raises(RuntimeError, match="no DHCP client"):
            await iface.dhcp_bound()
        b, _ = trionet.virtual_cable()
        with pytest.raises(ValueError, match="dhcp"):
            stack.add_interface(b, "10.0.1.5/24", dhcp=True)
        with pytest.raises(TypeError, match="dhcp"):
            stack.add_interface(b, dhcp="yes")
        with pytest.raises(ValueError, match="requested_address"):
            trionet.DhcpConfig(requested_address="nonsense")
        assert len(stack.interfaces) == 1


async def test_interface_added_before_the_stack_runs(autojump_clock):
    """The client starts with the stack (RFC 2131 4.4.1: from INIT)."""
    async with trio.open_nursery() as nursery:
        switch, server = await start(nursery)
        stack = trionet.Stack(seed=7)
        iface = stack.add_interface(switch.add_port("client"), dhcp=trionet.DhcpConfig(
            probe=False, initial_delay=(1, 10)), mac=CLIENT_MAC)
        async with stack:
            lease = await bound(iface)
            assert lease.ip == IPv4Address("10.0.0.50")
            first = server.of_type(DHCPDISCOVER)[0][0]
            assert 1 <= first <= 10 + 0.01  # RFC 2131 4.4.1: a random wait first
            assert stack.stats["dhcp.probes"] == 0
        nursery.cancel_scope.cancel()
