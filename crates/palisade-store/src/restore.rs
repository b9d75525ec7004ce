//! [`Store::restore`]: a backup document's records, bans and peer book written into an empty
//! store. Every record is walked through the same type states as anything from a peer (parse,
//! decode, static rules, signature; verified in batches) and stored by
//! [`Store::insert_many`], the one insert path, so equivocation proofs, anomaly states,
//! indexes and the quota are rebuilt by the same code that built them. The caller (the node's
//! `palisade backup restore`) checks the document first ([`BackupReader::verify`]) and
//! handles the key, the signing history and the manifest.

use std::io::BufRead;

use palisade_types::{verify_batch, ParsedEnvelope, ValidatedRecord};

use crate::backup::{BackupItem, BackupReader};
use crate::{InsertOutcome, Source, Store, StoredMeta};

/// Records verified and inserted at once.
const RESTORE_BATCH: usize = 1000;
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
    fn refuse(&mut self, why: String) {
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
}

impl Store {
    /// Writes every item of `reader` into this store (see the module docs); `now_ms` is the
    /// records' receive time and the clock of the static rules; `progress` is called with the
    /// records read so far after each batch.
    pub fn restore<R: BufRead>(
        &self,
        reader: &mut BackupReader<R>,
        now_ms: u64,
        mut progress: impl FnMut(u64),
    ) -> Result<RestoreReport, RestoreError> {
        let mut report = RestoreReport::default();
        let mut batch: Vec<Vec<u8>> = Vec::with_capacity(RESTORE_BATCH);
        let mut read = 0u64;
        while let Some(item) = reader.next_item().map_err(RestoreError::Document)? {
            match item {
                BackupItem::Record(wire) => {
                    read += 1;
                    batch.push(wire);
                    if batch.len() == RESTORE_BATCH {
                        self.restore_batch(std::mem::take(&mut batch), now_ms, &mut report)?;
                        progress(read);
                    }
                }
                BackupItem::Ban(ban) => {
                    self.put_ban(&ban)?;
                    report.bans += 1;
                }
                BackupItem::Peer(peer) => {
                    self.upsert_peer(&peer)?;
                    report.peers += 1;
                }
            }
        }
        self.restore_batch(batch, now_ms, &mut report)?;
        progress(read);
        self.flush()?;
        Ok(report)
    }

    fn restore_batch(
        &self,
        wires: Vec<Vec<u8>>,
        now_ms: u64,
        report: &mut RestoreReport,
    ) -> crate::Result<()> {
        let mut valid: Vec<ValidatedRecord> = Vec::with_capacity(wires.len());
        for wire in wires {
            match ParsedEnvelope::parse(wire) {
                Err(e) => report.refuse(format!("a record does not parse: {e}")),
                Ok(parsed) => {
                    let id = parsed.id();
                    match parsed
                        .decode()
                        .map_err(|e| e.to_string())
                        .and_then(|u| u.validate(now_ms).map_err(|e| e.to_string()))
                    {
                        Ok(v) => valid.push(v),
                        Err(e) => report.refuse(format!("record {id}: {e}")),
                    }
                }
            }
        }
        let mut verified = Vec::with_capacity(valid.len());
        for outcome in verify_batch(valid) {
            match outcome {
                Ok(r) => verified.push(r),
                Err((id, e)) => report.refuse(format!("record {id}: {e}")),
            }
        }
        let meta = StoredMeta { received_at_ms: now_ms, source: Source::Import };
        let items: Vec<_> = verified.iter().map(|r| (r, meta)).collect();
        for (outcome, (record, _)) in self.insert_many(&items)?.into_iter().zip(&items) {
            match outcome {
                InsertOutcome::Inserted(_) => report.stored += 1,
                InsertOutcome::Duplicate => report.duplicates += 1,
                InsertOutcome::Refused(why) => {
                    report.refuse(format!("record {}: the store quota refused it ({why:?})", record.id()))
                }
            }
        }
        Ok(())
    }
}
