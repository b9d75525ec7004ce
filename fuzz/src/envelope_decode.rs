//! Target 1: envelope + record decode, static validation and signature checks — the bytes of
//! every gossip message, sync record and imported line.
//!
//! Invariants:
//! - whatever decodes re-encodes to exactly the input (one encoding per value, so one id);
//! - a parsed envelope's id is the key derivation of its PAE bytes, and its kind names its
//!   payload type; parsing twice gives the same id;
//! - the decoded payload re-encodes to the envelope's payload, and its kind matches;
//! - validation is monotonic in the clock: valid at `now` stays valid later (only the
//!   "not in the future" rule reads the clock);
//! - single and batch signature verification agree (one signature rule everywhere), and a
//!   verified record keeps the parsed id and bytes;
//! - the JSON form of a valid record (admin API, export) round-trips to the same record;
//! - `from_trusted_bytes` (the store's re-read path) accepts exactly what parse + decode
//!   accept.

use palisade_types::codec::{decode_payload, encode_payload, Envelope};
use palisade_types::limits::MAX_ENVELOPE_BYTES;
use palisade_types::{
    pae, record_id, validate, verify_batch, ParsedEnvelope, Record, RecordKind, VerifiedRecord,
};

use crate::common::NOW_MS;

/// Clock values for the monotonicity check, ascending.
const CLOCKS: [u64; 4] = [0, palisade_types::limits::MIN_ISSUED_AT_MS, NOW_MS, u64::MAX];

/// Runs one input.
pub fn run(data: &[u8]) {
    if let Ok(env) = Envelope::decode(data) {
        assert!(data.len() <= MAX_ENVELOPE_BYTES, "decoded an envelope over the size cap");
        assert_eq!(env.encode(), data, "envelope decode is not canonical");
    }

    let parsed = ParsedEnvelope::parse(data.to_vec());
    #[allow(clippy::disallowed_methods)] // its contract with parse + decode is what is tested
    let trusted = VerifiedRecord::from_trusted_bytes(data.to_vec());
    match parsed {
        Ok(parsed) => check_parsed(data, parsed, trusted.ok()),
        Err(_) => assert!(trusted.is_err(), "from_trusted_bytes accepted an unparsable envelope"),
    }

    // Payload-level: the bytes as the payload of each kind.
    for kind in RecordKind::ALL {
        if let Ok(record) = decode_payload(kind, data) {
            assert_eq!(record.kind(), kind);
            assert_eq!(encode_payload(&record), data, "payload decode is not canonical");
            check_record(&record);
        }
    }
}

fn check_parsed(data: &[u8], parsed: ParsedEnvelope, trusted: Option<VerifiedRecord>) {
    let env = parsed.envelope();
    assert_eq!(
        parsed.kind().payload_type(),
        env.payload_type.as_str(),
        "kind does not name the payload type"
    );
    assert_eq!(parsed.id(), record_id(&pae(&env.payload_type, &env.payload)), "id is not derived from PAE");
    assert_eq!(parsed.wire_bytes(), data);
    match ParsedEnvelope::parse(data.to_vec()) {
        Ok(again) => assert_eq!(again.id(), parsed.id(), "id is not stable"),
        Err(e) => panic!("second parse of the same bytes failed: {e}"),
    }
    let id = parsed.id();
    let kind = parsed.kind();
    let payload = env.payload.to_vec();
    let unverified = match parsed.decode() {
        Ok(u) => u,
        Err(_) => {
            assert!(trusted.is_none(), "from_trusted_bytes accepted an undecodable payload");
            return;
        }
    };
    let trusted = match trusted {
        Some(t) => t,
        None => panic!("parse + decode succeeded but from_trusted_bytes failed"),
    };
    assert_eq!(trusted.id(), id);
    assert_eq!(trusted.record(), unverified.record());
    assert_eq!(unverified.id(), id);
    assert_eq!(unverified.record().kind(), kind, "payload kind differs from the payload type");
    assert_eq!(encode_payload(unverified.record()), payload, "payload is not canonical");
    check_record(unverified.record());

    let Ok(validated) = unverified.clone().validate(CLOCKS[CLOCKS.len() - 1]) else { return };
    let single = validated.clone().verify();
    let batch = verify_batch(vec![validated]);
    assert_eq!(batch.len(), 1);
    match (&single, batch.first()) {
        (Ok(a), Some(Ok(b))) => {
            assert_eq!(a, b);
            assert_eq!(a.id(), id);
            assert_eq!(a.wire_bytes(), data);
            assert_eq!(a.record(), unverified.record());
        }
        (Err(a), Some(Err((bid, b)))) => {
            assert_eq!(*bid, id);
            assert_eq!(a, b, "single and batch verification fail differently");
        }
        (s, b) => panic!("single ({s:?}) and batch ({b:?}) verification disagree"),
    }
}

fn check_record(record: &Record) {
    let mut valid_before = false;
    for now in CLOCKS {
        let ok = validate::validate_record(record, now).is_ok();
        assert!(ok || !valid_before, "valid at an earlier clock, invalid at {now}");
        valid_before = ok;
    }
    // Only valid records reach the JSON views (admin API, export).
    if !valid_before {
        return;
    }
    match serde_json::to_string(record) {
        Ok(json) => match serde_json::from_str::<Record>(&json) {
            Ok(back) => assert_eq!(&back, record, "JSON round trip changed the record"),
            Err(e) => panic!("record does not read back from its own JSON ({e}): {json}"),
        },
        Err(e) => panic!("record does not serialise to JSON: {e}"),
    }
}
