//! [`Origin`]: where a record came from, and everything that follows from it (which budgets
//! apply, which share of the verify queue it may take, how its outcome is reported).

use libp2p::gossipsub::MessageId;
use libp2p::PeerId;
use palisade_guard::PenaltyReason;
use palisade_store::Source;
use palisade_types::RecordId;

use crate::reason::Reason;

/// Where a record came from. Every origin enters the same [`Pipeline`](super::Pipeline)
/// checks, verify workers and store thread; the origin only selects the budgets and the way
/// the decision travels back.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// A gossipsub message awaiting our validation result.
    Gossip { message_id: MessageId, source: PeerId },
    /// A record in a sync response.
    Sync { peer: PeerId },
    /// One half of the equivocation proof gossiped as `message_id` (the proof's validation
    /// result is reported once both halves are decided).
    Proof { message_id: MessageId, source: PeerId },
    /// Line `index` of import batch `batch` (admin API, `POST /v1/import`). `expected_id` is
    /// the id the line claims, if it names one.
    Import { batch: u64, index: usize, expected_id: Option<RecordId> },
    /// Record `index` of batch `batch` of records this node signed (admin API submit).
    Local { batch: u64, index: usize },
}

impl Origin {
    /// The peer that sent the record; `None` for records handed in through the admin API.
    pub(crate) fn peer(&self) -> Option<PeerId> {
        match self {
            Origin::Gossip { source, .. } | Origin::Proof { source, .. } => Some(*source),
            Origin::Sync { peer } => Some(*peer),
            Origin::Import { .. } | Origin::Local { .. } => None,
        }
    }

    /// The `source` label of `palisade_ingest_total`.
    pub(crate) fn source_label(&self) -> &'static str {
        match self {
            Origin::Gossip { .. } => "gossip",
            Origin::Sync { .. } => "sync",
            Origin::Proof { .. } => "proof",
            Origin::Import { .. } => "import",
            Origin::Local { .. } => "local",
        }
    }

    /// The guard penalty `reason` earns the sender (malformed sync data counts as sync abuse).
    /// None for a proof's half: the proof's sender is penalised once, when the whole proof is
    /// decided ([`Reason::penalty`] of the proof's reason). None without a peer.
    pub(crate) fn penalty(&self, reason: Reason) -> Option<PenaltyReason> {
        let penalty = reason.penalty()?;
        match self {
            Origin::Proof { .. } | Origin::Import { .. } | Origin::Local { .. } => None,
            Origin::Sync { .. } if penalty == PenaltyReason::Malformed => Some(PenaltyReason::SyncAbuse),
            Origin::Gossip { .. } | Origin::Sync { .. } => Some(penalty),
        }
    }

    /// The peer that pushed the record unasked (gossip, proofs): the gossip budgets (peer
    /// record rate, verification cost, new authors) and the over-rate strike apply to it.
    pub(crate) fn pushed_by(&self) -> Option<PeerId> {
        match self {
            Origin::Gossip { source, .. } | Origin::Proof { source, .. } => Some(*source),
            Origin::Sync { .. } | Origin::Import { .. } | Origin::Local { .. } => None,
        }
    }

    /// Whether the record may take the share of the verify queue kept for sync. Sync pages are
    /// what catching up needs; a record this node signed must never be shed by a flood (the
    /// admin API paces those). Gossip, proofs and imports share the rest.
    pub(crate) fn may_use_reserved_share(&self) -> bool {
        matches!(self, Origin::Sync { .. } | Origin::Local { .. })
    }

    /// Whether the record is counted against the sync client's page budget.
    pub(crate) fn is_sync(&self) -> bool {
        matches!(self, Origin::Sync { .. })
    }

    /// The admin API batch and position this decision goes back to.
    pub(crate) fn api_ticket(&self) -> Option<(u64, usize)> {
        match self {
            Origin::Import { batch, index, .. } | Origin::Local { batch, index } => Some((*batch, *index)),
            _ => None,
        }
    }

    pub(crate) fn store_source(&self) -> Source {
        match self {
            Origin::Gossip { .. } | Origin::Proof { .. } => Source::Gossip,
            Origin::Sync { .. } => Source::Sync,
            Origin::Import { .. } => Source::Import,
            Origin::Local { .. } => Source::Local,
        }
    }
}
