//! Why a record (or a proof) was accepted, rejected or ignored: one enum, one table.
//!
//! Every ingest decision, whatever the record's origin, is a [`Reason`]. Its row in
//! [`Reason::info`] fixes everything else: the metric label (`palisade_ingest_total{reason}`),
//! the gossipsub acceptance (Accept forwards, Reject penalises in gossipsub's score, Ignore
//! drops quietly), the guard penalty the sender earns, and the line in the protocol
//! document's table (`docs/protocol.md`, kept equal to [`Reason::ALL`] by a test).

use palisade_guard::PenaltyReason;

/// What gossipsub (and the sender's reputation) makes of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Acceptance {
    /// Valid and stored: forward it.
    Accept,
    /// Invalid: drop it and penalise the sender.
    Reject,
    /// Valid but unwanted (duplicate, too old, over a budget, load shed): drop it, no penalty.
    Ignore,
}

impl Acceptance {
    /// `accept`, `reject` or `ignore` (the metric's `outcome` label).
    pub const fn as_str(self) -> &'static str {
        match self {
            Acceptance::Accept => "accept",
            Acceptance::Reject => "reject",
            Acceptance::Ignore => "ignore",
        }
    }
}

/// One row of the reason table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasonInfo {
    /// The snake_case name: metric label, ledger reason, import report reason.
    pub label: &'static str,
    /// Accept, Reject or Ignore.
    pub acceptance: Acceptance,
    /// The guard penalty the sending peer earns (before the origin's adjustment: malformed
    /// data in a sync response counts as sync abuse).
    pub penalty: Option<PenaltyReason>,
    /// One line for the protocol document.
    pub doc: &'static str,
}

/// The named outcome of ingesting one record or proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Valid, verified and stored (flushed by group commit).
    Stored,
    /// Larger than the envelope cap.
    Oversized,
    /// Not a canonical envelope (or not a proof message).
    MalformedEnvelope,
    /// An envelope whose payload type is unknown.
    UnknownPayloadType,
    /// A payload that does not decode canonically.
    MalformedPayload,
    /// Breaks a static rule (field sizes, seq/prev, scores).
    Invalid,
    /// Issued further in the future than the clock-skew allowance.
    FutureTimestamp,
    /// Gossiped on a topic that is not its kind's.
    WrongTopic,
    /// The signature does not verify.
    BadSignature,
    /// The author key is not a valid ed25519 point.
    BadAuthorKey,
    /// Already stored or in the pipeline.
    Duplicate,
    /// Too many copies of this id (with other signatures) in the pipeline at once.
    CopiesInFlight,
    /// The sending peer is over its message, byte, record or verification budget.
    RateLimited,
    /// The sending peer is over its equivocation-proof budget (`limits.peer_proofs_per_sec`).
    ProofRateLimited,
    /// The author is over its quota.
    AuthorQuota,
    /// The node-wide budget for authors with no stored records is spent.
    NewAuthorBudget,
    /// Gossiped more than `network.gossip_max_record_age_secs` after it was issued.
    TooOld,
    /// The verify queue (or the proofs in flight) is full: load shed.
    VerifyQueueFull,
    /// The store's disk is below its flood stage (`store.min_free_disk_bytes`): no new records
    /// until space is back; the record may come again (by sync).
    DiskLow,
    /// The store is over its quota (`store.max_bytes`) with nothing left to evict, and the
    /// author is not protected: records of unprotected authors wait until there is room.
    StoreQuotaFull,
    /// The quota evicted this author's feed at this seq; it is not stored again.
    Evicted,
    /// The store failed; the record may come again.
    StoreError,
}

impl Reason {
    /// Every reason, in table order.
    pub const ALL: [Reason; 22] = [
        Reason::Stored,
        Reason::Oversized,
        Reason::MalformedEnvelope,
        Reason::UnknownPayloadType,
        Reason::MalformedPayload,
        Reason::Invalid,
        Reason::FutureTimestamp,
        Reason::WrongTopic,
        Reason::BadSignature,
        Reason::BadAuthorKey,
        Reason::Duplicate,
        Reason::CopiesInFlight,
        Reason::RateLimited,
        Reason::ProofRateLimited,
        Reason::AuthorQuota,
        Reason::NewAuthorBudget,
        Reason::TooOld,
        Reason::VerifyQueueFull,
        Reason::DiskLow,
        Reason::StoreQuotaFull,
        Reason::Evicted,
        Reason::StoreError,
    ];

    /// The reason's row of the table.
    pub const fn info(self) -> ReasonInfo {
        use Acceptance::{Accept, Ignore, Reject};
        const fn row(
            label: &'static str,
            acceptance: Acceptance,
            penalty: Option<PenaltyReason>,
            doc: &'static str,
        ) -> ReasonInfo {
            ReasonInfo { label, acceptance, penalty, doc }
        }
        const MALFORMED: Option<PenaltyReason> = Some(PenaltyReason::Malformed);
        match self {
            Reason::Stored => row("stored", Accept, None, "valid, verified and stored"),
            Reason::Oversized => {
                row("oversized", Reject, Some(PenaltyReason::Oversized), "larger than the envelope cap")
            }
            Reason::MalformedEnvelope => {
                row("malformed_envelope", Reject, MALFORMED, "not a canonical envelope (or proof message)")
            }
            Reason::UnknownPayloadType => {
                row("unknown_payload_type", Reject, MALFORMED, "payload type is not one of the four kinds")
            }
            Reason::MalformedPayload => {
                row("malformed_payload", Reject, MALFORMED, "payload does not decode canonically")
            }
            Reason::Invalid => row("invalid", Reject, MALFORMED, "breaks a static rule (sizes, seq/prev, ranges)"),
            Reason::FutureTimestamp => {
                row("future_timestamp", Reject, MALFORMED, "issued beyond the clock-skew allowance")
            }
            Reason::WrongTopic => row("wrong_topic", Reject, MALFORMED, "gossiped on another kind's topic"),
            Reason::BadSignature => {
                row("bad_signature", Reject, Some(PenaltyReason::InvalidSignature), "signature does not verify")
            }
            Reason::BadAuthorKey => row(
                "bad_author_key",
                Reject,
                Some(PenaltyReason::InvalidSignature),
                "author key is not an ed25519 point",
            ),
            Reason::Duplicate => row("duplicate", Ignore, None, "already stored or in the pipeline"),
            Reason::CopiesInFlight => {
                row("copies_in_flight", Ignore, None, "too many differently signed copies in flight")
            }
            Reason::RateLimited => row(
                "rate_limited",
                Ignore,
                None,
                "peer over its message/byte/record/verification budget (persistent_over_rate after the grace)",
            ),
            Reason::ProofRateLimited => row(
                "proof_rate_limited",
                Ignore,
                None,
                "peer over limits.peer_proofs_per_sec (persistent_over_rate after the grace)",
            ),
            Reason::AuthorQuota => row("author_quota", Ignore, None, "author over its quota"),
            Reason::NewAuthorBudget => {
                row("new_author_budget", Ignore, None, "node-wide budget for unknown authors spent")
            }
            Reason::TooOld => row("too_old", Ignore, None, "gossiped too long after it was issued"),
            Reason::VerifyQueueFull => row("verify_queue_full", Ignore, None, "verify queue full: load shed"),
            Reason::DiskLow => {
                row("disk_low", Ignore, None, "disk below store.min_free_disk_bytes: no new records")
            }
            Reason::StoreQuotaFull => row(
                "store_quota_full",
                Ignore,
                None,
                "store over store.max_bytes, nothing evictable: unprotected authors wait",
            ),
            Reason::Evicted => row("evicted", Ignore, None, "a seq the store quota evicted: not stored again"),
            Reason::StoreError => row("store_error", Ignore, None, "the store failed; may come again"),
        }
    }

    /// The reason for a record the store quota kept out.
    pub const fn refused(why: palisade_store::Refusal) -> Reason {
        match why {
            palisade_store::Refusal::QuotaFull => Reason::StoreQuotaFull,
            palisade_store::Refusal::Evicted => Reason::Evicted,
        }
    }

    /// The snake_case label.
    pub const fn label(self) -> &'static str {
        self.info().label
    }

    /// Accept, Reject or Ignore.
    pub const fn acceptance(self) -> Acceptance {
        self.info().acceptance
    }

    /// The label of the acceptance (`accept`, `reject`, `ignore`).
    pub const fn acceptance_str(self) -> &'static str {
        self.info().acceptance.as_str()
    }

    /// Whether the record is stored.
    pub const fn is_accept(self) -> bool {
        matches!(self, Reason::Stored)
    }

    /// The guard penalty for a record received by gossip (or in a proof).
    pub const fn penalty(self) -> Option<PenaltyReason> {
        self.info().penalty
    }

    /// The reason with this label.
    pub fn from_label(label: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.label() == label)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let l = r.label();
            assert!(seen.insert(l), "duplicate label {l}");
            assert!(l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{l}");
            assert_eq!(Reason::from_label(l), Some(r));
        }
    }

    #[test]
    fn only_rejections_carry_a_penalty() {
        for r in Reason::ALL {
            assert_eq!(r.penalty().is_some(), r.acceptance() == Acceptance::Reject, "{r}");
        }
        assert!(Reason::Stored.is_accept());
        assert_eq!(Reason::ALL.iter().filter(|r| r.acceptance() == Acceptance::Accept).count(), 1);
    }

    /// docs/protocol.md has a table of every reason with its acceptance and penalty; it must
    /// say what the code does.
    #[test]
    fn protocol_doc_table_matches_the_enum() {
        let doc = include_str!("../../../docs/protocol.md");
        for r in Reason::ALL {
            let penalty = r.penalty().map(|p| p.as_str()).unwrap_or("—");
            let row = format!("| `{}` | {} | {} |", r.label(), r.acceptance().as_str(), penalty);
            assert!(doc.contains(&row), "docs/protocol.md lacks the row `{row}`");
        }
        let is_row = |l: &&str| {
            l.starts_with("| `")
                && [" | accept | ", " | reject | ", " | ignore | "].iter().any(|a| l.contains(a))
        };
        let rows = doc.lines().filter(is_row).count();
        assert_eq!(rows, Reason::ALL.len(), "docs/protocol.md's reason table has rows the enum does not");
    }
}
