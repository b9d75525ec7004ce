//! The ingest order and the one path: each check trips first on its own input, and every
//! origin (gossip, sync, proof, import, local) meets the same record checks.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use libp2p::gossipsub::MessageId;
use libp2p::PeerId;
use palisade_guard::{Guard, GuardConfig};
use palisade_store::{Store, StoreConfig};
use palisade_types::fixtures::{self, attestation, key};
use palisade_types::{sign_envelope, AuthorKey, FeedPosition, FeedWriter, Record, Score, Statement};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use super::{Finished, Origin, Pipeline, PipelineConfig, ProofAdmission};
use crate::metrics::NetMetrics;
use crate::reason::Reason;
use crate::topics::TopicKind;
use crate::NetConfig;

const GOSSIP: Option<TopicKind> = Some(TopicKind::Attestations);

struct Rig {
    pipeline: Pipeline,
    finished: mpsc::Receiver<Finished>,
    metrics: NetMetrics,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// A pipeline with one verify worker; `tweak` adjusts its settings and the guard's.
    fn new(tweak: impl FnOnce(&mut PipelineConfig, &mut GuardConfig)) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&StoreConfig::new(dir.path().join("db"))).expect("store");
        let mut registry = Registry::default();
        let mut guard_cfg = GuardConfig {
            peer_messages_per_sec: 10_000,
            peer_burst_messages: 10_000,
            peer_records_per_sec: 10_000,
            peer_burst_records: 10_000,
            author_records_per_sec: 10_000,
            author_burst_records: 10_000,
            ..GuardConfig::default()
        };
        let mut cfg = PipelineConfig::from_net(&NetConfig { verify_workers: 1, ..NetConfig::default() });
        tweak(&mut cfg, &mut guard_cfg);
        let guard = Guard::new(guard_cfg, store.clone(), &mut registry).expect("guard");
        let metrics = NetMetrics::new(&mut registry);
        let live = Arc::new(AtomicUsize::new(0));
        let (pipeline, finished) =
            Pipeline::start(cfg, store, guard, metrics.clone(), live).expect("pipeline threads");
        Rig { pipeline, finished, metrics, _dir: dir }
    }

    /// Admits `bytes` and returns the decision, waiting for the workers when it was queued.
    fn decide(&mut self, bytes: Vec<u8>, origin: Origin, topic: Option<TopicKind>) -> Reason {
        match self.pipeline.admit(bytes, origin, topic, now()) {
            Some(reason) => reason,
            None => self.next_finished().reason,
        }
    }

    fn next_finished(&mut self) -> Finished {
        let f = self.finished.blocking_recv().expect("a decision from the workers");
        self.pipeline.on_finished(&f);
        f
    }

    /// Offers gossip records of fresh authors until the new-author budget refuses one (the
    /// budget refills with time, so a test spends it right before it relies on it).
    fn spend_new_author_budget(&mut self) {
        for seed in 200..=220 {
            if self.decide(valid(seed, 1), gossip(PeerId::random()), GOSSIP) == Reason::NewAuthorBudget {
                return;
            }
        }
        panic!("the new-author budget was never spent");
    }

    fn signatures_verified(&self) -> u64 {
        self.metrics.signatures_verified.get()
    }
}

fn now() -> u64 {
    crate::now_ms()
}

fn gossip(peer: PeerId) -> Origin {
    Origin::Gossip { message_id: MessageId::new(b"m"), source: peer }
}

/// Every origin a record can come from, each with its own topic rule.
fn origins(peer: PeerId) -> Vec<(Origin, Option<TopicKind>)> {
    vec![
        (gossip(peer), GOSSIP),
        (Origin::Sync { peer }, None),
        (Origin::Import { batch: 0, index: 0, expected_id: None }, None),
        (Origin::Local { batch: 0, index: 0 }, None),
    ]
}

/// A valid record: attestation `n` at seq 1 of a fresh feed of key `seed`, issued now (so two
/// calls give two records at one seq: an equivocation).
fn valid(seed: u8, n: u64) -> Vec<u8> {
    FeedWriter::new(key(seed)).sign_next(attestation(n), now()).expect("valid").into_wire_bytes()
}

/// A correctly signed record that breaks a static rule (a score above 1000).
fn invalid(seed: u8) -> Vec<u8> {
    let Statement::Attestation(mut a) = attestation(1) else { unreachable!() };
    a.score = Score(1001);
    signed(seed, Statement::Attestation(a), now())
}

/// Signs without the static rules, as any key holder can.
fn signed(seed: u8, statement: Statement, issued_at_ms: u64) -> Vec<u8> {
    let k = key(seed);
    let author = AuthorKey(k.verifying_key().to_bytes());
    let record = Record { position: FeedPosition { author, seq: 1, prev: None, issued_at_ms }, statement };
    sign_envelope(&record, &k).expect("fits").1
}

fn bad_signature(seed: u8, n: u64) -> Vec<u8> {
    let mut wire = valid(seed, n);
    if let Some(last) = wire.last_mut() {
        *last ^= 1;
    }
    wire
}

#[test]
fn every_origin_meets_the_same_record_checks() {
    let mut rig = Rig::new(|_, _| {});
    let peer = PeerId::random();
    for (i, (origin, topic)) in origins(peer).into_iter().enumerate() {
        let seed = 10 + 10 * i as u8;
        let label = origin.source_label();
        let mut decide = |bytes| rig.decide(bytes, origin.clone(), topic);
        assert_eq!(decide(vec![7; 3]), Reason::MalformedEnvelope, "{label}");
        assert_eq!(decide(invalid(seed)), Reason::Invalid, "{label}");
        let future = signed(seed + 1, attestation(2), now() + 3_600_000);
        assert_eq!(decide(future), Reason::FutureTimestamp, "{label}");
        assert_eq!(decide(bad_signature(seed + 2, 3)), Reason::BadSignature, "{label}");
        let record = valid(seed + 3, 4);
        assert_eq!(decide(record.clone()), Reason::Stored, "{label}");
        assert_eq!(decide(record), Reason::Duplicate, "{label}");
    }
    // A proof's halves meet the same checks: one invalid half decides the proof.
    let origin = Origin::Proof { message_id: MessageId::new(b"p"), source: peer };
    let message = crate::proof::encode(&valid(90, 5), &invalid(90));
    assert_eq!(rig.pipeline.admit_proof(&message, &origin, now()), ProofAdmission::Decided(Reason::Invalid));
}

#[test]
fn an_import_line_must_carry_the_record_it_names() {
    let mut rig = Rig::new(|_, _| {});
    let wire = valid(3, 1);
    let other = palisade_types::ParsedEnvelope::parse(valid(4, 1)).expect("parses").id();
    let claims = |expected_id| Origin::Import { batch: 0, index: 0, expected_id };
    assert_eq!(rig.decide(wire.clone(), claims(Some(other)), None), Reason::MalformedEnvelope);
    let own = palisade_types::ParsedEnvelope::parse(wire.clone()).expect("parses").id();
    assert_eq!(rig.decide(wire, claims(Some(own)), None), Reason::Stored);
}

/// Inputs that fail two checks are decided by the earlier one: the order in the module docs.
#[test]
fn each_check_trips_first_on_its_own_input() {
    let mut rig = Rig::new(|p, g| {
        p.new_authors_per_sec = 1;
        p.new_authors_burst = 1;
        g.peer_messages_per_sec = 1;
        g.peer_burst_messages = 2;
    });
    let peer = PeerId::random();
    // Size before everything: oversized junk is `oversized`, not `malformed_envelope`.
    let huge = vec![0xff; palisade_types::limits::MAX_ENVELOPE_BYTES + 1];
    assert_eq!(rig.decide(huge, gossip(peer), GOSSIP), Reason::Oversized);
    // Static rules before the budgets: an invalid record of a fresh author is `invalid`
    // while the new-author budget is spent.
    let first = valid(1, 1);
    assert_eq!(rig.decide(first.clone(), gossip(peer), GOSSIP), Reason::Stored);
    assert_eq!(rig.decide(invalid(2), gossip(peer), GOSSIP), Reason::Invalid);
    // The per-peer message rate (its burst of 2 is spent) comes before decoding: junk is
    // `rate_limited`, not `malformed_envelope`.
    assert_eq!(rig.decide(vec![7; 3], gossip(peer), GOSSIP), Reason::RateLimited);
    // From here on each message comes from a peer of its own, within its message rate.
    let other = PeerId::random;
    let anomaly_topic = Some(TopicKind::Anomalies);
    // Dedup before the topic and the budgets: a stored record is a duplicate anywhere.
    assert_eq!(rig.decide(first, gossip(other()), anomaly_topic), Reason::Duplicate);
    // The topic and the age before the budgets.
    rig.spend_new_author_budget();
    assert_eq!(rig.decide(valid(3, 3), gossip(other()), anomaly_topic), Reason::WrongTopic);
    let old = signed(5, attestation(5), now() - 365 * 24 * 3_600_000);
    assert_eq!(rig.decide(old, gossip(other()), GOSSIP), Reason::TooOld);
    // The budgets before the signature check: none is spent on a record over a budget.
    let verified = rig.signatures_verified();
    rig.spend_new_author_budget();
    assert_eq!(rig.decide(bad_signature(4, 4), gossip(other()), GOSSIP), Reason::NewAuthorBudget);
    assert_eq!(rig.signatures_verified(), verified, "no signature checked for a record over a budget");
    // Import and local pay no peer budget: fresh authors are stored while gossip's
    // new-author budget is spent.
    rig.spend_new_author_budget();
    let import = Origin::Import { batch: 0, index: 0, expected_id: None };
    assert_eq!(rig.decide(valid(6, 6), import, None), Reason::Stored);
    assert_eq!(rig.decide(valid(7, 7), Origin::Local { batch: 0, index: 0 }, None), Reason::Stored);
}

#[test]
fn a_stored_equivocation_from_any_origin_carries_the_first_half_for_the_proof() {
    let mut rig = Rig::new(|_, _| {});
    let first = valid(40, 1);
    let second = valid(40, 2);
    assert_eq!(rig.decide(first.clone(), gossip(PeerId::random()), GOSSIP), Reason::Stored);
    let import = Origin::Import { batch: 3, index: 7, expected_id: None };
    assert_eq!(rig.pipeline.admit(second, import, None, now()), None);
    let f = rig.next_finished();
    assert_eq!((f.reason, f.origin.api_ticket()), (Reason::Stored, Some((3, 7))));
    let stored = f.stored.expect("stored");
    assert!(stored.equivocation.is_some(), "the store flags the author");
    assert_eq!(stored.conflicting.as_deref(), Some(first.as_slice()), "the proof's first half");
}

#[test]
fn fixtures_feed_is_valid_for_every_origin() {
    // The fixture feed the other crates' tests rely on passes the checks as any origin.
    let mut rig = Rig::new(|_, _| {});
    for (i, r) in fixtures::feed(50, 3).into_iter().enumerate() {
        let origin = Origin::Import { batch: 1, index: i, expected_id: Some(r.id()) };
        let wire = r.into_wire_bytes();
        assert_eq!(rig.pipeline.admit(wire, origin, None, fixtures::FIXED_NOW_MS), None);
        assert_eq!(rig.next_finished().reason, Reason::Stored);
    }
}
