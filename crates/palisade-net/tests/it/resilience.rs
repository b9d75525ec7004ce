//! Invalid records and equivocation, from a hostile libp2p peer.

use std::time::Duration;

use palisade_net::topics::TopicKind;
use palisade_types::fixtures::{attestation, key, FIXED_NOW_MS};
use palisade_types::{FeedWriter, RecordId};

use crate::harness::{init_tracing, TestNode};
use crate::hostile::Hostile;

fn now_ms() -> u64 {
    palisade_net::now_ms()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_records_are_rejected_not_stored_not_forwarded_and_cost_the_sender() {
    init_tracing();
    let mut a = TestNode::start(60).await;
    let mut c = TestNode::start(61).await;
    c.connect(&mut a).await;
    // Two hostile peers: gossipsub graylists a peer after about three invalid messages
    // (P4 = -10 x count^2 < -80), after which it ignores the peer entirely.
    let mut hostile = Hostile::new(62);
    hostile.connect(a.addr.clone(), a.peer_id()).await;
    let mut hostile2 = Hostile::new(64);
    hostile2.connect(a.addr.clone(), a.peer_id()).await;

    let mut w = FeedWriter::new(key(63));
    // 1. Bad signature.
    let good = w.sign_next(attestation(1), now_ms()).unwrap();
    let mut bad_sig = good.wire_bytes().to_vec();
    let n = bad_sig.len();
    bad_sig[n - 1] ^= 0x01;
    let bad_sig_id = good.id();
    // 2. Malformed bytes. 3. Oversized (over the record cap, under gossip's transmit cap).
    let junk = b"this is not a record".to_vec();
    let oversized = vec![7u8; palisade_types::limits::MAX_ENVELOPE_BYTES + 100];
    // 4. A valid attestation on the anomalies topic (wrong topic for its kind).
    let wrong_topic = w.sign_next(attestation(2), now_ms()).unwrap();

    hostile.publish(TopicKind::Attestations, bad_sig).await;
    hostile.publish(TopicKind::Attestations, junk).await;
    hostile2.publish(TopicKind::Attestations, oversized).await;
    hostile2.publish(TopicKind::Anomalies, wrong_topic.wire_bytes().to_vec()).await;

    // A valid record from an honest node still flows afterwards, and acts as a barrier:
    // once C has it, A has long decided the hostile messages.
    let honest = a.submit(attestation(3)).await;
    hostile.drive(Duration::from_millis(300)).await;
    hostile2.drive(Duration::from_millis(300)).await;
    c.wait_for(|n| n.has(&honest)).await;
    a.wait_for(|n| n.handle.stats().rejected >= 4).await;

    assert!(!a.has(&bad_sig_id) && !a.has(&wrong_topic.id()), "nothing invalid stored");
    assert!(!c.has(&bad_sig_id) && !c.has(&wrong_topic.id()), "nothing invalid forwarded");
    let metrics = a.handle.metrics();
    assert_eq!(metrics.reason_count("bad_signature"), 1);
    assert_eq!(metrics.reason_count("malformed_envelope"), 1);
    assert_eq!(metrics.reason_count("oversized"), 1);
    assert_eq!(metrics.reason_count("wrong_topic"), 1);
    // Only the bad-signature record and A's own honest one reached the verifier.
    assert!(a.handle.stats().signatures_verified <= 2, "junk never reached signature checks");
    // The sender lost reputation with the guard and in gossipsub.
    assert!(a.handle.guard().score(&hostile.peer_id()) < 0.0);
    let peers = a.handle.peers().await.unwrap();
    if let Some(p) = peers.iter().find(|p| p.peer_id == hostile.peer_id().to_string()) {
        assert!(p.gossip_score.unwrap_or(0.0) < 0.0, "gossipsub score dropped: {p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocating_author_is_flagged_on_every_node() {
    init_tracing();
    let mut a = TestNode::start(70).await;
    let mut b = TestNode::start(71).await;
    b.connect(&mut a).await;
    let mut hostile = Hostile::new(72);
    hostile.connect(a.addr.clone(), a.peer_id()).await;

    // One key, two different records at seq 1.
    let r1 = FeedWriter::new(key(73)).sign_next(attestation(1), now_ms()).unwrap();
    let r2 = FeedWriter::new(key(73)).sign_next(attestation(2), now_ms()).unwrap();
    let author = r1.author();
    hostile.publish(TopicKind::Attestations, r1.wire_bytes().to_vec()).await;
    a.wait_for(|n| n.has(&r1.id())).await;
    hostile.publish(TopicKind::Attestations, r2.wire_bytes().to_vec()).await;
    hostile.drive(Duration::from_millis(200)).await;

    for n in [&mut a, &mut b] {
        let ids: Vec<RecordId> = vec![r1.id(), r2.id()];
        n.wait_for(|n| n.has_all(&ids) && n.store().is_flagged(&author).unwrap()).await;
    }
    let _ = FIXED_NOW_MS;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_flood_gets_the_sender_banned_while_honest_records_flow() {
    init_tracing();
    let mut a = TestNode::start(100).await;
    let mut honest = TestNode::start(101).await;
    honest.connect(&mut a).await;
    let mut hostile = Hostile::new(102);
    let hostile_peer = hostile.peer_id();
    hostile.connect(a.addr.clone(), a.peer_id()).await;

    // Unique records with corrupted signatures: each passes dedup and costs a verification.
    let mut w = FeedWriter::new(key(103));
    let junk: Vec<Vec<u8>> = (0..2000u64)
        .map(|n| {
            let mut b = w.sign_next(attestation(n), now_ms()).unwrap().into_wire_bytes();
            let last = b.len() - 1;
            b[last] ^= 0x5a;
            b
        })
        .collect();
    let started = std::time::Instant::now();
    // Three rejections disconnect a peer (-75 <= -50); it takes a fourth, or a stay under
    // gossipsub's graylist, to ban it. The attacker dials back whenever it is dropped.
    let flood =
        hostile.flood(TopicKind::Attestations, junk, 2000, Some(a.addr.clone()), crate::harness::WAIT);

    // Honest traffic keeps flowing meanwhile.
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(honest.submit(attestation(1000 + i)).await);
    }
    a.wait_for(|n| n.handle.guard().is_banned_peer(&hostile_peer)).await;
    let banned_after = started.elapsed();
    a.wait_for(|n| n.has_all(&ids)).await;
    let sent = flood.await.unwrap();

    assert!(banned_after < Duration::from_secs(10), "banned after {banned_after:?}");
    let stats = a.handle.stats();
    // Far fewer signature checks than junk sent: graylisting and the ban cut it off early.
    assert!(stats.signatures_verified < 200, "verified {} of {sent} sent", stats.signatures_verified);
    assert!(a.handle.guard().score(&honest.peer_id()) >= 0.0, "the honest peer was not penalised");
    assert!(!a.handle.guard().is_banned_peer(&honest.peer_id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offender_that_keeps_coming_back_is_banned_without_sending_more() {
    init_tracing();
    let mut a = TestNode::start(104).await;
    let mut hostile = Hostile::new(105);
    let hostile_peer = hostile.peer_id();
    hostile.connect(a.addr.clone(), a.peer_id()).await;
    // Three bad signatures, one at a time: 3 x 25 points passes the guard's disconnect score
    // (50), not its ban score (100).
    let mut w = FeedWriter::new(key(106));
    for n in 1..=3u64 {
        let mut b = w.sign_next(attestation(n), now_ms()).unwrap().into_wire_bytes();
        let last = b.len() - 1;
        b[last] ^= 0x5a;
        hostile.publish(TopicKind::Attestations, b).await;
        a.wait_for(|node| node.handle.stats().rejected >= n).await;
    }
    let gone = hostile_peer.to_string();
    a.wait_for_event(|e| matches!(e, palisade_net::NetEvent::PeerDisconnected { peer } if *peer == gone))
        .await;
    assert!(!a.handle.guard().is_banned_peer(&hostile_peer), "three rejections disconnect, not ban");
    // It keeps dialling back. Gossipsub kept its score (P4 for the three invalid messages, P5
    // the guard's reputation), so it is graylisted from the start and nothing it sends is
    // read; each heartbeat it spends connected below the graylist costs 10 points and a
    // disconnect, and a few returns later the guard bans it.
    hostile.connect(a.addr.clone(), a.peer_id()).await;
    let stay =
        hostile.flood(TopicKind::Attestations, Vec::new(), 1, Some(a.addr.clone()), crate::harness::WAIT);
    a.wait_for(|n| n.handle.guard().is_banned_peer(&hostile_peer)).await;
    stay.await.unwrap();
    assert_eq!(a.handle.metrics().reason_count("bad_signature"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_copy_racing_ahead_does_not_shadow_the_valid_record() {
    init_tracing();
    // No sync to fall back on: the valid record must arrive by gossip or not at all.
    let net = palisade_net::NetConfig { sync_interval_secs: 3600, ..crate::harness::net_config() };
    let mut a = TestNode::start_with(107, net, crate::harness::guard_config()).await;
    let mut corrupter = Hostile::new(108);
    corrupter.connect(a.addr.clone(), a.peer_id()).await;
    let mut relay = Hostile::new(109);
    relay.connect(a.addr.clone(), a.peer_id()).await;

    let record = FeedWriter::new(key(112)).sign_next(attestation(1), now_ms()).unwrap();
    let mut corrupted = record.wire_bytes().to_vec();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 1;
    // The corrupted copy gets there first and is rejected ...
    corrupter.publish(TopicKind::Attestations, corrupted).await;
    a.wait_for(|n| n.handle.stats().rejected >= 1).await;
    // ... and the valid copy, same record id, still gets in by gossip.
    relay.publish(TopicKind::Attestations, record.wire_bytes().to_vec()).await;
    a.wait_for(|n| n.has(&record.id())).await;
    assert_eq!(a.handle.metrics().reason_count("bad_signature"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sybil_authors_behind_one_peer_are_capped() {
    init_tracing();
    // Default per-peer record limits and new-author budget (the harness raises the others).
    let guard = palisade_guard::GuardConfig {
        peer_records_per_sec: 50,
        peer_burst_records: 100,
        ..crate::harness::guard_config()
    };
    let net = palisade_net::NetConfig {
        new_authors_per_sec: 20,
        new_authors_burst: 50,
        ..crate::harness::net_config()
    };
    let mut a = TestNode::start_with(110, net, guard).await;
    let mut hostile = Hostile::new(111);
    hostile.connect(a.addr.clone(), a.peer_id()).await;
    let valid: Vec<Vec<u8>> = (0..1000u64)
        .map(|n| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&n.to_le_bytes());
            seed[31] = 0x5b;
            let key = palisade_types::ed25519_dalek::SigningKey::from_bytes(&seed);
            FeedWriter::new(key).sign_next(attestation(n), now_ms()).unwrap().into_wire_bytes()
        })
        .collect();
    let sent =
        hostile.flood(TopicKind::Attestations, valid, 2000, None, Duration::from_millis(200)).await.unwrap();
    assert_eq!(sent, 1000);
    // Every message has been decided once the ingest counters add up.
    a.wait_for(|n| {
        let s = n.handle.stats();
        s.accepted + s.ignored + s.rejected >= 1000
    })
    .await;
    let stored = a.store().record_count();
    // New-author burst (50) plus 20/s over the ~0.5 s flood, well below 1000.
    assert!(stored <= 100, "{stored} Sybil records stored");
    let m = a.handle.metrics();
    assert!(m.reason_count("new_author_budget") + m.reason_count("rate_limited") >= 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_graylisted_for_sharing_an_address_are_not_penalised() {
    init_tracing();
    let a = TestNode::start(130).await;
    // Thirteen well-behaved peers, all on 127.0.0.1: gossipsub's IP colocation score (P6)
    // gives each -5 x (13 - 8)^2 = -125, below the graylist line, though none of them sends
    // anything. Being graylisted for such a reason (or for broken IWANT promises while a node
    // is paused) must not turn into guard penalties: through P5 that would keep the peer
    // graylisted until it is banned.
    let mut ids = Vec::new();
    let mut stays = Vec::new();
    for seed in 131..=143u8 {
        let mut h = Hostile::new(seed);
        ids.push(h.peer_id());
        h.connect(a.addr.clone(), a.peer_id()).await;
        stays.push(h.flood(TopicKind::Attestations, Vec::new(), 1, None, crate::harness::WAIT));
    }
    let graylisted = |peers: &[palisade_net::PeerInfo]| {
        ids.iter().all(|id| {
            let id = id.to_string();
            peers.iter().any(|p| {
                p.peer_id == id
                    && p.gossip_score.is_some_and(|s| s < palisade_net::gossip::GRAYLIST_THRESHOLD)
            })
        })
    };
    let deadline = tokio::time::Instant::now() + crate::harness::WAIT;
    while !graylisted(&a.handle.peers().await.unwrap()) {
        assert!(tokio::time::Instant::now() < deadline, "the peers never fell below the graylist line");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Three heartbeats (one a second): the old rule charged 10 points at each of them.
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < watch_until {
        for id in &ids {
            assert_eq!(a.handle.guard().score(id), 0.0, "graylisted peer {id} was penalised");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(graylisted(&a.handle.peers().await.unwrap()), "every peer is still connected");
    for s in stays {
        s.abort();
    }
}
