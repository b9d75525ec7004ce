//! Property tests: every type round-trips through the codec and JSON; arbitrary bytes never
//! panic the decoder, and whatever decodes re-encodes to the same bytes.

use palisade_types::codec::{decode_payload, encode_payload, Envelope};
use palisade_types::fixtures::key;
use palisade_types::*;
use proptest::prelude::*;

use crate::strategies;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn payload_roundtrips(record in strategies::record()) {
        let bytes = encode_payload(&record);
        let back = decode_payload(record.kind(), &bytes).unwrap();
        prop_assert_eq!(&back, &record);
        prop_assert_eq!(encode_payload(&back), bytes);
    }

    #[test]
    fn json_roundtrips(record in strategies::record()) {
        let json = serde_json::to_string(&record).unwrap();
        let back: Record = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, record);
    }

    #[test]
    fn signed_records_roundtrip_through_the_ingest_states(statement in strategies::statement(), seq in 1u64..5) {
        let at = limits::MIN_ISSUED_AT_MS + 1;
        let prev = (seq > 1).then_some(RecordId([seq as u8; 32]));
        let last = prev.map(|p| (seq - 1, p));
        let mut writer = FeedWriter::resume(key(3), last);
        match writer.sign_next(statement.clone(), at) {
            Ok(signed) => {
                let parsed = ParsedEnvelope::parse(signed.wire_bytes().to_vec()).unwrap();
                prop_assert_eq!(parsed.id(), signed.id());
                let verified = parsed.decode().unwrap().validate(at).unwrap().verify().unwrap();
                prop_assert_eq!(&verified, &signed);
                let env = Envelope::decode(signed.wire_bytes()).unwrap();
                prop_assert_eq!(env.encode(), signed.wire_bytes().to_vec());
            }
            // What signing refuses, every receiver refuses, for the same reason.
            Err(SignError::Invalid(refused)) => {
                let (_, wire) = sign_envelope(&record_at(&key(3), statement, seq, prev, at), &key(3)).unwrap();
                let received = ParsedEnvelope::parse(wire).unwrap().decode().unwrap().validate(at);
                prop_assert_eq!(received.unwrap_err(), refused);
            }
            Err(e) => prop_assert!(false, "signing failed: {e}"),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_decoded_values_are_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(env) = Envelope::decode(&bytes) {
            prop_assert_eq!(env.encode(), bytes.clone());
        }
        for kind in RecordKind::ALL {
            if let Ok(record) = decode_payload(kind, &bytes) {
                prop_assert_eq!(encode_payload(&record), bytes.clone());
                let _ = validate::validate_record(&record, fixtures::FIXED_NOW_MS);
            }
        }
    }

    #[test]
    fn mutated_envelopes_never_verify_as_something_else(statement in strategies::statement(), flip in 0usize..4096, bit in 0u8..8) {
        let record = record_at(&key(5), statement, 1, None, limits::MIN_ISSUED_AT_MS + 1);
        let (_, mut wire) = sign_envelope(&record, &key(5)).unwrap();
        let i = flip % wire.len();
        wire[i] ^= 1 << bit;
        if let Ok(parsed) = ParsedEnvelope::parse(wire) {
            // Any change to a signed byte or the signature must fail validation or verification.
            if let Some(validated) = parsed.decode().ok().and_then(|u| u.validate(limits::MIN_ISSUED_AT_MS + 1).ok()) {
                prop_assert!(validated.verify().is_err());
            }
        }
    }

    #[test]
    fn score_decimal_parsing_roundtrips(v in 0u16..=1000) {
        let s = Score(v);
        prop_assert_eq!(Score::parse_decimal(&s.to_string()).unwrap(), s);
    }
}

/// The record `key` would sign at this position, checked or not.
fn record_at(
    key: &ed25519_dalek::SigningKey,
    statement: Statement,
    seq: u64,
    prev: Option<RecordId>,
    at: u64,
) -> Record {
    let author = AuthorKey(key.verifying_key().to_bytes());
    Record { position: FeedPosition { author, seq, prev, issued_at_ms: at }, statement }
}

fn validated(wire: Vec<u8>) -> ValidatedRecord {
    ParsedEnvelope::parse(wire).unwrap().decode().unwrap().validate(fixtures::FIXED_NOW_MS).unwrap()
}

#[test]
fn batch_verification_finds_the_bad_signature() {
    let mut records: Vec<ValidatedRecord> =
        fixtures::feed(9, 64).into_iter().map(|r| validated(r.into_wire_bytes())).collect();
    // Replace record 17 with one whose signature is corrupted.
    let mut wire = records[17].wire_bytes().to_vec();
    let last = wire.len() - 1;
    wire[last] ^= 0x01;
    let bad_id = records[17].id();
    records[17] = validated(wire);
    let outcomes = verify_batch(records);
    assert_eq!(outcomes.len(), 64);
    for (i, o) in outcomes.iter().enumerate() {
        if i == 17 {
            assert_eq!(o.as_ref().unwrap_err(), &(bad_id, VerifyError::BadSignature));
        } else {
            assert!(o.is_ok(), "record {i} should verify");
        }
    }
}

#[test]
fn batch_of_valid_records_verifies() {
    let records: Vec<ValidatedRecord> =
        fixtures::feed(10, 32).into_iter().map(|r| validated(r.into_wire_bytes())).collect();
    assert!(verify_batch(records).iter().all(|o| o.is_ok()));
}

#[test]
fn anomaly_state_fold_is_order_independent() {
    use AnomalyState::*;
    let ev = |t: u64, id: u8, state| AnomalyEvent { issued_at_ms: t, id: RecordId([id; 32]), state };
    let mut a = vec![ev(1, 1, Open), ev(2, 2, Acknowledged), ev(3, 3, Resolved), ev(4, 4, Acknowledged)];
    let mut b = a.clone();
    b.reverse();
    // Resolved -> Acknowledged is not allowed, so the last update is skipped.
    assert_eq!(fold_anomaly_state(&mut a), Some(Resolved));
    assert_eq!(fold_anomaly_state(&mut b), Some(Resolved));
    assert_eq!(fold_anomaly_state(&mut []), None);
}

#[test]
fn fingerprint_depends_only_on_labels() {
    let a = match fixtures::anomaly(1) {
        Statement::Anomaly(a) => a,
        _ => unreachable!(),
    };
    let mut b = a.clone();
    b.summary = BoundedString::new("different summary").unwrap();
    b.score = Score(1);
    assert_eq!(a.fingerprint(), b.fingerprint());
    let mut c = a.clone();
    c.labels = BoundedVec::new(vec![Label {
        key: BoundedString::new("kind").unwrap(),
        value: BoundedString::new("other").unwrap(),
    }])
    .unwrap();
    assert_ne!(a.fingerprint(), c.fingerprint());
}
