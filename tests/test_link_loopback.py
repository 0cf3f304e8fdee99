import pytest
import trio
import trio.testing

from trionet.link import Link, LoopbackLink


def frames(n, size=60):
    return [i.to_bytes(4, "big") * (size // 4) for i in range(n)]


async def test_frames_come_back_in_order():
    link = LoopbackLink()
    sent = frames(10)
    for f in sent:
        link.send_frame(f)
    assert await link.receive_batch() == sent
    assert link.stats["tx_frames"] == 10
    assert link.stats["rx_frames"] == 10


async def test_class_attributes():
    link = LoopbackLink()
    assert isinstance(link, Link)
    assert link.checksum_offload is True
    assert link.needs_arp is False
    assert link.mtu == 65535
    assert LoopbackLink(mtu=1500).mtu == 1500


async def test_batch_sizes():
    link = LoopbackLink()
    sent = frames(100)
    for f in sent:
        link.send_frame(f)
    first = await link.receive_batch()
    second = await link.receive_batch()
    assert (len(first), len(second)) == (64, 36)
    assert first + second == sent
    for f in sent[:5]:
        link.send_frame(f)
    assert await link.receive_batch(max_frames=2) == sent[:2]
    assert await link.receive_batch(max_frames=10) == sent[2:5]
    with pytest.raises(ValueError):
        await link.receive_batch(max_frames=0)


async def test_waits_until_a_frame_is_sent():
    link = LoopbackLink()
    got = []

    async def reader():
        got.extend(await link.receive_batch())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        link.send_frame(b"x" * 60)
    assert got == [b"x" * 60]


async def test_over_capacity_is_dropped_and_counted():
    link = LoopbackLink(capacity=5)
    sent = frames(7)
    for f in sent:
        link.send_frame(f)
    assert link.stats["tx_dropped_full"] == 2
    assert await link.receive_batch() == sent[:5]


async def test_oversize_is_dropped_and_counted():
    link = LoopbackLink(mtu=100)
    link.send_frame(b"a" * 115)
    link.send_frame(b"b" * 114)
    assert link.stats["tx_dropped_oversize"] == 1
    assert await link.receive_batch() == [b"b" * 114]


async def test_sender_buffer_is_copied():
    link = LoopbackLink()
    buf = bytearray(b"abc" * 20)
    link.send_frame(buf)
    buf[0] = 0
    [frame] = await link.receive_batch()
    assert frame == b"abc" * 20 and type(frame) is bytes


async def test_closed_link_raises():
    link = LoopbackLink()
    result = []

    async def reader():
        with pytest.raises(trio.ClosedResourceError):
            await link.receive_batch()
        result.append("closed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await link.aclose()
    assert result == ["closed"]
    with pytest.raises(trio.ClosedResourceError):
        await link.receive_batch()
    link.send_frame(b"x" * 60)  # never raises
    assert link.stats["tx_dropped_closed"] == 1
    await link.aclose()  # idempotent


async def test_context_manager_closes():
    async with LoopbackLink() as link:
        link.send_frame(b"x" * 60)
    with pytest.raises(trio.ClosedResourceError):
        await link.receive_batch()


async def test_cancelled_receive_loses_no_frame():
    link = LoopbackLink()
    link.send_frame(b"x" * 60)
    with trio.CancelScope() as scope:
        scope.cancel()
        await link.receive_batch()
    assert scope.cancelled_caught
    assert await link.receive_batch() == [b"x" * 60]


async def test_busy_reader_does_not_starve_others():
    link = LoopbackLink()
    stop = trio.Event()

    async def busy():
        for _ in range(10_000):
            if stop.is_set():
                return
            link.send_frame(b"x" * 60)
            await link.receive_batch()  # a frame is always ready
        pytest.fail("receive_batch never let another task run")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(busy)
        for _ in range(3):
            await trio.sleep(0)
        stop.set()


async def test_independent_instances():
    a, b = LoopbackLink(), LoopbackLink()
    a.send_frame(b"a" * 60)
    b.send_frame(b"b" * 60)
    assert await a.receive_batch() == [b"a" * 60]
    assert await b.receive_batch() == [b"b" * 60]
    assert a.stats is not b.stats
