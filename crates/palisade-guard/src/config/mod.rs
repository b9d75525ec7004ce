//! Every DoS limit of the node, in one struct: the `[limits]` section of the config file.
//!
//! This module owns the names, units, defaults and the validation of limits (ranges and the
//! relations between them), and the generic `key = value` setter the admin API uses to change
//! limits at run time. Each field's doc comment says what the limit bounds and why the default
//! is sized the way it is; `docs/dos-protection.md` is the operator-facing version.
//!
//! Units are in every name: `_per_sec` rates, `_burst` / `_burst_*` bucket capacities (how far a
//! sender may run ahead of its rate), `_bytes`, `_secs`, `_millis`, `_points`, `_entries`.

use std::collections::HashSet;

use libp2p::PeerId;
use palisade_types::InvalidSetting;
use serde::{Deserialize, Serialize};

use crate::addr::Cidr;

mod setting;

const KIB: u32 = 1024;
const MIB: u32 = 1024 * 1024;
const MIB64: u64 = 1024 * 1024;

/// Prefix of every key in errors and in the admin API.
pub const KEY_PREFIX: &str = "limits.";

/// All DoS limits. `Default` gives the documented defaults; unknown keys in a config file are
/// rejected so a typo cannot silently leave a limit at its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    // ---- layer 1: connections ----
    /// Most established connections in total. 256 keeps a gossip mesh (D=8..12 per topic,
    /// three topics) plus sync and admin dials with ample headroom, while bounding per-connection
    /// memory (yamux buffers, handler state) to a few hundred MiB in the worst case.
    pub max_established_total: u32,
    /// Most established inbound connections: 192, so outbound dials (our own choice of peers,
    /// harder for an attacker to influence) always keep at least 64 slots.
    pub max_established_incoming: u32,
    /// Most established outbound connections: 128.
    pub max_established_outgoing: u32,
    /// Most connections to one peer id: 2 (one each way during a simultaneous dial).
    pub max_established_per_peer: u32,
    /// Most inbound connections still in the handshake: 64. Each costs a noise handshake; the
    /// cap bounds that CPU and the sockets slow-loris peers can hold.
    pub max_pending_incoming: u32,
    /// Most outbound dials in flight: 64.
    pub max_pending_outgoing: u32,
    /// New connections are refused while the process's resident memory exceeds this: 1 GiB,
    /// four times the node's 256 MiB working-set goal. 0 disables the check.
    pub max_process_memory_bytes: u64,
    /// Most connections (pending inbound + established) from one IP address: 8. Enough for a
    /// few nodes behind one NAT; a single host cannot fill the node with identities.
    pub max_connections_per_ip: u32,
    /// Most connections from one /24 (IPv4) or /64 (IPv6): 32. Must be >= the per-IP cap.
    pub max_connections_per_subnet: u32,
    /// New inbound connections per second one IP may open (sustained): 2. A well-behaved
    /// node reconnects a handful of times per minute at most.
    pub ip_new_connections_per_sec: u32,
    /// New inbound connections one IP may open in a burst: 10 (a restart of a few nodes
    /// behind one NAT).
    pub ip_new_connections_burst: u32,
    /// New inbound connections per second one subnet may open (sustained): 8.
    pub subnet_new_connections_per_sec: u32,
    /// New inbound connections one subnet may open in a burst: 40.
    pub subnet_new_connections_burst: u32,
    /// Longest time from TCP accept to an authenticated, multiplexed connection: 10 s. A
    /// handshake is a few KiB and three round trips; anything slower is a slow-loris peer
    /// holding a pending slot (this is the minimum data rate before authentication).
    pub handshake_timeout_secs: u64,
    /// Connections with no open streams are closed after this: 60 s (palisade-net applies it
    /// to the swarm).
    pub idle_connection_timeout_secs: u64,
    /// Most concurrent streams per connection (yamux `max_num_streams`, QUIC
    /// `max_concurrent_stream_limit`): 128. Each stream can buffer a receive window, so this
    /// bounds per-connection memory.
    pub max_streams_per_connection: u32,

    // ---- layer 2: bandwidth ----
    /// Bytes per second one connection may receive: 4 MiB/s. With the per-peer budget below,
    /// mostly relevant to peers with several connections.
    pub conn_inbound_bytes_per_sec: u64,
    /// Bytes per second one connection may send: 4 MiB/s.
    pub conn_outbound_bytes_per_sec: u64,
    /// Bytes per second one peer may make us receive, over all its connections: 4 MiB/s, about
    /// 250 full 16 KiB records a second, far above honest gossip yet a small share of the
    /// global budget.
    pub peer_inbound_bytes_per_sec: u64,
    /// Bytes per second we send to one peer, over all its connections: 4 MiB/s.
    pub peer_outbound_bytes_per_sec: u64,
    /// Bytes per second received from all peers together: 64 MiB/s (~0.5 Gbit/s). Lower it to
    /// what the node's link should spend on Palisade.
    pub global_inbound_bytes_per_sec: u64,
    /// Bytes per second sent to all peers together: 64 MiB/s.
    pub global_outbound_bytes_per_sec: u64,
    /// How far ahead of its rate a byte bucket may run, in milliseconds of that rate: 250 ms.
    /// Larger smooths bursty protocols; smaller holds rates tighter over short windows.
    pub throttle_burst_millis: u64,

    // ---- layer 4: messages, records, authors ----
    /// Largest gossip or sync message accepted, checked before decode: 1 MiB, one sync page
    /// of records. Must hold at least one envelope (16 KiB); gossipsub's own
    /// `max_transmit_size` is tighter for gossip.
    pub max_message_bytes: u32,
    /// Messages per second one peer may send (sustained): 1000. A gossip relay forwards the
    /// network's whole record flow, so this must sit well above the network's unique-record
    /// rate: in the chaos `flood` scenario a 100/s limit throttled honest relays (and delayed
    /// honest records by seconds) once attackers pushed valid Sybil records through them.
    pub peer_messages_per_sec: u32,
    /// Messages one peer may send in a burst: 2000 (a mesh re-join delivers a backlog).
    pub peer_burst_messages: u32,
    /// Message bytes per second one peer may send (sustained): 1 MiB/s.
    pub peer_bytes_per_sec: u32,
    /// Message bytes one peer may send in a burst: 4 MiB. Must be >= `max_message_bytes` so
    /// one largest message always fits.
    pub peer_burst_bytes: u32,
    /// New (not duplicate) records per second one peer may relay, whatever their authors:
    /// 500. This is what caps Sybil authors: a thousand fresh keys behind one peer still share
    /// this budget (sized above an honest relay's share of the network's flow, see
    /// `peer_messages_per_sec`).
    pub peer_records_per_sec: u32,
    /// New records one peer may relay in a burst: 2000 (a few sync pages).
    pub peer_burst_records: u32,
    /// Equivocation proofs per second one peer may relay: 30. A proof is two records to
    /// verify and store. An honest relay forwards only proofs it stored, and proofs of fresh
    /// authors take two tokens of the node-wide new-author budget (`network.new_authors_per_sec`,
    /// 50/s), so under a Sybil proof flood an honest relay sends at most ~25/s: the node
    /// refuses to start with this below half of `network.new_authors_per_sec`. A peer over it
    /// for longer than `over_rate_grace_secs` pays `persistent_over_rate`.
    pub peer_proofs_per_sec: u32,
    /// Equivocation proofs one peer may relay in a burst: 300 (above half the new-author
    /// burst, 500).
    pub peer_burst_proofs: u32,
    /// Records per second one author may publish (sustained, over all peers): 20.
    pub author_records_per_sec: u32,
    /// Records one author may publish in a burst: 200 (a CI job attesting many artefacts).
    pub author_burst_records: u32,
    /// Cost units per second one peer may spend (sustained): 10000. Every message costs
    /// `message_cost_units`, every signature check `verification_cost_units`, so with the
    /// defaults a peer gets at most ~900 signature checks a second (about 1% of one core in
    /// batches) — and invalid ones get it banned within a few messages.
    pub peer_cost_units_per_sec: u32,
    /// Cost units one peer may spend in a burst: 25000.
    pub peer_burst_cost_units: u32,
    /// Cost of admitting one message (a dedup hit costs only this): 1.
    pub message_cost_units: u32,
    /// Extra cost of a record that needs a signature check: 10, about the CPU ratio of an
    /// ed25519 verification to a decode plus a dedup lookup.
    pub verification_cost_units: u32,
    /// How long a peer may stay over a per-peer rate (refused without a break of more than
    /// 2 s) before it pays `persistent_over_rate` and is disconnected: 10 s. Honest relays
    /// burst over their budgets for a second or two after a pause or a partition; a peer that
    /// is over for longer is holding a connection slot and shared budgets it cannot use.
    pub over_rate_grace_secs: u64,
    /// Most peers tracked by the per-peer limiters and the score table: 10000, far above the
    /// connection caps, so only identity churn (connect, send, leave) can fill it; idle
    /// entries are pruned, and when every entry is active new peers are refused
    /// (`tracker_full`) rather than evicting an active one (which would hand out a fresh burst).
    pub max_tracked_peers: u32,
    /// Most authors tracked by the per-author quota: 100000 (~10 MiB of limiter state).
    pub max_tracked_authors: u32,
    /// Most IP addresses and subnets tracked by the connection-rate limiters: 10000 each.
    pub max_tracked_ips: u32,

    // ---- layer 5: reputation and bans ----
    /// Half-life of a peer's score: 60 s. A peer that misbehaved once is forgiven within a few
    /// minutes; a flood keeps its score down.
    pub score_half_life_secs: u64,
    /// A peer whose score falls to or below this is disconnected: -50 points (two invalid
    /// signatures, or fifty rate-limit violations within a minute).
    pub disconnect_score_points: i32,
    /// A peer whose score falls to or below this is banned: -100 points.
    pub ban_score_points: i32,
    /// How long a score ban lasts: 3600 s. Long enough to make an attack expensive (new
    /// identities must also get past the per-IP caps), short enough that a misconfigured honest
    /// node recovers without an operator.
    pub ban_duration_secs: u64,
    /// An IP is banned when this many peers banned by score at the same time used it: 3.
    /// Manual bans do not count. 0 disables IP bans from peer bans.
    pub ip_ban_after_banned_peers: u32,
    /// Most bans kept: 100000. When full, the ban ending soonest is dropped first.
    pub max_bans: u32,
    /// Peer ids (base58) that are never penalised or banned by score and bypass the
    /// connection, IP and rate caps. Use for your own nodes.
    pub allowlist_peers: Vec<String>,
    /// IP addresses or CIDR ranges (`10.0.0.0/8`, `fd00::/8`) whose connections bypass the
    /// IP and subnet caps and whose peers are never penalised.
    pub allowlist_ips: Vec<String>,

    // ---- layer 6: audit ----
    /// Entries kept in the drop ledger (a ring buffer; older entries fall off): 4096. Repeated
    /// identical drops within a second are folded into one entry with a count.
    pub ledger_capacity_entries: u32,
}

impl Default for GuardConfig {
    fn default() -> GuardConfig {
        GuardConfig {
            max_established_total: 256,
            max_established_incoming: 192,
            max_established_outgoing: 128,
            max_established_per_peer: 2,
            max_pending_incoming: 64,
            max_pending_outgoing: 64,
            max_process_memory_bytes: 1024 * MIB64,
            max_connections_per_ip: 8,
            max_connections_per_subnet: 32,
            ip_new_connections_per_sec: 2,
            ip_new_connections_burst: 10,
            subnet_new_connections_per_sec: 8,
            subnet_new_connections_burst: 40,
            handshake_timeout_secs: 10,
            idle_connection_timeout_secs: 60,
            max_streams_per_connection: 128,

            conn_inbound_bytes_per_sec: 4 * MIB64,
            conn_outbound_bytes_per_sec: 4 * MIB64,
            peer_inbound_bytes_per_sec: 4 * MIB64,
            peer_outbound_bytes_per_sec: 4 * MIB64,
            global_inbound_bytes_per_sec: 64 * MIB64,
            global_outbound_bytes_per_sec: 64 * MIB64,
            throttle_burst_millis: 250,

            max_message_bytes: MIB,
            peer_messages_per_sec: 1000,
            peer_burst_messages: 2000,
            peer_bytes_per_sec: MIB,
            peer_burst_bytes: 4 * MIB,
            peer_records_per_sec: 500,
            peer_burst_records: 2000,
            peer_proofs_per_sec: 30,
            peer_burst_proofs: 300,
            author_records_per_sec: 20,
            author_burst_records: 200,
            peer_cost_units_per_sec: 10_000,
            peer_burst_cost_units: 25_000,
            message_cost_units: 1,
            verification_cost_units: 10,
            over_rate_grace_secs: 10,
            max_tracked_peers: 10_000,
            max_tracked_authors: 100_000,
            max_tracked_ips: 10_000,

            score_half_life_secs: 60,
            disconnect_score_points: -50,
            ban_score_points: -100,
            ban_duration_secs: 3600,
            ip_ban_after_banned_peers: 3,
            max_bans: 100_000,
            allowlist_peers: Vec::new(),
            allowlist_ips: Vec::new(),

            ledger_capacity_entries: 4096,
        }
    }
}

/// Keys that size structures built once at start (the libp2p connection-limit and memory
/// behaviours, the transport, the ledger ring buffer). `set_limit` refuses them with a
/// message saying to change the config file and restart.
pub const RESTART_ONLY_KEYS: &[&str] = &[
    "max_established_total",
    "max_established_incoming",
    "max_established_outgoing",
    "max_established_per_peer",
    "max_pending_incoming",
    "max_pending_outgoing",
    "max_process_memory_bytes",
    "handshake_timeout_secs",
    "idle_connection_timeout_secs",
    "max_streams_per_connection",
    "ledger_capacity_entries",
];

/// Most bytes/s any byte rate may be set to (1 TiB/s): beyond it the arithmetic, not the
/// network, would be the limit.
const MAX_BYTES_PER_SEC: u64 = 1 << 40;
/// Longest ban or half-life accepted: ten years.
pub(crate) const MAX_DURATION_SECS: u64 = 10 * 365 * 24 * 3600;

fn key(field: &str) -> String {
    format!("{KEY_PREFIX}{field}")
}

fn range<T: PartialOrd + std::fmt::Display>(field: &str, v: T, min: T, max: T) -> Result<(), InvalidSetting> {
    InvalidSetting::check_range(&key(field), v, min, max)
}

fn at_least<T: PartialOrd + std::fmt::Display>(
    field: &str,
    v: T,
    other_field: &str,
    other: T,
) -> Result<(), InvalidSetting> {
    if v < other {
        return Err(InvalidSetting::new(key(field), v, format!(">= {} ({other})", key(other_field))));
    }
    Ok(())
}

/// The allowlist in parsed form.
#[derive(Debug, Clone, Default)]
pub(crate) struct Allowlist {
    pub(crate) peers: HashSet<PeerId>,
    pub(crate) nets: Vec<Cidr>,
}

impl Allowlist {
    pub(crate) fn contains_ip(&self, ip: std::net::IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }
}

/// Most allowlist entries of each kind; the IP list is scanned linearly per new connection.
pub const MAX_ALLOWLIST_ENTRIES: usize = 1024;

impl GuardConfig {
    /// Checks every range and every relation between limits. Keys are named
    /// `limits.<field>`.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let c = self;
        range("max_established_total", c.max_established_total, 1, 100_000)?;
        range("max_established_incoming", c.max_established_incoming, 0, c.max_established_total).map_err(
            |_| {
                over(
                    "max_established_incoming",
                    c.max_established_incoming,
                    "max_established_total",
                    c.max_established_total,
                )
            },
        )?;
        range("max_established_outgoing", c.max_established_outgoing, 0, c.max_established_total).map_err(
            |_| {
                over(
                    "max_established_outgoing",
                    c.max_established_outgoing,
                    "max_established_total",
                    c.max_established_total,
                )
            },
        )?;
        range("max_established_per_peer", c.max_established_per_peer, 1, 16)?;
        range("max_pending_incoming", c.max_pending_incoming, 1, 100_000)?;
        range("max_pending_outgoing", c.max_pending_outgoing, 1, 100_000)?;
        if c.max_process_memory_bytes != 0 {
            range("max_process_memory_bytes", c.max_process_memory_bytes, 64 * MIB64, 1 << 50)?;
        }
        range("max_connections_per_ip", c.max_connections_per_ip, 1, 100_000)?;
        range("max_connections_per_subnet", c.max_connections_per_subnet, 1, 100_000)?;
        at_least(
            "max_connections_per_subnet",
            c.max_connections_per_subnet,
            "max_connections_per_ip",
            c.max_connections_per_ip,
        )?;
        range("ip_new_connections_per_sec", c.ip_new_connections_per_sec, 1, 1_000_000)?;
        range("ip_new_connections_burst", c.ip_new_connections_burst, 1, 1_000_000)?;
        range("subnet_new_connections_per_sec", c.subnet_new_connections_per_sec, 1, 1_000_000)?;
        range("subnet_new_connections_burst", c.subnet_new_connections_burst, 1, 1_000_000)?;
        at_least(
            "subnet_new_connections_burst",
            c.subnet_new_connections_burst,
            "ip_new_connections_burst",
            c.ip_new_connections_burst,
        )?;
        range("handshake_timeout_secs", c.handshake_timeout_secs, 1, 120)?;
        range("idle_connection_timeout_secs", c.idle_connection_timeout_secs, 1, 86_400)?;
        range("max_streams_per_connection", c.max_streams_per_connection, 4, 10_000)?;

        for (f, v) in [
            ("conn_inbound_bytes_per_sec", c.conn_inbound_bytes_per_sec),
            ("conn_outbound_bytes_per_sec", c.conn_outbound_bytes_per_sec),
            ("peer_inbound_bytes_per_sec", c.peer_inbound_bytes_per_sec),
            ("peer_outbound_bytes_per_sec", c.peer_outbound_bytes_per_sec),
            ("global_inbound_bytes_per_sec", c.global_inbound_bytes_per_sec),
            ("global_outbound_bytes_per_sec", c.global_outbound_bytes_per_sec),
        ] {
            // 1 KiB/s floor: below it a single yamux frame header would wait seconds.
            range(f, v, u64::from(KIB), MAX_BYTES_PER_SEC)?;
        }
        range("throttle_burst_millis", c.throttle_burst_millis, 10, 10_000)?;

        range(
            "max_message_bytes",
            c.max_message_bytes,
            palisade_types::limits::MAX_ENVELOPE_BYTES as u32,
            64 * MIB,
        )
        .map_err(|e| InvalidSetting {
            allowed: format!(
                "{} (at least one {} byte envelope, the wire-format maximum)",
                e.allowed,
                palisade_types::limits::MAX_ENVELOPE_BYTES
            ),
            ..e
        })?;
        range("peer_messages_per_sec", c.peer_messages_per_sec, 1, 1_000_000)?;
        range("peer_burst_messages", c.peer_burst_messages, 1, 10_000_000)?;
        range("peer_bytes_per_sec", c.peer_bytes_per_sec, KIB, u32::MAX)?;
        range("peer_burst_bytes", c.peer_burst_bytes, 1, u32::MAX)?;
        at_least("peer_burst_bytes", c.peer_burst_bytes, "max_message_bytes", c.max_message_bytes)?;
        range("peer_records_per_sec", c.peer_records_per_sec, 1, 1_000_000)?;
        range("peer_burst_records", c.peer_burst_records, 1, 10_000_000)?;
        range("peer_proofs_per_sec", c.peer_proofs_per_sec, 1, 100_000)?;
        range("peer_burst_proofs", c.peer_burst_proofs, 1, 1_000_000)?;
        range("author_records_per_sec", c.author_records_per_sec, 1, 1_000_000)?;
        range("author_burst_records", c.author_burst_records, 1, 10_000_000)?;
        range("peer_cost_units_per_sec", c.peer_cost_units_per_sec, 1, 100_000_000)?;
        range("peer_burst_cost_units", c.peer_burst_cost_units, 1, 1_000_000_000)?;
        range("message_cost_units", c.message_cost_units, 1, 1_000_000)?;
        range("verification_cost_units", c.verification_cost_units, 1, 1_000_000)?;
        // A burst must hold at least one of each charge, or a peer could never pass.
        at_least(
            "peer_burst_cost_units",
            c.peer_burst_cost_units,
            "verification_cost_units",
            c.verification_cost_units,
        )?;
        at_least(
            "peer_burst_cost_units",
            c.peer_burst_cost_units,
            "message_cost_units",
            c.message_cost_units,
        )?;
        range("max_tracked_peers", c.max_tracked_peers, 16, 10_000_000)?;
        at_least("max_tracked_peers", c.max_tracked_peers, "max_established_total", c.max_established_total)?;
        range("max_tracked_authors", c.max_tracked_authors, 16, 100_000_000)?;
        range("max_tracked_ips", c.max_tracked_ips, 16, 10_000_000)?;

        range("score_half_life_secs", c.score_half_life_secs, 1, MAX_DURATION_SECS)?;
        range("over_rate_grace_secs", c.over_rate_grace_secs, 1, 3600)?;
        range("disconnect_score_points", c.disconnect_score_points, -1_000_000, -1)?;
        range("ban_score_points", c.ban_score_points, -1_000_000, -1)?;
        if c.ban_score_points > c.disconnect_score_points {
            return Err(InvalidSetting::new(
                key("ban_score_points"),
                c.ban_score_points,
                format!("<= {} ({})", key("disconnect_score_points"), c.disconnect_score_points),
            ));
        }
        range("ban_duration_secs", c.ban_duration_secs, 1, MAX_DURATION_SECS)?;
        range("ip_ban_after_banned_peers", c.ip_ban_after_banned_peers, 0, 1000)?;
        range("max_bans", c.max_bans, 16, 10_000_000)?;
        self.allowlist()?;

        range("ledger_capacity_entries", c.ledger_capacity_entries, 16, 1_000_000)?;
        Ok(())
    }

    /// Parses the allowlists.
    pub(crate) fn allowlist(&self) -> Result<Allowlist, InvalidSetting> {
        let mut out = Allowlist::default();
        if self.allowlist_peers.len() > MAX_ALLOWLIST_ENTRIES {
            return Err(InvalidSetting::new(
                key("allowlist_peers"),
                format!("{} entries", self.allowlist_peers.len()),
                format!("at most {MAX_ALLOWLIST_ENTRIES} entries"),
            ));
        }
        if self.allowlist_ips.len() > MAX_ALLOWLIST_ENTRIES {
            return Err(InvalidSetting::new(
                key("allowlist_ips"),
                format!("{} entries", self.allowlist_ips.len()),
                format!("at most {MAX_ALLOWLIST_ENTRIES} entries"),
            ));
        }
        for p in &self.allowlist_peers {
            let peer = p.parse::<PeerId>().map_err(|_| {
                InvalidSetting::new(key("allowlist_peers"), p, "base58 peer ids (12D3KooW...)")
            })?;
            out.peers.insert(peer);
        }
        for n in &self.allowlist_ips {
            let cidr = n.parse::<Cidr>().map_err(|_| {
                InvalidSetting::new(
                    key("allowlist_ips"),
                    n,
                    "IP addresses or CIDR ranges (10.0.0.0/8, fd00::/8)",
                )
            })?;
            out.nets.push(cidr);
        }
        Ok(out)
    }
}

fn over<T: std::fmt::Display>(field: &str, v: T, other_field: &str, other: T) -> InvalidSetting {
    InvalidSetting::new(key(field), v, format!("<= {} ({other})", key(other_field)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_roundtrip() {
        let c = GuardConfig::default();
        c.validate().unwrap();
        let toml_like = serde_json::to_string(&c).unwrap();
        let back: GuardConfig = serde_json::from_str(&toml_like).unwrap();
        assert_eq!(back, c);
        // Partial configs fill in defaults.
        let partial: GuardConfig = serde_json::from_str(r#"{"peer_messages_per_sec": 7}"#).unwrap();
        assert_eq!(partial.peer_messages_per_sec, 7);
        assert_eq!(partial.peer_burst_messages, c.peer_burst_messages);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_json::from_str::<GuardConfig>(r#"{"peer_mesages_per_sec": 7}"#).unwrap_err();
        assert!(err.to_string().contains("peer_mesages_per_sec"), "{err}");
    }

    #[test]
    fn every_field_name_carries_a_unit() {
        let units = [
            "_per_sec",
            "_burst",
            "_bytes",
            "_secs",
            "_millis",
            "_points",
            "_entries",
            "_units",
            "_messages",
            "_records",
            "_peers",
            "_authors",
            "_ips",
            "_bans",
            "_per_peer",
            "_per_ip",
            "_per_subnet",
            "_total",
            "_incoming",
            "_outgoing",
            "_connection",
        ];
        for (k, _) in GuardConfig::default().entries() {
            let f = k.strip_prefix(KEY_PREFIX).unwrap();
            if f.starts_with("allowlist_") {
                continue;
            }
            assert!(units.iter().any(|u| f.ends_with(u) || f.contains(&format!("{u}_"))), "{f} has no unit");
        }
    }

    #[test]
    fn relations_are_checked_with_key_names() {
        let c = GuardConfig { peer_burst_messages: 0, ..GuardConfig::default() };
        assert_eq!(c.validate().unwrap_err().key, "limits.peer_burst_messages");
        let c = GuardConfig { peer_burst_bytes: 1000, ..GuardConfig::default() };
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "limits.peer_burst_bytes");
        assert!(e.allowed.contains("limits.max_message_bytes"), "{e}");
        let c = GuardConfig { ban_score_points: -10, ..GuardConfig::default() };
        assert_eq!(c.validate().unwrap_err().key, "limits.ban_score_points");
        let c = GuardConfig { max_connections_per_subnet: 2, ..GuardConfig::default() };
        assert_eq!(c.validate().unwrap_err().key, "limits.max_connections_per_subnet");
        let c = GuardConfig { max_message_bytes: 100, ..GuardConfig::default() };
        assert_eq!(c.validate().unwrap_err().key, "limits.max_message_bytes");
        let c = GuardConfig { allowlist_ips: vec!["10.0.0.0/99".into()], ..GuardConfig::default() };
        assert_eq!(c.validate().unwrap_err().key, "limits.allowlist_ips");
        let c = GuardConfig { allowlist_peers: vec!["nope".into()], ..GuardConfig::default() };
        assert_eq!(c.validate().unwrap_err().key, "limits.allowlist_peers");
        let c = GuardConfig { max_established_incoming: 1000, ..GuardConfig::default() };
        assert_eq!(c.validate().unwrap_err().key, "limits.max_established_incoming");
    }
}
