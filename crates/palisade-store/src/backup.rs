//! The backup document (issue 15): everything a node needs to come back on a new disk except
//! its key — the records, the signing history, the bans and the peer book — as one NDJSON
//! file with a format version and a checksum.
//!
//! ```text
//! {"header":{"format":"palisade-backup","version":1,"created_at_ms":…,"author":"<hex>","store_schema":4}}
//! {"record":"<base64 of the signed envelope>"}          (one per record)
//! {"ban":{"target":…,"until_ms":…,"created_ms":…,"reason":…}}
//! {"peer":{<peer book entry>}}
//! {"signing_history":{<the signing-history interchange document>}}
//! {"end":{"records":N,"bans":N,"peers":N,"blake3":"<hash of every byte before this line>"}}
//! ```
//!
//! A backup is taken online ([`BackupStream`], served by `GET /v1/backup`): records are
//! immutable and content-addressed, so a scan of the record space while writers go on holds
//! every record acknowledged before it started (eviction aside); the signing history is read
//! after the scan, so it covers every own record in the file. Records are stored signed:
//! restoring re-verifies each one (a tampered file cannot inject anything), and the `end`
//! line's hash and counts make a damaged or cut-short file fail before anything is written.
//! [`BackupReader`] parses untrusted bytes line by line (bounded lines, never panics; fuzz
//! target `backup_document`).

use std::io::BufRead;

use base64::Engine as _;
use palisade_types::{AuthorKey, RecordId};
use serde::{Deserialize, Serialize};

use crate::{BanRecord, Interchange, PeerBookEntry, Result, Signed, Store};

/// The header's `format`.
pub const BACKUP_FORMAT: &str = "palisade-backup";
/// The header's `version`.
pub const BACKUP_VERSION: u32 = 1;
/// Longest line a reader accepts, in bytes: a record line is at most a 16 KiB envelope
/// (`MAX_ENVELOPE_BYTES`) in base64 plus its key; anything longer is not a backup.
pub const MAX_BACKUP_LINE_BYTES: usize = 128 * 1024;
/// Records per chunk of a [`BackupStream`].
pub const BACKUP_PAGE_RECORDS: usize = 1000;

/// The first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupHeader {
    /// Always `palisade-backup`.
    pub format: String,
    /// Always 1.
    pub version: u32,
    /// When the backup started (ms since the epoch).
    pub created_at_ms: u64,
    /// The node's author (64 hex).
    pub author: String,
    /// The store schema of the node that wrote it.
    pub store_schema: u32,
}

/// The last line: what came before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupEnd {
    /// Record lines.
    pub records: u64,
    /// Ban lines.
    pub bans: u64,
    /// Peer lines.
    pub peers: u64,
    /// blake3 (hex) of every byte before the `end` line.
    pub blake3: String,
}

/// One line of the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BackupLine {
    /// The first line.
    Header(BackupHeader),
    /// A signed record envelope, standard base64.
    Record(String),
    /// A ban.
    Ban(BanRecord),
    /// A peer book entry.
    Peer(PeerBookEntry),
    /// The node's signing history (as `palisade keys history export` prints it), read after
    /// the records so it covers every own record in the file; the line before `end`.
    SigningHistory(Interchange),
    /// The last line.
    End(BackupEnd),
}

/// What a verified document holds (its `end` line and header, checked).
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// The header.
    pub header: BackupHeader,
    /// The author, parsed.
    pub author: AuthorKey,
    /// The signing history, parsed.
    pub signed: Option<Signed>,
    /// The end line.
    pub end: BackupEnd,
}

/// An item of a backup, as [`BackupReader`] yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupItem {
    /// A record's envelope bytes (not yet verified).
    Record(Vec<u8>),
    /// A ban.
    Ban(BanRecord),
    /// A peer book entry.
    Peer(PeerBookEntry),
}

/// Writes lines, hashing and counting them.
struct LineWriter {
    hasher: blake3::Hasher,
    end: BackupEnd,
}

impl LineWriter {
    fn new() -> LineWriter {
        LineWriter {
            hasher: blake3::Hasher::new(),
            end: BackupEnd { records: 0, bans: 0, peers: 0, blake3: String::new() },
        }
    }

    fn push(&mut self, out: &mut Vec<u8>, line: &BackupLine) {
        let start = out.len();
        // Serialising these plain structs cannot fail; an empty line would fail the restore.
        let _ = serde_json::to_writer(&mut *out, line);
        out.push(b'\n');
        if let Some(bytes) = out.get(start..) {
            self.hasher.update(bytes);
        }
        match line {
            BackupLine::Record(_) => self.end.records += 1,
            BackupLine::Ban(_) => self.end.bans += 1,
            BackupLine::Peer(_) => self.end.peers += 1,
            BackupLine::Header(_) | BackupLine::SigningHistory(_) | BackupLine::End(_) => {}
        }
    }

    fn finish(mut self, out: &mut Vec<u8>) {
        self.end.blake3 = self.hasher.finalize().to_hex().to_string();
        let _ = serde_json::to_writer(&mut *out, &BackupLine::End(self.end));
        out.push(b'\n');
    }
}

enum Stage {
    Header,
    Records(Option<RecordId>),
    NodeState,
    Done,
}

/// An online backup of a store, chunk by chunk: call [`next_chunk`](Self::next_chunk) (from
/// a blocking thread) until it returns `None`. Memory is one page of records.
pub struct BackupStream {
    store: Store,
    author: AuthorKey,
    signing: Box<dyn Fn() -> Option<Signed> + Send>,
    created_at_ms: u64,
    stage: Stage,
    writer: LineWriter,
}

impl std::fmt::Debug for BackupStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupStream").field("author", &self.author).finish()
    }
}

impl BackupStream {
    /// A backup of `store`, the node of `author`; `signing` reads its signing history (after
    /// the records, so it covers every own record in the file).
    pub fn new(
        store: Store,
        author: AuthorKey,
        signing: Box<dyn Fn() -> Option<Signed> + Send>,
        created_at_ms: u64,
    ) -> BackupStream {
        BackupStream {
            store,
            author,
            signing,
            created_at_ms,
            stage: Stage::Header,
            writer: LineWriter::new(),
        }
    }

    /// The whole document at once (tests and tools; the admin API streams it chunk by chunk).
    pub fn read_to_end(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk()? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The next chunk of the document; `None` after the `end` line.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Header => {
                let header = BackupHeader {
                    format: BACKUP_FORMAT.into(),
                    version: BACKUP_VERSION,
                    created_at_ms: self.created_at_ms,
                    author: self.author.to_string(),
                    store_schema: crate::SCHEMA_VERSION,
                };
                self.writer.push(&mut out, &BackupLine::Header(header));
                self.stage = Stage::Records(None);
            }
            Stage::Records(after) => {
                let after_bytes = after.map(|id| id.0);
                let page = self.store.record_wires_after(after_bytes.as_ref(), BACKUP_PAGE_RECORDS)?;
                let last = page.last().map(|(id, _)| *id);
                for (_, wire) in &page {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(wire);
                    self.writer.push(&mut out, &BackupLine::Record(b64));
                }
                self.stage = match last {
                    Some(id) if page.len() == BACKUP_PAGE_RECORDS => Stage::Records(Some(id)),
                    _ => Stage::NodeState,
                };
            }
            Stage::NodeState => {
                for ban in self.store.bans()? {
                    self.writer.push(&mut out, &BackupLine::Ban(ban));
                }
                for peer in self.store.peer_book()? {
                    self.writer.push(&mut out, &BackupLine::Peer(peer));
                }
                let history = Interchange::of(self.author, (self.signing)());
                self.writer.push(&mut out, &BackupLine::SigningHistory(history));
                let writer = std::mem::replace(&mut self.writer, LineWriter::new());
                writer.finish(&mut out);
            }
            Stage::Done => return Ok(None),
        }
        Ok(Some(out))
    }
}

/// Reads a backup document from untrusted bytes, line by line, checking its structure; the
/// `end` line's counts and hash are checked when it is reached ([`BackupReader::verify`]
/// reads a whole file that way before anything is written).
pub struct BackupReader<R> {
    input: R,
    hasher: blake3::Hasher,
    seen: BackupEnd,
    header: Option<(BackupHeader, AuthorKey)>,
    /// The `signing_history` line, once read.
    signed: Option<Option<Signed>>,
    done: bool,
    line_no: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> BackupReader<R> {
    /// A reader of `input`; call [`header`](Self::header) first.
    pub fn new(input: R) -> BackupReader<R> {
        BackupReader {
            input,
            hasher: blake3::Hasher::new(),
            seen: BackupEnd { records: 0, bans: 0, peers: 0, blake3: String::new() },
            header: None,
            signed: None,
            done: false,
            line_no: 0,
            buf: Vec::new(),
        }
    }

    /// Reads the next line (bounded); `None` at the end of the input.
    fn read_line(&mut self) -> std::result::Result<Option<BackupLine>, String> {
        self.buf.clear();
        let limit = MAX_BACKUP_LINE_BYTES as u64 + 1;
        let n = std::io::Read::take(&mut self.input, limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| format!("reading the backup: {e}"))?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        if self.buf.last() != Some(&b'\n') {
            return Err(if n as u64 >= limit {
                format!("line {}: longer than {MAX_BACKUP_LINE_BYTES} bytes: not a backup", self.line_no)
            } else {
                format!("line {}: the file ends in the middle of a line (cut short)", self.line_no)
            });
        }
        let line: BackupLine = serde_json::from_slice(&self.buf)
            .map_err(|e| format!("line {}: not a backup line: {e}", self.line_no))?;
        if !matches!(line, BackupLine::End(_)) {
            self.hasher.update(&self.buf);
        }
        Ok(Some(line))
    }

    /// Reads and checks the header line (once; later calls return it again).
    pub fn header(&mut self) -> std::result::Result<(BackupHeader, AuthorKey), String> {
        if let Some(h) = &self.header {
            return Ok(h.clone());
        }
        let Some(BackupLine::Header(header)) = self.read_line()? else {
            return Err("the first line is not a backup header: not a palisade backup".into());
        };
        if header.format != BACKUP_FORMAT || header.version != BACKUP_VERSION {
            return Err(format!(
                "format {:?} version {}: this binary reads {BACKUP_FORMAT:?} version {BACKUP_VERSION}",
                header.format, header.version
            ));
        }
        let author: AuthorKey =
            header.author.parse().map_err(|e| format!("the header's `author` {:?}: {e}", header.author))?;
        let parsed = (header, author);
        self.header = Some(parsed.clone());
        Ok(parsed)
    }

    /// The signing history the document carries, once the reader is past its line (after
    /// every record; `None` before).
    pub fn signed(&self) -> Option<Option<Signed>> {
        self.signed
    }

    /// The next item; `Ok(None)` once the `end` line has been read and checked.
    pub fn next_item(&mut self) -> std::result::Result<Option<BackupItem>, String> {
        if self.header.is_none() {
            self.header()?;
        }
        if self.done {
            return Ok(None);
        }
        let line = self.read_line()?.ok_or("the file ends without its `end` line (cut short)")?;
        if self.signed.is_some() && !matches!(line, BackupLine::End(_)) {
            return Err(format!("line {}: only the `end` line may follow the signing history", self.line_no));
        }
        let item = match line {
            BackupLine::Header(_) => return Err(format!("line {}: a second header", self.line_no)),
            BackupLine::SigningHistory(doc) => {
                let (author, signed) =
                    doc.parse().map_err(|e| format!("line {}: the signing history: {e}", self.line_no))?;
                if self.header.as_ref().map(|(_, a)| *a) != Some(author) {
                    return Err(format!("line {}: the signing history is of another author", self.line_no));
                }
                self.signed = Some(signed);
                return self.next_item();
            }
            BackupLine::Record(b64) => {
                self.seen.records += 1;
                let wire = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| format!("line {}: the record is not standard base64: {e}", self.line_no))?;
                BackupItem::Record(wire)
            }
            BackupLine::Ban(b) => {
                self.seen.bans += 1;
                BackupItem::Ban(b)
            }
            BackupLine::Peer(p) => {
                self.seen.peers += 1;
                BackupItem::Peer(p)
            }
            BackupLine::End(end) => {
                if self.signed.is_none() {
                    return Err(format!(
                        "line {}: the `end` line comes before the signing history",
                        self.line_no
                    ));
                }
                self.check_end(&end)?;
                self.done = true;
                if self.read_line()?.is_some() {
                    return Err(format!("line {}: lines after the `end` line", self.line_no));
                }
                return Ok(None);
            }
        };
        Ok(Some(item))
    }

    fn check_end(&self, end: &BackupEnd) -> std::result::Result<(), String> {
        let sum = self.hasher.clone().finalize().to_hex().to_string();
        if end.blake3 != sum {
            return Err(format!(
                "the file is damaged: its content hashes to {sum}, the `end` line says {}",
                end.blake3
            ));
        }
        let s = &self.seen;
        if (s.records, s.bans, s.peers) != (end.records, end.bans, end.peers) {
            return Err(format!(
                "the `end` line counts {} records, {} bans, {} peers; the file holds {}, {}, {}",
                end.records, end.bans, end.peers, s.records, s.bans, s.peers
            ));
        }
        Ok(())
    }

    /// Reads the whole document, checking every line, the counts and the hash.
    pub fn verify(input: R) -> std::result::Result<BackupSummary, String> {
        let mut reader = BackupReader::new(input);
        let (header, author) = reader.header()?;
        while reader.next_item()?.is_some() {}
        let signed = reader.signed.flatten();
        let end = BackupEnd { blake3: reader.hasher.finalize().to_hex().to_string(), ..reader.seen };
        Ok(BackupSummary { header, author, signed, end })
    }
}
