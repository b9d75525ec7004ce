//! The store quota (`store.max_bytes`) and trust-tiered retention, on real sled databases.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use palisade_store::{InsertOutcome, Refusal, Source, Store, StoreConfig, StoredMeta};
use palisade_types::fixtures::{anomaly, anomaly_update, attestation, key, FIXED_NOW_MS};
use palisade_types::{AnomalyState, AuthorKey, FeedWriter, Statement, VerifiedRecord};

const QUOTA: u64 = 96 * 1024;

fn open_with_quota(path: &std::path::Path, max_bytes: u64) -> Store {
    let mut config = StoreConfig::new(path);
    config.max_bytes = max_bytes;
    Store::open(&config).unwrap()
}

fn at(received_at_ms: u64, source: Source) -> StoredMeta {
    StoredMeta { received_at_ms, source }
}

fn author(seed: u8) -> AuthorKey {
    AuthorKey(key(seed).verifying_key().to_bytes())
}

/// Writers for `authors` feeds; `next(i)` signs the next attestation of writer `i`.
struct Feeds(Vec<FeedWriter>);

impl Feeds {
    fn new(seeds: impl IntoIterator<Item = u8>) -> Feeds {
        Feeds(seeds.into_iter().map(|s| FeedWriter::new(key(s))).collect())
    }

    fn next(&mut self, i: usize, n: u64) -> VerifiedRecord {
        self.0[i].sign_next(attestation(n), FIXED_NOW_MS - 1_000_000 + n).unwrap()
    }
}

fn stored(store: &Store, r: &VerifiedRecord) -> bool {
    store.get(&r.id()).unwrap().is_some()
}

#[test]
fn over_the_quota_the_oldest_unprotected_records_go_and_protected_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_quota(&dir.path().join("db"), QUOTA);
    store.set_own_author(&author(2)).unwrap();
    store.set_protected_authors(HashSet::from([author(1)]));
    // Writer 0: a trusted author; 1: the node itself; 2..: Sybil authors.
    let mut feeds = Feeds::new([1, 2].into_iter().chain(10..40));
    let mut kept = Vec::new();
    let mut untrusted = Vec::new();
    for round in 0..40u64 {
        let now = FIXED_NOW_MS + round;
        let mut group = vec![(feeds.next(0, round + 1), at(now, Source::Gossip))];
        group.push((feeds.next(1, round + 1), at(now, Source::Local)));
        for sybil in 2..feeds.0.len() {
            group.push((feeds.next(sybil, round + 1), at(now, Source::Gossip)));
        }
        let items: Vec<_> = group.iter().map(|(r, m)| (r, *m)).collect();
        let outcomes = store.insert_many(&items).unwrap();
        assert!(outcomes.iter().all(|o| matches!(o, InsertOutcome::Inserted(_))), "{outcomes:?}");
        let usage = store.usage();
        assert!(usage.bytes_used <= QUOTA, "round {round}: {usage:?}");
        for (r, m) in group {
            if m.source == Source::Local || r.author() == author(1) {
                kept.push(r);
            } else {
                untrusted.push((round, r));
            }
        }
    }
    let usage = store.usage();
    assert!(usage.bytes_used <= QUOTA, "{usage:?}");
    assert!(usage.evicted_records > 0, "the Sybil feeds were evicted: {usage:?}");
    assert!(kept.iter().all(|r| stored(&store, r)), "no own or trusted record is evicted");
    // Oldest received first: every evicted record was received no later than any kept one.
    let newest_evicted = untrusted.iter().filter(|(_, r)| !stored(&store, r)).map(|(t, _)| *t).max().unwrap();
    let oldest_kept = untrusted.iter().filter(|(_, r)| stored(&store, r)).map(|(t, _)| *t).min().unwrap();
    assert!(newest_evicted <= oldest_kept, "evicted up to round {newest_evicted}, kept from {oldest_kept}");
    let report = store.check(|_| {}).unwrap();
    assert_eq!(report.problems, 0, "{:?}", report.examples);
}

#[test]
fn an_evicted_seq_is_refused_and_the_feed_head_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_quota(&dir.path().join("db"), QUOTA);
    let mut feeds = Feeds::new(10..20);
    let mut first_round = Vec::new();
    for round in 0..60u64 {
        for i in 0..feeds.0.len() {
            let r = feeds.next(i, round + 1);
            store.insert(&r, at(FIXED_NOW_MS + round, Source::Sync)).unwrap();
            if round == 0 {
                first_round.push(r);
            }
        }
    }
    let victim = &first_round[0];
    assert!(!stored(&store, victim), "the oldest record was evicted");
    let marker = store.eviction_marker(&victim.author()).unwrap().expect("a marker");
    assert!(marker.through_seq >= 1 && marker.records >= 1, "{marker:?}");
    let head = store.feed_head(&victim.author()).unwrap().unwrap();
    assert_eq!((head.contiguous_seq, head.max_seq), (60, 60), "sync keeps seeing the whole feed");
    assert_eq!(
        store.insert(victim, at(FIXED_NOW_MS + 100, Source::Sync)).unwrap(),
        InsertOutcome::Refused(Refusal::Evicted)
    );
    assert!(store.usage().refused_evicted >= 1);
    assert!(!stored(&store, victim));
}

#[test]
fn equivocation_halves_and_open_anomalies_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_quota(&dir.path().join("db"), QUOTA);
    // An untrusted author forks at seq 1.
    let (mut a, mut b) = (FeedWriter::new(key(50)), FeedWriter::new(key(50)));
    let fork = [
        a.sign_next(attestation(1), FIXED_NOW_MS).unwrap(),
        b.sign_next(attestation(2), FIXED_NOW_MS).unwrap(),
    ];
    // Another reports an anomaly that stays open, and one it resolves.
    let mut reporter = FeedWriter::new(key(51));
    let open = reporter.sign_next(anomaly(1), FIXED_NOW_MS).unwrap();
    let closed = reporter.sign_next(anomaly(2), FIXED_NOW_MS + 1).unwrap();
    let Statement::Anomaly(closed_anomaly) = &closed.record().statement else { unreachable!() };
    let resolved = reporter
        .sign_next(anomaly_update(closed_anomaly.fingerprint(), AnomalyState::Resolved), FIXED_NOW_MS + 2)
        .unwrap();
    for r in fork.iter().chain([&open, &closed, &resolved]) {
        store.insert(r, at(FIXED_NOW_MS, Source::Gossip)).unwrap();
    }
    assert!(store.is_flagged(&fork[0].author()).unwrap());
    let mut feeds = Feeds::new(10..20);
    for round in 0..80u64 {
        for i in 0..feeds.0.len() {
            let r = feeds.next(i, round + 1);
            store.insert(&r, at(FIXED_NOW_MS + 1 + round, Source::Gossip)).unwrap();
        }
    }
    assert!(store.usage().evicted_records > 0);
    assert!(fork.iter().all(|r| stored(&store, r)), "both halves of a fork are kept");
    assert!(stored(&store, &open), "an open anomaly is kept");
    assert!(!stored(&store, &closed) && !stored(&store, &resolved), "a resolved anomaly may go");
}

#[test]
fn a_full_quota_refuses_unprotected_authors_and_still_stores_protected_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_quota(&dir.path().join("db"), QUOTA);
    store.set_protected_authors(HashSet::from([author(1)]));
    let mut feeds = Feeds::new([1, 10]);
    let mut n = 0;
    while store.usage().bytes_used <= QUOTA {
        n += 1;
        store.insert(&feeds.next(0, n), at(FIXED_NOW_MS + n, Source::Gossip)).unwrap();
    }
    let sybil = feeds.next(1, 1);
    assert_eq!(
        store.insert(&sybil, at(FIXED_NOW_MS + n, Source::Gossip)).unwrap(),
        InsertOutcome::Refused(Refusal::QuotaFull)
    );
    let usage = store.usage();
    assert!(usage.quota_full && usage.refused_quota_full == 1, "{usage:?}");
    let trusted = feeds.next(0, n + 1);
    assert!(matches!(
        store.insert(&trusted, at(FIXED_NOW_MS + n, Source::Gossip)).unwrap(),
        InsertOutcome::Inserted(_)
    ));
    // Naming nobody any more makes the trusted feed evictable: the store gets under its quota.
    store.set_protected_authors(HashSet::new());
    let next = feeds.next(0, n + 2);
    store.insert(&next, at(FIXED_NOW_MS + n + 1, Source::Gossip)).unwrap();
    assert!(store.usage().bytes_used <= QUOTA, "{:?}", store.usage());
}

#[test]
fn the_byte_count_survives_a_reopen_and_a_smaller_quota_is_met_without_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let used = {
        let store = open_with_quota(&path, 4 * QUOTA);
        let mut feeds = Feeds::new(10..20);
        for round in 0..40u64 {
            for i in 0..feeds.0.len() {
                store.insert(&feeds.next(i, round + 1), at(FIXED_NOW_MS + round, Source::Sync)).unwrap();
            }
        }
        store.flush().unwrap();
        store.usage().bytes_used
    };
    assert!(used > QUOTA);
    let store = open_with_quota(&path, QUOTA);
    assert_eq!(store.usage().bytes_used, used, "the counter is stored with the records");
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.usage().bytes_used > QUOTA {
        assert!(Instant::now() < deadline, "the retention thread did not evict: {:?}", store.usage());
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = store.check(|_| {}).unwrap();
    assert_eq!(report.problems, 0, "{:?}", report.examples);
}

#[test]
fn a_schema_2_store_gets_its_received_index_and_byte_count_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let used = {
        let store = open_with_quota(&path, QUOTA * 100);
        for r in palisade_types::fixtures::feed(7, 30) {
            store.insert(&r, at(FIXED_NOW_MS, Source::Gossip)).unwrap();
        }
        store.flush().unwrap();
        store.usage().bytes_used
    };
    {
        // What schema 2 had: no received index, no byte counter.
        let db = super::persistence::raw_open(&path);
        let data = db.open_tree("data").unwrap();
        let received: Vec<_> = data.scan_prefix([b'i', 8]).keys().map(|k| k.unwrap()).collect();
        assert_eq!(received.len(), 30);
        for k in received {
            data.remove(k).unwrap();
        }
        data.remove(b"mbytes").unwrap();
        db.open_tree("meta").unwrap().insert(b"schema_version", &2u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let store = open_with_quota(&path, QUOTA * 100);
    assert_eq!(store.usage().bytes_used, used);
    let report = store.check(|_| {}).unwrap();
    assert_eq!(report.problems, 0, "{:?}", report.examples);
}

#[test]
fn a_damaged_byte_counter_is_recounted_not_obeyed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let used = {
        let store = open_with_quota(&path, QUOTA);
        for r in palisade_types::fixtures::feed(8, 20) {
            store.insert(&r, at(FIXED_NOW_MS, Source::Gossip)).unwrap();
        }
        store.flush().unwrap();
        store.usage().bytes_used
    };
    {
        let db = super::persistence::raw_open(&path);
        db.open_tree("data").unwrap().insert(b"mbytes", &u64::MAX.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    // Obeyed, a counter at u64::MAX would evict every record of every unprotected author.
    let store = open_with_quota(&path, QUOTA);
    assert_eq!(store.usage().bytes_used, used);
    let more = FeedWriter::new(key(9)).sign_next(attestation(1), FIXED_NOW_MS).unwrap();
    store.insert(&more, at(FIXED_NOW_MS, Source::Gossip)).unwrap();
    assert_eq!(store.usage().evicted_records, 0);
    assert_eq!(store.record_count(), 21);
}

#[test]
fn a_store_keeps_the_compression_it_was_created_with() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let records = palisade_types::fixtures::feed(12, 5);
    {
        let store = Store::open(&StoreConfig { compression: true, ..StoreConfig::new(&path) }).unwrap();
        assert!(store.usage().compressed);
        for r in &records {
            store.insert(r, at(FIXED_NOW_MS, Source::Gossip)).unwrap();
        }
        store.flush().unwrap();
    }
    // sled refuses a store opened with the other setting; the store keeps its own.
    let store = Store::open(&StoreConfig::new(&path)).unwrap();
    assert!(store.usage().compressed);
    assert!(records.iter().all(|r| stored(&store, r)));
}

#[test]
fn markers_of_evicted_authors_count_against_the_quota() {
    // A Sybil author per record, each evicted whole: what stays is a marker per author, and
    // the markers fill the quota instead of the disk.
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_quota(&dir.path().join("db"), QUOTA);
    let mut n = 0u64;
    while !store.usage().quota_full {
        n += 1;
        assert!(n < 5_000, "markers never filled the quota: {:?}", store.usage());
        let mut seed = [9u8; 32];
        seed[..8].copy_from_slice(&n.to_be_bytes());
        let r = FeedWriter::new(palisade_types::ed25519_dalek::SigningKey::from_bytes(&seed))
            .sign_next(attestation(n), FIXED_NOW_MS)
            .unwrap();
        store.insert(&r, at(FIXED_NOW_MS + n, Source::Gossip)).unwrap();
    }
    let usage = store.usage();
    assert!(usage.bytes_used <= QUOTA + palisade_store::MARKER_COST * 64, "{usage:?}");
    assert!(usage.evicted_records * palisade_store::MARKER_COST >= QUOTA / 2, "{usage:?}");
    let report = store.check(|_| {}).unwrap();
    assert_eq!(report.problems, 0, "{:?}", report.examples);
}

#[test]
fn a_store_of_evictable_records_never_calls_its_quota_full() {
    // Whatever the cursor's position, a store whose records are all evictable is never called
    // full and never refuses one (a full quota refuses unprotected authors).
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_quota(&dir.path().join("db"), QUOTA);
    let mut feeds = Feeds::new(10..14);
    for n in 1..=600u64 {
        let r = feeds.next((n % 4) as usize, n.div_ceil(4));
        let outcome = store.insert(&r, at(FIXED_NOW_MS + n, Source::Sync)).unwrap();
        assert!(matches!(outcome, InsertOutcome::Inserted(_)), "record {n}: {outcome:?}");
        let usage = store.usage();
        assert!(usage.bytes_used <= QUOTA && !usage.quota_full, "record {n}: {usage:?}");
    }
}
