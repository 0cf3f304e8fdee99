"""ARP: the sans-I/O ArpCache, and the resolver on a virtual cable against a
hand-driven host (RFC 826, RFC 1122 2.3.2). Virtual time throughout."""

from __future__ import annotations

import errno
from ipaddress import IPv4Address

import pytest
import trio

import trionet
from trionet import wire
from trionet.interface.arp import ArpCache, ArpConfig
from trionet.wire import ARP_REPLY, ARP_REQUEST, BROADCAST_MAC, parse_udp

from test_stack_support import HOST_MAC, STACK_MAC, stack_and_host  # noqa: F401

IP = IPv4Address("10.0.0.9")
MAC = bytes.fromhex("020000000009")
MAC2 = bytes.fromhex("0200000000aa")


# --- ArpCache without I/O -----------------------------------------------------------


def test_cache_unknown_then_learned():
    cache = ArpCache()
    assert cache.lookup(IP, 0.0) == (None, False)
    assert cache.enqueue(IP, b"p1", 0.0) is True  # first packet: send a request
    assert cache.enqueue(IP, b"p2", 0.1) is False  # one is outstanding already
    assert cache.pending_addresses() == [IP]
    assert cache.learn(IP, MAC, 0.2, create=False) == [b"p1", b"p2"]  # in order
    assert cache.pending_addresses() == []
    assert cache.lookup(IP, 0.3) == (MAC, False)
    assert cache.entries() == {IP: MAC} and len(cache) == 1


def test_cache_bounded_queue_drops_oldest():
    cache = ArpCache(ArpConfig(max_pending_packets=3))
    for i in range(5):
        cache.enqueue(IP, b"p%d" % i, 0.0)
    assert cache.dropped_packets == 2
    assert cache.learn(IP, MAC, 0.5, create=False) == [b"p2", b"p3", b"p4"]


def test_cache_bounded_pending_hosts():
    cache = ArpCache(ArpConfig(max_pending_hosts=2))
    assert cache.enqueue(IPv4Address("10.0.0.1"), b"a", 0.0) is True
    assert cache.enqueue(IPv4Address("10.0.0.2"), b"b", 0.0) is True
    assert cache.enqueue(IPv4Address("10.0.0.3"), b"c", 0.0) is None
    assert cache.dropped_packets == 1
    assert len(cache.pending_addresses()) == 2


def test_cache_retries_then_fails():
    cache = ArpCache()  # 3 tries, 1 s apart
    cache.enqueue(IP, b"p", 10.0)
    assert cache.next_deadline() == 11.0
    assert cache.poll(10.5) == ([], [])
    assert cache.poll(11.0) == ([IP], [])  # second request
    assert cache.next_deadline() == 12.0
    assert cache.poll(12.0) == ([IP], [])  # third request
    assert cache.poll(12.9) == ([], [])
    assert cache.poll(13.0) == ([], [(IP, [b"p"])])  # no reply to the third
    assert cache.pending_addresses() == [] and cache.next_deadline() == float("inf")
    # A new packet starts a new resolution.
    assert cache.enqueue(IP, b"q", 13.5) is True


def test_cache_learn_creates_only_when_told_or_resolving():
    cache = ArpCache()
    # RFC 826: a packet not addressed to us only updates an existing entry.
    assert cache.learn(IP, MAC, 0.0, create=False) == []
    assert cache.entries() == {}
    cache.learn(IP, MAC, 0.0, create=True)
    assert cache.entries() == {IP: MAC}
    cache.learn(IP, MAC2, 1.0, create=False)  # "merge": updated
    assert cache.entries() == {IP: MAC2}
    other = IPv4Address("10.0.0.10")
    cache.enqueue(other, b"x", 2.0)
    assert cache.learn(other, MAC, 2.1, create=False) == [b"x"]  # we were resolving it
    assert cache.entries()[other] == MAC


def test_cache_stale_entry_is_reconfirmed():
    cache = ArpCache(ArpConfig(timeout=60.0))
    cache.learn(IP, MAC, 0.0, create=True)
    assert cache.next_deadline() == float("inf")  # fresh entries need no timer
    assert cache.lookup(IP, 59.9) == (MAC, False)
    assert cache.lookup(IP, 60.0) == (MAC, True)  # stale: still used, probed
    assert cache.lookup(IP, 60.5) == (MAC, False)  # one probe per second
    assert cache.next_deadline() == 61.0
    cache.learn(IP, MAC, 60.7, create=False)  # the answer
    assert cache.lookup(IP, 61.0) == (MAC, False)
    assert cache.next_deadline() == float("inf")
    assert cache.lookup(IP, 120.7) == (MAC, True)  # stale again 60 s later


def test_cache_stale_entry_expires_after_unanswered_probes():
    cache = ArpCache(ArpConfig(timeout=10.0))
    cache.learn(IP, MAC, 0.0, create=True)
    assert cache.lookup(IP, 10.0) == (MAC, True)  # probe 1
    assert cache.poll(11.0) == ([IP], [])  # probe 2, sent by the timer
    assert cache.poll(12.0) == ([IP], [])  # probe 3
    assert cache.lookup(IP, 12.5) == (MAC, False)
    assert cache.poll(13.0) == ([], [])
    assert cache.entries() == {}  # gone: the next lookup resolves afresh
    assert cache.lookup(IP, 13.1) == (None, False)
    assert cache.next_deadline() == float("inf")


@pytest.mark.parametrize("step", [0.1, 0.5, 1.0, 2.5])
def test_cache_deadline_is_consumed_by_poll(step):
    """Regression: a stale entry being probed left a due deadline that poll
    did not consume, so the resolver task spun at one instant forever."""
    cache = ArpCache(ArpConfig(timeout=5.0))
    cache.learn(IP, MAC, 0.0, create=True)
    cache.enqueue(IPv4Address("10.0.0.77"), b"x", 5.0)
    cache.lookup(IP, 5.0)
    now = 5.0
    while cache.next_deadline() != float("inf"):
        now = max(now + step, cache.next_deadline())
        cache.poll(now)
        assert cache.next_deadline() > now
        assert now < 100


def test_cache_evicts_oldest_when_full():
    cache = ArpCache(ArpConfig(max_entries=2))
    cache.learn(IPv4Address("10.0.0.1"), MAC, 0.0, create=True)
    cache.learn(IPv4Address("10.0.0.2"), MAC, 1.0, create=True)
    cache.learn(IPv4Address("10.0.0.3"), MAC, 2.0, create=True)
    assert set(cache.entries()) == {IPv4Address("10.0.0.2"), IPv4Address("10.0.0.3")}


# --- the resolver over a cable ------------------------------------------------------


def udp_payloads(host) -> list[bytes]:
    out = []
    for _, header, payload in host.ip_frames():
        if header.protocol == wire.PROTO_UDP:
            out.append(bytes(parse_udp(payload, header.src, header.dst, verify_checksum=False)[1]))
    return out


async def test_resolution(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery, latency=0.01)
    async with stack:
        iface = stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        sock = await stack.open_udp_socket(4000)
        await sock.sendto(b"first", ("10.0.0.9", 7))
        at, header, payload = await host.receive_ip(wire.PROTO_UDP)
        assert at == pytest.approx(0.03)  # request, reply, datagram: 3 x latency
        [(req_at, request)] = host.arp_requests()
        assert req_at == pytest.approx(0.01)
        assert (request.sender_mac, request.sender_ip) == (STACK_MAC, IPv4Address("10.0.0.1"))
        assert request.target_ip == host.ip and request.target_mac == bytes(6)
        assert iface.arp.entries() == {host.ip: HOST_MAC}
        # Resolved: the next datagram goes straight out.
        await sock.sendto(b"second", ("10.0.0.9", 7))
        await host.receive_ip(wire.PROTO_UDP)
        assert len(host.arp_requests()) == 1
        assert udp_payloads(host) == [b"first", b"second"]
        assert stack.stats["arp.tx_request"] == 1 and stack.stats["arp.rx"] == 1


async def test_request_frame_is_broadcast(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        sock = await stack.open_udp_socket()
        await sock.sendto(b"x", ("10.0.0.9", 7))
        await host.receive_ip()
        # The first IPv4-related frame (IPv6 neighbour discovery starts too).
        frame = next(f for _, f in host.frames
                     if wire.parse_ethernet(f)[0].ethertype != wire.ETHERTYPE_IPV6)
        eth, _ = wire.parse_ethernet(frame)
        assert eth.dst == BROADCAST_MAC and eth.src == STACK_MAC
        assert eth.ethertype == wire.ETHERTYPE_ARP


async def test_queued_packets_flushed_in_order(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery, answer_arp=False)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        sock = await stack.open_udp_socket()
        for i in range(5):
            await sock.sendto(b"d%d" % i, ("10.0.0.9", 7))
            await trio.sleep(0.1)
        assert udp_payloads(host) == []  # all waiting for the MAC
        assert len(host.arp_requests()) == 1
        host.send_frame(host.arp_packet(ARP_REPLY, "10.0.0.1", target_mac=STACK_MAC, eth_dst=STACK_MAC))
        for _ in range(5):
            await host.receive_ip(wire.PROTO_UDP)
        assert udp_payloads(host) == [b"d0", b"d1", b"d2", b"d3", b"d4"]
        ip_frames = [f for _, f in host.frames if wire.parse_ethernet(f)[0].ethertype == wire.ETHERTYPE_IPV4]
        assert [f[:6] for f in ip_frames] == [HOST_MAC] * 5


async def test_queue_is_bounded(nursery, autojump_clock):
    stack, a, host = await stack_and_host(
        nursery, answer_arp=False, stack_kwargs=dict(arp=ArpConfig(max_pending_packets=4)))
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        sock = await stack.open_udp_socket()
        for i in range(10):
            await sock.sendto(b"d%d" % i, ("10.0.0.9", 7))
        host.send_frame(host.arp_packet(ARP_REPLY, "10.0.0.1", target_mac=STACK_MAC, eth_dst=STACK_MAC))
        await trio.sleep(0.5)
        assert udp_payloads(host) == [b"d6", b"d7", b"d8", b"d9"]  # the oldest went first
        assert stack.stats["drop.arp.queue_overflow"] == 6


async def test_unanswered_requests_then_host_unreachable(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery, answer_arp=False)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        await trio.sleep(5.0)
        start = trio.current_time()
        with pytest.raises(OSError) as info:
            await stack.ping("10.0.0.9", timeout=10.0)
        assert info.value.errno == errno.EHOSTUNREACH
        # 3 requests 1 s apart, failure 1 s after the last (RFC 1122 2.3.2.1).
        assert trio.current_time() - start == pytest.approx(3.0)
        times = [at - start for at, _ in host.arp_requests()]
        assert times == pytest.approx([0.0, 1.0, 2.0])
        assert stack.stats["drop.arp.unresolved"] == 1
        assert stack.stats["icmp.tx_error"] == 1
        assert host.ip_frames() == []  # nothing leaked out unresolved
        # A later attempt resolves afresh: three more requests.
        with pytest.raises(OSError):
            await stack.ping("10.0.0.9", timeout=10.0)
        assert len(host.arp_requests()) == 6


async def test_unresolved_queue_all_dropped_with_one_error_each(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery, answer_arp=False)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        results = []

        async def pinger():
            try:
                await stack.ping("10.0.0.9", timeout=10.0)
            except OSError as exc:
                results.append(exc.errno)

        async with trio.open_nursery() as inner:
            for _ in range(3):
                inner.start_soon(pinger)
        assert results == [errno.EHOSTUNREACH] * 3
        assert stack.stats["drop.arp.unresolved"] == 3
        assert len(host.arp_requests()) == 3


async def test_local_host_unreachable_not_rate_limited(nursery, autojump_clock):
    """The ICMP error rate limit is for the network: a local sender always
    learns that resolution failed."""
    stack, a, host = await stack_and_host(
        nursery, answer_arp=False, stack_kwargs=dict(icmp_error_rate=0.001, icmp_error_burst=1))
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        errors = []

        async def pinger(target):
            with pytest.raises(OSError) as info:
                await stack.ping(target, timeout=10.0)
            errors.append(info.value.errno)

        async with trio.open_nursery() as inner:
            for n in range(5):
                inner.start_soon(pinger, f"10.0.0.{20 + n}")
        assert errors == [errno.EHOSTUNREACH] * 5
        assert stack.stats["drop.icmp.rate_limited"] == 0


async def test_rate_limited_to_one_request_per_second(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery, answer_arp=False)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        sock = await stack.open_udp_socket()
        for i in range(400):  # 40 datagrams a second for 10 s
            await sock.sendto(b"x", ("10.0.0.9", 7))
            await trio.sleep(0.025)
        times = [at for at, _ in host.arp_requests()]
        assert 8 <= len(times) <= 11
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert min(gaps) >= 1.0 - 1e-9
        assert host.ip_frames() == []


async def test_entry_expires_and_is_refreshed(nursery, autojump_clock):
    stack, a, host = await stack_and_host(
        nursery, stack_kwargs=dict(arp=ArpConfig(timeout=10.0)))
    async with stack:
        iface = stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        sock = await stack.open_udp_socket()

        async def send(data):
            await sock.sendto(data, ("10.0.0.9", 7))
            await trio.sleep(0.1)

        await send(b"t0")
        assert len(host.arp_requests()) == 1
        await trio.sleep(5)
        await send(b"t5")  # fresh: no request
        assert len(host.arp_requests()) == 1
        await trio.sleep(6)
        await send(b"t11")  # stale: sent at once with the old MAC, and re-confirmed
        assert len(host.arp_requests()) == 2
        assert udp_payloads(host) == [b"t0", b"t5", b"t11"]
        await trio.sleep(5)
        await send(b"t16")  # re-confirmed at t11: fresh again
        assert len(host.arp_requests()) == 2

        # The host goes quiet: the stale entry is probed 3 times, 1 s apart,
        # then forgotten, and the timers stop (no traffic, no requests).
        host.answer_arp = False
        await trio.sleep(10)
        before = len(host.arp_requests())
        assert before == 2
        probe_start = trio.current_time()
        await send(b"t26")
        await trio.sleep(20)
        probes = [at - probe_start for at, _ in host.arp_requests()[before:]]
        assert probes == pytest.approx([0.0, 1.0, 2.0])
        assert iface.arp.entries() == {}
        assert udp_payloads(host)[-1] == b"t26"
        # A new datagram resolves afresh.
        host.answer_arp = True
        await send(b"t47")
        assert len(host.arp_requests()) == before + 4
        assert udp_payloads(host)[-1] == b"t47"


async def test_learns_from_request_for_us(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery, answer_arp=False)
    async with stack:
        iface = stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        host.send_frame(host.arp_packet(ARP_REQUEST, "10.0.0.1"))
        await trio.sleep(0.1)
        [(_, reply, eth_dst)] = host.arp_replies()
        assert eth_dst == HOST_MAC  # answered unicast
        assert (reply.sender_mac, reply.sender_ip) == (STACK_MAC, IPv4Address("10.0.0.1"))
        assert (reply.target_mac, reply.target_ip) == (HOST_MAC, host.ip)
        assert iface.arp.entries() == {host.ip: HOST_MAC}
        # Learned: talking back needs no request.
        sock = await stack.open_udp_socket()
        await sock.sendto(b"x", ("10.0.0.9", 7))
        await host.receive_ip(wire.PROTO_UDP)
        assert host.arp_requests() == []


async def test_no_learning_and_no_reply_for_others(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery)
    async with stack:
        iface = stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        # A request for another host's address: neither answered nor learned from.
        host.send_frame(host.arp_packet(ARP_REQUEST, "10.0.0.77"))
        # A reply between two other hosts, seen because it was broadcast.
        host.send_frame(host.arp_packet(ARP_REPLY, "10.0.0.78", target_mac=MAC2))
        await trio.sleep(0.1)
        assert host.arp_replies() == []
        assert iface.arp.entries() == {}
        assert stack.stats["arp.ignored"] == 2
        assert stack.stats["arp.tx_reply"] == 0
        sock = await stack.open_udp_socket()
        await sock.sendto(b"x", ("10.0.0.9", 7))
        await host.receive_ip(wire.PROTO_UDP)
        assert len(host.arp_requests()) == 1  # had to resolve it


async def test_existing_entry_updated_by_any_arp(nursery, autojump_clock):
    """RFC 826 "merge": a known sender's new MAC is taken from any packet
    (a gratuitous ARP here)."""
    stack, a, host = await stack_and_host(nursery)
    async with stack:
        iface = stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        host.send_frame(host.arp_packet(ARP_REQUEST, "10.0.0.1"))
        await trio.sleep(0.1)
        assert iface.arp.entries() == {host.ip: HOST_MAC}
        host.send_frame(host.arp_packet(ARP_REQUEST, "10.0.0.9", sender_mac=MAC2))
        await trio.sleep(0.1)
        assert iface.arp.entries() == {host.ip: MAC2}


async def test_address_conflict_and_bad_senders_dropped(nursery, autojump_clock):
    stack, a, host = await stack_and_host(nursery)
    async with stack:
        iface = stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        host.send_frame(host.arp_packet(ARP_REQUEST, "10.0.0.5", sender_ip="10.0.0.1"))
        host.send_frame(host.arp_packet(ARP_REQUEST, "10.0.0.1", sender_mac=BROADCAST_MAC))
        host.send_frame(host.arp_packet(ARP_REQUEST, "10.0.0.1", sender_mac=bytes(6)))
        await trio.sleep(0.1)
        assert stack.stats["drop.arp.address_conflict"] == 1
        assert stack.stats["drop.arp.bad_sender"] == 2
        assert iface.arp.entries() == {}
        assert host.arp_replies() == []


async def test_probe_for_our_address_is_answered_not_learned(nursery, autojump_clock):
    """RFC 5227 probes (sender 0.0.0.0) get a reply and teach nothing."""
    stack, a, host = await stack_and_host(nursery)
    async with stack:
        iface = stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        host.send_frame(host.arp_packet(ARP_REQUEST, "10.0.0.1", sender_ip="0.0.0.0"))
        await trio.sleep(0.1)
        assert len(host.arp_replies()) == 1
        assert iface.arp.entries() == {}


async def test_arp_between_two_stacks(autojump_clock):
    a, b = trionet.virtual_cable(seed=3, latency=0.001)
    async with trionet.Stack(seed=1) as s1, trionet.Stack(seed=2) as s2:
        i1 = s1.add_interface(a, "10.0.0.1/24")
        i2 = s2.add_interface(b, "10.0.0.2/24")
        await s1.ping("10.0.0.2")
        assert i1.arp.entries() == {IPv4Address("10.0.0.2"): i2.mac}
        # s2 learned s1 from its request (addressed to s2): no request back.
        assert i2.arp.entries() == {IPv4Address("10.0.0.1"): i1.mac}
        assert s1.stats["arp.tx_request"] == 1 and s2.stats["arp.tx_request"] == 0
