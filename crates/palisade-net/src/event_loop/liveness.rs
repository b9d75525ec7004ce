//! Connections on which gossip is dead are closed and redialled.
//!
//! libp2p-gossipsub disables its handler for a connection for good after five outbound (or
//! inbound) substream attempts, failed or not, and denies the peer's streams from then on.
//! The connection stays open for identify, ping, kad and sync, so it looks healthy while no
//! gossip crosses it in one or both directions: records reach the peer only by sync, rounds
//! apart. We see it in one of two ways:
//!
//! - **`slow_peer`**: our messages to the peer kept failing (gossipsub's `SlowPeer` report,
//!   once per heartbeat) for [`GOSSIP_DEAD_AFTER`]: the handler no longer drains its queue, or
//!   the peer has not read for that long (paused, wedged);
//! - **`gossip_disabled`**: gossipsub reports that a peer whose identify lists a gossipsub
//!   protocol does not support gossipsub: its handler refused our stream.
//!
//! Either way we close the connection and dial the peer again (a new connection gets new
//! handlers, and a new connection starts a sync round, which fetches what gossip lost). At
//! most one recycle per peer per [`RECYCLE_MIN_INTERVAL`], and dials go through the guard as
//! any other dial.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

/// How long our gossip to a peer must keep failing before the connection is recycled: longer
/// than the pauses and partitions an honest peer goes through without being cut off.
pub(crate) const GOSSIP_DEAD_AFTER: Duration = Duration::from_secs(10);
/// Least time between two recycles of one peer's connection.
pub(crate) const RECYCLE_MIN_INTERVAL: Duration = Duration::from_secs(60);
/// `SlowPeer` reports further apart than this end a streak (one comes per 0.7 s heartbeat).
const SLOW_STREAK_GAP: Duration = Duration::from_secs(3);

/// Why a connection is recycled (the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadGossip {
    SlowPeer,
    GossipDisabled,
}

impl DeadGossip {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            DeadGossip::SlowPeer => "slow_peer",
            DeadGossip::GossipDisabled => "gossip_disabled",
        }
    }
}

/// Per-peer streaks and recycles; entries live only while the peer is connected, except
/// `recycled`, pruned after [`RECYCLE_MIN_INTERVAL`].
#[derive(Debug, Default)]
pub(crate) struct GossipLiveness {
    /// First and latest `SlowPeer` report of the current streak.
    slow: HashMap<PeerId, (Instant, Instant)>,
    /// When each peer's connection was last recycled.
    recycled: HashMap<PeerId, Instant>,
    /// Peers being recycled, with the addresses to dial once the old connection is closed.
    redial: HashMap<PeerId, Vec<Multiaddr>>,
}

impl GossipLiveness {
    /// A `SlowPeer` report for `peer`: whether its connection should now be recycled.
    pub(crate) fn on_slow(&mut self, peer: PeerId, now: Instant) -> Option<DeadGossip> {
        let streak = self.slow.entry(peer).or_insert((now, now));
        if now.duration_since(streak.1) > SLOW_STREAK_GAP {
            *streak = (now, now);
        }
        streak.1 = now;
        let dead = now.duration_since(streak.0) >= GOSSIP_DEAD_AFTER;
        (dead && self.may_recycle(&peer, now)).then_some(DeadGossip::SlowPeer)
    }

    /// Gossipsub says `peer` does not support it; `speaks_gossip` is what identify says.
    pub(crate) fn on_not_supported(
        &mut self,
        peer: PeerId,
        speaks_gossip: bool,
        now: Instant,
    ) -> Option<DeadGossip> {
        (speaks_gossip && self.may_recycle(&peer, now)).then_some(DeadGossip::GossipDisabled)
    }

    fn may_recycle(&mut self, peer: &PeerId, now: Instant) -> bool {
        self.recycled.retain(|_, at| now.duration_since(*at) < RECYCLE_MIN_INTERVAL);
        !self.recycled.contains_key(peer) && !self.redial.contains_key(peer)
    }

    /// The connection to `peer` is being closed for recycling; dial `addrs` once it is.
    pub(crate) fn recycling(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, now: Instant) {
        self.slow.remove(&peer);
        self.recycled.insert(peer, now);
        self.redial.insert(peer, addrs);
    }

    /// `peer`'s last connection closed: the addresses to dial if it was being recycled.
    pub(crate) fn disconnected(&mut self, peer: &PeerId) -> Option<Vec<Multiaddr>> {
        self.slow.remove(peer);
        self.redial.remove(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_shorter_than_the_bound_is_not_recycled_a_longer_one_is() {
        let mut l = GossipLiveness::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        let beat = Duration::from_millis(700);
        // 6 s of failures (a SIGSTOP of 6 s), then the peer reads again.
        for i in 0..9 {
            assert_eq!(l.on_slow(peer, t0 + beat * i), None);
        }
        // A new streak after a quiet gap starts from zero.
        let t1 = t0 + Duration::from_secs(20);
        for i in 0..14 {
            assert_eq!(l.on_slow(peer, t1 + beat * i), None, "beat {i}");
        }
        // 10 s into the streak it is recycled, once.
        assert_eq!(l.on_slow(peer, t1 + beat * 15), Some(DeadGossip::SlowPeer));
        l.recycling(peer, vec![], t1 + beat * 15);
        assert_eq!(l.on_slow(peer, t1 + beat * 40), None, "already being recycled");
        assert_eq!(l.disconnected(&peer), Some(vec![]));
        // Not again within the minimum interval, even after a new 10 s streak.
        let t2 = t1 + Duration::from_secs(30);
        for i in 0..16 {
            assert_eq!(l.on_slow(peer, t2 + beat * i), None);
        }
        let t3 = t1 + RECYCLE_MIN_INTERVAL + Duration::from_secs(20);
        for i in 0..15 {
            let _ = l.on_slow(peer, t3 + beat * i);
        }
        assert_eq!(l.on_slow(peer, t3 + beat * 15), Some(DeadGossip::SlowPeer));
    }

    #[test]
    fn only_peers_that_speak_gossip_are_recycled_for_refusing_it() {
        let mut l = GossipLiveness::default();
        let now = Instant::now();
        assert_eq!(l.on_not_supported(PeerId::random(), false, now), None);
        assert_eq!(l.on_not_supported(PeerId::random(), true, now), Some(DeadGossip::GossipDisabled));
    }
}
