//! Issue 15: `palisade backup create | verify | restore` with real processes and files. An
//! online backup restores into a new data directory (records, bans, the signing history) and
//! the feed continues at the next unused seq; a restore never lowers the signing history; a
//! damaged file, a non-empty store or another author's key is refused with its exit code.

use std::time::Duration;

use serde_json::Value;

use crate::live::LiveNode;
use crate::{palisade, spawn_run, submit_attestation, wait_for_line};

fn seq_of(out: &std::process::Output) -> u64 {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["seq"].as_u64().unwrap()
}

fn run_cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    palisade(dir).args(args).output().unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn an_online_backup_restores_into_a_new_data_directory_and_never_lowers_the_history() {
    let node = LiveNode::start(&[]);
    for n in 1..=5 {
        assert_eq!(seq_of(&submit_attestation(&node, &format!("pkg:cargo/backup@1.0.{n}"))), n);
    }
    node.ok(&["peers", "ban", "ip:10.9.9.9", "--duration", "1h", "--reason", "kept by the backup"]);
    let backups = tempfile::tempdir().unwrap();
    let early = backups.path().join("early.backup");
    let out = node.cli(&["--json", "backup", "create", early.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (made["records"].as_u64(), made["bans"].as_u64(), made["highest_signed_seq"].as_u64()),
        (Some(5), Some(1), Some(5)),
        "{made}"
    );
    assert!(!backups.path().join("early.backup.partial").exists());
    // One more record after the backup, then a second backup holding it.
    assert_eq!(seq_of(&submit_attestation(&node, "pkg:cargo/backup@2.0.0")), 6);
    let late = backups.path().join("late.backup");
    let out = node.cli(&["backup", "create", late.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let verified = run_cli(node.data(), &["--json", "backup", "verify", late.to_str().unwrap()]);
    assert!(verified.status.success(), "{}", text(&verified));
    let key = std::fs::read(node.data().join("node.key")).unwrap();
    let dir = node.stop_keeping_data();
    let data = dir.path();

    // The early backup into the same data directory (its damaged store moved away): the
    // signing history beside the key says 6, the backup 5. It is kept at 6, and the node
    // refuses to sign until seq 6 is back (no peer here has it).
    std::fs::rename(data.join("db"), data.join("db.damaged")).unwrap();
    let out = run_cli(data, &["backup", "restore", early.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("restored 5 records, 1 bans"), "{}", text(&out));
    assert!(text(&out).contains("signing history says seq 6 was signed"), "{}", text(&out));
    let mut child = spawn_run(data, &[]);
    wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
    let node = LiveNode { child, dir };
    let out = submit_attestation(&node, "pkg:cargo/backup@3.0.0");
    assert!(!out.status.success() && text(&out).contains("signed up to seq 6"), "{}", text(&out));
    assert!(node.ok(&["peers", "bans"]).contains("10.9.9.9"), "the ban came back");
    // A restore beside a running node, or over a store that holds records, is refused.
    let out = run_cli(node.data(), &["backup", "restore", late.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("stop the node"), "{}", text(&out));
    let dir = node.stop_keeping_data();
    let out = run_cli(dir.path(), &["backup", "restore", late.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("already holds 5 records"), "{}", text(&out));

    // The late backup into a new data directory with only the key: the feed continues at 7.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::write(fresh.path().join("node.key"), &key).unwrap();
    set_mode(&fresh.path().join("node.key"), 0o600);
    set_mode(fresh.path(), 0o700);
    let out = run_cli(fresh.path(), &["backup", "restore", late.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let mut child = spawn_run(fresh.path(), &[]);
    wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
    let node = LiveNode { child, dir: fresh };
    assert_eq!(seq_of(&submit_attestation(&node, "pkg:cargo/backup@4.0.0")), 7);
    node.stop();

    // A damaged copy is refused before anything is written (exit 65); so is another key.
    let mut bytes = std::fs::read(&late).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let damaged = backups.path().join("damaged.backup");
    std::fs::write(&damaged, &bytes).unwrap();
    let out = run_cli(backups.path(), &["backup", "verify", damaged.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    let other = LiveNode::start(&[]);
    let dir = other.stop_keeping_data();
    std::fs::remove_dir_all(dir.path().join("db")).unwrap();
    let out = run_cli(dir.path(), &["backup", "restore", damaged.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(!dir.path().join("db").exists(), "a damaged backup wrote a store");
    let out = run_cli(dir.path(), &["backup", "restore", late.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("restore it beside its own key"), "{}", text(&out));
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
