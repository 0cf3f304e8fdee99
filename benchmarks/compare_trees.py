"""Two trionet trees side by side, interleaved: the suite's cases run
alternately against the tree before a change and the tree after it (the
same harness, this directory's, for both: each child process imports
trionet from the tree given), round after round with the order alternating,
and the Linux references measured in every round, so that the machine's
drift falls on both trees alike. See README.md.

    python benchmarks/compare_trees.py --before /work/before --case tap_echo,tap_bulk_echo
    python benchmarks/compare_trees.py --before /work/before --rounds 5 --json cmp.json
    python benchmarks/compare_trees.py --before /work/before --quick --rounds 2

For every figure it prints the median over the rounds of: the before and
after figures, the per-round after/before ratio, and each tree's ratio to
the Linux reference of its round; for the counting passes (tap_echo*,
tap_connect*) the before and after counts. Then the targets judged on the
after tree, with the targets that are relative to the earlier tree
("trionet <-> trionet 2x today's") judged from the after/before ratio.
The cases use only the public API both trees have (a case about offload
passes ``offload`` explicitly; the "default link" cases pass nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402  (benchmarks/run.py: cases, parameters, run_child)

#: The cases compared by default: every trionet case of the suite.
DEFAULT_CASES = [n for n in run.CASES if not n.startswith("reference")]


def tree_hash(tree: Path) -> str:
    """SHA-256 (first 16 hex digits) of a tree's trionet sources, at the
    start and at the end (a tree edited during the session shows)."""
    import hashlib
    h = hashlib.sha256()
    for path in sorted((tree / "trionet").rglob("*.py")):
        h.update(str(path.relative_to(tree)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def reference_params(name: str, cases: list[str], quick: bool) -> dict:
    """The reference's parameters, reduced to the figures the cases compare
    with (bulk, bulk echo, echo, connection rates)."""
    p = dict(run.PARAMS[name][1 if quick else 0])
    refs = {run.METRICS[c][m][3][1] for c in cases for m in run.METRICS[c]
            if run.METRICS[c][m][3]}
    if "bulk_mbps" not in refs:
        p["bulk_size"] = 0
    if "bulk_echo_mbps" not in refs:
        p["bulk_echo_size"] = 0
    p["echo"] = bool(refs & {"echo_rtt_median_us", "echo_rtt_p99_us"})
    p["connections"] = name == "reference" and bool(refs & {"conn_per_s_seq",
                                                            "conn_per_s_par8"})
    return p


def once(name: str, params: dict, tree: str | None, label: str, verbose: bool) -> dict:
    t0 = time.monotonic()
    try:
        result = run.run_child(name, params, verbose=verbose, tree=tree)
    except run.CaseFailed as exc:
        print(f"  {label:6} {name}: FAILED", flush=True)
        return {"failed": str(exc).splitlines()[0]}
    if "skipped" in result:
        print(f"  {label:6} {name}: skipped: {result['skipped']}", flush=True)
        return {"skipped": result["skipped"]}
    if tree and result.get("trionet_tree") != str(Path(tree).resolve()):
        raise SystemExit(f"{name} measured {result.get('trionet_tree')}, not {tree}")
    brief = ", ".join(f"{k}={run.fmt(v)}" for k, v in result["metrics"].items())
    print(f"  {label:6} {name}: {time.monotonic() - t0:.1f} s: {brief}", flush=True)
    return result


def _med(values):
    return statistics.median(values) if values else None


def summarise(rounds: list[dict], cases: list[str]) -> tuple[list[dict], list[dict]]:
    """Per case and metric (and per count): medians over the rounds."""
    rows, counts = [], []
    for case in cases:
        for metric, (label, unit, higher, ref) in run.METRICS[case].items():
            runs = {"before": [], "after": [], "ratio": [], "before_x_linux": [],
                    "after_x_linux": []}
            for r in rounds:
                b = r.get(case, {}).get("before", {}).get("metrics", {}).get(metric)
                a = r.get(case, {}).get("after", {}).get("metrics", {}).get(metric)
                if a is None or b is None:
                    continue
                runs["before"].append(b)
                runs["after"].append(a)
                runs["ratio"].append(a / b if b else float("nan"))
                if ref:
                    rv = r.get(ref[0], {}).get("metrics", {}).get(ref[1])
                    if rv:
                        runs["before_x_linux"].append(b / rv)
                        runs["after_x_linux"].append(a / rv)
            rows.append({"case": case, "metric": metric, "label": label, "unit": unit,
                         "higher_is_better": higher, "rounds": len(runs["after"]),
                         "median": {k: _med(v) for k, v in runs.items()}, "runs": runs,
                         "status": _status(rounds, case)})
        keys = []
        for r in rounds:
            for side in ("before", "after"):
                keys += [k for k in r.get(case, {}).get(side, {}).get("counts", {})
                         .get("counts", {}) if k not in keys]
        for key in keys:
            vals = {side: [r[case][side]["counts"]["counts"].get(key, 0) for r in rounds
                           if r.get(case, {}).get(side, {}).get("counts")]
                    for side in ("before", "after")}
            per = next(r[case][s]["counts"]["per"] for r in rounds for s in ("after", "before")
                       if r.get(case, {}).get(s, {}).get("counts"))
            counts.append({"case": case, "count": key, "per": per,
                           "before": _med(vals["before"]), "after": _med(vals["after"]),
                           "runs": vals})
    return rows, counts


def _status(rounds, case) -> str:
    for r in rounds:
        for side in ("before", "after"):
            x = r.get(case, {}).get(side, {})
            if "skipped" in x or "failed" in x:
                return f"{side}: {x.get('skipped') or x.get('failed')}"[:70]
    return ""


def verdicts(rows: list[dict], rounds: list[dict], cases: list[str]) -> list[dict]:
    """The suite's targets, judged on the after tree's medians (and its
    reference medians over the rounds), with the before tree as baseline."""
    def medians(side):
        out = {}
        for row in rows:
            if row["median"][side] is not None:
                out.setdefault(row["case"], {"status": "ok", "metrics": {}})["metrics"][
                    row["metric"]] = {"median": row["median"][side]}
        for ref in ("reference", "reference_v6"):
            figs = {}
            for r in rounds:
                for k, v in r.get(ref, {}).get("metrics", {}).items():
                    figs.setdefault(k, []).append(v)
            if figs:
                out[ref] = {"status": "ok",
                            "metrics": {k: {"median": _med(v)} for k, v in figs.items()}}
        return out
    after, before = medians("after"), medians("before")
    # "x before" is the median of the per-round ratios (the interleaved
    # comparison), not the ratio of the medians: the baseline handed to the
    # targets is after / that ratio.
    for row in rows:
        ratio = row["median"]["ratio"]
        if ratio and row["median"]["after"] is not None:
            before.setdefault(row["case"], {"status": "ok", "metrics": {}})["metrics"][
                row["metric"]] = {
                "median": row["median"]["after"] / ratio}
    return [t for t in run.target_rows(after, before) if t["case"] in cases]


def print_tables(rows, counts, targets) -> None:
    header = ["case", "metric", "before", "after", "unit", "after/before", "before x Linux",
              "after x Linux", "rounds"]
    out = []
    for row in rows:
        m = row["median"]
        if m["after"] is None:
            out.append([row["case"], row["label"], "-", "-", row["unit"], "", "", "",
                        row["status"] or "0"])
            continue
        out.append([row["case"], row["label"], run.fmt(m["before"], row["unit"]),
                    run.fmt(m["after"], row["unit"]), row["unit"], f"{m['ratio']:.2f}",
                    "" if m["before_x_linux"] is None else f"{m['before_x_linux']:.3g}",
                    "" if m["after_x_linux"] is None else f"{m['after_x_linux']:.3g}",
                    row["rounds"]])
    print(run._render(header, out, {2, 3, 5, 6, 7, 8}))
    if counts:
        print("\nCounting passes (per " + "; ".join(sorted({c['per'] for c in counts})) +
              "): medians over the rounds; see _cases.COUNT_KEYS")
        shown = ("task_steps", "task_steps_app", "task_steps_connection", "task_steps_nic",
                 "task_steps_other", "checkpoint_yields", "checkpoint_calls", "blocking_waits",
                 "channel_sends", "lot_parks", "sys_read", "sys_write", "epoll_wait",
                 "epoll_ctl", "syscalls", "kernel_syscr", "kernel_syscw")
        out = [[c["case"], c["count"], f"{c['before']:.2f}" if c["before"] is not None else "-",
                f"{c['after']:.2f}" if c["after"] is not None else "-",
                f"{c['after'] / c['before']:.2f}" if c["before"] and c["after"] is not None
                else ""]
               for c in counts if c["count"] in shown]
        print(run._render(["case", "count", "before", "after", "after/before"], out, {2, 3, 4}))
    if targets:
        print("\nTargets, judged on the after tree (medians over the rounds; 'x before' from "
              "the interleaved rounds):")
        out = []
        for t in targets:
            rel = []
            if t["vs_linux"] is not None:
                rel.append(f"{t['vs_linux']:.3g}x Linux")
            if t["vs_baseline"] is not None:
                rel.append(f"{t['vs_baseline']:.2f}x before")
            out.append([t["issue"], t["case"], t["metric"],
                        "-" if t["value"] is None else run.fmt(t["value"]), ", ".join(rel),
                        t["target"], {True: "yes", False: "NO", None: "?"}[t["met"]]])
        print(run._render(["issue", "case", "metric", "after", "relative", "target", "met"],
                          out, {3}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, metavar="DIR",
                    help="the earlier tree (its trionet package is measured)")
    ap.add_argument("--after", default=str(run.ROOT), metavar="DIR",
                    help=f"the later tree (default: this one, {run.ROOT})")
    ap.add_argument("--case", action="append", default=[], metavar="NAME",
                    help="only these cases (repeat or comma-separate; default: every "
                         "trionet case)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="the --quick sizes")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="override a case parameter (as run.py's --param)")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    cases = [n.strip() for a in args.case for n in a.split(",") if n.strip()] or DEFAULT_CASES
    unknown = [n for n in cases if n not in run.CASES or n.startswith("reference")]
    if unknown or args.rounds < 1:
        ap.error(f"unknown case(s) {unknown}" if unknown else "--rounds must be at least 1")
    overrides = run.parse_args(sum((["--param", x] for x in args.param), [])).overrides
    trees = {"before": str(Path(args.before).resolve()), "after": str(Path(args.after).resolve())}
    for t in trees.values():
        if not (Path(t) / "trionet" / "__init__.py").exists():
            ap.error(f"{t} has no trionet package")
    skip = run.netns.kernel_peer_skip_reason()
    if skip:
        cases = [c for c in cases if not run.CASES[c][0]]
        print(f"kernel cases skipped: {skip}", flush=True)
    mode = 1 if args.quick else 0
    refs = [r for r in ("reference", "reference_v6")
            if not skip and any(run.METRICS[c][m][3] and run.METRICS[c][m][3][0] == r
                                for c in cases for m in run.METRICS[c])]
    hashes = {k: tree_hash(Path(t)) for k, t in trees.items()}
    started, load_start = time.monotonic(), os.getloadavg()
    rounds = []
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds} (load {os.getloadavg()[0]:.2f})", flush=True)
        results: dict = {}
        for ref in refs:
            r = once(ref, dict(reference_params(ref, cases, args.quick), run=i), None,
                     "linux", args.verbose)
            results[ref] = r
        for case in cases:
            params = dict(run.PARAMS[case][mode], **overrides, run=i)
            order = ("before", "after") if i % 2 == 0 else ("after", "before")
            results[case] = {side: once(case, params, trees[side], side, args.verbose)
                             for side in order}
        rounds.append(results)
    rows, counts = summarise(rounds, cases)
    targets = verdicts(rows, rounds, cases)
    load_end = os.getloadavg()
    hashes_end = {k: tree_hash(Path(t)) for k, t in trees.items()}
    elapsed = time.monotonic() - started
    edited = [k for k in trees if hashes[k] != hashes_end[k]]
    print(f"\nbefore = {trees['before']} ({hashes['before']}), after = {trees['after']} "
          f"({hashes['after']}); {args.rounds} interleaved round(s), order alternating; "
          f"medians over the rounds; {elapsed:.0f} s; load average {load_start[0]:.2f} at "
          f"the start, {load_end[0]:.2f} at the end ({os.cpu_count()} CPUs)"
          + (f"; EDITED DURING THE SESSION: {', '.join(edited)}" if edited else ""))
    print_tables(rows, counts, targets)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"meta": {"trees": trees, "sources": hashes, "sources_end": hashes_end,
                      "rounds": args.rounds, "quick": args.quick, "cases": cases,
                      "overrides": overrides, "seconds": elapsed, "loadavg_start": load_start,
                      "loadavg_end": load_end, "date": time.strftime("%Y-%m-%d %H:%M:%S")},
             "rows": rows, "counts": counts, "targets": targets, "rounds": rounds},
            indent=2, default=str) + "\n")
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    run.run_main(main)
