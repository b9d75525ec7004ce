//! Request and response bodies of the API, shared by the server and [`ApiClient`].
//!
//! Field names are the JSON names. Times are milliseconds since the Unix epoch (`*_ms`);
//! ids, author keys and fingerprints are 64 lowercase hex characters; digests are
//! `"<algorithm>:<hex>"`.
//!
//! [`ApiClient`]: crate::ApiClient

use std::collections::BTreeMap;

use palisade_types::{AuthorKey, RecordId, RecordKind, Statement};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::schema::StatementSchema;

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

/// Answer to a submission: the record is durable on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmitResponse {
    /// Record id.
    #[schema(value_type = String)]
    pub id: RecordId,
    /// Its position in this node's feed.
    pub seq: u64,
    /// Kind of the record.
    #[schema(value_type = String)]
    pub kind: RecordKind,
    /// Whether gossip had peers right away (if not, sync delivers it).
    pub gossiped: bool,
}

/// How a record reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceView {
    /// Submitted through this API.
    Local,
    /// Gossip.
    Gossip,
    /// Anti-entropy sync.
    Sync,
    /// NDJSON import.
    Import,
}

impl From<palisade_store::Source> for SourceView {
    fn from(s: palisade_store::Source) -> SourceView {
        match s {
            palisade_store::Source::Local => SourceView::Local,
            palisade_store::Source::Gossip => SourceView::Gossip,
            palisade_store::Source::Sync => SourceView::Sync,
            palisade_store::Source::Import => SourceView::Import,
        }
    }
}

/// A stored record, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordView {
    /// Record id.
    #[schema(value_type = String)]
    pub id: RecordId,
    /// Kind.
    #[schema(value_type = String)]
    pub kind: RecordKind,
    /// Author key.
    #[schema(value_type = String)]
    pub author: AuthorKey,
    /// Position in the author's feed.
    pub seq: u64,
    /// Id of the author's record at `seq - 1`.
    #[schema(value_type = Option<String>)]
    pub prev: Option<RecordId>,
    /// When the author issued it.
    pub issued_at_ms: u64,
    /// What the author said.
    #[schema(value_type = StatementSchema)]
    pub statement: Statement,
    /// When this node stored it.
    pub received_at_ms: u64,
    /// How it reached this node.
    pub source: SourceView,
    /// The revocation that withdrew it, if any.
    #[schema(value_type = Option<String>)]
    pub revoked_by: Option<RecordId>,
    /// The signed envelope (standard base64), when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<String>,
}

impl RecordView {
    /// Builds the view of a stored record; `envelope` adds the base64 envelope.
    pub fn from_stored(s: &palisade_store::StoredRecord, envelope: bool) -> RecordView {
        use base64::Engine as _;
        let r = s.record.record();
        RecordView {
            id: s.record.id(),
            kind: s.record.kind(),
            author: r.position.author,
            seq: r.position.seq,
            prev: r.position.prev,
            issued_at_ms: r.position.issued_at_ms,
            statement: r.statement.clone(),
            received_at_ms: s.meta.received_at_ms,
            source: s.meta.source.into(),
            revoked_by: s.revoked_by,
            envelope: envelope
                .then(|| base64::engine::general_purpose::STANDARD.encode(s.record.wire_bytes())),
        }
    }
}

/// A page of records: `{"records": [...], "next_cursor": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordPage {
    /// Matching records.
    pub records: Vec<RecordView>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// Record query filters (`GET /v1/records`, `GET /v1/export`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordFilter {
    /// `attestation`, `anomaly`, `anomaly_update` or `revocation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Author key (64 hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Attestations whose subject has this digest (`sha256:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Anomalies and updates with this fingerprint (64 hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Anomalies from this source URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Anomalies with severity number at least this (1–24).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<u8>,
    /// Anomalies whose current state is this (`open`, `acknowledged`, `resolved`, `suppressed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Issued at or after (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// Issued at or before (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// Leave out records revoked by their author (default false: they are marked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_revoked: Option<bool>,
    /// Page size 1–1000 (default 100). Ignored by export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Include the base64 envelope of each record (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<bool>,
}

/// Paging parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size 1–1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `GET /v1/feeds/{author}`: one author's feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FeedView {
    /// The author.
    #[schema(value_type = String)]
    pub author: AuthorKey,
    /// Its feed head on this node.
    pub head: FeedHeadView,
    /// Whether the author was caught equivocating.
    pub flagged: bool,
    /// Records in seq order.
    pub records: Vec<RecordView>,
    /// Next page.
    pub next_cursor: Option<String>,
}

/// One entry of `GET /v1/feeds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FeedSummary {
    /// The author.
    #[schema(value_type = String)]
    pub author: AuthorKey,
    /// Its feed head.
    pub head: FeedHeadView,
}

/// `GET /v1/feeds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FeedList {
    /// Feeds in author order.
    pub feeds: Vec<FeedSummary>,
    /// Next page.
    pub next_cursor: Option<String>,
}

/// Two records by one author at one seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EquivocationView {
    /// The author.
    #[schema(value_type = String)]
    pub author: AuthorKey,
    /// The seq used twice.
    pub seq: u64,
    /// The record stored first.
    #[schema(value_type = String)]
    pub first: RecordId,
    /// The conflicting record.
    #[schema(value_type = String)]
    pub second: RecordId,
    /// When this node detected it.
    pub detected_at_ms: u64,
}

/// `GET /v1/equivocations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EquivocationPage {
    /// Proofs in (author, seq) order.
    pub equivocations: Vec<EquivocationView>,
    /// Next page.
    pub next_cursor: Option<String>,
}

/// Verdict query parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerdictParams {
    /// Named trust policy from `[admin.trust.<name>]` (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Override the trusted authors: comma-separated author keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authors: Option<String>,
    /// Override k: how many distinct trusted authors must say pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<usize>,
}

/// The trust policy a verdict was computed under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    /// Policy name, `null` when given entirely in the query.
    pub name: Option<String>,
    /// Trusted authors.
    #[schema(value_type = Vec<String>)]
    pub authors: Vec<AuthorKey>,
    /// k.
    pub threshold: usize,
}

/// One author's latest attestation of a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthorAttestation {
    /// The author.
    #[schema(value_type = String)]
    pub author: AuthorKey,
    /// Whether the author is in the policy's trusted set.
    pub trusted: bool,
    /// Whether the author was caught equivocating (then it never counts).
    pub flagged: bool,
    /// The attestation's record id.
    #[schema(value_type = String)]
    pub record_id: RecordId,
    /// Its seq.
    pub seq: u64,
    /// When it was issued.
    pub issued_at_ms: u64,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// Score, hundredths of 0.0–10.0.
    pub score: u16,
    /// Scanner name.
    pub scanner: String,
    /// Scanner version.
    pub scanner_version: String,
    /// Expiry, if any.
    pub expires_at_ms: Option<u64>,
}

/// `GET /v1/subjects/{digest}/verdict`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerdictView {
    /// The subject digest.
    pub subject: String,
    /// The policy applied; `null` when none is configured or given (then nothing is trusted).
    pub policy: Option<PolicyView>,
    /// Whether at least `threshold` distinct trusted, unflagged authors say pass.
    pub satisfied: bool,
    /// Trusted, unflagged authors whose latest attestation says pass.
    pub passing: usize,
    /// Trusted, unflagged authors whose latest attestation says fail.
    pub failing: usize,
    /// The latest non-revoked, unexpired attestation of every author.
    pub attestations: Vec<AuthorAttestation>,
    /// The scan stopped early (more than 20 000 attestations of this subject).
    pub truncated: bool,
}

/// Summary of an anomaly's latest report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AnomalyReportSummary {
    /// Reporter.
    #[schema(value_type = String)]
    pub author: AuthorKey,
    /// Source URI.
    pub source: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// OpenTelemetry severity number.
    pub severity_number: u8,
    /// Severity text.
    pub severity_text: String,
    /// Score, hundredths.
    pub score: u16,
    /// Summary line.
    pub summary: String,
}

/// The folded state of one anomaly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AnomalyView {
    /// Fingerprint.
    pub fingerprint: String,
    /// `open`, `acknowledged`, `resolved` or `suppressed`.
    pub state: String,
    /// Reports and updates seen.
    pub events: u64,
    /// Time of the last event applied.
    pub last_event_ms: u64,
    /// Id of the last event applied.
    #[schema(value_type = String)]
    pub last_event_id: RecordId,
    /// Latest report's id.
    #[schema(value_type = Option<String>)]
    pub latest_report: Option<RecordId>,
    /// Latest report's main fields.
    pub report: Option<AnomalyReportSummary>,
}

/// Anomaly list parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnomalyListParams {
    /// Only this state (default `open`; `all` for every state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Page size 1–1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `GET /v1/anomalies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AnomalyPage {
    /// Anomalies in fingerprint order.
    pub anomalies: Vec<AnomalyView>,
    /// Next page.
    pub next_cursor: Option<String>,
}

/// One rejected line of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportRejection {
    /// 1-based line number.
    pub line: u64,
    /// Why.
    pub error: String,
}

/// `POST /v1/import`: what happened to every line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    /// Non-empty lines read.
    pub lines: u64,
    /// Records verified and stored.
    pub accepted: u64,
    /// Records already stored.
    pub duplicate: u64,
    /// Lines refused.
    pub rejected: u64,
    /// The first 1000 rejections with line numbers.
    pub rejections: Vec<ImportRejection>,
    /// More rejections than listed.
    pub rejections_truncated: bool,
}

/// One line of an export (and of an import).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExportLine {
    /// Record id (informative; import recomputes it and refuses a mismatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub id: Option<RecordId>,
    /// Kind (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub kind: Option<RecordKind>,
    /// The signed envelope, standard base64.
    pub envelope: String,
}

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
    /// Pass as `cursor` for newer entries (the last `seq` returned, or the one given).
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
