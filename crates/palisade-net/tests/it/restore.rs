//! Issue 15: a backup restored through the ingest pipeline (`palisade_net::restore_backup`,
//! what `palisade backup restore` runs). A backup taken from a store and restored into an
//! empty one gives back every record (and with them the equivocation proofs, rebuilt by the
//! same store thread), the bans and the peer book; a record whose signature fails is
//! refused and counted, never stored.

use std::io::Cursor;

use palisade_net::restore_backup;
use palisade_store::{
    BackupReader, BackupStream, BanRecord, PeerBookEntry, Signed, Source, Store, StoreConfig, StoredMeta,
    BACKUP_PAGE_RECORDS,
};
use palisade_types::fixtures::{attestation, feed, key, FIXED_NOW_MS};
use palisade_types::FeedWriter;

fn open(dir: &std::path::Path) -> Store {
    Store::open(&StoreConfig::new(dir.join("db"))).unwrap()
}

fn meta() -> StoredMeta {
    StoredMeta { received_at_ms: FIXED_NOW_MS, source: Source::Gossip }
}

fn backup_of(store: &Store, signed: Option<Signed>) -> Vec<u8> {
    let author = feed(1, 1)[0].record().position.author;
    BackupStream::new(store.clone(), author, Box::new(move || signed), FIXED_NOW_MS).read_to_end().unwrap()
}

#[test]
fn a_backup_restores_records_proofs_bans_and_peers_into_an_empty_store() {
    let from = tempfile::tempdir().unwrap();
    let store = open(from.path());
    // More than one page of records, an equivocation, a ban and a peer.
    let records = feed(1, BACKUP_PAGE_RECORDS as u64 + 50);
    for r in &records {
        store.insert(r, meta()).unwrap();
    }
    let mut fork_a = FeedWriter::new(key(2));
    let mut fork_b = FeedWriter::new(key(2));
    let a = fork_a.sign_next(attestation(1), FIXED_NOW_MS - 10).unwrap();
    let b = fork_b.sign_next(attestation(2), FIXED_NOW_MS - 9).unwrap();
    store.insert(&a, meta()).unwrap();
    store.insert(&b, meta()).unwrap();
    let ban =
        BanRecord { target: "12D3KooWBan".into(), until_ms: u64::MAX, created_ms: 5, reason: "test".into() };
    store.put_ban(&ban).unwrap();
    let peer = PeerBookEntry {
        peer_id: "12D3KooWPeer".into(),
        addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
        last_seen_ms: 7,
    };
    store.upsert_peer(&peer).unwrap();
    let last = records.last().unwrap();
    let signed = Some(Signed { seq: last.record().position.seq, id: last.id() });
    let bytes = backup_of(&store, signed);

    let summary = BackupReader::verify(Cursor::new(&bytes)).unwrap();
    assert_eq!((summary.end.records, summary.end.bans, summary.end.peers), (records.len() as u64 + 2, 1, 1));
    assert_eq!(summary.signed, signed);

    let to = tempfile::tempdir().unwrap();
    let restored = open(to.path());
    let mut reader = BackupReader::new(Cursor::new(&bytes));
    let report = restore_backup(&restored, &mut reader, FIXED_NOW_MS, |_| {}).unwrap();
    assert_eq!(report.stored, records.len() as u64 + 2, "{report:?}");
    assert_eq!(report.refused, 0, "{report:?}");
    assert_eq!(reader.signed(), Some(signed));
    for r in records.iter().chain([&a, &b]) {
        assert!(restored.contains(&r.id()).unwrap());
    }
    assert!(restored.is_flagged(&a.record().position.author).unwrap(), "the proof is rebuilt");
    assert_eq!(restored.bans().unwrap(), vec![ban]);
    assert_eq!(restored.peer_book().unwrap(), vec![peer]);
}

#[test]
fn a_record_with_a_bad_signature_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let records = feed(4, 3);
    for r in &records {
        store.insert(r, meta()).unwrap();
    }
    // A crafted document: valid structure and hash, one record's signature broken.
    let bytes = backup_of(&store, None);
    let text = String::from_utf8(bytes).unwrap();
    let mut lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let b64 = lines[1]["record"].as_str().unwrap().to_string();
    use base64::Engine as _;
    let mut wire = base64::engine::general_purpose::STANDARD.decode(&b64).unwrap();
    let last = wire.len() - 1;
    wire[last] ^= 1; // the signature is the envelope's last field
    lines[1]["record"] = base64::engine::general_purpose::STANDARD.encode(&wire).into();
    let body: String = lines[..lines.len() - 1].iter().map(|l| format!("{l}\n")).collect();
    let end = serde_json::json!({"end": {"records": 3, "bans": 0, "peers": 0, "blake3": blake3::hash(body.as_bytes()).to_hex().to_string()}});
    let doc = format!("{body}{end}\n");

    let to = tempfile::tempdir().unwrap();
    let restored = open(to.path());
    let report =
        restore_backup(&restored, &mut BackupReader::new(Cursor::new(doc.as_bytes())), FIXED_NOW_MS, |_| {})
            .unwrap();
    assert_eq!((report.stored, report.refused), (2, 1), "{report:?}");
    assert_eq!(restored.record_count(), 2);
}

#[test]
fn a_large_backup_restores_through_a_bounded_window_and_reports_progress() {
    // More records than RESTORE_IN_FLIGHT and than one progress step (10,000): the restore
    // collects decisions before admitting more, never sheds a record, and reports progress.
    let from = tempfile::tempdir().unwrap();
    let store = open(from.path());
    let records = feed(5, 10_500);
    for chunk in records.chunks(500) {
        let items: Vec<_> = chunk.iter().map(|r| (r, meta())).collect();
        store.insert_many(&items).unwrap();
    }
    let bytes = backup_of(&store, None);
    let to = tempfile::tempdir().unwrap();
    let restored = open(to.path());
    let mut progress = Vec::new();
    let report = restore_backup(&restored, &mut BackupReader::new(Cursor::new(&bytes)), FIXED_NOW_MS, |n| {
        progress.push(n)
    })
    .unwrap();
    assert_eq!((report.stored, report.duplicates, report.refused), (10_500, 0, 0), "{report:?}");
    assert_eq!(restored.record_count(), 10_500);
    assert_eq!(progress, vec![10_000, 10_500]);
}

#[test]
fn a_document_that_breaks_off_mid_restore_stops_it_with_a_document_error() {
    // The node verifies the whole file first; a reader handed a document that breaks off
    // anyway (the file changed between the check and the restore) stops the restore with
    // the document's error, the pipeline drained.
    let from = tempfile::tempdir().unwrap();
    let store = open(from.path());
    for r in &feed(6, 30) {
        store.insert(r, meta()).unwrap();
    }
    let bytes = backup_of(&store, None);
    let text = String::from_utf8(bytes).unwrap();
    let broken: String = text.lines().take(20).map(|l| format!("{l}\n")).collect::<String>() + "{not json\n";
    let to = tempfile::tempdir().unwrap();
    let restored = open(to.path());
    let err = restore_backup(
        &restored,
        &mut BackupReader::new(Cursor::new(broken.as_bytes())),
        FIXED_NOW_MS,
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, palisade_store::RestoreError::Document(_)), "{err}");
}
