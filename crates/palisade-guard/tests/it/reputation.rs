//! Layer 5: scores, thresholds, decay, allowlist, IP bans.

use std::net::IpAddr;
use std::time::Duration;

use libp2p::PeerId;
use palisade_guard::{BanTarget, GuardConfig, PenaltyOutcome, PenaltyReason};

use crate::*;

#[test]
fn repeated_penalties_disconnect_then_ban() {
    let dir = tempfile::tempdir().unwrap();
    let g = guard(GuardConfig::default(), dir.path());
    let p = PeerId::random();
    let mut events = g.subscribe();
    // -25 per invalid signature; disconnect at -50, ban at -100.
    let outcomes: Vec<_> = (0..4).map(|_| g.penalize(&p, None, PenaltyReason::InvalidSignature)).collect();
    assert_eq!(outcomes[0], PenaltyOutcome::None);
    assert_eq!(outcomes[1], PenaltyOutcome::Disconnect);
    assert_eq!(outcomes[2], PenaltyOutcome::Disconnect);
    let PenaltyOutcome::Ban { until_ms } = outcomes[3] else { panic!("{outcomes:?}") };
    let expected = palisade_guard::now_ms() + 3600 * 1000;
    assert!(until_ms.abs_diff(expected) < 60_000, "ban should last ban_duration_secs");
    assert!(g.is_banned_peer(&p));
    // Penalising a banned peer reports the ban and changes nothing.
    assert_eq!(g.penalize(&p, None, PenaltyReason::Malformed), PenaltyOutcome::Ban { until_ms });

    let mut got = Vec::new();
    while let Ok(ev) = events.try_recv() {
        got.push(ev);
    }
    assert!(matches!(got[0], palisade_guard::GuardEvent::Disconnect { peer, .. } if peer == p));
    assert!(got.iter().any(
        |e| matches!(e, palisade_guard::GuardEvent::Banned { target: BanTarget::Peer(x), .. } if *x == p)
    ));
    let c = g.counters();
    assert_eq!(c["penalized.invalid_signature"], 4);
    assert_eq!(c["disconnected"], 2);
    assert_eq!(c["banned.peer"], 1);
}

#[tokio::test]
async fn scores_decay_back_toward_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig { score_half_life_secs: 1, ..GuardConfig::default() };
    let g = guard(cfg, dir.path());
    let p = PeerId::random();
    for _ in 0..4 {
        g.penalize(&p, None, PenaltyReason::Malformed);
    }
    let start = g.score(&p);
    assert!((start + 40.0).abs() < 0.5, "{start}");
    // Decay is a function of time: let two half-lives pass and check the arithmetic.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = g.score(&p);
    assert!(later > -11.0 && later < -9.0, "after two half-lives: {later}");
    // A decayed peer is below the disconnect line no more: one more penalty is not enough.
    assert_eq!(g.penalize(&p, None, PenaltyReason::Malformed), PenaltyOutcome::None);
}

#[test]
fn allowlisted_peers_and_ips_are_never_penalised() {
    let dir = tempfile::tempdir().unwrap();
    let friend = PeerId::random();
    let cfg = GuardConfig {
        allowlist_peers: vec![friend.to_base58()],
        allowlist_ips: vec!["10.7.0.0/16".into()],
        ..GuardConfig::default()
    };
    let g = guard(cfg, dir.path());
    assert!(g.is_allowlisted(&friend));
    for _ in 0..100 {
        assert_eq!(g.penalize(&friend, None, PenaltyReason::InvalidSignature), PenaltyOutcome::None);
    }
    assert_eq!(g.score(&friend), 0.0);
    assert!(!g.is_banned_peer(&friend));
    let behind_allowlisted_ip = PeerId::random();
    for _ in 0..100 {
        let o = g.penalize(
            &behind_allowlisted_ip,
            Some("10.7.3.4".parse().unwrap()),
            PenaltyReason::InvalidSignature,
        );
        assert_eq!(o, PenaltyOutcome::None);
    }
    assert_eq!(g.counters()["penalized.invalid_signature"], 0);
    // Allowlisted peers also bypass the rate limits (not the size cap).
    for _ in 0..1000 {
        assert!(g.admit_message(&friend, 100).is_allowed());
    }
}

#[test]
fn an_ip_is_banned_when_enough_banned_peers_share_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig { ip_ban_after_banned_peers: 3, ..GuardConfig::default() };
    let g = guard(cfg, dir.path());
    let ip: IpAddr = "10.20.30.40".parse().unwrap();
    let ban_peer = |p: &PeerId| loop {
        if let PenaltyOutcome::Ban { .. } = g.penalize(p, Some(ip), PenaltyReason::InvalidSignature) {
            break;
        }
    };
    let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
    ban_peer(&peers[0]);
    ban_peer(&peers[1]);
    assert!(!g.is_banned_ip(ip), "two banned peers are below the threshold");
    ban_peer(&peers[2]);
    assert!(g.is_banned_ip(ip), "the third banned peer on the IP bans the IP");
    assert!(!g.is_banned_ip("10.20.30.41".parse().unwrap()));
    // IPv4-mapped notation is the same address.
    assert!(g.is_banned_ip("::ffff:10.20.30.40".parse().unwrap()));
    let c = g.counters();
    assert_eq!(c["banned.peer"], 3);
    assert_eq!(c["banned.ip"], 1);
    let ip_ban = g.bans().into_iter().find(|b| b.target == BanTarget::Ip(ip)).unwrap();
    assert_eq!(ip_ban.reason, "ip_threshold");
    assert!(g.ledger(None, 100).iter().any(|e| e.reason == "ip_threshold" && e.ip == Some(ip)));
}

#[test]
fn manual_bans_validate_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let g = guard(GuardConfig::default(), dir.path());
    let p = PeerId::random();
    assert!(g.ban(BanTarget::Peer(p), Duration::ZERO, "x").is_err());
    g.ban(BanTarget::Peer(p), Duration::MAX, "permanent").unwrap();
    let b = g.bans();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].until_ms, palisade_guard::PERMANENT_UNTIL_MS);
    assert!(g.peer_state(&p).unwrap().banned_until_ms.is_some());
    assert!(g.peer_state(&PeerId::random()).is_none());
    assert_eq!(
        g.admit_message(&p, 10),
        palisade_guard::Admission::Deny(palisade_guard::DropReason::BannedPeer)
    );
}

#[test]
fn the_ban_table_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let g = guard(GuardConfig { max_bans: 16, ..GuardConfig::default() }, dir.path());
    for i in 0..20u64 {
        let ip = IpAddr::from([10, 99, 0, i as u8]);
        // Later bans last longer, so the first ones are the soonest to end.
        g.ban(BanTarget::Ip(ip), Duration::from_secs(100 + i), "bulk").unwrap();
    }
    assert_eq!(g.bans().len(), 16);
    assert!(!g.is_banned_ip(IpAddr::from([10, 99, 0, 0])));
    assert!(g.is_banned_ip(IpAddr::from([10, 99, 0, 19])));
    assert_eq!(g.counters()["ban_evictions"], 4);
}
