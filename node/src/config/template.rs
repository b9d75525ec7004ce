//! The commented default configuration `palisade init` writes and `palisade config default`
//! prints (a test in `config.rs` holds it to [`NodeConfig::default`](super::NodeConfig)).

use palisade_guard::GuardConfig;
use palisade_net::NetConfig;

use super::{AdminSection, DEFAULT_METRICS_LISTEN, DEFAULT_SHUTDOWN_TIMEOUT_SECS};

/// `[limits]` defaults as commented `key = value` lines (generated, so they cannot drift
/// from [`GuardConfig::default`]).
fn commented_limits() -> String {
    match toml::to_string(&GuardConfig::default()) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("# {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(_) => "# (see `palisade config default`)".to_string(),
    }
}

/// The commented default config that `palisade init` writes. A test checks it parses to
/// exactly [`NodeConfig::default`](super::NodeConfig::default).
pub fn default_config_toml() -> String {
    let n = NetConfig::default();
    let a = AdminSection::default();
    let q = |v: &[String]| format!("[{}]", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "));
    format!(
        r#"# Palisade node configuration.
# Every key is optional; the values below are the defaults. Precedence (lowest first):
# this file, PALISADE_* environment variables, command-line flags.
# Unknown keys are errors. Check a file with `palisade config check`.

[network]
# Multiaddrs to listen on (TCP and QUIC). Flag: --listen, env: PALISADE_LISTEN.
listen = {listen}
# Peers to dial at start: /p2p/<peer id> last pins the peer; without it, whoever answers at
# the address (its id learnt in the handshake; an entry that is this node is skipped).
# Flag: --bootstrap.
bootstrap = []
# Addresses other peers should use to reach this node. Flag: --external-address.
external_addresses = []
# Local-network discovery. Flag: --mdns.
mdns = {mdns}
# Largest gossip message in bytes (>= 17408: one 16 KiB record plus framing).
gossip_max_transmit_bytes = {gmt}
# Gossip ignores records older than this (sync and import still accept them).
gossip_max_record_age_secs = {age}
# Anti-entropy: seconds between sync rounds, and per-response limits.
sync_interval_secs = {si}
sync_max_heads_per_page = {sh}
sync_max_records_per_page = {sr}
sync_max_response_bytes = {sb}
sync_max_inbound_per_peer = {sp}
sync_request_timeout_secs = {st}
# Speak /palisade/sync/2 (reconciliation: a round costs what differs) besides sync/1.
sync_v2 = {sv2}
# Signature verification: queue (load is shed beyond it), batch size and deadline, workers (0 = cores).
verify_queue_records = {vq}
verify_batch_max_records = {vb}
verify_batch_deadline_ms = {vd}
verify_workers = {vw}
# Record ids kept in the in-memory dedup cache.
seen_cache_records = {sc}
# Gossiped records from never-seen authors admitted per second node-wide, and burst
# (a Sybil-flood brake; known authors never touch it; the rest arrives by sync).
new_authors_per_sec = {nap}
new_authors_burst = {nab}
kad_random_walk_interval_secs = {kad}
# Group commit of records received by gossip and sync. Keep flush_max_records near 64: sled
# holds memory for large batches of scattered keys (groups of 256 peaked at 3.2 GiB writing
# 300,000 new authors, groups of 64 at 400 MiB).
flush_interval_ms = {fi}
flush_max_records = {fm}
# Own-feed check at start (doppelganger protection): before its first signature the node
# asks peers for the head of its own feed and fetches what its store lacks, for at most
# own_feed_check_secs (0: off; skipped with no bootstrap entry and an empty peer book), or
# until own_feed_check_peers peers answered. Submissions get 503 own_feed_check meanwhile.
own_feed_check_secs = {ofs}
own_feed_check_peers = {ofp}

[limits]
# DoS protection: connection caps, bandwidth, message and author rates, reputation, bans.
# Each key's unit, effect and tuning advice: docs/dos-protection.md. Most can also be changed
# at run time with `palisade limits set KEY VALUE`. Defaults (uncomment to change):
{limits}

[store]
# sled page cache in bytes.
cache_capacity_bytes = {cache}
# Disk watermarks, in bytes free on the data directory's filesystem. Below the flood stage
# new records are refused (submissions and imports get 507, peers' records are ignored), reads
# go on and /v1/ready says not ready; writes resume by themselves once free space is back
# above it plus an eighth of it (at most 64 MiB). Below the warning level the node only warns.
min_free_disk_bytes = {minfree}
warn_free_disk_bytes = {warnfree}
# A shutdown that takes longer than this ends the process anyway (exit code 75).
shutdown_timeout_secs = {shutdown}
# The store quota, in logical bytes of records (what `palisade store usage` shows; sled's
# files take more). Above it the node evicts the oldest records of authors that no trust
# policy and no retain_authors entry names; its own records, protected authors' records,
# equivocation proofs and open anomalies are never evicted.
max_bytes = {maxbytes}
# Authors whose records are never evicted, besides those of [admin.trust] (reloaded on SIGHUP).
# retain_authors = ["<64 hex characters>"]
# zstd-compress the store's pages: about 2.4x less disk for about 2.4x slower store writes
# (measured, docs/operations.md). Only when the store is created; an existing store keeps
# its setting (export, start on a new data directory, import to change it).
compression = false
# sled keeps the space of evicted and overwritten records; the node gives it back by compacting
# the store online (a copy of what it keeps, swapped in; writers wait about 0.1 s per 100,000
# records for the swap, readers do not) when sled's files exceed compact_above_ratio times the logical bytes and
# compact_above_bytes (0: never; `palisade store compact` then does it with the node stopped).
# It needs free disk for the copy: about four times the logical bytes above the flood stage.
compact_above_bytes = {compactbytes}
compact_above_ratio = {compactratio}

[admin]
# Unix socket of the admin API, mode 0600 (default: <data-dir>/admin.sock).
# socket = "/run/palisade/admin.sock"
# Optional loopback TCP listener; every request needs `Authorization: Bearer <token>` with
# the token the node writes to <data-dir>/admin.token (mode 0600) at every start.
# listen = "127.0.0.1:9741"
# Largest JSON request body and largest NDJSON import, in bytes.
max_body_bytes = {abody}
max_import_bytes = {aimport}
# Deadline of ordinary requests (export, import and events streams have none).
request_timeout_secs = {atimeout}
# Live event (SSE) subscribers: how many at once, heartbeat interval, and how many events
# may queue for one subscriber before it is dropped as too slow.
max_sse_subscribers = {asse}
sse_heartbeat_secs = {ahb}
sse_queue_events = {aqueue}
# The API's own rate limit over all clients (429 beyond) and requests handled at once (503
# beyond); health and readiness are exempt.
requests_per_sec = {arate}
burst_requests = {aburst}
max_concurrent_requests = {aconc}
# Open connections per listener (socket, TCP); beyond, a connection gets 503 and is closed.
# Seconds for a request's head to arrive after the connection opens (one request per
# connection, so no idle connection outlives it), and to receive a JSON body (for an import:
# the longest pause between two chunks); a slower client gets 408 and is cut off.
max_connections = {amaxconn}
header_timeout_secs = {aheader}
body_timeout_secs = {abodyt}
# Trust policies for `palisade attest verdict` / GET /v1/subjects/<digest>/verdict: a subject
# passes when at least `threshold` distinct `authors` say pass in their latest non-revoked,
# unexpired attestation. `default` is used when no policy is named.
# [admin.trust.default]
# authors = ["<64 hex author key>", "<64 hex author key>"]
# threshold = 2

[metrics]
# Prometheus text endpoint, or "off". Flag: --metrics-listen.
listen = "{metrics}"

[log]
# RUST_LOG-style filter (RUST_LOG overrides it) and format: "pretty" or "json".
filter = "info"
format = "pretty"
# Log to a file instead of stderr (flag: --log-file), rotated when it reaches max_file_bytes;
# max_files older files are kept (<file>.1 newest ... <file>.N oldest).
# file = "/var/log/palisade/palisade.log"
max_file_bytes = 67108864
max_files = 5
"#,
        limits = commented_limits(),
        listen = q(&n.listen),
        mdns = n.mdns,
        gmt = n.gossip_max_transmit_bytes,
        age = n.gossip_max_record_age_secs,
        si = n.sync_interval_secs,
        sh = n.sync_max_heads_per_page,
        sr = n.sync_max_records_per_page,
        sb = n.sync_max_response_bytes,
        sp = n.sync_max_inbound_per_peer,
        st = n.sync_request_timeout_secs,
        sv2 = n.sync_v2,
        vq = n.verify_queue_records,
        vb = n.verify_batch_max_records,
        vd = n.verify_batch_deadline_ms,
        vw = n.verify_workers,
        sc = n.seen_cache_records,
        nap = n.new_authors_per_sec,
        nab = n.new_authors_burst,
        kad = n.kad_random_walk_interval_secs,
        fi = n.flush_interval_ms,
        fm = n.flush_max_records,
        ofs = n.own_feed_check_secs,
        ofp = n.own_feed_check_peers,
        cache = palisade_store::DEFAULT_CACHE_CAPACITY_BYTES,
        minfree = palisade_store::DEFAULT_MIN_FREE_DISK_BYTES,
        warnfree = palisade_store::DEFAULT_WARN_FREE_DISK_BYTES,
        shutdown = DEFAULT_SHUTDOWN_TIMEOUT_SECS,
        maxbytes = palisade_store::DEFAULT_MAX_STORE_BYTES,
        compactbytes = palisade_store::DEFAULT_COMPACT_ABOVE_BYTES,
        compactratio = palisade_store::DEFAULT_COMPACT_ABOVE_RATIO,
        abody = a.max_body_bytes,
        aimport = a.max_import_bytes,
        atimeout = a.request_timeout_secs,
        asse = a.max_sse_subscribers,
        ahb = a.sse_heartbeat_secs,
        aqueue = a.sse_queue_events,
        arate = a.requests_per_sec,
        aburst = a.burst_requests,
        aconc = a.max_concurrent_requests,
        amaxconn = a.max_connections,
        aheader = a.header_timeout_secs,
        abodyt = a.body_timeout_secs,
        metrics = DEFAULT_METRICS_LISTEN,
    )
}
