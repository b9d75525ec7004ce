//! Several nodes: submit on A, read on B; SSE across nodes; export from A into an empty C.

use std::collections::BTreeSet;

use palisade_api::model::{ApiEvent, EventParams, RecordFilter};
use palisade_types::fixtures::{anomaly, attestation};

use crate::harness::{init_tracing, ApiNode, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_submitted_on_a_is_visible_on_b_and_streamed_to_b_subscribers() {
    init_tracing();
    let a = ApiNode::start(41).await;
    let mut b = ApiNode::start(42).await;
    b.connect(&a).await;
    let mut stream =
        b.api.events(&EventParams { types: Some("record_stored".into()), kinds: None }).await.unwrap();
    let receipt = a.api.submit(&attestation(9)).await.unwrap();

    // B's SSE stream delivers it (from gossip or sync).
    loop {
        let e = tokio::time::timeout(WAIT, stream.next_event()).await.expect("event").unwrap().expect("open");
        if let ApiEvent::RecordStored { id, author, .. } = e {
            if id == receipt.id {
                assert_eq!(author, a.handle.author());
                break;
            }
        }
    }
    // And B's API serves it, as received from A.
    let got = b.api.record(&receipt.id.to_hex()).await.unwrap();
    assert_eq!(got.author, a.handle.author());
    assert_ne!(got.source, palisade_api::model::SourceView::Local);
    let peers = b.api.peers().await.unwrap();
    assert!(peers.peers.iter().any(|p| p.peer_id == a.handle.peer_id().to_string()));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_from_a_and_import_into_an_empty_c_give_the_same_records() {
    init_tracing();
    let a = ApiNode::start(43).await;
    for i in 0..25 {
        let st = if i % 3 == 0 { anomaly(i) } else { attestation(i) };
        a.api.submit(&st).await.unwrap();
    }
    let lines = a.api.export_all(&RecordFilter::default()).await.unwrap();
    assert_eq!(lines.len(), 25);
    let c = ApiNode::start(44).await;
    assert_eq!(c.api.node().await.unwrap().records.total, 0);
    let report = c.api.import_lines(&lines).await.unwrap();
    assert_eq!((report.accepted, report.rejected, report.duplicate), (25, 0, 0), "{report:?}");
    let ids = |lines: &[palisade_api::model::ExportLine]| {
        lines.iter().map(|l| l.id.unwrap()).collect::<BTreeSet<_>>()
    };
    let back = c.api.export_all(&RecordFilter::default()).await.unwrap();
    assert_eq!(ids(&lines), ids(&back));
    // Byte-identical envelopes.
    let env = |lines: &[palisade_api::model::ExportLine]| {
        lines.iter().map(|l| l.envelope.clone()).collect::<BTreeSet<_>>()
    };
    assert_eq!(env(&lines), env(&back));
    // Importing again: all duplicates. A filtered export carries only that kind.
    let again = c.api.import_lines(&lines).await.unwrap();
    assert_eq!(again.duplicate, 25);
    let anomalies =
        a.api.export_all(&RecordFilter { kind: Some("anomaly".into()), ..Default::default() }).await.unwrap();
    assert_eq!(anomalies.len(), 9);
    assert_eq!(c.api.node().await.unwrap().records.anomaly, 9);
    a.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_disconnects_a_connected_peer() {
    init_tracing();
    let a = ApiNode::start(45).await;
    let mut b = ApiNode::start(46).await;
    b.connect(&a).await;
    let b = b;
    let b_id = b.handle.peer_id().to_string();
    // `connect` returns once B sees the connection; A's event loop may not have taken it yet.
    let a_knows_b = || async { a.api.peers().await.unwrap().peers.iter().any(|p| p.peer_id == b_id) };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !a_knows_b().await {
        assert!(tokio::time::Instant::now() < deadline, "A never listed B");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut stream =
        a.api.events(&EventParams { types: Some("peer_disconnected".into()), kinds: None }).await.unwrap();
    let r = a.api.disconnect(&b_id).await.unwrap();
    assert_eq!((r.peer_id.as_str(), r.disconnected), (b_id.as_str(), true));
    // The connection goes away (announced on A's event stream) and B leaves A's peer list.
    loop {
        let e = tokio::time::timeout(WAIT, stream.next_event()).await.expect("event").unwrap().expect("open");
        if matches!(&e, ApiEvent::PeerDisconnected { peer } if *peer == b_id) {
            break;
        }
    }
    let peers = a.api.peers().await.unwrap();
    assert!(!peers.peers.iter().any(|p| p.peer_id == b_id), "{peers:?}");
    // Disconnecting is not banning: B is not on the ban list and may dial again. (B may see
    // its new connection before the old one's close, so no "connected" event is promised:
    // wait for A's peer list instead, bounded.)
    assert!(a.api.bans().await.unwrap().bans.is_empty());
    b.api.dial(&a.addr.to_string()).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !a_knows_b().await {
        assert!(tokio::time::Instant::now() < deadline, "B could not connect again");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    a.stop().await;
    b.stop().await;
}

/// An equivocation found by import is announced, counted and gossiped as a proof, exactly as
/// one found in gossip: a connected peer that never saw either record flags the author.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocation_found_by_import_is_gossiped_to_peers() {
    use crate::harness::{export_line, foreign_feed};
    use palisade_net::NetEvent;
    init_tracing();
    let mut a = ApiNode::start(43).await;
    let mut b = ApiNode::start(44).await;
    b.connect(&a).await;
    // Gossip between them works (B is in A's mesh) before the import.
    let receipt = a.api.submit(&attestation(1)).await.unwrap();
    b.wait_for_event(|e| matches!(e, NetEvent::RecordStored { id, .. } if *id == receipt.id)).await;

    let one = foreign_feed(61, vec![attestation(1)]);
    let other = foreign_feed(61, vec![attestation(2)]);
    let author = one[0].author();
    let report = a.api.import_lines(&[export_line(&one[0]), export_line(&other[0])]).await.unwrap();
    assert_eq!(report.accepted, 2, "{report:?}");
    a.wait_for_event(|e| matches!(e, NetEvent::Equivocation { author: x, seq: 1 } if *x == author)).await;
    assert_eq!(a.handle.metrics().equivocations.get(), 1);
    // B gets the proof by gossip, stores both halves and flags the author.
    b.wait_for_event(|e| matches!(e, NetEvent::Equivocation { author: x, seq: 1 } if *x == author)).await;
    let feed = b.api.feed(&author.to_hex(), &Default::default()).await.unwrap();
    assert!(feed.flagged);
    assert_eq!(b.handle.metrics().reason_count("stored"), 3, "A's record and both halves");
    a.stop().await;
    b.stop().await;
}
