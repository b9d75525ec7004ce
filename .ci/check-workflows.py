#!/usr/bin/env python3
"""Checks that the GitHub workflow files and dependabot.yml are YAML GitHub would accept.

Not a full schema check: every file must parse, every workflow needs `on` and `jobs`, every
job `runs-on` and `steps` (or `uses`, for a reusable workflow), every step exactly one of
`uses`/`run`; dependabot.yml needs `version: 2` and `updates` with ecosystem, directory and
schedule; the nightly fuzz matrix lists exactly the targets in fuzz/fuzz_targets/.
Needs PyYAML (`python3 -m pip install pyyaml`). Usage: check-workflows.py [REPO_ROOT]
"""
import pathlib
import sys

try:
    import yaml
except ImportError:
    sys.exit("check-workflows.py needs PyYAML: python3 -m pip install pyyaml")

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[1])
errors = []


def err(path, msg):
    errors.append(f"{path.relative_to(root)}: {msg}")


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as e:
        err(path, f"not valid YAML: {e}")
        return None


workflows = sorted((root / ".github" / "workflows").glob("*.y*ml"))
if not workflows:
    errors.append(".github/workflows: no workflow files")
for path in workflows:
    doc = load(path)
    if doc is None:
        continue
    if not isinstance(doc, dict):
        err(path, "top level is not a mapping")
        continue
    # YAML 1.1 (PyYAML) reads a bare `on` key as the boolean true; GitHub reads it as "on".
    on = doc.get("on", doc.get(True))
    if not on:
        err(path, "missing `on` (the triggers)")
    if "name" not in doc:
        err(path, "missing `name`")
    jobs = doc.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        err(path, "missing `jobs`")
        continue
    for name, job in jobs.items():
        if not isinstance(job, dict):
            err(path, f"job {name}: not a mapping")
            continue
        for need in job.get("needs", []) if isinstance(job.get("needs"), list) else [job.get("needs")]:
            if need is not None and need not in jobs:
                err(path, f"job {name}: needs unknown job {need!r}")
        if "uses" in job:  # a reusable workflow call
            continue
        if "runs-on" not in job:
            err(path, f"job {name}: missing `runs-on`")
        steps = job.get("steps")
        if not isinstance(steps, list) or not steps:
            err(path, f"job {name}: missing `steps`")
            continue
        for i, step in enumerate(steps):
            if not isinstance(step, dict) or (("uses" in step) == ("run" in step)):
                err(path, f"job {name}, step {i + 1}: needs exactly one of `uses` or `run`")

# The nightly fuzz matrix must list every fuzz target (fuzz/fuzz_targets/*.rs), no more.
fuzz_yml = root / ".github" / "workflows" / "fuzz.yml"
if fuzz_yml.exists():
    doc = load(fuzz_yml) or {}
    try:
        listed = set(doc["jobs"]["fuzz"]["strategy"]["matrix"]["target"])
    except (KeyError, TypeError):
        listed = None
        err(fuzz_yml, "jobs.fuzz.strategy.matrix.target is missing")
    targets = {p.stem for p in (root / "fuzz" / "fuzz_targets").glob("*.rs")}
    if listed is not None and listed != targets:
        err(fuzz_yml, f"matrix targets {sorted(listed)} differ from fuzz/fuzz_targets {sorted(targets)}")

dependabot = root / ".github" / "dependabot.yml"
if dependabot.exists():
    doc = load(dependabot)
    if isinstance(doc, dict):
        if doc.get("version") != 2:
            err(dependabot, "`version` must be 2")
        updates = doc.get("updates")
        if not isinstance(updates, list) or not updates:
            err(dependabot, "missing `updates`")
        for i, u in enumerate(updates or []):
            for key in ("package-ecosystem", "directory", "schedule"):
                if not isinstance(u, dict) or key not in u:
                    err(dependabot, f"update {i + 1}: missing `{key}`")
    elif doc is not None:
        err(dependabot, "top level is not a mapping")
else:
    errors.append(".github/dependabot.yml: missing")

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"{len(workflows)} workflows and dependabot.yml parse and have the required keys")
