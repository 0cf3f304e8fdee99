"""Cancelling stream operations at any point leaves the connection
consistent (issue 5): hypothesis chooses the operations and when each is
cancelled, in virtual time."""

import itertools

import trio
import trio.testing
from hypothesis import given, settings, strategies as st

import trionet

operations = st.lists(
    st.tuples(st.sampled_from(["send", "receive"]),
              st.integers(min_value=1, max_value=400_000),
              st.floats(min_value=0.0, max_value=0.05)),
    min_size=1, max_size=12)


async def scenario(ops, seed):
    cable_a, cable_b = trionet.virtual_cable(latency=0.002, loss=0.02, seed=seed)
    async with trionet.Stack(seed=1) as a, trionet.Stack(seed=2) as b:
        a.add_interface(cable_a, "10.0.0.1/24")
        b.add_interface(cable_b, "10.0.0.2/24")
        listener = (await b.open_tcp_listeners(80))[0]
        sender = await a.open_tcp_stream("10.0.0.2", 80)
        receiver = await listener.accept()
        chunks = []  # (byte value, size, completed)
        received = bytearray()
        for value, (kind, size, delay) in enumerate(ops, start=1):
            with trio.move_on_after(delay) as scope:
                if kind == "send":
                    await sender.send_all(bytes([value]) * size)
                else:
                    received += await receiver.receive_some(size)
            if kind == "send":
                chunks.append((value, size, not scope.cancelled_caught))
        # The connection still works: finish, and read everything that was sent.
        with trio.fail_after(600):
            await sender.send_eof()
            async for data in receiver:
                received += data
        assert sender.state in (trionet.TcpState.FIN_WAIT_1, trionet.TcpState.FIN_WAIT_2,
                                trionet.TcpState.TIME_WAIT)
        for stack in (a, b):
            assert stack.stats["drop.internal.error"] == 0
    return chunks, bytes(received)


@settings(max_examples=40, deadline=None)
@given(ops=operations, seed=st.integers(0, 1000))
def test_cancelling_anywhere_keeps_the_byte_stream_consistent(ops, seed):
    chunks, received = trio.run(scenario, ops, seed,
                                clock=trio.testing.MockClock(autojump_threshold=0))
    runs = [(value, len(list(group))) for value, group in itertools.groupby(received)]
    position = 0
    for value, size, completed in chunks:
        got = 0
        if position < len(runs) and runs[position][0] == value:
            got = runs[position][1]
            position += 1
        # A cancelled send delivers a prefix of its data (maybe none); a
        # completed one all of it; nothing is lost, duplicated or reordered.
        assert got <= size
        if completed:
            assert got == size
    assert position == len(runs), "bytes arrived that no send accounts for"
