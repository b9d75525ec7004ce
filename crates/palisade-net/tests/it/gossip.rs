//! Dissemination: gossip between live nodes, sync for late joiners, restarts and partitions.

use palisade_net::{NetConfig, NetEvent};
use palisade_types::fixtures::{anomaly, attestation};
use palisade_types::RecordId;

use crate::harness::{init_tracing, line, TestNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_a_record_reaches_the_other_and_is_verified_once() {
    init_tracing();
    let mut a = TestNode::start(1).await;
    let mut b = TestNode::start(2).await;
    b.connect(&mut a).await;
    // Let gossipsub exchange subscriptions, then publish.
    let id = a.submit(attestation(1)).await;
    b.wait_for(|n| n.has(&id)).await;
    assert_eq!(b.handle.stats().signatures_verified, 1, "verified exactly once");
    // A verified its own record once, on the way in (every record takes the same road), and
    // not again when it comes back.
    assert_eq!(a.handle.stats().signatures_verified, 1);
    let stored = b.store().get(&id).unwrap().unwrap();
    assert_eq!(stored.record.author(), a.handle.author());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_every_record_reaches_every_node_verified_once_each() {
    init_tracing();
    let mut nodes = Vec::new();
    for seed in 10..15 {
        nodes.push(TestNode::start(seed).await);
    }
    line(&mut nodes).await;
    // Close the ring so there are redundant paths (duplicates must die before verification).
    {
        let (first, rest) = nodes.split_at_mut(1);
        first[0].connect(rest.last_mut().unwrap()).await;
    }
    let mut ids: Vec<RecordId> = Vec::new();
    for i in 0..10u64 {
        let n = &nodes[(i % 5) as usize];
        let statement = if i % 2 == 0 { attestation(i) } else { anomaly(i) };
        ids.push(n.submit(statement).await);
    }
    for n in nodes.iter_mut() {
        let want = ids.clone();
        n.wait_for(|n| n.has_all(&want)).await;
    }
    for n in &nodes {
        let stats = n.handle.stats();
        // Each node verifies each record exactly once, its own 2 included (they take the same
        // road as every other record): 10.
        assert_eq!(stats.signatures_verified, 10, "node {} stats {stats:?}", n.seed);
        assert_eq!(stats.rejected, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_500_records_through_sync() {
    init_tracing();
    let mut a = TestNode::start(20).await;
    let mut b = TestNode::start(21).await;
    b.connect(&mut a).await;
    let mut ids = Vec::new();
    for i in 0..250u64 {
        ids.push(a.submit(attestation(i)).await);
        ids.push(b.submit(anomaly(i)).await);
    }
    {
        let want = ids.clone();
        a.wait_for(|n| n.has_all(&want)).await;
    }
    let mut c = TestNode::start(22).await;
    c.connect(&mut a).await;
    let want = ids.clone();
    c.wait_for(|n| n.has_all(&want)).await;
    assert_eq!(c.store().record_count(), 500);
    // Everything came by sync, not gossip (C was not there).
    assert!(c.handle.metrics().sync_records_received.get() >= 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_keeps_its_records_redials_its_peers_and_catches_up() {
    init_tracing();
    let mut a = TestNode::start(30).await;
    let mut b = TestNode::start(31).await;
    b.connect(&mut a).await;
    let own = b.submit(attestation(1)).await;
    let before = a.submit(attestation(2)).await;
    b.wait_for(|n| n.has(&before)).await;

    let (dir, seed) = b.stop().await;
    let missed: Vec<RecordId> = {
        let mut v = Vec::new();
        for i in 10..20 {
            v.push(a.submit(attestation(i)).await);
        }
        v
    };
    let mut b =
        TestNode::start_in(dir, seed, crate::harness::net_config(), crate::harness::guard_config()).await;
    assert!(b.has(&own) && b.has(&before), "records survive a restart");
    // No dial and no bootstrap peers: B finds A again through its peer book. It dials while
    // starting, so the connection can come before the test subscribes to B's events: wait
    // for B's peer list, not for an event.
    let want = a.peer_id().to_string();
    let deadline = tokio::time::Instant::now() + crate::harness::WAIT;
    while !b.handle.peers().await.unwrap().iter().any(|p| p.peer_id == want) {
        assert!(tokio::time::Instant::now() < deadline, "B did not redial A from its peer book");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    b.wait_for(|n| n.has_all(&missed)).await;
    // B has someone to ask now (its peer book): it signs once its own-feed check is over.
    let deadline = tokio::time::Instant::now() + crate::harness::WAIT;
    while b.handle.own_feed_checking() {
        assert!(tokio::time::Instant::now() < deadline, "the own-feed check never ended");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // B continues its own feed where it stopped: no seq is reused.
    let next = b.handle.submit(attestation(99)).await.unwrap();
    assert_eq!(next.seq, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_groups_converge_to_the_union_after_healing() {
    init_tracing();
    let mut left = vec![TestNode::start(40).await, TestNode::start(41).await];
    let mut right = vec![TestNode::start(42).await, TestNode::start(43).await];
    line(&mut left).await;
    line(&mut right).await;
    let mut ids = Vec::new();
    for i in 0..5u64 {
        ids.push(left[(i % 2) as usize].submit(attestation(i)).await);
        ids.push(right[(i % 2) as usize].submit(anomaly(i)).await);
    }
    // Heal: one link between the groups.
    {
        let (l, r) = (&mut left[1], &mut right[0]);
        l.connect(r).await;
    }
    for n in left.iter_mut().chain(right.iter_mut()) {
        let want = ids.clone();
        n.wait_for(|n| n.has_all(&want)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_announce_stored_records() {
    init_tracing();
    let mut a = TestNode::start(50).await;
    let mut b = TestNode::start(51).await;
    b.connect(&mut a).await;
    let id = a.submit(attestation(7)).await;
    let event = b.wait_for_event(|e| matches!(e, NetEvent::RecordStored { id: got, .. } if *got == id)).await;
    let NetEvent::RecordStored { source, seq, .. } = event else { unreachable!() };
    assert_eq!(seq, 1);
    assert!(matches!(source, palisade_store::Source::Gossip | palisade_store::Source::Sync));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_die_before_signature_work() {
    init_tracing();
    // An author's feed of 10; A holds all of it, C everything but seq 5.
    let feed = palisade_types::fixtures::feed(90, 10);
    let meta = palisade_store::StoredMeta {
        received_at_ms: palisade_net::now_ms(),
        source: palisade_store::Source::Import,
    };
    let prepare = |skip: Option<usize>| {
        let dir = tempfile::tempdir().unwrap();
        let store =
            palisade_store::Store::open(&palisade_store::StoreConfig::new(dir.path().join("db"))).unwrap();
        for (i, r) in feed.iter().enumerate() {
            if Some(i) != skip {
                store.insert(r, meta).unwrap();
            }
        }
        store.flush().unwrap();
        dir
    };
    let mut a =
        TestNode::start_in(prepare(None), 95, crate::harness::net_config(), crate::harness::guard_config())
            .await;
    let mut c = TestNode::start_in(
        prepare(Some(4)),
        96,
        crate::harness::net_config(),
        crate::harness::guard_config(),
    )
    .await;
    c.connect(&mut a).await;
    // C's head for the author is contiguous up to 4, so it pulls 5..=10 from A: one record it
    // lacks and five it has.
    let missing = feed[4].id();
    c.wait_for(|n| n.has(&missing)).await;
    c.wait_for(|n| n.handle.stats().duplicates_before_verify >= 5).await;
    let stats = c.handle.stats();
    assert_eq!(stats.signatures_verified, 1, "only the missing record was verified: {stats:?}");
    assert_eq!(stats.duplicates_before_verify, 5, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catching_up_never_sheds_its_own_pages() {
    init_tracing();
    // A has 2000 records of 4 authors on disk before it starts.
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let store =
            palisade_store::Store::open(&palisade_store::StoreConfig::new(dir.path().join("db"))).unwrap();
        let meta = palisade_store::StoredMeta { received_at_ms: 1, source: palisade_store::Source::Import };
        for seed in 40..44u8 {
            for r in palisade_types::fixtures::feed(seed, 500) {
                store.insert(&r, meta).unwrap();
                ids.push(r.id());
            }
        }
        store.flush().unwrap();
    }
    let mut a =
        TestNode::start_in(dir, 23, crate::harness::net_config(), crate::harness::guard_config()).await;
    // C's verify queue holds 64 records and it syncs only when it connects: pages it asked for
    // must wait for room rather than overflow the queue (which would leave gaps until the
    // next round, an hour away).
    let net =
        NetConfig { verify_queue_records: 64, sync_interval_secs: 3600, ..crate::harness::net_config() };
    let mut c = TestNode::start_with(24, net, crate::harness::guard_config()).await;
    c.connect(&mut a).await;
    c.wait_for(|n| n.has_all(&ids)).await;
    assert_eq!(c.handle.metrics().reason_count("verify_queue_full"), 0);
}
