//! `palisade store check` (issue 15): reads every record back and checks what a damaged disk
//! could have broken without sled noticing. Each stored record must decode canonically, carry
//! a signature that verifies (checked again, not trusted) and sit under its own id; its feed
//! and received-order index entries must exist; every author's feed head must cover its
//! records; the per-kind counters and the quota's byte counter must equal what is stored. Bounded memory: per-author figures only (the report
//! keeps at most [`MAX_REPORTED_PROBLEMS`] examples).

use std::collections::{BTreeMap, HashMap};

use palisade_types::{AuthorKey, ParsedEnvelope, RecordKind};

use crate::{decode_record_value, keys, Result, Store};

/// Most problems the report describes one by one (all are counted).
pub const MAX_REPORTED_PROBLEMS: usize = 100;

/// What [`Store::check`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Records read.
    pub records: u64,
    /// Authors with at least one record.
    pub authors: u64,
    /// Problems found (0 = the store is sound).
    pub problems: u64,
    /// The first problems, described.
    pub examples: Vec<String>,
}

impl CheckReport {
    fn problem(&mut self, what: String) {
        self.problems += 1;
        if self.examples.len() < MAX_REPORTED_PROBLEMS {
            self.examples.push(what);
        }
    }
}

impl Store {
    /// Checks every record and the indexes and counters that describe them. `progress` is
    /// called with the number of records read so far, every 10,000 records.
    pub fn check(&self, mut progress: impl FnMut(u64)) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let mut per_author: HashMap<AuthorKey, u64> = HashMap::new();
        let mut per_kind: BTreeMap<RecordKind, u64> = BTreeMap::new();
        let mut bytes: u64 = 0;
        for item in self.trees().data.scan_prefix([keys::SPACE_RECORD]) {
            let (key, value) = item.map_err(|e| self.io(e))?;
            report.records += 1;
            if report.records % 10_000 == 0 {
                progress(report.records);
            }
            let Some(id) =
                key.get(1..).and_then(|b| <[u8; 32]>::try_from(b).ok()).map(palisade_types::RecordId)
            else {
                report.problem(format!("record key {} is not 33 bytes", hex::encode(&key)));
                continue;
            };
            let (meta, record) = match decode_record_value(&id, &value) {
                Ok(r) => r,
                Err(e) => {
                    report.problem(format!("record {id}: {e}"));
                    continue;
                }
            };
            // A damaged record still takes its bytes.
            bytes = bytes.saturating_add(crate::retention::record_cost(&record));
            // The record is walked through the ingest type states again (static rules as of
            // its arrival, then the signature): the stored bytes are not taken on trust here.
            let verified = ParsedEnvelope::parse(record.wire_bytes().to_vec())
                .map_err(|e| e.to_string())
                .and_then(|p| p.decode().map_err(|e| e.to_string()))
                .and_then(|u| u.validate(meta.received_at_ms).map_err(|e| e.to_string()))
                .and_then(|v| v.verify().map_err(|e| e.to_string()));
            if let Err(e) = verified {
                report.problem(format!("record {id}: its encoding, rules or signature no longer check: {e}"));
                continue;
            }
            let position = &record.record().position;
            let indexed = self
                .trees()
                .data
                .contains_key(keys::author_seq(&position.author, position.seq, &id))
                .map_err(|e| self.io(e))?;
            if !indexed {
                report.problem(format!(
                    "record {id} (author {}, seq {}) is missing from its feed index",
                    position.author, position.seq
                ));
            }
            let in_eviction_order = self
                .trees()
                .data
                .contains_key(keys::received_key(meta.received_at_ms, &id))
                .map_err(|e| self.io(e))?;
            if !in_eviction_order {
                report.problem(format!(
                    "record {id} is missing from the received index (the quota cannot evict it)"
                ));
            }
            let max = per_author.entry(position.author).or_default();
            *max = (*max).max(position.seq);
            *per_kind.entry(record.kind()).or_default() += 1;
        }
        report.authors = per_author.len() as u64;
        for (author, max_seq) in &per_author {
            match self.feed_head(author)? {
                Some(head) if head.max_seq >= *max_seq => {}
                Some(head) => report.problem(format!(
                    "author {author}: feed head says max seq {}, but seq {max_seq} is stored",
                    head.max_seq
                )),
                None => report.problem(format!("author {author}: records stored but no feed head")),
            }
        }
        let markers = self.trees().data.scan_prefix([keys::SPACE_EVICTED]).count() as u64;
        bytes = bytes.saturating_add(markers.saturating_mul(crate::retention::MARKER_COST));
        let counted_bytes = self.usage().bytes_used;
        if counted_bytes != bytes {
            report
                .problem(format!("the quota's byte counter says {counted_bytes}, the records take {bytes}"));
        }
        let counted = self.record_counts()?;
        for kind in RecordKind::ALL {
            let (stored, says) =
                (per_kind.get(&kind).copied().unwrap_or(0), counted.get(&kind).copied().unwrap_or(0));
            if stored != says {
                report.problem(format!("{kind} counter says {says}, {stored} are stored"));
            }
            // The manifest's counter only grows: it can never be below what is stored.
            let ever = self.stored_ever(kind);
            if ever < stored {
                report
                    .problem(format!("{kind} records-ever-stored counter says {ever}, {stored} are stored"));
            }
        }
        Ok(report)
    }
}
