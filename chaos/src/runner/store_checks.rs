//! `store_quota` (issue 16): at the end every live node's records are within its
//! `store.max_bytes`, and no honest submission got a 5xx other than 507 (a disk at its flood
//! stage refuses writes with 507 by design; anything else is a server fault).

use super::*;

pub(super) async fn check_store_quota(run: &Run) -> CheckResult {
    let nodes: Vec<(usize, bool)> = lock(&run.cluster).nodes.iter().map(|n| (n.index, n.is_up())).collect();
    let mut evidence = Vec::new();
    let mut per_node = Vec::new();
    let mut over = 0usize;
    for (i, up) in nodes {
        if !up {
            per_node.push(format!("node {i} down"));
            continue;
        }
        match run.apis[i].store_usage().await {
            Ok(u) => {
                let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
                per_node.push(format!(
                    "node {i} {:.1}/{:.1} MiB ({:.1} MiB on disk, {} evicted)",
                    mib(u.bytes_used),
                    mib(u.max_bytes),
                    mib(u.size_on_disk_bytes),
                    u.evicted_records
                ));
                if u.bytes_used > u.max_bytes {
                    over += 1;
                    evidence.push(format!(
                        "node {i}: {} bytes used over a quota of {}",
                        u.bytes_used, u.max_bytes
                    ));
                }
            }
            Err(e) => {
                over += 1;
                evidence.push(format!("node {i}: GET /v1/store/usage failed: {e:#}"));
            }
        }
    }
    let refused = lock(&run.refused_submissions).clone();
    let server_errors: u64 = refused.iter().filter(|(s, _)| **s >= 500 && **s != 507).map(|(_, n)| n).sum();
    for (status, n) in refused.iter().filter(|(s, _)| **s >= 500 && **s != 507) {
        evidence.push(format!("{n} honest submissions answered {status}"));
    }
    let refusals: Vec<String> = refused.iter().map(|(s, n)| format!("{n}x {s}")).collect();
    CheckResult::new(
        "store_quota",
        over == 0 && server_errors == 0,
        format!(
            "{}; honest submissions refused: {}",
            per_node.join(", "),
            if refusals.is_empty() { "none".into() } else { refusals.join(", ") }
        ),
        evidence,
    )
}
