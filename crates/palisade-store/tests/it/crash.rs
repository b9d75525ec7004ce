//! SIGKILL durability: a child process writes records and reports each one after the flush
//! that made it durable; the parent kills it at an arbitrary moment mid-write, reopens the
//! database and checks every reported record is there. Three rounds on the same directory,
//! so recovery of an already-recovered database is covered too.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_store::{Source, StoredMeta};
use palisade_types::fixtures::*;
use palisade_types::*;

use crate::open;

const CHILD_ENV: &str = "PALISADE_STORE_CRASH_CHILD_DIR";
const TEST_NAME: &str = "crash::sigkill_mid_write_loses_no_flushed_record";

#[test]
fn sigkill_mid_write_loses_no_flushed_record() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(std::path::Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: Vec<RecordId> = Vec::new();
    for round in 0..3u32 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        // Kill after a varying number of acknowledgements so the kill lands at different
        // points of the write/flush cycle.
        let kill_after = 150 + 97 * round as usize;
        let mut this_round = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(id) = line.strip_prefix("FLUSHED ") {
                acknowledged.push(id.parse().unwrap());
                this_round += 1;
                if this_round >= kill_after {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "child too slow");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(this_round >= kill_after, "round {round}: child exited early");

        let store = open(dir.path());
        for id in &acknowledged {
            assert!(store.contains(id).unwrap(), "round {round}: acknowledged record {id} lost");
        }
    }
}

/// Writes records forever (bounded: 60 s), flushing every few records and acknowledging
/// each flushed record on stdout.
fn child(dir: &std::path::Path) {
    let store = open(dir);
    let key = key(99);
    let author = AuthorKey(key.verifying_key().to_bytes());
    let mut writer = FeedWriter::resume(key, store.latest_in_feed(&author).unwrap());
    let mut pending = Vec::new();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(60) {
        n += 1;
        let statement = if n.is_multiple_of(2) { attestation(n) } else { anomaly(n) };
        let r = writer.sign_next(statement, FIXED_NOW_MS + n).unwrap();
        store.insert(&r, StoredMeta { received_at_ms: FIXED_NOW_MS, source: Source::Local }).unwrap();
        pending.push(r.id());
        if n.is_multiple_of(7) {
            store.flush().unwrap();
            for id in pending.drain(..) {
                println!("FLUSHED {id}");
            }
        }
    }
}
