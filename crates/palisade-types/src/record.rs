//! Record kinds: what authors say.
//!
//! A [`Record`] is a [`FeedPosition`] (who, where in their feed, when) plus a [`Statement`]
//! (what). The statement's kind picks the envelope's `payload_type`, which is the signature's
//! domain separation. Field order here *is* the wire order; see `docs/wire-format.md`.

use std::fmt;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::bounded::{BoundedBytes, BoundedString, BoundedVec};
use crate::ids::{AuthorKey, Fingerprint, RecordId};
use crate::limits::*;

/// Where a record sits in its author's feed.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct FeedPosition {
    /// The author's ed25519 public key.
    pub author: AuthorKey,
    /// Position in the author's feed, starting at 1 and growing by one.
    pub seq: u64,
    /// Id of the author's record at `seq - 1`; `None` exactly when `seq == 1`.
    pub prev: Option<RecordId>,
    /// When the author issued the record, in milliseconds since the Unix epoch (UTC).
    pub issued_at_ms: u64,
}

/// A record: a statement by an author at a position in the author's feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Who said it, where in the feed, and when.
    pub position: FeedPosition,
    /// What was said.
    pub statement: Statement,
}

/// The four kinds of statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Statement {
    /// An audit result for a subject.
    Attestation(Attestation),
    /// An anomaly seen in a stream of telemetry.
    Anomaly(Anomaly),
    /// A state change of an anomaly.
    AnomalyUpdate(AnomalyUpdate),
    /// The author withdraws one of its own earlier records.
    Revocation(Revocation),
}

/// The kind of a record, without its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// [`Attestation`].
    Attestation,
    /// [`Anomaly`].
    Anomaly,
    /// [`AnomalyUpdate`].
    AnomalyUpdate,
    /// [`Revocation`].
    Revocation,
}

impl RecordKind {
    /// All kinds, in wire-tag order.
    pub const ALL: [RecordKind; 4] =
        [RecordKind::Attestation, RecordKind::Anomaly, RecordKind::AnomalyUpdate, RecordKind::Revocation];

    /// The envelope `payload_type` of this kind (version 1).
    pub const fn payload_type(self) -> &'static str {
        match self {
            RecordKind::Attestation => "application/vnd.palisade.attestation.v1+bincode",
            RecordKind::Anomaly => "application/vnd.palisade.anomaly.v1+bincode",
            RecordKind::AnomalyUpdate => "application/vnd.palisade.anomaly-update.v1+bincode",
            RecordKind::Revocation => "application/vnd.palisade.revocation.v1+bincode",
        }
    }

    /// The kind for a `payload_type`, if we know it.
    pub fn from_payload_type(payload_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.payload_type() == payload_type)
    }

    /// A one-byte tag used in storage keys. Never reuse a value.
    pub const fn tag(self) -> u8 {
        match self {
            RecordKind::Attestation => 1,
            RecordKind::Anomaly => 2,
            RecordKind::AnomalyUpdate => 3,
            RecordKind::Revocation => 4,
        }
    }

    /// The kind for a storage tag.
    pub fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.tag() == tag)
    }

    /// Lowercase snake-case name, as in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordKind::Attestation => "attestation",
            RecordKind::Anomaly => "anomaly",
            RecordKind::AnomalyUpdate => "anomaly_update",
            RecordKind::Revocation => "revocation",
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RecordKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!("unknown record kind {s:?}; expected attestation, anomaly, anomaly_update or revocation")
        })
    }
}

impl Statement {
    /// The statement's kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            Statement::Attestation(_) => RecordKind::Attestation,
            Statement::Anomaly(_) => RecordKind::Anomaly,
            Statement::AnomalyUpdate(_) => RecordKind::AnomalyUpdate,
            Statement::Revocation(_) => RecordKind::Revocation,
        }
    }
}

impl Record {
    /// The record's kind.
    pub fn kind(&self) -> RecordKind {
        self.statement.kind()
    }
}

/// A digest of some artefact: algorithm name plus raw value.
///
/// JSON form: `"sha256:<hex>"`, like in-toto's `DigestSet` entries.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct Digest {
    /// Algorithm: `sha256`, `sha512`, `sha1`, `gitCommit`, `blake3`, ...
    pub algorithm: BoundedString<MAX_DIGEST_ALGORITHM_BYTES>,
    /// The raw digest bytes.
    pub value: BoundedBytes<MAX_DIGEST_VALUE_BYTES>,
}

impl Digest {
    /// `algorithm:hex`.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.algorithm, hex::encode(self.value.as_slice()))
    }

    /// Algorithms whose digests have a fixed size, with the sizes in bytes they may have.
    /// Git object ids are SHA-1 or SHA-256 depending on the repository format.
    pub const FIXED_SIZES: &'static [(&'static str, &'static [usize])] = &[
        ("sha1", &[20]),
        ("sha256", &[32]),
        ("sha384", &[48]),
        ("sha512", &[64]),
        ("sha3-256", &[32]),
        ("sha3-512", &[64]),
        ("blake3", &[32]),
        ("gitCommit", &[20, 32]),
        ("gitTree", &[20, 32]),
        ("gitBlob", &[20, 32]),
    ];

    /// The characters an algorithm name may have, as a regular-expression class.
    pub const ALGORITHM_CHARS: &'static str = "[A-Za-z0-9_-]";

    /// The digest length that algorithm names with a fixed length must have.
    pub fn expected_len(algorithm: &str) -> Option<&'static [usize]> {
        Self::FIXED_SIZES.iter().find(|(a, _)| *a == algorithm).map(|(_, sizes)| *sizes)
    }

    /// The rules a digest in a record must follow (algorithm name characters, a value, the
    /// size of fixed-size algorithms); `field` names it in the error.
    pub fn check(&self, field: &'static str) -> Result<(), crate::ValidationError> {
        crate::validate::digest(field, self)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl std::str::FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (alg, hexval) = s
            .split_once(':')
            .ok_or_else(|| format!("digest {s:?} must look like <algorithm>:<hex>, e.g. sha256:ab12…"))?;
        let algorithm = BoundedString::new(alg).map_err(|e| format!("digest algorithm: {e} bytes"))?;
        if hexval.len() > MAX_DIGEST_VALUE_BYTES * 2 {
            return Err(format!(
                "digest value has {} hex characters; the maximum is {}",
                hexval.len(),
                MAX_DIGEST_VALUE_BYTES * 2
            ));
        }
        // Lowercase only: the text form is canonical (it is what every answer prints).
        if hexval.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("digest value must be lowercase hex".to_string());
        }
        let raw = hex::decode(hexval).map_err(|e| format!("digest value is not hex: {e}"))?;
        let value = BoundedBytes::new(raw).map_err(|e| format!("digest value: {e} bytes"))?;
        Ok(Digest { algorithm, value })
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What was audited.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Subject {
    /// Human name, e.g. `pkg:cargo/serde@1.0.210` or `ghcr.io/acme/api`.
    pub name: BoundedString<MAX_NAME_BYTES>,
    /// Digests that identify the exact artefact; at least one.
    pub digests: BoundedVec<Digest, MAX_SUBJECT_DIGESTS>,
}

/// A tool and its version (scanners, detectors).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Tool {
    /// Tool name, e.g. `trivy`.
    pub name: BoundedString<MAX_NAME_BYTES>,
    /// Tool version, e.g. `0.56.1`.
    pub version: BoundedString<MAX_VERSION_BYTES>,
}

/// Outcome of an audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The subject passed the audit.
    Pass,
    /// The subject failed the audit.
    Fail,
    /// The audit could not decide.
    Inconclusive,
}

impl std::str::FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pass" => Ok(Verdict::Pass),
            "fail" => Ok(Verdict::Fail),
            "inconclusive" => Ok(Verdict::Inconclusive),
            _ => Err(format!("unknown verdict {s:?}; expected pass, fail or inconclusive")),
        }
    }
}

/// A score from 0.00 to 10.00 as fixed point in hundredths (0–1000). Never a float, so every
/// node encodes and compares it identically.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Score(pub u16);

impl Score {
    /// Parses `"7.5"` or `"7.25"` (at most two decimals) into hundredths.
    pub fn parse_decimal(s: &str) -> Result<Score, String> {
        let bad = || format!("score {s:?} must be a decimal from 0.0 to 10.0 with at most two decimals");
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() || int.len() > 2 || frac.len() > 2 {
            return Err(bad());
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let int: u16 = int.parse().map_err(|_| bad())?;
        let frac: u16 = match frac.len() {
            0 => 0,
            1 => frac.parse::<u16>().map_err(|_| bad())? * 10,
            _ => frac.parse().map_err(|_| bad())?,
        };
        let v = int * 100 + frac;
        if v > MAX_SCORE {
            return Err(bad());
        }
        Ok(Score(v))
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// Severity buckets of findings, following CVSS v3 qualitative ratings.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum FindingSeverity {
    /// CVSS 9.0–10.0.
    Critical,
    /// CVSS 7.0–8.9.
    High,
    /// CVSS 4.0–6.9.
    Medium,
    /// CVSS 0.1–3.9.
    Low,
    /// CVSS 0.0, or no score known.
    None,
}

/// How many findings of each severity the audit found (all of them, not just those listed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct FindingCounts {
    /// Critical findings.
    pub critical: u32,
    /// High findings.
    pub high: u32,
    /// Medium findings.
    pub medium: u32,
    /// Low findings.
    pub low: u32,
    /// Findings with severity none or unknown.
    pub none: u32,
}

impl FindingCounts {
    /// The count for one severity.
    pub fn get(&self, severity: FindingSeverity) -> u32 {
        match severity {
            FindingSeverity::Critical => self.critical,
            FindingSeverity::High => self.high,
            FindingSeverity::Medium => self.medium,
            FindingSeverity::Low => self.low,
            FindingSeverity::None => self.none,
        }
    }
}

/// One finding of an audit.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Finding {
    /// Vulnerability id: `CVE-2024-3094`, `GHSA-…`, an OSV id.
    pub id: BoundedString<MAX_FINDING_ID_BYTES>,
    /// Other ids for the same vulnerability.
    #[serde(default)]
    pub aliases: BoundedVec<BoundedString<MAX_FINDING_ID_BYTES>, MAX_FINDING_ALIASES>,
    /// Severity bucket.
    pub severity: FindingSeverity,
}

/// An audit result: `scanner` looked at `subject` and says `verdict`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Attestation {
    /// What was audited.
    pub subject: Subject,
    /// Which tool audited it.
    pub scanner: Tool,
    /// The outcome.
    pub verdict: Verdict,
    /// Security score, hundredths of 0.0–10.0.
    pub score: Score,
    /// Findings per severity.
    #[serde(default)]
    pub finding_counts: FindingCounts,
    /// Up to [`MAX_FINDINGS`] findings listed in detail.
    #[serde(default)]
    pub findings: BoundedVec<Finding, MAX_FINDINGS>,
    /// Digest of the full report, if published elsewhere.
    #[serde(default)]
    pub report_digest: Option<Digest>,
    /// After this time (ms since epoch) the attestation no longer counts in verdicts.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
}

/// The kind of telemetry stream an anomaly was seen in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamType {
    /// Log records.
    Logs,
    /// Metric time series.
    Metrics,
    /// Distributed traces.
    Traces,
    /// Network flows or packets.
    Network,
    /// Anything else.
    Other,
}

/// An identifying key/value pair of an anomaly (part of its fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Label {
    /// Key: ASCII letter or `_` first, then letters, digits, `_` or `.`.
    pub key: BoundedString<MAX_LABEL_KEY_BYTES>,
    /// Value: any UTF-8 without control characters.
    pub value: BoundedString<MAX_LABEL_VALUE_BYTES>,
}

/// A descriptive key/value pair of an anomaly (not part of its fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Annotation {
    /// Key, same rules as [`Label::key`].
    pub key: BoundedString<MAX_LABEL_KEY_BYTES>,
    /// Value: any UTF-8 without control characters.
    pub value: BoundedString<MAX_ANNOTATION_VALUE_BYTES>,
}

/// Labels, sorted by key, unique keys. JSON form: an object `{"kind": "latency", ...}`.
pub type Labels = BoundedVec<Label, MAX_LABELS>;
/// Annotations, sorted by key, unique keys. JSON form: an object.
pub type Annotations = BoundedVec<Annotation, MAX_ANNOTATIONS>;

/// A key/value pair kept in a sorted list (labels, annotations).
pub trait KeyValue: Sized {
    /// Bound on the value.
    const VALUE_MAX: usize;
    /// The key.
    fn key(&self) -> &str;
    /// The value.
    fn value(&self) -> &str;
    /// Builds a pair, checking both bounds.
    fn from_pair(key: String, value: String) -> Result<Self, String>;
}

impl KeyValue for Label {
    const VALUE_MAX: usize = MAX_LABEL_VALUE_BYTES;
    fn key(&self) -> &str {
        &self.key
    }
    fn value(&self) -> &str {
        &self.value
    }
    fn from_pair(key: String, value: String) -> Result<Self, String> {
        Ok(Label {
            key: BoundedString::new(key).map_err(|e| format!("label key: {e} bytes"))?,
            value: BoundedString::new(value).map_err(|e| format!("label value: {e} bytes"))?,
        })
    }
}

impl KeyValue for Annotation {
    const VALUE_MAX: usize = MAX_ANNOTATION_VALUE_BYTES;
    fn key(&self) -> &str {
        &self.key
    }
    fn value(&self) -> &str {
        &self.value
    }
    fn from_pair(key: String, value: String) -> Result<Self, String> {
        Ok(Annotation {
            key: BoundedString::new(key).map_err(|e| format!("annotation key: {e} bytes"))?,
            value: BoundedString::new(value).map_err(|e| format!("annotation value: {e} bytes"))?,
        })
    }
}

/// serde helpers that show sorted key/value lists as JSON objects.
pub mod label_map {
    use std::collections::BTreeMap;
    use std::fmt;

    use serde::de::{MapAccess, Visitor};
    use serde::{Deserializer, Serialize, Serializer};

    use super::KeyValue;
    use crate::bounded::BoundedVec;

    /// Serialises as a JSON object.
    pub fn serialize<S: Serializer, T: KeyValue, const N: usize>(
        pairs: &BoundedVec<T, N>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<&str, &str> = pairs.iter().map(|l| (l.key(), l.value())).collect();
        map.serialize(serializer)
    }

    /// Deserialises from a JSON object; the result is sorted by key. Duplicate keys are an
    /// error, and reading stops after `N + 1` entries.
    pub fn deserialize<'de, D: Deserializer<'de>, T: KeyValue, const N: usize>(
        deserializer: D,
    ) -> Result<BoundedVec<T, N>, D::Error> {
        struct V<T, const N: usize>(std::marker::PhantomData<T>);
        impl<'de, T: KeyValue, const N: usize> Visitor<'de> for V<T, N> {
            type Value = BoundedVec<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an object of at most {N} string keys and string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = BTreeMap::new();
                while let Some((k, v)) = access.next_entry::<String, String>()? {
                    if map.len() == N {
                        return Err(serde::de::Error::custom(format!(
                            "more than the maximum of {N} entries"
                        )));
                    }
                    if map.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
                    }
                    map.insert(k, v);
                }
                let items = map
                    .into_iter()
                    .map(|(k, v)| T::from_pair(k, v))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(serde::de::Error::custom)?;
                BoundedVec::new(items).map_err(|e| serde::de::Error::custom(format!("{e} entries")))
            }
        }
        deserializer.deserialize_map(V::<T, N>(std::marker::PhantomData))
    }
}

/// An anomaly seen by a detector in a stream of telemetry.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Anomaly {
    /// Where it was seen (a URI: `otlp://collector/service/api`, `file:///var/log/auth.log`).
    pub source: BoundedString<MAX_URI_BYTES>,
    /// What kind of stream `source` is.
    pub stream_type: StreamType,
    /// Identifying labels; must include `kind`. The fingerprint is computed from these.
    #[serde(with = "label_map")]
    pub labels: Labels,
    /// Descriptive annotations.
    #[serde(with = "label_map", default)]
    pub annotations: Annotations,
    /// OpenTelemetry severity number, 1 (TRACE) to 24 (FATAL4).
    pub severity_number: u8,
    /// OpenTelemetry severity text (`ERROR`); may be empty.
    #[serde(default)]
    pub severity_text: BoundedString<MAX_SEVERITY_TEXT_BYTES>,
    /// Anomaly score, hundredths of 0.0–10.0.
    pub score: Score,
    /// Start of the window the detector looked at (ms since epoch).
    pub window_start_ms: u64,
    /// End of that window (ms since epoch), not before the start.
    pub window_end_ms: u64,
    /// Which detector found it.
    pub detector: Tool,
    /// Digests of evidence (log excerpts, pcaps) kept elsewhere.
    #[serde(default)]
    pub evidence: BoundedVec<Digest, MAX_EVIDENCE_DIGESTS>,
    /// One-line human summary.
    #[serde(default)]
    pub summary: BoundedString<MAX_TEXT_BYTES>,
}

impl Anomaly {
    /// The dedup key of this anomaly: `blake3::derive_key("palisade anomaly-fingerprint v1",
    /// labels)` over the canonical encoding of the sorted labels. Two reports with the same
    /// labels are the same anomaly.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint_of_labels(&self.labels)
    }
}

/// See [`Anomaly::fingerprint`].
pub fn fingerprint_of_labels(labels: &Labels) -> Fingerprint {
    let mut hasher = blake3::Hasher::new_derive_key("palisade anomaly-fingerprint v1");
    // Same bytes as the wire encoding of the label list: u64 LE count, then per label
    // u64 LE key length, key, u64 LE value length, value.
    hasher.update(&(labels.len() as u64).to_le_bytes());
    for l in labels.iter() {
        hasher.update(&(l.key.len() as u64).to_le_bytes());
        hasher.update(l.key.as_bytes());
        hasher.update(&(l.value.len() as u64).to_le_bytes());
        hasher.update(l.value.as_bytes());
    }
    Fingerprint(*hasher.finalize().as_bytes())
}

/// Lifecycle state of an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyState {
    /// Reported, nobody has acted yet.
    Open,
    /// Someone is looking at it.
    Acknowledged,
    /// Fixed or gone.
    Resolved,
    /// Known and deliberately ignored.
    Suppressed,
}

impl AnomalyState {
    /// Every state.
    pub const ALL: [AnomalyState; 4] =
        [AnomalyState::Open, AnomalyState::Acknowledged, AnomalyState::Resolved, AnomalyState::Suppressed];

    /// Whether the state machine allows `self → next`.
    pub fn can_become(self, next: AnomalyState) -> bool {
        use AnomalyState::*;
        matches!(
            (self, next),
            (Open, Acknowledged | Resolved | Suppressed)
                | (Acknowledged, Resolved | Suppressed | Open)
                | (Resolved, Open)
                | (Suppressed, Open)
        )
    }

    /// Lowercase name as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyState::Open => "open",
            AnomalyState::Acknowledged => "acknowledged",
            AnomalyState::Resolved => "resolved",
            AnomalyState::Suppressed => "suppressed",
        }
    }
}

impl std::str::FromStr for AnomalyState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(AnomalyState::Open),
            "acknowledged" => Ok(AnomalyState::Acknowledged),
            "resolved" => Ok(AnomalyState::Resolved),
            "suppressed" => Ok(AnomalyState::Suppressed),
            _ => Err(format!(
                "unknown anomaly state {s:?}; expected open, acknowledged, resolved or suppressed"
            )),
        }
    }
}

/// A change of an anomaly's state.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AnomalyUpdate {
    /// Which anomaly (by fingerprint).
    pub fingerprint: Fingerprint,
    /// The new state.
    pub state: AnomalyState,
    /// Why.
    #[serde(default)]
    pub comment: BoundedString<MAX_TEXT_BYTES>,
}

/// The author withdraws one of its own earlier records. Nothing is deleted; queries show the
/// target as revoked.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked record; must be by the same author and earlier in the feed.
    pub target: RecordId,
    /// Why.
    #[serde(default)]
    pub reason: BoundedString<MAX_TEXT_BYTES>,
}

/// One event in an anomaly's life, for [`fold_anomaly_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnomalyEvent {
    /// When it was issued.
    pub issued_at_ms: u64,
    /// Record id, the tie-breaker for equal times.
    pub id: RecordId,
    /// A report (which (re)opens) or an update to a state.
    pub state: AnomalyState,
}

/// The current state of an anomaly: a deterministic fold over its reports and updates.
///
/// Events are applied in `(issued_at_ms, id)` order, so every node that has the same set of
/// records computes the same state regardless of arrival order. A report counts as a move to
/// `Open`; moves the state machine forbids ([`AnomalyState::can_become`]) are skipped.
/// Returns `None` when there are no events.
pub fn fold_anomaly_state(events: &mut [AnomalyEvent]) -> Option<AnomalyState> {
    events.sort_by_key(|e| (e.issued_at_ms, e.id));
    let mut state: Option<AnomalyState> = None;
    for e in events.iter() {
        state = match state {
            None => Some(e.state),
            Some(s) if s.can_become(e.state) => Some(e.state),
            Some(s) => Some(s),
        };
    }
    state
}
