"""IPv4 against IPv6, interleaved: each IPv4 case and its ``*_v6`` twin run
one after the other, round after round (the order alternating), with both
Linux references in every round, so that the machine's drift falls on both
families alike. See README.md, "IPv6 against IPv4".

    python benchmarks/interleave.py --rounds 5 --json ipv6.json
    python benchmarks/interleave.py --rounds 2 --quick --pair cable_bulk

For each pair and metric it prints the median over the rounds of: the IPv4
figure, the IPv6 figure, each relative to its own family's Linux reference
of the same round (``x ref``), the raw IPv6/IPv4 ratio of each round, and
the ratio of the two relative figures ((v6 / ref v6) / (v4 / ref v4)), with
the extra cost of IPv6 that makes (throughput: v4/v6 - 1, round trips and
CPU time: v6/v4 - 1). For the TAP bulk cases it also compares trionet's CPU
time for the transfer (user + system, no reference: raw). The issue's
target is a cost of at most ~10%.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402  (benchmarks/run.py: cases, parameters, run_child)

#: The pairs compared (IPv4 case; its IPv6 twin is CASE + "_v6").
PAIRS = ["tap_bulk_in", "tap_bulk_out", "tap_bulk_in_offload", "tap_bulk_out_offload",
         "tap_echo", "tap_echo_offload", "tap_bulk_echo", "cable_bulk", "loopback_bulk"]
#: The metrics compared per pair (the echo cases' p99 is left out: too noisy).
COMPARED = {"mbps", "rtt_median_us"}


def params(name: str, quick: bool) -> dict:
    p = dict(run.PARAMS[name][1 if quick else 0])
    if name == "reference":
        p["connections"] = False  # only bulk and echo are compared
    return p


def once(name: str, quick: bool, round_: int, verbose: bool) -> dict:
    """One run of ``name``: {"metrics": ...} or {"skipped"/"failed": reason}."""
    t0 = time.monotonic()
    try:
        result = run.run_child(name, dict(params(name, quick), run=round_), verbose=verbose)
    except run.CaseFailed as exc:
        print(f"  {name}: FAILED", flush=True)
        return {"failed": str(exc).splitlines()[0]}
    if "skipped" in result:
        print(f"  {name}: skipped: {result['skipped']}", flush=True)
        return {"skipped": result["skipped"]}
    brief = ", ".join(f"{k}={run.fmt(v)}" for k, v in result["metrics"].items())
    print(f"  {name}: {time.monotonic() - t0:.1f} s: {brief}", flush=True)
    return {"metrics": result["metrics"], "info": result.get("info", {})}


def tree_hash() -> str:
    """SHA-256 (first 16 hex digits) of trionet's sources: the JSON records
    it at the start and the end, so a tree edited during the session shows."""
    h = hashlib.sha256()
    for path in sorted((run.ROOT / "trionet").rglob("*.py")):
        h.update(str(path.relative_to(run.ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def ref_metric(case: str, metric: str) -> str | None:
    ref = run.METRICS[case][metric][3]
    return ref[1] if ref else None


def _cpu(result: dict) -> float | None:
    """trionet's CPU seconds (user + system) over the measured transfer."""
    info = result.get("info", {})
    if "cpu_user_seconds" not in info:
        return None
    return info["cpu_user_seconds"] + info["cpu_system_seconds"]


def series(v4: str):
    """(metric key, label, unit, higher is better, value(result), reference
    metric or None) for one pair: its compared metrics, and for the TAP bulk
    cases trionet's CPU time for the transfer (no reference: compared raw)."""
    out = []
    for metric, (label, unit, higher, _) in run.METRICS[v4].items():
        if metric in COMPARED:
            out.append((metric, label, unit, higher,
                        lambda r, m=metric: r.get("metrics", {}).get(m), ref_metric(v4, metric)))
    if v4.startswith("tap_bulk"):
        out.append(("cpu_seconds", "trionet CPU s for the transfer", "s", False, _cpu, None))
    return out


def summarise(rounds: list[dict], pairs: list[str]) -> list[dict]:
    """Per pair and metric: medians over the rounds of the figures and of
    the per-round ratios, and the runs. For a metric with a Linux
    reference, a round counts only if both references have it."""
    rows = []
    for v4 in pairs:
        v6 = v4 + "_v6"
        for metric, label, unit, higher, value, refm in series(v4):
            runs = {"v4": [], "v6": [], "raw": []}
            if refm:
                runs.update({"ref4": [], "ref6": [], "rel4": [], "rel6": [], "rel": []})
            skipped = None
            for r in rounds:
                a, b = r.get(v4, {}), r.get(v6, {})
                skipped = skipped or b.get("skipped") or a.get("skipped")
                x, y = value(a), value(b)
                if x is None or y is None:
                    continue
                if refm:
                    ref4 = r.get("reference", {}).get("metrics", {}).get(refm)
                    ref6 = r.get("reference_v6", {}).get("metrics", {}).get(refm)
                    if not ref4 or not ref6:
                        continue
                    runs["ref4"].append(ref4)
                    runs["ref6"].append(ref6)
                    runs["rel4"].append(x / ref4)
                    runs["rel6"].append(y / ref6)
                    runs["rel"].append((y / ref6) / (x / ref4))
                runs["v4"].append(x)
                runs["v6"].append(y)
                runs["raw"].append(y / x)
            row = {"pair": v4, "metric": metric, "label": label, "unit": unit,
                   "higher_is_better": higher, "rounds": len(runs["v4"]), "runs": runs,
                   "skipped": skipped}
            if runs["v4"]:
                med = {k: statistics.median(v) for k, v in runs.items()}
                row["median"] = med
                ratio = med["rel"] if refm else med["raw"]
                row["ipv6_cost"] = (1 / ratio - 1) if higher else (ratio - 1)
                row["met"] = row["ipv6_cost"] <= 0.10
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    header = ["pair", "metric", "IPv4", "x ref4", "IPv6", "x ref6", "v6/v4 raw",
              "v6/v4 vs ref", "IPv6 cost", "<= 10%"]
    out = [header]
    for row in rows:
        if "median" not in row:
            out.append([row["pair"], row["label"], "-", "", "-", "", "", "",
                        f"skipped: {(row['skipped'] or 'no result')[:60]}", ""])
            continue
        m = row["median"]
        unit = row["unit"]
        ref = "rel" in m
        out.append([row["pair"], row["label"], f"{run.fmt(m['v4'])} {unit}",
                    f"{m['rel4']:.3g}" if ref else "", f"{run.fmt(m['v6'])} {unit}",
                    f"{m['rel6']:.3g}" if ref else "", f"{m['raw']:.2f}",
                    f"{m['rel']:.2f}" if ref else "", f"{100 * row['ipv6_cost']:+.0f}%",
                    "yes" if row["met"] else "NO"])
    widths = [max(len(str(r[i])) for r in out) for i in range(len(header))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in out]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="the --quick sizes")
    ap.add_argument("--pair", action="append", default=[], metavar="CASE",
                    help=f"only these IPv4 cases (and their twins); of: {', '.join(PAIRS)}")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    pairs = [p for arg in args.pair for p in arg.split(",") if p] or PAIRS
    unknown = [p for p in pairs if p not in PAIRS]
    if unknown or args.rounds < 1:
        ap.error(f"unknown pair(s) {unknown}" if unknown else "--rounds must be at least 1")
    skip = run.netns.kernel_peer_skip_reason()
    if skip:
        pairs = [p for p in pairs if not run.CASES[p][0]]
        print(f"kernel cases skipped: {skip}", flush=True)
    started = time.monotonic()
    load_start = os.getloadavg()
    tree_start = tree_hash()
    rounds = []
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds} (load {os.getloadavg()[0]:.2f})", flush=True)
        results = {}
        # Both references first, then each pair; the order within each
        # alternates from round to round.
        groups = ([["reference", "reference_v6"]] if not skip else []) + \
            [[p, p + "_v6"] for p in pairs]
        for group in groups:
            for name in (group if i % 2 == 0 else group[::-1]):
                results[name] = once(name, args.quick, i, args.verbose)
        rounds.append(results)
    rows = summarise(rounds, pairs)
    load_end = os.getloadavg()
    tree_end = tree_hash()
    elapsed = time.monotonic() - started
    print(f"\nIPv4 against IPv6, {args.rounds} interleaved round(s), medians over the rounds; "
          f"{elapsed:.0f} s; load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} "
          f"at the end ({os.cpu_count()} CPUs); trionet sources {tree_start}"
          + ("" if tree_end == tree_start else f" -> {tree_end} (EDITED DURING THE SESSION)"))
    print(table(rows))
    if args.json:
        meta = run.meta(argparse.Namespace(quick=args.quick), 1)
        Path(args.json).write_text(json.dumps(
            {"meta": dict(meta, rounds=args.rounds, seconds=elapsed, loadavg_start=load_start,
                          loadavg_end=load_end, trionet_sources_start=tree_start,
                          trionet_sources_end=tree_end),
             "rows": rows, "rounds": rounds}, indent=2) + "\n")
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    run.run_main(main)
