//! Reconciliation against in-memory head sets: it finds every difference, for any split of
//! two sets, within its bounds; it costs little when the sets agree; a server that breaks the
//! protocol is caught.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};

use super::*;
use crate::sync::{encode_body, SyncRequest, SyncResponse};

/// A sorted set of heads.
#[derive(Debug, Clone, Default)]
struct Heads(BTreeMap<AuthorKey, WireHead>);

impl HeadSource for Heads {
    fn scan(&self, range: &HeadRange, mut visit: impl FnMut(WireHead) -> bool) -> Result<(), SourceFailed> {
        if !range.is_valid() {
            return Ok(());
        }
        let start = match range.after {
            Some(a) => std::ops::Bound::Excluded(a),
            None => std::ops::Bound::Unbounded,
        };
        let end = match range.upto {
            Some(u) => std::ops::Bound::Included(u),
            None => std::ops::Bound::Unbounded,
        };
        for h in self.0.range((start, end)).map(|(_, h)| *h) {
            if !visit(h) {
                break;
            }
        }
        Ok(())
    }
}

impl Heads {
    fn insert(&mut self, h: WireHead) {
        self.0.insert(h.author, h);
    }
}

fn head(rng: &mut impl Rng, seq: u64) -> WireHead {
    WireHead { author: AuthorKey(rng.gen()), contiguous_seq: seq, max_seq: seq + rng.gen_range(0..2) }
}

/// What one round cost and found.
#[derive(Debug, Default)]
struct Round {
    requests: usize,
    bytes: usize,
    heads: Vec<WireHead>,
    max_pending: usize,
}

/// Runs one round of `client` asking `server`, as the event loop does (a stack of queries,
/// up to [`MAX_QUERIES_PER_REQUEST`] per request), counting the bytes of both directions'
/// bodies.
fn round(client: &Heads, server: &Heads, nonce: [u8; 32]) -> Round {
    let mut pending = vec![first_query(client, &nonce).unwrap()];
    let mut out = Round::default();
    while !pending.is_empty() {
        assert!(out.requests < MAX_REQUESTS_PER_ROUND, "round did not end");
        let take = pending.len().min(MAX_QUERIES_PER_REQUEST);
        let queries = pending.split_off(pending.len() - take);
        let request = ReconcileRequest { nonce, queries: BoundedVec::new(queries).unwrap() };
        let answers = answer(server, &request).unwrap();
        let response = SyncResponse::Reconciled(BoundedVec::new(answers.clone()).unwrap());
        out.requests += 1;
        out.bytes +=
            encode_body(&SyncRequest::Reconcile(request.clone())).len() + encode_body(&response).len() + 8;
        let followed = follow(client, &request, &answers).unwrap().expect("an honest server is no abuse");
        out.heads.extend(followed.heads);
        pending.extend(followed.next);
        out.max_pending = out.max_pending.max(pending.len());
    }
    out
}

/// The server's heads the client lacks or holds differently.
fn differences(client: &Heads, server: &Heads) -> Vec<AuthorKey> {
    server.0.values().filter(|h| client.0.get(&h.author) != Some(h)).map(|h| h.author).collect()
}

fn found_every_difference(client: &Heads, server: &Heads, r: &Round) {
    let found: BTreeMap<AuthorKey, WireHead> = r.heads.iter().map(|h| (h.author, *h)).collect();
    for author in differences(client, server) {
        assert_eq!(found.get(&author), server.0.get(&author), "difference at {author} not found");
    }
    for h in &r.heads {
        assert_eq!(server.0.get(&h.author), Some(h), "a head the server does not hold");
    }
}

/// Two sets from one shared base: `shared` heads in both, `only_client`, `only_server`, and
/// `changed` heads that both hold at different seqs.
fn sets(seed: u64, shared: usize, only_client: usize, only_server: usize, changed: usize) -> (Heads, Heads) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut client, mut server) = (Heads::default(), Heads::default());
    for _ in 0..shared {
        let seq = rng.gen_range(1..100);
        let h = head(&mut rng, seq);
        client.insert(h);
        server.insert(h);
    }
    for _ in 0..only_client {
        client.insert(head(&mut rng, 1));
    }
    for _ in 0..only_server {
        server.insert(head(&mut rng, 1));
    }
    for _ in 0..changed {
        let h = head(&mut rng, 5);
        client.insert(h);
        server.insert(WireHead { max_seq: h.max_seq + 3, ..h });
    }
    (client, server)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For any split of two sets, each side learns every head of the other that it lacks or
    /// holds differently (so applying both rounds yields the union), within the bounds.
    #[test]
    fn reconciliation_finds_every_difference_for_any_split(
        seed in any::<u64>(),
        shared in 0usize..3000,
        only_client in 0usize..300,
        only_server in 0usize..300,
        changed in 0usize..100,
        nonce in any::<[u8; 32]>(),
    ) {
        let (client, server) = sets(seed, shared, only_client, only_server, changed);
        let pulled = round(&client, &server, nonce);
        found_every_difference(&client, &server, &pulled);
        let pushed = round(&server, &client, nonce);
        found_every_difference(&server, &client, &pushed);
        prop_assert!(pulled.max_pending <= MAX_PENDING_QUERIES);
        if differences(&client, &server).is_empty() {
            prop_assert_eq!(pulled.requests, 1, "agreeing sets settle in one exchange");
        }
    }
}

#[test]
fn agreement_costs_one_small_exchange_whatever_the_size() {
    let (client, server) = sets(7, 100_000, 0, 0, 0);
    let r = round(&client, &server, [9; 32]);
    assert_eq!(r.requests, 1);
    assert!(r.bytes < 256, "{} bytes for 100k heads in agreement", r.bytes);
}

#[test]
fn a_hundred_differences_among_100k_cost_a_few_percent_of_the_heads() {
    let (client, server) = sets(8, 100_000, 0, 50, 50);
    let r = round(&client, &server, [3; 32]);
    found_every_difference(&client, &server, &r);
    let all_heads = server.0.len() * 48;
    assert!(r.bytes * 20 < all_heads, "{} bytes against {all_heads} for all heads", r.bytes);
}

#[test]
fn an_empty_client_lists_everything_in_pages_not_splits() {
    let (client, server) = sets(9, 0, 0, 20_000, 0);
    let r = round(&client, &server, [1; 32]);
    found_every_difference(&client, &server, &r);
    // One split of the whole set, then each part listed in pages of up to 4096 heads.
    assert!(r.requests <= 2 + 20_000 / MAX_HEADS_PER_RESPONSE + SPLIT_FANOUT, "{} requests", r.requests);
}

#[test]
fn a_range_that_shrank_under_the_scan_is_listed_not_split_into_one_part() {
    // count says 40 but the source holds 2 (evicted between the scans): one part only.
    let (_, server) = sets(10, 2, 0, 0, 0);
    assert_eq!(split(&server, &[0; 32], &HeadRange::ALL, 40).unwrap(), None);
}

fn request(queries: Vec<RangeQuery>) -> ReconcileRequest {
    ReconcileRequest { nonce: [5; 32], queries: BoundedVec::new(queries).unwrap() }
}

fn abuse(request: &ReconcileRequest, answers: Vec<RangeAnswer>) -> Option<&'static str> {
    follow(&Heads::default(), request, &answers).unwrap().err().map(|Abuse(why)| why)
}

#[test]
fn a_server_that_breaks_the_protocol_is_caught() {
    let key = |n: u8| AuthorKey([n; 32]);
    let h = |n: u8| WireHead { author: key(n), contiguous_seq: 1, max_seq: 1 };
    let all = |want| RangeQuery { range: HeadRange::ALL, want };
    let split = request(vec![all(Want::Split)]);
    let heads = |v: Vec<WireHead>, more| RangeAnswer::Heads { heads: BoundedVec::new(v).unwrap(), more };
    let part = |upto, count| SubRange { upto, count, fingerprint: [0; 16] };
    let parts = |v: Vec<SubRange>| RangeAnswer::Split(BoundedVec::new(v).unwrap());

    assert!(abuse(&split, vec![]).is_some(), "nothing answered");
    assert!(abuse(&split, vec![RangeAnswer::Equal]).is_some(), "equal without a fingerprint");
    assert!(abuse(&split, vec![RangeAnswer::Equal, RangeAnswer::Equal]).is_some(), "more answers");
    assert!(abuse(&split, vec![heads(vec![h(2), h(1)], false)]).is_some(), "out of order");
    assert!(abuse(&split, vec![heads(vec![], true)]).is_some(), "empty page with more");
    assert!(abuse(&split, vec![parts(vec![part(None, 40)])]).is_some(), "one part");
    assert!(abuse(&split, vec![parts(vec![part(Some(key(2)), 3), part(Some(key(1)), 3), part(None, 3)])])
        .is_some());
    assert!(
        abuse(&split, vec![parts(vec![part(Some(key(2)), 3), part(Some(key(3)), 3)])]).is_some(),
        "short"
    );
    let listing = request(vec![all(Want::Heads)]);
    assert!(abuse(&listing, vec![parts(vec![part(Some(key(2)), 3), part(None, 3)])]).is_some());
    let bounded = request(vec![RangeQuery {
        range: HeadRange { after: Some(key(5)), upto: Some(key(9)) },
        want: Want::Heads,
    }]);
    assert!(abuse(&bounded, vec![heads(vec![h(5)], false)]).is_some(), "head outside the range");
    assert_eq!(abuse(&bounded, vec![heads(vec![h(6), h(9)], false)]), None);
    let many = (0..MAX_HEADS_PER_RESPONSE + 1).map(|i| {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_be_bytes());
        WireHead { author: AuthorKey(k), contiguous_seq: 1, max_seq: 1 }
    });
    let answers: Vec<RangeAnswer> = many
        .collect::<Vec<_>>()
        .chunks(MAX_HEADS_PER_RESPONSE / 2 + 1)
        .map(|c| heads(c.to_vec(), false))
        .collect();
    let two = request(vec![all(Want::Heads), all(Want::Heads)]);
    assert!(abuse(&two, answers).is_some(), "more heads than a response holds");
}

#[test]
fn unanswered_queries_are_asked_again() {
    let (client, server) = sets(11, 0, 0, MAX_HEADS_PER_RESPONSE + 10, 0);
    let all = RangeQuery { range: HeadRange::ALL, want: Want::Heads };
    let req = request(vec![all, all]);
    let answers = answer(&server, &req).unwrap();
    assert_eq!(answers.len(), 1, "the first query took the whole budget");
    let followed = follow(&client, &req, &answers).unwrap().unwrap();
    assert_eq!(followed.heads.len(), MAX_HEADS_PER_RESPONSE);
    assert_eq!(followed.next.len(), 2, "the listing's next page and the unanswered query");
}

#[test]
fn fingerprints_are_keyed_by_the_round_nonce() {
    let (set, _) = sets(12, 100, 0, 0, 0);
    let a = summarize(&set, &[1; 32], &HeadRange::ALL).unwrap();
    let b = summarize(&set, &[2; 32], &HeadRange::ALL).unwrap();
    assert_eq!(a.count(), 100);
    assert_ne!(a.fingerprint(&[1; 32]), b.fingerprint(&[2; 32]));
    assert_ne!(Accumulator::default().fingerprint(&[1; 32]), a.fingerprint(&[1; 32]));
}
