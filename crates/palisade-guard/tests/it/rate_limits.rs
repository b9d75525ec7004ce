//! Layer 4: per-peer message and byte rates, per-author quotas, Sybil authors, map bounds.

use libp2p::PeerId;
use palisade_guard::{Admission, DropReason, GuardConfig};
use palisade_types::AuthorKey;

use crate::*;

fn author(i: u32) -> AuthorKey {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&i.to_be_bytes());
    AuthorKey(k)
}

#[test]
fn admit_message_denies_above_the_message_rate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig { peer_messages_per_sec: 1, peer_burst_messages: 10, ..GuardConfig::default() };
    let g = guard(cfg, dir.path());
    let p = PeerId::random();
    let allowed = (0..50).filter(|_| g.admit_message(&p, 100).is_allowed()).count();
    assert_eq!(allowed, 10);
    assert_eq!(g.admit_message(&p, 100), Admission::Deny(DropReason::PeerRateExceeded));
    // Other peers are unaffected.
    assert!(g.admit_message(&PeerId::random(), 100).is_allowed());
    assert_eq!(g.counters()["dropped.peer_rate_exceeded"], 41);
    let st = g.peer_state(&p).unwrap();
    assert_eq!(st.messages.available, 0);
    assert_eq!(st.messages.burst, 10);
}

#[test]
fn a_peer_over_its_rate_for_longer_than_the_grace_is_disconnected_then_banned() {
    use palisade_guard::{PenaltyOutcome, OVER_RATE_RUN_GAP};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig {
        peer_messages_per_sec: 1,
        peer_burst_messages: 1,
        over_rate_grace_secs: 1,
        ..GuardConfig::default()
    };
    let g = guard(cfg, dir.path());
    let p = PeerId::random();
    // What the ingest pipeline does with a gossip message refused for a rate.
    let send = |g: &palisade_guard::Guard| match g.admit_message(&p, 100) {
        Admission::Deny(reason) => g.over_rate(&p, reason),
        Admission::Allow => PenaltyOutcome::None,
    };
    // Over the rate for half the grace: free (a burst the limit alone holds).
    let burst_end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < burst_end {
        assert_eq!(send(&g), PenaltyOutcome::None);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(g.score(&p), 0.0);
    // A break longer than the run gap: the next run starts from zero.
    std::thread::sleep(OVER_RATE_RUN_GAP + Duration::from_millis(200));
    // Bounded loops: the first outcome other than None within 3 s of a run.
    let until_penalty = |g: &palisade_guard::Guard| {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            let o = send(g);
            if o != PenaltyOutcome::None {
                return (o, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (PenaltyOutcome::None, started.elapsed())
    };
    let (first, after) = until_penalty(&g);
    assert_eq!(first, PenaltyOutcome::Disconnect, "one grace over the rate disconnects");
    assert!(after >= Duration::from_secs(1), "not before the grace: {after:?}");
    assert_eq!(g.counters()["penalized.persistent_over_rate"], 1);
    // It comes back and keeps at it: banned after one more grace.
    let (second, _) = until_penalty(&g);
    assert!(matches!(second, PenaltyOutcome::Ban { .. }), "{second:?}");
    // Only rate refusals count.
    let q = PeerId::random();
    assert_eq!(g.over_rate(&q, DropReason::Oversized), PenaltyOutcome::None);
}

#[test]
fn a_peer_over_its_rate_pays_one_strike_per_second_not_per_message() {
    use palisade_guard::RATE_STRIKE_INTERVAL;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig { peer_messages_per_sec: 1, peer_burst_messages: 1, ..GuardConfig::default() };
    let g = guard(cfg, dir.path());
    let p = PeerId::random();
    // What an embedder that applies rate strikes does: refused for a rate, strike.
    let send = |g: &palisade_guard::Guard| {
        if let Admission::Deny(reason) = g.admit_message(&p, 100) {
            g.strike_over_rate(&p, reason);
        }
    };
    let started = Instant::now();
    assert!(g.admit_message(&p, 100).is_allowed());
    // A thousand refusals at once: one strike (2 points), not a thousand.
    for _ in 0..1000 {
        send(&g);
    }
    assert_eq!(g.counters()["penalized.rate_exceeded"], 1);
    assert!((g.score(&p) + 2.0).abs() < 0.01, "score {}", g.score(&p));
    // Staying over the rate for two more intervals costs two more strikes (bounded loop).
    // Strikes at ~0 s, ~1 s and ~2 s; a fourth needs 3 s. The 900 ms margin absorbs a stalled thread.
    let until = started + RATE_STRIKE_INTERVAL * 2 + Duration::from_millis(900);
    while Instant::now() < until {
        send(&g);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(g.counters()["penalized.rate_exceeded"], 3);
    // Three strikes of 2 points, less a few seconds of decay (half-life 60 s).
    assert!(g.score(&p) < -5.5, "score {}", g.score(&p));
    // Only rate refusals strike: an oversized message does not (it has its own penalty).
    let q = PeerId::random();
    assert_eq!(g.strike_over_rate(&q, DropReason::Oversized), palisade_guard::PenaltyOutcome::None);
    assert_eq!(g.score(&q), 0.0);
}

#[test]
fn admit_message_denies_above_the_byte_rate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig {
        max_message_bytes: 16 * 1024,
        peer_bytes_per_sec: 1024,
        peer_burst_bytes: 64 * 1024,
        ..GuardConfig::default()
    };
    let g = guard(cfg, dir.path());
    let p = PeerId::random();
    let allowed = (0..10).filter(|_| g.admit_message(&p, 16 * 1024).is_allowed()).count();
    assert_eq!(allowed, 4);
    assert_eq!(g.admit_message(&p, 16 * 1024), Admission::Deny(DropReason::PeerByteRateExceeded));
    // Small messages still fit in what is left (the ~1 KiB/s refill).
    assert_eq!(g.counters()["dropped.peer_byte_rate_exceeded"], 7);
}

#[test]
fn author_quota_applies_across_peers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig { author_records_per_sec: 1, author_burst_records: 5, ..GuardConfig::default() };
    let g = guard(cfg, dir.path());
    let a = author(1);
    // Five relays of five different peers exhaust the author's burst.
    for _ in 0..5 {
        assert!(g.admit_author(&PeerId::random(), &a).is_allowed());
    }
    assert_eq!(g.admit_author(&PeerId::random(), &a), Admission::Deny(DropReason::AuthorQuotaExceeded));
    assert!(g.admit_author(&PeerId::random(), &author(2)).is_allowed());
}

/// One peer signing with 1000 fresh author keys: every author is new (full quota), yet the
/// per-peer record rate caps the peer, and the author map barely grows.
#[test]
fn sybil_authors_behind_one_peer_are_capped_by_the_peer_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig {
        peer_records_per_sec: 1,
        peer_burst_records: 20,
        author_records_per_sec: 100,
        author_burst_records: 100,
        ..GuardConfig::default()
    };
    let g = guard(cfg, dir.path());
    let sybil = PeerId::random();
    let admitted = (0..1000u32).filter(|i| g.admit_author(&sybil, &author(*i)).is_allowed()).count();
    assert!((20..=21).contains(&admitted), "{admitted} Sybil records admitted");
    assert!(g.counters()["dropped.peer_record_rate_exceeded"] >= 979);
    let authors = g.tracker_stats().into_iter().find(|s| s.map == "authors").unwrap();
    assert!(authors.keys <= 21, "{authors:?}");
    // An honest peer with its own author is unaffected.
    assert!(g.admit_author(&PeerId::random(), &author(5000)).is_allowed());
}

/// 100k distinct peers and 100k distinct authors: the maps never exceed their caps, and
/// the overflow is refused and counted (`tracker_full`).
#[test]
fn limiter_maps_are_bounded_under_100k_keys() {
    let dir = tempfile::tempdir().unwrap();
    let helper = PeerId::random();
    let cfg = GuardConfig {
        max_tracked_peers: 1000,
        max_tracked_authors: 1000,
        // The helper relays the Sybil authors without its own per-peer limit in the way.
        allowlist_peers: vec![helper.to_base58()],
        ..GuardConfig::default()
    };
    let g = guard(cfg, dir.path());
    let check = |g: &palisade_guard::Guard| {
        for s in g.tracker_stats() {
            assert!(s.keys <= s.cap, "{s:?}");
        }
    };
    for i in 0..100_000u32 {
        let _ = g.admit_message(&PeerId::random(), 100);
        let _ = g.admit_author(&helper, &author(i));
        if i % 5000 == 0 {
            check(&g);
        }
    }
    check(&g);
    let stats = g.tracker_stats();
    let peers = stats.iter().find(|s| s.map == "peer_messages").unwrap();
    assert_eq!(peers.cap, 1000);
    assert!(peers.keys > 0);
    assert!(g.counters()["dropped.tracker_full"] > 0);
    // Maintenance keeps working and the gauges follow.
    g.maintain();
    check(&g);
}
