//! `Ingestor`: the pipeline driven without a swarm gives the same decisions as the network.

use palisade_guard::Guard;
use palisade_net::topics::TopicKind;
use palisade_net::{Ingestor, NetConfig, PipelineConfig, Reason};
use palisade_store::{Store, StoreConfig};
use palisade_types::{fixtures, FeedWriter};
use prometheus_client::registry::Registry;

fn ingestor(dir: &tempfile::TempDir, group_commit: bool) -> (Ingestor, Store) {
    let store = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
    let mut registry = Registry::default();
    let guard = Guard::new(crate::harness::guard_config(), store.clone(), &mut registry).unwrap();
    let mut cfg = PipelineConfig::from_net(&NetConfig { verify_workers: 1, ..NetConfig::default() });
    cfg.group_commit = group_commit;
    (Ingestor::start(cfg, store.clone(), guard, &mut registry).unwrap(), store)
}

/// `Store::open` itself waits out the lock a just-dropped handle still holds.
fn reopen(path: &std::path::Path) -> Store {
    Store::open(&StoreConfig::new(path)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn stores_valid_records_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ingest, store) = ingestor(&dir, true);
    let peer = libp2p::PeerId::random();
    let now = palisade_net::now_ms();
    let mut w = FeedWriter::new(fixtures::key(3));
    let records: Vec<_> = (1..=100).map(|n| w.sign_next(fixtures::attestation(n), now).unwrap()).collect();
    let topic = Some(TopicKind::Attestations);
    for r in &records {
        assert_eq!(ingest.admit(r.wire_bytes().to_vec(), peer, topic, now), None);
    }
    // A copy of a queued record dies before verification.
    let copy = ingest.admit(records[0].wire_bytes().to_vec(), peer, topic, now);
    assert_eq!(copy, Some(Reason::Duplicate));
    // A bad signature is decided by the workers.
    let mut bad = w.sign_next(fixtures::attestation(1000), now).unwrap().into_wire_bytes();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(ingest.admit(bad, peer, topic, now), None);
    // Junk is decided at once.
    assert_eq!(ingest.admit(vec![1, 2, 3], peer, topic, now), Some(Reason::MalformedEnvelope));

    let mut accepted = 0;
    let mut rejected = 0;
    while let Some(d) = ingest.next_blocking() {
        match d.outcome {
            Reason::Stored => accepted += 1,
            Reason::BadSignature => rejected += 1,
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(d.peer, Some(peer));
    }
    assert_eq!((accepted, rejected), (100, 1));
    assert_eq!(ingest.in_flight(), 0);
    // Stored records are now duplicates.
    let again = ingest.admit(records[50].wire_bytes().to_vec(), peer, topic, now);
    assert_eq!(again, Some(Reason::Duplicate));
    assert!(ingest.shutdown().is_empty());
    assert!(records.iter().all(|r| store.contains(&r.id()).unwrap()));
    let stats_dir = dir.path().join("db");
    drop(store);
    // Durable after shutdown: a reopened store has them.
    let reopened = reopen(&stats_dir);
    assert_eq!(reopened.record_count(), 100);
}

#[test]
fn a_corrupted_copy_in_flight_does_not_shadow_the_valid_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ingest, store) = ingestor(&dir, true);
    let attacker = libp2p::PeerId::random();
    let honest = libp2p::PeerId::random();
    let now = palisade_net::now_ms();
    let record = FeedWriter::new(fixtures::key(4)).sign_next(fixtures::attestation(1), now).unwrap();
    let mut corrupted = record.wire_bytes().to_vec();
    *corrupted.last_mut().unwrap() ^= 1;
    let topic = Some(TopicKind::Attestations);
    // The corrupted copy is queued first; the valid copy arrives while it is in flight. Same
    // record id, other signature bytes: it is a different copy, not a duplicate.
    assert_eq!(ingest.admit(corrupted.clone(), attacker, topic, now), None);
    assert_eq!(ingest.admit(record.wire_bytes().to_vec(), honest, topic, now), None);
    // An identical copy of either is a duplicate, though.
    assert_eq!(ingest.admit(corrupted.clone(), attacker, topic, now), Some(Reason::Duplicate));
    assert_eq!(ingest.in_flight(), 2);
    // Variants of one id in flight are capped (4): the third and fourth are taken, the fifth
    // is not.
    for bit in [2u8, 4, 8] {
        let mut variant = corrupted.clone();
        *variant.last_mut().unwrap() ^= bit;
        let expect = if bit == 8 { Some(Reason::CopiesInFlight) } else { None };
        assert_eq!(ingest.admit(variant, attacker, topic, now), expect, "variant {bit}");
    }
    assert_eq!(ingest.in_flight(), 4);
    let mut decisions = Vec::new();
    while let Some(d) = ingest.next_blocking() {
        decisions.push((d.peer.expect("a peer"), d.outcome));
    }
    decisions.sort_by_key(|(p, _)| *p == honest);
    assert_eq!(decisions.last(), Some(&(honest, Reason::Stored)), "{decisions:?}");
    // The corrupted copy queued before the valid one is verified and rejected. A variant the
    // worker reaches after the valid copy is stored is a duplicate of a stored id (the
    // "stored already" lookup runs on the worker, before verification); either way none of
    // them is stored.
    let attacker_decisions = &decisions[..3];
    assert!(attacker_decisions.iter().all(|(p, _)| *p == attacker), "{decisions:?}");
    assert!(attacker_decisions.iter().all(|(_, r)| matches!(r, Reason::BadSignature | Reason::Duplicate)));
    assert!(attacker_decisions.contains(&(attacker, Reason::BadSignature)), "{decisions:?}");
    assert_eq!(ingest.in_flight(), 0);
    assert!(ingest.shutdown().is_empty());
    assert!(store.contains(&record.id()).unwrap());
}

#[test]
fn without_group_commit_writes_are_flushed_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ingest, store) = ingestor(&dir, false);
    let peer = libp2p::PeerId::random();
    let now = palisade_net::now_ms();
    let mut w = FeedWriter::new(fixtures::key(4));
    for n in 1..=10 {
        let r = w.sign_next(fixtures::anomaly(n), now).unwrap();
        assert_eq!(ingest.admit(r.into_wire_bytes(), peer, None, now), None);
    }
    let rest = ingest.shutdown();
    assert_eq!(rest.len(), 10);
    assert!(rest.iter().all(|d| d.outcome == Reason::Stored));
    assert_eq!(store.record_count(), 10);
    drop(store);
    assert_eq!(reopen(&dir.path().join("db")).record_count(), 10);
}

#[test]
fn sync_records_of_known_authors_skip_the_per_peer_and_author_rates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
    let mut registry = Registry::default();
    // One message, one record, one author record per second: tight enough that gossip from
    // this peer is throttled after the first record.
    let limits = palisade_guard::GuardConfig {
        peer_messages_per_sec: 1,
        peer_burst_messages: 1,
        peer_records_per_sec: 1,
        peer_burst_records: 1,
        author_records_per_sec: 1,
        author_burst_records: 1,
        ..palisade_guard::GuardConfig::default()
    };
    let guard = Guard::new(limits, store.clone(), &mut registry).unwrap();
    let cfg = PipelineConfig::from_net(&NetConfig { verify_workers: 1, ..NetConfig::default() });
    let mut ingest = Ingestor::start(cfg, store.clone(), guard, &mut registry).unwrap();
    let peer = libp2p::PeerId::random();
    let now = palisade_net::now_ms();
    let known = fixtures::feed(5, 40);
    // The author is known: its first record is stored.
    store
        .insert(
            &known[0],
            palisade_store::StoredMeta { received_at_ms: now, source: palisade_store::Source::Sync },
        )
        .unwrap();
    for r in &known[1..] {
        assert_eq!(ingest.admit(r.wire_bytes().to_vec(), peer, None, now), None, "sync record refused");
    }
    // An unknown author by sync pays the record limits like gossip does: here the peer's record
    // rate (1/s), which the guard checks before the author quota.
    let unknown = fixtures::feed(6, 3);
    for r in &unknown {
        // Queued: the budgets are charged on the verify worker (they need the store).
        assert_eq!(ingest.admit(r.wire_bytes().to_vec(), peer, None, now), None);
    }
    // Gossip from the same peer is rate limited (its message rate, checked at once).
    let gossip = fixtures::feed(7, 3);
    let topic = Some(TopicKind::Attestations);
    let g: Vec<_> = gossip.iter().map(|r| ingest.admit(r.wire_bytes().to_vec(), peer, topic, now)).collect();
    assert!(g.contains(&Some(Reason::RateLimited)), "{g:?}");
    let mut decided = std::collections::HashMap::new();
    while let Some(d) = ingest.next_blocking() {
        decided.insert(d.id, d.outcome);
    }
    for r in &known[1..] {
        assert_eq!(decided.get(&r.id()), Some(&Reason::Stored), "a known author's sync record");
    }
    assert_eq!(decided.get(&unknown[0].id()), Some(&Reason::Stored));
    assert_eq!(decided.get(&unknown[1].id()), Some(&Reason::RateLimited));
    ingest.shutdown();
}
