//! `palisade ledger --follow` (issue 20, CLI consistency): the header comes first, even
//! before the ledger has an entry, then each entry as it happens.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::live::LiveNode;
use crate::palisade;

#[test]
fn ledger_follow_prints_its_header_first_then_entries_as_they_come() {
    let node = LiveNode::start(&[]);
    let mut follow =
        palisade(node.data()).args(["ledger", "--follow"]).stdout(Stdio::piped()).spawn().unwrap();
    let (tx, lines) = mpsc::sync_channel(64);
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let header = lines.recv_timeout(Duration::from_secs(30)).expect("a header line");
    assert!(header.starts_with("SEQ") && header.contains("ACTION"), "{header:?}");
    node.ok(&["peers", "ban", "ip:10.8.8.8", "--duration", "10m", "--reason", "followed"]);
    let entry = lines.recv_timeout(Duration::from_secs(30)).expect("the ban's ledger entry");
    assert!(entry.contains("banned") && entry.contains("10.8.8.8"), "{entry:?}");
    let _ = follow.kill();
    let _ = follow.wait();
    node.stop();
}
