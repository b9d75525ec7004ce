//! The figures' history (issue 22): every `palisade-chaos bench` and `run` appends one JSON
//! line to a log (`--figure-log`, default `target/palisade-figures.jsonl`; `.ci/run` keeps it
//! under `target/` and `.ci/figures.py` compares the newest bench entry with the committed
//! `bench/baseline.json`). A line records what was measured, on what commit and machine:
//!
//! ```json
//! {"kind": "bench", "commit": "75f60d6", "at_ms": …, "machine": {…}, "quick": true,
//!  "figures": {"name": value, …}, "targets": {"15": {"value": 0.83, "goal": 0.95, "op": ">=", "met": false}, …}}
//! {"kind": "scenario", "commit": "75f60d6", "at_ms": …, "scenario": "soak", "seed": 1, "passed": true,
//!  "acknowledged": 20233, "checks": {"no_loss": true, …}, "figures": {…}}
//! ```
//!
//! The log only grows by whole lines (one `write` of a line opened in append mode), so two
//! runs never interleave inside a line; a line that does not parse is skipped by readers.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::bench::Results;
use crate::report::Report;

/// Where the log goes unless `--figure-log` says otherwise.
pub const DEFAULT_FIGURE_LOG: &str = "target/palisade-figures.jsonl";

/// The commit being measured: `PALISADE_COMMIT`, else `git rev-parse --short HEAD`, else
/// `unknown` (a tarball build).
pub fn commit() -> String {
    if let Ok(c) = std::env::var("PALISADE_COMMIT") {
        return c;
    }
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The line of a bench run.
pub fn bench_line(results: &Results) -> Value {
    let figures: Map<String, Value> =
        results.figures.iter().map(|(k, f)| (k.clone(), json!(f.value))).collect();
    let targets: Map<String, Value> = results
        .targets
        .iter()
        .map(|t| (t.id.clone(), json!({"value": t.value, "goal": t.goal, "op": t.op, "met": t.met})))
        .collect();
    json!({
        "kind": "bench",
        "commit": commit(),
        "at_ms": now_ms(),
        "machine": results.machine,
        "quick": results.quick,
        "figures": figures,
        "targets": targets,
        "errors": results.errors,
    })
}

/// The line of a scenario run.
pub fn scenario_line(report: &Report) -> Value {
    let checks: Map<String, Value> =
        report.checks.iter().map(|c| (c.name.clone(), json!(c.passed))).collect();
    json!({
        "kind": "scenario",
        "commit": commit(),
        "at_ms": now_ms(),
        "scenario": report.scenario,
        "seed": report.seed,
        "passed": report.passed,
        "duration_secs": report.duration_secs,
        "acknowledged": report.acknowledged,
        "checks": checks,
        "figures": report.figures,
    })
}

/// Appends `line` to the log at `path` (created with its directory).
pub fn append(path: &Path, line: &Value) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut text = serde_json::to_string(line)?;
    text.push('\n');
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// [`append`], reporting a failure without failing the run (the run's own files have the
/// figures).
pub fn append_or_warn(path: &Path, line: &Value) {
    match append(path, line) {
        Ok(()) => eprintln!("figures appended to {}", path.display()),
        Err(e) => eprintln!("warning: cannot append the figures to {}: {e:#}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_append_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sub").join("figures.jsonl");
        append(&log, &json!({"kind": "bench", "commit": "a", "targets": {}})).unwrap();
        append(&log, &json!({"kind": "scenario", "commit": "b", "passed": true})).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["commit"], "b");
    }
}
