//! Peers coming and going: connections, identify, mDNS, gossip liveness, the peer book.
//! The loop only queues peer-book writes (the node-state writer thread does the I/O).

use libp2p::swarm::ConnectionId;
use libp2p::{gossipsub, identify, Multiaddr, PeerId};
use tracing::{debug, warn};

use super::{liveness, Connected, EventLoop, LISTEN_ADDRS_KEPT};
use crate::handle::NetEvent;
use crate::metrics::{DirectionLabels, GossipDeadLabels, SendFailureLabels};
use crate::now_ms;

impl EventLoop {
    pub(super) fn on_slow_peer(&mut self, peer: PeerId, failed: gossipsub::FailedMessages) {
        for (queue, n) in [("priority", failed.priority), ("non_priority", failed.non_priority)] {
            self.metrics.gossip_send_failures.get_or_create(&SendFailureLabels { queue }).inc_by(n as u64);
        }
        if let Some(reason) = self.liveness.on_slow(peer, std::time::Instant::now()) {
            self.recycle(peer, reason);
        }
    }

    pub(super) fn on_gossip_not_supported(&mut self, peer: PeerId) {
        let speaks_gossip = self.connected.get(&peer).is_some_and(|c| c.speaks_gossip);
        if let Some(reason) = self.liveness.on_not_supported(peer, speaks_gossip, std::time::Instant::now()) {
            self.recycle(peer, reason);
        }
    }

    pub(super) fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        if let Some(c) = self.connected.get_mut(&peer) {
            c.agent = Some(info.agent_version.chars().take(128).collect());
            c.speaks_gossip = info.protocols.iter().any(|p| p.as_ref().starts_with("/meshsub/"));
            c.listen_addrs = info.listen_addrs.iter().take(LISTEN_ADDRS_KEPT).cloned().collect();
        }
        // Only a bounded number of a peer's advertised addresses go into the DHT and the
        // peer book (announced listen addresses: what a restart can dial).
        let book: Vec<String> =
            info.listen_addrs.iter().take(crate::PEER_BOOK_ADDRS_PER_PEER).map(|a| a.to_string()).collect();
        for addr in info.listen_addrs.into_iter().take(8) {
            self.swarm.behaviour_mut().kad.add_address(&peer, addr);
        }
        if self.connected.contains_key(&peer) && !book.is_empty() {
            self.remember_peer(peer, book);
        }
    }

    pub(super) fn on_mdns_discovered(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        for (peer, addr) in found.into_iter().take(32) {
            self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            if !self.connected.contains_key(&peer) {
                let _ = self.swarm.dial(addr);
            }
        }
    }

    pub(super) fn on_connection_closed(&mut self, peer: PeerId, established: usize) {
        if established > 0 {
            if let Some(c) = self.connected.get_mut(&peer) {
                c.connections = established;
            }
            return;
        }
        if let Some(c) = self.connected.remove(&peer) {
            self.metrics.peers.get_or_create(&DirectionLabels { direction: c.direction }).dec();
        }
        // Releases the record budget of every request still pending to the peer.
        self.sync.disconnected(&peer);
        self.serving.remove(&peer);
        self.resume_sync();
        if let Some(addrs) = self.liveness.disconnected(&peer) {
            self.redial_recycled(peer, addrs);
        }
        debug!(%peer, "peer disconnected");
        self.emit(NetEvent::PeerDisconnected { peer: peer.to_string() });
    }

    /// Closes the connection to `peer`, on which gossip is dead, and dials it again once it
    /// is closed (see [`liveness`]).
    pub(super) fn recycle(&mut self, peer: PeerId, reason: liveness::DeadGossip) {
        let Some(c) = self.connected.get(&peer) else { return };
        let addrs = if c.direction == "outbound" { vec![c.addr.clone()] } else { c.listen_addrs.clone() };
        warn!(%peer, reason = reason.as_str(), "gossip to this peer is dead on its connection; reconnecting");
        self.metrics
            .gossip_dead_connections
            .get_or_create(&GossipDeadLabels { reason: reason.as_str() })
            .inc();
        self.liveness.recycling(peer, addrs, std::time::Instant::now());
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    pub(super) fn redial_recycled(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if addrs.is_empty() {
            // An inbound peer that announced no address: it dials us again itself.
            return;
        }
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer).addresses(addrs).build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%peer, error = %e, "redial after recycling failed");
        }
    }

    /// Queues a peer-book update for the node-state writer (no store I/O on the loop).
    pub(super) fn remember_peer(&self, peer: PeerId, addrs: Vec<String>) {
        let entry =
            palisade_store::PeerBookEntry { peer_id: peer.to_string(), addrs, last_seen_ms: now_ms() };
        if let Err(e) = self.guard.state_writer().upsert_peer(entry) {
            debug!(error = %e, "peer book update not queued");
        }
    }

    pub(super) fn on_connected(
        &mut self,
        peer: PeerId,
        _connection: ConnectionId,
        endpoint: &libp2p::core::ConnectedPoint,
        established: usize,
    ) {
        let (addr, direction) = match endpoint {
            libp2p::core::ConnectedPoint::Dialer { address, .. } => (address.clone(), "outbound"),
            libp2p::core::ConnectedPoint::Listener { send_back_addr, .. } => {
                (send_back_addr.clone(), "inbound")
            }
        };
        if let Some(c) = self.connected.get_mut(&peer) {
            c.connections = established;
            return;
        }
        debug!(%peer, %addr, direction, "peer connected");
        self.metrics.peers.get_or_create(&DirectionLabels { direction }).inc();
        self.connected.insert(
            peer,
            Connected {
                addr: addr.clone(),
                direction,
                since_ms: now_ms(),
                connections: established,
                agent: None,
                speaks_gossip: false,
                listen_addrs: Vec::new(),
            },
        );
        self.ask_own_feed(peer);
        if direction == "outbound" {
            self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
        // The peer book keeps addresses we can dial again after a restart: the one we dialled
        // (an inbound connection's address is the peer's ephemeral port, useless for that;
        // its listen addresses arrive with identify).
        if direction == "outbound" {
            self.remember_peer(peer, vec![addr.to_string()]);
        }
        self.emit(NetEvent::PeerConnected { peer: peer.to_string(), addr: addr.to_string(), direction });
        // Catch up with every new peer right away: this is how a restarted or newly joined
        // node gets what it missed.
        self.sync.connected(peer);
        self.sync_round(Some(peer));
    }
}
