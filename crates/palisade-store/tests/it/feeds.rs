//! Inserts, dedup, feed heads, equivocation, revocation, anomaly state.

use palisade_store::{InsertOutcome, Inserted};
use palisade_types::fixtures::*;
use palisade_types::*;

use crate::{meta, open};

#[test]
fn insert_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let r = &feed(1, 1)[0];
    assert!(matches!(store.insert(r, meta()).unwrap(), InsertOutcome::Inserted(_)));
    assert_eq!(store.insert(r, meta()).unwrap(), InsertOutcome::Duplicate);
    assert_eq!(store.record_count(), 1);
    assert_eq!(store.record_counts().unwrap()[&RecordKind::Attestation], 1);
    let got = store.get(&r.id()).unwrap().unwrap();
    assert_eq!(&got.record, r);
    assert!(store.contains(&r.id()).unwrap());
}

#[test]
fn feed_head_tracks_contiguous_prefix_and_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let records = feed(2, 6);
    let author = records[0].author();
    // Insert 1, 2, 4, 6, then 3, then 5.
    for i in [0, 1, 3, 5] {
        store.insert(&records[i], meta()).unwrap();
    }
    let head = store.feed_head(&author).unwrap().unwrap();
    assert_eq!((head.contiguous_seq, head.max_seq, head.records), (2, 6, 4));
    store.insert(&records[2], meta()).unwrap();
    assert_eq!(store.feed_head(&author).unwrap().unwrap().contiguous_seq, 4);
    store.insert(&records[4], meta()).unwrap();
    assert_eq!(store.feed_head(&author).unwrap().unwrap().contiguous_seq, 6);
    assert_eq!(store.latest_in_feed(&author).unwrap(), Some((6, records[5].id())));

    let page = store.feed_range(&author, 2, 4, 100, usize::MAX).unwrap();
    assert_eq!(page.iter().map(|r| r.record().position.seq).collect::<Vec<_>>(), vec![2, 3, 4]);
    let page = store.feed_range(&author, 1, u64::MAX, 2, usize::MAX).unwrap();
    assert_eq!(page.len(), 2);
    // Byte cap: at least one record, then stop once over the cap.
    let page = store.feed_range(&author, 1, u64::MAX, 100, 1).unwrap();
    assert_eq!(page.len(), 1);
}

#[test]
fn equivocation_keeps_both_and_stores_a_proof() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut w1 = FeedWriter::new(key(3));
    let mut w2 = FeedWriter::new(key(3));
    let a = w1.sign_next(attestation(1), FIXED_NOW_MS).unwrap();
    let b = w2.sign_next(attestation(2), FIXED_NOW_MS).unwrap();
    assert_ne!(a.id(), b.id());
    store.insert(&a, meta()).unwrap();
    assert!(!store.is_flagged(&a.author()).unwrap());
    let InsertOutcome::Inserted(Inserted { equivocation: Some(proof), .. }) =
        store.insert(&b, meta()).unwrap()
    else {
        panic!("expected an equivocation");
    };
    assert_eq!((proof.first, proof.second, proof.seq), (a.id(), b.id(), 1));
    assert!(store.is_flagged(&a.author()).unwrap());
    assert_eq!(store.ids_at(&a.author(), 1).unwrap().len(), 2);
    assert_eq!(store.equivocations(None, 10).unwrap(), vec![proof]);
    // The next record on branch 2 names b as prev: no prev mismatch.
    let c = w2.sign_next(attestation(3), FIXED_NOW_MS).unwrap();
    let InsertOutcome::Inserted(ins) = store.insert(&c, meta()).unwrap() else { panic!() };
    assert!(!ins.prev_mismatch);
}

#[test]
fn prev_mismatch_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut w = FeedWriter::resume(key(4), None);
    let first = w.sign_next(attestation(1), FIXED_NOW_MS).unwrap();
    store.insert(&first, meta()).unwrap();
    let mut other = FeedWriter::resume(key(4), Some((1, RecordId([7; 32]))));
    let second = other.sign_next(attestation(2), FIXED_NOW_MS).unwrap();
    let InsertOutcome::Inserted(ins) = store.insert(&second, meta()).unwrap() else { panic!() };
    assert!(ins.prev_mismatch);
}

#[test]
fn revocation_by_the_author_marks_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut w = FeedWriter::new(key(5));
    let target = w.sign_next(attestation(1), FIXED_NOW_MS).unwrap();
    let rev = w.sign_next(revocation(target.id()), FIXED_NOW_MS + 1).unwrap();
    // A revocation by someone else must not count.
    let foreign = FeedWriter::new(key(6)).sign_next(revocation(target.id()), FIXED_NOW_MS).unwrap();
    store.insert(&target, meta()).unwrap();
    store.insert(&foreign, meta()).unwrap();
    assert_eq!(store.get(&target.id()).unwrap().unwrap().revoked_by, None);
    store.insert(&rev, meta()).unwrap();
    assert_eq!(store.get(&target.id()).unwrap().unwrap().revoked_by, Some(rev.id()));
}

#[test]
fn anomaly_state_folds_in_any_arrival_order() {
    let mut w = FeedWriter::new(key(7));
    let report = w.sign_next(anomaly(1), FIXED_NOW_MS).unwrap();
    let fp = match &report.record().statement {
        Statement::Anomaly(a) => a.fingerprint(),
        _ => unreachable!(),
    };
    let ack = w.sign_next(anomaly_update(fp, AnomalyState::Acknowledged), FIXED_NOW_MS + 1).unwrap();
    let resolve = w.sign_next(anomaly_update(fp, AnomalyState::Resolved), FIXED_NOW_MS + 2).unwrap();
    let all = [report.clone(), ack, resolve];
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for i in order {
            store.insert(&all[i], meta()).unwrap();
        }
        let status = store.anomaly_status(&fp).unwrap().unwrap();
        assert_eq!(status.state, AnomalyState::Resolved, "order {order:?}");
        assert_eq!(status.latest_report, Some(report.id()), "order {order:?}");
        assert_eq!(status.events, 3);
        let (open_ones, _) = store.anomaly_statuses(Some(AnomalyState::Open), None, 10).unwrap();
        assert!(open_ones.is_empty());
    }
}

#[test]
fn insert_many_is_one_atomic_group_with_the_same_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let records = feed(8, 10);
    // A group with a duplicate inside and an out-of-order feed.
    let mut group: Vec<&VerifiedRecord> = records.iter().rev().collect();
    group.push(&records[3]);
    let items: Vec<(&VerifiedRecord, palisade_store::StoredMeta)> =
        group.iter().map(|r| (*r, meta())).collect();
    let outcomes = store.insert_many(&items).unwrap();
    assert_eq!(outcomes.iter().filter(|o| matches!(o, InsertOutcome::Inserted(_))).count(), 10);
    assert_eq!(outcomes.last(), Some(&InsertOutcome::Duplicate));
    let head = store.feed_head(&records[0].author()).unwrap().unwrap();
    assert_eq!((head.contiguous_seq, head.max_seq, head.records), (10, 10, 10));
    assert_eq!(store.record_count(), 10);
    assert_eq!(store.author_count(), 1);
    // Equivocation inside one group is detected too.
    let a = FeedWriter::new(key(9)).sign_next(attestation(1), FIXED_NOW_MS).unwrap();
    let b = FeedWriter::new(key(9)).sign_next(attestation(2), FIXED_NOW_MS).unwrap();
    let out = store.insert_many(&[(&a, meta()), (&b, meta())]).unwrap();
    assert!(matches!(&out[1], InsertOutcome::Inserted(Inserted { equivocation: Some(_), .. })));
    assert!(store.is_flagged(&a.author()).unwrap());
}
