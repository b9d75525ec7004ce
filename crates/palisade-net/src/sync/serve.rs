//! The store side of sync, on blocking threads (sled reads), never on the event loop: the
//! server's answers ([`answer_sync`]) and the client's comparison of a peer's heads with ours
//! ([`compare_heads`]).

use palisade_store::Store;
use palisade_types::{BoundedBytes, BoundedVec};

use super::client::Gap;
use super::{Refusal, SyncRequest, SyncResponse, WireHead};
use crate::NetConfig;
use palisade_types::AuthorKey;

/// Builds a sync response from the store (runs on a blocking thread).
pub(crate) fn answer_sync(store: &Store, cfg: &NetConfig, request: SyncRequest) -> SyncResponse {
    match request {
        SyncRequest::Heads { after, limit } => {
            let limit = (limit as usize).min(cfg.sync_max_heads_per_page);
            match store.feed_heads(after.as_ref(), limit + 1) {
                Ok(mut heads) => {
                    let next_after = if heads.len() > limit {
                        heads.truncate(limit);
                        heads.last().map(|(a, _)| *a)
                    } else {
                        None
                    };
                    let wire: Vec<WireHead> = heads
                        .into_iter()
                        .map(|(author, h)| WireHead {
                            author,
                            contiguous_seq: h.contiguous_seq,
                            max_seq: h.max_seq,
                        })
                        .collect();
                    match BoundedVec::new(wire) {
                        Ok(heads) => SyncResponse::Heads { heads, next_after },
                        Err(_) => SyncResponse::Refused(Refusal::Internal),
                    }
                }
                Err(_) => SyncResponse::Refused(Refusal::Internal),
            }
        }
        SyncRequest::Reconcile(request) => match super::reconcile::answer(store, &request) {
            Ok(answers) => BoundedVec::new(answers)
                .map(SyncResponse::Reconciled)
                .unwrap_or(SyncResponse::Refused(Refusal::Internal)),
            Err(_) => SyncResponse::Refused(Refusal::Internal),
        },
        SyncRequest::Records { author, from_seq, to_seq, limit } => {
            let limit = (limit as usize).min(cfg.sync_max_records_per_page);
            match store.feed_range(&author, from_seq, to_seq, limit, cfg.sync_max_response_bytes) {
                Ok(records) => {
                    let truncated = records.len() >= limit
                        || records.last().is_some_and(|r| r.record().position.seq < to_seq);
                    let bytes: Vec<BoundedBytes<{ palisade_types::limits::MAX_ENVELOPE_BYTES }>> = records
                        .into_iter()
                        .filter_map(|r| BoundedBytes::new(r.into_wire_bytes()).ok())
                        .collect();
                    match BoundedVec::new(bytes) {
                        Ok(records) => SyncResponse::Records { records, truncated },
                        Err(_) => SyncResponse::Refused(Refusal::Internal),
                    }
                }
                Err(_) => SyncResponse::Refused(Refusal::Internal),
            }
        }
    }
}

/// Records a peer's heads show that we lack: `(author, from_seq, to_seq, gap)`.
pub(crate) type Wants = Vec<(AuthorKey, u64, u64, Gap)>;

/// Compares a page of a peer's heads with our feed heads: for each author whose records past
/// what we hold contiguously the peer has, the range to ask for and whether we hold the
/// author at all (known-author gaps are fetched first).
pub(crate) fn compare_heads(store: &Store, heads: &[WireHead]) -> Wants {
    let mut wants = Vec::new();
    for head in heads {
        if head.contiguous_seq > head.max_seq {
            continue;
        }
        let Ok(local) = store.feed_head(&head.author) else { continue };
        let gap = if local.is_some() { Gap::KnownAuthor } else { Gap::NewAuthor };
        let local = local.unwrap_or_default();
        // What we have contiguously is settled; ask for everything after it that the peer has.
        if head.max_seq > local.contiguous_seq
            && (head.max_seq > local.max_seq || head.contiguous_seq > local.contiguous_seq)
        {
            wants.push((head.author, local.contiguous_seq + 1, head.max_seq, gap));
        }
    }
    wants
}
