//! Records handed in through the admin API (import lines, records this node signed). They
//! take the same road as records from peers (the pipeline front on this loop, the verify
//! workers, the store thread, the same [`Finished`](crate::pipeline::Finished) handling, so an
//! imported equivocation is counted, announced and gossiped as a proof exactly as a gossiped
//! one); only the way the decisions travel back differs: a batch's reply goes to the caller
//! once every record in it is decided.

use std::collections::HashMap;

use tokio::sync::oneshot;

use super::EventLoop;
use crate::now_ms;
use crate::pipeline::Origin;
use crate::reason::Reason;

/// Admin API batches whose records are in the pipeline at once; more are answered at once
/// with `verify_queue_full` (the caller offers them again).
pub(crate) const MAX_API_BATCHES: usize = 64;
/// Largest batch of records one [`Handle::ingest`](crate::Handle::ingest) call hands in.
pub const MAX_API_BATCH_RECORDS: usize = 256;

/// One record handed in through the admin API.
#[derive(Debug, Clone)]
pub struct ApiRecord {
    /// The envelope bytes.
    pub wire: Vec<u8>,
    /// The id the caller claims for it (an import line's `id`); a record with another id is
    /// refused (`malformed_envelope`).
    pub expected_id: Option<palisade_types::RecordId>,
}

/// Which admin API door the records came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiSource {
    /// `POST /v1/import`.
    Import,
    /// A record this node signed (`POST /v1/attestations`, `/v1/anomalies`, ...).
    Local,
}

impl ApiSource {
    /// The pipeline origin of record `index` of admin API batch `batch`.
    fn origin(self, batch: u64, index: usize, expected_id: Option<palisade_types::RecordId>) -> Origin {
        match self {
            ApiSource::Import => Origin::Import { batch, index, expected_id },
            ApiSource::Local => Origin::Local { batch, index },
        }
    }
}

struct PendingBatch {
    decided: Vec<Option<Reason>>,
    left: usize,
    reply: oneshot::Sender<Vec<Reason>>,
}

/// Admin API batches waiting for their last decision (bounded by [`MAX_API_BATCHES`]).
#[derive(Default)]
pub(crate) struct ApiBatches {
    next: u64,
    pending: HashMap<u64, PendingBatch>,
}

impl EventLoop {
    /// Admits a batch of admin API records through the pipeline front; the reply is sent
    /// when the last of them is decided.
    pub(super) fn on_api_ingest(
        &mut self,
        source: ApiSource,
        records: Vec<ApiRecord>,
        reply: oneshot::Sender<Vec<Reason>>,
    ) {
        if self.api_batches.pending.len() >= MAX_API_BATCHES || records.len() > MAX_API_BATCH_RECORDS {
            // Shed, and counted as such (the caller offers them again).
            for (index, record) in records.iter().enumerate() {
                let origin = source.origin(0, index, record.expected_id);
                self.metrics.count(origin.source_label(), Reason::VerifyQueueFull);
            }
            let _ = reply.send(vec![Reason::VerifyQueueFull; records.len()]);
            return;
        }
        let batch = self.api_batches.next;
        self.api_batches.next = batch.wrapping_add(1);
        let now = now_ms();
        let mut decided = Vec::with_capacity(records.len());
        let mut left = 0;
        for (index, record) in records.into_iter().enumerate() {
            let origin = source.origin(batch, index, record.expected_id);
            let outcome = self.pipeline.admit(record.wire, origin.clone(), None, now);
            match outcome {
                Some(reason) => self.report(&origin, reason),
                None => left += 1,
            }
            decided.push(outcome);
        }
        let pending = PendingBatch { decided, left, reply };
        if left == 0 {
            pending.answer();
        } else {
            self.api_batches.pending.insert(batch, pending);
        }
    }

    /// One record of an admin API batch was decided off the loop.
    pub(super) fn api_record_decided(&mut self, batch: u64, index: usize, reason: Reason) {
        let Some(pending) = self.api_batches.pending.get_mut(&batch) else { return };
        if let Some(slot) = pending.decided.get_mut(index) {
            if slot.replace(reason).is_none() {
                pending.left = pending.left.saturating_sub(1);
            }
        }
        if pending.left == 0 {
            if let Some(done) = self.api_batches.pending.remove(&batch) {
                done.answer();
            }
        }
    }
}

impl PendingBatch {
    fn answer(self) {
        // Every slot is decided by now; a gap would be a bug, reported as a store error.
        let reasons = self.decided.into_iter().map(|d| d.unwrap_or(Reason::StoreError)).collect();
        let _ = self.reply.send(reasons);
    }
}
