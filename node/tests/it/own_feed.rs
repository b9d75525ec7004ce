//! Issue 15: the own-feed check at start (doppelganger protection). A node that lost its store
//! and its signing history together (a restore of both from an old backup, a rebuilt machine
//! with only the key kept) asks its peers for its own feed before it signs, fetches what they
//! hold, and signs at the next unused seq: nobody sees it equivocate.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::live::LiveNode;
use crate::{spawn_run, submit_attestation, wait_for_line};

fn seq_of(out: &std::process::Output) -> u64 {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {v}"))
}

/// `node`'s own TCP address on 127.0.0.1 with its peer id.
fn dial_addr(node: &LiveNode) -> String {
    let status = node.json(&["status"]);
    let peer = status["peer_id"].as_str().unwrap();
    let addr = status["listen_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
        .expect("a TCP listen address on 127.0.0.1");
    format!("{addr}/p2p/{peer}")
}

/// How many records of `author` `node` holds (its feed's entries).
fn feed_len(node: &LiveNode, author: &str) -> usize {
    let feed = node.json(&["records", "feed", author]);
    feed["records"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_node_that_lost_store_and_history_fetches_its_feed_before_signing_again() {
    let b = LiveNode::start(&[]);
    let b_addr = dial_addr(&b);
    let a = LiveNode::start(&["--bootstrap", &b_addr]);
    let author = a.json(&["status"])["author"].as_str().unwrap().to_string();
    for n in 1..=3 {
        assert_eq!(seq_of(&submit_attestation(&a, &format!("pkg:cargo/own-feed@1.0.{n}"))), n);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while feed_len(&b, &author) < 3 {
        assert!(Instant::now() < deadline, "b never got a's three records");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Store and signing history gone; the key kept.
    let dir = a.stop_keeping_data();
    std::fs::remove_dir_all(dir.path().join("db")).unwrap();
    std::fs::remove_file(dir.path().join("signing-history")).unwrap();
    // The store manifest (kept beside the key) knows three records were acknowledged: the
    // node refuses to start on an empty store until the operator chooses to recover.
    let (code, err) =
        crate::run_expecting_refusal(dir.path(), &["--bootstrap", &b_addr], Duration::from_secs(60));
    assert_eq!(code, 74, "{err}");
    assert!(err.contains("own feed ends at seq 0 but reached seq 3"), "{err}");

    let child = spawn_run(dir.path(), &["--bootstrap", &b_addr, "--recover-from-peers"]);
    let mut a = LiveNode { child, dir };
    let lines = crate::lines_of(a.child.stderr.take().unwrap());
    let mut seen = Vec::new();
    crate::wait_for_in(&lines, &mut seen, "palisade is running");
    assert!(seen.iter().any(|l| l.contains("asking peers for this node's own feed")), "{seen:#?}");
    // Submitted at once: the client waits out the check, which fetches seqs 1-3 from b first
    // (with the check off, the submission races the first sync round and can get seq 1).
    let seq = seq_of(&submit_attestation(&a, "pkg:cargo/own-feed@2.0.0"));
    assert_eq!(seq, 4, "signed at a seq it had used before the loss");
    crate::wait_for_in(&lines, &mut seen, "fetching it before signing");
    crate::wait_for_in(&lines, &mut seen, "own-feed check done");
    assert_eq!(feed_len(&a, &author), 4);
    // b sees one feed of four records and no equivocation.
    let deadline = Instant::now() + Duration::from_secs(60);
    while feed_len(&b, &author) < 4 {
        assert!(Instant::now() < deadline, "b never got seq 4");
        std::thread::sleep(Duration::from_millis(100));
    }
    let b_status = b.json(&["status"]);
    assert_eq!(b_status["records"]["total"], 4, "{b_status}");
    a.stop();
    b.stop();
}

/// The reproduction: acknowledged records, a clean stop, one flipped byte in the middle
/// of `db/db`. sled opens what precedes the damage, and the node used to start on it, ready,
/// and sign at seqs it had used. Now the start is refused (exit 74) with what is missing;
/// `--recover-from-peers` fetches the own feed back from a peer, and the next record gets the
/// next unused seq.
#[test]
fn a_flipped_byte_is_refused_at_start_and_recovered_from_a_peer() {
    const RECORDS: u64 = 40;
    let b = LiveNode::start(&[]);
    let b_addr = dial_addr(&b);
    let a = LiveNode::start(&["--bootstrap", &b_addr]);
    let author = a.json(&["status"])["author"].as_str().unwrap().to_string();
    for n in 1..=RECORDS {
        assert_eq!(seq_of(&submit_attestation(&a, &format!("pkg:cargo/flip@1.0.{n}"))), n);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while (feed_len(&b, &author) as u64) < RECORDS {
        assert!(Instant::now() < deadline, "b never got a's records");
        std::thread::sleep(Duration::from_millis(100));
    }
    let dir = a.stop_keeping_data();
    let file = dir.path().join("db").join("db");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();

    let (code, err) =
        crate::run_expecting_refusal(dir.path(), &["--bootstrap", &b_addr], Duration::from_secs(60));
    assert!(code == 74 || err.contains("is damaged"), "exit {code}: {err}");
    if code == 74 {
        assert!(err.contains("record(s) missing") && err.contains("--recover-from-peers"), "{err}");
    }
    if err.contains("is damaged") {
        // sled refused the file outright: the operator's way back is the same, from an empty db/.
        std::fs::remove_dir_all(dir.path().join("db")).unwrap();
    }
    let child = spawn_run(dir.path(), &["--bootstrap", &b_addr, "--recover-from-peers"]);
    let mut a = LiveNode { child, dir };
    let lines = crate::lines_of(a.child.stderr.take().unwrap());
    let mut seen = Vec::new();
    crate::wait_for_in(&lines, &mut seen, "palisade is running");
    let seq = seq_of(&submit_attestation(&a, "pkg:cargo/flip@2.0.0"));
    assert_eq!(seq, RECORDS + 1, "signed at a seq it had used before the damage");
    let deadline = Instant::now() + Duration::from_secs(60);
    while (feed_len(&b, &author) as u64) < RECORDS + 1 {
        assert!(Instant::now() < deadline, "b never got the new record");
        std::thread::sleep(Duration::from_millis(100));
    }
    let feed = b.json(&["records", "feed", &author]);
    assert_eq!(feed["flagged"], false, "b flags a as an equivocator: {feed}");
    a.stop();
    b.stop();
}

/// A node with nobody to ask (no bootstrap entry, an empty peer book) skips the check and
/// answers submissions at once; with peers configured, `/v1/ready` names the check while it
/// runs and submissions made straight through the API get `503 own_feed_check`.
#[test]
fn the_check_is_skipped_alone_and_named_while_it_runs() {
    let alone = LiveNode::start(&[]);
    assert_eq!(seq_of(&submit_attestation(&alone, "pkg:cargo/alone@1")), 1);
    // A bootstrap peer that never answers: the check runs its whole (here 3 s) window.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("/ip4/127.0.0.1/tcp/{}", silent.local_addr().unwrap().port());
    drop(silent);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("palisade.toml"), "[network]\nown_feed_check_secs = 3\n").unwrap();
    let mut child = spawn_run(dir.path(), &["--bootstrap", &nobody]);
    let started = Instant::now();
    wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
    let waiting = LiveNode { child, dir };
    let status = waiting.json(&["status"]);
    if started.elapsed() < Duration::from_secs(2) {
        let why = status["not_ready_because"].as_str().unwrap_or_default().to_string();
        assert!(why.contains("own_feed_check"), "{status}");
    }
    // The CLI waits out the window, then signs seq 1.
    assert_eq!(seq_of(&submit_attestation(&waiting, "pkg:cargo/waited@1")), 1);
    assert!(started.elapsed() >= Duration::from_millis(2_500), "{:?}", started.elapsed());
    waiting.stop();
    alone.stop();
}
