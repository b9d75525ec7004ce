//! `TestNode`: a full network (store, guard, swarm) in a temp dir, plus helpers.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use palisade_guard::{Guard, GuardConfig};
use palisade_net::{Handle, NetConfig, NetEvent, Network};
use palisade_store::{Store, StoreConfig};
use palisade_types::ed25519_dalek::SigningKey;
use palisade_types::{RecordId, Statement};
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

pub(crate) const WAIT: Duration = Duration::from_secs(60);

pub(crate) struct TestNode {
    pub(crate) network: Option<Network>,
    pub(crate) handle: Handle,
    pub(crate) events: broadcast::Receiver<NetEvent>,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) seed: u8,
    pub(crate) addr: Multiaddr,
}

pub(crate) fn net_config() -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        verify_workers: 1,
        // Sync rounds are also triggered on connect; the timer is the safety net.
        sync_interval_secs: 2,
        ..NetConfig::default()
    }
}

pub(crate) fn guard_config() -> GuardConfig {
    // Tests run many nodes on 127.0.0.1 and push records faster than a production author.
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

impl TestNode {
    pub(crate) async fn start(seed: u8) -> TestNode {
        Self::start_in(tempfile::tempdir().unwrap(), seed, net_config(), guard_config()).await
    }

    pub(crate) async fn start_with(seed: u8, net: NetConfig, guard: GuardConfig) -> TestNode {
        Self::start_in(tempfile::tempdir().unwrap(), seed, net, guard).await
    }

    pub(crate) async fn start_in(
        dir: tempfile::TempDir,
        seed: u8,
        net: NetConfig,
        guard: GuardConfig,
    ) -> TestNode {
        Self::start_with_quota(dir, seed, net, guard, palisade_store::DEFAULT_MAX_STORE_BYTES).await
    }

    /// A node whose store quota (`store.max_bytes`) is `max_bytes`.
    pub(crate) async fn start_with_quota(
        dir: tempfile::TempDir,
        seed: u8,
        net: NetConfig,
        guard: GuardConfig,
        max_bytes: u64,
    ) -> TestNode {
        let store =
            Store::open(&StoreConfig { max_bytes, ..StoreConfig::new(dir.path().join("db")) }).unwrap();
        let mut registry = Registry::default();
        let guard = Guard::new(guard, store.clone(), &mut registry).unwrap();
        let identity = libp2p::identity::Keypair::ed25519_from_bytes([seed; 32]).unwrap();
        let author = SigningKey::from_bytes(&[seed.wrapping_add(100); 32]);
        let network = Network::start(net, identity, author, store, guard, &mut registry).await.unwrap();
        let handle = network.handle();
        let mut events = handle.subscribe();
        let _ = &mut events;
        // Wait until the listener is up so others can dial it.
        let addr = loop {
            let info = handle.info().await.unwrap();
            if let Some(a) = info.listen_addrs.first() {
                break a.parse::<Multiaddr>().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let addr = addr.with(libp2p::multiaddr::Protocol::P2p(handle.peer_id()));
        TestNode { network: Some(network), handle, events, dir, seed, addr }
    }

    /// Stops the node, keeping its data directory.
    pub(crate) async fn stop(mut self) -> (tempfile::TempDir, u8) {
        self.network.take().unwrap().shutdown().await.unwrap();
        (self.dir, self.seed)
    }

    pub(crate) fn peer_id(&self) -> PeerId {
        self.handle.peer_id()
    }

    pub(crate) fn store(&self) -> &Store {
        self.handle.store()
    }

    pub(crate) async fn connect(&mut self, other: &mut TestNode) {
        self.handle.dial(other.addr.clone()).await.unwrap();
        let want = other.peer_id().to_string();
        self.wait_for_event(|e| matches!(e, NetEvent::PeerConnected { peer, .. } if *peer == want)).await;
    }

    /// Waits for an event matching `pred` (events since the node started are buffered).
    pub(crate) async fn wait_for_event(&mut self, mut pred: impl FnMut(&NetEvent) -> bool) -> NetEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(e)) if pred(&e) => return e,
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => panic!("node {} stopped", self.seed),
                Err(_) => panic!("no matching event within {WAIT:?} on node {}", self.seed),
            }
        }
    }

    pub(crate) async fn submit(&self, statement: Statement) -> RecordId {
        self.handle.submit(statement).await.unwrap().id
    }

    pub(crate) fn has(&self, id: &RecordId) -> bool {
        self.store().contains(id).unwrap()
    }

    pub(crate) fn has_all(&self, ids: &[RecordId]) -> bool {
        ids.iter().all(|id| self.has(id))
    }

    /// Waits until `cond` holds, re-checking after every network event (and at least every
    /// 200 ms, for conditions no event announces).
    pub(crate) async fn wait_for(&mut self, mut cond: impl FnMut(&TestNode) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if cond(self) {
                return;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "condition not met within {WAIT:?} on node {}", self.seed);
            let step = left.min(Duration::from_millis(200));
            match tokio::time::timeout(step, self.events.recv()).await {
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) | Err(_) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => panic!("node {} stopped", self.seed),
            }
        }
    }
}

/// Connects nodes in a line: 0–1–2–…
pub(crate) async fn line(nodes: &mut [TestNode]) {
    for i in 1..nodes.len() {
        let (left, right) = nodes.split_at_mut(i);
        right[0].connect(&mut left[i - 1]).await;
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
