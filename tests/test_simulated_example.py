"""examples/simulated_network.py as a pytest test: the replicated key-value
store keeps every acknowledged write through 1% loss, a partition, and a
crash and restart (in virtual time, on the trionet_network fixture)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "simulated_network.py"


def load_example():
    spec = importlib.util.spec_from_file_location("simulated_network", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.trionet_network(seed=3, latency=0.002, loss=0.01)
async def test_every_acknowledged_write_survives(trionet_network):
    example = load_example()
    story = []
    results = await example.scenario(trionet_network, log=story.append)
    assert len(results) == 15
    assert all(written == read for written, read in results.values()), results
    # The faults really happened: the partition and the crash cost retries.
    assert any("failed" in line for line in story)
    assert trionet_network.hosts["kv2"].incarnation == 2


def test_the_example_runs_as_a_script():
    done = subprocess.run([sys.executable, str(EXAMPLE), "--seed", "4"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "OK: every acknowledged write was read back"
