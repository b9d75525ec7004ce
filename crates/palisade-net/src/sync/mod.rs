//! Anti-entropy sync protocols `/palisade/sync/2` and `/palisade/sync/1` (request-response).
//!
//! A node finds which feed heads (author → highest contiguous seq) a peer holds that it lacks,
//! and pulls the missing seq ranges in bounded pages. Pulled records go through the same
//! ingest pipeline as gossip (minus forwarding). This is how a node that was down,
//! partitioned or newly joined catches up.
//!
//! sync/1 finds the differing heads by walking all of the peer's heads; sync/2 adds
//! [`SyncRequest::Reconcile`], range-based set reconciliation ([`reconcile`]), which costs
//! what differs instead of what is held. Both carry the same records requests. A node
//! offers sync/2 first and falls back to sync/1 for a peer that speaks only it.
//!
//! ## Framing
//! Each message is `u32 LE length ++ body`, where body is the bincode encoding (same
//! configuration as records: little-endian, fixed-width integers) of [`SyncRequest`] or
//! [`SyncResponse`]. A request is at most [`MAX_REQUEST_BYTES`], a response at most
//! [`MAX_RESPONSE_FRAME_BYTES`]; larger length prefixes are refused before allocating.
//! The byte layout is in `docs/protocol.md` and pinned by a golden test.

pub(crate) mod client;
pub mod reconcile;
pub(crate) mod serve;

use std::io;

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use bincode::{Decode, Encode};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use palisade_types::limits::MAX_ENVELOPE_BYTES;
use palisade_types::{AuthorKey, BoundedBytes, BoundedVec};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::SyncBytesLabels;
use reconcile::{RangeAnswer, ReconcileRequest, MAX_QUERIES_PER_REQUEST};

/// Protocol id of sync/1 (heads walk and records).
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/palisade/sync/1");
/// Protocol id of sync/2 (sync/1's messages plus reconciliation).
pub const PROTOCOL_V2: StreamProtocol = StreamProtocol::new("/palisade/sync/2");

/// Hard cap on feed heads per response page, whatever the config says.
pub const MAX_HEADS_PER_PAGE: usize = 4096;
/// Hard cap on records per response page.
pub const MAX_RECORDS_PER_PAGE: usize = 1024;
/// Hard cap on the record bytes of one response.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Largest request frame body on sync/1.
pub const MAX_REQUEST_BYTES: usize = 256;
/// Largest request frame body on sync/2 (a reconcile request of
/// [`MAX_QUERIES_PER_REQUEST`] bounded ranges is 1,420 bytes).
pub const MAX_REQUEST_BYTES_V2: usize = 2048;
/// Largest response frame body: records plus per-record length prefixes plus headers.
pub const MAX_RESPONSE_FRAME_BYTES: usize = MAX_RESPONSE_BYTES + MAX_RECORDS_PER_PAGE * 8 + 1024;

const _: () = assert!(MAX_HEADS_PER_PAGE * 48 + 64 < MAX_RESPONSE_FRAME_BYTES);
const _: () = assert!(4 + 32 + 8 + MAX_QUERIES_PER_REQUEST * 86 <= MAX_REQUEST_BYTES_V2);
// A reconcile response: the heads of a page plus every answer split in full.
const _: () = assert!(
    8 + MAX_HEADS_PER_PAGE * 48 + MAX_QUERIES_PER_REQUEST * (4 + 8 + 8 + reconcile::SPLIT_FANOUT * 57)
        < MAX_RESPONSE_FRAME_BYTES
);

type SyncConfig = Configuration<LittleEndian, Fixint, Limit<MAX_RESPONSE_FRAME_BYTES>>;

const fn sync_config() -> SyncConfig {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<MAX_RESPONSE_FRAME_BYTES>()
}

/// A sync request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum SyncRequest {
    /// Feed heads in author order, starting after `after`, at most `limit`.
    Heads {
        /// Resume after this author (from the previous page's `next_after`).
        after: Option<AuthorKey>,
        /// Most heads wanted (the server may send fewer).
        limit: u32,
    },
    /// Records of `author` with `from_seq <= seq <= to_seq`, in seq order, at most `limit`.
    Records {
        /// Whose feed.
        author: AuthorKey,
        /// First seq wanted.
        from_seq: u64,
        /// Last seq wanted.
        to_seq: u64,
        /// Most records wanted.
        limit: u32,
    },
    /// Range-based reconciliation of feed heads (sync/2 only).
    Reconcile(ReconcileRequest),
}

/// One author's feed head as advertised by sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct WireHead {
    /// The author.
    pub author: AuthorKey,
    /// Every seq up to this one is held.
    pub contiguous_seq: u64,
    /// Highest seq held.
    pub max_seq: u64,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Refusal {
    /// Too many of this peer's requests are in flight; retry later.
    Busy,
    /// The request is out of range (e.g. `from_seq > to_seq`, `limit == 0`).
    BadRequest,
    /// The server failed to read its store.
    Internal,
}

/// A sync response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum SyncResponse {
    /// A page of feed heads.
    Heads {
        /// Heads in author order.
        heads: BoundedVec<WireHead, MAX_HEADS_PER_PAGE>,
        /// Set when more heads follow: ask again with `after = next_after`.
        next_after: Option<AuthorKey>,
    },
    /// A page of records (encoded envelopes) in seq order.
    Records {
        /// The envelopes.
        records: BoundedVec<BoundedBytes<MAX_ENVELOPE_BYTES>, MAX_RECORDS_PER_PAGE>,
        /// Set when the server stopped early (page limits); ask again from the last seq + 1.
        truncated: bool,
    },
    /// The request was refused.
    Refused(Refusal),
    /// Answers to a reconcile request's queries, in order (sync/2 only); queries past the
    /// last answer were not answered (ask again).
    Reconciled(BoundedVec<RangeAnswer, MAX_QUERIES_PER_REQUEST>),
}

/// Encodes a request or response body (no frame header).
pub fn encode_body<T: Encode>(msg: &T) -> Vec<u8> {
    bincode::encode_to_vec(msg, sync_config()).unwrap_or_default()
}

/// Decodes a body, rejecting trailing bytes.
pub fn decode_body<T: Decode<()>>(bytes: &[u8]) -> io::Result<T> {
    let (msg, read) = bincode::decode_from_slice::<T, _>(bytes, sync_config())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("malformed sync message: {e}")))?;
    if read != bytes.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "trailing bytes after sync message"));
    }
    Ok(msg)
}

async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("sync frame of {len} bytes exceeds the maximum of {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, body: &[u8], max: usize) -> io::Result<()> {
    if body.is_empty() || body.len() > max {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "sync message too large to send"));
    }
    io.write_all(&(body.len() as u32).to_le_bytes()).await?;
    io.write_all(body).await?;
    io.close().await
}

/// The error a sync/1 stream gives for a sync/2 message: the peer speaks only sync/1.
pub(crate) const V1_ONLY: &str = "the peer speaks only /palisade/sync/1";

fn is_v2(protocol: &StreamProtocol) -> bool {
    *protocol == PROTOCOL_V2
}

fn protocol_label(protocol: &StreamProtocol) -> &'static str {
    if is_v2(protocol) {
        "sync/2"
    } else {
        "sync/1"
    }
}

/// The request-response codec with size caps, for both versions: sync/1 streams refuse
/// sync/2's messages. Counts the frame bytes it reads and writes when given the metric.
#[derive(Debug, Clone, Default)]
pub struct SyncCodec {
    bytes: Option<Family<SyncBytesLabels, Counter>>,
}

impl SyncCodec {
    /// A codec that counts frame bytes in `palisade_sync_bytes_total`.
    pub fn counting(bytes: Family<SyncBytesLabels, Counter>) -> Self {
        SyncCodec { bytes: Some(bytes) }
    }

    fn count(&self, protocol: &StreamProtocol, direction: &'static str, body_len: usize) {
        if let Some(family) = &self.bytes {
            let labels = SyncBytesLabels { protocol: protocol_label(protocol), direction };
            family.get_or_create(&labels).inc_by(4 + body_len as u64);
        }
    }
}

fn v1_only() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, V1_ONLY)
}

fn not_on_v1() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "a sync/2 message on a /palisade/sync/1 stream")
}

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncRequest> {
        let max = if is_v2(protocol) { MAX_REQUEST_BYTES_V2 } else { MAX_REQUEST_BYTES };
        let body = read_frame(io, max).await?;
        self.count(protocol, "received", body.len());
        match decode_body(&body)? {
            SyncRequest::Reconcile(_) if !is_v2(protocol) => Err(not_on_v1()),
            request => Ok(request),
        }
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncResponse> {
        let body = read_frame(io, MAX_RESPONSE_FRAME_BYTES).await?;
        self.count(protocol, "received", body.len());
        match decode_body(&body)? {
            SyncResponse::Reconciled(_) if !is_v2(protocol) => Err(not_on_v1()),
            response => Ok(response),
        }
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> io::Result<()> {
        if matches!(req, SyncRequest::Reconcile(_)) && !is_v2(protocol) {
            // The peer negotiated sync/1: the client falls back to the heads walk.
            return Err(v1_only());
        }
        let max = if is_v2(protocol) { MAX_REQUEST_BYTES_V2 } else { MAX_REQUEST_BYTES };
        let body = encode_body(&req);
        write_frame(io, &body, max).await?;
        self.count(protocol, "sent", body.len());
        Ok(())
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        res: SyncResponse,
    ) -> io::Result<()> {
        if matches!(res, SyncResponse::Reconciled(_)) && !is_v2(protocol) {
            return Err(v1_only());
        }
        let body = encode_body(&res);
        write_frame(io, &body, MAX_RESPONSE_FRAME_BYTES).await?;
        self.count(protocol, "sent", body.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_of_a_records_request() {
        let req = SyncRequest::Records { author: AuthorKey([0xaa; 32]), from_seq: 5, to_seq: 9, limit: 256 };
        let bytes = encode_body(&req);
        let expected =
            format!("01000000{}{}{}{}", "aa".repeat(32), "0500000000000000", "0900000000000000", "00010000");
        assert_eq!(hex::encode(&bytes), expected);
        assert_eq!(decode_body::<SyncRequest>(&bytes).unwrap(), req);
    }

    #[test]
    fn golden_bytes_of_a_heads_request_and_response() {
        let req = SyncRequest::Heads { after: None, limit: 512 };
        assert_eq!(hex::encode(encode_body(&req)), "000000000000020000");
        let res = SyncResponse::Heads {
            heads: BoundedVec::new(vec![WireHead {
                author: AuthorKey([1; 32]),
                contiguous_seq: 3,
                max_seq: 4,
            }])
            .unwrap(),
            next_after: None,
        };
        let expected = format!(
            "00000000{}{}{}{}00",
            "0100000000000000",
            "01".repeat(32),
            "0300000000000000",
            "0400000000000000"
        );
        assert_eq!(hex::encode(encode_body(&res)), expected);
    }

    #[test]
    fn over_long_frames_and_trailing_bytes_are_refused() {
        let mut bytes = encode_body(&SyncRequest::Heads { after: None, limit: 1 });
        bytes.push(0);
        assert!(decode_body::<SyncRequest>(&bytes).is_err());
        let frame = [0xff, 0xff, 0xff, 0x7f];
        let mut io = futures::io::Cursor::new(frame.to_vec());
        let err = futures::executor::block_on(read_frame(&mut io, MAX_REQUEST_BYTES)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn golden_bytes_of_sync_2_messages() {
        use reconcile::{HeadRange, RangeQuery, SubRange, Want};
        let req = SyncRequest::Reconcile(ReconcileRequest {
            nonce: [0x11; 32],
            queries: BoundedVec::new(vec![RangeQuery {
                range: HeadRange::ALL,
                want: Want::Compare([0x22; 16]),
            }])
            .unwrap(),
        });
        let expected =
            format!("02000000{}{}0000{}{}", "11".repeat(32), "0100000000000000", "00000000", "22".repeat(16));
        assert_eq!(hex::encode(encode_body(&req)), expected);
        assert_eq!(decode_body::<SyncRequest>(&hex::decode(&expected).unwrap()).unwrap(), req);

        let bounded = SyncRequest::Reconcile(ReconcileRequest {
            nonce: [0; 32],
            queries: BoundedVec::new(vec![RangeQuery {
                range: HeadRange { after: Some(AuthorKey([0xaa; 32])), upto: Some(AuthorKey([0xbb; 32])) },
                want: Want::Heads,
            }])
            .unwrap(),
        });
        let expected = format!(
            "02000000{}{}01{}01{}02000000",
            "00".repeat(32),
            "0100000000000000",
            "aa".repeat(32),
            "bb".repeat(32)
        );
        assert_eq!(hex::encode(encode_body(&bounded)), expected);

        let equal = SyncResponse::Reconciled(BoundedVec::new(vec![RangeAnswer::Equal]).unwrap());
        assert_eq!(hex::encode(encode_body(&equal)), "03000000010000000000000000000000");

        let split = SyncResponse::Reconciled(
            BoundedVec::new(vec![RangeAnswer::Split(
                BoundedVec::new(vec![
                    SubRange { upto: Some(AuthorKey([0xaa; 32])), count: 40, fingerprint: [0x33; 16] },
                    SubRange { upto: None, count: 2, fingerprint: [0x44; 16] },
                ])
                .unwrap(),
            )])
            .unwrap(),
        );
        let expected = format!(
            "03000000{}01000000{}01{}{}{}00{}{}",
            "0100000000000000",
            "0200000000000000",
            "aa".repeat(32),
            "2800000000000000",
            "33".repeat(16),
            "0200000000000000",
            "44".repeat(16)
        );
        assert_eq!(hex::encode(encode_body(&split)), expected);

        let heads = SyncResponse::Reconciled(
            BoundedVec::new(vec![RangeAnswer::Heads {
                heads: BoundedVec::new(vec![WireHead {
                    author: AuthorKey([1; 32]),
                    contiguous_seq: 3,
                    max_seq: 4,
                }])
                .unwrap(),
                more: true,
            }])
            .unwrap(),
        );
        let expected = format!(
            "03000000{}02000000{}{}{}{}01",
            "0100000000000000",
            "0100000000000000",
            "01".repeat(32),
            "0300000000000000",
            "0400000000000000"
        );
        assert_eq!(hex::encode(encode_body(&heads)), expected);
    }

    #[test]
    fn golden_fingerprints() {
        use reconcile::Accumulator;
        let nonce = [7u8; 32];
        let head = WireHead { author: AuthorKey([1; 32]), contiguous_seq: 3, max_seq: 4 };
        let mut one = Accumulator::default();
        one.add(&nonce, &head);
        assert_eq!(
            hex::encode(Accumulator::default().fingerprint(&nonce)),
            "f028603b7f7b64c3d4f4f50d42483071"
        );
        assert_eq!(hex::encode(one.fingerprint(&nonce)), "a09ae33a7a663046834abc1e13d6b199");
    }

    #[test]
    fn sync_1_streams_refuse_sync_2_messages() {
        use libp2p::request_response::Codec;
        use reconcile::{HeadRange, RangeQuery, Want};
        let req = SyncRequest::Reconcile(ReconcileRequest {
            nonce: [0; 32],
            queries: BoundedVec::new(vec![RangeQuery { range: HeadRange::ALL, want: Want::Split }]).unwrap(),
        });
        let mut codec = SyncCodec::default();
        let mut out = futures::io::Cursor::new(Vec::new());
        let err =
            futures::executor::block_on(codec.write_request(&PROTOCOL, &mut out, req.clone())).unwrap_err();
        assert_eq!((err.kind(), err.to_string()), (io::ErrorKind::Unsupported, V1_ONLY.to_string()));
        futures::executor::block_on(codec.write_request(&PROTOCOL_V2, &mut out, req)).unwrap();
        let frame = out.into_inner();
        let mut io = futures::io::Cursor::new(frame.clone());
        assert!(futures::executor::block_on(codec.read_request(&PROTOCOL, &mut io)).is_err());
        let mut io = futures::io::Cursor::new(frame);
        assert!(futures::executor::block_on(codec.read_request(&PROTOCOL_V2, &mut io)).is_ok());
    }
}
