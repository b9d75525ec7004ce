//! Equivocation proofs on `/palisade/proofs/1`: two envelopes by one author at one seq.
//!
//! Message layout (bincode, as sync): `bytes<16384> first ++ bytes<16384> second`. A receiver
//! charges the sender's proof budget (`limits.peer_proofs_per_sec`), checks cheaply that both
//! halves parse, name the same author and seq and differ, then admits each half through the
//! ingest pipeline like a gossiped record (dedup, static validation, new-author budget,
//! per-peer and per-author quotas, verification cost, the verify queue). Storing the second
//! half flags the author. The proof is self-verifying: no trust in the relaying peer is
//! needed, and it is forwarded only when both halves are stored.

use std::collections::HashMap;

use libp2p::gossipsub::MessageId;
use palisade_types::limits::MAX_ENVELOPE_BYTES;
use palisade_types::{BoundedBytes, ParsedEnvelope, UnverifiedRecord};

use crate::reason::{Acceptance, Reason};

type Half = BoundedBytes<MAX_ENVELOPE_BYTES>;

/// The largest proof message: two length-prefixed envelopes.
pub(crate) const MAX_PROOF_BYTES: usize = 2 * (8 + MAX_ENVELOPE_BYTES);

/// Proofs whose halves are in the pipeline at once; more are shed (`verify_queue_full`).
pub(crate) const MAX_PROOFS_IN_FLIGHT: usize = 64;

/// Encodes a proof message from two envelopes' wire bytes (each at most
/// `MAX_ENVELOPE_BYTES`; a longer one is sent empty, which receivers reject).
pub fn encode(first: &[u8], second: &[u8]) -> Vec<u8> {
    let first = Half::new(first.to_vec()).unwrap_or_default();
    let second = Half::new(second.to_vec()).unwrap_or_default();
    crate::sync::encode_body(&(first, second))
}

/// Parses a proof message and checks it is one: both halves are canonical envelopes with
/// canonical payloads, by the same author at the same seq, with different ids. Signatures
/// and static rules are checked later, per half, by the ingest pipeline.
pub fn decode_and_check(data: &[u8]) -> Result<[UnverifiedRecord; 2], Reason> {
    let (first, second): (Half, Half) =
        crate::sync::decode_body(data).map_err(|_| Reason::MalformedEnvelope)?;
    let parse = |b: Half| {
        ParsedEnvelope::parse(b.into_inner())
            .map_err(|e| crate::pipeline::decode_reason(&e))?
            .decode()
            .map_err(|_| Reason::MalformedPayload)
    };
    let a = parse(first)?;
    let b = parse(second)?;
    let (pa, pb) = (&a.record().position, &b.record().position);
    if pa.author != pb.author || pa.seq != pb.seq || a.id() == b.id() {
        return Err(Reason::Invalid);
    }
    Ok([a, b])
}

/// A proof whose halves are in the pipeline.
#[derive(Debug)]
struct PendingProof {
    halves_left: usize,
    /// Whether a half was stored now (a proof whose halves were all stored already is a
    /// duplicate: not forwarded again).
    stored_any: bool,
    /// The worst decision about a half so far (a rejection beats an ignore).
    failure: Option<Reason>,
}

/// Proofs waiting for their halves' decisions, by gossip message id (bounded by
/// [`MAX_PROOFS_IN_FLIGHT`]).
#[derive(Debug, Default)]
pub(crate) struct PendingProofs {
    proofs: HashMap<MessageId, PendingProof>,
}

impl PendingProofs {
    pub(crate) fn is_full(&self) -> bool {
        self.proofs.len() >= MAX_PROOFS_IN_FLIGHT
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.proofs.len()
    }

    /// `halves` of the proof `message_id` were queued.
    pub(crate) fn queued(&mut self, message_id: MessageId, halves: usize) {
        self.proofs
            .insert(message_id, PendingProof { halves_left: halves, stored_any: false, failure: None });
    }

    /// One half was decided; returns the proof's decision once it is complete: `Stored` when
    /// every queued half is stored (or was a duplicate) and one was new, `Duplicate` when all
    /// were stored already, else the worst half's reason.
    pub(crate) fn half_decided(&mut self, message_id: &MessageId, reason: Reason) -> Option<Reason> {
        let proof = self.proofs.get_mut(message_id)?;
        proof.stored_any |= reason == Reason::Stored;
        if !matches!(reason, Reason::Stored | Reason::Duplicate) {
            let worse = match proof.failure {
                None => true,
                Some(f) => f.acceptance() != Acceptance::Reject && reason.acceptance() == Acceptance::Reject,
            };
            if worse {
                proof.failure = Some(reason);
            }
        }
        proof.halves_left = proof.halves_left.saturating_sub(1);
        if proof.halves_left > 0 {
            return None;
        }
        let done = self.proofs.remove(message_id)?;
        let complete = if done.stored_any { Reason::Stored } else { Reason::Duplicate };
        Some(done.failure.unwrap_or(complete))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_stored_only_when_every_half_is() {
        let mut p = PendingProofs::default();
        let id = MessageId::new(b"p");
        p.queued(id.clone(), 2);
        assert_eq!(p.half_decided(&id, Reason::Stored), None);
        assert_eq!(p.half_decided(&id, Reason::Duplicate), Some(Reason::Stored));
        assert_eq!(p.len(), 0);

        p.queued(id.clone(), 2);
        assert_eq!(p.half_decided(&id, Reason::StoreError), None);
        assert_eq!(p.half_decided(&id, Reason::BadSignature), Some(Reason::BadSignature), "a rejection wins");

        p.queued(id.clone(), 2);
        assert_eq!(p.half_decided(&id, Reason::Duplicate), None);
        assert_eq!(
            p.half_decided(&id, Reason::Duplicate),
            Some(Reason::Duplicate),
            "nothing new: not forwarded"
        );

        p.queued(id.clone(), 1);
        assert_eq!(p.half_decided(&id, Reason::VerifyQueueFull), Some(Reason::VerifyQueueFull));
        assert_eq!(p.half_decided(&id, Reason::Stored), None, "unknown proof");
    }
}
