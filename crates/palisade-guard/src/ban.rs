//! The ban table: who is banned until when, in memory for O(1) checks and in sled (through
//! palisade-store) so bans survive restarts.
//!
//! This module owns the target syntax (`peer:<base58>`, `ip:<address>`), the bounded in-memory
//! table (at most `limits.max_bans`; when full, the ban ending soonest gives way), and the
//! bookkeeping behind IP bans: which banned peers were seen on which IP. Expiry is checked
//! lazily on every lookup (an expired ban never blocks anyone) and pruned from memory and the
//! store by the guard's maintenance tick.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use libp2p::PeerId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::addr::canonical_ip;

/// `until_ms` of a ban that lasts until an admin lifts it.
pub const PERMANENT_UNTIL_MS: u64 = u64::MAX;

/// Most banned peers remembered per IP for the IP-ban rule. Above `limits.ip_ban_after_banned_peers`
/// the IP is banned anyway, so a small bound loses nothing.
const MAX_PEERS_PER_IP_RECORD: usize = 64;

/// What a ban applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BanTarget {
    /// One peer id: its connections are refused whatever its address.
    Peer(PeerId),
    /// One IP address: connections from it are refused before the handshake.
    Ip(IpAddr),
}

impl fmt::Display for BanTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanTarget::Peer(p) => write!(f, "peer:{}", p.to_base58()),
            BanTarget::Ip(ip) => write!(f, "ip:{ip}"),
        }
    }
}

/// A ban target string is not `peer:<base58>` or `ip:<address>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ban target {0:?}: expected `peer:<base58 peer id>` or `ip:<IPv4 or IPv6 address>`")]
pub struct ParseBanTargetError(pub String);

impl FromStr for BanTarget {
    type Err = ParseBanTargetError;

    fn from_str(s: &str) -> Result<BanTarget, ParseBanTargetError> {
        let bad = || ParseBanTargetError(s.chars().take(120).collect());
        if let Some(p) = s.strip_prefix("peer:") {
            return p.parse::<PeerId>().map(BanTarget::Peer).map_err(|_| bad());
        }
        if let Some(ip) = s.strip_prefix("ip:") {
            return ip.parse::<IpAddr>().map(|ip| BanTarget::Ip(canonical_ip(ip))).map_err(|_| bad());
        }
        Err(bad())
    }
}

impl Serialize for BanTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BanTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BanTarget, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A ban in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanInfo {
    /// What is banned.
    pub target: BanTarget,
    /// When it ends (ms since the Unix epoch); [`PERMANENT_UNTIL_MS`] = until lifted.
    pub until_ms: u64,
    /// When it was made (ms since the Unix epoch).
    pub created_ms: u64,
    /// Why (`score`, `ip_threshold`, or an admin's text).
    pub reason: String,
}

impl BanInfo {
    pub(crate) fn active(&self, now_ms: u64) -> bool {
        self.until_ms > now_ms
    }

    pub(crate) fn to_record(&self) -> palisade_store::BanRecord {
        palisade_store::BanRecord {
            target: self.target.to_string(),
            until_ms: self.until_ms,
            created_ms: self.created_ms,
            reason: self.reason.clone(),
        }
    }
}

/// The in-memory ban table.
#[derive(Debug)]
pub(crate) struct BanTable {
    bans: HashMap<BanTarget, BanInfo>,
    max: usize,
    /// IP → (banned peer, its ban end) for the IP-ban rule; bounded by `max` keys and
    /// [`MAX_PEERS_PER_IP_RECORD`] peers each.
    banned_peers_by_ip: HashMap<IpAddr, Vec<(PeerId, u64)>>,
}

impl BanTable {
    pub(crate) fn new(max: usize) -> BanTable {
        BanTable { bans: HashMap::new(), max: max.max(1), banned_peers_by_ip: HashMap::new() }
    }

    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max.max(1);
    }

    pub(crate) fn len(&self) -> usize {
        self.bans.len()
    }

    /// The active ban of `target`, if any.
    pub(crate) fn get(&self, target: &BanTarget, now_ms: u64) -> Option<&BanInfo> {
        self.bans.get(target).filter(|b| b.active(now_ms))
    }

    /// Inserts or replaces a ban. Returns the ban that was evicted to make room, if the table
    /// was full.
    pub(crate) fn insert(&mut self, info: BanInfo) -> Option<BanInfo> {
        let mut evicted = None;
        if !self.bans.contains_key(&info.target) && self.bans.len() >= self.max {
            // Full: the ban ending soonest gives way (it was going to lapse first anyway).
            let soonest = self.bans.values().min_by_key(|b| b.until_ms).map(|b| b.target);
            if let Some(t) = soonest {
                evicted = self.bans.remove(&t);
            }
        }
        self.bans.insert(info.target, info);
        evicted
    }

    pub(crate) fn remove(&mut self, target: &BanTarget) -> Option<BanInfo> {
        if let BanTarget::Ip(ip) = target {
            self.banned_peers_by_ip.remove(ip);
        }
        self.bans.remove(target)
    }

    /// Removes and returns every expired ban.
    pub(crate) fn take_expired(&mut self, now_ms: u64) -> Vec<BanInfo> {
        let expired: Vec<BanTarget> =
            self.bans.values().filter(|b| !b.active(now_ms)).map(|b| b.target).collect();
        let out = expired.iter().filter_map(|t| self.bans.remove(t)).collect();
        self.banned_peers_by_ip.retain(|_, peers| {
            peers.retain(|(_, until)| *until > now_ms);
            !peers.is_empty()
        });
        out
    }

    /// Every active ban, ordered by target.
    pub(crate) fn active(&self, now_ms: u64) -> Vec<BanInfo> {
        let mut v: Vec<BanInfo> = self.bans.values().filter(|b| b.active(now_ms)).cloned().collect();
        v.sort_by_key(|a| a.target);
        v
    }

    /// Notes that `peer`, seen on `ip`, is banned until `until_ms`; returns how many distinct
    /// peers with active bans have now been seen on `ip`.
    pub(crate) fn note_banned_peer_ip(
        &mut self,
        ip: IpAddr,
        peer: PeerId,
        until_ms: u64,
        now_ms: u64,
    ) -> usize {
        if !self.banned_peers_by_ip.contains_key(&ip) && self.banned_peers_by_ip.len() >= self.max {
            // Bounded like the ban table itself: forget the IP record whose bans end first.
            let soonest = self
                .banned_peers_by_ip
                .iter()
                .min_by_key(|(_, v)| v.iter().map(|(_, u)| *u).max().unwrap_or(0))
                .map(|(ip, _)| *ip);
            if let Some(s) = soonest {
                self.banned_peers_by_ip.remove(&s);
            }
        }
        let peers = self.banned_peers_by_ip.entry(ip).or_default();
        peers.retain(|(p, until)| *until > now_ms && *p != peer);
        if peers.len() < MAX_PEERS_PER_IP_RECORD {
            peers.push((peer, until_ms));
        }
        peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_roundtrip() {
        let p = PeerId::random();
        let t = BanTarget::Peer(p);
        assert_eq!(t.to_string(), format!("peer:{}", p.to_base58()));
        assert_eq!(t.to_string().parse::<BanTarget>().unwrap(), t);
        let ip = BanTarget::Ip("10.0.0.1".parse().unwrap());
        assert_eq!(ip.to_string(), "ip:10.0.0.1");
        assert_eq!("ip:10.0.0.1".parse::<BanTarget>().unwrap(), ip);
        assert_eq!("ip:::ffff:10.0.0.1".parse::<BanTarget>().unwrap(), ip);
        assert_eq!("ip:2001:db8::1".parse::<BanTarget>().unwrap().to_string(), "ip:2001:db8::1");
        assert!("peer:nope".parse::<BanTarget>().is_err());
        assert!("host:x".parse::<BanTarget>().is_err());
        assert_eq!(serde_json::to_string(&ip).unwrap(), "\"ip:10.0.0.1\"");
    }

    #[test]
    fn table_is_bounded_and_expires() {
        let mut t = BanTable::new(3);
        for i in 0..5u64 {
            t.insert(BanInfo {
                target: BanTarget::Ip(std::net::IpAddr::from([10, 0, 0, i as u8])),
                until_ms: 100 + i,
                created_ms: 0,
                reason: "x".into(),
            });
            assert!(t.len() <= 3);
        }
        // The soonest-ending bans were evicted.
        assert!(t.get(&BanTarget::Ip([10, 0, 0, 4].into()), 0).is_some());
        assert!(t.get(&BanTarget::Ip([10, 0, 0, 0].into()), 0).is_none());
        // Lazy expiry: an expired ban does not match even before it is pruned.
        assert!(t.get(&BanTarget::Ip([10, 0, 0, 4].into()), 104).is_none());
        assert_eq!(t.take_expired(103).len(), 2);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn counts_distinct_banned_peers_per_ip() {
        let mut t = BanTable::new(10);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let a = PeerId::random();
        assert_eq!(t.note_banned_peer_ip(ip, a, 1000, 0), 1);
        assert_eq!(t.note_banned_peer_ip(ip, a, 1000, 0), 1);
        assert_eq!(t.note_banned_peer_ip(ip, PeerId::random(), 1000, 0), 2);
        // Expired bans stop counting.
        assert_eq!(t.note_banned_peer_ip(ip, PeerId::random(), 5000, 2000), 1);
    }
}
