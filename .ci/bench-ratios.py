#!/usr/bin/env python3
"""Checks benchmark ratios measured in one run against their budgets.

Usage: bench-ratios.py CRITERION_DIR RATIOS_JSON
Reads criterion's `<group>/<bench>/new/estimates.json` (median point estimates, ns; a `/` in a
bench name is stored as `_`) and, for every ratio in RATIOS_JSON, prints the measured value,
the baseline and the budget. Exits 1 if a ratio is over its `max` or a benchmark is missing
(renamed? update the JSON in the same PR). Standard library only.
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


def main():
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
