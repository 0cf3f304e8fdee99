"""scripts/fuzz.py: the full 1,000,000-frame run (about 35 s here; IPv4 and,
a tenth of the frames, IPv6), a short real-clock run, and proof that its
accounting catches a frame (of either family) lost without a count."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import trionet.interface

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "fuzz.py"


def run_script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout)


def load_script():
    spec = importlib.util.spec_from_file_location("trionet_fuzz_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_fuzz_run_passes():
    """The issue's CI run: 1,000,000 frames, every one accounted for."""
    done = run_script("--frames", "1000000", "--seed", "1", "--quiet")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "PASS: 1,000,000 frames" in done.stdout
    assert re.search(r"frames injected\s+1,000,000", done.stdout)
    assert "sha256 equal" in done.stdout
    # The run reached every layer: drops of each kind, and frames accepted by each.
    for reason in ("ethernet.truncated", "ipv4.bad_checksum", "ipv4.fragment_overlap",
                   "ipv4.reassembly_full", "tcp.bad_option", "udp.bad_checksum",
                   "icmp.bad_checksum", "arp.unsupported",
                   # IPv6: the header, extension headers and options, fragments,
                   # ICMPv6, UDP's mandatory checksum, neighbour discovery.
                   "ipv6.truncated", "ipv6.bad_version", "ipv6.unknown_option",
                   "ipv6.bad_padding", "ipv6.routing_type0", "ipv6.misplaced_hop_by_hop",
                   "ipv6.too_many_headers", "ipv6.fragment_overlap", "ipv6.reassembly_full",
                   "icmpv6.bad_checksum", "icmpv6.bad_option", "udp.zero_checksum",
                   "icmp6.nd_not_on_link", "ndp.not_our_target"):
        assert f"drop.{reason}" in done.stdout, reason
    for kind in ("tcp ", "udp ", "icmp ", "arp: queued", "ipv4 fragment: held",
                 "tcp6 ", "udp6 ", "icmp6 ", "ipv6 fragment: held", "icmp6: reassembled"):
        assert kind in done.stdout, kind
    # The victim answered IPv6 and took neighbour discovery messages in.
    for counter in ("ipv6.reassembled", "icmp6.tx_echo_reply", "icmp6.tx_error",
                    "ndp.rx_solicitation", "ndp.rx_advertisement", "ndp.rx_router_advertisement",
                    "ndp.tx_advertisement"):
        found = re.search(rf"{re.escape(counter)} ([\d,]+)", done.stdout)
        assert found and int(found.group(1).replace(",", "")) > 0, counter


def test_fuzz_on_the_real_clock():
    done = run_script("--frames", "30000", "--seed", "7", "--real-clock", "--quiet")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "PASS: 30,000 frames" in done.stdout


@pytest.mark.parametrize("ethertype", [b"\x08\x00", b"\x86\xdd"], ids=["ipv4", "ipv6"])
def test_accounting_catches_a_frame_lost_without_a_count(monkeypatch, capsys, ethertype):
    """A stack that silently swallows some frames fails the fuzz run."""
    fuzz = load_script()
    original = trionet.interface.Interface.handle_frame
    seen = [0]

    def lossy(self, frame):
        if self.name == "eth1" and frame[12:14] == ethertype:
            seen[0] += 1
            if seen[0] % 97 == 0:
                return  # gone, no count
        original(self, frame)

    monkeypatch.setattr(trionet.interface.Interface, "handle_frame", lossy)
    assert fuzz.main(["--frames", "3000", "--seed", "3", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: accounting:" in out and "without a count" in out


def test_accounting_catches_a_drop_counted_under_another_reason(monkeypatch, capsys):
    """The NIC must count a dropped frame under the reason it was dropped for."""
    fuzz = load_script()
    audited = fuzz.AuditStats.drop

    def mislabel(self, reason):
        audited(self, "ipv4.something_else" if reason == "ipv4.bad_checksum" else reason)

    monkeypatch.setattr(fuzz.AuditStats, "drop", mislabel)
    assert fuzz.main(["--frames", "2000", "--seed", "3", "--quiet"]) == 1
    assert "raised 'ipv4.bad_checksum' but 'ipv4.something_else' was counted" in \
        capsys.readouterr().out


@pytest.mark.parametrize("args", [["--frames", "0"], ["--batch", "0"]])
def test_bad_arguments(args):
    done = run_script(*args, timeout=60)
    assert done.returncode == 2 and "must be at least 1" in done.stderr
