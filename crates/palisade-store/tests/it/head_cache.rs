//! The in-memory feed-head cache changes what is looked up, never what is decided: a warm
//! store inserting groups gives the same outcomes as a cold store (reopened before every
//! insert) inserting one record at a time, for any order with duplicates, gaps and forks.

use palisade_store::{InsertOutcome, Store, StoreConfig};
use palisade_types::fixtures::*;
use palisade_types::*;
use proptest::prelude::*;

use crate::meta;

/// Records of two authors: author 1's feed of `n`, a fork of it from `fork_at` on, and a
/// short feed of author 2.
fn records(n: u64, fork_at: u64) -> Vec<VerifiedRecord> {
    let mut out = Vec::new();
    let mut main = FeedWriter::new(key(21));
    let mut fork = FeedWriter::new(key(21));
    for s in 1..=n {
        let r = main.sign_next(attestation(s), FIXED_NOW_MS).unwrap();
        if s < fork_at {
            fork.commit(&r);
        } else {
            out.push(fork.sign_next(anomaly(s), FIXED_NOW_MS).unwrap());
        }
        out.push(r);
    }
    let mut other = FeedWriter::new(key(22));
    for s in 1..=3 {
        out.push(other.sign_next(attestation(100 + s), FIXED_NOW_MS).unwrap());
    }
    out
}

fn cold_outcomes(dir: &std::path::Path, order: &[VerifiedRecord]) -> Vec<InsertOutcome> {
    order
        .iter()
        .map(|r| {
            let store = reopen(&dir.join("cold"));
            store.insert(r, meta()).unwrap()
        })
        .collect()
}

/// `Store::open` itself waits out the lock a just-dropped handle still holds.
fn reopen(path: &std::path::Path) -> Store {
    Store::open(&StoreConfig::new(path)).unwrap_or_else(|e| panic!("{e}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn warm_groups_decide_like_cold_singles(
        n in 1u64..8,
        fork_at in 1u64..10,
        picks in proptest::collection::vec(0usize..64, 1..24),
        cuts in proptest::collection::vec(1usize..6, 1..12),
    ) {
        let pool = records(n, fork_at);
        let order: Vec<VerifiedRecord> = picks.iter().map(|i| pool[i % pool.len()].clone()).collect();
        let dir = tempfile::tempdir().unwrap();
        let warm = Store::open(&StoreConfig::new(dir.path().join("warm"))).unwrap();
        let mut got = Vec::new();
        let mut rest = &order[..];
        let mut c = cuts.iter().cycle();
        while !rest.is_empty() {
            let take = (*c.next().unwrap()).min(rest.len());
            let (group, tail) = rest.split_at(take);
            let items: Vec<_> = group.iter().map(|r| (r, meta())).collect();
            got.extend(warm.insert_many(&items).unwrap());
            rest = tail;
        }
        let want = cold_outcomes(dir.path(), &order);
        prop_assert_eq!(&got, &want);
        let cold = reopen(&dir.path().join("cold"));
        for author in [order[0].author(), AuthorKey(key(22).verifying_key().to_bytes())] {
            prop_assert_eq!(warm.feed_head(&author).unwrap(), cold.feed_head(&author).unwrap());
        }
        prop_assert_eq!(warm.record_count(), cold.record_count());
        prop_assert_eq!(warm.author_count(), cold.author_count());
        for r in &pool {
            let (a, s) = (r.author(), r.record().position.seq);
            prop_assert_eq!(warm.contains_record(&r.id(), &a, s).unwrap(), warm.contains(&r.id()).unwrap());
        }
    }
}

#[test]
fn fork_at_the_tip_and_a_wrong_prev_are_found_with_a_warm_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
    let records = feed(23, 3);
    for r in &records {
        store.insert(r, meta()).unwrap();
    }
    // Same seq as the tip, different content: equivocation.
    let mut w = FeedWriter::resume(key(23), Some((2, records[1].id())));
    let rival = w.sign_next(anomaly(3), FIXED_NOW_MS).unwrap();
    match store.insert(&rival, meta()).unwrap() {
        InsertOutcome::Inserted(i) => assert_eq!(i.equivocation.map(|p| p.first), Some(records[2].id())),
        other => panic!("{other:?}"),
    }
    // Seq 4 naming the rival as prev: now two records sit at seq 3 and the rival is one.
    let mut w = FeedWriter::resume(key(23), Some((3, rival.id())));
    let next = w.sign_next(attestation(4), FIXED_NOW_MS).unwrap();
    match store.insert(&next, meta()).unwrap() {
        InsertOutcome::Inserted(i) => assert!(!i.prev_mismatch),
        other => panic!("{other:?}"),
    }
    // Seq 5 naming an unknown prev: mismatch against the cached tip.
    let mut w = FeedWriter::resume(key(23), Some((4, RecordId([9; 32]))));
    let wrong = w.sign_next(attestation(5), FIXED_NOW_MS).unwrap();
    match store.insert(&wrong, meta()).unwrap() {
        InsertOutcome::Inserted(i) => assert!(i.prev_mismatch),
        other => panic!("{other:?}"),
    }
    assert!(!store.contains_record(&RecordId([1; 32]), &wrong.author(), 6).unwrap());
    assert!(store.contains_record(&wrong.id(), &wrong.author(), 5).unwrap());
}
