//! The guard (ledger, counters, limits) and live events.

use super::*;
use std::collections::BTreeMap;

use palisade_types::{AuthorKey, RecordId, RecordKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A drop-ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerEntryView {
    /// Position in the ledger.
    pub seq: u64,
    /// When (latest occurrence for folded entries).
    pub time_ms: u64,
    /// First occurrence for folded entries (equals `time_ms` when `count` is 1).
    pub first_time_ms: u64,
    /// The peer, if known.
    pub peer: Option<String>,
    /// The remote IP, if known.
    pub ip: Option<String>,
    /// `dropped`, `denied`, `throttled`, `penalized`, `disconnected`, `banned`, `unbanned`.
    pub action: String,
    /// Reason name.
    pub reason: String,
    /// Occurrences folded into this entry.
    pub count: u64,
    /// Free text (an admin's ban reason).
    pub detail: Option<String>,
}

impl From<palisade_guard::LedgerEntry> for LedgerEntryView {
    fn from(e: palisade_guard::LedgerEntry) -> LedgerEntryView {
        LedgerEntryView {
            seq: e.seq,
            time_ms: e.time_ms,
            first_time_ms: e.first_time_ms,
            peer: e.peer.map(|p| p.to_base58()),
            ip: e.ip.map(|ip| ip.to_string()),
            action: e.action.as_str().to_string(),
            reason: e.reason.into_owned(),
            count: e.count,
            detail: e.detail,
        }
    }
}

/// Ledger parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LedgerParams {
    /// Entries with `seq` greater than this (the previous page's `next_cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    /// Page size 1–1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `GET /v1/guard/ledger`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerPage {
    /// Entries, oldest first.
    pub entries: Vec<LedgerEntryView>,
    /// Pass as `cursor` for the next page (the last `seq` returned); `null` once this page
    /// reached the newest entry (to follow, keep the last `seq` and ask again).
    pub next_cursor: Option<u64>,
}

/// Headline ingest counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IngestCounters {
    /// Signatures checked.
    pub signatures_verified: u64,
    /// Copies dropped as duplicates before signature work.
    pub duplicates_before_verify: u64,
    /// Records accepted.
    pub accepted: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Records ignored.
    pub ignored: u64,
}

/// `GET /v1/guard/counters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Counters {
    /// Guard totals by action and reason (`dropped.peer_rate_exceeded`, `banned.peer`, ...).
    pub guard: BTreeMap<String, u64>,
    /// Ingest totals.
    pub ingest: IngestCounters,
}

/// `GET /v1/limits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LimitsView {
    /// Every `[limits]` key and its value in force.
    #[schema(value_type = Object)]
    pub limits: serde_json::Map<String, serde_json::Value>,
    /// Keys that only change with a restart.
    pub restart_only: Vec<String>,
}

/// `PUT /v1/limits/{key}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLimitRequest {
    /// New value: a number, a string, or a list of strings.
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}

/// Events query parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Comma-separated event types to receive (default all): `record_stored`,
    /// `peer_connected`, `peer_disconnected`, `equivocation`, `banned`, `unbanned`,
    /// `peer_penalty_disconnect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<String>,
    /// Comma-separated record kinds for `record_stored` events (default all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<String>,
}

/// One event of `GET /v1/events` (the SSE `event:` field is `type`, `data:` is this JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApiEvent {
    /// A record was stored.
    RecordStored {
        /// Record id.
        #[schema(value_type = String)]
        id: RecordId,
        /// Kind.
        #[schema(value_type = String)]
        kind: RecordKind,
        /// Author.
        #[schema(value_type = String)]
        author: AuthorKey,
        /// Feed position.
        seq: u64,
        /// How it arrived.
        source: SourceView,
    },
    /// A peer connected.
    PeerConnected {
        /// Peer id.
        peer: String,
        /// Its address.
        addr: String,
        /// `inbound` or `outbound`.
        direction: String,
    },
    /// A peer's last connection closed.
    PeerDisconnected {
        /// Peer id.
        peer: String,
    },
    /// An author signed two records at one seq.
    Equivocation {
        /// Author.
        #[schema(value_type = String)]
        author: AuthorKey,
        /// Seq.
        seq: u64,
    },
    /// A peer or IP was banned.
    Banned {
        /// Target.
        target: String,
        /// End; `null` if permanent.
        until_ms: Option<u64>,
        /// Why.
        reason: String,
    },
    /// A ban was lifted or expired.
    Unbanned {
        /// Target.
        target: String,
    },
    /// A peer's reputation fell below the disconnect threshold.
    PeerPenaltyDisconnect {
        /// Peer id.
        peer: String,
        /// The penalty that pushed it over.
        reason: String,
    },
    /// This subscriber fell behind and missed events; the stream ends after this.
    Lagged {
        /// Events missed.
        missed: u64,
    },
}

impl ApiEvent {
    /// The `type` name (the SSE event name).
    pub fn type_name(&self) -> &'static str {
        match self {
            ApiEvent::RecordStored { .. } => "record_stored",
            ApiEvent::PeerConnected { .. } => "peer_connected",
            ApiEvent::PeerDisconnected { .. } => "peer_disconnected",
            ApiEvent::Equivocation { .. } => "equivocation",
            ApiEvent::Banned { .. } => "banned",
            ApiEvent::Unbanned { .. } => "unbanned",
            ApiEvent::PeerPenaltyDisconnect { .. } => "peer_penalty_disconnect",
            ApiEvent::Lagged { .. } => "lagged",
        }
    }

    /// Every type name a client may filter on.
    pub const TYPES: [&'static str; 7] = [
        "record_stored",
        "peer_connected",
        "peer_disconnected",
        "equivocation",
        "banned",
        "unbanned",
        "peer_penalty_disconnect",
    ];
}
