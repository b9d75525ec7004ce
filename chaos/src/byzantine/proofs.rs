//! Proof amplification (issue 14, item 6): equivocation proofs from Sybil authors.
//!
//! One attacker identity holds a gossipsub connection to every node, one swarm per node so
//! that a message can be aimed at one node. Every tick (at most `rate_per_sec`) it signs two
//! records at seq 1 with a fresh author key and sends them as one of, round robin:
//!
//! - (a) [`Variant::ValidProof`]: a proof on `/palisade/proofs/1` whose halves are both valid;
//! - (b) [`Variant::InvalidHalfProof`]: a proof one of whose halves is correctly signed but
//!   fails static validation (`issued_at_ms` two hours ahead, or a score above `MAX_SCORE`);
//!   its record id is reported so `no_invalid_proof_half` can look it up on every node;
//! - (c) [`Variant::SplitHalves`]: no proof; each half as a plain record on its record topic,
//!   to two different nodes, which then find the equivocation themselves and gossip the
//!   proof.
//!
//! Proofs go to the nodes round robin. A node's swarm that has not taken the last messages
//! (its queue is full) makes the tick a miss: the attacker sends as fast as the swarms accept,
//! capped at the rate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, Multiaddr, PeerId, Swarm};
use palisade_net::topics::TopicKind;
use palisade_types::ed25519_dalek::SigningKey;
use palisade_types::limits::{MAX_ENVELOPE_BYTES, MAX_SCORE};
use palisade_types::{
    fixtures, sign_envelope, AuthorKey, BoundedBytes, FeedPosition, Record, RecordId, RecordKind, Score,
    Statement,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use super::{keypair, period, swarm_config, AttackPlan, AttackReport};

/// How far ahead an invalid half's `issued_at_ms` is (static validation allows 5 minutes).
const FUTURE_MS: u64 = 2 * 60 * 60 * 1000;
/// Messages queued for one node's swarm before a tick counts as not accepted.
const LINK_QUEUE: usize = 64;

/// What one pair is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// (a) Both halves valid, one proof message.
    ValidProof,
    /// (b) One half fails static validation (correctly signed), one proof message.
    InvalidHalfProof,
    /// (c) Each half as a plain record, to two different nodes.
    SplitHalves,
}

/// The variants in the order the attacker cycles through them.
pub(crate) const VARIANTS: [Variant; 3] =
    [Variant::ValidProof, Variant::InvalidHalfProof, Variant::SplitHalves];

/// One signed half: valid or not, what any key holder can send.
pub(crate) struct Half {
    id: RecordId,
    record: Record,
    wire: Vec<u8>,
}

impl Half {
    pub(crate) fn id(&self) -> RecordId {
        self.id
    }

    #[cfg(test)]
    pub(crate) fn record(&self) -> &Record {
        &self.record
    }

    pub(crate) fn kind(&self) -> RecordKind {
        self.record.kind()
    }

    pub(crate) fn wire_bytes(&self) -> &[u8] {
        &self.wire
    }

    pub(crate) fn into_wire_bytes(self) -> Vec<u8> {
        self.wire
    }
}

/// Two records by one fresh author at seq 1, and which one (if any) fails static validation.
pub(crate) struct Pair {
    pub(crate) first: Half,
    pub(crate) second: Half,
    pub(crate) invalid: Option<RecordId>,
}

/// Signs pair number `n` as `variant` with a fresh key from `rng`. The halves differ in
/// content, so their ids differ. An invalid half (variant b) alternates between the first
/// and the second, and between a timestamp in the future and an out-of-range score.
pub(crate) fn sign_pair(rng: &mut StdRng, n: u64, variant: Variant, now_ms: u64) -> Option<Pair> {
    let key = SigningKey::from_bytes(&rng.gen::<[u8; 32]>());
    let author = AuthorKey(key.verifying_key().to_bytes());
    // Signed without the static rules (a node's own signer refuses invalid records).
    let sign = |statement: Statement, issued_at_ms: u64| {
        let position = FeedPosition { author, seq: 1, prev: None, issued_at_ms };
        let record = Record { position, statement };
        let (id, wire) = sign_envelope(&record, &key).ok()?;
        Some(Half { id, record, wire })
    };
    let a = fixtures::attestation(n.wrapping_mul(2));
    let b = fixtures::attestation(n.wrapping_mul(2).wrapping_add(1));
    if variant != Variant::InvalidHalfProof {
        return Some(Pair { first: sign(a, now_ms)?, second: sign(b, now_ms)?, invalid: None });
    }
    let bad_second = !(n / 3).is_multiple_of(2);
    let future = (n / 6).is_multiple_of(2);
    let (good, bad) = if bad_second { (a, b) } else { (b, a) };
    let good = sign(good, now_ms)?;
    let bad = if future {
        sign(bad, now_ms.saturating_add(FUTURE_MS))?
    } else {
        let Statement::Attestation(mut att) = bad else { return None };
        att.score = Score(MAX_SCORE + 1 + (n % 1000) as u16);
        sign(Statement::Attestation(att), now_ms)?
    };
    let invalid = Some(bad.id());
    Some(if bad_second {
        Pair { first: good, second: bad, invalid }
    } else {
        Pair { first: bad, second: good, invalid }
    })
}

/// The proof message for two envelopes: what `palisade_net`'s proof module sends (bincode,
/// as sync: `bytes<16384> first ++ bytes<16384> second`).
pub(crate) fn encode_proof(first: &[u8], second: &[u8]) -> Option<Vec<u8>> {
    let first = BoundedBytes::<MAX_ENVELOPE_BYTES>::new(first.to_vec()).ok()?;
    let second = BoundedBytes::<MAX_ENVELOPE_BYTES>::new(second.to_vec()).ok()?;
    Some(palisade_net::sync::encode_body(&(first, second)))
}

/// What one node's swarm did.
#[derive(Debug, Default)]
struct LinkStats {
    established: u64,
    refused: u64,
    first_refusal_secs: Option<f64>,
    published: u64,
    publish_errors: u64,
}

/// One node's swarm, driven by its own task.
struct Link {
    tx: mpsc::Sender<(TopicKind, Vec<u8>)>,
    /// Connected, and the node subscribed to the topics we publish on.
    ready: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<LinkStats>,
}

fn gossip_swarm(
    key: &libp2p::identity::Keypair,
    source: std::net::Ipv4Addr,
) -> Option<Swarm<gossipsub::Behaviour>> {
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(|m: &gossipsub::Message| palisade_net::gossip::message_id(&m.data))
        .max_transmit_size(1024 * 1024)
        .heartbeat_interval(Duration::from_millis(300))
        .build()
        .ok()?;
    let mut behaviour = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config).ok()?;
    for t in TopicKind::ALL {
        let _ = behaviour.subscribe(&t.topic());
    }
    let transport = crate::bench::baseline::transport(key, Some(source)).ok()?;
    Some(Swarm::new(transport, behaviour, key.public().to_peer_id(), swarm_config()))
}

/// Publishes what `rx` brings to `peer` until the sender is dropped; redials when the node
/// drops us (a banned peer is refused at once, which is what the report counts).
async fn drive_link(
    mut swarm: Swarm<gossipsub::Behaviour>,
    addr: Multiaddr,
    peer: PeerId,
    mut rx: mpsc::Receiver<(TopicKind, Vec<u8>)>,
    ready: Arc<AtomicBool>,
    started: Instant,
) -> LinkStats {
    let mut stats = LinkStats::default();
    let wanted = [TopicKind::Proofs.topic().hash(), TopicKind::Attestations.topic().hash()];
    let _ = swarm.dial(addr.clone());
    let mut connected = false;
    loop {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => {
                    connected = true;
                    stats.established += 1;
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } if peer_id == peer => {
                    connected = false;
                    ready.store(false, Ordering::Relaxed);
                    stats.refused += 1;
                    stats.first_refusal_secs.get_or_insert(started.elapsed().as_secs_f64());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = swarm.dial(addr.clone());
                }
                SwarmEvent::OutgoingConnectionError { .. } => {
                    stats.refused += 1;
                    stats.first_refusal_secs.get_or_insert(started.elapsed().as_secs_f64());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = swarm.dial(addr.clone());
                }
                _ => {}
            },
            message = rx.recv() => {
                let Some((topic, data)) = message else { break };
                match swarm.behaviour_mut().publish(topic.topic(), data) {
                    Ok(_) => stats.published += 1,
                    Err(_) => stats.publish_errors += 1,
                }
            }
        }
        let subscribed = swarm
            .behaviour()
            .all_peers()
            .any(|(p, topics)| *p == peer && wanted.iter().all(|w| topics.contains(&w)));
        ready.store(connected && subscribed, Ordering::Relaxed);
    }
    stats
}

/// Runs the attack (see the module docs).
pub(super) async fn proof_amplification(plan: &AttackPlan) -> AttackReport {
    let key = keypair(plan.seed, 0);
    let mut report =
        AttackReport { peer_ids: vec![key.public().to_peer_id().to_string()], ..AttackReport::default() };
    let started = Instant::now();
    let deadline = started + plan.duration;
    let mut links = Vec::new();
    for (addr, peer) in &plan.nodes {
        let Some(swarm) = gossip_swarm(&key, super::attacker_source_ip(plan.seed)) else { return report };
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let ready = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(drive_link(swarm, addr.clone(), *peer, rx, ready.clone(), started));
        links.push(Link { tx, ready, task });
    }
    let mut rng = StdRng::seed_from_u64(plan.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut tick = tokio::time::interval(period(plan.rate_per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut n, mut cursor, mut not_accepted, mut max_ready) = (0u64, 0usize, 0u64, 0usize);
    let mut pairs = [0u64; 3];
    while Instant::now() < deadline {
        tick.tick().await;
        let ready: Vec<usize> =
            (0..links.len()).filter(|i| links[*i].ready.load(Ordering::Relaxed)).collect();
        max_ready = max_ready.max(ready.len());
        // The valid-only amplifier skips variant (b).
        let valid_only = plan.kind == crate::scenario::AttackKind::ValidProofAmplification;
        let k = if valid_only { [0, 2][(n % 2) as usize] } else { (n % 3) as usize };
        let variant = VARIANTS[k];
        let needed = if variant == Variant::SplitHalves { 2 } else { 1 };
        if ready.len() < needed {
            // Split pairs need two nodes; with one, the other variants go on.
            n += u64::from(!ready.is_empty());
            continue;
        }
        let number = n;
        n += 1;
        let Some(pair) = sign_pair(&mut rng, number, variant, palisade_net::now_ms()) else { continue };
        let base = cursor;
        cursor = cursor.wrapping_add(1);
        let to = |j: usize| ready[(base + j) % ready.len()];
        let accepted = if variant == Variant::SplitHalves {
            let topic = TopicKind::for_record(pair.first.kind());
            let first = links[to(0)].tx.try_send((topic, pair.first.into_wire_bytes())).is_ok();
            first && links[to(1)].tx.try_send((topic, pair.second.into_wire_bytes())).is_ok()
        } else {
            let Some(message) = encode_proof(pair.first.wire_bytes(), pair.second.wire_bytes()) else {
                continue;
            };
            links[to(0)].tx.try_send((TopicKind::Proofs, message)).is_ok()
        };
        if !accepted {
            not_accepted += 1;
            continue;
        }
        pairs[k] += 1;
        if let Some(id) = pair.invalid {
            report.invalid_halves.push(id);
        }
    }
    let ran = started.elapsed().as_secs_f64();
    let mut stats = Vec::new();
    for (i, link) in links.into_iter().enumerate() {
        drop(link.tx);
        let mut task = link.task;
        match tokio::time::timeout(Duration::from_secs(10), &mut task).await {
            Ok(Ok(s)) => stats.push((i, s)),
            _ => task.abort(),
        }
    }
    report.sent = stats.iter().map(|(_, s)| s.published).sum();
    report.connections_established = stats.iter().map(|(_, s)| s.established).sum();
    report.connections_refused = stats.iter().map(|(_, s)| s.refused).sum();
    report.max_concurrent_connections = max_ready as u64;
    // Containment is judged by the target: only its refusals count.
    report.first_refusal_after_secs =
        stats.iter().find(|(i, _)| *i == plan.target).and_then(|(_, s)| s.first_refusal_secs);
    report.invalid_halves_sent = report.invalid_halves.len() as u64;
    let total: u64 = pairs.iter().sum();
    report.detail = Some(format!(
        "{total} pairs ({:.0}/s of {} requested) from {total} fresh authors: {} valid proofs, {} proofs with an invalid half, {} split across two nodes; {not_accepted} ticks the swarms did not take; {} messages published, {} publish errors; connected to up to {max_ready} of {} nodes",
        total as f64 / ran.max(0.001),
        plan.rate_per_sec,
        pairs[0],
        pairs[1],
        pairs[2],
        report.sent,
        stats.iter().map(|(_, s)| s.publish_errors).sum::<u64>(),
        plan.nodes.len(),
    ));
    report
}

#[cfg(test)]
mod tests {
    use palisade_types::validate::validate_record;
    use palisade_types::ParsedEnvelope;

    use super::*;

    const NOW: u64 = fixtures::FIXED_NOW_MS;

    /// Whether the signature checks, whatever the static rules say (an invalid half is
    /// correctly signed on purpose).
    fn verifies(wire: &[u8]) -> bool {
        use palisade_types::ed25519_dalek::Signature;
        let env = palisade_types::Envelope::decode(wire).expect("an envelope");
        let parsed = ParsedEnvelope::parse(wire.to_vec()).expect("parses");
        let author = parsed.decode().expect("decodes").record().position.author;
        let key = palisade_types::verifying_key(&author).expect("a key");
        let signed = palisade_types::pae(&env.payload_type, &env.payload);
        key.verify_strict(&signed, &Signature::from_bytes(&env.signature)).is_ok()
    }

    #[test]
    fn pairs_are_equivocations_by_fresh_authors_and_only_variant_b_has_an_invalid_half() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut authors = std::collections::HashSet::new();
        let mut futures_seen = 0;
        for n in 0..24u64 {
            let variant = VARIANTS[(n % 3) as usize];
            let p = sign_pair(&mut rng, n, variant, NOW).expect("signs");
            let (a, b) = (p.first.record(), p.second.record());
            assert_eq!(a.position.author, b.position.author);
            assert_eq!((a.position.seq, b.position.seq), (1, 1));
            assert_ne!(p.first.id(), p.second.id());
            assert!(authors.insert(a.position.author), "a fresh author per pair");
            assert!(verifies(p.first.wire_bytes()) && verifies(p.second.wire_bytes()));
            let invalid: Vec<RecordId> = [&p.first, &p.second]
                .into_iter()
                .filter(|r| validate_record(r.record(), NOW).is_err())
                .map(|r| r.id())
                .collect();
            match variant {
                Variant::InvalidHalfProof => {
                    assert_eq!(invalid, vec![p.invalid.expect("reported")]);
                    let bad = if p.invalid == Some(p.first.id()) { a } else { b };
                    futures_seen += usize::from(bad.position.issued_at_ms > NOW + 60 * 60 * 1000);
                }
                _ => assert!(invalid.is_empty() && p.invalid.is_none()),
            }
        }
        // Both flavours (future timestamp, bad score) and both halves occur.
        assert!(futures_seen > 0 && futures_seen < 8);
    }

    #[test]
    fn proof_message_decodes_as_two_bounded_envelopes() {
        let mut rng = StdRng::seed_from_u64(1);
        let p = sign_pair(&mut rng, 0, Variant::ValidProof, NOW).expect("signs");
        let message = encode_proof(p.first.wire_bytes(), p.second.wire_bytes()).expect("fits");
        type Half = BoundedBytes<MAX_ENVELOPE_BYTES>;
        let (x, y): (Half, Half) = palisade_net::sync::decode_body(&message).expect("decodes");
        assert_eq!(x.into_inner(), p.first.wire_bytes());
        assert_eq!(y.into_inner(), p.second.wire_bytes());
    }
}
