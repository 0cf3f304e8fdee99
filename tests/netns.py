"""Helpers for tests that use the Linux kernel as a real peer.

The stack under test runs in the test process and opens a TAP device in the
root namespace; the harness then moves that TAP into a fresh network
namespace (the open fd keeps working) where the kernel answers as the peer.
Kernel-side programs are small Python socket snippets run inside the
namespace (``ns.python(code)``), so tests need neither ``ping`` nor ``nc``.

Typical use from a trio test (real clock)::

    pytestmark = netns.KERNEL_PEER

    async def test_something():
        with netns.NetNamespace.create() as ns:
            tap = pytun.TunTapDevice(netns.unique_name("tt"),
                                     flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
            ns.move_link(tap.name, "10.98.0.1/24")
            result = await netns.kernel_ping(ns, "10.98.0.2", count=3)

Every namespace is named ``RUN_PREFIX + prefix + counter``; RUN_PREFIX holds
this process's pid, and the session fixture in conftest.py deletes whatever
namespaces with that prefix are left at the end of the run.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path

import attrs
import pytest
import trio

__all__ = [
    "KERNEL_PEER",
    "RUN_PREFIX",
    "NetNamespace",
    "NetnsCommandError",
    "PingResult",
    "cleanup_run_namespaces",
    "kernel_peer_skip_reason",
    "kernel_ping",
    "link_namespaces",
    "list_namespaces",
    "requires_kernel_peer",
    "unique_name",
]

#: Every namespace this process creates starts with this; nothing else does.
RUN_PREFIX = f"trionet-{os.getpid()}-"

#: Longest Linux interface name (IFNAMSIZ - 1).
IFNAME_MAX = 15

_counter = itertools.count(1)  # test-helper state only, never in trionet/


def unique_name(prefix: str = "tn") -> str:
    """A short name unique in this process and among concurrent runs.

    ``prefix + pid + "-" + counter``; usable as an interface name (at most 15
    characters), so keep the prefix short (2-4 letters).
    """
    name = f"{prefix}{os.getpid()}-{next(_counter)}"
    if len(name) > IFNAME_MAX:
        raise ValueError(
            f"{name!r} is longer than {IFNAME_MAX} characters; use a shorter prefix"
        )
    return name


# ---------------------------------------------------------------------------
# Can this machine run kernel-peer tests?


def kernel_peer_skip_reason() -> str | None:
    """Why kernel-peer tests cannot run here, or None if they can."""
    if not sys.platform.startswith("linux"):
        return "kernel-peer tests need Linux"
    if os.geteuid() != 0:
        return "kernel-peer tests need root (network namespaces and TAP devices)"
    if not os.path.exists("/dev/net/tun"):
        return "kernel-peer tests need /dev/net/tun (modprobe tun)"
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))
    except OSError as exc:
        return f"kernel-peer tests cannot open /dev/net/tun: {exc.strerror}"
    if shutil.which("ip") is None:
        return "kernel-peer tests need the 'ip' command (iproute2)"
    return None


_SKIP_REASON = kernel_peer_skip_reason()

#: Skip marker carrying the reason; conftest.py also applies it to every test
#: marked ``pytest.mark.kernel``.
requires_kernel_peer = pytest.mark.skipif(
    _SKIP_REASON is not None, reason=_SKIP_REASON or "kernel peer available"
)

#: For ``pytestmark = netns.KERNEL_PEER``: the ``kernel`` marker plus the skip.
KERNEL_PEER = [pytest.mark.kernel, requires_kernel_peer]


# ---------------------------------------------------------------------------
# Running commands


class NetnsCommandError(subprocess.CalledProcessError):
    """A command failed; unlike CalledProcessError, str() shows its stderr."""

    def __str__(self) -> str:
        text = super().__str__()
        err = self.stderr
        if isinstance(err, bytes):
            err = err.decode(errors="replace")
        if err and err.strip():
            text += "\n" + err.strip()
        return text


def _ip(*args: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess:
    return _run_sync(["ip", *args], check=check, timeout=timeout)


def _run_sync(
    argv: list[str],
    *,
    check: bool = True,
    timeout: float | None = 10,
    input: str | bytes | None = None,
    text: bool = True,
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        argv,
        input=input,
        capture_output=True,
        text=text,
        timeout=timeout,
        stdin=subprocess.DEVNULL if input is None else None,
    )
    if check and proc.returncode != 0:
        raise NetnsCommandError(proc.returncode, argv, proc.stdout, proc.stderr)
    return proc


def list_namespaces() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    out = _ip("netns", "list").stdout
    # Lines look like "NAME" or "NAME (id: 3)".
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _namespace_pids(name: str) -> list[int]:
    proc = _ip("netns", "pids", name, check=False)
    if proc.returncode != 0:
        return []
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def _kill_namespace_processes(name: str) -> None:
    """SIGKILL every process whose network namespace is ``name``."""
    me = os.getpid()
    for _ in range(5):
        pids = [p for p in _namespace_pids(name) if p != me]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def _delete_namespace(name: str) -> None:
    _kill_namespace_processes(name)
    _ip("netns", "delete", name, check=False)


def cleanup_run_namespaces(prefix: str = RUN_PREFIX) -> list[str]:
    """Delete every namespace whose name starts with ``prefix`` (by default,
    this run's); return their names. Touches no other namespace."""
    if not prefix or shutil.which("ip") is None:
        return []
    try:
        names = [n for n in list_namespaces() if n.startswith(prefix)]
    except (OSError, subprocess.SubprocessError):
        return []
    for name in names:
        _delete_namespace(name)
    return names


# ---------------------------------------------------------------------------
# Namespaces


class NetNamespace:
    """A network namespace that exists while its context is entered.

    ``NetNamespace.create()`` returns the unentered namespace; use it with
    ``with`` or ``async with``. Entering runs ``ip netns add`` and brings up
    ``lo``; leaving kills the processes started through ``popen`` (and any
    other process still inside the namespace) and runs ``ip netns delete``,
    also when the body raised or was cancelled. Setup and teardown are quick
    synchronous commands, so teardown cannot be interrupted by cancellation.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._procs: list[subprocess.Popen] = []
        self._created = False

    def __repr__(self) -> str:
        state = "open" if self._created else "closed"
        return f"<NetNamespace {self.name} {state}>"

    @classmethod
    def create(cls, prefix: str = "tn") -> NetNamespace:
        return cls(f"{RUN_PREFIX}{prefix}{next(_counter)}")

    # -- lifetime ---------------------------------------------------------

    def open(self) -> NetNamespace:
        if self._created:
            raise RuntimeError(f"{self!r} is already open")
        _ip("netns", "add", self.name)
        self._created = True
        try:
            _ip("-n", self.name, "link", "set", "dev", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill what runs inside and delete the namespace (idempotent)."""
        procs, self._procs = self._procs, []
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self._created:
            self._created = False
            _delete_namespace(self.name)

    def __enter__(self) -> NetNamespace:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    async def __aenter__(self) -> NetNamespace:
        return self.open()

    async def __aexit__(self, *exc) -> None:
        self.close()

    # -- commands ---------------------------------------------------------

    def _exec_argv(self, args: tuple) -> list[str]:
        if not args:
            raise ValueError("no command given")
        return ["ip", "netns", "exec", self.name, *map(str, args)]

    def run(
        self,
        *args,
        check: bool = True,
        timeout: float | None = 10,
        input: str | bytes | None = None,
        text: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run a quick command inside the namespace and wait for it.

        Blocks the calling thread: from trio tests use ``run_async``.
        Output is captured (text by default); raises NetnsCommandError (with
        stderr) if ``check`` and the command fails.
        """
        return _run_sync(
            self._exec_argv(args), check=check, timeout=timeout, input=input, text=text
        )

    async def run_async(
        self,
        *args,
        check: bool = True,
        timeout: float | None = None,
        input: str | bytes = b"",
        text: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run a command inside the namespace with ``trio.run_process``.

        Cancelling the caller kills the process. ``timeout`` raises
        trio.TooSlowError. Output is captured; decoded if ``text``.
        """
        argv = self._exec_argv(args)
        if isinstance(input, str):
            input = input.encode()
        with trio.fail_after(timeout) if timeout is not None else nullcontext():
            proc = await trio.run_process(
                argv,
                stdin=input,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        if text:
            proc = subprocess.CompletedProcess(
                proc.args,
                proc.returncode,
                proc.stdout.decode(errors="replace"),
                proc.stderr.decode(errors="replace"),
            )
        if check and proc.returncode != 0:
            raise NetnsCommandError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    def popen(self, *args, **kw) -> subprocess.Popen:
        """Start a long-running command inside the namespace; it is killed
        when the namespace closes. Keyword arguments go to Popen (stdin
        defaults to DEVNULL)."""
        if not self._created:
            raise RuntimeError(f"{self!r} is not open")
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self._exec_argv(args), **kw)
        self._procs.append(proc)
        return proc

    def ip(self, *args, check: bool = True) -> subprocess.CompletedProcess:
        """``ip -n NAME ARGS...``"""
        return _ip("-n", self.name, *map(str, args), check=check)

    @staticmethod
    def python(code: str) -> list[str]:
        """argv that runs a Python snippet (unbuffered) with this interpreter;
        pass it to run/run_async/popen: ``ns.popen(*ns.python(code))``."""
        return [sys.executable, "-u", "-c", code]

    # -- links ------------------------------------------------------------

    def disable_ipv6(self, ifname: str) -> None:
        """Keep the kernel from sending RS/ND/MLD on ``ifname``."""
        if not os.path.isdir("/proc/sys/net/ipv6"):
            return  # no IPv6 in this kernel: nothing to silence
        if shutil.which("sysctl"):
            # Slash form: interface names may contain dots.
            self.run("sysctl", "-q", "-w", f"net/ipv6/conf/{ifname}/disable_ipv6=1")
        else:
            path = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
            self.run(*self.python(f"open({path!r}, 'w').write('1')"))

    def enable_ipv6(self, ifname: str, *, accept_ra: bool = False,
                    accept_dad: bool = True) -> None:
        """Undo ``disable_ipv6``: the kernel makes its link-local address on
        ``ifname`` (tentative for about a second unless ``accept_dad`` is
        False) and answers neighbour discovery; router advertisements are
        ignored unless ``accept_ra``."""
        settings = {"accept_ra": int(accept_ra), "accept_dad": int(accept_dad),
                    "disable_ipv6": 0}  # in this order: disable_ipv6=0 makes the address
        for key, value in settings.items():
            if shutil.which("sysctl"):
                self.run("sysctl", "-q", "-w", f"net/ipv6/conf/{ifname}/{key}={value}")
            else:
                path = f"/proc/sys/net/ipv6/conf/{ifname}/{key}"
                self.run(*self.python(f"open({path!r}, 'w').write('{value}')"))

    def move_link(self, ifname: str, cidr: str | None) -> None:
        """Move ``ifname`` here, address it with ``cidr`` (the kernel
        peer's address, e.g. "10.98.0.1/24") and bring it up, IPv6 off."""
        _ip("link", "set", "dev", ifname, "netns", self.name)
        self.disable_ipv6(ifname)
        if cidr is not None:
            self.ip("addr", "add", cidr, "dev", ifname)
        self.ip("link", "set", "dev", ifname, "up")


def link_namespaces(
    a: NetNamespace, cidr_a: str, b: NetNamespace, cidr_b: str, *, mtu: int = 1500
) -> tuple[str, str]:
    """Join two namespaces with a veth pair made directly inside them (never
    in the root namespace); return the two interface names."""
    if_a, if_b = unique_name("va"), unique_name("vb")
    a.ip("link", "add", if_a, "mtu", mtu, "type", "veth",
         "peer", "name", if_b, "mtu", mtu, "netns", b.name)
    for ns, ifname, cidr in ((a, if_a, cidr_a), (b, if_b, cidr_b)):
        ns.disable_ipv6(ifname)
        ns.ip("addr", "add", cidr, "dev", ifname)
        ns.ip("link", "set", "dev", ifname, "up")
    return if_a, if_b


# ---------------------------------------------------------------------------
# Ping from the kernel side


@attrs.frozen
class PingResult:
    """Outcome of ``kernel_ping``; ``rtts`` in seconds, one per reply."""

    sent: int
    received: int
    rtts: tuple[float, ...] = ()
    tool: str = "ping"

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 0.0


# Runs inside the namespace. argv: host count size interval timeout.
# Prints one JSON object per reply, then a summary line.
_RAW_PING = r"""
import json, os, select, socket, struct, sys, time

host = sys.argv[1]
count, size = int(sys.argv[2]), int(sys.argv[3])
interval, timeout = float(sys.argv[4]), float(sys.argv[5])

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF

V6 = ":" in host
if V6:
    # ICMPv6: the kernel fills in the checksum (RFC 3542 3.1) and hands
    # replies over without the IPv6 header.
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(socket.IPPROTO_IPV6, 23, 0)  # IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DONT
    REQUEST, REPLY = 128, 129
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    # Let the kernel fragment requests bigger than the path MTU (RFC 791).
    sock.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT
    REQUEST, REPLY = 8, 0
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
ident = os.getpid() & 0xFFFF
payload = bytes(i & 0xFF for i in range(size))
sent_at = {}
replies = 0
next_send = time.monotonic()
deadline = None

def send(seq):
    hdr = struct.pack("!BBHHH", REQUEST, 0, 0, ident, seq)
    csum = 0 if V6 else checksum(hdr + payload)
    sock.sendto(struct.pack("!BBHHH", REQUEST, 0, csum, ident, seq) + payload, (host, 0))
    sent_at[seq] = time.monotonic()

seq = 0
while True:
    now = time.monotonic()
    if seq < count and now >= next_send:
        seq += 1
        try:
            send(seq)
        except OSError as exc:
            print(json.dumps({"error": str(exc), "seq": seq}), flush=True)
            sent_at[seq] = now
        next_send = now + interval
        if seq == count:
            deadline = now + timeout
        continue
    if seq == count and (replies == count or now >= deadline):
        break
    wake = next_send if seq < count else deadline
    ready, _, _ = select.select([sock], [], [], max(0.0, wake - now))
    if not ready:
        continue
    data = sock.recv(65535)
    icmp = data if V6 else data[(data[0] & 0x0F) * 4:]
    if len(icmp) < 8:
        continue
    typ, code, _csum, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
    if typ != REPLY or rid != ident or rseq not in sent_at:
        continue
    if (not V6 and checksum(icmp) != 0) or icmp[8:] != payload:
        print(json.dumps({"corrupt": rseq}), flush=True)
        continue
    rtt = time.monotonic() - sent_at.pop(rseq)
    replies += 1
    print(json.dumps({"seq": rseq, "rtt": rtt, "bytes": len(icmp)}), flush=True)
print(json.dumps({"sent": seq, "received": replies}), flush=True)
"""


def _parse_iputils(out: str) -> PingResult:
    rtts = []
    sent = received = 0
    for line in out.splitlines():
        if " bytes from " in line and "time=" in line:
            value = line.split("time=", 1)[1].split()[0]
            rtts.append(float(value) / 1000.0)
        elif "packets transmitted" in line:
            parts = [p.strip() for p in line.split(",")]
            sent = int(parts[0].split()[0])
            received = int(parts[1].split()[0])
    return PingResult(sent=sent, received=received, rtts=tuple(rtts), tool="ping")


def _parse_raw(out: str) -> PingResult:
    rtts = []
    sent = received = 0
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if "rtt" in msg:
            rtts.append(float(msg["rtt"]))
        elif "sent" in msg:
            sent, received = msg["sent"], msg["received"]
    return PingResult(sent=sent, received=received, rtts=tuple(rtts), tool="python")


async def kernel_ping(
    ns: NetNamespace,
    host: str,
    *,
    count: int,
    size: int = 56,
    interval: float = 0.2,
    timeout: float = 2.0,
    use_ping: bool | None = None,
) -> PingResult:
    """Ping ``host`` from inside ``ns``: ``count`` echo requests of ``size``
    data bytes (sizes over the MTU go out fragmented), ``interval`` seconds
    apart, then wait up to ``timeout`` seconds for the outstanding replies.

    Uses the ``ping`` binary when present (``use_ping=None``), else (or with
    ``use_ping=False``) a raw ICMP socket snippet run inside the namespace.
    An IPv6 ``host`` (link-local with its scope: "fe80::1%tap0") is pinged
    with ICMPv6 either way.
    Losing every reply is a result, not an error.
    """
    if count < 1 or size < 0 or interval <= 0 or timeout <= 0:
        raise ValueError("need count >= 1, size >= 0, interval > 0, timeout > 0")
    if use_ping is None:
        use_ping = shutil.which("ping") is not None
    overall = count * interval + timeout + 10
    if use_ping:
        proc = await ns.run_async(
            "ping", "-n", "-c", count, "-s", size, "-i", interval,
            "-W", max(1, round(timeout)), "-M", "dont", host,
            check=False, timeout=overall,
        )
        if proc.returncode not in (0, 1):
            raise NetnsCommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return _parse_iputils(proc.stdout)
    proc = await ns.run_async(
        *ns.python(_RAW_PING), host, count, size, interval, timeout,
        check=True, timeout=overall,
    )
    return _parse_raw(proc.stdout)


def dnsmasq_binary() -> str:
    """dnsmasq's path (the dnsmasq-base package); skips the test without it."""
    found = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
    if found is None:
        pytest.skip("dnsmasq is missing (apt-get install dnsmasq-base)")
    return found


@asynccontextmanager
async def dnsmasq(ns: NetNamespace, ifname: str, workdir: Path, *options: str):
    """dnsmasq in ``ns`` on ``ifname`` only (no configuration file, no
    upstream servers, no hosts file; DNS, DHCP and router advertisements as
    ``options`` ask), logging to ``workdir/dnsmasq.log``; yields that path
    once its pid file is written, and stops it on exit."""
    log_path = workdir / "dnsmasq.log"
    pid_path = workdir / "dnsmasq.pid"
    with open(log_path, "wb") as log:
        daemon = ns.popen(
            dnsmasq_binary(), "--conf-file=/dev/null", "-k", "--log-facility=-",
            "--no-resolv", "--no-hosts", f"--pid-file={pid_path}",
            f"--dhcp-leasefile={workdir / 'leases'}", f"--interface={ifname}",
            "--except-interface=lo", "--bind-interfaces", *options,
            stdout=log, stderr=subprocess.STDOUT)
    try:
        with trio.fail_after(10):
            while not (pid_path.exists() and pid_path.read_text().strip()):
                assert daemon.poll() is None, log_path.read_text()
                await trio.sleep(0.02)
        yield log_path
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=5)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=5)
