"""The virtio-net header (linux/virtio_net.h) before each frame of a TAP or
TUN opened with IFF_VNET_HDR: what to write for a frame whose checksums
the stack left to the link, and the checks on a frame the kernel did not
vouch for. One implementation, specialised by ``_specialise`` for the link
header in front of the IP packet: 14 bytes on a TAP (``ETHERNET``), none
on a TUN (``BARE_IP``); the offsets are bound once, so each variant runs
the same code a hand-written one would."""

import struct
from typing import Callable, NamedTuple

from ..wire.checksum import internet_checksum, ones_complement_sum

# linux/virtio_net.h: struct virtio_net_hdr (flags, gso_type, hdr_len,
# gso_size, csum_start, csum_offset); legacy layout, native byte order.
VNET = struct.Struct("=BBHHHH")
VNET_LEN = VNET.size  # 10
VNET_PLAIN = bytes(VNET_LEN)
F_NEEDS_CSUM = 1
F_DATA_VALID = 2
GSO_TCPV4 = 1
GSO_TCPV6 = 4

# Where a transport's checksum field sits (RFC 9293 3.1, RFC 768).
_CSUM_OFFSET = {6: 16, 17: 6}


class Vnet(NamedTuple):
    """The header code for one link-header length."""

    #: (frame, gso_size) -> the iovec to write, or None if it cannot go.
    offload_iov: Callable
    #: frame -> False if a checksum the kernel did not vouch for is wrong.
    checksums_ok: Callable


def _specialise(link_header: int) -> Vnet:
    """``offload_iov`` and ``checksums_ok`` for frames whose IP packet
    starts ``link_header`` bytes in (14: Ethernet, checked for its
    EtherType; 0: a bare packet, dispatched on its version nibble)."""
    ethernet = link_header != 0
    ip = link_header
    # IPv4 header fields (RFC 791 3.1), from the frame's start.
    v4_total, v4_total2, v4_frag, v4_frag2 = ip + 2, ip + 3, ip + 6, ip + 7
    v4_proto, v4_csum, v4_csum2 = ip + 9, ip + 10, ip + 11
    v4_src, v4_dst, v4_end = ip + 12, ip + 16, ip + 20
    # IPv6 (RFC 8200 3): payload length, next header, addresses; transport.
    v6_length, v6_length2, v6_next = ip + 4, ip + 5, ip + 6
    v6_src, v6_dst, v6_l4 = ip + 8, ip + 24, ip + 40

    def offload_iov(frame, gso_size: int):
        """What to write for ``frame`` on an offload device: [vnet header,
        frame] or [vnet header, fixed headers, rest of frame]; None for a
        frame that cannot go (GSO asked for something that is not TCP).

        The stack leaves checksums to an offload link (``checksum_offload``):
        here the IPv4 header checksum is computed (the kernel checks it on
        every datagram) and a TCP or UDP checksum field gets the
        pseudo-header sum, with NEEDS_CSUM telling the kernel to add the
        rest (RFC 9293 3.1)."""
        n = len(frame)
        if ethernet:
            if frame[12:14] == b"\x86\xdd":
                return offload_iov6(frame, gso_size)
            if n < v4_end or frame[12] != 0x08 or frame[13] != 0x00 or frame[ip] >> 4 != 4:
                return None if gso_size else [VNET_PLAIN, frame]
        elif n < v4_end or frame[0] >> 4 != 4:
            if n and frame[0] >> 4 == 6:
                return offload_iov6(frame, gso_size)
            return None if gso_size else [VNET_PLAIN, frame]
        ihl = (frame[ip] & 0x0F) << 2
        l4 = ip + ihl
        total = (frame[v4_total] << 8) | frame[v4_total2]
        proto = frame[v4_proto]
        fragment = ((frame[v4_frag] & 0x3F) << 8) | frame[v4_frag2]  # MF and the offset
        off = _CSUM_OFFSET.get(proto, 0)
        if ihl < 20 or l4 > n or total < ihl or ip + total > n:
            return None if gso_size else [VNET_PLAIN, frame]
        if off and not fragment and total - ihl >= off + 2:
            end = l4 + off + 2
            head = bytearray(frame[:end])
            head[v4_csum] = head[v4_csum2] = 0
            ip_csum = internet_checksum(head[ip:l4])
            head[v4_csum] = ip_csum >> 8
            head[v4_csum2] = ip_csum & 0xFF
            partial = (int.from_bytes(head[v4_src:v4_dst], "big")
                       + int.from_bytes(head[v4_dst:v4_end], "big") + proto + total - ihl) % 0xFFFF
            head[end - 2] = partial >> 8
            head[end - 1] = partial & 0xFF
            if gso_size:
                if proto != 6:
                    return None
                hdr_len = l4 + ((frame[l4 + 12] >> 4) << 2)
                vnet = VNET.pack(F_NEEDS_CSUM, GSO_TCPV4, hdr_len, gso_size, l4, off)
            else:
                vnet = VNET.pack(F_NEEDS_CSUM, 0, 0, 0, l4, off)
            return [vnet, head, memoryview(frame)[end:]]
        if gso_size:
            return None
        # ICMP, fragments, others: their own checksums are complete; the IPv4
        # header's is filled in.
        head = bytearray(frame[:l4])
        head[v4_csum] = head[v4_csum2] = 0
        ip_csum = internet_checksum(head[ip:l4])
        head[v4_csum] = ip_csum >> 8
        head[v4_csum2] = ip_csum & 0xFF
        return [VNET_PLAIN, head, memoryview(frame)[l4:]]

    def offload_iov6(frame, gso_size: int):
        """``offload_iov`` for an IPv6 frame: a TCP or UDP header right
        after the fixed header gets the pseudo-header sum (RFC 8200 8.1)
        and NEEDS_CSUM (a TCP one also GSO, TCPV6, with ``gso_size``);
        anything else (ICMPv6, extension headers, fragments) has its
        checksum complete already."""
        n = len(frame)
        if n < v6_l4:
            return None if gso_size else [VNET_PLAIN, frame]
        proto = frame[v6_next]
        off = _CSUM_OFFSET.get(proto, 0)
        length = (frame[v6_length] << 8) | frame[v6_length2]
        if not off or length < off + 2 or v6_l4 + length > n or (gso_size and proto != 6):
            return None if gso_size else [VNET_PLAIN, frame]
        end = v6_l4 + off + 2
        head = bytearray(frame[:end])
        partial = (int.from_bytes(head[v6_src:v6_dst], "big")
                   + int.from_bytes(head[v6_dst:v6_l4], "big") + proto + length) % 0xFFFF
        head[end - 2] = partial >> 8
        head[end - 1] = partial & 0xFF
        if gso_size:
            hdr_len = v6_l4 + ((frame[v6_l4 + 12] >> 4) << 2)
            vnet = VNET.pack(F_NEEDS_CSUM, GSO_TCPV6, hdr_len, gso_size, v6_l4, off)
        else:
            vnet = VNET.pack(F_NEEDS_CSUM, 0, 0, 0, v6_l4, off)
        return [vnet, head, memoryview(frame)[end:]]

    def checksums_ok(frame) -> bool:
        """For a frame the kernel did not vouch for (no NEEDS_CSUM, no
        DATA_VALID): False if its IPv4 header checksum or (unfragmented)
        TCP, UDP or ICMP checksum is wrong, or an IPv6 packet's TCP, UDP or
        ICMPv6 checksum. Anything else passes: the stack judges it (it does
        not verify checksums on an offload link)."""
        n = len(frame)
        if ethernet:
            if frame[12:14] == b"\x86\xdd":
                return checksums6_ok(frame)
            if n < v4_end or frame[12] != 0x08 or frame[13] != 0x00:
                return True
        elif n < v4_end or frame[0] >> 4 != 4:
            return checksums6_ok(frame) if n and frame[0] >> 4 == 6 else True
        ihl = (frame[ip] & 0x0F) << 2
        l4 = ip + ihl
        if ihl < 20 or l4 > n:
            return True
        mv = memoryview(frame)
        if ones_complement_sum(mv[ip:l4]) != 0xFFFF:
            return False  # RFC 1122 3.2.1.2
        total = (frame[v4_total] << 8) | frame[v4_total2]
        if total < ihl or ip + total > n or ((frame[v4_frag] & 0x3F) << 8) | frame[v4_frag2]:
            return True  # malformed (the stack drops it) or a fragment
        proto = frame[v4_proto]
        body = mv[l4:ip + total]
        if proto == 1:
            return ones_complement_sum(body) == 0xFFFF
        if proto == 6 or (proto == 17 and len(body) >= 8 and (body[6] or body[7])):
            pseudo = (int.from_bytes(mv[v4_src:v4_dst], "big")
                      + int.from_bytes(mv[v4_dst:v4_end], "big") + proto + len(body))
            return ones_complement_sum(body, pseudo) == 0xFFFF
        return True

    def checksums6_ok(frame) -> bool:
        """``checksums_ok`` for IPv6: the TCP, UDP or ICMPv6 checksum (with
        the pseudo-header, RFC 8200 8.1) of a packet without extension
        headers."""
        n = len(frame)
        if n < v6_l4:
            return True
        proto = frame[v6_next]
        length = (frame[v6_length] << 8) | frame[v6_length2]
        if proto not in (6, 17, 58) or v6_l4 + length > n:
            return True  # extension headers, fragments, malformed: the stack judges
        mv = memoryview(frame)
        pseudo = (int.from_bytes(mv[v6_src:v6_dst], "big")
                  + int.from_bytes(mv[v6_dst:v6_l4], "big") + proto + length)
        return ones_complement_sum(mv[v6_l4:v6_l4 + length], pseudo % 0xFFFF) == 0xFFFF

    return Vnet(offload_iov, checksums_ok)


#: For a TAP's Ethernet frames.
ETHERNET = _specialise(14)
#: For a TUN's bare IPv4 and IPv6 packets.
BARE_IP = _specialise(0)
