//! Backup and restore figures (issue 15), measured inside part `memory` on its store of N
//! records: `palisade backup create` against the running node (online, while it holds its
//! peers), then `palisade backup restore` of that file into a new data directory with only
//! the key, and a start on the restored store. They give the recovery time (restore + start)
//! that `docs/operations.md` quotes; there is no target (no ratio to hold).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::Context;

use super::procs::NodeProc;
use super::Recorder;

/// `palisade backup create` of the running `node` into a temp file; returns the file's
/// directory (kept for the restore).
pub fn measure_create(
    binary: &Path,
    node: &NodeProc,
    n: usize,
    rec: &mut Recorder,
) -> anyhow::Result<tempfile::TempDir> {
    let out_dir = tempfile::Builder::new().prefix("palisade-bench-backup-").tempdir()?;
    let file = out_dir.path().join("node.backup");
    let started = Instant::now();
    let out = Command::new(binary)
        .arg("--data-dir")
        .arg(&node.dir)
        .args(["backup", "create"])
        .arg(&file)
        .output()?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "backup create failed: {}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::metadata(&file)?.len();
    rec.figure("backup_create_secs", "s", vec![secs], &format!("`palisade backup create` of the running node with {n} records (online; written, fsynced, read back and checked)"));
    rec.figure(
        "backup_bytes_per_record",
        "B",
        vec![bytes as f64 / n.max(1) as f64],
        "backup file size / records",
    );
    Ok(out_dir)
}

/// `palisade backup restore` of the file `measure_create` wrote into a new data directory
/// holding only `node`'s key, then a start on it until ready.
pub async fn measure_restore(
    binary: &Path,
    node: &NodeProc,
    backup: &Path,
    n: usize,
    rec: &mut Recorder,
) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("palisade-bench-restored-").tempdir()?;
    let mut restored = NodeProc::init(binary, &dir.path().join("node"), super::procs::node_ip(51))?;
    restored.stop();
    std::fs::copy(node.dir.join("node.key"), restored.dir.join("node.key")).context("copying the key")?;
    let _ = std::fs::remove_dir_all(restored.db_dir());
    for side in ["signing-history", "store-manifest"] {
        let _ = std::fs::remove_file(restored.dir.join(side));
    }
    let started = Instant::now();
    let out = Command::new(binary)
        .arg("--data-dir")
        .arg(&restored.dir)
        .args(["backup", "restore"])
        .arg(backup.join("node.backup"))
        .output()?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "backup restore failed: {}", String::from_utf8_lossy(&out.stderr));
    rec.figure("backup_restore_secs", "s", vec![secs], &format!("`palisade backup restore` of {n} records into an empty data directory (file checked, every record verified again and stored)"));
    restored.configure(&[], toml::Table::new(), toml::Table::new())?;
    restored.start()?;
    let ready = restored.wait_ready(std::time::Duration::from_secs(300)).await?.as_secs_f64();
    let held = restored.record_count().await?;
    restored.stop();
    anyhow::ensure!(held as usize == n, "the restored node holds {held} of {n} records");
    rec.figure(
        "restored_start_ready_secs",
        "s",
        vec![ready],
        "palisade run on the restored store until GET /v1/ready answers 200",
    );
    rec.figure("backup_recovery_secs", "s", vec![secs + ready], "recovery time: restore + start until ready");
    Ok(())
}
