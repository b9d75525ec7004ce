//! Server settings and trust policies.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use palisade_types::{AuthorKey, InvalidSetting};
use serde::{Deserialize, Serialize};

/// Most authors in one trust policy.
pub const MAX_POLICY_AUTHORS: usize = 256;
/// Most named trust policies.
pub const MAX_POLICIES: usize = 64;

/// A k-of-n trust policy for subject verdicts: the subject passes when at least `threshold`
/// distinct authors of `authors` say pass in their latest non-revoked, unexpired attestation.
/// Config: `[admin.trust.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicy {
    /// Trusted author keys (64 hex characters each).
    pub authors: Vec<AuthorKey>,
    /// k: distinct trusted authors that must say pass (1..=authors).
    pub threshold: usize,
}

impl TrustPolicy {
    /// Checks the policy; `key` names it in errors (e.g. `admin.trust.release`).
    pub fn validate(&self, key: &str) -> Result<(), InvalidSetting> {
        if self.authors.is_empty() || self.authors.len() > MAX_POLICY_AUTHORS {
            return Err(InvalidSetting::new(
                format!("{key}.authors"),
                format!("{} authors", self.authors.len()),
                format!("1..={MAX_POLICY_AUTHORS} author keys"),
            ));
        }
        let mut sorted = self.authors.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.authors.len() {
            return Err(InvalidSetting::new(
                format!("{key}.authors"),
                "a repeated author key",
                "distinct author keys",
            ));
        }
        InvalidSetting::check_range(&format!("{key}.threshold"), self.threshold, 1, self.authors.len())
    }
}

/// Validates a whole `[admin.trust]` table.
pub fn validate_policies(
    prefix: &str,
    policies: &BTreeMap<String, TrustPolicy>,
) -> Result<(), InvalidSetting> {
    if policies.len() > MAX_POLICIES {
        return Err(InvalidSetting::new(
            prefix,
            format!("{} policies", policies.len()),
            format!("at most {MAX_POLICIES}"),
        ));
    }
    for (name, p) in policies {
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(InvalidSetting::new(
                format!("{prefix}.{name}"),
                format!("{name:?}"),
                "a policy name of 1-64 letters, digits, `_` or `-`",
            ));
        }
        p.validate(&format!("{prefix}.{name}"))?;
    }
    Ok(())
}

/// Limits of the API server. Every one bounds something a client could grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest JSON request body.
    pub max_body_bytes: usize,
    /// Largest NDJSON import body.
    pub max_import_bytes: u64,
    /// Deadline of ordinary requests (not export, import or events).
    pub request_timeout: Duration,
    /// Most concurrent `/v1/events` subscribers.
    pub max_sse_subscribers: usize,
    /// Interval of SSE heartbeat comments.
    pub sse_heartbeat: Duration,
    /// Events queued per subscriber; a subscriber that lets more pile up is dropped.
    pub sse_queue_events: usize,
    /// Sustained requests per second over all clients (health and readiness are exempt).
    pub requests_per_sec: u32,
    /// Requests above the rate allowed in a burst.
    pub burst_requests: u32,
    /// Requests handled at once (event streams are capped separately); 503 beyond.
    pub max_concurrent_requests: usize,
    /// Open connections per listener (Unix socket, TCP); a connection beyond is answered 503
    /// and closed at once, so idle clients cannot exhaust the node's file descriptors.
    pub max_connections: usize,
    /// Time for a request's headers to arrive, counted from the connection's opening or the
    /// end of the previous response: also the idle timeout of a kept-alive connection. The
    /// connection is closed when it runs out.
    pub header_timeout: Duration,
    /// Time to receive a whole JSON body, and the longest pause between two chunks of an
    /// import: a slower client gets 408 (a client fault, not a 5xx).
    pub body_timeout: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_import_bytes: DEFAULT_MAX_IMPORT_BYTES,
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS),
            max_sse_subscribers: DEFAULT_MAX_SSE_SUBSCRIBERS,
            sse_heartbeat: Duration::from_secs(DEFAULT_SSE_HEARTBEAT_SECS),
            sse_queue_events: DEFAULT_SSE_QUEUE_EVENTS,
            requests_per_sec: DEFAULT_REQUESTS_PER_SEC,
            burst_requests: DEFAULT_BURST_REQUESTS,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            body_timeout: Duration::from_secs(DEFAULT_BODY_TIMEOUT_SECS),
        }
    }
}

/// Default of [`ApiLimits::max_body_bytes`]: 256 KiB, several times the JSON of the largest
/// record (16 KiB encoded).
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Default of [`ApiLimits::max_import_bytes`]: 256 MiB (about 20 000 full-size records).
pub const DEFAULT_MAX_IMPORT_BYTES: u64 = 256 * 1024 * 1024;
/// Default of [`ApiLimits::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
/// Default of [`ApiLimits::max_sse_subscribers`].
pub const DEFAULT_MAX_SSE_SUBSCRIBERS: usize = 32;
/// Default of [`ApiLimits::sse_heartbeat`].
pub const DEFAULT_SSE_HEARTBEAT_SECS: u64 = 15;
/// Default of [`ApiLimits::sse_queue_events`].
pub const DEFAULT_SSE_QUEUE_EVENTS: usize = 256;
/// Default of [`ApiLimits::requests_per_sec`].
pub const DEFAULT_REQUESTS_PER_SEC: u32 = 1000;
/// Default of [`ApiLimits::burst_requests`].
pub const DEFAULT_BURST_REQUESTS: u32 = 2000;

/// Default of [`ApiLimits::max_concurrent_requests`].
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 256;

/// Default of [`ApiLimits::max_connections`] (per listener).
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
/// Default of [`ApiLimits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
/// Default of [`ApiLimits::body_timeout`] (below the request timeout, so a slow body is a 408
/// and never the request deadline's 503).
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 10;

/// Longest NDJSON line an import accepts (a 16 KiB envelope is about 22 KiB of base64).
pub const MAX_IMPORT_LINE_BYTES: usize = 64 * 1024;

/// How to run the API server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The Unix socket (mode 0600).
    pub socket_path: PathBuf,
    /// Optional loopback TCP listener requiring the bearer token.
    pub tcp_listen: Option<SocketAddr>,
    /// Where the bearer token is written (mode 0600) when `tcp_listen` is set.
    pub token_path: PathBuf,
    /// Server limits.
    pub limits: ApiLimits,
    /// Named trust policies for verdicts (`default` is used when none is named).
    pub trust: BTreeMap<String, TrustPolicy>,
    /// Whether bootstrap peers are configured (readiness then needs a connected peer).
    pub bootstrap_configured: bool,
    /// Version reported by `GET /v1/node`.
    pub version: String,
}

impl ApiConfig {
    /// Defaults for a data directory: `admin.sock` and `admin.token` inside it.
    pub fn new(data_dir: &std::path::Path) -> ApiConfig {
        ApiConfig {
            socket_path: data_dir.join("admin.sock"),
            tcp_listen: None,
            token_path: data_dir.join("admin.token"),
            limits: ApiLimits::default(),
            trust: BTreeMap::new(),
            bootstrap_configured: false,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}
