//! Byzantine peers: libp2p clients (and raw sockets) that attack one node.
//!
//! Every attacker runs for a bounded time at a bounded rate and stops by itself. It reports
//! what it did (messages, connections, refusals) and the peer ids it used, so the checkers can
//! look them up in the target's ban list and drop ledger. Proof amplification lives in
//! `proofs.rs`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::muxing::StreamMuxerExt;
use libp2p::core::transport::{DialOpts, PortUse};
use libp2p::core::Endpoint;
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, request_response, Multiaddr, PeerId, Swarm, Transport};
use palisade_net::sync::{SyncCodec, SyncRequest, PROTOCOL as SYNC_PROTOCOL};
use palisade_net::topics::TopicKind;
use palisade_types::fixtures;
use palisade_types::{AuthorKey, FeedWriter, RecordId};
use rand::{Rng, RngCore, SeedableRng};
use serde::Serialize;

use crate::scenario::AttackKind;

mod proofs;

/// What an attacker did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AttackReport {
    /// Attack kind.
    pub kind: String,
    /// Target node index.
    pub target: usize,
    /// Peer ids used (bounded list; connection floods use many).
    pub peer_ids: Vec<String>,
    /// Messages or requests sent.
    pub sent: u64,
    /// Connections established.
    pub connections_established: u64,
    /// Connection attempts refused or failed.
    pub connections_refused: u64,
    /// Most connections held open at once.
    pub max_concurrent_connections: u64,
    /// Seconds from start until the target first refused or dropped us (throttled/banned).
    pub first_refusal_after_secs: Option<f64>,
    /// Seconds from start until the harness, polling the target's audit ledger during the
    /// attack, first saw an entry for one of our identities. Polled live because the ledger is
    /// a bounded, in-memory ring: a crash or a busy ring loses the early entries.
    pub first_ledger_seen_after_secs: Option<f64>,
    /// What `attackers_contained` judged: seconds from the attack's start to the earliest
    /// refusal, ledger entry or ban the target made of it (`None`: never).
    pub contained_after_secs: Option<f64>,
    /// Seconds the attack ran.
    pub ran_secs: f64,
    /// What the attack did, in its own words (proof amplification: pairs per variant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Proof amplification: how many correctly signed records that fail static validation
    /// it sent inside proofs.
    pub invalid_halves_sent: u64,
    /// Their ids, for `no_invalid_proof_half` (not in the JSON report: tens of thousands).
    #[serde(skip)]
    pub invalid_halves: Vec<RecordId>,
}

/// Everything an attacker needs.
#[derive(Debug, Clone)]
pub struct AttackPlan {
    /// What to do.
    pub kind: AttackKind,
    /// Target node index (for reports).
    pub target: usize,
    /// Target multiaddr with /p2p.
    pub addr: Multiaddr,
    /// Target peer id.
    pub peer: PeerId,
    /// Rate per second.
    pub rate_per_sec: u32,
    /// Identities / parallel connections.
    pub count: usize,
    /// How long.
    pub duration: Duration,
    /// Seed for keys and payloads.
    pub seed: u64,
    /// Every node of the cluster (address with /p2p, peer id), in node order, for attacks that
    /// reach all of them.
    pub nodes: Vec<(Multiaddr, PeerId)>,
}

/// Most of a connection flood's identities that its report and ledger watch name.
const MAX_NAMED_FLOOD_IDS: u64 = 64;

/// The peer ids an attack will use, as the target's ledger names them (the first
/// [`MAX_NAMED_FLOOD_IDS`] of a connection flood's; none for raw sockets).
pub fn identities(plan: &AttackPlan) -> Vec<String> {
    match plan.kind {
        AttackKind::ConnectionFlood => (1..=MAX_NAMED_FLOOD_IDS)
            .map(|n| keypair(plan.seed, n).public().to_peer_id().to_string())
            .collect(),
        AttackKind::Slowloris => Vec::new(),
        _ => vec![keypair(plan.seed, 0).public().to_peer_id().to_string()],
    }
}

/// Runs one attack to completion.
pub async fn run(plan: AttackPlan) -> AttackReport {
    let started = Instant::now();
    let mut report = match plan.kind {
        AttackKind::InvalidSignatures
        | AttackKind::Malformed
        | AttackKind::Oversized
        | AttackKind::Replay
        | AttackKind::OverRate
        | AttackKind::Equivocation => gossip_attack(&plan).await,
        AttackKind::ConnectionFlood => connection_flood(&plan).await,
        AttackKind::StreamFlood => stream_flood(&plan).await,
        AttackKind::Slowloris => slowloris(&plan).await,
        AttackKind::SyncAbuse => sync_abuse(&plan).await,
        AttackKind::ProofAmplification | AttackKind::ValidProofAmplification => {
            proofs::proof_amplification(&plan).await
        }
    };
    report.kind = format!("{:?}", plan.kind);
    report.target = plan.target;
    report.ran_secs = started.elapsed().as_secs_f64();
    report
}

fn keypair(seed: u64, n: u64) -> libp2p::identity::Keypair {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&n.to_le_bytes());
    bytes[16] = 0xba;
    libp2p::identity::Keypair::ed25519_from_bytes(bytes)
        .unwrap_or_else(|_| libp2p::identity::Keypair::generate_ed25519())
}

/// The loopback address an attacker dials from: its own, as a real attacker's would be, in a
/// /24 of its own (per attacker and target, from the plan's seed). From 127.0.0.1, the
/// kernel's source for every loopback connection of the honest nodes too, an attacker would
/// spend the per-IP and per-subnet connection budgets the honest nodes need to reconnect
/// after a fault, and a banned attacker's IP ban would cut every honest node off: a test of
/// the harness, not of the node.
pub(crate) fn attacker_source_ip(seed: u64) -> std::net::Ipv4Addr {
    let attacker = (seed >> 24) & 0xff;
    let target = (seed >> 16) & 0xff;
    let identity = seed & 0xffff;
    std::net::Ipv4Addr::new(127, 100 + (attacker % 100) as u8, target as u8, 1 + (identity % 250) as u8)
}

fn base_transport(
    key: &libp2p::identity::Keypair,
    plan: &AttackPlan,
) -> libp2p::core::transport::Boxed<(PeerId, libp2p::core::muxing::StreamMuxerBox)> {
    match crate::bench::baseline::transport(key, Some(attacker_source_ip(plan.seed))) {
        Ok(t) => t,
        // Only a key noise cannot use fails here; ours are ed25519.
        Err(_) => crate::bench::baseline::transport(&libp2p::identity::Keypair::generate_ed25519(), None)
            .unwrap_or_else(|_| std::process::abort()),
    }
}

fn swarm_config() -> libp2p::swarm::Config {
    libp2p::swarm::Config::with_tokio_executor().with_idle_connection_timeout(Duration::from_secs(30))
}

/// A raw TCP connection from `source` (when the target is on loopback).
async fn connect_from(
    source: std::net::Ipv4Addr,
    target: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if target.ip().is_loopback() {
        socket.bind(std::net::SocketAddr::new(source.into(), 0))?;
    }
    socket.connect(target).await
}

/// Interval between actions for a rate (at least 1 µs).
fn period(rate: u32) -> Duration {
    Duration::from_micros(1_000_000 / u64::from(rate.max(1))).max(Duration::from_micros(1))
}

/// Gossip attacks: a gossipsub peer that publishes bad or unwanted records.
async fn gossip_attack(plan: &AttackPlan) -> AttackReport {
    let key = keypair(plan.seed, 0);
    let mut report =
        AttackReport { peer_ids: vec![key.public().to_peer_id().to_string()], ..AttackReport::default() };
    let replay = plan.kind == AttackKind::Replay;
    let counter = std::sync::atomic::AtomicU64::new(0);
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        // A replayer must get past its own duplicate cache: it numbers every copy. The
        // target computes the real id (a hash of the bytes, identical for every copy) and
        // drops the copies in its duplicate cache.
        .message_id_fn(move |m: &gossipsub::Message| {
            if replay {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                gossipsub::MessageId::new(&n.to_le_bytes())
            } else {
                palisade_net::gossip::message_id(&m.data)
            }
        })
        .max_transmit_size(1024 * 1024)
        .heartbeat_interval(Duration::from_millis(300))
        .build();
    let Ok(config) = config else { return report };
    let Ok(mut behaviour) = gossipsub::Behaviour::<
        gossipsub::IdentityTransform,
        gossipsub::AllowAllSubscriptionFilter,
    >::new(gossipsub::MessageAuthenticity::Anonymous, config) else {
        return report;
    };
    for t in TopicKind::ALL {
        let _ = behaviour.subscribe(&t.topic());
    }
    let mut swarm =
        Swarm::new(base_transport(&key, plan), behaviour, key.public().to_peer_id(), swarm_config());
    if swarm.dial(plan.addr.clone()).is_err() {
        return report;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(plan.seed);
    let deadline = Instant::now() + plan.duration;
    let started = Instant::now();
    let mut tick = tokio::time::interval(period(plan.rate_per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut feed = FeedWriter::new(palisade_types::ed25519_dalek::SigningKey::from_bytes(
        &[(plan.seed % 251) as u8 + 1; 32],
    ));
    let mut replay_pool: Vec<Vec<u8>> = Vec::new();
    let mut n: u64 = 0;
    let mut connected = false;
    let mut equivocated = false;
    while Instant::now() < deadline {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { .. } => { connected = true; report.connections_established += 1; report.max_concurrent_connections = 1; }
                SwarmEvent::ConnectionClosed { .. } | SwarmEvent::OutgoingConnectionError { .. } => {
                    connected = false;
                    report.first_refusal_after_secs.get_or_insert(started.elapsed().as_secs_f64());
                    report.connections_refused += 1;
                    // Try again (a banned peer is refused at once; that is the point).
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = swarm.dial(plan.addr.clone());
                }
                _ => {}
            },
            _ = tick.tick() => {
                // Publishing before the target's subscriptions arrive reaches nobody; the
                // one-shot equivocation would be lost.
                let target_subscribed = swarm.behaviour().all_peers().any(|(p, topics)| *p == plan.peer && !topics.is_empty());
                if !connected || !target_subscribed { continue; }
                n += 1;
                let now = palisade_net::now_ms();
                let (topic, data) = match plan.kind {
                    AttackKind::InvalidSignatures => {
                        let r = feed.sign_next(fixtures::attestation(n), now);
                        let Ok(r) = r else { continue };
                        let mut bytes = r.into_wire_bytes();
                        if let Some(last) = bytes.last_mut() { *last ^= 0x5a; }
                        (TopicKind::Attestations, bytes)
                    }
                    AttackKind::Malformed => {
                        let mut bytes = vec![0u8; rng.gen_range(16..2048)];
                        rng.fill_bytes(&mut bytes);
                        (TopicKind::Anomalies, bytes)
                    }
                    AttackKind::Oversized => {
                        let mut bytes = vec![0u8; rng.gen_range(17_000..60_000)];
                        rng.fill_bytes(&mut bytes);
                        (TopicKind::Attestations, bytes)
                    }
                    AttackKind::Replay => {
                        if replay_pool.len() < 16 {
                            let Ok(r) = feed.sign_next(fixtures::attestation(n), now) else { continue };
                            replay_pool.push(r.into_wire_bytes());
                        }
                        let i = rng.gen_range(0..replay_pool.len());
                        (TopicKind::Attestations, replay_pool[i].clone())
                    }
                    AttackKind::OverRate => {
                        // A fresh author per record: Sybil authors.
                        let mut w = FeedWriter::new(palisade_types::ed25519_dalek::SigningKey::from_bytes(&rng.gen::<[u8; 32]>()));
                        let Ok(r) = w.sign_next(fixtures::attestation(n), now) else { continue };
                        (TopicKind::Attestations, r.into_wire_bytes())
                    }
                    AttackKind::Equivocation => {
                        if equivocated { continue; }
                        equivocated = true;
                        let key = palisade_types::ed25519_dalek::SigningKey::from_bytes(&[0xe9; 32]);
                        let a = FeedWriter::new(key.clone()).sign_next(fixtures::attestation(1), now);
                        let b = FeedWriter::new(key).sign_next(fixtures::attestation(2), now);
                        if let (Ok(a), Ok(b)) = (a, b) {
                            let author = format!("author:{}", a.author());
                            if swarm.behaviour_mut().publish(TopicKind::Attestations.topic(), a.into_wire_bytes()).is_err() {
                                equivocated = false;
                                continue;
                            }
                            report.peer_ids.push(author);
                            report.sent += 1;
                            // Give the first a head start so the second is the conflicting one;
                            // the swarm must be driven meanwhile, or nothing leaves.
                            let _ = tokio::time::timeout(Duration::from_millis(300), async {
                                loop {
                                    swarm.select_next_some().await;
                                }
                            })
                            .await;
                            (TopicKind::Attestations, b.into_wire_bytes())
                        } else { continue }
                    }
                    _ => continue,
                };
                if swarm.behaviour_mut().publish(topic.topic(), data).is_ok() {
                    report.sent += 1;
                }
            }
        }
    }
    report
}

/// The author key the equivocation attacker uses.
pub fn equivocating_author() -> AuthorKey {
    AuthorKey(palisade_types::ed25519_dalek::SigningKey::from_bytes(&[0xe9; 32]).verifying_key().to_bytes())
}

/// New connections from fresh identities; each is held open (up to `count`) to press on the
/// per-IP caps, then released as new ones arrive.
async fn connection_flood(plan: &AttackPlan) -> AttackReport {
    let mut report = AttackReport::default();
    let deadline = Instant::now() + plan.duration;
    let started = Instant::now();
    let mut held: std::collections::VecDeque<libp2p::core::muxing::StreamMuxerBox> = Default::default();
    let mut tick = tokio::time::interval(period(plan.rate_per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n = 0u64;
    let mut ids = HashSet::new();
    while Instant::now() < deadline {
        tick.tick().await;
        n += 1;
        let key = keypair(plan.seed, n);
        if (ids.len() as u64) < MAX_NAMED_FLOOD_IDS {
            ids.insert(key.public().to_peer_id().to_string());
        }
        let mut transport = base_transport(&key, plan);
        let dial =
            transport.dial(plan.addr.clone(), DialOpts { role: Endpoint::Dialer, port_use: PortUse::New });
        let outcome = match dial {
            Ok(fut) => tokio::time::timeout(Duration::from_secs(5), fut).await,
            Err(_) => {
                report.connections_refused += 1;
                continue;
            }
        };
        match outcome {
            Ok(Ok((_peer, muxer))) => {
                report.connections_established += 1;
                held.push_back(muxer);
                if held.len() > plan.count {
                    held.pop_front();
                }
                report.max_concurrent_connections = report.max_concurrent_connections.max(held.len() as u64);
            }
            _ => {
                report.connections_refused += 1;
                report.first_refusal_after_secs.get_or_insert(started.elapsed().as_secs_f64());
            }
        }
        report.sent += 1;
        // Held connections whose remote closed them no longer count.
        held.retain_mut(|m| {
            let waker = futures::task::noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            !matches!(m.poll_unpin(&mut cx), std::task::Poll::Ready(Err(_)))
        });
    }
    report.peer_ids = ids.into_iter().collect();
    report
}

/// Many outbound streams on one connection that never finish protocol negotiation.
async fn stream_flood(plan: &AttackPlan) -> AttackReport {
    let key = keypair(plan.seed, 0);
    let mut report =
        AttackReport { peer_ids: vec![key.public().to_peer_id().to_string()], ..AttackReport::default() };
    let deadline = Instant::now() + plan.duration;
    let started = Instant::now();
    let mut transport = base_transport(&key, plan);
    let Ok(dial) =
        transport.dial(plan.addr.clone(), DialOpts { role: Endpoint::Dialer, port_use: PortUse::New })
    else {
        return report;
    };
    let Ok(Ok((_peer, mut muxer))) = tokio::time::timeout(Duration::from_secs(10), dial).await else {
        report.connections_refused += 1;
        return report;
    };
    report.connections_established = 1;
    report.max_concurrent_connections = 1;
    let mut streams = Vec::new();
    let mut tick = tokio::time::interval(period(plan.rate_per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while Instant::now() < deadline {
        tokio::select! {
            _ = tick.tick() => {
                match tokio::time::timeout(Duration::from_secs(2), futures::future::poll_fn(|cx| muxer.poll_outbound_unpin(cx))).await {
                    Ok(Ok(s)) => {
                        report.sent += 1;
                        if streams.len() < 10_000 { streams.push(s); }
                    }
                    _ => {
                        report.connections_refused += 1;
                        report.first_refusal_after_secs.get_or_insert(started.elapsed().as_secs_f64());
                        break;
                    }
                }
            }
            r = futures::future::poll_fn(|cx| muxer.poll_unpin(cx)) => {
                if r.is_err() {
                    report.first_refusal_after_secs.get_or_insert(started.elapsed().as_secs_f64());
                    break;
                }
            }
        }
    }
    report
}

/// TCP connections that never send a handshake; reconnects when the node drops them.
async fn slowloris(plan: &AttackPlan) -> AttackReport {
    let mut report = AttackReport::default();
    let Some(sock) = tcp_addr(&plan.addr) else { return report };
    let deadline = Instant::now() + plan.duration;
    let started = Instant::now();
    let mut held: Vec<(tokio::net::TcpStream, Instant)> = Vec::new();
    let mut tick = tokio::time::interval(period(plan.rate_per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut longest = Duration::ZERO;
    while Instant::now() < deadline {
        tick.tick().await;
        if held.len() < plan.count {
            match tokio::time::timeout(
                Duration::from_secs(2),
                connect_from(attacker_source_ip(plan.seed), sock),
            )
            .await
            {
                Ok(Ok(s)) => {
                    report.connections_established += 1;
                    held.push((s, Instant::now()));
                }
                _ => report.connections_refused += 1,
            }
        }
        report.max_concurrent_connections = report.max_concurrent_connections.max(held.len() as u64);
        // Find out which the node has closed (read returns 0 / error).
        let mut still = Vec::new();
        for (s, since) in held.drain(..) {
            let mut buf = [0u8; 64];
            let closed = match s.try_read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            };
            if closed {
                longest = longest.max(since.elapsed());
                report.first_refusal_after_secs.get_or_insert(started.elapsed().as_secs_f64());
            } else {
                still.push((s, since));
            }
        }
        held = still;
        report.sent += 1;
    }
    for (_, since) in &held {
        longest = longest.max(since.elapsed());
    }
    report.peer_ids = vec![format!("longest_held_secs:{:.1}", longest.as_secs_f64())];
    report
}

fn tcp_addr(addr: &Multiaddr) -> Option<std::net::SocketAddr> {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(std::net::SocketAddr::new(ip?, port?))
}

/// Sync requests as fast as allowed, half of them invalid.
async fn sync_abuse(plan: &AttackPlan) -> AttackReport {
    let key = keypair(plan.seed, 0);
    let mut report =
        AttackReport { peer_ids: vec![key.public().to_peer_id().to_string()], ..AttackReport::default() };
    let behaviour = request_response::Behaviour::with_codec(
        SyncCodec::default(),
        [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default().with_max_concurrent_streams(10_000),
    );
    let mut swarm =
        Swarm::new(base_transport(&key, plan), behaviour, key.public().to_peer_id(), swarm_config());
    if swarm.dial(plan.addr.clone()).is_err() {
        return report;
    }
    let deadline = Instant::now() + plan.duration;
    let started = Instant::now();
    let mut tick = tokio::time::interval(period(plan.rate_per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut connected = false;
    let mut n = 0u64;
    while Instant::now() < deadline {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { .. } => { connected = true; report.connections_established += 1; report.max_concurrent_connections = 1; }
                SwarmEvent::ConnectionClosed { .. } | SwarmEvent::OutgoingConnectionError { .. } => {
                    connected = false;
                    report.connections_refused += 1;
                    report.first_refusal_after_secs.get_or_insert(started.elapsed().as_secs_f64());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = swarm.dial(plan.addr.clone());
                }
                _ => {}
            },
            _ = tick.tick() => {
                if !connected { continue; }
                n += 1;
                let request = if n.is_multiple_of(2) {
                    SyncRequest::Heads { after: None, limit: u32::MAX }
                } else {
                    SyncRequest::Records { author: AuthorKey([7; 32]), from_seq: 10, to_seq: 1, limit: 0 }
                };
                swarm.behaviour_mut().send_request(&plan.peer, request);
                report.sent += 1;
            }
        }
    }
    report
}
