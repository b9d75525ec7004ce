//! Network configuration: the `[network]` section of `palisade.toml`.
//!
//! Every field has its unit in its name and a documented default; [`NetConfig::validate`]
//! checks ranges and relations and names the key in its error.

use std::time::Duration;

use libp2p::Multiaddr;
use palisade_types::InvalidSetting;
use serde::{Deserialize, Serialize};

/// Default P2P port (TCP and QUIC).
pub const DEFAULT_PORT: u16 = 7400;

/// The `[network]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetConfig {
    /// Multiaddrs to listen on. Default: TCP and QUIC on all IPv4 interfaces, port 7400.
    pub listen: Vec<String>,
    /// Peers to connect to at start and to bootstrap Kademlia from. An entry ending in
    /// `/p2p/<peer id>` is that peer only; an entry without it (address-only, e.g.
    /// `/dns4/palisade-0.palisade/tcp/7400`) is whoever answers there, its id learnt in the
    /// handshake: for a cluster whose members share one list (a Kubernetes StatefulSet).
    /// An entry that turns out to be this node is skipped.
    pub bootstrap: Vec<String>,
    /// Addresses other peers should use to reach this node (behind NAT or port forwarding).
    pub external_addresses: Vec<String>,
    /// Discover peers on the local network with mDNS. Off by default: it announces the node
    /// to everyone on the LAN.
    pub mdns: bool,
    /// Largest gossipsub message (bytes). Must hold the largest record envelope (16 KiB)
    /// plus framing; 64 KiB leaves room and still bounds the per-message decode cost.
    pub gossip_max_transmit_bytes: usize,
    /// Records issued longer ago than this are ignored when they arrive by gossip (they are
    /// old news and a replay vector) but accepted by sync and import. Seconds.
    pub gossip_max_record_age_secs: u64,
    /// Seconds between anti-entropy sync rounds with a random connected peer.
    pub sync_interval_secs: u64,
    /// Most feed heads in one sync response page.
    pub sync_max_heads_per_page: usize,
    /// Most records in one sync response page.
    pub sync_max_records_per_page: usize,
    /// Most bytes of record envelopes in one sync response page.
    pub sync_max_response_bytes: usize,
    /// Most sync requests one peer may have in flight to us at once.
    pub sync_max_inbound_per_peer: usize,
    /// Seconds a sync request may take before it is abandoned.
    pub sync_request_timeout_secs: u64,
    /// Speak `/palisade/sync/2` (range-based reconciliation of feed heads: a round costs what
    /// differs, not every head) besides sync/1. Off: sync/1 only, as before 0.9.
    pub sync_v2: bool,
    /// Records waiting for signature verification. When full, new records are ignored (load
    /// shed, counted) instead of blocking the event loop. Sized for ~0.5 s of peak verify
    /// throughput on two cores.
    pub verify_queue_records: usize,
    /// Largest signature batch.
    pub verify_batch_max_records: usize,
    /// How long a partial batch waits for more records before it is verified (ms). Default
    /// 0: a worker verifies whatever is queued at once. Under load the queue fills while a
    /// batch is being checked, so batches grow by themselves (natural batching); at low load
    /// no record waits, which keeps every gossip hop fast (a 2 ms wait per hop made a record
    /// reach 4 nodes 3× later than with no wait, in `palisade-chaos bench`).
    pub verify_batch_deadline_ms: u64,
    /// Signature worker threads; 0 = one per CPU core.
    pub verify_workers: usize,
    /// Record ids remembered in the in-memory seen cache (dedup before the store lookup).
    pub seen_cache_records: usize,
    /// Gossiped records from authors this node has never stored are admitted at most this
    /// fast, node-wide. A Sybil flood needs a fresh author per record (per-author quotas stop
    /// anything else), and once one peer lets such records in, every honest relay would
    /// carry them on; this budget stops that at every hop, while records of known authors
    /// never touch it. Over budget, records are ignored (not penalised: honest relays forward
    /// them too) and reach the node later by sync.
    pub new_authors_per_sec: u32,
    /// Burst of the new-author budget: a network launch or a new scanner fleet.
    pub new_authors_burst: u32,
    /// Seconds between Kademlia random walks (peer discovery).
    pub kad_random_walk_interval_secs: u64,
    /// Group commit: the store is flushed at least this often while writes are pending (ms).
    pub flush_interval_ms: u64,
    /// Group commit: the store is flushed after this many pending gossip/sync writes. Keep it
    /// near the default (64): sled 0.34 holds on to memory for every large batch of scattered
    /// keys. Measured writing one record each for 300,000 new authors (keys spread over the
    /// whole key space, as Sybil authors or a sync of many authors are): groups of 64 peak at
    /// 400 MiB, of 256 at 3.2 GiB, of 1,000 at 5.4 GiB, growing with every author.
    pub flush_max_records: usize,
    /// Own-feed check at start (doppelganger protection): before its first signature the
    /// node asks its peers for the head of its own feed and fetches what its store lacks,
    /// for at most this many seconds (0: no check; a single node with no bootstrap entry
    /// and an empty peer book skips it anyway). Submissions get `503 own_feed_check` meanwhile.
    pub own_feed_check_secs: u64,
    /// The own-feed check ends early once this many peers have answered (and every own
    /// record they reported is stored).
    pub own_feed_check_peers: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: vec![
                format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}"),
                format!("/ip4/0.0.0.0/udp/{DEFAULT_PORT}/quic-v1"),
            ],
            bootstrap: Vec::new(),
            external_addresses: Vec::new(),
            mdns: false,
            gossip_max_transmit_bytes: 64 * 1024,
            gossip_max_record_age_secs: 24 * 3600,
            sync_interval_secs: 30,
            sync_max_heads_per_page: 4096,
            sync_max_records_per_page: 256,
            sync_max_response_bytes: 1024 * 1024,
            sync_max_inbound_per_peer: 4,
            sync_request_timeout_secs: 20,
            sync_v2: true,
            verify_queue_records: 8192,
            verify_batch_max_records: 64,
            verify_batch_deadline_ms: 0,
            verify_workers: 0,
            seen_cache_records: 200_000,
            new_authors_per_sec: 50,
            new_authors_burst: 500,
            kad_random_walk_interval_secs: 300,
            flush_interval_ms: 10,
            flush_max_records: 64,
            own_feed_check_secs: 5,
            own_feed_check_peers: 2,
        }
    }
}

fn parse_addrs(key: &str, addrs: &[String]) -> Result<Vec<Multiaddr>, InvalidSetting> {
    addrs
        .iter()
        .map(|a| {
            a.parse::<Multiaddr>().map_err(|e| {
                InvalidSetting::new(
                    key,
                    format!("{a:?}"),
                    format!("a multiaddr such as /ip4/1.2.3.4/tcp/7400 ({e})"),
                )
            })
        })
        .collect()
}

impl NetConfig {
    /// Checks every value and relation; the error names the key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let listen = parse_addrs("network.listen", &self.listen)?;
        if listen.is_empty() {
            return Err(InvalidSetting::new("network.listen", "[]", "at least one multiaddr"));
        }
        for a in parse_addrs("network.bootstrap", &self.bootstrap)? {
            use libp2p::multiaddr::Protocol;
            let transport = a.iter().any(|p| matches!(p, Protocol::Tcp(_) | Protocol::QuicV1));
            let p2p_last = a
                .iter()
                .position(|p| matches!(p, Protocol::P2p(_)))
                .is_none_or(|i| i + 1 == a.iter().count());
            if !transport || !p2p_last {
                return Err(InvalidSetting::new(
                    "network.bootstrap",
                    a.to_string(),
                    "a TCP or QUIC multiaddr, optionally ending in /p2p/<peer id>, e.g. /ip4/10.0.0.5/tcp/7400/p2p/12D3KooW… or /dns4/palisade-0.palisade/tcp/7400",
                ));
            }
        }
        parse_addrs("network.external_addresses", &self.external_addresses)?;
        let max_envelope = palisade_types::limits::MAX_ENVELOPE_BYTES;
        InvalidSetting::check_range(
            "network.gossip_max_transmit_bytes",
            self.gossip_max_transmit_bytes,
            max_envelope + 1024,
            4 * 1024 * 1024,
        )?;
        InvalidSetting::check_range(
            "network.gossip_max_record_age_secs",
            self.gossip_max_record_age_secs,
            60,
            365 * 86400,
        )?;
        InvalidSetting::check_range("network.sync_interval_secs", self.sync_interval_secs, 1, 86400)?;
        InvalidSetting::check_range(
            "network.sync_max_heads_per_page",
            self.sync_max_heads_per_page,
            1,
            crate::sync::MAX_HEADS_PER_PAGE,
        )?;
        InvalidSetting::check_range(
            "network.sync_max_records_per_page",
            self.sync_max_records_per_page,
            1,
            crate::sync::MAX_RECORDS_PER_PAGE,
        )?;
        InvalidSetting::check_range(
            "network.sync_max_response_bytes",
            self.sync_max_response_bytes,
            max_envelope,
            crate::sync::MAX_RESPONSE_BYTES,
        )?;
        InvalidSetting::check_range(
            "network.sync_max_inbound_per_peer",
            self.sync_max_inbound_per_peer,
            1,
            64,
        )?;
        InvalidSetting::check_range("network.own_feed_check_secs", self.own_feed_check_secs, 0, 300)?;
        InvalidSetting::check_range("network.own_feed_check_peers", self.own_feed_check_peers, 1, 64)?;
        InvalidSetting::check_range(
            "network.sync_request_timeout_secs",
            self.sync_request_timeout_secs,
            1,
            600,
        )?;
        InvalidSetting::check_range(
            "network.verify_queue_records",
            self.verify_queue_records,
            64,
            1_000_000,
        )?;
        InvalidSetting::check_range(
            "network.verify_batch_max_records",
            self.verify_batch_max_records,
            1,
            1024,
        )?;
        if self.verify_batch_max_records > self.verify_queue_records {
            return Err(InvalidSetting::new(
                "network.verify_batch_max_records",
                self.verify_batch_max_records,
                format!("<= network.verify_queue_records ({})", self.verify_queue_records),
            ));
        }
        InvalidSetting::check_range(
            "network.verify_batch_deadline_ms",
            self.verify_batch_deadline_ms,
            0,
            1000,
        )?;
        InvalidSetting::check_range("network.verify_workers", self.verify_workers, 0, 256)?;
        InvalidSetting::check_range("network.seen_cache_records", self.seen_cache_records, 1024, 10_000_000)?;
        InvalidSetting::check_range("network.new_authors_per_sec", self.new_authors_per_sec, 1, 1_000_000)?;
        InvalidSetting::check_range("network.new_authors_burst", self.new_authors_burst, 1, 10_000_000)?;
        InvalidSetting::check_range(
            "network.kad_random_walk_interval_secs",
            self.kad_random_walk_interval_secs,
            10,
            86400,
        )?;
        InvalidSetting::check_range("network.flush_interval_ms", self.flush_interval_ms, 1, 10_000)?;
        InvalidSetting::check_range("network.flush_max_records", self.flush_max_records, 1, 100_000)?;
        Ok(())
    }

    /// Parsed listen addresses (call after [`validate`](Self::validate)).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen.iter().filter_map(|a| a.parse().ok()).collect()
    }

    /// Parsed bootstrap addresses.
    pub fn bootstrap_addrs(&self) -> Vec<Multiaddr> {
        self.bootstrap.iter().filter_map(|a| a.parse().ok()).collect()
    }

    /// Bootstrap entries with the peer they name (`/p2p/<id>` last), if they name one.
    pub fn bootstrap_peers(&self) -> Vec<(Option<libp2p::PeerId>, Multiaddr)> {
        self.bootstrap_addrs()
            .into_iter()
            .map(|addr| match addr.iter().last() {
                Some(libp2p::multiaddr::Protocol::P2p(peer)) => (Some(peer), addr),
                _ => (None, addr),
            })
            .collect()
    }

    /// Parsed external addresses.
    pub fn external_addrs(&self) -> Vec<Multiaddr> {
        self.external_addresses.iter().filter_map(|a| a.parse().ok()).collect()
    }

    /// Sync interval as a duration.
    pub fn sync_interval(&self) -> Duration {
        Duration::from_secs(self.sync_interval_secs)
    }
}
