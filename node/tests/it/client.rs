//! The client commands against a live `palisade run`: tables, `--json`, exit codes.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::live::LiveNode;
use crate::{palisade, sigterm, spawn_run, wait_for_line};

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn digest(byte: &str) -> String {
    format!("sha256:{}", byte.repeat(32))
}

#[test]
fn status_peers_limits_and_ledger() {
    let node = LiveNode::start(&[]);
    let sock = node.data().join("admin.sock");
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let table = node.ok(&["status"]);
    assert!(table.contains("peer id:") && table.contains("ready:     yes"), "{table}");
    // Issue 20: a dialable address (with /p2p/) to hand to another node.
    assert!(
        table.lines().any(|l| l.starts_with("dial:") && l.contains("/tcp/") && l.contains("/p2p/12D3")),
        "{table}"
    );
    let status = node.json(&["status"]);
    for key in ["peer_id", "author", "listen_addrs", "records", "peers"] {
        assert!(status.get(key).is_some(), "status --json lacks {key}: {status}");
    }
    assert_eq!(status["records"]["total"], 0);
    assert_eq!(status["ready"], true);

    assert!(node.ok(&["peers", "list"]).contains("(none)"));
    assert_eq!(node.json(&["peers", "list"])["peers"], serde_json::json!([]));
    let out = node.ok(&["peers", "ban", "ip:10.7.7.7", "--duration", "10m", "--reason", "testing"]);
    assert!(out.contains("banned ip:10.7.7.7 until"), "{out}");
    let bans = node.json(&["peers", "bans"]);
    assert_eq!(bans["bans"][0]["target"], "ip:10.7.7.7");
    assert_eq!(bans["bans"][0]["reason"], "testing");
    assert!(node.ok(&["peers", "bans"]).contains("TARGET"));
    let ledger = node.json(&["ledger"]);
    assert_eq!(ledger["entries"][0]["action"], "banned");
    assert!(node.ok(&["ledger"]).contains("banned"));
    node.ok(&["peers", "unban", "ip:10.7.7.7"]);
    let again = node.cli(&["peers", "unban", "ip:10.7.7.7"]);
    assert_eq!(code(&again), Some(1), "{}", stderr(&again));
    assert!(stderr(&again).contains("not banned"), "{}", stderr(&again));

    let limits = node.ok(&["limits", "show"]);
    assert!(limits.contains("peer_messages_per_sec"), "{limits}");
    let set = node.ok(&["limits", "set", "peer_messages_per_sec", "321"]);
    assert_eq!(set.trim(), "peer_messages_per_sec = 321");
    assert_eq!(node.json(&["limits", "show"])["limits"]["peer_messages_per_sec"], 321);
    let bad = node.cli(&["limits", "set", "peer_messages_per_sec", "0"]);
    assert_eq!(code(&bad), Some(1));
    assert!(stderr(&bad).contains("peer_messages_per_sec"), "{}", stderr(&bad));
    node.stop();
}

#[test]
fn attestations_anomalies_and_records() {
    let node = LiveNode::start(&[]);
    let d = digest("ab");
    let out = node.ok(&[
        "attest",
        "submit",
        "--subject",
        "pkg:cargo/serde@1.0.210",
        "--digest",
        &d,
        "--digest",
        &format!("gitCommit:{}", "12".repeat(20)),
        "--verdict",
        "pass",
        "--score",
        "8.5",
        "--scanner",
        "trivy",
        "--scanner-version",
        "0.56.1",
        "--findings",
        "critical=0,high=1,medium=3,low=7",
    ]);
    assert!(out.starts_with("attestation ") && out.contains("(seq 1)"), "{out}");
    let id = out.split_whitespace().nth(1).unwrap().to_string();

    let got = node.json(&["attest", "get", &id]);
    assert_eq!(got["statement"]["verdict"], "pass");
    assert_eq!(got["statement"]["score"], 850);
    assert_eq!(got["statement"]["finding_counts"]["low"], 7);
    assert!(got["envelope"].as_str().unwrap().len() > 100);
    let table = node.ok(&["attest", "get", &id]);
    assert!(table.contains("kind:      attestation") && table.contains("\"trivy\""), "{table}");

    // A statement from a file.
    let file = node.data().join("statement.json");
    let stmt = serde_json::json!({
        "subject": {"name": "ghcr.io/acme/api", "digests": [digest("cd")]},
        "scanner": {"name": "grype", "version": "0.80.0"},
        "verdict": "fail",
        "score": 310
    });
    std::fs::write(&file, stmt.to_string()).unwrap();
    let r = node.json(&["attest", "submit", "--file", file.to_str().unwrap()]);
    assert_eq!(r["seq"], 2);
    assert_eq!(r["kind"], "attestation");

    let q = node.json(&["attest", "query", "--subject", &d]);
    assert_eq!(q["records"].as_array().unwrap().len(), 1);
    assert!(q.get("next_cursor").is_some(), "{q}");
    let q = node.json(&["attest", "query", "--limit", "1"]);
    assert_eq!(q["records"].as_array().unwrap().len(), 1);
    let cursor = q["next_cursor"].as_str().unwrap().to_string();
    let q2 = node.json(&["attest", "query", "--limit", "1", "--cursor", &cursor]);
    assert_ne!(q2["records"][0]["id"], q["records"][0]["id"]);
    let table = node.ok(&["attest", "query"]);
    assert!(table.lines().next().unwrap().contains("VERDICT"), "{table}");
    assert!(table.contains("pkg:cargo/serde@1.0.210") && table.contains("8.50"), "{table}");

    // Verdict: no policy → not satisfied; with this node trusted, k=1 → satisfied.
    let me = node.json(&["status"])["author"].as_str().unwrap().to_string();
    let v = node.cli(&["attest", "verdict", &d, "--check"]);
    assert_eq!(code(&v), Some(3), "{}", stderr(&v));
    let v = node.json(&["attest", "verdict", &d, "--trusted", &me, "--threshold", "1", "--check"]);
    assert_eq!(v["satisfied"], true);

    // Anomalies: report, list open, update, show.
    let out = node.json(&[
        "anomaly",
        "report",
        "--source",
        "otlp://collector/api",
        "--stream-type",
        "metrics",
        "--label",
        "kind=latency",
        "--label",
        "service=api",
        "--severity",
        "ERROR",
        "--score",
        "7.5",
        "--summary",
        "p99 latency 5x baseline",
    ]);
    assert_eq!(out["kind"], "anomaly");
    let open = node.json(&["anomaly", "open"]);
    let fp = open["anomalies"][0]["fingerprint"].as_str().unwrap().to_string();
    // Issue 20: the report names the fingerprint `anomaly show` takes.
    assert_eq!(out["fingerprint"], fp.as_str(), "{out}");
    assert_eq!(open["anomalies"][0]["report"]["severity_number"], 17);
    assert!(node.ok(&["anomaly", "open"]).contains(&fp));
    node.ok(&["anomaly", "update", &fp, "--state", "acknowledged", "--comment", "on it"]);
    assert_eq!(node.json(&["anomaly", "open"])["anomalies"], serde_json::json!([]));
    assert!(node.ok(&["anomaly", "show", &fp]).contains("acknowledged"));
    let q = node.json(&["anomaly", "query", "--min-severity", "17", "--since", "1h"]);
    assert_eq!(q["records"].as_array().unwrap().len(), 1);
    let bad = node.cli(&["anomaly", "update", &fp, "--state", "acknowledged"]);
    assert_eq!(code(&bad), Some(1), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("HTTP 409"), "{}", stderr(&bad));
    // Issue 20: the refusal lists what the anomaly can become.
    assert!(stderr(&bad).contains("it can become: open, resolved, suppressed"), "{}", stderr(&bad));

    // Revoke, feed.
    node.ok(&["records", "revoke", &id, "--reason", "superseded"]);
    assert!(node.json(&["records", "get", &id])["revoked_by"].is_string());
    let feed = node.json(&["records", "feed"]);
    assert_eq!(feed["records"].as_array().unwrap().len(), 5);
    assert_eq!(feed["head"]["contiguous_seq"], 5);
    let table = node.ok(&["records", "feed"]);
    assert!(table.contains("revocation") && table.contains("SEQ"), "{table}");
    let q = node.json(&["records", "query", "--kind", "revocation"]);
    assert_eq!(q["records"].as_array().unwrap().len(), 1);

    // Export, then import: duplicates only; a bad line makes the import exit 1.
    let export = node.data().join("export.ndjson");
    node.ok(&["records", "export", "-o", export.to_str().unwrap()]);
    let text = std::fs::read_to_string(&export).unwrap();
    assert_eq!(text.lines().count(), 5);
    let report = node.json(&["records", "import", export.to_str().unwrap()]);
    assert_eq!((report["accepted"].as_u64(), report["duplicate"].as_u64()), (Some(0), Some(5)));
    let bad_file = node.data().join("bad.ndjson");
    std::fs::write(&bad_file, format!("{text}not json\n")).unwrap();
    let out = node.cli(&["records", "import", bad_file.to_str().unwrap()]);
    assert_eq!(code(&out), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 rejected") && stdout.contains("line 6"), "{stdout}");
    node.stop();
}

#[test]
fn errors_have_the_documented_exit_codes() {
    let node = LiveNode::start(&[]);
    // The node says no: 1, with its message.
    let out = node.cli(&["records", "get", &"ab".repeat(32)]);
    assert_eq!(code(&out), Some(1));
    assert!(stderr(&out).contains("HTTP 404"), "{}", stderr(&out));
    let out = node.cli(&[
        "attest",
        "submit",
        "--subject",
        "x",
        "--digest",
        "sha256:00",
        "--verdict",
        "pass",
        "--score",
        "5",
        "--scanner",
        "s",
        "--scanner-version",
        "1",
    ]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("subject.digests"), "{}", stderr(&out));
    // Local input errors: 1.
    let out = node.cli(&[
        "attest",
        "submit",
        "--subject",
        "x",
        "--digest",
        "nope",
        "--verdict",
        "pass",
        "--score",
        "5",
        "--scanner",
        "s",
        "--scanner-version",
        "1",
    ]);
    assert_eq!(code(&out), Some(1));
    assert!(stderr(&out).contains("--digest"), "{}", stderr(&out));
    // Usage errors: 64.
    assert_eq!(code(&node.cli(&["attest", "submit", "--subject", "x"])), Some(64));
    // Unreachable: 2, with --socket and PALISADE_SOCKET.
    let out = node.cli(&["--socket", "/nonexistent/admin.sock", "status"]);
    assert_eq!(code(&out), Some(2));
    assert!(stderr(&out).contains("cannot reach the node"), "{}", stderr(&out));
    let out =
        palisade(node.data()).env("PALISADE_SOCKET", "/nonexistent/x.sock").arg("status").output().unwrap();
    assert_eq!(code(&out), Some(2));
    // --socket pointing at the real socket works from anywhere.
    let sock: PathBuf = node.data().join("admin.sock");
    let elsewhere = tempfile::tempdir().unwrap();
    let out =
        palisade(elsewhere.path()).args(["--socket", sock.to_str().unwrap(), "status"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let socket = node.data().join("admin.sock");
    node.stop();
    assert!(!socket.exists(), "the socket is removed on shutdown");
    let out =
        palisade(elsewhere.path()).args(["--socket", sock.to_str().unwrap(), "status"]).output().unwrap();
    assert_eq!(code(&out), Some(2));
}

#[test]
fn watch_prints_events_as_they_come() {
    let node = LiveNode::start(&[]);
    let mut watch = palisade(node.data())
        .args(["--json", "watch", "--type", "record_stored"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut watch, "watching events", Duration::from_secs(30));
    let out = node.ok(&[
        "attest",
        "submit",
        "--subject",
        "w",
        "--digest",
        &digest("ee"),
        "--verdict",
        "pass",
        "--score",
        "9",
        "--scanner",
        "s",
        "--scanner-version",
        "1",
    ]);
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(16);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).expect("an event line");
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["type"], "record_stored");
    assert_eq!(event["id"], id.as_str());
    let _ = watch.kill();
    let _ = watch.wait();
    node.stop();
}

#[test]
fn help_has_examples_and_completions_print() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        vec!["status"],
        vec!["attest", "submit"],
        vec!["anomaly", "report"],
        vec!["records", "import"],
        vec!["peers", "ban"],
        vec!["limits", "set"],
        vec!["watch"],
    ] {
        let out = palisade(dir.path()).args(&cmd).arg("--help").output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example: palisade"), "{cmd:?} --help has no example:\n{text}");
    }
    let out = palisade(dir.path()).args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("palisade"));
}

/// Polls `cond` (bounded: 60 s); for states no command announces, such as a peer list.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "{what} within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn peers_dial_and_disconnect_between_two_live_nodes() {
    let a = LiveNode::start(&[]);
    let b = LiveNode::start(&[]);
    let status = a.json(&["status"]);
    let a_id = status["peer_id"].as_str().unwrap().to_string();
    let a_addr = status["listen_addrs"][0].as_str().unwrap().to_string();
    let b_id = b.json(&["status"])["peer_id"].as_str().unwrap().to_string();
    let has = |node: &LiveNode, id: &str| {
        node.json(&["peers", "list"])["peers"].as_array().unwrap().iter().any(|p| p["peer_id"] == id)
    };

    let out = b.ok(&["peers", "dial", &format!("{a_addr}/p2p/{a_id}")]);
    assert!(out.contains(&format!("connected to {a_id}")), "{out}");
    // Issue 20: a dial to an address where nobody listens is an error the admin sees.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = b.cli(&["peers", "dial", &format!("/ip4/127.0.0.1/tcp/{dead_port}")]);
    assert_eq!(code(&dead), Some(1), "{}", stderr(&dead));
    assert!(
        stderr(&dead).contains("dial_failed") || stderr(&dead).contains("cannot dial"),
        "{}",
        stderr(&dead)
    );
    eventually("A lists B", || has(&a, &b_id));
    assert!(a.ok(&["peers", "list"]).contains(&b_id));

    let out = a.ok(&["peers", "disconnect", &b_id]);
    assert_eq!(out.trim(), format!("disconnected {b_id}"));
    eventually("B gone from A's peers", || !has(&a, &b_id));
    // A disconnect is not a ban.
    assert_eq!(a.json(&["peers", "bans"])["bans"], serde_json::json!([]));
    // Disconnecting a peer that is not connected is "not found" (exit 1).
    let again = a.cli(&["peers", "disconnect", &b_id]);
    assert_eq!(code(&again), Some(1), "{}", stderr(&again));
    a.stop();
    b.stop();
}

fn submit(data: &Path, n: u32) -> Output {
    palisade(data)
        .args([
            "attest",
            "submit",
            "--subject",
            &format!("pkg:cargo/demo@1.0.{n}"),
            "--digest",
            &digest("cd"),
        ])
        .args(["--verdict", "pass", "--score", "8.5", "--scanner", "trivy", "--scanner-version", "0.56.1"])
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Issue 15: a node whose store lost part of its own feed (here: `db/` restored from a copy
/// taken two records earlier, then deleted outright) never signs those seqs again; it signs
/// again once the store holds everything it signed.
#[test]
fn a_node_whose_store_lost_its_feed_never_signs_a_seq_twice() {
    let node = LiveNode::start(&[]);
    let data = node.data().to_path_buf();
    let out = submit(&data, 1);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = node.stop_keeping_data();
    let old_db = dir.path().join("db-after-seq-1");
    copy_dir(&data.join("db"), &old_db);

    let mut child = spawn_run(&data, &[]);
    wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
    for n in 2..=3 {
        let out = submit(&data, n);
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("(seq {n})")), "{}", stderr(&out));
    }
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    let full_db = dir.path().join("db-after-seq-3");
    std::fs::rename(data.join("db"), &full_db).unwrap();

    // An old backup (seq 1 of 3), then no store at all: the node refuses to start on either
    // (exit 74: the store manifest counts 3 records); told to recover from peers, it starts
    // and still refuses to sign until its feed is back.
    for restored in [Some(&old_db), None] {
        if let Some(db) = restored {
            copy_dir(db, &data.join("db"));
        }
        let (code, err) = crate::run_expecting_refusal(&data, &[], Duration::from_secs(60));
        assert_eq!(code, 74, "{err}");
        // The first recovery accepted the old backup (the manifest now counts 1 record); the
        // signing history still says 3 were signed.
        let missing = if restored.is_some() { "2 attestation record(s) missing" } else { "1 attestation" };
        assert!(err.contains(missing) && err.contains("--recover-from-peers"), "{err}");
        let mut child = spawn_run(&data, &["--recover-from-peers"]);
        let lines = wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
        assert!(lines.iter().any(|l| l.contains("signed further in its feed")), "{lines:#?}");
        let out = submit(&data, 4);
        assert!(!out.status.success(), "signed over a lost feed: {}", String::from_utf8_lossy(&out.stdout));
        assert!(stderr(&out).contains("signed up to seq 3"), "{}", stderr(&out));
        sigterm(&child);
        assert!(child.wait().unwrap().success());
        std::fs::remove_dir_all(data.join("db")).unwrap();
    }

    // The full store back: the next record gets the next unused seq.
    std::fs::rename(&full_db, data.join("db")).unwrap();
    let mut child = spawn_run(&data, &[]);
    wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
    let out = submit(&data, 4);
    assert!(String::from_utf8_lossy(&out.stdout).contains("(seq 4)"), "{}", stderr(&out));
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

/// Issue 20: `palisade ... | head -1` used to panic ("failed printing to stdout: Broken
/// pipe", exit 101). A reader that goes away ends the command quietly.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let node = LiveNode::start(&[]);
    for args in [&["--json", "limits", "show"][..], &["limits", "show"][..], &["status"][..]] {
        let mut child =
            palisade(node.data()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // Close the read end before the command has written anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "palisade {args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "palisade {args:?}: {err}");
    }
    node.stop();
}

/// Issue 15: `palisade store check` reads every record back; it refuses to run beside a live
/// node (the store is locked) and says so.
#[test]
fn store_check_reads_everything_back_and_needs_the_node_stopped() {
    let node = LiveNode::start(&[]);
    for n in 0..3 {
        let out = submit(node.data(), n);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let busy = node.cli(&["store", "check"]);
    assert_eq!(code(&busy), Some(78), "{}", stderr(&busy));
    assert!(stderr(&busy).contains("stop the node"), "{}", stderr(&busy));
    let dir = node.stop_keeping_data();
    let out = palisade(dir.path()).args(["--json", "store", "check"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"], 3, "{v}");
    assert_eq!(v["problems"], 0, "{v}");
    assert_eq!(v["own_feed"]["signed_seq"], 3, "{v}");
    assert_eq!(v["own_feed"]["stored_seq"], 3, "{v}");
}

/// Issue 15, the documented backup and restore (docs/operations.md): an export plus the key
/// and the signing history bring a node back in a new data directory; it refuses to sign
/// until the import has brought its own feed back, then continues the feed at the next seq.
#[test]
fn restore_from_an_export_with_key_and_history_continues_the_feed() {
    let node = LiveNode::start(&[]);
    for n in 0..3 {
        assert!(submit(node.data(), n).status.success());
    }
    let backup = tempfile::tempdir().unwrap();
    let export = backup.path().join("records.ndjson");
    node.ok(&["records", "export", "--output", export.to_str().unwrap()]);
    for f in ["node.key", "signing-history"] {
        std::fs::copy(node.data().join(f), backup.path().join(f)).unwrap();
    }
    node.stop();

    let restored = tempfile::tempdir().unwrap();
    std::fs::set_permissions(restored.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    for f in ["node.key", "signing-history"] {
        std::fs::copy(backup.path().join(f), restored.path().join(f)).unwrap();
    }
    let mut child = crate::spawn_run(restored.path(), &[]);
    crate::wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
    let node = LiveNode { child, dir: restored };
    let refused = submit(node.data(), 10);
    assert_eq!(code(&refused), Some(1));
    assert!(stderr(&refused).contains("own_feed_behind"), "{}", stderr(&refused));
    node.ok(&["records", "import", export.to_str().unwrap()]);
    let next = node.json(
        &["attest", "submit", "--subject", "pkg:cargo/demo@2.0.0", "--digest", &digest("cd")]
            .into_iter()
            .chain([
                "--verdict",
                "pass",
                "--score",
                "8.5",
                "--scanner",
                "trivy",
                "--scanner-version",
                "0.56.1",
            ])
            .collect::<Vec<_>>(),
    );
    assert_eq!(next["seq"], 4, "{next}");
    node.stop();
}
