//! Reports: a terminal table, `report.json`, and an SVG plot of delivery latency and goodput
//! over time with fault windows shaded.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use serde::Serialize;

use crate::byzantine::AttackReport;

/// One checker's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Checker name.
    pub name: String,
    /// Passed?
    pub passed: bool,
    /// One-line summary.
    pub summary: String,
    /// Evidence (bounded list of lines).
    pub evidence: Vec<String>,
}

impl CheckResult {
    /// A result, with evidence truncated to 50 lines.
    pub fn new(name: &str, passed: bool, summary: String, mut evidence: Vec<String>) -> CheckResult {
        if evidence.len() > 50 {
            let more = evidence.len() - 50;
            evidence.truncate(50);
            evidence.push(format!("… and {more} more"));
        }
        CheckResult { name: name.into(), passed, summary, evidence }
    }
}

/// A time window of a fault, for shading.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// Label.
    pub label: String,
    /// Start (s from workload start).
    pub start_secs: f64,
    /// End.
    pub end_secs: f64,
    /// A fault (crash, pause, partition, link or netns fault), not an attack: what
    /// `converged_within` allows extra time for.
    pub fault: bool,
}

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    /// Second index.
    pub t: u64,
    /// Records acknowledged in this second.
    pub acked: u64,
    /// Deliveries (record reached a non-origin node) in this second.
    pub delivered: u64,
    /// p50 delivery latency of deliveries in this second (ms).
    pub p50_ms: Option<f64>,
    /// p99 (ms).
    pub p99_ms: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed used (replay with `--seed`).
    pub seed: u64,
    /// All passed?
    pub passed: bool,
    /// Wall time (s).
    pub duration_secs: f64,
    /// Records acknowledged by the workload.
    pub acknowledged: u64,
    /// Checker results.
    pub checks: Vec<CheckResult>,
    /// Attackers.
    pub attackers: Vec<AttackReport>,
    /// Fault windows.
    pub windows: Vec<Window>,
    /// Per-second series.
    pub timeline: Vec<Second>,
    /// Free-form figures (goodput, latencies, resource peaks).
    pub figures: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    /// Prints the summary table.
    pub fn print_table(&self) {
        println!();
        println!(
            "scenario {}  seed {}  {:.1} s  {} records acknowledged",
            self.scenario, self.seed, self.duration_secs, self.acknowledged
        );
        println!("{:<22} {:<6} SUMMARY", "CHECK", "RESULT");
        for c in &self.checks {
            println!("{:<22} {:<6} {}", c.name, if c.passed { "pass" } else { "FAIL" }, c.summary);
            if !c.passed {
                for e in c.evidence.iter().take(10) {
                    println!("{:<29} {e}", "");
                }
            }
        }
        if !self.attackers.is_empty() {
            println!(
                "{:<18} {:>6} {:>10} {:>10} {:>8} {:>10}",
                "ATTACKER", "TARGET", "SENT", "CONN OK", "REFUSED", "CONTAINED"
            );
            for a in &self.attackers {
                println!(
                    "{:<18} {:>6} {:>10} {:>10} {:>8} {:>10}",
                    a.kind,
                    a.target,
                    a.sent,
                    a.connections_established,
                    a.connections_refused,
                    // What the check judged (earliest refusal, ledger entry or ban).
                    a.contained_after_secs.map(|s| format!("{s:.1}s")).unwrap_or_else(|| "-".into())
                );
            }
        }
        for (k, v) in &self.figures {
            println!("  {k}: {v}");
        }
        println!("result: {}  (replay: --seed {})", if self.passed { "PASS" } else { "FAIL" }, self.seed);
    }

    /// Writes `report.json` and `report.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)? + "\n")?;
        self.plot(&dir.join("report.svg")).context("drawing report.svg")?;
        Ok(())
    }

    fn plot(&self, path: &Path) -> anyhow::Result<()> {
        let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (top, bottom) = root.split_vertically(300);
        let max_t = self.timeline.last().map(|s| s.t + 1).unwrap_or(1) as f64;
        let max_lat = self.timeline.iter().filter_map(|s| s.p99_ms).fold(10.0, f64::max) * 1.1;
        let max_rate = self.timeline.iter().map(|s| s.acked.max(s.delivered)).max().unwrap_or(1) as f64 * 1.1;

        let mut lat = ChartBuilder::on(&top)
            .caption(format!("{}: delivery latency (ms)", self.scenario), ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..max_t, 0f64..max_lat)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        lat.configure_mesh().x_desc("seconds").draw().map_err(|e| anyhow::anyhow!("{e}"))?;
        for w in &self.windows {
            lat.draw_series(std::iter::once(Rectangle::new(
                [(w.start_secs, 0.0), (w.end_secs, max_lat)],
                RGBColor(255, 200, 200).mix(0.4).filled(),
            )))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        lat.draw_series(LineSeries::new(
            self.timeline.iter().filter_map(|s| Some((s.t as f64, s.p99_ms?))),
            &RED,
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label("p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        lat.draw_series(LineSeries::new(
            self.timeline.iter().filter_map(|s| Some((s.t as f64, s.p50_ms?))),
            &BLUE,
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        lat.configure_series_labels().border_style(BLACK).draw().map_err(|e| anyhow::anyhow!("{e}"))?;

        let mut rate = ChartBuilder::on(&bottom)
            .caption(
                "records per second: acknowledged (green), delivered to other nodes (black)",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..max_t, 0f64..max_rate)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        rate.configure_mesh().x_desc("seconds").draw().map_err(|e| anyhow::anyhow!("{e}"))?;
        for w in &self.windows {
            rate.draw_series(std::iter::once(Rectangle::new(
                [(w.start_secs, 0.0), (w.end_secs, max_rate)],
                RGBColor(255, 200, 200).mix(0.4).filled(),
            )))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        rate.draw_series(LineSeries::new(self.timeline.iter().map(|s| (s.t as f64, s.acked as f64)), &GREEN))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        rate.draw_series(LineSeries::new(
            self.timeline.iter().map(|s| (s.t as f64, s.delivered as f64)),
            &BLACK,
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}

/// Percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied()
}
