//! Gossipsub configuration for self-signed records.
//!
//! Records carry their author's signature, so gossipsub's own per-message signatures would
//! be pure overhead (one more signature per copy) and would leak the relaying peer as the
//! "author". We therefore publish anonymously and validate ourselves:
//!
//! | parameter | value | why |
//! |-----------|-------|-----|
//! | `MessageAuthenticity` | `Anonymous` | no libp2p signature, no `from`/`seqno` on the wire |
//! | `validation_mode` | `Anonymous` | reject messages that *do* carry signature fields (non-canonical) |
//! | `validate_messages()` | on | nothing is forwarded until the pipeline reports Accept |
//! | `message_id_fn` | blake3 of the whole message, signature included | identical copies die in gossipsub's duplicate cache; a copy with a corrupted signature gets an id of its own, so it cannot shadow the valid copy (see [`message_id`]) |
//! | `max_transmit_size` | `network.gossip_max_transmit_bytes` (64 KiB) | bounds decode work per message |
//! | `duplicate_cache_time` | 120 s | a record seen in the last 2 minutes is not re-validated |
//! | `idontwant_message_size_threshold` | 256 B | send IDONTWANT for practically every record so mesh peers skip copies we already have |
//! | `heartbeat_interval` | 700 ms | a little faster than the 1 s default: quicker mesh repair after churn |
//! | `mesh_n`/`mesh_n_low`/`mesh_n_high` | 6 / 4 / 12 | the gossipsub v1.1 defaults; `mesh_n_low` 4 tolerates small clusters |
//! | `mesh_outbound_min` | 2 | at least two mesh links we dialled, so inbound Sybils cannot fill the mesh |
//! | `flood_publish` | on | our own records go to every peer above the publish threshold: lowest latency for the origin |
//! | `max_ihave_messages_heartbeat`, `max_ihave_length` | defaults (10, 5000) | caps on control traffic from one peer |
//! | `max_messages_per_rpc` / `max_publish_messages` | default | bounded by `max_transmit_size` anyway |
//!
//! Peer scoring (v1.1, P1–P7): see [`peer_score`]. The application-specific score (P5) is
//! the guard's reputation of the peer, pushed every heartbeat. The other way round, a graylisted
//! peer pays the guard a penalty per heartbeat only if the guard caught it misbehaving too
//! ([`graylist_penalty_due`]).

use std::collections::HashMap;
use std::time::Duration;

use libp2p::gossipsub::{
    self, ConfigBuilder, Message, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds,
    TopicScoreParams, ValidationMode,
};

use crate::topics::TopicKind;

/// Below this gossipsub score a peer's RPCs are ignored (and, if the guard caught it too, the
/// guard penalises it: [`graylist_penalty_due`]).
pub const GRAYLIST_THRESHOLD: f64 = -80.0;

/// Reputation at or below which a graylisted peer pays the heartbeat penalty: half of one
/// content penalty (malformed, weight 10), so only a peer the guard itself caught misbehaving
/// (invalid content, sync abuse) qualifies.
pub const GRAYLIST_PENALTY_MAX_REPUTATION_POINTS: f64 = -5.0;

/// Whether a peer below gossipsub's graylist threshold pays the guard's heartbeat penalty.
///
/// Only when the guard has misbehaviour on record too. Gossipsub also graylists honest peers
/// for reasons that are not misbehaviour: a node paused or overloaded for a few seconds
/// breaks IWANT promises (P7), and several nodes behind one address pay P6. Turning those
/// into reputation would feed back through P5, keep the peer graylisted, and ban an honest
/// node for being slow: under attack, exactly the nodes that are busiest. The chaos soak
/// (pauses, crashes, floods) found this loop.
pub fn graylist_penalty_due(gossip_score: f64, reputation: f64) -> bool {
    gossip_score < GRAYLIST_THRESHOLD && reputation <= GRAYLIST_PENALTY_MAX_REPUTATION_POINTS
}

/// How long a message id stays in the duplicate cache.
pub const DUPLICATE_CACHE_SECS: u64 = 120;

/// The message id of a gossip payload: `blake3::derive_key("palisade gossip-message-id v1",
/// data)` over all of it, signature included.
///
/// Not the record id, on purpose: the record id does not cover the signature, and gossipsub
/// keeps a rejected message's id in its duplicate cache (and sends IDONTWANT for it). With
/// record ids, a peer that relays a record with a flipped signature bit ahead of the honest
/// copies would make every node it reaches drop the valid copy for `DUPLICATE_CACHE_SECS`,
/// leaving only sync to repair it. Honest copies of a record are byte-identical (canonical
/// encoding, deterministic ed25519), so nothing is lost for them; the pipeline still dedups
/// by record id before any signature work.
pub fn message_id(data: &[u8]) -> MessageId {
    MessageId::new(blake3::derive_key("palisade gossip-message-id v1", data).as_slice())
}

/// Builds the gossipsub behaviour.
pub fn behaviour(max_transmit_bytes: usize) -> Result<gossipsub::Behaviour, String> {
    let config = ConfigBuilder::default()
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|m: &Message| message_id(&m.data))
        .max_transmit_size(max_transmit_bytes)
        .duplicate_cache_time(Duration::from_secs(DUPLICATE_CACHE_SECS))
        .idontwant_message_size_threshold(256)
        .heartbeat_interval(Duration::from_millis(700))
        .mesh_n(6)
        .mesh_n_low(4)
        .mesh_n_high(12)
        .mesh_outbound_min(2)
        .flood_publish(true)
        .build()
        .map_err(|e| format!("gossipsub config: {e}"))?;
    let mut behaviour = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config)
        .map_err(|e| format!("gossipsub: {e}"))?;
    let (params, thresholds) = peer_score();
    behaviour.with_peer_score(params, thresholds).map_err(|e| format!("gossipsub peer score: {e}"))?;
    Ok(behaviour)
}

/// Peer-score parameters and thresholds.
///
/// - **P1 time in mesh**: +0.01 per second, capped at 300 s (+3): mild preference for stable peers.
/// - **P2 first deliveries**: +1 per first delivery, decaying ×0.9/s, capped at 20: rewards peers
///   that bring us new records.
/// - **P3/P3b mesh delivery deficits**: off (weight 0). Record traffic is bursty and often
///   idle; a delivery-rate expectation would penalise honest peers on quiet topics.
/// - **P4 invalid messages**: −10 × count², decaying ×0.9/s: three invalid records put a peer
///   below the graylist threshold within seconds; honest relays never forward invalid
///   records (we validate before forwarding), so only originators are hit.
/// - **P5 application score**: weight 1, the guard's reputation (0 good, negative bad).
/// - **P6 IP colocation**: −5 per peer beyond 8 on one IP, squared: Sybil swarms from one host
///   lose mesh slots, while a handful of nodes behind one NAT are fine.
/// - **P7 behaviour penalty**: −10 × excess², threshold 6, decay ×0.9: GRAFT spam and broken
///   promises (IWANT not answered).
///
/// Thresholds: gossip −10 (no IHAVE/IWANT with the peer), publish −50 (we do not flood-publish
/// to it), graylist −80 (we ignore its RPCs entirely), accept PX 10, opportunistic graft 5.
pub fn peer_score() -> (PeerScoreParams, PeerScoreThresholds) {
    let mut topics = HashMap::new();
    for t in TopicKind::ALL {
        let topic_weight = if t == TopicKind::Proofs { 0.5 } else { 1.0 };
        topics.insert(
            t.topic().hash(),
            TopicScoreParams {
                topic_weight,
                time_in_mesh_weight: 0.01,
                time_in_mesh_quantum: Duration::from_secs(1),
                time_in_mesh_cap: 300.0,
                first_message_deliveries_weight: 1.0,
                first_message_deliveries_decay: 0.9,
                first_message_deliveries_cap: 20.0,
                mesh_message_deliveries_weight: 0.0,
                mesh_message_deliveries_decay: 0.9,
                mesh_message_deliveries_cap: 10.0,
                mesh_message_deliveries_threshold: 1.0,
                mesh_message_deliveries_window: Duration::from_millis(10),
                mesh_message_deliveries_activation: Duration::from_secs(60),
                mesh_failure_penalty_weight: 0.0,
                mesh_failure_penalty_decay: 0.9,
                invalid_message_deliveries_weight: -10.0,
                invalid_message_deliveries_decay: 0.9,
            },
        );
    }
    let params = PeerScoreParams {
        topics,
        topic_score_cap: 50.0,
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: -5.0,
        ip_colocation_factor_threshold: 8.0,
        behaviour_penalty_weight: -10.0,
        behaviour_penalty_threshold: 6.0,
        behaviour_penalty_decay: 0.9,
        decay_interval: Duration::from_secs(1),
        decay_to_zero: 0.01,
        retain_score: Duration::from_secs(3600),
        ..PeerScoreParams::default()
    };
    let thresholds = PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: GRAYLIST_THRESHOLD,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    };
    (params, thresholds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_peers_the_guard_caught_pay_for_being_graylisted() {
        // Graylisted for P4 (invalid messages) with the guard's content penalties on record.
        assert!(graylist_penalty_due(-300.0, -75.0));
        // Graylisted for P7 (broken promises while paused) or P6, clean with the guard.
        assert!(!graylist_penalty_due(-300.0, 0.0));
        assert!(!graylist_penalty_due(-300.0, GRAYLIST_PENALTY_MAX_REPUTATION_POINTS / 2.0));
        // Not graylisted: never, whatever the reputation.
        assert!(!graylist_penalty_due(GRAYLIST_THRESHOLD, -75.0));
        assert!(!graylist_penalty_due(0.0, -75.0));
    }

    #[test]
    fn score_parameters_are_valid_and_gossipsub_builds() {
        let (p, t) = peer_score();
        p.validate().unwrap();
        t.validate().unwrap();
        behaviour(64 * 1024).unwrap();
    }

    #[test]
    fn message_id_covers_the_signature() {
        let r = &palisade_types::fixtures::feed(1, 1)[0];
        let wire = r.wire_bytes().to_vec();
        assert_eq!(message_id(&wire), message_id(&wire.clone()), "identical copies share an id");
        let mut corrupted = wire.clone();
        let last = corrupted.len() - 1;
        corrupted[last] ^= 1;
        assert_ne!(message_id(&wire), message_id(&corrupted), "a corrupted copy has its own id");
        assert_ne!(message_id(b"junk").0, message_id(b"junk2").0);
        // Pinned: implementations in other languages must compute the same ids.
        assert_eq!(
            hex::encode(message_id(b"palisade").0),
            hex::encode(blake3::derive_key("palisade gossip-message-id v1", b"palisade"))
        );
    }
}
