//! Equivocation proofs go through the same record checks and budgets as gossip (issue 14):
//! a half that fails static validation, an author with no budget, or a peer over its proof
//! budget gets nothing stored, and the sender is penalised only where the reason table says.

use palisade_guard::{Guard, GuardConfig};
use palisade_net::{proof, Ingestor, NetConfig, PipelineConfig, Reason};
use palisade_store::{Store, StoreConfig};
use palisade_types::{fixtures, FeedWriter, VerifiedRecord};
use prometheus_client::registry::Registry;

const HOUR_MS: u64 = 3_600_000;

struct Setup {
    ingest: Ingestor,
    store: Store,
    guard: Guard,
    _dir: tempfile::TempDir,
}

fn setup(limits: GuardConfig, new_authors_burst: u32) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
    let mut registry = Registry::default();
    let guard = Guard::new(limits, store.clone(), &mut registry).unwrap();
    let mut cfg = PipelineConfig::from_net(&NetConfig { verify_workers: 1, ..NetConfig::default() });
    cfg.new_authors_per_sec = 1;
    cfg.new_authors_burst = new_authors_burst;
    let ingest = Ingestor::start(cfg, store.clone(), guard.clone(), &mut registry).unwrap();
    Setup { ingest, store, guard, _dir: dir }
}

/// Two records by a fresh author at seq 1, issued at `issued_ms` and `issued_ms + offset`.
fn pair(seed: u8, issued_ms: u64, second_offset_ms: u64) -> (VerifiedRecord, VerifiedRecord) {
    let a = FeedWriter::new(fixtures::key(seed)).sign_next(fixtures::attestation(1), issued_ms).unwrap();
    let b = FeedWriter::new(fixtures::key(seed))
        .sign_next(fixtures::attestation(2), issued_ms + second_offset_ms)
        .unwrap();
    (a, b)
}

fn message(p: &(VerifiedRecord, VerifiedRecord)) -> Vec<u8> {
    proof::encode(p.0.wire_bytes(), p.1.wire_bytes())
}

fn stored(store: &Store, p: &(VerifiedRecord, VerifiedRecord)) -> [bool; 2] {
    [store.get(&p.0.id()).unwrap().is_some(), store.get(&p.1.id()).unwrap().is_some()]
}

#[test]
fn a_valid_proof_stores_both_halves_and_flags_the_author() {
    let mut s = setup(crate::harness::guard_config(), 100);
    let peer = libp2p::PeerId::random();
    let now = palisade_net::now_ms();
    let p = pair(41, now, 1);
    assert_eq!(s.ingest.admit_proof(&message(&p), peer, now), None, "queued");
    let mut decisions = Vec::new();
    while let Some(d) = s.ingest.next_blocking() {
        decisions.push(d.outcome);
    }
    assert_eq!(decisions, vec![Reason::Stored, Reason::Stored]);
    assert_eq!(stored(&s.store, &p), [true, true]);
    assert!(s.store.is_flagged(&p.0.author()).unwrap());
    // The same proof again: both halves are known.
    assert_eq!(s.ingest.admit_proof(&message(&p), peer, now), Some(Reason::Duplicate));
    assert_eq!(s.guard.score(&peer), 0.0);
    s.ingest.shutdown();
}

#[test]
fn a_proof_with_a_half_that_fails_validation_is_rejected_and_nothing_is_stored() {
    let mut s = setup(crate::harness::guard_config(), 100);
    let peer = libp2p::PeerId::random();
    let now = palisade_net::now_ms();
    // Both halves correctly signed; the second is issued two hours ahead.
    let p = pair(42, now, 2 * HOUR_MS);
    assert_eq!(s.ingest.admit_proof(&message(&p), peer, now), Some(Reason::FutureTimestamp));
    assert!(s.ingest.next_blocking().is_none(), "nothing was queued");
    assert_eq!(stored(&s.store, &p), [false, false]);
    assert!(s.guard.score(&peer) < 0.0, "the sender of an invalid proof is penalised");
    // Not a proof at all: halves of two authors.
    let other = pair(43, now, 1);
    let mixed = proof::encode(p.0.wire_bytes(), other.1.wire_bytes());
    assert_eq!(s.ingest.admit_proof(&mixed, peer, now), Some(Reason::Invalid));
    assert_eq!(s.ingest.admit_proof(&[1, 2, 3], peer, now), Some(Reason::MalformedEnvelope));
    s.ingest.shutdown();
}

#[test]
fn proofs_of_fresh_authors_pay_the_new_author_budget() {
    // Two tokens: the first proof's two halves take them both.
    let mut s = setup(crate::harness::guard_config(), 2);
    let peer = libp2p::PeerId::random();
    let now = palisade_net::now_ms();
    let first = pair(44, now, 1);
    assert_eq!(s.ingest.admit_proof(&message(&first), peer, now), None);
    let second = pair(45, now, 1);
    // The budgets are charged on the verify worker (they need the store), in queue order.
    assert_eq!(s.ingest.admit_proof(&message(&second), peer, now), None);
    let mut refused = 0;
    while let Some(d) = s.ingest.next_blocking() {
        refused += usize::from(d.outcome == Reason::NewAuthorBudget);
    }
    assert_eq!(refused, 2, "both halves of the second proof");
    assert_eq!(stored(&s.store, &first), [true, true]);
    assert_eq!(stored(&s.store, &second), [false, false]);
    assert_eq!(s.guard.score(&peer), 0.0, "a budget refusal is not a penalty");
    s.ingest.shutdown();
}

#[test]
fn a_peer_over_its_proof_budget_is_shed() {
    let limits =
        GuardConfig { peer_proofs_per_sec: 1, peer_burst_proofs: 1, ..crate::harness::guard_config() };
    let mut s = setup(limits, 100);
    let (peer, other_peer) = (libp2p::PeerId::random(), libp2p::PeerId::random());
    let now = palisade_net::now_ms();
    let first = pair(46, now, 1);
    let second = pair(47, now, 1);
    assert_eq!(s.ingest.admit_proof(&message(&first), peer, now), None);
    assert_eq!(s.ingest.admit_proof(&message(&second), peer, now), Some(Reason::ProofRateLimited));
    // The budget is per peer.
    assert_eq!(s.ingest.admit_proof(&message(&second), other_peer, now), None);
    while s.ingest.next_blocking().is_some() {}
    assert_eq!(stored(&s.store, &second), [true, true]);
    assert_eq!(s.guard.score(&peer), 0.0);
    let counters = s.guard.counters();
    assert_eq!(counters.get("dropped.peer_proof_rate_exceeded").copied(), Some(1), "{counters:?}");
    s.ingest.shutdown();
}
