//! # palisade-types
//!
//! The Palisade wire format: record kinds, the signed envelope, the canonical codec, ids and
//! the static validation rules. No I/O, no clocks (callers pass `now_ms`), no sled, no libp2p:
//! everything here is a pure function of its input, so it can be fuzzed and reused by an
//! independent implementation's test suite (see `tests/vectors/`).
//!
//! ```
//! use palisade_types::*;
//! use ed25519_dalek::SigningKey;
//!
//! let key = SigningKey::from_bytes(&[7u8; 32]);
//! let record = Record {
//!     position: FeedPosition {
//!         author: AuthorKey(key.verifying_key().to_bytes()),
//!         seq: 1,
//!         prev: None,
//!         issued_at_ms: 1_750_000_000_000,
//!     },
//!     statement: Statement::Revocation(Revocation {
//!         target: RecordId([1; 32]),
//!         reason: BoundedString::new("superseded").unwrap(),
//!     }),
//! };
//! let signed = VerifiedRecord::sign(record, &key).unwrap();
//!
//! // A peer receives the bytes and walks them through the ingest type states.
//! let parsed = ParsedEnvelope::parse(signed.wire_bytes().to_vec()).unwrap();
//! assert_eq!(parsed.id(), signed.id());
//! let unverified = parsed.decode().unwrap();
//! let validated = unverified.validate(1_750_000_000_000).unwrap();
//! let verified = validated.verify().unwrap();
//! assert_eq!(verified, signed);
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

pub mod bounded;
pub mod codec;
mod error;
mod ids;
pub mod limits;
mod record;
pub mod setting;
mod signed;
pub mod validate;

pub mod fixtures;

pub use bounded::{BoundedBytes, BoundedString, BoundedVec, TooLong};
pub use codec::Envelope;
pub use error::{DecodeError, SignError, ValidationError, VerifyError};
pub use ids::{AuthorKey, Fingerprint, ParseIdError, RecordId};
pub use record::*;
pub use setting::InvalidSetting;
pub use signed::{
    pae, record_id, sign_envelope, verify_batch, verify_batch_with_keys, verifying_key, BatchOutcome,
    FeedWriter, ParsedEnvelope, UnverifiedRecord, ValidatedRecord, VerifiedRecord, RECORD_ID_CONTEXT,
};

/// Re-export so dependants name the same ed25519 types.
pub use ed25519_dalek;
