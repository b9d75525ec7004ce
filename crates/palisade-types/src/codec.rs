//! The canonical codec: bincode 2, little-endian, fixed-width integers, with a hard limit.
//!
//! This module is the only place that knows how records become bytes. Everything on the wire
//! goes through [`encode_payload`] / [`decode_payload`] and [`Envelope`]'s encode/decode, so
//! the golden vectors in `tests/vectors/` pin the whole format.
//!
//! Why fixed-width integers: every length prefix is a `u64` LE and every integer has one
//! encoding, so decoding is canonical by construction and an independent encoder is a page
//! of code (see `docs/wire-format.md`). The varint saving (≈ 7 bytes per field) is not worth
//! a second way to spell the same number.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use bincode::{Decode, Encode};

use crate::bounded::{BoundedBytes, BoundedString};
use crate::error::DecodeError;
use crate::limits::{MAX_ENVELOPE_BYTES, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_TYPE_BYTES, SIGNATURE_BYTES};
use crate::record::{
    Anomaly, AnomalyUpdate, Attestation, FeedPosition, Record, RecordKind, Revocation, Statement,
};

/// The one bincode configuration of the wire format.
pub type WireConfig = Configuration<LittleEndian, Fixint, Limit<MAX_ENVELOPE_BYTES>>;

/// Returns [`WireConfig`].
pub const fn wire_config() -> WireConfig {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<MAX_ENVELOPE_BYTES>()
}

/// Encodes any wire value with [`wire_config`].
pub fn encode<T: Encode>(value: &T) -> Vec<u8> {
    // Encoding into a Vec only fails if the value exceeds the limit; every type here is
    // bounded below it except a deliberately over-full test value, which we then truncate
    // to an empty vector that no decoder accepts.
    bincode::encode_to_vec(value, wire_config()).unwrap_or_default()
}

/// Decodes exactly one `T` from `bytes`: trailing bytes are an error.
pub fn decode_exact<T: Decode<()>>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let (value, read) = bincode::decode_from_slice::<T, _>(bytes, wire_config())
        .map_err(|e| DecodeError::Malformed { what, detail: e.to_string() })?;
    if read != bytes.len() {
        return Err(DecodeError::TrailingBytes { what, count: bytes.len() - read });
    }
    Ok(value)
}

/// A DSSE-shaped signed envelope as it travels on the wire.
#[derive(Clone, PartialEq, Eq, Encode, Decode)]
pub struct Envelope {
    /// Kind and version of the payload; the signature's domain separation.
    pub payload_type: BoundedString<MAX_PAYLOAD_TYPE_BYTES>,
    /// The encoded [`FeedPosition`] followed by the encoded statement body.
    pub payload: BoundedBytes<MAX_PAYLOAD_BYTES>,
    /// ed25519 signature over `PAE(payload_type, payload)`.
    pub signature: [u8; SIGNATURE_BYTES],
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("payload_type", &self.payload_type)
            .field("payload_len", &self.payload.len())
            .field("signature", &hex::encode(self.signature))
            .finish()
    }
}

impl Envelope {
    /// Decodes an envelope, checking the size cap first and rejecting trailing bytes.
    pub fn decode(wire: &[u8]) -> Result<Envelope, DecodeError> {
        if wire.len() > MAX_ENVELOPE_BYTES {
            return Err(DecodeError::TooLarge { len: wire.len(), max: MAX_ENVELOPE_BYTES });
        }
        decode_exact(wire, "envelope")
    }

    /// Encodes the envelope.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
}

/// Encodes a record's payload: position, then the statement's fields.
pub fn encode_payload(record: &Record) -> Vec<u8> {
    let pos = &record.position;
    match &record.statement {
        Statement::Attestation(s) => encode(&(pos, s)),
        Statement::Anomaly(s) => encode(&(pos, s)),
        Statement::AnomalyUpdate(s) => encode(&(pos, s)),
        Statement::Revocation(s) => encode(&(pos, s)),
    }
}

/// Decodes a payload of the given kind, canonically: no trailing bytes, and re-encoding must
/// give back exactly `payload` (so every statement has one encoding and so one id).
pub fn decode_payload(kind: RecordKind, payload: &[u8]) -> Result<Record, DecodeError> {
    fn split<S>(p: (FeedPosition, S), wrap: fn(S) -> Statement) -> Record {
        Record { position: p.0, statement: wrap(p.1) }
    }
    let record = match kind {
        RecordKind::Attestation => split(
            decode_exact::<(FeedPosition, Attestation)>(payload, "attestation")?,
            Statement::Attestation,
        ),
        RecordKind::Anomaly => {
            split(decode_exact::<(FeedPosition, Anomaly)>(payload, "anomaly")?, Statement::Anomaly)
        }
        RecordKind::AnomalyUpdate => split(
            decode_exact::<(FeedPosition, AnomalyUpdate)>(payload, "anomaly update")?,
            Statement::AnomalyUpdate,
        ),
        RecordKind::Revocation => {
            split(decode_exact::<(FeedPosition, Revocation)>(payload, "revocation")?, Statement::Revocation)
        }
    };
    if encode_payload(&record) != payload {
        return Err(DecodeError::NonCanonical { what: "payload" });
    }
    Ok(record)
}
