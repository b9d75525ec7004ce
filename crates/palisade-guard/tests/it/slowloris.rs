//! Layer 2: slow-loris sockets are closed by the handshake timeout and never hold more than
//! the pending cap.

use std::time::{Duration, Instant};

use palisade_guard::GuardConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::*;

/// Connects and then either sends nothing or trickles a valid multistream-select header one
/// byte per second; returns how long the node kept the socket open.
async fn loris(addr: std::net::SocketAddr, trickle: bool) -> Duration {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    let header = b"\x13/multistream/1.0.0\n";
    let mut buf = [0u8; 256];
    let mut next_byte = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return start.elapsed(),
                // The node may answer with its own header; keep waiting for the close.
                Ok(_) => {}
            },
            _ = tick.tick(), if trickle && next_byte < header.len() => {
                if s.write_all(&header[next_byte..=next_byte]).await.is_err() {
                    return start.elapsed();
                }
                next_byte += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_trickling_sockets_are_closed_within_the_handshake_timeout() {
    const PENDING_CAP: u32 = 8;
    const SOCKETS: usize = 40;
    const TIMEOUT: Duration = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let cfg = GuardConfig {
        handshake_timeout_secs: TIMEOUT.as_secs(),
        max_pending_incoming: PENDING_CAP,
        // The pending cap is what this test trips, not the per-IP caps.
        max_connections_per_ip: 1000,
        max_connections_per_subnet: 1000,
        ip_new_connections_per_sec: 10_000,
        ip_new_connections_burst: 10_000,
        subnet_new_connections_per_sec: 10_000,
        subnet_new_connections_burst: 10_000,
        ..GuardConfig::default()
    };
    let g = guard(cfg, dir.path());
    let (addr, _id, _events, node) = spawn_node(&g).await;
    let sa = socket_addr(&addr).unwrap();

    let tasks: Vec<_> = (0..SOCKETS).map(|i| tokio::spawn(loris(sa, i % 2 == 0))).collect();
    let mut held = Vec::new();
    for t in tasks {
        held.push(within("loris socket to be closed", t).await.unwrap());
    }
    held.sort();
    // Everything is closed soon after the timeout (generous slack for a loaded machine).
    let longest = *held.last().unwrap();
    assert!(longest <= TIMEOUT + Duration::from_secs(3), "a socket was held {longest:?}");
    // Sockets over the pending cap were refused right away; at most the cap were held until
    // the timeout.
    let long_lived = held.iter().filter(|d| **d >= TIMEOUT / 2).count();
    assert!(long_lived <= PENDING_CAP as usize, "{long_lived} sockets held past {:?}: {held:?}", TIMEOUT / 2);
    assert!(long_lived >= 1, "the handshake timeout should have closed the admitted ones: {held:?}");
    let refused = held.iter().filter(|d| **d < TIMEOUT / 2).count();
    assert!(refused >= SOCKETS - PENDING_CAP as usize);

    // Both limits are counted: libp2p's pending cap and the guard's handshake timeout.
    let c = g.counters();
    assert!(c["dropped.connection_limit_exceeded"] >= (SOCKETS - PENDING_CAP as usize) as u64, "{c:?}");
    assert!(c["dropped.handshake_timeout"] >= long_lived as u64, "{c:?}");
    let limit = g.ledger(None, 1000).into_iter().find(|e| e.reason == "connection_limit_exceeded").unwrap();
    assert!(limit.detail.as_deref().unwrap_or("").contains("pending incoming"), "{limit:?}");

    // The node still serves an honest peer afterwards.
    let mut honest = peer_swarm(libp2p::identity::Keypair::generate_ed25519());
    assert_eq!(dial_once(&mut honest, &addr).await, DialOutcome::Connected);
    node.abort();
}
