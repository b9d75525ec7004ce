//! The ingest pipeline, cheapest checks first.
//!
//! ```text
//! event loop (front, cheap, synchronous):
//!   size cap ─► per-peer rate + bytes (guard) ─► envelope decode + id ─► dedup (seen cache,
//!   in-flight set) ─► payload decode ─► dedup (store, skipped when the cached feed head
//!   shows the seq is new) ─► static validation ─► topic/age rules
//!   ─► per-author quota (guard) ─► verification cost charge (guard) ─► verify queue (try_send)
//! verify workers (N threads): batch up to `verify_batch_max_records` or the deadline,
//!   `verify_batch_with_keys` with a per-worker key cache, fallback to singles
//! store thread: insert (feed check, equivocation) with group commit (flush every N records
//!   or T ms) ─► Finished back to the event loop ─► Accept/Reject/Ignore to gossipsub
//! ```
//!
//! A full verify queue sheds load (Ignore, counted, ledgered) and never blocks the event
//! loop. Every outcome carries a named reason, which is both the metric label and the
//! ledger reason.

use std::collections::{HashMap, HashSet, VecDeque};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use libp2p::gossipsub::MessageId;
use libp2p::PeerId;
use palisade_guard::{Admission, Guard, PenaltyReason};
use palisade_store::{InsertOutcome, Source, Store, StoredMeta};
use palisade_types::ed25519_dalek::VerifyingKey;
use palisade_types::{
    verify_batch_with_keys, verifying_key, AuthorKey, DecodeError, ParsedEnvelope, RecordId,
    UnverifiedRecord, ValidationError, VerifiedRecord, VerifyError,
};
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use crate::metrics::{IngestStats, NetMetrics};

/// An envelope's signature bytes.
type Signature = [u8; palisade_types::limits::SIGNATURE_BYTES];

/// Copies of one record id (each with other signature bytes) that may be queued or in
/// verification at once; more are ignored (`copies_in_flight`). Honest copies are
/// byte-identical, so a second copy is already suspect: the cap keeps a variant flood from
/// turning the in-flight lookup quadratic, while one or two corrupted copies still cannot
/// shadow the valid one.
pub const MAX_COPIES_IN_FLIGHT_PER_RECORD: usize = 4;
use crate::topics::TopicKind;

/// Every reason label, for metric sums.
pub(crate) const ALL_REASONS: &[&str] = &[
    "stored",
    "oversized",
    "malformed_envelope",
    "unknown_payload_type",
    "malformed_payload",
    "invalid",
    "future_timestamp",
    "wrong_topic",
    "bad_signature",
    "bad_author_key",
    "duplicate",
    "copies_in_flight",
    "rate_limited",
    "author_quota",
    "new_author_budget",
    "too_old",
    "verify_queue_full",
    "store_error",
];

/// The share of the verify queue kept for records that sync asked for: gossip may fill the
/// rest, never this, so pages pulled to catch up after a partition or a crash are not shed
/// because a flood (or a burst of honest gossip) got to the queue first. The sync client asks
/// for at most this many records at once.
pub(crate) fn sync_reserved_records(verify_queue_records: usize) -> usize {
    (verify_queue_records / 2).max(1)
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Valid and stored: forward it.
    Accept,
    /// Invalid: drop and penalise the sender.
    Reject(&'static str),
    /// Valid but unwanted (duplicate, too old, over quota, load shed): drop, no gossip penalty.
    Ignore(&'static str),
}

impl Outcome {
    /// `accept`, `reject` or `ignore`.
    pub fn acceptance_str(&self) -> &'static str {
        match self {
            Outcome::Accept => "accept",
            Outcome::Reject(_) => "reject",
            Outcome::Ignore(_) => "ignore",
        }
    }

    /// The named reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Accept => "stored",
            Outcome::Reject(r) | Outcome::Ignore(r) => r,
        }
    }

    /// The guard penalty a rejection earns.
    pub(crate) fn penalty(&self) -> Option<PenaltyReason> {
        match self {
            Outcome::Reject("bad_signature" | "bad_author_key") => Some(PenaltyReason::InvalidSignature),
            Outcome::Reject("oversized") => Some(PenaltyReason::Oversized),
            Outcome::Reject(_) => Some(PenaltyReason::Malformed),
            _ => None,
        }
    }
}

fn decode_reject(e: &DecodeError) -> Outcome {
    match e {
        DecodeError::TooLarge { .. } => Outcome::Reject("oversized"),
        DecodeError::UnknownPayloadType(_) => Outcome::Reject("unknown_payload_type"),
        _ => Outcome::Reject("malformed_envelope"),
    }
}

fn validation_reject(e: &ValidationError) -> Outcome {
    match e {
        ValidationError::InFuture { .. } => Outcome::Reject("future_timestamp"),
        _ => Outcome::Reject("invalid"),
    }
}

/// Where a message came from; decides how its outcome is reported.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// A gossipsub message awaiting our validation result.
    Gossip { message_id: MessageId, source: PeerId },
    /// A record in a sync response.
    Sync { peer: PeerId },
}

impl Origin {
    pub(crate) fn peer(&self) -> PeerId {
        match self {
            Origin::Gossip { source, .. } => *source,
            Origin::Sync { peer } => *peer,
        }
    }

    pub(crate) fn source_label(&self) -> &'static str {
        match self {
            Origin::Gossip { .. } => "gossip",
            Origin::Sync { .. } => "sync",
        }
    }

    /// The guard penalty `outcome` earns the sender (malformed sync data counts as sync abuse).
    pub(crate) fn penalty(&self, outcome: &Outcome) -> Option<PenaltyReason> {
        let reason = outcome.penalty()?;
        Some(match self {
            Origin::Sync { .. } if reason == PenaltyReason::Malformed => PenaltyReason::SyncAbuse,
            _ => reason,
        })
    }

    fn store_source(&self) -> Source {
        match self {
            Origin::Gossip { .. } => Source::Gossip,
            Origin::Sync { .. } => Source::Sync,
        }
    }
}

/// Facts about a record the store just accepted.
#[derive(Debug, Clone)]
pub(crate) struct StoredInfo {
    pub(crate) record: VerifiedRecord,
    pub(crate) equivocation: Option<palisade_store::EquivocationProof>,
}

/// A decision made off the event loop.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) id: RecordId,
    /// The signature of the copy decided (copies of one id are told apart by it).
    pub(crate) signature: Signature,
    pub(crate) origin: Origin,
    pub(crate) outcome: Outcome,
    pub(crate) stored: Option<StoredInfo>,
}

struct VerifyJob {
    record: UnverifiedRecord,
    origin: Origin,
}

struct StoreJob {
    record: VerifiedRecord,
    signature: Signature,
    origin: Origin,
}

/// Settings of the pipeline. The network builds them from its [`NetConfig`](crate::NetConfig)
/// ([`PipelineConfig::from_net`]); an [`Ingestor`] takes them directly.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Gossiped records issued longer ago than this are ignored (`too_old`).
    pub max_record_age_ms: u64,
    /// Capacity of the verify queue; beyond it records are shed (`verify_queue_full`).
    pub verify_queue_records: usize,
    /// Largest signature batch.
    pub verify_batch_max_records: usize,
    /// How long a partial batch may wait for more records.
    pub verify_batch_deadline: Duration,
    /// Verify worker threads; 0 = one per core.
    pub verify_workers: usize,
    /// Ids remembered in the seen cache.
    pub seen_cache_records: usize,
    /// Node-wide budget of gossiped records from authors with no stored records (per second).
    pub new_authors_per_sec: u32,
    /// Burst of that budget.
    pub new_authors_burst: u32,
    /// Group commit: flush at least this often while writes are pending.
    pub flush_interval: Duration,
    /// Group commit: flush after this many pending writes; also the largest write group.
    pub flush_max_records: usize,
    /// Whether the store thread flushes at all. Always `true` in a node; benchmarks set it to
    /// `false` to measure what group commit costs (writes are then flushed only at shutdown).
    pub group_commit: bool,
}

impl PipelineConfig {
    /// The same settings with every size clamped to the ranges `NetConfig::validate` allows,
    /// so a hand-made config cannot ask for an unbounded queue or group.
    fn bounded(mut self) -> PipelineConfig {
        self.verify_queue_records = self.verify_queue_records.clamp(64, 1_000_000);
        self.verify_batch_max_records = self.verify_batch_max_records.clamp(1, 1024);
        self.verify_workers = self.verify_workers.min(256);
        self.seen_cache_records = self.seen_cache_records.clamp(1024, 10_000_000);
        self.flush_max_records = self.flush_max_records.clamp(1, 100_000);
        self
    }

    /// The pipeline settings of a network configuration.
    pub fn from_net(cfg: &crate::NetConfig) -> PipelineConfig {
        PipelineConfig {
            max_record_age_ms: cfg.gossip_max_record_age_secs.saturating_mul(1000),
            verify_queue_records: cfg.verify_queue_records,
            verify_batch_max_records: cfg.verify_batch_max_records,
            verify_batch_deadline: Duration::from_millis(cfg.verify_batch_deadline_ms),
            verify_workers: cfg.verify_workers,
            seen_cache_records: cfg.seen_cache_records,
            new_authors_per_sec: cfg.new_authors_per_sec,
            new_authors_burst: cfg.new_authors_burst,
            flush_interval: Duration::from_millis(cfg.flush_interval_ms),
            flush_max_records: cfg.flush_max_records,
            group_commit: true,
        }
    }
}

/// A bounded FIFO set of ids known to be stored.
struct SeenCache {
    set: HashSet<RecordId>,
    order: VecDeque<RecordId>,
    capacity: usize,
}

impl SeenCache {
    fn new(capacity: usize) -> SeenCache {
        SeenCache { set: HashSet::with_capacity(capacity.min(1 << 16)), order: VecDeque::new(), capacity }
    }

    fn contains(&self, id: &RecordId) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: RecordId) {
        if self.set.insert(id) {
            self.order.push_back(id);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
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
    /// Authors known to have stored records (bounded; cleared when full, then refilled from
    /// the store's feed heads).
    known_authors: HashSet<AuthorKey>,
    new_authors: governor::DefaultDirectRateLimiter,
    verify_tx: Option<Sender<VerifyJob>>,
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
        let (verify_tx, verify_rx) = crossbeam_channel::bounded::<VerifyJob>(cfg.verify_queue_records);
        // The store thread's queue is short: verified records should reach disk quickly, and
        // when the store lags the workers block here, which backs the verify queue up, which
        // sheds load at the front.
        let (store_tx, store_rx) = crossbeam_channel::bounded::<StoreJob>(cfg.flush_max_records.max(64) * 4);
        let workers = if cfg.verify_workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        } else {
            cfg.verify_workers
        };
        let mut threads = Vec::new();
        for i in 0..workers {
            let rx = verify_rx.clone();
            let store_tx = store_tx.clone();
            let finished_tx = finished_tx.clone();
            let metrics = metrics.clone();
            let batch_max = cfg.verify_batch_max_records;
            let deadline = cfg.verify_batch_deadline;
            let alive = LiveThread::enter(&live_threads);
            threads.push(std::thread::Builder::new().name(format!("palisade-verify-{i}")).spawn(
                move || {
                    let _alive = alive;
                    verify_worker(rx, store_tx, finished_tx, metrics, batch_max, deadline)
                },
            )?);
        }
        drop(store_tx);
        {
            let store = store.clone();
            let metrics = metrics.clone();
            let interval = cfg.flush_interval;
            let max = cfg.flush_max_records;
            let group_commit = cfg.group_commit;
            let alive = LiveThread::enter(&live_threads);
            threads.push(std::thread::Builder::new().name("palisade-store".into()).spawn(move || {
                let _alive = alive;
                store_worker(store_rx, finished_tx, store, metrics, interval, max, group_commit)
            })?);
        }
        let seen = SeenCache::new(cfg.seen_cache_records);
        let quota = governor::Quota::per_second(
            std::num::NonZeroU32::new(cfg.new_authors_per_sec).unwrap_or(std::num::NonZeroU32::MIN),
        )
        .allow_burst(std::num::NonZeroU32::new(cfg.new_authors_burst).unwrap_or(std::num::NonZeroU32::MIN));
        let new_authors = governor::RateLimiter::direct(quota);
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
                known_authors: HashSet::new(),
                new_authors,
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

    /// Whether an id is known to be stored or in the pipeline (cheap, no I/O).
    pub(crate) fn is_known(&self, id: &RecordId) -> bool {
        self.seen.contains(id) || self.in_flight.contains_key(id)
    }

    /// Whether this very copy (id and signature) is already decided or queued.
    fn is_known_copy(&self, id: &RecordId, signature: &Signature) -> bool {
        self.seen.contains(id) || self.in_flight.get(id).is_some_and(|sigs| sigs.contains(signature))
    }

    /// Runs the synchronous front checks. `Some(outcome)` = decided now; `None` = queued for
    /// verification (the decision arrives later as [`Finished`]).
    pub(crate) fn admit(
        &mut self,
        bytes: Vec<u8>,
        origin: Origin,
        topic: Option<TopicKind>,
        now_ms: u64,
    ) -> Option<Outcome> {
        let peer = origin.peer();
        // 1. Size cap: no work at all for oversized input.
        if bytes.len() > palisade_types::limits::MAX_ENVELOPE_BYTES {
            return Some(Outcome::Reject("oversized"));
        }
        // 2. Per-peer message and byte rate, before any decoding. Gossip only: a sync record
        // came in a response we asked for, paced by our own requests (at most 4 in flight
        // per peer, bounded pages).
        let gossip = topic.is_some();
        if gossip {
            if let Admission::Deny(reason) = self.guard.admit_message(&peer, bytes.len()) {
                self.guard.over_rate(&peer, reason);
                return Some(Outcome::Ignore("rate_limited"));
            }
        }
        // 3. Envelope decode + id (one pass and one hash).
        let parsed = match ParsedEnvelope::parse(bytes) {
            Ok(p) => p,
            Err(e) => return Some(decode_reject(&e)),
        };
        let id = parsed.id();
        let signature = parsed.envelope().signature;
        // 4. Dedup before any signature work: memory first (seen cache, in flight) ...
        if self.is_known_copy(&id, &signature) {
            self.metrics.duplicates_before_verify.inc();
            return Some(Outcome::Ignore("duplicate"));
        }
        if self.in_flight.get(&id).is_some_and(|sigs| sigs.len() >= MAX_COPIES_IN_FLIGHT_PER_RECORD) {
            return Some(Outcome::Ignore("copies_in_flight"));
        }
        // 5. Payload decode (canonical).
        let record = match parsed.decode() {
            Ok(r) => r,
            Err(_) => return Some(Outcome::Reject("malformed_payload")),
        };
        // ... then the store, which needs no I/O when the author's feed head is in memory and
        // shows the seq as new (a stored id always decodes, so the order does not change any
        // outcome, only what a new record costs).
        let position = &record.record().position;
        match self.store.contains_record(&id, &position.author, position.seq) {
            Ok(true) => {
                self.seen.insert(id);
                self.metrics.duplicates_before_verify.inc();
                return Some(Outcome::Ignore("duplicate"));
            }
            Ok(false) => {}
            Err(e) => {
                error!(error = %e, "store lookup failed during ingest");
                return Some(Outcome::Ignore("store_error"));
            }
        }
        // 6. Static rules.
        if let Err(e) = record.validate(now_ms) {
            return Some(validation_reject(&e));
        }
        let kind = record.record().kind();
        if let Some(t) = topic {
            if TopicKind::for_record(kind) != t {
                return Some(Outcome::Reject("wrong_topic"));
            }
            let issued = record.record().position.issued_at_ms;
            if issued.saturating_add(self.cfg.max_record_age_ms) < now_ms {
                return Some(Outcome::Ignore("too_old"));
            }
        }
        // 7. Per-author quota (Sybil authors), then the cost of a signature check. Sync
        // records of authors we already hold are exempt: they are the missed part of feeds
        // we know, and throttling them would only stall catching up (the pages come back in
        // the next round). Sync records of unknown authors pay like gossip, so a peer that
        // advertises invented authors cannot make us verify at will.
        let author = record.record().position.author;
        let known_author = self.is_known_author(&author);
        if gossip && !known_author && self.new_authors.check().is_err() {
            self.guard.record_drop(Some(&peer), None, palisade_guard::DropReason::NewAuthorBudget);
            return Some(Outcome::Ignore("new_author_budget"));
        }
        if gossip || !known_author {
            // A rate refusal is shed without a penalty: honest relays burst over their per-peer
            // budget after pauses and partitions, and the limit itself holds a flooder to its
            // budget. Only a gossiping peer that stays over for longer than the grace pays
            // (`Guard::over_rate`): sync pages are what we asked for.
            match self.guard.admit_author(&peer, &author) {
                Admission::Allow => {}
                // The peer's own record rate, not the author's quota.
                Admission::Deny(reason @ palisade_guard::DropReason::PeerRecordRateExceeded) => {
                    if gossip {
                        self.guard.over_rate(&peer, reason);
                    }
                    return Some(Outcome::Ignore("rate_limited"));
                }
                Admission::Deny(_) => return Some(Outcome::Ignore("author_quota")),
            }
            if let Admission::Deny(reason) = self.guard.charge_verification(&peer) {
                if gossip {
                    self.guard.over_rate(&peer, reason);
                }
                return Some(Outcome::Ignore("rate_limited"));
            }
        }
        // 8. Hand over to the verify workers, or shed load. Gossip never takes the share of
        // the queue kept for the pages sync asked for.
        let gossip_room =
            self.cfg.verify_queue_records - sync_reserved_records(self.cfg.verify_queue_records);
        if gossip && self.in_flight_copies - self.in_flight_sync >= gossip_room {
            self.guard.record_drop(Some(&peer), None, palisade_guard::DropReason::VerifyQueueFull);
            return Some(Outcome::Ignore("verify_queue_full"));
        }
        let Some(tx) = &self.verify_tx else { return Some(Outcome::Ignore("verify_queue_full")) };
        match tx.try_send(VerifyJob { record, origin }) {
            Ok(()) => {
                self.in_flight.entry(id).or_default().push(signature);
                self.in_flight_copies += 1;
                self.in_flight_sync += usize::from(!gossip);
                self.metrics.queue_add(1);
                None
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.guard.record_drop(Some(&peer), None, palisade_guard::DropReason::VerifyQueueFull);
                Some(Outcome::Ignore("verify_queue_full"))
            }
        }
    }

    /// Whether `author` has records here (memory first, then one store lookup).
    fn is_known_author(&mut self, author: &AuthorKey) -> bool {
        if self.known_authors.contains(author) {
            return true;
        }
        let known = matches!(self.store.feed_head(author), Ok(Some(_)));
        if known {
            self.remember_author(*author);
        }
        known
    }

    fn remember_author(&mut self, author: AuthorKey) {
        if self.known_authors.len() >= KNOWN_AUTHORS_ENTRIES {
            self.known_authors.clear();
        }
        self.known_authors.insert(author);
    }

    /// Updates dedup state with a decision that came back from the workers.
    pub(crate) fn on_finished(&mut self, f: &Finished) {
        if let Some(s) = &f.stored {
            self.remember_author(s.record.author());
        }
        if let Some(sigs) = self.in_flight.get_mut(&f.id) {
            if let Some(at) = sigs.iter().position(|s| *s == f.signature) {
                sigs.swap_remove(at);
                self.in_flight_copies = self.in_flight_copies.saturating_sub(1);
                if matches!(f.origin, Origin::Sync { .. }) {
                    self.in_flight_sync = self.in_flight_sync.saturating_sub(1);
                }
                self.metrics.queue_add(-1);
            }
            if sigs.is_empty() {
                self.in_flight.remove(&f.id);
            }
        }
        match f.outcome {
            Outcome::Accept | Outcome::Ignore("duplicate") => self.seen.insert(f.id),
            // A copy with a bad signature must not block a valid copy of the same id (the id
            // does not cover the signature): forget it.
            _ => {}
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

/// A decision about one admitted record, as an [`Ingestor`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The record id.
    pub id: RecordId,
    /// The peer the record was admitted from.
    pub peer: PeerId,
    /// What happened to it.
    pub outcome: Outcome,
}

/// The ingest pipeline without a swarm: the very `Pipeline` the event loop runs (same
/// front checks, verify workers, store thread and group commit), driven by the caller.
/// For benchmarks (`palisade-chaos bench`), fuzzing and tools that feed records in-process.
///
/// The thread that calls [`admit`](Ingestor::admit) plays the event loop: front checks run on
/// it, signature batches on the worker threads, writes on the store thread. Decisions made
/// off that thread come back through [`try_next`](Ingestor::try_next) /
/// [`next_blocking`](Ingestor::next_blocking); collect them, because the workers stop when
/// that queue is full (as they would wait for a busy event loop). Rejections penalise the
/// sending peer in the guard exactly as on the network, so a flooding peer ends up banned
/// (its messages are then refused by `Guard::admit_message`); nothing is gossiped.
///
/// ```no_run
/// # fn demo(store: palisade_store::Store, guard: palisade_guard::Guard, bytes: Vec<u8>) {
/// use palisade_net::{Ingestor, NetConfig, PipelineConfig};
/// let mut registry = prometheus_client::registry::Registry::default();
/// let cfg = PipelineConfig::from_net(&NetConfig::default());
/// let mut ingest = Ingestor::start(cfg, store, guard, &mut registry).unwrap();
/// let peer = libp2p::PeerId::random();
/// let topic = Some(palisade_net::topics::TopicKind::Attestations);
/// match ingest.admit(bytes, peer, topic, palisade_net::now_ms()) {
///     Some(outcome) => println!("decided at once: {outcome:?}"),
///     None => println!("queued: {:?}", ingest.next_blocking()),
/// }
/// ingest.shutdown();
/// # }
/// ```
pub struct Ingestor {
    pipeline: Option<Pipeline>,
    finished: mpsc::Receiver<Finished>,
    metrics: NetMetrics,
    guard: Guard,
}

impl std::fmt::Debug for Ingestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingestor").field("in_flight", &self.in_flight()).finish()
    }
}

impl Ingestor {
    /// Starts the worker threads; metrics are registered under `registry`.
    pub fn start(
        cfg: PipelineConfig,
        store: Store,
        guard: Guard,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Ingestor, crate::NetError> {
        let metrics = NetMetrics::new(registry);
        let live = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (pipeline, finished) = Pipeline::start(cfg, store, guard.clone(), metrics.clone(), live)
            .map_err(|e| crate::NetError::Setup(format!("starting pipeline threads: {e}")))?;
        Ok(Ingestor { pipeline: Some(pipeline), finished, metrics, guard })
    }

    /// Runs the front checks on `bytes` from `peer`. `topic` set = the record arrived by
    /// gossip on that topic (gossip-only rules apply); `None` = it arrived in a sync response.
    /// `Some(outcome)` = decided now; `None` = queued, its [`Decision`] comes later.
    pub fn admit(
        &mut self,
        bytes: Vec<u8>,
        peer: PeerId,
        topic: Option<TopicKind>,
        now_ms: u64,
    ) -> Option<Outcome> {
        let Some(pipeline) = self.pipeline.as_mut() else {
            return Some(Outcome::Ignore("verify_queue_full"));
        };
        let origin = match topic {
            Some(_) => Origin::Gossip { message_id: MessageId::new(&[]), source: peer },
            None => Origin::Sync { peer },
        };
        let outcome = pipeline.admit(bytes, origin.clone(), topic, now_ms);
        if let Some(o) = &outcome {
            self.report(&origin, o);
        }
        outcome
    }

    /// Counts a decision and penalises the sender, as the event loop does.
    fn report(&self, origin: &Origin, outcome: &Outcome) {
        self.metrics.count(origin.source_label(), outcome);
        if let Some(reason) = origin.penalty(outcome) {
            let _ = self.guard.penalize(&origin.peer(), None, reason);
        }
    }

    /// Records queued and not yet decided.
    pub fn in_flight(&self) -> usize {
        self.pipeline.as_ref().map(|p| p.in_flight_len()).unwrap_or(0)
    }

    /// The next decision, if one is ready.
    pub fn try_next(&mut self) -> Option<Decision> {
        let f = self.finished.try_recv().ok()?;
        Some(self.decided(f))
    }

    /// Waits for the next decision; `None` at once when nothing is in flight. Blocks the
    /// thread: call it from a plain thread, not from async code (use [`next`](Self::next)).
    pub fn next_blocking(&mut self) -> Option<Decision> {
        if self.in_flight() == 0 {
            return self.try_next();
        }
        let f = self.finished.blocking_recv()?;
        Some(self.decided(f))
    }

    /// Waits for the next decision; `None` at once when nothing is in flight.
    pub async fn next(&mut self) -> Option<Decision> {
        if self.in_flight() == 0 {
            return self.try_next();
        }
        let f = self.finished.recv().await?;
        Some(self.decided(f))
    }

    fn decided(&mut self, f: Finished) -> Decision {
        if let Some(p) = self.pipeline.as_mut() {
            p.on_finished(&f);
        }
        self.report(&f.origin, &f.outcome);
        Decision { id: f.id, peer: f.origin.peer(), outcome: f.outcome }
    }

    /// Ingest counters so far.
    pub fn stats(&self) -> IngestStats {
        self.metrics.snapshot()
    }

    /// The pipeline's metrics.
    pub fn metrics(&self) -> &NetMetrics {
        &self.metrics
    }

    /// Drains the pipeline (every queued record decided, the store flushed), stops the
    /// threads, and returns the decisions not collected yet. Blocks: call it from a plain
    /// thread (or `spawn_blocking`), not from async code.
    pub fn shutdown(mut self) -> Vec<Decision> {
        let mut out = Vec::new();
        if let Some(p) = self.pipeline.take() {
            let mut p = p;
            p.verify_tx = None;
            let threads: Vec<JoinHandle<()>> = p.threads.drain(..).collect();
            // Keep collecting while the threads finish, so none waits on a full channel.
            let joiner = std::thread::spawn(move || {
                for t in threads {
                    if t.join().is_err() {
                        error!("a pipeline thread panicked");
                    }
                }
            });
            while let Some(f) = self.finished.blocking_recv() {
                p.on_finished(&f);
                self.report(&f.origin, &f.outcome);
                out.push(Decision { id: f.id, peer: f.origin.peer(), outcome: f.outcome });
            }
            if joiner.join().is_err() {
                error!("pipeline joiner panicked");
            }
        }
        out
    }
}

/// Counts a pipeline thread as alive until it exits (for the clean-shutdown check).
struct LiveThread(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl LiveThread {
    fn enter(counter: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> LiveThread {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        LiveThread(counter.clone())
    }
}

impl Drop for LiveThread {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Most authors remembered as known in memory (the store answers beyond it).
const KNOWN_AUTHORS_ENTRIES: usize = 100_000;

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

fn verify_worker(
    rx: Receiver<VerifyJob>,
    store_tx: Sender<StoreJob>,
    finished_tx: mpsc::Sender<Finished>,
    metrics: NetMetrics,
    batch_max: usize,
    deadline: Duration,
) {
    let mut keys = KeyCache { keys: HashMap::new() };
    let mut batch: Vec<VerifyJob> = Vec::with_capacity(batch_max);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        // Take what is already queued; wait up to the deadline only to fill a batch.
        let until = Instant::now() + deadline;
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => match rx.recv_deadline(until) {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                },
            }
        }
        let started = Instant::now();
        let mut origins = Vec::with_capacity(batch.len());
        let mut items = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            let key = keys.get(&job.record.record().position.author);
            origins.push((job.origin, *job.record.signature()));
            items.push((job.record, key));
        }
        metrics.verify_batch_size.observe(items.len() as f64);
        metrics.signatures_verified.inc_by(items.len() as u64);
        let outcomes = verify_batch_with_keys(items);
        metrics.verify_batch_seconds.observe(started.elapsed().as_secs_f64());
        for (outcome, (origin, signature)) in outcomes.into_iter().zip(origins) {
            match outcome {
                Ok(record) => {
                    if store_tx.send(StoreJob { record, signature, origin }).is_err() {
                        return;
                    }
                }
                Err((id, e)) => {
                    let outcome = match e {
                        VerifyError::BadAuthorKey => Outcome::Reject("bad_author_key"),
                        _ => Outcome::Reject("bad_signature"),
                    };
                    if finished_tx
                        .blocking_send(Finished { id, signature, origin, outcome, stored: None })
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
}

fn store_worker(
    rx: Receiver<StoreJob>,
    finished_tx: mpsc::Sender<Finished>,
    store: Store,
    metrics: NetMetrics,
    flush_interval: Duration,
    flush_max: usize,
    group_commit: bool,
) {
    let mut pending = 0usize;
    let mut first_pending: Option<Instant> = None;
    let flush = |pending: &mut usize, first: &mut Option<Instant>| {
        let t = Instant::now();
        if let Err(e) = store.flush() {
            error!(error = %e, "group-commit flush failed");
        }
        metrics.store_flush_seconds.observe(t.elapsed().as_secs_f64());
        *pending = 0;
        *first = None;
    };
    let mut group: Vec<StoreJob> = Vec::with_capacity(flush_max);
    loop {
        let first = match first_pending {
            Some(t) => match rx.recv_timeout(flush_interval.saturating_sub(t.elapsed())) {
                Ok(j) => Some(j),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(j) => Some(j),
                Err(_) => break,
            },
        };
        if let Some(job) = first {
            // Write everything already queued (up to one group) in one atomic batch.
            group.push(job);
            while group.len() < flush_max {
                match rx.try_recv() {
                    Ok(j) => group.push(j),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            let now = crate::now_ms();
            let items: Vec<(&VerifiedRecord, StoredMeta)> = group
                .iter()
                .map(|j| (&j.record, StoredMeta { received_at_ms: now, source: j.origin.store_source() }))
                .collect();
            let result = store.insert_many(&items);
            drop(items);
            let per_record = started.elapsed().as_secs_f64() / group.len().max(1) as f64;
            let outcomes: Vec<Result<InsertOutcome, ()>> = match result {
                Ok(o) => o.into_iter().map(Ok).collect(),
                Err(e) => {
                    error!(error = %e, records = group.len(), "storing verified records failed");
                    group.iter().map(|_| Err(())).collect()
                }
            };
            for (job, outcome) in group.drain(..).zip(outcomes) {
                metrics.store_write_seconds.observe(per_record);
                let id = job.record.id();
                let finished = match outcome {
                    Ok(InsertOutcome::Inserted(ins)) => {
                        pending += 1;
                        if group_commit {
                            first_pending.get_or_insert(started);
                        }
                        if ins.equivocation.is_some() {
                            warn!(author = %job.record.author(), seq = job.record.record().position.seq, "equivocation detected");
                        }
                        Finished {
                            id,
                            signature: job.signature,
                            origin: job.origin,
                            outcome: Outcome::Accept,
                            stored: Some(StoredInfo { record: job.record, equivocation: ins.equivocation }),
                        }
                    }
                    Ok(InsertOutcome::Duplicate) => Finished {
                        id,
                        signature: job.signature,
                        origin: job.origin,
                        outcome: Outcome::Ignore("duplicate"),
                        stored: None,
                    },
                    Err(()) => Finished {
                        id,
                        signature: job.signature,
                        origin: job.origin,
                        outcome: Outcome::Ignore("store_error"),
                        stored: None,
                    },
                };
                if finished_tx.blocking_send(finished).is_err() {
                    debug!("event loop gone; store worker stopping");
                    if pending > 0 {
                        flush(&mut pending, &mut first_pending);
                    }
                    return;
                }
            }
        }
        let due = first_pending.is_some_and(|t| t.elapsed() >= flush_interval);
        if group_commit && (pending >= flush_max || (pending > 0 && due)) {
            flush(&mut pending, &mut first_pending);
        }
    }
    if pending > 0 {
        flush(&mut pending, &mut first_pending);
    }
}

/// Runs every check and stores one record synchronously (import and tests). Verifies the
/// signature alone. Blocking: call from a blocking context.
pub fn ingest_blocking(
    store: &Store,
    wire: Vec<u8>,
    source: Source,
    now_ms: u64,
) -> Result<(VerifiedRecord, InsertOutcome), IngestError> {
    let parsed = ParsedEnvelope::parse(wire).map_err(IngestError::Decode)?;
    let unverified = parsed.decode().map_err(IngestError::Decode)?;
    unverified.validate(now_ms).map_err(IngestError::Invalid)?;
    let verified = unverified.verify().map_err(IngestError::Signature)?;
    let outcome =
        store.insert(&verified, StoredMeta { received_at_ms: now_ms, source }).map_err(IngestError::Store)?;
    Ok((verified, outcome))
}

/// Why [`ingest_blocking`] refused a record.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Bytes are not a record.
    #[error("not a valid record encoding: {0}")]
    Decode(DecodeError),
    /// A static rule is broken.
    #[error("record is invalid: {0}")]
    Invalid(ValidationError),
    /// The signature does not verify.
    #[error("signature check failed: {0}")]
    Signature(VerifyError),
    /// Storage failed.
    #[error("storing the record failed: {0}")]
    Store(palisade_store::StoreError),
}
