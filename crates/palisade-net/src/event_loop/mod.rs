//! The task that owns the `Swarm`.
//!
//! Sources: finished pipeline decisions, commands from [`Handle`](crate::Handle)s, sync
//! responses served by blocking tasks, verified equivocation proofs, swarm events and
//! timers. Each wake-up drains every source up to a budget before it waits again, so a
//! flooding source (a peer spamming gossip, a burst of API calls) cannot starve the others;
//! the waiting `select!` is `biased` with shutdown first.

mod api_ingest;
mod dials;
mod ingest;
mod liveness;
mod peers;
mod sync;

use std::collections::HashMap;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use libp2p::gossipsub;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, kad, mdns, Multiaddr, PeerId, Swarm};
use palisade_guard::{Guard, PenaltyReason};
use palisade_store::Store;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::handle::{Command, NetEvent, NetInfo, PeerInfo};
use crate::metrics::NetMetrics;
use crate::pipeline::{Finished, Pipeline};
use crate::proof::PendingProofs;
use crate::sync::client::SyncClient;
use crate::sync::SyncResponse;
use crate::topics::TopicKind;
use crate::NetConfig;
pub use api_ingest::{ApiRecord, ApiSource, MAX_API_BATCH_RECORDS};
use dials::BootstrapPeer;

/// Handles up to [`SOURCE_BUDGET`] items already waiting on the channel `$rx`, each with
/// `$handle`, without waiting; evaluates to whether it handled any. Each source of the loop is
/// listed once with it (the shape of reth's `poll_nested_stream_with_budget!`).
macro_rules! drain_budgeted {
    ($($rx:ident).+, |$item:pat_param| $handle:expr) => {{
        let mut handled = false;
        for _ in 0..SOURCE_BUDGET {
            match $($rx).+.try_recv() {
                Ok($item) => {
                    $handle;
                    handled = true;
                }
                Err(_) => break,
            }
        }
        handled
    }};
}

/// Items handled per source per wake-up. Large enough to keep throughput, small enough that
/// one source cannot delay the others by more than a few milliseconds.
const SOURCE_BUDGET: usize = 64;
/// Capacity of the channel that brings served sync responses back to the loop.
const SERVE_QUEUE: usize = 256;

struct Connected {
    addr: Multiaddr,
    direction: &'static str,
    since_ms: u64,
    connections: usize,
    agent: Option<String>,
    /// Identify lists a gossipsub protocol (so "gossipsub not supported" means a dead handler).
    speaks_gossip: bool,
    /// The peer's announced listen addresses (identify), to redial an inbound peer.
    listen_addrs: Vec<Multiaddr>,
}

/// Announced listen addresses kept per connected peer for redialling.
const LISTEN_ADDRS_KEPT: usize = 4;

pub(crate) struct EventLoop {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) cfg: NetConfig,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) finished: mpsc::Receiver<Finished>,
    pub(crate) pipeline: Pipeline,
    pub(crate) events: broadcast::Sender<NetEvent>,
    pub(crate) store: Store,
    pub(crate) guard: Guard,
    pub(crate) metrics: NetMetrics,
    pub(crate) libp2p_metrics: libp2p::metrics::Metrics,
    pub(crate) shutdown: CancellationToken,
    pub(crate) serve_tx: mpsc::Sender<(PeerId, ResponseChannel<SyncResponse>, SyncResponse)>,
    pub(crate) serve_rx: mpsc::Receiver<(PeerId, ResponseChannel<SyncResponse>, SyncResponse)>,
    compared_tx: mpsc::Sender<sync::HeadsCompared>,
    compared_rx: mpsc::Receiver<sync::HeadsCompared>,
    connected: HashMap<PeerId, Connected>,
    /// What we asked peers for (see [`SyncClient`]).
    sync: SyncClient<OutboundRequestId>,
    /// Sync requests of each peer being answered by blocking tasks.
    serving: HashMap<PeerId, usize>,
    /// Taken by each sync/2 reconcile answer while it scans (see [`sync::ReconcileTurn`]).
    reconciling: sync::ReconcileTurn,
    /// Connections on which gossip died, to close and redial.
    liveness: liveness::GossipLiveness,
    /// Equivocation proofs whose halves are in the pipeline.
    proofs: PendingProofs,
    /// Admin API batches (import, local submit) whose records are in the pipeline.
    api_batches: api_ingest::ApiBatches,
    /// Admin dials waiting for their outcome (bounded).
    dials: dials::PendingDials,
    /// Bootstrap peers and when each may be dialled again: a bootstrap peer that is down (or
    /// not up yet) is retried with exponential backoff until connected, and again whenever
    /// its connection drops.
    bootstrap: Vec<BootstrapPeer>,
    /// The own-feed check at start (`own_check.rs`).
    own_check: crate::own_check::OwnFeedCheck,
    /// Blocking helpers (sync serving, heads comparison) that hold store handles; waited for at
    /// shutdown.
    tasks: tokio_util::task::TaskTracker,
}

pub(crate) struct EventLoopParts {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) cfg: NetConfig,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) finished: mpsc::Receiver<Finished>,
    pub(crate) pipeline: Pipeline,
    pub(crate) events: broadcast::Sender<NetEvent>,
    pub(crate) store: Store,
    pub(crate) guard: Guard,
    pub(crate) metrics: NetMetrics,
    pub(crate) libp2p_metrics: libp2p::metrics::Metrics,
    pub(crate) own_check: crate::own_check::OwnFeedCheck,
    pub(crate) shutdown: CancellationToken,
}

impl EventLoop {
    pub(crate) fn new(p: EventLoopParts) -> EventLoop {
        let now = tokio::time::Instant::now();
        let me = *p.swarm.local_peer_id();
        // Due now: the first heartbeat, as the loop starts, dials them.
        let bootstrap = p
            .cfg
            .bootstrap_peers()
            .into_iter()
            .map(|(named, addr)| BootstrapPeer::new(named, addr, me, now))
            .collect();
        let (serve_tx, serve_rx) = mpsc::channel(SERVE_QUEUE);
        let sync = SyncClient::new(sync::client_limits(&p.cfg));
        let (compared_tx, compared_rx) = mpsc::channel(sync::COMPARED_QUEUE);
        EventLoop {
            swarm: p.swarm,
            cfg: p.cfg,
            commands: p.commands,
            finished: p.finished,
            pipeline: p.pipeline,
            events: p.events,
            store: p.store,
            guard: p.guard,
            metrics: p.metrics,
            libp2p_metrics: p.libp2p_metrics,
            shutdown: p.shutdown,
            serve_tx,
            serve_rx,
            compared_tx,
            compared_rx,
            connected: HashMap::new(),
            sync,
            serving: HashMap::new(),
            reconciling: std::sync::Arc::default(),
            liveness: liveness::GossipLiveness::default(),
            proofs: PendingProofs::default(),
            api_batches: api_ingest::ApiBatches::default(),
            dials: dials::PendingDials::default(),
            bootstrap,
            own_check: p.own_check,
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        let mut sync_tick = tokio::time::interval(self.cfg.sync_interval());
        sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut kad_walk = tokio::time::interval(Duration::from_secs(self.cfg.kad_random_walk_interval_secs));
        kad_walk.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            // Sweep every source without waiting, each up to its budget.
            let sweep_started = std::time::Instant::now();
            let mut worked = false;
            worked |= drain_budgeted!(self.finished, |f| self.on_finished(f));
            worked |= drain_budgeted!(self.commands, |c| self.on_command(c));
            worked |= drain_budgeted!(self.serve_rx, |(peer, channel, response)| {
                self.send_sync_response(peer, channel, response)
            });
            worked |= drain_budgeted!(self.compared_rx, |c| self.on_heads_compared(c));
            for _ in 0..SOURCE_BUDGET {
                match self.swarm.next().now_or_never() {
                    Some(Some(event)) => {
                        self.on_swarm_event(event);
                        worked = true;
                    }
                    _ => break,
                }
            }
            if self.shutdown.is_cancelled() {
                break;
            }
            if worked {
                self.metrics.loop_iteration_seconds.observe(sweep_started.elapsed().as_secs_f64());
                // Timers still get their turn under sustained load.
                if sync_tick.tick().now_or_never().is_some() {
                    self.sync_timer_round();
                }
                if heartbeat.tick().now_or_never().is_some() {
                    self.heartbeat();
                }
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                Some(f) = self.finished.recv() => self.on_finished(f),
                Some(c) = self.commands.recv() => self.on_command(c),
                Some((peer, channel, response)) = self.serve_rx.recv() => self.send_sync_response(peer, channel, response),
                Some(c) = self.compared_rx.recv() => self.on_heads_compared(c),
                Some(event) = self.swarm.next() => self.on_swarm_event(event),
                _ = sync_tick.tick() => self.sync_timer_round(),
                _ = heartbeat.tick() => self.heartbeat(),
                _ = kad_walk.tick() => self.random_walk(),
            }
        }
        self.stop().await;
    }

    /// Drains the pipeline (every queued record is decided and stored, the store flushed)
    /// and returns; dropping the swarm closes all connections.
    async fn stop(mut self) {
        // Close every connection and wait (bounded) for the swarm to report them closed: a
        // connection task holds the throttled muxer, hence the guard and the store, and must
        // not outlive shutdown.
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        info!(peers = peers.len(), "network stopping: closing connections");
        for p in peers {
            let _ = self.swarm.disconnect_peer_id(p);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.swarm.connected_peers().next().is_some() {
            tokio::select! {
                _ = self.swarm.select_next_some() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    warn!("connections did not close within 5 s; dropping them");
                    break;
                }
            }
        }
        info!("network stopping: draining the ingest pipeline");
        self.tasks.close();
        self.tasks.wait().await;
        let EventLoop { pipeline, mut finished, swarm, .. } = self;
        drop(swarm);
        let join = tokio::task::spawn_blocking(move || pipeline.shutdown());
        // Keep receiving so workers blocked on a full channel can finish.
        while finished.recv().await.is_some() {}
        if join.await.is_err() {
            warn!("pipeline shutdown task failed");
        }
        info!("network stopped");
    }

    fn emit(&self, event: NetEvent) {
        // No receivers is fine; lagging receivers lose the oldest events.
        let _ = self.events.send(event);
    }

    fn peer_ip(&self, peer: &PeerId) -> Option<std::net::IpAddr> {
        self.connected.get(peer).and_then(|c| palisade_guard::multiaddr_ip(&c.addr))
    }

    fn penalize(&self, peer: PeerId, reason: PenaltyReason) {
        let outcome = self.guard.penalize(&peer, self.peer_ip(&peer), reason);
        debug!(%peer, ?reason, ?outcome, "penalised peer");
    }

    // ---- commands ----

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { record, reply } => {
                self.pipeline.mark_seen(record.id());
                let topic = TopicKind::for_record(record.kind()).topic();
                let gossiped =
                    match self.swarm.behaviour_mut().gossipsub.publish(topic, (*record).into_wire_bytes()) {
                        Ok(_) => true,
                        Err(e) => {
                            debug!(error = %e, "record not gossiped now; peers will get it by sync");
                            false
                        }
                    };
                let _ = reply.send(gossiped);
            }
            Command::Dial { addr, reply } => self.admin_dial(addr, reply),
            Command::Disconnect { peer, reply } => {
                let _ = reply.send(self.swarm.disconnect_peer_id(peer).is_ok());
            }
            Command::Peers { reply } => {
                let gossipsub = &self.swarm.behaviour().gossipsub;
                let peers = self
                    .connected
                    .iter()
                    .map(|(peer, c)| PeerInfo {
                        peer_id: peer.to_string(),
                        addr: c.addr.to_string(),
                        direction: c.direction,
                        connections: c.connections,
                        since_ms: c.since_ms,
                        gossip_score: gossipsub.peer_score(peer),
                        agent: c.agent.clone(),
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Info { reply } => {
                let info = NetInfo {
                    peer_id: self.swarm.local_peer_id().to_string(),
                    listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
                    external_addrs: self.swarm.external_addresses().map(|a| a.to_string()).collect(),
                    connected_peers: self.connected.len(),
                };
                let _ = reply.send(info);
            }
            Command::SyncNow { peer, reply } => {
                let _ = reply.send(self.sync_round(peer));
            }
            Command::Ingest { source, records, reply } => self.on_api_ingest(source, records, reply),
        }
    }

    // ---- timers ----

    fn heartbeat(&mut self) {
        self.redial_bootstrap();
        self.own_check.tick(tokio::time::Instant::now());
        self.metrics.sync_records_requested.set(self.sync.records_requested() as i64);
        self.metrics.sync_requests_pending.set(self.sync.pending_len() as i64);
        let state = self.guard.state_writer().stats();
        self.metrics.state_writes_pending.set(i64::try_from(state.pending).unwrap_or(i64::MAX));
        // The writer counts since start; the counter follows it.
        let refused_before = self.metrics.state_writes_refused.get();
        self.metrics.state_writes_refused.inc_by(state.refused.saturating_sub(refused_before));
        let peers: Vec<PeerId> = self.connected.keys().copied().collect();
        for peer in peers {
            // Feed the guard's reputation into gossipsub's P5 so mesh decisions see it too.
            let score = self.guard.score(&peer);
            self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, score);
            // The other direction: gossipsub ignores a graylisted peer's RPCs, but the peer
            // still holds a connection slot and keeps sending. Each second below the
            // graylist threshold costs a peer the guard has caught too some reputation, so it
            // is disconnected and then banned.
            let gossip_score = self.swarm.behaviour().gossipsub.peer_score(&peer).unwrap_or(0.0);
            if crate::gossip::graylist_penalty_due(gossip_score, score) {
                self.penalize(peer, PenaltyReason::ProtocolViolation);
            }
        }
    }

    fn random_walk(&mut self) {
        self.swarm.behaviour_mut().kad.get_closest_peers(PeerId::random());
    }

    // ---- swarm events ----

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.libp2p_metrics_record(&event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip_message(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            })) if self.connected.contains_key(&peer_id) => self.on_slow_peer(peer_id, failed_messages),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::GossipsubNotSupported {
                peer_id,
            })) => self.on_gossip_not_supported(peer_id),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_sync_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => self.on_identified(peer_id, info),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                self.on_mdns_discovered(found)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. })) => {
                debug!(%peer, "kademlia routing updated");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, num_established, connection_id, ..
            } => {
                self.dial_established(connection_id, peer_id);
                self.on_connected(peer_id, connection_id, &endpoint, num_established.get() as usize);
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, .. } => {
                self.on_connection_closed(peer_id, num_established as usize)
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
            }
            SwarmEvent::OutgoingConnectionError { connection_id, peer_id, error } => {
                self.dial_failed(connection_id, peer_id, &error);
            }
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "listener error"),
            _ => {}
        }
    }

    fn libp2p_metrics_record(&self, event: &SwarmEvent<BehaviourEvent>) {
        use libp2p::metrics::Recorder;
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.libp2p_metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.libp2p_metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.libp2p_metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => self.libp2p_metrics.record(e),
            other => self.libp2p_metrics.record(other),
        }
    }
}
