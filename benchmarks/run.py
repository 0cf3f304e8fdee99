"""trionet's benchmark suite (issue 4, section 1). See benchmarks/README.md.

    python benchmarks/run.py                  # every case, 3 runs each, a table
    python benchmarks/run.py --quick          # tiny sizes, 1 run: does it still work?
    python benchmarks/run.py --case tap_echo --case reference --runs 5
    python benchmarks/run.py --json out.json  # also write every figure as JSON
    python benchmarks/run.py --profile prof.txt  # cProfile the two TAP bulk directions
    python benchmarks/run.py --profile prof.txt --case tap_connect --param 'parallel=[8]'

Each case runs once per run in a child process (benchmarks/_cases.py), so
RSS and CPU figures belong to the trionet side alone. Cases that need the
Linux kernel as a peer (TAP device, network namespaces) need root; without
it they are reported as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _peers import netns  # noqa: E402

CASES_SCRIPT = HERE / "_cases.py"
MB = 1_000_000

#: Cases in the order they run: (needs the kernel peer, what it measures).
#: Each ``*_v6`` case follows its IPv4 case and is the same over IPv6
#: (``V6_CASES``), compared with ``reference_v6``.
CASES = {
    "reference": (True, "Linux <-> Linux over veth between two namespaces (the yardstick)"),
    "reference_v6": (True, "the same over IPv6: bulk and echo (the IPv6 cases' yardstick)"),
    "tap_bulk_in": (True, "Linux -> trionet bulk over TAP, sha256-verified"),
    "tap_bulk_in_v6": (True, "the same over IPv6"),
    "tap_bulk_out": (True, "trionet -> Linux bulk over TAP, sha256-verified"),
    "tap_bulk_out_v6": (True, "the same over IPv6"),
    "tap_bulk_in_offload": (True, "Linux -> trionet bulk over TAP with offload=True (vnet "
                                  "header, checksum + TSO), sha256-verified"),
    "tap_bulk_in_offload_v6": (True, "the same over IPv6"),
    "tap_bulk_out_offload": (True, "trionet -> Linux bulk over TAP with offload=True, "
                                   "sha256-verified"),
    "tap_bulk_out_offload_v6": (True, "the same over IPv6"),
    "tap_echo": (True, "64-byte echo round trip, Linux client, trionet echo server"),
    "tap_echo_v6": (True, "the same over IPv6"),
    "tap_echo_offload": (True, "the same over TAP with offload=True"),
    "tap_echo_offload_v6": (True, "the same over IPv6"),
    "tap_bulk_echo": (True, "bulk echo, both directions at once, default link (TapLink(name)): "
                            "Linux client sends and reads back, sha256-verified"),
    "tap_bulk_echo_v6": (True, "the same over IPv6"),
    "tap_connect": (True, "connections/s: connect, one 64-byte echo, close (1 and 8 at once)"),
    "tap_connect_offload": (True, "the same over TAP with offload=True"),
    "tap_idle": (True, "N idle connections held by trionet: RSS, idle CPU, one echo each"),
    "cable_bulk": (False, "trionet <-> trionet in one process over virtual_cable (MTU 1500)"),
    "cable_bulk_v6": (False, "the same over IPv6"),
    "loopback_bulk": (False, "trionet -> trionet, one stack, LoopbackLink at 127.0.0.1"),
    "loopback_bulk_v6": (False, "the same at ::1"),
    "loss_goodput": (False, "goodput over virtual_cable with 0/1/5% random loss each way"),
    "sim_transfer": (False, "trionet.testing.Network, virtual time: a minute of a 1%-loss "
                            "transfer between two hosts (10 ms, 1 MB/s)"),
    "sim_100_hosts": (False, "trionet.testing.Network, virtual time: 100 hosts each echoing "
                             "100 KB through its neighbour, all at once"),
}

#: Parameters per case: (full run, --quick). ``timeout`` bounds one run.
PARAMS = {
    "reference": ({"bulk_size": 400 * MB, "bulk_echo_size": 400 * MB, "rtt_count": 5000,
                   "rtt_warmup": 100, "conn_seconds": 2.0, "conn_max": 20000, "timeout": 180},
                  {"bulk_size": 20 * MB, "bulk_echo_size": 20 * MB, "rtt_count": 200,
                   "rtt_warmup": 20, "conn_seconds": 0.5, "conn_max": 2000, "timeout": 90}),
    "tap_bulk_in": ({"size": 100 * MB, "timeout": 120}, {"size": 4 * MB, "timeout": 60}),
    "tap_bulk_out": ({"size": 100 * MB, "timeout": 120}, {"size": 4 * MB, "timeout": 60}),
    "tap_bulk_in_offload": ({"size": 400 * MB, "offload": True, "timeout": 120},
                            {"size": 20 * MB, "offload": True, "timeout": 60}),
    "tap_bulk_out_offload": ({"size": 400 * MB, "offload": True, "timeout": 120},
                             {"size": 20 * MB, "offload": True, "timeout": 60}),
    # "counts": the counting pass after the timed one (echoes or connections
    # counted; 0: none), see _cases.Counter.
    "tap_echo": ({"rtt_count": 5000, "rtt_warmup": 100, "counts": 1000, "timeout": 120},
                 {"rtt_count": 200, "rtt_warmup": 20, "counts": 200, "timeout": 60}),
    "tap_echo_offload": ({"rtt_count": 5000, "rtt_warmup": 100, "offload": True,
                          "counts": 1000, "timeout": 120},
                         {"rtt_count": 200, "rtt_warmup": 20, "offload": True, "counts": 200,
                          "timeout": 60}),
    # The default link: offload None = TapLink(name) (the JSON records link.offload).
    "tap_bulk_echo": ({"size": 100 * MB, "offload": None, "timeout": 120},
                      {"size": 4 * MB, "offload": None, "timeout": 60}),
    "tap_connect": ({"conn_seconds": 2.0, "conn_max": 20000, "counts": 300, "timeout": 120},
                    {"conn_seconds": 0.5, "conn_max": 2000, "counts": 50, "timeout": 60}),
    "tap_connect_offload": ({"conn_seconds": 2.0, "conn_max": 20000, "offload": True,
                             "counts": 300, "timeout": 120},
                            {"conn_seconds": 0.5, "conn_max": 2000, "offload": True,
                             "counts": 50, "timeout": 60}),
    "tap_idle": ({"count": 10000, "window": 128, "idle_seconds": 5.0, "echo_window": 256,
                  "timeout": 120},
                 {"count": 500, "window": 128, "idle_seconds": 1.0, "echo_window": 256,
                  "timeout": 60}),
    "cable_bulk": ({"size": 100 * MB, "timeout": 120}, {"size": 4 * MB, "timeout": 60}),
    "loopback_bulk": ({"size": 200 * MB, "timeout": 120}, {"size": 8 * MB, "timeout": 60}),
    "loss_goodput": ({"size": 10 * MB, "latency": 0.0, "timeout": 120},
                     {"size": 1 * MB, "latency": 0.0, "timeout": 60}),
    "sim_transfer": ({"sim_seconds": 60.0, "bandwidth": 1_000_000, "timeout": 300},
                     {"sim_seconds": 5.0, "bandwidth": 1_000_000, "timeout": 60}),
    "sim_100_hosts": ({"hosts": 100, "size": 100_000, "timeout": 300},
                      {"hosts": 10, "size": 20_000, "timeout": 60}),
}

#: IPv6 case -> its IPv4 case: the same parameters with {"ipv6": true}.
V6_CASES = {name: name[:-3] for name in CASES if name.endswith("_v6")}
for _v6, _v4 in V6_CASES.items():
    PARAMS[_v6] = tuple(dict(mode, ipv6=True) for mode in PARAMS[_v4])
# The IPv6 reference: bulk and echo only (the IPv6 cases compare with those).
PARAMS["reference_v6"] = tuple(dict(mode, connections=False) for mode in PARAMS["reference_v6"])

#: What each case reports: metric -> (label, unit, higher is better,
#: (reference case, metric) to compare with or None).
REF_BULK = ("reference", "bulk_mbps")
ECHO_METRICS = {
    "rtt_median_us": ("64 B echo RTT median", "us", False, ("reference", "echo_rtt_median_us")),
    "rtt_p99_us": ("64 B echo RTT p99", "us", False, ("reference", "echo_rtt_p99_us")),
}
CONNECT_METRICS = {
    "conn_per_s_seq": ("connections/s, sequential", "1/s", True, ("reference", "conn_per_s_seq")),
    "conn_per_s_par8": ("connections/s, 8 parallel", "1/s", True,
                        ("reference", "conn_per_s_par8")),
}
METRICS = {
    "reference": {
        "bulk_mbps": ("bulk", "MB/s", True, None),
        "bulk_echo_mbps": ("bulk echo (both directions at once)", "MB/s", True, None),
        "echo_rtt_median_us": ("64 B echo RTT median", "us", False, None),
        "echo_rtt_p99_us": ("64 B echo RTT p99", "us", False, None),
        "conn_per_s_seq": ("connections/s, sequential", "1/s", True, None),
        "conn_per_s_par8": ("connections/s, 8 parallel", "1/s", True, None),
    },
    "tap_bulk_in": {"mbps": ("Linux -> trionet bulk", "MB/s", True, REF_BULK)},
    "tap_bulk_out": {"mbps": ("trionet -> Linux bulk", "MB/s", True, REF_BULK)},
    "tap_bulk_in_offload": {"mbps": ("Linux -> trionet bulk, offload", "MB/s", True, REF_BULK)},
    "tap_bulk_out_offload": {"mbps": ("trionet -> Linux bulk, offload", "MB/s", True, REF_BULK)},
    "tap_echo": ECHO_METRICS,
    "tap_echo_offload": ECHO_METRICS,
    "tap_bulk_echo": {"mbps": ("bulk echo, both ways at once, default link", "MB/s", True,
                               ("reference", "bulk_echo_mbps"))},
    "tap_connect": CONNECT_METRICS,
    "tap_connect_offload": CONNECT_METRICS,
    "tap_idle": {
        "connections": ("connections held", "", True, None),
        "rss_per_conn_kb": ("RSS per connection", "KB", False, None),
        "idle_cpu_percent": ("CPU while idle", "%", False, None),
        "echoed": ("connections that echoed", "", True, None),
        "echo_seconds": ("one echo through each", "s", False, None),
        "setup_conn_per_s": ("opening rate (128 handshakes at once)", "1/s", True, None),
    },
    "cable_bulk": {"mbps": ("trionet <-> trionet, virtual_cable", "MB/s", True, REF_BULK)},
    "loopback_bulk": {"mbps": ("trionet, LoopbackLink", "MB/s", True, REF_BULK)},
    "loss_goodput": {
        "lossless_mbps": ("goodput, no loss", "MB/s", True, None),
        "loss1_mbps": ("goodput, 1% loss", "MB/s", True, None),
        "loss5_mbps": ("goodput, 5% loss", "MB/s", True, None),
        "loss1_ratio": ("1% loss / lossless", "", True, None),
        "loss5_ratio": ("5% loss / lossless", "", True, None),
    },
    "sim_transfer": {
        "wall_seconds": ("wall time for 60 simulated seconds", "s", False, None),
        "sim_per_wall": ("simulated seconds per wall second", "", True, None),
        "goodput_mbps": ("simulated goodput (1 MB/s path, 1% loss)", "MB/s", True, None),
    },
    "sim_100_hosts": {
        "wall_seconds": ("wall time, 100 hosts x 100 KB echo", "s", False, None),
        "frames_per_s": ("frames switched per wall second", "1/s", True, None),
    },
}
# The IPv6 cases: the IPv4 case's metrics, labelled IPv6, against reference_v6.
METRICS["reference_v6"] = {k: (f"{label}, IPv6", unit, higher, None)
                           for k, (label, unit, higher, _) in METRICS["reference"].items()
                           if k in ("bulk_mbps", "bulk_echo_mbps", "echo_rtt_median_us",
                                    "echo_rtt_p99_us")}
for _v6, _v4 in V6_CASES.items():
    if _v6 != "reference_v6":
        METRICS[_v6] = {k: (f"{label}, IPv6", unit, higher,
                            None if ref is None else ("reference_v6", ref[1]))
                        for k, (label, unit, higher, ref) in METRICS[_v4].items()}

#: The targets: (case, metric) -> (text, check(value, results, baseline) ->
#: True/False, or None when it cannot be judged). ``baseline``: the results
#: of an earlier run (``--baseline FILE.json``) or None.


def _ref(results: dict, metric: str):
    case = results.get("reference", {})
    m = case.get("metrics", {}).get(metric)
    return m["median"] if m else None


def _relative(results: dict, case: str, metric: str):
    """A case's median over its Linux reference's median, in one run."""
    m = results.get(case, {}).get("metrics", {}).get(metric)
    ref_key = METRICS[case][metric][3]
    if m is None or ref_key is None:
        return None
    ref = results.get(ref_key[0], {}).get("metrics", {}).get(ref_key[1])
    return m["median"] / ref["median"] if ref and ref["median"] else None


def versus_ipv4(results: dict, case: str, metric: str):
    """An IPv6 case's figure relative to its IPv4 case's, each first taken
    relative to its own family's Linux reference of the same run
    ((v6 / ref v6) / (v4 / ref v4)); None if a figure is missing."""
    v6 = _relative(results, case, metric)
    v4 = _relative(results, V6_CASES[case], metric)
    return None if v6 is None or not v4 else v6 / v4


def versus_baseline(results: dict, baseline: dict | None, case: str, metric: str):
    """This run's median over the baseline run's (after / before), raw."""
    if not baseline:
        return None
    m = results.get(case, {}).get("metrics", {}).get(metric)
    b = baseline.get(case, {}).get("metrics", {}).get(metric)
    return m["median"] / b["median"] if m and b and b["median"] else None


def _v6_target(case: str, metric: str):
    """Issue 11: IPv6 costs no more than ~10% over IPv4 (throughput at
    least 1/1.1 of IPv4's, round trips at most 1.1 times), both relative to
    their Linux reference."""
    higher = METRICS[case][metric][2]

    def check(value, results, baseline=None):
        r = versus_ipv4(results, case, metric)
        if r is None:
            return None
        return r >= 1 / 1.1 if higher else r <= 1.1
    return ("<= 10% over IPv4", check)


def _at_least(factor: float):
    """Issue 13: at least ``factor`` x the Linux reference of the same run."""
    def check(value, results, baseline=None, *, case, metric):
        r = _relative(results, case, metric)
        return None if r is None else r >= factor
    return f">= {factor:g}x Linux", check


def _at_most(factor: float):
    """Issue 13: at most ``factor`` x the Linux reference (round trips)."""
    def check(value, results, baseline=None, *, case, metric):
        r = _relative(results, case, metric)
        return None if r is None else r <= factor
    return f"<= {factor:g}x Linux", check


def _vs_baseline(factor: float):
    """Issue 13: ``factor`` x the baseline run's figure; judged only with
    ``--baseline`` (an interleaved before/after comparison, not one run)."""
    def check(value, results, baseline=None, *, case, metric):
        r = versus_baseline(results, baseline, case, metric)
        return None if r is None else r >= factor
    return (f">= {factor:g}x before, side by side (needs --baseline or "
            f"compare_trees.py)"), check


def _bind(target, case, metric):
    text, check = target
    return text, (lambda v, r, b=None: check(v, r, b, case=case, metric=metric))


#: Issue 13's targets (section 4; medians, ratios to the Linux reference of
#: the same run), then issue 11's IPv6 rows, then the issue-4 rows no later
#: issue re-targeted. Issue 13's rows supersede issue 4's absolute ones
#: (bulk MB/s, "kernel RTT + 100 us", 3000 connections/s, 16 KB, 2 % CPU,
#: 40 MB/s over the cable).
_ISSUE13 = {
    ("tap_bulk_in_offload", "mbps"): _at_least(0.5),
    ("tap_bulk_out_offload", "mbps"): _at_least(0.5),
    ("tap_bulk_in", "mbps"): _at_least(0.08),
    ("tap_bulk_out", "mbps"): _at_least(0.08),
    ("tap_bulk_echo", "mbps"): _at_least(0.25),
    ("tap_echo", "rtt_median_us"): _at_most(1.5),
    ("tap_echo_offload", "rtt_median_us"): _at_most(1.5),
    ("tap_connect", "conn_per_s_par8"): _at_least(0.3),
    ("tap_connect_offload", "conn_per_s_par8"): _at_least(0.3),
    ("cable_bulk", "mbps"): _vs_baseline(2.0),
}
TARGETS = {key: _bind(t, *key) for key, t in _ISSUE13.items()}
TARGETS.update({
    ("tap_idle", "rss_per_conn_kb"): ("<= 10 KB (10,000 held)", lambda v, r, b=None: v <= 10),
    ("tap_idle", "idle_cpu_percent"): ("< 1 %", lambda v, r, b=None: v < 1),
})
TARGET_ISSUE = {key: 13 for key in TARGETS}
_V6_TARGETS = {(case, metric): _v6_target(case, metric) for case in V6_CASES
               if case != "reference_v6" for metric in METRICS[case]
               if metric != "rtt_p99_us"}
TARGETS.update(_V6_TARGETS)
TARGET_ISSUE.update({key: 11 for key in _V6_TARGETS})
_ISSUE4 = {
    ("loopback_bulk", "mbps"): (">= 300 MB/s", lambda v, r, b=None: v >= 300),
    ("loss_goodput", "loss1_ratio"): (">= 0.50", lambda v, r, b=None: v >= 0.5),
    ("loss_goodput", "loss5_ratio"): (">= 0.20", lambda v, r, b=None: v >= 0.2),
}
TARGETS.update(_ISSUE4)
TARGET_ISSUE.update({key: 4 for key in _ISSUE4})


# ---------------------------------------------------------------------------
# Running one case in a child process


class CaseFailed(Exception):
    pass


def run_child(name: str, params: dict, *, profile: str | None = None,
              verbose: bool = False, tree: str | None = None) -> dict:
    """Run one case once in a child process; return its result dict.
    ``tree``: measure the trionet package of that directory (e.g.
    /work/before) with this harness, instead of this repository's."""
    argv = [sys.executable, str(CASES_SCRIPT), name, json.dumps(params)]
    if profile:
        argv += ["--profile", profile]
    budget = params.get("timeout", 120) + 60
    env = None
    if tree:
        env = dict(os.environ, TRIONET_BENCH_TREE=str(tree),
                   PYTHONPATH=os.pathsep.join([str(tree)] + [
                       x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x]))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, cwd=str(ROOT), env=env)
    try:
        out, err = proc.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        _stop(proc)
        out, err = proc.communicate()
        raise CaseFailed(f"{name}: no result within {budget} s\n{_tail(err)}") from None
    except BaseException:  # Ctrl-C (the child got it too) or SIGTERM: let it clean up
        _stop(proc, grace=5)
        raise
    finally:
        # Safety net: a killed child cannot delete its namespaces; names carry its pid.
        netns.cleanup_run_namespaces(f"trionet-{proc.pid}-")
    if verbose and err.strip():
        sys.stderr.write(err)
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise CaseFailed(f"{name}: exited {proc.returncode} without a result\n{_tail(err)}")


def _stop(proc: subprocess.Popen, grace: float = 0) -> None:
    """After ``grace`` seconds, SIGINT (trio unwinds and removes the
    namespace), then SIGKILL."""
    try:
        proc.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except ProcessLookupError:
        pass


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------------------
# Aggregating and printing


def summarise(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "" and float(value).is_integer():
        return str(int(value))
    a = abs(value)
    if unit == "%" or a < 10:
        text = f"{value:.2f}"
    elif a < 1000:
        text = f"{value:.1f}"
    else:
        text = f"{value:.0f}"
    return text


def ratio_text(case: str, metric: str, value: float, results: dict) -> str:
    ref_key = METRICS[case][metric][3]
    if ref_key is None:
        return ""
    ref = results.get(ref_key[0], {}).get("metrics", {}).get(ref_key[1])
    if not ref or not ref["median"]:
        return "(no ref)"
    r = value / ref["median"]
    if METRICS[case][metric][2]:  # higher is better
        text = f"{r:.3f}x ref" if r < 0.1 else f"{r:.2f}x ref"
    else:
        text = f"{r:.2f}x ref ({value - ref['median']:+.0f} us)"
    if case in V6_CASES:
        v4 = versus_ipv4(results, case, metric)
        if v4 is not None:
            text += f", {v4:.2f}x v4"
    return text


def target_rows(results: dict, baseline: dict | None = None) -> list[dict]:
    rows = []
    for (case, metric), (text, check) in TARGETS.items():
        m = results.get(case, {}).get("metrics", {}).get(metric)
        row = {"issue": TARGET_ISSUE.get((case, metric)), "case": case, "metric": metric,
               "target": text, "value": m["median"] if m else None, "met": None,
               "vs_linux": _relative(results, case, metric) if m else None,
               "vs_baseline": versus_baseline(results, baseline, case, metric)}
        if case in V6_CASES and m:
            row["vs_ipv4"] = versus_ipv4(results, case, metric)
        if m is not None:
            row["met"] = check(m["median"], results, baseline)
        rows.append(row)
    return rows


def _render(header: list, rows: list, right: set) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(r):
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        return "| " + " | ".join(cells) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2)
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def _status(res: dict | None) -> str:
    if res is None:
        return "-"
    return f"{res['status'].upper()}: {res.get('reason', '')[:40]}"


def table(results: dict, baseline: dict | None = None) -> str:
    """Every figure: IPv4 (and the other cases) with the Linux ratio, and
    the ``*_v6`` twin's median on the same row with its ratio to
    ``reference_v6`` (and to IPv4, "x v4"); with a baseline also each
    figure's after/before ratio."""
    header = ["case", "metric", "median", "min", "max", "unit", "vs Linux", "IPv6",
              "IPv6 vs Linux"]
    if baseline:
        header += ["x before", "IPv6 x before"]
    rows = []
    blank = [""] * (len(header) - 2)
    for case in CASES:
        res = results.get(case)
        twin = None
        if case in V6_CASES:
            if V6_CASES[case] in results:
                continue  # shown on its IPv4 case's row
        elif case + "_v6" in CASES and case + "_v6" in results:
            twin = case + "_v6"
        if res is None:
            continue
        v6res = results.get(twin) if twin else None
        if res["status"] != "ok":
            rows.append([case, f"{res['status'].upper()}: {res.get('reason', '')[:70]}"] + blank)
            if v6res and v6res["status"] == "ok":
                res = {"status": "ok", "metrics": {}}
            else:
                continue
        for metric, (label, unit, _, _) in METRICS[case].items():
            m = res["metrics"].get(metric)
            v6m = v6res.get("metrics", {}).get(metric) if v6res else None
            if m is None and v6m is None:
                continue
            row = [case, label] + ([fmt(m["median"], unit), fmt(m["min"], unit),
                                    fmt(m["max"], unit)] if m else ["-", "", ""])
            row += [unit, ratio_text(case, metric, m["median"], results) if m else ""]
            if twin is None:
                row += ["", ""]
            elif v6m is None:
                row += [_status(v6res) if v6res and v6res["status"] != "ok" else "-", ""]
            else:
                row += [fmt(v6m["median"], unit), ratio_text(twin, metric, v6m["median"],
                                                             results)]
            if baseline:
                for c in (case, twin):
                    r = versus_baseline(results, baseline, c, metric) if c else None
                    row.append("" if r is None else f"{r:.2f}")
            rows.append(row)
    return _render(header, rows, {2, 3, 4, 7} | ({9, 10} if baseline else set()))


def targets_table(results: dict, baseline: dict | None = None) -> str:
    """The verdict rows: issue 13's targets, issue 11's IPv6 rows and the
    issue-4 rows no later issue re-targeted."""
    header = ["issue", "case", "metric", "median", "vs Linux", "target", "met"]
    rows = []
    for t in target_rows(results, baseline):
        case, metric = t["case"], t["metric"]
        if case not in results:
            continue
        label, unit = METRICS[case][metric][0], METRICS[case][metric][1]
        if t["value"] is None:
            rows.append([t["issue"], case, label, _status(results[case]), "", t["target"], "?"])
            continue
        rel = []
        if t["vs_linux"] is not None:
            rel.append(f"{t['vs_linux']:.3g}x")
        if t.get("vs_ipv4") is not None:
            rel.append(f"{t['vs_ipv4']:.2f}x v4")
        if t["vs_baseline"] is not None:
            rel.append(f"{t['vs_baseline']:.2f}x before")
        rows.append([t["issue"], case, label, f"{fmt(t['value'], unit)} {unit}".strip(),
                     ", ".join(rel), t["target"],
                     {True: "yes", False: "NO", None: "?"}[t["met"]]])
    return _render(header, rows, {3})


#: The counting pass's columns: (heading, count key(s) summed).
COUNT_COLUMNS = [
    ("task steps", ("task_steps",)),
    ("app/conn/nic/other", None),
    ("checkpoint yields", ("checkpoint_yields",)),
    ("blocking waits", ("blocking_waits",)),
    ("channel sends", ("channel_sends",)),
    ("read(v)", ("sys_read",)),
    ("write(v)", ("sys_write",)),
    ("epoll_wait", ("epoll_wait",)),
    ("epoll_ctl", ("epoll_ctl",)),
    ("syscalls", ("syscalls",)),
    ("kernel r/w", None),
]


def counts_cells(c: dict) -> list[str]:
    cells = []
    for heading, keys in COUNT_COLUMNS:
        if heading == "app/conn/nic/other":
            cells.append("/".join(f"{c.get('task_steps_' + k, 0):.1f}"
                                  for k in ("app", "connection", "nic", "other")))
        elif heading == "kernel r/w":
            cells.append(f"{c.get('kernel_syscr', 0):.1f}/{c.get('kernel_syscw', 0):.1f}")
        else:
            cells.append(f"{sum(c.get(k, 0) for k in keys):.2f}")
    return cells


def counts_table(results: dict, baseline: dict | None = None) -> str | None:
    """The counting passes (medians over the runs), one row per case; with
    a baseline that has them, the baseline's row under each."""
    header = ["case", "per"] + [h for h, _ in COUNT_COLUMNS]
    rows = []
    for case in CASES:
        res = results.get(case, {})
        if res.get("status") != "ok" or "counts" not in res:
            continue
        per = res["counts"]["per"].split(" (")[0]
        rows.append([case, per] + counts_cells(res["counts"]["counts"]))
        b = (baseline or {}).get(case, {}).get("counts")
        if b:
            rows.append([f"  (before) {case}", per] + counts_cells(b["counts"]))
    if not rows:
        return None
    return _render(header, rows, set(range(2, len(header))))


def aggregate_counts(runs: list[dict]) -> dict:
    """Medians over the runs of each count (each run's counts kept too)."""
    keys = sorted({k for r in runs for k in r["counts"]})
    return {"per": runs[0]["per"], "measured": runs[0]["measured"],
            "counts": {k: statistics.median(r["counts"].get(k, 0) for r in runs) for k in keys},
            "steps_by_task": runs[0].get("steps_by_task", {}),
            "runs": [r["counts"] for r in runs]}


def load_baseline(path: str) -> dict:
    """An earlier run's JSON (``--json``): its cases."""
    doc = json.loads(Path(path).read_text())
    return doc.get("cases", doc)


def meta(args, runs: int) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=5).stdout.strip()
        # Uncommitted changes to trionet itself: the figures are not the commit's.
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "trionet"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", []
    import trio
    return {"quick": args.quick, "runs": runs, "python": platform.python_version(),
            "trio": trio.__version__, "kernel": platform.release(), "cpus": os.cpu_count(),
            "commit": commit, "trionet_uncommitted": [line[3:] for line in dirty],
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


# ---------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, 1 run per case (checks the suite works; ~1 min)")
    ap.add_argument("--runs", type=int, default=None,
                    help="runs per case; the median, min and max are reported (default 3, "
                         "--quick: 1)")
    ap.add_argument("--case", action="append", default=[], metavar="NAME",
                    help="run only this case (repeat or comma-separate); "
                         f"one of: {', '.join(CASES)}")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--profile", metavar="FILE",
                    help="instead of measuring, run each case once under cProfile (default: "
                         "tap_bulk_in and tap_bulk_out; or the --case ones) and write the top "
                         "15 functions by tottime and cumulative time, and own time per source "
                         "file and per component, to FILE")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="override a case parameter (VALUE is JSON, else a string), for "
                         "every case run, e.g. --param size=50000000 or --param "
                         "'losses=[0.05]' (loss_goodput); the JSON records the parameters")
    ap.add_argument("--baseline", metavar="FILE.json",
                    help="an earlier run's --json (e.g. of the tree before a change): print "
                         "this run's after/before ratio per figure and judge the targets "
                         "that are relative to it (trionet <-> trionet 2x)")
    ap.add_argument("--tree", metavar="DIR",
                    help="measure the trionet package in DIR (e.g. /work/before) with this "
                         "harness")
    ap.add_argument("--no-kernel", action="store_true",
                    help="skip the cases that need the kernel peer (root, TAP, namespaces)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the cases' stderr")
    args = ap.parse_args(argv)
    names = [n.strip() for arg in args.case for n in arg.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    args.names = [n for n in CASES if n in names] if names else list(CASES)
    if args.runs is not None and args.runs < 1:
        ap.error("--runs must be at least 1")
    args.overrides = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--param wants KEY=VALUE, got {item!r}")
        try:
            args.overrides[key] = json.loads(value)
        except ValueError:
            args.overrides[key] = value
    return args


def case_params(args, name: str, mode: int) -> dict:
    """The parameters of ``name`` for this mode, with --param's overrides."""
    return dict(PARAMS[name][mode], **args.overrides)


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    if args.list:
        width = max(map(len, CASES))
        for name, (kernel, what) in CASES.items():
            print(f"{name:{width}} {'(root) ' if kernel else '       '}{what}")
        return 0
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    runs = args.runs or (1 if args.quick else 3)
    mode = 1 if args.quick else 0
    skip_reason = "--no-kernel given" if args.no_kernel else netns.kernel_peer_skip_reason()

    if args.profile:
        return profile(args, mode, skip_reason)

    results: dict = {}
    started = time.monotonic()
    load_start = os.getloadavg()
    for name in args.names:
        needs_kernel, what = CASES[name]
        if needs_kernel and skip_reason:
            results[name] = {"status": "skipped", "reason": skip_reason}
            print(f"[{name}] skipped: {skip_reason}", flush=True)
            continue
        values: dict[str, list[float]] = {}
        infos, errors, counts = [], [], []
        skipped = None
        for i in range(runs):
            params = dict(case_params(args, name, mode), run=i)
            t0 = time.monotonic()
            print(f"[{name}] run {i + 1}/{runs} ...", end=" ", flush=True)
            load = os.getloadavg()[0]
            try:
                result = run_child(name, params, verbose=args.verbose, tree=args.tree)
            except CaseFailed as exc:
                print("FAILED", flush=True)
                print(str(exc), file=sys.stderr, flush=True)
                errors.append(str(exc))
                continue
            if "skipped" in result:  # e.g. the kernel refused the TAP offloads
                print(f"skipped: {result['skipped']}", flush=True)
                skipped = result["skipped"]
                break
            for key, value in result["metrics"].items():
                values.setdefault(key, []).append(float(value))
            infos.append(dict(result.get("info", {}), loadavg_before=load,
                              trionet_tree=result.get("trionet_tree")))
            if result.get("counts"):
                counts.append(result["counts"])
            brief = ", ".join(f"{k}={fmt(v)}" for k, v in result["metrics"].items())
            print(f"{time.monotonic() - t0:.1f} s (load {load:.2f}): {brief}", flush=True)
        if skipped is not None:
            results[name] = {"status": "skipped", "reason": skipped}
        elif values:
            results[name] = {"status": "ok", "what": what,
                             "params": case_params(args, name, mode),
                             "metrics": {k: dict(summarise(v), unit=METRICS[name].get(k, ("", ""))[1],
                                                 label=METRICS[name].get(k, ("",))[0])
                                         for k, v in values.items()},
                             "errors": errors, "info": infos}
            if counts:
                results[name]["counts"] = aggregate_counts(counts)
        else:
            results[name] = {"status": "failed", "reason": errors[-1].splitlines()[0] if errors
                             else "no runs", "errors": errors}
    elapsed = time.monotonic() - started

    print()
    load_end = os.getloadavg()
    print(f"trionet benchmarks: {'quick, ' if args.quick else ''}{runs} run(s) per case, "
          f"median [min, max]; {elapsed:.0f} s; load average {load_start[0]:.2f} at the start, "
          f"{load_end[0]:.2f} at the end ({os.cpu_count()} CPUs)")
    baseline = load_baseline(args.baseline) if args.baseline else None
    print(table(results, baseline))
    if baseline:
        print(f"\n'x before': this run's median / the median in {args.baseline} (raw; the "
              f"machine drifts: compare_trees.py interleaves the two trees instead)")
    print("\nTargets (issue 13 section 4; issue 11's IPv6 rows; issue 4's rows not "
          "re-targeted since); ratios to the Linux reference of this run:")
    print(targets_table(results, baseline))
    ct = counts_table(results, baseline)
    if ct:
        print("\nCounting pass (after the timed pass, not timed), on trionet's side, per "
              "64-byte request+reply (tap_echo*) or per connection (tap_connect*; 1 client "
              "thread): trio task steps (by task: app/connection/nic/other), yields that "
              "reschedule at once (cancel_shielded_checkpoint), parks (wait_task_rescheduled), "
              "memory-channel sends, and system calls counted at the Python level (os.read/"
              "readv, os.write/writev, trio's epoll_wait and epoll_ctl) and by the kernel "
              "(/proc/self/io syscr/syscw); see _cases.COUNT_KEYS:")
        print(ct)
    doc = {"meta": dict(meta(args, runs), seconds=elapsed, loadavg_start=load_start,
                        loadavg_end=load_end, baseline=args.baseline,
                        trionet_tree=args.tree or str(ROOT)),
           "cases": results, "targets": target_rows(results, baseline)}
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nJSON written to {args.json}")
    failed = [n for n, r in results.items() if r["status"] == "failed"]
    return 1 if failed else 0


def profile(args, mode: int, skip_reason) -> int:
    texts = []
    names = args.names if args.names != list(CASES) else ["tap_bulk_in", "tap_bulk_out"]
    for name in names:
        if CASES[name][0] and skip_reason:
            print(f"cannot profile {name}: {skip_reason}", file=sys.stderr)
            return 1
        tmp = Path(args.profile).with_suffix(f".{name}.tmp")
        try:
            try:
                result = run_child(name, dict(case_params(args, name, mode), run=0),
                                   profile=str(tmp),
                                   verbose=args.verbose)
            except CaseFailed as exc:
                print(f"profiling {name} failed: {exc}", file=sys.stderr)
                return 1
            if "skipped" in result:
                print(f"cannot profile {name}: {result['skipped']}", file=sys.stderr)
                return 1
            brief = ", ".join(f"{k}={fmt(v)}" for k, v in result["metrics"].items())
            given = "".join(f", --param {k}={json.dumps(v)}" for k, v in args.overrides.items())
            texts.append(f"### {name} under cProfile{given}: {brief} (profiler overhead "
                         f"included)\n" + tmp.read_text())
        finally:
            tmp.unlink(missing_ok=True)
    Path(args.profile).write_text("\n\n".join(texts))
    print("\n\n".join(texts))
    return 0


def run_main(main) -> None:
    """Exit with ``main()``'s status; Ctrl-C (the cases clean up as they
    unwind) exits 130."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; namespaces and TAP devices of the cases were removed",
              file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run_main(main)
