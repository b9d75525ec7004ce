//! The sync client's rules, without sockets: budgets released once, gap priority, round
//! rotation, sync/2 rounds and their bounds, the fallback to sync/1.

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
    c.start_round(peer, Instant::now(), false);
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
    c.start_round(peer, Instant::now(), false);
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
    c.start_round(peer, Instant::now(), false);
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
    c.start_round(mute, now, false);
    let mut id = 0;
    let sent = drain(&mut c, mute, &mut id, 0);
    c.failed(sent[0].0, Failure::Unsupported, now);
    let mut asked = Vec::new();
    for i in 0..6u64 {
        let t = now + Duration::from_secs(30 * (i + 1));
        let p = c.round_peer(t, |p| *p != bad).expect("a peer");
        c.start_round(p, t, false);
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
        c.start_round(*p, now, false);
        let sent = drain(&mut c, *p, &mut id, 0);
        c.failed(sent[0].0, Failure::Other, now);
    }
    c.start_round(honest, now, false);
    let sent = drain(&mut c, honest, &mut id, 0);
    c.finish(sent[0].0);
    // Every timer round goes to the peer that answers, although the others were asked
    // less recently... until it fails too.
    for i in 1..=5u64 {
        let t = now + Duration::from_secs(3 * i);
        assert_eq!(c.round_peer(t, |_| true), Some(honest), "round {i}");
        c.start_round(honest, t, false);
    }
    let sent = drain(&mut c, honest, &mut id, 0);
    c.failed(sent[0].0, Failure::Other, now);
    assert_ne!(c.round_peer(now + Duration::from_secs(30), |_| true), Some(honest));
}

fn query() -> RangeQuery {
    use super::super::reconcile::{HeadRange, Want};
    RangeQuery { range: HeadRange::ALL, want: Want::Split }
}

#[test]
fn a_peer_that_speaks_only_sync_1_gets_the_heads_walk_now_and_later() {
    let mut c = SyncClient::<u64>::new(ONE_AT_A_TIME);
    let peer = PeerId::random();
    c.connected(peer);
    let Some(RoundKind::Reconcile { nonce }) = c.start_round(peer, Instant::now(), true) else {
        panic!("a round with a new peer reconciles")
    };
    assert_eq!(c.push_queries(&peer, &nonce, vec![query()]), 0);
    let mut id = 0;
    let sent = drain(&mut c, peer, &mut id, 0);
    assert!(matches!(sent[0].1, SyncRequest::Reconcile(_)));
    c.failed(sent[0].0, Failure::OnlyV1, Instant::now());
    let sent = drain(&mut c, peer, &mut id, 0);
    assert!(matches!(sent[0].1, SyncRequest::Heads { after: None, .. }), "fell back at once");
    c.finish(sent[0].0);
    assert_eq!(c.start_round(peer, Instant::now(), true), Some(RoundKind::HeadsWalk));
    // The peer still takes part in timer rounds.
    assert_eq!(c.round_peer(Instant::now(), |_| true), Some(peer));
}

#[test]
fn reconciliation_queries_are_bounded_and_tied_to_their_round() {
    let mut c = SyncClient::<u64>::new(LIMITS);
    let peer = PeerId::random();
    c.connected(peer);
    let Some(RoundKind::Reconcile { nonce }) = c.start_round(peer, Instant::now(), true) else {
        panic!("reconcile")
    };
    assert_eq!(c.push_queries(&peer, &[0xee; 32], vec![query()]), 0, "another round's: dropped");
    assert_eq!(c.pending_queries(&peer), 0);
    let cut = c.push_queries(&peer, &nonce, vec![query(); MAX_PENDING_QUERIES + 7]);
    assert_eq!((cut, c.pending_queries(&peer)), (7, MAX_PENDING_QUERIES));
    let mut id = 0;
    let sent = drain(&mut c, peer, &mut id, 0);
    assert_eq!(sent.len(), LIMITS.max_in_flight_per_peer, "the in-flight cap holds");
    for (_, r) in &sent {
        let SyncRequest::Reconcile(r) = r else { panic!("reconcile requests") };
        assert_eq!(r.queries.len(), MAX_QUERIES_PER_REQUEST);
        assert_eq!(r.nonce, nonce);
    }
    // A new round drops what the old one had queued.
    c.start_round(peer, Instant::now(), true);
    assert_eq!(c.pending_queries(&peer), 0);
}

#[test]
fn a_round_sends_at_most_its_request_budget() {
    let mut c = SyncClient::<u64>::new(LIMITS);
    let peer = PeerId::random();
    c.connected(peer);
    let Some(RoundKind::Reconcile { nonce }) = c.start_round(peer, Instant::now(), true) else {
        panic!("reconcile")
    };
    let mut id = 0;
    let mut sent_total = 0;
    // A server that answers every request with more ranges to ask about.
    loop {
        c.push_queries(&peer, &nonce, vec![query(); 2]);
        let sent = drain(&mut c, peer, &mut id, 0);
        if sent.is_empty() {
            break;
        }
        for (i, _) in sent {
            sent_total += 1;
            c.finish(i);
        }
        assert!(sent_total <= MAX_REQUESTS_PER_ROUND);
    }
    assert_eq!(sent_total, MAX_REQUESTS_PER_ROUND);
    assert_eq!(c.push_queries(&peer, &nonce, vec![query()]), 1, "cut once the budget is spent");
}

#[test]
fn a_round_finishes_once_it_knows_every_difference() {
    let mut c = SyncClient::<u64>::new(LIMITS);
    let peer = PeerId::random();
    c.connected(peer);
    let t0 = Instant::now();
    let Some(RoundKind::Reconcile { nonce }) = c.start_round(peer, t0, true) else { panic!("reconcile") };
    c.step_spawned(&peer); // our fingerprint of every head
    assert!(c.round_finished(&peer, t0).is_none(), "the first step is out");
    c.step_returned(&peer);
    c.push_queries(&peer, &nonce, vec![query()]);
    assert!(c.round_finished(&peer, t0).is_none(), "a range to ask about");
    let mut id = 0;
    let sent = drain(&mut c, peer, &mut id, 0);
    assert!(c.round_finished(&peer, t0).is_none(), "a request in flight");
    c.finish(sent[0].0);
    c.step_spawned(&peer);
    assert!(c.round_finished(&peer, t0).is_none(), "its answer is being followed");
    c.step_returned(&peer);
    // Records asked for do not hold the round open.
    c.want_records(&peer, author(1), 1, 9, Gap::KnownAuthor);
    let _ = drain(&mut c, peer, &mut id, 0);
    let later = t0 + Duration::from_millis(250);
    assert_eq!(
        c.round_finished(&peer, later),
        Some((RoundKind::Reconcile { nonce }, Duration::from_millis(250)))
    );
    assert_eq!(c.round_finished(&peer, later), None, "counted once");
}
