//! The store quota seen from sync: a node that evicted part of the network's records does
//! not fetch them again (issue 16). It keeps the evicted authors' feed heads, so every later
//! sync round finds nothing to ask for.

use std::time::Duration;

use palisade_store::{Source, StoredMeta};
use palisade_types::fixtures::{attestation, key, FIXED_NOW_MS};
use palisade_types::FeedWriter;

use crate::harness::{guard_config, init_tracing, net_config, TestNode, WAIT};

const QUOTA: u64 = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_ranges_are_not_fetched_again_by_sync() {
    init_tracing();
    let mut full = TestNode::start(40).await;
    // 40 authors × 30 records: about three times the small node's quota.
    let mut writers: Vec<FeedWriter> = (60..100).map(|s| FeedWriter::new(key(s))).collect();
    let mut records = Vec::new();
    for n in 1..=30u64 {
        for w in &mut writers {
            records.push(w.sign_next(attestation(n), FIXED_NOW_MS - 1_000_000 + n).unwrap());
        }
    }
    let meta = StoredMeta { received_at_ms: FIXED_NOW_MS, source: Source::Import };
    let items: Vec<_> = records.iter().map(|r| (r, meta)).collect();
    full.store().insert_many(&items).unwrap();
    let heads: Vec<_> = writers.iter().map(|w| w.author()).collect();

    let mut small =
        TestNode::start_with_quota(tempfile::tempdir().unwrap(), 41, net_config(), guard_config(), QUOTA)
            .await;
    small.connect(&mut full).await;
    // Caught up: every author's feed head is the full one (evicted ranges included).
    small
        .wait_for(|n| {
            heads.iter().all(|a| n.store().feed_head(a).unwrap().is_some_and(|h| h.contiguous_seq == 30))
        })
        .await;
    // The writer evicts right after its batch is applied: the count can be over the quota for
    // that moment, so wait for it rather than read it once.
    small.wait_for(|n| n.store().usage().bytes_used <= QUOTA).await;
    let usage = small.store().usage();
    assert!(usage.evicted_records > 0 && usage.bytes_used <= QUOTA, "{usage:?}");

    // Three more sync rounds (heads requests the full node serves) fetch nothing.
    let received = small.handle.metrics().sync_records_received.get();
    let served = full.handle.metrics().sync_requests_served.get();
    let deadline = tokio::time::Instant::now() + WAIT;
    while full.handle.metrics().sync_requests_served.get() < served + 3 {
        assert!(tokio::time::Instant::now() < deadline, "no sync rounds within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        small.handle.metrics().sync_records_received.get(),
        received,
        "sync asked for records the quota had evicted"
    );
    assert_eq!(small.store().usage().refused_evicted, 0, "nothing evicted came back");
}
