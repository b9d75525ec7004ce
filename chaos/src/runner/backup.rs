//! The `restore_backup` fault (issue 15): an online backup of a node is taken with
//! `palisade backup create` while the cluster keeps running; later the node is SIGKILLed, its
//! machine "rebuilt" with only the key and the config kept (store, store manifest and signing
//! history gone), and the backup restored with `palisade backup restore`. Its disk then lacks
//! everything it acknowledged since the backup, and the restored signing history is as old as
//! the store, so only the own-feed check at start (the node asks its peers for its own feed
//! before it signs) keeps it from signing those seqs again. The scenario's checks judge the
//! outcome: every acknowledged record on every node (`no_loss`, the restored node included,
//! by sync) and no honest author flagged as an equivocator (`durability`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::{lock, sleep_until_secs, Run, Window};

/// What the rebuilt machine lacks: everything in the data directory but the key and config.
const LOST: [&str; 3] = ["db", "signing-history", "store-manifest"];
/// Longest a `palisade backup` command may take.
const BACKUP_COMMAND_LIMIT: Duration = Duration::from_secs(120);

pub(super) async fn restore_backup(run: &Arc<Run>, i: usize, at: f64, dur: f64) {
    let (dir, binary) = {
        let cluster = lock(&run.cluster);
        (cluster.nodes[i].data_dir.clone(), cluster.binary().to_path_buf())
    };
    let file = dir.with_file_name(format!(
        "{}.backup",
        dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    info!(node = i, at, "fault: online backup (palisade backup create)");
    if let Err(e) = palisade(&binary, &dir, &["backup", "create"], &file).await {
        warn!(node = i, error = %e, "restore_backup fault: the backup failed");
        return;
    }
    lock(&run.windows).push(Window {
        label: format!("backup {i} .. restore"),
        start_secs: at,
        end_secs: at + dur,
        fault: true,
    });
    sleep_until_secs(run, at + dur).await;
    info!(node = i, "fault: SIGKILL, rebuild with the key only, palisade backup restore, restart");
    let _ = lock(&run.cluster).crash(i);
    for part in LOST {
        let p = dir.join(part);
        let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
    }
    if let Err(e) = palisade(&binary, &dir, &["backup", "restore"], &file).await {
        warn!(node = i, error = %e, "restore_backup fault: the restore failed");
    }
    let _ = lock(&run.cluster).start(i);
    if !run.wait_healthy(i, Duration::from_secs(60)).await {
        warn!(node = i, "restored node did not come back");
    }
}

/// Runs `palisade --data-dir <dir> <args> <file>`, bounded in time; its output goes to the log.
async fn palisade(binary: &Path, dir: &Path, args: &[&str], file: &PathBuf) -> anyhow::Result<()> {
    let command = tokio::process::Command::new(binary)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .arg(file)
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(BACKUP_COMMAND_LIMIT, command).await.map_err(|_| {
        anyhow::anyhow!("`palisade {}` took longer than {BACKUP_COMMAND_LIMIT:?}", args.join(" "))
    })??;
    let text = String::from_utf8_lossy(&out.stdout);
    info!(command = args.join(" "), output = %text.trim(), "palisade");
    if !out.status.success() {
        anyhow::bail!(
            "`palisade {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
