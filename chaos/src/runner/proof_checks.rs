//! Checks of the proof-amplification scenario: no record that fails static validation got
//! into a store by riding in an equivocation proof, and no node failed to send gossip.

use super::*;
use crate::nodeapi::{counter_series, scrape_metrics};

/// Invalid halves looked up one by one (`GET /v1/records/{id}`) on each node, spread evenly
/// over all that were sent; the rest are found in the node's full listing of ids.
const INVALID_LOOKUPS_PER_NODE: usize = 64;
/// The counter `gossip_send_failures` sums (its `_total` samples, all label values).
const GOSSIP_SEND_FAILURES: &str = "palisade_gossip_send_failures";

/// `no_invalid_proof_half`: none of the correctly signed but invalid records the
/// proof-amplification attackers put in proofs (variant b) is stored on any live node. Each
/// node's full listing of record ids is searched for all of them, and a sample is asked for
/// by id, where 404 is the pass.
pub(super) async fn check_no_invalid_proof_half(run: &Run, reports: &[AttackReport]) -> CheckResult {
    let sent: Vec<RecordId> = reports.iter().flat_map(|r| r.invalid_halves.iter().copied()).collect();
    let attackers =
        reports.iter().filter(|r| r.kind == format!("{:?}", AttackKind::ProofAmplification)).count();
    if sent.is_empty() {
        return CheckResult::new(
            "no_invalid_proof_half",
            false,
            format!("{attackers} proof-amplification attackers sent no invalid half: nothing was tested"),
            Vec::new(),
        );
    }
    let invalid: HashSet<RecordId> = sent.iter().copied().collect();
    let step = sent.len().div_ceil(INVALID_LOOKUPS_PER_NODE).max(1);
    let sample: Vec<RecordId> = sent.iter().step_by(step).copied().collect();
    let mut evidence = Vec::new();
    let mut stored_anywhere: HashSet<RecordId> = HashSet::new();
    let mut per_node = Vec::new();
    let mut inconclusive = false;
    for (i, api) in run.apis.iter().enumerate() {
        if !run.up(i) {
            per_node.push(format!("node {i} down"));
            continue;
        }
        let listed: Vec<RecordId> = match api.record_ids().await {
            Ok(held) => held.into_iter().filter(|id| invalid.contains(id)).collect(),
            Err(e) => {
                inconclusive = true;
                evidence.push(format!("node {i}: listing its record ids failed: {e:#}"));
                Vec::new()
            }
        };
        let mut found_by_id = 0;
        let mut lookups = 0;
        // The sample, plus a few the listing found (confirmed by id).
        for id in sample.iter().chain(listed.iter().take(5)) {
            lookups += 1;
            match api.has_record(id).await {
                Ok(false) => {}
                Ok(true) => {
                    found_by_id += 1;
                    stored_anywhere.insert(*id);
                    if evidence.len() < 40 {
                        evidence.push(format!(
                            "node {i} answers GET /v1/records/{id} with the record (invalid half)"
                        ));
                    }
                }
                Err(e) => {
                    inconclusive = true;
                    evidence.push(format!("node {i}: looking up {id} failed: {e:#}"));
                }
            }
        }
        stored_anywhere.extend(listed.iter().copied());
        per_node.push(format!("node {i} {} listed, {found_by_id}/{lookups} by id", listed.len()));
        if !listed.is_empty() {
            evidence.push(format!(
                "node {i} stores {} of the {} invalid halves (e.g. {})",
                listed.len(),
                invalid.len(),
                listed.iter().take(3).map(RecordId::to_hex).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let passed = stored_anywhere.is_empty() && !inconclusive;
    CheckResult::new(
        "no_invalid_proof_half",
        passed,
        format!(
            "{} of {} invalid halves sent by {attackers} attackers are stored on some node ({}); {} sampled ids asked by id per node",
            stored_anywhere.len(),
            invalid.len(),
            per_node.join("; "),
            sample.len(),
        ),
        evidence,
    )
}

/// `gossip_send_failures`: the sum over live nodes of `palisade_gossip_send_failures_total`
/// (every label value), scraped from each node's metrics endpoint at the end, is 0. A build
/// that does not export the counter skips the check (pass, said so); an endpoint that cannot
/// be read fails it, since nothing could be checked there.
pub(super) async fn check_gossip_send_failures(run: &Run) -> CheckResult {
    let nodes: Vec<(usize, std::net::SocketAddr, bool)> =
        lock(&run.cluster).nodes.iter().map(|n| (n.index, n.metrics_addr(), n.is_up())).collect();
    let mut evidence = Vec::new();
    let (mut exported, mut absent, mut unreadable) = (0usize, 0usize, 0usize);
    let mut total = 0.0;
    let mut per_node = Vec::new();
    for (i, addr, up) in nodes {
        if !up {
            per_node.push(format!("node {i} down"));
            continue;
        }
        match scrape_metrics(addr).await {
            Ok(text) => match counter_series(&text, GOSSIP_SEND_FAILURES) {
                Some(series) => {
                    exported += 1;
                    let sum: f64 = series.iter().map(|(_, v)| v).sum();
                    total += sum;
                    per_node.push(format!("node {i} {sum}"));
                    for (labels, v) in series.iter().filter(|(_, v)| *v > 0.0) {
                        evidence.push(format!("node {i}: {GOSSIP_SEND_FAILURES}_total{{{labels}}} {v}"));
                    }
                }
                None => absent += 1,
            },
            Err(e) => {
                unreadable += 1;
                evidence.push(format!("node {i}: {e:#}"));
            }
        }
    }
    if exported == 0 && unreadable == 0 {
        return CheckResult::new(
            "gossip_send_failures",
            true,
            format!(
                "skipped: metric not exported by this build ({absent} nodes' /metrics scraped, no {GOSSIP_SEND_FAILURES}_total)"
            ),
            Vec::new(),
        );
    }
    CheckResult::new(
        "gossip_send_failures",
        total == 0.0 && unreadable == 0,
        format!(
            "{total} gossip sends failed over {exported} nodes exporting {GOSSIP_SEND_FAILURES}_total ({}){}",
            per_node.join(", "),
            if unreadable > 0 {
                format!("; {unreadable} metrics endpoints unreadable")
            } else {
                String::new()
            },
        ),
        evidence,
    )
}
