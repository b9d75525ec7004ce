//! Peer scores: a number per peer that penalties push down and time pulls back toward zero.
//!
//! The score decays exponentially (`score × 0.5^(elapsed / half_life)`), computed lazily when
//! read or changed, so there is no per-peer timer. Scores closer to zero than
//! [`FORGET_BELOW_POINTS`] are indistinguishable from a fresh peer and are pruned. The table is
//! bounded by `limits.max_tracked_peers`; when it is full of meaningful scores, the score
//! closest to zero (the least information) is forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Scores with a smaller magnitude than this are dropped from the table.
pub const FORGET_BELOW_POINTS: f64 = 0.5;

#[derive(Debug, Clone, Copy)]
struct Score {
    points: f64,
    at: Instant,
    /// The peer's IP when it was last penalised while connected: a peer disconnected at the
    /// disconnect line and banned by a later penalty keeps its IP for the IP rule.
    ip: Option<IpAddr>,
}

#[derive(Debug)]
pub(crate) struct ScoreTable {
    map: HashMap<PeerId, Score>,
    cap: usize,
    half_life: Duration,
}

impl ScoreTable {
    pub(crate) fn new(cap: usize, half_life: Duration) -> ScoreTable {
        ScoreTable {
            map: HashMap::new(),
            cap: cap.max(1),
            half_life: half_life.max(Duration::from_millis(1)),
        }
    }

    pub(crate) fn configure(&mut self, cap: usize, half_life: Duration) {
        self.cap = cap.max(1);
        self.half_life = half_life.max(Duration::from_millis(1));
    }

    fn decayed(&self, s: &Score, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(s.at).as_secs_f64();
        s.points * (-elapsed / self.half_life.as_secs_f64()).exp2()
    }

    /// The current score of `peer` (0 for unknown peers).
    pub(crate) fn get(&self, peer: &PeerId, now: Instant) -> f64 {
        self.map.get(peer).map(|s| self.decayed(s, now)).unwrap_or(0.0)
    }

    /// The IP remembered with `peer`'s score, if any.
    pub(crate) fn ip_of(&self, peer: &PeerId) -> Option<IpAddr> {
        self.map.get(peer).and_then(|s| s.ip)
    }

    /// Adds `delta` (negative for penalties) and returns the new score; `ip`, when known,
    /// replaces the remembered IP.
    pub(crate) fn add(&mut self, peer: PeerId, delta: f64, now: Instant, ip: Option<IpAddr>) -> f64 {
        if !self.map.contains_key(&peer) && self.map.len() >= self.cap {
            self.prune(now);
            if self.map.len() >= self.cap {
                let weakest = self
                    .map
                    .iter()
                    .min_by(|a, b| self.decayed(a.1, now).abs().total_cmp(&self.decayed(b.1, now).abs()))
                    .map(|(p, _)| *p);
                if let Some(w) = weakest {
                    self.map.remove(&w);
                }
            }
        }
        let current = self.get(&peer, now);
        let points = current + delta;
        let ip = ip.or_else(|| self.ip_of(&peer));
        self.map.insert(peer, Score { points, at: now, ip });
        points
    }

    pub(crate) fn reset(&mut self, peer: &PeerId) {
        self.map.remove(peer);
    }

    /// Drops scores that decayed to (almost) nothing.
    pub(crate) fn prune(&mut self, now: Instant) {
        let half_life = self.half_life.as_secs_f64();
        self.map.retain(|_, s| {
            let elapsed = now.saturating_duration_since(s.at).as_secs_f64();
            (s.points * (-elapsed / half_life).exp2()).abs() >= FORGET_BELOW_POINTS
        });
        if self.map.capacity() > 64 && self.map.len() < self.map.capacity() / 4 {
            self.map.shrink_to_fit();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decays_by_half_life_and_is_bounded() {
        let t0 = Instant::now();
        let mut s = ScoreTable::new(3, Duration::from_secs(10));
        let p = PeerId::random();
        assert_eq!(s.add(p, -40.0, t0, None), -40.0);
        let later = s.get(&p, t0 + Duration::from_secs(10));
        assert!((later + 20.0).abs() < 1e-9, "{later}");
        assert!((s.get(&p, t0 + Duration::from_secs(20)) + 10.0).abs() < 1e-9);
        // Penalties add on top of the decayed value.
        let v = s.add(p, -5.0, t0 + Duration::from_secs(10), None);
        assert!((v + 25.0).abs() < 1e-9);

        for _ in 0..10 {
            s.add(PeerId::random(), -1.0, t0, None);
            assert!(s.len() <= 3);
        }
        // The strongest score survived eviction.
        assert!(s.get(&p, t0 + Duration::from_secs(10)) < -20.0);
        // Long after, everything prunes.
        s.prune(t0 + Duration::from_secs(1000));
        assert_eq!(s.len(), 0);
    }
}
