//! Issue 15: the signing history survives a SIGKILL loop under load. Thirty times, a node
//! takes submissions from four concurrent clients and is SIGKILLed mid-stream; at the end
//! every acknowledged record is in its feed under the seq it was acknowledged with, no seq
//! was acknowledged twice with different records, and the signing history is at or above the
//! highest acknowledged seq.

use std::collections::BTreeMap;
use std::time::Duration;

use palisade_api::model::PageParams;
use palisade_api::ApiClient;
use palisade_types::fixtures::attestation;
use palisade_types::RecordId;

use crate::{spawn_run, wait_for_line};

const ROUNDS: u64 = 30;
const SUBMITTERS: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_seq_is_signed_twice_across_thirty_sigkills_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let api = ApiClient::unix(dir.path().join("admin.sock")).with_timeout(Duration::from_secs(5));
    let mut acked: BTreeMap<u64, RecordId> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for round in 0..ROUNDS {
        let mut child = spawn_run(dir.path(), &[]);
        wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
        let submitters: Vec<_> = (0..SUBMITTERS)
            .map(|s| {
                let api = api.clone();
                tokio::spawn(async move {
                    let mut done = Vec::new();
                    // Until the kill makes a submission fail (bounded: 2,000 per round).
                    for k in 0..2_000u64 {
                        let n = (round * SUBMITTERS + s) * 10_000 + k;
                        match api.submit(&attestation(n)).await {
                            Ok(r) => done.push((r.seq, r.id)),
                            Err(_) => break,
                        }
                    }
                    done
                })
            })
            .collect();
        // A different moment in each round: 50 to 450 ms of load.
        tokio::time::sleep(Duration::from_millis(50 + (round * 137) % 400)).await;
        crate::send_signal(&child, "KILL");
        let _ = child.wait();
        for task in submitters {
            for (seq, id) in task.await.unwrap() {
                match acked.insert(seq, id) {
                    Some(old) if old != id => conflicts.push((seq, old, id)),
                    _ => {}
                }
            }
        }
    }
    assert!(conflicts.is_empty(), "seqs acknowledged twice with different records: {conflicts:?}");
    assert!(acked.len() as u64 >= ROUNDS, "too little load to mean anything: {} acknowledged", acked.len());

    // A clean start: the feed holds every acknowledged record under its seq.
    let mut child = spawn_run(dir.path(), &[]);
    wait_for_line(&mut child, "palisade is running", Duration::from_secs(60));
    let author = api.node().await.unwrap().author.to_string();
    let mut feed = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = api.feed(&author, &PageParams { limit: Some(1000), cursor: cursor.take() }).await.unwrap();
        assert!(!page.flagged, "the node's own feed is flagged as equivocating");
        for r in &page.records {
            feed.insert(r.seq, r.id);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    for (seq, id) in &acked {
        assert_eq!(feed.get(seq), Some(id), "acknowledged seq {seq} is missing or holds another record");
    }
    let highest = *acked.keys().last().unwrap();
    let history = std::fs::read_to_string(dir.path().join("signing-history")).unwrap();
    let recorded: u64 = history
        .lines()
        .filter_map(|l| l.split(' ').nth(3)?.parse().ok())
        .max()
        .expect("a valid slot in the signing history");
    assert!(recorded >= highest, "signing history at {recorded}, acknowledged up to {highest}");
    eprintln!(
        "{} records acknowledged over {ROUNDS} SIGKILLs; feed head {:?}",
        acked.len(),
        feed.keys().last()
    );
    crate::sigterm(&child);
    assert!(child.wait().unwrap().success());
}
