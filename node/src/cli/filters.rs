//! The query commands' filters and the verdict arguments (flattened into the `attest`,
//! `anomaly` and `records` commands).
#![allow(rustdoc::invalid_html_tags)]

use clap::Args;

/// Filters every query command takes.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonFilters {
    /// Author key (64 hex).
    #[arg(long)]
    pub author: Option<String>,
    /// Issued at or after: ms since the epoch, or an age such as 2h.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Issued at or before: ms since the epoch, or an age such as 30m.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Leave out revoked records.
    #[arg(long)]
    pub exclude_revoked: bool,
    /// Page size 1-1000.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Continue from the previous page's next_cursor.
    #[arg(long)]
    pub cursor: Option<String>,
}

/// Filters of attestations.
#[derive(Debug, Clone, Default, Args)]
pub struct AttestationFilters {
    /// Subject digest <alg>:<hex>.
    #[arg(long, value_name = "ALG:HEX")]
    pub subject: Option<String>,
}

/// Filters of anomaly reports.
#[derive(Debug, Clone, Default, Args)]
pub struct AnomalyFilters {
    /// Anomaly source URI.
    #[arg(long)]
    pub source: Option<String>,
    /// Anomaly fingerprint (64 hex).
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// Anomalies with severity number at least this (1-24).
    #[arg(long, value_name = "N")]
    pub min_severity: Option<u8>,
    /// Anomalies currently in this state (open, acknowledged, resolved, suppressed).
    #[arg(long)]
    pub state: Option<String>,
}

/// `attest query`: attestation filters only.
#[derive(Debug, Clone, Default, Args)]
pub struct AttestQueryArgs {
    #[command(flatten)]
    pub attestation: AttestationFilters,
    #[command(flatten)]
    pub common: CommonFilters,
}

/// `anomaly query`: anomaly filters only.
#[derive(Debug, Clone, Default, Args)]
pub struct AnomalyQueryArgs {
    #[command(flatten)]
    pub anomaly: AnomalyFilters,
    #[command(flatten)]
    pub common: CommonFilters,
}

/// `records query` and `records export`: every filter.
#[derive(Debug, Clone, Default, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub attestation: AttestationFilters,
    #[command(flatten)]
    pub anomaly: AnomalyFilters,
    #[command(flatten)]
    pub common: CommonFilters,
}

/// `attest verdict`.
#[derive(Debug, Args)]
pub struct VerdictArgs {
    /// Subject digest <alg>:<hex>.
    pub digest: String,
    /// Named trust policy (default: `default`).
    #[arg(long)]
    pub policy: Option<String>,
    /// Trusted author keys, comma-separated (overrides the policy's).
    #[arg(long, value_name = "AUTHORS")]
    pub trusted: Option<String>,
    /// How many distinct trusted authors must say pass.
    #[arg(long, value_name = "K")]
    pub threshold: Option<usize>,
    /// Exit 3 unless the policy is satisfied.
    #[arg(long)]
    pub check: bool,
}
