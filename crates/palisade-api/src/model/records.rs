//! Records: submissions, pages, filters, feeds, equivocations, verdicts, anomalies, import and export.

use super::*;
use std::collections::BTreeMap;

use palisade_types::{AuthorKey, RecordId, RecordKind, Statement};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::schema::StatementSchema;

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
