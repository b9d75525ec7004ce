//! The vocabulary of the guard: why something was dropped, why a peer was penalised, and the
//! outcomes callers act on.
//!
//! Every reason has a fixed snake_case name ([`DropReason::as_str`], [`PenaltyReason::as_str`])
//! that is used verbatim as a Prometheus label value and as the ledger reason, so metrics,
//! ledger and docs agree. The sets are closed (enums, not strings) so metric label cardinality
//! is bounded no matter what peers send.

use std::fmt;

/// Why a message, record or connection was refused. Used as the `reason` label of
/// `palisade_guard_drops_total` and as the ledger reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DropReason {
    /// A message was larger than `limits.max_message_bytes`.
    Oversized,
    /// A peer sent more than `limits.peer_messages_per_sec` (after its burst).
    PeerRateExceeded,
    /// A peer sent more than `limits.peer_bytes_per_sec` of message bytes (after its burst).
    PeerByteRateExceeded,
    /// A peer used up its cost budget (`limits.peer_cost_units_per_sec`): too much signature
    /// work requested.
    PeerCostExceeded,
    /// A peer relayed more new records than `limits.peer_records_per_sec`, whatever their
    /// authors.
    PeerRecordRateExceeded,
    /// A peer relayed more equivocation proofs than `limits.peer_proofs_per_sec`.
    PeerProofRateExceeded,
    /// An author exceeded `limits.author_records_per_sec`.
    AuthorQuotaExceeded,
    /// A gossiped record came from an author this node has never seen, and the node-wide
    /// budget for new authors (`network.new_authors_per_sec`) was used up (reported by
    /// palisade-net). Sybil floods need fresh authors; known authors are never affected.
    NewAuthorBudget,
    /// The signature-verification queue was full (reported by palisade-net).
    VerifyQueueFull,
    /// Another bounded queue was full (reported by palisade-net).
    QueueFull,
    /// The record could not be decoded (reported by palisade-net).
    Malformed,
    /// The record's signature did not verify (reported by palisade-net).
    InvalidSignature,
    /// The record failed static validation (reported by palisade-net).
    InvalidRecord,
    /// The record is outside the accepted time window (reported by palisade-net).
    Stale,
    /// The sync protocol was misused (reported by palisade-net).
    SyncAbuse,
    /// The sender (peer) is banned.
    BannedPeer,
    /// The sender's IP address is banned.
    BannedIp,
    /// The remote IP already holds `limits.max_connections_per_ip` connections.
    IpCapExceeded,
    /// The remote subnet (/24 IPv4, /64 IPv6) holds `limits.max_connections_per_subnet`.
    SubnetCapExceeded,
    /// The remote IP opened connections faster than `limits.ip_new_connections_per_sec`.
    ConnectionRateExceeded,
    /// The remote subnet opened connections faster than `limits.subnet_new_connections_per_sec`.
    SubnetConnectionRateExceeded,
    /// A bounded key map (peers, authors, IPs) was full of active keys; new keys are refused
    /// until some go idle.
    TrackerFull,
    /// A connection did not finish its handshake within `limits.handshake_timeout_secs`.
    HandshakeTimeout,
    /// A peer opened more concurrent streams than `limits.max_streams_per_connection`; the
    /// extra stream was reset.
    StreamLimitExceeded,
    /// libp2p's connection limits refused a connection (`limits.max_established_*`,
    /// `limits.max_pending_*`); the ledger detail says which.
    ConnectionLimitExceeded,
    /// libp2p's memory limit refused a connection (`limits.max_process_memory_bytes`).
    MemoryLimitExceeded,
}

impl DropReason {
    /// Every reason, in declaration order (for metrics pre-registration and docs).
    pub const ALL: [DropReason; 26] = [
        DropReason::Oversized,
        DropReason::PeerRateExceeded,
        DropReason::PeerByteRateExceeded,
        DropReason::PeerCostExceeded,
        DropReason::PeerRecordRateExceeded,
        DropReason::PeerProofRateExceeded,
        DropReason::AuthorQuotaExceeded,
        DropReason::NewAuthorBudget,
        DropReason::VerifyQueueFull,
        DropReason::QueueFull,
        DropReason::Malformed,
        DropReason::InvalidSignature,
        DropReason::InvalidRecord,
        DropReason::Stale,
        DropReason::SyncAbuse,
        DropReason::BannedPeer,
        DropReason::BannedIp,
        DropReason::IpCapExceeded,
        DropReason::SubnetCapExceeded,
        DropReason::ConnectionRateExceeded,
        DropReason::SubnetConnectionRateExceeded,
        DropReason::TrackerFull,
        DropReason::HandshakeTimeout,
        DropReason::StreamLimitExceeded,
        DropReason::ConnectionLimitExceeded,
        DropReason::MemoryLimitExceeded,
    ];

    /// The snake_case name used as metric label and ledger reason.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Oversized => "oversized",
            DropReason::PeerRateExceeded => "peer_rate_exceeded",
            DropReason::PeerByteRateExceeded => "peer_byte_rate_exceeded",
            DropReason::PeerCostExceeded => "peer_cost_exceeded",
            DropReason::PeerRecordRateExceeded => "peer_record_rate_exceeded",
            DropReason::PeerProofRateExceeded => "peer_proof_rate_exceeded",
            DropReason::AuthorQuotaExceeded => "author_quota_exceeded",
            DropReason::NewAuthorBudget => "new_author_budget",
            DropReason::VerifyQueueFull => "verify_queue_full",
            DropReason::QueueFull => "queue_full",
            DropReason::Malformed => "malformed",
            DropReason::InvalidSignature => "invalid_signature",
            DropReason::InvalidRecord => "invalid_record",
            DropReason::Stale => "stale",
            DropReason::SyncAbuse => "sync_abuse",
            DropReason::BannedPeer => "banned_peer",
            DropReason::BannedIp => "banned_ip",
            DropReason::IpCapExceeded => "ip_cap_exceeded",
            DropReason::SubnetCapExceeded => "subnet_cap_exceeded",
            DropReason::ConnectionRateExceeded => "connection_rate_exceeded",
            DropReason::SubnetConnectionRateExceeded => "subnet_connection_rate_exceeded",
            DropReason::TrackerFull => "tracker_full",
            DropReason::HandshakeTimeout => "handshake_timeout",
            DropReason::StreamLimitExceeded => "stream_limit_exceeded",
            DropReason::ConnectionLimitExceeded => "connection_limit_exceeded",
            DropReason::MemoryLimitExceeded => "memory_limit_exceeded",
        }
    }

    /// Dense index into per-reason counter arrays.
    pub(crate) const fn index(self) -> usize {
        // Fieldless enum declared in the same order as ALL (a unit test checks it).
        self as usize
    }

    /// The penalty a caller should apply for this drop, if the drop proves misbehaviour.
    ///
    /// Quota and queue drops carry no penalty: an honest relay can forward a prolific author's
    /// records, and a full queue is our own overload, not the peer's fault. Rate drops do,
    /// because an honest peer stays under its per-peer limits.
    pub const fn penalty(self) -> Option<PenaltyReason> {
        match self {
            DropReason::Oversized => Some(PenaltyReason::Oversized),
            DropReason::PeerRateExceeded
            | DropReason::PeerByteRateExceeded
            | DropReason::PeerCostExceeded
            | DropReason::PeerRecordRateExceeded
            | DropReason::PeerProofRateExceeded => Some(PenaltyReason::RateExceeded),
            DropReason::Malformed => Some(PenaltyReason::Malformed),
            DropReason::InvalidSignature => Some(PenaltyReason::InvalidSignature),
            DropReason::InvalidRecord => Some(PenaltyReason::Malformed),
            DropReason::SyncAbuse => Some(PenaltyReason::SyncAbuse),
            _ => None,
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a message (or record) may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a denied message must be dropped"]
pub enum Admission {
    /// Go on with the next pipeline stage.
    Allow,
    /// Drop it; the drop is already counted and in the ledger.
    Deny(DropReason),
}

impl Admission {
    /// Whether this is [`Admission::Allow`].
    pub const fn is_allowed(self) -> bool {
        matches!(self, Admission::Allow)
    }
}

/// Why a peer is penalised. Each reason has a fixed weight in score points
/// ([`PenaltyReason::weight_points`]); a peer's score starts at 0, penalties subtract the
/// weight, and the score decays back toward 0 with `limits.score_half_life_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PenaltyReason {
    /// Relayed a record whose signature does not verify. Honest peers verify before relaying,
    /// so this proves misbehaviour: weight 25 (four in quick succession reach the ban line).
    InvalidSignature,
    /// Sent bytes that do not decode or fail static validation: weight 10.
    Malformed,
    /// Sent a message above the size cap: weight 10.
    Oversized,
    /// Exceeded a per-peer rate limit: weight 2, charged by
    /// [`Guard::strike_over_rate`](crate::Guard::strike_over_rate) at most once per second
    /// ([`RATE_STRIKE_INTERVAL`](crate::RATE_STRIKE_INTERVAL)) however many messages were
    /// refused. palisade-net does not apply it (honest relays burst over their budgets).
    RateExceeded,
    /// Misused the sync protocol (oversized ranges, repeated requests, bogus heads): weight 10.
    SyncAbuse,
    /// Relayed records of an author already proven to equivocate, after the proof was
    /// gossiped: weight 5 (honest peers may relay the first copy before they learn of it).
    /// Reserved: palisade-net does not apply it yet (equivocators are flagged and their
    /// proofs gossiped; relays are not penalised).
    EquivocationRelay,
    /// Violated a wire protocol in another way: weight 10.
    ProtocolViolation,
    /// Kept sending over a per-peer rate limit for longer than `limits.over_rate_grace_secs`
    /// (charged by [`Guard::over_rate`](crate::Guard::over_rate), once per grace period):
    /// weight 60, past the disconnect line (−50) at once, and past the ban line (−100) if the
    /// peer comes back and does it again before half of it has decayed. An honest relay's
    /// burst after a pause or a partition lasts seconds, not the grace.
    PersistentOverRate,
}

impl PenaltyReason {
    /// Every reason, in declaration order.
    pub const ALL: [PenaltyReason; 8] = [
        PenaltyReason::InvalidSignature,
        PenaltyReason::Malformed,
        PenaltyReason::Oversized,
        PenaltyReason::RateExceeded,
        PenaltyReason::SyncAbuse,
        PenaltyReason::EquivocationRelay,
        PenaltyReason::ProtocolViolation,
        PenaltyReason::PersistentOverRate,
    ];

    /// The snake_case name used as metric label and ledger reason.
    pub const fn as_str(self) -> &'static str {
        match self {
            PenaltyReason::InvalidSignature => "invalid_signature",
            PenaltyReason::Malformed => "malformed",
            PenaltyReason::Oversized => "oversized",
            PenaltyReason::RateExceeded => "rate_exceeded",
            PenaltyReason::SyncAbuse => "sync_abuse",
            PenaltyReason::EquivocationRelay => "equivocation_relay",
            PenaltyReason::ProtocolViolation => "protocol_violation",
            PenaltyReason::PersistentOverRate => "persistent_over_rate",
        }
    }

    /// Points subtracted from the peer's score (see each variant for the rationale).
    pub const fn weight_points(self) -> f64 {
        match self {
            PenaltyReason::InvalidSignature => 25.0,
            PenaltyReason::Malformed => 10.0,
            PenaltyReason::Oversized => 10.0,
            PenaltyReason::RateExceeded => 2.0,
            PenaltyReason::SyncAbuse => 10.0,
            PenaltyReason::EquivocationRelay => 5.0,
            PenaltyReason::ProtocolViolation => 10.0,
            PenaltyReason::PersistentOverRate => 60.0,
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for PenaltyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a penalty led to. The guard has already acted (events, bans); the caller may use this
/// to stop processing the peer's current message batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PenaltyOutcome {
    /// Score lowered (or the peer is allowlisted); nothing else.
    None,
    /// Score is below `limits.disconnect_score_points`: the peer's connections are being
    /// closed. It may reconnect, with its low score remembered.
    Disconnect,
    /// Score is below `limits.ban_score_points`: the peer is banned until `until_ms`.
    Ban {
        /// Ban end, ms since the Unix epoch.
        until_ms: u64,
    },
}

/// Byte direction seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Bytes received.
    Inbound,
    /// Bytes sent.
    Outbound,
}

impl Direction {
    /// `inbound` / `outbound`, the metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
        for n in names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{n}");
        }
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            // serde name == as_str
            assert_eq!(serde_json::to_string(r).unwrap(), format!("\"{}\"", r.as_str()));
        }
        for (i, r) in PenaltyReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(r.weight_points() > 0.0);
            assert_eq!(serde_json::to_string(r).unwrap(), format!("\"{}\"", r.as_str()));
        }
    }
}
