//! Records, feeds, verdicts, anomalies, equivocations, import/export on one node.

use base64::Engine as _;
use palisade_api::model::{AnomalyListParams, PageParams, RecordFilter, SourceView, VerdictParams};
use palisade_api::{ApiConfig, TrustPolicy};
use palisade_types::fixtures::{attestation, revocation};
use palisade_types::{AnomalyState, RecordKind, Statement};

use crate::harness::{
    anomaly_json, attestation_json, export_line, foreign_feed, foreign_feed_at, init_tracing, sha, ApiNode,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_get_and_query_every_kind() {
    init_tracing();
    let node = ApiNode::start(1).await;
    let api = &node.api;

    let a = api.submit_json(&attestation_json("pkg:cargo/serde@1.0.210", &sha(1), "pass")).await.unwrap();
    assert_eq!((a.seq, a.kind), (1, RecordKind::Attestation));
    let an = api.submit_json(&anomaly_json("api", 17)).await.unwrap();
    assert_eq!(an.seq, 2);

    // Get by id: decoded JSON plus the envelope, which re-verifies to the same id.
    let got = api.record(&a.id.to_hex()).await.unwrap();
    assert_eq!(got.author, node.handle.author());
    assert_eq!(got.source, SourceView::Local);
    assert_eq!(got.prev, None);
    let Statement::Attestation(att) = &got.statement else { panic!("{got:?}") };
    assert_eq!(att.subject.name.as_str(), "pkg:cargo/serde@1.0.210");
    let wire = base64::engine::general_purpose::STANDARD.decode(got.envelope.unwrap()).unwrap();
    let parsed = palisade_types::ParsedEnvelope::parse(wire).unwrap();
    assert_eq!(parsed.id(), a.id);
    parsed.decode().unwrap().validate(palisade_net::now_ms()).unwrap().verify().unwrap();

    // The anomaly's state, then an update and its fold.
    let got = api.record(&an.id.to_hex()).await.unwrap();
    let Statement::Anomaly(anomaly) = &got.statement else { panic!() };
    let fp = anomaly.fingerprint().to_hex();
    assert_eq!(got.prev, Some(a.id));
    let st = api.anomaly(&fp).await.unwrap();
    assert_eq!(st.state, "open");
    assert_eq!(st.report.as_ref().unwrap().labels.get("service").map(String::as_str), Some("api"));
    let open = api.anomalies(&AnomalyListParams::default()).await.unwrap();
    assert_eq!(open.anomalies.len(), 1);
    let up = api
        .submit_json(&serde_json::json!({"kind": "anomaly_update", "fingerprint": fp, "state": "acknowledged", "comment": "looking"}))
        .await
        .unwrap();
    assert_eq!(up.kind, RecordKind::AnomalyUpdate);
    assert_eq!(api.anomaly(&fp).await.unwrap().state, "acknowledged");
    assert!(api.anomalies(&AnomalyListParams::default()).await.unwrap().anomalies.is_empty());
    let acked = api
        .anomalies(&AnomalyListParams { state: Some("acknowledged".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(acked.anomalies.len(), 1);
    let all =
        api.anomalies(&AnomalyListParams { state: Some("all".into()), ..Default::default() }).await.unwrap();
    assert_eq!(all.anomalies.len(), 1);

    // Revocation of our own record.
    let rv = api.submit(&revocation(a.id)).await.unwrap();
    assert_eq!((rv.seq, rv.kind), (4, RecordKind::Revocation));
    assert_eq!(api.record(&a.id.to_hex()).await.unwrap().revoked_by, Some(rv.id));

    // Queries: each filter.
    let q = |f: RecordFilter| async move { api.query(&f).await.unwrap() };
    assert_eq!(q(RecordFilter::default()).await.records.len(), 4);
    assert_eq!(q(RecordFilter { kind: Some("anomaly".into()), ..Default::default() }).await.records.len(), 1);
    assert_eq!(q(RecordFilter { subject: Some(sha(1)), ..Default::default() }).await.records.len(), 1);
    assert_eq!(q(RecordFilter { subject: Some(sha(2)), ..Default::default() }).await.records.len(), 0);
    assert_eq!(
        q(RecordFilter { author: Some(node.handle.author().to_hex()), ..Default::default() })
            .await
            .records
            .len(),
        4
    );
    assert_eq!(
        q(RecordFilter { fingerprint: Some(fp.clone()), ..Default::default() }).await.records.len(),
        2
    );
    assert_eq!(
        q(RecordFilter { source: Some("otlp://collector/api".into()), ..Default::default() })
            .await
            .records
            .len(),
        1
    );
    assert_eq!(q(RecordFilter { min_severity: Some(18), ..Default::default() }).await.records.len(), 0);
    assert_eq!(q(RecordFilter { min_severity: Some(17), ..Default::default() }).await.records.len(), 1);
    assert_eq!(
        q(RecordFilter { state: Some("acknowledged".into()), ..Default::default() }).await.records.len(),
        1
    );
    assert_eq!(q(RecordFilter { exclude_revoked: Some(true), ..Default::default() }).await.records.len(), 3);
    let future = palisade_net::now_ms() + 10 * 60_000;
    assert_eq!(q(RecordFilter { since_ms: Some(future), ..Default::default() }).await.records.len(), 0);
    assert_eq!(q(RecordFilter { until_ms: Some(future), ..Default::default() }).await.records.len(), 4);
    // Envelopes only when asked for.
    assert!(q(RecordFilter::default()).await.records.iter().all(|r| r.envelope.is_none()));
    assert!(q(RecordFilter { envelope: Some(true), ..Default::default() })
        .await
        .records
        .iter()
        .all(|r| r.envelope.is_some()));

    // The node reports its counts and feed head.
    let info = api.node().await.unwrap();
    assert_eq!(info.records.total, 4);
    assert_eq!(info.records.anomaly_update, 1);
    assert_eq!(info.feed_head.unwrap().contiguous_seq, 4);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_follow_the_cursor_to_the_end() {
    init_tracing();
    let node = ApiNode::start(2).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(node.api.submit(&attestation(i)).await.unwrap().id);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = node
            .api
            .query(&RecordFilter { limit: Some(3), cursor: cursor.clone(), ..Default::default() })
            .await
            .unwrap();
        assert!(page.records.len() <= 3);
        seen.extend(page.records.iter().map(|r| r.id));
        pages += 1;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(pages >= 3);
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);

    // The author's feed, paged in seq order.
    let me = node.handle.author().to_hex();
    let first = node.api.feed(&me, &PageParams { limit: Some(4), cursor: None }).await.unwrap();
    assert_eq!(first.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(first.head.contiguous_seq, 7);
    assert!(!first.flagged);
    let rest = node.api.feed(&me, &PageParams { limit: Some(4), cursor: first.next_cursor }).await.unwrap();
    assert_eq!(rest.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![5, 6, 7]);
    let feeds = node.api.feeds(&PageParams::default()).await.unwrap();
    assert_eq!(feeds.feeds.len(), 1);
    assert_eq!(feeds.feeds[0].head.records, 7);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_and_updates_are_checked_against_the_store() {
    init_tracing();
    let node = ApiNode::start(3).await;
    let api = &node.api;
    // A foreign record, imported.
    let foreign = foreign_feed(40, vec![attestation(1)]);
    let report = api.import_lines(&[export_line(&foreign[0])]).await.unwrap();
    assert_eq!(report.accepted, 1);

    let err = api.submit(&revocation(foreign[0].id())).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(409), Some("conflict")), "{err}");
    let err = api.submit(&revocation(palisade_types::RecordId([1; 32]))).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let mine = api.submit(&attestation(2)).await.unwrap();
    api.submit(&revocation(mine.id)).await.unwrap();
    let err = api.submit(&revocation(mine.id)).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(err.to_string().contains("already revoked"), "{err}");

    // Updates: unknown fingerprint, then a move the state machine forbids.
    let unknown = serde_json::json!({"kind": "anomaly_update", "fingerprint": hex::encode([3u8; 32]), "state": "resolved"});
    assert_eq!(api.submit_json(&unknown).await.unwrap_err().status(), Some(404));
    let an = api.submit_json(&anomaly_json("db", 9)).await.unwrap();
    let Statement::Anomaly(a) = api.record(&an.id.to_hex()).await.unwrap().statement else { panic!() };
    let fp = a.fingerprint();
    let open_again =
        serde_json::json!({"kind": "anomaly_update", "fingerprint": fp.to_hex(), "state": "open"});
    let err = api.submit_json(&open_again).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(err.to_string().contains("`state`"), "{err}");
    assert_eq!(api.anomaly(&fp.to_hex()).await.unwrap().state, AnomalyState::Open.as_str());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_count_distinct_trusted_authors_latest_unrevoked_unexpired() {
    init_tracing();
    let subject = sha(77);
    let key =
        |seed: u8| palisade_types::AuthorKey(palisade_types::fixtures::key(seed).verifying_key().to_bytes());
    let (a, b, c) = (key(51), key(52), key(53));
    let node = ApiNode::start_with(4, |cfg: &mut ApiConfig| {
        cfg.trust.insert("default".into(), TrustPolicy { authors: vec![a, b, c], threshold: 2 });
        cfg.trust.insert("strict".into(), TrustPolicy { authors: vec![a, b, c], threshold: 3 });
    })
    .await;
    let api = &node.api;
    let att = |verdict: &str, expires: Option<u64>| {
        let mut v = attestation_json("pkg:x", &subject, verdict);
        v["expires_at_ms"] = serde_json::json!(expires);
        v.as_object_mut().unwrap().remove("kind");
        Statement::Attestation(serde_json::from_value(v).unwrap())
    };
    let now = palisade_net::now_ms();
    // a: fail then pass (latest counts); b: pass; c: pass but expired; d (untrusted): pass.
    let fa = foreign_feed(51, vec![att("fail", None), att("pass", None)]);
    let fb = foreign_feed(52, vec![att("pass", None)]);
    let fc = foreign_feed_at(53, vec![att("pass", Some(now - 1))], now - 60_000);
    let fd = foreign_feed(54, vec![att("pass", None)]);
    let lines: Vec<_> = fa.iter().chain(&fb).chain(&fc).chain(&fd).map(export_line).collect();
    assert_eq!(api.import_lines(&lines).await.unwrap().accepted, 5);

    let v = api.verdict(&subject, &VerdictParams::default()).await.unwrap();
    assert_eq!(v.policy.as_ref().unwrap().name.as_deref(), Some("default"));
    assert_eq!((v.passing, v.failing, v.satisfied), (2, 0, true), "{v:#?}");
    assert_eq!(v.attestations.len(), 3, "expired c is left out: {v:#?}");
    assert!(v.attestations.iter().any(|x| x.author == key(54) && !x.trusted));
    let strict = api
        .verdict(&subject, &VerdictParams { policy: Some("strict".into()), ..Default::default() })
        .await
        .unwrap();
    assert!(!strict.satisfied);
    // Override in the query: only b trusted, k = 1.
    let only_b = VerdictParams { authors: Some(b.to_hex()), threshold: Some(1), ..Default::default() };
    let v = api.verdict(&subject, &only_b).await.unwrap();
    assert!(v.satisfied);
    assert_eq!(v.policy.unwrap().name, None);
    // Errors: unknown policy 404, threshold above n 400.
    let err = api
        .verdict(&subject, &VerdictParams { policy: Some("nope".into()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    let err =
        api.verdict(&subject, &VerdictParams { threshold: Some(4), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("`threshold`"), "{err}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdict_without_a_policy_trusts_nobody() {
    init_tracing();
    let node = ApiNode::start(5).await;
    node.api.submit_json(&attestation_json("pkg:y", &sha(5), "pass")).await.unwrap();
    let v = node.api.verdict(&sha(5), &VerdictParams::default()).await.unwrap();
    assert!(v.policy.is_none());
    assert!(!v.satisfied);
    assert_eq!(v.attestations.len(), 1);
    assert!(!v.attestations[0].trusted);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivocations_are_listed_and_flag_the_author() {
    init_tracing();
    let node = ApiNode::start(6).await;
    let one = foreign_feed(60, vec![attestation(1)]);
    let other = foreign_feed(60, vec![attestation(2)]);
    assert_ne!(one[0].id(), other[0].id());
    let report = node.api.import_lines(&[export_line(&one[0]), export_line(&other[0])]).await.unwrap();
    assert_eq!(report.accepted, 2, "{report:?}");
    let page = node.api.equivocations(&PageParams::default()).await.unwrap();
    assert_eq!(page.equivocations.len(), 1);
    assert_eq!(page.equivocations[0].seq, 1);
    assert_eq!(page.equivocations[0].author, one[0].author());
    let feed = node.api.feed(&one[0].author().to_hex(), &PageParams::default()).await.unwrap();
    assert!(feed.flagged);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_every_line_and_never_stops_at_a_bad_one() {
    init_tracing();
    let node = ApiNode::start(7).await;
    let recs = foreign_feed(70, vec![attestation(1), attestation(2), attestation(3)]);
    let line = |r: &palisade_types::VerifiedRecord| serde_json::to_string(&export_line(r)).unwrap();
    // A copy of record 2 with one signature byte flipped.
    let mut tampered = recs[1].wire_bytes().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered =
        serde_json::json!({"envelope": base64::engine::general_purpose::STANDARD.encode(&tampered)})
            .to_string();
    let wrong_id =
        serde_json::json!({"id": hex::encode([9u8; 32]), "envelope": export_line(&recs[2]).envelope})
            .to_string();
    let body = [
        line(&recs[0]),                       // 1 accepted
        "not json".to_string(),               // 2 rejected
        String::new(),                        // 3 blank, skipped
        tampered,                             // 4 rejected: bad signature
        line(&recs[0]),                       // 5 duplicate
        r#"{"envelope": "%%%"}"#.to_string(), // 6 rejected: bad base64
        "x".repeat(70_000),                   // 7 rejected: too long
        wrong_id,                             // 8 rejected: id mismatch
        line(&recs[1]),                       // 9 accepted
    ]
    .join("\n");
    let report = node.api.import_bytes(body.into_bytes()).await.unwrap();
    assert_eq!(
        (report.lines, report.accepted, report.duplicate, report.rejected),
        (8, 2, 1, 5),
        "{report:#?}"
    );
    let lines: Vec<u64> = report.rejections.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![2, 4, 6, 7, 8], "{report:#?}");
    assert!(report.rejections[1].error.contains("signature"), "{report:#?}");
    assert!(node.handle.store().contains(&recs[1].id()).unwrap());
    assert!(!node.handle.store().contains(&recs[2].id()).unwrap());
    let got = node.api.record(&recs[0].id().to_hex()).await.unwrap();
    assert_eq!(got.source, SourceView::Import);
    node.stop().await;
}
