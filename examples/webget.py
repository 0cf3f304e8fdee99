"""Fetch a URL over trionet and write the body to stdout (CS144's webget).

    python examples/webget.py --tap tap0 --address 10.0.0.2/24 http://10.0.0.1:8000/file
    python examples/webget.py --tap tap0 --address fd00::2/64 'http://[fd00::1]:8000/file'

HTTP/1.1 is spoken by h11 (pip install h11). Hosts are IP addresses: trionet
has no DNS resolver yet.
"""

import argparse
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
    async with trionet.Stack() as stack:
        iface = stack.add_interface(trionet.TapLink(args.tap), args.address[0],
                                    gateway=args.gateway)
        for address in args.address[1:]:
            iface.add_address(address)
        return await fetch(stack, args.url, sys.stdout.buffer)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tap", required=True)
    parser.add_argument("--address", required=True, action="append",
                        help="our address with prefix, 10.0.0.2/24 or fd00::2/64 (repeatable)")
    parser.add_argument("--gateway", default=None)
    parser.add_argument("url")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(trio.run(main, parse_args()))
