//! The store manifest: a lower bound of what the store has acknowledged, kept outside sled
//! (issue 15), so a store that silently lost acknowledged records (a flipped byte or a
//! truncated file that sled's recovery reads up to the damage and no further, a deleted or
//! restored `db/`) is refused at start instead of served.
//!
//! ## What it holds
//!
//! The store counts the records it ever stored, by kind (counters in the `data` tree that
//! only grow: the quota's evictions do not lower them, a re-fetched record counts again), and
//! knows its own feed's highest seq. The manifest holds a copy of both as of the last flush.
//! Because sled rolls back a damaged tail as a whole — records, their counters and their feed
//! heads together — a store that lost acknowledged records counts fewer than its manifest.
//!
//! ## Why it is always a lower bound
//!
//! The figures are taken *before* a flush and written *after* it returns, and each field only
//! ever rises (the highest of the file and the new figures), so the file never claims more
//! than the store has made durable. It is written without an `fsync`: a write lost by the
//! OS leaves an older, lower manifest, which is still a lower bound; this way it rides the
//! group commit for the cost of one `pwrite`. Only
//! [`Store::rebase_manifest`](crate::Store::rebase_manifest) (`palisade run
//! --recover-from-peers`, `palisade backup restore`) lowers it, to the store as it is.
//!
//! ## File format
//!
//! `<data-dir>/store-manifest`, two 256-byte checksummed slots (see `slots.rs`), each the line
//! `palisade-store-manifest v1 attestation=N anomaly=N anomaly_update=N revocation=N own_seq=N <blake3>`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use palisade_types::{AuthorKey, RecordKind};

use crate::slots::SlotFile;
use crate::{Inner, Result, Store, Trees};

/// File name inside the data directory.
pub const MANIFEST_FILE: &str = "store-manifest";

const MAGIC: &str = "palisade-store-manifest v1";

/// What a store has acknowledged: records ever stored by kind and the own feed's highest seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Acknowledged {
    /// Records ever stored, by kind, in [`RecordKind::ALL`] order.
    pub stored: [u64; 4],
    /// The own feed's highest stored seq (0: none).
    pub own_seq: u64,
}

impl Acknowledged {
    /// Records ever stored of `kind`.
    pub fn stored_of(&self, kind: RecordKind) -> u64 {
        kind_slot(kind).and_then(|i| self.stored.get(i)).copied().unwrap_or(0)
    }

    /// Each field the higher of the two.
    fn max(self, other: Acknowledged) -> Acknowledged {
        let mut stored = self.stored;
        for (mine, theirs) in stored.iter_mut().zip(other.stored) {
            *mine = (*mine).max(theirs);
        }
        Acknowledged { stored, own_seq: self.own_seq.max(other.own_seq) }
    }

    /// Whether every field is at least `other`'s.
    pub fn covers(&self, other: &Acknowledged) -> bool {
        self.stored.iter().zip(other.stored).all(|(a, b)| *a >= b) && self.own_seq >= other.own_seq
    }

    fn body(&self) -> String {
        let mut body = MAGIC.to_string();
        for (kind, n) in RecordKind::ALL.iter().zip(self.stored) {
            body.push_str(&format!(" {kind}={n}"));
        }
        body.push_str(&format!(" own_seq={}", self.own_seq));
        body
    }

    fn parse(body: &str) -> Option<Acknowledged> {
        let mut parts = body.strip_prefix(MAGIC)?.split_whitespace();
        let mut field = |name: &str| -> Option<u64> {
            let (key, value) = parts.next()?.split_once('=')?;
            (key == name).then_some(())?;
            value.parse().ok()
        };
        let mut out = Acknowledged::default();
        for (slot, kind) in out.stored.iter_mut().zip(RecordKind::ALL) {
            *slot = field(kind.as_str())?;
        }
        out.own_seq = field("own_seq")?;
        parts.next().is_none().then_some(out)
    }
}

/// How the store compares with its manifest at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestCheck {
    /// No manifest configured, or the store holds at least what the manifest says.
    Sound,
    /// The store holds less than the manifest: acknowledged records are gone.
    Behind {
        /// The manifest's figures.
        manifest: Acknowledged,
        /// The store's.
        store: Acknowledged,
    },
    /// The manifest file exists but no slot is valid.
    Damaged {
        /// The file.
        path: PathBuf,
    },
}

impl std::fmt::Display for ManifestCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestCheck::Sound => f.write_str("the store holds everything its manifest records"),
            ManifestCheck::Behind { manifest, store } => {
                f.write_str("the store holds less than it acknowledged:")?;
                let mut sep = " ";
                for (kind, (m, s)) in RecordKind::ALL.iter().zip(manifest.stored.iter().zip(store.stored)) {
                    if *m > s {
                        write!(f, "{sep}{} {kind} record(s) missing ({m} stored ever, {s} now)", m - s)?;
                        sep = "; ";
                    }
                }
                if manifest.own_seq > store.own_seq {
                    write!(
                        f,
                        "{sep}the own feed ends at seq {} but reached seq {}",
                        store.own_seq, manifest.own_seq
                    )?;
                }
                Ok(())
            }
            ManifestCheck::Damaged { path } => write!(f, "the store manifest {} is damaged", path.display()),
        }
    }
}

/// The open manifest file.
pub(crate) struct Manifest {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    file: SlotFile,
    /// What the file holds (after the last write).
    written: Acknowledged,
}

impl Manifest {
    /// Opens (or creates) the manifest at `path` and compares it with `store`, the store's
    /// figures at open.
    pub(crate) fn open(path: &Path, store: Acknowledged) -> std::io::Result<(Manifest, ManifestCheck)> {
        let (mut file, read) = SlotFile::open(path)?;
        let slots = read.bodies.map(|b| b.as_deref().and_then(Acknowledged::parse));
        // The slot that covers the other is the newer (fields only rise), unless a rebase
        // lowered them: then the slot written last wins, and the file cannot tell which that
        // is; a rebase therefore writes both slots.
        let best = match slots {
            [Some(a), Some(b)] => Some(if b.covers(&a) { (1, b) } else { (0, a) }),
            [Some(a), None] => Some((0, a)),
            [None, Some(b)] => Some((1, b)),
            [None, None] => None,
        };
        let check = match best {
            None if read.written => ManifestCheck::Damaged { path: path.to_path_buf() },
            None => ManifestCheck::Sound,
            Some((_, manifest)) if store.covers(&manifest) => ManifestCheck::Sound,
            Some((_, manifest)) => ManifestCheck::Behind { manifest, store },
        };
        if let Some((i, _)) = best {
            file.keep(i);
        }
        let written = best.map(|(_, a)| a).unwrap_or_default();
        Ok((Manifest { path: path.to_path_buf(), state: Mutex::new(State { file, written }) }, check))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Raises the manifest to `durable` (figures taken before a flush that has returned).
    /// Never lowers a field; no `fsync` (see the module docs).
    pub(crate) fn raise(&self, durable: Acknowledged) {
        let mut state = self.lock();
        let next = state.written.max(durable);
        if next == state.written {
            return;
        }
        match state.file.write(&next.body(), false) {
            Ok(()) => state.written = next,
            // The manifest stays lower: still a lower bound, so nothing is at risk but the
            // detection of later damage; the store's own I/O errors report the disk.
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot update the store manifest")
            }
        }
    }

    /// Sets the manifest to `now` (lower or not) in both slots, durably.
    pub(crate) fn rebase(&self, now: Acknowledged) -> std::io::Result<()> {
        let mut state = self.lock();
        let body = now.body();
        state.file.write(&body, true)?;
        state.file.write(&body, true)?;
        state.written = now;
        Ok(())
    }

    /// What the file holds.
    pub(crate) fn written(&self) -> Acknowledged {
        self.lock().written
    }
}

/// The slot of `kind` in [`Acknowledged::stored`] and the mirror (`RecordKind::ALL` order).
fn kind_slot(kind: RecordKind) -> Option<usize> {
    RecordKind::ALL.iter().position(|k| *k == kind)
}

/// Loads the records-ever-stored mirror and the own author from the trees (at open, before
/// the store is shared).
pub(crate) fn load_figures(inner: &Inner, trees: &Trees) -> std::result::Result<(), sled::Error> {
    for (slot, kind) in inner.stored_ever.iter().zip(RecordKind::ALL) {
        let n = trees.data.get(crate::stored_ever_key(kind))?.map(|v| crate::u64_value(&v)).unwrap_or(0);
        slot.store(n, Ordering::Release);
    }
    let own = trees.meta.get(crate::node_state::META_OWN_AUTHOR)?.and_then(|v| v.as_ref().try_into().ok());
    *crate::lock(&inner.own) = own.map(AuthorKey);
    Ok(())
}

static SOUND: ManifestCheck = ManifestCheck::Sound;

impl Store {
    /// Opens the manifest at `path` and compares it with the store (once, at open).
    pub(crate) fn open_manifest(&self, path: &Path) -> Result<()> {
        let now = self.acknowledged_now()?;
        let opened = Manifest::open(path, now).map_err(|e| self.io_err(sled::Error::Io(e)))?;
        let _ = self.inner.manifest.set(opened);
        Ok(())
    }

    fn manifest_file(&self) -> Option<&Manifest> {
        self.inner.manifest.get().map(|(m, _)| m)
    }

    /// How the store compared with its manifest at open: a node refuses to start on
    /// anything but [`ManifestCheck::Sound`] unless told to recover (`palisade run
    /// --recover-from-peers`), which calls [`rebase_manifest`](Self::rebase_manifest).
    pub fn manifest_check(&self) -> &ManifestCheck {
        self.inner.manifest.get().map_or(&SOUND, |(_, c)| c)
    }

    /// The store's figures now: the records-ever-stored mirror and the own feed's highest
    /// seq (a head that cannot be read counts as 0: the manifest only ever takes the
    /// higher of its figures and these, so a low reading never lowers it).
    pub fn acknowledged_now(&self) -> Result<Acknowledged> {
        let mut out = Acknowledged::default();
        for (slot, n) in out.stored.iter_mut().zip(&self.inner.stored_ever) {
            *slot = n.load(Ordering::Acquire);
        }
        let own = *crate::lock(&self.inner.own);
        if let Some(own) = own {
            out.own_seq = self.feed_head(&own).ok().flatten().map_or(0, |h| h.max_seq);
        }
        Ok(out)
    }

    /// The figures to raise the manifest to after a flush; `None` without a manifest (no
    /// work on the flush path then).
    pub(crate) fn manifest_figures(&self) -> Option<Acknowledged> {
        self.manifest_file()?;
        self.acknowledged_now().ok()
    }

    /// What the manifest file holds, if the store keeps one.
    pub fn manifest(&self) -> Option<Acknowledged> {
        self.manifest_file().map(Manifest::written)
    }

    /// Sets the manifest to the store as it is now, accepting what is missing (durable when
    /// this returns). For an operator who chose to recover from peers or restored a backup.
    pub fn rebase_manifest(&self) -> Result<()> {
        let Some(m) = self.manifest_file() else { return Ok(()) };
        self.flush()?;
        let now = self.acknowledged_now()?;
        m.rebase(now).map_err(|e| self.io_err(sled::Error::Io(e)))
    }

    /// The mirror of the records-ever-stored counter of `kind`.
    pub(crate) fn stored_ever(&self, kind: RecordKind) -> u64 {
        self.ever_slot(kind).map(|a| a.load(Ordering::Acquire)).unwrap_or(0)
    }

    /// Updates the mirror after the batch that wrote `n` was applied (under the write lock).
    pub(crate) fn set_stored_ever(&self, kind: RecordKind, n: u64) {
        if let Some(a) = self.ever_slot(kind) {
            a.store(n, Ordering::Release);
        }
    }

    fn ever_slot(&self, kind: RecordKind) -> Option<&AtomicU64> {
        self.inner.stored_ever.get(kind_slot(kind)?)
    }

    pub(crate) fn raise_manifest(&self, durable: Option<Acknowledged>) {
        if let (Some(m), Some(durable)) = (self.manifest_file(), durable) {
            m.raise(durable);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(n: u64, own: u64) -> Acknowledged {
        Acknowledged { stored: [n, 1, 0, 2], own_seq: own }
    }

    #[test]
    fn the_manifest_only_rises_until_rebased_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        let (m, check) = Manifest::open(&path, Acknowledged::default()).unwrap();
        assert_eq!(check, ManifestCheck::Sound);
        m.raise(ack(10, 3));
        m.raise(ack(5, 1)); // lower figures never lower it
        assert_eq!(m.written(), ack(10, 3));
        drop(m);
        let (m, check) = Manifest::open(&path, ack(9, 3)).unwrap();
        assert_eq!(check, ManifestCheck::Behind { manifest: ack(10, 3), store: ack(9, 3) });
        assert!(
            check.to_string().contains("1 attestation record(s) missing (10 stored ever, 9 now)"),
            "{check}"
        );
        m.rebase(ack(9, 3)).unwrap();
        drop(m);
        let (_, check) = Manifest::open(&path, ack(9, 3)).unwrap();
        assert_eq!(check, ManifestCheck::Sound);
    }

    #[test]
    fn a_torn_slot_falls_back_and_garbage_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        let (m, _) = Manifest::open(&path, Acknowledged::default()).unwrap();
        m.raise(ack(1, 1)); // slot 0
        m.raise(ack(2, 2)); // slot 1
        drop(m);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[crate::slots::SLOT_BYTES + 30] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (m, check) = Manifest::open(&path, ack(1, 1)).unwrap();
        assert_eq!(check, ManifestCheck::Sound, "the older slot is the bound");
        m.raise(ack(3, 3)); // goes to the torn slot, not over the good one
        drop(m);
        let (_, check) = Manifest::open(&path, ack(2, 2)).unwrap();
        assert!(matches!(check, ManifestCheck::Behind { .. }));
        std::fs::write(&path, vec![b'x'; 100]).unwrap();
        let (_, check) = Manifest::open(&path, ack(2, 2)).unwrap();
        assert!(matches!(check, ManifestCheck::Damaged { .. }), "{check}");
        std::fs::write(&path, vec![0u8; 512]).unwrap();
        let (_, check) = Manifest::open(&path, Acknowledged::default()).unwrap();
        assert_eq!(check, ManifestCheck::Sound, "zeros are an unwritten file");
    }

    #[test]
    fn a_body_parses_back_and_foreign_text_does_not() {
        let a = ack(7, 4);
        assert_eq!(Acknowledged::parse(&a.body()), Some(a));
        assert_eq!(Acknowledged::parse("palisade-store-manifest v1 attestation=1"), None);
        assert_eq!(Acknowledged::parse(&format!("{} extra=1", a.body())), None);
    }
}
