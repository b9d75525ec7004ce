//! Issue 15: the backup document. A damaged, cut-short or extended file is refused before
//! anything is written. (Restoring one goes through the ingest pipeline: palisade-net's
//! `tests/it/restore.rs`.)

use std::io::Cursor;

use palisade_store::{BackupReader, BackupStream, Signed, Store};
use palisade_types::fixtures::{feed, FIXED_NOW_MS};

use crate::{meta, open};

fn backup_of(store: &Store, signed: Option<Signed>) -> Vec<u8> {
    let author = feed(1, 1)[0].record().position.author;
    BackupStream::new(store.clone(), author, Box::new(move || signed), FIXED_NOW_MS).read_to_end().unwrap()
}

#[test]
fn a_damaged_cut_short_or_extended_backup_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for r in &feed(3, 20) {
        store.insert(r, meta()).unwrap();
    }
    let bytes = backup_of(&store, None);
    let text = String::from_utf8(bytes.clone()).unwrap();
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    // A flip inside a base64 record body that keeps it valid base64 and JSON.
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    let cut = bytes[..bytes.len() - 40].to_vec();
    let no_end: String =
        text.lines().filter(|l| !l.starts_with("{\"end\"")).map(|l| format!("{l}\n")).collect();
    let extra =
        format!("{text}{{\"ban\":{{\"target\":\"x\",\"until_ms\":1,\"created_ms\":1,\"reason\":\"x\"}}}}\n");
    let two_headers = format!("{}\n{text}", text.lines().next().unwrap());
    let huge = format!("{}\n{{\"record\":\"{}\"}}\n", text.lines().next().unwrap(), "A".repeat(200_000));
    for (what, doc, says) in [
        ("a flipped byte", flipped, "damaged"),
        ("cut short", cut, "cut short"),
        ("no end line", no_end.into_bytes(), "cut short"),
        ("a line after the end", extra.into_bytes(), "after the `end` line"),
        ("two headers", two_headers.into_bytes(), "a second header"),
        ("an overlong line", huge.into_bytes(), "longer than"),
        ("not a backup", b"{\"format\": \"palisade-signing-history\"}\n".to_vec(), "not a backup"),
        ("empty", Vec::new(), "not a palisade backup"),
    ] {
        let err = BackupReader::verify(Cursor::new(&doc)).unwrap_err();
        assert!(err.contains(says), "{what}: {err}");
    }
}
