//! proptest strategies for every wire type.

use palisade_types::limits::*;
use palisade_types::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn bstr<const N: usize>(re: &'static str) -> impl Strategy<Value = BoundedString<N>> {
    re.prop_map(|s: String| {
        let mut s = s;
        while s.len() > N {
            s.pop();
        }
        BoundedString::new(s).unwrap()
    })
}

fn bvec<T: std::fmt::Debug, const N: usize>(
    s: impl Strategy<Value = T>,
    max: usize,
) -> impl Strategy<Value = BoundedVec<T, N>> {
    vec(s, 0..=max.min(N)).prop_map(|v| BoundedVec::new(v).unwrap())
}

pub(crate) fn id32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

pub(crate) fn digest() -> impl Strategy<Value = Digest> {
    (prop_oneof![Just("sha256"), Just("sha512"), Just("gitCommit"), Just("x-custom")], any::<u8>()).prop_map(
        |(alg, b)| {
            let len = Digest::expected_len(alg).and_then(|l| l.first().copied()).unwrap_or(12);
            Digest {
                algorithm: BoundedString::new(alg).unwrap(),
                value: BoundedBytes::new(vec![b; len]).unwrap(),
            }
        },
    )
}

pub(crate) fn position() -> impl Strategy<Value = FeedPosition> {
    (id32(), 1u64..1_000_000, id32(), MIN_ISSUED_AT_MS..MIN_ISSUED_AT_MS + 10_000_000_000).prop_map(
        |(author, seq, prev, t)| FeedPosition {
            author: AuthorKey(author),
            seq,
            prev: (seq > 1).then_some(RecordId(prev)),
            issued_at_ms: t,
        },
    )
}

fn tool() -> impl Strategy<Value = Tool> {
    (bstr("[a-z][a-z0-9-]{0,20}"), bstr("[0-9]{1,2}\\.[0-9]{1,2}"))
        .prop_map(|(name, version)| Tool { name, version })
}

fn severity() -> impl Strategy<Value = FindingSeverity> {
    prop_oneof![
        Just(FindingSeverity::Critical),
        Just(FindingSeverity::High),
        Just(FindingSeverity::Medium),
        Just(FindingSeverity::Low),
        Just(FindingSeverity::None),
    ]
}

fn finding() -> impl Strategy<Value = Finding> {
    (
        bstr("CVE-[0-9]{4}-[0-9]{4,6}"),
        bvec::<BoundedString<MAX_FINDING_ID_BYTES>, MAX_FINDING_ALIASES>(bstr("GHSA-[a-z0-9]{4}"), 2),
        severity(),
    )
        .prop_map(|(id, aliases, severity)| Finding { id, aliases, severity })
}

pub(crate) fn attestation() -> impl Strategy<Value = Attestation> {
    (
        bstr("[ -~]{1,40}"),
        bvec(digest(), 3),
        tool(),
        prop_oneof![Just(Verdict::Pass), Just(Verdict::Fail), Just(Verdict::Inconclusive)],
        0u16..=MAX_SCORE,
        proptest::collection::vec(finding(), 0..5),
        proptest::option::of(digest()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(name, digests, scanner, verdict, score, findings, report_digest, expires_at_ms)| {
            let n = findings.len() as u32;
            Attestation {
                subject: Subject { name, digests },
                scanner,
                verdict,
                score: Score(score),
                finding_counts: FindingCounts { critical: n, high: n, medium: n, low: n, none: n },
                findings: BoundedVec::new(findings).unwrap(),
                report_digest,
                expires_at_ms,
            }
        })
}

pub(crate) fn anomaly() -> impl Strategy<Value = Anomaly> {
    (
        bstr("[a-z]{2,6}://[a-z0-9./-]{1,40}"),
        prop_oneof![Just(StreamType::Logs), Just(StreamType::Metrics), Just(StreamType::Other)],
        proptest::collection::btree_map("[a-z_][a-z0-9_.]{0,10}", "[ -~]{0,20}", 0..5),
        proptest::collection::btree_map("[a-z_][a-z0-9_.]{0,10}", "[ -~]{0,40}", 0..3),
        1u8..=24,
        0u16..=MAX_SCORE,
        any::<u32>(),
        tool(),
        bvec(digest(), 3),
        bstr("[ -~]{0,60}"),
    )
        .prop_map(
            |(source, stream_type, labels, annotations, sev, score, w, detector, evidence, summary)| {
                let mut labels: Vec<Label> = labels
                    .into_iter()
                    .filter(|(k, _)| k != "kind")
                    .map(|(k, v)| Label {
                        key: BoundedString::new(k).unwrap(),
                        value: BoundedString::new(v).unwrap(),
                    })
                    .collect();
                labels.push(Label {
                    key: BoundedString::new("kind").unwrap(),
                    value: BoundedString::new("spike").unwrap(),
                });
                labels.sort_by(|a, b| a.key.cmp(&b.key));
                Anomaly {
                    source,
                    stream_type,
                    labels: BoundedVec::new(labels).unwrap(),
                    annotations: BoundedVec::new(
                        annotations
                            .into_iter()
                            .map(|(k, v)| Annotation {
                                key: BoundedString::new(k).unwrap(),
                                value: BoundedString::new(v).unwrap(),
                            })
                            .collect(),
                    )
                    .unwrap(),
                    severity_number: sev,
                    severity_text: BoundedString::new("WARN").unwrap(),
                    score: Score(score),
                    window_start_ms: MIN_ISSUED_AT_MS - u64::from(w),
                    window_end_ms: MIN_ISSUED_AT_MS,
                    detector,
                    evidence,
                    summary,
                }
            },
        )
}

pub(crate) fn statement() -> impl Strategy<Value = Statement> {
    prop_oneof![
        attestation().prop_map(Statement::Attestation),
        anomaly().prop_map(Statement::Anomaly),
        (
            id32(),
            prop_oneof![
                Just(AnomalyState::Open),
                Just(AnomalyState::Acknowledged),
                Just(AnomalyState::Resolved),
                Just(AnomalyState::Suppressed)
            ],
            bstr("[ -~]{0,60}")
        )
            .prop_map(|(fp, state, comment)| Statement::AnomalyUpdate(AnomalyUpdate {
                fingerprint: Fingerprint(fp),
                state,
                comment
            })),
        (id32(), bstr("[ -~]{0,60}"))
            .prop_map(|(t, reason)| Statement::Revocation(Revocation { target: RecordId(t), reason })),
    ]
}

pub(crate) fn record() -> impl Strategy<Value = Record> {
    (position(), statement()).prop_map(|(position, statement)| Record { position, statement })
}
