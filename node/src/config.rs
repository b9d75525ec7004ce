//! The node's configuration: one validated struct from the TOML file, `PALISADE_*`
//! environment variables and command-line flags (in increasing precedence).
//!
//! Unknown keys are errors (a typo must never be silently ignored); invalid values fail at
//! start with the key, the value and what is allowed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use palisade_api::{ApiLimits, TrustPolicy};
use palisade_guard::GuardConfig;
use palisade_net::NetConfig;
use palisade_types::InvalidSetting;
use serde::{Deserialize, Serialize};

mod template;
pub use template::default_config_toml;

/// Default metrics listener.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9740";

/// The whole `palisade.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// `[network]`: listen addresses, bootstrap peers, gossip and sync limits.
    pub network: NetConfig,
    /// `[limits]`: every DoS limit (connections, bandwidth, rates, reputation, bans). See
    /// `docs/dos-protection.md`.
    pub limits: GuardConfig,
    /// `[store]`: the sled database.
    pub store: StoreSection,
    /// `[admin]`: the local admin API.
    pub admin: AdminSection,
    /// `[metrics]`: the Prometheus listener.
    pub metrics: MetricsSection,
    /// `[log]`: logging.
    pub log: LogSection,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// sled page cache (bytes). See `palisade_store::DEFAULT_CACHE_CAPACITY_BYTES`.
    pub cache_capacity_bytes: u64,
    /// Flood stage (bytes free on the store's filesystem): below it new records are refused
    /// (507 for submissions and imports, ignored from peers) until space is back.
    pub min_free_disk_bytes: u64,
    /// Warning level (bytes free): below it the node warns and the disk-level gauge says 1.
    pub warn_free_disk_bytes: u64,
    /// How long a shutdown may take before the process exits anyway (exit code 75), for a
    /// store whose disk hangs.
    pub shutdown_timeout_secs: u64,
    /// The store quota in logical bytes of records (keys and values they write). Above it the
    /// oldest records of authors no trust policy or `retain_authors` names are evicted.
    pub max_bytes: u64,
    /// Authors whose records are never evicted, besides the node's own and those named by
    /// `[admin.trust]` policies (64 hex characters each). Reloaded on SIGHUP.
    pub retain_authors: Vec<palisade_types::AuthorKey>,
    /// zstd-compress sled's pages: less disk, slower writes. Takes effect when the store is
    /// created; an existing store keeps the setting it was created with.
    pub compression: bool,
    /// Files (bytes) below which the store never compacts itself online; 0 turns online
    /// compaction off. See `palisade_store::DEFAULT_COMPACT_ABOVE_BYTES`.
    pub compact_above_bytes: u64,
    /// The store compacts itself online when its files exceed this many times the logical
    /// bytes it keeps (and `compact_above_bytes`). See
    /// `palisade_store::DEFAULT_COMPACT_ABOVE_RATIO`.
    pub compact_above_ratio: u32,
}

/// Most authors in `store.retain_authors`.
pub const MAX_RETAIN_AUTHORS: usize = 4096;

/// Default [`StoreSection::shutdown_timeout_secs`].
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 30;

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            cache_capacity_bytes: palisade_store::DEFAULT_CACHE_CAPACITY_BYTES,
            min_free_disk_bytes: palisade_store::DEFAULT_MIN_FREE_DISK_BYTES,
            warn_free_disk_bytes: palisade_store::DEFAULT_WARN_FREE_DISK_BYTES,
            shutdown_timeout_secs: DEFAULT_SHUTDOWN_TIMEOUT_SECS,
            max_bytes: palisade_store::DEFAULT_MAX_STORE_BYTES,
            retain_authors: Vec::new(),
            compression: false,
            compact_above_bytes: palisade_store::DEFAULT_COMPACT_ABOVE_BYTES,
            compact_above_ratio: palisade_store::DEFAULT_COMPACT_ABOVE_RATIO,
        }
    }
}

impl StoreSection {
    /// The store's free-space watermarks.
    pub fn watermarks(&self) -> palisade_store::DiskWatermarks {
        palisade_store::DiskWatermarks {
            min_free_bytes: self.min_free_disk_bytes,
            warn_free_bytes: self.warn_free_disk_bytes,
        }
    }

    /// When the store compacts itself online.
    pub fn auto_compact(&self) -> palisade_store::AutoCompact {
        palisade_store::AutoCompact {
            above_bytes: self.compact_above_bytes,
            above_ratio: self.compact_above_ratio,
        }
    }

    /// The authors the store quota never evicts, besides the node's own: those of every
    /// trust policy and `retain_authors`.
    pub fn protected_authors(
        &self,
        trust: &BTreeMap<String, TrustPolicy>,
    ) -> std::collections::HashSet<palisade_types::AuthorKey> {
        trust
            .values()
            .flat_map(|p| p.authors.iter().copied())
            .chain(self.retain_authors.iter().copied())
            .collect()
    }

    fn validate(&self) -> Result<(), InvalidSetting> {
        const MIB: u64 = 1024 * 1024;
        InvalidSetting::check_range(
            "store.cache_capacity_bytes",
            self.cache_capacity_bytes,
            MIB,
            64 * 1024 * MIB,
        )?;
        InvalidSetting::check_range("store.min_free_disk_bytes", self.min_free_disk_bytes, MIB, 1 << 40)?;
        InvalidSetting::check_range(
            "store.warn_free_disk_bytes",
            self.warn_free_disk_bytes,
            self.min_free_disk_bytes,
            1 << 44,
        )?;
        InvalidSetting::check_range("store.shutdown_timeout_secs", self.shutdown_timeout_secs, 1, 3600)?;
        InvalidSetting::check_range(
            "store.max_bytes",
            self.max_bytes,
            palisade_store::MIN_MAX_STORE_BYTES,
            1 << 50,
        )?;
        if self.compact_above_bytes != 0 {
            InvalidSetting::check_range("store.compact_above_bytes", self.compact_above_bytes, MIB, 1 << 50)?;
        }
        InvalidSetting::check_range("store.compact_above_ratio", self.compact_above_ratio, 2, 1000)?;
        InvalidSetting::check_range("store.retain_authors", self.retain_authors.len(), 0, MAX_RETAIN_AUTHORS)
    }
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Unix socket path; default `<data-dir>/admin.sock`.
    pub socket: Option<PathBuf>,
    /// Optional loopback TCP listener (`127.0.0.1:PORT`) that requires a bearer token.
    pub listen: Option<String>,
    /// Largest JSON request body.
    pub max_body_bytes: u64,
    /// Largest NDJSON import body.
    pub max_import_bytes: u64,
    /// Deadline of ordinary requests (export, import and events have none).
    pub request_timeout_secs: u64,
    /// Most concurrent `/v1/events` subscribers.
    pub max_sse_subscribers: u32,
    /// Seconds between SSE heartbeat comments.
    pub sse_heartbeat_secs: u64,
    /// Events queued per SSE subscriber before it is dropped as too slow.
    pub sse_queue_events: u32,
    /// Sustained API requests per second over all clients (health and readiness exempt).
    pub requests_per_sec: u32,
    /// API requests allowed in a burst above the rate.
    pub burst_requests: u32,
    /// API requests handled at once (event streams are capped separately).
    pub max_concurrent_requests: u32,
    /// Open connections per listener; beyond, a connection gets 503 and is closed.
    pub max_connections: u32,
    /// Seconds for a request's head to arrive after the connection opens (one request per
    /// connection, so also how long an idle connection lives).
    pub header_timeout_secs: u64,
    /// Seconds to receive a JSON body (for imports: the longest pause between chunks); 408 beyond.
    pub body_timeout_secs: u64,
    /// Named k-of-n trust policies for subject verdicts: `[admin.trust.<name>]` with
    /// `authors` and `threshold`. `default` is used when a query names none.
    pub trust: BTreeMap<String, TrustPolicy>,
}

impl Default for AdminSection {
    fn default() -> Self {
        let l = ApiLimits::default();
        AdminSection {
            socket: None,
            listen: None,
            max_body_bytes: l.max_body_bytes as u64,
            max_import_bytes: l.max_import_bytes,
            request_timeout_secs: l.request_timeout.as_secs(),
            max_sse_subscribers: l.max_sse_subscribers as u32,
            sse_heartbeat_secs: l.sse_heartbeat.as_secs(),
            sse_queue_events: l.sse_queue_events as u32,
            requests_per_sec: l.requests_per_sec,
            burst_requests: l.burst_requests,
            max_concurrent_requests: l.max_concurrent_requests as u32,
            max_connections: l.max_connections as u32,
            header_timeout_secs: l.header_timeout.as_secs(),
            body_timeout_secs: l.body_timeout.as_secs(),
            trust: BTreeMap::new(),
        }
    }
}

impl AdminSection {
    /// The API server's limits.
    pub fn limits(&self) -> ApiLimits {
        ApiLimits {
            max_body_bytes: usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX),
            max_import_bytes: self.max_import_bytes,
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            max_sse_subscribers: self.max_sse_subscribers as usize,
            sse_heartbeat: Duration::from_secs(self.sse_heartbeat_secs),
            sse_queue_events: self.sse_queue_events as usize,
            requests_per_sec: self.requests_per_sec,
            burst_requests: self.burst_requests,
            max_concurrent_requests: self.max_concurrent_requests as usize,
            max_connections: self.max_connections as usize,
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
        }
    }

    fn validate(&self) -> Result<(), InvalidSetting> {
        InvalidSetting::check_range(
            "admin.max_body_bytes",
            self.max_body_bytes,
            16 * 1024,
            16 * 1024 * 1024,
        )?;
        InvalidSetting::check_range(
            "admin.max_import_bytes",
            self.max_import_bytes,
            1024 * 1024,
            64 * 1024 * 1024 * 1024,
        )?;
        InvalidSetting::check_range("admin.request_timeout_secs", self.request_timeout_secs, 2, 3600)?;
        InvalidSetting::check_range("admin.max_sse_subscribers", self.max_sse_subscribers, 1, 1024)?;
        InvalidSetting::check_range("admin.sse_heartbeat_secs", self.sse_heartbeat_secs, 1, 300)?;
        InvalidSetting::check_range("admin.sse_queue_events", self.sse_queue_events, 1, 65_536)?;
        InvalidSetting::check_range("admin.requests_per_sec", self.requests_per_sec, 1, 1_000_000)?;
        InvalidSetting::check_range("admin.burst_requests", self.burst_requests, 1, 10_000_000)?;
        InvalidSetting::check_range(
            "admin.max_concurrent_requests",
            self.max_concurrent_requests,
            1,
            65_536,
        )?;
        InvalidSetting::check_range("admin.max_connections", self.max_connections, 1, 16_384)?;
        InvalidSetting::check_range("admin.header_timeout_secs", self.header_timeout_secs, 1, 300)?;
        // A slow body must time out as the client's 408 before the request deadline's 503.
        // (admin.request_timeout_secs is at least 2, so this range is never empty.)
        InvalidSetting::check_range(
            "admin.body_timeout_secs",
            self.body_timeout_secs,
            1,
            self.request_timeout_secs - 1,
        )?;
        if let Some(socket) = &self.socket {
            let len = socket.as_os_str().len();
            if len == 0 || len > 107 {
                return Err(InvalidSetting::new(
                    "admin.socket",
                    format!("{:?}", socket.display().to_string()),
                    "a path of 1 to 107 bytes (a Unix socket address limit)",
                ));
            }
        }
        palisade_api::config::validate_policies("admin.trust", &self.trust)
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// `host:port` of the Prometheus text endpoint, or `off`.
    pub listen: String,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection { listen: DEFAULT_METRICS_LISTEN.to_string() }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured on a terminal.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `RUST_LOG`-style filter, e.g. `info,palisade_net=debug`. `RUST_LOG` overrides it.
    pub filter: String,
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// Write logs to this file instead of stderr (rotated by size). Flag: `--log-file`.
    pub file: Option<PathBuf>,
    /// Size at which the log file is rotated.
    pub max_file_bytes: u64,
    /// Rotated log files kept (`<file>.1` newest … `<file>.N` oldest).
    pub max_files: u32,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            filter: "info".to_string(),
            format: LogFormat::Pretty,
            file: None,
            max_file_bytes: 64 * 1024 * 1024,
            max_files: 5,
        }
    }
}

impl NodeConfig {
    /// The metrics listener's address (`host:port`; a host name such as `localhost` is
    /// resolved), or `None` for "off" or an address that does not resolve.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        if self.metrics.listen == "off" {
            return None;
        }
        if let Ok(a) = self.metrics.listen.parse() {
            return Some(a);
        }
        std::net::ToSocketAddrs::to_socket_addrs(&self.metrics.listen).ok()?.next()
    }

    /// Reads `path` if it exists (a missing file means all defaults, unless `required`).
    pub fn load(path: &Path, required: bool) -> anyhow::Result<NodeConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).with_context(|| format!("in config file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(NodeConfig::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
        }
    }

    /// Parses TOML text (unknown keys are errors).
    pub fn parse(text: &str) -> anyhow::Result<NodeConfig> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
    }

    /// Validates every section.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.network.validate()?;
        self.limits.validate()?;
        // An honest relay forwards every proof it stores, up to half the new-author budget per
        // second under a Sybil proof flood (two fresh-author halves each): a proof budget below
        // that would strike honest relays as persistently over rate.
        let least_proofs = self.network.new_authors_per_sec.div_ceil(2);
        if self.limits.peer_proofs_per_sec < least_proofs {
            return Err(InvalidSetting::new(
                "limits.peer_proofs_per_sec",
                self.limits.peer_proofs_per_sec,
                format!(">= network.new_authors_per_sec / 2 ({least_proofs})"),
            ));
        }
        self.store.validate()?;
        self.admin.validate()?;
        if let Some(listen) = &self.admin.listen {
            let addr: SocketAddr = listen.parse().map_err(|_| {
                InvalidSetting::new(
                    "admin.listen",
                    format!("{listen:?}"),
                    "a loopback host:port such as 127.0.0.1:9741",
                )
            })?;
            if !addr.ip().is_loopback() {
                return Err(InvalidSetting::new(
                    "admin.listen",
                    format!("{listen:?}"),
                    "a loopback address (127.0.0.0/8 or ::1); the admin API must never be exposed on a network",
                ));
            }
        }
        if self.metrics.listen != "off" && self.metrics_addr().is_none() {
            return Err(InvalidSetting::new(
                "metrics.listen",
                format!("{:?}", self.metrics.listen),
                "host:port such as 127.0.0.1:9740, or \"off\"",
            ));
        }
        InvalidSetting::check_range("log.max_file_bytes", self.log.max_file_bytes, 64 * 1024, 1 << 40)?;
        InvalidSetting::check_range("log.max_files", self.log.max_files, 0, 1000)?;
        tracing_subscriber::EnvFilter::try_new(&self.log.filter).map_err(|e| {
            InvalidSetting::new(
                "log.filter",
                format!("{:?}", self.log.filter),
                format!("a RUST_LOG-style filter ({e})"),
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_file_parses_to_the_defaults_and_is_valid() {
        let parsed = NodeConfig::parse(&default_config_toml()).unwrap();
        assert_eq!(parsed, NodeConfig::default());
        parsed.validate().unwrap();
    }

    #[test]
    fn uncommented_limit_defaults_parse_to_the_defaults() {
        // Every commented `# key = value` line of [limits], uncommented, is a valid setting
        // with the default value: the template cannot drift from GuardConfig::default().
        let text = default_config_toml();
        let mut in_limits = false;
        let mut uncommented = Vec::new();
        for line in text.lines() {
            if line.starts_with('[') {
                in_limits = line == "[limits]";
            }
            let setting = line.strip_prefix("# ").filter(|l| in_limits && l.contains(" = "));
            uncommented.push(setting.unwrap_or(line).to_string());
        }
        let parsed = NodeConfig::parse(&uncommented.join("\n")).unwrap();
        assert_eq!(parsed, NodeConfig::default());
        assert!(uncommented.iter().any(|l| l == "peer_messages_per_sec = 1000"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = NodeConfig::parse("[network]\nlisten_addr = []\n").unwrap_err().to_string();
        assert!(err.contains("listen_addr"), "{err}");
        let err = NodeConfig::parse("[netwrk]\n").unwrap_err().to_string();
        assert!(err.contains("netwrk"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_key_value_and_range() {
        let mut c = NodeConfig::default();
        c.network.sync_interval_secs = 0;
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "network.sync_interval_secs");
        assert_eq!(e.value, "0");
        assert_eq!(e.allowed, "1..=86400");

        let mut c = NodeConfig::default();
        c.admin.listen = Some("0.0.0.0:9741".into());
        assert_eq!(c.validate().unwrap_err().key, "admin.listen");

        let mut c = NodeConfig::default();
        c.network.bootstrap = vec!["/ip4/1.2.3.4".into()];
        assert_eq!(c.validate().unwrap_err().key, "network.bootstrap");
        c.network.bootstrap =
            vec!["/ip4/1.2.3.4/tcp/7400".into(), "/dns4/palisade-0.palisade/tcp/7400".into()];
        c.validate().expect("address-only bootstrap entries are valid");

        let mut c = NodeConfig::default();
        c.network.verify_batch_max_records = 100;
        c.network.verify_queue_records = 64;
        assert!(c.validate().unwrap_err().allowed.contains("verify_queue_records"));

        let mut c = NodeConfig::default();
        c.admin.max_sse_subscribers = 0;
        assert_eq!(c.validate().unwrap_err().key, "admin.max_sse_subscribers");
        let mut c = NodeConfig::default();
        c.network.new_authors_per_sec = 100;
        c.limits.peer_proofs_per_sec = 49;
        let e = c.validate().unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.allowed.as_str()),
            ("limits.peer_proofs_per_sec", ">= network.new_authors_per_sec / 2 (50)")
        );

        let c = NodeConfig::parse(
            "[admin.trust.release]\nauthors = [\"0101010101010101010101010101010101010101010101010101010101010101\"]\nthreshold = 2\n",
        )
        .unwrap();
        assert_eq!(c.validate().unwrap_err().key, "admin.trust.release.threshold");

        let mut c = NodeConfig::default();
        c.metrics.listen = "nope".into();
        assert_eq!(c.validate().unwrap_err().key, "metrics.listen");
        // Online compaction: 0 turns it off; otherwise at least 1 MiB, and a ratio of 2..=1000.
        let mut c = NodeConfig::default();
        c.store.compact_above_bytes = 0;
        c.validate().expect("compact_above_bytes = 0 turns online compaction off");
        c.store.compact_above_bytes = 1024;
        assert_eq!(c.validate().unwrap_err().key, "store.compact_above_bytes");
        let mut c = NodeConfig::default();
        c.store.compact_above_ratio = 1;
        let e = c.validate().unwrap_err();
        assert_eq!((e.key.as_str(), e.allowed.as_str()), ("store.compact_above_ratio", "2..=1000"));
    }
}
