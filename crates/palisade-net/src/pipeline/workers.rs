//! The pipeline's threads: signature batches on the verify workers, group-committed writes
//! on the store thread. Neither ever touches the event loop's state; decisions go back to it
//! as [`Finished`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::lanes::{LaneRx, Lanes, Received};
use palisade_store::{InsertOutcome, Store, StoredMeta};
use palisade_types::ed25519_dalek::VerifyingKey;
use palisade_types::{
    verify_batch_with_keys, verifying_key, AuthorKey, ValidatedRecord, VerifiedRecord, VerifyError,
};
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use super::{Finished, Origin, PreVerify, Signature, StoredInfo, VerifyJob};
use crate::metrics::NetMetrics;
use crate::reason::Reason;

/// A record whose signature verified, on its way to the store thread.
pub(super) struct StoreJob {
    pub(super) record: VerifiedRecord,
    pub(super) signature: Signature,
    pub(super) origin: Origin,
}

/// Counts a pipeline thread as alive until it exits (for the clean-shutdown check).
pub(super) struct LiveThread(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl LiveThread {
    pub(super) fn enter(counter: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> LiveThread {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        LiveThread(counter.clone())
    }
}

impl Drop for LiveThread {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Verifying-key cache of one worker: decompressing a key costs about a tenth of a
/// verification, and authors repeat. Cleared when full (bounded).
struct KeyCache {
    keys: HashMap<AuthorKey, Option<VerifyingKey>>,
}

const KEY_CACHE_ENTRIES: usize = 4096;

impl KeyCache {
    fn get(&mut self, author: &AuthorKey) -> Option<VerifyingKey> {
        if let Some(k) = self.keys.get(author) {
            return *k;
        }
        if self.keys.len() >= KEY_CACHE_ENTRIES {
            self.keys.clear();
        }
        let k = verifying_key(author).ok();
        self.keys.insert(*author, k);
        k
    }
}

/// Takes `first` and whatever else is queued (waiting up to `deadline` only to fill the
/// batch) into `batch`.
fn fill_batch(
    rx: &LaneRx<VerifyJob>,
    first: VerifyJob,
    batch: &mut Vec<VerifyJob>,
    max: usize,
    deadline: Duration,
) {
    batch.push(first);
    let until = Instant::now() + deadline;
    while batch.len() < max {
        match rx.try_recv() {
            Some(j) => batch.push(j),
            None => match rx.recv(Some(until.saturating_duration_since(Instant::now()))) {
                Received::Job(j) => batch.push(j),
                Received::Timeout | Received::Closed => break,
            },
        }
    }
}

/// Where a verify worker's results go: verified records to the store thread, decisions
/// back to the event loop.
pub(super) struct WorkerOut {
    pub(super) store_tx: Lanes<StoreJob>,
    pub(super) finished_tx: mpsc::Sender<Finished>,
}

pub(super) fn verify_worker(
    rx: LaneRx<VerifyJob>,
    pre_verify: PreVerify,
    out: WorkerOut,
    metrics: NetMetrics,
    batch_max: usize,
    deadline: Duration,
) {
    let mut keys = KeyCache { keys: HashMap::new() };
    let mut batch: Vec<VerifyJob> = Vec::with_capacity(batch_max);
    while let Received::Job(first) = rx.recv(None) {
        fill_batch(&rx, first, &mut batch, batch_max, deadline);
        let mut origins = Vec::with_capacity(batch.len());
        let mut items = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            let signature = *job.record.signature();
            // Stored already or over a budget: decided here, no signature checked.
            if let Err(reason) = pre_verify.check(&job.record, &job.origin) {
                let id = job.record.id();
                let decided = Finished { id, signature, origin: job.origin, reason, stored: None };
                if out.finished_tx.blocking_send(decided).is_err() {
                    return;
                }
                continue;
            }
            let key = keys.get(&job.record.record().position.author);
            origins.push((job.origin, signature));
            items.push((job.record, key));
        }
        if items.is_empty() {
            continue;
        }
        if !verify_and_pass_on(items, origins, &out, &metrics) {
            return;
        }
    }
}

/// Verifies one batch; verified records go to the store thread, failures back to the loop.
/// False when either is gone.
fn verify_and_pass_on(
    items: Vec<(ValidatedRecord, Option<VerifyingKey>)>,
    origins: Vec<(Origin, Signature)>,
    out: &WorkerOut,
    metrics: &NetMetrics,
) -> bool {
    let started = Instant::now();
    metrics.verify_batch_size.observe(items.len() as f64);
    metrics.signatures_verified.inc_by(items.len() as u64);
    let outcomes = verify_batch_with_keys(items);
    metrics.verify_batch_seconds.observe(started.elapsed().as_secs_f64());
    for (outcome, (origin, signature)) in outcomes.into_iter().zip(origins) {
        let sent = match outcome {
            Ok(record) => {
                let local = matches!(origin, Origin::Local { .. });
                out.store_tx.send(StoreJob { record, signature, origin }, local).is_ok()
            }
            Err((id, e)) => {
                let reason = match e {
                    VerifyError::BadAuthorKey => Reason::BadAuthorKey,
                    _ => Reason::BadSignature,
                };
                out.finished_tx
                    .blocking_send(Finished { id, signature, origin, reason, stored: None })
                    .is_ok()
            }
        };
        if !sent {
            return false;
        }
    }
    true
}

/// The store thread's group commit: what is written and not yet flushed.
struct GroupCommit<'a> {
    store: &'a Store,
    metrics: &'a NetMetrics,
    enabled: bool,
    interval: Duration,
    max: usize,
    pending: usize,
    first_pending: Option<Instant>,
}

impl GroupCommit<'_> {
    fn written(&mut self, at: Instant) {
        self.pending += 1;
        if self.enabled {
            self.first_pending.get_or_insert(at);
        }
    }

    /// How long the thread may wait for more work before a flush is due.
    fn wait(&self) -> Option<Duration> {
        self.first_pending.map(|t| self.interval.saturating_sub(t.elapsed()))
    }

    fn flush(&mut self) {
        let t = Instant::now();
        if let Err(e) = self.store.flush() {
            error!(error = %e, "group-commit flush failed");
        }
        self.metrics.store_flush_seconds.observe(t.elapsed().as_secs_f64());
        self.pending = 0;
        self.first_pending = None;
    }

    fn flush_if_due(&mut self) {
        let due = self.first_pending.is_some_and(|t| t.elapsed() >= self.interval);
        if self.enabled && (self.pending >= self.max || (self.pending > 0 && due)) {
            self.flush();
        }
    }

    fn flush_pending(&mut self) {
        if self.pending > 0 {
            self.flush();
        }
    }
}

pub(super) struct StoreWorker {
    pub(super) rx: LaneRx<StoreJob>,
    pub(super) finished_tx: mpsc::Sender<Finished>,
    pub(super) store: Store,
    pub(super) metrics: NetMetrics,
    pub(super) flush_interval: Duration,
    pub(super) flush_max: usize,
    pub(super) group_commit: bool,
}

impl StoreWorker {
    pub(super) fn run(self) {
        let mut commit = GroupCommit {
            store: &self.store,
            metrics: &self.metrics,
            enabled: self.group_commit,
            interval: self.flush_interval,
            max: self.flush_max,
            pending: 0,
            first_pending: None,
        };
        let mut group: Vec<StoreJob> = Vec::with_capacity(self.flush_max);
        loop {
            let first = match self.rx.recv(commit.wait()) {
                Received::Job(j) => Some(j),
                Received::Timeout => None,
                Received::Closed => break,
            };
            if let Some(job) = first {
                // Write everything already queued (up to one group) in one atomic batch.
                group.push(job);
                while group.len() < self.flush_max {
                    match self.rx.try_recv() {
                        Some(j) => group.push(j),
                        None => break,
                    }
                }
                if !self.write_group(&mut group, &mut commit) {
                    debug!("event loop gone; store worker stopping");
                    break;
                }
            }
            commit.flush_if_due();
        }
        commit.flush_pending();
    }

    /// Writes one group and reports each record; false when the event loop is gone.
    fn write_group(&self, group: &mut Vec<StoreJob>, commit: &mut GroupCommit<'_>) -> bool {
        let started = Instant::now();
        let now = crate::now_ms();
        let items: Vec<(&VerifiedRecord, StoredMeta)> = group
            .iter()
            .map(|j| (&j.record, StoredMeta { received_at_ms: now, source: j.origin.store_source() }))
            .collect();
        let result = self.store.insert_many(&items);
        drop(items);
        let per_record = started.elapsed().as_secs_f64() / group.len().max(1) as f64;
        let mut failed = Reason::StoreError;
        let outcomes: Vec<Option<InsertOutcome>> = match result {
            Ok(o) => o.into_iter().map(Some).collect(),
            Err(palisade_store::StoreError::DiskLow { .. }) => {
                // The flood stage began while these were being verified; logged by the store.
                failed = Reason::DiskLow;
                group.iter().map(|_| None).collect()
            }
            Err(e) => {
                error!(error = %e, records = group.len(), "storing verified records failed");
                group.iter().map(|_| None).collect()
            }
        };
        for (job, outcome) in group.drain(..).zip(outcomes) {
            self.metrics.store_write_seconds.observe(per_record);
            let id = job.record.id();
            let (reason, stored) = match outcome {
                Some(InsertOutcome::Inserted(ins)) => {
                    commit.written(started);
                    let conflicting =
                        ins.equivocation.as_ref().and_then(|proof| self.conflicting(proof, &job.record));
                    (
                        Reason::Stored,
                        Some(StoredInfo { record: job.record, equivocation: ins.equivocation, conflicting }),
                    )
                }
                Some(InsertOutcome::Duplicate) => (Reason::Duplicate, None),
                Some(InsertOutcome::Refused(why)) => (Reason::refused(why), None),
                None => (failed, None),
            };
            let finished = Finished { id, signature: job.signature, origin: job.origin, reason, stored };
            if self.finished_tx.blocking_send(finished).is_err() {
                return false;
            }
        }
        true
    }

    /// The wire bytes of the record an equivocating one conflicts with, read here so the
    /// event loop can gossip the proof without a store read of its own.
    fn conflicting(
        &self,
        proof: &palisade_store::EquivocationProof,
        second: &VerifiedRecord,
    ) -> Option<Vec<u8>> {
        warn!(author = %second.author(), seq = proof.seq, "equivocation detected");
        match self.store.get(&proof.first) {
            Ok(Some(first)) => Some(first.record.wire_bytes().to_vec()),
            Ok(None) => None,
            Err(e) => {
                warn!(error = %e, "reading the first half of an equivocation failed; peers get it by sync");
                None
            }
        }
    }
}
