"""Fetch a URL over trionet and write the body to stdout (CS144's webget).

    python examples/webget.py --tap tap0 --address 10.0.0.2/24 http://10.0.0.1:8000/file
    python examples/webget.py --tap tap0 --address fd00::2/64 'http://[fd00::1]:8000/file'
    python examples/webget.py --tun tun0 --address 10.0.0.2/24 http://10.0.0.1:8000/file

    # the address, router and name server from DHCP, the host by name:
    python examples/webget.py --tap tap0 --dhcp http://web.test:8000/file
    # or a static address and a name server of your own:
    python examples/webget.py --tap tap0 --address 10.0.0.2/24 --nameserver 10.0.0.1 \
        http://web.test:8000/file

HTTP/1.1 is spoken by h11 (pip install h11). Names are resolved by trionet's
resolver (``stack.hosts``, then DNS over trionet) and the addresses tried as
Trio's happy eyeballs does. Exits 0 on a 2xx response, 1 on another status,
2 when the host cannot be resolved or reached.
"""

import argparse
import socket
import sys
import urllib.parse

import h11
import trio

import trionet


async def fetch(stack: trionet.Stack, url: str, out) -> int:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit(f"webget: only http://HOST[:PORT]/PATH URLs are supported, not {url!r}")
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = h11.Connection(h11.CLIENT)
    async with await stack.open_tcp_stream(parts.hostname, port) as stream:
        request = h11.Request(method="GET", target=target,
                              headers=[("Host", parts.netloc), ("Connection", "close"),
                                       ("User-Agent", "trionet-webget")])
        await stream.send_all(connection.send(request) + connection.send(h11.EndOfMessage()))
        status = None
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some())
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                out.write(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
    out.flush()
    return 0 if status is not None and 200 <= status < 300 else 1


async def main(args: argparse.Namespace) -> int:
    addresses = args.address or []
    async with trionet.Stack(nameservers=args.nameserver or ()) as stack:
        link = trionet.TunLink(args.tun) if args.tun else trionet.TapLink(args.tap)
        iface = stack.add_interface(link, None if args.dhcp else addresses[0],
                                    gateway=args.gateway, dhcp=args.dhcp)
        for address in addresses if args.dhcp else addresses[1:]:
            iface.add_address(address)
        if args.dhcp:
            with trio.move_on_after(args.dhcp_timeout):
                await iface.dhcp_bound()
            if iface.dhcp_lease is None:
                print(f"webget: no DHCP lease within {args.dhcp_timeout} s", file=sys.stderr)
                return 2
        try:
            return await fetch(stack, args.url, sys.stdout.buffer)
        except socket.gaierror as exc:
            print(f"webget: cannot resolve {urllib.parse.urlsplit(args.url).hostname}: {exc}",
                  file=sys.stderr)
        except OSError as exc:
            print(f"webget: {args.url}: {exc}", file=sys.stderr)
        return 2


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    device = parser.add_mutually_exclusive_group(required=True)
    device.add_argument("--tap", help="TAP device name (e.g. tap0)")
    device.add_argument("--tun", help="TUN device name (e.g. tun0)")
    parser.add_argument("--address", action="append",
                        help="our address with prefix, 10.0.0.2/24 or fd00::2/64 (repeatable)")
    parser.add_argument("--dhcp", action="store_true",
                        help="take the IPv4 address, router and name servers from DHCP")
    parser.add_argument("--dhcp-timeout", type=float, default=30.0,
                        help="seconds to wait for a DHCP lease (default 30)")
    parser.add_argument("--nameserver", action="append",
                        help="a DNS server's address (repeatable; DHCP adds the lease's)")
    parser.add_argument("--gateway", default=None)
    parser.add_argument("url")
    args = parser.parse_args(argv)
    if not args.address and not args.dhcp:
        parser.error("give --address (repeatable) or --dhcp")
    return args


if __name__ == "__main__":
    sys.exit(trio.run(main, parse_args()))
