"""Names over DNS: ``stack.getaddrinfo``, ``stack.open_tcp_stream("name",
port)`` with happy eyeballs, Trio's resolver inside ``use_stack``, and the
name servers a stack uses (``Stack(nameservers=)``, RDNSS from router
advertisements), in virtual time over ``virtual_cable``.

The DNS server is written here: it runs on a second trionet stack (UDP and
TCP port 53), builds its answers with dnspython's ``dns.message`` from a
small zone, and records every query it gets, so the tests count what the
client's resolver sent. Each test names the RFC clause it checks.
"""

from __future__ import annotations

import functools
import socket as stdlib
import types
from contextlib import asynccontextmanager
from ipaddress import IPv4Address, IPv6Address

import attrs
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import trio

import trionet
from trionet.wire import ETHERTYPE_IPV6, build_ethernet
from trionet.wire.icmpv6 import (IPV6_ALL_NODES, RdnssOption, build_router_advertisement,
                                 multicast_mac)
from trionet.wire.ipv6 import PROTO_ICMPV6, build_ipv6_plain

SERVER4 = "10.0.0.53"
SERVER4B = "10.0.0.54"
SERVER6 = "2001:db8:1::53"
CLIENT4 = "10.0.0.2"
CLIENT6 = "2001:db8:1::2"
#: Addresses nobody on the cable has (their SYNs and ND go unanswered).
BLACK_HOLE6 = "2001:db8:1::99"


@attrs.frozen
class Query:
    transport: str  # "udp" or "tcp"
    server: str  # the address the query was sent to
    name: str
    rdtype: str


class DnsServer:
    """A recursive server as a stub resolver sees one, answering from
    ``zone`` (name -> rrsets). ``behaviour[address]``: "answer" (the
    default), "silent" (no answer), "servfail", or "truncate" (UDP answers
    come back empty with TC set). ``chase``: follow CNAMEs in the zone
    within one answer (as a recursive server does); False answers the
    CNAME alone. Negative answers carry the zone's SOA with MINIMUM
    ``negative_ttl`` (RFC 2308 3)."""

    def __init__(self, stack: trionet.Stack) -> None:
        self.stack = stack
        self.zone: dict[dns.name.Name, list[dns.rrset.RRset]] = {}
        self.queries: list[Query] = []
        self.behaviour: dict[str, str] = {}
        self.chase = True
        self.negative_ttl = 60
        self.soa_ttl = 3600

    def add(self, name: str, rdtype: str, ttl: int, *rdatas: str) -> None:
        rrset = dns.rrset.from_text(name, ttl, "IN", rdtype, *rdatas)
        self.zone.setdefault(rrset.name, []).append(rrset)

    def count(self, name: str | None = None, rdtype: str | None = None,
              transport: str | None = None) -> int:
        return sum(1 for q in self.queries if (name is None or q.name == name)
                   and (rdtype is None or q.rdtype == rdtype)
                   and (transport is None or q.transport == transport))

    def _soa(self) -> dns.rrset.RRset:
        return dns.rrset.from_text(
            "example.", self.soa_ttl, "IN", "SOA",
            f"ns.example. hostmaster.example. 1 3600 600 86400 {self.negative_ttl}")

    def answer(self, wire: bytes, server: str, transport: str) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        self.queries.append(Query(transport, server,
                                  question.name.to_text(omit_final_dot=True).lower(),
                                  dns.rdatatype.to_text(question.rdtype)))
        mode = self.behaviour.get(server, "answer")
        if mode == "silent":
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        if mode == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        if mode == "truncate" and transport == "udp":
            response.flags |= dns.flags.TC  # RFC 2181 9: TC, and no data
            return response.to_wire()
        name = question.name
        for _ in range(8):
            rrsets = self.zone.get(name)
            if rrsets is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                response.authority.append(self._soa())
                break
            found = [r for r in rrsets if r.rdtype == question.rdtype]
            if found:
                response.answer.extend(found)
                break
            cnames = [r for r in rrsets if r.rdtype == dns.rdatatype.CNAME]
            if not cnames:
                response.authority.append(self._soa())  # NODATA (RFC 2308 2.2)
                break
            response.answer.append(cnames[0])
            if not self.chase:
                break
            name = cnames[0][0].target
        return response.to_wire()

    async def serve_udp(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with await self.stack.open_udp_socket(53) as sock:
            task_status.started()
            while True:
                data, peer, local = await sock.recvfrom_to()
                reply = self.answer(data, str(local), "udp")
                if reply is not None:
                    await sock.sendto(reply, peer, source_address=local)

    async def _serve_stream(self, stream) -> None:
        async with stream:
            buffer = b""
            while True:
                data = await stream.receive_some()
                if not data:
                    return
                buffer += data
                while len(buffer) >= 2 and len(buffer) >= 2 + int.from_bytes(buffer[:2], "big"):
                    size = int.from_bytes(buffer[:2], "big")
                    wire, buffer = buffer[2:2 + size], buffer[2 + size:]
                    reply = self.answer(wire, stream.local_address[0], "tcp")
                    if reply is None:
                        continue
                    await stream.send_all(len(reply).to_bytes(2, "big") + reply)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.serve_udp)
            await nursery.start(self.stack.serve_tcp, self._serve_stream, 53)
            task_status.started()


@attrs.define
class DnsNet:
    client: trionet.Stack
    server: trionet.Stack
    dns: DnsServer
    nursery: trio.Nursery


@asynccontextmanager
async def dns_net(*, nameservers=(SERVER4,), client_addresses=(f"{CLIENT4}/24",
                                                                 f"{CLIENT6}/64"),
                  latency: float = 0.005):
    """A client stack and a server stack (SERVER4, SERVER4B, SERVER6) on
    one cable, the DNS server running on the server stack, both entered."""
    a, b = trionet.virtual_cable(latency=latency, seed=1)
    async with trionet.Stack(seed=1, nameservers=nameservers) as client, \
            trionet.Stack(seed=2) as server, trio.open_nursery() as nursery:
        iface = client.add_interface(a, client_addresses[0])
        for address in client_addresses[1:]:
            iface.add_address(address)
        server_iface = server.add_interface(b, f"{SERVER4}/24")
        server_iface.add_address(f"{SERVER4B}/24")
        server_iface.add_address(f"{SERVER6}/64")
        server_iface.add_address(f"{BLACK_HOLE6[:-2]}80/64")  # a web server's IPv6 address
        dns_server = DnsServer(server)
        await nursery.start(dns_server.run)
        # Duplicate address detection (RFC 4862 5.4) before the test starts.
        await trio.sleep(5)
        yield DnsNet(client, server, dns_server, nursery)
        nursery.cancel_scope.cancel()


def addresses(infos) -> list[str]:
    seen = []
    for info in infos:
        if info[4][0] not in seen:
            seen.append(info[4][0])
    return seen


# --- A, AAAA, order ------------------------------------------------------------------------


async def test_rfc1035_3_4_1_a_record_resolves_with_getaddrinfo(autojump_clock):
    async with dns_net() as net:
        net.dns.add("www.example.", "A", 300, "10.0.0.80", "10.0.0.81")
        infos = await net.client.getaddrinfo("www.example", 80, stdlib.AF_INET,
                                             stdlib.SOCK_STREAM)
        # (dnspython's server side shuffles the records of a set.)
        assert sorted(infos) == [
            (stdlib.AF_INET, stdlib.SOCK_STREAM, stdlib.IPPROTO_TCP, "", ("10.0.0.80", 80)),
            (stdlib.AF_INET, stdlib.SOCK_STREAM, stdlib.IPPROTO_TCP, "", ("10.0.0.81", 80))]
        # Only A was asked, over UDP (RFC 1035 4.2.1), of the one server.
        assert net.dns.queries == [Query("udp", SERVER4, "www.example", "A")]


async def test_rfc3596_2_aaaa_record_resolves(autojump_clock):
    async with dns_net() as net:
        net.dns.add("www.example.", "AAAA", 300, "2001:db8:1::80")
        infos = await net.client.getaddrinfo("www.example", "http", stdlib.AF_INET6,
                                             stdlib.SOCK_STREAM)
        assert infos == [(stdlib.AF_INET6, stdlib.SOCK_STREAM, stdlib.IPPROTO_TCP, "",
                          ("2001:db8:1::80", 80, 0, 0))]
        assert [q.rdtype for q in net.dns.queries] == ["AAAA"]
        # A name with only A records has no AAAA: EAI_NONAME (RFC 2308 2.2 NODATA).
        net.dns.add("v4only.example.", "A", 300, "10.0.0.80")
        with pytest.raises(stdlib.gaierror) as info:
            await net.client.getaddrinfo("v4only.example", 80, stdlib.AF_INET6)
        assert info.value.errno == stdlib.EAI_NONAME


async def test_rfc6724_6_both_families_ipv6_first_with_a_global_ipv6_source(autojump_clock):
    async with dns_net() as net:
        net.dns.add("www.example.", "A", 300, "10.0.0.80")
        net.dns.add("www.example.", "AAAA", 300, "2001:db8:1::80")
        infos = await net.client.getaddrinfo("www.example", 80, type=stdlib.SOCK_STREAM)
        # Rule 6: ::/0 (precedence 40) before IPv4 (35), both usable.
        assert addresses(infos) == ["2001:db8:1::80", "10.0.0.80"]
        # A and AAAA were asked concurrently: both within the first round trip.
        assert sorted(q.rdtype for q in net.dns.queries) == ["A", "AAAA"]


async def test_rfc6724_6_rules_1_and_2_ipv4_first_without_a_global_ipv6_source(autojump_clock):
    # The client has IPv4 and only its link-local IPv6 address.
    async with dns_net(client_addresses=(f"{CLIENT4}/24",)) as net:
        net.dns.add("www.example.", "A", 300, "10.0.0.80")
        net.dns.add("www.example.", "AAAA", 300, "2001:db8:1::80")
        infos = await net.client.getaddrinfo("www.example", 80, type=stdlib.SOCK_STREAM)
        # Rule 1: no route to 2001:db8:1::80: IPv4 first.
        assert addresses(infos) == ["10.0.0.80", "2001:db8:1::80"]
        # Rule 2: a route, but the only source is link-local (scope 2, the
        # destination's is global, 14): IPv4 still first.
        net.client.add_route("2001:db8::/32", interface=net.client.interfaces[0])
        assert net.client.path_to("2001:db8:1::80").source.is_link_local
        net.client.resolver.cache.flush()
        infos = await net.client.getaddrinfo("www.example", 80, type=stdlib.SOCK_STREAM)
        assert addresses(infos) == ["10.0.0.80", "2001:db8:1::80"]


# --- CNAME ----------------------------------------------------------------------------------


async def test_rfc1034_3_6_2_cname_chain_in_one_answer_and_restarted(autojump_clock):
    async with dns_net() as net:
        net.dns.add("www.example.", "CNAME", 300, "web.example.")
        net.dns.add("web.example.", "CNAME", 300, "host.example.")
        net.dns.add("host.example.", "A", 300, "10.0.0.80")
        infos = await net.client.getaddrinfo("www.example", 80, stdlib.AF_INET,
                                             stdlib.SOCK_STREAM, flags=stdlib.AI_CANONNAME)
        assert addresses(infos) == ["10.0.0.80"]
        assert infos[0][3] == "host.example"  # AI_CANONNAME: the chain's end
        assert net.dns.count() == 1
        # RFC 1034 5.3.3: a server that gives the CNAME alone: the resolver
        # asks again for the canonical name, then for the next.
        net.dns.chase = False
        net.dns.add("alias.example.", "CNAME", 300, "other.example.")
        net.dns.add("other.example.", "CNAME", 300, "last.example.")
        net.dns.add("last.example.", "A", 300, "10.0.0.81")
        infos = await net.client.getaddrinfo("alias.example", 80, stdlib.AF_INET)
        assert addresses(infos) == ["10.0.0.81"]
        assert [q.name for q in net.dns.queries[1:]] == ["alias.example", "other.example",
                                                          "last.example"]
        # A CNAME loop ends (RFC 1034 3.6.2 chains are bounded).
        net.dns.add("loop1.example.", "CNAME", 300, "loop2.example.")
        net.dns.add("loop2.example.", "CNAME", 300, "loop1.example.")
        with pytest.raises(stdlib.gaierror):
            await net.client.getaddrinfo("loop1.example", 80, stdlib.AF_INET)


# --- transport: truncation, timeouts, failures ------------------------------------------------


async def test_rfc7766_5_truncated_udp_answer_retried_over_tcp(autojump_clock):
    async with dns_net() as net:
        net.dns.add("big.example.", "A", 300, *[f"10.0.1.{i}" for i in range(1, 41)])
        net.dns.behaviour[SERVER4] = "truncate"
        infos = await net.client.getaddrinfo("big.example", 80, stdlib.AF_INET,
                                             stdlib.SOCK_STREAM)
        assert len(infos) == 40
        assert [(q.transport, q.name) for q in net.dns.queries] == [
            ("udp", "big.example"), ("tcp", "big.example")]


async def test_rfc1035_4_2_1_timeout_then_next_server(autojump_clock):
    async with dns_net(nameservers=[SERVER4B, SERVER4]) as net:
        net.dns.add("www.example.", "A", 300, "10.0.0.80")
        net.dns.behaviour[SERVER4B] = "silent"
        start = trio.current_time()
        infos = await net.client.getaddrinfo("www.example", 80, stdlib.AF_INET)
        assert addresses(infos) == ["10.0.0.80"]
        # The first server was given resolver.timeout (2 s) to answer.
        elapsed = trio.current_time() - start
        assert net.client.resolver.timeout <= elapsed < net.client.resolver.timeout + 0.5
        assert [q.server for q in net.dns.queries] == [SERVER4B, SERVER4]


async def test_rfc1035_7_2_no_server_answers_eai_again_after_the_lifetime(autojump_clock):
    async with dns_net(nameservers=[SERVER4B, SERVER4]) as net:
        net.dns.behaviour[SERVER4] = net.dns.behaviour[SERVER4B] = "silent"
        net.client.resolver.lifetime = 7.0
        start = trio.current_time()
        with pytest.raises(stdlib.gaierror) as info:
            await net.client.getaddrinfo("www.example", 80, stdlib.AF_INET)
        assert info.value.errno == stdlib.EAI_AGAIN
        assert trio.current_time() - start == pytest.approx(7.0, abs=0.01)
        # Each server asked in turn, and again (retransmission, RFC 1035 4.2.1).
        servers = [q.server for q in net.dns.queries]
        assert servers[:4] == [SERVER4B, SERVER4, SERVER4B, SERVER4]


async def test_rfc2308_7_1_servfail_tries_the_next_server_then_eai_again(autojump_clock):
    async with dns_net(nameservers=[SERVER4B, SERVER4]) as net:
        net.dns.add("www.example.", "A", 300, "10.0.0.80")
        net.dns.behaviour[SERVER4B] = "servfail"
        infos = await net.client.getaddrinfo("www.example", 80, stdlib.AF_INET)
        assert addresses(infos) == ["10.0.0.80"]
        assert [q.server for q in net.dns.queries] == [SERVER4B, SERVER4]
        net.dns.behaviour[SERVER4] = "servfail"
        with pytest.raises(stdlib.gaierror) as info:
            await net.client.getaddrinfo("other.example", 80, stdlib.AF_INET)
        assert info.value.errno == stdlib.EAI_AGAIN
        # SERVFAIL is not cached here: asked again next time.
        before = net.dns.count("other.example")
        with pytest.raises(stdlib.gaierror):
            await net.client.getaddrinfo("other.example", 80, stdlib.AF_INET)
        assert net.dns.count("other.example") > before


# --- caching ---------------------------------------------------------------------------------


async def test_rfc1035_3_2_1_answer_cached_for_its_ttl(autojump_clock):
    async with dns_net() as net:
        net.dns.add("www.example.", "A", 30, "10.0.0.80")
        for _ in range(3):
            await net.client.getaddrinfo("www.example", 80, stdlib.AF_INET)
        assert net.dns.count("www.example") == 1
        await trio.sleep(29)
        await net.client.getaddrinfo("www.example", 80, stdlib.AF_INET)
        assert net.dns.count("www.example") == 1
        await trio.sleep(1.5)  # the TTL ended
        await net.client.getaddrinfo("www.example", 80, stdlib.AF_INET)
        assert net.dns.count("www.example") == 2
        # The smallest TTL of a CNAME chain (RFC 2181 10.1.2 ... dnspython's
        # chaining result) bounds the answer's.
        net.dns.add("alias.example.", "CNAME", 10, "www.example.")
        await net.client.getaddrinfo("alias.example", 80, stdlib.AF_INET)
        await trio.sleep(11)
        await net.client.getaddrinfo("alias.example", 80, stdlib.AF_INET)
        assert net.dns.count("alias.example") == 2


async def test_rfc2308_5_nxdomain_cached_for_the_soa_minimum(autojump_clock):
    async with dns_net() as net:
        net.dns.negative_ttl = 20
        with pytest.raises(stdlib.gaierror) as info:
            await net.client.getaddrinfo("missing.example", 80, stdlib.AF_INET)
        assert info.value.errno == stdlib.EAI_NONAME
        assert net.dns.count("missing.example") == 1
        # Within min(SOA TTL, SOA MINIMUM): answered from the cache, for
        # every type (RFC 2308 5: NXDOMAIN is for the name).
        await trio.sleep(19)
        for family in (stdlib.AF_INET, stdlib.AF_INET6, 0):
            with pytest.raises(stdlib.gaierror) as info:
                await net.client.getaddrinfo("missing.example", 80, family)
            assert info.value.errno == stdlib.EAI_NONAME
        assert net.dns.count("missing.example") == 1
        await trio.sleep(1.5)
        with pytest.raises(stdlib.gaierror):
            await net.client.getaddrinfo("missing.example", 80, stdlib.AF_INET)
        assert net.dns.count("missing.example") == 2


async def test_rfc2308_5_nodata_cached_for_the_soa_minimum_per_type(autojump_clock):
    async with dns_net() as net:
        net.dns.negative_ttl = 10
        net.dns.add("v4only.example.", "A", 300, "10.0.0.80")
        infos = await net.client.getaddrinfo("v4only.example", 80)
        assert addresses(infos) == ["10.0.0.80"]
        assert net.dns.count("v4only.example", "AAAA") == 1
        await trio.sleep(9)
        await net.client.getaddrinfo("v4only.example", 80)
        assert net.dns.count("v4only.example", "AAAA") == 1
        assert net.dns.count("v4only.example", "A") == 1
        await trio.sleep(1.5)
        await net.client.getaddrinfo("v4only.example", 80)
        assert net.dns.count("v4only.example", "AAAA") == 2
        assert net.dns.count("v4only.example", "A") == 1  # its TTL is 300


# --- order of sources ----------------------------------------------------------------------


async def test_hosts_table_wins_over_dns(autojump_clock):
    async with dns_net() as net:
        net.dns.add("www.example.", "A", 300, "10.0.0.80")
        net.client.hosts["www.example"] = ["10.0.0.99"]
        infos = await net.client.getaddrinfo("www.example", 80, stdlib.AF_INET)
        assert addresses(infos) == ["10.0.0.99"]
        infos = await net.client.getaddrinfo("localhost", 80, stdlib.AF_INET)
        assert addresses(infos) == ["127.0.0.1"]
        assert net.dns.queries == []


async def test_unknown_name_without_name_servers_is_eai_noname(autojump_clock):
    async with trionet.Stack(seed=1) as stack:
        assert stack.nameservers == []
        with pytest.raises(stdlib.gaierror) as info:
            await stack.getaddrinfo("www.example", 80)
        assert info.value.errno == stdlib.EAI_NONAME


# --- connecting by name ----------------------------------------------------------------------


async def serve_hello(stream) -> None:
    async with stream:
        await stream.send_all(b"hello")


async def test_use_stack_trio_open_tcp_stream_by_name(autojump_clock):
    async with dns_net() as net:
        net.dns.add("web.example.", "A", 300, SERVER4)
        await net.nursery.start(net.server.serve_tcp, serve_hello, 80)
        with trionet.use_stack(net.client):
            stream = await trio.open_tcp_stream("web.example", 80)
            async with stream:
                assert await stream.receive_some(10) == b"hello"
                assert stream.socket.getpeername()[0] == SERVER4
        assert net.dns.count("web.example") == 2  # A and AAAA (NODATA)


async def test_rfc8305_stack_open_tcp_stream_by_name_happy_eyeballs(autojump_clock):
    async with dns_net() as net:
        await net.nursery.start(net.server.serve_tcp, serve_hello, 80)
        # The IPv6 address goes first (RFC 6724) but nobody has it.
        net.dns.add("web.example.", "AAAA", 300, BLACK_HOLE6)
        net.dns.add("web.example.", "A", 300, SERVER4)
        await net.client.getaddrinfo("web.example", 80)  # warm the cache
        start = trio.current_time()
        stream = await net.client.open_tcp_stream("web.example", 80)
        elapsed = trio.current_time() - start
        async with stream:
            assert stream.remote_address == (SERVER4, 80)
            assert await stream.receive_some(10) == b"hello"
        # RFC 8305 5: the IPv4 attempt started after the 0.25 s delay, and
        # connected a round trip later (well before ND gave up on the other).
        assert 0.25 <= elapsed < 0.3
        # The losing attempt was cancelled: no connection is left behind.
        await trio.sleep(5)
        resources = net.client.resources()
        assert resources["tcp_connections"] == resources["tcp_connecting"] == 0
        # Both addresses refused: one OSError for all the attempts.
        net.dns.add("closed.example.", "AAAA", 300, SERVER6)
        net.dns.add("closed.example.", "A", 300, SERVER4)
        with pytest.raises(OSError) as info:
            await net.client.open_tcp_stream("closed.example", 81)
        assert "all attempts" in str(info.value)
        assert all(isinstance(e, ConnectionRefusedError)
                   for e in info.value.__cause__.exceptions)
        with pytest.raises(stdlib.gaierror):
            await net.client.open_tcp_stream("missing.example", 80)


async def test_rfc8305_first_address_refused_next_starts_at_once(autojump_clock):
    async with dns_net() as net:
        # Port 8080 listens on the IPv4 address only: the IPv6 one refuses.
        await net.nursery.start(functools.partial(net.server.serve_tcp, serve_hello, 8080,
                                                  host=SERVER4))
        net.dns.add("web.example.", "AAAA", 300, SERVER6)
        net.dns.add("web.example.", "A", 300, SERVER4)
        await net.client.getaddrinfo("web.example", 80)  # warm the cache
        start = trio.current_time()
        stream = await net.client.open_tcp_stream("web.example", 8080)
        async with stream:
            assert stream.remote_address == (SERVER4, 8080)
        # RFC 8305 5: the refusal (one round trip) starts the next attempt
        # without waiting for the delay.
        assert trio.current_time() - start < 0.25


# --- name servers ------------------------------------------------------------------------------


def test_stack_nameservers_validated():
    stack = trionet.Stack(nameservers=["10.0.0.53", IPv6Address("2001:db8::53"), "10.0.0.53"])
    assert stack.nameservers == [IPv4Address("10.0.0.53"), IPv6Address("2001:db8::53")]
    with pytest.raises(TypeError, match="nameservers"):
        trionet.Stack(nameservers="10.0.0.53")
    with pytest.raises(TypeError, match="nameservers"):
        trionet.Stack(nameservers=53)
    with pytest.raises(TypeError, match="nameservers"):
        trionet.Stack(nameservers=[53])
    with pytest.raises(ValueError, match="nameservers"):
        trionet.Stack(nameservers=["dns.example"])
    with pytest.raises(ValueError, match="nameservers"):
        trionet.Stack(nameservers=["224.0.0.1"])
    with pytest.raises(ValueError, match="nameservers"):
        trionet.Stack(nameservers=["::"])
    assert trionet.Stack(nameservers=None).nameservers == []


def test_nameservers_static_then_dhcp_lease_then_rdnss():
    """The order ``stack.nameservers`` lists them in; the DHCP lease is
    read from ``interface.dhcp_lease.dns_servers`` (RFC 2132 3.8)."""
    a, _ = trionet.virtual_cable()
    stack = trionet.Stack(nameservers=["10.0.0.53"])
    iface = stack.add_interface(a, "10.0.0.2/24")
    iface.dhcp_lease = types.SimpleNamespace(
        dns_servers=(IPv4Address("10.0.0.1"), IPv4Address("10.0.0.53")))
    assert stack.nameservers == [IPv4Address("10.0.0.53"), IPv4Address("10.0.0.1")]
    iface.dhcp_lease = None
    assert stack.nameservers == [IPv4Address("10.0.0.53")]


async def test_rfc8106_5_3_1_rdnss_from_router_advertisement_feeds_the_resolver(
        nursery, autojump_clock):
    from test_ipv6_nd_stack import advertisement, router_and_stack

    ra = advertisement(rdnss=(RdnssOption(30, (IPv6Address("fe80::a"),
                                               IPv6Address("2001:db8::53"))),))
    stack, iface, router = await router_and_stack(nursery, ra=ra, nameservers=["10.0.0.53"])
    async with stack:
        await trio.sleep(5)  # the router answered the router solicitation
        # Static servers first, then RDNSS ones (a link-local one scoped).
        assert stack.nameservers == [IPv4Address("10.0.0.53"),
                                     IPv6Address(f"fe80::a%{iface.name}"),
                                     IPv6Address("2001:db8::53")]
        assert iface.ipv6_nameservers == stack.nameservers[1:]
        # A refreshed lifetime (RFC 8106 5.3.1).
        router.send_ra(advertisement(rdnss=(RdnssOption(60, (IPv6Address("2001:db8::53"),)),)))
        await trio.sleep(30)
        # RFC 8106 5.3.1: fe80::a's lifetime ended: gone.
        assert stack.nameservers == [IPv4Address("10.0.0.53"), IPv6Address("2001:db8::53")]
        # A lifetime of 0 removes a server at once.
        router.send_ra(advertisement(rdnss=(RdnssOption(0, (IPv6Address("2001:db8::53"),)),)))
        await trio.sleep(0.1)
        assert stack.nameservers == [IPv4Address("10.0.0.53")]


async def test_rfc8106_link_local_rdnss_server_answers_over_the_stack(autojump_clock):
    """A name server known only from a router advertisement, at a
    link-local address: queries reach it over the stack (the scope
    travels as an interface index)."""
    from test_ipv6_nd_stack import advertisement

    a, b = trionet.virtual_cable(latency=0.005, seed=1)
    async with trionet.Stack(seed=1) as client, trionet.Stack(seed=2) as server, \
            trio.open_nursery() as nursery:
        client.add_interface(a)
        server_iface = server.add_interface(b)
        dns_server = DnsServer(server)
        dns_server.add("www.example.", "AAAA", 300, "2001:db8:1::80")
        await nursery.start(dns_server.run)
        await trio.sleep(5)
        [server_ll] = [e.ip for e in server_iface.addresses if e.version == 6]
        # A router advertisement naming the server stack as the name server,
        # sent on the server's end of the cable.
        src = IPv6Address(int(server_ll))
        ra = advertisement(rdnss=(RdnssOption(600, (src,)),), source_lladdr=server_iface.mac,
                           router_lifetime=0)
        packet = build_ipv6_plain(src, IPV6_ALL_NODES, PROTO_ICMPV6,
                                  build_router_advertisement(ra, src), hop_limit=255)
        b.send_frame(build_ethernet(multicast_mac(IPV6_ALL_NODES), server_iface.mac,
                                    ETHERTYPE_IPV6, packet))
        await trio.sleep(1)
        assert client.nameservers == [IPv6Address(f"{src}%{client.interfaces[0].name}")]
        infos = await client.getaddrinfo("www.example", 80, stdlib.AF_INET6)
        assert addresses(infos) == ["2001:db8:1::80"]
        assert dns_server.queries[0].server.startswith("fe80::")
        nursery.cancel_scope.cancel()


async def test_dns_queries_travel_over_the_trionet_stack_not_the_kernel(
        autojump_clock, monkeypatch):
    """The resolver's sockets are the stack's: a kernel socket opened
    during a lookup fails the test."""
    def no_kernel_sockets(*args, **kwargs):
        raise AssertionError("a kernel socket was opened")

    async with dns_net() as net:
        net.dns.add("www.example.", "A", 300, "10.0.0.80")
        monkeypatch.setattr(stdlib, "socket", no_kernel_sockets)
        infos = await net.client.getaddrinfo("www.example", 80, stdlib.AF_INET)
        monkeypatch.undo()
        assert addresses(infos) == ["10.0.0.80"]
        # The server stack got it, from the client stack's address.
        assert net.dns.queries == [Query("udp", SERVER4, "www.example", "A")]


async def _query_ids_of_a_seeded_run() -> list[int]:
    ids = []
    async with dns_net() as net:
        original = net.dns.answer

        def recording(wire, server, transport):
            ids.append(dns.message.from_wire(wire).id)
            return original(wire, server, transport)

        net.dns.answer = recording
        net.dns.add("www.example.", "A", 300, "10.0.0.80")
        net.dns.behaviour[SERVER4] = "silent"
        with pytest.raises(stdlib.gaierror):
            await net.client.getaddrinfo("www.example", 80, stdlib.AF_INET)
    return ids


async def test_rfc5452_query_ids_come_from_the_stack_seed(autojump_clock):
    """Every query (retries too) gets a fresh id (RFC 5452 4.3), drawn from
    the stack's seeded generator: the same seed sends the same ids again."""
    first = await _query_ids_of_a_seeded_run()
    second = await _query_ids_of_a_seeded_run()
    assert len(first) >= 3
    assert len(set(first)) == len(first)
    assert first == second
