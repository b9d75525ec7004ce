//! `/v1/events`: filters, heartbeats, the subscriber cap, slow subscribers.

use std::time::Duration;

use palisade_api::model::{ApiEvent, BanRequest, EventParams};
use palisade_api::SseItem;
use palisade_types::fixtures::{anomaly, attestation};
use palisade_types::RecordKind;

use crate::harness::{init_tracing, ApiNode, WAIT};

async fn next_event(s: &mut palisade_api::EventStream) -> ApiEvent {
    tokio::time::timeout(WAIT, s.next_event()).await.expect("an event in time").unwrap().expect("stream open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_filtered_by_type_and_kind_with_heartbeats() {
    init_tracing();
    let node = ApiNode::start_with(31, |c| c.limits.sse_heartbeat = Duration::from_millis(200)).await;
    let params = EventParams { types: Some("record_stored,banned".into()), kinds: Some("anomaly".into()) };
    let mut only_anomalies = node.api.events(&params).await.unwrap();
    let mut all = node.api.events(&EventParams::default()).await.unwrap();

    let att = node.api.submit(&attestation(1)).await.unwrap();
    let an = node.api.submit(&anomaly(1)).await.unwrap();
    node.api
        .ban(&BanRequest {
            target: "ip:10.3.3.3".into(),
            duration_secs: Some(60),
            permanent: false,
            reason: None,
        })
        .await
        .unwrap();

    match next_event(&mut all).await {
        ApiEvent::RecordStored { id, kind, seq, .. } => {
            assert_eq!((id, kind, seq), (att.id, RecordKind::Attestation, 1))
        }
        e => panic!("{e:?}"),
    }
    match next_event(&mut only_anomalies).await {
        ApiEvent::RecordStored { id, .. } => assert_eq!(id, an.id),
        e => panic!("{e:?}"),
    }
    match next_event(&mut only_anomalies).await {
        ApiEvent::Banned { target, until_ms, .. } => {
            assert_eq!(target, "ip:10.3.3.3");
            assert!(until_ms.is_some());
        }
        e => panic!("{e:?}"),
    }
    // With nothing happening, heartbeat comments keep coming.
    let item = tokio::time::timeout(WAIT, only_anomalies.next_item()).await.unwrap().unwrap().unwrap();
    assert_eq!(item, SseItem::Comment("heartbeat".into()));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_are_capped_and_slots_come_back() {
    init_tracing();
    let node = ApiNode::start_with(32, |c| c.limits.max_sse_subscribers = 2).await;
    let a = node.api.events(&EventParams::default()).await.unwrap();
    let _b = node.api.events(&EventParams::default()).await.unwrap();
    let err = node.api.events(&EventParams::default()).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(429), Some("too_many_subscribers")), "{err}");
    drop(a);
    // The slot frees once the server notices the hang-up.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match node.api.events(&EventParams::default()).await {
            Ok(_) => break,
            Err(e) if e.status() == Some(429) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    node.stop().await;
}

/// The drop logic itself is unit-tested in `routes/events.rs` (a socket buffer holds far more
/// events than a test wants to generate); here: an idle subscriber never holds up the node,
/// and what it reads later is a prefix of the events, ended by `lagged` if it was dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_subscriber_never_blocks_the_node() {
    init_tracing();
    let node = ApiNode::start_with(33, |c| c.limits.sse_queue_events = 2).await;
    let mut idle =
        node.api.events(&EventParams { types: Some("record_stored".into()), kinds: None }).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(node.api.submit(&attestation(i)).await.unwrap().id);
    }
    let mut got = Vec::new();
    while got.len() < ids.len() {
        match tokio::time::timeout(WAIT, idle.next_event()).await.unwrap().unwrap() {
            Some(ApiEvent::RecordStored { id, .. }) => got.push(id),
            Some(ApiEvent::Lagged { .. }) | None => break,
            Some(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(got[..], ids[..got.len()]);
    node.stop().await;
}
