"""Handshakes in progress (SYN-RECEIVED) cost a table entry, not a task
(as Linux's request socks): the SYN-ACK is retransmitted with backoff by
the stack's one handshake timer, and the connection's task starts when the
handshake completes. Over virtual_cable, in virtual time."""

from __future__ import annotations

import trio

import trionet
from trionet.wire.tcp import ACK, SYN

from test_stack_support import STACK_MAC
from test_syn_cookies import RawClient, raw_setup


async def test_unanswered_handshakes_take_no_task(autojump_clock):
    a, b = trionet.virtual_cable(latency=0.001, seed=3)
    async with trionet.Stack(seed=1) as client, trionet.Stack(seed=2) as server:
        client.add_interface(a, "10.0.0.1/24")
        server.add_interface(b, "10.0.0.2/24")
        await client.ping("10.0.0.2")
        await trio.sleep(0.01)
        tasks = server.resources()["tasks"]
        listener = (await server.open_tcp_listeners(80, backlog=1000))[0]
        b.loss = 1.0  # every SYN-ACK is lost
        async with trio.open_nursery() as nursery:
            for _ in range(200):
                nursery.start_soon(client.open_tcp_stream, "10.0.0.2", 80)
            await trio.sleep(0.5)
            held = server.resources()
            assert held["tcp_handshakes"] == 200 and listener.embryos == 200
            assert held["tasks"] <= tasks + 1  # the handshake timer, shared
            nursery.cancel_scope.cancel()
        b.loss = 0.0
        stream = await client.open_tcp_stream("10.0.0.2", 80)  # completes: a task of its own
        peer = await listener.accept()
        await stream.send_all(b"x")
        assert await peer.receive_some() == b"x"
        await stream.aclose()
        await peer.aclose()
        await listener.aclose()
        await trio.sleep(120)  # the embryos time out; TIME-WAIT ends
        assert not server.tcp.connections
        assert server.resources()["tasks"] == tasks


async def test_synack_retransmitted_with_backoff_then_given_up(nursery, autojump_clock):
    stack, a, host = await raw_setup(nursery)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        stack.tcp.config.synack_retries = 3
        listener = (await stack.open_tcp_listeners(80))[0]
        raw = RawClient(host)
        start = trio.current_time()
        raw.syn()
        times = []
        for _ in range(4):
            synack = await raw.receive_tcp()
            assert synack.flags == SYN | ACK and synack.ack == raw.isn + 1
            times.append(trio.current_time() - start)
        # RFC 6298 5.5: 1 s, then doubled at each retransmission.
        gaps = [round(b - a, 2) for a, b in zip(times, times[1:])]
        assert gaps == [1.0, 2.0, 4.0]
        assert listener.embryos == 1
        await trio.sleep(10)  # past the last RTO: the handshake is given up
        assert listener.embryos == 0 and not stack.tcp.connections
        assert stack.resources()["tcp_handshakes"] == 0


async def test_retransmitted_syn_is_answered_and_the_final_ack_carries_data(
        nursery, autojump_clock):
    stack, a, host = await raw_setup(nursery)
    async with stack:
        stack.add_interface(a, "10.0.0.1/24", mac=STACK_MAC)
        listener = (await stack.open_tcp_listeners(80))[0]
        raw = RawClient(host)
        raw.syn()
        first = await raw.receive_tcp()
        raw.syn()  # retransmitted SYN: the same SYN-ACK again (as Linux)
        again = await raw.receive_tcp()
        assert again.flags == SYN | ACK and again.seq == first.seq
        raw.ack(again, data=b"on the ACK")
        stream = await listener.accept()
        assert await stream.receive_some() == b"on the ACK"
        ack = await raw.receive_tcp()
        assert ack.flags & ACK and ack.ack == (raw.isn + 1 + len(b"on the ACK")) & 0xFFFFFFFF
        assert listener.embryos == 0
        await stream.aclose()
