//! Target 7: the guard as a state machine. The input is a structured sequence of operations
//! (connect, disconnect, message, record, penalise, ban, unban, decay/maintain, expire,
//! restart = a new guard over the same store, live limit changes, behaviour polls) applied
//! to a [`Guard`] and its [`GuardBehaviour`], driven through the same calls libp2p's swarm
//! makes, against a small model.
//!
//! Invariants, after every operation:
//! - every bounded map (limiters, scores) holds at most its cap, the ledger at most its
//!   capacity, the ban table at most `max_bans` (the largest values configured since start:
//!   lowering a cap at run time does not evict);
//! - counters are consistent: drops counted == denials observed (admissions + refused
//!   connections), penalties counted == penalties applied to non-exempt, unbanned peers;
//! - ban monotonicity: a ban stays in force until it is lifted, expires, or may have been
//!   evicted from a full table; a banned peer's messages and connections are refused;
//! - bans are persisted: every ban in force is in the store, and a restart restores exactly
//!   the bans in force before it;
//! - the behaviour's per-IP connection counts match the connections that exist (no leak
//!   through refusals or closes), and admitted inbound connections respect the per-IP and
//!   per-subnet caps; after a poll no connection of a banned peer or IP remains.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::task::{Context, Poll};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished, FromSwarm, ListenFailure};
use libp2p::swarm::{CloseConnection, ConnectionId, ListenError, NetworkBehaviour, ToSwarm};
use libp2p::{Multiaddr, PeerId};
use palisade_guard::{
    canonical_ip, Admission, BanTarget, DropReason, Guard, GuardBehaviour, GuardConfig, PenaltyReason, Subnet,
};
use palisade_store::Store;
use palisade_types::AuthorKey;

use crate::common;

const MAX_OPS: usize = 96;
const MAX_RESTARTS: usize = 3;
const MAX_EXPIRES: usize = 2;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Target {
    Peer(u8),
    Ip(u8),
}

#[derive(Arbitrary, Debug)]
enum LimitValue {
    Number(i64),
    Small(u8),
    Text(String),
    Peers(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Connect { peer: u8, ip: u8, outbound: bool },
    Disconnect { conn: u8 },
    Message { peer: u8, bytes: u32 },
    Record { peer: u8, author: u8 },
    Penalize { peer: u8, reason: u8, ip: Option<u8> },
    Ban { target: Target, minutes: u16 },
    Unban { target: Target },
    Maintain,
    Expire { peer: u8 },
    Restart,
    SetLimit { key: u8, value: LimitValue },
    Poll,
}

/// Keys the fuzzer changes live (plus a restart-only one and an unknown one).
const LIMIT_KEYS: &[&str] = &[
    "max_bans",
    "limits.max_tracked_peers",
    "max_tracked_authors",
    "max_connections_per_ip",
    "max_connections_per_subnet",
    "peer_messages_per_sec",
    "peer_burst_messages",
    "peer_burst_records",
    "author_burst_records",
    "ban_score_points",
    "disconnect_score_points",
    "ban_duration_secs",
    "ip_ban_after_banned_peers",
    "max_message_bytes",
    "peer_burst_bytes",
    "allowlist_peers",
    "allowlist_ips",
    "ledger_capacity_entries",
    "no_such_limit",
];

/// Fake IPs: 4 IPv4 /24 subnets of 10.0.x.y, IPv4-mapped IPv6 spellings of the same
/// addresses (the guard must treat them as one), and a few IPv6 /64s.
fn ip(i: u8) -> IpAddr {
    match i % 8 {
        0..=5 => IpAddr::V4(Ipv4Addr::new(10, 0, i % 4, i / 32)),
        6 => IpAddr::V6(Ipv4Addr::new(10, 0, i % 4, i / 32).to_ipv6_mapped()),
        _ => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, u16::from(i % 3), 0, 0, 0, u16::from(i / 8))),
    }
}

fn multiaddr(ip: IpAddr, port: u16) -> Multiaddr {
    let mut m = Multiaddr::from(ip);
    m.push(libp2p::multiaddr::Protocol::Tcp(port));
    m
}

fn local_addr() -> Multiaddr {
    multiaddr(IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)), 7400)
}

fn target(t: Target) -> BanTarget {
    match t {
        Target::Peer(p) => BanTarget::Peer(common::peer(p)),
        Target::Ip(i) => BanTarget::Ip(canonical_ip(ip(i))),
    }
}

struct Conn {
    id: ConnectionId,
    peer: PeerId,
    ip: IpAddr,
    endpoint: ConnectedPoint,
}

/// One guard instance (between restarts) and what the fuzzer knows about it.
struct World {
    initial: GuardConfig,
    store: Store,
    guard: Guard,
    behaviour: GuardBehaviour,
    conns: Vec<Conn>,
    next_conn: usize,
    /// Denials this guard instance has counted (admissions + refused connections).
    denies: u64,
    /// Penalties this guard instance has counted.
    penalties: u64,
    /// Refusals for a per-peer rate (each may carry a `rate_exceeded` strike).
    rate_denials: u64,
    /// Bans known to be in the table: target → until_ms. A superset of the table.
    bans: BTreeMap<BanTarget, u64>,
    /// Largest map cap and `max_bans` configured since this instance started.
    cap_max: usize,
    bans_max: usize,
    /// Largest per-IP / per-subnet connection caps configured since start.
    ip_cap_max: u32,
    subnet_cap_max: u32,
    /// The allowlists changed live: connection caps no longer apply uniformly.
    allowlist_changed: bool,
}

impl World {
    fn new(initial: GuardConfig, store: Store) -> World {
        let guard = match common::new_guard(initial.clone(), store.clone()) {
            Ok(g) => g,
            Err(e) => panic!("a valid config and a healthy store must give a guard: {e}"),
        };
        let behaviour = guard.behaviour();
        let mut w = World {
            cap_max: 0,
            bans_max: 0,
            ip_cap_max: 0,
            subnet_cap_max: 0,
            initial,
            store,
            guard,
            behaviour,
            conns: Vec::new(),
            next_conn: 0,
            denies: 0,
            penalties: 0,
            rate_denials: 0,
            bans: BTreeMap::new(),
            allowlist_changed: false,
        };
        w.note_caps();
        w.bans = w.guard.bans().into_iter().map(|b| (b.target, b.until_ms)).collect();
        w
    }

    fn note_caps(&mut self) {
        let c = self.guard.limits();
        let caps = [c.max_tracked_peers, c.max_tracked_authors, c.max_tracked_ips];
        self.cap_max = self.cap_max.max(caps.iter().map(|c| *c as usize).max().unwrap_or(0));
        self.bans_max = self.bans_max.max(c.max_bans as usize);
        self.ip_cap_max = self.ip_cap_max.max(c.max_connections_per_ip);
        self.subnet_cap_max = self.subnet_cap_max.max(c.max_connections_per_subnet);
    }

    fn exempt_peer(&self, peer: &PeerId) -> bool {
        self.guard.is_allowlisted(peer)
    }

    fn denied(&mut self, a: Admission) -> bool {
        match a {
            Admission::Allow => false,
            Admission::Deny(reason) => {
                self.denies += 1;
                if reason.penalty() == Some(PenaltyReason::RateExceeded) {
                    self.rate_denials += 1;
                }
                true
            }
        }
    }

    fn connect(&mut self, peer: PeerId, ip: IpAddr, outbound: bool) {
        let id = ConnectionId::new_unchecked(self.next_conn);
        self.next_conn += 1;
        let port = 4000 + (self.next_conn % 60_000) as u16;
        let remote = multiaddr(ip, port);
        let local = local_addr();
        let peer_banned = self.guard.is_banned_peer(&peer) && !self.exempt_peer(&peer);
        let ip_banned = self.guard.is_banned_ip(ip) && !self.guard.is_allowlisted_ip(ip);
        let endpoint = if outbound {
            let r = self.behaviour.handle_pending_outbound_connection(id, Some(peer), &[], Endpoint::Dialer);
            if r.is_err() {
                self.denies += 1;
                return;
            }
            assert!(!peer_banned, "dialled a banned peer");
            let r = self.behaviour.handle_established_outbound_connection(
                id,
                peer,
                &remote,
                Endpoint::Dialer,
                PortUse::Reuse,
            );
            if r.is_err() {
                self.denies += 1;
                return;
            }
            // An allowlisted peer passes the established-connection checks, its IP's ban
            // included ("the allowlist wins at connection time").
            assert!(!ip_banned || self.exempt_peer(&peer), "accepted an outbound connection to a banned IP");
            ConnectedPoint::Dialer {
                address: remote,
                role_override: Endpoint::Dialer,
                port_use: PortUse::Reuse,
            }
        } else {
            let pending = self.behaviour.handle_pending_inbound_connection(id, &local, &remote);
            let established = match pending {
                Ok(()) => {
                    assert!(!ip_banned, "admitted a pending connection from a banned IP");
                    self.behaviour
                        .handle_established_inbound_connection(id, peer, &local, &remote)
                        .map(|_| ())
                }
                Err(e) => Err(e),
            };
            if let Err(cause) = established {
                self.denies += 1;
                // What the swarm reports for a denied inbound connection.
                let error = ListenError::Denied { cause };
                self.behaviour.on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
                    local_addr: &local,
                    send_back_addr: &remote,
                    error: &error,
                    connection_id: id,
                    peer_id: Some(peer),
                }));
                return;
            }
            assert!(!peer_banned, "accepted an inbound connection from a banned peer");
            ConnectedPoint::Listener { local_addr: local, send_back_addr: remote }
        };
        let other_established = self.conns.iter().filter(|c| c.peer == peer).count();
        self.behaviour.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
            peer_id: peer,
            connection_id: id,
            endpoint: &endpoint,
            failed_addresses: &[],
            other_established,
        }));
        self.conns.push(Conn { id, peer, ip: canonical_ip(ip), endpoint });
    }

    fn close(&mut self, index: usize) {
        if index >= self.conns.len() {
            return;
        }
        let c = self.conns.remove(index);
        let remaining_established = self.conns.iter().filter(|o| o.peer == c.peer).count();
        self.behaviour.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
            peer_id: c.peer,
            connection_id: c.id,
            endpoint: &c.endpoint,
            cause: None,
            remaining_established,
        }));
    }

    /// Polls the behaviour until it is idle, closing what it asks to close, as the swarm does.
    fn poll(&mut self) {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        for _ in 0..10_000 {
            match self.behaviour.poll(&mut cx) {
                Poll::Ready(ToSwarm::CloseConnection { peer_id, connection }) => {
                    let matches = |c: &Conn| match connection {
                        CloseConnection::All => c.peer == peer_id,
                        CloseConnection::One(id) => c.id == id,
                    };
                    while let Some(i) = self.conns.iter().position(matches) {
                        self.close(i);
                    }
                }
                Poll::Ready(other) => panic!("unexpected behaviour output: {other:?}"),
                Poll::Pending => break,
            }
        }
        for c in &self.conns {
            let peer_banned = self.guard.is_banned_peer(&c.peer) && !self.exempt_peer(&c.peer);
            // An allowlisted peer may have connected (outbound) to an IP banned earlier.
            let ip_banned = self.guard.is_banned_ip(c.ip)
                && !self.guard.is_allowlisted_ip(c.ip)
                && !self.exempt_peer(&c.peer);
            assert!(!peer_banned, "a banned peer is still connected after a poll");
            assert!(!ip_banned, "a banned IP is still connected after a poll");
        }
    }

    fn penalize(&mut self, peer: PeerId, reason: PenaltyReason, addr_ip: Option<IpAddr>) {
        let conn_ip = self.guard.peer_state(&peer).and_then(|s| s.ip);
        let eff_ip = addr_ip.map(canonical_ip).or(conn_ip);
        let exempt = self.exempt_peer(&peer) || eff_ip.is_some_and(|i| self.guard.is_allowlisted_ip(i));
        let counts = !exempt && !self.guard.is_banned_peer(&peer);
        let _ = self.guard.penalize(&peer, addr_ip, reason);
        if counts {
            self.penalties += 1;
        }
    }

    fn ban(&mut self, t: BanTarget, duration: Duration) {
        if let Err(e) = self.guard.ban(t, duration, "fuzz") {
            panic!("ban of {t} failed on a healthy store: {e}");
        }
        let banned = match t {
            BanTarget::Peer(p) => self.guard.is_banned_peer(&p),
            BanTarget::Ip(i) => self.guard.is_banned_ip(i),
        };
        assert!(banned || duration < Duration::from_secs(1), "{t} is not banned right after ban()");
        if let (BanTarget::Peer(p), true) = (t, duration >= Duration::from_secs(1)) {
            if !self.exempt_peer(&p) {
                let a = self.guard.admit_message(&p, 1);
                assert_eq!(
                    a,
                    Admission::Deny(DropReason::BannedPeer),
                    "a banned peer's message was admitted"
                );
                self.denies += 1;
            }
        }
    }

    /// A restart: drops the guard and its behaviour (closing every connection), then builds a
    /// new guard with the original config over the same store, which re-reads the persisted
    /// bans. (Reopening sled itself is palisade-store's tests' business; skipping it keeps this
    /// target fast.)
    fn restarted(self) -> World {
        let before = self.guard.bans();
        let World { initial, store, guard, behaviour, conns, .. } = self;
        drop(conns);
        drop(behaviour);
        drop(guard);
        let w = World::new(initial, store);
        let after = w.guard.bans();
        let max = w.initial.max_bans as usize;
        let now = palisade_guard::now_ms();
        let before: Vec<_> = before.into_iter().filter(|b| b.until_ms > now + 1000).collect();
        if before.len() <= max {
            for b in &before {
                assert!(after.contains(b), "ban {b:?} in force before a restart is gone after it");
            }
        } else {
            assert_eq!(after.len(), max, "a restart over a full ban table kept the wrong number of bans");
        }
        w
    }

    fn check(&mut self, evict_possible: bool) {
        common::assert_guard_bounded(
            &self.guard,
            self.cap_max,
            self.initial.ledger_capacity_entries as usize,
        );
        let bans = self.guard.bans();
        assert!(bans.len() <= self.bans_max, "{} bans in force, max_bans {}", bans.len(), self.bans_max);

        let (dropped, penalized) = common::drop_and_penalty_counts(&self.guard);
        assert_eq!(dropped, self.denies, "drop counters != denials");
        // Besides the penalties applied by hand, a peer refused for a per-peer rate pays a
        // `rate_exceeded` strike (`strike_over_rate`), at most one per second per peer.
        assert!(penalized >= self.penalties, "penalty counters {penalized} < penalties {}", self.penalties);
        assert!(
            penalized - self.penalties <= self.rate_denials,
            "{} rate strikes for {} rate refusals",
            penalized - self.penalties,
            self.rate_denials
        );

        // Ban monotonicity.
        let now = palisade_guard::now_ms();
        let active: BTreeMap<BanTarget, u64> = bans.iter().map(|b| (b.target, b.until_ms)).collect();
        if evict_possible {
            self.bans.retain(|t, _| active.contains_key(t));
        }
        for (t, until) in &self.bans {
            if *until > now + 1000 {
                assert!(active.contains_key(t), "ban of {t} (until {until}) disappeared");
            }
        }
        self.bans.extend(active.iter().map(|(t, u)| (*t, *u)));

        // Persistence (ban changes reach the store through the node-state writer thread).
        if let Err(e) = self.guard.state_writer().wait_idle(Duration::from_secs(10)) {
            panic!("the node-state writer did not drain: {e}");
        }
        let stored: HashMap<String, u64> = match self.store.bans() {
            Ok(v) => v.into_iter().map(|b| (b.target, b.until_ms)).collect(),
            Err(e) => panic!("reading bans from a healthy store failed: {e}"),
        };
        for b in &bans {
            assert_eq!(
                stored.get(&b.target.to_string()),
                Some(&b.until_ms),
                "ban {} is not persisted",
                b.target
            );
        }

        // Connection accounting.
        assert_eq!(self.behaviour.pending_inbound(), 0, "pending inbound connections leaked");
        let mut per_ip: HashMap<IpAddr, u32> = HashMap::new();
        let mut inbound_ip: HashMap<IpAddr, u32> = HashMap::new();
        let mut inbound_subnet: HashMap<Subnet, u32> = HashMap::new();
        for c in &self.conns {
            *per_ip.entry(c.ip).or_default() += 1;
            if matches!(c.endpoint, ConnectedPoint::Listener { .. }) && !self.guard.is_allowlisted_ip(c.ip) {
                *inbound_ip.entry(c.ip).or_default() += 1;
                *inbound_subnet.entry(Subnet::of(c.ip)).or_default() += 1;
            }
        }
        for i in 0..=255u8 {
            let a = canonical_ip(ip(i));
            let expected = per_ip.get(&a).copied().unwrap_or(0);
            assert_eq!(self.behaviour.connections_from_ip(a), expected, "per-IP count of {a} drifted");
        }
        if !self.allowlist_changed {
            for (a, n) in inbound_ip {
                assert!(n <= self.ip_cap_max, "{n} inbound connections from {a}, cap {}", self.ip_cap_max);
            }
            for (s, n) in inbound_subnet {
                assert!(
                    n <= self.subnet_cap_max,
                    "{n} inbound connections from {s:?}, cap {}",
                    self.subnet_cap_max
                );
            }
        }
    }
}

fn penalty(reason: u8) -> PenaltyReason {
    PenaltyReason::ALL[usize::from(reason) % PenaltyReason::ALL.len()]
}

fn limit_value(v: &LimitValue) -> String {
    match v {
        LimitValue::Number(n) => n.to_string(),
        LimitValue::Small(n) => (u32::from(*n) * 4).to_string(),
        LimitValue::Text(t) => t.chars().take(200).collect(),
        LimitValue::Peers(p) => {
            p.iter().take(8).map(|i| common::peer(*i).to_base58()).collect::<Vec<_>>().join(",")
        }
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let allowlist: bool = u.arbitrary().unwrap_or(false);
    let mut cfg = common::small_guard_config();
    if allowlist {
        cfg.allowlist_peers = vec![common::peer(0).to_base58()];
        cfg.allowlist_ips = vec!["10.0.3.0/24".into()];
    }
    let dir = common::temp_dir();
    let store = match common::open_store(&dir.path().join("db")) {
        Ok(s) => s,
        Err(e) => panic!("cannot open a fresh store: {e}"),
    };
    let mut w = World::new(cfg, store);
    let (mut restarts, mut expires) = (0, 0);
    // PALISADE_FUZZ_DEBUG=1 prints each operation (to read a crash input).
    let debug = std::env::var_os("PALISADE_FUZZ_DEBUG").is_some();
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::arbitrary(&mut u) else { break };
        if debug {
            eprintln!("op: {op:?}");
        }
        let max_bans = w.guard.limits().max_bans as usize;
        let mut evict_possible = w.bans.len() + 2 > max_bans;
        match op {
            Op::Connect { peer, ip: i, outbound } => w.connect(common::peer(peer), ip(i), outbound),
            Op::Disconnect { conn } => {
                let n = w.conns.len().max(1);
                w.close(usize::from(conn) % n);
            }
            Op::Message { peer, bytes } => {
                let a = w.guard.admit_message(&common::peer(peer), bytes as usize);
                // What an embedder that applies rate strikes does (palisade-net does not).
                if let Admission::Deny(reason) = a {
                    w.guard.strike_over_rate(&common::peer(peer), reason);
                }
                let max = w.guard.limits().max_message_bytes;
                if w.denied(a) && bytes > max {
                    assert_eq!(a, Admission::Deny(DropReason::Oversized));
                }
                assert!(bytes <= max || a != Admission::Allow, "oversized message admitted");
            }
            Op::Record { peer, author } => {
                let p = common::peer(peer);
                let a = w.guard.admit_author(&p, &AuthorKey([author % 24; 32]));
                if let Admission::Deny(reason) = a {
                    w.guard.strike_over_rate(&p, reason);
                }
                if !w.denied(a) {
                    let c = w.guard.charge_verification(&p);
                    if let Admission::Deny(reason) = c {
                        w.guard.strike_over_rate(&p, reason);
                    }
                    w.denied(c);
                }
            }
            Op::Penalize { peer, reason, ip: i } => {
                w.penalize(common::peer(peer), penalty(reason), i.map(ip))
            }
            Op::Ban { target: t, minutes } => {
                w.ban(target(t), Duration::from_secs(60 * (u64::from(minutes) + 1)));
            }
            Op::Unban { target: t } => {
                let t = target(t);
                if let Err(e) = w.guard.unban(&t) {
                    panic!("unban of {t} failed on a healthy store: {e}");
                }
                let still = match t {
                    BanTarget::Peer(p) => w.guard.is_banned_peer(&p),
                    BanTarget::Ip(i) => w.guard.is_banned_ip(i),
                };
                assert!(!still, "{t} is still banned after unban");
                w.bans.remove(&t);
            }
            Op::Maintain => {
                w.guard.maintain();
                let now = palisade_guard::now_ms();
                w.bans.retain(|_, until| *until > now);
            }
            Op::Expire { peer } => {
                if expires >= MAX_EXPIRES {
                    continue;
                }
                expires += 1;
                let p = common::peer(peer);
                let t = BanTarget::Peer(p);
                w.ban(t, Duration::from_millis(1));
                std::thread::sleep(Duration::from_millis(3));
                w.guard.maintain();
                assert!(!w.guard.is_banned_peer(&p), "an expired ban still applies after maintain");
                if let Err(e) = w.guard.state_writer().wait_idle(Duration::from_secs(10)) {
                    panic!("the node-state writer did not drain: {e}");
                }
                let stored = w.store.bans().map(|v| v.iter().any(|b| b.target == t.to_string()));
                assert_eq!(stored.ok(), Some(false), "an expired ban is still persisted after maintain");
                w.bans.remove(&t);
                let now = palisade_guard::now_ms();
                w.bans.retain(|_, until| *until > now);
            }
            Op::Restart => {
                if restarts >= MAX_RESTARTS {
                    continue;
                }
                restarts += 1;
                w = w.restarted();
                evict_possible = true;
            }
            Op::SetLimit { key, value } => {
                let key = LIMIT_KEYS[usize::from(key) % LIMIT_KEYS.len()];
                let value = limit_value(&value);
                let before = w.guard.limits();
                let expected = before.with_setting(key, &value);
                let r = w.guard.set_limit(key, &value);
                assert_eq!(
                    r.is_ok(),
                    expected.is_ok(),
                    "set_limit and with_setting disagree on {key}={value:?}"
                );
                match expected {
                    Ok(cfg) => assert_eq!(w.guard.limits(), cfg, "set_limit applied something else"),
                    Err(_) => assert_eq!(w.guard.limits(), before, "a refused set_limit changed the limits"),
                }
                if key.starts_with("allowlist") {
                    w.allowlist_changed = true;
                }
                w.note_caps();
            }
            Op::Poll => w.poll(),
        }
        w.check(evict_possible);
    }
}
