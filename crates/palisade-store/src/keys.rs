//! Key layouts of the `data` tree. Integers are big-endian so byte order is numeric order.
//!
//! Every key starts with a one-byte space: `r` records (id → meta + envelope), `i` indexes,
//! `f` feed heads (author → head), `e` equivocation proofs (author ++ seq → proof), `a`
//! anomaly states (fingerprint → status), `x` eviction markers (author → what the quota
//! evicted of its feed), `m` counters. One tree lets a group of records and
//! all their index entries be written with one atomic `apply_batch`, which costs a fraction
//! of a multi-tree transaction.
//!
//! Index keys (after `i`):
//!
//! | tag | index            | key after the tag                          | value            |
//! |-----|------------------|--------------------------------------------|------------------|
//! | 1   | author feed      | author(32) seq(8) id(32)                   | empty            |
//! | 2   | (time: schema 1 only; now only the prefix of cursors of unfiltered queries) | | |
//! | 3   | kind + time      | kind(1) issued_at_ms(8) id(32)             | empty            |
//! | 4   | subject digest   | blake3(digest text)(32) issued_at_ms(8) id | empty            |
//! | 5   | anomaly fingerprint | fingerprint(32) issued_at_ms(8) id(32)  | state(1) report(1) |
//! | 6   | anomaly source   | blake3(source)(32) issued_at_ms(8) id(32)  | empty            |
//! | 7   | revocations      | target id(32) revocation id(32)            | revoker author(32) |
//! | 8   | received (eviction order, schema 3) | received_at_ms(8) id(32) | empty            |

use palisade_types::{AuthorKey, Digest, Fingerprint, RecordId, RecordKind};

pub(crate) const SPACE_RECORD: u8 = b'r';
pub(crate) const SPACE_INDEX: u8 = b'i';
pub(crate) const SPACE_FEED: u8 = b'f';
pub(crate) const SPACE_EQUIVOCATION: u8 = b'e';
pub(crate) const SPACE_ANOMALY: u8 = b'a';
pub(crate) const SPACE_META: u8 = b'm';
pub(crate) const SPACE_EVICTED: u8 = b'x';

/// `space ++ bytes`.
pub(crate) fn spaced(space: u8, bytes: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + bytes.len());
    k.push(space);
    k.extend_from_slice(bytes);
    k
}

pub(crate) fn record_key(id: &RecordId) -> Vec<u8> {
    spaced(SPACE_RECORD, id.as_bytes())
}

pub(crate) fn feed_key(author: &AuthorKey) -> Vec<u8> {
    spaced(SPACE_FEED, author.as_bytes())
}

pub(crate) fn anomaly_key(fp: &Fingerprint) -> Vec<u8> {
    spaced(SPACE_ANOMALY, fp.as_bytes())
}

pub(crate) fn equivocation_key(author: &AuthorKey, seq: u64) -> Vec<u8> {
    let mut k = spaced(SPACE_EQUIVOCATION, author.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) const TAG_AUTHOR_SEQ: u8 = 1;
pub(crate) const TAG_TIME: u8 = 2;
pub(crate) const TAG_KIND_TIME: u8 = 3;
pub(crate) const TAG_SUBJECT: u8 = 4;
pub(crate) const TAG_FINGERPRINT: u8 = 5;
pub(crate) const TAG_SOURCE: u8 = 6;
pub(crate) const TAG_REVOCATION: u8 = 7;
pub(crate) const TAG_RECEIVED: u8 = 8;

/// Bytes of a received-index key: space, tag, time(8), id(32).
pub(crate) const RECEIVED_KEY_LEN: usize = 2 + 8 + 32;

/// Prefix of the received index (the quota's eviction order).
pub(crate) fn received_prefix() -> Vec<u8> {
    vec![SPACE_INDEX, TAG_RECEIVED]
}

/// `i 8 received_at_ms id`.
pub(crate) fn received_key(received_at_ms: u64, id: &RecordId) -> Vec<u8> {
    timed(&received_prefix(), received_at_ms, id)
}

pub(crate) fn evicted_key(author: &AuthorKey) -> Vec<u8> {
    spaced(SPACE_EVICTED, author.as_bytes())
}

pub(crate) fn author_prefix(author: &AuthorKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + 32);
    k.push(SPACE_INDEX);
    k.push(TAG_AUTHOR_SEQ);
    k.extend_from_slice(author.as_bytes());
    k
}

pub(crate) fn author_seq_prefix(author: &AuthorKey, seq: u64) -> Vec<u8> {
    let mut k = author_prefix(author);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn author_seq(author: &AuthorKey, seq: u64, id: &RecordId) -> Vec<u8> {
    let mut k = author_seq_prefix(author, seq);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `prefix ++ t(8) ++ id(32)`.
pub(crate) fn timed(prefix: &[u8], t: u64, id: &RecordId) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 40);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&t.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// Prefix of the schema-1 time index, and of cursors of queries that merge the kind indexes.
pub(crate) fn time_prefix() -> Vec<u8> {
    vec![SPACE_INDEX, TAG_TIME]
}

pub(crate) fn kind_prefix(kind: RecordKind) -> Vec<u8> {
    vec![SPACE_INDEX, TAG_KIND_TIME, kind.tag()]
}

pub(crate) fn subject_prefix(d: &Digest) -> Vec<u8> {
    hashed_prefix(TAG_SUBJECT, "palisade subject-index v1", d.to_text().as_bytes())
}

pub(crate) fn source_prefix(source: &str) -> Vec<u8> {
    hashed_prefix(TAG_SOURCE, "palisade source-index v1", source.as_bytes())
}

pub(crate) fn fingerprint_prefix(fp: &Fingerprint) -> Vec<u8> {
    let mut k = Vec::with_capacity(34);
    k.push(SPACE_INDEX);
    k.push(TAG_FINGERPRINT);
    k.extend_from_slice(fp.as_bytes());
    k
}

pub(crate) fn revocation_prefix(target: &RecordId) -> Vec<u8> {
    let mut k = Vec::with_capacity(66);
    k.push(SPACE_INDEX);
    k.push(TAG_REVOCATION);
    k.extend_from_slice(target.as_bytes());
    k
}

fn hashed_prefix(tag: u8, context: &str, data: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(34);
    k.push(SPACE_INDEX);
    k.push(tag);
    k.extend_from_slice(&blake3::derive_key(context, data));
    k
}

/// The last 32 bytes of an index key: the record id.
pub(crate) fn trailing_id(key: &[u8]) -> Option<RecordId> {
    let start = key.len().checked_sub(32)?;
    let bytes: [u8; 32] = key.get(start..)?.try_into().ok()?;
    Some(RecordId(bytes))
}

/// The `seq` of an author-feed key (`i`, tag, author(32), seq(8), id(32)).
pub(crate) fn author_key_seq(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(34..42)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// `bytes + 1` as a big-endian number of the same length, for exclusive upper bounds of
/// prefix scans; `None` when all bytes are 0xff.
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xff {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}
