//! [`SigningHistory`]: the highest seq this node ever signed, kept outside sled.
//!
//! The store alone cannot protect a node from signing twice: if `db/` is damaged, deleted or
//! restored from an old backup, the feed head it reports is lower than what peers already
//! hold, and signing from there makes this honest node an equivocator for good. So the
//! highest signed seq (and its record id) is also written to a small file beside the key,
//! after the record is flushed to the store and before it is acknowledged; the node never
//! signs at or below it (see `palisade_net::Handle::protect_signing`).
//!
//! ## File format (interchange format)
//!
//! `<data-dir>/signing-history`: two fixed 256-byte slots, written alternately in place. A
//! slot is the ASCII line
//! `palisade-signing-history v1 <author hex> <seq> <record id hex> <blake3 of the preceding text, hex>`
//! padded with spaces and a newline to 256 bytes. The valid slot with the highest seq wins,
//! so a write torn by a crash leaves the other slot intact. At most one `fdatasync` per signed
//! record, and concurrent records share one (the next write covers the highest record
//! announced by then); no rename, so no directory sync. To move a node, copy the file with the key; to
//! read it, `cat` it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use palisade_types::{AuthorKey, RecordId};

use crate::slots::SlotFile;

/// File name inside the data directory.
pub const SIGNING_HISTORY_FILE: &str = "signing-history";

const MAGIC: &str = "palisade-signing-history v1";

/// Why the signing history cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SigningHistoryError {
    /// Reading or writing the file failed.
    #[error("signing history {path}: {source}; check the file and the disk")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file belongs to another author.
    #[error(
        "signing history {path} is for author {found}, but this node's key is author {expected}: put back the key this history belongs to, or move the file away if the key is right and this history is not"
    )]
    OtherAuthor {
        /// The file.
        path: PathBuf,
        /// The author in the file.
        found: AuthorKey,
        /// This node's author.
        expected: AuthorKey,
    },
    /// The file exists but neither slot is valid.
    #[error(
        "signing history {path} is damaged (no valid slot): restore it from a backup; do not delete it unless you are sure this node never signed a record (deleting it lifts the protection against signing a seq twice)"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
    },
}

/// The highest record this node signed (seq and id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// Its seq.
    pub seq: u64,
    /// Its record id.
    pub id: RecordId,
}

struct State {
    file: SlotFile,
    highest: Option<Signed>,
}

/// The signing history of one author; see the module docs.
pub struct SigningHistory {
    path: PathBuf,
    author: AuthorKey,
    state: Mutex<State>,
    /// The highest record a caller of [`record`](Self::record) has announced (each after its
    /// store flush): the next write covers it, so concurrent callers share one write and
    /// one `fdatasync` (group commit), never writing a seq no flush has made durable.
    announced: Mutex<Option<Signed>>,
}

impl std::fmt::Debug for SigningHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningHistory").field("path", &self.path).field("highest", &self.highest()).finish()
    }
}

fn slot_body(author: &AuthorKey, signed: &Signed) -> String {
    format!("{MAGIC} {author} {} {}", signed.seq, signed.id.to_hex())
}

/// Parses one slot's body (its checksum already checked).
fn parse_body(body: &str) -> Option<(AuthorKey, Signed)> {
    let rest = body.strip_prefix(MAGIC)?.trim_start();
    let mut parts = rest.split(' ');
    let author = parts.next()?.parse::<AuthorKey>().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let id = parts.next()?.parse::<RecordId>().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((author, Signed { seq, id }))
}

impl SigningHistory {
    /// Opens (or creates, mode 0600) the history of `author` at `path`.
    pub fn open(path: &Path, author: AuthorKey) -> Result<SigningHistory, SigningHistoryError> {
        let io = |source| SigningHistoryError::Io { path: path.to_path_buf(), source };
        let (mut file, read) = SlotFile::open(path).map_err(io)?;
        let slots = read.bodies.map(|b| b.as_deref().and_then(parse_body));
        let mut best: Option<(usize, Signed)> = None;
        for (i, slot) in slots.iter().enumerate() {
            let Some((found, signed)) = slot else { continue };
            if *found != author {
                return Err(SigningHistoryError::OtherAuthor {
                    path: path.to_path_buf(),
                    found: *found,
                    expected: author,
                });
            }
            if best.is_none_or(|(_, b)| signed.seq > b.seq) {
                best = Some((i, *signed));
            }
        }
        if best.is_none() && read.written {
            return Err(SigningHistoryError::Damaged { path: path.to_path_buf() });
        }
        if let Some((i, _)) = best {
            file.keep(i);
        }
        Ok(SigningHistory {
            path: path.to_path_buf(),
            author,
            state: Mutex::new(State { file, highest: best.map(|(_, s)| s) }),
            announced: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The highest record signed so far.
    pub fn highest(&self) -> Option<Signed> {
        self.lock().highest
    }

    /// Records that `signed` was signed (and its store flush is done): durable when this
    /// returns. A seq at or below the highest is ignored. Concurrent callers are grouped:
    /// whoever writes next writes the highest record announced so far, and the others
    /// return without a write of their own.
    pub fn record(&self, signed: Signed) -> Result<(), SigningHistoryError> {
        let io = |source| SigningHistoryError::Io { path: self.path.clone(), source };
        {
            let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
            if announced.is_none_or(|a| signed.seq > a.seq) {
                *announced = Some(signed);
            }
        }
        let mut state = self.lock();
        if state.highest.is_some_and(|h| signed.seq <= h.seq) {
            return Ok(());
        }
        // At least `signed`: it was announced above and nothing durable covers it yet.
        let target = self.announced.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or(signed);
        let signed = if target.seq > signed.seq { target } else { signed };
        state.file.write(&slot_body(&self.author, &signed), true).map_err(io)?;
        state.highest = Some(signed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::SLOT_BYTES;

    fn id(n: u8) -> RecordId {
        RecordId([n; 32])
    }

    #[test]
    fn concurrent_records_are_grouped_and_the_highest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIGNING_HISTORY_FILE);
        let author = AuthorKey([2; 32]);
        let h = std::sync::Arc::new(SigningHistory::open(&path, author).unwrap());
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for k in 0..50u64 {
                        let seq = k * 8 + t + 1;
                        h.record(Signed { seq, id: id((seq % 251) as u8) }).unwrap();
                        // Durable when it returns: the highest is at least this seq.
                        assert!(h.highest().unwrap().seq >= seq);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.highest().unwrap().seq, 400);
        drop(h);
        let back = SigningHistory::open(&path, author).unwrap();
        assert_eq!(back.highest(), Some(Signed { seq: 400, id: id((400 % 251) as u8) }));
    }

    #[test]
    fn the_highest_seq_survives_reopen_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIGNING_HISTORY_FILE);
        let author = AuthorKey([1; 32]);
        let h = SigningHistory::open(&path, author).unwrap();
        assert_eq!(h.highest(), None);
        for seq in 1..=5u8 {
            h.record(Signed { seq: u64::from(seq), id: id(seq) }).unwrap();
        }
        h.record(Signed { seq: 3, id: id(9) }).unwrap();
        drop(h);
        let h = SigningHistory::open(&path, author).unwrap();
        assert_eq!(h.highest(), Some(Signed { seq: 5, id: id(5) }));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * SLOT_BYTES as u64);
    }

    #[test]
    fn a_torn_slot_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIGNING_HISTORY_FILE);
        let author = AuthorKey([1; 32]);
        let h = SigningHistory::open(&path, author).unwrap();
        h.record(Signed { seq: 7, id: id(7) }).unwrap(); // slot 0
        h.record(Signed { seq: 8, id: id(8) }).unwrap(); // slot 1
        drop(h);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[SLOT_BYTES + 40] ^= 0xff; // tear slot 1
        std::fs::write(&path, &bytes).unwrap();
        let h = SigningHistory::open(&path, author).unwrap();
        assert_eq!(h.highest(), Some(Signed { seq: 7, id: id(7) }));
        // The next write goes to the torn slot, not over the good one.
        h.record(Signed { seq: 9, id: id(9) }).unwrap();
        drop(h);
        assert_eq!(SigningHistory::open(&path, author).unwrap().highest().map(|s| s.seq), Some(9));
    }

    #[test]
    fn another_authors_or_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIGNING_HISTORY_FILE);
        let h = SigningHistory::open(&path, AuthorKey([1; 32])).unwrap();
        h.record(Signed { seq: 1, id: id(1) }).unwrap();
        drop(h);
        let e = SigningHistory::open(&path, AuthorKey([2; 32])).unwrap_err();
        assert!(matches!(e, SigningHistoryError::OtherAuthor { .. }), "{e}");
        std::fs::write(&path, vec![b'x'; 300]).unwrap();
        let e = SigningHistory::open(&path, AuthorKey([1; 32])).unwrap_err();
        assert!(matches!(e, SigningHistoryError::Damaged { .. }), "{e}");
    }
}
