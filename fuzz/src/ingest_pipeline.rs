//! Target 2: the ingest pipeline — the very `Pipeline` the swarm's event loop runs (front
//! checks, seen cache, in-flight set, new-author budget, guard admission, verify worker, store
//! thread with group commit), driven through `palisade_net::Ingestor` on an in-memory setup (a
//! temporary sled store on tmpfs and a guard with small caps), fed a sequence of messages from
//! fake peers, by gossip (on a chosen topic) or sync.
//!
//! Messages are raw bytes, validly signed pool records (feeds of four authors), records signed
//! on the fly from fuzzer-chosen fields (gaps, forks, equivocations, future and old
//! timestamps, every kind), and mutated or resized pool records (bad signatures, broken
//! encodings). Decisions are collected right away or left in flight until a later drain.
//!
//! Each message is also classified by an independent oracle built from palisade-types alone
//! (size cap, parse, decode, validation, topic, signature). Invariants:
//! - a message is only ever **rejected** (its sender penalised) for the reason the oracle
//!   gives: a valid record is never rejected, so honest relays are never penalised;
//! - **accepted** records are valid, new, stored byte-identical; nothing is decided twice and
//!   every queued record is decided by shutdown; `duplicate` only for known ids, `too_old`
//!   only for gossip older than the age limit, never `store_error` on a healthy store;
//! - counters are consistent: the pipeline's accepted/rejected/ignored counts equal the
//!   decisions seen; the guard's drop counters equal the load-shedding decisions
//!   (rate limits, author quota, new-author budget, full queue), its penalty counters the
//!   rejections of peers not yet banned;
//! - the store matches what was accepted: record count and per-kind counts, each author's feed
//!   head (count, highest seq, highest contiguous seq), equivocation flags;
//! - state is bounded: guard maps within their caps, the ledger within its capacity, records
//!   in flight within the verify queue.

use std::collections::{BTreeMap, HashMap, HashSet};

use arbitrary::{Arbitrary, Unstructured};
use libp2p::PeerId;
use palisade_guard::{Guard, GuardConfig};
use palisade_net::topics::TopicKind;
use palisade_net::{Acceptance, Decision, Ingestor, NetConfig, PipelineConfig, Reason};
use palisade_store::Store;
use palisade_types::limits::MAX_ENVELOPE_BYTES;
use palisade_types::{
    AuthorKey, DecodeError, ParsedEnvelope, RecordId, RecordKind, ValidationError, VerifiedRecord,
    VerifyError,
};

use crate::common::{self, NOW_MS};

const MAX_MESSAGES: usize = 64;
/// Messages between full checks (counters, store contents).
const FULL_CHECK_EVERY: usize = 8;
/// Gossip older than this is ignored (`too_old`); 1 hour, so fuzzed ages reach it.
const MAX_RECORD_AGE_MS: u64 = 3_600_000;

#[derive(Arbitrary, Debug)]
enum Prev {
    /// The pool record at `seq - 1` of the same author, if any.
    Chain,
    None,
    Id([u8; 32]),
}

#[derive(Arbitrary, Debug)]
enum Payload {
    /// A pool record (valid, signed).
    Pool(u8),
    /// A record signed now from chosen fields.
    Fresh { author: u8, seq: u8, prev: Prev, kind: u8, n: u8, age_secs: i32 },
    /// A pool record with one byte changed.
    Mutated { base: u8, at: u16, xor: u8 },
    /// A pool record cut short, or with bytes appended.
    Resized { base: u8, len: u16, fill: u8 },
    /// Anything.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Message {
    peer: u8,
    /// `None`: arrived in a sync response; `Some(t)`: gossip on topic `t % 3`.
    topic: Option<u8>,
    payload: Payload,
    /// Collect every pending decision after this message.
    drain: bool,
}

#[derive(Arbitrary, Debug)]
struct Limits {
    peer_burst_messages: u8,
    peer_burst_records: u8,
    author_burst_records: u8,
    peer_burst_cost_units: u16,
    ban_score_points: u8,
    new_authors_burst: u8,
    allowlist_first_peer: bool,
}

fn guard_config(l: &Limits) -> GuardConfig {
    let mut c = GuardConfig {
        peer_burst_messages: u32::from(l.peer_burst_messages).max(1),
        peer_burst_records: u32::from(l.peer_burst_records).max(1),
        author_burst_records: u32::from(l.author_burst_records).max(1),
        peer_burst_cost_units: u32::from(l.peer_burst_cost_units).max(10),
        ban_score_points: -(i32::from(l.ban_score_points).max(50)),
        ..common::small_guard_config()
    };
    if l.allowlist_first_peer {
        c.allowlist_peers = vec![common::peer(0).to_base58()];
    }
    if c.validate().is_ok() {
        c
    } else {
        common::small_guard_config()
    }
}

fn pipeline_config(l: &Limits) -> PipelineConfig {
    let net = NetConfig { verify_workers: 1, ..NetConfig::default() };
    let mut cfg = PipelineConfig::from_net(&net);
    cfg.max_record_age_ms = MAX_RECORD_AGE_MS;
    cfg.verify_batch_max_records = 8;
    cfg.verify_batch_deadline = std::time::Duration::ZERO;
    cfg.new_authors_per_sec = 1;
    cfg.new_authors_burst = u32::from(l.new_authors_burst % 8).max(1);
    cfg.flush_max_records = 4;
    cfg
}

fn materialize(p: &Payload) -> Vec<u8> {
    match p {
        Payload::Pool(i) => common::pool_record(*i).wire_bytes().to_vec(),
        Payload::Fresh { author, seq, prev, kind, n, age_secs } => {
            let a = author % common::FRESH_AUTHORS as u8;
            let seq = u64::from(seq % 8);
            let prev = match prev {
                Prev::Chain => seq
                    .checked_sub(2)
                    .and_then(|s| common::pool().get(usize::from(a))?.get(s as usize))
                    .map(|r| r.id()),
                Prev::None => None,
                Prev::Id(b) => Some(RecordId(*b)),
            };
            let issued = NOW_MS.saturating_add_signed(-(i64::from(*age_secs)) * 1000);
            common::sign_wire(a, seq, prev, common::statement(*kind, *n), issued)
        }
        Payload::Mutated { base, at, xor } => {
            let mut b = common::pool_record(*base).wire_bytes().to_vec();
            let len = b.len();
            if let Some(x) = b.get_mut(usize::from(*at) % len) {
                *x ^= xor | 1;
            }
            b
        }
        Payload::Resized { base, len, fill } => {
            let mut b = common::pool_record(*base).wire_bytes().to_vec();
            b.resize(usize::from(*len), *fill);
            b
        }
        Payload::Raw(b) => b.clone(),
    }
}

/// What the wire format alone says about a message (the oracle).
#[derive(Debug)]
enum Class {
    /// Must be rejected with this reason, if it is decided on its merits.
    Invalid { reason: &'static str, id: Option<RecordId>, issued_ms: Option<u64> },
    /// A valid record.
    Valid(Box<VerifiedRecord>),
}

fn classify(bytes: &[u8], topic: Option<TopicKind>) -> Class {
    let invalid = |reason, id, issued_ms| Class::Invalid { reason, id, issued_ms };
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return invalid("oversized", None, None);
    }
    let parsed = match ParsedEnvelope::parse(bytes.to_vec()) {
        Ok(p) => p,
        Err(DecodeError::TooLarge { .. }) => return invalid("oversized", None, None),
        Err(DecodeError::UnknownPayloadType(_)) => return invalid("unknown_payload_type", None, None),
        Err(_) => return invalid("malformed_envelope", None, None),
    };
    let id = Some(parsed.id());
    let unverified = match parsed.decode() {
        Ok(u) => u,
        Err(_) => return invalid("malformed_payload", id, None),
    };
    let issued = Some(unverified.record().position.issued_at_ms);
    let validated = match unverified.validate(NOW_MS) {
        Ok(v) => v,
        Err(ValidationError::InFuture { .. }) => return invalid("future_timestamp", id, issued),
        Err(_) => return invalid("invalid", id, issued),
    };
    if topic.is_some_and(|t| TopicKind::for_record(validated.record().kind()) != t) {
        return invalid("wrong_topic", id, issued);
    }
    match validated.verify() {
        Ok(v) => Class::Valid(Box::new(v)),
        Err(VerifyError::BadAuthorKey) => invalid("bad_author_key", id, issued),
        Err(_) => invalid("bad_signature", id, issued),
    }
}

/// A message admitted and not decided yet.
struct Pending {
    class: Class,
    topic: Option<TopicKind>,
}

struct Harness {
    cfg: GuardConfig,
    store: Store,
    guard: Guard,
    ingest: Option<Ingestor>,
    /// Queued records by id (several copies of one id may be queued: a valid one and a forged
    /// one, in either order).
    pending: HashMap<RecordId, Vec<Pending>>,
    accepted: BTreeMap<RecordId, VerifiedRecord>,
    /// (author, seq) → accepted ids.
    positions: HashMap<(AuthorKey, u64), Vec<RecordId>>,
    accepts: u64,
    rejects: u64,
    ignores: u64,
    /// Decisions the guard counts as drops (load shedding, and oversized messages).
    shed: u64,
    /// Rejections that penalised a peer that was not banned or allowlisted.
    penalties: u64,
    /// `rate_limited` decisions (each may carry one `rate_exceeded` strike, at most one per
    /// peer per second).
    rate_limited: u64,
}

impl Harness {
    fn ingest(&mut self) -> &mut Ingestor {
        match self.ingest.as_mut() {
            Some(i) => i,
            None => panic!("the ingestor is used after shutdown"),
        }
    }

    fn penalizable(&self, peer: &PeerId) -> bool {
        !self.guard.is_allowlisted(peer) && !self.guard.is_banned_peer(peer)
    }

    /// Checks one decision against the oracle and updates the model.
    fn decided(
        &mut self,
        peer: &PeerId,
        outcome: &Reason,
        class: &Class,
        topic: Option<TopicKind>,
        penalizable: bool,
    ) {
        let known = |id: &Option<RecordId>| {
            id.is_some_and(|i| self.accepted.contains_key(&i) || self.pending.contains_key(&i))
        };
        let reason = &outcome.label();
        match outcome.acceptance() {
            Acceptance::Accept => {
                self.accepts += 1;
                let Class::Valid(record) = class else {
                    panic!("accepted a record the oracle calls invalid: {class:?}");
                };
                let id = record.id();
                assert!(!self.accepted.contains_key(&id), "accepted the same record twice");
                match self.store.get(&id) {
                    Ok(Some(stored)) => {
                        assert_eq!(stored.record.wire_bytes(), record.wire_bytes(), "stored other bytes")
                    }
                    other => panic!("an accepted record is not in the store: {other:?}"),
                }
                let pos = &record.record().position;
                self.positions.entry((pos.author, pos.seq)).or_default().push(id);
                self.accepted.insert(id, VerifiedRecord::clone(record));
            }
            Acceptance::Reject => {
                self.rejects += 1;
                if *reason == "oversized" {
                    // The pipeline ledgers an oversized message as a guard drop too.
                    self.shed += 1;
                }
                if penalizable {
                    self.penalties += 1;
                }
                match class {
                    Class::Invalid { reason: expected, .. } => {
                        assert_eq!(reason, expected, "rejected for another reason than the oracle's")
                    }
                    Class::Valid(_) => {
                        panic!("a valid record was rejected ({reason}): its relay would be penalised")
                    }
                }
            }
            Acceptance::Ignore => {
                self.ignores += 1;
                let (id, issued) = match class {
                    Class::Valid(r) => (Some(r.id()), Some(r.record().position.issued_at_ms)),
                    Class::Invalid { id, issued_ms, .. } => (*id, *issued_ms),
                };
                match *reason {
                    "duplicate" => assert!(known(&id), "`duplicate` for an id neither stored nor in flight"),
                    "too_old" => assert!(
                        topic.is_some()
                            && issued.is_some_and(|t| t.saturating_add(MAX_RECORD_AGE_MS) < NOW_MS),
                        "`too_old` for a record that is not old gossip"
                    ),
                    "copies_in_flight" => assert!(
                        id.is_some_and(|i| self
                            .pending
                            .get(&i)
                            .is_some_and(|c| c.len() >= palisade_net::MAX_COPIES_IN_FLIGHT_PER_RECORD)),
                        "`copies_in_flight` below the cap"
                    ),
                    "rate_limited" | "author_quota" | "new_author_budget" | "verify_queue_full" => {
                        if *reason == "rate_limited" {
                            self.rate_limited += 1;
                        }
                        assert!(
                            !matches!(class, Class::Invalid { reason: "oversized", .. }),
                            "an oversized message reached the rate limits"
                        );
                        self.shed += 1;
                    }
                    other => panic!("unexpected ignore reason `{other}` (class {class:?})"),
                }
            }
        }
        let _ = peer;
    }

    fn admit(&mut self, peer: PeerId, bytes: Vec<u8>, topic: Option<TopicKind>) {
        let class = classify(&bytes, topic);
        let penalizable = self.penalizable(&peer);
        match self.ingest().admit(bytes, peer, topic, NOW_MS) {
            Some(outcome) => self.decided(&peer, &outcome, &class, topic, penalizable),
            None => {
                let id = match &class {
                    Class::Valid(r) => r.id(),
                    Class::Invalid { id: Some(id), .. } => *id,
                    Class::Invalid { id: None, reason, .. } => {
                        panic!("queued a message that does not parse ({reason})")
                    }
                };
                self.pending.entry(id).or_default().push(Pending { class, topic });
            }
        }
    }

    fn on_decision(&mut self, d: Decision, penalizable: &HashMap<PeerId, bool>) {
        let Some(copies) = self.pending.get_mut(&d.id) else {
            panic!("a decision for a record that was not queued: {d:?}");
        };
        // Several copies of one id: pick the one this outcome fits (queue order otherwise).
        let fits = |p: &Pending| match (d.outcome.acceptance(), &p.class) {
            (Acceptance::Accept, Class::Valid(_)) => true,
            (Acceptance::Reject, Class::Invalid { reason, .. }) => d.outcome.label() == *reason,
            (Acceptance::Ignore, _) => true,
            _ => false,
        };
        let i = copies.iter().position(fits).unwrap_or(0);
        let p = copies.remove(i);
        if copies.is_empty() {
            self.pending.remove(&d.id);
        }
        let Some(peer) = d.peer else { panic!("a decision without the peer it was admitted from") };
        let pen = penalizable.get(&peer).copied().unwrap_or(true);
        self.decided(&peer, &d.outcome, &p.class, p.topic, pen);
    }

    fn penalizable_now(&self) -> HashMap<PeerId, bool> {
        common::peers().iter().map(|p| (*p, self.penalizable(p))).collect()
    }

    /// Collects every pending decision.
    fn drain(&mut self) {
        loop {
            let pen = self.penalizable_now();
            let Some(d) = self.ingest().next_blocking() else { break };
            self.on_decision(d, &pen);
        }
        assert!(self.pending.is_empty(), "records still pending after the pipeline drained");
        assert_eq!(self.ingest().in_flight(), 0);
    }

    fn check(&mut self, full: bool) {
        common::assert_guard_bounded(
            &self.guard,
            self.cfg.max_tracked_peers as usize,
            self.cfg.ledger_capacity_entries as usize,
        );
        assert!(self.ingest().in_flight() <= 1024, "more records in flight than the verify queue holds");
        if !full {
            return;
        }
        let stats = self.ingest().stats();
        assert_eq!(
            (stats.accepted, stats.rejected, stats.ignored),
            (self.accepts, self.rejects, self.ignores),
            "pipeline counters != decisions seen"
        );
        let (dropped, penalized) = common::drop_and_penalty_counts(&self.guard);
        assert_eq!(dropped, self.shed, "guard drop counters != load-shedding decisions");
        // The pipeline charges no rate strikes (rate refusals are shed without a penalty);
        // at most one per rate refusal would ever be legitimate.
        let strikes = self.guard.counters().get("penalized.rate_exceeded").copied().unwrap_or(0);
        assert!(
            strikes <= self.rate_limited,
            "{strikes} rate strikes for {} rate refusals",
            self.rate_limited
        );
        assert_eq!(
            penalized - strikes,
            self.penalties,
            "guard penalty counters != rejections of penalisable peers"
        );
        check_store(&self.store, &self.accepted, &self.positions);
    }
}

fn check_store(
    store: &Store,
    accepted: &BTreeMap<RecordId, VerifiedRecord>,
    positions: &HashMap<(AuthorKey, u64), Vec<RecordId>>,
) {
    assert_eq!(store.record_count(), accepted.len(), "store record count != accepted records");
    let counts = match store.record_counts() {
        Ok(c) => c,
        Err(e) => panic!("record_counts failed on a healthy store: {e}"),
    };
    for kind in RecordKind::ALL {
        let expected = accepted.values().filter(|r| r.kind() == kind).count() as u64;
        assert_eq!(counts.get(&kind).copied().unwrap_or(0), expected, "count of {kind} records drifted");
    }
    let mut by_author: HashMap<AuthorKey, Vec<u64>> = HashMap::new();
    for ((author, seq), ids) in positions {
        by_author.entry(*author).or_default().extend(ids.iter().map(|_| *seq));
    }
    for (author, seqs) in &by_author {
        let head = match store.feed_head(author) {
            Ok(Some(h)) => h,
            other => panic!("feed head of an author with accepted records: {other:?}"),
        };
        assert_eq!(head.records, seqs.len() as u64, "feed head record count drifted");
        assert_eq!(Some(head.max_seq), seqs.iter().copied().max(), "feed head max_seq drifted");
        let held: HashSet<u64> = seqs.iter().copied().collect();
        let contiguous = (1..).take_while(|s| held.contains(s)).last().unwrap_or(0);
        assert_eq!(head.contiguous_seq, contiguous, "feed head contiguous_seq drifted");
        let flagged = positions.iter().any(|((a, _), ids)| a == author && ids.len() > 1);
        assert_eq!(store.is_flagged(author).ok(), Some(flagged), "equivocation flag drifted");
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(limits) = Limits::arbitrary(&mut u) else { return };
    let cfg = guard_config(&limits);
    let dir = common::temp_dir();
    let store = match common::open_store(&dir.path().join("db")) {
        Ok(s) => s,
        Err(e) => panic!("cannot open a fresh store: {e}"),
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let guard = match Guard::new(cfg.clone(), store.clone(), &mut registry) {
        Ok(g) => g,
        Err(e) => panic!("a valid config must give a guard: {e}"),
    };
    let ingest = match Ingestor::start(pipeline_config(&limits), store.clone(), guard.clone(), &mut registry)
    {
        Ok(i) => i,
        Err(e) => panic!("the pipeline does not start: {e}"),
    };
    let mut h = Harness {
        cfg,
        store,
        guard,
        ingest: Some(ingest),
        pending: HashMap::new(),
        accepted: BTreeMap::new(),
        positions: HashMap::new(),
        accepts: 0,
        rejects: 0,
        ignores: 0,
        shed: 0,
        penalties: 0,
        rate_limited: 0,
    };
    for i in 0..MAX_MESSAGES {
        if u.is_empty() {
            break;
        }
        let Ok(msg) = Message::arbitrary(&mut u) else { break };
        let topic = msg.topic.map(|t| TopicKind::ALL[usize::from(t) % TopicKind::ALL.len()]);
        h.admit(common::peer(msg.peer), materialize(&msg.payload), topic);
        if msg.drain {
            h.drain();
        }
        let full = i % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1;
        if full {
            h.drain();
        }
        h.check(full);
    }
    h.drain();
    h.check(true);
    // Shutdown decides nothing new (everything was drained) and flushes the store.
    let rest = h.ingest.take().map(Ingestor::shutdown).unwrap_or_default();
    assert!(rest.is_empty(), "decisions appeared at shutdown after a full drain: {rest:?}");
}
