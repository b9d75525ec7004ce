//! `palisade-chaos bench`: the performance targets of issue 8, measured as ratios in one run.
//!
//! ```text
//! palisade-chaos bench [--quick] [--out DIR] [--binary PATH] [--only PARTS] [--repeat N]
//! ```
//!
//! Every figure that a ratio compares is measured in the same run on the same machine, so
//! the ratios hold on a noisy shared machine where absolute times do not. Each measurement
//! is repeated (`--repeat`, default 3; 1 with `--quick`) and the median is reported.
//!
//! Parts (`--only` takes a comma-separated subset):
//!
//! | part | targets | how |
//! |------|---------|-----|
//! | `pipeline` | verify bound, 1, 2, 3, 4 | in-process [`palisade_net::Ingestor`] in a child process pinned to 1 or 2 CPUs |
//! | `flood` | 5 | in-process `Ingestor`, 8 honest + 2 attacking peers, default guard limits |
//! | `network` | 6 | 3 `palisade` processes vs 3 bare-gossipsub processes, one publisher |
//! | `latency` | 7 | 10 `palisade` processes vs 10 bare-gossipsub processes, moderate load |
//! | `memory` | 8, 10 | a store of N records written directly, a `palisade` process on it, 100 peers, a connection flood; then `palisade backup create` of it online and `backup restore` into a new data directory (figures only, [`backup`]) |
//! | `catchup` | 9 | a `palisade` process syncing N missed records from another |
//! | `connections` | 9b | one `palisade` process, 10 vs 1000 connections from 127.0.0.x |
//! | `loop` | 14 | one `palisade` process: its event-loop wake-up p99 during a storm of 1000 fresh identities, each a peer-book write and a ban, vs calm ([`storm`]) |
//! | `history` | 15 | one in-process node: local submit throughput with its signing history vs without ([`history`]) |
//! | `sync` | 18a–18d | two in-process nodes: bytes and wall time of one sync/1 and one sync/2 round at 10k, 100k, 1M authors, in agreement and with 100 new authors on one side ([`sync`]) |
//!
//! Output: a table on stdout, `bench-results.json` (format in [`Results`]) and
//! `bench-results.svg` in `--out`. `--quick` shrinks every size (CI runs it to keep the tool
//! working; it asserts nothing about speed). Exit code 0 when the run completed (targets met
//! or not), 2 when the harness failed.

mod backup;
pub(crate) mod baseline;
mod history;
mod net;
mod pipeline;
mod plot;
mod procs;
mod stores;
mod storm;
mod sync;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Arguments of `palisade-chaos bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Small sizes, one repetition: finishes in under 2 minutes (for CI; speed is not checked).
    #[arg(long)]
    pub quick: bool,
    /// Output directory for bench-results.json and bench-results.svg.
    #[arg(long, default_value = "target/bench-out")]
    pub out: PathBuf,
    /// The palisade binary (for the measurements on real processes).
    #[arg(long, env = "PALISADE_BIN", default_value = "target/release/palisade")]
    pub binary: PathBuf,
    /// Run only these parts: pipeline, flood, network, latency, memory, catchup, connections,
    /// loop, history, sync.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Repetitions of each measurement; the median is reported (default 3, 1 with --quick).
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Append the run's figures as one JSON line to this log (the figures' history, see
    /// `figure_log.rs`).
    #[arg(long, default_value = crate::figure_log::DEFAULT_FIGURE_LOG)]
    pub figure_log: PathBuf,
    /// Internal: run one in-process measurement (a JSON spec) and print its JSON result.
    #[arg(long, hide = true)]
    pub worker: Option<String>,
    /// Internal: run one bare-gossipsub baseline node (a JSON spec).
    #[arg(long, hide = true)]
    pub baseline_node: Option<String>,
}

/// All parts, in run order.
pub const PARTS: [&str; 10] = [
    "pipeline",
    "flood",
    "network",
    "latency",
    "connections",
    "loop",
    "history",
    "memory",
    "catchup",
    "sync",
];

/// Sizes of one run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Sizes {
    /// Unique records per pipeline run.
    pub pipeline_records: usize,
    /// Authors of the pipeline records.
    pub pipeline_authors: usize,
    /// Seconds of each flood phase.
    pub flood_secs: f64,
    /// Records published in the 3-node throughput test.
    pub network_records: usize,
    /// Seconds of the 10-node latency test, and its rate (records/s).
    pub latency_secs: f64,
    /// Publish rate of the latency test.
    pub latency_rate: f64,
    /// Nodes of the latency test.
    pub latency_nodes: usize,
    /// Records in the store of the memory / startup test.
    pub memory_records: usize,
    /// Connected peers in the memory test.
    pub memory_peers: usize,
    /// Connection attempts of the connection flood.
    pub flood_connections: usize,
    /// Records a node catches up on.
    pub catchup_records: usize,
    /// Connections held in the connection-load test (and the small comparison).
    pub load_connections: usize,
    /// Records published during each connection-load phase (and each window of `loop`).
    pub load_records: usize,
    /// Fresh identities of the ban storm (`loop`).
    pub storm_peers: usize,
    /// Authors of the largest store of the sync round measurement (`sync`: a hundredth, a
    /// tenth and all of it).
    #[serde(default)]
    pub sync_authors: usize,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            pipeline_records: 40_000,
            pipeline_authors: 256,
            flood_secs: 6.0,
            network_records: 20_000,
            latency_secs: 20.0,
            latency_rate: 100.0,
            latency_nodes: 10,
            memory_records: 1_000_000,
            memory_peers: 100,
            flood_connections: 10_000,
            catchup_records: 100_000,
            load_connections: 1000,
            load_records: 20_000,
            storm_peers: 1000,
            sync_authors: 1_000_000,
        }
    }

    fn quick() -> Sizes {
        Sizes {
            pipeline_records: 4_000,
            pipeline_authors: 64,
            flood_secs: 2.0,
            network_records: 2_000,
            latency_secs: 5.0,
            latency_rate: 50.0,
            latency_nodes: 4,
            memory_records: 10_000,
            memory_peers: 20,
            flood_connections: 300,
            catchup_records: 3_000,
            load_connections: 100,
            load_records: 2_000,
            storm_peers: 100,
            sync_authors: 10_000,
        }
    }
}

/// One measured figure: the median of its runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    /// Median of `runs`.
    pub value: f64,
    /// Unit (`records/s`, `µs`, `ms`, `MiB`, `s`).
    pub unit: String,
    /// Every repetition.
    pub runs: Vec<f64>,
    /// What was measured, and how.
    pub note: String,
}

/// One target of the issue, with the ratio measured in this run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// Target id as numbered in the issue (`1` … `10`, `9b`, `8a`, `8b`).
    pub id: String,
    /// Short name.
    pub name: String,
    /// Measured value (a ratio of two figures of this run, or an absolute value for memory).
    pub value: Option<f64>,
    /// The goal.
    pub goal: f64,
    /// `>=` or `<=`.
    pub op: String,
    /// `ratio` or the unit of an absolute goal.
    pub unit: String,
    /// Whether the goal is met; `None` when it could not be measured.
    pub met: Option<bool>,
    /// Figure names of the numerator and denominator (empty for absolute goals).
    pub numerator: String,
    /// Denominator figure.
    pub denominator: String,
    /// Scale-down or caveat; empty when measured as the issue states it.
    pub note: String,
}

/// `bench-results.json`.
///
/// ```json
/// { "schema": 1, "quick": false, "command": "palisade-chaos bench",
///   "machine": {"cpus": 2, "cpu_model": "...", "kernel": "...", "loadavg": "..."},
///   "started_at_ms": 0, "duration_secs": 0.0, "repeat": 3, "sizes": {...},
///   "figures": {"verify_bound_rps": {"value": 0.0, "unit": "records/s", "runs": [], "note": ""}},
///   "targets": [{"id": "1", "name": "...", "value": 0.0, "goal": 0.8, "op": ">=", "unit": "ratio",
///                "met": true, "numerator": "...", "denominator": "...", "note": ""}],
///   "errors": {"part": "message"} }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// Format version of this file.
    pub schema: u32,
    /// `--quick` run?
    pub quick: bool,
    /// The command line.
    pub command: String,
    /// Where it ran.
    pub machine: Machine,
    /// Start (ms since the epoch).
    pub started_at_ms: u64,
    /// Wall time of the run.
    pub duration_secs: f64,
    /// Repetitions per measurement.
    pub repeat: usize,
    /// Sizes used.
    pub sizes: Sizes,
    /// Every figure by name.
    pub figures: BTreeMap<String, Figure>,
    /// Every target.
    pub targets: Vec<Target>,
    /// Parts that failed, with the error.
    pub errors: BTreeMap<String, String>,
}

/// The machine a run used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// Online CPUs.
    pub cpus: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// /proc/loadavg when the run started (other work on the machine skews the figures).
    pub loadavg: String,
}

impl Machine {
    fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().into();
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().into();
        Machine { cpus, cpu_model, kernel, loadavg }
    }
}

/// Median of values (NaN-free); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Percentile (0..=1) of unsorted values, nearest rank; 0 for none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// Collects figures and targets while parts run.
pub struct Recorder {
    results: Results,
}

impl Recorder {
    /// Adds a figure from its runs.
    pub fn figure(&mut self, name: &str, unit: &str, runs: Vec<f64>, note: &str) -> f64 {
        let value = median(&runs);
        self.results
            .figures
            .insert(name.into(), Figure { value, unit: unit.into(), runs, note: note.into() });
        value
    }

    fn fig(&self, name: &str) -> Option<f64> {
        self.results.figures.get(name).map(|f| f.value).filter(|v| v.is_finite() && *v > 0.0)
    }

    /// Adds a ratio target `numerator / denominator` of two figures.
    #[allow(clippy::too_many_arguments)]
    pub fn ratio(
        &mut self,
        id: &str,
        name: &str,
        numerator: &str,
        denominator: &str,
        op: &str,
        goal: f64,
        note: &str,
    ) {
        let value = match (self.fig(numerator), self.fig(denominator)) {
            (Some(n), Some(d)) => Some(n / d),
            _ => None,
        };
        self.push(id, name, value, goal, op, "ratio", numerator, denominator, note);
    }

    /// Adds an absolute target on one figure.
    #[allow(clippy::too_many_arguments)]
    pub fn absolute(
        &mut self,
        id: &str,
        name: &str,
        figure: &str,
        op: &str,
        goal: f64,
        unit: &str,
        note: &str,
    ) {
        let value = self.results.figures.get(figure).map(|f| f.value);
        self.push(id, name, value, goal, op, unit, figure, "", note);
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        id: &str,
        name: &str,
        value: Option<f64>,
        goal: f64,
        op: &str,
        unit: &str,
        numerator: &str,
        denominator: &str,
        note: &str,
    ) {
        let met = value.map(|v| if op == ">=" { v >= goal } else { v <= goal });
        self.results.targets.retain(|t| t.id != id);
        self.results.targets.push(Target {
            id: id.into(),
            name: name.into(),
            value,
            goal,
            op: op.into(),
            unit: unit.into(),
            met,
            numerator: numerator.into(),
            denominator: denominator.into(),
            note: note.into(),
        });
    }
}

/// Entry point of the `bench` subcommand.
pub fn main(args: BenchArgs) -> ExitCode {
    if let Some(spec) = &args.worker {
        // A child process: pin, measure, print one JSON line.
        return match pipeline::worker_main(spec) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench worker failed: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(spec) = &args.baseline_node {
        return match baseline::node_main(spec) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("baseline node failed: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    match run(&args) {
        Ok(results) => {
            print_table(&results);
            crate::figure_log::append_or_warn(&args.figure_log, &crate::figure_log::bench_line(&results));
            println!(
                "results: {}, {}",
                args.out.join("bench-results.json").display(),
                args.out.join("bench-results.svg").display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &BenchArgs) -> anyhow::Result<Results> {
    let wall = Instant::now();
    let sizes = if args.quick { Sizes::quick() } else { Sizes::full() };
    let repeat = args.repeat.unwrap_or(if args.quick { 1 } else { 3 }).clamp(1, 20);
    for p in &args.only {
        anyhow::ensure!(PARTS.contains(&p.as_str()), "unknown part {p:?}; parts are {}", PARTS.join(", "));
    }
    let wanted = |p: &str| args.only.is_empty() || args.only.iter().any(|o| o == p);
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut rec = Recorder {
        results: Results {
            schema: 1,
            quick: args.quick,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine: Machine::detect(),
            started_at_ms: palisade_net::now_ms(),
            duration_secs: 0.0,
            repeat,
            sizes,
            figures: BTreeMap::new(),
            targets: Vec::new(),
            errors: BTreeMap::new(),
        },
    };
    let ctx = Ctx { args: args.clone(), sizes, repeat };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    for part in PARTS.iter().filter(|p| wanted(p)) {
        let started = Instant::now();
        eprintln!("bench: {part} …");
        let result = match *part {
            "pipeline" => pipeline::run_pipeline_part(&ctx, &mut rec),
            "flood" => pipeline::run_flood_part(&ctx, &mut rec),
            "network" => rt.block_on(net::run_network_part(&ctx, &mut rec)),
            "latency" => rt.block_on(net::run_latency_part(&ctx, &mut rec)),
            "memory" => rt.block_on(stores::run_memory_part(&ctx, &mut rec)),
            "catchup" => rt.block_on(stores::run_catchup_part(&ctx, &mut rec)),
            "connections" => rt.block_on(net::run_connections_part(&ctx, &mut rec)),
            "loop" => rt.block_on(storm::run_loop_part(&ctx, &mut rec)),
            "history" => rt.block_on(history::run_history_part(&ctx, &mut rec)),
            "sync" => rt.block_on(sync::run_sync_part(&ctx, &mut rec)),
            _ => Ok(()),
        };
        eprintln!("bench: {part} done in {:.1} s", started.elapsed().as_secs_f64());
        if let Err(e) = result {
            eprintln!("bench: {part} failed: {e:#}");
            rec.results.errors.insert((*part).into(), format!("{e:#}"));
        }
        // Write what we have after every part, so an interrupted run keeps its figures.
        rec.results.duration_secs = wall.elapsed().as_secs_f64();
        write(&args.out, &rec.results)?;
    }
    drop(rt);
    rec.results.targets.sort_by_key(|t| target_order(&t.id));
    rec.results.duration_secs = wall.elapsed().as_secs_f64();
    write(&args.out, &rec.results)?;
    Ok(rec.results)
}

fn target_order(id: &str) -> (u32, String) {
    let digits: String = id.chars().take_while(|c| c.is_ascii_digit()).collect();
    (digits.parse().unwrap_or(0), id.to_string())
}

fn write(out: &std::path::Path, results: &Results) -> anyhow::Result<()> {
    let mut sorted = results.clone();
    sorted.targets.sort_by_key(|t| target_order(&t.id));
    std::fs::write(out.join("bench-results.json"), serde_json::to_string_pretty(&sorted)? + "\n")?;
    plot::draw(&out.join("bench-results.svg"), &sorted).context("drawing bench-results.svg")?;
    Ok(())
}

/// What every part gets.
pub struct Ctx {
    /// Command-line arguments.
    pub args: BenchArgs,
    /// Sizes of this run.
    pub sizes: Sizes,
    /// Repetitions.
    pub repeat: usize,
}

fn print_table(r: &Results) {
    println!();
    println!(
        "palisade bench{}  {} CPUs ({})  load at start {}  {:.0} s  repeat {} (medians)",
        if r.quick { " --quick" } else { "" },
        r.machine.cpus,
        r.machine.cpu_model,
        r.machine.loadavg,
        r.duration_secs,
        r.repeat
    );
    println!("{:<44} {:>14} {:<10} RUNS", "FIGURE", "MEDIAN", "UNIT");
    for (name, f) in &r.figures {
        let runs: Vec<String> = f.runs.iter().map(|v| fmt_num(*v)).collect();
        println!("{:<44} {:>14} {:<10} {}", name, fmt_num(f.value), f.unit, runs.join(" "));
    }
    println!();
    println!("{:<4} {:<40} {:>10} {:>10} {:<5}  NOTE", "ID", "TARGET", "MEASURED", "GOAL", "MET");
    for t in &r.targets {
        let value = t.value.map(fmt_num).unwrap_or_else(|| "-".into());
        let goal = format!("{} {}", t.op, fmt_num(t.goal));
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "n/a",
        };
        println!("{:<4} {:<40} {:>10} {:>10} {:<5}  {}", t.id, t.name, value, goal, met, t.note);
    }
    for (part, e) in &r.errors {
        println!("part {part} failed: {e}");
    }
}

/// Three significant digits, no exponent.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
