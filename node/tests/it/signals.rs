//! Issue 20: SIGHUP reloads the log filter, `[limits]` and the trust policies from the file,
//! logs what changed, and refuses a bad file without changing anything; it never kills the
//! daemon (it used to, with no log line).

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::live::LiveNode;
use crate::{send_signal, spawn_run};

/// Collects the node's stderr lines in the background.
fn stderr_lines(child: &mut std::process::Child) -> Receiver<String> {
    crate::lines_of(child.stderr.take().unwrap())
}

fn wait_line(rx: &Receiver<String>, marker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(marker) => return l,
            Ok(_) => {}
            Err(_) => panic!("no log line with {marker:?} within 30 s"),
        }
    }
}

fn peer_messages_per_sec(node: &LiveNode) -> u64 {
    let v: Value = node.json(&["limits", "show"]);
    v.pointer("/limits/peer_messages_per_sec").and_then(Value::as_u64).unwrap_or_else(|| panic!("{v}"))
}

#[test]
fn sighup_reloads_limits_filter_and_trust_and_refuses_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("palisade.toml");
    std::fs::write(&config, "[limits]\npeer_messages_per_sec = 111\n").unwrap();
    let mut child = spawn_run(dir.path(), &[]);
    let lines = stderr_lines(&mut child);
    wait_line(&lines, "palisade is running");
    let node = LiveNode { child, dir };
    assert_eq!(peer_messages_per_sec(&node), 111);
    let digest = format!("sha256:{}", "cd".repeat(32));
    let verdict =
        |node: &LiveNode| node.cli(&["--json", "attest", "verdict", &digest, "--policy", "release"]);
    let before = verdict(&node);
    assert!(String::from_utf8_lossy(&before.stderr).contains("no trust policy"), "{before:?}");

    let author = "ab".repeat(32);
    std::fs::write(
        &config,
        format!(
            "[limits]\npeer_messages_per_sec = 222\n\n[log]\nfilter = \"info,palisade_net=debug\"\n\n\
             [admin.trust.release]\nauthors = [\"{author}\"]\nthreshold = 1\n"
        ),
    )
    .unwrap();
    send_signal(&node.child, "HUP");
    let reloaded = wait_line(&lines, "configuration reloaded");
    assert!(reloaded.contains("limits.peer_messages_per_sec: 111 -> 222"), "{reloaded}");
    assert!(reloaded.contains("palisade_net=debug") && reloaded.contains("admin.trust"), "{reloaded}");
    assert_eq!(peer_messages_per_sec(&node), 222);
    // The new trust policy answers verdicts.
    let after = verdict(&node);
    assert!(after.status.success(), "{}", String::from_utf8_lossy(&after.stderr));

    // A bad file changes nothing, and the daemon lives on.
    std::fs::write(&config, "[limits]\npeer_messages_per_sec = 0\n").unwrap();
    send_signal(&node.child, "HUP");
    let refused = wait_line(&lines, "SIGHUP: the configuration does not validate");
    assert!(refused.contains("peer_messages_per_sec"), "{refused}");
    assert_eq!(peer_messages_per_sec(&node), 222);
    node.stop();
}

/// Issue 20: the admin API's access log names the request id (also returned in
/// `x-request-id`), method, route and status; refusals are logged at info.
#[test]
fn the_access_log_names_each_refused_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_run(dir.path(), &["--log-format", "json"]);
    let lines = stderr_lines(&mut child);
    wait_line(&lines, "palisade is running");
    let node = LiveNode { child, dir };
    let out = node.cli(&["records", "get", &"zz".repeat(32)]);
    assert_eq!(out.status.code(), Some(1));
    let line = wait_line(&lines, "palisade_api::access");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["route"], "/v1/records/{id}", "{line}");
    assert_eq!(v["status"], 400, "{line}");
    assert_eq!(v["method"], "GET", "{line}");
    assert!(v["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{line}");
    node.stop();
}
