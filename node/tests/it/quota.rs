//! Issue 16, the store quota with a real process: a node with a 1 MiB `store.max_bytes` is
//! fed four times its quota of valid records from Sybil authors (by import, the side door
//! with no rate limit) while a retained author's records and the node's own submissions come
//! in between. The store stays under its quota, no retained or own record is evicted, an
//! evicted record is not taken back, and the byte count survives a restart. sled keeps the
//! space of what the quota evicts: the node compacts its store online and gives it back,
//! with every kept record still there.

use std::io::Write;

use base64::Engine;
use palisade_types::fixtures::{attestation, key, FIXED_NOW_MS};
use palisade_types::{AuthorKey, FeedWriter, VerifiedRecord};
use serde_json::Value;

use crate::live::LiveNode;
use crate::start_in;

const QUOTA: u64 = 1024 * 1024;

fn ndjson(records: &[VerifiedRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let line =
            serde_json::json!({"envelope": base64::engine::general_purpose::STANDARD.encode(r.wire_bytes())});
        writeln!(out, "{line}").unwrap();
    }
    out
}

fn import(node: &LiveNode, name: &str, records: &[VerifiedRecord]) -> Value {
    let path = node.data().join(name);
    std::fs::write(&path, ndjson(records)).unwrap();
    let out = node.cli(&["--json", "records", "import", path.to_str().unwrap()]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("import: {e}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn usage(node: &LiveNode) -> Value {
    node.json(&["store", "usage"])
}

fn field(v: &Value, name: &str) -> u64 {
    v.get(name).and_then(Value::as_u64).unwrap_or_else(|| panic!("no {name} in {v}"))
}

fn held(node: &LiveNode, id: &str) -> bool {
    node.cli(&["records", "get", id]).status.success()
}

#[test]
fn a_node_over_its_quota_evicts_sybil_records_and_keeps_retained_and_own_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut retained = FeedWriter::new(key(1));
    let retained_author = AuthorKey(key(1).verifying_key().to_bytes());
    let config = format!(
        "[store]\nmax_bytes = {QUOTA}\nretain_authors = [\"{retained_author}\"]\n\
         compact_above_bytes = 1048576\ncompact_above_ratio = 4\n"
    );
    let node = start_in(dir, Some(&config));

    let mut sybils: Vec<FeedWriter> = (10..50).map(|s| FeedWriter::new(key(s))).collect();
    let mut kept_ids = Vec::new();
    let mut first_batch = Vec::new();
    for round in 0..12u64 {
        let own = crate::submit_attestation(&node, &format!("pkg:cargo/own@1.0.{round}"));
        assert!(own.status.success(), "{}", String::from_utf8_lossy(&own.stderr));
        let own: Value = serde_json::from_slice(&own.stdout).unwrap();
        kept_ids.push(own.get("id").and_then(Value::as_str).unwrap().to_string());
        let mut batch = Vec::new();
        for n in 0..10 {
            let seq = round * 10 + n + 1;
            batch.push(retained.sign_next(attestation(seq), FIXED_NOW_MS - 1_000_000 + seq).unwrap());
        }
        kept_ids.extend(batch.iter().map(|r| r.id().to_string()));
        for (i, w) in sybils.iter_mut().enumerate() {
            for n in 0..12 {
                let seq = round * 12 + n + 1;
                batch.push(
                    w.sign_next(attestation(seq * 100 + i as u64), FIXED_NOW_MS - 1_000_000 + seq).unwrap(),
                );
            }
        }
        if round == 0 {
            first_batch = batch.iter().skip(10).cloned().collect();
        }
        let report = import(&node, &format!("round-{round}.ndjson"), &batch);
        assert_eq!(field(&report, "accepted"), batch.len() as u64, "round {round}: {report}");
        let u = usage(&node);
        assert!(field(&u, "bytes_used") <= QUOTA, "round {round}: {u}");
    }
    let u = usage(&node);
    assert!(field(&u, "evicted_records") > 0, "{u}");
    assert_eq!(field(&u, "protected_authors"), 1, "{u}");
    for id in &kept_ids {
        assert!(held(&node, id), "retained or own record {id} was evicted");
    }
    assert!(!held(&node, &first_batch[0].id().to_string()), "the oldest Sybil record was evicted");

    // Evicted records are not taken back: the import refuses them as `evicted`.
    let again = import(&node, "again.ndjson", &first_batch[..50]);
    assert_eq!(field(&again, "accepted"), 0, "{again}");
    assert!(again.to_string().contains("evicted"), "{again}");
    let after = usage(&node);
    assert!(field(&after, "refused_evicted") >= 50, "{after}");
    assert!(field(&after, "bytes_used") <= QUOTA, "{after}");

    // Online compaction gives back what sled kept of the evicted records (checked every 10 s),
    // and the node goes on taking records after the swap.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let compacted = loop {
        let u = usage(&node);
        if field(&u, "compactions") >= 1 {
            break u;
        }
        assert!(std::time::Instant::now() < deadline, "no online compaction within 60 s: {u}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert!(field(&compacted, "compaction_reclaimed_bytes") > 0, "{compacted}");
    assert_eq!(field(&compacted, "compaction_failures"), 0, "{compacted}");
    for id in &kept_ids {
        assert!(held(&node, id), "retained or own record {id} is gone after the compaction");
    }
    let own = crate::submit_attestation(&node, "pkg:cargo/own@2.0.0");
    assert!(own.status.success(), "{}", String::from_utf8_lossy(&own.stderr));

    // The byte count is stored with the records.
    let used = field(&usage(&node), "bytes_used");
    let node = start_in(node.stop_keeping_data(), None);
    assert_eq!(field(&usage(&node), "bytes_used"), used);
    node.stop();
}
