//! The values the store keeps and returns: how a record arrived, its stored form (meta +
//! wire bytes), feed heads, equivocation proofs, anomaly states, bans and the peer book.

use bincode::{Decode, Encode};
use palisade_types::{AnomalyState, AuthorKey, Fingerprint, RecordId, VerifiedRecord};

use crate::{keys, Result, StoreError};

/// How a record reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Signed by this node (admin API).
    Local,
    /// Received by gossip.
    Gossip,
    /// Pulled by anti-entropy sync.
    Sync,
    /// Imported from an NDJSON file.
    Import,
}

impl Source {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Source::Local => 0,
            Source::Gossip => 1,
            Source::Sync => 2,
            Source::Import => 3,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Source> {
        Some(match b {
            0 => Source::Local,
            1 => Source::Gossip,
            2 => Source::Sync,
            3 => Source::Import,
            _ => return None,
        })
    }
}

/// Local facts about a stored record (not part of the signed record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredMeta {
    /// When this node stored it (ms since epoch).
    pub received_at_ms: u64,
    /// How it arrived.
    pub source: Source,
}

const RECORD_VALUE_FORMAT: u8 = 1;
pub(crate) const RECORD_META_LEN: usize = 1 + 8 + 1;

pub(crate) fn encode_record_value(meta: StoredMeta, wire: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(RECORD_META_LEN + wire.len());
    v.push(RECORD_VALUE_FORMAT);
    v.extend_from_slice(&meta.received_at_ms.to_le_bytes());
    v.push(meta.source.to_byte());
    v.extend_from_slice(wire);
    v
}

/// Splits a stored record value into its meta and the envelope bytes, checking the header
/// only (the envelope is not decoded).
pub(crate) fn split_record_value<'v>(id: &RecordId, value: &'v [u8]) -> Result<(StoredMeta, &'v [u8])> {
    let corrupt = |d: &str| StoreError::corrupt("data", &keys::record_key(id), d);
    let (head, wire) = value.split_at_checked(RECORD_META_LEN).ok_or_else(|| corrupt("value too short"))?;
    let [format, t @ .., source] = head else { return Err(corrupt("value too short")) };
    if *format != RECORD_VALUE_FORMAT {
        return Err(corrupt("unknown value format"));
    }
    let t: [u8; 8] = t.try_into().map_err(|_| corrupt("bad timestamp"))?;
    let source = Source::from_byte(*source).ok_or_else(|| corrupt("unknown source"))?;
    Ok((StoredMeta { received_at_ms: u64::from_le_bytes(t), source }, wire))
}

pub(crate) fn decode_record_value(id: &RecordId, value: &[u8]) -> Result<(StoredMeta, VerifiedRecord)> {
    let (meta, wire) = split_record_value(id, value)?;
    let corrupt = |d: &str| StoreError::corrupt("data", &keys::record_key(id), d);
    // The one place allowed to skip the checks: these bytes were verified before they were
    // written (and `palisade store check` walks them through the checks again).
    #[allow(clippy::disallowed_methods)]
    let record = VerifiedRecord::from_trusted_bytes(wire.to_vec()).map_err(|e| corrupt(&e.to_string()))?;
    if record.id() != *id {
        return Err(corrupt("record id does not match its key"));
    }
    Ok((meta, record))
}

/// A record as the store returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The verified record.
    pub record: VerifiedRecord,
    /// Local facts.
    pub meta: StoredMeta,
    /// The revocation that withdrew this record, if its author revoked it.
    pub revoked_by: Option<RecordId>,
}

/// The state of one author's feed on this node.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize,
)]
pub struct FeedHead {
    /// Highest seq such that every seq from 1 to it is stored. Sync advertises this.
    pub contiguous_seq: u64,
    /// Highest seq stored (above `contiguous_seq` there are gaps).
    pub max_seq: u64,
    /// Records stored for this author (equivocating copies included).
    pub records: u64,
}

/// Two different records by one author at one seq: a self-verifying proof that the author
/// forked its feed. Both records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct EquivocationProof {
    /// The author.
    pub author: AuthorKey,
    /// The seq used twice.
    pub seq: u64,
    /// The record stored first.
    pub first: RecordId,
    /// The conflicting record.
    pub second: RecordId,
    /// When this node detected it.
    pub detected_at_ms: u64,
}

/// The folded state of one anomaly (all reports and updates with its fingerprint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct AnomalyStatus {
    /// The fingerprint.
    pub fingerprint: Fingerprint,
    /// Current state.
    pub state: AnomalyState,
    /// Latest report (anomaly record) with this fingerprint.
    pub latest_report: Option<RecordId>,
    /// Reports and updates seen.
    pub events: u64,
    /// `issued_at_ms` of the last event applied.
    pub last_event_ms: u64,
    /// Id of the last event applied (tie-breaker).
    pub last_event_id: RecordId,
}

/// Result of [`Store::insert`](crate::Store::insert).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored for the first time.
    Inserted(Inserted),
    /// Already stored; nothing changed.
    Duplicate,
    /// Not stored, by the store quota (see [`Refusal`]); nothing changed.
    Refused(Refusal),
}

/// Why the store quota (`store.max_bytes`) kept a valid record out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The store is over its quota and nothing more can be evicted: records of authors no
    /// trust policy names are refused until space is made (own and protected authors' records
    /// are still stored).
    QuotaFull,
    /// The quota evicted this author's feed up to this seq; the record is not taken back (sync
    /// does not fetch evicted ranges, and gossip or an import cannot refill them).
    Evicted,
}

/// What the quota evicted of one author's feed: a compact marker kept instead of the
/// records, so that they are not fetched or stored again. The feed head is kept as it was,
/// so sync keeps advertising and comparing the same range.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize,
)]
pub struct EvictionMarker {
    /// Highest seq evicted: a record of this author at or below it is refused
    /// ([`Refusal::Evicted`]).
    pub through_seq: u64,
    /// Records of this author evicted so far.
    pub records: u64,
    /// Their bytes (the quota's accounting, see `Store::usage`).
    pub bytes: u64,
}

/// Details of a fresh insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// The author's feed head after the insert.
    pub feed_head: FeedHead,
    /// Set when this record conflicts with a stored one at the same (author, seq).
    pub equivocation: Option<EquivocationProof>,
    /// The stored record at `seq - 1` is not the one `prev` names (a fork further back, or a
    /// record we have not seen). Stored anyway; sync will fetch the other branch.
    pub prev_mismatch: bool,
}

/// A ban as persisted. The guard decides what `target` means (e.g. `peer:<id>`, `ip:<addr>`).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct BanRecord {
    /// What is banned.
    pub target: String,
    /// Ban ends at this time (ms since epoch); `u64::MAX` = until unbanned.
    pub until_ms: u64,
    /// When the ban was made.
    pub created_ms: u64,
    /// Why.
    pub reason: String,
}

/// A known peer and where it was reached.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, serde::Serialize, serde::Deserialize)]
pub struct PeerBookEntry {
    /// Peer id (base58).
    pub peer_id: String,
    /// Multiaddrs it was reached at (bounded by the caller).
    pub addrs: Vec<String>,
    /// Last time it was connected (ms since epoch).
    pub last_seen_ms: u64,
}

pub(crate) fn state_to_byte(s: AnomalyState) -> u8 {
    match s {
        AnomalyState::Open => 0,
        AnomalyState::Acknowledged => 1,
        AnomalyState::Resolved => 2,
        AnomalyState::Suppressed => 3,
    }
}

pub(crate) fn state_from_byte(b: u8) -> Option<AnomalyState> {
    Some(match b {
        0 => AnomalyState::Open,
        1 => AnomalyState::Acknowledged,
        2 => AnomalyState::Resolved,
        3 => AnomalyState::Suppressed,
        _ => return None,
    })
}
