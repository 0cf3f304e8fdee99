import io
import shutil
import struct
import time

import pytest
import trio

from trionet.link import Capture, Link, LoopbackLink, read_pcap, virtual_cable


def arp_request(i: int) -> bytes:
    """A broadcast ARP request (RFC 826), padded to the 60-byte minimum."""
    sender_mac = bytes.fromhex("020000000001")
    arp = (b"\x00\x01\x08\x00\x06\x04\x00\x01" + sender_mac + bytes([10, 0, 0, 1])
           + bytes(6) + bytes([10, 0, 0, i]))
    return b"\xff" * 6 + sender_mac + b"\x08\x06" + arp + bytes(18)


async def test_records_sent_and_received_frames(tmp_path, autojump_clock):
    path = tmp_path / "cable.pcap"
    a, b = virtual_cable()
    cap = Capture(a, path)
    assert isinstance(cap, Link)
    before = time.time()
    out = [arp_request(i) for i in range(1, 4)]
    back = [arp_request(i) for i in range(10, 12)]
    for f in out:
        cap.send_frame(f)
    assert await b.receive_batch() == out
    for f in back:
        b.send_frame(f)
    assert await cap.receive_batch() == back
    # Flushed already: readable while the capture is open.
    records = read_pcap(path)
    assert [frame for _, frame in records] == out + back
    assert all(before - 1 <= ts <= time.time() + 1 for ts, _ in records)
    await cap.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await a.receive_batch()  # the inner link was closed too
    data = path.read_bytes()
    assert struct.unpack_from("<IHHiIII", data) == (0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    assert read_pcap(data) == records


async def test_delegates_attributes_and_stats(autojump_clock):
    a, _ = virtual_cable(mtu=9000, corrupt=0.5)
    cap = Capture(a, io.BytesIO())
    assert cap.mtu == 9000
    assert cap.checksum_offload is False
    assert cap.needs_arp is True
    assert cap.inner is a
    cap.send_frame(arp_request(1))
    assert cap.stats is a.stats and cap.stats["tx_frames"] == 1
    loop = Capture(LoopbackLink(), io.BytesIO())
    assert loop.needs_arp is False and loop.checksum_offload is True


async def test_file_object_is_left_open(autojump_clock):
    buf = io.BytesIO()
    cap = Capture(LoopbackLink(), buf, snaplen=20)
    frame = arp_request(5)
    cap.send_frame(frame)
    assert await cap.receive_batch() == [frame]  # the frame itself is intact
    await cap.aclose()
    assert not buf.closed
    records = read_pcap(buf.getvalue())
    assert [f for _, f in records] == [frame[:20], frame[:20]]
    # The record keeps the original length.
    assert struct.unpack_from("<I", buf.getvalue(), 24 + 12)[0] == len(frame)


async def test_read_pcap_rejects_garbage():
    with pytest.raises(ValueError, match="pcap"):
        read_pcap(b"not a pcap file at all, honest")


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
async def test_tcpdump_reads_the_file(tmp_path):
    path = tmp_path / "loop.pcap"
    async with Capture(LoopbackLink(), str(path)) as cap:
        for i in range(1, 4):
            cap.send_frame(arp_request(i))
        await cap.receive_batch()
    result = await trio.run_process(["tcpdump", "-r", str(path), "-nn"],
                                    capture_stdout=True, capture_stderr=True)
    assert result.returncode == 0
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 6
    assert all("ARP, Request who-has 10.0.0." in line for line in lines), lines
