"""One benchmark case, one run, in a process of its own (so RSS and CPU
figures are the trionet side's alone).

    python benchmarks/_cases.py CASE PARAMS_JSON [--profile FILE]

Prints ``RESULT {"metrics": {...}, "info": {...}}`` as its last line.
benchmarks/run.py starts this once per case and run; see README.md.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import signal
import sys
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The trionet tree measured: this repository's, or TRIONET_BENCH_TREE's
# (compare_trees.py runs this harness against an earlier tree, side by side).
sys.path.insert(0, os.environ.get("TRIONET_BENCH_TREE")
                or str(Path(__file__).resolve().parent.parent))

import trionet  # noqa: E402
from _peers import (BLOCK_SIZE, BULK_ECHO_CLIENT, CHECKSUM_PROBE, CONNECT_CLIENT,  # noqa: E402
                    ECHO_SERVER, HOLD_CLIENT, RTT_CLIENT, SENDER, SINK, cyclic_block, enable_ipv6, netns,
                    peer, run_peer, stream_sha256, tune_namespace)

# Addresses, all inside namespaces this process creates (or in-memory links).
TAP_KERNEL = "10.77.0.1"   # the kernel's end of the TAP, in the namespace
TAP_STACK = "10.77.0.2"    # trionet on the TAP
REF_CLIENT = "10.78.0.1"   # veth, namespace A (Linux client)
REF_SERVER = "10.78.0.2"   # veth, namespace B (Linux server)
CABLE_A, CABLE_B = "10.79.0.1", "10.79.0.2"
# The same over IPv6 (the *_v6 cases, params {"ipv6": true}): unique local
# addresses (RFC 4193), /64 as every IPv6 link.
TAP_KERNEL6, TAP_STACK6 = "fd77::1", "fd77::2"
REF_CLIENT6, REF_SERVER6 = "fd78::1", "fd78::2"
CABLE_A6, CABLE_B6 = "fd79::1", "fd79::2"
ECHO_PORT, SINK_PORT = 7, 5001
SEED = 20240604


def vm_rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def cpu_mark() -> tuple[float, float, float]:
    t = os.times()
    return t.user, t.system, time.perf_counter()


def cpu_busy(mark: tuple[float, float, float]) -> dict:
    """The trionet process's CPU time since ``mark`` (``cpu_mark()``) as a
    share of the wall time (1.0: one core busy all along): CPU-bound or
    waiting? The system part includes what the kernel does inside trionet's
    TAP writes (it processes each frame in the writer's system call)."""
    t = os.times()
    user, system, wall = t.user - mark[0], t.system - mark[1], time.perf_counter() - mark[2]
    return {"cpu_user_seconds": user, "cpu_system_seconds": system, "wall_seconds": wall,
            "cpu_share": (user + system) / wall if wall > 0 else None}


# ---------------------------------------------------------------------------
# trionet handlers


async def echo_handler(stream: trionet.Stream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


class Sink:
    """A handler that reads one connection to EOF, counting and hashing;
    timed from accept to EOF; then closes (the sender sees our FIN)."""

    def __init__(self):
        self.done = trio.Event()
        self.result: dict | None = None

    async def __call__(self, stream: trionet.Stream) -> None:
        t0 = time.perf_counter()
        h = hashlib.sha256()
        n = 0
        async with stream:
            async for data in stream:
                h.update(data)
                n += len(data)
            t1 = time.perf_counter()
        if self.result is None:
            self.result = {"bytes": n, "sha256": h.hexdigest(), "seconds": t1 - t0}
            self.done.set()


async def send_cyclic(stream: trionet.Stream, block: bytes, size: int) -> float:
    """Send ``size`` bytes of ``block`` repeated, half-close, wait for the
    peer's EOF; return the seconds taken."""
    t0 = time.perf_counter()
    view = memoryview(block)
    left, pos, chunk = size, 0, 1 << 18
    while left:
        k = min(left, chunk, len(block) - pos)
        await stream.send_all(view[pos:pos + k])
        left -= k
        pos = (pos + k) % len(block)
    await stream.send_eof()
    while await stream.receive_some():
        pass
    seconds = time.perf_counter() - t0
    await stream.aclose()
    return seconds


def verify(what: str, got: dict, size: int, sha: str) -> None:
    if got["bytes"] != size or got["sha256"] != sha:
        raise AssertionError(f"{what}: {got['bytes']} of {size} bytes arrived, sha256 "
                             f"{'matches' if got['sha256'] == sha else 'DIFFERS'}")


# ---------------------------------------------------------------------------
# Counting pass (tap_echo*, tap_connect*): what one request+reply (or one
# connection) costs on trionet's side, counted in a separate pass after the
# timed one, so the wrappers below never touch a timed figure.


class _EpollProxy:
    """Stands in for trio's ``select.epoll`` object while counting: the
    epoll_wait and epoll_ctl calls trio's IO manager makes."""

    def __init__(self, real, counter: "Counter"):
        self._real, self._counter = real, counter

    def poll(self, timeout=-1, maxevents=-1):
        self._counter.bump("epoll_wait")
        if timeout is None or timeout != 0:
            self._counter.bump("epoll_wait_blocking")
        return self._real.poll(timeout, maxevents)

    def register(self, *a):
        self._counter.bump("epoll_ctl")
        return self._real.register(*a)

    def modify(self, *a):
        self._counter.bump("epoll_ctl")
        return self._real.modify(*a)

    def unregister(self, *a):
        self._counter.bump("epoll_ctl")
        return self._real.unregister(*a)

    def __getattr__(self, name):
        return getattr(self._real, name)


def _proc_io() -> dict:
    """The kernel's count of this process's read-type and write-type system
    calls (/proc/self/io syscr, syscw: read/readv/pread..., write/writev...)."""
    try:
        with open("/proc/self/io") as f:
            fields = dict(line.split(":") for line in f if ":" in line)
        return {"syscr": int(fields["syscr"]), "syscw": int(fields["syscw"])}
    except (OSError, KeyError, ValueError):
        return {}


def _task_kind(task) -> str:
    """A task's role, from its name (the full names are in ``steps_by_task``)."""
    name = task.name
    if "handler" in name or "echo" in name:
        return "app"
    if "Tcp" in name or ".tcp." in name or "connection" in name.lower():
        return "connection"
    if "Interface" in name or "nic" in name.lower() or "link" in name.lower():
        return "nic"
    return "other"


#: What the counting pass counts (per request+reply, or per connection):
COUNT_KEYS = {
    "task_steps": "task steps (trio Instrument before_task_step), all tasks",
    "reschedules": "tasks made runnable (Instrument task_scheduled): wake-ups + checkpoint yields",
    "checkpoint_yields": "yields that reschedule at once (trio cancel_shielded_checkpoint "
                         "awaits, incl. via checkpoint(), sleep(0), channel send/receive)",
    "checkpoint_calls": "trio.lowlevel.checkpoint() awaits (a subset of checkpoint_yields)",
    "blocking_waits": "yields that park the task until woken (wait_task_rescheduled awaits)",
    "channel_sends": "memory-channel crossings: MemorySendChannel.send_nowait calls "
                     "(send() goes through it)",
    "channel_receives": "MemoryReceiveChannel.receive_nowait calls (receive() goes "
                        "through it; includes ones that found the channel empty)",
    "lot_parks": "trio ParkingLot.park (Event.wait, Lock, Condition, ...)",
    "sys_read": "os.read + os.readv calls (Python level)",
    "sys_write": "os.write + os.writev calls (Python level)",
    "epoll_wait": "epoll.poll calls by trio's IO manager (Python level), of them "
                  "epoll_wait_blocking with a timeout other than 0",
    "epoll_wait_blocking": "(see epoll_wait)",
    "epoll_ctl": "epoll register/modify/unregister by trio's IO manager (wait_readable etc.)",
    "syscalls": "sys_read + sys_write + epoll_wait + epoll_ctl (Python level)",
    "kernel_syscr": "read-type system calls the kernel counted for the process "
                    "(/proc/self/io syscr; all threads, incl. 1-2 reads of that file)",
    "kernel_syscw": "write-type system calls the kernel counted (/proc/self/io syscw)",
}


class Counter(trio.abc.Instrument):
    """The counting pass's instruments: a trio Instrument, and wrappers put
    in place of trio's yield primitives, the memory channels' methods and
    os.read/readv/write/writev wherever a module holds them (and undone
    after), and trio's epoll object swapped for a counting proxy. Counts
    only between ``start()`` and ``stop()``."""

    def __init__(self):
        self.on = False
        self.counts: dict[str, int] = {}
        self.by_task: dict[str, int] = {}
        self.by_kind: dict[str, int] = {}
        self._undo: list = []
        self._io0: dict = {}

    def bump(self, key: str, n: int = 1) -> None:
        if self.on:
            self.counts[key] = self.counts.get(key, 0) + n

    # trio.abc.Instrument
    def before_task_step(self, task) -> None:
        if self.on:
            self.counts["task_steps"] = self.counts.get("task_steps", 0) + 1
            kind = _task_kind(task)
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            self.by_task[task.name] = self.by_task.get(task.name, 0) + 1

    def task_scheduled(self, task) -> None:
        self.bump("reschedules")

    # wrapping
    def _replace_everywhere(self, orig, wrapper) -> None:
        for mod in list(sys.modules.values()):
            try:
                items = list(vars(mod).items())
            except TypeError:
                continue
            for attr, value in items:
                if value is orig:
                    setattr(mod, attr, wrapper)
                    self._undo.append((mod, attr, orig))

    def _wrap_async(self, orig, key: str):
        counter = self

        async def wrapper(*args, **kwargs):
            counter.bump(key)
            return await orig(*args, **kwargs)
        self._replace_everywhere(orig, wrapper)

    def _wrap_sync(self, orig, key: str, owner=None, attr=None):
        counter = self

        def wrapper(*args, **kwargs):
            counter.bump(key)
            return orig(*args, **kwargs)
        if owner is None:
            self._replace_everywhere(orig, wrapper)
        else:
            setattr(owner, attr, wrapper)
            self._undo.append((owner, attr, orig))

    def install(self) -> None:
        import trio.lowlevel as ll
        self._wrap_async(ll.checkpoint, "checkpoint_calls")
        self._wrap_async(ll.cancel_shielded_checkpoint, "checkpoint_yields")
        self._wrap_async(ll.wait_task_rescheduled, "blocking_waits")
        for cls, attr, key in ((trio.MemorySendChannel, "send_nowait", "channel_sends"),
                               (trio.MemoryReceiveChannel, "receive_nowait",
                                "channel_receives"),
                               (ll.ParkingLot, "park", "lot_parks")):
            orig = cls.__dict__[attr]
            self._wrap_sync(orig, key, cls, attr)
        for name, key in (("read", "sys_read"), ("readv", "sys_read"), ("write", "sys_write"),
                          ("writev", "sys_write")):
            self._wrap_sync(getattr(os, name), key)
        from trio._core._run import GLOBAL_RUN_CONTEXT  # private: the IO manager's epoll
        io = GLOBAL_RUN_CONTEXT.runner.io_manager
        if hasattr(io, "_epoll"):
            real = io._epoll
            io._epoll = _EpollProxy(real, self)
            self._undo.append((io, "_epoll", real))
        trio.lowlevel.add_instrument(self)

    def uninstall(self) -> None:
        trio.lowlevel.remove_instrument(self)
        for owner, attr, orig in reversed(self._undo):
            setattr(owner, attr, orig)
        self._undo.clear()

    def start(self) -> None:
        self._io0 = _proc_io()
        self.on = True

    def stop(self) -> None:
        self.on = False
        io1 = _proc_io()
        for k in ("syscr", "syscw"):
            if k in io1 and k in self._io0:
                self.counts[f"kernel_{k}"] = io1[k] - self._io0[k]

    def per(self, n: int, unit: str) -> dict:
        c = dict(self.counts)
        c["syscalls"] = sum(c.get(k, 0) for k in ("sys_read", "sys_write", "epoll_wait",
                                                  "epoll_ctl"))
        out = {k: c.get(k, 0) / n for k in COUNT_KEYS}
        for kind in ("app", "connection", "nic", "other"):
            out[f"task_steps_{kind}"] = self.by_kind.get(kind, 0) / n
        top = sorted(self.by_task.items(), key=lambda kv: -kv[1])[:8]
        return {"per": unit, "measured": n, "counts": out,
                "steps_by_task": {name: v / n for name, v in top}}


class CountWindow:
    """Turns a Counter on after ``warmup`` events and off after
    ``warmup + count`` (events: echoes or accepted connections) and sets
    ``done``."""

    def __init__(self, counter: Counter, warmup: int, count: int):
        self.counter, self.warmup, self.count = counter, warmup, count
        self.seen = 0
        self.done = trio.Event()

    def event(self, n: int = 1) -> None:
        before, self.seen = self.seen, self.seen + n
        if before < self.warmup <= self.seen:
            self.counter.start()
        if before < self.warmup + self.count <= self.seen:
            self.counter.stop()
            self.done.set()


COUNT_PORT = 17


async def count_echoes(tp, stack_ip: str, p: dict) -> dict:
    """The counting pass of the echo cases: a second echo server (port
    COUNT_PORT) that counts the 64-byte echoes it made; the Counter is on
    from the end of the ``counts_warmup``-th echo's send_all to the end of
    the ``counts``-th one after it. Per echo."""
    counter = Counter()
    window = CountWindow(counter, p.get("counts_warmup", 50), p["counts"])

    async def handler(stream):
        async with stream:
            got = 0
            async for data in stream:
                await stream.send_all(data)
                got += len(data)
                echoes, got = divmod(got, 64)
                if echoes:
                    window.event(echoes)

    stack, ns, nursery = tp
    await nursery.start(stack.serve_tcp, handler, COUNT_PORT)
    counter.install()
    try:
        params = dict(_rtt_params(p, stack_ip), port=COUNT_PORT, warmup=0,
                      count=window.warmup + window.count + 10)
        await run_peer(ns, RTT_CLIENT, params, timeout=120)
    finally:
        if counter.on:
            counter.stop()
        counter.uninstall()
    if not window.done.is_set():
        raise RuntimeError(f"counting pass: only {window.seen} echoes")
    return counter.per(window.count, "64-byte request + reply")


async def count_connections(tp, stack_ip: str, p: dict) -> dict:
    """The counting pass of the connection cases: one Linux client thread
    (connect, one 64-byte echo, close) against a second echo server on
    COUNT_PORT; the Counter runs from the handler start of connection
    ``counts_warmup`` to that of connection ``counts_warmup + counts`` (so it
    covers whole handshake-echo-close cycles). Per connection."""
    counter = Counter()
    window = CountWindow(counter, p.get("counts_warmup", 20), p["counts"])

    async def handler(stream):
        window.event()
        await echo_handler(stream)

    stack, ns, nursery = tp
    await nursery.start(stack.serve_tcp, handler, COUNT_PORT)
    counter.install()
    try:
        total = window.warmup + window.count + 5
        params = dict(_connect_params(dict(p, conn_seconds=30.0, conn_max=total), stack_ip, 1),
                      port=COUNT_PORT)
        await run_peer(ns, CONNECT_CLIENT, params, timeout=90)
    finally:
        if counter.on:
            counter.stop()
        counter.uninstall()
    if not window.done.is_set():
        raise RuntimeError(f"counting pass: only {window.seen} connections")
    return counter.per(window.count, "connection (connect, one 64-byte echo, close)")


# ---------------------------------------------------------------------------
# Setups


class OffloadRefused(Exception):
    """The kernel refused the TAP offloads (``TapLink.offload_error``), or
    (IPv6) drops trionet's segments on an offload TAP for their checksums:
    the offload cases are reported as skipped, with the reason."""


#: The TCP port the checksum probe connects to (closed: trionet answers RST).
PROBE_PORT = 9


async def probe_offload_checksums(ns, stack_ip: str) -> None:
    """OffloadRefused unless the kernel accepts trionet's TCP segments on
    this offload TAP: a connect to a closed port must be refused (trionet's
    RST taken) without TCP checksum errors. With ``offload=True`` the stack
    leaves TCP checksums to the link, and the TapLink completes them (asks
    the kernel to, NEEDS_CSUM) for the frames it recognises; checked here
    for IPv6, where a frame it does not recognise would go out without its
    checksum and the case could only time out."""
    r = await run_peer(ns, CHECKSUM_PROBE, {"host": stack_ip, "port": PROBE_PORT,
                                            "timeout": 0.3, "deadline": 10}, timeout=15)
    if r["outcome"] != "refused" or r["tcp_in_csum_errors"]:
        raise OffloadRefused(
            f"IPv6 over TapLink(offload=True): the kernel dropped trionet's TCP segments "
            f"(probe connect: {r['outcome']}, TCP InCsumErrors {r['tcp_in_csum_errors']}); "
            f"the link does not complete IPv6 checksums")


class TapPeer:
    def __init__(self, stack, ns, nursery, tap: str, link):
        self.stack, self.ns, self.nursery, self.tap, self.link = stack, ns, nursery, tap, link

    def __iter__(self):
        return iter((self.stack, self.ns, self.nursery))

    def report(self) -> dict:
        """Counters worth a look: trionet's drops, the TapLink's counters
        and the kernel's for the TAP."""
        states: dict[str, int] = {}
        for sock in self.stack.tcp.connections.values():
            states[sock.machine.state.name] = states.get(sock.machine.state.name, 0) + 1
        stats = self.stack.stats
        # getattr: the suite also runs against older trees (before/after).
        return {"offload": getattr(self.link, "offload", False), "trionet_drops": stats.drops(),
                "tcp_table": states,
                "trionet_tcp": {k: stats[k] for k in ("tcp.rx", "tcp.tx", "tcp.tx_coalesced",
                                                       "ipv4.tx_gso", "ipv4.rx", "ipv6.rx",
                                                       "ipv6.tx")},
                "tap_link": dict(self.link.stats), "tap_kernel": self.kernel_stats()}

    def kernel_stats(self) -> dict:
        """The kernel's counters for the TAP (its tx is what trionet receives)."""
        out = self.ns.ip("-j", "-s", "link", "show", "dev", self.tap, check=False).stdout
        try:
            s = json.loads(out)[0]["stats64"]
        except (ValueError, LookupError):
            return {}
        return {"tx_packets": s["tx"]["packets"], "tx_dropped": s["tx"]["dropped"],
                "rx_packets": s["rx"]["packets"], "rx_dropped": s["rx"]["dropped"]}


def tap_addresses(p: dict) -> tuple[str, str]:
    """(the kernel's address, trionet's) on the TAP, in the case's family."""
    return (TAP_KERNEL6, TAP_STACK6) if p.get("ipv6") else (TAP_KERNEL, TAP_STACK)


#: Duplicate address detection's RetransTimer for the IPv6 cases' stacks
#: (default 1 s, RFC 4861 10), and no random delay before the link-local
#: address's first DAD solicitation (default up to 1 s, RFC 4862 5.4.2):
#: DAD is setup, not measured, and the quick run has nine IPv6 setups.
DAD_RETRANS_TIMER = 0.1


def new_stack(ipv6: bool) -> trionet.Stack:
    """A Stack; for the IPv6 cases with a short DAD (``DAD_RETRANS_TIMER``;
    DAD itself stays on: the address joins its solicited-node group
    through it)."""
    if not ipv6:
        return trionet.Stack()
    from trionet.interface import AutoconfConfig
    return trionet.Stack(autoconf=AutoconfConfig(retrans_timer=DAD_RETRANS_TIMER,
                                                 max_rtr_solicitation_delay=0.0))


async def addresses_ready(*stacks, timeout: float = 10) -> None:
    """Wait until every address of ``stacks`` passed DAD (RFC 4862 5.4:
    packets to a tentative address are dropped, so a peer must not start
    before)."""
    with trio.fail_after(timeout):
        while any(not a.usable for s in stacks for i in s.interfaces for a in i.addresses):
            await trio.sleep(0.01)


@asynccontextmanager
async def tap_peer(offload: bool | None = False, ipv6: bool = False):
    """trionet at TAP_STACK on a fresh TAP moved into a fresh namespace where
    the kernel is TAP_KERNEL. Yields a TapPeer (unpacks to stack, ns, nursery).
    ``offload``: ``TapLink(offload=True)`` (virtio-net header, checksum and
    TSO offload both ways); OffloadRefused if the kernel refuses them.
    ``None``: ``TapLink(name)``, whatever the tree's default is (the
    "default link" cases; the JSON's ``offload`` says what it was).
    ``ipv6``: IPv6 only, trionet TAP_STACK6/64 and the kernel TAP_KERNEL6/64
    (IPv6 turned back on for the TAP in the namespace, ``nodad``).

    The stack closes first (closing the TAP's fd deletes the device), then
    the namespace is deleted; both also on errors and Ctrl-C."""
    name = netns.unique_name("tb")
    with netns.NetNamespace.create("bk") as ns:
        # plain cases: offload=False, explicitly; None: the default link (TapLink(name))
        link = trionet.TapLink(name) if offload is None else \
            trionet.TapLink(name, offload=offload)
        if offload and not link.offload:
            await link.aclose()
            raise OffloadRefused(f"the kernel refused TAP offloads: {link.offload_error}")
        async with new_stack(ipv6) as stack:
            if ipv6:
                stack.add_interface(link, f"{TAP_STACK6}/64")
                ns.move_link(name, None)
                enable_ipv6(ns, name, f"{TAP_KERNEL6}/64")
                await addresses_ready(stack)
                if getattr(link, "offload", False):
                    await probe_offload_checksums(ns, TAP_STACK6)
            else:
                stack.add_interface(link, f"{TAP_STACK}/24")
                ns.move_link(name, f"{TAP_KERNEL}/24")
            tune_namespace(ns)
            async with trio.open_nursery() as nursery:
                yield TapPeer(stack, ns, nursery, name, link)
                nursery.cancel_scope.cancel()
    drops = stack.stats["drop.internal.error"]
    if drops:
        raise AssertionError(f"trionet counted {drops} internal errors: {stack.stats.drops()}")


@asynccontextmanager
async def cable_pair(ipv6: bool = False, **impairments):
    """Two stacks joined by a virtual_cable (MTU 1500); ``ipv6``: at
    CABLE_A6 and CABLE_B6 instead."""
    a, b = trionet.virtual_cable(mtu=1500, **impairments)
    async with new_stack(ipv6) as client, new_stack(ipv6) as server:
        if ipv6:
            client.add_interface(a, f"{CABLE_A6}/64")
            server.add_interface(b, f"{CABLE_B6}/64")
            await addresses_ready(client, server)
        else:
            client.add_interface(a, f"{CABLE_A}/24")
            server.add_interface(b, f"{CABLE_B}/24")
        async with trio.open_nursery() as nursery:
            yield client, server, nursery
            nursery.cancel_scope.cancel()


def cable_report(client, server) -> dict:
    """What the cable dropped: random loss, and frames beyond an end's
    queue (``tx_dropped_full``: capacity 1024 frames)."""
    out = {}
    for who, stack in (("client", client), ("server", server)):
        stats = stack.interfaces[0].link.stats
        out[f"cable_{who}_tx"] = {k: stats[k] for k in ("tx_frames", "tx_dropped_loss",
                                                         "tx_dropped_full")}
    return out


async def trionet_transfer(client, server, nursery, host: str, size: int, timeout: float) -> dict:
    """``size`` bytes from ``client`` to a Sink on ``server``, verified."""
    block = cyclic_block(SEED)
    sha = stream_sha256(block, size)
    sink = Sink()
    listeners = await server.open_tcp_listeners(SINK_PORT)
    nursery.start_soon(trio.serve_listeners, sink, listeners)
    with trio.fail_after(timeout), PROFILING.measured():
        stream = await client.open_tcp_stream(host, SINK_PORT)
        info = stream.info
        send_seconds = await send_cyclic(stream, block, size)
        await sink.done.wait()
    for listener in listeners:
        await listener.aclose()
    verify("trionet -> trionet", sink.result, size, sha)
    end = stream.info
    return {"mbps": size / sink.result["seconds"] / 1e6, "seconds": sink.result["seconds"],
            "send_seconds": send_seconds, "mss": info.get("mss"),
            # The sender's loss recovery, for the loss case.
            **{k: end.get(k) for k in RECOVERY_INFO}}


#: The sender's counters worth a look after a transfer (``Stream.info``).
RECOVERY_INFO = ("retransmits", "rto_count", "tlp_count", "fast_recoveries", "rack_losses",
                 "spurious_retransmits", "dsacks_received", "srtt", "min_rtt", "rto",
                 "congestion")


# ---------------------------------------------------------------------------
# Cases. Each takes the params dict and returns {"metrics": ..., "info": ...}.


@contextmanager
def ref_pair(ipv6: bool = False):
    """Namespaces A (client, REF_CLIENT) and B (server, REF_SERVER) joined by
    a veth pair made inside them. Fresh for every measurement, so TIME-WAIT
    sockets of one do not slow the next one's port search. ``ipv6``: also
    REF_CLIENT6 and REF_SERVER6 (``nodad``) on the pair."""
    with netns.NetNamespace.create("ra") as a, netns.NetNamespace.create("rb") as b:
        if_a, if_b = netns.link_namespaces(a, f"{REF_CLIENT}/24", b, f"{REF_SERVER}/24")
        if ipv6:
            enable_ipv6(a, if_a, f"{REF_CLIENT6}/64")
            enable_ipv6(b, if_b, f"{REF_SERVER6}/64")
        tune_namespace(a)
        yield a, b


async def case_reference(p: dict) -> dict:
    """Linux <-> Linux over a veth pair between two namespaces; ``ipv6``:
    over IPv6, and with ``connections`` false only bulk and echo."""
    metrics, info = {}, {}
    size = p["bulk_size"]
    ipv6 = p.get("ipv6", False)
    server_ip = REF_SERVER6 if ipv6 else REF_SERVER
    if size:  # 0: no bulk (compare_trees.py when no bulk case is compared)
        with ref_pair(ipv6) as (a, b):
            async with peer(b, SINK, {"host": server_ip, "port": SINK_PORT,
                                      "deadline": 120}) as sink:
                await sink.read_json(30)
                sent = await run_peer(a, SENDER, {"host": server_ip, "port": SINK_PORT,
                                                  "size": size, "seed": SEED,
                                                  "block": BLOCK_SIZE, "deadline": 120},
                                      timeout=150)
                got = await sink.read_json(60)
        verify("Linux -> Linux", got, size, sent["sha256"])
        metrics["bulk_mbps"] = size / got["seconds"] / 1e6
    if p.get("bulk_echo_size"):
        # Bulk echo: the same client and server programs as tap_bulk_echo's
        # client and the echo cases' Linux server (selectors).
        with ref_pair(ipv6) as (a, b):
            async with peer(b, ECHO_SERVER, {"host": server_ip, "port": ECHO_PORT,
                                             "deadline": 300}) as server:
                await server.read_json(30)
                q = {"size": p["bulk_echo_size"], "timeout": 120}
                r = await run_peer(a, BULK_ECHO_CLIENT, _bulk_echo_params(q, server_ip),
                                   timeout=150)
        check_echo("Linux -> Linux echo", r, q["size"])
        metrics["bulk_echo_mbps"] = q["size"] / r["seconds"] / 1e6
        info["bulk_echo"] = r
    # Echo and connections, against a Python selectors echo server.
    for what in ("rtt", 1, 8) if p.get("connections", True) else \
            ("rtt",) if p.get("echo", True) else ():
        with ref_pair(ipv6) as (a, b):
            async with peer(b, ECHO_SERVER, {"host": server_ip, "port": ECHO_PORT,
                                             "deadline": 300}) as server:
                await server.read_json(30)
                if what == "rtt":
                    rtt = await run_peer(a, RTT_CLIENT, _rtt_params(p, server_ip), timeout=120)
                    metrics["echo_rtt_median_us"] = rtt["median"] * 1e6
                    metrics["echo_rtt_p99_us"] = rtt["p99"] * 1e6
                    info["rtt"] = rtt
                else:
                    name = "conn_per_s_seq" if what == 1 else "conn_per_s_par8"
                    r = await run_peer(a, CONNECT_CLIENT, _connect_params(p, server_ip, what),
                                       timeout=p["conn_seconds"] + 60)
                    metrics[name] = r["rate"]
                    info[name] = r
    return {"metrics": metrics, "info": info}


def _rtt_params(p: dict, host: str) -> dict:
    return {"host": host, "port": ECHO_PORT, "size": 64, "count": p["rtt_count"],
            "warmup": p["rtt_warmup"], "deadline": 60}


def _connect_params(p: dict, host: str, parallel: int) -> dict:
    return {"host": host, "port": ECHO_PORT, "size": 64, "parallel": parallel,
            "seconds": p["conn_seconds"], "max": p["conn_max"], "deadline": p["conn_seconds"] + 40}


async def case_tap_bulk_in(p: dict) -> dict:
    """Linux -> trionet over TAP; trionet's sink times and hashes."""
    size = p["size"]
    _, stack_ip = tap_addresses(p)
    async with tap_peer(p.get("offload", False), p.get("ipv6", False)) as tp:
        stack, ns, nursery = tp
        sink = Sink()
        listeners = await stack.open_tcp_listeners(SINK_PORT)
        nursery.start_soon(trio.serve_listeners, sink, listeners)
        mark = cpu_mark()
        with PROFILING.measured():
            sent = await run_peer(ns, SENDER, {"host": stack_ip, "port": SINK_PORT,
                                               "size": size, "seed": SEED, "block": BLOCK_SIZE,
                                               "deadline": p["timeout"]},
                                  timeout=p["timeout"] + 30)
            with trio.fail_after(10):
                await sink.done.wait()
        cpu = cpu_busy(mark)
        verify("Linux -> trionet", sink.result, size, sent["sha256"])
        report = tp.report()
    return {"metrics": {"mbps": size / sink.result["seconds"] / 1e6},
            "info": {"seconds": sink.result["seconds"], "sender": sent, **cpu, **report}}


async def case_tap_bulk_out(p: dict) -> dict:
    """trionet -> Linux over TAP; the Linux sink times and hashes."""
    size = p["size"]
    block = cyclic_block(SEED)
    sha = stream_sha256(block, size)
    kernel_ip, _ = tap_addresses(p)
    async with tap_peer(p.get("offload", False), p.get("ipv6", False)) as tp:
        stack, ns, nursery = tp
        async with peer(ns, SINK, {"host": kernel_ip, "port": SINK_PORT,
                                   "deadline": p["timeout"]}) as sink:
            await sink.read_json(30)
            mark = cpu_mark()
            with trio.fail_after(p["timeout"]), PROFILING.measured():
                stream = await stack.open_tcp_stream(kernel_ip, SINK_PORT)
                send_seconds = await send_cyclic(stream, block, size)
                got = await sink.read_json(p["timeout"])
            cpu = cpu_busy(mark)
        verify("trionet -> Linux", got, size, sha)
        info = stream.info
        report = tp.report()
    return {"metrics": {"mbps": size / got["seconds"] / 1e6},
            "info": {"seconds": got["seconds"], "send_seconds": send_seconds,
                     "retransmits": info.get("retransmits"), **cpu, **report}}


async def case_tap_echo(p: dict) -> dict:
    """64-byte echo round trips: Linux client, trionet echo server."""
    _, stack_ip = tap_addresses(p)
    async with tap_peer(p.get("offload", False), p.get("ipv6", False)) as tp:
        stack, ns, nursery = tp
        await nursery.start(stack.serve_tcp, echo_handler, ECHO_PORT)
        with PROFILING.measured():
            rtt = await run_peer(ns, RTT_CLIENT, _rtt_params(p, stack_ip), timeout=120)
        report = tp.report()
        # After the timed pass, on the same stack: the per-echo counts.
        counts = await count_echoes(tp, stack_ip, p) if p.get("counts") else None
    result = {"metrics": {"rtt_median_us": rtt["median"] * 1e6, "rtt_p99_us": rtt["p99"] * 1e6},
              "info": {**rtt, **report}}
    if counts:
        result["counts"] = counts
    return result


async def case_tap_bulk_echo(p: dict) -> dict:
    """Bulk echo, both directions at once, over a TAP opened with the
    default link settings (``TapLink(name)``; the JSON's ``offload`` says
    what that was): the Linux client sends ``size`` bytes and reads the echo
    at the same time; trionet runs the echo server. Byte count and SHA-256
    of the echo verified; timed by the client from its first byte to the
    echo's EOF."""
    _, stack_ip = tap_addresses(p)
    async with tap_peer(p.get("offload"), p.get("ipv6", False)) as tp:
        stack, ns, nursery = tp
        await nursery.start(stack.serve_tcp, echo_handler, ECHO_PORT)
        mark = cpu_mark()
        with PROFILING.measured():
            r = await run_peer(ns, BULK_ECHO_CLIENT, _bulk_echo_params(p, stack_ip),
                               timeout=p["timeout"] + 30)
        cpu = cpu_busy(mark)
        report = tp.report()
    check_echo("Linux -> trionet -> Linux", r, p["size"])
    return {"metrics": {"mbps": p["size"] / r["seconds"] / 1e6},
            "info": {"client": r, "link_default": p.get("offload") is None, **cpu, **report}}


def _bulk_echo_params(p: dict, host: str) -> dict:
    return {"host": host, "port": ECHO_PORT, "size": p["size"], "seed": SEED,
            "block": BLOCK_SIZE, "deadline": p["timeout"]}


def check_echo(what: str, r: dict, size: int) -> None:
    """The bulk echo client's result: all ``size`` bytes sent and echoed,
    the echo's SHA-256 that of what was sent."""
    if "send_error" in r or r.get("sent") != size:
        raise AssertionError(f"{what}: the client sent {r.get('sent')} of {size} bytes "
                             f"({r.get('send_error', 'deadline')})")
    verify(what, {"bytes": r["bytes"], "sha256": r["sha256"]}, size, r["expected_sha256"])


async def case_tap_connect(p: dict) -> dict:
    """Connections per second: Linux client (connect, one echo, close),
    sequential and 8 in parallel; trionet echo server."""
    metrics, info = {}, {}
    names = {1: "conn_per_s_seq", 8: "conn_per_s_par8"}
    counts = None
    # p["parallel"] (e.g. [8] with --param, to profile one of them alone).
    for parallel in p.get("parallel", [1, 8]):
        name = names[parallel]
        # A fresh TAP and namespace each, as for the reference.
        async with tap_peer(p.get("offload", False)) as tp:
            stack, ns, nursery = tp
            await nursery.start(stack.serve_tcp, echo_handler, ECHO_PORT)
            mark = cpu_mark()
            with PROFILING.measured():
                r = await run_peer(ns, CONNECT_CLIENT, _connect_params(p, TAP_STACK, parallel),
                                   timeout=p["conn_seconds"] + 60)
            r.update(cpu_busy(mark))
            r.update(tp.report())
            if p.get("counts") and counts is None:  # after the timed pass
                counts = await count_connections(tp, TAP_STACK, p)
        metrics[name] = r["rate"]
        info[name] = r
    result = {"metrics": metrics, "info": info}
    if counts:
        result["counts"] = counts
    return result


async def case_tap_idle(p: dict) -> dict:
    """N established connections held by this process: RSS per connection,
    CPU while idle, then one echo through each."""
    count = p["count"]
    accepted = 0
    all_in = trio.Event()

    async def handler(stream):
        nonlocal accepted
        accepted += 1
        if accepted >= target:
            all_in.set()
        await echo_handler(stream)

    target = count
    async with tap_peer() as tp:
        stack, ns, nursery = tp
        await nursery.start(stack.serve_tcp, handler, ECHO_PORT)
        await trio.sleep(0.2)
        gc.collect()
        rss_before = vm_rss_kb()
        async with peer(ns, HOLD_CLIENT, {"host": TAP_STACK, "port": ECHO_PORT, "count": count,
                                          "window": p["window"], "deadline": p["timeout"],
                                          "echo_timeout": 60,
                                          "echo_window": p["echo_window"]},
                        stdin=True) as client:
            opened = await client.read_json(p["timeout"] + 10)
            target = opened["established"]
            if accepted >= target:
                all_in.set()
            with trio.move_on_after(30):
                await all_in.wait()
            await trio.sleep(0.5)  # let the last ACKs and wake-ups settle
            gc.collect()
            rss_after = vm_rss_kb()
            connections = len(stack.tcp.connections)
            # idle
            wall0, cpu0 = time.perf_counter(), cpu_seconds()
            await trio.sleep(p["idle_seconds"])
            wall1, cpu1 = time.perf_counter(), cpu_seconds()
            kernel_before_echo = tp.kernel_stats()
            await client.send_line("echo")
            echo = await client.read_json(90)
            kernel_after_echo = tp.kernel_stats()
            await client.close_stdin()
            await client.wait(30)
            report = tp.report()
    held = min(accepted, opened["established"])
    return {"metrics": {
        "connections": held,
        "rss_per_conn_kb": (rss_after - rss_before) / max(1, held),
        "idle_cpu_percent": 100.0 * (cpu1 - cpu0) / (wall1 - wall0),
        "echoed": echo["echoed"],
        "echo_seconds": echo["seconds"],
        "setup_conn_per_s": opened["established"] / opened["seconds"],
    }, "info": {"opened": opened, "accepted": accepted, "table": connections,
                "rss_before_kb": rss_before, "rss_after_kb": rss_after, "echo": echo,
                "tap_kernel_before_echo": kernel_before_echo,
                "tap_kernel_after_echo": kernel_after_echo, **report}}


async def case_cable_bulk(p: dict) -> dict:
    """trionet -> trionet, two stacks in this process, virtual_cable MTU 1500."""
    ipv6 = p.get("ipv6", False)
    async with cable_pair(ipv6, seed=SEED) as (client, server, nursery):
        r = await trionet_transfer(client, server, nursery, CABLE_B6 if ipv6 else CABLE_B,
                                   p["size"], p["timeout"])
        r.update(cable_report(client, server))
    return {"metrics": {"mbps": r["mbps"]}, "info": r}


async def case_loopback_bulk(p: dict) -> dict:
    """trionet -> trionet on one stack over LoopbackLink at 127.0.0.1 (or
    ::1 with ``ipv6``)."""
    ipv6 = p.get("ipv6", False)
    host = "::1" if ipv6 else "127.0.0.1"
    async with trionet.Stack() as stack:
        stack.add_interface(trionet.LoopbackLink(), "::1/128" if ipv6 else "127.0.0.1/8")
        async with trio.open_nursery() as nursery:
            r = await trionet_transfer(stack, stack, nursery, host, p["size"], p["timeout"])
            nursery.cancel_scope.cancel()
    return {"metrics": {"mbps": r["mbps"]}, "info": r}


async def case_loss_goodput(p: dict) -> dict:
    """Goodput of a transfer over virtual_cable with random loss each way
    (real clock), and without loss for the ratio. One-way latency
    p["latency"] (default 0: the RTT is the stacks' own processing time)."""
    metrics, info = {}, {}
    seed = SEED + p.get("run", 0)
    names = {0.0: "lossless", 0.01: "loss1", 0.05: "loss5"}
    # p["losses"] (e.g. [0.05] with --param, to profile one of them alone).
    for loss in p.get("losses", [0.0, 0.01, 0.05]):
        name = names[loss]
        async with cable_pair(loss=loss, latency=p.get("latency", 0.0),
                              seed=f"{seed}-{name}") as (client, server, nursery):
            r = await trionet_transfer(client, server, nursery, CABLE_B, p["size"], p["timeout"])
            r.update(cable_report(client, server))
        metrics[f"{name}_mbps"] = r["mbps"]
        info[name] = r
    for name in ("loss1", "loss5"):
        if "lossless_mbps" in metrics and f"{name}_mbps" in metrics:
            metrics[f"{name}_ratio"] = metrics[f"{name}_mbps"] / metrics["lossless_mbps"]
    return {"metrics": metrics, "info": info}


async def case_sim_transfer(p: dict) -> dict:
    """trionet.testing.Network in virtual time: one host sends to another for
    p["sim_seconds"] simulated seconds over a path with 10 ms latency, 1%
    loss and p["bandwidth"] bytes/s; how much wall time that costs."""
    from trionet.testing import Network

    wall_start = time.perf_counter()
    cpu_start = cpu_seconds()
    received = 0
    async with Network(seed=SEED, latency=0.01, loss=0.01, bandwidth=p["bandwidth"]) as net:
        sender, receiver = net.add_host("sender"), net.add_host("receiver")

        async def sink(stream):
            nonlocal received
            async for chunk in stream:
                received += len(chunk)

        async with trio.open_nursery() as nursery:
            await nursery.start(receiver.run, trio.serve_tcp, sink, 5001)

            async def send():
                stream = await trio.open_tcp_stream("receiver", 5001)
                block = b"x" * 65536
                with trio.move_on_at(trio.current_time() + p["sim_seconds"]):
                    while True:
                        await stream.send_all(block)
            sim_start = trio.current_time()
            with PROFILING.measured():
                await sender.run(send)
            simulated = trio.current_time() - sim_start
            info = {"retransmits": sum(s.machine.retransmits for s in
                                       sender.stack.tcp.connections.values()),
                    "frames": dict(net.switch.ports["sender"].stats)}
            nursery.cancel_scope.cancel()
    wall = time.perf_counter() - wall_start
    return {"metrics": {"wall_seconds": wall, "sim_per_wall": simulated / wall,
                        "goodput_mbps": received / simulated / 1e6},
            "info": {"simulated_seconds": simulated, "received_bytes": received,
                     "cpu_seconds": cpu_seconds() - cpu_start, **info}}


async def case_sim_hosts(p: dict) -> dict:
    """p["hosts"] hosts on one simulated LAN (1 ms latency), each echoing
    p["size"] bytes through its right-hand neighbour, all at once; wall
    time and frames switched."""
    from trionet.testing import Network

    wall_start = time.perf_counter()
    count = p["hosts"]
    ok = 0
    async with Network(seed=SEED, latency=0.001) as net:
        hosts = [net.add_host(f"h{i}") for i in range(count)]
        data = cyclic_block(SEED)[:p["size"]] if p["size"] <= BLOCK_SIZE else \
            bytes(p["size"])
        async with trio.open_nursery() as nursery:
            for host in hosts:
                await nursery.start(host.run, trio.serve_tcp, echo_handler, 7)

            async def talk(i):
                nonlocal ok
                stream = await trio.open_tcp_stream(f"h{(i + 1) % count}", 7)
                async with stream:
                    await stream.send_all(data)
                    await stream.send_eof()
                    got = bytearray()
                    async for chunk in stream:
                        got += chunk
                if got == data:
                    ok += 1

            sim_start = trio.current_time()
            with PROFILING.measured():
                async with trio.open_nursery() as talkers:
                    for i, host in enumerate(hosts):
                        talkers.start_soon(host.run, talk, i)
            simulated = trio.current_time() - sim_start
            frames = sum(port.stats["tx_frames"] for port in net.switch.ports.values())
            nursery.cancel_scope.cancel()
    wall = time.perf_counter() - wall_start
    if ok != count:
        raise RuntimeError(f"only {ok} of {count} echoes came back whole")
    return {"metrics": {"wall_seconds": wall, "frames_per_s": frames / wall},
            "info": {"simulated_seconds": simulated, "frames": frames, "echoes": ok}}


case_sim_transfer.virtual_time = True
case_sim_hosts.virtual_time = True


CASES = {
    "reference": case_reference,
    "reference_v6": case_reference,              # the same with {"ipv6": true}
    "tap_bulk_in": case_tap_bulk_in,
    "tap_bulk_in_v6": case_tap_bulk_in,
    "tap_bulk_out": case_tap_bulk_out,
    "tap_bulk_out_v6": case_tap_bulk_out,
    "tap_bulk_in_offload": case_tap_bulk_in,    # the same with {"offload": true}
    "tap_bulk_in_offload_v6": case_tap_bulk_in,
    "tap_bulk_out_offload": case_tap_bulk_out,
    "tap_bulk_out_offload_v6": case_tap_bulk_out,
    "tap_echo": case_tap_echo,
    "tap_echo_v6": case_tap_echo,
    "tap_echo_offload": case_tap_echo,
    "tap_echo_offload_v6": case_tap_echo,
    "tap_bulk_echo": case_tap_bulk_echo,
    "tap_bulk_echo_v6": case_tap_bulk_echo,
    "tap_connect": case_tap_connect,
    "tap_connect_offload": case_tap_connect,
    "tap_idle": case_tap_idle,
    "cable_bulk": case_cable_bulk,
    "cable_bulk_v6": case_cable_bulk,
    "loopback_bulk": case_loopback_bulk,
    "loopback_bulk_v6": case_loopback_bulk,
    "loss_goodput": case_loss_goodput,
    "sim_transfer": case_sim_transfer,
    "sim_100_hosts": case_sim_hosts,
}


class Profiling:
    """``--profile``: cProfile only the measured part of a case (``with
    PROFILING.measured():`` around it), or the whole case if it has none."""

    def __init__(self):
        self.profiler = None
        self.used = False

    @contextmanager
    def measured(self):
        if self.profiler is None:
            yield
            return
        self.used = True
        self.profiler.enable()
        try:
            yield
        finally:
            self.profiler.disable()


PROFILING = Profiling()


def profile_report(name: str, prof, scope: str) -> str:
    import io
    import pstats
    root = str(Path(__file__).resolve().parent.parent) + "/"
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    text.write(f"Profiled: {scope}.\n")
    text.write(f"\n=== {name}: top 15 functions by tottime ===\n")
    stats.sort_stats("tottime").print_stats(15)
    # By cumulative time the trio run loop and this file's coroutines come
    # first and say nothing: only trionet's own functions are listed.
    text.write(f"\n=== {name}: top 15 trionet functions by cumulative time ===\n")
    stats.sort_stats("cumulative").print_stats(r"/trionet/", 15)
    text.write(by_file(stats))
    out = text.getvalue().replace(root, "")
    for prefix in {sys.prefix, sys.base_prefix}:
        out = out.replace(prefix + "/", "")
    return out


def by_file(stats, top: int = 15) -> str:
    """Own time summed per source file (each built-in on its own line), with
    its share of the total: where the time goes when no one function stands
    out (trio's scheduler, trionet's layers, ipaddress, attrs, system calls)."""
    groups: dict[str, list] = {}
    total_tt = 0.0
    total_calls = 0
    for (file, _line, func), (_cc, nc, tt, _ct, _callers) in stats.stats.items():
        key = func if file == "~" else file
        g = groups.setdefault(key, [0.0, 0, 0])
        g[0] += tt
        g[1] += nc
        g[2] += 1
        total_tt += tt
        total_calls += nc
    lines = [f"\n=== own time by source file (built-ins each alone), top {top} of "
             f"{len(groups)}; {total_calls} calls, {total_tt:.3f} s ===",
             f"{'own s':>8} {'share':>6} {'calls':>9} {'functions':>9}  file"]
    for key, (tt, nc, nf) in sorted(groups.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"{tt:8.3f} {100 * tt / total_tt:5.1f}% {nc:9d} {nf:9d}  {key}")
    parts: dict[str, list] = {}
    for key, (tt, nc, _) in groups.items():
        p = parts.setdefault(_component(key), [0.0, 0])
        p[0] += tt
        p[1] += nc
    lines.append("\n=== own time by component ===")
    lines.append(f"{'own s':>8} {'share':>6} {'calls':>9}  component")
    for key, (tt, nc) in sorted(parts.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"{tt:8.3f} {100 * tt / total_tt:5.1f}% {nc:9d}  {key}")
    return "\n".join(lines) + "\n"


#: (component, substrings of a file or built-in name), first match wins.
_COMPONENTS = (
    ("attrs (incl. generated __init__/__eq__)", ("/attr/", "<attrs generated")),
    ("system calls: TAP/fd write", ("posix.write", "posix.writev")),
    ("system calls: TAP/fd read", ("posix.read", "posix.readv")),
    ("system calls: epoll wait", ("select.epoll",)),
    ("hashing (sha256 of the benchmark's sink)", ("_hashlib",)),
    ("trio (scheduler, channels, checkpoints)", ("/trio/", "/outcome/", "/sniffio/")),
    ("trionet tcp", ("/trionet/tcp/",)),
    ("trionet wire (parse/build, checksum)", ("/trionet/wire/",)),
    ("trionet link", ("/trionet/link/",)),
    ("trionet stack/interface/ip/arp", ("/trionet/",)),
    ("stdlib ipaddress", ("ipaddress.py",)),
    ("stdlib contextlib/enum/other", ("/lib/python3",)),
    ("benchmark code", ("/benchmarks/",)),
)


def _component(key: str) -> str:
    for name, marks in _COMPONENTS:
        if any(m in key for m in marks):
            return name
    return "other built-ins" if key.startswith("<") else "other"


def main(argv: list[str]) -> int:
    # Ctrl-C and run.py's SIGINT must unwind the case (removing its namespace)
    # even when started with SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    name, params = argv[1], json.loads(argv[2])
    profile = argv[4] if len(argv) > 4 and argv[3] == "--profile" else None
    fn = CASES[name]
    try:
        result = run_case(name, fn, params, profile)
    except OffloadRefused as exc:
        result = {"skipped": str(exc)}
    result["trionet_tree"] = str(Path(trionet.__file__).resolve().parent.parent)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def run_case(name: str, fn, params: dict, profile: str | None) -> dict:
    def run():
        if getattr(fn, "virtual_time", False):  # a simulated network: autojump clock
            return trio.run(fn, params, clock=trio.testing.MockClock(autojump_threshold=0))
        return trio.run(fn, params)

    if profile:
        import cProfile
        PROFILING.profiler = cProfile.Profile()
        result = run()
        scope = "the measured transfer only (setup excluded)"
        if not PROFILING.used:  # the case marks no section: profile it all
            PROFILING.profiler = prof = cProfile.Profile()
            result = prof.runcall(run)
            scope = "the whole case, setup included"
        Path(profile).write_text(profile_report(name, PROFILING.profiler, scope))
        return result
    return run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
