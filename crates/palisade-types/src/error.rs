//! Error types of the wire format.

/// Bytes could not be decoded into an envelope or record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is larger than the format allows; nothing was parsed.
    #[error("envelope is {len} bytes; the maximum is {max}")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Bytes were left over after a complete value.
    #[error("{count} trailing bytes after the {what}")]
    TrailingBytes {
        /// What was decoded.
        what: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// The bytes do not follow the format (bad length prefix, bad UTF-8, unknown enum tag,
    /// truncated input, over-long field, ...).
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's explanation.
        detail: String,
    },
    /// The envelope's `payload_type` is not one this node understands.
    #[error("unknown payload type {0:?}")]
    UnknownPayloadType(String),
    /// The value decoded, but re-encoding it gives different bytes.
    #[error("{what} is not in canonical form")]
    NonCanonical {
        /// What was decoded.
        what: &'static str,
    },
}

/// A signature check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The author key is not a valid ed25519 point, or is of small order (a "weak" key that
    /// would verify forged signatures).
    #[error("author key is not a valid, non-weak ed25519 public key")]
    BadAuthorKey,
    /// The signature does not verify for the author key over the signed bytes.
    #[error("signature does not verify for the record's author")]
    BadSignature,
}

/// Signing was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The record names another author than the signing key.
    #[error("record author {record} does not match the signing key {key}")]
    AuthorMismatch {
        /// Author in the record.
        record: crate::AuthorKey,
        /// Public key of the signing key.
        key: crate::AuthorKey,
    },
    /// The record breaks a static rule; it would be rejected by every receiver.
    #[error("record is invalid: {0}")]
    Invalid(crate::ValidationError),
    /// The encoded envelope would exceed the size cap.
    #[error("encoded record is {len} bytes; the maximum is {max}")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The cap.
        max: usize,
    },
}

/// A record breaks a rule of its kind. Names the field and says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A required text field is empty.
    #[error("`{field}` must not be empty")]
    Empty {
        /// Field path, e.g. `subject.name`.
        field: &'static str,
    },
    /// A list needs at least one entry.
    #[error("`{field}` needs at least one entry")]
    NoEntries {
        /// Field path.
        field: &'static str,
    },
    /// A number outside its range.
    #[error("`{field}` is {value}; allowed is {min}..={max}")]
    OutOfRange {
        /// Field path.
        field: &'static str,
        /// The value given.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A timestamp too far in the future.
    #[error("`{field}` is {value_ms} ms since epoch, more than {skew_ms} ms ahead of this node's clock ({now_ms}); check the author's clock")]
    InFuture {
        /// Field path.
        field: &'static str,
        /// The timestamp.
        value_ms: u64,
        /// Our clock.
        now_ms: u64,
        /// Allowed skew.
        skew_ms: u64,
    },
    /// A text field has characters or a shape that is not allowed.
    #[error("`{field}` is not allowed: {rule}")]
    BadFormat {
        /// Field path.
        field: &'static str,
        /// The rule that was broken.
        rule: &'static str,
    },
    /// Two fields contradict each other.
    #[error("`{field}` is inconsistent: {rule}")]
    Inconsistent {
        /// Field path.
        field: &'static str,
        /// The rule that was broken.
        rule: &'static str,
    },
}
