"""The benchmark suite still runs: ``benchmarks/run.py --quick --json FILE``
as a subprocess, then every case must be in the JSON with numbers.

Nothing here is about speed (DEVELOPERS.md: speed and memory targets live in
benchmarks, never in tests). Without root, /dev/net/tun or iproute2 the
cases that need the kernel peer must be reported as skipped, with the reason;
the in-process cases run anyway.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

try:
    from . import netns
except ImportError:
    import netns

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"
#: What the counting passes report at least (benchmarks/_cases.py COUNT_KEYS).
COUNT_KEYS = ("task_steps", "checkpoint_yields", "blocking_waits", "channel_sends", "sys_read",
              "sys_write", "epoll_wait", "epoll_ctl", "syscalls", "kernel_syscr",
              "kernel_syscw")


def load_suite():
    spec = importlib.util.spec_from_file_location("trionet_benchmarks_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_benchmarks_report_every_case(tmp_path):
    suite = load_suite()
    out = tmp_path / "quick.json"
    proc = subprocess.run([sys.executable, str(RUN), "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    doc = json.loads(out.read_text())
    assert doc["meta"]["quick"] is True and doc["meta"]["runs"] == 1

    skip_reason = netns.kernel_peer_skip_reason()
    cases = doc["cases"]
    assert set(cases) == set(suite.CASES)
    for name, (needs_kernel, _) in suite.CASES.items():
        case = cases[name]
        if needs_kernel and skip_reason is not None:
            assert case["status"] == "skipped" and case["reason"], (name, case)
            continue
        if "_offload" in name and case["status"] == "skipped":
            # A kernel may refuse the TAP offloads (TapLink.offload_error);
            # the IPv6 ones are also skipped where the kernel drops trionet's
            # IPv6 segments on an offload TAP for their checksums.
            assert "offload" in case["reason"], (name, case)
            continue
        assert case["status"] == "ok", (name, case)
        assert not case["errors"], (name, case["errors"])
        for metric in suite.METRICS[name]:
            figures = case["metrics"].get(metric)
            assert figures is not None, f"{name}: no {metric}"
            for key in ("median", "min", "max"):
                value = figures[key]
                assert isinstance(value, (int, float)) and math.isfinite(value), \
                    (name, metric, key, value)
            assert figures["min"] <= figures["median"] <= figures["max"]
            assert len(figures["runs"]) == 1

    # Correctness the suite checks on the way (byte counts and hashes are
    # verified inside the cases, or they fail): every held connection echoed.
    if skip_reason is None:
        idle = cases["tap_idle"]["metrics"]
        assert idle["echoed"]["median"] == idle["connections"]["median"] > 0
        # The offload cases really ran with the offloads: the kernel handed
        # trionet GSO frames, trionet sent coalesced (TSO) segments.
        for name in ("tap_bulk_in", "tap_bulk_out", "tap_echo", "tap_bulk_in_v6",
                     "tap_bulk_out_v6", "tap_echo_v6"):
            assert cases[name]["info"][0]["offload"] is False, name
        # The *_v6 TAP cases really ran over IPv6 (and the others over IPv4).
        for name, case in cases.items():
            if name.startswith("tap_") and case["status"] == "ok" and "tap_connect" not in name:
                counts = case["info"][0]["trionet_tcp"]
                v6 = name.endswith("_v6")
                assert counts["ipv6.rx" if v6 else "ipv4.rx"] > 0, (name, counts)
                assert counts["ipv4.rx" if v6 else "ipv6.rx"] == 0, (name, counts)
        if cases["tap_bulk_in_offload"]["status"] == "ok":
            info = cases["tap_bulk_in_offload"]["info"][0]
            assert info["offload"] is True and info["tap_link"]["rx_gso_frames"] > 0, info
        if cases["tap_bulk_out_offload"]["status"] == "ok":
            info = cases["tap_bulk_out_offload"]["info"][0]
            assert info["offload"] is True and info["tap_link"]["tx_gso_frames"] > 0, info
            assert info["trionet_tcp"]["tcp.tx_coalesced"] > 0, info
        if cases["tap_bulk_in_offload_v6"]["status"] == "ok":
            info = cases["tap_bulk_in_offload_v6"]["info"][0]
            assert info["offload"] is True and info["tap_link"]["rx_gso_frames"] > 0, info
        for name in ("tap_echo_offload", "tap_connect_offload", "tap_bulk_out_offload_v6",
                     "tap_echo_offload_v6"):
            if cases[name]["status"] == "ok":
                infos = cases[name]["info"][0]
                infos = [infos[k] for k in ("conn_per_s_seq", "conn_per_s_par8")] \
                    if name == "tap_connect_offload" else [infos]
                assert all(i["offload"] is True for i in infos), (name, infos)

        # The bulk echo ran on the default link and recorded what that was.
        info = cases["tap_bulk_echo"]["info"][0]
        assert isinstance(info["offload"], bool) and info["link_default"] is True, info
        # The counting passes: every count finite, per echo / per connection.
        for name in ("tap_echo", "tap_echo_v6", "tap_echo_offload", "tap_echo_offload_v6",
                     "tap_connect", "tap_connect_offload"):
            if cases[name]["status"] != "ok":
                continue
            counted = cases[name].get("counts")
            assert counted is not None, f"{name}: no counting pass"
            assert counted["measured"] > 0, (name, counted)
            values = counted["counts"]
            assert set(COUNT_KEYS) <= set(values), (name, values)
            for key, value in values.items():
                assert isinstance(value, (int, float)) and math.isfinite(value), (name, key)
            # Something ran and something was written per echo / connection.
            assert values["task_steps"] > 0 and values["sys_write"] > 0, (name, values)

    # The tables went to stdout, and every target has a row in the JSON.
    assert "| case" in proc.stdout and "| issue" in proc.stdout
    assert {(t["case"], t["metric"]) for t in doc["targets"]} == set(suite.TARGETS)
