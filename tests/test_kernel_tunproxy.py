"""examples/tunproxy.py between real kernels: a client namespace whose
route to the server's network goes into a TUN, the proxy (trionet on that
TUN, with its forwarders) relaying every flow with the kernel's sockets of
its own namespace, and a server namespace behind a veth pair.

    client ns: 10.77.0.2, fd77::2 on the TUN, routes to 10.88.0.0/24 and
        |      fd88::/64 into it
        |  (TUN: created by tunproxy.py in the proxy ns, then moved here)
    proxy ns: tunproxy.py --address 10.77.0.1/24 --address fd77::1/64;
        |     veth 10.88.0.1, fd88::1
        |  (veth)
    server ns: 10.88.0.2, fd88::2: http.server and a UDP echo server on each

All traffic stays in these namespaces. Real clock; needs root and
/dev/net/tun.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import trio

try:
    from . import netns
except ImportError:
    import netns

pytestmark = netns.KERNEL_PEER

ROOT = Path(__file__).resolve().parent.parent
PROXY = [sys.executable, "-u", str(ROOT / "examples" / "tunproxy.py")]
SERVER_IP = "10.88.0.2"
CLIENT_IP = "10.77.0.2"
SERVER_IP6 = "fd88::2"
CLIENT_IP6 = "fd77::2"
BIG = 10 * 1024 * 1024
FLOWS = 100

# In the server namespace: http.server with a listen backlog for many
# clients at once. argv: directory address port.
HTTP_SERVER = r"""
import functools, socket, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
class Server(ThreadingHTTPServer):
    request_queue_size = 512
    address_family = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
handler = functools.partial(SimpleHTTPRequestHandler, directory=sys.argv[1])
handler.log_message = lambda *a: None
Server((sys.argv[2], int(sys.argv[3])), handler).serve_forever()
"""

UDP_ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
"""

# In the client namespace: fetch argv[1] (retrying while the server comes
# up), print its length and sha256.
FETCH = r"""
import hashlib, json, sys, time, urllib.request
deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=30) as response:
            data = response.read()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
print(json.dumps({"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
"""

# argv: base url, flows, files: each of ``flows`` threads fetches one file.
CONCURRENT = r"""
import hashlib, json, sys, threading, urllib.request
base, flows, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
results = [None] * flows
barrier = threading.Barrier(flows)
def fetch(i):
    barrier.wait()
    try:
        with urllib.request.urlopen(f"{base}/small{i % files}.bin", timeout=60) as response:
            results[i] = hashlib.sha256(response.read()).hexdigest()
    except Exception as exc:
        results[i] = repr(exc)
threads = [threading.Thread(target=fetch, args=(i,)) for i in range(flows)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(results))
"""

# argv: host port sizes: each datagram echoed, from the address it went to.
UDP_CLIENT = r"""
import json, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
results = []
for i, size in enumerate(int(n) for n in sys.argv[3].split(",")):
    message = bytes((i + j) & 0xFF for j in range(size))
    for attempt in range(5):
        s.sendto(message, (host, port))
        try:
            data, peer = s.recvfrom(65535)
        except socket.timeout:
            continue
        results.append({"size": size, "ok": data == message, "peer": list(peer[:2])})
        break
    else:
        results.append({"size": size, "ok": False, "peer": None})
print(json.dumps(results))
"""


async def _read_line_with(stream, word: str, timeout: float) -> str:
    buffer = b""
    with trio.fail_after(timeout):
        while True:
            chunk = await stream.receive_some(4096)
            if not chunk:
                raise AssertionError(f"no {word!r} line; output: {buffer.decode(errors='replace')}")
            buffer += chunk
            for line in buffer.decode(errors="replace").splitlines():
                if word in line:
                    return line


async def test_tunproxy_relays_http_and_udp_between_namespaces(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    big = os.urandom(BIG)
    (www / "big.bin").write_bytes(big)
    small = {}
    for i in range(10):
        data = os.urandom(20000 + 997 * i)
        (www / f"small{i}.bin").write_bytes(data)
        small[i] = hashlib.sha256(data).hexdigest()
    tun = netns.unique_name("tp")
    with trio.fail_after(240):
        with netns.NetNamespace.create("tc") as client, \
                netns.NetNamespace.create("tp") as proxy, \
                netns.NetNamespace.create("ts") as server:
            veth_p, veth_s = netns.link_namespaces(proxy, "10.88.0.1/24", server,
                                                   f"{SERVER_IP}/24")
            for ns, ifname, address in ((proxy, veth_p, "fd88::1/64"),
                                        (server, veth_s, f"{SERVER_IP6}/64")):
                ns.enable_ipv6(ifname, accept_dad=False)
                ns.ip("addr", "add", address, "dev", ifname, "nodad")
            for address in (SERVER_IP, SERVER_IP6):
                server.popen(*server.python(HTTP_SERVER), str(www), address, 8000)
                server.popen(*server.python(UDP_ECHO), address, 9999)
            proc = await trio.lowlevel.open_process(
                ["ip", "netns", "exec", proxy.name, *PROXY, "--tun", tun,
                 "--address", "10.77.0.1/24", "--address", "fd77::1/64"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(ROOT),
                env={**os.environ, "PYTHONPATH": str(ROOT)})
            try:
                await _read_line_with(proc.stdout, "ready", 30)
                # The TUN's fd stays with the proxy; the device goes to the client.
                proxy.ip("link", "set", "dev", tun, "netns", client.name)
                client.disable_ipv6(tun)
                client.ip("addr", "add", f"{CLIENT_IP}/24", "dev", tun)
                client.ip("link", "set", "dev", tun, "up")
                client.ip("route", "add", "10.88.0.0/24", "dev", tun)
                client.enable_ipv6(tun, accept_dad=False)
                client.ip("addr", "add", f"{CLIENT_IP6}/64", "dev", tun, "nodad")
                client.ip("-6", "route", "add", "fd88::/64", "dev", tun)

                out = await client.run_async(*client.python(FETCH),
                                             f"http://{SERVER_IP}:8000/big.bin", timeout=120)
                got = json.loads(out.stdout)
                assert got == {"length": BIG, "sha256": hashlib.sha256(big).hexdigest()}

                out = await client.run_async(*client.python(CONCURRENT),
                                             f"http://{SERVER_IP}:8000", FLOWS, 10, timeout=120)
                results = json.loads(out.stdout)
                assert results == [small[i % 10] for i in range(FLOWS)]

                out = await client.run_async(*client.python(UDP_CLIENT), SERVER_IP, 9999,
                                             "5,1000,1400,3000", timeout=60)
                answers = json.loads(out.stdout)
                assert [a["ok"] for a in answers] == [True] * 4, answers
                assert all(a["peer"] == [SERVER_IP, 9999] for a in answers), answers

                # IPv6: a download and a UDP exchange.
                out = await client.run_async(*client.python(FETCH),
                                             f"http://[{SERVER_IP6}]:8000/small3.bin",
                                             timeout=60)
                assert json.loads(out.stdout)["sha256"] == small[3]
                out = await client.run_async(*client.python(UDP_CLIENT), SERVER_IP6, 9999,
                                             "5,1200", timeout=60)
                answers = json.loads(out.stdout)
                assert [a["ok"] for a in answers] == [True] * 2, answers
                assert all(a["peer"] == [SERVER_IP6, 9999] for a in answers), answers

                proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean exit
                line = await _read_line_with(proc.stdout, "stopping", 15)
                with trio.fail_after(15):
                    code = await proc.wait()
                assert code == 0
                # Every flow went through the proxy's forwarders.
                counters = json.loads(line.split("stopping ", 1)[1])
                assert counters["tcp_flows"] >= 2 + FLOWS and counters["tcp_failed"] == 0
                assert counters["udp_flows"] >= 2
                assert counters["internal_errors"] == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
