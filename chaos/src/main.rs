//! `palisade-chaos`: runs scenarios against clusters of real `palisade` processes, injects
//! faults and byzantine peers, checks invariants, and writes a report.
//!
//! ```text
//! palisade-chaos list
//! palisade-chaos run chaos/scenarios/smoke.toml [--seed N] [--out DIR] [--binary PATH] [--quiet]
//! palisade-chaos bench [--quick] [--out DIR] [--binary PATH] [--only PARTS] [--repeat N]
//! ```
//! Exit codes: 0 every check passed (or the scenario was skipped, e.g. netns without root),
//! 1 a check failed, 2 the harness itself failed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![allow(unreachable_pub)]

mod bench;
mod byzantine;
mod cluster;
mod figure_log;
mod netns;
mod nodeapi;
mod proxy;
mod report;
mod runner;
mod scenario;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::scenario::{NetworkMode, Scenario};

#[derive(Debug, Parser)]
#[command(name = "palisade-chaos", version, about = "Fault injection for clusters of palisade nodes")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Measure the performance targets as ratios in one run (see `bench/mod.rs`).
    ///
    /// Example: palisade-chaos bench --quick --out target/bench-out
    Bench(bench::BenchArgs),
    /// List the scenarios in a directory.
    List {
        /// Scenario directory.
        #[arg(default_value = "chaos/scenarios")]
        dir: PathBuf,
    },
    /// Run one scenario.
    ///
    /// Example: palisade-chaos run chaos/scenarios/smoke.toml --seed 1
    Run {
        /// The scenario file.
        scenario: PathBuf,
        /// Seed for every random choice (printed in the report; pass it again to replay).
        #[arg(long)]
        seed: Option<u64>,
        /// Output directory for report.json, report.svg and node logs.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The palisade binary.
        #[arg(long, env = "PALISADE_BIN", default_value = "target/release/palisade")]
        binary: PathBuf,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// P2P port of every node (each node has its own loopback IP).
        #[arg(long, default_value_t = cluster::DEFAULT_P2P_PORT)]
        p2p_port: u16,
        /// Metrics port of every node.
        #[arg(long, default_value_t = cluster::DEFAULT_METRICS_PORT)]
        metrics_port: u16,
        /// Node i listens on 127.0.0.(BASE + i) in loopback mode.
        #[arg(long, default_value_t = cluster::DEFAULT_BASE_HOST, value_name = "BASE")]
        base_host: u8,
        /// Append the run's result as one JSON line to this log (the figures' history, see
        /// `figure_log.rs`).
        #[arg(long, default_value = figure_log::DEFAULT_FIGURE_LOG)]
        figure_log: PathBuf,
    },
}

/// `[limits]` for every node: defaults, plus the scenario's overrides.
pub fn node_limits(s: &Scenario) -> toml::Table {
    s.node_limits.clone()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "palisade_chaos=info".into()),
        )
        .with_writer(std::io::stderr)
        // No escape codes in redirected logs (CI, files).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .try_init();
    match cli.command {
        Cmd::Bench(args) => bench::main(args),
        Cmd::List { dir } => match list(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Cmd::Run { scenario, seed, out, binary, quiet, p2p_port, metrics_port, base_host, figure_log } => {
            cluster::set_ports(cluster::Ports { p2p: p2p_port, metrics: metrics_port, base_host });
            let s = match Scenario::load(&scenario) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(2);
                }
            };
            if (s.requires_root || s.network == NetworkMode::Netns) && !netns::available() {
                println!("SKIPPED {}: needs root and iproute2 (network namespaces)", s.name);
                return ExitCode::SUCCESS;
            }
            let seed = seed.unwrap_or_else(rand::random);
            let out = out.unwrap_or_else(|| PathBuf::from("chaos-out").join(&s.name));
            let opts = runner::RunOptions { binary, out: out.clone(), seed, quiet };
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let result = rt.block_on(async {
                tokio::select! {
                    r = runner::run(s, opts) => Some(r),
                    _ = tokio::signal::ctrl_c() => None,
                }
            });
            // Dropping the runtime drops the cluster and the namespaces: nothing is left behind.
            drop(rt);
            match result {
                None => {
                    eprintln!("interrupted; cluster stopped and cleaned up");
                    ExitCode::from(2)
                }
                Some(Err(e)) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
                Some(Ok(report)) => {
                    report.print_table();
                    figure_log::append_or_warn(&figure_log, &figure_log::scenario_line(&report));
                    println!("report: {}/report.json, {}/report.svg", out.display(), out.display());
                    if report.passed {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
            }
        }
    }
}

fn list(dir: &std::path::Path) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
        match Scenario::load(&p) {
            Ok(s) => println!(
                "{:<20} {:>2} nodes  {:>4} s  {}{}",
                s.name,
                s.nodes,
                s.duration_secs,
                s.description,
                if s.requires_root { "  [root]" } else { "" }
            ),
            Err(e) => println!("{:<20} INVALID: {e:#}", p.display()),
        }
    }
    Ok(())
}
