//! Records and proofs from peers: what the loop does with gossip messages and with the
//! pipeline's decisions. Every decision is a [`Reason`]; [`EventLoop::report`] applies it the
//! same way for every origin (metric, gossipsub acceptance, guard penalty).

use libp2p::gossipsub::{self, MessageAcceptance, MessageId};
use libp2p::PeerId;
use tracing::debug;

use super::EventLoop;
use crate::handle::NetEvent;
use crate::metrics::KindLabels;
use crate::now_ms;
use crate::pipeline::{Finished, Origin, ProofAdmission, StoredInfo};
use crate::proof;
use crate::reason::{Acceptance, Reason};
use crate::topics::TopicKind;

impl EventLoop {
    /// Applies a decision: counts it, tells gossipsub (gossip and proofs) and penalises the
    /// sender as the reason table says.
    pub(super) fn report(&mut self, origin: &Origin, reason: Reason) {
        self.metrics.count(origin.source_label(), reason);
        if let Origin::Gossip { message_id, source } = origin {
            self.validate_gossip(message_id, source, reason);
        }
        if let (Some(penalty), Some(peer)) = (origin.penalty(reason), origin.peer()) {
            self.penalize(peer, penalty);
        }
    }

    fn validate_gossip(&mut self, message_id: &MessageId, source: &PeerId, reason: Reason) {
        let acceptance = match reason.acceptance() {
            Acceptance::Accept => MessageAcceptance::Accept,
            Acceptance::Reject => MessageAcceptance::Reject,
            Acceptance::Ignore => MessageAcceptance::Ignore,
        };
        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(message_id, source, acceptance);
    }

    pub(super) fn on_gossip_message(
        &mut self,
        source: PeerId,
        message_id: MessageId,
        message: gossipsub::Message,
    ) {
        let Some(topic) = TopicKind::from_hash(&message.topic) else {
            self.report(&Origin::Gossip { message_id, source }, Reason::WrongTopic);
            return;
        };
        if topic == TopicKind::Proofs {
            self.on_proof_message(source, message_id, message.data);
            return;
        }
        let origin = Origin::Gossip { message_id, source };
        if let Some(reason) = self.pipeline.admit(message.data, origin.clone(), Some(topic), now_ms()) {
            self.report(&origin, reason);
        }
    }

    pub(super) fn on_finished(&mut self, f: Finished) {
        self.pipeline.on_finished(&f);
        self.resume_sync();
        self.report(&f.origin, f.reason);
        // A proof is judged (and its sender penalised) once, when its last half is decided.
        if let Origin::Proof { message_id, source } = &f.origin {
            if let Some(reason) = self.proofs.half_decided(message_id, f.reason) {
                self.proof_decided(message_id, *source, reason);
            }
        }
        if let Some(stored) = f.stored {
            self.on_stored(&f.origin, stored);
        }
        if let Some((batch, index)) = f.origin.api_ticket() {
            self.api_record_decided(batch, index, f.reason);
        }
    }

    fn on_stored(&mut self, origin: &Origin, stored: StoredInfo) {
        let r = &stored.record;
        // An own record from elsewhere (the own-feed check's fetch, or another node signing
        // with this key): the writer must re-read its feed head before it signs again.
        if r.author() == self.own_check.own() && !matches!(origin, Origin::Local { .. }) {
            self.own_check.own_stored(r.record().position.seq);
        }
        self.metrics.stored.get_or_create(&KindLabels { kind: r.kind().as_str() }).inc();
        self.emit(NetEvent::RecordStored {
            id: r.id(),
            kind: r.kind(),
            author: r.author(),
            seq: r.record().position.seq,
            source: origin.store_source(),
        });
        let Some(equivocation) = stored.equivocation else { return };
        self.metrics.equivocations.inc();
        self.emit(NetEvent::Equivocation { author: equivocation.author, seq: equivocation.seq });
        // A proof we received is forwarded by gossipsub once both halves are stored; one we
        // found ourselves is published.
        if !matches!(origin, Origin::Proof { .. }) {
            if let Some(first) = stored.conflicting {
                self.publish_proof(&first, stored.record.wire_bytes());
            }
        }
    }

    // ---- equivocation proofs ----

    /// Gossips a proof made of two conflicting envelopes.
    pub(crate) fn publish_proof(&mut self, first: &[u8], second: &[u8]) {
        let message = proof::encode(first, second);
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(TopicKind::Proofs.topic(), message) {
            debug!(error = %e, "equivocation proof not gossiped (peers will get both records by sync)");
        }
    }

    /// A proof from a peer: its budget, the cheap pairing check, then both halves through the
    /// pipeline as records (see [`proof`]).
    fn on_proof_message(&mut self, source: PeerId, message_id: MessageId, data: Vec<u8>) {
        let origin = Origin::Proof { message_id: message_id.clone(), source };
        let admission = if self.proofs.is_full() {
            ProofAdmission::Decided(Reason::VerifyQueueFull)
        } else {
            self.pipeline.admit_proof(&data, &origin, now_ms())
        };
        let decided = match admission {
            ProofAdmission::Decided(reason) => reason,
            ProofAdmission::Queued(halves) => {
                self.proofs.queued(message_id, halves);
                return;
            }
        };
        self.report(&origin, decided);
        self.proof_decided(&message_id, source, decided);
    }

    /// The proof `message_id` is judged: gossipsub forwards it only if both halves are stored.
    fn proof_decided(&mut self, message_id: &MessageId, source: PeerId, reason: Reason) {
        self.validate_gossip(message_id, &source, reason);
        if let Some(penalty) = reason.penalty() {
            self.penalize(source, penalty);
        }
    }
}
