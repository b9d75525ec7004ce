//! The sync client, sans I/O: which request goes to which peer next, and what is in flight.
//!
//! The event loop owns the swarm and the store; this type owns only the bookkeeping, so the
//! rules that make anti-entropy converge are unit-tested without sockets:
//!
//! - **Every request is released exactly once.** A request leaves [`SyncClient::pending`] on
//!   its response, on its failure, or when its peer disconnects, whichever comes first, and
//!   only that removal gives back its share of the record budget. (A disconnect used to drop
//!   the pending entries without giving the budget back; a few disconnects during catch-up
//!   stalled records requests on that node until it restarted.)
//! - **Gaps in feeds we hold come first.** Records requests for authors we already store
//!   (honest feeds with a hole: what a crash, a pause or a partition leaves) are sent before
//!   the next heads page and before requests for authors we do not know (possibly Sybil
//!   authors a flooder made up), so a heads walk over many authors cannot bury them.
//! - **A heads walk is never dropped.** The next page is a per-peer slot, not an entry in a
//!   queue that can be full.
//! - **Timer rounds rotate** over the peers that answer sync, least recently asked first,
//!   so any connected peer that holds what we lack is asked within a bounded number of rounds.
//!   A peer whose last request failed (timed out: a connection-flood identity that never
//!   opens a stream, a stopped node) goes after every peer whose last request was answered,
//!   so a hundred mute connections cannot take the rounds an honest peer needs.
//!
//! Backpressure: a records request is sent only while the records asked for plus the sync
//! records in the ingest pipeline stay within the record budget (always when nothing is
//! pending), so the pages we asked for are never shed by our own verify queue.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use palisade_types::AuthorKey;

use super::SyncRequest;

/// How long a peer that did not speak the sync protocol is left out of timer rounds.
pub(crate) const UNSUPPORTED_PEER_RETRY: Duration = Duration::from_secs(600);

/// The client's bounds (derived from the network config by the event loop).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientLimits {
    /// Heads asked for per page.
    pub(crate) heads_page: u32,
    /// Records asked for per records request.
    pub(crate) records_page: u32,
    /// Records that may be asked for or in the pipeline at once.
    pub(crate) record_budget: usize,
    /// Requests in flight to one peer.
    pub(crate) max_in_flight_per_peer: usize,
    /// Records requests queued for one peer (each of the two priorities).
    pub(crate) max_queued_per_peer: usize,
}

/// Whether we hold records of the author a records request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gap {
    /// A hole in a feed we hold: first priority.
    KnownAuthor,
    /// An author we hold nothing of: after every known gap and the heads walk.
    NewAuthor,
}

#[derive(Debug, Default)]
struct PeerState {
    in_flight: usize,
    /// The next heads page of the walk under way: `Some(after)`.
    heads_next: Option<Option<AuthorKey>>,
    known: VecDeque<SyncRequest>,
    new: VecDeque<SyncRequest>,
    /// Authors with a records request queued or in flight to this peer (no duplicates).
    authors: HashSet<AuthorKey>,
    last_round: Option<Instant>,
    /// The peer's last request failed (timeout, reset, refused stream).
    last_failed: bool,
    /// Set when the peer failed a request for not speaking the protocol.
    unsupported_since: Option<Instant>,
}

/// Sync client state for every connected peer. `Id` is the transport's request id.
#[derive(Debug)]
pub(crate) struct SyncClient<Id> {
    limits: ClientLimits,
    peers: HashMap<PeerId, PeerState>,
    pending: HashMap<Id, (PeerId, SyncRequest)>,
    /// Sum of the limits of the records requests in `pending`.
    records_requested: usize,
    /// A records request waited for budget: dispatch again when budget is released.
    held: bool,
}

impl<Id: Hash + Eq + Copy> SyncClient<Id> {
    pub(crate) fn new(limits: ClientLimits) -> Self {
        SyncClient {
            limits,
            peers: HashMap::new(),
            pending: HashMap::new(),
            records_requested: 0,
            held: false,
        }
    }

    /// Records asked for and not yet answered.
    pub(crate) fn records_requested(&self) -> usize {
        self.records_requested
    }

    /// Requests sent and not yet answered.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether a records request waited for budget since the last [`take_held`](Self::take_held).
    pub(crate) fn is_held(&self) -> bool {
        self.held
    }

    /// Clears the held flag and returns the peers with work queued.
    pub(crate) fn take_held(&mut self) -> Vec<PeerId> {
        self.held = false;
        self.peers.iter().filter(|(_, s)| s.has_work()).map(|(p, _)| *p).collect()
    }

    pub(crate) fn connected(&mut self, peer: PeerId) {
        self.peers.entry(peer).or_default();
    }

    /// Forgets `peer` and releases every request still pending to it: their answers, if
    /// any come, are ignored.
    pub(crate) fn disconnected(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
        let ids: Vec<Id> = self.pending.iter().filter(|(_, (p, _))| p == peer).map(|(id, _)| *id).collect();
        for id in ids {
            self.release(id);
        }
    }

    /// Starts a heads walk with `peer` (restarting one under way). False if not connected.
    pub(crate) fn start_round(&mut self, peer: PeerId, now: Instant) -> bool {
        let Some(state) = self.peers.get_mut(&peer) else { return false };
        state.heads_next = Some(None);
        state.last_round = Some(now);
        true
    }

    /// The peer for a timer round: the least recently asked of the peers that speak sync and
    /// pass `eligible` (the caller's standing check).
    pub(crate) fn round_peer(&self, now: Instant, eligible: impl Fn(&PeerId) -> bool) -> Option<PeerId> {
        self.peers
            .iter()
            .filter(|(_, s)| {
                s.unsupported_since.is_none_or(|t| now.duration_since(t) >= UNSUPPORTED_PEER_RETRY)
            })
            .filter(|(p, _)| eligible(p))
            .min_by_key(|(_, s)| (s.last_failed, s.last_round))
            .map(|(p, _)| *p)
    }

    /// Every connected peer.
    pub(crate) fn peers(&self) -> Vec<PeerId> {
        self.peers.keys().copied().collect()
    }

    /// Continues `peer`'s heads walk after `after`.
    pub(crate) fn continue_heads(&mut self, peer: &PeerId, after: AuthorKey) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.heads_next = Some(Some(after));
        }
    }

    /// Queues a records request for `[from_seq, to_seq]` of `author`, unless one for that
    /// author is already queued or in flight to `peer`, or the queue is full (the next round
    /// asks again).
    pub(crate) fn want_records(
        &mut self,
        peer: &PeerId,
        author: AuthorKey,
        from_seq: u64,
        to_seq: u64,
        gap: Gap,
    ) {
        let limit = self.limits.records_page;
        let max = self.limits.max_queued_per_peer;
        let Some(state) = self.peers.get_mut(peer) else { return };
        if from_seq == 0 || from_seq > to_seq || state.authors.contains(&author) {
            return;
        }
        let queue = match gap {
            Gap::KnownAuthor => &mut state.known,
            Gap::NewAuthor => &mut state.new,
        };
        if queue.len() >= max {
            return;
        }
        queue.push_back(SyncRequest::Records { author, from_seq, to_seq, limit });
        state.authors.insert(author);
    }

    /// Queues the rest of a truncated page, ahead of everything else for that peer (the
    /// author is still marked as in flight).
    pub(crate) fn continue_records(&mut self, peer: &PeerId, author: AuthorKey, from_seq: u64, to_seq: u64) {
        let limit = self.limits.records_page;
        let Some(state) = self.peers.get_mut(peer) else { return };
        state.known.push_front(SyncRequest::Records { author, from_seq, to_seq, limit });
        state.authors.insert(author);
    }

    /// The next request to send to `peer`, if its in-flight cap and the record budget allow;
    /// the caller sends it and passes the id to [`sent`](Self::sent). `pipeline_sync` is how
    /// many sync records the ingest pipeline holds.
    pub(crate) fn next_request(&mut self, peer: &PeerId, pipeline_sync: usize) -> Option<SyncRequest> {
        let room = {
            let pending = pipeline_sync + self.records_requested;
            let limit = self.limits.records_page as usize;
            pending == 0 || pending + limit <= self.limits.record_budget
        };
        let heads_page = self.limits.heads_page;
        let state = self.peers.get_mut(peer)?;
        if state.in_flight >= self.limits.max_in_flight_per_peer {
            return None;
        }
        let request = if room && !state.known.is_empty() {
            state.known.pop_front()
        } else if let Some(after) = state.heads_next.take() {
            Some(SyncRequest::Heads { after, limit: heads_page })
        } else if room {
            state.new.pop_front()
        } else {
            None
        };
        let Some(request) = request else {
            if !room && (!state.known.is_empty() || !state.new.is_empty()) {
                self.held = true;
            }
            return None;
        };
        state.in_flight += 1;
        if let SyncRequest::Records { limit, .. } = &request {
            self.records_requested += *limit as usize;
        }
        Some(request)
    }

    /// Records that `request`, returned by [`next_request`](Self::next_request), went out as `id`.
    pub(crate) fn sent(&mut self, id: Id, peer: PeerId, request: SyncRequest) {
        self.pending.insert(id, (peer, request));
    }

    /// The answer to `id` arrived: releases it and returns what was asked. `None` when the
    /// request was already released (its peer disconnected).
    pub(crate) fn finish(&mut self, id: Id) -> Option<(PeerId, SyncRequest)> {
        let (peer, request) = self.release(id)?;
        if let Some(state) = self.peers.get_mut(&peer) {
            state.last_failed = false;
            state.unsupported_since = None;
        }
        Some((peer, request))
    }

    /// `id` failed: the peer goes after the peers that answer in timer rounds. One that does
    /// not speak the protocol (`unsupported`) is left out of them for
    /// [`UNSUPPORTED_PEER_RETRY`] and its heads walk ends.
    pub(crate) fn failed(&mut self, id: Id, unsupported: bool, now: Instant) {
        let Some((peer, _)) = self.release(id) else { return };
        if let Some(state) = self.peers.get_mut(&peer) {
            state.last_failed = true;
            if unsupported {
                state.unsupported_since = Some(now);
                state.heads_next = None;
            }
        }
    }

    fn release(&mut self, id: Id) -> Option<(PeerId, SyncRequest)> {
        let (peer, request) = self.pending.remove(&id)?;
        if let SyncRequest::Records { limit, author, .. } = &request {
            self.records_requested = self.records_requested.saturating_sub(*limit as usize);
            if let Some(state) = self.peers.get_mut(&peer) {
                state.authors.remove(author);
            }
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        Some((peer, request))
    }
}

impl PeerState {
    fn has_work(&self) -> bool {
        self.heads_next.is_some() || !self.known.is_empty() || !self.new.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ClientLimits = ClientLimits {
        heads_page: 512,
        records_page: 256,
        record_budget: 1024,
        max_in_flight_per_peer: 4,
        max_queued_per_peer: 8,
    };

    const ONE_AT_A_TIME: ClientLimits = ClientLimits { max_in_flight_per_peer: 1, ..LIMITS };

    fn author(n: u8) -> AuthorKey {
        AuthorKey([n; 32])
    }

    /// Sends everything `peer` may send now; returns the requests with their ids.
    fn drain(
        c: &mut SyncClient<u64>,
        peer: PeerId,
        next_id: &mut u64,
        pipeline: usize,
    ) -> Vec<(u64, SyncRequest)> {
        let mut out = Vec::new();
        while let Some(r) = c.next_request(&peer, pipeline) {
            *next_id += 1;
            c.sent(*next_id, peer, r.clone());
            out.push((*next_id, r));
        }
        out
    }

    #[test]
    fn a_disconnect_releases_the_budget_of_requests_in_flight() {
        let mut c = SyncClient::<u64>::new(LIMITS);
        let mut id = 0;
        // Many disconnects with full pages in flight: the budget must come back each time.
        for round in 0..20u8 {
            let peer = PeerId::random();
            c.connected(peer);
            for a in 0..4 {
                c.want_records(&peer, author(a + round), 1, 1000, Gap::KnownAuthor);
            }
            let sent = drain(&mut c, peer, &mut id, 0);
            assert_eq!(sent.len(), 4, "round {round}: the budget (1024) holds four pages of 256");
            assert_eq!(c.records_requested(), 1024);
            c.disconnected(&peer);
            assert_eq!(c.records_requested(), 0, "round {round}: budget not released");
            assert_eq!(c.pending_len(), 0);
            // The failures that follow the disconnect change nothing.
            for (i, _) in sent {
                assert!(c.finish(i).is_none());
            }
            assert_eq!(c.records_requested(), 0);
        }
    }

    #[test]
    fn known_gaps_go_before_the_heads_walk_and_new_authors() {
        let mut c = SyncClient::<u64>::new(ONE_AT_A_TIME);
        let peer = PeerId::random();
        c.connected(peer);
        c.start_round(peer, Instant::now());
        c.want_records(&peer, author(1), 1, 5, Gap::NewAuthor);
        c.want_records(&peer, author(2), 3, 9, Gap::KnownAuthor);
        let mut id = 0;
        let mut order = Vec::new();
        for _ in 0..3 {
            let sent = drain(&mut c, peer, &mut id, 0);
            assert_eq!(sent.len(), 1);
            order.push(sent[0].1.clone());
            c.finish(sent[0].0);
        }
        assert!(matches!(order[0], SyncRequest::Records { author: a, .. } if a == author(2)));
        assert!(matches!(order[1], SyncRequest::Heads { after: None, .. }));
        assert!(matches!(order[2], SyncRequest::Records { author: a, .. } if a == author(1)));
    }

    #[test]
    fn a_full_queue_of_new_authors_never_drops_the_heads_walk_or_known_gaps() {
        let mut c = SyncClient::<u64>::new(ONE_AT_A_TIME);
        let peer = PeerId::random();
        c.connected(peer);
        c.start_round(peer, Instant::now());
        for a in 0..100 {
            c.want_records(&peer, author(a), 1, 1, Gap::NewAuthor);
        }
        c.continue_heads(&peer, author(99));
        c.want_records(&peer, author(200), 1, 1, Gap::KnownAuthor);
        let mut id = 0;
        let first = drain(&mut c, peer, &mut id, 0);
        assert!(matches!(first[0].1, SyncRequest::Records { author: a, .. } if a == author(200)));
        c.finish(first[0].0);
        let second = drain(&mut c, peer, &mut id, 0);
        assert!(matches!(second[0].1, SyncRequest::Heads { after: Some(a), .. } if a == author(99)));
    }

    #[test]
    fn records_wait_for_budget_and_heads_do_not() {
        let mut c = SyncClient::<u64>::new(LIMITS);
        let peer = PeerId::random();
        c.connected(peer);
        c.want_records(&peer, author(1), 1, 9, Gap::KnownAuthor);
        c.start_round(peer, Instant::now());
        let mut id = 0;
        // The pipeline holds 900 sync records: 900 + 256 > 1024, so only the heads page goes.
        let sent = drain(&mut c, peer, &mut id, 900);
        assert_eq!(sent.len(), 1);
        assert!(matches!(sent[0].1, SyncRequest::Heads { .. }));
        assert!(c.is_held());
        assert_eq!(c.take_held(), vec![peer]);
        // Once the pipeline drains, the records request goes.
        let sent = drain(&mut c, peer, &mut id, 0);
        assert!(matches!(sent[0].1, SyncRequest::Records { .. }));
    }

    #[test]
    fn one_request_per_author_at_a_time() {
        let mut c = SyncClient::<u64>::new(LIMITS);
        let peer = PeerId::random();
        c.connected(peer);
        c.want_records(&peer, author(1), 1, 9, Gap::KnownAuthor);
        c.want_records(&peer, author(1), 1, 9, Gap::KnownAuthor);
        let mut id = 0;
        let sent = drain(&mut c, peer, &mut id, 0);
        assert_eq!(sent.len(), 1);
        c.want_records(&peer, author(1), 1, 9, Gap::KnownAuthor);
        assert!(drain(&mut c, peer, &mut id, 0).is_empty(), "still in flight");
        c.finish(sent[0].0);
        c.want_records(&peer, author(1), 1, 9, Gap::KnownAuthor);
        assert_eq!(drain(&mut c, peer, &mut id, 0).len(), 1);
    }

    #[test]
    fn timer_rounds_rotate_over_peers_that_speak_sync() {
        let mut c = SyncClient::<u64>::new(LIMITS);
        let now = Instant::now();
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        for p in &peers {
            c.connected(*p);
        }
        // One peer does not speak sync; one is not eligible (bad standing).
        let mute = peers[0];
        let bad = peers[1];
        c.start_round(mute, now);
        let mut id = 0;
        let sent = drain(&mut c, mute, &mut id, 0);
        c.failed(sent[0].0, true, now);
        let mut asked = Vec::new();
        for i in 0..6u64 {
            let t = now + Duration::from_secs(30 * (i + 1));
            let p = c.round_peer(t, |p| *p != bad).expect("a peer");
            c.start_round(p, t);
            asked.push(p);
        }
        assert!(!asked.contains(&mute) && !asked.contains(&bad));
        // The two good peers alternate.
        assert_ne!(asked[0], asked[1]);
        assert_eq!(asked[0], asked[2]);
        assert_eq!(asked[1], asked[3]);
        // After the retry delay the mute peer is tried again.
        let later = now + UNSUPPORTED_PEER_RETRY + Duration::from_secs(1);
        assert_eq!(c.round_peer(later, |p| *p == mute), Some(mute));
    }

    #[test]
    fn peers_whose_requests_time_out_go_after_peers_that_answer() {
        let mut c = SyncClient::<u64>::new(LIMITS);
        let now = Instant::now();
        let honest = PeerId::random();
        c.connected(honest);
        let mut id = 0;
        // A hundred connections of a flood that never open a stream: their first rounds time out.
        let mute: Vec<PeerId> = (0..100).map(|_| PeerId::random()).collect();
        for p in &mute {
            c.connected(*p);
            c.start_round(*p, now);
            let sent = drain(&mut c, *p, &mut id, 0);
            c.failed(sent[0].0, false, now);
        }
        c.start_round(honest, now);
        let sent = drain(&mut c, honest, &mut id, 0);
        c.finish(sent[0].0);
        // Every timer round goes to the peer that answers, although the others were asked
        // less recently... until it fails too.
        for i in 1..=5u64 {
            let t = now + Duration::from_secs(3 * i);
            assert_eq!(c.round_peer(t, |_| true), Some(honest), "round {i}");
            c.start_round(honest, t);
        }
        let sent = drain(&mut c, honest, &mut id, 0);
        c.failed(sent[0].0, false, now);
        assert_ne!(c.round_peer(now + Duration::from_secs(30), |_| true), Some(honest));
    }
}
