//! Layer 1: per-IP and per-subnet caps and connection rates.

use std::collections::HashMap;
use std::net::IpAddr;

use libp2p::core::ConnectedPoint;
use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::{ConnectionEstablished, FromSwarm};
use libp2p::swarm::{ConnectionId, NetworkBehaviour};
use libp2p::{Multiaddr, PeerId};
use palisade_guard::{ConnectionRefused, DropReason, GuardConfig};
use tokio::sync::mpsc;

use crate::*;

/// 200 connection attempts from 127.0.0.1, each with a fresh peer id: the node never holds
/// more than `max_connections_per_ip` connections from that IP, and a peer on 127.0.0.2 still
/// connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_from_one_ip_is_capped_and_other_ips_still_connect() {
    if !loopback_aliases_work() {
        eprintln!("skipping: 127.0.0.2 is not usable here");
        return;
    }
    const CAP: u32 = 4;
    const ATTEMPTS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig {
        max_connections_per_ip: CAP,
        // Loopback aliases share 127.0.0.0/24: leave the subnet cap and rates out of the way so
        // the per-IP cap is what this test trips.
        max_connections_per_subnet: 64,
        ip_new_connections_per_sec: 10_000,
        ip_new_connections_burst: 10_000,
        subnet_new_connections_per_sec: 10_000,
        subnet_new_connections_burst: 10_000,
        ..GuardConfig::default()
    };
    let g = guard(cfg, dir.path());
    let (addr, _node_id, mut events, node) = spawn_node(&g).await;

    let (out_tx, mut out_rx) = mpsc::channel::<DialOutcome>(ATTEMPTS);
    let mut attackers = Vec::new();
    for _ in 0..ATTEMPTS {
        let addr = addr.clone();
        let tx = out_tx.clone();
        attackers.push(tokio::spawn(async move {
            let mut s = peer_swarm(Keypair::generate_ed25519());
            let outcome = dial_once(&mut s, &addr).await;
            let _ = tx.send(outcome).await;
            // Keep the connection (if any) open until the test ends.
            loop {
                let _ = futures::StreamExt::select_next_some(&mut s).await;
            }
        }));
    }

    let localhost: IpAddr = "127.0.0.1".parse().unwrap();
    let mut open: HashMap<IpAddr, u32> = HashMap::new();
    let mut max_open = 0u32;
    let mut outcomes = 0usize;
    let mut connected = 0usize;
    within("all attack dials to resolve", async {
        while outcomes < ATTEMPTS {
            tokio::select! {
                Some(o) = out_rx.recv() => {
                    outcomes += 1;
                    if o == DialOutcome::Connected { connected += 1; }
                }
                Some(ev) = events.recv() => track(&ev, &mut open, &mut max_open, localhost),
            }
        }
    })
    .await;
    // The dialer sees its connection before the node reports it: wait for the node's view.
    assert!(connected as u32 <= CAP, "{connected} attackers connected, cap {CAP}");
    within("the node to report the admitted attackers", async {
        while open.get(&localhost).copied().unwrap_or(0) < connected as u32 {
            match events.recv().await {
                Some(ev) => track(&ev, &mut open, &mut max_open, localhost),
                None => panic!("node stopped"),
            }
        }
    })
    .await;
    assert!(max_open <= CAP, "{max_open} connections from one IP, cap {CAP}");
    assert_eq!(max_open, CAP, "the cap should have been reached");
    let counters = g.counters();
    assert!(counters["dropped.ip_cap_exceeded"] >= (ATTEMPTS as u64 - u64::from(CAP)) / 2, "{counters:?}");

    // Another host (127.0.0.2) still gets in while the flood's connections are held.
    let honest_key = Keypair::generate_ed25519();
    let honest_id = PeerId::from(honest_key.public());
    let mut honest = peer_swarm_from(honest_key, "127.0.0.2".parse().unwrap());
    assert_eq!(dial_once(&mut honest, &addr).await, DialOutcome::Connected);
    within("node to see the honest peer", async {
        loop {
            match events.recv().await {
                Some(Report::Established { peer, ip, .. }) if peer == honest_id => {
                    assert_eq!(ip, Some("127.0.0.2".parse().unwrap()));
                    return;
                }
                Some(ev) => track(&ev, &mut open, &mut max_open, localhost),
                None => panic!("node stopped"),
            }
        }
    })
    .await;
    assert!(max_open <= CAP);

    for a in attackers {
        a.abort();
    }
    node.abort();
}

fn track(ev: &Report, open: &mut HashMap<IpAddr, u32>, max_open: &mut u32, ip_of_interest: IpAddr) {
    match ev {
        Report::Established { ip: Some(ip), .. } => {
            let n = open.entry(*ip).or_default();
            *n += 1;
            if *ip == ip_of_interest {
                *max_open = (*max_open).max(*n);
            }
        }
        Report::Closed { ip: Some(ip), .. } => {
            if let Some(n) = open.get_mut(ip) {
                *n = n.saturating_sub(1);
            }
        }
        _ => {}
    }
}

/// The new-connection rate per IP trips before the count cap when connections come fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_rate_per_ip_is_limited() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig {
        max_connections_per_ip: 100,
        max_connections_per_subnet: 100,
        ip_new_connections_per_sec: 1,
        ip_new_connections_burst: 3,
        ..GuardConfig::default()
    };
    let g = guard(cfg, dir.path());
    let (addr, _id, _events, node) = spawn_node(&g).await;
    let mut ok = 0;
    let mut keep = Vec::new();
    for _ in 0..10 {
        let mut s = peer_swarm(Keypair::generate_ed25519());
        if dial_once(&mut s, &addr).await == DialOutcome::Connected {
            ok += 1;
        }
        keep.push(keep_polling(s));
    }
    // The burst (3) plus at most a token or two refilled during the test.
    assert!((3..=5).contains(&ok), "{ok} connections admitted");
    assert!(g.counters()["dropped.connection_rate_exceeded"] >= 5);
    let denied = g.ledger(None, 100).into_iter().filter(|e| e.reason == "connection_rate_exceeded").count();
    assert!(denied >= 1);
    for k in keep {
        k.abort();
    }
    node.abort();
}

fn pending(b: &mut GuardBehaviour, id: usize, ip: &str) -> Result<(), DropReason> {
    let remote: Multiaddr =
        format!("/{}/{ip}/tcp/4001", if ip.contains(':') { "ip6" } else { "ip4" }).parse().unwrap();
    let local: Multiaddr = "/ip4/0.0.0.0/tcp/1".parse().unwrap();
    b.handle_pending_inbound_connection(ConnectionId::new_unchecked(id), &local, &remote)
        .map_err(|e| e.downcast::<ConnectionRefused>().unwrap().reason)
}

/// Subnet caps group IPv4 by /24 and IPv6 by /64; allowlisted ranges bypass them.
#[test]
fn subnet_caps_group_v4_by_24_and_v6_by_64() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig {
        max_connections_per_ip: 2,
        max_connections_per_subnet: 3,
        ip_new_connections_per_sec: 1000,
        ip_new_connections_burst: 1000,
        subnet_new_connections_per_sec: 1000,
        subnet_new_connections_burst: 1000,
        allowlist_ips: vec!["10.9.9.0/24".into()],
        ..GuardConfig::default()
    };
    let g = guard(cfg, dir.path());
    let mut b = g.behaviour();
    let mut id = 0;
    let mut next = || {
        id += 1;
        id
    };
    // Per IP.
    assert_eq!(pending(&mut b, next(), "10.1.2.3"), Ok(()));
    assert_eq!(pending(&mut b, next(), "10.1.2.3"), Ok(()));
    assert_eq!(pending(&mut b, next(), "10.1.2.3"), Err(DropReason::IpCapExceeded));
    // Per /24: one more from a sibling fills the subnet.
    assert_eq!(pending(&mut b, next(), "10.1.2.4"), Ok(()));
    assert_eq!(pending(&mut b, next(), "10.1.2.5"), Err(DropReason::SubnetCapExceeded));
    assert_eq!(pending(&mut b, next(), "10.1.3.5"), Ok(()));
    // IPv6 /64.
    assert_eq!(pending(&mut b, next(), "2001:db8:1:2::1"), Ok(()));
    assert_eq!(pending(&mut b, next(), "2001:db8:1:2::2"), Ok(()));
    assert_eq!(pending(&mut b, next(), "2001:db8:1:2:ffff::3"), Ok(()));
    assert_eq!(pending(&mut b, next(), "2001:db8:1:2::4"), Err(DropReason::SubnetCapExceeded));
    assert_eq!(pending(&mut b, next(), "2001:db8:1:3::4"), Ok(()));
    // Allowlisted range: no caps.
    for _ in 0..10 {
        assert_eq!(pending(&mut b, next(), "10.9.9.9"), Ok(()));
    }
    assert_eq!(b.connections_from_ip("10.9.9.9".parse().unwrap()), 10);

    // An established outbound connection counts too, once the swarm reports it.
    let endpoint = ConnectedPoint::Dialer {
        address: "/ip4/10.1.3.5/tcp/1".parse().unwrap(),
        role_override: libp2p::core::Endpoint::Dialer,
        port_use: libp2p::core::transport::PortUse::Reuse,
    };
    b.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
        peer_id: PeerId::random(),
        connection_id: ConnectionId::new_unchecked(next()),
        endpoint: &endpoint,
        failed_addresses: &[],
        other_established: 0,
    }));
    assert_eq!(pending(&mut b, next(), "10.1.3.5"), Err(DropReason::IpCapExceeded));

    let c = g.counters();
    assert_eq!(c["dropped.ip_cap_exceeded"], 2);
    assert_eq!(c["dropped.subnet_cap_exceeded"], 2);
}

/// Connection-rate maps stay within `max_tracked_ips` under 100k distinct addresses.
#[test]
fn ip_rate_maps_are_bounded_under_100k_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig {
        max_tracked_ips: 1000,
        max_connections_per_ip: 100_000,
        max_connections_per_subnet: 100_000,
        ..GuardConfig::default()
    };
    let g = guard(cfg, dir.path());
    let mut b = g.behaviour();
    for i in 0..100_000u32 {
        let [_, x, y, z] = i.to_be_bytes();
        let _ = pending(&mut b, i as usize, &format!("11.{x}.{y}.{z}"));
        if i % 5000 == 0 {
            for s in g.tracker_stats() {
                assert!(s.keys <= s.cap, "{s:?}");
            }
        }
    }
    for s in g.tracker_stats() {
        assert!(s.keys <= s.cap, "{s:?}");
    }
    assert!(g.counters()["dropped.tracker_full"] > 0);
}

/// The new-connection rate per subnet trips for a spread of addresses in one /24.
#[test]
fn connection_rate_per_subnet_is_limited() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig {
        ip_new_connections_per_sec: 1,
        ip_new_connections_burst: 2,
        subnet_new_connections_per_sec: 1,
        subnet_new_connections_burst: 5,
        ..GuardConfig::default()
    };
    let g = guard(cfg, dir.path());
    let mut b = g.behaviour();
    let results: Vec<_> = (1..=8).map(|i| pending(&mut b, i, &format!("10.4.4.{i}"))).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5, "{results:?}");
    assert_eq!(results[7], Err(DropReason::SubnetConnectionRateExceeded));
    // Another subnet is unaffected.
    assert_eq!(pending(&mut b, 100, "10.4.5.1"), Ok(()));
    assert_eq!(g.counters()["dropped.subnet_connection_rate_exceeded"], 3);
}

/// Refusals by libp2p's own connection-limit behaviour are counted by the guard too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libp2p_connection_limits_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig { max_established_incoming: 2, ..GuardConfig::default() };
    let g = guard(cfg, dir.path());
    let (addr, node_id, _events, node) = spawn_node(&g).await;
    let mut outcomes = Vec::new();
    let mut keep = Vec::new();
    for _ in 0..3 {
        let mut s = peer_swarm(Keypair::generate_ed25519());
        outcomes.push(dial_and_push(&mut s, node_id, &addr).await);
        keep.push(keep_polling(s));
    }
    assert_eq!(outcomes, vec![DialOutcome::Connected, DialOutcome::Connected, DialOutcome::Failed]);
    assert!(g.counters()["dropped.connection_limit_exceeded"] >= 1);
    let e = g.ledger(None, 100).into_iter().find(|e| e.reason == "connection_limit_exceeded").unwrap();
    assert!(e.detail.unwrap().contains("established incoming"));
    for k in keep {
        k.abort();
    }
    node.abort();
}

#[derive(libp2p::swarm::NetworkBehaviour)]
struct MemoryNode {
    memory: libp2p::memory_connection_limits::Behaviour,
    guard: GuardBehaviour,
}

/// Refusals by libp2p's memory-pressure behaviour are counted as `memory_limit_exceeded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_refusals_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let g = guard(GuardConfig::default(), dir.path());
    assert!(g.memory_connection_limits().is_some());
    let off =
        guard(GuardConfig { max_process_memory_bytes: 0, ..GuardConfig::default() }, &dir.path().join("off"));
    assert!(off.memory_connection_limits().is_none());
    // Any process is over a 1-byte limit (the config refuses such a value; build it directly).
    let mut node = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| g.tcp_transport(key, libp2p::tcp::Config::default()).unwrap())
        .unwrap()
        .with_behaviour(|_| MemoryNode {
            memory: libp2p::memory_connection_limits::Behaviour::with_max_bytes(1),
            guard: g.behaviour(),
        })
        .unwrap()
        .build();
    node.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr = within("listen address", async {
        loop {
            if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
                futures::StreamExt::select_next_some(&mut node).await
            {
                return address;
            }
        }
    })
    .await;
    let dialer = tokio::spawn(async move {
        let mut s = peer_swarm(Keypair::generate_ed25519());
        let _ = dial_once(&mut s, &addr).await;
        s
    });
    // The swarm reports the refusal after the behaviours saw it: wait for that event.
    within("the node to refuse the connection", async {
        loop {
            if let libp2p::swarm::SwarmEvent::IncomingConnectionError { .. } =
                futures::StreamExt::select_next_some(&mut node).await
            {
                return;
            }
        }
    })
    .await;
    assert_eq!(g.counters()["dropped.memory_limit_exceeded"], 1);
    let e = g.ledger(None, 10).into_iter().find(|e| e.reason == "memory_limit_exceeded").unwrap();
    assert!(e.detail.unwrap().contains("memory"));
    dialer.abort();
}
