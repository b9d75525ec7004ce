//! The own-feed check at start (issue 15, Lighthouse's doppelganger protection): before the
//! first record this node signs after a start, it asks its first peers for the head of its
//! own feed and fetches anything newer its store lacks. A store that lost its latest own
//! records (damaged, deleted, restored from an old backup, with a signing history lost too)
//! would otherwise sign at seqs it already used, and every peer would flag the node as an
//! equivocator for good; a second node running with the same key shows up the same way.
//!
//! Until the check ends, submissions are refused (`503 own_feed_check`) and `/v1/ready` says
//! why. It ends when `network.own_feed_check_peers` peers have answered and every own record
//! one of them reported is stored, or after `network.own_feed_check_secs` whatever happened
//! (a network that does not answer must not stop the node from working; the signing history
//! still guards what this node itself signed). It is skipped when the window is 0 or when the
//! node has nobody to ask (no bootstrap entry, nothing in its peer book).
//!
//! The question is a sync heads page of one head starting just before this node's author
//! (`/palisade/sync/1`, no new protocol); the answer's first head is ours if the peer holds
//! any of our feed. Records are fetched and stored by the ordinary sync path (verified,
//! through the pipeline): a peer that claims a head it cannot deliver only delays the start to
//! the end of the window.
//!
//! Later own records from sync (a second node signing with this key) are not ignored either:
//! any own record stored from elsewhere makes the writer re-read its feed head before it signs
//! again ([`OwnFeedGate::resync`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libp2p::request_response::OutboundRequestId;
use libp2p::PeerId;
use palisade_types::AuthorKey;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::sync::{SyncRequest, WireHead};

/// What the event loop tells the submit path: whether the check is still running, and whether
/// own records were stored from elsewhere since the writer last read its feed head.
#[derive(Debug, Default)]
pub(crate) struct OwnFeedGate {
    checking: AtomicBool,
    resync: AtomicBool,
}

impl OwnFeedGate {
    pub(crate) fn new() -> OwnFeedGate {
        OwnFeedGate { checking: AtomicBool::new(true), resync: AtomicBool::new(false) }
    }

    /// Whether submissions must wait for the check.
    pub(crate) fn checking(&self) -> bool {
        self.checking.load(Ordering::Acquire)
    }

    fn finish(&self) {
        self.resync.store(true, Ordering::Release);
        self.checking.store(false, Ordering::Release);
    }

    /// Own records came from elsewhere: the writer re-reads its feed head before signing.
    pub(crate) fn own_record_arrived(&self) {
        self.resync.store(true, Ordering::Release);
    }

    /// Whether the writer must re-read its feed head (and clears the flag).
    pub(crate) fn resync(&self) -> bool {
        self.resync.swap(false, Ordering::AcqRel)
    }
}

/// The check's settings (from `[network]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckLimits {
    /// How long the check may take (0: no check).
    pub(crate) window: Duration,
    /// How many peers' answers end it early.
    pub(crate) peers: usize,
}

/// The event loop's side of the check.
pub(crate) struct OwnFeedCheck {
    gate: std::sync::Arc<OwnFeedGate>,
    /// `palisade_own_feed_checking`, `palisade_own_feed_behind_peers`.
    metrics: crate::metrics::NetMetrics,
    own: AuthorKey,
    /// The highest own seq the store held at start, then the highest stored since.
    held: u64,
    /// The highest own seq a peer reported.
    reported: u64,
    until: Instant,
    limits: CheckLimits,
    /// Questions in flight.
    asked: HashMap<OutboundRequestId, PeerId>,
    /// Peers asked so far (each once).
    asked_peers: Vec<PeerId>,
    answered: usize,
    done: bool,
}

impl OwnFeedCheck {
    /// Starts the check; ends it at once when it is off or there is nobody to ask.
    pub(crate) fn start(
        gate: std::sync::Arc<OwnFeedGate>,
        own: AuthorKey,
        held: u64,
        limits: CheckLimits,
        nobody_to_ask: bool,
        metrics: crate::metrics::NetMetrics,
    ) -> OwnFeedCheck {
        metrics.own_feed_checking.set(1);
        let mut check = OwnFeedCheck {
            gate,
            metrics,
            own,
            held,
            reported: 0,
            until: Instant::now() + limits.window,
            limits,
            asked: HashMap::new(),
            asked_peers: Vec::new(),
            answered: 0,
            done: false,
        };
        if limits.window.is_zero() {
            check.finish("network.own_feed_check_secs is 0");
        } else if nobody_to_ask {
            check.finish("nobody to ask: no bootstrap entry and an empty peer book");
        } else {
            info!(
                window_secs = limits.window.as_secs(),
                peers = limits.peers,
                "asking peers for this node's own feed before signing (network.own_feed_check_secs)"
            );
        }
        check
    }

    /// This node's author.
    pub(crate) fn own(&self) -> AuthorKey {
        self.own
    }

    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The question for a newly connected peer, if the check still wants one. At most twice
    /// the wanted answers are asked for (peers that do not answer are not waited for long).
    pub(crate) fn question_for(&mut self, peer: PeerId) -> Option<SyncRequest> {
        if self.done || self.asked_peers.contains(&peer) || self.asked_peers.len() >= 2 * self.limits.peers {
            return None;
        }
        self.asked_peers.push(peer);
        Some(SyncRequest::Heads { after: predecessor(&self.own), limit: 1 })
    }

    /// The question to `peer` went out as `id`.
    pub(crate) fn sent(&mut self, id: OutboundRequestId, peer: PeerId) {
        self.asked.insert(id, peer);
    }

    /// Whether `id` is one of the check's questions (then the answer is the check's).
    pub(crate) fn owns(&self, id: &OutboundRequestId) -> bool {
        self.asked.contains_key(id)
    }

    /// The peer question `id` went to.
    pub(crate) fn peer_of(&self, id: &OutboundRequestId) -> Option<PeerId> {
        self.asked.get(id).copied()
    }

    /// A peer answered `id` with `heads` (`None`: the request failed). Returns the own seqs
    /// to fetch from that peer, if it holds more of our feed than we do.
    pub(crate) fn answered(
        &mut self,
        id: OutboundRequestId,
        heads: Option<&[WireHead]>,
    ) -> Option<(PeerId, u64, u64)> {
        let peer = self.asked.remove(&id)?;
        let heads = heads?;
        self.answered += 1;
        let theirs = heads.first().filter(|h| h.author == self.own).map_or(0, |h| h.max_seq);
        let fetch = (theirs > self.held).then(|| {
            self.metrics.own_feed_behind_peers.inc();
            warn!(
                %peer,
                their_head = theirs,
                our_head = self.held,
                "a peer holds more of this node's own feed than its store: fetching it before signing (a damaged or restored store, or another node running with this key)"
            );
            (peer, self.held + 1, theirs)
        });
        self.reported = self.reported.max(theirs);
        self.maybe_finish();
        fetch
    }

    /// An own record was stored (from sync, while or after checking).
    pub(crate) fn own_stored(&mut self, seq: u64) {
        self.held = self.held.max(seq);
        self.gate.own_record_arrived();
        self.maybe_finish();
    }

    /// Ends the check at the end of its window.
    pub(crate) fn tick(&mut self, now: Instant) {
        if !self.done && now >= self.until {
            let why = format!(
                "the window (network.own_feed_check_secs = {}) ended with {} of {} answers; own head {} of {} reported",
                self.limits.window.as_secs(),
                self.answered,
                self.limits.peers,
                self.held,
                self.reported
            );
            self.finish(&why);
        }
    }

    fn maybe_finish(&mut self) {
        if !self.done && self.answered >= self.limits.peers && self.held >= self.reported {
            let why = format!("{} peers answered; own head {}", self.answered, self.held);
            self.finish(&why);
        }
    }

    fn finish(&mut self, why: &str) {
        self.done = true;
        self.metrics.own_feed_checking.set(0);
        self.asked.clear();
        self.gate.finish();
        info!(reason = why, "own-feed check done; signing allowed");
    }
}

/// The author key just before `author` in byte order (the heads page starts after it), or
/// `None` for the smallest key (the page then starts at the beginning).
fn predecessor(author: &AuthorKey) -> Option<AuthorKey> {
    let mut bytes = author.0;
    for b in bytes.iter_mut().rev() {
        if *b > 0 {
            *b -= 1;
            return Some(AuthorKey(bytes));
        }
        *b = 0xff;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn author(last: u8) -> AuthorKey {
        let mut k = [7u8; 32];
        k[31] = last;
        AuthorKey(k)
    }

    fn head(a: AuthorKey, max_seq: u64) -> WireHead {
        WireHead { author: a, contiguous_seq: max_seq, max_seq }
    }

    fn metrics() -> crate::metrics::NetMetrics {
        crate::metrics::NetMetrics::new(&mut prometheus_client::registry::Registry::default())
    }

    fn limits(peers: usize) -> CheckLimits {
        CheckLimits { window: Duration::from_secs(5), peers }
    }

    fn ask(check: &mut OwnFeedCheck, peer: PeerId, id: OutboundRequestId) {
        assert!(check.question_for(peer).is_some());
        check.sent(id, peer);
    }

    #[test]
    fn predecessor_orders_just_below() {
        assert_eq!(predecessor(&author(5)), Some(author(4)));
        let mut k = [7u8; 32];
        k[31] = 0;
        let mut below = [7u8; 32];
        below[30] = 6;
        below[31] = 0xff;
        assert_eq!(predecessor(&AuthorKey(k)), Some(AuthorKey(below)));
        assert_eq!(predecessor(&AuthorKey([0; 32])), None);
    }

    #[test]
    fn off_or_alone_it_ends_at_once() {
        let gate = Arc::new(OwnFeedGate::new());
        let off = CheckLimits { window: Duration::ZERO, peers: 2 };
        assert!(OwnFeedCheck::start(gate.clone(), author(1), 0, off, false, metrics()).is_done());
        assert!(!gate.checking());
        let gate = Arc::new(OwnFeedGate::new());
        assert!(OwnFeedCheck::start(gate.clone(), author(1), 0, limits(2), true, metrics()).is_done());
        assert!(!gate.checking() && gate.resync());
    }

    #[test]
    fn it_waits_for_the_records_a_peer_reported_then_opens() {
        let gate = Arc::new(OwnFeedGate::new());
        let me = author(9);
        let metrics = metrics();
        let mut check = OwnFeedCheck::start(gate.clone(), me, 3, limits(2), false, metrics.clone());
        assert_eq!(metrics.own_feed_checking.get(), 1);
        let ids = request_ids(3);
        let (p1, p2) = (PeerId::random(), PeerId::random());
        ask(&mut check, p1, ids[0]);
        ask(&mut check, p2, ids[1]);
        assert!(check.question_for(p1).is_none(), "a peer is asked once");
        // p1 holds our feed up to 7: fetch 4..=7 from it.
        assert_eq!(check.answered(ids[0], Some(&[head(me, 7)])), Some((p1, 4, 7)));
        // p2 holds nothing of ours: its first head is the next author's.
        assert_eq!(check.answered(ids[1], Some(&[head(author(10), 50)])), None);
        assert!(gate.checking(), "two answers, but the records are not stored yet");
        assert_eq!(metrics.own_feed_behind_peers.get(), 1, "p1 held more of our feed");
        check.own_stored(5);
        assert!(gate.checking());
        check.own_stored(7);
        assert!(!gate.checking() && check.is_done());
        assert_eq!(metrics.own_feed_checking.get(), 0);
        assert!(gate.resync(), "the writer re-reads its head before it signs");
        assert!(!gate.resync());
    }

    #[test]
    fn a_claim_nobody_delivers_delays_only_to_the_end_of_the_window() {
        let gate = Arc::new(OwnFeedGate::new());
        let me = author(9);
        let mut check = OwnFeedCheck::start(gate.clone(), me, 0, limits(1), false, metrics());
        let ids = request_ids(1);
        let liar = PeerId::random();
        ask(&mut check, liar, ids[0]);
        assert!(check.answered(ids[0], Some(&[head(me, 1_000_000_000)])).is_some());
        check.tick(Instant::now());
        assert!(gate.checking());
        check.tick(Instant::now() + Duration::from_secs(5));
        assert!(!gate.checking());
    }

    #[test]
    fn failed_questions_are_not_answers() {
        let gate = Arc::new(OwnFeedGate::new());
        let mut check = OwnFeedCheck::start(gate.clone(), author(9), 0, limits(1), false, metrics());
        let ids = request_ids(2);
        ask(&mut check, PeerId::random(), ids[0]);
        assert!(check.owns(&ids[0]));
        assert_eq!(check.answered(ids[0], None), None);
        assert!(!check.owns(&ids[0]) && gate.checking());
        ask(&mut check, PeerId::random(), ids[1]);
        check.answered(ids[1], Some(&[]));
        assert!(!gate.checking());
    }

    /// Real request ids from a request-response behaviour (their constructor is private).
    fn request_ids(n: usize) -> Vec<OutboundRequestId> {
        use libp2p::request_response::{self, ProtocolSupport};
        let mut b = request_response::Behaviour::with_codec(
            crate::sync::SyncCodec::default(),
            [(crate::sync::PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default(),
        );
        (0..n)
            .map(|_| b.send_request(&PeerId::random(), SyncRequest::Heads { after: None, limit: 1 }))
            .collect()
    }
}
