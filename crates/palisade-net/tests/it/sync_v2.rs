//! `/palisade/sync/2` between real nodes: a round in agreement costs a constant handful of
//! bytes however many authors the nodes hold (counted by the nodes' own sync byte metrics);
//! differences are found and fetched; a node that speaks only sync/1 still syncs both ways.

use std::path::Path;

use palisade_net::metrics::{SyncBytesLabels, SyncRoundLabels};
use palisade_net::NetConfig;
use palisade_store::{Source, Store, StoreConfig, StoredMeta};
use palisade_types::{FeedWriter, RecordId, VerifiedRecord};

use crate::harness::{guard_config, init_tracing, net_config, TestNode};

/// One record by each of `count` authors (keys derived from `first..first + count`).
fn one_record_each(first: u64, count: u64) -> Vec<VerifiedRecord> {
    (first..first + count)
        .map(|i| {
            let seed = *blake3::hash(&i.to_le_bytes()).as_bytes();
            let key = palisade_types::ed25519_dalek::SigningKey::from_bytes(&seed);
            FeedWriter::new(key)
                .sign_next(palisade_types::fixtures::attestation(i), palisade_net::now_ms())
                .unwrap()
        })
        .collect()
}

fn store_at(dir: &Path, records: &[VerifiedRecord]) {
    let store = Store::open(&StoreConfig::new(dir.join("db"))).unwrap();
    let meta = StoredMeta { received_at_ms: 1, source: Source::Import };
    // Groups of 64, flushed, as the ingest pipeline writes: sled 0.34 holds on to memory
    // for large batches of scattered keys.
    for chunk in records.chunks(64) {
        let items: Vec<_> = chunk.iter().map(|r| (r, meta)).collect();
        store.insert_many(&items).unwrap();
        store.flush().unwrap();
    }
}

/// A copy of `from`'s contents in `to` (`cp -a`: what an operator would use).
fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp").arg("-a").arg(from.join(".")).arg(to).status().unwrap();
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}

fn sync_bytes(node: &TestNode, protocol: &'static str) -> u64 {
    let m = &node.handle.metrics().sync_bytes;
    ["sent", "received"]
        .iter()
        .map(|&direction| m.get_or_create(&SyncBytesLabels { protocol, direction }).get())
        .sum()
}

fn rounds(node: &TestNode, protocol: &'static str) -> u64 {
    node.handle.metrics().sync_rounds.get_or_create(&SyncRoundLabels { protocol }).get()
}

fn finished(node: &TestNode, protocol: &'static str) -> u64 {
    node.handle.metrics().sync_rounds_finished.get_or_create(&SyncRoundLabels { protocol }).get()
}

/// Two nodes that hold the same 100k authors: every sync/2 round between them (on connect,
/// then every 2 s, both ways) moves a few hundred bytes, against 4.8 MB for sync/1's walk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_between_nodes_in_agreement_moves_under_4_kib_at_100k_authors() {
    init_tracing();
    const AUTHORS: u64 = 100_000;
    let records = one_record_each(0, AUTHORS);
    let dir_a = tempfile::tempdir().unwrap();
    store_at(dir_a.path(), &records);
    let dir_b = tempfile::tempdir().unwrap();
    copy_dir(dir_a.path(), dir_b.path());
    let mut a = TestNode::start_in(dir_a, 61, net_config(), guard_config()).await;
    let mut b = TestNode::start_in(dir_b, 62, net_config(), guard_config()).await;
    assert_eq!(a.store().author_count(), AUTHORS as usize);
    b.connect(&mut a).await;
    // The rounds on connect, and at least one timer round each way, finished.
    b.wait_for(|n| finished(n, "sync/2") >= 2).await;
    a.wait_for(|n| finished(n, "sync/2") >= 2).await;
    // With two nodes every frame of every round, either way, is on b's counter (sent or
    // received). A round started and not finished only adds bytes to the numerator.
    let bytes = sync_bytes(&b, "sync/2");
    let rounds_done = finished(&a, "sync/2") + finished(&b, "sync/2");
    let per_round = bytes / rounds_done;
    assert!(per_round <= 4096, "{per_round} bytes per round ({bytes} bytes, {rounds_done} rounds)");
    assert_eq!(sync_bytes(&b, "sync/1"), 0, "no sync/1 traffic between two sync/2 nodes");
    eprintln!("sync/2 in agreement at {AUTHORS} authors: {per_round} bytes per round ({bytes} bytes, {rounds_done} rounds)");
}

/// Nodes that differ in 11 of 5,011 authors (authors only one holds, and a longer feed) find
/// and fetch every difference through sync/2, at a fraction of the heads walks' bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differences_are_found_and_fetched_through_sync_2() {
    init_tracing();
    let shared = one_record_each(1_000_000, 5_000);
    let only_b = one_record_each(2_000_000, 10);
    let longer = palisade_types::fixtures::feed(77, 30);
    let dir_a = tempfile::tempdir().unwrap();
    store_at(dir_a.path(), &shared);
    store_at(dir_a.path(), &longer[..10]);
    let dir_b = tempfile::tempdir().unwrap();
    store_at(dir_b.path(), &shared);
    store_at(dir_b.path(), &only_b);
    store_at(dir_b.path(), &longer);
    let net = NetConfig { sync_interval_secs: 3600, ..net_config() };
    let mut a = TestNode::start_in(dir_a, 63, net.clone(), guard_config()).await;
    let mut b = TestNode::start_in(dir_b, 64, net, guard_config()).await;
    a.connect(&mut b).await;
    let wanted: Vec<RecordId> = only_b.iter().chain(&longer).map(|r| r.id()).collect();
    a.wait_for(|n| n.has_all(&wanted)).await;
    // Both nodes started a round on connect; a's counter holds both rounds' bytes (as client
    // and as server) and the 30 records fetched. Two sync/1 walks would move every head twice.
    let bytes = sync_bytes(&a, "sync/2");
    let heads_walks = 2 * 5_011 * 48;
    assert!(bytes * 4 < heads_walks, "{bytes} bytes of sync/2 against {heads_walks} for two heads walks");
    assert_eq!(sync_bytes(&a, "sync/1"), 0);
    eprintln!("sync/2 with 11 differing authors of 5,011: {bytes} bytes in two rounds, records included");
}

/// A node that speaks only sync/1 (`network.sync_v2 = false`, the protocol of 0.8) and a
/// sync/2 node sync both ways: the sync/2 node falls back to the heads walk with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_speaks_only_sync_1_still_syncs_both_ways() {
    init_tracing();
    let old_feed = palisade_types::fixtures::feed(78, 5);
    let new_feed = palisade_types::fixtures::feed(79, 5);
    let dir_old = tempfile::tempdir().unwrap();
    store_at(dir_old.path(), &old_feed);
    let dir_new = tempfile::tempdir().unwrap();
    store_at(dir_new.path(), &new_feed);
    let v1_only = NetConfig { sync_v2: false, ..net_config() };
    let mut old = TestNode::start_in(dir_old, 65, v1_only, guard_config()).await;
    let mut new = TestNode::start_in(dir_new, 66, net_config(), guard_config()).await;
    new.connect(&mut old).await;
    let new_ids: Vec<RecordId> = new_feed.iter().map(|r| r.id()).collect();
    let old_ids: Vec<RecordId> = old_feed.iter().map(|r| r.id()).collect();
    old.wait_for(|n| n.has_all(&new_ids)).await;
    new.wait_for(|n| n.has_all(&old_ids)).await;
    // Later rounds with the old node are heads walks from the start.
    new.wait_for(|n| rounds(n, "sync/1") >= 1).await;
    assert_eq!(sync_bytes(&new, "sync/2"), 0, "no stream negotiated sync/2");
    assert_eq!(sync_bytes(&old, "sync/2"), 0);
}
