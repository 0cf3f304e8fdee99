"""A replicated key-value store, tested on a simulated network.

Three replicas (kv1, kv2, kv3) and a client, written with plain Trio calls
(trio.serve_tcp, trio.open_tcp_stream, timeouts): a write goes to any
replica, which stores it and acknowledges once a second replica has it too
(a majority of three); a read asks two replicas and takes the newest
version, so it always meets a replica that saw every acknowledged write.
The client retries on any failure with the next replica.

The run puts it through 1% loss, a partition, and a crash and restart
(the restarted replica comes back empty), all in virtual time:

    python examples/simulated_network.py            # prints the story, then OK
    python examples/simulated_network.py --seed 7

tests/test_simulated_example.py runs the same scenario as a pytest test.
"""

from __future__ import annotations

import argparse
import functools
import sys

import trio
import trio.testing

from trionet.testing import Network

REPLICAS = ("kv1", "kv2", "kv3")
PORT = 7000
TIMEOUT = 1.0


# --- the service: plain Trio, nothing trionet-specific ------------------------------------


async def request(host: str, line: str) -> str:
    """One request line to ``host``, one reply line back."""
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(host, PORT)
        async with stream:
            await stream.send_all(line.encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = await stream.receive_some()
                if not chunk:
                    raise ConnectionError(f"{host} closed before answering")
                reply += chunk
    return reply.decode().strip()


class Replica:
    """Keeps key -> (version, value); coordinates writes and reads it receives."""

    def __init__(self, name: str):
        self.name = name
        self.store: dict[str, tuple[tuple[float, str], str]] = {}

    def others(self) -> list[str]:
        return [r for r in REPLICAS if r != self.name]

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED, *, recover: bool = False) -> None:
        if recover:
            await self.recover()
        await trio.serve_tcp(self.handle, PORT, task_status=task_status)

    async def recover(self) -> None:
        """After a restart the store is empty: copy both others' stores
        first. (Without this a write acknowledged by this replica and one
        other could be read back as missing: the read majority could be this
        empty replica and the one that never saw it. The simulated crash
        found that.)"""
        missing = set(self.others())
        while missing:
            for host in sorted(missing):
                try:
                    dump = await request(host, "DUMP")
                except (OSError, trio.TooSlowError, ConnectionError):
                    continue
                for entry in dump.split()[1:]:
                    key, stamp, origin, value = entry.split(";")
                    self.keep(key, (float(stamp), origin), value)
                missing.discard(host)

    async def handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while not data.endswith(b"\n"):
                chunk = await stream.receive_some()
                if not chunk:
                    return
                data += chunk
            command, *args = data.decode().split()
            reply = await getattr(self, "do_" + command.lower())(*args)
            await stream.send_all(reply.encode() + b"\n")

    def keep(self, key: str, version: tuple[float, str], value: str) -> None:
        if key not in self.store or self.store[key][0] < version:
            self.store[key] = (version, value)

    async def do_put(self, key: str, value: str) -> str:
        version = (trio.current_time(), self.name)
        self.keep(key, version, value)
        line = f"KEEP {key} {version[0]!r} {version[1]} {value}"
        if await self.first_answer(line):
            return "OK"
        return "FAIL no majority"

    async def do_keep(self, key: str, stamp: str, origin: str, value: str) -> str:
        self.keep(key, (float(stamp), origin), value)
        return "KEPT"

    async def do_read(self, key: str) -> str:
        if key not in self.store:
            return "NONE"
        (stamp, origin), value = self.store[key]
        return f"VALUE {stamp!r} {origin} {value}"

    async def do_dump(self) -> str:
        return "DUMP " + " ".join(f"{key};{stamp!r};{origin};{value}"
                                  for key, ((stamp, origin), value) in self.store.items())

    async def do_get(self, key: str) -> str:
        answer = await self.first_answer(f"READ {key}")
        if answer is None:
            return "FAIL no majority"
        best = self.store.get(key)
        if answer.startswith("VALUE"):
            _, stamp, origin, value = answer.split()
            if best is None or best[0] < (float(stamp), origin):
                best = ((float(stamp), origin), value)
        return "NONE" if best is None else f"VALUE {best[1]}"

    async def first_answer(self, line: str) -> str | None:
        """Ask every other replica; the first good answer, or None."""
        answers: list[str] = []
        async with trio.open_nursery() as nursery:
            async def ask(host: str) -> None:
                try:
                    answers.append(await request(host, line))
                    nursery.cancel_scope.cancel()
                except (OSError, trio.TooSlowError, ConnectionError):
                    pass
            for host in self.others():
                nursery.start_soon(ask, host)
        return answers[0] if answers else None


async def put(key: str, value: str, log) -> None:
    """Write until one replica says OK, trying them in turn."""
    for attempt in range(30):
        replica = REPLICAS[attempt % len(REPLICAS)]
        try:
            if await request(replica, f"PUT {key} {value}") == "OK":
                return
        except (OSError, trio.TooSlowError, ConnectionError) as exc:
            log(f"  put {key}: {replica} failed ({type(exc).__name__}), retrying")
    raise RuntimeError(f"put {key}: no replica took it")


async def get(key: str, log) -> str | None:
    for attempt in range(30):
        replica = REPLICAS[attempt % len(REPLICAS)]
        try:
            reply = await request(replica, f"GET {key}")
        except (OSError, trio.TooSlowError, ConnectionError) as exc:
            log(f"  get {key}: {replica} failed ({type(exc).__name__}), retrying")
            continue
        if reply.startswith("VALUE"):
            return reply.split(maxsplit=1)[1]
        if reply == "NONE":
            return None
    raise RuntimeError(f"get {key}: no replica answered")


# --- the test scenario, on trionet's simulated network --------------------------------------


async def scenario(net: Network, log=print) -> dict[str, str]:
    """Writes and reads through loss, a partition, a crash and a restart;
    returns what a final read saw for every acknowledged write."""
    hosts = {name: net.add_host(name) for name in REPLICAS}
    client = net.add_host("client")
    written: dict[str, str] = {}

    async with trio.open_nursery() as nursery:
        async def run_replica(name: str, task_status=trio.TASK_STATUS_IGNORED, *,
                              recover: bool = False) -> None:
            replica = Replica(name)
            await hosts[name].run(lambda task_status: replica.serve(task_status, recover=recover),
                                  task_status=task_status)

        for name in REPLICAS:
            await nursery.start(run_replica, name)

        async def write(n: int) -> None:
            await client.run(put, f"k{n}", f"v{n}", log)
            written[f"k{n}"] = f"v{n}"

        log(f"{trio.current_time():8.3f} writing k0..k4 through 1% loss")
        for n in range(5):
            await write(n)
        log(f"{trio.current_time():8.3f} partition: kv1 cut off from kv2 and the client")
        net.partition("kv1", "kv2")
        net.partition("kv1", "client")
        for n in range(5, 10):
            await write(n)
        net.heal()
        log(f"{trio.current_time():8.3f} healed; kv2 crashes")
        await hosts["kv2"].crash()
        for n in range(10, 15):
            await write(n)
        log(f"{trio.current_time():8.3f} kv2 restarts, empty, and copies the others' stores")
        await hosts["kv2"].restart()
        await nursery.start(functools.partial(run_replica, "kv2", recover=True))
        seen = {}
        for key in written:
            seen[key] = await client.run(get, key, log)
        log(f"{trio.current_time():8.3f} read back {len(seen)} keys")
        nursery.cancel_scope.cancel()
    return {key: (value, seen.get(key)) for key, value in written.items()}


async def main(seed: int = 1) -> int:
    async with Network(seed=seed, latency=0.002, loss=0.01) as net:
        results = await scenario(net)
    wrong = {k: v for k, v in results.items() if v[0] != v[1]}
    print("OK: every acknowledged write was read back" if not wrong else f"LOST: {wrong}")
    return 0 if not wrong else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sys.exit(trio.run(main, args.seed, clock=trio.testing.MockClock(autojump_threshold=0)))
