//! Two checksummed text slots in one small file: the format of the store's side files that
//! must survive a write torn by a crash ([`SigningHistory`](crate::SigningHistory) and the
//! store manifest).
//!
//! A slot is 256 bytes: an ASCII body, a space, the blake3 hash of the body in hex, padded
//! with spaces and a newline. Writes alternate between the two slots, in place, so a torn
//! write leaves the other slot intact; the reader keeps whichever valid slot its owner ranks
//! higher. No rename, so no directory sync; `cat` reads it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Bytes of one slot.
pub(crate) const SLOT_BYTES: usize = 256;

/// An open two-slot file.
pub(crate) struct SlotFile {
    file: File,
    /// The slot the next write goes to.
    next_slot: u64,
}

/// What [`SlotFile::open`] read.
pub(crate) struct Read2 {
    /// The body of each slot whose checksum holds.
    pub(crate) bodies: [Option<String>; 2],
    /// The file holds bytes other than zeros (so no valid slot means damage, not absence).
    pub(crate) written: bool,
}

/// Seals `body` into a slot (body, checksum, padding). A body too long for a slot is a bug
/// of the caller; it is cut, and the checksum then fails on read.
pub(crate) fn seal(body: &str) -> Vec<u8> {
    let sum = blake3::hash(body.as_bytes()).to_hex();
    let mut line = format!("{body} {sum}").into_bytes();
    line.resize(SLOT_BYTES - 1, b' ');
    line.push(b'\n');
    line
}

/// The body of a slot whose checksum holds; `None` for an empty, torn or corrupt slot.
pub(crate) fn unseal(slot: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(slot).ok()?.trim_end();
    let (body, sum) = text.rsplit_once(' ')?;
    (blake3::hash(body.as_bytes()).to_hex().as_str() == sum).then(|| body.to_string())
}

impl SlotFile {
    /// Opens (or creates, mode 0600) the file and reads both slots (only the first
    /// `2 * SLOT_BYTES` bytes are read, whatever the file's size).
    pub(crate) fn open(path: &Path) -> std::io::Result<(SlotFile, Read2)> {
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        let mut bytes = Vec::new();
        (&mut file).take(2 * SLOT_BYTES as u64).read_to_end(&mut bytes)?;
        let mut chunks = bytes.chunks(SLOT_BYTES).map(unseal);
        let bodies = [chunks.next().flatten(), chunks.next().flatten()];
        let written = bytes.iter().any(|b| *b != 0);
        Ok((SlotFile { file, next_slot: 0 }, Read2 { bodies, written }))
    }

    /// Makes the next write go to the slot after `current` (the one the owner kept), so it
    /// never overwrites the good slot.
    pub(crate) fn keep(&mut self, current: usize) {
        self.next_slot = if current == 0 { 1 } else { 0 };
    }

    /// Writes `body` to the next slot; `sync` makes it durable before returning.
    pub(crate) fn write(&mut self, body: &str, sync: bool) -> std::io::Result<()> {
        let offset = self.next_slot * SLOT_BYTES as u64;
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.write_all(&seal(body))?;
        if sync {
            self.file.sync_data()?;
        }
        self.next_slot = 1 - self.next_slot;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_body_round_trips_and_a_flipped_byte_fails() {
        let slot = seal("hello 42");
        assert_eq!(slot.len(), SLOT_BYTES);
        assert_eq!(unseal(&slot).as_deref(), Some("hello 42"));
        let mut torn = slot.clone();
        torn[2] ^= 1;
        assert_eq!(unseal(&torn), None);
        assert_eq!(unseal(&[0u8; SLOT_BYTES]), None);
    }
}
