//! Bandwidth throttling: token buckets over bytes, wrapped around every substream of an
//! authenticated connection.
//!
//! [`ThrottledMuxer`] wraps a libp2p [`StreamMuxer`] after the handshake (so it knows the
//! [`PeerId`]) the way libp2p's bandwidth-metrics wrapper does, and wraps each substream in a
//! [`ThrottledSubstream`]. Every read and write draws from three buckets per direction: the
//! connection's, the peer's (shared by all its connections) and the node's global one.
//!
//! When a bucket is empty the substream returns `Poll::Pending` and arms a tokio timer for when
//! enough tokens will have accumulated; it never reads ahead into a buffer of its own. The
//! unread bytes stay in the muxer's per-stream receive window, which then stops granting the
//! sender credit (yamux and QUIC flow control), so the slowdown propagates to the remote sender
//! instead of into our memory.
//!
//! Rates are read from shared atomics on every refill, so `set_limit` applies to live
//! connections at once.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::PeerId;

use crate::config::GuardConfig;
use crate::metrics::Metrics;
use crate::reason::Direction;
use crate::{Guard, Inner};

/// Smallest bucket capacity whatever the rate: a bucket must hold at least a few frames, or a
/// slow rate would stall protocols in sub-frame steps.
pub const MIN_BUCKET_BYTES: u64 = 16 * 1024;

/// A paused read or write resumes once this many bytes (or the whole request, if smaller) can
/// be granted; bigger steps mean fewer timer wake-ups per second of throttling.
pub const MIN_GRANT_BYTES: u64 = 8 * 1024;

/// Longest single timer sleep: rates changed by `set_limit` take effect within this.
const MAX_WAIT: Duration = Duration::from_secs(1);
/// Shortest timer sleep (tokio's timer resolution).
const MIN_WAIT: Duration = Duration::from_millis(1);

/// Throttle ledger entries per connection are written at most this often: the ledger records
/// that a connection is being throttled, the metrics count by how much.
pub const THROTTLE_LEDGER_INTERVAL: Duration = Duration::from_secs(10);

/// Live rates, shared by every bucket of one class.
#[derive(Debug)]
pub(crate) struct Rates {
    conn_in: AtomicU64,
    conn_out: AtomicU64,
    peer_in: AtomicU64,
    peer_out: AtomicU64,
    global_in: AtomicU64,
    global_out: AtomicU64,
    burst_millis: AtomicU64,
    max_inbound_streams: AtomicU64,
}

impl Rates {
    pub(crate) fn new(c: &GuardConfig) -> Rates {
        let r = Rates {
            conn_in: AtomicU64::new(0),
            conn_out: AtomicU64::new(0),
            peer_in: AtomicU64::new(0),
            peer_out: AtomicU64::new(0),
            global_in: AtomicU64::new(0),
            global_out: AtomicU64::new(0),
            burst_millis: AtomicU64::new(0),
            max_inbound_streams: AtomicU64::new(0),
        };
        r.update(c);
        r
    }

    pub(crate) fn update(&self, c: &GuardConfig) {
        self.conn_in.store(c.conn_inbound_bytes_per_sec, Ordering::Relaxed);
        self.conn_out.store(c.conn_outbound_bytes_per_sec, Ordering::Relaxed);
        self.peer_in.store(c.peer_inbound_bytes_per_sec, Ordering::Relaxed);
        self.peer_out.store(c.peer_outbound_bytes_per_sec, Ordering::Relaxed);
        self.global_in.store(c.global_inbound_bytes_per_sec, Ordering::Relaxed);
        self.global_out.store(c.global_outbound_bytes_per_sec, Ordering::Relaxed);
        self.burst_millis.store(c.throttle_burst_millis, Ordering::Relaxed);
        self.max_inbound_streams.store(u64::from(c.max_streams_per_connection), Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy)]
enum Class {
    Conn,
    Peer,
    Global,
}

impl Rates {
    fn rate(&self, class: Class, dir: Direction) -> u64 {
        let a = match (class, dir) {
            (Class::Conn, Direction::Inbound) => &self.conn_in,
            (Class::Conn, Direction::Outbound) => &self.conn_out,
            (Class::Peer, Direction::Inbound) => &self.peer_in,
            (Class::Peer, Direction::Outbound) => &self.peer_out,
            (Class::Global, Direction::Inbound) => &self.global_in,
            (Class::Global, Direction::Outbound) => &self.global_out,
        };
        a.load(Ordering::Relaxed).max(1)
    }

    fn capacity(&self, rate: u64) -> f64 {
        let burst = rate.saturating_mul(self.burst_millis.load(Ordering::Relaxed)) / 1000;
        burst.max(MIN_BUCKET_BYTES) as f64
    }
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    last: Instant,
}

/// One token bucket over bytes. Tokens may go slightly negative when concurrent readers race
/// between grant and consume; the debt is paid back before the next grant.
#[derive(Debug)]
pub(crate) struct Bucket {
    class: Class,
    dir: Direction,
    state: Mutex<BucketState>,
}

impl Bucket {
    fn new(class: Class, dir: Direction, rates: &Rates) -> Bucket {
        let cap = rates.capacity(rates.rate(class, dir));
        Bucket { class, dir, state: Mutex::new(BucketState { tokens: cap, last: Instant::now() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BucketState> {
        // Updates are single assignments: a poisoned lock holds a consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refills and returns (tokens, rate).
    fn available(&self, rates: &Rates, now: Instant) -> (f64, u64) {
        let rate = rates.rate(self.class, self.dir);
        let cap = rates.capacity(rate);
        let mut s = self.lock();
        let dt = now.saturating_duration_since(s.last).as_secs_f64();
        s.tokens = (s.tokens + dt * rate as f64).min(cap);
        s.last = now;
        (s.tokens, rate)
    }

    fn consume(&self, n: usize) {
        let mut s = self.lock();
        s.tokens -= n as f64;
    }
}

/// What a read or write may do now.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Grant {
    /// Transfer at most this many bytes.
    Now(usize),
    /// Wait this long, then ask again.
    Wait(Duration),
}

/// The budget of one peer, shared by all its connections.
#[derive(Debug)]
pub(crate) struct PeerThrottle {
    inbound: Bucket,
    outbound: Bucket,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) connections: AtomicUsize,
}

/// Node-wide throttle state.
#[derive(Debug)]
pub(crate) struct ThrottleShared {
    pub(crate) rates: Rates,
    global_in: Bucket,
    global_out: Bucket,
    /// Peers with at least one throttled connection; entries die with the peer's last
    /// connection, so this is bounded by the connection limits.
    peers: Mutex<HashMap<PeerId, Weak<PeerThrottle>>>,
}

impl ThrottleShared {
    pub(crate) fn new(c: &GuardConfig) -> ThrottleShared {
        let rates = Rates::new(c);
        ThrottleShared {
            global_in: Bucket::new(Class::Global, Direction::Inbound, &rates),
            global_out: Bucket::new(Class::Global, Direction::Outbound, &rates),
            rates,
            peers: Mutex::new(HashMap::new()),
        }
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Weak<PeerThrottle>>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn peer(&self, peer: PeerId) -> Arc<PeerThrottle> {
        let mut peers = self.peers();
        if let Some(p) = peers.get(&peer).and_then(Weak::upgrade) {
            return p;
        }
        // Opportunistic cleanup keeps the map at the number of connected peers.
        peers.retain(|_, w| w.strong_count() > 0);
        let p = Arc::new(PeerThrottle {
            inbound: Bucket::new(Class::Peer, Direction::Inbound, &self.rates),
            outbound: Bucket::new(Class::Peer, Direction::Outbound, &self.rates),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
        });
        peers.insert(peer, Arc::downgrade(&p));
        p
    }

    /// The live budget of `peer`, if it has a throttled connection.
    pub(crate) fn peer_stats(&self, peer: &PeerId) -> Option<Arc<PeerThrottle>> {
        self.peers().get(peer).and_then(Weak::upgrade)
    }

    pub(crate) fn prune(&self) {
        let mut peers = self.peers();
        peers.retain(|_, w| w.strong_count() > 0);
        if peers.capacity() > 64 && peers.len() < peers.capacity() / 4 {
            peers.shrink_to_fit();
        }
    }
}

/// The buckets of one connection. It holds the guard's state weakly: a connection task that
/// outlives its swarm must not keep the guard (and its store) alive.
struct ConnThrottle {
    shared: Arc<ThrottleShared>,
    metrics: Arc<Metrics>,
    guard: Weak<Inner>,
    peer_id: PeerId,
    peer: Arc<PeerThrottle>,
    inbound: Bucket,
    outbound: Bucket,
    /// Allowlisted peers skip the connection and peer buckets (the global one still applies).
    exempt: bool,
    created: Instant,
    last_ledger_ms: AtomicU64,
    /// Inbound (remote-opened) substreams alive now, against `max_streams_per_connection`.
    open_inbound: AtomicUsize,
    max_inbound: usize,
}

/// Holds one inbound stream slot; frees it when the substream is dropped.
struct StreamSlot(Arc<ConnThrottle>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.open_inbound.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for StreamSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamSlot")
    }
}

impl std::fmt::Debug for ConnThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnThrottle").field("peer_id", &self.peer_id).field("exempt", &self.exempt).finish()
    }
}

impl Drop for ConnThrottle {
    fn drop(&mut self) {
        self.peer.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnThrottle {
    fn buckets(&self, dir: Direction) -> [&Bucket; 3] {
        let shared = &self.shared;
        match dir {
            Direction::Inbound => [&self.inbound, &self.peer.inbound, &shared.global_in],
            Direction::Outbound => [&self.outbound, &self.peer.outbound, &shared.global_out],
        }
    }

    fn grant(&self, dir: Direction, want: usize) -> Grant {
        if want == 0 {
            return Grant::Now(0);
        }
        let rates = &self.shared.rates;
        let now = Instant::now();
        let need = (want as u64).min(MIN_GRANT_BYTES) as f64;
        let mut allowed = want as f64;
        let mut wait = Duration::ZERO;
        for (i, b) in self.buckets(dir).into_iter().enumerate() {
            if self.exempt && i < 2 {
                continue;
            }
            let (tokens, rate) = b.available(rates, now);
            allowed = allowed.min(tokens);
            if tokens < need {
                let secs = (need - tokens) / rate as f64;
                wait = wait.max(Duration::from_secs_f64(secs.clamp(0.0, MAX_WAIT.as_secs_f64())));
            }
        }
        if wait > Duration::ZERO {
            Grant::Wait(wait.clamp(MIN_WAIT, MAX_WAIT))
        } else {
            // `allowed >= need >= 1` here.
            Grant::Now((allowed as usize).clamp(1, want))
        }
    }

    fn consume(&self, dir: Direction, n: usize, waited: bool) {
        if n == 0 {
            return;
        }
        for (i, b) in self.buckets(dir).into_iter().enumerate() {
            if self.exempt && i < 2 {
                continue;
            }
            b.consume(n);
        }
        let m = &self.metrics;
        let n64 = n as u64;
        match dir {
            Direction::Inbound => {
                self.peer.bytes_in.fetch_add(n64, Ordering::Relaxed);
                m.bytes_in.inc_by(n64);
                if waited {
                    m.throttled_in.inc_by(n64);
                }
            }
            Direction::Outbound => {
                self.peer.bytes_out.fetch_add(n64, Ordering::Relaxed);
                m.bytes_out.inc_by(n64);
                if waited {
                    m.throttled_out.inc_by(n64);
                }
            }
        }
    }

    fn note_wait(&self, dir: Direction) {
        let m = &self.metrics;
        match dir {
            Direction::Inbound => m.throttle_waits_in.inc(),
            Direction::Outbound => m.throttle_waits_out.inc(),
        };
        let now_ms = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_ledger_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(THROTTLE_LEDGER_INTERVAL.as_millis()).unwrap_or(10_000);
        // `last == 0` means never written.
        if (last == 0 || now_ms.saturating_sub(last) >= interval)
            && self
                .last_ledger_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let reason = match dir {
                Direction::Inbound => "inbound_bandwidth",
                Direction::Outbound => "outbound_bandwidth",
            };
            if let Some(inner) = self.guard.upgrade() {
                inner.ledger_throttle(self.peer_id, reason);
            }
        }
    }
}

/// Whether a tokio timer can be armed here. Without a runtime (never the case inside a
/// `SwarmBuilder::with_tokio` swarm) the throttle lets traffic through rather than panic.
fn have_timer() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// A [`StreamMuxer`] whose substreams are throttled; see the module docs.
#[pin_project::pin_project]
#[derive(Debug)]
pub struct ThrottledMuxer<M> {
    #[pin]
    inner: M,
    conn: Arc<ConnThrottle>,
}

impl<M> ThrottledMuxer<M> {
    pub(crate) fn new(guard: &Guard, peer_id: PeerId, inner: M) -> ThrottledMuxer<M> {
        let shared = guard.inner.throttle.clone();
        let peer = shared.peer(peer_id);
        peer.connections.fetch_add(1, Ordering::Relaxed);
        let conn = ConnThrottle {
            inbound: Bucket::new(Class::Conn, Direction::Inbound, &shared.rates),
            outbound: Bucket::new(Class::Conn, Direction::Outbound, &shared.rates),
            peer,
            peer_id,
            exempt: guard.is_allowlisted(&peer_id),
            created: Instant::now(),
            last_ledger_ms: AtomicU64::new(0),
            open_inbound: AtomicUsize::new(0),
            max_inbound: usize::try_from(shared.rates.max_inbound_streams.load(Ordering::Relaxed))
                .unwrap_or(usize::MAX),
            metrics: guard.inner.metrics.clone(),
            guard: Arc::downgrade(&guard.inner),
            shared,
        };
        ThrottledMuxer { inner, conn: Arc::new(conn) }
    }

    /// The remote peer.
    pub fn peer_id(&self) -> PeerId {
        self.conn.peer_id
    }
}

impl<M: StreamMuxer> StreamMuxer for ThrottledMuxer<M> {
    type Substream = ThrottledSubstream<M::Substream>;
    type Error = M::Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let mut this = self.project();
        loop {
            let s = futures::ready!(this.inner.as_mut().poll_inbound(cx))?;
            let conn: &Arc<ConnThrottle> = this.conn;
            let open = conn.open_inbound.fetch_add(1, Ordering::Relaxed);
            let slot = StreamSlot(conn.clone());
            if open >= conn.max_inbound && !conn.exempt {
                // Over the soft cap: reset this stream only (dropping it does), keep the
                // connection, count it, and look for the next one.
                drop((s, slot));
                if let Some(inner) = conn.guard.upgrade() {
                    inner.record(
                        Some(conn.peer_id),
                        None,
                        crate::Action::Dropped,
                        crate::DropReason::StreamLimitExceeded,
                    );
                }
                continue;
            }
            let mut sub = ThrottledSubstream::new(s, conn.clone());
            sub.slot = Some(slot);
            return Poll::Ready(Ok(sub));
        }
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.project();
        let s = futures::ready!(this.inner.poll_outbound(cx))?;
        Poll::Ready(Ok(ThrottledSubstream::new(s, this.conn.clone())))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.project().inner.poll_close(cx)
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        self.project().inner.poll(cx)
    }
}

/// One throttled substream.
#[pin_project::pin_project]
#[derive(Debug)]
pub struct ThrottledSubstream<S> {
    #[pin]
    inner: S,
    conn: Arc<ConnThrottle>,
    read_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    write_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    read_waited: bool,
    write_waited: bool,
    /// The inbound stream slot this substream holds (`None` for outbound substreams).
    slot: Option<StreamSlot>,
}

impl<S> ThrottledSubstream<S> {
    fn new(inner: S, conn: Arc<ConnThrottle>) -> Self {
        ThrottledSubstream {
            inner,
            conn,
            read_timer: None,
            write_timer: None,
            read_waited: false,
            write_waited: false,
            slot: None,
        }
    }
}

/// Waits for the timer (if armed), then asks the buckets; returns how many bytes may move.
fn poll_grant(
    conn: &ConnThrottle,
    dir: Direction,
    timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    waited: &mut bool,
    want: usize,
    cx: &mut Context<'_>,
) -> Poll<usize> {
    loop {
        if let Some(t) = timer.as_mut() {
            futures::ready!(t.as_mut().poll(cx));
            *timer = None;
        }
        match conn.grant(dir, want) {
            Grant::Now(n) => return Poll::Ready(n),
            Grant::Wait(_) if !have_timer() => return Poll::Ready(want),
            Grant::Wait(d) => {
                *waited = true;
                conn.note_wait(dir);
                *timer = Some(Box::pin(tokio::time::sleep(d)));
                // Loop: polling the new timer registers the waker.
            }
        }
    }
}

impl<S: AsyncRead> AsyncRead for ThrottledSubstream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let n = futures::ready!(poll_grant(
            this.conn,
            Direction::Inbound,
            this.read_timer,
            this.read_waited,
            buf.len(),
            cx
        ));
        let (head, _) = buf.split_at_mut(n.min(buf.len()));
        let read = futures::ready!(this.inner.poll_read(cx, head))?;
        this.conn.consume(Direction::Inbound, read, *this.read_waited);
        *this.read_waited = false;
        Poll::Ready(Ok(read))
    }
}

impl<S: AsyncWrite> AsyncWrite for ThrottledSubstream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let n = futures::ready!(poll_grant(
            this.conn,
            Direction::Outbound,
            this.write_timer,
            this.write_waited,
            buf.len(),
            cx
        ));
        let (head, _) = buf.split_at(n.min(buf.len()));
        let written = futures::ready!(this.inner.poll_write(cx, head))?;
        this.conn.consume(Direction::Outbound, written, *this.write_waited);
        *this.write_waited = false;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_rate_up_to_capacity() {
        let cfg = GuardConfig {
            throttle_burst_millis: 1000,
            conn_inbound_bytes_per_sec: 100_000,
            ..GuardConfig::default()
        };
        let rates = Rates::new(&cfg);
        let b = Bucket::new(Class::Conn, Direction::Inbound, &rates);
        let t0 = Instant::now();
        let (full, rate) = b.available(&rates, t0);
        assert_eq!(rate, 100_000);
        assert_eq!(full, 100_000.0);
        b.consume(150_000);
        let (debt, _) = b.available(&rates, t0);
        assert!(debt < 0.0);
        let (later, _) = b.available(&rates, t0 + Duration::from_millis(600));
        assert!((later - 10_000.0).abs() < 1.0, "{later}");
        let (capped, _) = b.available(&rates, t0 + Duration::from_secs(100));
        assert_eq!(capped, 100_000.0);
        // Capacity never drops below the minimum.
        let slow = GuardConfig {
            throttle_burst_millis: 10,
            conn_inbound_bytes_per_sec: 1024,
            ..GuardConfig::default()
        };
        let r2 = Rates::new(&slow);
        assert_eq!(r2.capacity(1024), MIN_BUCKET_BYTES as f64);
    }

    fn conn(shared: &Arc<ThrottleShared>, metrics: &Arc<Metrics>, exempt: bool) -> ConnThrottle {
        let peer_id = PeerId::random();
        let peer = shared.peer(peer_id);
        peer.connections.fetch_add(1, Ordering::Relaxed);
        ConnThrottle {
            inbound: Bucket::new(Class::Conn, Direction::Inbound, &shared.rates),
            outbound: Bucket::new(Class::Conn, Direction::Outbound, &shared.rates),
            peer,
            peer_id,
            exempt,
            created: Instant::now(),
            last_ledger_ms: AtomicU64::new(0),
            open_inbound: AtomicUsize::new(0),
            max_inbound: 16,
            metrics: metrics.clone(),
            guard: Weak::new(),
            shared: shared.clone(),
        }
    }

    /// An allowlisted peer's connection skips its connection and peer buckets but still
    /// draws on the node-wide one; a zero-byte request is granted at once.
    #[test]
    fn allowlisted_connections_skip_their_buckets_but_not_the_global_one() {
        const KIB16: usize = 16 * 1024;
        let cfg = GuardConfig {
            throttle_burst_millis: 1000,
            conn_inbound_bytes_per_sec: KIB16 as u64,
            peer_inbound_bytes_per_sec: KIB16 as u64,
            global_inbound_bytes_per_sec: 64 * KIB16 as u64,
            ..GuardConfig::default()
        };
        let shared = Arc::new(ThrottleShared::new(&cfg));
        let metrics = Arc::new(Metrics::new(&mut prometheus_client::registry::Registry::default()));
        let normal = conn(&shared, &metrics, false);
        let exempt = conn(&shared, &metrics, true);
        // The normal connection's own bucket holds 16 KiB: after that (here 32 KiB past it,
        // two seconds of refill) it waits.
        assert_eq!(normal.grant(Direction::Inbound, KIB16), Grant::Now(KIB16));
        normal.consume(Direction::Inbound, 3 * KIB16, false);
        assert!(matches!(normal.grant(Direction::Inbound, KIB16), Grant::Wait(_)));
        // The allowlisted one takes far more than its 16 KiB at once...
        for _ in 0..32 {
            assert_eq!(exempt.grant(Direction::Inbound, KIB16), Grant::Now(KIB16));
            exempt.consume(Direction::Inbound, KIB16, false);
        }
        // ... until the node-wide bucket (1 MiB, 48 KiB of it taken by the normal one) is in
        // debt: 672 KiB past empty, more than half a second of refill, so a slow machine
        // cannot refill it between the calls.
        for _ in 0..71 {
            exempt.consume(Direction::Inbound, KIB16, false);
        }
        assert!(matches!(exempt.grant(Direction::Inbound, KIB16), Grant::Wait(_)));
        assert_eq!(normal.grant(Direction::Inbound, 0), Grant::Now(0));
        assert_eq!(exempt.peer.bytes_in.load(Ordering::Relaxed), 103 * KIB16 as u64);
    }
}
