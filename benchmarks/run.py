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
    "reference": ({"bulk_size": 400 * MB, "rtt_count": 5000, "rtt_warmup": 100,
                   "conn_seconds": 2.0, "conn_max": 20000, "timeout": 180},
                  {"bulk_size": 20 * MB, "rtt_count": 200, "rtt_warmup": 20,
                   "conn_seconds": 0.5, "conn_max": 2000, "timeout": 90}),
    "tap_bulk_in": ({"size": 100 * MB, "timeout": 120}, {"size": 4 * MB, "timeout": 60}),
    "tap_bulk_out": ({"size": 100 * MB, "timeout": 120}, {"size": 4 * MB, "timeout": 60}),
    "tap_bulk_in_offload": ({"size": 400 * MB, "offload": True, "timeout": 120},
                            {"size": 20 * MB, "offload": True, "timeout": 60}),
    "tap_bulk_out_offload": ({"size": 400 * MB, "offload": True, "timeout": 120},
                             {"size": 20 * MB, "offload": True, "timeout": 60}),
    "tap_echo": ({"rtt_count": 5000, "rtt_warmup": 100, "timeout": 120},
                 {"rtt_count": 200, "rtt_warmup": 20, "timeout": 60}),
    "tap_echo_offload": ({"rtt_count": 5000, "rtt_warmup": 100, "offload": True, "timeout": 120},
                         {"rtt_count": 200, "rtt_warmup": 20, "offload": True, "timeout": 60}),
    "tap_connect": ({"conn_seconds": 2.0, "conn_max": 20000, "timeout": 120},
                    {"conn_seconds": 0.5, "conn_max": 2000, "timeout": 60}),
    "tap_connect_offload": ({"conn_seconds": 2.0, "conn_max": 20000, "offload": True,
                             "timeout": 120},
                            {"conn_seconds": 0.5, "conn_max": 2000, "offload": True,
                             "timeout": 60}),
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
                           if k in ("bulk_mbps", "echo_rtt_median_us", "echo_rtt_p99_us")}
for _v6, _v4 in V6_CASES.items():
    if _v6 != "reference_v6":
        METRICS[_v6] = {k: (f"{label}, IPv6", unit, higher,
                            None if ref is None else ("reference_v6", ref[1]))
                        for k, (label, unit, higher, ref) in METRICS[_v4].items()}

#: The issue's targets: (case, metric) -> (text, check(value, results) ->
#: True/False, or None when it cannot be judged).


def _ref(results: dict, metric: str):
    case = results.get("reference", {})
    m = case.get("metrics", {}).get(metric)
    return m["median"] if m else None


def _rtt_target(value, results):
    ref = _ref(results, "echo_rtt_median_us")
    return None if ref is None else value <= ref + 100


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


def _v6_target(case: str, metric: str):
    """Issue 11: IPv6 costs no more than ~10% over IPv4 (throughput at
    least 1/1.1 of IPv4's, round trips at most 1.1 times), both relative to
    their Linux reference."""
    higher = METRICS[case][metric][2]

    def check(value, results):
        r = versus_ipv4(results, case, metric)
        if r is None:
            return None
        return r >= 1 / 1.1 if higher else r <= 1.1
    return ("<= 10% over IPv4", check)


TARGETS = {
    ("tap_bulk_in", "mbps"): (">= 50 MB/s", lambda v, r: v >= 50),
    ("tap_bulk_out", "mbps"): (">= 50 MB/s", lambda v, r: v >= 50),
    ("tap_bulk_in_offload", "mbps"): (">= 250 MB/s", lambda v, r: v >= 250),
    ("tap_bulk_out_offload", "mbps"): (">= 250 MB/s", lambda v, r: v >= 250),
    ("cable_bulk", "mbps"): (">= 40 MB/s", lambda v, r: v >= 40),
    ("loopback_bulk", "mbps"): (">= 300 MB/s", lambda v, r: v >= 300),
    ("tap_connect", "conn_per_s_par8"): (">= 3000/s", lambda v, r: v >= 3000),
    ("tap_connect_offload", "conn_per_s_par8"): (">= 3000/s", lambda v, r: v >= 3000),
    ("tap_echo", "rtt_median_us"): ("<= kernel RTT + 100 us", _rtt_target),
    ("tap_echo_offload", "rtt_median_us"): ("<= kernel RTT + 100 us", _rtt_target),
    ("tap_idle", "rss_per_conn_kb"): ("<= 16 KB", lambda v, r: v <= 16),
    ("tap_idle", "idle_cpu_percent"): ("< 2 %", lambda v, r: v < 2),
    ("loss_goodput", "loss1_ratio"): (">= 0.50", lambda v, r: v >= 0.5),
    ("loss_goodput", "loss5_ratio"): (">= 0.20", lambda v, r: v >= 0.2),
}
TARGETS.update({(case, metric): _v6_target(case, metric) for case in V6_CASES
                if case != "reference_v6" for metric in METRICS[case]
                if metric != "rtt_p99_us"})


# ---------------------------------------------------------------------------
# Running one case in a child process


class CaseFailed(Exception):
    pass


def run_child(name: str, params: dict, *, profile: str | None = None,
              verbose: bool = False) -> dict:
    """Run one case once in a child process; return its result dict."""
    argv = [sys.executable, str(CASES_SCRIPT), name, json.dumps(params)]
    if profile:
        argv += ["--profile", profile]
    budget = params.get("timeout", 120) + 60
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, cwd=str(ROOT))
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


def target_rows(results: dict) -> list[dict]:
    rows = []
    for (case, metric), (text, check) in TARGETS.items():
        m = results.get(case, {}).get("metrics", {}).get(metric)
        if m is None:
            rows.append({"case": case, "metric": metric, "target": text, "value": None,
                         "met": None})
            continue
        met = check(m["median"], results)
        rows.append({"case": case, "metric": metric, "target": text, "value": m["median"],
                     "met": met})
    return rows


def table(results: dict) -> str:
    targets = {(r["case"], r["metric"]): r for r in target_rows(results)}
    header = ["case", "metric", "median", "min", "max", "unit", "vs Linux", "target", "met"]
    rows = []
    for case in CASES:
        res = results.get(case)
        if res is None:
            continue
        if res["status"] != "ok":
            rows.append([case, f"{res['status'].upper()}: {res.get('reason', '')[:70]}",
                         "", "", "", "", "", "", ""])
            continue
        for metric, (label, unit, _, _) in METRICS[case].items():
            m = res["metrics"].get(metric)
            if m is None:
                continue
            t = targets.get((case, metric))
            met = "" if t is None else {True: "yes", False: "NO", None: "?"}[t["met"]]
            rows.append([case, label, fmt(m["median"], unit), fmt(m["min"], unit),
                         fmt(m["max"], unit), unit, ratio_text(case, metric, m["median"], results),
                         t["target"] if t else "", met])
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    right = {2, 3, 4}

    def line(r):
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        return "| " + " | ".join(cells) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2)
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


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
        infos, errors = [], []
        skipped = None
        for i in range(runs):
            params = dict(case_params(args, name, mode), run=i)
            t0 = time.monotonic()
            print(f"[{name}] run {i + 1}/{runs} ...", end=" ", flush=True)
            load = os.getloadavg()[0]
            try:
                result = run_child(name, params, verbose=args.verbose)
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
            infos.append(dict(result.get("info", {}), loadavg_before=load))
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
        else:
            results[name] = {"status": "failed", "reason": errors[-1].splitlines()[0] if errors
                             else "no runs", "errors": errors}
    elapsed = time.monotonic() - started

    print()
    load_end = os.getloadavg()
    print(f"trionet benchmarks: {'quick, ' if args.quick else ''}{runs} run(s) per case, "
          f"median [min, max]; {elapsed:.0f} s; load average {load_start[0]:.2f} at the start, "
          f"{load_end[0]:.2f} at the end ({os.cpu_count()} CPUs)")
    print(table(results))
    doc = {"meta": dict(meta(args, runs), seconds=elapsed, loadavg_start=load_start,
                        loadavg_end=load_end),
           "cases": results, "targets": target_rows(results)}
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


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; namespaces and TAP devices of the cases were removed",
              file=sys.stderr)
        sys.exit(130)
