//! # palisade-net
//!
//! The network layer. One task (the private `event_loop` module) owns the libp2p `Swarm`;
//! everything else holds a cloneable [`Handle`] that sends commands over a bounded channel
//! with oneshot replies and subscribes to [`NetEvent`]s. Records from peers pass the ingest
//! [`pipeline`] (cheap checks on the loop, batched signature checks on worker threads,
//! group-committed writes on a store thread). Anti-entropy [`sync`] pulls what gossip
//! missed.
//!
//! ```text
//!  Handle ──Command──► EventLoop ──owns──► Swarm<Behaviour>
//!    ▲                   │  ▲                 (limits, guard, identify, ping, gossipsub,
//!    └──NetEvent─────────┘  │                  kad, mdns, sync)
//!                           └── Finished ◄── verify workers ◄── verify queue
//!                                        ◄── store thread (group commit)
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

mod ack_commit;
mod behaviour;
pub mod config;
mod error;
mod event_loop;
pub mod gossip;
mod handle;
pub mod metrics;
mod own_check;
pub mod pipeline;
pub mod proof;
pub mod reason;
mod restore;
pub mod sync;
pub mod topics;
mod transport;

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::Swarm;
use palisade_guard::Guard;
use palisade_store::Store;
use palisade_types::ed25519_dalek::SigningKey;
use palisade_types::{AuthorKey, FeedWriter};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use behaviour::{IDENTIFY_PROTOCOL, KAD_PROTOCOL};
pub use config::NetConfig;
pub use error::NetError;
pub use event_loop::{ApiRecord, ApiSource, MAX_API_BATCH_RECORDS};
pub use handle::{Handle, NetEvent, NetInfo, PeerInfo, SubmitReceipt, API_INGEST_PATIENCE};
pub use metrics::{IngestStats, NetMetrics};
pub use pipeline::{Decision, Ingestor, PipelineConfig, MAX_COPIES_IN_FLIGHT_PER_RECORD};
pub use reason::{Acceptance, Reason};
pub use restore::{restore_backup, RESTORE_IN_FLIGHT};

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A running network: the swarm task plus its handle.
pub struct Network {
    handle: Handle,
    task: JoinHandle<()>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("handle", &self.handle).finish()
    }
}

/// Peers from the peer book dialled at start, most recently seen first.
pub const PEER_BOOK_REDIAL_PEERS: usize = 16;

/// Dials up to [`PEER_BOOK_REDIAL_PEERS`] peers of the peer book (most recently seen first,
/// not banned, not already a bootstrap peer), so a restarted node finds its network again
/// without bootstrap configuration. Their addresses also seed Kademlia. Returns how many were
/// dialled. A failed dial costs nothing: the peer book only holds addresses we dialled or a
/// peer announced as its listen addresses.
fn redial_peer_book(
    swarm: &mut Swarm<behaviour::Behaviour>,
    store: &Store,
    guard: &Guard,
    cfg: &NetConfig,
) -> usize {
    let mut book = match store.peer_book() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the peer book; starting from the bootstrap peers only");
            return 0;
        }
    };
    book.sort_by_key(|e| std::cmp::Reverse(e.last_seen_ms));
    let bootstrap: std::collections::HashSet<libp2p::PeerId> =
        cfg.bootstrap_peers().into_iter().filter_map(|(peer, _)| peer).collect();
    let me = *swarm.local_peer_id();
    let mut dialled = 0;
    for entry in book {
        if dialled >= PEER_BOOK_REDIAL_PEERS {
            break;
        }
        let Ok(peer) = entry.peer_id.parse::<libp2p::PeerId>() else { continue };
        if peer == me || bootstrap.contains(&peer) || guard.is_banned_peer(&peer) {
            continue;
        }
        let addrs: Vec<libp2p::Multiaddr> = entry
            .addrs
            .iter()
            .filter_map(|a| a.parse::<libp2p::Multiaddr>().ok())
            .map(|a| match a.iter().last() {
                Some(libp2p::multiaddr::Protocol::P2p(_)) => a,
                _ => a.with(libp2p::multiaddr::Protocol::P2p(peer)),
            })
            .take(PEER_BOOK_ADDRS_PER_PEER)
            .collect();
        if addrs.is_empty() {
            continue;
        }
        for a in &addrs {
            swarm.behaviour_mut().kad.add_address(&peer, a.clone());
        }
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer).addresses(addrs).build();
        match swarm.dial(opts) {
            Ok(()) => dialled += 1,
            Err(e) => tracing::debug!(%peer, error = %e, "cannot dial peer from the peer book"),
        }
    }
    if dialled > 0 {
        tracing::info!(peers = dialled, "dialling peers from the peer book");
    }
    dialled
}

/// Addresses kept per peer in the peer book (and dialled at start).
pub const PEER_BOOK_ADDRS_PER_PEER: usize = 4;

impl Network {
    /// Builds the swarm, starts listening and dialling the bootstrap peers, and spawns the
    /// event loop. `identity` is the libp2p key; `author` signs this node's records.
    pub async fn start(
        cfg: NetConfig,
        identity: Keypair,
        author: SigningKey,
        store: Store,
        guard: Guard,
        registry: &mut Registry,
    ) -> Result<Network, NetError> {
        cfg.validate().map_err(|e| NetError::Setup(e.to_string()))?;
        let peer_id = identity.public().to_peer_id();
        let transport = transport::build(&identity, &guard).map_err(NetError::Setup)?;
        let metrics = NetMetrics::new(registry);
        let mut behaviour = behaviour::Behaviour::new(&identity, &cfg, &guard, &metrics, registry)
            .map_err(NetError::Setup)?;
        for t in topics::TopicKind::ALL {
            behaviour
                .gossipsub
                .subscribe(&t.topic())
                .map_err(|e| NetError::Setup(format!("subscribe: {e}")))?;
        }
        let libp2p_metrics = libp2p::metrics::Metrics::new(registry);
        let swarm_cfg = libp2p::swarm::Config::with_tokio_executor()
            .with_idle_connection_timeout(Duration::from_secs(guard.limits().idle_connection_timeout_secs));
        let mut swarm = Swarm::new(transport, behaviour, peer_id, swarm_cfg);

        for addr in cfg.listen_addrs() {
            transport::ensure_port_free(&addr).map_err(|e| NetError::Listen {
                addr: addr.to_string(),
                reason: if e.kind() == std::io::ErrorKind::AddrInUse {
                    format!("{e} (another process, perhaps another palisade node, listens there)")
                } else {
                    e.to_string()
                },
            })?;
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen { addr: addr.to_string(), reason: e.to_string() })?;
        }
        for addr in cfg.external_addrs() {
            swarm.add_external_address(addr);
        }
        // Bootstrap entries are dialled by the event loop as it starts (and re-dialled there).
        let me = *swarm.local_peer_id();
        for (peer, addr) in cfg.bootstrap_peers() {
            if let Some(peer) = peer.filter(|p| *p != me) {
                swarm.behaviour_mut().kad.add_address(&peer, addr);
            }
        }
        let redialled = redial_peer_book(&mut swarm, &store, &guard, &cfg);
        if !cfg.bootstrap.is_empty() || redialled > 0 {
            let _ = swarm.behaviour_mut().kad.bootstrap();
        }

        let author_key = AuthorKey(author.verifying_key().to_bytes());
        let last = store.latest_in_feed(&author_key)?;
        let writer = FeedWriter::resume(author, last);
        let pipeline_cfg = pipeline::PipelineConfig::from_net(&cfg);
        let live_threads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (pipeline, finished) = pipeline::Pipeline::start(
            pipeline_cfg,
            store.clone(),
            guard.clone(),
            metrics.clone(),
            live_threads.clone(),
        )
        .map_err(|e| NetError::Setup(format!("starting pipeline threads: {e}")))?;

        let (cmd_tx, cmd_rx) = mpsc::channel(handle::COMMAND_QUEUE);
        let (events, _) = broadcast::channel(handle::EVENT_QUEUE);
        let own_gate = std::sync::Arc::new(own_check::OwnFeedGate::new());
        let own_check = own_check::OwnFeedCheck::start(
            own_gate.clone(),
            author_key,
            last.map_or(0, |(seq, _)| seq),
            own_check::CheckLimits {
                window: std::time::Duration::from_secs(cfg.own_feed_check_secs),
                peers: cfg.own_feed_check_peers,
            },
            cfg.bootstrap.is_empty() && redialled == 0 && !cfg.mdns,
            metrics.clone(),
        );
        let handle = Handle::new(
            cmd_tx,
            events.clone(),
            store.clone(),
            guard.clone(),
            metrics.clone(),
            writer,
            own_gate,
            peer_id,
            live_threads,
        );
        let shutdown = CancellationToken::new();
        let event_loop = event_loop::EventLoop::new(event_loop::EventLoopParts {
            swarm,
            cfg,
            commands: cmd_rx,
            finished,
            pipeline,
            events,
            store,
            guard,
            metrics,
            libp2p_metrics,
            own_check,
            shutdown: shutdown.clone(),
        });
        info!(%peer_id, author = %author_key, "network starting");
        let task = tokio::spawn(event_loop.run());
        Ok(Network { handle, task, shutdown })
    }

    /// The handle.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the event loop, drains the pipeline (every queued record decided, the store
    /// flushed) and waits for it. No task outlives this call.
    pub async fn shutdown(self) -> Result<(), NetError> {
        self.shutdown.cancel();
        self.task.await.map_err(|_| NetError::Stopped)
    }
}
