//! Hard limits of the wire format.
//!
//! Every string and list in a record has a maximum length that the decoder checks *before* it
//! allocates, so a hostile peer cannot make us reserve more than [`MAX_ENVELOPE_BYTES`] for one
//! message. Units are in the names. Changing any of these changes which records are valid, so
//! they are part of the protocol version, not tunables (runtime limits live in `palisade-guard`).

/// Largest encoded envelope (payload type + payload + signature + length prefixes) we accept.
/// 16 KiB holds an attestation with the maximum 64 findings and still fits many records in one
/// sync page.
pub const MAX_ENVELOPE_BYTES: usize = 16 * 1024;

/// Largest `payload_type` string. The longest type we define is 50 bytes.
pub const MAX_PAYLOAD_TYPE_BYTES: usize = 128;

/// Largest payload: the envelope budget minus the fixed parts.
pub const MAX_PAYLOAD_BYTES: usize = MAX_ENVELOPE_BYTES - 8 - MAX_PAYLOAD_TYPE_BYTES - 8 - SIGNATURE_BYTES;

/// Length of an ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;

/// Names: subject names, scanner/detector names.
pub const MAX_NAME_BYTES: usize = 256;
/// Versions of scanners and detectors.
pub const MAX_VERSION_BYTES: usize = 64;
/// Digest algorithm names (`sha256`, `gitCommit`, ...).
pub const MAX_DIGEST_ALGORITHM_BYTES: usize = 32;
/// Raw digest values (sha512 is the largest common one).
pub const MAX_DIGEST_VALUE_BYTES: usize = 64;
/// Digests per subject.
pub const MAX_SUBJECT_DIGESTS: usize = 8;
/// Findings listed in one attestation (the counts cover the rest).
pub const MAX_FINDINGS: usize = 64;
/// Finding ids and aliases (`CVE-2024-3094`, `GHSA-xxxx-xxxx-xxxx`).
pub const MAX_FINDING_ID_BYTES: usize = 64;
/// Aliases per finding.
pub const MAX_FINDING_ALIASES: usize = 8;
/// URIs (anomaly sources).
pub const MAX_URI_BYTES: usize = 1024;
/// Label and annotation keys.
pub const MAX_LABEL_KEY_BYTES: usize = 64;
/// Label values.
pub const MAX_LABEL_VALUE_BYTES: usize = 256;
/// Labels per anomaly.
pub const MAX_LABELS: usize = 32;
/// Annotation values.
pub const MAX_ANNOTATION_VALUE_BYTES: usize = 1024;
/// Annotations per anomaly.
pub const MAX_ANNOTATIONS: usize = 16;
/// Evidence digests per anomaly.
pub const MAX_EVIDENCE_DIGESTS: usize = 16;
/// Severity text of an anomaly (`ERROR`, `WARN`).
pub const MAX_SEVERITY_TEXT_BYTES: usize = 32;
/// Free text: summaries, comments, revocation reasons.
pub const MAX_TEXT_BYTES: usize = 2048;

/// How far in the future `issued_at_ms` may be before a record is rejected (5 minutes).
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// Records claiming to be issued before 2020-01-01T00:00:00Z are malformed (a zero or seconds
/// value where milliseconds were meant).
pub const MIN_ISSUED_AT_MS: u64 = 1_577_836_800_000;

/// Largest security/anomaly score: fixed point in hundredths, 1000 = 10.00.
pub const MAX_SCORE: u16 = 1000;
/// OpenTelemetry severity numbers run from 1 (TRACE) to 24 (FATAL4).
pub const MAX_SEVERITY_NUMBER: u8 = 24;

// Relations between the limits, checked at compile time.
const _: () = assert!(MAX_PAYLOAD_BYTES > 8 * 1024);
const _: () = assert!(MAX_FINDINGS * (MAX_FINDING_ID_BYTES + 16) < MAX_PAYLOAD_BYTES);
