#!/usr/bin/env python3
"""Coverage of the critical paths (issue 22).

Usage: coverage.py LLVM_COV_JSON FLOORS_JSON [--write-floors]

LLVM_COV_JSON is `cargo llvm-cov --json` output (llvm-cov export format: per-file summaries
of lines and branches). FLOORS_JSON (.ci/coverage-floors.json) names the critical paths (file
or directory prefixes relative to the workspace) and their floors. Prints a per-crate table
and a per-path table (lines and branches covered / total, percent, floor, goal); exits 1 if a
path is below its floor. --write-floors records the measured figures (rounded down to a whole
percent, less two points for branches that timing decides) as the new floors. Standard library only.
"""
import json
import os
import sys


def pct(c, t):
    return 100.0 * c / t if t else 100.0


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    with open(args[0], encoding="utf-8") as f:
        export = json.load(f)
    with open(args[1], encoding="utf-8") as f:
        spec = json.load(f)
    root = os.getcwd().rstrip("/") + "/"
    files = {}
    for data in export["data"]:
        for fe in data["files"]:
            name = fe["filename"]
            if name.startswith(root):
                name = name[len(root):]
            # Test code is not what is measured: integration tests and `tests.rs` modules.
            if name.startswith("/") or "/tests/" in name or name.endswith("/tests.rs") or name.startswith("fuzz/"):
                continue
            s = fe["summary"]
            files[name] = (s["lines"]["covered"], s["lines"]["count"],
                           s.get("branches", {}).get("covered", 0), s.get("branches", {}).get("count", 0))

    def total(prefixes):
        lc = lt = bc = bt = 0
        for name, (a, b, c, d) in files.items():
            if any(name.startswith(p) for p in prefixes):
                lc, lt, bc, bt = lc + a, lt + b, bc + c, bt + d
        return lc, lt, bc, bt

    crates = sorted({"/".join(n.split("/")[:2]) if n.startswith("crates/") else n.split("/")[0] for n in files})
    print(f"{'crate':<28} {'lines':>18} {'branches':>18}")
    for c in crates:
        lc, lt, bc, bt = total([c + "/"])
        print(f"{c:<28} {lc:>7}/{lt:<7} {pct(lc, lt):5.1f}% {bc:>6}/{bt:<6} {pct(bc, bt):5.1f}%")
    lc, lt, bc, bt = total([""])
    print(f"{'workspace':<28} {lc:>7}/{lt:<7} {pct(lc, lt):5.1f}% {bc:>6}/{bt:<6} {pct(bc, bt):5.1f}%\n")

    goal = spec["goal"]
    floors = spec.setdefault("floors", {})
    below = []
    print(f"{'critical path':<36} {'lines %':>8} {'floor':>6} {'branches %':>11} {'floor':>6}")
    for path, prefixes in spec["paths"].items():
        lc, lt, bc, bt = total(prefixes)
        lp, bp = pct(lc, lt), pct(bc, bt)
        fl = floors.get(path, {})
        lf, bf = fl.get("lines", 0.0), fl.get("branches", 0.0)
        marks = ("" if lp >= goal["lines"] else " <goal") + ("" if bp >= goal["branches"] else " <goal(b)")
        print(f"{path:<36} {lp:8.1f} {lf:6.0f} {bp:11.1f} {bf:6.0f}{marks}")
        if lp + 1e-9 < lf or bp + 1e-9 < bf:
            below.append(path)
        if "--write-floors" in sys.argv:
            # Two points of margin: some branches are taken or not by timing (retries, races).
            floors[path] = {"lines": float(max(0, int(lp) - 2)), "branches": float(max(0, int(bp) - 2))}
    if "--write-floors" in sys.argv:
        with open(args[1], "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=2)
            f.write("\n")
        print(f"\nfloors written to {args[1]}")
    if below:
        sys.exit(f"\nbelow the floor: {', '.join(below)}")


if __name__ == "__main__":
    main()
