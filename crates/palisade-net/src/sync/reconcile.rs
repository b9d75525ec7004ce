//! Range-based set reconciliation over feed heads: the algorithm of `/palisade/sync/2`.
//!
//! The set reconciled holds one item per author: its feed head `(author, contiguous_seq,
//! max_seq)`, ordered by author key. A requester (the client) asks about ranges of author keys
//! `(after, upto]`; the server answers each range with:
//!
//! - **`Equal`** when the client sent its fingerprint of the range and the server's matches:
//!   two nodes that agree settle the whole set in one exchange of about 150 bytes;
//! - **`Heads`** (the heads themselves) when the server holds at most [`LIST_AT_MOST`] heads
//!   in the range, or when the client asked for them (it holds under half of what the server
//!   does there: listing is cheaper than splitting), paged at [`MAX_HEADS_PER_RESPONSE`];
//! - **`Split`**: up to [`SPLIT_FANOUT`] consecutive sub-ranges of about equal size, each with
//!   the server's count and fingerprint; the client compares each with its own and asks again
//!   about the ones that differ.
//!
//! `d` differences among `n` heads therefore cost about `d · log₁₆(n / 32)` sub-range
//! fingerprints plus the differing heads' neighbourhoods, instead of all `n` heads.
//!
//! Fingerprints are keyed by a nonce the client draws for each round: an item's digest is
//! `blake3::keyed_hash(nonce, author ‖ contiguous_seq ‖ max_seq)` truncated to 128 bits, a
//! range's fingerprint the keyed hash of the digests' sum (mod 2¹²⁸) and count. A sum is
//! incremental but open to collisions built offline (Wagner's generalised birthday attack); a
//! key no one knows before the round closes that door. The server is stateless: every request
//! carries what it needs.
//!
//! Bounds: [`MAX_QUERIES_PER_REQUEST`] ranges per request, [`MAX_HEADS_PER_RESPONSE`] heads
//! per response, [`SPLIT_FANOUT`] sub-ranges per split; the client keeps at most
//! [`MAX_PENDING_QUERIES`] ranges to ask about and sends at most [`MAX_REQUESTS_PER_ROUND`]
//! requests in a round, so a server that keeps answering `Split` cannot hold a client for long.

use bincode::{Decode, Encode};
use palisade_types::{AuthorKey, BoundedVec};

use super::{WireHead, MAX_HEADS_PER_PAGE};

/// Bytes of a fingerprint.
pub const FINGERPRINT_BYTES: usize = 16;
/// A range's fingerprint.
pub type Fingerprint = [u8; FINGERPRINT_BYTES];
/// Bytes of a round's nonce (the fingerprints' key).
pub const NONCE_BYTES: usize = 32;
/// Most ranges asked about in one request.
pub const MAX_QUERIES_PER_REQUEST: usize = 16;
/// Most sub-ranges a range is split into.
pub const SPLIT_FANOUT: usize = 16;
/// A range the server holds at most this many heads of is answered with the heads.
pub const LIST_AT_MOST: usize = 32;
/// Most heads in one response, over all its answers (the sync/1 heads page).
pub const MAX_HEADS_PER_RESPONSE: usize = MAX_HEADS_PER_PAGE;
/// Most ranges a client keeps to ask one peer about; more are dropped (the next round
/// finds them again).
pub const MAX_PENDING_QUERIES: usize = 1024;
/// Most requests a client sends one peer in one round.
pub const MAX_REQUESTS_PER_ROUND: usize = 4096;

/// The authors `a` with `after < a <= upto`; `None` is unbounded on that side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct HeadRange {
    /// Exclusive lower bound.
    pub after: Option<AuthorKey>,
    /// Inclusive upper bound.
    pub upto: Option<AuthorKey>,
}

impl HeadRange {
    /// Every author.
    pub const ALL: HeadRange = HeadRange { after: None, upto: None };

    /// Whether `author` is in the range.
    pub fn contains(&self, author: &AuthorKey) -> bool {
        self.after.is_none_or(|a| *author > a) && self.upto.is_none_or(|u| *author <= u)
    }

    /// Whether the range can hold any author (`after < upto`).
    pub fn is_valid(&self) -> bool {
        match (self.after, self.upto) {
            (Some(a), Some(u)) => a < u,
            _ => true,
        }
    }
}

/// What the client wants to know about a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Want {
    /// `Equal` if the server's fingerprint of the range is this one, else as `Split`.
    Compare(Fingerprint),
    /// The range differs: split it (or list it, if small).
    Split,
    /// The heads of the range, paged.
    Heads,
}

/// One range asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct RangeQuery {
    /// The range.
    pub range: HeadRange,
    /// What is wanted.
    pub want: Want,
}

/// A reconciliation request: ranges, and the key of this round's fingerprints.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ReconcileRequest {
    /// The fingerprints' key, drawn by the client for the round.
    pub nonce: [u8; NONCE_BYTES],
    /// The ranges, answered in order.
    pub queries: BoundedVec<RangeQuery, MAX_QUERIES_PER_REQUEST>,
}

/// One part of a split range: from the previous part's `upto` (or the range's `after`) to
/// this `upto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct SubRange {
    /// Inclusive upper bound; the last part's is the range's.
    pub upto: Option<AuthorKey>,
    /// Heads the server holds in the part.
    pub count: u64,
    /// The server's fingerprint of the part.
    pub fingerprint: Fingerprint,
}

/// The answer about one range.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum RangeAnswer {
    /// The fingerprints match.
    Equal,
    /// The range in consecutive parts.
    Split(BoundedVec<SubRange, SPLIT_FANOUT>),
    /// The server's heads in the range, in author order.
    Heads {
        /// The heads.
        heads: BoundedVec<WireHead, MAX_HEADS_PER_RESPONSE>,
        /// More follow: ask again with `after` = the last head's author.
        more: bool,
    },
}

/// Where heads come from: the store, or a sorted list in tests.
pub(crate) trait HeadSource {
    /// Visits the heads in `range` in author order until `visit` returns false.
    fn scan(&self, range: &HeadRange, visit: impl FnMut(WireHead) -> bool) -> Result<(), SourceFailed>;
}

/// The head source could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourceFailed;

impl HeadSource for palisade_store::Store {
    fn scan(&self, range: &HeadRange, mut visit: impl FnMut(WireHead) -> bool) -> Result<(), SourceFailed> {
        self.scan_feed_heads(range.after.as_ref(), range.upto.as_ref(), |author, h| {
            visit(WireHead { author, contiguous_seq: h.contiguous_seq, max_seq: h.max_seq })
        })
        .map_err(|_| SourceFailed)
    }
}

/// Heads sorted by author, in memory: a [`HeadSource`] for fuzzing and for checking an
/// independent implementation against this one.
#[derive(Debug, Clone, Copy)]
pub struct SortedHeads<'a>(pub &'a [WireHead]);

impl HeadSource for SortedHeads<'_> {
    fn scan(&self, range: &HeadRange, mut visit: impl FnMut(WireHead) -> bool) -> Result<(), SourceFailed> {
        let start = range.after.map_or(0, |a| self.0.partition_point(|h| h.author <= a));
        for h in self.0.get(start..).unwrap_or_default() {
            if !range.contains(&h.author) || !visit(*h) {
                break;
            }
        }
        Ok(())
    }
}

/// The server's answers to `request` from `heads` (sorted by author, unique).
pub fn answer_sorted(heads: &[WireHead], request: &ReconcileRequest) -> Vec<RangeAnswer> {
    answer(&SortedHeads(heads), request).unwrap_or_default()
}

/// The client's step after `answers` to `request`, holding `heads` (sorted by author,
/// unique): the server's heads listed and the queries to send next, or why the answers are
/// abuse.
pub fn follow_sorted(
    heads: &[WireHead],
    request: &ReconcileRequest,
    answers: &[RangeAnswer],
) -> Result<(Vec<WireHead>, Vec<RangeQuery>), &'static str> {
    match follow(&SortedHeads(heads), request, answers) {
        Ok(Ok(f)) => Ok((f.heads, f.next)),
        Ok(Err(Abuse(why))) => Err(why),
        Err(SourceFailed) => Err("source failed"),
    }
}

/// A running fingerprint: the sum of item digests and their count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Accumulator {
    sum: u128,
    count: u64,
}

impl Accumulator {
    pub(crate) fn add(&mut self, nonce: &[u8; NONCE_BYTES], head: &WireHead) {
        let mut item = [0u8; 48];
        item[..32].copy_from_slice(head.author.as_bytes());
        item[32..40].copy_from_slice(&head.contiguous_seq.to_le_bytes());
        item[40..].copy_from_slice(&head.max_seq.to_le_bytes());
        self.sum = self.sum.wrapping_add(truncated(blake3::keyed_hash(nonce, &item)));
        self.count += 1;
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn fingerprint(&self, nonce: &[u8; NONCE_BYTES]) -> Fingerprint {
        let mut range = [0u8; 24];
        range[..16].copy_from_slice(&self.sum.to_le_bytes());
        range[16..].copy_from_slice(&self.count.to_le_bytes());
        truncated(blake3::keyed_hash(nonce, &range)).to_le_bytes()
    }
}

fn truncated(hash: blake3::Hash) -> u128 {
    let mut low = [0u8; 16];
    low.copy_from_slice(&hash.as_bytes()[..16]);
    u128::from_le_bytes(low)
}

/// The fingerprint of everything `source` holds in `range`.
pub(crate) fn summarize<S: HeadSource>(
    source: &S,
    nonce: &[u8; NONCE_BYTES],
    range: &HeadRange,
) -> Result<Accumulator, SourceFailed> {
    let mut acc = Accumulator::default();
    source.scan(range, |h| {
        acc.add(nonce, &h);
        true
    })?;
    Ok(acc)
}

/// The first query of a round: the whole set, compared with our fingerprint of it.
pub(crate) fn first_query<S: HeadSource>(
    source: &S,
    nonce: &[u8; NONCE_BYTES],
) -> Result<RangeQuery, SourceFailed> {
    let fingerprint = summarize(source, nonce, &HeadRange::ALL)?.fingerprint(nonce);
    Ok(RangeQuery { range: HeadRange::ALL, want: Want::Compare(fingerprint) })
}

// ---------------------------------------------------------------------------------------
// The server.

/// Answers a request from `source`, in query order, while the response's head budget lasts
/// (queries left unanswered are asked again by the client). Always answers the first query.
pub(crate) fn answer<S: HeadSource>(
    source: &S,
    request: &ReconcileRequest,
) -> Result<Vec<RangeAnswer>, SourceFailed> {
    let nonce = &request.nonce;
    let mut budget = MAX_HEADS_PER_RESPONSE;
    let mut answers = Vec::with_capacity(request.queries.len());
    for query in request.queries.iter() {
        let range = &query.range;
        let answer = if !range.is_valid() {
            // An empty range: nothing in it (a well-behaved client never asks).
            RangeAnswer::Heads { heads: BoundedVec::default(), more: false }
        } else if query.want == Want::Heads {
            list(source, range, budget)?
        } else {
            let (acc, small) = summarize_listing(source, nonce, range)?;
            match query.want {
                Want::Compare(theirs) if theirs == acc.fingerprint(nonce) => RangeAnswer::Equal,
                _ => match small {
                    Some(heads) if heads.len() > budget => break,
                    Some(heads) => RangeAnswer::Heads { heads: bounded(heads), more: false },
                    None => match split(source, nonce, range, acc.count())? {
                        Some(parts) => parts,
                        // The range shrank under the scan (evictions): list what is left.
                        None => list(source, range, budget)?,
                    },
                },
            }
        };
        if let RangeAnswer::Heads { heads, .. } = &answer {
            budget -= heads.len();
        }
        answers.push(answer);
        if budget == 0 {
            break;
        }
    }
    Ok(answers)
}

fn bounded(heads: Vec<WireHead>) -> BoundedVec<WireHead, MAX_HEADS_PER_RESPONSE> {
    // Callers never collect more than the response's budget.
    BoundedVec::new(heads).unwrap_or_default()
}

/// The range's fingerprint, and its heads if there are at most [`LIST_AT_MOST`].
fn summarize_listing<S: HeadSource>(
    source: &S,
    nonce: &[u8; NONCE_BYTES],
    range: &HeadRange,
) -> Result<(Accumulator, Option<Vec<WireHead>>), SourceFailed> {
    let mut acc = Accumulator::default();
    let mut heads = Vec::new();
    source.scan(range, |h| {
        acc.add(nonce, &h);
        if heads.len() <= LIST_AT_MOST {
            heads.push(h);
        }
        true
    })?;
    Ok((acc, (heads.len() <= LIST_AT_MOST).then_some(heads)))
}

/// At most `budget` heads of the range, and whether more follow.
fn list<S: HeadSource>(source: &S, range: &HeadRange, budget: usize) -> Result<RangeAnswer, SourceFailed> {
    let mut heads = Vec::new();
    let mut more = false;
    source.scan(range, |h| {
        if heads.len() == budget {
            more = true;
            return false;
        }
        heads.push(h);
        true
    })?;
    Ok(RangeAnswer::Heads { heads: bounded(heads), more })
}

/// The range (holding `count` heads, more than [`LIST_AT_MOST`]) in [`SPLIT_FANOUT`] parts
/// of about `count / SPLIT_FANOUT` heads; the last part runs to the range's end. `None` if
/// the range no longer holds two parts' worth.
fn split<S: HeadSource>(
    source: &S,
    nonce: &[u8; NONCE_BYTES],
    range: &HeadRange,
    count: u64,
) -> Result<Option<RangeAnswer>, SourceFailed> {
    let per_part = count.div_ceil(SPLIT_FANOUT as u64).max(1);
    let mut parts = Vec::with_capacity(SPLIT_FANOUT);
    let mut acc = Accumulator::default();
    let mut seen = 0u64;
    source.scan(range, |h| {
        acc.add(nonce, &h);
        seen += 1;
        // Close a part after `per_part` heads, but never on the last head (the last part
        // holds the rest and runs to the range's end).
        if acc.count() == per_part && parts.len() < SPLIT_FANOUT - 1 && seen < count {
            parts.push(SubRange {
                upto: Some(h.author),
                count: acc.count(),
                fingerprint: acc.fingerprint(nonce),
            });
            acc = Accumulator::default();
        }
        true
    })?;
    if parts.is_empty() {
        return Ok(None);
    }
    parts.push(SubRange { upto: range.upto, count: acc.count(), fingerprint: acc.fingerprint(nonce) });
    Ok(BoundedVec::new(parts).ok().map(RangeAnswer::Split))
}

// ---------------------------------------------------------------------------------------
// The client.

/// What one response tells the client.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Followed {
    /// The server's heads in ranges that differ: compare them with ours for what to fetch.
    pub(crate) heads: Vec<WireHead>,
    /// Ranges to ask about next (differing parts, the rest of a paged listing, queries the
    /// server left unanswered).
    pub(crate) next: Vec<RangeQuery>,
}

/// The response broke the protocol: sync abuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Abuse(pub(crate) &'static str);

/// Follows the server's `answers` to `request`: compares each part of a split with our own
/// fingerprint of it, and collects the heads listed. Checks every bound and order the
/// protocol states; a response that breaks one is abuse and is dropped whole.
pub(crate) fn follow<S: HeadSource>(
    source: &S,
    request: &ReconcileRequest,
    answers: &[RangeAnswer],
) -> Result<Result<Followed, Abuse>, SourceFailed> {
    let queries = request.queries.as_slice();
    if answers.len() > queries.len() {
        return Ok(Err(Abuse("more answers than queries")));
    }
    if answers.is_empty() && !queries.is_empty() {
        return Ok(Err(Abuse("no query answered")));
    }
    let listed: usize =
        answers.iter().map(|a| if let RangeAnswer::Heads { heads, .. } = a { heads.len() } else { 0 }).sum();
    if listed > MAX_HEADS_PER_RESPONSE {
        return Ok(Err(Abuse("more heads than a response may hold")));
    }
    let mut out = Followed::default();
    for (query, answer) in queries.iter().zip(answers) {
        match (query.want, answer) {
            (Want::Compare(_), RangeAnswer::Equal) => {}
            (_, RangeAnswer::Equal) => return Ok(Err(Abuse("equal to a range not compared"))),
            (_, RangeAnswer::Heads { heads, more }) => {
                let heads = heads.as_slice();
                if !in_order_within(heads, &query.range) {
                    return Ok(Err(Abuse("heads out of order or out of range")));
                }
                match heads.last() {
                    Some(last) if *more => out.next.push(RangeQuery {
                        range: HeadRange { after: Some(last.author), upto: query.range.upto },
                        want: Want::Heads,
                    }),
                    None if *more => return Ok(Err(Abuse("an empty page with more to follow"))),
                    _ => {}
                }
                out.heads.extend_from_slice(heads);
            }
            (Want::Heads, RangeAnswer::Split(_)) => return Ok(Err(Abuse("a split where heads were asked"))),
            (_, RangeAnswer::Split(parts)) => {
                let parts = parts.as_slice();
                if !parts_tile(parts, &query.range) {
                    return Ok(Err(Abuse("a split whose parts do not tile the range")));
                }
                out.next.extend(differing_parts(source, &request.nonce, &query.range, parts)?);
            }
        }
    }
    out.next.extend_from_slice(queries.get(answers.len()..).unwrap_or_default());
    Ok(Ok(out))
}

fn in_order_within(heads: &[WireHead], range: &HeadRange) -> bool {
    heads.iter().all(|h| range.contains(&h.author))
        && heads.iter().zip(heads.iter().skip(1)).all(|(a, b)| a.author < b.author)
}

/// At least two parts, bounds strictly ascending inside the range, the last at its end.
fn parts_tile(parts: &[SubRange], range: &HeadRange) -> bool {
    let Some((last, inner)) = parts.split_last() else { return false };
    if inner.is_empty() || last.upto != range.upto {
        return false;
    }
    let mut after = range.after;
    for part in inner {
        let Some(upto) = part.upto else { return false };
        if after.is_some_and(|a| upto <= a) || range.upto.is_some_and(|u| upto >= u) {
            return false;
        }
        after = Some(upto);
    }
    true
}

/// The parts whose fingerprint differs from ours, as the next queries: listed when we hold
/// under half of what the server does there (listing is cheaper than splitting), else split.
fn differing_parts<S: HeadSource>(
    source: &S,
    nonce: &[u8; NONCE_BYTES],
    range: &HeadRange,
    parts: &[SubRange],
) -> Result<Vec<RangeQuery>, SourceFailed> {
    // Our accumulator per part, in one scan of the range: a head goes to the first part whose
    // `upto` it does not pass (the last part runs to the range's end, so one always takes it).
    let mut ours = vec![Accumulator::default(); parts.len()];
    let mut index = 0;
    source.scan(range, |h| {
        while parts.get(index).is_some_and(|p| p.upto.is_some_and(|u| h.author > u)) {
            index += 1;
        }
        if let Some(acc) = ours.get_mut(index) {
            acc.add(nonce, &h);
        }
        true
    })?;
    let mut after = range.after;
    let mut next = Vec::new();
    for (part, mine) in parts.iter().zip(&ours) {
        let part_range = HeadRange { after, upto: part.upto };
        after = part.upto;
        if mine.fingerprint(nonce) == part.fingerprint {
            continue;
        }
        let want = if mine.count().saturating_mul(2) < part.count { Want::Heads } else { Want::Split };
        next.push(RangeQuery { range: part_range, want });
    }
    Ok(next)
}

#[cfg(test)]
mod tests;
