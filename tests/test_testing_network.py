"""trionet.testing: a simulated network of named hosts, each a real Stack,
running unmodified Trio code with partitions, loss, crashes and restarts,
deterministic in virtual time."""

from __future__ import annotations

import errno
import hashlib
import io

import pytest
import trio
import trio.testing

from trionet.link.capture import read_pcap
from trionet.testing import Network


async def echo(stream):
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def round_trip(host: str, port: int, message: bytes) -> bytes:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(message)
        await stream.send_eof()
        got = b""
        async for chunk in stream:
            got += chunk
        return got


async def test_hosts_names_and_unmodified_trio_code(autojump_clock):
    async with Network(seed=1, latency=0.001) as net:
        db = net.add_host("db")
        app = net.add_host("app", address="10.0.7.7")
        assert (db.name, str(db.address), str(app.address)) == ("db", "10.0.0.1", "10.0.7.7")
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(db.run, trio.serve_tcp, echo, 5432)
            assert listeners[0].socket.getsockname() == ("0.0.0.0", 5432)
            # Every host's name resolves on every other host.
            assert await app.run(round_trip, "db", 5432, b"hello") == b"hello"
            late = net.add_host("late")  # added while the network runs
            assert await late.run(round_trip, "db", 5432, b"late") == b"late"
            infos = await late.run(trio.socket.getaddrinfo, "app", 80)
            assert {info[4] for info in infos} == {("10.0.7.7", 80)}
            nursery.cancel_scope.cancel()


async def test_a_partition_gives_timeouts_and_host_unreachable_not_refused(autojump_clock):
    async with Network(seed=2, latency=0.001) as net:
        server, client = net.add_host("server"), net.add_host("client")
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run, trio.serve_tcp, echo, 80)
            stream = await client.run(trio.open_tcp_stream, "server", 80)
            client.stack.tcp.config.syn_retries = 2
            net.partition("server", client)
            with trio.move_on_after(5) as waited:  # data into the cut: no answer, no RST
                await client.run(lambda: stream.send_all(b"x"))
                await client.run(stream.receive_some)
            assert waited.cancelled_caught
            # A new connection meets silence (the ARP entry is fresh: SYNs time
            # out) ...
            with pytest.raises(OSError) as info:
                await client.run(trio.open_tcp_stream, "server", 80)
            assert info.value.__cause__ is not None
            causes = [e.errno for e in info.value.__cause__.exceptions]
            assert causes and all(c in (errno.ETIMEDOUT, errno.EHOSTUNREACH) for c in causes)
            assert errno.ECONNREFUSED not in causes
            net.heal()
            assert await client.run(round_trip, "server", 80, b"healed") == b"healed"
            nursery.cancel_scope.cancel()


async def test_crash_silences_and_restart_answers_with_rst(autojump_clock):
    async with Network(seed=3, latency=0.001) as net:
        server, client = net.add_host("server"), net.add_host("client")
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run, trio.serve_tcp, echo, 80)
            stream = await client.run(trio.open_tcp_stream, "server", 80)
            await client.run(lambda: stream.send_all(b"before"))
            assert await client.run(stream.receive_some) == b"before"
            old_stack = server.stack
            seen = []

            async def long_job():
                try:
                    await trio.sleep_forever()
                finally:
                    seen.append("cancelled")

            async with trio.open_nursery() as jobs:
                jobs.start_soon(lambda: server.run(long_job))
                await trio.testing.wait_all_tasks_blocked()
                sent = server.stack.stats["ipv4.tx"]
                await server.crash()
            # The job stopped where it stood; server.run returned None, nothing raised.
            assert seen == ["cancelled"] and not server.running
            assert old_stack.stats["ipv4.tx"] == sent or \
                net.switch.ports["server"].stats["tx_dropped_unplugged"] > 0
            with pytest.raises(RuntimeError):
                await server.run(trio.sleep, 1)
            await server.restart()
            assert server.running and server.stack is not old_stack and server.incarnation == 2
            # The old connection is unknown to the new stack: RST (RFC 9293 3.10.7.1).
            with pytest.raises(trio.BrokenResourceError):
                await client.run(lambda: stream.send_all(b"after"))
                await client.run(stream.receive_some)
            assert server.stack.stats["tcp.tx_reset"] >= 1
            nursery.cancel_scope.cancel()


async def test_link_conditions_hold_and_release(autojump_clock):
    async with Network(seed=4) as net:
        a, b = net.add_host("a"), net.add_host("b")
        async with trio.open_nursery() as nursery:
            await nursery.start(b.run, trio.serve_tcp, echo, 7)
            await a.run(round_trip, "b", 7, b"warm up")  # ARP done
            net.set_link(a, b, latency=0.05)
            start = trio.current_time()
            await a.run(round_trip, "b", 7, b"slow")
            assert trio.current_time() - start >= 0.05 * 4  # handshake, then data and FIN: two round trips
            with pytest.raises(ValueError, match="corrupt"):
                net.set_link(a, b, corrupt=0.1)  # needs checksums=True
            with pytest.raises(ValueError, match="loss"):
                net.set_link(a, b, loss=2.0)
            net.set_link(a, b, latency=0.0, bandwidth=100_000)  # 100 kB/s
            start = trio.current_time()
            await a.run(round_trip, "b", 7, b"x" * 100_000)
            assert trio.current_time() - start >= 1.0  # 100 kB each way at 100 kB/s
            net.set_link(a, b, bandwidth=None)
            net.hold(a, b)
            result = {}

            async def talk():
                result["got"] = await a.run(round_trip, "b", 7, b"held")
            nursery.start_soon(talk)
            await trio.sleep(10)
            assert "got" not in result  # queued, not delivered, not lost
            net.release(a, b)
            await trio.sleep(1)
            assert result["got"] == b"held"
            nursery.cancel_scope.cancel()


async def transfer_scenario(seed: int, pcap) -> str:
    """Three hosts, 1% loss, a partition and a crash; every frame captured."""
    async with Network(seed=seed, latency=0.002, loss=0.01) as net:
        net.capture(pcap)
        hosts = [net.add_host(name) for name in ("a", "b", "c")]
        data = bytes(range(256)) * 400
        async with trio.open_nursery() as nursery:
            for host in hosts:
                await nursery.start(host.run, trio.serve_tcp, echo, 7)
            results = {}

            async def client(src, dst):
                try:
                    results[(src.name, dst.name)] = await src.run(round_trip, dst.name, 7, data) == data
                except OSError as exc:
                    results[(src.name, dst.name)] = exc.errno

            async with trio.open_nursery() as clients:
                for src in hosts:
                    for dst in hosts:
                        if src is not dst:
                            clients.start_soon(client, src, dst)
                await trio.sleep(0.05)
                net.partition("a", "c")
                await trio.sleep(0.5)
                net.heal()
            await hosts[1].crash()
            await hosts[1].restart()
            nursery.cancel_scope.cancel()
    return repr(sorted(results.items()))


def run_scenario(seed: int) -> tuple[str, bytes]:
    pcap = io.BytesIO()
    outcome = trio.run(transfer_scenario, seed, pcap,
                       clock=trio.testing.MockClock(autojump_threshold=0))
    return outcome, pcap.getvalue()


def test_same_seed_same_frames_byte_for_byte():
    outcome, first = run_scenario(5)
    again, second = run_scenario(5)
    assert "True" in outcome and len(read_pcap(first)) > 500
    assert (again, hashlib.sha256(second).hexdigest()) == \
        (outcome, hashlib.sha256(first).hexdigest())
    other, third = run_scenario(6)
    assert third != first


def test_the_same_seed_replays_in_another_process():
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, hashlib; sys.path.insert(0, sys.argv[1])\n"
            "import test_testing_network as t\n"
            "outcome, pcap = t.run_scenario(5)\n"
            "print(hashlib.sha256(pcap).hexdigest())")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONHASHSEED": "777"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == hashlib.sha256(run_scenario(5)[1]).hexdigest()


async def test_the_pytest_fixture_gives_a_running_seeded_network(trionet_network):
    assert isinstance(trionet_network, Network) and trionet_network.seed == 0
    host = trionet_network.add_host("solo")
    assert await host.run(trio.socket.getaddrinfo, "solo", 1) == \
        [(2, 1, 6, "", ("10.0.0.1", 1)), (2, 2, 17, "", ("10.0.0.1", 1))]


@pytest.mark.trionet_network(seed=9, latency=0.25)
async def test_the_fixture_takes_options_from_its_marker(trionet_network):
    assert trionet_network.seed == 9
    a, b = trionet_network.add_host("a"), trionet_network.add_host("b")
    start = trio.current_time()
    await a.run(lambda: a.stack.ping(str(b.address), timeout=5))
    assert trio.current_time() - start >= 0.5  # ARP and echo, 0.25 s each way


async def test_segments_are_traced_like_tcpdump(caplog, autojump_clock):
    """The DEBUG trace of trionet.tcp.segments: one line per segment each
    way, sequence numbers relative to each side's ISN (RFC 9293 3.4)."""
    import logging

    caplog.set_level(logging.DEBUG, logger="trionet.tcp.segments")
    async with Network(seed=1, latency=0.001) as net:
        alice, bob = net.add_host("alice"), net.add_host("bob")
        async with trio.open_nursery() as nursery:
            await nursery.start(bob.run, trio.serve_tcp, echo, 80)
            assert await alice.run(round_trip, "bob", 80, b"hi") == b"hi"
            await trio.sleep(0.1)  # the last ACK arrives
            lines = [r.getMessage() for r in caplog.records if r.name == "trionet.tcp.segments"]
            nursery.cancel_scope.cancel()
    sent = [line for line in lines if " alice out " in line]
    assert "Flags [S], seq 0, win" in sent[0] and "options [mss 1460,sackOK,TS val" in sent[0]
    assert any("Flags [P.], seq 1:3, ack 1," in line and line.endswith("length 2") for line in sent)
    received = [line for line in lines if " bob in  " in line]
    assert "10.0.0.1." in received[0] and "> 10.0.0.2.80: Flags [S], seq 0" in received[0]
    assert any("Flags [S.], seq 0, ack 1," in line for line in lines if " bob out " in line)
    assert len([line for line in lines if " out " in line]) == \
        len([line for line in lines if " in  " in line])  # nothing lost on this network
