#!/usr/bin/env python3
"""Checks benchmark ratios measured in one run against their budgets.

Usage: bench-ratios.py CRITERION_DIR RATIOS_JSON
       bench-ratios.py --results BENCH_RESULTS_JSON
Reads criterion's `<group>/<bench>/new/estimates.json` (median point estimates, ns; a `/` in a
bench name is stored as `_`) and, for every ratio in RATIOS_JSON, prints the measured value,
the baseline and the budget. Exits 1 if a ratio is over its `max` or a benchmark is missing
(renamed? update the JSON in the same PR).

With --results, reads the `bench-results.json` that `palisade-chaos bench` writes (format in
chaos/src/bench/mod.rs, `Results`), prints every target with its measured ratio and goal, and
exits 1 only if the file is malformed or a part of the run failed: the issue-8 targets are
goals reported in README "Performance", not gates (a noisy runner would make them flaky).
Standard library only.
"""
import json
import pathlib
import sys


def median_ns(root, bench):
    group, _, name = bench.partition("/")
    path = root / group / name.replace("/", "_") / "new" / "estimates.json"
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)["median"]["point_estimate"]
    except (OSError, KeyError, ValueError) as e:
        raise LookupError(f"no estimate for {bench} at {path} ({e})") from None


def check_results(path):
    with open(path, encoding="utf-8") as f:
        r = json.load(f)
    problems = []
    if r.get("schema") != 1:
        problems.append(f"unknown schema {r.get('schema')!r} (expected 1)")
    figures = r.get("figures")
    targets = r.get("targets")
    if not isinstance(figures, dict) or not isinstance(targets, list):
        problems.append("figures must be an object and targets a list")
        figures, targets = {}, []
    for name, fig in figures.items():
        if not isinstance(fig, dict) or not isinstance(fig.get("value"), (int, float)):
            problems.append(f"figure {name}: no numeric value")
    print(f"{'id':<4} {'target':<46} {'measured':>10} {'goal':>10}  met")
    for t in targets:
        missing = [k for k in ("id", "name", "value", "goal", "op", "met") if k not in t]
        if missing:
            problems.append(f"target {t.get('id', '?')}: missing {', '.join(missing)}")
            continue
        if t["op"] not in (">=", "<="):
            problems.append(f"target {t['id']}: op {t['op']!r}")
        value = "-" if t["value"] is None else f"{t['value']:.3f}"
        met = {True: "yes", False: "NO", None: "n/a"}.get(t["met"], "?")
        print(f"{t['id']:<4} {t['name']:<46} {value:>10} {t['op']} {t['goal']:<7}  {met}")
    for part, err in (r.get("errors") or {}).items():
        problems.append(f"part {part} failed: {err}")
    if not targets:
        problems.append("no targets measured")
    if problems:
        print("\nbench results check failed:\n  " + "\n  ".join(problems), file=sys.stderr)
        sys.exit(1)
    quick = " (--quick: sizes scaled down, figures not meaningful)" if r.get("quick") else ""
    print(f"\n{len(targets)} targets, {len(figures)} figures{quick}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--results":
        check_results(sys.argv[2])
        return
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    root = pathlib.Path(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as f:
        spec = json.load(f)
    failures = []
    print(f"{'ratio':<64} {'measured':>10} {'baseline':>10} {'max':>8}")
    for r in spec["ratios"]:
        try:
            num = median_ns(root, r["numerator"]) / r.get("num_per", 1)
            den = median_ns(root, r["denominator"]) / r.get("den_per", 1)
        except LookupError as e:
            failures.append(f"{r['name']}: {e}")
            continue
        value = num / den
        verdict = "ok"
        if value > r["max"]:
            verdict = "OVER BUDGET"
            failures.append(f"{r['name']}: {value:.4f} > max {r['max']}")
        elif value > 1.5 * r["baseline"]:
            verdict = "slower than baseline"
        print(f"{r['name']:<64} {value:>10.4f} {r['baseline']:>10.4f} {r['max']:>8} {verdict}")
    if failures:
        print("\nbench ratio check failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)
    print("\nall ratios within budget")


main()
