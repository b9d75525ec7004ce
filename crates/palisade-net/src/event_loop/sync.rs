//! The event loop's side of `/palisade/sync/2` and `/palisade/sync/1`: it drives the sans-IO
//! [`SyncClient`](crate::sync::client::SyncClient) with swarm events and store lookups (on
//! blocking threads: fingerprints, head comparisons), and admits inbound requests for the
//! blocking server ([`answer_sync`]).

use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ResponseChannel};
use libp2p::PeerId;
use palisade_guard::PenaltyReason;
use palisade_types::ParsedEnvelope;
use tracing::debug;

use super::EventLoop;
use crate::metrics::SyncRoundLabels;
use crate::now_ms;
use crate::pipeline::Origin;
use crate::reason::Reason;
use crate::sync::client::{ClientLimits, Failure, RoundKind};
use crate::sync::reconcile::{self, Abuse, RangeQuery, ReconcileRequest, NONCE_BYTES};
use crate::sync::serve::{answer_sync, compare_heads, Wants};
use crate::sync::{Refusal, SyncRequest, SyncResponse, V1_ONLY};
use crate::NetConfig;

/// What a blocking thread made of a peer's sync answer: a page of its heads compared with our
/// store (sync/1), or a reconciliation step (sync/2).
pub(crate) struct HeadsCompared {
    peer: PeerId,
    wants: Wants,
    /// sync/1: the heads walk goes on after this author.
    next_after: Option<palisade_types::AuthorKey>,
    /// sync/2: the round's nonce and the ranges to ask about next.
    reconcile: Option<([u8; NONCE_BYTES], Vec<RangeQuery>)>,
    /// The answer broke the protocol.
    abuse: Option<&'static str>,
}

impl HeadsCompared {
    fn new(peer: PeerId) -> Self {
        HeadsCompared { peer, wants: Vec::new(), next_after: None, reconcile: None, abuse: None }
    }
}

/// Capacity of the channel that brings compared heads pages back to the loop.
pub(super) const COMPARED_QUEUE: usize = 64;

/// sync/2 reconcile answers are computed one at a time, node-wide: each scans every head in
/// its ranges (a whole-set fingerprint is a scan of every author held: about 1.7 s at a
/// million), so this caps the CPU that peers' rounds, or a peer repeating whole-set queries,
/// can take. Later requests wait their turn on their blocking task (bounded by
/// `network.sync_max_inbound_per_peer` per peer and the request timeout); a refusal instead
/// would drop the ranges of a round in flight.
pub(crate) type ReconcileTurn = std::sync::Arc<std::sync::Mutex<()>>;

/// Most sync requests we have outstanding to one peer.
const MAX_OUTBOUND_SYNC_PER_PEER: usize = 4;
/// Most records requests queued for one peer (per priority); beyond it, the next round asks.
const MAX_QUEUED_SYNC_PER_PEER: usize = 1024;

/// The sync client's bounds for `cfg`: pages of at most a quarter of the verify queue, and at
/// most the verify queue's sync share asked for at once.
pub(super) fn client_limits(cfg: &NetConfig) -> ClientLimits {
    let reserved = crate::pipeline::sync_reserved_records(cfg.verify_queue_records);
    ClientLimits {
        heads_page: cfg.sync_max_heads_per_page as u32,
        records_page: cfg.sync_max_records_per_page.min(cfg.verify_queue_records / 4).max(1) as u32,
        record_budget: reserved,
        max_in_flight_per_peer: MAX_OUTBOUND_SYNC_PER_PEER,
        max_queued_per_peer: MAX_QUEUED_SYNC_PER_PEER,
    }
}

fn round_protocol(kind: RoundKind) -> &'static str {
    match kind {
        RoundKind::HeadsWalk => "sync/1",
        RoundKind::Reconcile { .. } => "sync/2",
    }
}

impl EventLoop {
    /// Starts a heads walk with `peer` (or with every connected peer when `None`). Returns
    /// how many peers were asked.
    pub(super) fn sync_round(&mut self, peer: Option<PeerId>) -> usize {
        // Below the disk's flood stage every fetched record would be dropped (`disk_low`):
        // fetch nothing until space is back; the next round after it catches up.
        if self.store.disk_low() {
            tracing::debug!("sync round skipped: the disk is below store.min_free_disk_bytes");
            return 0;
        }
        let targets = match peer {
            Some(p) => vec![p],
            None => self.sync.peers(),
        };
        let now = std::time::Instant::now();
        let mut asked = 0;
        for p in targets {
            let Some(kind) = self.sync.start_round(p, now, self.cfg.sync_v2) else { continue };
            debug!(peer = %p, ?kind, "sync round started");
            asked += 1;
            let protocol = round_protocol(kind);
            self.metrics.sync_rounds.get_or_create(&SyncRoundLabels { protocol }).inc();
            match kind {
                RoundKind::HeadsWalk => self.dispatch_sync(p),
                RoundKind::Reconcile { nonce } => self.first_reconcile_query(p, nonce),
            }
        }
        asked
    }

    /// Our fingerprint of every head, off the loop; the query goes out when it is back.
    fn first_reconcile_query(&mut self, peer: PeerId, nonce: [u8; NONCE_BYTES]) {
        let store = self.store.clone();
        let tx = self.compared_tx.clone();
        self.sync.step_spawned(&peer);
        self.tasks.spawn_blocking(move || {
            // A store that fails to read leaves the round with nothing to ask: it ends.
            let queries = reconcile::first_query(&store, &nonce).map(|q| vec![q]).unwrap_or_default();
            let step = HeadsCompared { reconcile: Some((nonce, queries)), ..HeadsCompared::new(peer) };
            let _ = tx.blocking_send(step);
        });
    }

    /// A reconcile answer followed off the loop: our fingerprints of the parts the peer split
    /// its ranges into, and its listed heads compared with ours.
    fn follow_reconcile(
        &mut self,
        peer: PeerId,
        request: ReconcileRequest,
        answers: Vec<reconcile::RangeAnswer>,
    ) {
        let store = self.store.clone();
        let tx = self.compared_tx.clone();
        self.sync.step_spawned(&peer);
        self.tasks.spawn_blocking(move || {
            let step = match reconcile::follow(&store, &request, &answers) {
                Ok(Ok(followed)) => HeadsCompared {
                    wants: compare_heads(&store, &followed.heads),
                    reconcile: Some((request.nonce, followed.next)),
                    ..HeadsCompared::new(peer)
                },
                Ok(Err(Abuse(why))) => HeadsCompared { abuse: Some(why), ..HeadsCompared::new(peer) },
                // Our store failed to read: these ranges are left to the next round.
                Err(_) => HeadsCompared::new(peer),
            };
            let _ = tx.blocking_send(step);
        });
    }

    /// The timer's round: the least recently asked peer that speaks sync and that the guard
    /// has not caught misbehaving, so every such peer is asked within as many rounds as there
    /// are of them, and one that holds what we lack is never skipped for long.
    pub(super) fn sync_timer_round(&mut self) {
        let guard = &self.guard;
        let peer = self.sync.round_peer(std::time::Instant::now(), |p| {
            guard.score(p) > crate::gossip::GRAYLIST_PENALTY_MAX_REPUTATION_POINTS
        });
        if let Some(peer) = peer {
            self.sync_round(Some(peer));
        }
    }

    /// Sends what `peer` may have now.
    fn dispatch_sync(&mut self, peer: PeerId) {
        while let Some(request) = self.sync.next_request(&peer, self.pipeline.in_flight_sync_len()) {
            let id = self.swarm.behaviour_mut().sync.send_request(&peer, request.clone());
            self.sync.sent(id, peer, request);
        }
    }

    /// Dispatches requests that waited for record budget (after pipeline decisions, answers
    /// and disconnects give budget back).
    pub(super) fn resume_sync(&mut self) {
        if !self.sync.is_held() {
            return;
        }
        for peer in self.sync.take_held() {
            self.dispatch_sync(peer);
        }
    }

    /// The own-feed check's question to a newly connected peer, while the check runs.
    pub(super) fn ask_own_feed(&mut self, peer: PeerId) {
        if let Some(question) = self.own_check.question_for(peer) {
            let id = self.swarm.behaviour_mut().sync.send_request(&peer, question);
            self.own_check.sent(id, peer);
        }
    }

    /// An answer (or failure, `None`) to an own-feed question: fetch what the peer holds of
    /// our feed beyond our store, by the ordinary sync path.
    fn on_own_feed_answer(&mut self, id: OutboundRequestId, response: Option<SyncResponse>) {
        // One head was asked for: more, or records, is sync abuse here as for any request (a
        // refusal or a failure is only no answer).
        let abusive = match &response {
            Some(SyncResponse::Heads { heads, .. }) => heads.len() > 1,
            Some(SyncResponse::Records { .. } | SyncResponse::Reconciled(_)) => true,
            Some(SyncResponse::Refused(_)) | None => false,
        };
        if let Some(peer) = self.own_check.peer_of(&id).filter(|_| abusive) {
            self.penalize(peer, PenaltyReason::SyncAbuse);
        }
        let heads = match &response {
            Some(SyncResponse::Heads { heads, .. }) if !abusive => Some(heads.as_slice()),
            _ => None,
        };
        if let Some((peer, from_seq, to_seq)) = self.own_check.answered(id, heads) {
            let own = self.own_check.own();
            self.sync.want_records(&peer, own, from_seq, to_seq, crate::sync::client::Gap::KnownAuthor);
            self.dispatch_sync(peer);
        }
    }

    pub(super) fn on_sync_event(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match &event {
            request_response::Event::Message {
                message: request_response::Message::Response { request_id, .. },
                ..
            }
            | request_response::Event::OutboundFailure { request_id, .. }
                if self.own_check.owns(request_id) =>
            {
                let id = *request_id;
                let response = match event {
                    request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    } => Some(response),
                    _ => None,
                };
                return self.on_own_feed_answer(id, response);
            }
            _ => {}
        }
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.serve_sync(peer, request, channel)
                }
                request_response::Message::Response { request_id, response } => {
                    self.on_sync_response(request_id, response);
                    self.dispatch_sync(peer);
                    self.resume_sync();
                    self.note_round_finished(peer);
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                debug!(%peer, %error, "sync request failed");
                let failure = match &error {
                    OutboundFailure::UnsupportedProtocols => Failure::Unsupported,
                    OutboundFailure::Io(e)
                        if e.kind() == std::io::ErrorKind::Unsupported && e.to_string() == V1_ONLY =>
                    {
                        Failure::OnlyV1
                    }
                    _ => Failure::Other,
                };
                self.sync.failed(request_id, failure, std::time::Instant::now());
                self.dispatch_sync(peer);
                self.resume_sync();
                self.note_round_finished(peer);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "serving a sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_sync_response(&mut self, request_id: OutboundRequestId, response: SyncResponse) {
        // A request already released (its peer disconnected meanwhile) is not ours to act on.
        let Some((peer, request)) = self.sync.finish(request_id) else { return };
        match (request, response) {
            (SyncRequest::Heads { limit, .. }, SyncResponse::Heads { heads, next_after }) => {
                if heads.len() > limit as usize {
                    self.penalize(peer, PenaltyReason::SyncAbuse);
                    return;
                }
                // The comparison reads our feed heads from the store: off the loop. The next
                // page is asked for once it is done (`on_heads_compared`).
                let store = self.store.clone();
                let tx = self.compared_tx.clone();
                self.sync.step_spawned(&peer);
                self.tasks.spawn_blocking(move || {
                    let wants = compare_heads(&store, heads.as_slice());
                    let _ = tx.blocking_send(HeadsCompared { wants, next_after, ..HeadsCompared::new(peer) });
                });
            }
            (
                SyncRequest::Records { author, from_seq, to_seq, limit },
                SyncResponse::Records { records, truncated },
            ) => {
                if records.len() > limit as usize {
                    self.penalize(peer, PenaltyReason::SyncAbuse);
                    return;
                }
                self.metrics.sync_records_received.inc_by(records.len() as u64);
                debug!(%peer, %author, from_seq, records = records.len(), truncated, "sync records received");
                let mut last_seq = None;
                for bytes in records.into_inner() {
                    // The record must be the one we asked for: right author, seq in range.
                    // Parsed once: the pipeline takes the decoded record.
                    let record = ParsedEnvelope::parse(bytes.into_inner()).ok().and_then(|p| p.decode().ok());
                    let record = match record {
                        Some(r)
                            if r.record().position.author == author
                                && (from_seq..=to_seq).contains(&r.record().position.seq) =>
                        {
                            r
                        }
                        _ => {
                            self.report(&Origin::Sync { peer }, Reason::MalformedPayload);
                            return;
                        }
                    };
                    last_seq = Some(record.record().position.seq);
                    let origin = Origin::Sync { peer };
                    if let Some(reason) = self.pipeline.admit_decoded(record, origin.clone(), now_ms()) {
                        self.report(&origin, reason);
                    }
                }
                if let (true, Some(last)) = (truncated, last_seq) {
                    if last < to_seq {
                        self.sync.continue_records(&peer, author, last + 1, to_seq);
                    }
                }
            }
            (SyncRequest::Reconcile(request), SyncResponse::Reconciled(answers)) => {
                self.follow_reconcile(peer, request, answers.into_inner());
            }
            (_, SyncResponse::Refused(Refusal::Busy)) => debug!(%peer, "sync request refused: busy"),
            (_, SyncResponse::Refused(r)) => debug!(%peer, ?r, "sync request refused"),
            _ => self.penalize(peer, PenaltyReason::SyncAbuse),
        }
    }

    /// A page of `peer`'s heads was compared with ours, or a reconcile answer followed: ask
    /// for what we lack, then for the next page or ranges.
    pub(super) fn on_heads_compared(&mut self, c: HeadsCompared) {
        self.sync.step_returned(&c.peer);
        if let Some(why) = c.abuse {
            debug!(peer = %c.peer, why, "sync/2 answer breaks the protocol");
            self.penalize(c.peer, PenaltyReason::SyncAbuse);
            self.note_round_finished(c.peer);
            return;
        }
        debug!(peer = %c.peer, wants = c.wants.len(), more = c.next_after.is_some(), "sync heads compared");
        for (author, from_seq, to_seq, gap) in c.wants {
            self.sync.want_records(&c.peer, author, from_seq, to_seq, gap);
        }
        if let Some(after) = c.next_after {
            self.sync.continue_heads(&c.peer, after);
        }
        if let Some((nonce, queries)) = c.reconcile {
            let cut = self.sync.push_queries(&c.peer, &nonce, queries);
            if cut > 0 {
                debug!(peer = %c.peer, cut, "sync/2 ranges dropped at the client's bounds");
                self.metrics.sync_reconcile_cut.inc_by(cut as u64);
            }
        }
        self.dispatch_sync(c.peer);
        self.note_round_finished(c.peer);
    }

    /// Counts and times `peer`'s round if it now knows every difference.
    fn note_round_finished(&mut self, peer: PeerId) {
        let Some((kind, took)) = self.sync.round_finished(&peer, std::time::Instant::now()) else { return };
        let protocol = round_protocol(kind);
        debug!(%peer, protocol, secs = took.as_secs_f64(), "sync round finished");
        let labels = SyncRoundLabels { protocol };
        self.metrics.sync_rounds_finished.get_or_create(&labels).inc();
        self.metrics.sync_round_seconds.get_or_create(&labels).observe(took.as_secs_f64());
    }

    fn serve_sync(&mut self, peer: PeerId, request: SyncRequest, channel: ResponseChannel<SyncResponse>) {
        let serving = self.serving.entry(peer).or_default();
        if *serving >= self.cfg.sync_max_inbound_per_peer {
            let _ =
                self.swarm.behaviour_mut().sync.send_response(channel, SyncResponse::Refused(Refusal::Busy));
            self.penalize(peer, PenaltyReason::SyncAbuse);
            return;
        }
        let size = match &request {
            SyncRequest::Reconcile(_) => crate::sync::MAX_REQUEST_BYTES_V2,
            _ => crate::sync::MAX_REQUEST_BYTES,
        };
        if let palisade_guard::Admission::Deny(_) = self.guard.admit_message(&peer, size) {
            let _ =
                self.swarm.behaviour_mut().sync.send_response(channel, SyncResponse::Refused(Refusal::Busy));
            return;
        }
        let valid = match &request {
            SyncRequest::Heads { limit, .. } => *limit > 0,
            SyncRequest::Records { from_seq, to_seq, limit, .. } => {
                *limit > 0 && *from_seq >= 1 && from_seq <= to_seq
            }
            SyncRequest::Reconcile(r) => !r.queries.is_empty(),
        };
        if !valid {
            let _ = self
                .swarm
                .behaviour_mut()
                .sync
                .send_response(channel, SyncResponse::Refused(Refusal::BadRequest));
            self.penalize(peer, PenaltyReason::SyncAbuse);
            return;
        }
        let turn = matches!(request, SyncRequest::Reconcile(_)).then(|| self.reconciling.clone());
        *serving += 1;
        self.metrics.sync_requests_served.inc();
        let store = self.store.clone();
        let tx = self.serve_tx.clone();
        let cfg = self.cfg.clone();
        self.tasks.spawn_blocking(move || {
            let response = match turn {
                Some(turn) => {
                    let _one_at_a_time = turn.lock().unwrap_or_else(|p| p.into_inner());
                    answer_sync(&store, &cfg, request)
                }
                None => answer_sync(&store, &cfg, request),
            };
            let _ = tx.blocking_send((peer, channel, response));
        });
    }

    /// Sends an answer built by a blocking task; the peer's serving slot is free again.
    pub(super) fn send_sync_response(
        &mut self,
        peer: PeerId,
        channel: ResponseChannel<SyncResponse>,
        response: SyncResponse,
    ) {
        if let Some(n) = self.serving.get_mut(&peer) {
            *n = n.saturating_sub(1);
        }
        let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
    }
}
