"""trionet.plot: the analysis of a capture checked against what is known
independently (the transfer's size, the cable's losses, the stacks' own
counters, the handshake each stack negotiated, the RFCs' rules), the drawing
and the command line."""

from __future__ import annotations

import io
import random
import struct
import subprocess
import sys
from collections import Counter
from ipaddress import IPv4Address

import pytest
import trio

import trionet
from trionet import plot
from trionet.plot import Endpoint, find_connection, read_trace, time_sequence
from trionet.wire import ETHERTYPE_ARP, ETHERTYPE_IPV4, PROTO_TCP, PROTO_UDP, IPv4Header
from trionet.wire import build_ethernet, build_ipv4, build_ipv4_plain
from trionet.wire.tcp import ACK, FIN, PSH, SYN, TcpHeader, TcpOptions, build_tcp

SIZE = 200_000
CLIENT = IPv4Address("10.0.0.1")
SERVER = IPv4Address("10.0.0.2")
M32 = 0xFFFFFFFF


# --- a real capture: a transfer between two stacks over a lossy cable -----------------------


async def transfer(size: int, *, loss: float, seed: int) -> dict:
    """``size`` bytes from a client (10.0.0.1) to a server (10.0.0.2:5000)
    over ``virtual_cable(latency=0.005, loss=loss, seed=seed)``, recorded at
    both ends of the cable. Returns the two captures, the client's
    ``stream.info`` at the end and the cable ends' counters."""
    a, b = trionet.virtual_cable(latency=0.005, loss=loss, seed=seed)
    at_client, at_server = io.BytesIO(), io.BytesIO()
    cap_a = trionet.Capture(a, at_client, clock=trio.current_time)
    cap_b = trionet.Capture(b, at_server, clock=trio.current_time)
    data = random.Random(seed).randbytes(size)
    got = bytearray()
    result = {}
    async with trionet.Stack(seed=11) as client, trionet.Stack(seed=12) as server:
        client.add_interface(cap_a, "10.0.0.1/24")
        server.add_interface(cap_b, "10.0.0.2/24")
        listener = (await server.open_tcp_listeners(5000))[0]

        async def serve():
            stream = await listener.accept()
            async with stream:
                async for chunk in stream:
                    got.extend(chunk)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            stream = await client.open_tcp_stream("10.0.0.2", 5000)
            async with stream:
                await stream.send_all(data)
                await stream.send_eof()
                async for _ in stream:
                    pass
                result["info"] = dict(stream.info)
                result["port"] = stream.local_address[1]
    assert bytes(got) == data
    result.update(client_pcap=at_client.getvalue(), server_pcap=at_server.getvalue(),
                  a=dict(a.stats), b=dict(b.stats))
    return result


def covered(segments) -> list[tuple[int, int]]:
    """The union of [start, end) ranges, merged (a plain reference)."""
    out: list[list[int]] = []
    for start, end in sorted((s.start, s.end) for s in segments):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [tuple(r) for r in out]


async def test_lossy_transfer_seen_from_the_sender(autojump_clock):
    run = await transfer(SIZE, loss=0.03, seed=5)
    assert run["a"]["tx_dropped_loss"] > 0  # the seed does lose client frames
    trace = read_trace(run["client_pcap"])
    # Every frame the client end saw is in the file: those sent (lost ones
    # too: the capture sits before the cable) and those received.
    assert trace.frames == run["a"]["tx_frames"] + run["a"]["tx_dropped_loss"] \
        + run["a"]["rx_frames"]
    assert set(trace.skipped) <= {"not_ipv4"}  # ARP only
    assert len(trace.connections) == 1
    conn = trace.connections[0]
    assert (conn.client, conn.server) == (Endpoint(CLIENT, run["port"]), Endpoint(SERVER, 5000))
    assert conn.bytes_reverse == 0 and conn.bytes_forward >= SIZE
    assert find_connection(trace) is conn
    assert find_connection(trace, 0) is conn and find_connection(trace, "0") is conn
    assert find_connection(trace, f"10.0.0.2:5000-10.0.0.1:{run['port']}") is conn

    series = time_sequence(conn)  # auto: the side that sent data
    assert (series.sender, series.receiver) == (conn.client, conn.server)
    assert series.isn_seen and series.origin == conn.packets[0].time
    syn = conn.packets[0]
    assert syn.flags == SYN and series.isn == syn.seq

    # RFC 9293 3.4: the SYN takes the ISN, so the data is exactly
    # ISN+1 .. ISN+SIZE: relative [1, SIZE + 1), every byte once.
    assert series.data_bytes == SIZE
    assert covered(series.segments) == [(1, SIZE + 1)]
    # The FIN takes the sequence number after the data; its ACK is one more:
    # the first data byte (1) + SIZE + 1 for the FIN.
    fins = [e for e in series.events if e.kind == "FIN" and e.from_sender]
    assert fins and {e.seq for e in fins} == {SIZE + 1}
    assert series.acks[-1].ack == max(a.ack for a in series.acks) == 1 + SIZE + 1
    assert [e.kind for e in series.events if e.kind.startswith("SYN")] == ["SYN", "SYN-ACK"]
    assert not [e for e in series.events if e.kind == "RST"]

    # Retransmissions: each at least partly overlaps data sent before it
    # (checked by brute force), and the rest never does.
    retrans = series.retransmissions
    assert retrans
    for i, seg in enumerate(series.segments):
        earlier = any(p.start < seg.end and seg.start < p.end for p in series.segments[:i])
        assert seg.retransmission == earlier, seg
    # At the sender nothing is new below the highest byte sent.
    assert not any(s.out_of_order for s in series.segments)
    # Whole segments are resent, so the bytes on the wire are the data plus
    # the retransmitted bytes; and the stack retransmitted at least as often
    # as data segments were seen resent (its counter includes SYN and FIN).
    assert series.sent_bytes == conn.bytes_forward == SIZE + series.retransmitted_bytes
    assert len(retrans) <= run["info"]["retransmits"]
    # Every data segment that the server's end never received (lost on the
    # cable) is sent again later, and that copy is marked.
    at_server = time_sequence(read_trace(run["server_pcap"]).connections[0], "forward")
    lost = Counter((s.start, s.end) for s in series.segments) \
        - Counter((s.start, s.end) for s in at_server.segments)
    assert lost
    for (start, end), times in lost.items():
        first = min(s.time for s in series.segments if (s.start, s.end) == (start, end))
        again = [r for r in retrans if r.time > first and r.start <= start and r.end >= end]
        assert len(again) >= times, (start, end)

    # RFC 7323 2.2: the receiver's windows are shifted by the scale it sent
    # in its SYN-ACK, the one the client stack applied; the SYN-ACK's own
    # window is not scaled.
    assert series.window_scale == run["info"]["snd_wscale"] > 0
    synack = next(p for p in conn.packets if p.flags == SYN | ACK)
    assert series.acks[0].window == synack.window <= 0xFFFF
    assert max(a.window for a in series.acks) > 0xFFFF  # only possible scaled
    # The window edge never falls below the ACK line, and (RFC 9293 3.8.6)
    # the sender never sends new data beyond the edge last offered to it: a
    # wrong scale would break one or the other.
    highest_ack, edge, k = 0, None, 0
    for seg in series.segments:
        while k < len(series.acks) and series.acks[k].time <= seg.time:
            highest_ack = max(highest_ack, series.acks[k].ack)
            edge = series.acks[k].window_edge
            assert edge >= highest_ack
            k += 1
        if not seg.retransmission:
            assert edge is not None and seg.end <= edge, (seg, edge)

    # RFC 2018: with losses the receiver sends SACK blocks; a block covers
    # data above the cumulative ACK it rides with (or, a D-SACK of RFC 2883,
    # data at or below it), never both, and only data that was sent.
    assert series.sacks
    ack_at = {a.time: a.ack for a in series.acks}
    for block in series.sacks:
        assert block.left < block.right <= SIZE + 1
        ack = ack_at[block.time]
        assert block.left >= ack or block.right <= ack, block

    # From the server's end: the same bytes, the losses show as segments
    # filling holes below the highest byte seen.
    assert at_server.data_bytes == SIZE
    assert at_server.window_scale == series.window_scale
    assert any(s.out_of_order for s in at_server.segments)


async def test_lossless_transfer_has_no_retransmissions(autojump_clock):
    run = await transfer(SIZE, loss=0.0, seed=6)
    series = time_sequence(read_trace(run["client_pcap"]).connections[0])
    assert series.data_bytes == series.sent_bytes == SIZE
    assert series.retransmissions == () and series.retransmitted_bytes == 0
    assert not any(s.out_of_order for s in series.segments)
    assert series.sacks == ()  # RFC 2018: nothing to SACK without a hole
    assert series.acks[-1].ack == SIZE + 2
    # Both ends saw the same segments.
    at_server = time_sequence(read_trace(run["server_pcap"]).connections[0])
    assert [(s.start, s.end) for s in at_server.segments] == \
        [(s.start, s.end) for s in series.segments]
    # The reverse direction carried no data.
    reverse = time_sequence(read_trace(run["client_pcap"]).connections[0], "reverse")
    assert reverse.segments == () and reverse.data_bytes == 0
    assert reverse.sender == Endpoint(SERVER, 5000)


# --- made-up captures: the rules one at a time ------------------------------------------------

MAC_C = bytes.fromhex("020000000001")
MAC_S = bytes.fromhex("020000000002")


def write_pcap(records, *, nanoseconds: bool = False, big_endian: bool = False,
               linktype: int = 1) -> bytes:
    """A classic pcap file (LINKTYPE_ETHERNET, or ``linktype``), written
    here independently of trionet.link.capture."""
    order = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for t, frame in records:
        seconds = int(t)
        fraction = round((t - seconds) * (1e9 if nanoseconds else 1e6))
        out.append(struct.pack(order + "IIII", seconds, fraction, len(frame), len(frame)))
        out.append(frame)
    return b"".join(out)


def tcp_frame(src, sport, dst, dport, seq, ack, flags, *, window=1000, data=b"",
              options=None, bad_checksum=False) -> bytes:
    header = TcpHeader(sport, dport, seq & M32, ack & M32, flags, window,
                       options=options or TcpOptions())
    segment = build_tcp(header, data, src, dst)
    if bad_checksum:
        segment = segment[:16] + bytes([segment[16] ^ 0xFF]) + segment[17:]
    ip = build_ipv4_plain(src, dst, PROTO_TCP, 1, segment)
    mac_src, mac_dst = (MAC_C, MAC_S) if src == CLIENT else (MAC_S, MAC_C)
    return build_ethernet(mac_dst, mac_src, ETHERTYPE_IPV4, ip)


def c2s(seq, ack, flags, **kw):
    return tcp_frame(CLIENT, 40000, SERVER, 80, seq, ack, flags, **kw)


def s2c(seq, ack, flags, **kw):
    return tcp_frame(SERVER, 80, CLIENT, 40000, seq, ack, flags, **kw)


def handshake(isn_c, isn_s, *, c_scale=None, s_scale=None, t=0.0):
    return [
        (t, c2s(isn_c, 0, SYN, window=1000, options=TcpOptions(mss=1000, window_scale=c_scale))),
        (t + 0.01, s2c(isn_s, isn_c + 1, SYN | ACK, window=2000,
                       options=TcpOptions(mss=1000, window_scale=s_scale))),
        (t + 0.02, c2s(isn_c + 1, isn_s + 1, ACK)),
    ]


def test_sequence_numbers_unwrap_across_2_to_the_32():
    """RFC 9293 3.4: sequence numbers count modulo 2**32; relative to the
    ISN they keep growing through the wrap."""
    isn_c, isn_s = M32 - 1500, 7
    records = handshake(isn_c, isn_s)
    seq = isn_c + 1
    for i in range(3):
        records.append((0.03 + i * 0.001, c2s(seq + 1000 * i, isn_s + 1, ACK | PSH,
                                               data=bytes(1000))))
    records.append((0.05, s2c(isn_s + 1, seq + 1000, ACK)))
    # The second segment again, straddling the wrap, then the FIN.
    records.append((0.3, c2s(seq + 1000, isn_s + 1, ACK, data=bytes(1000))))
    records.append((0.31, c2s(seq + 3000, isn_s + 1, FIN | ACK)))
    records.append((0.35, s2c(isn_s + 1, seq + 3001, FIN | ACK)))
    series = time_sequence(find_connection(read_trace(write_pcap(records))))
    assert [(s.start, s.end, s.retransmission) for s in series.segments] == [
        (1, 1001, False), (1001, 2001, False), (2001, 3001, False), (1001, 2001, True)]
    assert [a.ack for a in series.acks] == [1, 1001, 3002]
    assert [(e.kind, e.seq, e.from_sender) for e in series.events] == [
        ("SYN", 0, True), ("SYN-ACK", 1, False), ("FIN", 3001, True), ("FIN", 3002, False)]
    assert series.data_bytes == 3000 and series.retransmitted_bytes == 1000
    assert series.events[-1].time == pytest.approx(0.35)


def test_a_tun_capture_of_bare_ip_packets_reads_as_the_ethernet_one():
    """A TUN's capture is LINKTYPE_RAW (101): the same packets without
    their Ethernet headers give the same connection, either byte order."""
    records = handshake(1000, 5000)
    records.append((0.03, c2s(1001, 5001, ACK | PSH, data=bytes(500))))
    records.append((0.04, s2c(5001, 1501, ACK)))
    records.append((0.05, bytes(28)))  # version nibble 0: not IPv4 (kept whole below)
    ethernet = read_trace(write_pcap(records))
    for big_endian in (False, True):
        raw = read_trace(write_pcap([(t, frame[14:] if len(frame) > 28 else frame)
                                     for t, frame in records], linktype=101,
                                    big_endian=big_endian))
        assert [c.packets for c in raw.connections] == \
            [c.packets for c in ethernet.connections]
        assert raw.skipped["not_ipv4"] == 1
    series = time_sequence(find_connection(raw))
    assert [(s.start, s.end) for s in series.segments] == [(1, 501)]


def test_window_scale_from_the_handshake():
    """RFC 7323 2.2-2.3: the receiver's windows are shifted by the scale in
    its own SYN, only when both SYNs carry the option, never in a SYN, and
    by at most 14."""
    def last_acks(c_scale, s_scale):
        records = handshake(1000, 5000, c_scale=c_scale, s_scale=s_scale)
        records.append((0.03, c2s(1001, 5001, ACK, data=bytes(100))))
        records.append((0.04, s2c(5001, 1101, ACK, window=100)))
        series = time_sequence(find_connection(read_trace(write_pcap(records))), "forward")
        return series.window_scale, [(a.ack, a.window, a.window_edge) for a in series.acks]

    # The SYN-ACK's window (2000) is taken as it is; later ones << 5.
    assert last_acks(2, 5) == (5, [(1, 2000, 2001), (101, 3200, 3301)])
    assert last_acks(None, 5) == (0, [(1, 2000, 2001), (101, 100, 201)])
    assert last_acks(2, None) == (0, [(1, 2000, 2001), (101, 100, 201)])
    assert last_acks(2, 20)[0] == 14


def test_without_the_handshake_in_the_capture():
    """A capture that starts mid-connection: relative to the first sequence
    number seen, window scale unknown (windows taken as they are)."""
    records = [(1.0, c2s(500, 9000, ACK, data=bytes(100))),
               (1.1, s2c(9000, 600, ACK, window=50)),
               (1.2, c2s(600, 9000, ACK, data=bytes(100)))]
    series = time_sequence(find_connection(read_trace(write_pcap(records))))
    assert not series.isn_seen and series.window_scale is None
    assert [(s.time, s.start, s.end) for s in series.segments] == [
        (0.0, 0, 100), (pytest.approx(0.2), 100, 200)]
    assert [(a.ack, a.window_edge) for a in series.acks] == [(100, 150)]


def test_partial_overlap_is_a_retransmission_a_filled_hole_is_not():
    records = handshake(0, 0)
    records += [
        (0.1, c2s(1, 1, ACK, data=bytes(100))),      # [1, 101)
        (0.1, c2s(201, 1, ACK, data=bytes(100))),    # [201, 301): [101, 201) missing here
        (0.2, c2s(51, 1, ACK, data=bytes(100))),     # [51, 151): half sent before
        (0.2, c2s(151, 1, ACK, data=bytes(50))),     # [151, 201): new, below 301
        (0.3, c2s(301, 1, ACK, data=bytes(10))),     # new, at the top
    ]
    series = time_sequence(find_connection(read_trace(write_pcap(records))))
    assert [(s.start, s.retransmission, s.out_of_order) for s in series.segments] == [
        (1, False, False), (201, False, False), (51, True, False), (151, False, True),
        (301, False, False)]
    assert series.data_bytes == 310 and series.sent_bytes == 360


def test_data_on_a_syn_starts_after_it():
    """RFC 9293 3.4: the SYN takes the ISN, so data it carries (TCP Fast
    Open, RFC 7413) starts at ISN + 1; a FIN comes after the data."""
    records = [(0.0, c2s(500, 0, SYN, data=bytes(30))),
               (0.01, s2c(900, 531, SYN | ACK)),
               (0.02, c2s(531, 901, FIN | ACK, data=bytes(20)))]
    series = time_sequence(find_connection(read_trace(write_pcap(records))))
    assert [(s.start, s.end, s.retransmission) for s in series.segments] == [
        (1, 31, False), (31, 51, False)]
    assert [(e.kind, e.seq) for e in series.events if e.from_sender] == [("SYN", 0), ("FIN", 51)]
    assert series.acks[0].ack == 31


def test_sack_blocks_are_relative_to_the_senders_isn():
    """RFC 2018 3: a SACK block is [left edge, right edge) of data held."""
    isn_c = M32 - 100
    records = handshake(isn_c, 77)
    records.append((0.1, s2c(78, isn_c + 1, ACK,
                             options=TcpOptions(sack_blocks=(
                                 ((isn_c + 201) & M32, (isn_c + 301) & M32),
                                 ((isn_c + 401) & M32, (isn_c + 501) & M32))))))
    series = time_sequence(find_connection(read_trace(write_pcap(records))))
    assert [(b.left, b.right) for b in series.sacks] == [(201, 301), (401, 501)]
    assert series.sacks[0].time == pytest.approx(0.1)


def test_frames_that_do_not_decode_are_skipped_and_counted():
    arp = build_ethernet(b"\xff" * 6, MAC_C, ETHERTYPE_ARP, bytes(28))
    udp = build_ethernet(MAC_S, MAC_C, ETHERTYPE_IPV4,
                         build_ipv4_plain(CLIENT, SERVER, PROTO_UDP, 2, bytes(12)))
    fragment = build_ethernet(MAC_S, MAC_C, ETHERTYPE_IPV4, build_ipv4(
        IPv4Header(CLIENT, SERVER, PROTO_TCP, more_fragments=True), bytes(24)))
    good = handshake(10, 20)
    short_tcp = c2s(11, 21, ACK)[:14 + 20 + 10]  # IPv4 length says more: truncated
    bad = c2s(11, 21, ACK, data=b"x", bad_checksum=True)
    records = good + [(0.1, arp), (0.1, udp), (0.1, fragment), (0.1, b"\x02"),
                      (0.1, short_tcp), (0.2, bad)]
    data = write_pcap(records)
    trace = read_trace(data)
    assert trace.frames == 9
    assert trace.skipped == {"not_ipv4": 1, "not_tcp": 1, "ipv4.fragment": 1,
                             "ethernet.truncated": 1, "ipv4.truncated": 1}
    assert len(trace.connections[0].packets) == 4  # checksums not checked by default
    checked = read_trace(data, verify_checksums=True)
    assert checked.skipped["tcp.bad_checksum"] == 1
    assert len(checked.connections[0].packets) == 3
    # A last record cut short (a capture killed while writing) is counted too.
    cut = read_trace(data[:-5])
    assert cut.frames == 8 and cut.skipped["pcap.truncated_record"] == 1
    # Either byte order, micro- or nanosecond stamps.
    other = read_trace(write_pcap(good, nanoseconds=True, big_endian=True))
    assert [p.time for p in other.connections[0].packets] == pytest.approx([0.0, 0.01, 0.02])


def test_connections_are_found_and_chosen():
    records = handshake(100, 200)
    records.append((0.1, c2s(101, 201, ACK, data=bytes(10))))
    other = [(0.2, tcp_frame(CLIENT, 40001, SERVER, 80, 7, 0, SYN)),
             (0.3, tcp_frame(SERVER, 80, CLIENT, 40001, 9, 8, SYN | ACK)),
             (0.4, tcp_frame(SERVER, 80, CLIENT, 40001, 10, 8, ACK, data=bytes(500)))]
    trace = read_trace(write_pcap(records + other))
    first, second = trace.connections
    assert (first.label, second.label) == ("10.0.0.1:40000-10.0.0.2:80",
                                           "10.0.0.1:40001-10.0.0.2:80")
    assert (second.packets_forward, second.packets_reverse) == (1, 2)
    assert (second.bytes_forward, second.bytes_reverse) == (0, 500)
    assert find_connection(trace) is second  # the most data
    assert find_connection(trace, 0) is first
    assert find_connection(trace, "10.0.0.2:80-10.0.0.1:40001") is second
    assert time_sequence(second).sender == Endpoint(SERVER, 80)  # auto: the one sending
    assert time_sequence(second, "forward").sender == Endpoint(CLIENT, 40001)
    with pytest.raises(LookupError, match="no connection 2"):
        find_connection(trace, 2)
    with pytest.raises(LookupError, match="no connection 10.0.0.1:1-10.0.0.2:80"):
        find_connection(trace, "10.0.0.1:1-10.0.0.2:80")
    with pytest.raises(ValueError, match="SRC:PORT-DST:PORT"):
        find_connection(trace, "first")
    with pytest.raises(ValueError, match="not ADDRESS:PORT"):
        find_connection(trace, "10.0.0.1-10.0.0.2:80")
    with pytest.raises(ValueError, match="direction"):
        time_sequence(first, "sideways")
    with pytest.raises(LookupError, match="no TCP connection"):
        find_connection(read_trace(write_pcap([])))


def test_a_4_tuple_used_again_is_a_new_connection():
    """RFC 9293 3.4.1: after a close, a SYN with a new ISN on the same
    4-tuple starts a new connection."""
    records = handshake(100, 200)
    records += [(0.1, c2s(101, 201, FIN | ACK)), (0.11, s2c(201, 102, FIN | ACK)),
                (0.12, c2s(102, 202, ACK))]
    records += handshake(90000, 300, t=5.0)
    records.append((5.1, c2s(90001, 301, ACK, data=bytes(10))))
    trace = read_trace(write_pcap(records))
    assert [len(c.packets) for c in trace.connections] == [6, 4]
    later = trace.connections[1]
    assert time_sequence(later).isn == 90000 and time_sequence(later).origin == 5.0
    with pytest.raises(LookupError, match="give an index, one of 0, 1"):
        find_connection(trace, "10.0.0.1:40000-10.0.0.2:80")


def test_start_and_end_keep_a_time_range():
    records = handshake(0, 0)
    records += [(1.0 + i, c2s(1 + 100 * i, 1, ACK, data=bytes(100))) for i in range(5)]
    records.append((1.5, c2s(1, 1, ACK, data=bytes(100))))  # a retransmission, at 1.5
    conn = find_connection(read_trace(write_pcap(sorted(records))))
    series = time_sequence(conn, start=1.4, end=3.0)
    # Still a retransmission: the segment it repeats was read, though out of range.
    assert [(s.time, s.start, s.retransmission) for s in series.segments] == [
        (1.5, 1, True), (2.0, 101, False), (3.0, 201, False)]
    assert series.data_bytes == 300 and series.events == ()
    with pytest.raises(ValueError, match="before start"):
        time_sequence(conn, start=2.0, end=1.0)


def test_the_module_imports_and_analyses_without_matplotlib(tmp_path):
    path = tmp_path / "c.pcap"
    path.write_bytes(write_pcap(handshake(1, 2)))
    done = subprocess.run([sys.executable, "-c", (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import trionet.plot as p\n"
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('trionet.')}))\n"
        f"t = p.read_trace({str(path)!r})\n"
        "print(len(t.connections), p.time_sequence(t.connections[0]).acks[0].ack)\n"
        "try:\n"
        "    p.make_figure(p.time_sequence(t.connections[0]))\n"
        "except p.MatplotlibMissing as exc:\n"
        "    print(exc)\n")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # A tool on the wire codecs and the capture reader: no stack layer above
    # the links is loaded (trionet.validate comes with the links).
    assert lines[0] == "['link', 'plot', 'validate', 'wire']"
    assert lines[1] == "1 1"
    assert "matplotlib" in lines[2] and "pip install 'trionet[plot]'" in lines[2]


# --- drawing -----------------------------------------------------------------------------


async def test_draws_a_png_and_an_svg(tmp_path, autojump_clock):
    pytest.importorskip("matplotlib")
    run = await transfer(SIZE, loss=0.03, seed=5)
    series = time_sequence(read_trace(run["client_pcap"]).connections[0])
    png = tmp_path / "graph.png"
    plot.draw(series, png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert (width, height) == (1440, 840)  # 12 x 7 inches at 120 dpi
    assert 20_000 < len(data) < 2_000_000
    svg = tmp_path / "graph.svg"
    plot.draw(series, svg)
    assert b"<svg" in svg.read_bytes()[:2000]
    # What the graph holds: a legend entry for each kind of mark, the
    # retransmissions counted, the 4-tuple in the title.
    ax = plot.make_figure(series).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"retransmission ({len(series.retransmissions)})" in labels
    assert "ACK" in labels and "SACK block" in labels and "data segment" in labels
    assert any(label.startswith("receive window edge") for label in labels)
    assert {"SYN (sender)", "SYN-ACK (receiver)", "FIN (sender)"} <= set(labels)
    assert f"10.0.0.1:{run['port']} \u2192 10.0.0.2:5000" in ax.get_title()
    with pytest.raises(ValueError, match=".png or .svg"):
        plot.draw(series, tmp_path / "graph.jpg")


# --- the command line ---------------------------------------------------------------------


def cli(*args, matplotlib=True):
    code = "import runpy, sys\n"
    if not matplotlib:
        code += "sys.modules['matplotlib'] = None\n"
    code += ("sys.argv = ['trionet.plot', *sys.argv[1:]]\n"
             "runpy.run_module('trionet.plot', run_name='__main__', alter_sys=True)\n")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)],
                          capture_output=True, text=True, timeout=120)


async def test_command_line(tmp_path, autojump_clock):
    run = await transfer(50_000, loss=0.03, seed=5)
    pcap = tmp_path / "lossy.pcap"
    pcap.write_bytes(run["client_pcap"])
    label = f"10.0.0.1:{run['port']}-10.0.0.2:5000"

    done = cli(pcap, "--list")
    assert done.returncode == 0, done.stderr
    row = done.stdout.splitlines()[1].split()
    assert row[:3] == ["0", f"10.0.0.1:{run['port']}", "10.0.0.2:5000"]
    assert "1 TCP connections" in done.stdout

    def error(*args, **kw):
        done = cli(*args, **kw)
        assert done.returncode == 2, (done.stdout, done.stderr)
        return done.stderr

    assert "no such file" in error(tmp_path / "missing.pcap", "-o", tmp_path / "g.png")
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture of anything")
    assert "not a pcap file" in error(junk, "--list")
    arp_only = tmp_path / "arp.pcap"
    arp_only.write_bytes(write_pcap(
        [(0.0, build_ethernet(b"\xff" * 6, MAC_C, ETHERTYPE_ARP, bytes(28)))]))
    assert "no TCP connection" in error(arp_only, "--list")
    assert "no connection 3" in error(pcap, "--connection", "3", "-o", tmp_path / "g.png")
    assert "no connection 10.0.0.9:1-10.0.0.2:5000" in error(
        pcap, "--connection", "10.0.0.9:1-10.0.0.2:5000", "-o", tmp_path / "g.png")
    assert ".png or .svg" in error(pcap, "-o", tmp_path / "g.gif")
    assert "-o graph.png" in error(pcap)
    message = error(pcap, "-o", tmp_path / "g.png", matplotlib=False)
    assert "matplotlib" in message and "pip install 'trionet[plot]'" in message
    # --list needs no matplotlib.
    assert cli(pcap, "--list", matplotlib=False).returncode == 0

    pytest.importorskip("matplotlib")
    out = tmp_path / "g.png"
    done = subprocess.run([sys.executable, "-m", "trionet.plot", str(pcap), "--connection", label,
                           "--direction", "forward", "--start", "0", "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "50,000 bytes" in done.stdout
