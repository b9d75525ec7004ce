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
        let e = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("{e}");
        let root = SVGBackend::new(path, (1000, 600 + VERDICT_LINE_PX * (self.checks.len() as u32 + 1)))
            .into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let (charts, verdicts) = root.split_vertically(600);
        let (top, bottom) = charts.split_vertically(300);
        let max_t = self.timeline.last().map(|s| s.t + 1).unwrap_or(1) as f64;
        // Log scale: a baseline of a few ms and a fault tail of tens of seconds both show.
        let max_lat = self.timeline.iter().filter_map(|s| s.p99_ms).fold(10.0, f64::max) * 1.5;
        let max_rate = self.timeline.iter().map(|s| s.acked.max(s.delivered)).max().unwrap_or(1) as f64 * 1.1;
        let verdict = if self.passed { "PASS" } else { "FAIL" };

        let mut lat = ChartBuilder::on(&top)
            .caption(
                format!(
                    "{} (seed {}): {verdict}. Delivery latency, ms (log scale)",
                    self.scenario, self.seed
                ),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..max_t, (MIN_PLOTTED_MS..max_lat).log_scale())
            .map_err(e)?;
        lat.configure_mesh().x_desc("seconds").draw().map_err(e)?;
        for (i, w) in self.windows.iter().enumerate() {
            lat.draw_series(std::iter::once(Rectangle::new(
                [(w.start_secs, MIN_PLOTTED_MS), (w.end_secs, max_lat)],
                window_color(w).mix(0.4).filled(),
            )))
            .map_err(e)?;
            // Labels at four heights in turn, so neighbouring windows do not print over each other.
            let y = max_lat / 10f64.powf(0.25 * (i % 4) as f64 + 0.1);
            lat.draw_series(std::iter::once(Text::new(
                w.label.clone(),
                (w.start_secs, y),
                ("sans-serif", 10),
            )))
            .map_err(e)?;
        }
        let clamp = |v: f64| v.max(MIN_PLOTTED_MS);
        lat.draw_series(LineSeries::new(
            self.timeline.iter().filter_map(|s| Some((s.t as f64, clamp(s.p99_ms?)))),
            &RED,
        ))
        .map_err(e)?
        .label("p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        lat.draw_series(LineSeries::new(
            self.timeline.iter().filter_map(|s| Some((s.t as f64, clamp(s.p50_ms?)))),
            &BLUE,
        ))
        .map_err(e)?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        lat.configure_series_labels().border_style(BLACK).draw().map_err(e)?;

        let mut rate = ChartBuilder::on(&bottom)
            .caption(
                "records per second: acknowledged (green), delivered to other nodes (black); red: faults, grey: attacks",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..max_t, 0f64..max_rate)
            .map_err(e)?;
        rate.configure_mesh().x_desc("seconds").draw().map_err(e)?;
        for w in &self.windows {
            rate.draw_series(std::iter::once(Rectangle::new(
                [(w.start_secs, 0.0), (w.end_secs, max_rate)],
                window_color(w).mix(0.4).filled(),
            )))
            .map_err(e)?;
        }
        rate.draw_series(LineSeries::new(self.timeline.iter().map(|s| (s.t as f64, s.acked as f64)), &GREEN))
            .map_err(e)?;
        rate.draw_series(LineSeries::new(
            self.timeline.iter().map(|s| (s.t as f64, s.delivered as f64)),
            &BLACK,
        ))
        .map_err(e)?;

        // The verdict of every check, under the charts.
        let line = |text: String, row: usize, color: RGBColor| {
            Text::new(
                text,
                (20, 6 + row as i32 * VERDICT_LINE_PX as i32),
                ("sans-serif", 13).into_font().color(&color),
            )
        };
        verdicts
            .draw(&line(format!("{}: {verdict} (replay: --seed {})", self.scenario, self.seed), 0, BLACK))
            .map_err(e)?;
        for (i, c) in self.checks.iter().enumerate() {
            let mark = if c.passed { "pass" } else { "FAIL" };
            let summary: String = c.summary.chars().take(130).collect();
            let color = if c.passed { RGBColor(0, 110, 0) } else { RED };
            verdicts.draw(&line(format!("{:<22} {mark}  {summary}", c.name), i + 1, color)).map_err(e)?;
        }
        root.present().map_err(e)?;
        Ok(())
    }
}

/// Height of one verdict line under the charts (px).
const VERDICT_LINE_PX: u32 = 18;

/// Latencies below this are drawn at it (the log axis has no zero).
const MIN_PLOTTED_MS: f64 = 1.0;

/// Faults in red, attacks in grey.
fn window_color(w: &Window) -> RGBColor {
    if w.fault {
        RGBColor(255, 150, 150)
    } else {
        RGBColor(190, 190, 190)
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

#[cfg(test)]
mod plot_tests {
    use super::*;

    #[test]
    fn the_svg_names_the_seed_the_verdict_every_check_and_every_fault_window() {
        let report = Report {
            scenario: "smoke".into(),
            seed: 7,
            passed: false,
            duration_secs: 30.0,
            acknowledged: 3,
            checks: vec![
                CheckResult::new("no_loss", true, "all acknowledged records".into(), Vec::new()),
                CheckResult::new("goodput", false, "ratio 0.42".into(), Vec::new()),
            ],
            attackers: Vec::new(),
            windows: vec![Window { label: "crash 1".into(), start_secs: 5.0, end_secs: 10.0, fault: true }],
            timeline: (0..20)
                .map(|t| Second { t, acked: 2, delivered: 2, p50_ms: Some(0.0), p99_ms: Some(20_000.0) })
                .collect(),
            figures: serde_json::Map::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        report.write(dir.path()).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("report.svg")).unwrap();
        for needle in ["seed 7", "FAIL", "crash 1", "no_loss", "goodput", "ratio 0.42", "log scale"] {
            assert!(svg.contains(needle), "report.svg lacks {needle:?}");
        }
    }
}
