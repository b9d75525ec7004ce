//! Command-line interface (clap).
//!
//! The doc comments here are the CLI's help text, written for a terminal: `<data-dir>` and
//! `<alg>:<hex>` are placeholders there, not HTML, so rustdoc's tag check does not apply.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::LogFormat;

mod filters;
pub use filters::*;

/// Palisade: a peer-to-peer node that gossips signed audit attestations and anomaly reports.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand shares (listed apart in each subcommand's help).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Data directory (key, database, admin socket). Default: ~/.local/share/palisade.
    #[arg(long, global = true, env = "PALISADE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file. Default: <data-dir>/palisade.toml (optional unless given explicitly).
    #[arg(long, global = true, env = "PALISADE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter in RUST_LOG syntax (overrides the log.filter config key; RUST_LOG overrides both).
    #[arg(long, global = true, env = "PALISADE_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Log format.
    #[arg(long, global = true, env = "PALISADE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log to this file (rotated by size: log.max_file_bytes, log.max_files) instead of stderr.
    #[arg(long, global = true, env = "PALISADE_LOG_FILE", value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Admin socket for client commands. Default: admin.socket from the config, else
    /// <data-dir>/admin.sock.
    #[arg(long, global = true, env = "PALISADE_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Client commands: print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data directory, the node key (mode 0600) and a commented default config.
    ///
    /// Example: palisade --data-dir /var/lib/palisade init
    Init,
    /// Run the node daemon until SIGINT or SIGTERM.
    ///
    /// Example: palisade run --listen /ip4/0.0.0.0/tcp/7400 --bootstrap /ip4/10.0.0.5/tcp/7400/p2p/12D3KooW…
    Run(RunArgs),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Key commands.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print version and build information.
    Version,
    /// Show the running node: identity, addresses, readiness, peers, record counts.
    ///
    /// Example: palisade status --json
    Status,
    /// Peers: list, dial, disconnect, ban, unban, bans.
    #[command(subcommand)]
    Peers(PeersCommand),
    /// Audit attestations: submit, get, query, verdict.
    #[command(subcommand)]
    Attest(AttestCommand),
    /// Anomaly reports: report, update, query, open, show.
    #[command(subcommand)]
    Anomaly(AnomalyCommand),
    /// Records of any kind: get, query, export, import, revoke, feed.
    #[command(subcommand)]
    Records(RecordsCommand),
    /// DoS limits: show, set (at run time).
    #[command(subcommand)]
    Limits(LimitsCommand),
    /// Show the guard's drop ledger (drops, throttles, penalties, bans).
    ///
    /// Example: palisade ledger --limit 50 --follow
    Ledger(LedgerArgs),
    /// Follow live events (records stored, peers, bans) until interrupted.
    ///
    /// Example: palisade watch --type record_stored --kind attestation
    Watch(WatchArgs),
    /// Print shell completions.
    ///
    /// Example: palisade completions bash > /etc/bash_completion.d/palisade
    Completions {
        /// Shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The record store: `usage` asks the running node; `check` is offline maintenance (stop
    /// the node first).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Backups: `create` asks the running node for an online backup (records, bans, peer
    /// book, signing history); `verify` checks a file; `restore` writes one into a stopped
    /// node's data directory.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Print the man page (roff), generated from this command line's definition.
    ///
    /// Example: palisade manpage > /usr/local/share/man/man1/palisade.1
    Manpage,
}

/// `store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Read every record back and check it: decoding, signature, its index, the feed heads,
    /// the counters, and the own feed against the signing history. Exit 0 when sound, 1 when
    /// a problem is found. The node must be stopped (the store is locked while it runs).
    ///
    /// Example: palisade --data-dir /var/lib/palisade store check
    Check,
    /// The store quota (store.max_bytes) of the running node: bytes used, size on disk, what
    /// was evicted (records of authors no trust policy or store.retain_authors names, oldest
    /// received first) and what was refused.
    ///
    /// Example: palisade store usage
    Usage,
    /// Give back the disk space sled keeps after records are deleted or evicted: copy every
    /// tree into a fresh database beside the store, check it, swap it in. Needs free space
    /// for the copy (about what the records take); the node must be stopped.
    ///
    /// Example: palisade --data-dir /var/lib/palisade store compact
    Compact,
}

/// `backup …`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take an online backup of the running node into FILE (written beside it, checked, then
    /// renamed into place): every record acknowledged before it started, the bans, the peer
    /// book and the signing history. The key is not in it: keep node.key apart.
    ///
    /// Example: palisade backup create /backup/palisade-$(date +%F).backup
    Create {
        /// The backup file to write.
        file: PathBuf,
    },
    /// Check a backup file (format, every line, counts, checksum) and print what it holds.
    /// Exit 0 when sound, 65 when damaged.
    ///
    /// Example: palisade backup verify /backup/palisade-2026-12-07.backup
    Verify {
        /// The backup file.
        file: PathBuf,
    },
    /// Restore a backup into the data directory of a stopped node whose store is empty (move
    /// a damaged db/ away first). The node's key must be in place. Every record is verified
    /// again; the signing history is never lowered (a newer one beside the key is kept). Exit
    /// 65 if the file is damaged or records were refused.
    ///
    /// Example: palisade --data-dir /var/lib/palisade backup restore /backup/palisade-2026-12-07.backup
    Restore {
        /// The backup file.
        file: PathBuf,
    },
}

/// `peers …`.
#[derive(Debug, Subcommand)]
pub enum PeersCommand {
    /// List connected peers with their guard state.
    ///
    /// Example: palisade peers list
    List,
    /// Dial a peer.
    ///
    /// Example: palisade peers dial /ip4/10.0.0.5/tcp/7400/p2p/12D3KooW…
    Dial {
        /// Multiaddr, ideally ending in /p2p/<peer id>.
        addr: String,
    },
    /// Close every connection to a peer (it may reconnect; ban it to keep it out).
    ///
    /// Example: palisade peers disconnect 12D3KooW…
    Disconnect {
        /// Peer id.
        peer_id: String,
    },
    /// Ban a peer or an IP address; persisted, survives restarts.
    ///
    /// Example: palisade peers ban 12D3KooW… --duration 2h --reason "flooding"
    Ban(BanArgs),
    /// Lift a ban.
    ///
    /// Example: palisade peers unban ip:203.0.113.7
    Unban {
        /// `peer:<id>`, `ip:<address>`, a peer id or an IP address.
        target: String,
    },
    /// List bans in force.
    ///
    /// Example: palisade peers bans --json
    Bans,
}

/// `peers ban`.
#[derive(Debug, Args)]
pub struct BanArgs {
    /// `peer:<id>`, `ip:<address>`, a peer id or an IP address.
    pub target: String,
    /// How long: seconds, or a number with s, m, h or d (default limits.ban_duration_secs).
    #[arg(long, value_name = "DURATION", conflicts_with = "permanent")]
    pub duration: Option<String>,
    /// Until lifted with `peers unban`.
    #[arg(long)]
    pub permanent: bool,
    /// Why (kept in the ledger).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `attest …`.
#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Sign and publish an attestation (durable before this returns).
    ///
    /// Example: palisade attest submit --subject pkg:cargo/serde@1.0.210 --digest sha256:9f86… --verdict pass --score 8.5 --scanner trivy --scanner-version 0.56.1 --findings critical=0,high=1,medium=3,low=7
    Submit(Box<AttestSubmitArgs>),
    /// Show one record.
    ///
    /// Example: palisade attest get 3f1c…
    Get {
        /// Record id (64 hex).
        id: String,
    },
    /// Query attestations.
    ///
    /// Example: palisade attest query --subject sha256:9f86… --limit 20
    Query(AttestQueryArgs),
    /// Verdict on a subject under a k-of-n trust policy ([admin.trust.<name>]).
    ///
    /// Example: palisade attest verdict sha256:9f86… --trusted <author>,<author> --threshold 2 --check
    Verdict(VerdictArgs),
}

/// `attest submit`.
#[derive(Debug, Args)]
pub struct AttestSubmitArgs {
    /// The whole statement as JSON (`-` for stdin); the flags below are then not allowed.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["subject", "digest", "verdict", "score", "scanner", "scanner_version", "findings"])]
    pub file: Option<PathBuf>,
    /// Subject name, e.g. pkg:cargo/serde@1.0.210 or ghcr.io/acme/api.
    #[arg(long, required_unless_present = "file")]
    pub subject: Option<String>,
    /// Subject digest <alg>:<hex> (repeatable), e.g. sha256:…, gitCommit:….
    #[arg(long, value_name = "ALG:HEX", required_unless_present = "file")]
    pub digest: Vec<String>,
    /// pass, fail or inconclusive.
    #[arg(long, required_unless_present = "file")]
    pub verdict: Option<String>,
    /// Security score 0.0 to 10.0 (two decimals at most).
    #[arg(long, required_unless_present = "file")]
    pub score: Option<String>,
    /// Scanner name, e.g. trivy.
    #[arg(long, required_unless_present = "file")]
    pub scanner: Option<String>,
    /// Scanner version.
    #[arg(long, value_name = "VERSION", required_unless_present = "file")]
    pub scanner_version: Option<String>,
    /// Finding counts: critical=N,high=N,medium=N,low=N[,none=N].
    #[arg(long, value_name = "COUNTS")]
    pub findings: Option<String>,
    /// Digest of the full report, <alg>:<hex>.
    #[arg(long, value_name = "ALG:HEX")]
    pub report_digest: Option<String>,
    /// The attestation stops counting in verdicts after this long (e.g. 30d).
    #[arg(long, value_name = "DURATION")]
    pub expires_in: Option<String>,
}

/// `anomaly …`.
#[derive(Debug, Subcommand)]
pub enum AnomalyCommand {
    /// Sign and publish an anomaly report (durable before this returns).
    ///
    /// Example: palisade anomaly report --source otlp://collector/api --label kind=latency --label service=api --severity ERROR --score 7.5 --summary "p99 latency 5x baseline"
    Report(Box<AnomalyReportArgs>),
    /// Change an anomaly's state: acknowledged, resolved, suppressed or open.
    ///
    /// Example: palisade anomaly update 5d41… --state acknowledged --comment "on it"
    Update {
        /// Fingerprint (64 hex).
        fingerprint: String,
        /// New state.
        #[arg(long)]
        state: String,
        /// Why.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Query anomaly reports.
    ///
    /// Example: palisade anomaly query --min-severity 17 --since 1h
    Query(AnomalyQueryArgs),
    /// List open anomalies (or another state with --state, `all` for every state).
    ///
    /// Example: palisade anomaly open
    Open {
        /// State to list.
        #[arg(long, default_value = "open")]
        state: String,
        /// Page size 1-1000.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Continue from the previous page's next_cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one anomaly's current state.
    ///
    /// Example: palisade anomaly show 5d41…
    Show {
        /// Fingerprint (64 hex).
        fingerprint: String,
    },
}

/// `anomaly report`.
#[derive(Debug, Args)]
pub struct AnomalyReportArgs {
    /// The whole statement as JSON (`-` for stdin); the flags below are then not allowed.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["source", "label", "severity", "score", "summary"])]
    pub file: Option<PathBuf>,
    /// Source URI, e.g. otlp://collector/service/api.
    #[arg(long, required_unless_present = "file")]
    pub source: Option<String>,
    /// Stream type: logs, metrics, traces, network, other.
    #[arg(long, default_value = "other")]
    pub stream_type: String,
    /// Identifying label k=v (repeatable; must include kind=…).
    #[arg(long, value_name = "K=V", required_unless_present = "file")]
    pub label: Vec<String>,
    /// Descriptive annotation k=v (repeatable).
    #[arg(long, value_name = "K=V")]
    pub annotation: Vec<String>,
    /// OpenTelemetry severity: 1-24 or TRACE, DEBUG, INFO, WARN, ERROR, FATAL.
    #[arg(long, required_unless_present = "file")]
    pub severity: Option<String>,
    /// Anomaly score 0.0 to 10.0.
    #[arg(long, required_unless_present = "file")]
    pub score: Option<String>,
    /// One-line summary.
    #[arg(long)]
    pub summary: Option<String>,
    /// Detector name.
    #[arg(long, default_value = "palisade-cli")]
    pub detector: String,
    /// Detector version (default: this palisade's version).
    #[arg(long)]
    pub detector_version: Option<String>,
    /// Window start, ms since the epoch (default: end minus 60 s).
    #[arg(long, value_name = "MS")]
    pub window_start_ms: Option<u64>,
    /// Window end, ms since the epoch (default: now).
    #[arg(long, value_name = "MS")]
    pub window_end_ms: Option<u64>,
    /// Evidence digest <alg>:<hex> (repeatable).
    #[arg(long, value_name = "ALG:HEX")]
    pub evidence: Vec<String>,
}

/// `records …`.
#[derive(Debug, Subcommand)]
pub enum RecordsCommand {
    /// Show one record (decoded, plus its envelope with --json).
    ///
    /// Example: palisade records get 3f1c…
    Get {
        /// Record id (64 hex).
        id: String,
    },
    /// Query records of any kind.
    ///
    /// Example: palisade records query --kind revocation --since 24h
    Query {
        /// attestation, anomaly, anomaly_update or revocation.
        #[arg(long)]
        kind: Option<String>,
        #[command(flatten)]
        filters: QueryArgs,
    },
    /// Export records as NDJSON (streamed; all records unless filtered).
    ///
    /// Example: palisade records export --output backup.ndjson
    Export {
        /// attestation, anomaly, anomaly_update or revocation.
        #[arg(long)]
        kind: Option<String>,
        /// Author key (64 hex).
        #[arg(long)]
        author: Option<String>,
        /// Issued at or after: ms since the epoch, or an age such as 7d.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Issued at or before.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Write here instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Import an NDJSON export; every record is re-verified. Exits 1 if any line was rejected.
    ///
    /// Example: palisade records import backup.ndjson
    Import {
        /// NDJSON file, or `-` for stdin.
        file: PathBuf,
    },
    /// Revoke one of this node's own records.
    ///
    /// Example: palisade records revoke 3f1c… --reason "superseded by a newer scan"
    Revoke {
        /// Record id (64 hex).
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show an author's feed in seq order (default: this node's own).
    ///
    /// Example: palisade records feed --limit 20
    Feed {
        /// Author key (64 hex).
        author: Option<String>,
        /// Page size 1-1000.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Continue from the previous page's next_cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// `limits …`.
#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// Show every limit in force.
    ///
    /// Example: palisade limits show
    Show,
    /// Change a limit at run time (not persisted: also edit the limits section of the config file).
    ///
    /// Example: palisade limits set peer_messages_per_sec 200
    Set {
        /// Limit name, e.g. peer_messages_per_sec.
        key: String,
        /// New value (negative numbers need no `--`).
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
}

/// `ledger`.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// Entries after this seq.
    #[arg(long, value_name = "SEQ")]
    pub after: Option<u64>,
    /// Page size 1-1000.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Keep polling for new entries every second.
    #[arg(long)]
    pub follow: bool,
}

/// `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Event types, comma-separated: record_stored, peer_connected, peer_disconnected,
    /// equivocation, banned, unbanned, peer_penalty_disconnect.
    #[arg(long = "type", value_name = "TYPES")]
    pub types: Option<String>,
    /// Record kinds for record_stored events, comma-separated.
    #[arg(long = "kind", value_name = "KINDS")]
    pub kinds: Option<String>,
}

/// Flags of `run`; each is also a config key and a `PALISADE_*` variable.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Listen multiaddr (repeatable; replaces network.listen).
    #[arg(long = "listen", env = "PALISADE_LISTEN", value_delimiter = ',', value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Bootstrap peer multiaddr ending in /p2p/<peer id> (repeatable; replaces network.bootstrap).
    #[arg(long = "bootstrap", env = "PALISADE_BOOTSTRAP", value_delimiter = ',', value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Address other peers should dial (repeatable; replaces network.external_addresses).
    #[arg(
        long = "external-address",
        env = "PALISADE_EXTERNAL_ADDRESS",
        value_delimiter = ',',
        value_name = "MULTIADDR"
    )]
    pub external_address: Vec<String>,
    /// Enable mDNS discovery on the local network.
    #[arg(long, env = "PALISADE_MDNS")]
    pub mdns: bool,
    /// Prometheus listener host:port, or `off`.
    #[arg(long, env = "PALISADE_METRICS_LISTEN", value_name = "ADDR|off")]
    pub metrics_listen: Option<String>,
    /// Start on a store that holds less than its manifest (exit 74 without this flag): accept
    /// what is missing, fetch it back from peers, and refuse submissions until the node's own
    /// feed is back up to where it was.
    #[arg(long)]
    pub recover_from_peers: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective config (file + env + flags).
    ///
    /// Example: palisade config check --listen /ip4/0.0.0.0/tcp/7500
    Check(RunArgs),
    /// Print the commented default configuration.
    Default,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show the node's author key and peer id.
    ///
    /// Example: palisade keys show
    Show,
    /// The signing history (the highest seq this node ever signed): export and import it in
    /// an interchange document, to move a node's protection against signing twice with its key.
    #[command(subcommand)]
    History(HistoryCommand),
}

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Print the signing history as an interchange document (JSON).
    ///
    /// Example: palisade keys history export > signing-history.json
    Export,
    /// Merge an interchange document into this node's signing history (never lowering it;
    /// the node stopped; the document's author must be this node's key).
    ///
    /// Example: palisade keys history import signing-history.json
    Import {
        /// The document (from `palisade keys history export`).
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
    },
}
