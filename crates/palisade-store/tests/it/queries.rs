//! Queries with filters, limits and cursors.

use palisade_store::{Cursor, Query, StoreError};
use palisade_types::fixtures::*;
use palisade_types::*;

use crate::{meta, open};

fn ids(page: &palisade_store::Page) -> Vec<RecordId> {
    page.records.iter().map(|r| r.record.id()).collect()
}

#[test]
fn pagination_visits_every_record_once_in_stable_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut all = Vec::new();
    for seed in 10..13 {
        for r in feed(seed, 20) {
            store.insert(&r, meta()).unwrap();
            all.push(r);
        }
    }
    let mut seen = Vec::new();
    let mut q = Query { limit: 7, ..Query::default() };
    loop {
        let page = store.query(&q).unwrap();
        assert!(page.records.len() <= 7);
        seen.extend(ids(&page));
        match page.next_cursor {
            Some(c) => q.cursor = Some(Cursor::decode(&c.encode()).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 60);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 60, "no record twice");
    // Time order: issued_at_ms never decreases.
    let times: Vec<u64> =
        seen.iter().map(|id| store.get(id).unwrap().unwrap().record.record().position.issued_at_ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn filters_select_the_right_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut w = FeedWriter::new(key(20));
    let att = w.sign_next(attestation(5), FIXED_NOW_MS).unwrap();
    let ano = w.sign_next(anomaly(3), FIXED_NOW_MS + 10).unwrap();
    let other = FeedWriter::new(key(21)).sign_next(attestation(6), FIXED_NOW_MS + 20).unwrap();
    for r in [&att, &ano, &other] {
        store.insert(r, meta()).unwrap();
    }
    let q = |f: &dyn Fn(&mut Query)| {
        let mut q = Query { limit: 100, ..Query::default() };
        f(&mut q);
        ids(&store.query(&q).unwrap())
    };
    assert_eq!(q(&|q| q.kind = Some(RecordKind::Attestation)), vec![att.id(), other.id()]);
    assert_eq!(q(&|q| q.author = Some(att.author())), vec![att.id(), ano.id()]);
    assert_eq!(q(&|q| q.subject = Some(sha256(5))), vec![att.id()]);
    assert_eq!(q(&|q| q.source = Some("otlp://collector/service-3".into())), vec![ano.id()]);
    assert_eq!(q(&|q| q.min_severity = Some(17)), vec![ano.id()]);
    assert_eq!(q(&|q| q.min_severity = Some(18)), Vec::<RecordId>::new());
    assert_eq!(q(&|q| q.state = Some(AnomalyState::Open)), vec![ano.id()]);
    assert_eq!(q(&|q| q.since_ms = Some(FIXED_NOW_MS + 5)), vec![ano.id(), other.id()]);
    assert_eq!(q(&|q| q.until_ms = Some(FIXED_NOW_MS + 10)), vec![att.id(), ano.id()]);
    assert_eq!(
        q(&|q| {
            q.author = Some(att.author());
            q.kind = Some(RecordKind::Anomaly)
        }),
        vec![ano.id()]
    );
}

#[test]
fn bad_limits_and_cursors_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for r in feed(30, 3) {
        store.insert(&r, meta()).unwrap();
    }
    assert!(matches!(store.query(&Query { limit: 0, ..Query::default() }), Err(StoreError::BadQuery(_))));
    assert!(matches!(store.query(&Query { limit: 1001, ..Query::default() }), Err(StoreError::BadQuery(_))));
    assert!(Cursor::decode("zz").is_err());
    assert!(Cursor::decode("").is_err());
    // A cursor of a time query used for an author query.
    let page = store.query(&Query { limit: 1, ..Query::default() }).unwrap();
    let cursor = page.next_cursor.unwrap();
    let author = feed(30, 1)[0].author();
    let err =
        store.query(&Query { limit: 1, author: Some(author), cursor: Some(cursor), ..Query::default() });
    assert!(matches!(err, Err(StoreError::BadCursor(_))));
    let err = store.query(&Query { limit: 1, since_ms: Some(5), until_ms: Some(4), ..Query::default() });
    assert!(matches!(err, Err(StoreError::BadQuery(_))));
}
