//! Gossip topics and which record kinds each carries.

use libp2p::gossipsub::{IdentTopic, TopicHash};
use palisade_types::RecordKind;

/// Attestations and revocations.
pub const ATTESTATIONS: &str = "/palisade/attestations/1";
/// Anomaly reports and anomaly updates.
pub const ANOMALIES: &str = "/palisade/anomalies/1";
/// Equivocation proofs (two conflicting envelopes by one author at one seq).
pub const PROOFS: &str = "/palisade/proofs/1";

/// One of our topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// [`ATTESTATIONS`].
    Attestations,
    /// [`ANOMALIES`].
    Anomalies,
    /// [`PROOFS`].
    Proofs,
}

impl TopicKind {
    /// All topics, subscribed at start.
    pub const ALL: [TopicKind; 3] = [TopicKind::Attestations, TopicKind::Anomalies, TopicKind::Proofs];

    /// The topic string.
    pub fn name(self) -> &'static str {
        match self {
            TopicKind::Attestations => ATTESTATIONS,
            TopicKind::Anomalies => ANOMALIES,
            TopicKind::Proofs => PROOFS,
        }
    }

    /// The gossipsub topic.
    pub fn topic(self) -> IdentTopic {
        IdentTopic::new(self.name())
    }

    /// The topic for a hash, if it is one of ours.
    pub fn from_hash(hash: &TopicHash) -> Option<TopicKind> {
        Self::ALL.into_iter().find(|t| t.topic().hash() == *hash)
    }

    /// The topic a record kind is published on. Revocations travel with attestations: most
    /// revoke attestations, and their target's kind is not known without a lookup.
    pub fn for_record(kind: RecordKind) -> TopicKind {
        match kind {
            RecordKind::Attestation | RecordKind::Revocation => TopicKind::Attestations,
            RecordKind::Anomaly | RecordKind::AnomalyUpdate => TopicKind::Anomalies,
        }
    }
}
