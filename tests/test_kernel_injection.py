"""Blind injection (RFC 5961, RFC 7323 PAWS) against a live Linux <->
trionet connection over TAP.

A Linux client echoes 8 MB through trionet's echo server. Meanwhile raw
frames spoofing the Linux side (its address, port and MAC) are written into
the TAP from inside the test namespace (an AF_PACKET socket bound to the
TAP there; nothing leaves it): RSTs, SYNs and data in and out of trionet's
receive window, with bad ACKs, old, missing or far-future timestamps
(tests/test_blind_injection.py ``injections``). The echo's sha256 must
stay exact and trionet must answer the in-window ones with (rate limited)
challenge ACKs. Real clock; needs root and /dev/net/tun.
"""

from __future__ import annotations

import json
import random
import subprocess

import trio

try:
    from . import netns
    from .kernel_tcp_support import (ECHO_CLIENT, KERNEL_IP, STACK_IP, background, echo_handler,
                                     kernel_peer)
except ImportError:
    import netns
    from kernel_tcp_support import (ECHO_CLIENT, KERNEL_IP, STACK_IP, background, echo_handler,
                                    kernel_peer)

from test_blind_injection import injections, spoofed_frame

pytestmark = netns.KERNEL_PEER

ECHO_PORT = 7
SIZE = 8 << 20

#: argv: ifname. Sends each hex line from stdin as a frame on an AF_PACKET
#: socket bound to ifname; prints the count at EOF.
INJECTOR = r"""
import json, socket, sys
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((sys.argv[1], 0))
sent = 0
for line in sys.stdin:
    line = line.strip()
    if line:
        sock.send(bytes.fromhex(line))
        sent += 1
print(json.dumps({"injected": sent}), flush=True)
"""


async def test_injection_into_a_live_linux_connection():
    rng = random.Random(7)
    with trio.fail_after(90):
        # Plain frames: with offloads the 8 MB echo can end before 200
        # spoofed segments went in (the injection rounds follow the echo).
        async with kernel_peer(offload=False) as peer:
            stack = peer.stack
            await peer.nursery.start(stack.serve_tcp, echo_handler, ECHO_PORT)
            linux_mac = bytes.fromhex(peer.ns.run(
                "cat", f"/sys/class/net/{peer.tap}/address").stdout.strip().replace(":", ""))
            our_mac = stack.interfaces[0].mac
            injector = await trio.lowlevel.open_process(
                ["ip", "netns", "exec", peer.ns.name, *peer.ns.python(INJECTOR), peer.tap],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            kinds: dict[str, int] = {}
            try:
                async with background(peer.ns, *peer.ns.python(ECHO_CLIENT), STACK_IP,
                                      ECHO_PORT, SIZE) as client:
                    with trio.fail_after(20):
                        while True:
                            socks = [s for s in stack.tcp.connections.values()
                                     if s.key[1] == ECHO_PORT and s.machine.established]
                            if socks:
                                break
                            await trio.sleep(0.005)
                    (sock,) = socks
                    machine = sock.machine
                    cport = sock.key[3]
                    ident = 0
                    while client.process.returncode is None and not machine.closed:
                        lines = []
                        now_ts = rng.getrandbits(32)
                        for kind, h, payload in injections(machine, rng, now_ts):
                            ident += 1
                            frame = spoofed_frame(h, payload, src=KERNEL_IP, dst=STACK_IP,
                                                  sport=cport, dport=ECHO_PORT,
                                                  src_mac=linux_mac, dst_mac=our_mac,
                                                  ident=ident)
                            lines.append(frame.hex() + "\n")
                            kinds[kind] = kinds.get(kind, 0) + 1
                        await injector.stdin.send_all("".join(lines).encode())
                        with trio.move_on_after(0.003):
                            await client.process.wait()
                    code, out = await client.finish(30)
                    assert code == 0, out
                    result = json.loads(out.strip().splitlines()[-1])
                await injector.stdin.aclose()
                summary = await injector.stdout.receive_some(4096)
                await injector.wait()
            finally:
                if injector.returncode is None:
                    injector.kill()
                    with trio.CancelScope(shield=True):
                        await injector.wait()
            assert result["received"] == SIZE, result
            assert result["received_sha"] == result["sent_sha"]
            injected = sum(kinds.values())
            assert b'"injected": %d' % injected in summary, summary
            assert injected >= 200, kinds
            assert machine.error is None
            assert machine.challenge_acks > 0
            # RFC 5961 7: at most challenge_ack_limit a second.
            limit = machine.config.challenge_ack_limit
            assert machine.challenge_acks <= limit * (result["seconds"] + 2)
            assert stack.stats["drop.internal.error"] == 0
            print(f"\n{injected} spoofed segments injected into a {SIZE >> 20} MB echo "
                  f"({result['seconds']:.2f} s): {machine.challenge_acks} challenge ACKs sent, "
                  f"{machine.challenge_acks_limited} held back by the rate limit; sha256 exact")
