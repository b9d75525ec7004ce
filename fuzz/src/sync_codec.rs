//! Target 3: the anti-entropy sync protocol (`/palisade/sync/1`): request and response
//! bodies, and the length-prefixed frames the libp2p codec reads off a stream.
//!
//! Invariants:
//! - a body that decodes re-encodes to exactly the same bytes (decode → encode equality);
//! - decoded pages respect the protocol caps (heads, records per page);
//! - a frame the codec reads is at most its cap; writing the decoded message back produces
//!   the same frame bytes;
//! - every record carried in a response is handed to the envelope parser without panicking;
//! - a sync/2 reconcile request answered from a fixed set of heads gives answers that the
//!   client's checks accept (an honest server is never taken for an abusive one), within the
//!   response's bounds; a decoded reconcile response followed against that set never panics;
//! - an equivocation proof message (same body codec) that passes the pairing check holds two
//!   canonical envelopes by one author at one seq with different ids, and re-encodes to the
//!   input.

use futures::executor::block_on;
use libp2p::request_response::Codec;
use palisade_net::sync::reconcile::{
    answer_sorted, follow_sorted, RangeAnswer, ReconcileRequest, MAX_HEADS_PER_RESPONSE,
    MAX_QUERIES_PER_REQUEST, SPLIT_FANOUT,
};
use palisade_net::sync::{
    decode_body, encode_body, SyncCodec, SyncRequest, SyncResponse, WireHead, MAX_HEADS_PER_PAGE,
    MAX_RECORDS_PER_PAGE, MAX_REQUEST_BYTES, MAX_REQUEST_BYTES_V2, MAX_RESPONSE_FRAME_BYTES, PROTOCOL,
    PROTOCOL_V2,
};
use palisade_types::AuthorKey;
use palisade_types::ParsedEnvelope;

/// Runs one input.
pub fn run(data: &[u8]) {
    if let Ok(req) = decode_body::<SyncRequest>(data) {
        assert_eq!(encode_body(&req), data, "sync request decode is not canonical");
        if let SyncRequest::Reconcile(r) = &req {
            reconcile_round_trip(r);
        }
    }
    if let Ok(res) = decode_body::<SyncResponse>(data) {
        assert_eq!(encode_body(&res), data, "sync response decode is not canonical");
        check_response(&res);
    }
    frames(data, &PROTOCOL);
    frames(data, &PROTOCOL_V2);
    proof(data);
}

/// A fixed set of heads with keys spread over the key space (and a cluster), so fuzzed
/// ranges cut it anywhere.
fn fixed_heads() -> Vec<WireHead> {
    let mut heads: Vec<WireHead> = (0..600u32)
        .map(|i| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&(i.wrapping_mul(0x9e37_79b9)).to_be_bytes());
            if i % 7 == 0 {
                k[0] = 0x80; // a cluster under one prefix
            }
            WireHead {
                author: AuthorKey(k),
                contiguous_seq: u64::from(i % 5),
                max_seq: u64::from(i % 5 + i % 2),
            }
        })
        .collect();
    heads.sort_by_key(|h| h.author);
    heads.dedup_by_key(|h| h.author);
    heads
}

fn reconcile_round_trip(request: &ReconcileRequest) {
    let server = fixed_heads();
    let answers = answer_sorted(&server, request);
    assert!(answers.len() <= request.queries.len(), "more answers than queries");
    // A request with no query decodes (the server refuses it as BadRequest before answering).
    assert!(request.queries.is_empty() || !answers.is_empty(), "the first query is always answered");
    let client: Vec<WireHead> = server.iter().copied().filter(|h| h.max_seq % 2 == 0).collect();
    if let Err(why) = follow_sorted(&client, request, &answers) {
        panic!("our own server's answers taken for abuse: {why}");
    }
    let _ = follow_sorted(&client, request, &answers[..answers.len() / 2]);
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
        SyncResponse::Reconciled(answers) => {
            assert!(answers.len() <= MAX_QUERIES_PER_REQUEST);
            for a in answers.iter() {
                match a {
                    RangeAnswer::Split(parts) => assert!(parts.len() <= SPLIT_FANOUT),
                    RangeAnswer::Heads { heads, .. } => assert!(heads.len() <= MAX_HEADS_PER_RESPONSE),
                    RangeAnswer::Equal => {}
                }
            }
        }
    }
}

/// The frame layer: `u32 LE length ++ body`, read by the real codec from an in-memory stream,
/// on a sync/1 or a sync/2 stream.
fn frames(data: &[u8], protocol: &libp2p::StreamProtocol) {
    let mut codec = SyncCodec::default();
    let mut io = futures::io::Cursor::new(data.to_vec());
    if let Ok(req) = block_on(codec.read_request(protocol, &mut io)) {
        let used = frame_len(data);
        let cap = if *protocol == PROTOCOL { MAX_REQUEST_BYTES } else { MAX_REQUEST_BYTES_V2 };
        assert!(used - 4 <= cap, "read a request frame over the cap");
        if *protocol == PROTOCOL {
            assert!(!matches!(req, SyncRequest::Reconcile(_)), "a sync/1 stream read a sync/2 message");
        }
        let mut out = futures::io::Cursor::new(Vec::new());
        match block_on(codec.write_request(protocol, &mut out, req)) {
            Ok(()) => {
                assert_eq!(out.get_ref().as_slice(), &data[..used], "request frame does not round-trip")
            }
            Err(e) => panic!("a request we read cannot be written back: {e}"),
        }
    }
    let mut io = futures::io::Cursor::new(data.to_vec());
    if let Ok(res) = block_on(codec.read_response(protocol, &mut io)) {
        let used = frame_len(data);
        assert!(used - 4 <= MAX_RESPONSE_FRAME_BYTES, "read a response frame over the cap");
        check_response(&res);
        let mut out = futures::io::Cursor::new(Vec::new());
        match block_on(codec.write_response(protocol, &mut out, res)) {
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
