//! Layer 5: bans are enforced on connections, persisted across restarts, and expire.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::PeerId;
use palisade_guard::{BanTarget, GuardConfig, GuardEvent, PenaltyOutcome, PenaltyReason};

use crate::*;

/// Waits for the guard to announce that `target` is unbanned.
async fn until_unbanned(events: &mut tokio::sync::broadcast::Receiver<GuardEvent>, target: BanTarget) {
    within("the ban to expire", async {
        loop {
            match events.recv().await {
                Ok(GuardEvent::Unbanned { target: t }) if t == target => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
}

/// Ban a peer and an IP, restart the guard on the same store: both are still banned and
/// cannot connect; once the bans expire, both can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_survive_restart_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let key = Keypair::generate_ed25519();
    let banned = PeerId::from(key.public());
    let banned_ip: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    let ban_for = Duration::from_secs(4);
    {
        let g = guard(GuardConfig::default(), dir.path());
        g.ban(BanTarget::Peer(banned), ban_for, "test: spam").unwrap();
        g.ban(BanTarget::Ip(banned_ip), ban_for, "test: flood").unwrap();
        assert!(g.is_banned_peer(&banned));
        assert_eq!(g.bans().len(), 2);
        // Dropping the guard releases the store: this is the restart.
    }
    let g = guard(GuardConfig::default(), dir.path());
    assert!(g.is_banned_peer(&banned), "peer ban lost across restart");
    assert!(g.is_banned_ip(banned_ip), "IP ban lost across restart");
    let bans = g.bans();
    assert_eq!(bans.len(), 2);
    assert!(bans.iter().any(|b| b.reason == "test: spam"));
    let mut guard_events = g.subscribe();

    let (addr, node_id, _events, node) = spawn_node(&g).await;
    let mut peer = peer_swarm(key);
    assert_eq!(dial_and_push(&mut peer, node_id, &addr).await, DialOutcome::Failed, "banned peer got in");
    assert!(g.counters()["dropped.banned_peer"] >= 1);
    let ip_ok = loopback_aliases_work();
    if ip_ok {
        let mut from_banned_ip = peer_swarm_from(Keypair::generate_ed25519(), banned_ip);
        assert_eq!(dial_once(&mut from_banned_ip, &addr).await, DialOutcome::Failed, "banned IP got in");
        assert!(g.counters()["dropped.banned_ip"] >= 1);
    }

    // Expiry unblocks: the node's maintenance tick lifts the bans and says so.
    until_unbanned(&mut guard_events, BanTarget::Peer(banned)).await;
    assert!(!g.is_banned_peer(&banned));
    assert_eq!(dial_and_push(&mut peer, node_id, &addr).await, DialOutcome::Connected);
    if ip_ok {
        while g.is_banned_ip(banned_ip) {
            until_unbanned(&mut guard_events, BanTarget::Ip(banned_ip)).await;
        }
        let mut from_ip = peer_swarm_from(Keypair::generate_ed25519(), banned_ip);
        assert_eq!(dial_once(&mut from_ip, &addr).await, DialOutcome::Connected);
    }
    assert!(g.bans().is_empty());
    // Stop the node (it holds a guard clone, hence the store) before reopening the store.
    node.abort();
    let _ = node.await;
    drop(g);
    drop((peer, guard_events));
    // Expired bans were deleted from the store too. The node's connection tasks wind down
    // asynchronously after its swarm is dropped; sled has no "unlocked" event, so retry the
    // open for a bounded time.
    let store = within("the store lock to be released", async {
        loop {
            match palisade_store::Store::open(&palisade_store::StoreConfig::new(dir.path().join("db"))) {
                Ok(s) => return s,
                Err(palisade_store::StoreError::Locked { .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    assert!(store.bans().unwrap().is_empty(), "expired bans left in the store");
}

/// A connected peer that gets banned by score is disconnected at once and cannot come back;
/// an admin unban lets it in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_ban_closes_live_connections_and_unban_restores() {
    let dir = tempfile::tempdir().unwrap();
    let g = guard(GuardConfig::default(), dir.path());
    let (addr, node_id, mut events, node) = spawn_node(&g).await;
    let key = Keypair::generate_ed25519();
    let id = PeerId::from(key.public());
    let mut peer = peer_swarm(key.clone());
    assert_eq!(dial_and_push(&mut peer, node_id, &addr).await, DialOutcome::Connected);
    // The dialler can see the connection before the node's swarm has: penalise only once the
    // node (and so the guard, which learns the peer's IP there) has it too.
    within("the node to see the connection", async {
        loop {
            match events.recv().await {
                Some(Report::Established { peer, .. }) if peer == id => return,
                Some(_) => {}
                None => panic!("node stopped"),
            }
        }
    })
    .await;

    let mut outcome = PenaltyOutcome::None;
    for _ in 0..10 {
        outcome = g.penalize(&id, None, PenaltyReason::InvalidSignature);
        if matches!(outcome, PenaltyOutcome::Ban { .. }) {
            break;
        }
    }
    assert!(matches!(outcome, PenaltyOutcome::Ban { .. }), "{outcome:?}");
    // The node closes the connection (the peer's swarm must be polled to see it).
    let peer_task = keep_polling(peer);
    within("the banned peer's connection to close", async {
        loop {
            match events.recv().await {
                Some(Report::Closed { peer, .. }) if peer == id => return,
                Some(_) => {}
                None => panic!("node stopped"),
            }
        }
    })
    .await;
    peer_task.abort();
    // The IP of the peer was learned from its connection.
    let ledger = g.ledger(None, 100);
    let ban = ledger.iter().find(|e| e.action == palisade_guard::Action::Banned).unwrap();
    assert_eq!(ban.peer, Some(id));
    assert_eq!(ban.ip, Some("127.0.0.1".parse().unwrap()));

    assert!(g.unban(&BanTarget::Peer(id)).unwrap());
    assert!(!g.unban(&BanTarget::Peer(id)).unwrap(), "second unban finds nothing");
    assert_eq!(g.score(&id), 0.0, "unban forgets the score");
    let mut again = peer_swarm(key);
    assert_eq!(dial_and_push(&mut again, node_id, &addr).await, DialOutcome::Connected);
    node.abort();
}

/// Manual bans name their target: banning several peers that connect from one address (nodes
/// behind one NAT, or on one host) does not ban the address, so the others stay reachable.
/// Bans earned by score do escalate (`an_ip_is_banned_when_enough_banned_peers_share_it`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_bans_of_peers_sharing_an_ip_do_not_ban_the_ip() {
    let dir = tempfile::tempdir().unwrap();
    let g = guard(GuardConfig { ip_ban_after_banned_peers: 3, ..GuardConfig::default() }, dir.path());
    let (addr, _node_id, mut events, node) = spawn_node(&g).await;
    let mut peers = Vec::new();
    for _ in 0..4 {
        let mut s = peer_swarm(Keypair::generate_ed25519());
        assert_eq!(dial_once(&mut s, &addr).await, DialOutcome::Connected);
        peers.push((*s.local_peer_id(), s));
    }
    // The guard knows each peer's address once the node has seen its connection.
    let mut established = std::collections::HashSet::new();
    within("the node to see all four connections", async {
        while established.len() < peers.len() {
            if let Some(Report::Established { peer, .. }) = events.recv().await {
                established.insert(peer);
            }
        }
    })
    .await;
    for (p, _) in &peers {
        g.ban(BanTarget::Peer(*p), Duration::from_secs(600), "operator: partition drill").unwrap();
    }
    let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    assert!(peers.iter().all(|(p, _)| g.is_banned_peer(p)));
    assert!(!g.is_banned_ip(ip), "four manual bans on one address banned the address");
    assert_eq!(g.counters()["banned.ip"], 0);
    let mut other = peer_swarm(Keypair::generate_ed25519());
    assert_eq!(
        dial_once(&mut other, &addr).await,
        DialOutcome::Connected,
        "a fifth peer on the address got in"
    );
    node.abort();
}

/// A ban storm (a thousand Sybil peers banned at once, as the network loop does through
/// `penalize`) is queued for the node-state writer, which writes it in a few flushed batches
/// rather than one fsync per ban; every ban is on disk once the writer is closed, and a
/// restarted guard re-applies them all.
#[test]
fn a_ban_storm_is_persisted_in_batches_off_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig { max_bans: 2000, ip_ban_after_banned_peers: 0, ..GuardConfig::default() };
    let peers: Vec<PeerId> = (0..1000).map(|_| PeerId::random()).collect();
    {
        let guard = guard(cfg.clone(), dir.path());
        for peer in &peers {
            // Five invalid signatures (25 points each) reach the ban line (-100).
            let mut outcome = PenaltyOutcome::None;
            for _ in 0..5 {
                outcome = guard.penalize(peer, None, PenaltyReason::InvalidSignature);
            }
            assert!(matches!(outcome, PenaltyOutcome::Ban { .. }), "{outcome:?}");
        }
        assert_eq!(guard.bans().len(), 1000, "every ban applies at once, in memory");
        guard.close_state_writer();
        let stats = guard.state_writer().stats();
        assert_eq!((stats.pending, stats.refused, stats.failed_batches), (0, 0, 0), "{stats:?}");
        assert!(
            stats.batches < 1000,
            "the storm was written in {} flushed batches, not one per ban",
            stats.batches
        );
    }
    let guard = guard(cfg, dir.path());
    for peer in &peers {
        assert!(guard.is_banned_peer(peer), "a ban of the storm was lost across the restart");
    }
}
