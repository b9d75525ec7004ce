//! Golden vectors: fixed key, fixed records, their exact bytes, ids and signatures.
//!
//! If this test fails, the wire format changed. That is a protocol break: either undo the
//! change, or bump the payload type version and add new vectors. Regenerate (only for a new
//! version) with `PALISADE_BLESS=1 cargo test -p palisade-types golden`.

use palisade_types::fixtures::*;
use palisade_types::*;
use serde::{Deserialize, Serialize};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/records.json");

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct VectorFile {
    comment: String,
    signing_key_seed_hex: String,
    author: String,
    vectors: Vec<Vector>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Vector {
    name: String,
    record: serde_json::Value,
    payload_type: String,
    payload_hex: String,
    signed_bytes_hex: String,
    signature_hex: String,
    envelope_hex: String,
    id: String,
}

fn build() -> VectorFile {
    let key = key(7);
    let mut feed = FeedWriter::new(key.clone());
    let mut attestation = attestation(1);
    if let Statement::Attestation(a) = &mut attestation {
        a.report_digest = Some("gitCommit:4b825dc642cb6eb9a060e54bf8d69288fbee4904".parse().unwrap());
        a.expires_at_ms = Some(FIXED_NOW_MS + 86_400_000);
    }
    let anomaly = anomaly(2);
    let fingerprint = match &anomaly {
        Statement::Anomaly(a) => a.fingerprint(),
        _ => unreachable!(),
    };
    let statements = [
        ("attestation", attestation),
        ("anomaly", anomaly),
        ("anomaly_update", anomaly_update(fingerprint, AnomalyState::Acknowledged)),
        ("revocation", revocation(RecordId([0xab; 32]))),
    ];
    let mut vectors = Vec::new();
    for (i, (name, statement)) in statements.into_iter().enumerate() {
        let signed = feed.sign_next(statement, FIXED_NOW_MS + i as u64).unwrap();
        let envelope = signed.envelope().unwrap();
        vectors.push(Vector {
            name: name.to_string(),
            record: serde_json::to_value(signed.record()).unwrap(),
            payload_type: envelope.payload_type.to_string(),
            payload_hex: hex::encode(envelope.payload.as_slice()),
            signed_bytes_hex: hex::encode(pae(&envelope.payload_type, &envelope.payload)),
            signature_hex: hex::encode(envelope.signature),
            envelope_hex: hex::encode(signed.wire_bytes()),
            id: signed.id().to_hex(),
        });
    }
    VectorFile {
        comment: "Palisade wire-format golden vectors. See docs/wire-format.md. Do not edit by hand.".into(),
        signing_key_seed_hex: hex::encode([7u8; 32]),
        author: hex::encode(key.verifying_key().to_bytes()),
        vectors,
    }
}

#[test]
fn golden_vectors_match_checked_in_bytes() {
    let built = build();
    if std::env::var_os("PALISADE_BLESS").is_some() {
        std::fs::write(PATH, serde_json::to_string_pretty(&built).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(PATH).expect("tests/vectors/records.json is checked in");
    let on_disk: VectorFile = serde_json::from_str(&text).unwrap();
    assert_eq!(on_disk.author, built.author);
    assert_eq!(on_disk.vectors.len(), built.vectors.len());
    for (disk, now) in on_disk.vectors.iter().zip(&built.vectors) {
        assert_eq!(disk, now, "vector {} changed: the wire format is not stable", disk.name);
    }
}

#[test]
fn golden_envelopes_decode_verify_and_reencode() {
    let text = std::fs::read_to_string(PATH).unwrap();
    let file: VectorFile = serde_json::from_str(&text).unwrap();
    for v in &file.vectors {
        let wire = hex::decode(&v.envelope_hex).unwrap();
        let parsed = ParsedEnvelope::parse(wire.clone()).unwrap();
        assert_eq!(parsed.id().to_hex(), v.id, "{}", v.name);
        let unverified = parsed.decode().unwrap();
        let verified = unverified.validate(FIXED_NOW_MS).unwrap().verify().unwrap();
        assert_eq!(verified.wire_bytes(), wire.as_slice());
        assert_eq!(serde_json::to_value(verified.record()).unwrap(), v.record, "{}", v.name);
        // The JSON form decodes back to the same record (the admin API relies on this).
        let from_json: Record = serde_json::from_value(v.record.clone()).unwrap();
        assert_eq!(&from_json, verified.record());
        // Record id = derive_key(context, PAE) where PAE is what the signature covers.
        let signed = hex::decode(&v.signed_bytes_hex).unwrap();
        assert_eq!(record_id(&signed).to_hex(), v.id);
        assert!(signed.starts_with(b"DSSEv1 "));
    }
}

#[test]
fn pae_matches_the_dsse_spec_example() {
    // From the DSSE protocol document.
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
}
