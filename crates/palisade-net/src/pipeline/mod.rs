//! The ingest pipeline, cheapest checks first, one path for every record whatever its origin.
//!
//! ```text
//! event loop (front, memory only, synchronous):
//!   size cap ─► disk room (one atomic load) ─► per-peer message and byte rate (guard)
//!   ─► envelope decode + id (one pass and one hash) ─► dedup in memory (seen cache,
//!   in-flight set) ─► payload decode ─► static validation (type state) ─► topic/age rules
//!   ─► verify queue (try_send)
//! verify workers (N threads), per batch of up to `verify_batch_max_records`:
//!   stored already (a store lookup, skipped when the cached feed head shows the seq is new)
//!   ─► new-author budget (whether the author has records: the feed-head cache or one read)
//!   ─► per-peer record rate, per-author quota, verification cost (guard)
//!   ─► `verify_batch_with_keys` with a per-worker key cache, fallback to singles
//! store thread: insert (feed check, equivocation) with group commit (flush every N records
//!   or T ms) ─► Finished back to the event loop ─► Accept/Reject/Ignore to gossipsub
//! ```
//!
//! Nothing on the event loop touches the disk: what needs the store runs on the workers,
//! still before any signature is checked (so a duplicate or a record over a budget costs no
//! verification). Gossip and sync records enter with `Pipeline::admit`; each half of an
//! equivocation proof with `Pipeline::admit_proof`, after the proof budget, through the same
//! record checks (`Pipeline::check_record`) and the same queue; import lines and this node's
//! own records with `Pipeline::admit` as `Origin::Import` / `Origin::Local` (no peer budgets).
//! A full verify queue sheds load (Ignore, counted, ledgered) and never blocks the event loop.
//! Every outcome is a [`Reason`], which is both the metric label and the ledger reason.

mod budgets;
mod config;
mod ingestor;
mod lanes;
mod origin;
mod seen;
#[cfg(test)]
mod tests;
mod workers;

use std::collections::HashMap;
use std::thread::JoinHandle;

use crossbeam_channel::TrySendError;
use lanes::Lanes;
use palisade_guard::{Admission, DropReason, Guard};
use palisade_store::Store;
use palisade_types::{
    DecodeError, ParsedEnvelope, RecordId, UnverifiedRecord, ValidatedRecord, ValidationError, VerifiedRecord,
};
use tokio::sync::mpsc;
use tracing::error;

use budgets::PreVerify;
pub use config::PipelineConfig;
pub use ingestor::{Decision, Ingestor};
pub(crate) use origin::Origin;
use seen::SeenCache;

use crate::metrics::NetMetrics;
use crate::reason::Reason;
use crate::topics::TopicKind;
use workers::{LiveThread, StoreJob, StoreWorker};

/// An envelope's signature bytes.
type Signature = [u8; palisade_types::limits::SIGNATURE_BYTES];

/// Copies of one record id (each with other signature bytes) that may be queued or in
/// verification at once; more are ignored (`copies_in_flight`). Honest copies are
/// byte-identical, so a second copy is already suspect: the cap keeps a variant flood from
/// turning the in-flight lookup quadratic, while one or two corrupted copies still cannot
/// shadow the valid one.
pub const MAX_COPIES_IN_FLIGHT_PER_RECORD: usize = 4;

/// The share of the verify queue kept for records that sync asked for: gossip may fill the
/// rest, never this, so pages pulled to catch up after a partition or a crash are not shed
/// because a flood (or a burst of honest gossip) got to the queue first. The sync client asks
/// for at most this many records at once.
pub(crate) fn sync_reserved_records(verify_queue_records: usize) -> usize {
    (verify_queue_records / 2).max(1)
}

pub(crate) fn decode_reason(e: &DecodeError) -> Reason {
    match e {
        DecodeError::TooLarge { .. } => Reason::Oversized,
        DecodeError::UnknownPayloadType(_) => Reason::UnknownPayloadType,
        _ => Reason::MalformedEnvelope,
    }
}

pub(crate) fn validation_reason(e: &ValidationError) -> Reason {
    match e {
        ValidationError::InFuture { .. } => Reason::FutureTimestamp,
        _ => Reason::Invalid,
    }
}

/// Facts about a record the store just accepted.
#[derive(Debug, Clone)]
pub(crate) struct StoredInfo {
    pub(crate) record: VerifiedRecord,
    pub(crate) equivocation: Option<palisade_store::EquivocationProof>,
    /// The wire bytes of the record `record` conflicts with (read on the store thread), to
    /// gossip the proof.
    pub(crate) conflicting: Option<Vec<u8>>,
}

/// A decision made off the event loop.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) id: RecordId,
    /// The signature of the copy decided (copies of one id are told apart by it).
    pub(crate) signature: Signature,
    pub(crate) origin: Origin,
    pub(crate) reason: Reason,
    pub(crate) stored: Option<StoredInfo>,
}

struct VerifyJob {
    record: ValidatedRecord,
    origin: Origin,
}

/// What the front made of one half of a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProofAdmission {
    /// Decided now (both halves known: `Duplicate`; a half failed a check: its reason).
    Decided(Reason),
    /// This many halves were queued; their [`Finished`] decide the proof.
    Queued(usize),
}

/// The front of the pipeline (lives on the event loop) plus its worker threads.
pub(crate) struct Pipeline {
    cfg: PipelineConfig,
    store: Store,
    guard: Guard,
    metrics: NetMetrics,
    seen: SeenCache,
    /// Copies queued or being verified, by id and then signature: an identical copy is a
    /// duplicate, but a copy with other signature bytes is not (the id does not cover the
    /// signature, so a corrupted copy arriving first must not shadow the valid one).
    in_flight: HashMap<RecordId, Vec<Signature>>,
    /// Total copies in `in_flight` (bounded by the verify and store queues).
    in_flight_copies: usize,
    /// Of those, copies that came in sync responses (see [`sync_reserved_records`]).
    in_flight_sync: usize,
    verify_tx: Option<Lanes<VerifyJob>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Starts the worker threads. Decisions made off the loop arrive on the returned receiver.
    pub(crate) fn start(
        cfg: PipelineConfig,
        store: Store,
        guard: Guard,
        metrics: NetMetrics,
        live_threads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> std::io::Result<(Pipeline, mpsc::Receiver<Finished>)> {
        let cfg = cfg.bounded();
        let (finished_tx, finished_rx) = mpsc::channel(cfg.verify_queue_records.max(64));
        let (verify_tx, verify_rx) = lanes::lanes::<VerifyJob>(cfg.verify_queue_records);
        // The store thread's queue is short: verified records should reach disk quickly, and
        // when the store lags the workers block here, which backs the verify queue up, which
        // sheds load at the front.
        let (store_tx, store_rx) = lanes::lanes::<StoreJob>(cfg.flush_max_records.max(64) * 4);
        let workers = if cfg.verify_workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        } else {
            cfg.verify_workers
        };
        let mut threads = Vec::new();
        let pre_verify = PreVerify::new(&cfg, store.clone(), guard.clone(), metrics.clone());
        for i in 0..workers {
            let rx = verify_rx.clone();
            let pre_verify = pre_verify.clone();
            let store_tx = store_tx.clone();
            let finished_tx = finished_tx.clone();
            let metrics = metrics.clone();
            let batch_max = cfg.verify_batch_max_records;
            let deadline = cfg.verify_batch_deadline;
            let alive = LiveThread::enter(&live_threads);
            threads.push(std::thread::Builder::new().name(format!("palisade-verify-{i}")).spawn(
                move || {
                    let _alive = alive;
                    let out = workers::WorkerOut { store_tx, finished_tx };
                    workers::verify_worker(rx, pre_verify, out, metrics, batch_max, deadline)
                },
            )?);
        }
        drop(store_tx);
        let worker = StoreWorker {
            rx: store_rx,
            finished_tx,
            store: store.clone(),
            metrics: metrics.clone(),
            flush_interval: cfg.flush_interval,
            flush_max: cfg.flush_max_records,
            group_commit: cfg.group_commit,
        };
        let alive = LiveThread::enter(&live_threads);
        threads.push(std::thread::Builder::new().name("palisade-store".into()).spawn(move || {
            let _alive = alive;
            worker.run()
        })?);
        let seen = SeenCache::new(cfg.seen_cache_records);
        Ok((
            Pipeline {
                cfg,
                store,
                guard,
                metrics,
                seen,
                in_flight: HashMap::new(),
                in_flight_copies: 0,
                in_flight_sync: 0,
                verify_tx: Some(verify_tx),
                threads,
            },
            finished_rx,
        ))
    }

    /// Marks an id as stored (local publish) so copies coming back are dropped cheaply.
    pub(crate) fn mark_seen(&mut self, id: RecordId) {
        self.seen.insert(id);
    }

    /// Records queued for verification or storage and not yet decided.
    pub(crate) fn in_flight_len(&self) -> usize {
        self.in_flight_copies
    }

    /// Sync records queued for verification or storage and not yet decided.
    pub(crate) fn in_flight_sync_len(&self) -> usize {
        self.in_flight_sync
    }

    /// Runs the synchronous front checks on a gossip (`topic` set) or sync record.
    /// `Some(reason)` = decided now; `None` = queued for verification (the decision arrives
    /// later as [`Finished`]).
    pub(crate) fn admit(
        &mut self,
        bytes: Vec<u8>,
        origin: Origin,
        topic: Option<TopicKind>,
        now_ms: u64,
    ) -> Option<Reason> {
        // 1. Size cap: no work at all for oversized input (counted with the guard's drops too,
        // so `palisade_guard_drops_total{reason="oversized"}` sees every oversized message).
        if bytes.len() > palisade_types::limits::MAX_ENVELOPE_BYTES {
            self.guard.record_drop(origin.peer().as_ref(), None, DropReason::Oversized);
            return Some(Reason::Oversized);
        }
        // 1b. No disk room for new records (issue 16): drop before any other work.
        if self.store.disk_low() {
            return Some(Reason::DiskLow);
        }
        // 2. Per-peer message and byte rate, before any decoding. Not for sync: a sync
        // record came in a response we asked for, paced by our own requests.
        if let Some(peer) = origin.pushed_by() {
            if let Admission::Deny(reason) = self.guard.admit_message(&peer, bytes.len()) {
                self.guard.over_rate(&peer, reason);
                return Some(Reason::RateLimited);
            }
        }
        // 3. Envelope decode + id (one pass and one hash).
        let parsed = match ParsedEnvelope::parse(bytes) {
            Ok(p) => p,
            Err(e) => return Some(decode_reason(&e)),
        };
        // An import line that names an id must carry that record.
        if let Origin::Import { expected_id: Some(expected), .. } = &origin {
            if *expected != parsed.id() {
                return Some(Reason::MalformedEnvelope);
            }
        }
        // 4. Dedup in memory before the payload is even decoded.
        if let Err(reason) = self.check_copy(&parsed.id(), &parsed.envelope().signature, &origin) {
            return Some(reason);
        }
        // 5. Payload decode (canonical).
        let Ok(record) = parsed.decode() else { return Some(Reason::MalformedPayload) };
        // 6.–9. The record checks every origin shares, then the queue.
        match self.check_record(record, topic, now_ms) {
            Ok(validated) => self.enqueue(validated, origin).err(),
            Err(reason) => Some(reason),
        }
    }

    /// Admits a sync record its caller already decoded (to check it is the one it asked
    /// for): the same checks as [`admit`](Self::admit) from the dedup on, without a second
    /// parse.
    pub(crate) fn admit_decoded(
        &mut self,
        record: UnverifiedRecord,
        origin: Origin,
        now_ms: u64,
    ) -> Option<Reason> {
        let checked = self
            .check_copy(&record.id(), record.signature(), &origin)
            .and_then(|()| self.check_record(record, None, now_ms));
        match checked {
            Ok(validated) => self.enqueue(validated, origin).err(),
            Err(reason) => Some(reason),
        }
    }

    /// Admits an equivocation proof message: the size cap, the peer's message rate and proof
    /// budget (`limits.peer_proofs_per_sec`), the pairing check (both halves parse, same
    /// author and seq, different ids), then both halves through the same record checks and
    /// queue as gossip. Stored halves count as present; both stored = `Duplicate`.
    pub(crate) fn admit_proof(&mut self, data: &[u8], origin: &Origin, now_ms: u64) -> ProofAdmission {
        let Some(peer) = origin.pushed_by() else {
            return ProofAdmission::Decided(Reason::Invalid);
        };
        if data.len() > crate::proof::MAX_PROOF_BYTES {
            self.guard.record_drop(Some(&peer), None, DropReason::Oversized);
            return ProofAdmission::Decided(Reason::Oversized);
        }
        if let Admission::Deny(drop) = self.guard.admit_message(&peer, data.len()) {
            self.guard.over_rate(&peer, drop);
            return ProofAdmission::Decided(Reason::RateLimited);
        }
        // Honest relays forward every proof they store: under a Sybil proof flood up to half
        // the new-author budget per second, which the node config keeps below the proof
        // budget. So only a peer that pushes proofs of its own stays over it, and like any
        // other rate, staying over for longer than the grace is a `persistent_over_rate`.
        if let Admission::Deny(drop) = self.guard.admit_proof(&peer) {
            self.guard.over_rate(&peer, drop);
            return ProofAdmission::Decided(Reason::ProofRateLimited);
        }
        match crate::proof::decode_and_check(data) {
            Ok(halves) => self.admit_halves(halves, origin, now_ms),
            Err(reason) => ProofAdmission::Decided(reason),
        }
    }

    fn admit_halves(
        &mut self,
        halves: [UnverifiedRecord; 2],
        origin: &Origin,
        now_ms: u64,
    ) -> ProofAdmission {
        let mut ready = Vec::with_capacity(2);
        for half in halves {
            // Only a stored half counts as present. An identical copy still in flight may yet
            // fail its signature check, and forwarding a proof with a bad half would get us
            // penalised by every peer: verify this half again rather than wait for it.
            let id = half.id();
            if self.seen.contains(&id) {
                continue;
            }
            if self.in_flight.get(&id).is_some_and(|sigs| sigs.len() >= MAX_COPIES_IN_FLIGHT_PER_RECORD) {
                return ProofAdmission::Decided(Reason::CopiesInFlight);
            }
            match self.check_record(half, None, now_ms) {
                Ok(validated) => ready.push(validated),
                Err(Reason::Duplicate) => {}
                Err(reason) => return ProofAdmission::Decided(reason),
            }
        }
        if ready.is_empty() {
            return ProofAdmission::Decided(Reason::Duplicate);
        }
        // Both halves or neither: half a proof in the queue proves nothing.
        if self.gossip_room() < ready.len() {
            self.guard.record_drop(origin.peer().as_ref(), None, DropReason::VerifyQueueFull);
            return ProofAdmission::Decided(Reason::VerifyQueueFull);
        }
        let mut queued = 0;
        for half in ready {
            match self.enqueue(half, origin.clone()) {
                Ok(()) => queued += 1,
                // Only when the workers are gone (shutdown): the proof is then never reported.
                Err(reason) if queued == 0 => return ProofAdmission::Decided(reason),
                Err(_) => break,
            }
        }
        ProofAdmission::Queued(queued)
    }

    /// Whether this very copy (id and signature) is already decided or queued, and whether
    /// there is room for another copy of the id.
    ///
    /// The seen cache may still hold an id the store has since evicted (it is a cache of what
    /// was stored); for a record from a peer that makes no difference (both answers are
    /// Ignore), but the admin API's records ask the store, so an import reports `evicted`,
    /// not `duplicate`, for a record the node no longer holds.
    fn check_copy(&self, id: &RecordId, signature: &Signature, origin: &Origin) -> Result<(), Reason> {
        let copies = self.in_flight.get(id);
        let seen = origin.api_ticket().is_none() && self.seen.contains(id);
        if seen || copies.is_some_and(|sigs| sigs.contains(signature)) {
            self.metrics.duplicates_before_verify.inc();
            return Err(Reason::Duplicate);
        }
        if copies.is_some_and(|sigs| sigs.len() >= MAX_COPIES_IN_FLIGHT_PER_RECORD) {
            return Err(Reason::CopiesInFlight);
        }
        Ok(())
    }

    /// The checks of a decoded record that need no I/O, whatever its origin: disk room, static
    /// rules, gossip topic and age (`topic` set). What needs the store (stored already, known
    /// author) and the budgets that depend on it run on the verify workers ([`PreVerify`]):
    /// nothing here touches the disk.
    fn check_record(
        &mut self,
        record: UnverifiedRecord,
        topic: Option<TopicKind>,
        now_ms: u64,
    ) -> Result<ValidatedRecord, Reason> {
        // Every origin (gossip checks it earlier too, before the decode): no disk room, no
        // new records.
        if self.store.disk_low() {
            return Err(Reason::DiskLow);
        }
        let record = record.validate(now_ms).map_err(|e| validation_reason(&e))?;
        if let Some(t) = topic {
            if TopicKind::for_record(record.record().kind()) != t {
                return Err(Reason::WrongTopic);
            }
            let issued = record.record().position.issued_at_ms;
            if issued.saturating_add(self.cfg.max_record_age_ms) < now_ms {
                return Err(Reason::TooOld);
            }
        }
        Ok(record)
    }

    /// Room left in the verify queue for records peers pushed (gossip, proofs) and imports:
    /// everything but the share kept for sync.
    fn gossip_room(&self) -> usize {
        let room = self.cfg.verify_queue_records - sync_reserved_records(self.cfg.verify_queue_records);
        room.saturating_sub(self.in_flight_copies.saturating_sub(self.in_flight_sync))
    }

    /// Hands a checked record to the verify workers, or sheds it. Pushed records and imports
    /// never take the share of the queue kept for the pages sync asked for.
    fn enqueue(&mut self, record: ValidatedRecord, origin: Origin) -> Result<(), Reason> {
        let peer = origin.peer();
        let sync = origin.is_sync();
        // A record this node signed takes the priority lane (see `lanes`).
        let local = matches!(origin, Origin::Local { .. });
        if !origin.may_use_reserved_share() && self.gossip_room() == 0 {
            self.guard.record_drop(peer.as_ref(), None, DropReason::VerifyQueueFull);
            return Err(Reason::VerifyQueueFull);
        }
        let Some(tx) = &self.verify_tx else { return Err(Reason::VerifyQueueFull) };
        let (id, signature) = (record.id(), *record.signature());
        match tx.try_send(VerifyJob { record, origin }, local) {
            Ok(()) => {
                self.in_flight.entry(id).or_default().push(signature);
                self.in_flight_copies += 1;
                self.in_flight_sync += usize::from(sync);
                self.metrics.queue_add(1);
                Ok(())
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.guard.record_drop(peer.as_ref(), None, DropReason::VerifyQueueFull);
                Err(Reason::VerifyQueueFull)
            }
        }
    }

    /// Updates dedup state with a decision that came back from the workers.
    pub(crate) fn on_finished(&mut self, f: &Finished) {
        if let Some(sigs) = self.in_flight.get_mut(&f.id) {
            if let Some(at) = sigs.iter().position(|s| *s == f.signature) {
                sigs.swap_remove(at);
                self.in_flight_copies = self.in_flight_copies.saturating_sub(1);
                if f.origin.is_sync() {
                    self.in_flight_sync = self.in_flight_sync.saturating_sub(1);
                }
                self.metrics.queue_add(-1);
            }
            if sigs.is_empty() {
                self.in_flight.remove(&f.id);
            }
        }
        // A copy with a bad signature must not block a valid copy of the same id (the id
        // does not cover the signature): only stored ids are remembered.
        if matches!(f.reason, Reason::Stored | Reason::Duplicate) {
            self.seen.insert(f.id);
        }
    }

    /// Stops the workers after they drain their queues (the store is flushed last).
    pub(crate) fn shutdown(mut self) {
        self.verify_tx = None;
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                error!("a pipeline thread panicked");
            }
        }
    }
}
