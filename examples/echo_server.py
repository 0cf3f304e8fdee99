"""An echo server on a TAP (or TUN) device: answers ping, echoes UDP and
TCP, over IPv4 and IPv6.

    sudo scripts/setup_tap.sh tap0 10.0.0.1/24 --user $USER
    python examples/echo_server.py --tap tap0 --address 10.0.0.2/24
    # then, from the host: ping 10.0.0.2; nc -u 10.0.0.2 7; nc 10.0.0.2 7

    # dual-stack (--address may be repeated), or addresses from router
    # advertisements (--slaac):
    python examples/echo_server.py --tap tap0 --address 10.0.0.2/24 --address fd00::2/64
    python examples/echo_server.py --tap tap0 --slaac

    # the IPv4 address from a DHCP server (RFC 2131) instead of --address:
    python examples/echo_server.py --tap tap0 --dhcp

    # a TUN (IP packets, no Ethernet, no neighbour discovery) instead:
    sudo scripts/setup_tap.sh tun0 10.0.0.1/24 fd00::1/64 --tun --user $USER
    python examples/echo_server.py --tun tun0 --address 10.0.0.2/24 --address fd00::2/64

The link asks the kernel for checksum offload and TSO (the default;
--no-offload for plain frames). Every address answers (the link-local IPv6 one too). Prints a line
containing "ready" and the addresses once serving (with --slaac, once an
address was formed from an advertised prefix; with --dhcp, once a lease is
bound); exits 0 on SIGINT/SIGTERM (releasing a DHCP lease).
"""

import argparse
import logging
import signal
import sys

import trio

import trionet


async def udp_echo(stack: trionet.Stack, port: int) -> None:
    async with await stack.open_udp_socket(port) as sock:  # every address, both families
        while True:
            data, address, to = await sock.recvfrom_to()
            # Answer from the address the datagram came to (as IP_PKTINFO).
            source = to if stack.is_local_address(to) else None
            try:
                await sock.sendto(data, address, source_address=source)
            except OSError:
                pass  # no route back to that sender (e.g. a spoofed source): not fatal


async def tcp_echo(stream: trionet.Stream) -> None:
    async with stream:
        try:
            async for data in stream:
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass  # the client reset or vanished


async def wait_for_slaac(iface: trionet.Interface, timeout: float) -> None:
    """Until an address formed from a router's prefix is preferred."""
    with trio.move_on_after(timeout):
        while not any(a.origin == "slaac" and a.usable for a in iface.addresses):
            await trio.sleep(0.05)


async def main(args: argparse.Namespace) -> int:
    # Checksum offload and TSO where the kernel grants them (the default).
    offload = not args.no_offload
    link: trionet.link.Link = (trionet.TunLink(args.tun, offload=offload) if args.tun
                               else trionet.TapLink(args.tap, offload=offload))
    if args.pcap:
        link = trionet.Capture(link, args.pcap)
    addresses = args.address or []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trionet.Stack(seed=args.seed) as stack:
            iface = stack.add_interface(link, None if args.dhcp or not addresses
                                        else addresses[0], gateway=args.gateway,
                                        dhcp=args.dhcp)
            for address in addresses if args.dhcp else addresses[1:]:
                iface.add_address(address)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(udp_echo, stack, args.port)
                await nursery.start(stack.serve_tcp, tcp_echo, args.port)
                if args.dhcp:
                    with trio.move_on_after(args.dhcp_timeout):
                        await iface.dhcp_bound()
                    if iface.dhcp_lease is None:
                        print(f"echo_server: no DHCP lease within {args.dhcp_timeout} s",
                              file=sys.stderr, flush=True)
                        nursery.cancel_scope.cancel()
                        return 1
                if args.slaac:
                    await wait_for_slaac(iface, args.slaac_timeout)
                shown = " ".join(str(a.interface) for a in iface.addresses) or "no address"
                print(f"ready: {shown} on {args.tun or args.tap}, echo on UDP and TCP port "
                      f"{args.port}", flush=True)
                async for signum in signals:
                    print(f"got {signal.Signals(signum).name}, stopping", flush=True)
                    break
                nursery.cancel_scope.cancel()
    return 0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    device = parser.add_mutually_exclusive_group(required=True)
    device.add_argument("--tap", help="TAP device name (e.g. tap0)")
    device.add_argument("--tun", help="TUN device name (e.g. tun0)")
    parser.add_argument("--address", action="append",
                        help="an address with prefix, IPv4 or IPv6 (10.0.0.2/24, fd00::2/64); "
                             "may be repeated")
    parser.add_argument("--dhcp", action="store_true",
                        help="take the IPv4 address, router and name servers from DHCP "
                             "(--address may still add IPv6 ones); wait for the lease "
                             "before 'ready'")
    parser.add_argument("--dhcp-timeout", type=float, default=30.0,
                        help="seconds to wait for a DHCP lease (default 30)")
    parser.add_argument("--slaac", action="store_true",
                        help="take IPv6 addresses from router advertisements (RFC 4862) and "
                             "wait for one before 'ready'")
    parser.add_argument("--slaac-timeout", type=float, default=30.0,
                        help="seconds --slaac waits for an address (default 30)")
    parser.add_argument("--gateway", default=None, help="default gateway (IPv4 or IPv6)")
    parser.add_argument("--port", type=int, default=7, help="echo port (UDP and TCP), default 7")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of everything random (MAC, link-local address, ports)")
    parser.add_argument("--pcap", default=None, help="write every frame to this pcap file")
    parser.add_argument("--no-offload", action="store_true",
                        help="plain frames: no virtio-net header, checksum offload or TSO")
    parser.add_argument("-v", "--verbose", action="store_true", help="DEBUG logging")
    args = parser.parse_args(argv)
    if not args.address and not args.slaac and not args.dhcp:
        parser.error("give at least one --address, or --dhcp, or --slaac")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(level=logging.DEBUG if arguments.verbose else logging.WARNING)
    sys.exit(trio.run(main, arguments))
