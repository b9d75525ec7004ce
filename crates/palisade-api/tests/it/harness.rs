//! `ApiNode`: a full in-process node (store, guard, network) with its admin API on a Unix
//! socket in a temp dir, and a client for it.

use std::time::Duration;

use libp2p::Multiaddr;
use palisade_api::{ApiClient, ApiConfig, ApiServer};
use palisade_guard::{Guard, GuardConfig};
use palisade_net::{Handle, NetConfig, NetEvent, Network};
use palisade_store::{Store, StoreConfig};
use palisade_types::ed25519_dalek::SigningKey;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

pub(crate) const WAIT: Duration = Duration::from_secs(60);

pub(crate) struct ApiNode {
    pub(crate) network: Option<Network>,
    pub(crate) server: Option<ApiServer>,
    pub(crate) handle: Handle,
    pub(crate) api: ApiClient,
    pub(crate) events: broadcast::Receiver<NetEvent>,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) addr: Multiaddr,
    pub(crate) registry: Registry,
}

pub(crate) fn net_config() -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        verify_workers: 1,
        sync_interval_secs: 2,
        ..NetConfig::default()
    }
}

/// Tests run many nodes on 127.0.0.1 and push records faster than a production author.
pub(crate) fn guard_config() -> GuardConfig {
    GuardConfig {
        ip_new_connections_per_sec: 1000,
        ip_new_connections_burst: 1000,
        subnet_new_connections_per_sec: 1000,
        subnet_new_connections_burst: 1000,
        max_connections_per_ip: 64,
        max_connections_per_subnet: 256,
        author_records_per_sec: 10_000,
        author_burst_records: 10_000,
        peer_records_per_sec: 10_000,
        peer_burst_records: 10_000,
        peer_messages_per_sec: 10_000,
        peer_burst_messages: 10_000,
        peer_cost_units_per_sec: 1_000_000,
        peer_burst_cost_units: 1_000_000,
        ..GuardConfig::default()
    }
}

impl ApiNode {
    pub(crate) async fn start(seed: u8) -> ApiNode {
        Self::start_with(seed, |_| {}).await
    }

    /// Starts a node; `tweak` adjusts the API config (its paths point into the temp dir).
    pub(crate) async fn start_with(seed: u8, tweak: impl FnOnce(&mut ApiConfig)) -> ApiNode {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
        let mut registry = Registry::default();
        let guard = Guard::new(guard_config(), store.clone(), &mut registry).unwrap();
        let identity = libp2p::identity::Keypair::ed25519_from_bytes([seed; 32]).unwrap();
        let author = SigningKey::from_bytes(&[seed.wrapping_add(100); 32]);
        let network =
            Network::start(net_config(), identity, author, store, guard, &mut registry).await.unwrap();
        let handle = network.handle();
        let events = handle.subscribe();
        let addr = loop {
            let info = handle.info().await.unwrap();
            if let Some(a) = info.listen_addrs.first() {
                break a.parse::<Multiaddr>().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let addr = addr.with(libp2p::multiaddr::Protocol::P2p(handle.peer_id()));
        let mut cfg = ApiConfig::new(dir.path());
        tweak(&mut cfg);
        let server = ApiServer::start(cfg, handle.clone(), &mut registry).await.unwrap();
        let api = ApiClient::unix(server.socket_path()).with_timeout(WAIT);
        ApiNode { network: Some(network), server: Some(server), handle, api, events, dir, addr, registry }
    }

    pub(crate) fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// Connects `self` to `other` through the API and waits for the connection.
    pub(crate) async fn connect(&mut self, other: &ApiNode) {
        self.api.dial(&other.addr.to_string()).await.unwrap();
        let want = other.handle.peer_id().to_string();
        self.wait_for_event(|e| matches!(e, NetEvent::PeerConnected { peer, .. } if *peer == want)).await;
    }

    pub(crate) async fn wait_for_event(&mut self, mut pred: impl FnMut(&NetEvent) -> bool) -> NetEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(e)) if pred(&e) => return e,
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => panic!("node stopped"),
                Err(_) => panic!("no matching event within {WAIT:?}"),
            }
        }
    }

    pub(crate) async fn stop(mut self) {
        self.server.take().unwrap().shutdown().await;
        self.network.take().unwrap().shutdown().await.unwrap();
    }
}

pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Signs `statements` as a feed of another author (`seed`), issued now.
pub(crate) fn foreign_feed(
    seed: u8,
    statements: Vec<palisade_types::Statement>,
) -> Vec<palisade_types::VerifiedRecord> {
    foreign_feed_at(seed, statements, palisade_net::now_ms())
}

/// Like [`foreign_feed`], issued at `issued_at_ms`.
pub(crate) fn foreign_feed_at(
    seed: u8,
    statements: Vec<palisade_types::Statement>,
    issued_at_ms: u64,
) -> Vec<palisade_types::VerifiedRecord> {
    let mut w = palisade_types::FeedWriter::new(palisade_types::fixtures::key(seed));
    statements.into_iter().map(|s| w.sign_next(s, issued_at_ms).unwrap()).collect()
}

/// The export line of a record.
pub(crate) fn export_line(r: &palisade_types::VerifiedRecord) -> palisade_api::model::ExportLine {
    use base64::Engine as _;
    palisade_api::model::ExportLine {
        id: Some(r.id()),
        kind: Some(r.kind()),
        envelope: base64::engine::general_purpose::STANDARD.encode(r.wire_bytes()),
    }
}

/// An attestation statement as JSON, for `POST /v1/records`.
pub(crate) fn attestation_json(name: &str, digest: &str, verdict: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "attestation",
        "subject": {"name": name, "digests": [digest]},
        "scanner": {"name": "trivy", "version": "0.56.1"},
        "verdict": verdict,
        "score": 850,
        "finding_counts": {"critical": 0, "high": 1, "medium": 0, "low": 2, "none": 0}
    })
}

/// An anomaly statement as JSON.
pub(crate) fn anomaly_json(service: &str, severity: u8) -> serde_json::Value {
    let now = palisade_net::now_ms();
    serde_json::json!({
        "kind": "anomaly",
        "source": format!("otlp://collector/{service}"),
        "stream_type": "metrics",
        "labels": {"kind": "latency", "service": service},
        "severity_number": severity,
        "severity_text": "ERROR",
        "score": 700,
        "window_start_ms": now - 60_000,
        "window_end_ms": now - 1_000,
        "detector": {"name": "zscore", "version": "1.2.0"},
        "summary": format!("p99 latency high on {service}")
    })
}

pub(crate) fn sha(byte: u8) -> String {
    format!("sha256:{}", hex::encode([byte; 32]))
}
