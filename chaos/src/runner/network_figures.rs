//! Network figures read from every live node's metrics at the end of a run: how many copies
//! of each record gossip delivered to a node (bandwidth amplification: gossipsub's mesh
//! degree, 6, is the reference), the sync bytes a node moved, and peak RSS per node. Figures
//! only: the scale scenario reports them, nothing is judged on them.

use serde_json::{json, Map, Value};

use super::{lock, Run};
use crate::nodeapi::{counter_series, scrape_metrics};
use crate::report::percentile;

/// Every message gossipsub received on our topics, duplicates included.
const RECEIVED_UNFILTERED: &str = "gossipsub_topic_msg_recv_counts_unfiltered";
/// The first copy of each message only.
const RECEIVED_FIRST: &str = "gossipsub_topic_msg_recv_counts";
/// Sync frame bytes, both protocols and directions.
const SYNC_BYTES: &str = "palisade_sync_bytes";

fn sum(text: &str, family: &str) -> Option<f64> {
    counter_series(text, family).map(|s| s.iter().map(|(_, v)| v).sum())
}

/// p50, p90 and max of per-node values.
pub(super) fn spread(mut values: Vec<f64>) -> Value {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return Value::Null;
    }
    let round = |v: Option<f64>| v.map(|v| (v * 100.0).round() / 100.0);
    json!({
        "p50": round(percentile(&values, 0.5)),
        "p90": round(percentile(&values, 0.9)),
        "max": round(values.last().copied()),
        "nodes": values.len(),
    })
}

/// The figures, keyed `gossip_copies_per_record`, `sync_mib_per_node`, `rss_peak_mib_per_node`,
/// `metrics_unreadable_nodes`.
pub(super) async fn network_figures(run: &Run) -> Map<String, Value> {
    let nodes: Vec<(usize, std::net::SocketAddr, bool)> =
        lock(&run.cluster).nodes.iter().map(|n| (n.index, n.metrics_addr(), n.is_up())).collect();
    let (mut copies, mut sync_mib, mut unreadable) = (Vec::new(), Vec::new(), 0usize);
    for (_, addr, up) in nodes {
        if !up {
            continue;
        }
        let Ok(text) = scrape_metrics(addr).await else {
            unreadable += 1;
            continue;
        };
        if let (Some(all), Some(first)) = (sum(&text, RECEIVED_UNFILTERED), sum(&text, RECEIVED_FIRST)) {
            if first > 0.0 {
                copies.push(all / first);
            }
        }
        if let Some(bytes) = sum(&text, SYNC_BYTES) {
            sync_mib.push(bytes / (1024.0 * 1024.0));
        }
    }
    let rss: Vec<f64> = lock(&run.rss_peak_kib).values().map(|(kib, _)| *kib as f64 / 1024.0).collect();
    let mut figures = Map::new();
    figures.insert("gossip_copies_per_record".into(), spread(copies));
    figures.insert("sync_mib_per_node".into(), spread(sync_mib));
    figures.insert("rss_peak_mib_per_node".into(), spread(rss));
    figures.insert("metrics_unreadable_nodes".into(), unreadable.into());
    figures
}
