//! Sample statements for tests, benchmarks and fuzz seeds of this and other crates.
//!
//! Deterministic: the same arguments always give the same statement, so signed fixtures have
//! stable ids.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::*;

/// 2025-06-15T15:06:40Z, a fixed "now" for vectors and tests.
pub const FIXED_NOW_MS: u64 = 1_750_000_000_000;

pub fn s<const N: usize>(v: &str) -> BoundedString<N> {
    BoundedString::new(v).unwrap()
}

pub fn sha256(byte: u8) -> Digest {
    Digest { algorithm: s("sha256"), value: BoundedBytes::new(vec![byte; 32]).unwrap() }
}

pub fn attestation(n: u64) -> Statement {
    Statement::Attestation(Attestation {
        subject: Subject {
            name: s(&format!("pkg:cargo/example-{n}@1.0.{n}")),
            digests: BoundedVec::new(vec![sha256((n % 251) as u8)]).unwrap(),
        },
        scanner: Tool { name: s("trivy"), version: s("0.56.1") },
        verdict: if n.is_multiple_of(3) { Verdict::Fail } else { Verdict::Pass },
        score: Score(((n * 37) % 1001) as u16),
        finding_counts: FindingCounts { critical: 0, high: 1, medium: 2, low: 3, none: 0 },
        findings: BoundedVec::new(vec![Finding {
            id: s("CVE-2024-3094"),
            aliases: BoundedVec::new(vec![s("GHSA-rxwq-x6h5-x525")]).unwrap(),
            severity: FindingSeverity::High,
        }])
        .unwrap(),
        report_digest: None,
        expires_at_ms: None,
    })
}

pub fn anomaly(n: u64) -> Statement {
    Statement::Anomaly(Anomaly {
        source: s(&format!("otlp://collector/service-{}", n % 7)),
        stream_type: StreamType::Metrics,
        labels: BoundedVec::new(vec![
            Label { key: s("kind"), value: s("latency") },
            Label { key: s("service"), value: s(&format!("api-{}", n % 5)) },
        ])
        .unwrap(),
        annotations: BoundedVec::new(vec![Annotation {
            key: s("runbook"),
            value: s("https://runbooks/latency"),
        }])
        .unwrap(),
        severity_number: 17,
        severity_text: s("ERROR"),
        score: Score(850),
        window_start_ms: FIXED_NOW_MS - 60_000,
        window_end_ms: FIXED_NOW_MS - 1_000,
        detector: Tool { name: s("zscore"), version: s("1.2.0") },
        evidence: BoundedVec::new(vec![sha256(9)]).unwrap(),
        summary: s(&format!("p99 latency 5x baseline ({n})")),
    })
}

pub fn anomaly_update(fingerprint: Fingerprint, state: AnomalyState) -> Statement {
    Statement::AnomalyUpdate(AnomalyUpdate { fingerprint, state, comment: s("on it") })
}

pub fn revocation(target: RecordId) -> Statement {
    Statement::Revocation(Revocation { target, reason: s("superseded by a newer scan") })
}

/// A deterministic signing key from a small seed.
pub fn key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

/// `count` attestations on one feed, issued one millisecond apart before [`FIXED_NOW_MS`].
pub fn feed(seed: u8, count: u64) -> Vec<VerifiedRecord> {
    let mut w = FeedWriter::new(key(seed));
    (1..=count).map(|n| w.sign_next(attestation(n), FIXED_NOW_MS - 1_000_000 + n).unwrap()).collect()
}
