//! Anti-entropy sync protocol `/palisade/sync/1` (request-response).
//!
//! A node asks a peer for its feed heads (author → highest contiguous seq), compares them
//! with its own, and pulls missing seq ranges in bounded pages. Pulled records go through
//! the same ingest pipeline as gossip (minus forwarding). This is how a node that was down,
//! partitioned or newly joined catches up.
//!
//! ## Framing
//! Each message is `u32 LE length ++ body`, where body is the bincode encoding (same
//! configuration as records: little-endian, fixed-width integers) of [`SyncRequest`] or
//! [`SyncResponse`]. A request is at most [`MAX_REQUEST_BYTES`], a response at most
//! [`MAX_RESPONSE_FRAME_BYTES`]; larger length prefixes are refused before allocating.
//! The byte layout is in `docs/protocol.md` and pinned by a golden test.

pub(crate) mod client;
pub(crate) mod serve;

use std::io;

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use bincode::{Decode, Encode};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use palisade_types::limits::MAX_ENVELOPE_BYTES;
use palisade_types::{AuthorKey, BoundedBytes, BoundedVec};

/// Protocol id.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/palisade/sync/1");

/// Hard cap on feed heads per response page, whatever the config says.
pub const MAX_HEADS_PER_PAGE: usize = 4096;
/// Hard cap on records per response page.
pub const MAX_RECORDS_PER_PAGE: usize = 1024;
/// Hard cap on the record bytes of one response.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Largest request frame body.
pub const MAX_REQUEST_BYTES: usize = 256;
/// Largest response frame body: records plus per-record length prefixes plus headers.
pub const MAX_RESPONSE_FRAME_BYTES: usize = MAX_RESPONSE_BYTES + MAX_RECORDS_PER_PAGE * 8 + 1024;

const _: () = assert!(MAX_HEADS_PER_PAGE * 48 + 64 < MAX_RESPONSE_FRAME_BYTES);

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

/// The request-response codec with size caps.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncCodec;

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncRequest> {
        decode_body(&read_frame(io, MAX_REQUEST_BYTES).await?)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncResponse> {
        decode_body(&read_frame(io, MAX_RESPONSE_FRAME_BYTES).await?)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> io::Result<()> {
        write_frame(io, &encode_body(&req), MAX_REQUEST_BYTES).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: SyncResponse,
    ) -> io::Result<()> {
        write_frame(io, &encode_body(&res), MAX_RESPONSE_FRAME_BYTES).await
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
}
