//! Layer 6: the bounded ledger, counters and metrics, live limit changes.

use libp2p::PeerId;
use palisade_guard::{Action, Admission, DropReason, Guard, GuardConfig};
use prometheus_client::registry::Registry;

use crate::*;

#[test]
fn ledger_is_bounded_and_pages_by_seq() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig { ledger_capacity_entries: 16, ..GuardConfig::default() };
    let g = guard(cfg, dir.path());
    // Distinct peers so no two entries fold.
    for _ in 0..100 {
        g.record_drop(Some(&PeerId::random()), None, DropReason::VerifyQueueFull);
    }
    let all = g.ledger(None, 1000);
    assert_eq!(all.len(), 16);
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(*seqs.last().unwrap(), 100);
    let page = g.ledger(Some(90), 5);
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![91, 92, 93, 94, 95]);
    assert!(all.iter().all(|e| e.action == Action::Dropped && e.reason == "verify_queue_full"));
    assert_eq!(g.counters()["dropped.verify_queue_full"], 100);
    assert_eq!(g.counters()["ledger_overwritten"], 84);

    // A flood from one peer folds into one entry with a count; the counter stays exact.
    let p = PeerId::random();
    for _ in 0..1000 {
        g.record_drop(Some(&p), Some("10.0.0.1".parse().unwrap()), DropReason::InvalidSignature);
    }
    let last = g.ledger(Some(100), 10);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].count, 1000);
    assert_eq!(last[0].peer, Some(p));
    assert_eq!(g.counters()["dropped.invalid_signature"], 1000);
}

#[test]
fn counters_and_prometheus_metrics_increase_per_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::default();
    let cfg = GuardConfig { peer_burst_messages: 1, peer_messages_per_sec: 1, ..GuardConfig::default() };
    let g = Guard::new(cfg, open_store(dir.path()), &mut registry).unwrap();
    let p = PeerId::random();
    let _ = g.admit_message(&p, 10);
    for _ in 0..3 {
        assert_eq!(g.admit_message(&p, 10), Admission::Deny(DropReason::PeerRateExceeded));
    }
    let _ = g.admit_message(&p, 100 * 1024 * 1024);
    g.penalize(&p, None, palisade_guard::PenaltyReason::RateExceeded);
    g.maintain();

    let c = g.counters();
    assert_eq!(c["dropped.peer_rate_exceeded"], 3);
    assert_eq!(c["dropped.oversized"], 1);
    assert_eq!(c["penalized.rate_exceeded"], 1);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "palisade_guard_drops_total{reason=\"peer_rate_exceeded\"} 3",
        "palisade_guard_drops_total{reason=\"oversized\"} 1",
        "palisade_guard_penalties_total{reason=\"rate_exceeded\"} 1",
        "palisade_guard_bans_total{target=\"peer\"} 0",
        "palisade_guard_throttled_bytes_total{direction=\"inbound\"} 0",
        "palisade_guard_tracked_keys{map=\"peer_messages\"} 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

#[test]
fn set_limit_changes_behaviour_live_and_rejects_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let g = guard(GuardConfig::default(), dir.path());
    let p = PeerId::random();
    assert!((0..50).all(|_| g.admit_message(&p, 10).is_allowed()));

    g.set_limit("limits.peer_burst_messages", "3").unwrap();
    g.set_limit("peer_messages_per_sec", "1").unwrap();
    assert_eq!(g.limits().peer_burst_messages, 3);
    let q = PeerId::random();
    assert_eq!((0..10).filter(|_| g.admit_message(&q, 10).is_allowed()).count(), 3);

    let e = g.set_limit("limits.peer_burst_messages", "0").unwrap_err();
    assert_eq!(e.key, "limits.peer_burst_messages");
    let e = g.set_limit("limits.max_message_bytes", "100").unwrap_err();
    assert_eq!(e.key, "limits.max_message_bytes");
    let e = g.set_limit("limits.peer_burst_bytes", "1").unwrap_err();
    assert!(e.allowed.contains("limits.max_message_bytes"), "{e}");
    let e = g.set_limit("limits.max_established_total", "5").unwrap_err();
    assert!(e.allowed.contains("restart"), "{e}");
    let e = g.set_limit("limits.bogus", "5").unwrap_err();
    assert_eq!(e.key, "limits.bogus");
    // Rejected changes leave the limits as they were.
    assert_eq!(g.limits().peer_burst_messages, 3);

    // The allowlist is live too.
    g.set_limit("limits.allowlist_peers", &q.to_base58()).unwrap();
    assert!(g.is_allowlisted(&q));
    assert!(g.admit_message(&q, 10).is_allowed());
    // Size cap changes apply at once.
    g.set_limit("limits.max_message_bytes", "20000").unwrap();
    assert_eq!(g.admit_message(&q, 20_001), Admission::Deny(DropReason::Oversized));
}
