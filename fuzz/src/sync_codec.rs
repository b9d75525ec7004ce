//! Target 3: the anti-entropy sync protocol (`/palisade/sync/1`): request and response
//! bodies, and the length-prefixed frames the libp2p codec reads off a stream.
//!
//! Invariants:
//! - a body that decodes re-encodes to exactly the same bytes (decode → encode equality);
//! - decoded pages respect the protocol caps (heads, records per page);
//! - a frame the codec reads is at most its cap; writing the decoded message back produces
//!   the same frame bytes;
//! - every record carried in a response is handed to the envelope parser without panicking;
//! - an equivocation proof message (same body codec) that passes the pairing check holds two
//!   canonical envelopes by one author at one seq with different ids, and re-encodes to the
//!   input.

use futures::executor::block_on;
use libp2p::request_response::Codec;
use palisade_net::sync::{
    decode_body, encode_body, SyncCodec, SyncRequest, SyncResponse, MAX_HEADS_PER_PAGE, MAX_RECORDS_PER_PAGE,
    MAX_REQUEST_BYTES, MAX_RESPONSE_FRAME_BYTES, PROTOCOL,
};
use palisade_types::ParsedEnvelope;

/// Runs one input.
pub fn run(data: &[u8]) {
    if let Ok(req) = decode_body::<SyncRequest>(data) {
        assert_eq!(encode_body(&req), data, "sync request decode is not canonical");
    }
    if let Ok(res) = decode_body::<SyncResponse>(data) {
        assert_eq!(encode_body(&res), data, "sync response decode is not canonical");
        check_response(&res);
    }
    frames(data);
    proof(data);
}

fn proof(data: &[u8]) {
    let Ok([a, b]) = palisade_net::proof::decode_and_check(data) else { return };
    let (pa, pb) = (&a.record().position, &b.record().position);
    assert_eq!((pa.author, pa.seq), (pb.author, pb.seq), "a proof's halves differ in author or seq");
    assert_ne!(a.id(), b.id(), "a proof whose halves are one record");
    let encoded = palisade_net::proof::encode(a.wire_bytes(), b.wire_bytes());
    assert_eq!(encoded, data, "proof decode is not canonical");
}

fn check_response(res: &SyncResponse) {
    match res {
        SyncResponse::Heads { heads, .. } => assert!(heads.len() <= MAX_HEADS_PER_PAGE),
        SyncResponse::Records { records, .. } => {
            assert!(records.len() <= MAX_RECORDS_PER_PAGE);
            for r in records.iter() {
                // What the requester does with each record next; it must not panic.
                let _ = ParsedEnvelope::parse(r.to_vec()).and_then(|p| p.decode());
            }
        }
        SyncResponse::Refused(_) => {}
    }
}

/// The frame layer: `u32 LE length ++ body`, read by the real codec from an in-memory stream.
fn frames(data: &[u8]) {
    let mut codec = SyncCodec;
    let mut io = futures::io::Cursor::new(data.to_vec());
    if let Ok(req) = block_on(codec.read_request(&PROTOCOL, &mut io)) {
        let used = frame_len(data);
        assert!(used - 4 <= MAX_REQUEST_BYTES, "read a request frame over the cap");
        let mut out = futures::io::Cursor::new(Vec::new());
        match block_on(codec.write_request(&PROTOCOL, &mut out, req)) {
            Ok(()) => {
                assert_eq!(out.get_ref().as_slice(), &data[..used], "request frame does not round-trip")
            }
            Err(e) => panic!("a request we read cannot be written back: {e}"),
        }
    }
    let mut io = futures::io::Cursor::new(data.to_vec());
    if let Ok(res) = block_on(codec.read_response(&PROTOCOL, &mut io)) {
        let used = frame_len(data);
        assert!(used - 4 <= MAX_RESPONSE_FRAME_BYTES, "read a response frame over the cap");
        check_response(&res);
        let mut out = futures::io::Cursor::new(Vec::new());
        match block_on(codec.write_response(&PROTOCOL, &mut out, res)) {
            Ok(()) => {
                assert_eq!(out.get_ref().as_slice(), &data[..used], "response frame does not round-trip")
            }
            Err(e) => panic!("a response we read cannot be written back: {e}"),
        }
    }
}

/// Header plus body length of the frame at the start of `data` (which was read successfully,
/// so the header is there).
fn frame_len(data: &[u8]) -> usize {
    let mut len = [0u8; 4];
    len.copy_from_slice(&data[..4]);
    4 + u32::from_le_bytes(len) as usize
}
