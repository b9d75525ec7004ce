//! Target 9: a backup document (`palisade backup verify | restore FILE`, issue 15), whatever a
//! damaged disk, a cut-short copy or a hostile hand left in the file.
//!
//! Input: the file's bytes. Invariants:
//! - `BackupReader::verify` never panics, reads lines of at most `MAX_BACKUP_LINE_BYTES`, and
//!   accepts only a document whose `end` line's counts and hash match what precedes it.
//! - A document it accepts restores into an empty store (through the ingest pipeline, as
//!   `palisade backup restore` does) without panicking, with every record
//!   either stored, a duplicate or refused (the counts add up to the `end` line's), and a
//!   backup taken of the restored store verifies and round-trips: it holds exactly the records
//!   stored, the same bans and peers, and restores again to the same store.

use std::io::Cursor;

use palisade_store::{BackupReader, BackupStream, Signed, Store, MAX_BACKUP_LINE_BYTES};
use palisade_types::fixtures::FIXED_NOW_MS;

use crate::common::{open_store, temp_dir};

pub fn run(data: &[u8]) {
    let Ok(summary) = BackupReader::verify(Cursor::new(data)) else { return };
    assert!(
        data.split(|b| *b == b'\n').all(|l| l.len() <= MAX_BACKUP_LINE_BYTES),
        "an overlong line was accepted"
    );
    let dir = temp_dir();
    let Ok(store) = open_store(&dir.path().join("db")) else { return };
    let mut reader = BackupReader::new(Cursor::new(data));
    let report = palisade_net::restore_backup(&store, &mut reader, FIXED_NOW_MS, |_| {})
        .expect("a verified document restores");
    assert_eq!(report.stored + report.duplicates + report.refused, summary.end.records, "{report:?}");
    assert_eq!(store.record_count() as u64, report.stored);
    let again = backup_of(&store, summary.author, summary.signed);
    let second = BackupReader::verify(Cursor::new(&again)).expect("a backup of a restored store verifies");
    assert_eq!(second.end.records, report.stored);
    assert_eq!(second.end.bans, store.bans().map(|b| b.len() as u64).unwrap_or(0));
    assert_eq!(second.signed, summary.signed);
    let dir2 = temp_dir();
    let Ok(copy) = open_store(&dir2.path().join("db")) else { return };
    let report2 = palisade_net::restore_backup(
        &copy,
        &mut BackupReader::new(Cursor::new(&again)),
        FIXED_NOW_MS,
        |_| {},
    )
    .expect("restores");
    assert_eq!((report2.stored, report2.refused), (report.stored, 0));
}

fn backup_of(store: &Store, author: palisade_types::AuthorKey, signed: Option<Signed>) -> Vec<u8> {
    BackupStream::new(store.clone(), author, Box::new(move || signed), FIXED_NOW_MS)
        .read_to_end()
        .expect("the backup of a healthy store")
}

/// Seeds: the backup of an empty store, and of one with records, a fork, a ban and a peer.
pub fn seeds() -> Vec<Vec<u8>> {
    use palisade_store::{BanRecord, PeerBookEntry, Source, StoredMeta};
    use palisade_types::fixtures::{attestation, feed, key};
    let mut out = Vec::new();
    let author = feed(1, 1)[0].record().position.author;
    let dir = temp_dir();
    let Ok(store) = open_store(&dir.path().join("db")) else { return out };
    out.push(backup_of(&store, author, None));
    let meta = StoredMeta { received_at_ms: FIXED_NOW_MS, source: Source::Gossip };
    let records = feed(1, 5);
    for r in &records {
        let _ = store.insert(r, meta);
    }
    let mut a = palisade_types::FeedWriter::new(key(2));
    let mut b = palisade_types::FeedWriter::new(key(2));
    for r in [a.sign_next(attestation(1), FIXED_NOW_MS - 2), b.sign_next(attestation(2), FIXED_NOW_MS - 1)]
        .into_iter()
        .flatten()
    {
        let _ = store.insert(&r, meta);
    }
    let _ = store.put_ban(&BanRecord {
        target: "ip:10.0.0.1".into(),
        until_ms: u64::MAX,
        created_ms: 1,
        reason: "seed".into(),
    });
    let _ = store.upsert_peer(&PeerBookEntry {
        peer_id: "12D3KooWSeed".into(),
        addrs: vec!["/ip4/127.0.0.1/tcp/7400".into()],
        last_seen_ms: 1,
    });
    let last = records.last().map(|r| Signed { seq: 5, id: r.id() });
    out.push(backup_of(&store, author, last));
    out
}
