"""A transparent proxy on a TUN device, in the tun2socks style: every TCP
flow and UDP exchange that the kernel routes into the TUN is relayed to its
original destination with the kernel's own sockets.

    sudo scripts/setup_tap.sh tun0 10.0.0.2/24 --tun --user $USER
    python examples/tunproxy.py --tun tun0 --address 10.0.0.1/24
    # then route the clients' traffic into tun0

The proxy's own kernel connections must not be routed back into the TUN, or
a flow would loop: move the TUN into the clients' network namespace (``ip
link set tun0 netns CLIENTS``; its fd keeps working), as
tests/test_kernel_tunproxy.py does, or route only the clients' traffic into
it (policy routing, ``ip rule ... lookup``).

trionet runs on the TUN with a TCP and a UDP forwarder on its interface
(``stack.open_tcp_forwarder``, ``stack.open_udp_forwarder``): it completes
each TCP handshake as if the destination were its own, and the proxy then
opens a kernel connection to that destination (``trio.open_tcp_stream``,
outside any ``trionet.use_stack``) and copies both ways: half-close passed
through (EOF on one side becomes ``send_eof`` on the other), at most
``--chunk`` bytes read at a time and each send awaited (backpressure), an
error on either side closing both. A failed upstream connection resets the
client's. UDP: one kernel socket per (client, destination) flow, closed
after ``--udp-idle`` seconds without traffic; answers go back from the
original destination.

Prints a line containing "ready" once relaying; exits 0 on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys

import trio

import trionet

log = logging.getLogger("tunproxy")


# --- TCP -----------------------------------------------------------------------------------


async def _pump(source, sink, chunk: int, done: trio.CancelScope) -> None:
    """Copy ``source`` to ``sink`` until EOF (then half-close ``sink``); an
    error on either side ends the whole relay."""
    try:
        while True:
            data = await source.receive_some(chunk)
            if not data:
                await sink.send_eof()
                return
            await sink.send_all(data)  # waits while the sink's buffer is full
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        log.debug("relay error: %r", exc)
        done.cancel()


async def relay_tcp(stream: trionet.Stream, args: argparse.Namespace, counters: dict) -> None:
    """One forwarded connection: open the kernel's connection to the
    original destination and copy both ways."""
    host, port = stream.local_address
    counters["tcp_flows"] += 1
    upstream = None
    try:
        with trio.move_on_after(args.connect_timeout):
            try:
                upstream = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                log.debug("connect %s:%s: %r", host, port, exc)
        if upstream is None:
            counters["tcp_failed"] += 1
            await trio.aclose_forcefully(stream)  # RST: the destination refused or is gone
            return
        async with upstream:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump, stream, upstream, args.chunk, nursery.cancel_scope)
                nursery.start_soon(_pump, upstream, stream, args.chunk, nursery.cancel_scope)
    finally:
        with trio.CancelScope(shield=True):
            try:
                await stream.aclose()
            except (trio.BrokenResourceError, OSError):
                pass


# --- UDP -----------------------------------------------------------------------------------


class UdpFlow:
    """One (client, destination) exchange relayed through a kernel UDP
    socket connected to the destination; ends after ``idle`` seconds
    without a datagram either way."""

    def __init__(self, forwarder, client, destination, idle: float):
        self.forwarder = forwarder
        self.client = client
        self.destination = destination
        self.idle = idle
        family = socket.AF_INET6 if ":" in destination[0] else socket.AF_INET
        self.sock = trio.socket.socket(family, socket.SOCK_DGRAM)
        self.scope = trio.CancelScope(deadline=trio.current_time() + idle)

    def touch(self) -> None:
        self.scope.deadline = trio.current_time() + self.idle

    async def run(self, flows: dict, key) -> None:
        try:
            with self.scope:
                while True:
                    try:
                        data = await self.sock.recv(65535)
                    except OSError:
                        continue  # an ICMP error from the destination (port unreachable)
                    self.touch()
                    try:
                        await self.forwarder.sendto(data, self.client,
                                                    source_address=self.destination)
                    except OSError:
                        pass
        finally:
            flows.pop(key, None)
            self.sock.close()


async def relay_udp(forwarder, nursery: trio.Nursery, args: argparse.Namespace,
                    counters: dict) -> None:
    flows: dict[tuple, UdpFlow] = {}
    while True:
        try:
            data, client, destination = await forwarder.receive()
        except trio.ClosedResourceError:
            return
        key = (client, destination)
        flow = flows.get(key)
        if flow is None:
            if len(flows) >= args.max_udp_flows:
                counters["udp_dropped"] += 1
                continue
            flow = UdpFlow(forwarder, client, destination, args.udp_idle)
            try:
                await flow.sock.connect(destination)
            except OSError as exc:
                log.debug("udp connect %s: %r", destination, exc)
                flow.sock.close()
                counters["udp_dropped"] += 1
                continue
            flows[key] = flow
            counters["udp_flows"] += 1
            nursery.start_soon(flow.run, flows, key)
        flow.touch()
        try:
            await flow.sock.send(data)
        except OSError as exc:
            log.debug("udp send %s: %r", destination, exc)


# --- main ----------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    link = trionet.TunLink(args.tun)
    counters = {"tcp_flows": 0, "tcp_failed": 0, "udp_flows": 0, "udp_dropped": 0}
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trionet.Stack(seed=args.seed, max_connections=args.max_connections,
                                 close_timeout=0.5) as stack:
            iface = stack.add_interface(link, args.address[0])
            for address in args.address[1:]:
                iface.add_address(address)
            # Every answer goes back into the TUN, whatever the client's address.
            for version, default in ((4, "0.0.0.0/0"), (6, "::/0")):
                if any(a.version == version for a in iface.addresses):
                    stack.add_route(default, interface=iface)
            tcp = await stack.open_tcp_forwarder(iface, backlog=args.backlog)
            udp = await stack.open_udp_forwarder(iface, queue_size=args.udp_queue)
            async with trio.open_nursery() as nursery:
                async def handler(stream):
                    await relay_tcp(stream, args, counters)
                await nursery.start(trio.serve_listeners, handler, [tcp])
                nursery.start_soon(relay_udp, udp, nursery, args, counters)
                shown = " ".join(str(a.interface) for a in iface.addresses)
                print(f"ready: {shown} on {args.tun}, relaying TCP and UDP", flush=True)
                async for signum in signals:
                    counters["internal_errors"] = stack.stats["drop.internal.error"]
                    print(f"got {signal.Signals(signum).name}, stopping "
                          f"{json.dumps(counters)}", flush=True)
                    break
                nursery.cancel_scope.cancel()
    return 0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tun", required=True, help="TUN device name (e.g. tun0)")
    parser.add_argument("--address", action="append", required=True,
                        help="the stack's own address with prefix, IPv4 or IPv6 "
                             "(10.0.0.1/24, fd00::1/64); may be repeated")
    parser.add_argument("--chunk", type=int, default=65536,
                        help="bytes read at a time per direction (default 65536)")
    parser.add_argument("--connect-timeout", type=float, default=10.0,
                        help="seconds to reach a TCP destination (default 10)")
    parser.add_argument("--udp-idle", type=float, default=60.0,
                        help="seconds a UDP flow lives without traffic (default 60)")
    parser.add_argument("--max-udp-flows", type=int, default=1024,
                        help="UDP flows at once; datagrams of more are dropped (default 1024)")
    parser.add_argument("--udp-queue", type=int, default=256,
                        help="datagrams waiting to be relayed (default 256)")
    parser.add_argument("--max-connections", type=int, default=4096,
                        help="TCP connections at once (default 4096)")
    parser.add_argument("--backlog", type=int, default=None,
                        help="connections waiting for the relay (default 4096)")
    parser.add_argument("--seed", type=int, default=None, help="seed of everything random")
    parser.add_argument("-v", "--verbose", action="store_true", help="DEBUG logging")
    args = parser.parse_args(argv)
    if args.chunk < 1:
        parser.error("--chunk must be at least 1")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(level=logging.DEBUG if arguments.verbose else logging.WARNING)
    try:
        sys.exit(trio.run(main, arguments))
    except KeyboardInterrupt:
        sys.exit(0)
