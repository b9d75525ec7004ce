//! Envelope + record decode and static validation. Invariants, not just "no panic":
//! whatever decodes re-encodes to exactly the input bytes (canonical codec), and the id is
//! stable across a second parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_types::codec::{decode_payload, encode_payload, Envelope};
use palisade_types::{validate, ParsedEnvelope, RecordKind};

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::decode(data) {
        assert_eq!(env.encode(), data, "envelope decode is not canonical");
    }
    if let Ok(parsed) = ParsedEnvelope::parse(data.to_vec()) {
        let id = parsed.id();
        let again = ParsedEnvelope::parse(data.to_vec()).expect("parses twice");
        assert_eq!(again.id(), id);
        if let Ok(unverified) = parsed.decode() {
            let _ = unverified.validate(1_750_000_000_000);
            // Signature verification must never panic either.
            let _ = unverified.verify();
        }
    }
    for kind in RecordKind::ALL {
        if let Ok(record) = decode_payload(kind, data) {
            assert_eq!(encode_payload(&record), data, "payload decode is not canonical");
            let _ = validate::validate_record(&record, 1_750_000_000_000);
        }
    }
});
