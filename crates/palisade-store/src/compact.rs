//! Offline compaction (`palisade store compact`): copies every tree into a fresh database and
//! swaps it in, like `etcdctl defrag`.
//!
//! Why it is needed: sled 0.34 does not give back the space of what was deleted or
//! overwritten. Under the store quota's churn (records stored and evicted at the rate a Sybil
//! flood brings them) its files grew by about 1.9 KB per record written while the records'
//! logical bytes stayed at the quota (measured: 4 MiB of records, 185 MiB of files after
//! 102,400 records written, whether sled's background flusher and its segment cleaner ran
//! or not). The quota bounds what a node keeps; compaction gives the disk back.
//!
//! Crash safety: the copy is written beside the store (`db.compacting`), flushed and
//! checked (same entries in every tree) before anything is renamed. The swap is two renames:
//! `db` → `db.compact-old`, `db.compacting` → `db`; then `db.compact-old` is deleted. A crash
//! between the renames leaves no `db` but a complete `db.compact-old`:
//! [`recover_interrupted_compaction`] puts it back, and `Store::open` calls it before anything
//! else, so no command can create an empty store in its place.

use std::path::{Path, PathBuf};

use crate::{disk, Result, Store, StoreConfig, StoreError};

/// Where the copy is written, beside the store.
pub fn compacting_dir(db: &Path) -> PathBuf {
    db.with_extension("compacting")
}

/// Where the old store waits during the swap.
pub fn compact_old_dir(db: &Path) -> PathBuf {
    db.with_extension("compact-old")
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CompactReport {
    /// Bytes of the store's files before.
    pub before_bytes: u64,
    /// Bytes after.
    pub after_bytes: u64,
    /// Entries copied (every tree).
    pub entries: u64,
}

/// Puts back a store whose compaction was interrupted between its two renames. Returns
/// whether it did.
pub fn recover_interrupted_compaction(db: &Path) -> std::io::Result<bool> {
    let old = compact_old_dir(db);
    if !db.exists() && old.exists() {
        std::fs::rename(&old, db)?;
        tracing::warn!(path = %db.display(), "put back the store of an interrupted `palisade store compact`");
        return Ok(true);
    }
    Ok(false)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io { path: path.to_path_buf(), source: sled::Error::Io(e) }
}

/// Compacts the store at `config.path` (which must not be open anywhere: the lock is taken).
pub fn compact(config: &StoreConfig) -> Result<CompactReport> {
    let db = config.path.clone();
    recover_interrupted_compaction(&db).map_err(io(&db))?;
    let copy = compacting_dir(&db);
    if copy.exists() {
        // A copy an earlier run did not finish: never swapped in, so never needed.
        std::fs::remove_dir_all(&copy).map_err(io(&copy))?;
    }
    let store = Store::open(config)?;
    let before_bytes = store.size_on_disk()?;
    let compressed = store.inner.compressed;
    let copied = copy_into(&store, &copy, compressed);
    drop(store);
    let entries = match copied {
        Ok(entries) => entries,
        Err(e) => {
            // A half-written copy (a full disk, most likely) must not keep the space it took.
            let _ = std::fs::remove_dir_all(&copy);
            return Err(e);
        }
    };
    std::fs::rename(&db, compact_old_dir(&db)).map_err(io(&db))?;
    std::fs::rename(&copy, &db).map_err(io(&copy))?;
    std::fs::remove_dir_all(compact_old_dir(&db)).map_err(io(&db))?;
    disk::remove_unfinished_snapshots(&db);
    let after_bytes = Store::open(config)?.size_on_disk()?;
    Ok(CompactReport { before_bytes, after_bytes, entries })
}

/// Entries written per batch into the copy.
const COPY_BATCH: usize = 10_000;

/// Copies every tree of `store` into a fresh database at `copy` (in bounded batches, every
/// error returned: sled's own `import` panics on an I/O error such as a full disk) and
/// checks the entry counts. Returns the entries copied.
fn copy_into(store: &Store, copy: &Path, compressed: bool) -> Result<u64> {
    let fresh = sled::Config::new()
        .path(copy)
        .use_compression(compressed)
        .compression_factor(crate::COMPRESSION_LEVEL)
        .flush_every_ms(None)
        .open()
        .map_err(|e| store.io_err(e))?;
    let mut entries = 0u64;
    for name in store.inner.db.tree_names() {
        let from = store.inner.db.open_tree(&name).map_err(|e| store.io_err(e))?;
        let to = fresh.open_tree(&name).map_err(|e| store.io_err(e))?;
        let mut batch = sled::Batch::default();
        let mut pending = 0usize;
        for item in from.iter() {
            let (k, v) = item.map_err(|e| store.io_err(e))?;
            batch.insert(k, v);
            pending += 1;
            if pending == COPY_BATCH {
                to.apply_batch(std::mem::take(&mut batch)).map_err(|e| store.io_err(e))?;
                pending = 0;
            }
        }
        to.apply_batch(batch).map_err(|e| store.io_err(e))?;
        if from.len() != to.len() {
            return Err(StoreError::corrupt(
                "compaction",
                &name,
                format!("the copy has {} entries, the store {}", to.len(), from.len()),
            ));
        }
        entries += from.len() as u64;
    }
    fresh.flush().map_err(|e| store.io_err(e))?;
    Ok(entries)
}
