"""Blind in-window attacks (RFC 5961) and PAWS (RFC 7323) over virtual_cable.

A third endpoint on the cable injects segments spoofing one side's address
into a live transfer: RSTs, SYNs and data, out of the window and in it (not
at RCV.NXT exactly: that RST would be a genuine reset), with bad ACKs, old
or missing timestamps, or timestamps from the far future. None of them may
disturb the connection: the transfer stays byte-exact, and the in-window
ones are answered with challenge ACKs, rate limited (RFC 5961 7).

``injections()`` is shared with tests/test_kernel_injection.py.
"""

from __future__ import annotations

import hashlib
import random
from ipaddress import IPv4Address

import trio

import trionet
from trionet.tcp.connection import TcpState
from trionet.wire import ETHERTYPE_IPV4, IPv4Header, build_ethernet, build_ipv4
from trionet.wire.tcp import ACK, NO_OPTIONS, PSH, RST, SYN, TcpHeader, TcpOptions, build_tcp


M32 = 0xFFFFFFFF
CLIENT_MAC = bytes.fromhex("02000000c001")
SERVER_MAC = bytes.fromhex("02000000c002")
GARBAGE = b"INJECTED!" * 100


def injections(m, rng: random.Random, now_tsval: int) -> list[tuple[str, TcpHeader, bytes]]:
    """Segments a (well informed) blind attacker sends to the connection
    ``m`` (a TcpConnection), as (kind, header seen from the peer, payload).
    Kinds ending in "_challenge" must draw a challenge ACK; none may change
    the connection. In-window sequence numbers sit in the upper half of the
    window, off segment boundaries, so RCV.NXT cannot reach them while the
    segment travels; out-of-window ones and bad ACKs are far enough out to
    stay so (data inside the window with an acceptable ACK and timestamp is
    the attack RFC 5961 leaves to chance: it is not sent)."""
    rcv = m.rcv_nxt
    wnd = max(m.rcv_adv - rcv, 4096)
    una = m.snd_una
    good_ack = una & M32
    # Far from anything acceptable (SND.UNA - MAX.SND.WND .. SND.NXT, RFC 5961
    # 5.2) even after the transfer moved on while the segment travelled.
    bad_acks = ((una + (1 << 30) + rng.randrange(1 << 20)) & M32,   # not yet sent
                (una - (1 << 30) - rng.randrange(1 << 20)) & M32)   # too old
    ts_ok = m.timestamps.ok
    recent = m.timestamps.recent

    def opts(tsval):
        return TcpOptions(timestamps=(tsval & M32, now_tsval & M32)) if ts_ok else NO_OPTIONS

    fresh = opts(recent + rng.randrange(1, 5))        # passes PAWS
    future = opts(recent + (1 << 30))                 # would poison TS.Recent
    old = opts(recent - 1000 - rng.randrange(1000))   # PAWS must drop it

    def in_window():
        return (rcv + wnd // 2 + 723 + rng.randrange(max(wnd // 2 - 2000, 1))) & M32

    def out_of_window():
        # Far beyond the right edge (no window reaches 1 GiB ahead, however
        # it grows meanwhile) or long acknowledged.
        return rng.choice([(rcv + (1 << 30) + rng.randrange(1 << 24)) & M32,
                           (rcv - 200_000 - rng.randrange(1 << 24)) & M32])

    out = [
        ("rst_out_of_window", TcpHeader(0, 0, out_of_window(), 0, RST, 0, 0, fresh), b""),
        ("rst_ack_out_of_window", TcpHeader(0, 0, out_of_window(), good_ack, RST | ACK, 0, 0,
                                            fresh), b""),
        ("rst_in_window_challenge", TcpHeader(0, 0, in_window(), 0, RST, 0, 0, fresh), b""),
        ("syn_in_window_challenge", TcpHeader(0, 0, in_window(), 0, SYN, 65535, 0, fresh), b""),
        ("syn_out_of_window_challenge", TcpHeader(0, 0, out_of_window(), 0, SYN, 65535, 0,
                                                  fresh), b""),
        ("data_out_of_window", TcpHeader(0, 0, out_of_window(), good_ack, ACK | PSH, 65535, 0,
                                         future), GARBAGE),
        ("data_bad_ack_challenge", TcpHeader(0, 0, in_window(), rng.choice(bad_acks),
                                             ACK | PSH, 65535, 0, future), GARBAGE),
        ("ack_bad_ack_challenge", TcpHeader(0, 0, in_window(), rng.choice(bad_acks), ACK,
                                            65535, 0, future), b""),
        ("data_no_ack_flag", TcpHeader(0, 0, in_window(), 0, PSH, 65535, 0, future), GARBAGE),
    ]
    if ts_ok:
        out += [
            # Everything right but the timestamp: only PAWS stops these.
            ("data_paws_old", TcpHeader(0, 0, in_window(), good_ack, ACK | PSH, 65535, 0, old),
             GARBAGE),
            ("data_no_timestamp", TcpHeader(0, 0, in_window(), good_ack, ACK | PSH, 65535, 0,
                                            NO_OPTIONS), GARBAGE),
        ]
    return out


def spoofed_frame(header: TcpHeader, payload: bytes, *, src, dst, sport: int, dport: int,
                  src_mac: bytes, dst_mac: bytes, ident: int) -> bytes:
    h = TcpHeader(sport, dport, header.seq, header.ack, header.flags, header.window, 0,
                  header.options)
    src, dst = IPv4Address(src), IPv4Address(dst)
    packet = build_ipv4(IPv4Header(src, dst, 6, identification=ident & 0xFFFF),
                        build_tcp(h, payload, src, dst))
    return build_ethernet(dst_mac, src_mac, ETHERTYPE_IPV4, packet)


async def test_blind_injection_during_transfer_is_harmless(autojump_clock):
    size = 2_000_000
    data = random.Random(1).randbytes(size)
    rng = random.Random(2)
    a, b = trionet.virtual_cable(latency=0.005, seed=3)
    async with trionet.Stack(seed=1) as client, trionet.Stack(seed=2) as server:
        client.add_interface(a, "10.0.0.1/24", mac=CLIENT_MAC)
        server.add_interface(b, "10.0.0.2/24", mac=SERVER_MAC)
        listener = (await server.open_tcp_listeners(7))[0]
        sent_kinds: dict[str, int] = {}
        done = trio.Event()
        echoed = []

        async def serve():
            stream = await listener.accept()
            async with stream:
                async for chunk in stream:
                    await stream.send_all(chunk)

        async def inject(c_machine, s_machine, cport):
            ident = 0
            while not done.is_set():
                await trio.sleep(0.001)
                now = trio.current_time()
                # Into the server, spoofing the client (through the client's end) ...
                for kind, h, payload in injections(s_machine, rng, c_machine.tsval(now)):
                    ident += 1
                    a.send_frame(spoofed_frame(h, payload, src="10.0.0.1", dst="10.0.0.2",
                                               sport=cport, dport=7, src_mac=CLIENT_MAC,
                                               dst_mac=SERVER_MAC, ident=ident))
                    sent_kinds[kind] = sent_kinds.get(kind, 0) + 1
                # ... and into the client, spoofing the server.
                for kind, h, payload in injections(c_machine, rng, s_machine.tsval(now)):
                    ident += 1
                    b.send_frame(spoofed_frame(h, payload, src="10.0.0.2", dst="10.0.0.1",
                                               sport=7, dport=cport, src_mac=SERVER_MAC,
                                               dst_mac=CLIENT_MAC, ident=ident))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            stream = await client.open_tcp_stream("10.0.0.2", 7)
            await trio.sleep(0.05)
            (s_sock,) = server.tcp.connections.values()
            c_machine, s_machine = stream.connection, s_sock.machine
            nursery.start_soon(inject, c_machine, s_machine, stream.local_address[1])

            async def send():
                await stream.send_all(data)
                await stream.send_eof()
            nursery.start_soon(send)
            async for chunk in stream:
                echoed.append(chunk)
            done.set()
        await stream.aclose()
        back = b"".join(echoed)
        assert len(back) == size
        assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
        assert sum(sent_kinds.values()) > 400, sent_kinds
        for m in (c_machine, s_machine):
            assert m.error is None
            # Challenge ACKs went out, and the rate limit held most back.
            assert m.challenge_acks > 0 and m.challenge_acks_limited > m.challenge_acks
        for stack in (client, server):
            assert stack.stats["drop.internal.error"] == 0


async def test_challenge_acks_are_rate_limited_on_the_wire(autojump_clock):
    """On an idle connection, 25 in-window RSTs at once draw exactly 10
    challenge ACKs (challenge_ack_limit a second), again a second later."""
    a, b = trionet.virtual_cable(latency=0.005, seed=4)
    rng = random.Random(9)
    async with trionet.Stack(seed=1) as client, trionet.Stack(seed=2) as server:
        client.add_interface(a, "10.0.0.1/24", mac=CLIENT_MAC)
        server.add_interface(b, "10.0.0.2/24", mac=SERVER_MAC)
        listener = (await server.open_tcp_listeners(7))[0]
        stream = await client.open_tcp_stream("10.0.0.2", 7)
        server_stream = await listener.accept()
        await stream.send_all(b"x" * 10_000)
        got = 0
        while got < 10_000:
            got += len(await server_stream.receive_some())
        await trio.sleep(1.0)
        m = server_stream.connection
        cport = stream.local_address[1]
        for burst in range(3):
            rx_before = client.stats["tcp.rx"]
            sent_before = m.challenge_acks
            limited_before = m.challenge_acks_limited
            now_ts = stream.connection.tsval(trio.current_time())
            for i in range(25):
                h = next(h for kind, h, _ in injections(m, rng, now_ts)
                         if kind == "rst_in_window_challenge")
                a.send_frame(spoofed_frame(h, b"", src="10.0.0.1", dst="10.0.0.2", sport=cport,
                                           dport=7, src_mac=CLIENT_MAC, dst_mac=SERVER_MAC,
                                           ident=burst * 100 + i))
            await trio.sleep(0.5)
            # Ten pure ACKs came back to the client, nothing else.
            assert client.stats["tcp.rx"] - rx_before == 10
            assert m.challenge_acks - sent_before == 10
            assert m.challenge_acks_limited - limited_before == 15
            await trio.sleep(0.5)
        assert stream.state is TcpState.ESTABLISHED
        assert server_stream.state is TcpState.ESTABLISHED
        # Still a working connection.
        await server_stream.send_all(b"still here")
        assert await stream.receive_some() == b"still here"
        await stream.aclose()
        await server_stream.aclose()


async def test_future_timestamp_with_bad_ack_does_not_poison_ts_recent(autojump_clock):
    """RFC 7323 4.3 / RFC 5961 5: TS.Recent moves only for a segment that
    is also acceptable by its ACK; else one forged segment with a TSval far
    ahead makes PAWS drop every genuine segment after it."""
    a, b = trionet.virtual_cable(latency=0.005, seed=5)
    rng = random.Random(3)
    async with trionet.Stack(seed=1) as client, trionet.Stack(seed=2) as server:
        client.add_interface(a, "10.0.0.1/24", mac=CLIENT_MAC)
        server.add_interface(b, "10.0.0.2/24", mac=SERVER_MAC)
        listener = (await server.open_tcp_listeners(7))[0]
        stream = await client.open_tcp_stream("10.0.0.2", 7)
        server_stream = await listener.accept()
        m = server_stream.connection
        recent = m.timestamps.recent
        for kind in ("data_bad_ack_challenge", "ack_bad_ack_challenge", "data_no_ack_flag"):
            h = next(h for k, h, _ in injections(m, rng, 0) if k == kind)
            # At RCV.NXT exactly (SEG.SEQ <= Last.ACK.sent: the segment
            # RFC 7323 4.3 takes TS.Recent from).
            h = TcpHeader(h.src_port, h.dst_port, m.rcv_nxt & M32, h.ack, h.flags, h.window,
                          0, h.options)
            a.send_frame(spoofed_frame(h, GARBAGE, src="10.0.0.1", dst="10.0.0.2",
                                       sport=stream.local_address[1], dport=7,
                                       src_mac=CLIENT_MAC, dst_mac=SERVER_MAC, ident=1))
            await trio.sleep(0.1)
        assert m.challenge_acks == 2
        assert (m.timestamps.recent - recent) & M32 < 1 << 20  # not moved 2**30 ahead
        with trio.fail_after(5):
            await stream.send_all(b"genuine")
            assert await server_stream.receive_some() == b"genuine"
        await stream.aclose()
        await server_stream.aclose()
