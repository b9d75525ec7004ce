//! Issue 16, with a real process and a real filesystem: a node whose disk falls below its
//! flood stage refuses new records with 507, keeps serving reads, says why it is not ready,
//! and takes records again by itself once space is freed, without a restart.
//!
//! The disk is filled for real: the flood stage is set 256 MiB below the free space of the
//! test's filesystem, then a 512 MiB ballast file (fallocate) pushes the free space under it
//! and deleting the ballast brings it back. Other tests writing meanwhile move the free space
//! by a few MiB, far inside those margins.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::live::LiveNode;
use crate::start_in;

const MIB: u64 = 1024 * 1024;

/// Takes `bytes` of real disk space at `path` (fallocate(1); a written file where the
/// filesystem cannot preallocate).
fn ballast(path: &Path, bytes: u64) {
    let ok = Command::new("fallocate")
        .args(["-l", &bytes.to_string()])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let chunk = vec![0xA5u8; MIB as usize];
        let mut f = std::fs::File::create(path).unwrap();
        for _ in 0..bytes / MIB {
            std::io::Write::write_all(&mut f, &chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
}

fn ready(node: &LiveNode) -> (bool, Value) {
    let out = node.cli(&["--json", "status"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let ready = v.get("ready").and_then(Value::as_bool).unwrap_or(false);
    (ready, v)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn submit(node: &LiveNode, n: u32) -> std::process::Output {
    crate::submit_attestation(node, &format!("pkg:cargo/disk@1.0.{n}"))
}

#[test]
fn a_node_below_its_flood_stage_refuses_writes_keeps_reads_and_resumes_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let free = palisade_store::free_bytes(dir.path()).unwrap();
    assert!(
        free > 1024 * MIB,
        "this test needs 1 GiB free under {}, found {free} bytes",
        dir.path().display()
    );
    let min_free = free - 256 * MIB;
    let config = format!("[store]\nmin_free_disk_bytes = {min_free}\nwarn_free_disk_bytes = {min_free}\n");
    let node = start_in(dir, Some(&config));

    let first = submit(&node, 1);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    let first_id = first.get("id").and_then(Value::as_str).unwrap().to_string();
    wait_for("ready before the disk fills", || ready(&node).0);

    let weight = node.data().join("ballast");
    ballast(&weight, 512 * MIB);
    wait_for("not ready with disk_low", || {
        let (ready, v) = ready(&node);
        !ready && v.get("disk_low").and_then(Value::as_bool) == Some(true)
    });
    let (_, v) = ready(&node);
    let why = v.get("not_ready_because").and_then(Value::as_str).unwrap_or_default().to_string();
    assert!(why.contains("disk_low"), "{v}");

    // Writes: 507 with what to do; the client exits 1 and shows the code.
    let refused = submit(&node, 2);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("insufficient_storage") && err.contains("store.min_free_disk_bytes"), "{err}");
    // Reads go on.
    let got = node.json(&["records", "get", &first_id]);
    assert_eq!(got.pointer("/id").and_then(Value::as_str), Some(first_id.as_str()), "{got}");

    // Space returns: writes resume without a restart.
    std::fs::remove_file(&weight).unwrap();
    wait_for("ready again after the ballast is gone", || ready(&node).0);
    let again = submit(&node, 3);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    node.stop();
}
