"""SYN cookies (RFC 4987 3.6, Linux's layout): the codec, and listeners whose
SYN queue is full answering statelessly over virtual_cable (virtual time)."""

from __future__ import annotations

import functools
import hashlib
import random
from ipaddress import IPv4Address

import pytest
import trio

import trionet
from trionet import wire
from trionet.tcp.cookies import MAX_AGE, MSS_TABLE, PERIOD, SynCookies
from trionet.wire.tcp import ACK, RST, SYN, TcpHeader, TcpOptions, build_tcp, parse_tcp

from test_stack_support import STACK_MAC, RawHost

M32 = 0xFFFFFFFF
LOCAL = (IPv4Address("10.0.0.2"), 80)
REMOTE = (IPv4Address("10.0.0.1"), 40000)


# --- the codec ------------------------------------------------------------------------


@pytest.mark.parametrize("peer_mss, expected", [
    (None, 536), (100, 536), (536, 536), (1299, 536), (1300, 1300), (1400, 1300),
    (1440, 1440), (1459, 1440), (1460, 1460), (9000, 1460), (65495, 1460)])
def test_round_trip_carries_the_mss_rounded_down(peer_mss, expected):
    c = SynCookies(b"k" * 32)
    now = 1000.0
    isn = 123456789
    cookie = c.encode(LOCAL, REMOTE, isn, peer_mss, now)
    assert c.decode(LOCAL, REMOTE, isn, cookie, now) == expected
    assert expected in MSS_TABLE


def test_valid_for_up_to_two_counter_periods():
    c = SynCookies(b"k" * 32)
    made = 10 * PERIOD + 0.25
    cookie = c.encode(LOCAL, REMOTE, 7, 1460, made)
    assert c.decode(LOCAL, REMOTE, 7, cookie, made) == 1460
    # The counter ticks once: still valid, to the end of the next period.
    assert c.decode(LOCAL, REMOTE, 7, cookie, made + PERIOD) == 1460
    assert c.decode(LOCAL, REMOTE, 7, cookie, 12 * PERIOD - 0.001) == 1460
    # MAX_AGE ticks later: expired.
    assert MAX_AGE == 2
    assert c.decode(LOCAL, REMOTE, 7, cookie, 12 * PERIOD) is None
    assert c.decode(LOCAL, REMOTE, 7, cookie, made + 100 * PERIOD) is None
    # A cookie "from the future" (counter ahead of ours) is no good either.
    assert c.decode(LOCAL, REMOTE, 7, cookie, made - PERIOD) is None


def test_counter_wraps_without_reviving_old_cookies():
    c = SynCookies(b"k" * 32)
    cookie = c.encode(LOCAL, REMOTE, 7, 1460, 5.0)
    # 256 ticks later the 8-bit counter field matches again, but H2 is keyed
    # with the full counter: nothing decodes.
    assert c.decode(LOCAL, REMOTE, 7, cookie, 5.0 + 256 * PERIOD) is None


def test_bound_to_the_four_tuple_and_the_client_isn():
    c = SynCookies(b"k" * 32)
    cookie = c.encode(LOCAL, REMOTE, 1000, 1460, 50.0)
    assert c.decode(LOCAL, REMOTE, 1000, cookie, 50.0) == 1460
    assert c.decode(LOCAL, REMOTE, 1001, cookie, 50.0) is None
    assert c.decode(LOCAL, (REMOTE[0], REMOTE[1] + 1), 1000, cookie, 50.0) is None
    assert c.decode(LOCAL, (IPv4Address("10.0.0.3"), REMOTE[1]), 1000, cookie, 50.0) is None
    assert c.decode((LOCAL[0], 81), REMOTE, 1000, cookie, 50.0) is None
    # Another stack (another secret) does not accept it.
    assert SynCookies(b"x" * 32).decode(LOCAL, REMOTE, 1000, cookie, 50.0) is None


def test_forged_cookies_are_rejected():
    """A blind attacker guessing SEG.ACK: 8 of 2**32 values decode (two
    counter values, four MSS indexes); 200,000 guesses find none."""
    c = SynCookies(b"k" * 32)
    rng = random.Random(5)
    now = 3 * PERIOD
    real = c.encode(LOCAL, REMOTE, 99, 1460, now)
    accepted = 0
    for _ in range(200_000):
        guess = rng.getrandbits(32)
        if guess != real and c.decode(LOCAL, REMOTE, 99, guess, now) is not None:
            accepted += 1
    assert accepted == 0
    # Flipping any single bit of a real cookie breaks it.
    for bit in range(32):
        assert c.decode(LOCAL, REMOTE, 99, real ^ (1 << bit), now) is None


def test_timestamp_carries_window_scale_and_sack():
    for wscale in [None, *range(15)]:
        for sack in (False, True):
            for tsval in (0, 1, 63, 64, 1_000_000, M32, M32 - 5):
                value = SynCookies.encode_tsval(tsval, wscale, sack)
                assert SynCookies.decode_tsecr(value) == (wscale, sack)
                # Never after the clock it stands for (RFC 7323: TSval must not
                # go back later), and at most 64 ms before it.
                assert 0 <= (tsval - value) & M32 < 128


# --- listeners over virtual_cable ------------------------------------------------------


@pytest.fixture
def two_stacks(two_stacks):
    """Client and server (known MAC) on a 5 ms cable."""
    return functools.partial(two_stacks, latency=0.005, seed=3, server_mac=STACK_MAC)


async def echo_once(client, port: int, size: int, seed: int) -> trionet.Stream:
    data = random.Random(seed).randbytes(size)
    stream = await client.open_tcp_stream("10.0.0.2", port)
    await stream.send_all(data)
    await stream.send_eof()
    back = b""
    async for chunk in stream:
        back += chunk
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
    await stream.aclose()


async def echo(stream):
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def test_tiny_syn_queue_clients_connect_via_cookies(two_stacks, autojump_clock):
    async with two_stacks() as (client, server, a, b):
        accepted = []

        async def handler(stream):
            accepted.append(stream.info)
            await echo(stream)

        async with trio.open_nursery() as nursery:
            (listener,) = await nursery.start(server.serve_tcp, handler, 80)
            listener.syn_backlog = 0  # every SYN finds the SYN queue full
            for i in range(3):
                await echo_once(client, 80, 50_000, i)
            async with trio.open_nursery() as clients:  # and ten at once
                for i in range(10):
                    clients.start_soon(echo_once, client, 80, 20_000, 10 + i)
            nursery.cancel_scope.cancel()
        assert server.stats["tcp.syncookies_sent"] == 13
        assert server.stats["tcp.syncookies_ok"] == 13
        assert listener.embryos == 0
        assert server.stats["drop.tcp.syncookie_invalid"] == 0
        assert server.stats["drop.tcp.syn_queue_full"] == 0
        # The options came back from the cookie: MSS (1460, less the
        # timestamp option), the client's window scale, SACK, timestamps.
        for info in accepted:
            assert info["mss"] == 1448 and info["peer_mss"] == 1460
            assert info["snd_wscale"] == 7 and info["rcv_wscale"] == 7
            assert info["sack"] and info["timestamps"]


async def test_cookie_connection_matches_a_normal_one(two_stacks, autojump_clock):
    """Same options whether the SYN queue had room or not."""
    async with two_stacks() as (client, server, a, b):
        listener = (await server.open_tcp_listeners(80))[0]
        normal = await client.open_tcp_stream("10.0.0.2", 80)
        server_normal = await listener.accept()
        listener.syn_backlog = 0
        cookie = await client.open_tcp_stream("10.0.0.2", 80)
        server_cookie = await listener.accept()
        assert server.stats["tcp.syncookies_ok"] == 1
        keys = ("mss", "peer_mss", "snd_wscale", "rcv_wscale", "sack", "timestamps", "state")
        assert {k: server_cookie.info[k] for k in keys} == {k: server_normal.info[k] for k in keys}
        assert {k: cookie.info[k] for k in keys} == {k: normal.info[k] for k in keys}
        # And data flows both ways, SACK and window scale in use.
        await cookie.send_all(b"x" * 300_000)
        got = 0
        while got < 300_000:
            got += len(await server_cookie.receive_some())
        await server_cookie.send_all(b"y" * 300_000)
        got = 0
        while got < 300_000:
            got += len(await cookie.receive_some())
        for s in (normal, server_normal, cookie, server_cookie):
            await s.aclose()


async def test_without_timestamps_window_scale_and_sack_are_lost(two_stacks, autojump_clock):
    async with two_stacks() as (client, server, a, b):
        client.tcp.config.timestamps = False
        listener = (await server.open_tcp_listeners(80))[0]
        listener.syn_backlog = 0
        stream = await client.open_tcp_stream("10.0.0.2", 80)
        server_stream = await listener.accept()
        assert server.stats["tcp.syncookies_ok"] == 1
        for info in (stream.info, server_stream.info):
            assert not info["timestamps"] and not info["sack"]
            assert info["snd_wscale"] == info["rcv_wscale"] == 0
            assert info["mss"] == 1460
        await stream.send_all(b"z" * 100_000)
        got = 0
        while got < 100_000:
            got += len(await server_stream.receive_some())
        await stream.aclose()
        await server_stream.aclose()


async def test_mss_is_rounded_down_to_the_table(two_stacks, autojump_clock):
    async with two_stacks(mtu=1440) as (client, server, a, b):
        listener = (await server.open_tcp_listeners(80))[0]
        listener.syn_backlog = 0
        stream = await client.open_tcp_stream("10.0.0.2", 80)
        server_stream = await listener.accept()
        # The client announced 1400: the cookie carries 1300.
        assert server_stream.info["peer_mss"] == 1300
        assert server_stream.info["mss"] == 1300 - 12
        assert stream.info["mss"] == 1400 - 12
        await stream.aclose()
        await server_stream.aclose()


async def test_syncookies_off_drops_when_the_syn_queue_is_full(two_stacks, autojump_clock):
    async with two_stacks() as (client, server, a, b):
        server.tcp.syncookies = 0
        client.tcp.config.syn_retries = 1
        listener = (await server.open_tcp_listeners(80))[0]
        listener.syn_backlog = 0
        with pytest.raises(TimeoutError):
            await client.open_tcp_stream("10.0.0.2", 80)
        assert server.stats["drop.tcp.syn_queue_full"] == 2
        assert server.stats["tcp.syncookies_sent"] == 0


async def test_syncookies_always(two_stacks, autojump_clock):
    async with two_stacks() as (client, server, a, b):
        server.tcp.syncookies = 2
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_tcp, echo, 80)
            await echo_once(client, 80, 10_000, 1)
            nursery.cancel_scope.cancel()
        assert server.stats["tcp.syncookies_ok"] == 1
        assert server.stats["tcp.passive_opens"] == 1


async def test_cookies_near_the_connection_table_bound(two_stacks, autojump_clock):
    """Embryos may not take the last eighth of the table: those SYNs get
    cookies; a full table drops SYNs (no cookie could become a connection)."""
    async with two_stacks() as (client, server, a, b):
        server.tcp.max_connections = 8
        client.tcp.config.syn_retries = 1
        listener = (await server.open_tcp_listeners(80))[0]
        streams = []
        for _ in range(7):
            streams.append(await client.open_tcp_stream("10.0.0.2", 80))
        assert server.stats["tcp.syncookies_sent"] == 0
        streams.append(await client.open_tcp_stream("10.0.0.2", 80))  # the 8th: a cookie
        await trio.sleep(0.1)  # its ACK reaches the server
        assert server.stats["tcp.syncookies_ok"] == 1
        assert len(server.tcp.connections) == 8
        with pytest.raises(TimeoutError):
            await client.open_tcp_stream("10.0.0.2", 80)
        assert server.stats["drop.tcp.too_many_connections"] == 2
        for s in streams:
            await s.aclose()
        await listener.aclose()


# --- by hand: a raw client --------------------------------------------------------


class RawClient:
    """A TCP client made of a RawHost: SYN, read the SYN-ACK, ACK."""

    def __init__(self, host: RawHost, port: int = 80):
        self.host = host
        self.port = port
        self.sport = 41000
        self.isn = 0x11223344
        self.tsval = 5000

    def segment(self, header: TcpHeader, payload: bytes = b"") -> None:
        seg = build_tcp(header, payload, self.host.ip, IPv4Address("10.0.0.1"))
        self.host.send_ip(self.host.ip_packet("10.0.0.1", wire.PROTO_TCP, seg))

    def syn(self, *, timestamps=True, wscale=5, sack=True, mss=1460) -> None:
        opts = TcpOptions(mss=mss, window_scale=wscale, sack_permitted=sack,
                          timestamps=(self.tsval, 0) if timestamps else None)
        self.segment(TcpHeader(self.sport, self.port, self.isn, 0, SYN, 65535, 0, opts))

    async def receive_tcp(self) -> TcpHeader:
        while True:
            _, header, payload = await self.host.receive_ip(wire.PROTO_TCP)
            tcp, _ = parse_tcp(payload, header.src, header.dst,
                               verify_checksum=not self.host.end.checksum_offload)
            if tcp.dst_port == self.sport:
                return tcp

    def ack(self, synack: TcpHeader, *, ack_delta: int = 0, data: bytes = b"") -> None:
        ts = synack.options.timestamps
        opts = TcpOptions(timestamps=(self.tsval + 1, ts[0])) if ts else TcpOptions()
        self.segment(TcpHeader(self.sport, self.port, (self.isn + 1) & M32,
                               (synack.seq + 1 + ack_delta) & M32, ACK, 1000, 0, opts), data)


async def raw_setup(nursery):
    a, b = trionet.virtual_cable(latency=0.001, seed=1)
    stack = trionet.Stack(seed=1)
    host = RawHost(b, "10.0.0.9")
    await nursery.start(host.run)
    return stack, a, host


async def test_raw_cookie_ack_with_data_creates_the_connection(nursery, autojump_clock):
    stack, a, host = await raw_setup(nursery)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        listener = (await stack.open_tcp_listeners(80))[0]
        listener.syn_backlog = 0
        raw = RawClient(host)
        raw.syn(wscale=5, mss=1400)
        synack = await raw.receive_tcp()
        assert synack.flags == SYN | ACK and synack.ack == raw.isn + 1
        assert stack.stats["tcp.syncookies_sent"] == 1 and not stack.tcp.connections
        assert synack.options.window_scale is not None and synack.options.sack_permitted
        # The SYN-ACK's TSval carries wscale 5 and SACK in its low bits.
        assert synack.options.timestamps[0] & 0x1F == 5 | 0x10
        # The handshake's ACK carries data (its pure ACK was lost, say).
        raw.ack(synack, data=b"hello cookie")
        stream = await listener.accept()
        assert await stream.receive_some() == b"hello cookie"
        info = stream.info
        assert info["state"] == "ESTABLISHED"
        assert info["snd_wscale"] == 5 and info["sack"] and info["timestamps"]
        assert info["peer_mss"] == 1300
        assert stack.stats["tcp.syncookies_ok"] == 1
        ack = await raw.receive_tcp()
        assert ack.ack == (raw.isn + 1 + len(b"hello cookie")) & M32
        await stream.aclose()


async def test_raw_forged_and_expired_cookies_get_rst(nursery, autojump_clock):
    stack, a, host = await raw_setup(nursery)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        listener = (await stack.open_tcp_listeners(80))[0]
        listener.syn_backlog = 0
        raw = RawClient(host)
        raw.syn()
        synack = await raw.receive_tcp()
        # A wrong cookie: RST (RFC 9293 3.10.7.1: SEQ = SEG.ACK), counted.
        raw.ack(synack, ack_delta=1)
        rst = await raw.receive_tcp()
        assert rst.flags == RST and rst.seq == (synack.seq + 2) & M32
        assert stack.stats["drop.tcp.syncookie_invalid"] == 1
        assert not stack.tcp.connections
        # Expired: two counter periods later (cookies still being sent, so
        # ACKs are still looked at).
        await trio.sleep(MAX_AGE * PERIOD + 1)
        raw.sport += 1
        raw.syn()
        await raw.receive_tcp()
        raw.sport -= 1
        raw.ack(synack)
        rst = await raw.receive_tcp()
        assert rst.flags == RST
        assert stack.stats["drop.tcp.syncookie_invalid"] == 2
        assert stack.stats["tcp.syncookies_ok"] == 0
        # Long after the last cookie, an unknown ACK is just an unknown
        # segment (RST, no cookie check).
        await trio.sleep(MAX_AGE * PERIOD + 1)
        raw.ack(synack, ack_delta=5)
        rst = await raw.receive_tcp()
        assert rst.flags == RST
        assert stack.stats["drop.tcp.syncookie_invalid"] == 2
        assert stack.stats["drop.tcp.no_connection"] == 1


async def test_raw_cookie_without_timestamps(nursery, autojump_clock):
    stack, a, host = await raw_setup(nursery)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        listener = (await stack.open_tcp_listeners(80))[0]
        listener.syn_backlog = 0
        raw = RawClient(host)
        raw.syn(timestamps=False, wscale=3, sack=True, mss=None)
        synack = await raw.receive_tcp()
        # Nothing to carry window scale and SACK in: not offered (as Linux).
        assert synack.options.window_scale is None and not synack.options.sack_permitted
        assert synack.options.timestamps is None and synack.options.mss == 1460
        raw.ack(synack)
        stream = await listener.accept()
        info = stream.info
        assert not info["sack"] and not info["timestamps"] and info["snd_wscale"] == 0
        assert info["peer_mss"] == 536  # no MSS option: RFC 9293's default
        await stream.aclose()


async def test_accept_queue_full_drops_cookie_ack(nursery, autojump_clock):
    stack, a, host = await raw_setup(nursery)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        listener = (await stack.open_tcp_listeners(80, backlog=1))[0]
        listener.syn_backlog = 0
        raw = RawClient(host)
        raw.syn()
        synack = await raw.receive_tcp()
        raw.ack(synack)
        await trio.sleep(0.1)
        assert listener.accept_queue == 1
        raw.sport += 1
        raw.syn()
        assert stack.stats["drop.tcp.accept_queue_full"] == 0
        await trio.sleep(0.1)
        # The accept queue is full: the SYN is dropped (as Linux).
        assert stack.stats["drop.tcp.accept_queue_full"] == 1
        await listener.accept()
        raw.syn()
        synack2 = await raw.receive_tcp()
        raw.ack(synack2)
        await trio.sleep(0.1)
        assert listener.accept_queue == 1
        assert stack.stats["tcp.syncookies_ok"] == 2
