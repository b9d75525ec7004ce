//! # palisade-guard
//!
//! Denial-of-service protection for a Palisade node, in layers from the socket up. A
//! connection first meets the [`GuardBehaviour`] (banned IPs, per-IP and per-subnet caps and
//! connection rates, refused before the handshake costs CPU) alongside libp2p's
//! `connection_limits` and `memory_connection_limits` built from the same config; the
//! handshake must finish within `handshake_timeout_secs`; once authenticated, every substream
//! goes through the bandwidth throttle ([`ThrottledMuxer`]: token buckets per connection, per
//! peer and global, applying backpressure rather than buffering). Each gossip or sync message
//! is then checked by [`Guard::admit_message`] (size cap, per-peer message and byte rates)
//! before it is decoded, each new record by [`Guard::admit_author`] (per-peer record rate and
//! per-author quota) before its signature is checked, and signature work is charged to a
//! per-peer cost budget ([`Guard::charge_verification`]). Misbehaviour lowers a decaying peer
//! score ([`Guard::penalize`]) that leads to disconnection and then to a timed ban, persisted
//! in the store so it survives restarts; enough banned peers on one IP ban the IP. Every drop,
//! throttle, penalty and ban is counted by reason in Prometheus and kept in a bounded ledger,
//! and every limit can be read and changed at run time ([`Guard::set_limit`]).
//!
//! [`Guard`] is a cheap, cloneable handle (`Arc` inside); every method takes `&self` and none
//! awaits, so the network event loop, the verifier pool and the admin API share one instance.
//! All state keyed by something a peer chooses (peer ids, authors, IPs) lives in bounded maps.
//!
//! See `docs/dos-protection.md` for every limit, its default, what trips it and how to tune it.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

mod addr;
mod ban;
mod behaviour;
mod config;
mod error;
mod keyed;
mod ledger;
mod metrics;
mod reason;
mod score;
mod throttle;
mod transport;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::Waker;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::core::muxing::StreamMuxer;
use libp2p::PeerId;
use palisade_store::{StateWriter, Store, Ticket};
use palisade_types::{AuthorKey, InvalidSetting};
use prometheus_client::registry::Registry;

pub use addr::{canonical_ip, multiaddr_ip, BadCidr, Cidr, Subnet};
pub use ban::{BanInfo, BanTarget, ParseBanTargetError, PERMANENT_UNTIL_MS};
pub use behaviour::{ConnectionRefused, GuardBehaviour};
pub use config::{GuardConfig, KEY_PREFIX, MAX_ALLOWLIST_ENTRIES, RESTART_ONLY_KEYS};
pub use error::GuardError;
pub use keyed::{BucketState, MAP_OVERHEAD_BYTES_PER_KEY, SWEEP_MIN_INTERVAL};
pub use ledger::{Action, LedgerEntry, FOLD_WINDOW_MS};
pub use reason::{Admission, Direction, DropReason, PenaltyOutcome, PenaltyReason};
pub use score::FORGET_BELOW_POINTS;
pub use throttle::{
    ThrottledMuxer, ThrottledSubstream, MIN_BUCKET_BYTES, MIN_GRANT_BYTES, THROTTLE_LEDGER_INTERVAL,
};
pub use transport::YAMUX_STREAMS_PER_GUARD_STREAM;

use ban::BanTable;
use config::Allowlist;
use keyed::{Check, KeyedLimiter};
use ledger::Ledger;
use metrics::Metrics;
use score::ScoreTable;
use throttle::ThrottleShared;

/// How often the behaviour runs [`Guard::maintain`]: expired bans are lifted within this.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// Capacity of the guard event broadcast. Receivers that fall further behind get a `Lagged`
/// error; the behaviour then re-checks every connection against the ban table instead.
pub const EVENT_CHANNEL_CAPACITY: usize = 1024;

/// Most ledger entries returned by one [`Guard::ledger`] call.
pub const MAX_LEDGER_PAGE: usize = 1000;

/// Something the network layer must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardEvent {
    /// A peer or IP was banned: its connections are closed and new ones refused.
    Banned {
        /// The target.
        target: BanTarget,
        /// Ban end (ms since the Unix epoch).
        until_ms: u64,
        /// Why.
        reason: String,
    },
    /// A ban was lifted or expired.
    Unbanned {
        /// The target.
        target: BanTarget,
    },
    /// A peer's score crossed the disconnect threshold: close its connections.
    Disconnect {
        /// The peer.
        peer: PeerId,
        /// The penalty that pushed it over.
        reason: PenaltyReason,
    },
}

/// What the guard knows about one peer (admin API `peers` view).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PeerGuardState {
    /// The peer, base58.
    pub peer: String,
    /// Current (decayed) score in points; 0 is neutral, lower is worse.
    pub score_points: f64,
    /// End of an active ban (ms since the Unix epoch).
    pub banned_until_ms: Option<u64>,
    /// Whether the peer (or its IP) is allowlisted.
    pub allowlisted: bool,
    /// Established connections.
    pub connections: u32,
    /// Remote IP of its latest connection.
    pub ip: Option<IpAddr>,
    /// Message-rate bucket.
    pub messages: BucketState,
    /// Message-byte bucket.
    pub message_bytes: BucketState,
    /// Cost-unit bucket.
    pub cost_units: BucketState,
    /// New-record bucket.
    pub records: BucketState,
    /// Substream payload bytes received from it over its current connections.
    pub bytes_in: u64,
    /// Substream payload bytes sent to it over its current connections.
    pub bytes_out: u64,
}

/// The guard handle. Cheap to clone; `Send + Sync`; no method awaits.
#[derive(Clone)]
pub struct Guard {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").finish_non_exhaustive()
    }
}

struct Limiters {
    peer_messages: KeyedLimiter<PeerId>,
    peer_bytes: KeyedLimiter<PeerId>,
    peer_cost: KeyedLimiter<PeerId>,
    peer_records: KeyedLimiter<PeerId>,
    peer_proofs: KeyedLimiter<PeerId>,
    authors: KeyedLimiter<AuthorKey>,
    ip_connections: KeyedLimiter<IpAddr>,
    subnet_connections: KeyedLimiter<Subnet>,
}

fn usize_of(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl Limiters {
    fn new(c: &GuardConfig) -> Limiters {
        let peers = usize_of(c.max_tracked_peers);
        let ips = usize_of(c.max_tracked_ips);
        Limiters {
            peer_messages: KeyedLimiter::new(c.peer_messages_per_sec, c.peer_burst_messages, peers),
            peer_bytes: KeyedLimiter::new(c.peer_bytes_per_sec, c.peer_burst_bytes, peers),
            peer_cost: KeyedLimiter::new(c.peer_cost_units_per_sec, c.peer_burst_cost_units, peers),
            peer_records: KeyedLimiter::new(c.peer_records_per_sec, c.peer_burst_records, peers),
            peer_proofs: KeyedLimiter::new(c.peer_proofs_per_sec, c.peer_burst_proofs, peers),
            authors: KeyedLimiter::new(
                c.author_records_per_sec,
                c.author_burst_records,
                usize_of(c.max_tracked_authors),
            ),
            ip_connections: KeyedLimiter::new(c.ip_new_connections_per_sec, c.ip_new_connections_burst, ips),
            subnet_connections: KeyedLimiter::new(
                c.subnet_new_connections_per_sec,
                c.subnet_new_connections_burst,
                ips,
            ),
        }
    }

    /// Rebuilds only the limiters whose parameters changed, so a change to one limit does not
    /// reset the state of the others.
    fn update(&mut self, old: &GuardConfig, c: &GuardConfig) {
        let peers_changed = old.max_tracked_peers != c.max_tracked_peers;
        let ips_changed = old.max_tracked_ips != c.max_tracked_ips;
        let peers = usize_of(c.max_tracked_peers);
        let ips = usize_of(c.max_tracked_ips);
        if peers_changed
            || (old.peer_messages_per_sec, old.peer_burst_messages)
                != (c.peer_messages_per_sec, c.peer_burst_messages)
        {
            self.peer_messages = KeyedLimiter::new(c.peer_messages_per_sec, c.peer_burst_messages, peers);
        }
        if peers_changed
            || (old.peer_bytes_per_sec, old.peer_burst_bytes) != (c.peer_bytes_per_sec, c.peer_burst_bytes)
        {
            self.peer_bytes = KeyedLimiter::new(c.peer_bytes_per_sec, c.peer_burst_bytes, peers);
        }
        if peers_changed
            || (old.peer_cost_units_per_sec, old.peer_burst_cost_units)
                != (c.peer_cost_units_per_sec, c.peer_burst_cost_units)
        {
            self.peer_cost = KeyedLimiter::new(c.peer_cost_units_per_sec, c.peer_burst_cost_units, peers);
        }
        if peers_changed
            || (old.peer_records_per_sec, old.peer_burst_records)
                != (c.peer_records_per_sec, c.peer_burst_records)
        {
            self.peer_records = KeyedLimiter::new(c.peer_records_per_sec, c.peer_burst_records, peers);
        }
        if peers_changed
            || (old.peer_proofs_per_sec, old.peer_burst_proofs)
                != (c.peer_proofs_per_sec, c.peer_burst_proofs)
        {
            self.peer_proofs = KeyedLimiter::new(c.peer_proofs_per_sec, c.peer_burst_proofs, peers);
        }
        if old.max_tracked_authors != c.max_tracked_authors
            || (old.author_records_per_sec, old.author_burst_records)
                != (c.author_records_per_sec, c.author_burst_records)
        {
            self.authors = KeyedLimiter::new(
                c.author_records_per_sec,
                c.author_burst_records,
                usize_of(c.max_tracked_authors),
            );
        }
        if ips_changed
            || (old.ip_new_connections_per_sec, old.ip_new_connections_burst)
                != (c.ip_new_connections_per_sec, c.ip_new_connections_burst)
        {
            self.ip_connections =
                KeyedLimiter::new(c.ip_new_connections_per_sec, c.ip_new_connections_burst, ips);
        }
        if ips_changed
            || (old.subnet_new_connections_per_sec, old.subnet_new_connections_burst)
                != (c.subnet_new_connections_per_sec, c.subnet_new_connections_burst)
        {
            self.subnet_connections =
                KeyedLimiter::new(c.subnet_new_connections_per_sec, c.subnet_new_connections_burst, ips);
        }
    }

    fn all(&self) -> [(&'static str, usize, usize, usize); 8] {
        [
            (
                "peer_messages",
                self.peer_messages.len(),
                self.peer_messages.cap(),
                self.peer_messages.memory_bytes(),
            ),
            ("peer_bytes", self.peer_bytes.len(), self.peer_bytes.cap(), self.peer_bytes.memory_bytes()),
            ("peer_cost", self.peer_cost.len(), self.peer_cost.cap(), self.peer_cost.memory_bytes()),
            (
                "peer_records",
                self.peer_records.len(),
                self.peer_records.cap(),
                self.peer_records.memory_bytes(),
            ),
            ("peer_proofs", self.peer_proofs.len(), self.peer_proofs.cap(), self.peer_proofs.memory_bytes()),
            ("authors", self.authors.len(), self.authors.cap(), self.authors.memory_bytes()),
            (
                "ip_connections",
                self.ip_connections.len(),
                self.ip_connections.cap(),
                self.ip_connections.memory_bytes(),
            ),
            (
                "subnet_connections",
                self.subnet_connections.len(),
                self.subnet_connections.cap(),
                self.subnet_connections.memory_bytes(),
            ),
        ]
    }

    fn prune(&self) {
        self.peer_messages.prune();
        self.peer_bytes.prune();
        self.peer_cost.prune();
        self.peer_records.prune();
        self.peer_proofs.prune();
        self.authors.prune();
        self.ip_connections.prune();
        self.subnet_connections.prune();
    }
}

/// Size of one bounded map, for [`Guard::tracker_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TrackerStats {
    /// Map name (the `map` label of `palisade_guard_tracked_keys`).
    pub map: &'static str,
    /// Keys held now.
    pub keys: usize,
    /// The cap.
    pub cap: usize,
    /// Estimated heap bytes (table capacity × entry size).
    pub memory_bytes: usize,
}

#[derive(Debug, Clone, Copy)]
struct Connected {
    ip: Option<IpAddr>,
    connections: u32,
}

pub(crate) struct Inner {
    config: RwLock<GuardConfig>,
    allowlist: RwLock<Allowlist>,
    has_allowlisted_peers: AtomicBool,
    has_allowlisted_ips: AtomicBool,
    limiters: RwLock<Limiters>,
    bans: RwLock<BanTable>,
    /// Mirror of the ban table size: with no bans, the hot path skips the lookup.
    ban_count: AtomicUsize,
    scores: Mutex<ScoreTable>,
    /// When each peer last paid a `rate_exceeded` penalty (at most one per
    /// [`RATE_STRIKE_INTERVAL`]); bounded by `max_tracked_peers`.
    rate_strikes: Mutex<HashMap<PeerId, Instant>>,
    /// Each peer's current run of over-rate refusals (see [`Guard::over_rate`]); bounded by
    /// `max_tracked_peers`, runs that ended are dropped first.
    over_rate: Mutex<HashMap<PeerId, OverRateRun>>,
    ledger: Mutex<Ledger>,
    /// Connected peers and their latest IP (from the behaviour); bounded by the connection
    /// limits because entries leave with the peer's last connection.
    connected: Mutex<HashMap<PeerId, Connected>>,
    pub(crate) throttle: Arc<ThrottleShared>,
    pub(crate) metrics: Arc<Metrics>,
    events: tokio::sync::broadcast::Sender<GuardEvent>,
    wakers: Mutex<HashMap<u64, Waker>>,
    next_waker_id: AtomicU64,
    /// Bumped when an allowlist changes at run time: behaviours then re-check their
    /// connections, since a ban the allowlist kept from applying may apply now.
    pub(crate) allowlist_generation: AtomicU64,
    store: Store,
    /// Writes ban changes (and the network's peer-book updates) off the caller's thread.
    state: StateWriter,
    // Hot-path copies of single config values.
    max_message_bytes: AtomicU32,
    message_cost_units: AtomicU32,
    verification_cost_units: AtomicU32,
    max_connections_per_ip: AtomicU32,
    max_connections_per_subnet: AtomicU32,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Every critical section leaves its structure consistent at each step, so a panic in one
    // (a bug) must not take the whole guard down with poison errors.
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Inner {
    fn allowlisted_peer(&self, peer: &PeerId) -> bool {
        self.has_allowlisted_peers.load(Ordering::Relaxed) && read(&self.allowlist).peers.contains(peer)
    }

    fn allowlisted_ip(&self, ip: IpAddr) -> bool {
        self.has_allowlisted_ips.load(Ordering::Relaxed) && read(&self.allowlist).contains_ip(ip)
    }

    fn peer_ip(&self, peer: &PeerId) -> Option<IpAddr> {
        lock(&self.connected).get(peer).and_then(|c| c.ip)
    }

    pub(crate) fn note_connected(&self, peer: PeerId, ip: Option<IpAddr>) {
        let mut c = lock(&self.connected);
        let e = c.entry(peer).or_insert(Connected { ip, connections: 0 });
        e.connections = e.connections.saturating_add(1);
        if ip.is_some() {
            e.ip = ip;
        }
    }

    pub(crate) fn note_disconnected(&self, peer: PeerId, _ip: Option<IpAddr>) {
        let mut c = lock(&self.connected);
        if let Some(e) = c.get_mut(&peer) {
            e.connections = e.connections.saturating_sub(1);
            if e.connections == 0 {
                c.remove(&peer);
            }
        }
    }

    fn ledger_push(
        &self,
        peer: Option<PeerId>,
        ip: Option<IpAddr>,
        action: Action,
        reason: Cow<'static, str>,
        detail: Option<String>,
    ) {
        if lock(&self.ledger).push(now_ms(), peer, ip, action, reason, detail) {
            self.metrics.ledger_overwritten.inc();
        }
    }

    /// Counts a drop and writes it to the ledger.
    pub(crate) fn record(
        &self,
        peer: Option<PeerId>,
        ip: Option<IpAddr>,
        action: Action,
        reason: DropReason,
    ) {
        self.record_detail(peer, ip, action, reason, None);
    }

    /// [`Inner::record`] with a detail text (rare events only: it allocates and never folds).
    pub(crate) fn record_detail(
        &self,
        peer: Option<PeerId>,
        ip: Option<IpAddr>,
        action: Action,
        reason: DropReason,
        detail: Option<String>,
    ) {
        self.metrics.count_drop(reason);
        self.ledger_push(peer, ip, action, Cow::Borrowed(reason.as_str()), detail);
    }

    fn deny_message(&self, peer: &PeerId, reason: DropReason) -> Admission {
        let ip = self.peer_ip(peer);
        self.record(Some(*peer), ip, Action::Dropped, reason);
        Admission::Deny(reason)
    }

    /// Whether `peer`, just refused for a per-peer rate, is due a `rate_exceeded` penalty:
    /// at most one per [`RATE_STRIKE_INTERVAL`], so the penalty measures seconds spent over
    /// the limit, not messages (an honest burst costs a point or two, a flood that lasts
    /// minutes reaches the ban line).
    fn rate_strike_due(&self, peer: &PeerId) -> bool {
        let now = Instant::now();
        let cap = usize_of(read(&self.config).max_tracked_peers);
        let mut strikes = lock(&self.rate_strikes);
        if let Some(last) = strikes.get_mut(peer) {
            if now.duration_since(*last) < RATE_STRIKE_INTERVAL {
                return false;
            }
            *last = now;
            return true;
        }
        if strikes.len() >= cap {
            // Entries older than the interval carry no information: drop them.
            strikes.retain(|_, last| now.duration_since(*last) < RATE_STRIKE_INTERVAL);
            if strikes.len() >= cap {
                return false;
            }
        }
        strikes.insert(*peer, now);
        true
    }

    pub(crate) fn ledger_throttle(&self, peer: PeerId, reason: &'static str) {
        let ip = self.peer_ip(&peer);
        self.ledger_push(Some(peer), ip, Action::Throttled, Cow::Borrowed(reason), None);
    }

    pub(crate) fn check_connection_rate(&self, ip: IpAddr) -> Result<(), DropReason> {
        let l = read(&self.limiters);
        match l.ip_connections.check(&ip, 1) {
            Check::Allowed => {}
            Check::Denied => return Err(DropReason::ConnectionRateExceeded),
            Check::Full => return Err(DropReason::TrackerFull),
        }
        match l.subnet_connections.check(&Subnet::of(ip), 1) {
            Check::Allowed => Ok(()),
            Check::Denied => Err(DropReason::SubnetConnectionRateExceeded),
            Check::Full => Err(DropReason::TrackerFull),
        }
    }

    pub(crate) fn config_snapshot_caps(&self) -> (u32, u32) {
        (
            self.max_connections_per_ip.load(Ordering::Relaxed),
            self.max_connections_per_subnet.load(Ordering::Relaxed),
        )
    }

    fn emit(&self, ev: GuardEvent) {
        // No receiver is fine (no swarm yet): the ban table is the source of truth and the
        // behaviour checks it on every new connection.
        let _ = self.events.send(ev);
        self.wake_behaviours();
    }

    fn wake_behaviours(&self) {
        for w in lock(&self.wakers).values() {
            w.wake_by_ref();
        }
    }

    pub(crate) fn new_waker_id(&self) -> u64 {
        self.next_waker_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn register_waker(&self, id: u64, waker: &Waker) {
        let mut w = lock(&self.wakers);
        match w.get_mut(&id) {
            Some(old) if old.will_wake(waker) => {}
            Some(old) => old.clone_from(waker),
            None => {
                w.insert(id, waker.clone());
            }
        }
    }

    pub(crate) fn remove_waker(&self, id: u64) {
        lock(&self.wakers).remove(&id);
    }

    fn sync_ban_gauges(&self, bans: &BanTable) {
        self.ban_count.store(bans.len(), Ordering::Relaxed);
        self.metrics.active_bans.set(i64::try_from(bans.len()).unwrap_or(i64::MAX));
    }

    /// Queues the ban for the state writer (never blocks: the network loop bans).
    fn persist_ban(&self, info: &BanInfo) -> Result<Ticket, GuardError> {
        let r = self.state.put_ban(info.to_record());
        if r.is_err() {
            self.metrics.store_errors.inc();
        }
        Ok(r?)
    }

    /// Queues the deletion of a persisted ban (never blocks).
    fn unpersist_ban(&self, target: &BanTarget) -> Result<Ticket, GuardError> {
        let r = self.state.remove_ban(target.to_string());
        if r.is_err() {
            self.metrics.store_errors.inc();
        }
        Ok(r?)
    }

    /// Waits (bounded) until a queued ban change is durable: for admin commands, whose
    /// answer promises it.
    fn wait_persisted(&self, ticket: Ticket) -> Result<(), GuardError> {
        let r = self.state.wait_written(ticket, PERSIST_WAIT);
        if r.is_err() {
            self.metrics.store_errors.inc();
        }
        Ok(r?)
    }
}

/// Longest an admin ban or unban waits for the ban table to reach disk before it answers
/// that the change applies but is not persisted.
pub const PERSIST_WAIT: Duration = Duration::from_secs(10);

/// Over-rate refusals further apart than this end a peer's run of them (see
/// [`Guard::over_rate`]): a token bucket refuses a peer over its rate every few milliseconds.
pub const OVER_RATE_RUN_GAP: Duration = Duration::from_secs(2);

/// A run of over-rate refusals: when it started and when the latest came.
#[derive(Debug, Clone, Copy)]
struct OverRateRun {
    since: Instant,
    last: Instant,
}

/// Scores within this many points of a threshold count as having reached it.
pub const SCORE_TOLERANCE_POINTS: f64 = 0.01;

/// A peer refused for a per-peer rate (messages, bytes, cost units, records) pays one
/// `rate_exceeded` penalty per this interval at most, however many messages were refused
/// (see [`Guard::strike_over_rate`]).
pub const RATE_STRIKE_INTERVAL: Duration = Duration::from_secs(1);

// A ban's cause as a ledger reason.
const BAN_CAUSE_SCORE: &str = "score";
const BAN_CAUSE_IP_THRESHOLD: &str = "ip_threshold";
const BAN_CAUSE_MANUAL: &str = "manual";

impl Guard {
    /// Builds the guard: validates `config`, registers metrics into `registry`, and loads the
    /// persisted bans from `store`, re-applying those that have not expired (expired ones are
    /// deleted).
    pub fn new(config: GuardConfig, store: Store, registry: &mut Registry) -> Result<Guard, GuardError> {
        config.validate()?;
        let allowlist = config.allowlist()?;
        let metrics = Metrics::new(registry);
        let (events, _) = tokio::sync::broadcast::channel(EVENT_CHANNEL_CAPACITY);

        let now = now_ms();
        let mut bans = BanTable::new(usize_of(config.max_bans));
        let mut removed = false;
        for r in store.bans()? {
            let target = match r.target.parse::<BanTarget>() {
                Ok(t) => t,
                Err(e) => {
                    // One unreadable record must not keep the node from starting; leave it
                    // for an operator to inspect.
                    tracing::warn!(target = %r.target, error = %e, "ignoring unparsable persisted ban");
                    continue;
                }
            };
            if r.until_ms <= now {
                store.remove_ban(&r.target)?;
                removed = true;
                continue;
            }
            if let Some(evicted) = bans.insert(BanInfo {
                target,
                until_ms: r.until_ms,
                created_ms: r.created_ms,
                reason: r.reason,
            }) {
                store.remove_ban(&evicted.target.to_string())?;
                removed = true;
            }
        }
        if removed {
            store.flush()?;
        }
        if bans.len() > 0 {
            tracing::info!(bans = bans.len(), "re-applied persisted bans");
        }

        let inner = Inner {
            has_allowlisted_peers: AtomicBool::new(!allowlist.peers.is_empty()),
            has_allowlisted_ips: AtomicBool::new(!allowlist.nets.is_empty()),
            allowlist: RwLock::new(allowlist),
            limiters: RwLock::new(Limiters::new(&config)),
            ban_count: AtomicUsize::new(0),
            scores: Mutex::new(ScoreTable::new(
                usize_of(config.max_tracked_peers),
                Duration::from_secs(config.score_half_life_secs),
            )),
            ledger: Mutex::new(Ledger::new(usize_of(config.ledger_capacity_entries))),
            rate_strikes: Mutex::new(HashMap::new()),
            over_rate: Mutex::new(HashMap::new()),
            connected: Mutex::new(HashMap::new()),
            throttle: Arc::new(ThrottleShared::new(&config)),
            metrics: Arc::new(metrics),
            events,
            wakers: Mutex::new(HashMap::new()),
            next_waker_id: AtomicU64::new(1),
            allowlist_generation: AtomicU64::new(0),
            state: StateWriter::start(store.clone())
                .map_err(|e| GuardError::Setup(format!("starting the node-state writer thread: {e}")))?,
            store,
            max_message_bytes: AtomicU32::new(config.max_message_bytes),
            message_cost_units: AtomicU32::new(config.message_cost_units),
            verification_cost_units: AtomicU32::new(config.verification_cost_units),
            max_connections_per_ip: AtomicU32::new(config.max_connections_per_ip),
            max_connections_per_subnet: AtomicU32::new(config.max_connections_per_subnet),
            config: RwLock::new(config),
            bans: RwLock::new(bans),
        };
        inner.sync_ban_gauges(&read(&inner.bans));
        Ok(Guard { inner: Arc::new(inner) })
    }

    // ---- layer 4: per message, per record ----

    /// Admits one gossip or sync message of `bytes` bytes from `peer`, before it is decoded:
    /// the size cap, then the peer's message rate, byte rate and cost budget
    /// (`message_cost_units`). O(1); allocation-free unless `peer` is new to the limiters.
    /// Allowlisted peers skip the rate checks, not the size cap.
    pub fn admit_message(&self, peer: &PeerId, bytes: usize) -> Admission {
        let i = &*self.inner;
        let max = i.max_message_bytes.load(Ordering::Relaxed);
        let Ok(bytes32) = u32::try_from(bytes) else { return i.deny_message(peer, DropReason::Oversized) };
        if bytes32 > max {
            return i.deny_message(peer, DropReason::Oversized);
        }
        if i.allowlisted_peer(peer) {
            return Admission::Allow;
        }
        if i.ban_count.load(Ordering::Relaxed) > 0 && self.is_banned_peer(peer) {
            return i.deny_message(peer, DropReason::BannedPeer);
        }
        // Checked in order and stopped at the first refusal, so a message refused for its
        // count does not also drain the byte and cost budgets.
        let l = read(&i.limiters);
        let cost = i.message_cost_units.load(Ordering::Relaxed);
        let refused = [
            (&l.peer_messages, 1, DropReason::PeerRateExceeded),
            (&l.peer_bytes, bytes32, DropReason::PeerByteRateExceeded),
            (&l.peer_cost, cost, DropReason::PeerCostExceeded),
        ]
        .into_iter()
        .find_map(|(limiter, n, reason)| match limiter.check(peer, n) {
            Check::Allowed => None,
            Check::Denied => Some(reason),
            Check::Full => Some(DropReason::TrackerFull),
        });
        drop(l);
        if let Some(reason) = refused {
            return i.deny_message(peer, reason);
        }
        Admission::Allow
    }

    /// Charges `peer`, just refused for `reason`, a `rate_exceeded` strike if `reason` is a
    /// per-peer rate and no strike was charged in the last [`RATE_STRIKE_INTERVAL`]: the
    /// penalty counts seconds spent over the limit, not messages. Only for traffic the peer
    /// chose to send, never for responses we asked for (sync pages). palisade-net does not
    /// call it: honest gossip relays burst over their per-peer budgets after pauses and
    /// partitions (the chaos soak showed strikes landing on honest peers), so there a rate
    /// refusal is shed without a penalty.
    pub fn strike_over_rate(&self, peer: &PeerId, reason: DropReason) -> PenaltyOutcome {
        if reason.penalty() != Some(PenaltyReason::RateExceeded) || !self.inner.rate_strike_due(peer) {
            return PenaltyOutcome::None;
        }
        self.penalize(peer, None, PenaltyReason::RateExceeded)
    }

    /// `peer` was just refused for `reason` on traffic it chose to send (gossip, not the sync
    /// pages we asked for). A peer refused for a per-peer rate (messages, bytes, cost units,
    /// records) without a break longer than [`OVER_RATE_RUN_GAP`] for more than
    /// `limits.over_rate_grace_secs` pays a `persistent_over_rate` penalty, which disconnects
    /// it; the run then starts again, so one that comes back and keeps at it is banned. A
    /// burst shorter than the grace costs nothing: the rate limit alone holds it.
    pub fn over_rate(&self, peer: &PeerId, reason: DropReason) -> PenaltyOutcome {
        if reason.penalty() != Some(PenaltyReason::RateExceeded) {
            return PenaltyOutcome::None;
        }
        let (grace, cap) = {
            let c = read(&self.inner.config);
            (Duration::from_secs(c.over_rate_grace_secs), usize_of(c.max_tracked_peers))
        };
        let now = Instant::now();
        let due = {
            let mut runs = lock(&self.inner.over_rate);
            if runs.len() >= cap && !runs.contains_key(peer) {
                runs.retain(|_, r| now.duration_since(r.last) <= OVER_RATE_RUN_GAP);
                if runs.len() >= cap {
                    return PenaltyOutcome::None;
                }
            }
            let run = runs.entry(*peer).or_insert(OverRateRun { since: now, last: now });
            if now.duration_since(run.last) > OVER_RATE_RUN_GAP {
                run.since = now;
            }
            run.last = now;
            let due = now.duration_since(run.since) > grace;
            if due {
                run.since = now;
            }
            due
        };
        if !due {
            return PenaltyOutcome::None;
        }
        self.penalize(peer, None, PenaltyReason::PersistentOverRate)
    }

    /// Admits one new (not duplicate) record by `author` relayed by `peer`, before its
    /// signature is checked. Both the peer's record rate and the author's quota apply, so a
    /// peer inventing fresh author keys is still capped by `peer_records_per_sec`; the peer
    /// check runs first so a Sybil flood does not even fill the author map. Allowlisted peers
    /// skip the per-peer check; the author quota applies to everyone.
    pub fn admit_author(&self, peer: &PeerId, author: &AuthorKey) -> Admission {
        let i = &*self.inner;
        let l = read(&i.limiters);
        if !i.allowlisted_peer(peer) {
            match l.peer_records.check(peer, 1) {
                Check::Allowed => {}
                Check::Denied => {
                    drop(l);
                    return i.deny_message(peer, DropReason::PeerRecordRateExceeded);
                }
                Check::Full => {
                    drop(l);
                    return i.deny_message(peer, DropReason::TrackerFull);
                }
            }
        }
        let author_check = l.authors.check(author, 1);
        drop(l);
        match author_check {
            Check::Allowed => Admission::Allow,
            Check::Denied => i.deny_message(peer, DropReason::AuthorQuotaExceeded),
            Check::Full => i.deny_message(peer, DropReason::TrackerFull),
        }
    }

    /// Admits one equivocation proof relayed by `peer` (`limits.peer_proofs_per_sec`), before
    /// its halves are decoded. Each half then passes the record checks like any gossiped
    /// record. Allowlisted peers skip it.
    pub fn admit_proof(&self, peer: &PeerId) -> Admission {
        let i = &*self.inner;
        if i.allowlisted_peer(peer) {
            return Admission::Allow;
        }
        let check = read(&i.limiters).peer_proofs.check(peer, 1);
        match check {
            Check::Allowed => Admission::Allow,
            Check::Denied => i.deny_message(peer, DropReason::PeerProofRateExceeded),
            Check::Full => i.deny_message(peer, DropReason::TrackerFull),
        }
    }

    /// Charges `peer` for one signature verification (`verification_cost_units` from its cost
    /// budget, on top of the `message_cost_units` every message pays), so a peer sending
    /// records that need verifying exhausts its budget ten times faster (by default) than one
    /// sending duplicates.
    pub fn charge_verification(&self, peer: &PeerId) -> Admission {
        let i = &*self.inner;
        if i.allowlisted_peer(peer) {
            return Admission::Allow;
        }
        let cost = i.verification_cost_units.load(Ordering::Relaxed);
        let check = read(&i.limiters).peer_cost.check(peer, cost);
        match check {
            Check::Allowed => Admission::Allow,
            Check::Denied => i.deny_message(peer, DropReason::PeerCostExceeded),
            Check::Full => i.deny_message(peer, DropReason::TrackerFull),
        }
    }

    /// Counts and ledgers a drop that palisade-net decided (a full verify queue, a bad
    /// signature, ...), so every drop is in one audit trail.
    pub fn record_drop(&self, peer: Option<&PeerId>, ip: Option<IpAddr>, reason: DropReason) {
        let ip = ip.map(canonical_ip).or_else(|| peer.and_then(|p| self.inner.peer_ip(p)));
        self.inner.record(peer.copied(), ip, Action::Dropped, reason);
    }

    // ---- layer 5: reputation and bans ----

    /// Lowers `peer`'s score by the reason's weight. Below `disconnect_score_points` the
    /// peer's connections are closed (a [`GuardEvent::Disconnect`]); below `ban_score_points`
    /// it is banned for `ban_duration_secs` (persisted), and if enough banned peers share its
    /// IP, the IP is banned too. Allowlisted peers and IPs are never penalised.
    pub fn penalize(&self, peer: &PeerId, addr_ip: Option<IpAddr>, reason: PenaltyReason) -> PenaltyOutcome {
        let i = &*self.inner;
        let ip = addr_ip.map(canonical_ip).or_else(|| i.peer_ip(peer));
        if i.allowlisted_peer(peer) || ip.is_some_and(|ip| i.allowlisted_ip(ip)) {
            return PenaltyOutcome::None;
        }
        let now = now_ms();
        if let Some(b) = read(&i.bans).get(&BanTarget::Peer(*peer), now) {
            // Already banned (its connections are closing): nothing more to do.
            return PenaltyOutcome::Ban { until_ms: b.until_ms };
        }
        i.metrics.penalty(reason);
        i.ledger_push(Some(*peer), ip, Action::Penalized, Cow::Borrowed(reason.as_str()), None);
        let (disconnect_at, ban_at, ban_secs) = {
            let c = read(&i.config);
            (f64::from(c.disconnect_score_points), f64::from(c.ban_score_points), c.ban_duration_secs)
        };
        let score = lock(&i.scores).add(*peer, -reason.weight_points(), Instant::now());
        // Thresholds are whole points; the tolerance keeps the microseconds of decay between
        // two back-to-back penalties from deciding the outcome.
        let score = score - SCORE_TOLERANCE_POINTS;
        if score <= ban_at {
            lock(&i.scores).reset(peer);
            let (until_ms, persisted) = self.ban_with(
                BanTarget::Peer(*peer),
                Duration::from_secs(ban_secs),
                BAN_CAUSE_SCORE,
                None,
                ip,
            );
            if let Err(e) = persisted {
                tracing::warn!(%peer, error = %e, "ban applied in memory but not persisted");
            }
            return PenaltyOutcome::Ban { until_ms };
        }
        if score <= disconnect_at {
            i.metrics.disconnects.inc();
            i.ledger_push(Some(*peer), ip, Action::Disconnected, Cow::Borrowed(reason.as_str()), None);
            i.emit(GuardEvent::Disconnect { peer: *peer, reason });
            return PenaltyOutcome::Disconnect;
        }
        PenaltyOutcome::None
    }

    /// Bans `target` for `duration` (at least 1 ms; durations past the year 292 million are
    /// treated as permanent), persists the ban (flushed before returning) and closes the
    /// target's connections. Allowlisted targets can still be banned manually, but the
    /// allowlist wins at connection time. An error means the ban applies now but was not
    /// persisted.
    pub fn ban(&self, target: BanTarget, duration: Duration, reason: &str) -> Result<(), GuardError> {
        if duration.is_zero() {
            return Err(GuardError::BadDuration { secs: 0 });
        }
        let target = match target {
            BanTarget::Ip(ip) => BanTarget::Ip(canonical_ip(ip)),
            t => t,
        };
        let detail = Some(reason.chars().take(256).collect::<String>());
        if let BanTarget::Peer(p) = &target {
            lock(&self.inner.scores).reset(p);
        }
        let (_, persisted) = self.ban_with(target, duration, BAN_CAUSE_MANUAL, detail, None);
        self.inner.wait_persisted(persisted?)
    }

    /// Applies a ban and queues it for persistence (without waiting: bans are decided on the
    /// network loop). Returns its end time and the ticket of the last queued change (or why
    /// it could not be queued: the ban still applies in memory).
    fn ban_with(
        &self,
        target: BanTarget,
        duration: Duration,
        cause: &'static str,
        detail: Option<String>,
        ip_hint: Option<IpAddr>,
    ) -> (u64, Result<Ticket, GuardError>) {
        let i = &*self.inner;
        let now = now_ms();
        let until_ms = u64::try_from(duration.as_millis())
            .ok()
            .and_then(|d| now.checked_add(d))
            .unwrap_or(PERMANENT_UNTIL_MS);
        let info = BanInfo {
            target,
            until_ms,
            created_ms: now,
            reason: detail.clone().unwrap_or_else(|| cause.to_string()),
        };
        let evicted = {
            let mut bans = write(&i.bans);
            let evicted = bans.insert(info.clone());
            i.sync_ban_gauges(&bans);
            evicted
        };
        let mut result = i.persist_ban(&info);
        if let Some(ev) = evicted {
            i.metrics.ban_evictions.inc();
            let removed = i.unpersist_ban(&ev.target);
            result = result.and(removed);
        }
        match target {
            BanTarget::Peer(_) => i.metrics.bans_peer.inc(),
            BanTarget::Ip(_) => i.metrics.bans_ip.inc(),
        };
        let (peer, ip) = match target {
            BanTarget::Peer(p) => (Some(p), ip_hint.or_else(|| i.peer_ip(&p))),
            BanTarget::Ip(ip) => (None, Some(ip)),
        };
        i.ledger_push(peer, ip, Action::Banned, Cow::Borrowed(cause), detail);
        tracing::info!(%target, until_ms, cause, "banned");
        i.emit(GuardEvent::Banned { target, until_ms, reason: info.reason.clone() });

        // The IP rule: enough peers banned at once for misbehaviour on one IP ban the IP
        // itself. Manual bans do not count: an admin names exactly what to ban (and can ban
        // the IP), and nodes behind one NAT, or on one host, share the address they dial from.
        if let (BanTarget::Peer(p), Some(ip), true) = (target, ip, cause == BAN_CAUSE_SCORE) {
            let (threshold, ban_secs) = {
                let c = read(&i.config);
                (c.ip_ban_after_banned_peers, c.ban_duration_secs)
            };
            if threshold > 0 && !i.allowlisted_ip(ip) {
                let n = write(&i.bans).note_banned_peer_ip(ip, p, until_ms, now);
                let already = read(&i.bans).get(&BanTarget::Ip(ip), now).is_some();
                if n >= usize_of(threshold) && !already {
                    let (_, ip_ban) = self.ban_with(
                        BanTarget::Ip(ip),
                        Duration::from_secs(ban_secs),
                        BAN_CAUSE_IP_THRESHOLD,
                        None,
                        None,
                    );
                    result = result.and(ip_ban);
                }
            }
        }
        (until_ms, result)
    }

    /// Lifts a ban (and forgets the peer's score). Returns whether there was one.
    pub fn unban(&self, target: &BanTarget) -> Result<bool, GuardError> {
        let i = &*self.inner;
        let target = match target {
            BanTarget::Ip(ip) => BanTarget::Ip(canonical_ip(*ip)),
            t => *t,
        };
        let in_memory = {
            let mut bans = write(&i.bans);
            let r = bans.remove(&target);
            i.sync_ban_gauges(&bans);
            r.is_some_and(|b| b.active(now_ms()))
        };
        if let BanTarget::Peer(p) = &target {
            lock(&i.scores).reset(p);
        }
        // Whether it was persisted: the store answers once the deletion is written.
        let stored =
            matches!(i.store.bans(), Ok(bans) if bans.iter().any(|b| b.target == target.to_string()));
        let ticket = i.unpersist_ban(&target)?;
        i.wait_persisted(ticket)?;
        if in_memory {
            i.metrics.unbans.inc();
            let (peer, ip) = match target {
                BanTarget::Peer(p) => (Some(p), None),
                BanTarget::Ip(ip) => (None, Some(ip)),
            };
            i.ledger_push(peer, ip, Action::Unbanned, Cow::Borrowed(BAN_CAUSE_MANUAL), None);
            i.emit(GuardEvent::Unbanned { target });
        }
        Ok(in_memory || stored)
    }

    /// The writer of node state (bans, peer book): queue changes without blocking.
    pub fn state_writer(&self) -> &StateWriter {
        &self.inner.state
    }

    /// Writes the queued ban and peer-book changes, flushes them and stops the writer
    /// thread (node shutdown, before the final store flush). Later changes apply in memory
    /// only.
    pub fn close_state_writer(&self) {
        self.inner.state.close();
    }

    /// Every ban in force.
    pub fn bans(&self) -> Vec<BanInfo> {
        read(&self.inner.bans).active(now_ms())
    }

    /// Whether `peer` is banned now (an expired ban never counts, even before it is pruned).
    pub fn is_banned_peer(&self, peer: &PeerId) -> bool {
        self.inner.ban_count.load(Ordering::Relaxed) > 0
            && read(&self.inner.bans).get(&BanTarget::Peer(*peer), now_ms()).is_some()
    }

    /// Whether `ip` is banned now.
    pub fn is_banned_ip(&self, ip: IpAddr) -> bool {
        self.inner.ban_count.load(Ordering::Relaxed) > 0
            && read(&self.inner.bans).get(&BanTarget::Ip(canonical_ip(ip)), now_ms()).is_some()
    }

    /// Whether `peer` is in `allowlist_peers`.
    pub fn is_allowlisted(&self, peer: &PeerId) -> bool {
        self.inner.allowlisted_peer(peer)
    }

    /// Whether `ip` is in `allowlist_ips`.
    pub fn is_allowlisted_ip(&self, ip: IpAddr) -> bool {
        self.inner.allowlisted_ip(ip)
    }

    /// The current (decayed) score of `peer` in points (0 for unknown peers).
    pub fn score(&self, peer: &PeerId) -> f64 {
        lock(&self.inner.scores).get(peer, Instant::now())
    }

    /// What the guard knows about `peer`, or `None` if it knows nothing (never connected,
    /// never penalised, not banned, no limiter state).
    pub fn peer_state(&self, peer: &PeerId) -> Option<PeerGuardState> {
        let i = &*self.inner;
        let score_points = self.score(peer);
        let banned_until_ms = read(&i.bans).get(&BanTarget::Peer(*peer), now_ms()).map(|b| b.until_ms);
        let conn = lock(&i.connected).get(peer).copied();
        let throttle = i.throttle.peer_stats(peer);
        let (messages, message_bytes, cost_units, records, tracked) = {
            let l = read(&i.limiters);
            let tracked = l.peer_messages.state(peer).available < l.peer_messages.state(peer).burst
                || l.peer_records.state(peer).available < l.peer_records.state(peer).burst;
            (
                l.peer_messages.state(peer),
                l.peer_bytes.state(peer),
                l.peer_cost.state(peer),
                l.peer_records.state(peer),
                tracked,
            )
        };
        if score_points == 0.0
            && banned_until_ms.is_none()
            && conn.is_none()
            && throttle.is_none()
            && !tracked
        {
            return None;
        }
        let ip = conn.and_then(|c| c.ip);
        Some(PeerGuardState {
            peer: peer.to_base58(),
            score_points,
            banned_until_ms,
            allowlisted: self.is_allowlisted(peer) || ip.is_some_and(|ip| self.is_allowlisted_ip(ip)),
            connections: conn.map(|c| c.connections).unwrap_or(0),
            ip,
            messages,
            message_bytes,
            cost_units,
            records,
            bytes_in: throttle.as_ref().map(|t| t.bytes_in.load(Ordering::Relaxed)).unwrap_or(0),
            bytes_out: throttle.as_ref().map(|t| t.bytes_out.load(Ordering::Relaxed)).unwrap_or(0),
        })
    }

    // ---- layer 6: audit and live limits ----

    /// Ledger entries with `seq > after_seq`, oldest first, at most `limit` (capped at
    /// [`MAX_LEDGER_PAGE`]).
    pub fn ledger(&self, after_seq: Option<u64>, limit: usize) -> Vec<LedgerEntry> {
        lock(&self.inner.ledger).page(after_seq, limit.min(MAX_LEDGER_PAGE))
    }

    /// Totals by action and reason, e.g. `dropped.peer_rate_exceeded`,
    /// `penalized.invalid_signature`, `banned.peer`, `throttled_bytes.inbound`. The same
    /// counters Prometheus exports.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let m = &self.inner.metrics;
        let mut out = BTreeMap::new();
        for (r, c) in DropReason::ALL.iter().zip(m.drops.iter()) {
            out.insert(format!("dropped.{}", r.as_str()), c.get());
        }
        for (r, c) in PenaltyReason::ALL.iter().zip(m.penalties.iter()) {
            out.insert(format!("penalized.{}", r.as_str()), c.get());
        }
        out.insert("banned.peer".into(), m.bans_peer.get());
        out.insert("banned.ip".into(), m.bans_ip.get());
        out.insert("unbanned".into(), m.unbans.get());
        out.insert("disconnected".into(), m.disconnects.get());
        out.insert("throttled_bytes.inbound".into(), m.throttled_in.get());
        out.insert("throttled_bytes.outbound".into(), m.throttled_out.get());
        out.insert("throttle_waits.inbound".into(), m.throttle_waits_in.get());
        out.insert("throttle_waits.outbound".into(), m.throttle_waits_out.get());
        out.insert("transferred_bytes.inbound".into(), m.bytes_in.get());
        out.insert("transferred_bytes.outbound".into(), m.bytes_out.get());
        out.insert("ban_store_errors".into(), m.store_errors.get());
        out.insert("ban_evictions".into(), m.ban_evictions.get());
        out.insert("ledger_overwritten".into(), m.ledger_overwritten.get());
        out
    }

    /// The limits in force.
    pub fn limits(&self) -> GuardConfig {
        read(&self.inner.config).clone()
    }

    /// Changes one limit at run time. `key` may carry the `limits.` prefix; `value` is text
    /// (numbers in decimal, lists comma-separated or as a JSON array). The whole config is
    /// re-validated; keys in [`RESTART_ONLY_KEYS`] are refused. Changing a rate resets that
    /// limiter's state (every key gets a fresh burst).
    pub fn set_limit(&self, key: &str, value: &str) -> Result<(), InvalidSetting> {
        let i = &*self.inner;
        let mut cfg = write(&i.config);
        let new = cfg.with_setting(key, value)?;
        let allowlist = new.allowlist()?;
        let allowlist_changed =
            cfg.allowlist_peers != new.allowlist_peers || cfg.allowlist_ips != new.allowlist_ips;
        i.has_allowlisted_peers.store(!allowlist.peers.is_empty(), Ordering::Relaxed);
        i.has_allowlisted_ips.store(!allowlist.nets.is_empty(), Ordering::Relaxed);
        *write(&i.allowlist) = allowlist;
        write(&i.limiters).update(&cfg, &new);
        i.throttle.rates.update(&new);
        i.max_message_bytes.store(new.max_message_bytes, Ordering::Relaxed);
        i.message_cost_units.store(new.message_cost_units, Ordering::Relaxed);
        i.verification_cost_units.store(new.verification_cost_units, Ordering::Relaxed);
        i.max_connections_per_ip.store(new.max_connections_per_ip, Ordering::Relaxed);
        i.max_connections_per_subnet.store(new.max_connections_per_subnet, Ordering::Relaxed);
        lock(&i.scores)
            .configure(usize_of(new.max_tracked_peers), Duration::from_secs(new.score_half_life_secs));
        write(&i.bans).set_max(usize_of(new.max_bans));
        tracing::info!(key, value, "limit changed");
        *cfg = new;
        drop(cfg);
        if allowlist_changed {
            // A peer or IP taken off the allowlist may be banned and connected: have the
            // behaviours re-check every connection (and close those a ban now applies to).
            i.allowlist_generation.fetch_add(1, Ordering::Relaxed);
            i.wake_behaviours();
        }
        Ok(())
    }

    /// Events for the network layer (bans, unbans, disconnects). Bounded: a receiver that
    /// falls [`EVENT_CHANNEL_CAPACITY`] events behind gets `Lagged` and should re-check its
    /// connections against [`Guard::is_banned_peer`].
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<GuardEvent> {
        self.inner.events.subscribe()
    }

    /// Housekeeping, run every [`MAINTENANCE_INTERVAL`] by the behaviour: lifts expired bans
    /// (memory and store), drops idle limiter keys, decayed scores and dead throttle entries.
    pub fn maintain(&self) {
        let i = &*self.inner;
        let now = now_ms();
        let expired = {
            let mut bans = write(&i.bans);
            let e = bans.take_expired(now);
            i.sync_ban_gauges(&bans);
            e
        };
        for b in expired {
            if let Err(e) = i.unpersist_ban(&b.target) {
                tracing::warn!(target = %b.target, error = %e, "could not delete expired ban");
            }
            i.metrics.unbans.inc();
            let (peer, ip) = match b.target {
                BanTarget::Peer(p) => (Some(p), None),
                BanTarget::Ip(ip) => (None, Some(ip)),
            };
            i.ledger_push(peer, ip, Action::Unbanned, Cow::Borrowed("expired"), None);
            tracing::info!(target = %b.target, "ban expired");
            i.emit(GuardEvent::Unbanned { target: b.target });
        }
        {
            let l = read(&i.limiters);
            l.prune();
            for (name, keys, _, _) in l.all() {
                i.metrics.set_tracked(name, keys);
            }
        }
        let mut scores = lock(&i.scores);
        scores.prune(Instant::now());
        i.metrics.set_tracked("scores", scores.len());
        drop(scores);
        i.throttle.prune();
    }

    /// Sizes of the bounded maps (keys, caps, estimated memory), for the admin API and the
    /// benchmark.
    pub fn tracker_stats(&self) -> Vec<TrackerStats> {
        let mut out: Vec<TrackerStats> = read(&self.inner.limiters)
            .all()
            .into_iter()
            .map(|(map, keys, cap, memory_bytes)| TrackerStats { map, keys, cap, memory_bytes })
            .collect();
        let scores = lock(&self.inner.scores);
        out.push(TrackerStats {
            map: "scores",
            keys: scores.len(),
            cap: usize_of(read(&self.inner.config).max_tracked_peers),
            memory_bytes: scores.len()
                * (std::mem::size_of::<(PeerId, f64, Instant)>() + MAP_OVERHEAD_BYTES_PER_KEY),
        });
        out
    }

    // ---- layers 1 and 2 ----

    /// The connection-level behaviour (per-IP/subnet caps and rates, bans, disconnects). One
    /// per swarm.
    pub fn behaviour(&self) -> GuardBehaviour {
        GuardBehaviour::new(self.clone())
    }

    /// Wraps an authenticated connection's muxer in the bandwidth throttle.
    pub fn throttle<M: StreamMuxer>(&self, peer: PeerId, muxer: M) -> ThrottledMuxer<M> {
        ThrottledMuxer::new(self, peer, muxer)
    }

    /// libp2p's connection-limits behaviour with the total / direction / per-peer / pending
    /// caps from the config; allowlisted peers bypass it.
    pub fn connection_limits(&self) -> libp2p::connection_limits::Behaviour {
        let c = read(&self.inner.config);
        let limits = libp2p::connection_limits::ConnectionLimits::default()
            .with_max_established(Some(c.max_established_total))
            .with_max_established_incoming(Some(c.max_established_incoming))
            .with_max_established_outgoing(Some(c.max_established_outgoing))
            .with_max_established_per_peer(Some(c.max_established_per_peer))
            .with_max_pending_incoming(Some(c.max_pending_incoming))
            .with_max_pending_outgoing(Some(c.max_pending_outgoing));
        let mut b = libp2p::connection_limits::Behaviour::new(limits);
        for p in &read(&self.inner.allowlist).peers {
            b.bypass_peer_id(p);
        }
        b
    }

    /// libp2p's memory-pressure behaviour (refuses new connections while resident memory is
    /// above `max_process_memory_bytes`), or `None` when that limit is 0 (disabled). Wrap it
    /// in `libp2p::swarm::behaviour::toggle::Toggle`.
    pub fn memory_connection_limits(&self) -> Option<libp2p::memory_connection_limits::Behaviour> {
        let max = read(&self.inner.config).max_process_memory_bytes;
        (max > 0).then(|| {
            libp2p::memory_connection_limits::Behaviour::with_max_bytes(
                usize::try_from(max).unwrap_or(usize::MAX),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(cfg: GuardConfig) -> (Guard, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&palisade_store::StoreConfig::new(dir.path().join("db"))).unwrap();
        (Guard::new(cfg, store, &mut Registry::default()).unwrap(), dir)
    }

    #[test]
    fn guard_is_send_sync_clone() {
        fn assert<T: Send + Sync + Clone + 'static>() {}
        assert::<Guard>();
    }

    #[test]
    fn oversized_is_denied_before_rates() {
        let (g, _d) = guard(GuardConfig::default());
        let p = PeerId::random();
        let max = g.limits().max_message_bytes as usize;
        assert_eq!(g.admit_message(&p, max + 1), Admission::Deny(DropReason::Oversized));
        assert_eq!(g.admit_message(&p, usize::MAX), Admission::Deny(DropReason::Oversized));
        assert_eq!(g.admit_message(&p, max), Admission::Allow);
        assert_eq!(g.counters()["dropped.oversized"], 2);
    }

    #[test]
    fn cost_budget_weights_verification() {
        let cfg = GuardConfig {
            peer_cost_units_per_sec: 1,
            peer_burst_cost_units: 100,
            message_cost_units: 1,
            verification_cost_units: 10,
            ..GuardConfig::default()
        };
        let (g, _d) = guard(cfg);
        let dup = PeerId::random();
        let fresh = PeerId::random();
        // Duplicates only pay the message cost: 100 fit in the burst.
        let dups = (0..200).filter(|_| g.admit_message(&dup, 100).is_allowed()).count();
        assert_eq!(dups, 100);
        // Records needing verification pay 1 + 10: only 9 fit.
        let verified = (0..200)
            .filter(|_| {
                g.admit_message(&fresh, 100).is_allowed() && g.charge_verification(&fresh).is_allowed()
            })
            .count();
        assert_eq!(verified, 9);
        assert!(g.counters()["dropped.peer_cost_exceeded"] > 0);
    }
}
