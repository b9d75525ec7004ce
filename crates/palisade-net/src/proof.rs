//! Equivocation proofs on `/palisade/proofs/1`: two envelopes by one author at one seq.
//!
//! Message layout (bincode, as sync): `bytes<16384> first ++ bytes<16384> second`. A receiver
//! checks cheaply that both parse, name the same author and seq and differ, then verifies
//! both signatures off the event loop and stores both records, which flags the author in
//! its store. The proof is self-verifying: no trust in the relaying peer is needed.

use palisade_store::{InsertOutcome, Source, Store, StoredMeta};
use palisade_types::limits::MAX_ENVELOPE_BYTES;
use palisade_types::{AuthorKey, BoundedBytes, ParsedEnvelope, RecordId, UnverifiedRecord};

use crate::pipeline::{Origin, Outcome};

type Half = BoundedBytes<MAX_ENVELOPE_BYTES>;

/// Encodes a proof message.
pub(crate) fn encode(first: &[u8], second: &[u8]) -> Vec<u8> {
    let first = Half::new(first.to_vec()).unwrap_or_default();
    let second = Half::new(second.to_vec()).unwrap_or_default();
    crate::sync::encode_body(&(first, second))
}

/// Parses a proof and checks it is one (same author and seq, different ids).
pub(crate) fn decode_and_check(data: &[u8]) -> Result<(UnverifiedRecord, UnverifiedRecord), Outcome> {
    let (first, second): (Half, Half) =
        crate::sync::decode_body(data).map_err(|_| Outcome::Reject("malformed_envelope"))?;
    let parse = |b: Half| {
        ParsedEnvelope::parse(b.into_inner())
            .map_err(|_| Outcome::Reject("malformed_envelope"))?
            .decode()
            .map_err(|_| Outcome::Reject("malformed_payload"))
    };
    let a = parse(first)?;
    let b = parse(second)?;
    let (pa, pb) = (&a.record().position, &b.record().position);
    if pa.author != pb.author || pa.seq != pb.seq || a.id() == b.id() {
        return Err(Outcome::Reject("invalid"));
    }
    Ok((a, b))
}

/// The result of checking one proof off the event loop.
#[derive(Debug)]
pub(crate) struct ProofCheck {
    pub(crate) origin: Origin,
    pub(crate) outcome: Outcome,
    pub(crate) stored_ids: Vec<RecordId>,
    pub(crate) author_seq: Option<(AuthorKey, u64)>,
}

/// Verifies both signatures and stores both records (blocking).
pub(crate) fn verify_and_store(
    store: &Store,
    origin: Origin,
    pair: (UnverifiedRecord, UnverifiedRecord),
) -> ProofCheck {
    let author_seq = Some((pair.0.record().position.author, pair.0.record().position.seq));
    let fail = |origin, outcome| ProofCheck { origin, outcome, stored_ids: Vec::new(), author_seq: None };
    let (Ok(a), Ok(b)) = (pair.0.verify(), pair.1.verify()) else {
        return fail(origin, Outcome::Reject("bad_signature"));
    };
    let mut stored_ids = Vec::new();
    for r in [&a, &b] {
        match store.insert(r, StoredMeta { received_at_ms: crate::now_ms(), source: Source::Gossip }) {
            Ok(InsertOutcome::Inserted(_)) | Ok(InsertOutcome::Duplicate) => stored_ids.push(r.id()),
            Err(_) => return fail(origin, Outcome::Ignore("store_error")),
        }
    }
    if store.flush().is_err() {
        return fail(origin, Outcome::Ignore("store_error"));
    }
    ProofCheck { origin, outcome: Outcome::Accept, stored_ids, author_seq }
}
