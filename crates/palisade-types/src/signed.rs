//! Signing, ids, and the type states a record passes through on ingest.
//!
//! ```text
//! wire bytes ─ParsedEnvelope::parse─► ParsedEnvelope (size cap, envelope decoded, known type, id)
//!            ─.decode()────────────► UnverifiedRecord (payload decoded canonically)
//!            ─.validate(now)───────► ValidatedRecord (static rules held)
//!            ─verify_batch / verify─► VerifiedRecord (signature checked; the only type the
//!                                      store accepts)
//! ```
//!
//! Each step consumes the previous state, so the order cannot be skipped: only a
//! [`ValidatedRecord`] can be verified, and a [`VerifiedRecord`] is minted only by
//! verification, by [`VerifiedRecord::sign`] (which holds a record this node signs to the same
//! static rules) and by the store reading back what it stored (`from_trusted_bytes`, which
//! `clippy.toml` forbids everywhere else). [`sign_envelope`] signs without the rules and
//! gives bytes only: what any key holder, hostile ones included, can send.
//!
//! ## Signature rule
//! A record is valid when the author key decodes to a point that is not of small order and
//! the signature satisfies the *cofactored* ed25519 equation `[8][s]B = [8]R + [8][k]A` with
//! canonical `s`. That is the equation ed25519-dalek's `verify_batch` checks; a single record
//! is checked as a batch of one. Using one equation for batches and singles matters in a gossip
//! network: with `verify_strict` (cofactorless) on one path and batches on the other, an author
//! could craft a signature that some nodes accept and others reject, and honest relays would
//! be penalised for forwarding it. See `docs/wire-format.md`.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::bounded::{BoundedBytes, BoundedString};
use crate::codec::{decode_payload, encode_payload, Envelope};
use crate::error::{DecodeError, SignError, ValidationError, VerifyError};
use crate::ids::{AuthorKey, RecordId};
use crate::limits::MAX_ENVELOPE_BYTES;
use crate::record::{Record, RecordKind};

/// Context string of the record-id key derivation. Part of the protocol.
pub const RECORD_ID_CONTEXT: &str = "palisade record-id v1";

/// DSSE pre-authentication encoding:
/// `"DSSEv1" SP len(t) SP t SP len(b) SP b`, lengths in ASCII decimal without leading zeros.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let t_len = payload_type.len().to_string();
    let b_len = payload.len().to_string();
    let mut out = Vec::with_capacity(6 + 4 + t_len.len() + b_len.len() + payload_type.len() + payload.len());
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(t_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(b_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// The key-derivation hasher for ids, set up once: deriving the context key costs about as
/// much as hashing a whole record, so every id starts from a clone of this one.
static RECORD_ID_HASHER: std::sync::LazyLock<blake3::Hasher> =
    std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key(RECORD_ID_CONTEXT));

/// The id of the record whose signed bytes are `pae_bytes`:
/// `blake3::derive_key(RECORD_ID_CONTEXT, pae_bytes)`.
pub fn record_id(pae_bytes: &[u8]) -> RecordId {
    let mut hasher = RECORD_ID_HASHER.clone();
    hasher.update(pae_bytes);
    RecordId(*hasher.finalize().as_bytes())
}

/// Decodes an author key for verification, refusing invalid and small-order (weak) keys.
pub fn verifying_key(author: &AuthorKey) -> Result<VerifyingKey, VerifyError> {
    let key = VerifyingKey::from_bytes(author.as_bytes()).map_err(|_| VerifyError::BadAuthorKey)?;
    if key.is_weak() {
        return Err(VerifyError::BadAuthorKey);
    }
    Ok(key)
}

/// An envelope that decoded and names a known record kind. Its id is known; nothing about
/// the payload or signature has been checked yet. Cheap: one pass over the bytes plus a hash.
#[derive(Debug, Clone)]
pub struct ParsedEnvelope {
    id: RecordId,
    kind: RecordKind,
    envelope: Envelope,
    signed_bytes: Vec<u8>,
    wire: Vec<u8>,
}

impl ParsedEnvelope {
    /// Checks the size cap, decodes the envelope, checks the payload type, computes the id.
    pub fn parse(wire: Vec<u8>) -> Result<ParsedEnvelope, DecodeError> {
        let envelope = Envelope::decode(&wire)?;
        let kind = RecordKind::from_payload_type(&envelope.payload_type).ok_or_else(|| {
            DecodeError::UnknownPayloadType(envelope.payload_type.chars().take(128).collect())
        })?;
        let signed_bytes = pae(&envelope.payload_type, &envelope.payload);
        let id = record_id(&signed_bytes);
        Ok(ParsedEnvelope { id, kind, envelope, signed_bytes, wire })
    }

    /// The record id.
    pub fn id(&self) -> RecordId {
        self.id
    }

    /// The kind named by the payload type.
    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// The envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The bytes as received (canonical: the envelope format has one encoding).
    pub fn wire_bytes(&self) -> &[u8] {
        &self.wire
    }

    /// Decodes the payload canonically.
    pub fn decode(self) -> Result<UnverifiedRecord, DecodeError> {
        let record = decode_payload(self.kind, &self.envelope.payload)?;
        Ok(UnverifiedRecord { parsed: self, record })
    }
}

/// A decoded record whose signature has not been checked.
#[derive(Debug, Clone)]
pub struct UnverifiedRecord {
    parsed: ParsedEnvelope,
    record: Record,
}

impl UnverifiedRecord {
    /// The record id.
    pub fn id(&self) -> RecordId {
        self.parsed.id
    }

    /// The decoded record (not yet authenticated!).
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The received bytes.
    pub fn wire_bytes(&self) -> &[u8] {
        &self.parsed.wire
    }

    /// The signature as received (not yet checked). Two copies of one record differ, if at
    /// all, only here: the id covers everything else.
    pub fn signature(&self) -> &[u8; crate::limits::SIGNATURE_BYTES] {
        &self.parsed.envelope.signature
    }

    /// Checks the static rules of the record's kind (`now_ms` is this node's clock); only a
    /// record that holds them can go on to signature verification.
    pub fn validate(self, now_ms: u64) -> Result<ValidatedRecord, ValidationError> {
        crate::validate::validate_record(&self.record, now_ms)?;
        Ok(ValidatedRecord(self))
    }
}

/// A decoded record that holds every static rule; its signature is not checked yet.
#[derive(Debug, Clone)]
pub struct ValidatedRecord(UnverifiedRecord);

impl ValidatedRecord {
    /// The record id.
    pub fn id(&self) -> RecordId {
        self.0.id()
    }

    /// The decoded record (not yet authenticated!).
    pub fn record(&self) -> &Record {
        &self.0.record
    }

    /// The received bytes.
    pub fn wire_bytes(&self) -> &[u8] {
        self.0.wire_bytes()
    }

    /// The signature as received (not yet checked).
    pub fn signature(&self) -> &[u8; crate::limits::SIGNATURE_BYTES] {
        self.0.signature()
    }

    /// Verifies the signature alone (a batch of one: see the module docs for the rule).
    pub fn verify(self) -> Result<VerifiedRecord, VerifyError> {
        let key = verifying_key(&self.record().position.author)?;
        self.verify_with_key(&key)
    }

    /// Like [`verify`](Self::verify) with an already decoded key (callers cache keys per
    /// author: decompressing one costs about a tenth of a verification).
    pub fn verify_with_key(self, key: &VerifyingKey) -> Result<VerifiedRecord, VerifyError> {
        if key.as_bytes() != self.record().position.author.as_bytes() {
            return Err(VerifyError::BadAuthorKey);
        }
        let sig = Signature::from_bytes(&self.0.parsed.envelope.signature);
        match ed25519_dalek::verify_batch(&[&self.0.parsed.signed_bytes], &[sig], &[*key]) {
            Ok(()) => Ok(self.0.into_verified()),
            Err(_) => Err(VerifyError::BadSignature),
        }
    }
}

impl UnverifiedRecord {
    /// Private: reached only through verification and the store's trusted read-back.
    fn into_verified(self) -> VerifiedRecord {
        VerifiedRecord { id: self.parsed.id, record: self.record, wire: self.parsed.wire }
    }
}

/// Outcome of one record in [`verify_batch`].
pub type BatchOutcome = Result<VerifiedRecord, (RecordId, VerifyError)>;

/// Verifies many records at once, with decoded keys supplied by the caller (`None` = the
/// author key is bad). One batch equation for the whole set; if it fails, each record is
/// checked alone to find the culprits. Outcomes are in input order.
pub fn verify_batch_with_keys(items: Vec<(ValidatedRecord, Option<VerifyingKey>)>) -> Vec<BatchOutcome> {
    let all_keys_ok = items
        .iter()
        .all(|(r, k)| k.as_ref().is_some_and(|k| k.as_bytes() == r.record().position.author.as_bytes()));
    if all_keys_ok && !items.is_empty() {
        let messages: Vec<&[u8]> = items.iter().map(|(r, _)| r.0.parsed.signed_bytes.as_slice()).collect();
        let signatures: Vec<Signature> =
            items.iter().map(|(r, _)| Signature::from_bytes(&r.0.parsed.envelope.signature)).collect();
        let keys: Vec<VerifyingKey> = items.iter().filter_map(|(_, k)| *k).collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return items.into_iter().map(|(r, _)| Ok(r.0.into_verified())).collect();
        }
    }
    items
        .into_iter()
        .map(|(r, k)| {
            let id = r.id();
            match k {
                Some(k) => r.verify_with_key(&k).map_err(|e| (id, e)),
                None => Err((id, VerifyError::BadAuthorKey)),
            }
        })
        .collect()
}

/// [`verify_batch_with_keys`], decoding each author key.
pub fn verify_batch(records: Vec<ValidatedRecord>) -> Vec<BatchOutcome> {
    let items = records
        .into_iter()
        .map(|r| {
            let k = verifying_key(&r.record().position.author).ok();
            (r, k)
        })
        .collect();
    verify_batch_with_keys(items)
}

/// Signs `record` with `key` (which must be its author) without checking any static rule,
/// and returns its id and envelope bytes. Valid or not, these are bytes any key holder can
/// send: tests and attack simulations build invalid signed records with it. Nothing it
/// returns can be stored; a receiver walks the bytes through the type states like any others.
pub fn sign_envelope(record: &Record, key: &SigningKey) -> Result<(RecordId, Vec<u8>), SignError> {
    let key_author = AuthorKey(key.verifying_key().to_bytes());
    if key_author != record.position.author {
        return Err(SignError::AuthorMismatch { record: record.position.author, key: key_author });
    }
    let payload = encode_payload(record);
    let payload_type = record.kind().payload_type();
    let signed_bytes = pae(payload_type, &payload);
    let id = record_id(&signed_bytes);
    let signature = key.sign(&signed_bytes).to_bytes();
    let too_large = |len| SignError::TooLarge { len, max: MAX_ENVELOPE_BYTES };
    let envelope = Envelope {
        payload_type: BoundedString::new(payload_type).map_err(|e| too_large(e.len))?,
        payload: BoundedBytes::new(payload).map_err(|e| too_large(e.len))?,
        signature,
    };
    let wire = envelope.encode();
    if wire.is_empty() || wire.len() > MAX_ENVELOPE_BYTES {
        return Err(too_large(wire.len()));
    }
    Ok((id, wire))
}

/// A record whose signature verified (or that this node signed itself). The only form the
/// store accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRecord {
    id: RecordId,
    record: Record,
    wire: Vec<u8>,
}

impl VerifiedRecord {
    /// Signs `record` with `key`, which must be the record's author. The record is held to
    /// the static rules a receiver checks (its clock rules judged at its own issue time), so
    /// this node never signs, stores or sends a record its peers would reject.
    pub fn sign(record: Record, key: &SigningKey) -> Result<VerifiedRecord, SignError> {
        crate::validate::validate_record(&record, record.position.issued_at_ms)
            .map_err(SignError::Invalid)?;
        let (id, wire) = sign_envelope(&record, key)?;
        Ok(VerifiedRecord { id, record, wire })
    }

    /// Rebuilds a record from bytes this node verified before it stored them. Decodes and
    /// checks the envelope but not the signature: the store is trusted local state. A
    /// corrupted value gives an error, never a panic. For the store's read path only
    /// (`clippy.toml` forbids it elsewhere): anything else must validate and verify.
    pub fn from_trusted_bytes(wire: Vec<u8>) -> Result<VerifiedRecord, DecodeError> {
        let parsed = ParsedEnvelope::parse(wire)?;
        let unverified = parsed.decode()?;
        Ok(unverified.into_verified())
    }

    /// The record id.
    pub fn id(&self) -> RecordId {
        self.id
    }

    /// The record.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The record's kind.
    pub fn kind(&self) -> RecordKind {
        self.record.kind()
    }

    /// The author.
    pub fn author(&self) -> AuthorKey {
        self.record.position.author
    }

    /// The encoded envelope.
    pub fn wire_bytes(&self) -> &[u8] {
        &self.wire
    }

    /// The decoded envelope.
    pub fn envelope(&self) -> Result<Envelope, DecodeError> {
        Envelope::decode(&self.wire)
    }

    /// Unwraps into the encoded envelope.
    pub fn into_wire_bytes(self) -> Vec<u8> {
        self.wire
    }
}

/// Signs successive records of one author's feed: fills `seq`, `prev` and the author.
///
/// The caller persists each signed record before using the next position (the node stores
/// and flushes before it publishes), and [`resume`](FeedWriter::resume)s from the stored head
/// after a restart, so a sequence number is never signed twice.
pub struct FeedWriter {
    key: SigningKey,
    author: AuthorKey,
    next_seq: u64,
    prev: Option<RecordId>,
}

impl std::fmt::Debug for FeedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedWriter").field("author", &self.author).field("next_seq", &self.next_seq).finish()
    }
}

impl FeedWriter {
    /// A writer for a new feed (next record is seq 1).
    pub fn new(key: SigningKey) -> FeedWriter {
        Self::resume(key, None)
    }

    /// A writer that continues after `last` = (seq, id) of the author's latest record.
    pub fn resume(key: SigningKey, last: Option<(u64, RecordId)>) -> FeedWriter {
        let author = AuthorKey(key.verifying_key().to_bytes());
        let mut writer = FeedWriter { key, author, next_seq: 1, prev: None };
        writer.reset(last);
        writer
    }

    /// The author.
    pub fn author(&self) -> AuthorKey {
        self.author
    }

    /// The seq the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Signs `statement` as the next record of the feed and advances.
    pub fn sign_next(
        &mut self,
        statement: crate::Statement,
        issued_at_ms: u64,
    ) -> Result<VerifiedRecord, SignError> {
        let signed = self.sign_candidate(statement, issued_at_ms)?;
        self.commit(&signed);
        Ok(signed)
    }

    /// Signs `statement` at the next position without advancing: the caller checks and
    /// persists it, then calls [`commit`](Self::commit). If persisting fails, the position is
    /// simply reused by the next candidate; nothing was published.
    pub fn sign_candidate(
        &self,
        statement: crate::Statement,
        issued_at_ms: u64,
    ) -> Result<VerifiedRecord, SignError> {
        let record = Record {
            position: crate::FeedPosition {
                author: self.author,
                seq: self.next_seq,
                prev: self.prev,
                issued_at_ms,
            },
            statement,
        };
        VerifiedRecord::sign(record, &self.key)
    }

    /// Continues the feed after `last` (seq and id), as [`resume`](Self::resume) does: for a
    /// writer whose store got back records it had lost.
    pub fn reset(&mut self, last: Option<(u64, RecordId)>) {
        let (next_seq, prev) = match last {
            Some((seq, id)) => (seq.saturating_add(1), Some(id)),
            None => (1, None),
        };
        self.next_seq = next_seq;
        self.prev = prev;
    }

    /// Advances past `record`, which must be the last candidate of this writer.
    pub fn commit(&mut self, record: &VerifiedRecord) {
        self.next_seq = record.record().position.seq.saturating_add(1);
        self.prev = Some(record.id());
    }
}
