//! Target 8: the signing-history file (`<data-dir>/signing-history`, issue 15), whatever a
//! damaged disk, a torn write or a hostile local user left in it.
//!
//! Input: the file's bytes. Invariants:
//! - `SigningHistory::open` never panics, whatever the bytes (and reads at most two slots).
//! - It opens with no history only when the file is empty or all zeros; otherwise it either
//!   finds a valid slot or refuses the file (`Damaged`, `OtherAuthor`): a damaged history is
//!   never silently taken as "nothing signed" (that would let the node sign a seq twice).
//! - What it opens round-trips: recording the next seq and reopening finds exactly it, and a
//!   lower seq never lowers the history.
//!
//! An input that starts with `{` is an interchange document instead (`palisade keys history
//! import`, `palisade_store::Interchange`): parsing and checking it never panics, and a
//! document that passes the checks is rebuilt from what they returned to the same values.

use palisade_store::{Interchange, Signed, SigningHistory, SigningHistoryError, MAX_INTERCHANGE_BYTES};
use palisade_types::{AuthorKey, RecordId};

/// The author every input is opened as (the seeds' histories are this author's).
pub const AUTHOR: AuthorKey = AuthorKey([7; 32]);

pub fn run(data: &[u8]) {
    if data.first() == Some(&b'{') {
        return interchange(data);
    }
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("signing-history");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let history = match SigningHistory::open(&path, AUTHOR) {
        Ok(h) => h,
        Err(SigningHistoryError::Damaged { .. } | SigningHistoryError::OtherAuthor { .. }) => {
            let head = &data[..data.len().min(1024)];
            assert!(head.iter().any(|b| *b != 0), "an all-zero file was refused as damaged");
            return;
        }
        Err(SigningHistoryError::Io { .. }) => return,
    };
    let highest = history.highest();
    if highest.is_none() {
        // Only the two slots are read: a file whose slots are all zero (or that is empty)
        // holds no history.
        let slots = &data[..data.len().min(512)];
        assert!(slots.iter().all(|b| *b == 0), "non-zero slots opened as an empty history");
    }
    let next = highest.map_or(1, |h| h.seq.saturating_add(1));
    if highest.is_some_and(|h| h.seq == u64::MAX) {
        return;
    }
    let signed = Signed { seq: next, id: RecordId([9; 32]) };
    history.record(signed).expect("recording into a history that opened");
    // A lower seq never lowers it.
    history.record(Signed { seq: next.saturating_sub(1), id: RecordId([1; 32]) }).expect("record");
    drop(history);
    let reopened = SigningHistory::open(&path, AUTHOR).expect("a history this process wrote reopens");
    assert_eq!(reopened.highest(), Some(signed), "the recorded seq did not survive a reopen");
}

/// Seeds: an empty file, a history with one and with two slots written, a torn slot.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new(), vec![0u8; 512]];
    let Ok(dir) = tempfile::tempdir() else { return out };
    let path = dir.path().join("signing-history");
    if let Ok(h) = SigningHistory::open(&path, AUTHOR) {
        let _ = h.record(Signed { seq: 1, id: RecordId([3; 32]) });
        out.extend(std::fs::read(&path));
        let _ = h.record(Signed { seq: 2, id: RecordId([4; 32]) });
        if let Ok(both) = std::fs::read(&path) {
            let mut torn = both.clone();
            if let Some(b) = torn.get_mut(300) {
                *b ^= 0x20;
            }
            out.push(both);
            out.push(torn);
        }
    }
    // Interchange documents: one that signed, one that never did.
    for highest in [Some(Signed { seq: 42, id: RecordId([9; 32]) }), None] {
        out.extend(serde_json::to_vec(&Interchange::of(AUTHOR, highest)));
    }
    out
}

/// An interchange document, as `palisade keys history import` reads it (capped, then parsed
/// and checked).
fn interchange(data: &[u8]) {
    let capped = &data[..data.len().min(MAX_INTERCHANGE_BYTES as usize)];
    let Ok(doc) = serde_json::from_slice::<Interchange>(capped) else { return };
    let Ok((author, highest)) = doc.parse() else { return };
    let rebuilt = Interchange::of(author, highest);
    let text = match serde_json::to_vec(&rebuilt) {
        Ok(t) => t,
        Err(e) => panic!("a checked document does not serialize: {e}"),
    };
    let back = match serde_json::from_slice::<Interchange>(&text) {
        Ok(d) => d,
        Err(e) => panic!("a rebuilt document does not parse: {e}"),
    };
    assert_eq!(back.parse(), Ok((author, highest)), "a checked document changed on the way back");
}
