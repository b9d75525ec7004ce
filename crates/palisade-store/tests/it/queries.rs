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

#[test]
fn unfiltered_pages_merge_every_kind_in_time_then_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Four kinds from three authors, issued at interleaved and equal times.
    let mut all = Vec::new();
    let mut w = FeedWriter::new(key(30));
    let mut v = FeedWriter::new(key(31));
    let mut u = FeedWriter::new(key(32));
    for n in 0..12u64 {
        let t = FIXED_NOW_MS - 1000 + (n / 2) * 10;
        let a = w.sign_next(attestation(n), t).unwrap();
        let b = v.sign_next(anomaly(n), t).unwrap();
        let fp = match &b.record().statement {
            Statement::Anomaly(x) => x.fingerprint(),
            _ => unreachable!(),
        };
        let c = u.sign_next(anomaly_update(fp, AnomalyState::Acknowledged), t + 5).unwrap();
        all.extend([a, b, c]);
    }
    let r = w.sign_next(revocation(all[0].id()), FIXED_NOW_MS).unwrap();
    all.push(r);
    for r in &all {
        store.insert(r, meta()).unwrap();
    }
    let mut want: Vec<(u64, RecordId)> =
        all.iter().map(|r| (r.record().position.issued_at_ms, r.id())).collect();
    want.sort();
    for limit in [1, 4, 7, 100] {
        let mut seen = Vec::new();
        let mut q = Query { limit, ..Query::default() };
        loop {
            let page = store.query(&q).unwrap();
            seen.extend(
                page.records.iter().map(|r| (r.record.record().position.issued_at_ms, r.record.id())),
            );
            match page.next_cursor {
                Some(c) => q.cursor = Some(Cursor::decode(&c.encode()).unwrap()),
                None => break,
            }
        }
        assert_eq!(seen, want, "limit {limit}");
    }
    // A time window over the merged indexes.
    let (since, until) = (FIXED_NOW_MS - 990, FIXED_NOW_MS - 970);
    let page = store
        .query(&Query { limit: 100, since_ms: Some(since), until_ms: Some(until), ..Query::default() })
        .unwrap();
    let expect: Vec<RecordId> =
        want.iter().filter(|(t, _)| (since..=until).contains(t)).map(|(_, id)| *id).collect();
    assert_eq!(ids(&page), expect);
    // A cursor of the unfiltered order is not a cursor of a kind query.
    let page = store.query(&Query { limit: 1, ..Query::default() }).unwrap();
    let err = store.query(&Query {
        limit: 1,
        kind: Some(RecordKind::Anomaly),
        cursor: page.next_cursor,
        ..Query::default()
    });
    assert!(matches!(err, Err(StoreError::BadCursor(_))));
}
