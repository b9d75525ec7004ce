//! Signed records for the benchmarks: many authors, each a proper feed (seq 1, 2, … with
//! `prev` links), signed on all cores, deterministic for a given seed.

use palisade_types::ed25519_dalek::SigningKey;
use palisade_types::{fixtures, FeedWriter, VerifiedRecord};

/// The signing key of author `i` of workload `seed`.
pub fn author_key(seed: u64, i: usize) -> SigningKey {
    let mut input = [0u8; 16];
    input[..8].copy_from_slice(&seed.to_le_bytes());
    input[8..].copy_from_slice(&(i as u64).to_le_bytes());
    SigningKey::from_bytes(&blake3::derive_key("palisade bench author v1", &input))
}

/// `count` attestations from `authors` authors, interleaved round-robin (record `k` is by
/// author `k % authors`, at seq `k / authors + 1`), issued at `issued_at_ms`. Signed on
/// every core.
pub fn records(seed: u64, authors: usize, count: usize, issued_at_ms: u64) -> Vec<VerifiedRecord> {
    records_from(seed, 0, authors, count, issued_at_ms)
}

/// Like [`records`], for authors numbered from `first_author`.
pub fn records_from(
    seed: u64,
    first_author: usize,
    authors: usize,
    count: usize,
    issued_at_ms: u64,
) -> Vec<VerifiedRecord> {
    let authors = authors.max(1);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
    // Thread t signs the feeds of authors t, t + threads, …
    let per_thread: Vec<Vec<(usize, Vec<VerifiedRecord>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for a in (t..authors).step_by(threads) {
                        let n = count / authors + usize::from(a < count % authors);
                        let mut w = FeedWriter::new(author_key(seed, first_author + a));
                        let feed: Vec<VerifiedRecord> = (0..n)
                            .filter_map(|k| {
                                let serial = (first_author + a) as u64 * 1_000_000_007 + k as u64;
                                w.sign_next(fixtures::attestation(serial), issued_at_ms).ok()
                            })
                            .collect();
                        out.push((a, feed));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut feeds: Vec<std::collections::VecDeque<VerifiedRecord>> =
        (0..authors).map(|_| Default::default()).collect();
    for (a, feed) in per_thread.into_iter().flatten() {
        if let Some(slot) = feeds.get_mut(a) {
            *slot = feed.into();
        }
    }
    let mut out = Vec::with_capacity(count);
    'outer: loop {
        let mut any = false;
        for f in feeds.iter_mut() {
            if let Some(r) = f.pop_front() {
                out.push(r);
                any = true;
                if out.len() >= count {
                    break 'outer;
                }
            }
        }
        if !any {
            break;
        }
    }
    out
}

/// Encoded envelopes.
pub fn wire(records: &[VerifiedRecord]) -> Vec<Vec<u8>> {
    records.iter().map(|r| r.wire_bytes().to_vec()).collect()
}
