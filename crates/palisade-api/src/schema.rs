//! OpenAPI schemas of the record statements.
//!
//! The statement types live in `palisade-types`, which knows nothing of OpenAPI. These
//! mirror types describe the same JSON; they are used only for the OpenAPI document, and a
//! unit test round-trips every fixture statement through them (with unknown fields denied),
//! so a field renamed in `palisade-types` breaks the build's tests, not the documentation.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `"<algorithm>:<hex>"`, e.g. `sha256:9f86d0…`, `gitCommit:3f1c…`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Digest, value_type = String, example = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
pub(crate) struct DigestSchema(String);

/// What was audited.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Subject)]
pub(crate) struct SubjectSchema {
    /// Human name, e.g. `pkg:cargo/serde@1.0.210` (at most 256 bytes).
    name: String,
    /// One to eight digests that identify the exact artefact.
    digests: Vec<DigestSchema>,
}

/// A tool and its version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Tool)]
pub(crate) struct ToolSchema {
    /// Name, e.g. `trivy`.
    name: String,
    /// Version, e.g. `0.56.1`.
    version: String,
}

/// Audit outcome.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Verdict)]
pub(crate) enum VerdictSchema {
    /// Passed.
    Pass,
    /// Failed.
    Fail,
    /// Undecided.
    Inconclusive,
}

/// CVSS severity bucket.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = FindingSeverity)]
pub(crate) enum FindingSeveritySchema {
    /// 9.0–10.0.
    Critical,
    /// 7.0–8.9.
    High,
    /// 4.0–6.9.
    Medium,
    /// 0.1–3.9.
    Low,
    /// None or unknown.
    None,
}

/// Findings per severity.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FindingCounts)]
pub(crate) struct FindingCountsSchema {
    critical: u32,
    high: u32,
    medium: u32,
    low: u32,
    none: u32,
}

/// One finding.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Finding)]
pub(crate) struct FindingSchema {
    /// `CVE-…`, `GHSA-…`, an OSV id.
    id: String,
    /// Other ids of the same vulnerability.
    #[serde(default)]
    aliases: Vec<String>,
    severity: FindingSeveritySchema,
}

/// An audit result. `score` is fixed point in hundredths: 850 = 8.50 (0–1000).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Attestation)]
pub(crate) struct AttestationSchema {
    subject: SubjectSchema,
    scanner: ToolSchema,
    verdict: VerdictSchema,
    /// Hundredths of 0.0–10.0 (0–1000).
    #[schema(maximum = 1000)]
    score: u16,
    /// Counts per severity, at least the listed findings of each (default all 0).
    #[serde(default)]
    finding_counts: FindingCountsSchema,
    /// At most 64.
    #[serde(default)]
    findings: Vec<FindingSchema>,
    #[serde(default)]
    report_digest: Option<DigestSchema>,
    /// After this time (ms since the epoch) the attestation no longer counts in verdicts.
    #[serde(default)]
    expires_at_ms: Option<u64>,
}

/// Telemetry stream type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = StreamType)]
pub(crate) enum StreamTypeSchema {
    Logs,
    Metrics,
    Traces,
    Network,
    Other,
}

/// An anomaly report. `labels` must include `kind`; the fingerprint is computed from them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Anomaly)]
pub(crate) struct AnomalySchema {
    /// Source URI, e.g. `otlp://collector/service/api`.
    source: String,
    stream_type: StreamTypeSchema,
    /// Identifying labels (object of strings); must include `kind`.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    labels: serde_json::Map<String, serde_json::Value>,
    /// Descriptive annotations (object of strings).
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    annotations: serde_json::Map<String, serde_json::Value>,
    /// OpenTelemetry severity number 1–24.
    #[schema(minimum = 1, maximum = 24)]
    severity_number: u8,
    /// OpenTelemetry severity text, e.g. `ERROR`.
    #[serde(default)]
    severity_text: String,
    /// Hundredths of 0.0–10.0 (0–1000).
    #[schema(maximum = 1000)]
    score: u16,
    window_start_ms: u64,
    window_end_ms: u64,
    detector: ToolSchema,
    #[serde(default)]
    evidence: Vec<DigestSchema>,
    #[serde(default)]
    summary: String,
}

/// Anomaly state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AnomalyState)]
pub(crate) enum AnomalyStateSchema {
    Open,
    Acknowledged,
    Resolved,
    Suppressed,
}

/// A state change of an anomaly.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AnomalyUpdate)]
pub(crate) struct AnomalyUpdateSchema {
    /// Fingerprint (64 hex characters).
    fingerprint: String,
    state: AnomalyStateSchema,
    #[serde(default)]
    comment: String,
}

/// Withdraws one of this node's own earlier records.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Revocation)]
pub(crate) struct RevocationSchema {
    /// Record id (64 hex characters).
    target: String,
    #[serde(default)]
    reason: String,
}

/// An unsigned statement; `kind` selects the record kind. The node fills the author, seq,
/// prev and issue time, signs it and stores it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[schema(as = Statement)]
pub(crate) enum StatementSchema {
    Attestation(AttestationSchema),
    Anomaly(AnomalySchema),
    AnomalyUpdate(AnomalyUpdateSchema),
    Revocation(RevocationSchema),
}

#[cfg(test)]
mod tests {
    use palisade_types::fixtures::{anomaly, anomaly_update, attestation, revocation};
    use palisade_types::{AnomalyState, Fingerprint, RecordId};

    use super::*;

    #[test]
    fn every_statement_kind_round_trips_through_its_schema_type() {
        for st in [
            attestation(1),
            attestation(3),
            anomaly(2),
            anomaly_update(Fingerprint([7; 32]), AnomalyState::Resolved),
            revocation(RecordId([9; 32])),
        ] {
            let v = serde_json::to_value(&st).unwrap();
            let mirrored: StatementSchema = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(serde_json::to_value(&mirrored).unwrap(), v);
        }
    }
}
