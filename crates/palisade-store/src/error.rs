//! Store errors.

use std::path::PathBuf;

/// What went wrong in the store, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the database lock.
    #[error("the database at {path} is in use by another process (is another palisade running with this --data-dir?)")]
    Locked {
        /// Database directory.
        path: PathBuf,
    },
    /// The database's files cannot be read at open (a damaged `conf`, which sled calls "created
    /// using a sled version earlier than 0.29", or corrupt data).
    #[error("the database at {path} is damaged ({detail}). Restore the data directory from a backup, or move {path} away and start the node to re-sync the records from peers (keep node.key and signing-history: they stop the node from signing a seq twice)")]
    Damaged {
        /// Database directory.
        path: PathBuf,
        /// What sled said.
        detail: String,
    },
    /// An I/O or sled error.
    #[error(
        "storage error at {path}: {source}; check free disk space and permissions of the data directory"
    )]
    Io {
        /// Database directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: sled::Error,
    },
    /// The store's filesystem is below its flood stage: new records are refused (reads go on)
    /// until free space is back.
    #[error("the disk under {path} has {free_bytes} bytes free, below store.min_free_disk_bytes ({min_free_bytes}): new records are refused until space is freed (reads go on); free disk space or move the data directory to a larger disk")]
    DiskLow {
        /// Database directory.
        path: PathBuf,
        /// Free bytes at the last sample.
        free_bytes: u64,
        /// The flood stage.
        min_free_bytes: u64,
    },
    /// The database was written by an incompatible version.
    #[error("the database at {path} has schema version {found}, this binary reads version {expected}; run the palisade version that wrote it, or export the records with it and import them into a fresh data directory")]
    SchemaMismatch {
        /// Database directory.
        path: PathBuf,
        /// Version found on disk.
        found: u32,
        /// Version this binary reads.
        expected: u32,
    },
    /// A stored value could not be decoded: disk corruption or a bug.
    #[error("corrupt value in tree `{tree}` at key {key}: {detail}; restore the data directory from a backup or re-sync it from peers")]
    Corrupt {
        /// Tree name.
        tree: &'static str,
        /// Key, hex.
        key: String,
        /// What was wrong.
        detail: String,
    },
    /// A pagination cursor did not come from this query.
    #[error("invalid cursor: {0}; pass the `next_cursor` value of the previous page unchanged")]
    BadCursor(&'static str),
    /// A query argument is out of range.
    #[error("invalid query: {0}")]
    BadQuery(String),
}

impl StoreError {
    pub(crate) fn corrupt(tree: &'static str, key: &[u8], detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt { tree, key: hex::encode(key), detail: detail.into() }
    }
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
