"""An echo server on a TAP device: answers ping, echoes UDP and TCP.

    sudo scripts/setup_tap.sh tap0 10.0.0.1/24 --user $USER
    python examples/echo_server.py --tap tap0 --address 10.0.0.2/24
    # then, from the host: ping 10.0.0.2; nc -u 10.0.0.2 7; nc 10.0.0.2 7

Prints a line containing "ready" once serving; exits 0 on SIGINT/SIGTERM.
"""

import argparse
import logging
import signal
import sys

import trio

import trionet


async def udp_echo(stack: trionet.Stack, port: int) -> None:
    async with await stack.open_udp_socket(port) as sock:
        while True:
            data, address = await sock.recvfrom()
            try:
                await sock.sendto(data, address)
            except OSError:
                pass  # no route back to that sender (e.g. a spoofed source): not fatal


async def tcp_echo(stream: trionet.Stream) -> None:
    async with stream:
        try:
            async for data in stream:
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass  # the client reset or vanished


async def main(args: argparse.Namespace) -> int:
    link: trionet.link.Link = trionet.TapLink(args.tap)
    if args.pcap:
        link = trionet.Capture(link, args.pcap)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trionet.Stack() as stack:
            iface = stack.add_interface(link, args.address, gateway=args.gateway)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(udp_echo, stack, args.port)
                await nursery.start(stack.serve_tcp, tcp_echo, args.port)
                print(f"ready: {iface.address} on {args.tap}, echo on UDP and TCP port {args.port}",
                      flush=True)
                async for signum in signals:
                    print(f"got {signal.Signals(signum).name}, stopping", flush=True)
                    break
                nursery.cancel_scope.cancel()
    return 0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tap", required=True, help="TAP device name (e.g. tap0)")
    parser.add_argument("--address", required=True, help="our address with prefix, e.g. 10.0.0.2/24")
    parser.add_argument("--gateway", default=None, help="default gateway")
    parser.add_argument("--port", type=int, default=7, help="echo port (UDP and TCP), default 7")
    parser.add_argument("--pcap", default=None, help="write every frame to this pcap file")
    parser.add_argument("-v", "--verbose", action="store_true", help="DEBUG logging")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(level=logging.DEBUG if arguments.verbose else logging.WARNING)
    sys.exit(trio.run(main, arguments))
