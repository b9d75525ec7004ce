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
mod admission;
mod ban;
mod behaviour;
mod config;
mod error;
mod introspect;
mod keyed;
mod ledger;
mod metrics;
mod penalty;
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

    /// A peer disconnected at the disconnect line and banned by a later penalty (its
    /// connection already gone) is banned with its IP, so the IP rule counts it.
    #[test]
    fn a_peer_banned_after_its_disconnect_keeps_its_ip() {
        let (g, _dir) = guard(GuardConfig::default());
        let peer = PeerId::random();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        g.inner.note_connected(peer, Some(ip));
        // Two invalid signatures (25 each) reach the disconnect line (-50) ...
        g.penalize(&peer, None, PenaltyReason::InvalidSignature);
        assert_eq!(g.penalize(&peer, None, PenaltyReason::InvalidSignature), PenaltyOutcome::Disconnect);
        // ... the connection closes, and the next two reach the ban line.
        g.inner.note_disconnected(peer, Some(ip));
        g.penalize(&peer, None, PenaltyReason::InvalidSignature);
        let outcome = g.penalize(&peer, None, PenaltyReason::InvalidSignature);
        assert!(matches!(outcome, PenaltyOutcome::Ban { .. }), "{outcome:?}");
        let ban = g.ledger(None, 100).into_iter().find(|e| e.action == Action::Banned).unwrap();
        assert_eq!(ban.ip, Some(ip));
    }
}
