#!/usr/bin/env python3
"""The figures' history (issue 22): compares the newest bench entry of a figure log with the
committed baseline and prints a regression table; lists the scenario runs.

Usage: figures.py LOG BASELINE_JSON

LOG is the JSON-lines file `palisade-chaos bench` and `run` append to (`--figure-log`, default
target/palisade-figures.jsonl; format in chaos/src/figure_log.rs). BASELINE_JSON is
bench/baseline.json: per kind of run ("full" or "quick") the baseline value of each target's
ratio and a relative tolerance (`tolerance_by_target` overrides it for a noisy target). For each target of the newest bench entry the table prints
the baseline, the measured value, the change and a status: `ok`, `better`, `REGRESSED` (worse
than the baseline by more than the tolerance, in the target's direction), `new` (no baseline).

Exits 1 if the log is missing, holds no bench entry, or a line is malformed; a regression is
reported, not failed (ratios on a shared runner are noisy; the table is for the reader).
Standard library only.
"""
import json
import sys


def load(path):
    entries = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
            except ValueError as err:
                sys.exit(f"{path}:{n}: not JSON ({err})")
            if e.get("kind") not in ("bench", "scenario") or "commit" not in e:
                sys.exit(f"{path}:{n}: not a figure-log entry (kind bench|scenario, commit)")
            entries.append(e)
    return entries


def status(op, base, value, tol):
    if base is None:
        return "new"
    if value is None:
        return "n/a"
    worse = value < base * (1 - tol) if op == ">=" else value > base * (1 + tol)
    better = value > base if op == ">=" else value < base
    return "REGRESSED" if worse else ("better" if better else "ok")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    entries = load(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as f:
        baseline = json.load(f)
    benches = [e for e in entries if e["kind"] == "bench"]
    if not benches:
        sys.exit(f"{sys.argv[1]}: no bench entry")
    new = benches[-1]
    section = "quick" if new.get("quick") else "full"
    base, tol = baseline[section], baseline["tolerance"][section]
    tol_by_target = baseline.get("tolerance_by_target", {}).get(section, {})
    print(f"bench of {new['commit']} ({section}; tolerance {tol:.0%}) against bench/baseline.json")
    print(f"{'id':<4} {'goal':>10} {'baseline':>10} {'measured':>10} {'change':>8}  status")
    regressed = []
    for tid, t in sorted(new["targets"].items(), key=lambda kv: (int("".join(c for c in kv[0] if c.isdigit()) or 0), kv[0])):
        b, v = base.get(tid), t.get("value")
        s = status(t["op"], b, v, tol_by_target.get(tid, tol))
        change = "-" if b in (None, 0) or v is None else f"{(v - b) / b:+.0%}"
        fmt = lambda x: "-" if x is None else f"{x:.3f}"
        print(f"{tid:<4} {t['op']} {t['goal']:<7} {fmt(b):>10} {fmt(v):>10} {change:>8}  {s}")
        if s == "REGRESSED":
            regressed.append(tid)
    runs = [e for e in entries if e["kind"] == "scenario"]
    if runs:
        print(f"\nscenario runs in the log: {len(runs)}")
        for e in runs[-10:]:
            verdict = "PASS" if e.get("passed") else "FAIL"
            print(f"  {e['commit']:<10} {e.get('scenario', '?'):<22} seed {e.get('seed')}: {verdict}, {e.get('acknowledged', 0)} acknowledged")
    if regressed:
        print(f"\nregressed beyond the tolerance: {', '.join(regressed)} (reported, not failed)")
    print(f"\n{len(benches)} bench and {len(runs)} scenario entries in {sys.argv[1]}")


if __name__ == "__main__":
    main()
