//! Dials an admin asked for (`palisade peers dial`, `POST /v1/peers/dial`): the answer waits
//! for the outcome, so an unreachable address is an error the admin sees (it used to be
//! "dialling" and then nothing, not even a log line). Bounded: beyond
//! [`MAX_PENDING_ADMIN_DIALS`] dials wait at once; beyond, a dial is refused with what to do.
//! Also the re-dialling of bootstrap peers: exponential backoff with jitter.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::swarm::{dial_opts::DialOpts, ConnectionId, DialError};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::EventLoop;
use crate::NetError;

/// Most admin dials whose answer waits for the outcome at once.
pub(crate) const MAX_PENDING_ADMIN_DIALS: usize = 64;

type Reply = oneshot::Sender<Result<libp2p::PeerId, NetError>>;

#[derive(Default)]
pub(super) struct PendingDials {
    by_connection: HashMap<ConnectionId, (Multiaddr, Reply)>,
}

impl EventLoop {
    /// Starts an admin dial; the reply comes when the connection is up or has failed.
    pub(super) fn admin_dial(&mut self, addr: Multiaddr, reply: Reply) {
        let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Err(e) => {
                warn!(%addr, error = %e, "admin dial refused");
                let _ = reply.send(Err(NetError::Dial { addr: addr.to_string(), reason: e.to_string() }));
            }
            Ok(()) if self.dials.by_connection.len() >= MAX_PENDING_ADMIN_DIALS => {
                // Dialled, but the answer cannot wait: say so rather than pretend it connected.
                let reason = format!(
                    "{MAX_PENDING_ADMIN_DIALS} admin dials are already waiting for their outcome; \
                     this one was started, check `palisade peers list` for it"
                );
                let _ = reply.send(Err(NetError::Dial { addr: addr.to_string(), reason }));
            }
            Ok(()) => {
                self.dials.by_connection.insert(id, (addr, reply));
            }
        }
    }

    /// A connection is up: answers the admin dial that asked for it, if any, and teaches an
    /// address-only bootstrap entry whose dial it was the peer behind its address.
    pub(super) fn dial_established(&mut self, id: ConnectionId, peer: libp2p::PeerId) {
        if let Some((addr, reply)) = self.dials.by_connection.remove(&id) {
            info!(%addr, %peer, "admin dial connected");
            let _ = reply.send(Ok(peer));
        }
        if let Some(b) = self.bootstrap.iter_mut().find(|b| b.pending == Some(id)) {
            b.pending = None;
            if b.named.is_none() && b.peer != Some(peer) {
                info!(addr = %b.addr, %peer, "bootstrap address answered");
                b.peer = Some(peer);
                self.swarm.behaviour_mut().kad.add_address(&peer, b.addr.clone());
            }
        }
    }

    /// A dial failed: answers the admin dial with why, and says so in the log for an admin
    /// or bootstrap dial (other dials fail routinely: kad addresses, redials of the peer book).
    /// A bootstrap address that reached this node itself is not dialled again.
    pub(super) fn dial_failed(&mut self, id: ConnectionId, peer: Option<libp2p::PeerId>, error: &DialError) {
        if let Some((addr, reply)) = self.dials.by_connection.remove(&id) {
            warn!(%addr, error = %error, "admin dial failed");
            let _ = reply.send(Err(NetError::Dial { addr: addr.to_string(), reason: error.to_string() }));
            return;
        }
        let at = self.bootstrap.iter().position(|b| b.pending == Some(id));
        let at = at.or_else(|| peer.and_then(|p| self.bootstrap.iter().position(|b| b.peer == Some(p))));
        match at.and_then(|i| self.bootstrap.get_mut(i)) {
            Some(b) if matches!(error, DialError::LocalPeerId { .. }) => {
                b.pending = None;
                b.is_self = true;
                info!(addr = %b.addr, "bootstrap entry is this node itself; not dialled");
            }
            Some(b) => {
                b.pending = None;
                warn!(
                    peer = ?b.peer,
                    addr = %b.addr,
                    error = %error,
                    retry_in_secs = b.backoff.as_secs(),
                    "cannot reach a bootstrap peer; retrying"
                );
            }
            None => tracing::debug!(?peer, %error, "outgoing connection failed"),
        }
    }
}

/// First retry delay for an unreachable bootstrap peer.
pub(super) const BOOTSTRAP_RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay for an unreachable bootstrap peer.
pub(super) const BOOTSTRAP_RETRY_MAX: Duration = Duration::from_secs(60);

/// `d` spread over ±25 %: two nodes that lost each other at the same moment would otherwise
/// re-dial each other at the same moments forever (and two simultaneous dials between the same
/// pair can both fail).
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.75..1.25))
}

/// One `network.bootstrap` entry and when it may be dialled again.
pub(super) struct BootstrapPeer {
    /// The peer the entry names (`/p2p/<id>` last), if it names one.
    pub(super) named: Option<PeerId>,
    /// The peer behind the entry: the named one, or the one an address-only entry last
    /// reached (`None` until then).
    pub(super) peer: Option<PeerId>,
    pub(super) addr: Multiaddr,
    /// The dial in progress, to attribute its outcome (an address-only dial has no peer).
    pub(super) pending: Option<ConnectionId>,
    /// The entry is this node (named so, or its address reached this node): never dialled.
    pub(super) is_self: bool,
    pub(super) next_dial: tokio::time::Instant,
    pub(super) backoff: Duration,
}

impl BootstrapPeer {
    pub(super) fn new(named: Option<PeerId>, addr: Multiaddr, me: PeerId, now: tokio::time::Instant) -> Self {
        let is_self = named == Some(me);
        if is_self {
            info!(%addr, "bootstrap entry names this node itself; not dialled");
        }
        BootstrapPeer {
            named,
            peer: named,
            addr,
            pending: None,
            is_self,
            next_dial: now,
            backoff: BOOTSTRAP_RETRY_MIN,
        }
    }

    /// How to dial the entry: by its peer when it names one; an address-only entry is
    /// dialled as an address every time (the address is what the operator named; the peer
    /// behind it may change, e.g. a pod restored with another key).
    fn dial_opts(&self) -> DialOpts {
        match self.named {
            Some(peer) => DialOpts::peer_id(peer).addresses(vec![self.addr.clone()]).build(),
            None => DialOpts::unknown_peer_id().address(self.addr.clone()).build(),
        }
    }
}

impl EventLoop {
    pub(super) fn redial_bootstrap(&mut self) {
        let now = tokio::time::Instant::now();
        for b in &mut self.bootstrap {
            if b.is_self || b.pending.is_some() {
                // Never dialled, or its dial's outcome is still to come.
                continue;
            }
            if b.named.is_none() && self.swarm.listeners().any(|l| *l == b.addr) {
                // The swarm never dials its own listen addresses (it would answer "no
                // addresses"); a name that resolves to one is caught by the handshake.
                b.is_self = true;
                info!(addr = %b.addr, "bootstrap entry is this node itself; not dialled");
                continue;
            }
            let waiting =
                b.peer.is_some_and(|p| self.connected.contains_key(&p) || self.guard.is_banned_peer(&p));
            if b.dial_due(now, waiting) {
                debug!(peer = ?b.peer, addr = %b.addr, "dialling bootstrap entry");
                let opts = b.dial_opts();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => b.pending = Some(id),
                    // Connected meanwhile (an incoming connection of the same peer).
                    Err(DialError::DialPeerConditionFalse(_)) => {}
                    Err(e) => warn!(addr = %b.addr, error = %e, "cannot dial bootstrap entry"),
                }
            }
        }
    }
}

impl BootstrapPeer {
    /// Whether to dial now; `waiting` is true while a dial makes no sense (connected, or
    /// banned by us, so our own guard would refuse it). While waiting the delay stays at its
    /// shortest, so a dropped connection or a lifted ban is retried within a second rather
    /// than after a backoff that grew while no dial could succeed.
    pub(super) fn dial_due(&mut self, now: tokio::time::Instant, waiting: bool) -> bool {
        if waiting {
            self.backoff = BOOTSTRAP_RETRY_MIN;
            self.next_dial = now + BOOTSTRAP_RETRY_MIN;
            return false;
        }
        if now < self.next_dial {
            return false;
        }
        self.next_dial = now + jittered(self.backoff);
        self.backoff = (self.backoff * 2).min(BOOTSTRAP_RETRY_MAX);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> BootstrapPeer {
        let now = tokio::time::Instant::now();
        BootstrapPeer::new(
            Some(PeerId::random()),
            "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            PeerId::random(),
            now,
        )
    }

    #[test]
    fn an_entry_naming_this_node_is_never_dialled() {
        let me = PeerId::random();
        let now = tokio::time::Instant::now();
        let b = BootstrapPeer::new(Some(me), "/ip4/127.0.0.1/tcp/1".parse().unwrap(), me, now);
        assert!(b.is_self);
        let other = BootstrapPeer::new(None, "/dns4/palisade-0.palisade/tcp/7400".parse().unwrap(), me, now);
        assert!(!other.is_self && other.peer.is_none());
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let mut b = peer();
        let mut now = b.next_dial;
        let mut delays = Vec::new();
        for _ in 0..10 {
            assert!(b.dial_due(now, false));
            let delay = b.next_dial - now;
            delays.push(delay);
            assert!(!b.dial_due(now + delay / 2, false), "dialled again before the delay");
            now = b.next_dial;
        }
        assert!(
            delays[0] >= BOOTSTRAP_RETRY_MIN.mul_f64(0.75) && delays[0] <= BOOTSTRAP_RETRY_MIN.mul_f64(1.25)
        );
        let last = *delays.last().unwrap();
        assert!(
            last >= BOOTSTRAP_RETRY_MAX.mul_f64(0.75) && last <= BOOTSTRAP_RETRY_MAX.mul_f64(1.25),
            "{last:?}"
        );
    }

    #[test]
    fn a_lifted_ban_is_redialled_within_the_shortest_delay() {
        let mut b = peer();
        let mut now = b.next_dial;
        // Unreachable for a while: the delay grows.
        for _ in 0..6 {
            b.dial_due(now, false);
            now = b.next_dial;
        }
        assert!(b.backoff >= Duration::from_secs(32));
        // Then banned by us for a minute (the soak's partitions): no dials, no growth.
        for s in 0..60 {
            assert!(!b.dial_due(now + Duration::from_secs(s), true));
        }
        now += Duration::from_secs(60);
        // The ban is lifted: dialled at the next heartbeat after the shortest delay.
        assert!(b.dial_due(now + BOOTSTRAP_RETRY_MIN, false));
    }

    #[test]
    fn two_peers_that_lost_each_other_together_drift_apart() {
        let (mut a, mut b) = (peer(), peer());
        b.next_dial = a.next_dial;
        let mut now = a.next_dial;
        for _ in 0..6 {
            a.dial_due(now, false);
            b.dial_due(now, false);
            now = a.next_dial.max(b.next_dial);
        }
        // Same backoff, independent jitter: the next dials differ (equal only with
        // probability ~0 on a continuous draw).
        assert_ne!(a.next_dial, b.next_dial);
    }
}
