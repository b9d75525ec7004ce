//! `GET /v1/backup`: an online backup of the node (records, bans, peer book, signing
//! history) as the checksummed NDJSON document of `palisade_store::BackupStream`, streamed
//! chunk by chunk from the blocking pool (memory: one page of records).

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use palisade_store::BackupStream;

use crate::error::ApiError;
use crate::model::ErrorBody;
use crate::server::AppState;

/// Back up the node.
///
/// The node's records, bans, peer book and signing history as one NDJSON document (format
/// `palisade-backup` version 1: a `header` line, `record` lines with the signed envelopes in
/// base64, `ban` and `peer` lines, a `signing_history` line and an `end` line with the counts
/// and the blake3 of every byte before it; docs/operations.md describes it). Taken online:
/// it holds every record acknowledged before it started. `palisade backup create FILE` writes
/// it to a file and checks it; `palisade backup restore FILE` restores it into a stopped
/// node's empty data directory. A body without its `end` line was cut short: retry.
#[utoipa::path(get, path = "/v1/backup", tag = "node",
    responses((status = 200, description = "The backup document (NDJSON)", content_type = "application/x-ndjson", body = String),
              (status = 503, description = "The node is shutting down", body = ErrorBody)))]
pub(crate) async fn backup(State(s): State<AppState>) -> Result<Response, ApiError> {
    let handle = s.handle().clone();
    let signing = {
        let handle = handle.clone();
        Box::new(move || handle.signing_highest())
    };
    let stream = BackupStream::new(handle.store().clone(), handle.author(), signing, palisade_net::now_ms());
    let shutdown = s.inner.shutdown.clone();
    let chunks = futures::stream::try_unfold(Some(stream), move |state| {
        let shutdown = shutdown.clone();
        async move {
            let Some(mut stream) = state else { return Ok(None) };
            if shutdown.is_cancelled() {
                return Err(std::io::Error::other("the node is shutting down; backup cut short"));
            }
            let (chunk, stream) = tokio::task::spawn_blocking(move || (stream.next_chunk(), stream))
                .await
                .map_err(std::io::Error::other)?;
            match chunk.map_err(std::io::Error::other)? {
                Some(bytes) => Ok(Some((bytes::Bytes::from(bytes), Some(stream)))),
                None => Ok(None),
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(chunks)).into_response())
}
