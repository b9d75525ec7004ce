//! End-to-end tests of the `palisade` binary.

mod admin_fds;
mod backup;
mod cli;
mod client;
mod disk;
mod history;
mod io_error;
mod kill_loop;
mod ledger;
mod live;
mod metrics;
mod own_feed;
mod process;
mod quota;
mod signals;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_palisade");

/// `palisade --data-dir <dir> <args>` with a clean environment for the PALISADE_* variables.
pub(crate) fn palisade(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--data-dir").arg(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("PALISADE_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

/// Reads the child's stderr until a line contains `marker`; returns all lines read.
pub(crate) fn wait_for_line(child: &mut Child, marker: &str, timeout: Duration) -> Vec<String> {
    read_until_line(child.stderr.take().expect("stderr piped"), marker, timeout)
}

/// The lines of a child's `stderr`, read on a thread (bounded channel: a reader that stops
/// reading stops the thread, never the child's output).
pub(crate) fn lines_of(stderr: std::process::ChildStderr) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(4096);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads `stderr` until a line contains `marker`, then keeps draining it in the background.
pub(crate) fn read_until_line(
    stderr: std::process::ChildStderr,
    marker: &str,
    timeout: Duration,
) -> Vec<String> {
    let rx = lines_of(stderr);
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(marker);
                lines.push(line);
                if done {
                    // Keep draining in the background so the child never blocks on stderr.
                    std::thread::spawn(move || while rx.recv().is_ok() {});
                    return lines;
                }
            }
            Err(_) => panic!("timed out waiting for {marker:?}; output so far:\n{}", lines.join("\n")),
        }
    }
}

/// Sends SIGTERM to our child via kill(1): `unsafe` (and so `libc::kill`) is forbidden
/// workspace-wide, and the test only ever signals the process it spawned.
pub(crate) fn sigterm(child: &Child) {
    send_signal(child, "TERM");
}

pub(crate) fn send_signal(child: &Child, sig: &str) {
    let status =
        Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status().expect("kill runs");
    assert!(status.success(), "kill -{sig} {} failed", child.id());
}

pub(crate) fn spawn_run(dir: &std::path::Path, extra: &[&str]) -> Child {
    palisade(dir)
        .arg("run")
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--metrics-listen", "off"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("palisade starts")
}

/// `palisade run` on `dir` with `config` as its palisade.toml (when given), once it says it
/// is running.
pub(crate) fn start_in(dir: tempfile::TempDir, config: Option<&str>) -> live::LiveNode {
    if let Some(config) = config {
        std::fs::write(dir.path().join("palisade.toml"), config).unwrap();
    }
    let mut child = spawn_run(dir.path(), &[]);
    wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
    live::LiveNode { child, dir }
}

/// `palisade --json attest submit` of a passing trivy attestation of `subject`.
pub(crate) fn submit_attestation(node: &live::LiveNode, subject: &str) -> std::process::Output {
    node.cli(&[
        "--json",
        "attest",
        "submit",
        "--subject",
        subject,
        "--digest",
        &format!("sha256:{}", "ab".repeat(32)),
        "--verdict",
        "pass",
        "--scanner",
        "trivy",
        "--scanner-version",
        "0.56.1",
        "--score",
        "8.5",
    ])
}

/// Reads `lines` into `seen` until one contains `marker` (or it already did).
pub(crate) fn wait_for_in(lines: &std::sync::mpsc::Receiver<String>, seen: &mut Vec<String>, marker: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !seen.iter().any(|l| l.contains(marker)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no line with {marker:?} within 60 s; output:\n{}", seen.join("\n")),
        }
    }
}

/// `palisade run` on `dir` when it must refuse to start: its exit code and stderr, within
/// `timeout` (a node that starts after all is killed and the test fails).
pub(crate) fn run_expecting_refusal(
    dir: &std::path::Path,
    extra: &[&str],
    timeout: Duration,
) -> (i32, String) {
    let mut child = spawn_run(dir, extra);
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`palisade run` did not refuse to start within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
