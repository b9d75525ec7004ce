//! The run's temporary root of node data directories: removed when the run ends, kept
//! (moved next to the report) when it failed.

use std::path::{Path, PathBuf};

pub(super) fn tempdir_for(name: &str) -> anyhow::Result<TempRoot> {
    let path = std::env::temp_dir().join(format!("palisade-chaos-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path)?;
    Ok(TempRoot(path))
}

/// Keeps the nodes' data directories of a failed run: moved to `<out>/data` when that is on
/// the same file system, else left where they are. Returns where they are.
pub(super) fn keep_data(root: TempRoot, out: &Path) -> PathBuf {
    let from = root.0.clone();
    std::mem::forget(root);
    let to = out.join("data");
    let _ = std::fs::create_dir_all(out);
    let _ = std::fs::remove_dir_all(&to);
    match std::fs::rename(&from, &to) {
        Ok(()) => to,
        Err(_) => from,
    }
}

/// A directory removed on drop (unless PALISADE_CHAOS_KEEP is set, or a failed run keeps it).
pub(super) struct TempRoot(PathBuf);
impl TempRoot {
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempRoot {
    fn drop(&mut self) {
        if std::env::var_os("PALISADE_CHAOS_KEEP").is_none() {
            crate::cluster::unmount_tmpfs(&self.0);
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
