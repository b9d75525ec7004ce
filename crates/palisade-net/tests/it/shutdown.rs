//! Clean shutdown: no task or thread outlives `Network::shutdown`.

use crate::harness::{init_tracing, TestNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_joins_every_pipeline_thread_closes_connections_and_flushes() {
    init_tracing();
    let mut a = TestNode::start(80).await;
    let mut b = TestNode::start(81).await;
    b.connect(&mut a).await;
    let id = a.submit(palisade_types::fixtures::attestation(1)).await;
    b.wait_for(|n| n.has(&id)).await;
    let (ha, hb) = (a.handle.clone(), b.handle.clone());
    assert!(ha.pipeline_threads_alive() >= 2 && hb.pipeline_threads_alive() >= 2);
    let (dir_b, _) = b.stop().await;
    assert_eq!(hb.pipeline_threads_alive(), 0, "no pipeline thread outlives shutdown");
    drop(hb);
    // Every store handle was released (connection tasks included): the database reopens.
    let store =
        palisade_store::Store::open(&palisade_store::StoreConfig::new(dir_b.path().join("db"))).unwrap();
    // The record B received by gossip was flushed before shutdown returned.
    assert!(store.contains(&id).unwrap());
    // A noticed B leave.
    let _ = a.stop().await;
    assert_eq!(ha.pipeline_threads_alive(), 0);
}
