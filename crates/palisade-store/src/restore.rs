//! What a restore of a backup document reports, and why it stops. The restore itself is
//! `palisade_net::restore_backup`: a backup's records take the ingest pipeline like any
//! other record (one path into the store); this crate only parses the document
//! ([`BackupReader`](crate::BackupReader)) and holds these types, which the node's
//! `palisade backup restore` prints.

/// Most refused records listed in a [`RestoreReport`] (all are counted).
pub const MAX_LISTED_REFUSALS: usize = 100;

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Records stored.
    pub stored: u64,
    /// Records the store already held (a record twice in the file).
    pub duplicates: u64,
    /// Records refused (they do not parse, break a static rule, or their signature fails; or
    /// the store refused them), with the first [`MAX_LISTED_REFUSALS`] reasons.
    pub refused: u64,
    /// Why, for the first refusals.
    pub refusals: Vec<String>,
    /// Bans written.
    pub bans: u64,
    /// Peer book entries written.
    pub peers: u64,
}

impl RestoreReport {
    /// Counts a refused record and keeps why, for the first [`MAX_LISTED_REFUSALS`].
    pub fn refuse(&mut self, why: String) {
        self.refused += 1;
        if self.refusals.len() < MAX_LISTED_REFUSALS {
            self.refusals.push(why);
        }
    }
}

/// Why a restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The document is not a sound backup.
    #[error("the backup: {0}")]
    Document(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::StoreError),
    /// The ingest pipeline could not be started.
    #[error("starting the ingest pipeline: {0}")]
    Setup(String),
}
