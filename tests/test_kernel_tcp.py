"""trionet's TCP against the Linux kernel as the peer (issue 3).

The stack runs in this process on a TAP device moved into a fresh network
namespace (tests/netns.py, tests/kernel_tcp_support.py): the kernel is
10.0.0.1/24, trionet 10.0.0.2/24. Real clock; needs root and /dev/net/tun.
Kernel-side clients and servers are Python socket snippets run in the
namespace.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import io
import os
import random
import subprocess
import sys

import pytest
import trio

import trionet

try:
    from . import netns
    from .kernel_tcp_support import (
        CONNECT, ECHO_CLIENT, KERNEL_IP, LISTENER, MANY_CLIENTS, RESET_CLIENT,
        RESET_WHILE_BLOCKED, RESETTING_LISTENER, ROOT, SEND_THEN_WAIT, SLOW_READER, STACK_IP,
        background, echo_handler, kernel_peer, run_snippet)
except ImportError:
    import netns
    from kernel_tcp_support import (
        CONNECT, ECHO_CLIENT, KERNEL_IP, LISTENER, MANY_CLIENTS, RESET_CLIENT,
        RESET_WHILE_BLOCKED, RESETTING_LISTENER, ROOT, SEND_THEN_WAIT, SLOW_READER, STACK_IP,
        background, echo_handler, kernel_peer, run_snippet)

pytestmark = netns.KERNEL_PEER

ECHO_PORT = 7
MB = 1 << 20
#: Run both ways: on a plain TAP and on an offload one (the default).
OFFLOAD = pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])


def _no_internal_errors(stack: trionet.Stack) -> None:
    assert stack.stats["drop.internal.error"] == 0, stack.stats.drops()


# --- 1. a Linux client through a trionet echo server -------------------------------


async def _echo_through_trionet(nbytes: int, seconds: float, offload: bool = True) -> dict:
    with trio.fail_after(seconds):
        async with kernel_peer(offload=offload) as peer:
            await peer.nursery.start(peer.stack.serve_tcp, echo_handler, ECHO_PORT)
            result = await run_snippet(peer.ns, ECHO_CLIENT, STACK_IP, ECHO_PORT, nbytes,
                                       timeout=seconds - 5)
            _no_internal_errors(peer.stack)
    assert result["sent"] == nbytes
    assert result["received"] == nbytes, result
    assert result["received_sha"] == result["sent_sha"]
    rate = 2 * nbytes / MB / result["seconds"]
    print(f"\necho {nbytes / MB:.0f} MB each way: {result['seconds']:.2f} s, "
          f"{rate:.2f} MB/s (both directions together), "
          f"{nbytes / MB / result['seconds']:.2f} MB/s each way")
    return result


@OFFLOAD
async def test_linux_client_echoes_1mb(offload):
    await _echo_through_trionet(1 * MB, 60, offload)


@pytest.mark.slow
async def test_linux_client_echoes_10mb():
    await _echo_through_trionet(10 * MB, 110)


# --- 2. 100 concurrent Linux clients ----------------------------------------------


async def test_100_concurrent_linux_clients():
    with trio.fail_after(60):
        async with kernel_peer() as peer:
            await peer.nursery.start(peer.stack.serve_tcp, echo_handler, ECHO_PORT)
            result = await run_snippet(peer.ns, MANY_CLIENTS, STACK_IP, ECHO_PORT, 100,
                                       timeout=50)
            assert result == {"ok": 100, "errors": []}
            assert peer.stack.stats["tcp.passive_opens"] >= 100
            _no_internal_errors(peer.stack)


# --- 3. a Linux connect to a closed trionet port ----------------------------------


async def test_linux_connect_to_closed_port_is_refused():
    with trio.fail_after(30):
        async with kernel_peer() as peer:
            result = await run_snippet(peer.ns, CONNECT, STACK_IP, 9, timeout=20)
            assert result == {"result": "refused", "errno": errno.ECONNREFUSED}
            assert peer.stack.stats["tcp.closed_port"] >= 1
            assert peer.stack.stats["tcp.tx_reset"] >= 1
            _no_internal_errors(peer.stack)


# --- 4. webget against python -m http.server ---------------------------------------


HTTP_PORT = 8000


def _http_server_argv(directory) -> list[str]:
    return [sys.executable, "-u", "-m", "http.server", str(HTTP_PORT),
            "--bind", KERNEL_IP, "--directory", str(directory)]


async def _wait_serving(server) -> None:
    line = await server.read_line(20)
    assert "Serving HTTP" in line, line


def _load_webget():
    spec = importlib.util.spec_from_file_location("trionet_example_webget",
                                                  ROOT / "examples" / "webget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_webget_fetch_in_process(tmp_path):
    pytest.importorskip("h11")
    webget = _load_webget()
    body = os.urandom(200_000)
    (tmp_path / "file").write_bytes(body)
    with trio.fail_after(60):
        async with kernel_peer() as peer:
            async with background(peer.ns, *_http_server_argv(tmp_path)) as server:
                await _wait_serving(server)
                out = io.BytesIO()
                code = await webget.fetch(peer.stack, f"http://{KERNEL_IP}:{HTTP_PORT}/file", out)
            assert code == 0
            assert out.getvalue() == body
            _no_internal_errors(peer.stack)


async def test_webget_example_subprocess(tmp_path):
    """examples/webget.py as a program. The persistent TAP is moved into the
    namespace first and webget runs inside the namespace, where TUNSETIFF
    finds it: webget connects as soon as it starts, so starting it in the
    root namespace and moving the TAP afterwards would race its first SYN."""
    pytest.importorskip("h11")
    body = os.urandom(200_000)
    (tmp_path / "file").write_bytes(body)
    tap = netns.unique_name("kw")
    subprocess.run(["ip", "tuntap", "add", tap, "mode", "tap"], check=True, timeout=10)
    try:
        with trio.fail_after(60):
            with netns.NetNamespace.create("kw") as ns:
                try:
                    ns.move_link(tap, f"{KERNEL_IP}/24")
                    async with background(ns, *_http_server_argv(tmp_path)) as server:
                        await _wait_serving(server)
                        proc = await ns.run_async(
                            sys.executable, str(ROOT / "examples" / "webget.py"),
                            "--tap", tap, "--address", f"{STACK_IP}/24",
                            f"http://{KERNEL_IP}:{HTTP_PORT}/file",
                            text=False, check=False, timeout=40)
                    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
                    assert len(proc.stdout) == len(body)
                    assert proc.stdout == body
                finally:
                    ns.ip("link", "del", tap, check=False)
    finally:
        if subprocess.run(["ip", "link", "show", tap], capture_output=True).returncode == 0:
            subprocess.run(["ip", "link", "del", tap], capture_output=True, timeout=10)


# --- 5. a trionet client to a Linux listener --------------------------------------


@OFFLOAD
async def test_trionet_client_to_linux_listener(offload):
    reply_size, seed = 100_000, 1234
    expected = random.Random(seed).randbytes(reply_size)
    request = b"GET the whole thing, please\r\n" * 1000
    with trio.fail_after(60):
        async with kernel_peer(offload=offload) as peer:
            async with background(peer.ns, *peer.ns.python(LISTENER),
                                  KERNEL_IP, reply_size, seed) as listener:
                port = (await listener.read_json(20))["port"]
                async with await peer.stack.open_tcp_stream(KERNEL_IP, port) as stream:
                    assert stream.remote_address == (KERNEL_IP, port)
                    assert stream.local_address[0] == STACK_IP
                    await stream.send_all(request)
                    await stream.send_eof()
                    reply = bytearray()
                    while chunk := await stream.receive_some():
                        reply += chunk
                seen = await listener.read_json(20)
            assert seen["peer"][0] == STACK_IP
            assert seen["request"] == len(request)
            assert seen["request_sha"] == hashlib.sha256(request).hexdigest()
            assert len(reply) == reply_size
            assert bytes(reply) == expected
            _no_internal_errors(peer.stack)


# --- 6. trionet connects to a closed port, and to nobody ----------------------------


async def test_trionet_connect_to_closed_linux_port_is_refused():
    with trio.fail_after(30):
        async with kernel_peer() as peer:
            with pytest.raises(ConnectionRefusedError) as info:
                with trio.fail_after(10):
                    await peer.stack.open_tcp_stream(KERNEL_IP, 9)
            assert info.value.errno == errno.ECONNREFUSED
            _no_internal_errors(peer.stack)


async def test_trionet_connect_to_absent_host_fails_in_bounded_time():
    with trio.fail_after(40):
        async with kernel_peer() as peer:
            peer.stack.tcp.config.syn_retries = 2
            start = trio.current_time()
            with pytest.raises(OSError) as info:
                with trio.fail_after(20):
                    await peer.stack.open_tcp_stream("10.0.0.3", 80)
            elapsed = trio.current_time() - start
            assert not isinstance(info.value, trio.TooSlowError)
            assert isinstance(info.value, TimeoutError) or info.value.errno == errno.EHOSTUNREACH, \
                repr(info.value)
            assert info.value.errno in (errno.ETIMEDOUT, errno.EHOSTUNREACH), repr(info.value)
            print(f"\nconnect to 10.0.0.3 failed after {elapsed:.2f} s: {info.value!r}")
            _no_internal_errors(peer.stack)


# --- 7. a Linux client resets ------------------------------------------------------


@pytest.mark.parametrize("when", ["after_echo", "while_handler_blocked_sending"])
async def test_linux_client_reset_breaks_handler_and_stack_keeps_serving(when):
    """after_echo: the handler waits in receive_some when the RST comes.
    while_handler_blocked_sending: the client never reads, so the handler is
    stuck in send_all (the client's tiny window is full) when the RST comes."""
    outcomes: list[str] = []
    done = trio.Event()

    async def handler(stream):
        where = "receive_some"
        async with stream:
            try:
                async for data in stream:
                    where = "send_all"
                    await stream.send_all(data)
                    where = "receive_some"
            except trio.BrokenResourceError:
                outcomes.append(f"broken in {where}")
            except BaseException as exc:
                outcomes.append(f"{type(exc).__name__} in {where}")
                raise
            else:
                outcomes.append("eof")
            finally:
                done.set()

    # Blocked sending: a plain TAP. With TSO the Linux client's send buffer
    # and trionet's auto-tuned receive buffer can together take all 8 MB
    # before the client blocks (so it never gets stuck, the premise here).
    with trio.fail_after(60):
        async with kernel_peer(offload=when == "after_echo") as peer:
            await peer.nursery.start(peer.stack.serve_tcp, handler, ECHO_PORT)
            if when == "after_echo":
                result = await run_snippet(peer.ns, RESET_CLIENT, STACK_IP, ECHO_PORT,
                                           timeout=20)
                assert result == {"echoed": True}
            else:
                result = await run_snippet(peer.ns, RESET_WHILE_BLOCKED, STACK_IP, ECHO_PORT,
                                           timeout=20)
                assert 0 < result["sent"] < 8_000_000, result  # it did get stuck
            with trio.fail_after(10):
                await done.wait()
            expected = "receive_some" if when == "after_echo" else "send_all"
            assert outcomes == [f"broken in {expected}"]

            # The stack keeps serving: a second client still echoes.
            done = trio.Event()
            result = await run_snippet(peer.ns, ECHO_CLIENT, STACK_IP, ECHO_PORT, 100_000,
                                       timeout=20)
            assert result["received"] == 100_000
            assert result["received_sha"] == result["sent_sha"]
            with trio.fail_after(10):
                await done.wait()
            assert outcomes == [f"broken in {expected}", "eof"]
            _no_internal_errors(peer.stack)


# --- beyond the brief: more resets, and a zero window --------------------------------


async def test_linux_listener_reset_breaks_trionet_client():
    with trio.fail_after(30):
        async with kernel_peer() as peer:
            async with background(peer.ns, *peer.ns.python(RESETTING_LISTENER),
                                  KERNEL_IP) as listener:
                port = (await listener.read_json(20))["port"]
                stream = await peer.stack.open_tcp_stream(KERNEL_IP, port)
                async with stream:
                    await stream.send_all(b"q" * 1000)
                    with pytest.raises(trio.BrokenResourceError):
                        with trio.fail_after(10):
                            while True:
                                await stream.receive_some()
                    with pytest.raises(trio.BrokenResourceError):
                        await stream.send_all(b"more")
                assert (await listener.read_json(20)) == {"got": 1000}
            _no_internal_errors(peer.stack)


async def test_trionet_close_with_unread_data_resets_linux_client():
    """RFC 2525 2.17 (as Linux does): aclose() with unread data sends RST."""
    closed = trio.Event()

    async def handler(stream):
        first = await stream.receive_some(10)
        assert first
        while stream.info["unread"] < 1000 - len(first):
            await trio.sleep(0.01)
        await stream.aclose()
        closed.set()

    with trio.fail_after(30):
        async with kernel_peer() as peer:
            await peer.nursery.start(peer.stack.serve_tcp, handler, ECHO_PORT)
            result = await run_snippet(peer.ns, SEND_THEN_WAIT, STACK_IP, ECHO_PORT, timeout=20)
            assert result == {"result": "reset", "errno": errno.ECONNRESET}
            assert closed.is_set()
            _no_internal_errors(peer.stack)


async def test_linux_slow_reader_zero_window():
    """A Linux client with an 8 KB receive buffer sleeps 1.5 s before reading
    1 MB: trionet meets a zero window, probes it (RFC 9293 3.8.6.1) and
    finishes once the reader drains."""
    payload = random.Random(7).randbytes(1 * MB)
    finished: list[dict] = []

    async def sender(stream):
        async with stream:
            assert await stream.receive_some() == b"go"
            await stream.send_all(payload)
            finished.append(stream.info)

    with trio.fail_after(60):
        async with kernel_peer() as peer:
            await peer.nursery.start(peer.stack.serve_tcp, sender, ECHO_PORT)
            result = await run_snippet(peer.ns, SLOW_READER, STACK_IP, ECHO_PORT, 1.5,
                                       timeout=40)
            assert result == {"received": len(payload),
                              "sha": hashlib.sha256(payload).hexdigest()}
            assert len(finished) == 1
            _no_internal_errors(peer.stack)
