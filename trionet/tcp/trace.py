"""Every TCP segment sent and received, as a tcpdump-like DEBUG line on the
logger ``trionet.tcp.segments`` (time, stack, 4-tuple, flags, sequence and
acknowledgment numbers relative to the connection's ISNs, window, options,
length), next to the state transitions ``trionet.tcp`` logs:

    0.010400 server in  10.0.0.1.40001 > 10.0.0.2.80: Flags [S], seq 0, win 65535,
        options [mss 1460,sackOK,TS val 10 ecr 0,wscale 7], length 0

Turn it on with ``logging.getLogger("trionet.tcp.segments").setLevel(logging.DEBUG)``
(and a handler); it costs nothing while off.
"""

from __future__ import annotations

import logging

import trio

from ..wire.tcp import TcpHeader

log = logging.getLogger("trionet.tcp.segments")
_DEBUG = logging.DEBUG
_M32 = 0xFFFFFFFF


def enabled() -> bool:
    return log.isEnabledFor(_DEBUG)


def _options(header: TcpHeader) -> str:
    opts = header.options
    parts = []
    if opts.mss is not None:
        parts.append(f"mss {opts.mss}")
    if opts.sack_permitted:
        parts.append("sackOK")
    if opts.timestamps is not None:
        parts.append(f"TS val {opts.timestamps[0]} ecr {opts.timestamps[1]}")
    if opts.window_scale is not None:
        parts.append(f"wscale {opts.window_scale}")
    if opts.sack_blocks:
        parts.append("sack " + " ".join(f"{left}:{right}" for left, right in opts.sack_blocks))
    return f", options [{','.join(parts)}]" if parts else ""


def log_segment(stack_name: str | None, direction: str, src, dst, header: TcpHeader,
                length: int, seq_base: int = 0, ack_base: int = 0) -> None:
    """One line for a segment going ``direction`` ("in"/"out"); sequence
    numbers relative to ``seq_base`` (the sender's ISN) and ``ack_base``
    (the receiver's) when known, else absolute (bases 0). A SYN's
    sequence number is its sender's ISN: shown as 0."""
    if header.flags & 0x02:
        seq_base = header.seq
    seq = (header.seq - seq_base) & _M32
    text = f"seq {seq}:{(seq + length) & _M32}" if length else f"seq {seq}"
    if header.flags & 0x10:
        text += f", ack {(header.ack - ack_base) & _M32}"
    log.debug("%.6f %s %-3s %s.%d > %s.%d: Flags [%s], %s, win %d%s, length %d",
              trio.current_time(), stack_name or "-", direction, src, header.src_port, dst,
              header.dst_port, header.flag_names(), text, header.window,
              _options(header), length)
