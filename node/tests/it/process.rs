//! The daemon path end to end: a `palisade` process relays records between two in-process
//! nodes on other loopback addresses (127.0.0.1 ── 127.0.0.2 (process) ── 127.0.0.3).

use std::time::Duration;

use libp2p::Multiaddr;
use palisade_guard::{Guard, GuardConfig};
use palisade_net::{NetConfig, Network};
use palisade_store::{Store, StoreConfig};
use palisade_types::ed25519_dalek::SigningKey;
use palisade_types::fixtures::attestation;
use prometheus_client::registry::Registry;

use crate::{palisade, read_until_line, sigterm};

async fn in_process_node(dir: &std::path::Path, ip: &str, seed: u8) -> Network {
    let store = Store::open(&StoreConfig::new(dir.join("db"))).unwrap();
    let mut registry = Registry::default();
    let guard = Guard::new(GuardConfig::default(), store.clone(), &mut registry).unwrap();
    let net =
        NetConfig { listen: vec![format!("/ip4/{ip}/tcp/0")], verify_workers: 1, ..NetConfig::default() };
    let identity = libp2p::identity::Keypair::ed25519_from_bytes([seed; 32]).unwrap();
    Network::start(net, identity, SigningKey::from_bytes(&[seed; 32]), store, guard, &mut registry)
        .await
        .unwrap()
}

async fn listen_addr(network: &Network) -> Multiaddr {
    let handle = network.handle();
    for _ in 0..500 {
        if let Some(a) = handle.info().await.unwrap().listen_addrs.first() {
            return a.parse::<Multiaddr>().unwrap().with(libp2p::multiaddr::Protocol::P2p(handle.peer_id()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no listen address");
}

/// Starts a `palisade run` process listening on `ip`, bootstrapped to `bootstrap`; returns it
/// once it logs that it runs, with that log line.
async fn spawn_process_node(
    dir: &std::path::Path,
    ip: &str,
    bootstrap: &Multiaddr,
) -> (std::process::Child, String) {
    let listen = format!("/ip4/{ip}/tcp/0");
    let mut child = palisade(dir)
        .args(["run", "--listen", &listen, "--metrics-listen", "off", "--log-format", "pretty"])
        .args(["--bootstrap", &bootstrap.to_string()])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        read_until_line(stderr, "palisade is running", Duration::from_secs(60))
    })
    .await
    .unwrap();
    let running = lines.into_iter().find(|l| l.contains("palisade is running")).unwrap();
    (child, running)
}

/// Pulls `key=value` out of a log line (values end at a space; quotes are stripped).
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    let rest = &line[start..];
    let rest = rest.trim_start_matches('"');
    Some(rest.split(['"', ' ']).next()?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_palisade_process_verifies_stores_and_relays_records() {
    let tmp = tempfile::tempdir().unwrap();
    let a = in_process_node(&tmp.path().join("a"), "127.0.0.1", 1).await;
    let a_addr = listen_addr(&a).await;

    let b_dir = tmp.path().join("b");
    let (mut b, running) = spawn_process_node(&b_dir, "127.0.0.2", &a_addr).await;
    let running = &running;
    let b_listen = field(running, "listen").expect("listen address in the log");
    let b_peer = field(running, "peer_id").expect("peer id in the log");
    assert!(b_listen.contains("127.0.0.2"), "{running}");
    let b_addr: Multiaddr = format!("{b_listen}/p2p/{b_peer}").parse().unwrap();

    let c = in_process_node(&tmp.path().join("c"), "127.0.0.3", 3).await;
    let c_handle = c.handle();
    let mut c_events = c_handle.subscribe();
    c_handle.dial(b_addr).await.unwrap();

    // A publishes; C is connected only to the process, so whatever C gets went through it.
    let a_handle = a.handle();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(a_handle.submit(attestation(i)).await.unwrap().id);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !ids.iter().all(|id| c_handle.store().contains(id).unwrap()) {
        let _ = tokio::time::timeout_at(deadline, c_events.recv())
            .await
            .expect("records reach C through the process");
    }
    assert!(c_handle.peers().await.unwrap().iter().all(|p| p.peer_id == b_peer), "C only knows the process");

    // Clean stop of the process; its store holds the records.
    sigterm(&b);
    let status = tokio::task::spawn_blocking(move || b.wait().unwrap()).await.unwrap();
    assert!(status.success(), "{status:?}");
    let store = Store::open(&StoreConfig::new(b_dir.join("db"))).unwrap();
    assert!(ids.iter().all(|id| store.contains(id).unwrap()));
    c.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

/// A peer paused (SIGSTOP) for longer than gossip tolerates gets gossip again once it resumes:
/// whether gossipsub's handler for the connection gave up (five substream attempts) or our
/// messages to it kept failing, the connection is recycled (closed and redialled,
/// `palisade_gossip_dead_connections_total`), and records published after the resume reach it
/// by gossip, not by a sync round rounds later. Both nodes sync only on connect (interval
/// 1 h), so a record that arrives later than that came by gossip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_to_a_paused_peer_recovers_after_it_resumes() {
    use palisade_api::model::SourceView;
    use palisade_api::ApiClient;

    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::new(tmp.path().join("a/db"))).unwrap();
    let mut registry = Registry::default();
    let guard = Guard::new(GuardConfig::default(), store.clone(), &mut registry).unwrap();
    let net = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        verify_workers: 1,
        sync_interval_secs: 3600,
        ..NetConfig::default()
    };
    let identity = libp2p::identity::Keypair::ed25519_from_bytes([7; 32]).unwrap();
    let a = Network::start(net, identity, SigningKey::from_bytes(&[7; 32]), store, guard, &mut registry)
        .await
        .unwrap();
    let a_addr = listen_addr(&a).await;
    let a_handle = a.handle();

    let b_dir = tmp.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    std::fs::write(b_dir.join("palisade.toml"), "[network]\nsync_interval_secs = 3600\n").unwrap();
    let (mut b, _) = spawn_process_node(&b_dir, "127.0.0.2", &a_addr).await;
    let b_api = ApiClient::unix(b_dir.join("admin.sock")).with_timeout(Duration::from_secs(5));
    // How (and whether) B holds a record.
    let source_at_b = |id: palisade_types::RecordId| {
        let b_api = b_api.clone();
        async move { b_api.record(&id.to_string()).await.ok().map(|r| r.source) }
    };
    // Bounded wait for B to hold `id`.
    let reaches_b = |id: palisade_types::RecordId, within: Duration| {
        let source_at_b = &source_at_b;
        async move {
            let deadline = tokio::time::Instant::now() + within;
            loop {
                if let Some(s) = source_at_b(id).await {
                    return Some(s);
                }
                if tokio::time::Instant::now() > deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    // Gossip works: a record published once B joined the mesh reaches it by gossip (the first
    // ones may go before B's subscriptions arrive; they come by the connect-time sync).
    let mut joined = false;
    for i in 0..30 {
        let id = a_handle.submit(attestation(i)).await.unwrap().id;
        if reaches_b(id, Duration::from_secs(2)).await == Some(SourceView::Gossip) {
            joined = true;
            break;
        }
    }
    assert!(joined, "B never got a record by gossip");

    // B stops for 25 s (past GOSSIP_DEAD_AFTER) while A keeps publishing.
    crate::send_signal(&b, "STOP");
    let paused_until = tokio::time::Instant::now() + Duration::from_secs(25);
    let mut n = 100;
    while tokio::time::Instant::now() < paused_until {
        let _ = a_handle.submit(attestation(n)).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crate::send_signal(&b, "CONT");

    // Within 30 s of the resume, a record published then reaches B by gossip within 2 s.
    let resumed = tokio::time::Instant::now();
    let mut recovered_after = None;
    while resumed.elapsed() < Duration::from_secs(30) {
        let id = a_handle.submit(attestation(n)).await.unwrap().id;
        n += 1;
        if reaches_b(id, Duration::from_secs(2)).await == Some(SourceView::Gossip) {
            recovered_after = Some(resumed.elapsed());
            break;
        }
    }
    let recycled: u64 = ["slow_peer", "gossip_disabled"]
        .iter()
        .map(|reason| {
            a_handle
                .metrics()
                .gossip_dead_connections
                .get_or_create(&palisade_net::metrics::GossipDeadLabels { reason })
                .get()
        })
        .sum();
    assert!(
        recovered_after.is_some(),
        "gossip from A to B did not recover within 30 s of the resume (A recycled {recycled} connections)"
    );
    eprintln!("gossip recovered {recovered_after:?} after the resume; A recycled {recycled} connections");

    sigterm(&b);
    let status = tokio::task::spawn_blocking(move || b.wait().unwrap()).await.unwrap();
    assert!(status.success(), "{status:?}");
    a.shutdown().await.unwrap();
}
