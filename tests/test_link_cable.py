import math

import pytest
import trio
import trio.testing

from trionet.link import CableEnd, Link, virtual_cable


def numbered(n, size=60):
    return [i.to_bytes(4, "big") + bytes(size - 4) for i in range(n)]


def number(frame):
    return int.from_bytes(frame[:4], "big")


async def drain(end, quiet=1.0):
    """Every frame that arrives until ``quiet`` seconds pass without one."""
    got = []
    while True:
        with trio.move_on_after(quiet):
            got.extend(await end.receive_batch())
            continue
        return got


async def test_delivery_both_ways(autojump_clock):
    a, b = virtual_cable()
    assert isinstance(a, CableEnd) and isinstance(a, Link)
    assert a.peer is b and b.peer is a
    sent = numbered(5)
    for f in sent:
        a.send_frame(f)
    assert await b.receive_batch() == sent
    b.send_frame(b"reply" * 12)
    assert await a.receive_batch() == [b"reply" * 12]
    assert a.stats["tx_frames"] == 5 and b.stats["rx_frames"] == 5
    assert b.stats["tx_frames"] == 1 and a.stats["rx_frames"] == 1


async def test_attributes():
    a, b = virtual_cable(mtu=9000)
    assert a.mtu == b.mtu == 9000
    assert a.checksum_offload and b.checksum_offload
    assert a.needs_arp
    assert isinstance(a.seed, int) and a.seed == b.seed
    c, _ = virtual_cable(corrupt=0.1)
    assert c.checksum_offload is False
    d, _ = virtual_cable(corrupt=0.1, checksum_offload=True)
    assert d.checksum_offload is True


async def test_latency_is_exact_in_virtual_time(autojump_clock):
    a, b = virtual_cable(latency=0.05)
    t0 = trio.current_time()
    for f in numbered(3):
        a.send_frame(f)
    await trio.sleep(0.01)
    a.send_frame(numbered(4)[3])
    first = await b.receive_batch()
    assert trio.current_time() - t0 == pytest.approx(0.05, abs=1e-9)
    assert [number(f) for f in first] == [0, 1, 2]
    second = await b.receive_batch()
    assert trio.current_time() - t0 == pytest.approx(0.06, abs=1e-9)
    assert [number(f) for f in second] == [3]


async def test_new_earlier_frame_wakes_a_waiting_receiver(autojump_clock):
    a, b = virtual_cable(latency=1.0)
    a.send_frame(b"slow" * 15)
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:

        async def speed_up():
            await trio.sleep(0.1)
            a.latency = 0.0
            a.send_frame(b"fast" * 15)

        nursery.start_soon(speed_up)
        assert await b.receive_batch() == [b"fast" * 15]
        assert trio.current_time() - t0 == pytest.approx(0.1, abs=1e-9)
    assert await b.receive_batch() == [b"slow" * 15]
    assert trio.current_time() - t0 == pytest.approx(1.0, abs=1e-9)


async def run_lossy(seed):
    a, b = virtual_cable(loss=0.3, seed=seed)
    for f in numbered(300):
        a.send_frame(f)
    got = [number(f) for f in await drain(b)]
    return got, a.stats


async def test_loss_is_deterministic_per_seed(autojump_clock):
    got1, stats1 = await run_lossy(1234)
    got2, stats2 = await run_lossy(1234)
    assert got1 == got2
    assert got1 == sorted(got1)
    assert stats1 == stats2
    lost = stats1["tx_dropped_loss"]
    assert lost == 300 - len(got1)
    assert 45 < lost < 135  # about 30%
    got3, _ = await run_lossy(4321)
    assert got3 != got1


async def test_loss_is_mutable_per_direction(autojump_clock):
    a, b = virtual_cable()
    a.loss = 1.0
    a.send_frame(b"lost" * 15)
    b.send_frame(b"back" * 15)
    assert await a.receive_batch() == [b"back" * 15]
    assert await drain(b) == []
    assert a.stats["tx_dropped_loss"] == 1
    a.loss = 0.0
    a.send_frame(b"gets" * 15)
    assert await b.receive_batch() == [b"gets" * 15]


async def test_duplicate_is_observed_and_counted(autojump_clock):
    a, b = virtual_cable(duplicate=0.5, seed=7)
    for f in numbered(100):
        a.send_frame(f)
    got = [number(f) for f in await drain(b)]
    dups = a.stats["tx_duplicated"]
    assert 0 < dups < 100
    assert len(got) == 100 + dups
    assert sorted(set(got)) == list(range(100))
    assert b.stats["rx_frames"] == a.stats["tx_frames"] + dups


async def test_reorder_is_observed_and_counted(autojump_clock):
    a, b = virtual_cable(latency=0.01, reorder=0.3, seed=7)
    assert a.reorder_delay == pytest.approx(0.02)
    for f in numbered(100):
        a.send_frame(f)
        await trio.sleep(0.001)
    got = [number(f) for f in await drain(b)]
    assert sorted(got) == list(range(100))
    assert got != sorted(got)
    assert a.stats["tx_reordered"] > 0
    a.reorder_delay = 0.5
    assert a.reorder_delay == 0.5
    a.reorder_delay = None
    assert a.reorder_delay == pytest.approx(0.02)


async def test_corrupt_is_observed_and_counted(autojump_clock):
    a, b = virtual_cable(corrupt=0.3, seed=7)
    sent = numbered(100)
    for f in sent:
        a.send_frame(f)
    got = await drain(b)
    assert len(got) == 100
    damaged = 0
    for original, received in zip(sent, got):
        diffs = sum(x != y for x, y in zip(original, received))
        assert diffs in (0, 1)
        damaged += diffs
    assert damaged == a.stats["tx_corrupted"] > 0


async def test_same_seed_replays_every_impairment(autojump_clock):
    async def run():
        a, b = virtual_cable(latency=0.01, loss=0.1, duplicate=0.1, reorder=0.1,
                             corrupt=0.1, seed="replay")
        for f in numbered(200):
            a.send_frame(f)
            # Not a divisor of the reorder delay: no two frames are due at the
            # same instant, where float rounding of the clock would decide.
            await trio.sleep(0.0013)
        return await drain(b)

    assert await run() == await run()


async def test_unplugged_cuts_both_directions(autojump_clock):
    a, b = virtual_cable()
    assert a.unplugged is False
    a.unplugged = True
    assert b.unplugged is True
    a.send_frame(b"x" * 60)
    b.send_frame(b"y" * 60)
    assert await drain(a) == [] and await drain(b) == []
    assert a.stats["tx_dropped_unplugged"] == 1
    assert b.stats["tx_dropped_unplugged"] == 1
    b.unplugged = False
    a.send_frame(b"x" * 60)
    assert await b.receive_batch() == [b"x" * 60]


async def test_oversize_dropped(autojump_clock):
    a, b = virtual_cable(mtu=100)
    a.send_frame(b"a" * 115)
    a.send_frame(b"b" * 114)
    assert await b.receive_batch() == [b"b" * 114]
    assert a.stats["tx_dropped_oversize"] == 1


async def test_full_peer_drops(autojump_clock):
    a, b = virtual_cable(capacity=3)
    for f in numbered(5):
        a.send_frame(f)
    assert a.stats["tx_dropped_full"] == 2
    assert [number(f) for f in await b.receive_batch()] == [0, 1, 2]


async def test_batch_limit(autojump_clock):
    a, b = virtual_cable()
    for f in numbered(100):
        a.send_frame(f)
    first = await b.receive_batch(max_frames=64)
    second = await b.receive_batch(max_frames=64)
    assert [number(f) for f in first + second] == list(range(100))
    assert len(first) == 64


async def test_close(autojump_clock):
    a, b = virtual_cable(latency=1.0)
    a.send_frame(b"x" * 60)

    async def reader():
        with pytest.raises(trio.ClosedResourceError):
            await b.receive_batch()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await b.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await b.receive_batch()
    a.send_frame(b"x" * 60)
    b.send_frame(b"x" * 60)
    assert a.stats["tx_dropped_peer_closed"] == 1
    assert b.stats["tx_dropped_closed"] == 1


async def test_cancelled_receive_loses_no_frame(autojump_clock):
    a, b = virtual_cable()
    a.send_frame(b"x" * 60)
    with trio.CancelScope() as scope:
        scope.cancel()
        await b.receive_batch()
    assert await b.receive_batch() == [b"x" * 60]


async def test_bad_impairments_rejected():
    with pytest.raises(ValueError, match="loss"):
        virtual_cable(loss=1.5)
    with pytest.raises(ValueError, match="latency"):
        virtual_cable(latency=-1)
    a, _ = virtual_cable()
    with pytest.raises(ValueError, match="duplicate"):
        a.duplicate = math.nan
    with pytest.raises(ValueError, match="latency"):
        a.latency = math.inf


async def test_real_clock():
    a, b = virtual_cable(latency=0.02)
    start = trio.current_time()
    a.send_frame(b"x" * 60)
    with trio.fail_after(5):
        assert await b.receive_batch() == [b"x" * 60]
    assert trio.current_time() - start >= 0.02
    b.latency = 0.0
    b.send_frame(b"y" * 60)
    with trio.fail_after(5):
        assert await a.receive_batch() == [b"y" * 60]
