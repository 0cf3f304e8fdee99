"""scripts/soak.py: the one-minute soak CI runs (real clock), and proof that
it fails on a wrong byte."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "soak.py"


def load_script():
    spec = importlib.util.spec_from_file_location("trionet_soak_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_minute_soak():
    done = subprocess.run([sys.executable, str(SCRIPT), "--minutes", "1", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "PASS:" in done.stdout and "every byte exact" in done.stdout
    # The link really was impaired, and the stacks caught the corruption.
    assert "tcp.bad_checksum" in done.stdout
    exchanges = int(done.stdout.split("exchanges             ")[1].split()[0].replace(",", ""))
    assert exchanges >= 1000


def test_soak_fails_on_a_wrong_byte(capsys):
    soak = load_script()
    original = soak.echo_handler
    count = [0]

    async def corrupting(stream):
        async with stream:
            async for data in stream:
                count[0] += 1
                if count[0] == 20:
                    data = bytes([data[0] ^ 1]) + data[1:]
                await stream.send_all(data)

    soak.echo_handler = corrupting
    try:
        assert soak.main(["--minutes", "0.05", "--connections", "5", "--quiet"]) == 1
    finally:
        soak.echo_handler = original
    out = capsys.readouterr().out
    assert "FAIL: connection" in out and "echo differs" in out


def test_soak_short_run_passes(capsys):
    soak = load_script()
    assert soak.main(["--minutes", "0.05", "--connections", "10", "--quiet"]) == 0
    assert "PASS:" in capsys.readouterr().out
