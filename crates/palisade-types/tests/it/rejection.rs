//! One test per rejection path of the wire format and static validation.

use palisade_types::codec::{decode_payload, encode, encode_payload, Envelope};
use palisade_types::fixtures::*;
use palisade_types::limits::*;
use palisade_types::*;

fn signed_attestation() -> VerifiedRecord {
    FeedWriter::new(key(1)).sign_next(attestation(1), FIXED_NOW_MS).unwrap()
}

#[test]
fn oversized_envelope_is_rejected_before_parsing() {
    let wire = vec![0u8; MAX_ENVELOPE_BYTES + 1];
    assert_eq!(
        ParsedEnvelope::parse(wire).unwrap_err(),
        DecodeError::TooLarge { len: MAX_ENVELOPE_BYTES + 1, max: MAX_ENVELOPE_BYTES }
    );
}

#[test]
fn trailing_bytes_after_the_envelope_are_rejected() {
    let mut wire = signed_attestation().into_wire_bytes();
    wire.push(0);
    assert!(matches!(
        ParsedEnvelope::parse(wire).unwrap_err(),
        DecodeError::TrailingBytes { what: "envelope", count: 1 }
    ));
}

#[test]
fn trailing_bytes_after_the_payload_are_rejected() {
    let signed = signed_attestation();
    let mut payload = encode_payload(signed.record());
    payload.push(7);
    assert!(matches!(
        decode_payload(RecordKind::Attestation, &payload).unwrap_err(),
        DecodeError::TrailingBytes { count: 1, .. }
    ));
}

#[test]
fn truncated_input_is_malformed() {
    let wire = signed_attestation().into_wire_bytes();
    for cut in [0, 1, 8, 20, wire.len() / 2, wire.len() - 1] {
        assert!(matches!(ParsedEnvelope::parse(wire[..cut].to_vec()), Err(DecodeError::Malformed { .. })));
    }
}

#[test]
fn bad_signature_is_rejected() {
    let mut wire = signed_attestation().into_wire_bytes();
    let n = wire.len();
    wire[n - 10] ^= 0x40; // inside the signature
    let validated = ParsedEnvelope::parse(wire).unwrap().decode().unwrap().validate(FIXED_NOW_MS).unwrap();
    assert_eq!(validated.verify().unwrap_err(), VerifyError::BadSignature);
}

#[test]
fn signature_by_another_key_is_rejected() {
    let signed = signed_attestation();
    let other = FeedWriter::new(key(2)).sign_next(attestation(1), FIXED_NOW_MS).unwrap();
    let mut env = signed.envelope().unwrap();
    env.signature = other.envelope().unwrap().signature;
    let validated =
        ParsedEnvelope::parse(env.encode()).unwrap().decode().unwrap().validate(FIXED_NOW_MS).unwrap();
    assert_eq!(validated.verify().unwrap_err(), VerifyError::BadSignature);
}

#[test]
fn wrong_payload_type_never_verifies() {
    // An attestation payload relabelled as a revocation: either it does not decode as one, or
    // the signature (which covers the payload type) fails. Domain separation in action.
    let signed = signed_attestation();
    let mut env = signed.envelope().unwrap();
    for kind in [RecordKind::Anomaly, RecordKind::AnomalyUpdate, RecordKind::Revocation] {
        env.payload_type = BoundedString::new(kind.payload_type()).unwrap();
        let parsed = ParsedEnvelope::parse(env.encode()).unwrap();
        assert_ne!(parsed.id(), signed.id(), "the id covers the payload type");
        match parsed.decode() {
            Err(DecodeError::Malformed { .. } | DecodeError::TrailingBytes { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(u) => {
                assert_eq!(u.validate(FIXED_NOW_MS).unwrap().verify().unwrap_err(), VerifyError::BadSignature)
            }
        }
    }
}

#[test]
fn unknown_payload_type_is_rejected() {
    let mut env = signed_attestation().envelope().unwrap();
    env.payload_type = BoundedString::new("application/vnd.palisade.attestation.v9+bincode").unwrap();
    assert!(matches!(ParsedEnvelope::parse(env.encode()).unwrap_err(), DecodeError::UnknownPayloadType(_)));
}

#[test]
fn future_timestamp_is_rejected() {
    let r = FeedWriter::new(key(1)).sign_next(attestation(1), FIXED_NOW_MS + MAX_CLOCK_SKEW_MS + 1).unwrap();
    let u = ParsedEnvelope::parse(r.into_wire_bytes()).unwrap().decode().unwrap();
    assert!(matches!(
        u.validate(FIXED_NOW_MS).unwrap_err(),
        ValidationError::InFuture { field: "issued_at_ms", .. }
    ));
    // Within the skew it is fine.
    let r = FeedWriter::new(key(1)).sign_next(attestation(1), FIXED_NOW_MS + MAX_CLOCK_SKEW_MS).unwrap();
    ParsedEnvelope::parse(r.into_wire_bytes()).unwrap().decode().unwrap().validate(FIXED_NOW_MS).unwrap();
}

#[test]
fn timestamps_in_seconds_are_rejected() {
    // Refused by the signer and by every receiver alike.
    let refused = FeedWriter::new(key(1)).sign_next(attestation(1), FIXED_NOW_MS / 1000).unwrap_err();
    assert!(matches!(refused, SignError::Invalid(ValidationError::OutOfRange { field: "issued_at_ms", .. })));
    assert!(matches!(
        validate::validate_record(&unsigned(attestation(1), FIXED_NOW_MS / 1000), FIXED_NOW_MS).unwrap_err(),
        ValidationError::OutOfRange { field: "issued_at_ms", .. }
    ));
}

/// Hand-builds an envelope whose payload type claims a length beyond the limit.
#[test]
fn over_long_string_length_prefix_is_rejected_without_allocating() {
    let mut wire = Vec::new();
    wire.extend_from_slice(&(u64::MAX).to_le_bytes()); // payload_type length
    wire.extend_from_slice(b"x");
    let err = Envelope::decode(&wire).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("exceeds the maximum"), "{err}");
}

#[test]
fn over_long_list_is_rejected() {
    // A subject with MAX_SUBJECT_DIGESTS + 1 digests, encoded by hand: the bounded type cannot
    // even hold it, so splice a larger count into a valid encoding.
    let r = signed_attestation();
    let payload = encode_payload(r.record());
    // Layout: position (32 author + 8 seq + 1 prev tag + 8 issued) then subject name
    // (8 + len) then digest count.
    let name_len = match &r.record().statement {
        Statement::Attestation(a) => a.subject.name.len(),
        _ => unreachable!(),
    };
    let count_at = 32 + 8 + 1 + 8 + 8 + name_len;
    let mut bad = payload.clone();
    bad[count_at..count_at + 8].copy_from_slice(&((MAX_SUBJECT_DIGESTS as u64) + 1).to_le_bytes());
    let err = decode_payload(RecordKind::Attestation, &bad).unwrap_err();
    assert!(err.to_string().contains("exceeds the maximum of 8"), "{err}");
}

#[test]
fn over_long_strings_are_refused_when_built() {
    assert_eq!(BoundedString::<4>::new("hello").unwrap_err(), TooLong { len: 5, max: 4 });
    let json = format!("\"{}\"", "a".repeat(MAX_NAME_BYTES + 1));
    assert!(serde_json::from_str::<BoundedString<MAX_NAME_BYTES>>(&json).is_err());
    let json = format!("[{}]", ["\"sha256:00\""; MAX_SUBJECT_DIGESTS + 1].join(","));
    assert!(serde_json::from_str::<BoundedVec<Digest, MAX_SUBJECT_DIGESTS>>(&json).is_err());
}

fn validate_statement(statement: Statement) -> Result<(), ValidationError> {
    validate::validate_record(&unsigned(statement, FIXED_NOW_MS), FIXED_NOW_MS)
}

/// The first record of `key(1)`'s feed, not signed (signing would refuse an invalid one).
fn unsigned(statement: Statement, issued_at_ms: u64) -> Record {
    let author = AuthorKey(key(1).verifying_key().to_bytes());
    Record { position: FeedPosition { author, seq: 1, prev: None, issued_at_ms }, statement }
}

#[test]
fn validation_names_the_field() {
    let mut a = attestation(1);
    if let Statement::Attestation(x) = &mut a {
        x.score = Score(1001);
    }
    assert!(matches!(
        validate_statement(a).unwrap_err(),
        ValidationError::OutOfRange { field: "score", value: 1001, .. }
    ));

    let mut a = attestation(1);
    if let Statement::Attestation(x) = &mut a {
        x.subject.digests = BoundedVec::default();
    }
    assert_eq!(validate_statement(a).unwrap_err(), ValidationError::NoEntries { field: "subject.digests" });

    let mut a = attestation(1);
    if let Statement::Attestation(x) = &mut a {
        x.subject.digests = BoundedVec::new(vec!["sha256:00ff".parse().unwrap()]).unwrap();
    }
    assert!(matches!(
        validate_statement(a).unwrap_err(),
        ValidationError::BadFormat { field: "subject.digests", .. }
    ));

    let mut a = attestation(1);
    if let Statement::Attestation(x) = &mut a {
        x.finding_counts.high = 0;
    }
    assert!(matches!(
        validate_statement(a).unwrap_err(),
        ValidationError::Inconsistent { field: "finding_counts", .. }
    ));

    let mut a = anomaly(1);
    if let Statement::Anomaly(x) = &mut a {
        x.labels =
            BoundedVec::new(vec![Label { key: fixtures::s("service"), value: fixtures::s("api") }]).unwrap();
    }
    assert!(matches!(validate_statement(a).unwrap_err(), ValidationError::BadFormat { field: "labels", .. }));

    let mut a = anomaly(1);
    if let Statement::Anomaly(x) = &mut a {
        let mut v = x.labels.clone().into_inner();
        v.reverse();
        x.labels = BoundedVec::new(v).unwrap();
    }
    let err = validate_statement(a).unwrap_err();
    assert_eq!(err, ValidationError::BadFormat { field: "labels", rule: "keys must be sorted and unique" });

    let mut a = anomaly(1);
    if let Statement::Anomaly(x) = &mut a {
        x.severity_number = 25;
    }
    assert!(matches!(
        validate_statement(a).unwrap_err(),
        ValidationError::OutOfRange { field: "severity_number", .. }
    ));

    let mut a = anomaly(1);
    if let Statement::Anomaly(x) = &mut a {
        x.source = fixtures::s("not a uri");
    }
    assert!(matches!(validate_statement(a).unwrap_err(), ValidationError::BadFormat { field: "source", .. }));

    let mut a = anomaly(1);
    if let Statement::Anomaly(x) = &mut a {
        x.window_start_ms = x.window_end_ms + 1;
    }
    assert!(matches!(
        validate_statement(a).unwrap_err(),
        ValidationError::Inconsistent { field: "window_start_ms", .. }
    ));
}

#[test]
fn feed_position_rules() {
    let now = FIXED_NOW_MS;
    let mut p = FeedPosition { author: AuthorKey([1; 32]), seq: 0, prev: None, issued_at_ms: now };
    assert!(matches!(
        validate::validate_position(&p, now),
        Err(ValidationError::OutOfRange { field: "seq", .. })
    ));
    p.seq = 1;
    p.prev = Some(RecordId([0; 32]));
    assert!(matches!(
        validate::validate_position(&p, now),
        Err(ValidationError::Inconsistent { field: "prev", .. })
    ));
    p.seq = 2;
    p.prev = None;
    assert!(matches!(
        validate::validate_position(&p, now),
        Err(ValidationError::Inconsistent { field: "prev", .. })
    ));
}

#[test]
fn weak_author_keys_are_rejected() {
    // The identity point (a small-order point) as a public key.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(verifying_key(&AuthorKey(identity)).unwrap_err(), VerifyError::BadAuthorKey);
}

#[test]
fn signing_for_another_author_is_refused() {
    let record = Record {
        position: FeedPosition { author: AuthorKey([9; 32]), seq: 1, prev: None, issued_at_ms: FIXED_NOW_MS },
        statement: attestation(1),
    };
    assert!(matches!(VerifiedRecord::sign(record, &key(1)), Err(SignError::AuthorMismatch { .. })));
}

#[test]
fn invalid_utf8_is_malformed() {
    let env = signed_attestation().envelope().unwrap();
    let mut wire = encode(&env);
    wire[8] = 0xff; // first byte of payload_type
    assert!(matches!(Envelope::decode(&wire), Err(DecodeError::Malformed { .. })));
}
