//! Errors, health, readiness, node information, peers and bans.

use palisade_types::AuthorKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error answer: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code: `bad_json`, `invalid_field`, `unknown_field`, `not_found`, `conflict`,
    /// `payload_too_large`, `rate_limited`, `too_many_subscribers`, `unauthorized`,
    /// `not_ready`, `timeout`, `unavailable`, `internal`, ...
    pub code: String,
    /// What went wrong and what to do; names the offending field.
    pub message: String,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
}

/// `GET /v1/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// Whether every check passed.
    pub ready: bool,
    /// The store answers reads.
    pub store_open: bool,
    /// The swarm has at least one listen address.
    pub listening: bool,
    /// Bootstrap peers are configured (then `connected_peers >= 1` is required).
    pub bootstrap_configured: bool,
    /// Connected peers.
    pub connected_peers: usize,
    /// Free disk space is below `store.min_free_disk_bytes` (the flood stage): new records
    /// are refused until it is back.
    #[serde(default)]
    pub disk_low: bool,
    /// Free bytes on the store's filesystem at the last sample (every second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free_bytes: Option<u64>,
    /// Why the node is not ready, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// `GET /v1/store/usage`: the store quota (`store.max_bytes`) and what it evicted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoreUsageView {
    /// Logical bytes of the stored records (keys and values they write): what the quota counts.
    pub bytes_used: u64,
    /// The quota, `store.max_bytes`.
    pub max_bytes: u64,
    /// Bytes sled's files take on disk (more than `bytes_used`: pages, log, free space sled
    /// reuses).
    pub size_on_disk_bytes: u64,
    /// Free bytes on the store's filesystem at the last sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free_bytes: Option<u64>,
    /// Over the quota with nothing left to evict: records of unprotected authors are refused.
    pub quota_full: bool,
    /// Records evicted since the node started (authors no trust policy or
    /// `store.retain_authors` names, oldest received first).
    pub evicted_records: u64,
    /// Their bytes.
    pub evicted_bytes: u64,
    /// Records refused since the node started because the quota was full.
    pub refused_quota_full: u64,
    /// Records refused since the node started because the quota had evicted their seq.
    pub refused_evicted: u64,
    /// Authors the quota never evicts (trust policies and `store.retain_authors`; the node's
    /// own author comes on top).
    pub protected_authors: u64,
    /// sled compresses the store's pages (`store.compression` when the store was created).
    pub compressed: bool,
    /// Online compactions completed since the node started (sled keeps the space of evicted
    /// records until one runs: `store.compact_above_bytes`, `store.compact_above_ratio`).
    #[serde(default)]
    pub compactions: u64,
    /// Online compactions that failed since the node started (the store went on as it was).
    #[serde(default)]
    pub compaction_failures: u64,
    /// Compactions due but not started since the node started: too little free disk for the copy.
    #[serde(default)]
    pub compactions_skipped_no_room: u64,
    /// Bytes of files online compaction gave back since the node started.
    #[serde(default)]
    pub compaction_reclaimed_bytes: u64,
    /// How long writers waited during the last online compaction, in milliseconds.
    #[serde(default)]
    pub last_compaction_pause_ms: u64,
}

/// Stored records per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordCounts {
    /// Attestations.
    pub attestation: u64,
    /// Anomaly reports.
    pub anomaly: u64,
    /// Anomaly updates.
    pub anomaly_update: u64,
    /// Revocations.
    pub revocation: u64,
    /// All records.
    pub total: u64,
}

/// The state of one author's feed on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FeedHeadView {
    /// Every seq from 1 to this is stored.
    pub contiguous_seq: u64,
    /// Highest seq stored.
    pub max_seq: u64,
    /// Records stored for the author.
    pub records: u64,
}

impl From<palisade_store::FeedHead> for FeedHeadView {
    fn from(h: palisade_store::FeedHead) -> FeedHeadView {
        FeedHeadView { contiguous_seq: h.contiguous_seq, max_seq: h.max_seq, records: h.records }
    }
}

/// `GET /v1/node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    /// libp2p peer id.
    pub peer_id: String,
    /// This node's author key (signs records submitted here).
    #[schema(value_type = String)]
    pub author: AuthorKey,
    /// `palisade` version.
    pub version: String,
    /// Addresses the swarm listens on.
    pub listen_addrs: Vec<String>,
    /// Addresses other peers may reach this node at.
    pub external_addrs: Vec<String>,
    /// Seconds since the API server started.
    pub uptime_secs: u64,
    /// When the API server started (ms since the epoch).
    pub started_at_ms: u64,
    /// Stored records by kind.
    pub records: RecordCounts,
    /// Connected peers.
    pub peers: usize,
    /// Authors with at least one stored record.
    pub authors: u64,
    /// This node's own feed head, if it has published anything.
    pub feed_head: Option<FeedHeadView>,
}

/// A rate-limiter bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BucketView {
    /// Units that could be taken now.
    pub available: u32,
    /// Capacity.
    pub burst: u32,
    /// Sustained rate per second.
    pub per_sec: u32,
}

impl From<palisade_guard::BucketState> for BucketView {
    fn from(b: palisade_guard::BucketState) -> BucketView {
        BucketView { available: b.available, burst: b.burst, per_sec: b.per_sec }
    }
}

/// The guard's rate limiters for one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerLimiters {
    /// Messages.
    pub messages: BucketView,
    /// Message bytes.
    pub message_bytes: BucketView,
    /// Cost units (signature checks cost more than duplicates).
    pub cost_units: BucketView,
    /// New records.
    pub records: BucketView,
}

/// One connected peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeerView {
    /// Peer id.
    pub peer_id: String,
    /// Remote address of its first connection.
    pub addr: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Open connections.
    pub connections: usize,
    /// Connected since (ms since the epoch).
    pub since_ms: u64,
    /// Agent version from identify.
    pub agent: Option<String>,
    /// Gossipsub score.
    pub gossip_score: Option<f64>,
    /// Guard reputation in points (0 neutral, lower is worse).
    pub score: f64,
    /// Whether the peer is allowlisted.
    pub allowlisted: bool,
    /// End of an active ban.
    pub banned_until_ms: Option<u64>,
    /// Payload bytes received over its current connections.
    pub bytes_in: u64,
    /// Payload bytes sent over its current connections.
    pub bytes_out: u64,
    /// Rate-limiter state.
    pub limiters: PeerLimiters,
}

/// `GET /v1/peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeerList {
    /// Connected peers.
    pub peers: Vec<PeerView>,
}

/// `POST /v1/peers/dial`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DialRequest {
    /// Multiaddr, ideally ending in `/p2p/<peer id>`.
    pub addr: String,
}

/// Answer to a dial: the connection is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DialResponse {
    /// The address dialled.
    pub addr: String,
    /// The peer that answered there.
    pub peer_id: String,
}

/// Answer to a disconnect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DisconnectResponse {
    /// The peer.
    pub peer_id: String,
    /// Always true (a peer that was not connected is a 404).
    pub disconnected: bool,
}

/// `POST /v1/bans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BanRequest {
    /// `peer:<peer id>`, `ip:<address>`, or a bare peer id or IP address.
    pub target: String,
    /// Ban length in seconds (1 up to 10 years); default `limits.ban_duration_secs`.
    #[serde(default)]
    pub duration_secs: Option<u64>,
    /// Until an admin lifts it (overrides `duration_secs`).
    #[serde(default)]
    pub permanent: bool,
    /// Why (kept in the ledger, at most 256 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A ban in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BanView {
    /// `peer:<id>` or `ip:<address>`.
    pub target: String,
    /// End (ms since the epoch); `null` for permanent bans.
    pub until_ms: Option<u64>,
    /// When it was made.
    pub created_ms: u64,
    /// Why.
    pub reason: String,
}

impl From<palisade_guard::BanInfo> for BanView {
    fn from(b: palisade_guard::BanInfo) -> BanView {
        BanView {
            target: b.target.to_string(),
            until_ms: (b.until_ms != palisade_guard::PERMANENT_UNTIL_MS).then_some(b.until_ms),
            created_ms: b.created_ms,
            reason: b.reason,
        }
    }
}

/// `GET /v1/bans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BanList {
    /// Bans in force.
    pub bans: Vec<BanView>,
}

/// Answer to an unban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnbanResponse {
    /// The target.
    pub target: String,
    /// Always true (no ban is a 404).
    pub unbanned: bool,
}
