//! Layer 2: the bandwidth throttle holds each peer to its byte rate, and peers share the
//! global budget.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use palisade_guard::GuardConfig;

use crate::*;

const KIB: u64 = 1024;
const CHUNK: usize = 32 * 1024;
const IN_FLIGHT: usize = 4;
const WARMUP: Duration = Duration::from_secs(1);
const WINDOW: Duration = Duration::from_secs(5);

/// A peer pushing `CHUNK`-byte blobs as fast as the node accepts them, `IN_FLIGHT` at a time.
fn flooder(addr: Multiaddr, node: PeerId) -> (PeerId, tokio::task::JoinHandle<()>) {
    let key = Keypair::generate_ed25519();
    let id = PeerId::from(key.public());
    let task = tokio::spawn(async move {
        let mut s = peer_swarm(key);
        s.dial(addr).unwrap();
        loop {
            match s.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => {
                    for _ in 0..IN_FLIGHT {
                        s.behaviour_mut().push.send_request(&node, vec![0xAB; CHUNK]);
                    }
                }
                SwarmEvent::Behaviour(PeerEvent::Push(libp2p::request_response::Event::Message {
                    ..
                }))
                | SwarmEvent::Behaviour(PeerEvent::Push(
                    libp2p::request_response::Event::OutboundFailure { .. },
                )) => {
                    s.behaviour_mut().push.send_request(&node, vec![0xAB; CHUNK]);
                }
                _ => {}
            }
        }
    });
    (id, task)
}

/// Bytes each peer delivered to the node during `[start + WARMUP, start + WARMUP + WINDOW)`.
async fn measure(events: &mut tokio::sync::mpsc::Receiver<Report>, peers: &[PeerId]) -> HashMap<PeerId, u64> {
    let mut out: HashMap<PeerId, u64> = peers.iter().map(|p| (*p, 0)).collect();
    // The window starts once every peer has delivered something (connections are up).
    let mut seen: HashMap<PeerId, bool> = HashMap::new();
    within("all flooders to deliver", async {
        while seen.len() < peers.len() {
            if let Some(Report::Request { peer, .. }) = events.recv().await {
                seen.insert(peer, true);
            }
        }
    })
    .await;
    let start = Instant::now() + WARMUP;
    let end = start + WINDOW;
    within("the measurement window", async {
        loop {
            match tokio::time::timeout_at(end.into(), events.recv()).await {
                Err(_) => break,
                Ok(Some(Report::Request { peer, bytes, at })) if at >= start && at < end => {
                    *out.entry(peer).or_default() += bytes as u64;
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("node stopped"),
            }
        }
    })
    .await;
    out
}

fn rate(bytes: u64) -> f64 {
    bytes as f64 / WINDOW.as_secs_f64()
}

/// Two peers push as fast as they can; each is held to `peer_inbound_bytes_per_sec` within
/// ±20%, so the first does not take the second's share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_peer_is_held_to_its_inbound_byte_rate() {
    let peer_rate = 256 * KIB;
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig {
        peer_inbound_bytes_per_sec: peer_rate,
        conn_inbound_bytes_per_sec: 4 * peer_rate,
        global_inbound_bytes_per_sec: 64 * peer_rate,
        ..GuardConfig::default()
    };
    let g = guard(cfg, dir.path());
    let (addr, node_id, mut events, node) = spawn_node(&g).await;
    let (a, ta) = flooder(addr.clone(), node_id);
    let (b, tb) = flooder(addr, node_id);
    let got = measure(&mut events, &[a, b]).await;
    for p in [a, b] {
        let r = rate(got[&p]);
        let ratio = r / peer_rate as f64;
        eprintln!("peer {p}: {r:.0} B/s = {ratio:.3}x its budget");
        assert!(
            (0.8..=1.2).contains(&ratio),
            "peer {p} got {r:.0} B/s, {ratio:.2}x its {peer_rate} B/s budget"
        );
    }
    let c = g.counters();
    assert!(c["throttled_bytes.inbound"] > 0, "{c:?}");
    assert!(c["throttle_waits.inbound"] > 0);
    assert!(g.ledger(None, 1000).iter().any(|e| e.reason == "inbound_bandwidth"));
    let st = g.peer_state(&a).unwrap();
    assert!(st.bytes_in > 0 && st.connections >= 1, "{st:?}");
    ta.abort();
    tb.abort();
    node.abort();
}

/// With a generous per-peer budget, two flooders share the global budget: the total holds to
/// `global_inbound_bytes_per_sec` within ±20% and each peer gets a fair part of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_share_the_global_inbound_budget() {
    let global = 384 * KIB;
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig {
        peer_inbound_bytes_per_sec: 4 * global,
        conn_inbound_bytes_per_sec: 4 * global,
        global_inbound_bytes_per_sec: global,
        ..GuardConfig::default()
    };
    let g = guard(cfg, dir.path());
    let (addr, node_id, mut events, node) = spawn_node(&g).await;
    let (a, ta) = flooder(addr.clone(), node_id);
    let (b, tb) = flooder(addr, node_id);
    let got = measure(&mut events, &[a, b]).await;
    let total = rate(got[&a] + got[&b]);
    let ratio = total / global as f64;
    eprintln!("total {total:.0} B/s = {ratio:.3}x the global budget; a {} B, b {} B", got[&a], got[&b]);
    assert!(
        (0.8..=1.2).contains(&ratio),
        "total {total:.0} B/s is {ratio:.2}x the {global} B/s global budget"
    );
    for p in [a, b] {
        let share = got[&p] as f64 / (got[&a] + got[&b]) as f64;
        assert!(share >= 0.25, "peer {p} got only {:.0}% of the global budget", share * 100.0);
    }
    ta.abort();
    tb.abort();
    node.abort();
}

/// The throttle also holds what this node sends: a guarded peer pushing to a node is held to
/// its `peer_outbound_bytes_per_sec`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_bytes_are_held_to_the_peer_rate() {
    let out_rate = 256 * KIB;
    let dir = tempfile::tempdir().unwrap();
    // The receiving node is generous; the sender's own guard does the limiting.
    let receiver = guard(GuardConfig::default(), &dir.path().join("rx"));
    let sender_guard = guard(
        GuardConfig {
            peer_outbound_bytes_per_sec: out_rate,
            conn_outbound_bytes_per_sec: 4 * out_rate,
            ..GuardConfig::default()
        },
        &dir.path().join("tx"),
    );
    let (addr, node_id, mut events, node) = spawn_node(&receiver).await;
    let mut s = guarded_peer_swarm(&sender_guard);
    let sender = *s.local_peer_id();
    let task = tokio::spawn(async move {
        s.dial(addr).unwrap();
        loop {
            match s.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => {
                    for _ in 0..IN_FLIGHT {
                        s.behaviour_mut().push.send_request(&node_id, vec![0xCD; CHUNK]);
                    }
                }
                SwarmEvent::Behaviour(PeerEvent::Push(libp2p::request_response::Event::Message {
                    ..
                }))
                | SwarmEvent::Behaviour(PeerEvent::Push(
                    libp2p::request_response::Event::OutboundFailure { .. },
                )) => {
                    s.behaviour_mut().push.send_request(&node_id, vec![0xCD; CHUNK]);
                }
                _ => {}
            }
        }
    });
    let got = measure(&mut events, &[sender]).await;
    let r = rate(got[&sender]);
    let ratio = r / out_rate as f64;
    eprintln!("outbound: {r:.0} B/s = {ratio:.3}x the budget");
    assert!((0.8..=1.2).contains(&ratio), "sender pushed {r:.0} B/s, {ratio:.2}x its {out_rate} B/s budget");
    assert!(sender_guard.counters()["throttled_bytes.outbound"] > 0);
    task.abort();
    node.abort();
}

/// A peer opening more concurrent streams than `max_streams_per_connection` gets the extra
/// streams reset (counted), not its connection killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_streams_are_reset_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig {
        max_streams_per_connection: 4,
        // Slow reads keep the first streams open while the rest arrive.
        peer_inbound_bytes_per_sec: 32 * KIB,
        conn_inbound_bytes_per_sec: 32 * KIB,
        ..GuardConfig::default()
    };
    let g = guard(cfg, dir.path());
    let (addr, node_id, mut events, node) = spawn_node(&g).await;
    let mut s = peer_swarm(Keypair::generate_ed25519());
    assert_eq!(dial_once(&mut s, &addr).await, DialOutcome::Connected);
    for _ in 0..12 {
        s.behaviour_mut().push.send_request(&node_id, vec![1; 64 * 1024]);
    }
    let (mut ok, mut failed) = (0, 0);
    within("all 12 pushes to finish", async {
        while ok + failed < 12 {
            match s.select_next_some().await {
                SwarmEvent::Behaviour(PeerEvent::Push(libp2p::request_response::Event::Message {
                    ..
                })) => ok += 1,
                SwarmEvent::Behaviour(PeerEvent::Push(
                    libp2p::request_response::Event::OutboundFailure { .. },
                )) => failed += 1,
                SwarmEvent::ConnectionClosed { .. } => panic!("the connection was closed"),
                _ => {}
            }
        }
    })
    .await;
    assert!(ok >= 4, "{ok} pushes served");
    assert!(failed >= 1, "no stream was refused");
    assert!(g.counters()["dropped.stream_limit_exceeded"] >= 1);
    while events.try_recv().is_ok() {}
    node.abort();
}

/// QUIC enforces `max_streams_per_connection` in the protocol itself (`quic_config` sets
/// quinn's stream credit from it): a peer cannot hold more streams open at once, and gets one
/// more only when one ends. The peer here is raw QUIC, no guard, no stream cap of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_peer_cannot_open_more_streams_than_the_limit() {
    use libp2p::core::muxing::{StreamMuxerBox, StreamMuxerExt};
    use libp2p::core::transport::{DialOpts, PortUse};
    use libp2p::core::{Endpoint, Transport};

    const LIMIT: u32 = 4;
    let dir = tempfile::tempdir().unwrap();
    let g = guard(GuardConfig { max_streams_per_connection: LIMIT, ..GuardConfig::default() }, dir.path());
    let mut node = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            g.wrap_transport(
                libp2p::quic::tokio::Transport::new(g.quic_config(key))
                    .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn))),
            )
        })
        .unwrap()
        .with_behaviour(|_| Node {
            limits: g.connection_limits(),
            guard: g.behaviour(),
            push: push_behaviour(libp2p::request_response::ProtocolSupport::Inbound),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    node.listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()).unwrap();
    let addr = within("QUIC listen address", async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = node.select_next_some().await {
                return address;
            }
        }
    })
    .await;
    let (tx, _events) = tokio::sync::mpsc::channel(1024);
    let node = tokio::spawn(run_node(node, tx));

    let key = Keypair::generate_ed25519();
    let mut transport = libp2p::quic::tokio::Transport::new(libp2p::quic::Config::new(&key));
    let dial = transport.dial(addr, DialOpts { role: Endpoint::Dialer, port_use: PortUse::New }).unwrap();
    let (_, mut conn) = within("QUIC handshake", dial).await.unwrap();
    let mut open = Vec::new();
    for _ in 0..LIMIT {
        let s =
            within("a stream under the limit", futures::future::poll_fn(|cx| conn.poll_outbound_unpin(cx)))
                .await
                .unwrap();
        open.push(s);
    }
    // One more does not open while the first ones are held.
    let over = tokio::time::timeout(
        Duration::from_millis(500),
        futures::future::poll_fn(|cx| conn.poll_outbound_unpin(cx)),
    )
    .await;
    assert!(over.is_err(), "stream {} opened past the limit of {LIMIT}", LIMIT + 1);
    // End one: write junk (the node's protocol negotiation fails and drops it) and close.
    let mut first = open.remove(0);
    first.write_all(b"not a protocol\n").await.unwrap();
    first.close().await.unwrap();
    drop(first);
    // Its credit comes back, and the next stream opens.
    let opened = within(
        "a stream after one ended",
        futures::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(r) = conn.poll_outbound_unpin(cx) {
                return std::task::Poll::Ready(r);
            }
            let _ = conn.poll_unpin(cx);
            std::task::Poll::Pending
        }),
    )
    .await
    .unwrap();
    drop((opened, open));
    node.abort();
}
