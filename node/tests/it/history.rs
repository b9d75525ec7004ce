//! Issue 15: the signing history moves with the key in an interchange document. Exported
//! from one data directory and imported into another with the same key and no store, it
//! makes the node there refuse to sign the seqs already used; an import never lowers it,
//! refuses another author's document, and waits for the node to stop.

use serde_json::Value;

use crate::live::LiveNode;
use crate::{palisade, submit_attestation};

fn history(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["keys", "history"];
    all.extend_from_slice(args);
    palisade(dir).args(&all).output().unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_signing_history_moves_with_the_key_and_keeps_protecting() {
    let node = LiveNode::start(&[]);
    for n in 0..3 {
        assert!(submit_attestation(&node, &format!("pkg:cargo/history@{n}")).status.success());
    }
    // Import beside the running node is refused.
    let doc_path = node.data().join("exported.json");
    let out = history(node.data(), &["export"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["format"], "palisade-signing-history");
    assert_eq!(doc["highest_signed_seq"], 3, "{doc}");
    std::fs::write(&doc_path, &out.stdout).unwrap();
    let busy = history(node.data(), &["import", doc_path.to_str().unwrap()]);
    assert_eq!(busy.status.code(), Some(78), "{}", text(&busy));
    assert!(text(&busy).contains("stop the node"), "{}", text(&busy));
    let old = node.stop_keeping_data();

    // A new machine: the key only, no store, no history. Importing the document protects it.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::copy(old.path().join("node.key"), fresh.path().join("node.key")).unwrap();
    let out = history(fresh.path(), &["import", doc_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("raised from seq none to 3"), "{}", text(&out));
    // Importing it again, or a lower one, keeps 3.
    let lower = doc.to_string().replace("\"highest_signed_seq\":3", "\"highest_signed_seq\":1");
    let lower_path = fresh.path().join("lower.json");
    std::fs::write(&lower_path, lower).unwrap();
    let out = history(fresh.path(), &["import", lower_path.to_str().unwrap()]);
    assert!(text(&out).contains("kept at seq 3"), "{}", text(&out));
    // Another author's document is refused.
    let other = LiveNode::start(&[]);
    let theirs = history(other.data(), &["export"]);
    other.stop();
    let theirs_path = fresh.path().join("theirs.json");
    std::fs::write(&theirs_path, &theirs.stdout).unwrap();
    let out = history(fresh.path(), &["import", theirs_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("this node's key is author"), "{}", text(&out));

    // The node on the new machine (alone: nobody to fetch from) refuses to sign seqs 1-3.
    let mut child = crate::spawn_run(fresh.path(), &[]);
    crate::wait_for_line(&mut child, "palisade is running", std::time::Duration::from_secs(60));
    let node = LiveNode { child, dir: fresh };
    let out = submit_attestation(&node, "pkg:cargo/history@new");
    assert!(!out.status.success(), "signed over a history it imported: {}", text(&out));
    assert!(text(&out).contains("signed up to seq 3"), "{}", text(&out));
    node.stop();
}
