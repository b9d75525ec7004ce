//! Layer 1: the guard as a libp2p [`NetworkBehaviour`].
//!
//! It owns the per-IP and per-subnet connection counts and enforces, in this order:
//!
//! 1. banned IPs, refused in `handle_pending_inbound_connection`, before the handshake;
//! 2. the new-connection rate per IP and per subnet (keyed governor limiters);
//! 3. the caps on connections (pending inbound + established) per IP and per subnet;
//! 4. banned peers, refused once the handshake reveals the peer id (both directions), and
//!    never dialled.
//!
//! Allowlisted addresses skip 2 and 3; allowlisted peers skip 4. When the guard bans a peer
//! or an IP, or a peer's score crosses the disconnect line, the guard broadcasts an event and
//! wakes this behaviour, which closes the affected connections with
//! [`ToSwarm::CloseConnection`]. The same behaviour drives the guard's maintenance tick
//! (expired bans, idle limiter keys, decayed scores).
//!
//! libp2p's own `connection_limits` and `memory_connection_limits` behaviours cover the
//! total / direction / per-peer / pending / memory caps; see [`crate::Guard::connection_limits`].
//!
//! This behaviour is the node's block list. It denies banned peers in the same swarm hooks as
//! libp2p's `allow_block_list::Behaviour<BlockedPeers>` (both established-connection hooks and
//! the pending outbound dial), and adds what that one lacks: IP bans refused before the
//! handshake, timed bans that expire on their own, and persistence across restarts. Running
//! `allow_block_list` beside it would be a second copy of the ban table to keep in step
//! (expiries, restarts, unbans), with no refusal it could make that this one does not.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::behaviour::{
    ConnectionClosed, ConnectionEstablished, DialFailure, FromSwarm, ListenFailure,
};
use libp2p::swarm::{
    dummy, CloseConnection, ConnectionDenied, ConnectionId, DialError, ListenError, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::broadcast::error::TryRecvError;

use crate::addr::{multiaddr_ip, Subnet};
use crate::ban::BanTarget;
use crate::reason::DropReason;
use crate::{Guard, GuardEvent, MAINTENANCE_INTERVAL};

/// Why the guard refused a connection; the `cause` of libp2p's [`ConnectionDenied`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection refused by the guard: {reason}")]
pub struct ConnectionRefused {
    /// The reason, as counted in `palisade_guard_drops_total`.
    pub reason: DropReason,
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    peer: PeerId,
    ip: Option<IpAddr>,
}

/// The guard's connection-level behaviour. Create it with [`Guard::behaviour`]; use one per
/// swarm.
pub struct GuardBehaviour {
    guard: Guard,
    waker_id: u64,
    events: tokio::sync::broadcast::Receiver<GuardEvent>,
    // Every map below has one entry per live connection (or per address with one), so the
    // libp2p pending and established caps bound them; entries leave with their connection.
    /// Inbound connections admitted and still in the handshake.
    pending: HashMap<ConnectionId, IpAddr>,
    established: HashMap<ConnectionId, Conn>,
    per_ip: HashMap<IpAddr, u32>,
    per_subnet: HashMap<Subnet, u32>,
    /// Connections to close; bounded by the number of established connections because
    /// entries are only queued for connections in `established` and deduplicated.
    to_close: VecDeque<(PeerId, CloseConnection)>,
    maintenance: Option<tokio::time::Interval>,
    /// The guard's allowlist generation when the connections were last checked against it.
    allowlist_generation: u64,
}

impl std::fmt::Debug for GuardBehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardBehaviour")
            .field("pending", &self.pending.len())
            .field("established", &self.established.len())
            .finish_non_exhaustive()
    }
}

impl Drop for GuardBehaviour {
    fn drop(&mut self) {
        self.guard.inner.remove_waker(self.waker_id);
        for c in self.established.values() {
            self.guard.inner.note_disconnected(c.peer, c.ip);
        }
    }
}

fn deny(reason: DropReason) -> ConnectionDenied {
    ConnectionDenied::new(ConnectionRefused { reason })
}

impl GuardBehaviour {
    pub(crate) fn new(guard: Guard) -> GuardBehaviour {
        let events = guard.subscribe();
        let waker_id = guard.inner.new_waker_id();
        let allowlist_generation =
            guard.inner.allowlist_generation.load(std::sync::atomic::Ordering::Relaxed);
        GuardBehaviour {
            guard,
            waker_id,
            events,
            pending: HashMap::new(),
            established: HashMap::new(),
            per_ip: HashMap::new(),
            per_subnet: HashMap::new(),
            to_close: VecDeque::new(),
            maintenance: None,
            allowlist_generation,
        }
    }

    /// Connections counted against `ip` (pending inbound + established).
    pub fn connections_from_ip(&self, ip: IpAddr) -> u32 {
        self.per_ip.get(&crate::addr::canonical_ip(ip)).copied().unwrap_or(0)
    }

    /// Inbound connections admitted and still in the handshake.
    pub fn pending_inbound(&self) -> usize {
        self.pending.len()
    }

    fn count(&mut self, ip: IpAddr) {
        *self.per_ip.entry(ip).or_insert(0) += 1;
        *self.per_subnet.entry(Subnet::of(ip)).or_insert(0) += 1;
    }

    fn uncount(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        let s = Subnet::of(ip);
        if let Some(n) = self.per_subnet.get_mut(&s) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_subnet.remove(&s);
            }
        }
    }

    fn check_inbound_ip(&self, ip: IpAddr) -> Result<(), DropReason> {
        if self.guard.is_banned_ip(ip) {
            return Err(DropReason::BannedIp);
        }
        if self.guard.is_allowlisted_ip(ip) {
            return Ok(());
        }
        self.guard.inner.check_connection_rate(ip)?;
        let c = self.guard.inner.config_snapshot_caps();
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= c.0 {
            return Err(DropReason::IpCapExceeded);
        }
        if self.per_subnet.get(&Subnet::of(ip)).copied().unwrap_or(0) >= c.1 {
            return Err(DropReason::SubnetCapExceeded);
        }
        Ok(())
    }

    fn check_peer(&self, peer: &PeerId, ip: Option<IpAddr>) -> Result<(), DropReason> {
        if self.guard.is_allowlisted(peer) {
            return Ok(());
        }
        if self.guard.is_banned_peer(peer) {
            return Err(DropReason::BannedPeer);
        }
        if let Some(ip) = ip {
            if self.guard.is_banned_ip(ip) && !self.guard.is_allowlisted_ip(ip) {
                return Err(DropReason::BannedIp);
            }
        }
        Ok(())
    }

    fn refuse(&self, peer: Option<PeerId>, ip: Option<IpAddr>, reason: DropReason) -> ConnectionDenied {
        self.guard.inner.record(peer, ip, crate::ledger::Action::Denied, reason);
        deny(reason)
    }

    fn close_peer(&mut self, peer: PeerId) {
        let connected = self.established.values().any(|c| c.peer == peer);
        let queued = self.to_close.iter().any(|(p, c)| *p == peer && matches!(c, CloseConnection::All));
        if connected && !queued {
            self.to_close.push_back((peer, CloseConnection::All));
        }
    }

    fn close_ip(&mut self, ip: IpAddr) {
        let ids: Vec<(ConnectionId, PeerId)> =
            self.established.iter().filter(|(_, c)| c.ip == Some(ip)).map(|(id, c)| (*id, c.peer)).collect();
        for (id, peer) in ids {
            if !self.to_close.iter().any(|(_, c)| matches!(c, CloseConnection::One(x) if *x == id)) {
                self.to_close.push_back((peer, CloseConnection::One(id)));
            }
        }
    }

    /// Counts refusals by libp2p's own limit behaviours, so every refused connection is in
    /// the guard's metrics and ledger; the guard's own refusals were counted when made.
    fn count_libp2p_denial(&self, cause: &ConnectionDenied, peer: Option<PeerId>, ip: Option<IpAddr>) {
        let reason = if let Some(e) = cause.downcast_ref::<libp2p::connection_limits::Exceeded>() {
            Some((DropReason::ConnectionLimitExceeded, e.to_string()))
        } else {
            cause
                .downcast_ref::<libp2p::memory_connection_limits::MemoryUsageLimitExceeded>()
                .map(|e| (DropReason::MemoryLimitExceeded, e.to_string()))
        };
        if let Some((reason, detail)) = reason {
            self.guard.inner.record_detail(peer, ip, crate::ledger::Action::Denied, reason, Some(detail));
        }
    }

    /// After missing events (broadcast lag) or an allowlist change, re-check every connection
    /// against the bans.
    fn resync(&mut self) {
        let conns: Vec<Conn> = self.established.values().copied().collect();
        for c in conns {
            if self.check_peer(&c.peer, c.ip).is_err() {
                self.close_peer(c.peer);
            }
        }
    }

    fn on_event(&mut self, ev: GuardEvent) {
        match ev {
            GuardEvent::Banned { target: BanTarget::Peer(p), .. } => {
                if !self.guard.is_allowlisted(&p) {
                    self.close_peer(p)
                }
            }
            GuardEvent::Banned { target: BanTarget::Ip(ip), .. } => {
                if !self.guard.is_allowlisted_ip(ip) {
                    self.close_ip(ip)
                }
            }
            GuardEvent::Disconnect { peer, .. } => self.close_peer(peer),
            GuardEvent::Unbanned { .. } => {}
        }
    }
}

impl NetworkBehaviour for GuardBehaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = multiaddr_ip(remote_addr) else { return Ok(()) };
        if let Err(reason) = self.check_inbound_ip(ip) {
            return Err(self.refuse(None, Some(ip), reason));
        }
        self.pending.insert(connection_id, ip);
        self.count(ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let ip = multiaddr_ip(remote_addr);
        if let Err(reason) = self.check_peer(&peer, ip) {
            return Err(self.refuse(Some(peer), ip, reason));
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        _addresses: &[Multiaddr],
        _effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(peer) = maybe_peer {
            if let Err(reason) = self.check_peer(&peer, None) {
                return Err(self.refuse(Some(peer), None, reason));
            }
        }
        Ok(Vec::new())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let ip = multiaddr_ip(addr);
        if let Err(reason) = self.check_peer(&peer, ip) {
            return Err(self.refuse(Some(peer), ip, reason));
        }
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            }) => {
                let ip = multiaddr_ip(endpoint.get_remote_address());
                match self.pending.remove(&connection_id) {
                    Some(_) => {} // counted when admitted
                    None => {
                        if let Some(ip) = ip {
                            self.count(ip)
                        }
                    }
                }
                self.established.insert(connection_id, Conn { peer: peer_id, ip });
                self.guard.inner.note_connected(peer_id, ip);
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                if let Some(c) = self.established.remove(&connection_id) {
                    if let Some(ip) = c.ip {
                        self.uncount(ip);
                    }
                    self.guard.inner.note_disconnected(c.peer, c.ip);
                }
                self.to_close.retain(|(_, c)| !matches!(c, CloseConnection::One(x) if *x == connection_id));
            }
            FromSwarm::ListenFailure(ListenFailure {
                connection_id, error, send_back_addr, peer_id, ..
            }) => {
                if let Some(ip) = self.pending.remove(&connection_id) {
                    self.uncount(ip);
                }
                if let ListenError::Denied { cause } = error {
                    self.count_libp2p_denial(cause, peer_id, multiaddr_ip(send_back_addr));
                }
            }
            FromSwarm::DialFailure(DialFailure { error: DialError::Denied { cause }, peer_id, .. }) => {
                self.count_libp2p_denial(cause, peer_id, None);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        // The dummy handler emits no events.
        match event {}
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.guard.inner.register_waker(self.waker_id, cx.waker());
        loop {
            match self.events.try_recv() {
                Ok(ev) => self.on_event(ev),
                Err(TryRecvError::Lagged(_)) => self.resync(),
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
            }
        }
        // The allowlists changed at run time: bans they exempted may apply now.
        let generation = self.guard.inner.allowlist_generation.load(std::sync::atomic::Ordering::Relaxed);
        if generation != self.allowlist_generation {
            self.allowlist_generation = generation;
            self.resync();
        }
        if self.maintenance.is_none() && tokio::runtime::Handle::try_current().is_ok() {
            let mut i = tokio::time::interval(MAINTENANCE_INTERVAL);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            self.maintenance = Some(i);
        }
        if let Some(i) = self.maintenance.as_mut() {
            while i.poll_tick(cx).is_ready() {
                self.guard.maintain();
            }
        }
        // Maintenance may have expired bans or found new ones; drain what it emitted.
        while let Ok(ev) = self.events.try_recv() {
            self.on_event(ev);
        }
        if let Some((peer_id, connection)) = self.to_close.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection { peer_id, connection });
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use libp2p::core::ConnectedPoint;

    use super::*;
    use crate::GuardConfig;

    /// Regression (found by fuzz/guard_state): a peer banned while allowlisted keeps its
    /// connection (the allowlist wins); once an admin takes it off the allowlist at run time,
    /// the ban applies and its live connections must close, not only its next dial.
    #[test]
    fn taking_a_banned_peer_off_the_allowlist_closes_its_connections() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            palisade_store::Store::open(&palisade_store::StoreConfig::new(dir.path().join("db"))).unwrap();
        let peer = PeerId::random();
        let cfg = GuardConfig { allowlist_peers: vec![peer.to_base58()], ..GuardConfig::default() };
        let guard = Guard::new(cfg, store, &mut prometheus_client::registry::Registry::default()).unwrap();
        let mut b = guard.behaviour();
        guard.ban(BanTarget::Peer(peer), Duration::from_secs(3600), "test").unwrap();

        let id = ConnectionId::new_unchecked(1);
        let local: Multiaddr = "/ip4/10.9.9.9/tcp/7400".parse().unwrap();
        let remote: Multiaddr = "/ip4/10.0.0.1/tcp/4000".parse().unwrap();
        b.handle_pending_inbound_connection(id, &local, &remote).unwrap();
        b.handle_established_inbound_connection(id, peer, &local, &remote).unwrap();
        let endpoint = ConnectedPoint::Listener { local_addr: local, send_back_addr: remote };
        b.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
            peer_id: peer,
            connection_id: id,
            endpoint: &endpoint,
            failed_addresses: &[],
            other_established: 0,
        }));
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        assert!(b.poll(&mut cx).is_pending(), "the allowlist must win over the ban");

        guard.set_limit("allowlist_peers", "").unwrap();
        match b.poll(&mut cx) {
            Poll::Ready(ToSwarm::CloseConnection { peer_id, .. }) => assert_eq!(peer_id, peer),
            other => panic!("expected the banned peer's connection to close, got {other:?}"),
        }
    }
}
