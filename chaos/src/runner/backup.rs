//! The `restore_backup` fault (issue 15): a node is put back on a backup of its store and
//! signing history taken while the cluster kept running. Its disk then lacks everything it
//! acknowledged since; the signing history is as old as the store, so only the own-feed
//! check at start (the node asks its peers for its own feed before it signs) keeps it from
//! signing those seqs again. The scenario's checks judge the outcome: every acknowledged
//! record on every node (`no_loss`, the restored node included, by sync) and no honest author
//! flagged as an equivocator (`durability`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::{lock, sleep_until_secs, Run, Window};

/// What a backup holds: the store, its manifest and the signing history, all as old (the key
/// stays in place, as an operator restoring a node keeps its key). The manifest comes back
/// with the store it describes, so the node starts on the restored store; without it the
/// node would refuse (exit 74) until told `--recover-from-peers`.
const BACKED_UP: [&str; 3] = ["db", "signing-history", "store-manifest"];

pub(super) async fn restore_backup(run: &Arc<Run>, i: usize, at: f64, dur: f64) {
    let dir = lock(&run.cluster).nodes[i].data_dir.clone();
    let backup = dir.with_file_name(format!(
        "{}-backup",
        dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    // A crash-consistent copy: the node is stopped while its files are read.
    info!(node = i, at, "fault: backup");
    let _ = lock(&run.cluster).pause(i);
    let copied = copy_parts(&dir, &backup);
    let _ = lock(&run.cluster).resume(i);
    if let Err(e) = copied {
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
    info!(node = i, "fault: SIGKILL, restore the backup, restart");
    let _ = lock(&run.cluster).crash(i);
    for part in BACKED_UP {
        let p = dir.join(part);
        let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
    }
    if let Err(e) = copy_parts(&backup, &dir) {
        warn!(node = i, error = %e, "restore_backup fault: the restore failed");
    }
    let _ = lock(&run.cluster).start(i);
    if !run.wait_healthy(i, Duration::from_secs(60)).await {
        warn!(node = i, "restored node did not come back");
    }
}

fn copy_parts(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for part in BACKED_UP {
        let src = from.join(part);
        if src.is_dir() {
            copy_dir(&src, &to.join(part))?;
        } else if src.exists() {
            std::fs::copy(&src, to.join(part))?;
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
