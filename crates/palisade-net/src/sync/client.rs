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
//! - **sync/2 first, sync/1 for who speaks only it.** A round with a peer reconciles feed
//!   heads ([`super::reconcile`]) unless the peer negotiated sync/1 for an earlier request on
//!   this connection; then it walks the peer's heads. The ranges still to ask about are a
//!   stack (depth first), at most [`MAX_PENDING_QUERIES`] of them and at most
//!   [`MAX_REQUESTS_PER_ROUND`] requests a round, whatever the peer answers.
//!
//! Backpressure: a records request is sent only while the records asked for plus the sync
//! records in the ingest pipeline stay within the record budget (always when nothing is
//! pending), so the pages we asked for are never shed by our own verify queue.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use palisade_types::AuthorKey;

use super::reconcile::{
    RangeQuery, ReconcileRequest, MAX_PENDING_QUERIES, MAX_QUERIES_PER_REQUEST, MAX_REQUESTS_PER_ROUND,
    NONCE_BYTES,
};
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

/// How a round with a peer finds what differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoundKind {
    /// sync/2: the caller computes our fingerprint of every head under `nonce` and hands
    /// the first query to [`SyncClient::push_queries`].
    Reconcile {
        /// The round's fingerprint key.
        nonce: [u8; NONCE_BYTES],
    },
    /// sync/1: the heads walk is queued.
    HeadsWalk,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Timeout, reset, refused stream.
    Other,
    /// The peer speaks no sync protocol.
    Unsupported,
    /// The peer negotiated sync/1 for a sync/2 message: it speaks only sync/1.
    OnlyV1,
}

/// A reconciliation round under way with one peer.
#[derive(Debug)]
struct Recon {
    nonce: [u8; NONCE_BYTES],
    /// Ranges still to ask about: a stack, so the search goes depth first and stays small.
    queries: Vec<RangeQuery>,
    /// Requests sent in this round.
    requests: usize,
}

#[derive(Debug, Default)]
struct PeerState {
    in_flight: usize,
    /// The next heads page of the walk under way: `Some(after)`.
    heads_next: Option<Option<AuthorKey>>,
    /// The reconciliation under way.
    recon: Option<Recon>,
    /// The peer negotiated sync/1 on this connection: rounds walk its heads.
    only_v1: bool,
    known: VecDeque<SyncRequest>,
    new: VecDeque<SyncRequest>,
    /// Authors with a records request queued or in flight to this peer (no duplicates).
    authors: HashSet<AuthorKey>,
    last_round: Option<Instant>,
    /// The round under way, until it knows every difference: when it started and how.
    round: Option<(Instant, RoundKind)>,
    /// Blocking steps of the round under way (fingerprints, comparisons) not yet back.
    steps: usize,
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

    /// Starts a round with `peer` (restarting one under way): a reconciliation, or the heads
    /// walk if the peer speaks only sync/1 or `reconcile` is off. `None` if not connected.
    pub(crate) fn start_round(&mut self, peer: PeerId, now: Instant, reconcile: bool) -> Option<RoundKind> {
        let state = self.peers.get_mut(&peer)?;
        state.last_round = Some(now);
        let kind = if reconcile && !state.only_v1 {
            let nonce = rand::random();
            state.recon = Some(Recon { nonce, queries: Vec::new(), requests: 0 });
            RoundKind::Reconcile { nonce }
        } else {
            state.heads_next = Some(None);
            RoundKind::HeadsWalk
        };
        state.round = Some((now, kind));
        Some(kind)
    }

    /// A blocking step of `peer`'s round (a fingerprint, a comparison) was spawned; the loop
    /// calls [`step_returned`](Self::step_returned) when its result is back.
    pub(crate) fn step_spawned(&mut self, peer: &PeerId) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.steps += 1;
        }
    }

    /// A blocking step of `peer`'s round is back.
    pub(crate) fn step_returned(&mut self, peer: &PeerId) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.steps = state.steps.saturating_sub(1);
        }
    }

    /// The round with `peer` knows every difference it will find (no heads page or ranges
    /// left to ask, none in flight, no step out): returns how it ran and how long it took,
    /// once. Records it asked for may still be on their way.
    pub(crate) fn round_finished(&mut self, peer: &PeerId, now: Instant) -> Option<(RoundKind, Duration)> {
        let discovering = self
            .pending
            .values()
            .any(|(p, r)| p == peer && matches!(r, SyncRequest::Heads { .. } | SyncRequest::Reconcile(_)));
        let state = self.peers.get_mut(peer)?;
        let idle = state.heads_next.is_none()
            && state
                .recon
                .as_ref()
                .is_none_or(|r| r.queries.is_empty() || r.requests >= MAX_REQUESTS_PER_ROUND)
            && state.steps == 0
            && !discovering;
        if !idle {
            return None;
        }
        let (started, kind) = state.round.take()?;
        Some((kind, now.saturating_duration_since(started)))
    }

    /// Queues ranges to ask `peer` about in the round keyed by `nonce` (answers to an earlier
    /// round's requests are dropped). Returns how many the bounds cut.
    pub(crate) fn push_queries(
        &mut self,
        peer: &PeerId,
        nonce: &[u8; NONCE_BYTES],
        queries: Vec<RangeQuery>,
    ) -> usize {
        let Some(recon) = self.peers.get_mut(peer).and_then(|s| s.recon.as_mut()) else { return 0 };
        if recon.nonce != *nonce {
            return 0;
        }
        if recon.requests >= MAX_REQUESTS_PER_ROUND {
            return queries.len();
        }
        let room = MAX_PENDING_QUERIES.saturating_sub(recon.queries.len());
        let cut = queries.len().saturating_sub(room);
        recon.queries.extend(queries.into_iter().take(room));
        cut
    }

    /// Ranges queued for `peer`'s reconciliation.
    #[cfg(test)]
    pub(crate) fn pending_queries(&self, peer: &PeerId) -> usize {
        self.peers.get(peer).and_then(|s| s.recon.as_ref()).map_or(0, |r| r.queries.len())
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
        } else if let Some(request) = state.recon.as_mut().and_then(Recon::next_request) {
            Some(request)
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
    /// not speak the protocol ([`Failure::Unsupported`]) is left out of them for
    /// [`UNSUPPORTED_PEER_RETRY`] and its round ends. One that speaks only sync/1
    /// ([`Failure::OnlyV1`]) gets the heads walk instead, now and in later rounds.
    pub(crate) fn failed(&mut self, id: Id, failure: Failure, now: Instant) {
        let Some((peer, _)) = self.release(id) else { return };
        let Some(state) = self.peers.get_mut(&peer) else { return };
        match failure {
            Failure::OnlyV1 => {
                state.only_v1 = true;
                if state.recon.take().is_some() {
                    state.heads_next = Some(None);
                    state.round = state.round.map(|(started, _)| (started, RoundKind::HeadsWalk));
                }
            }
            Failure::Unsupported => {
                state.last_failed = true;
                state.unsupported_since = Some(now);
                state.heads_next = None;
                state.recon = None;
                state.round = None;
            }
            Failure::Other => state.last_failed = true,
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
        self.heads_next.is_some()
            || self.recon.as_ref().is_some_and(|r| !r.queries.is_empty())
            || !self.known.is_empty()
            || !self.new.is_empty()
    }
}

impl Recon {
    /// The next request of the round: the newest ranges first.
    fn next_request(&mut self) -> Option<SyncRequest> {
        if self.queries.is_empty() || self.requests >= MAX_REQUESTS_PER_ROUND {
            return None;
        }
        let take = self.queries.len().min(MAX_QUERIES_PER_REQUEST);
        let queries = self.queries.split_off(self.queries.len() - take);
        self.requests += 1;
        let queries = palisade_types::BoundedVec::new(queries).ok()?;
        Some(SyncRequest::Reconcile(ReconcileRequest { nonce: self.nonce, queries }))
    }
}

#[cfg(test)]
mod tests;
