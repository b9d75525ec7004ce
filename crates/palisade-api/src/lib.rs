//! # palisade-api
//!
//! The node's local admin API and its typed client.
//!
//! The server ([`ApiServer`]) speaks HTTP/1.1 + JSON under `/v1`, on a Unix socket in the
//! data directory (mode 0600: file permissions are the access control, as for docker.sock
//! or geth's IPC) and optionally on a loopback TCP port that requires a bearer token written
//! at start to a 0600 file (bitcoind's cookie). Each listener caps its open connections
//! (503 beyond) and serves one request per connection, whose head it reads and judges
//! itself within `admin.header_timeout_secs` (408, 400, 414, 431 with the error body).
//! Every request passes a global rate limit (429), body caps (413
//! at once on a larger `Content-Length`), a body read timeout (408), a deadline (except the
//! streams: export, import, events) and a panic catcher (500, logged); every answer is
//! counted by route and status; errors are `{"error": {"code", "message"}}` naming the
//! field. The OpenAPI document is generated from the handlers ([`ApiDoc`]) and served at
//! `/v1/openapi.json`.
//!
//! [`ApiClient`] is the typed client the `palisade` CLI and the chaos harness use:
//!
//! ```no_run
//! # async fn demo() -> Result<(), palisade_api::ClientError> {
//! let api = palisade_api::ApiClient::unix("/var/lib/palisade/admin.sock");
//! let node = api.node().await?;
//! println!("{} has {} records", node.peer_id, node.records.total);
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

mod client;
pub mod config;
mod error;
mod extract;
mod head;
mod listen;
pub mod metrics;
mod middleware;
pub mod model;
mod openapi;
mod routes;
mod schema;
mod server;
mod strict_json;

pub use client::{
    ApiClient, ByteStream, EventStream, RawResponse, SseItem, Transport, DEFAULT_TIMEOUT, OWN_FEED_CHECK_WAIT,
};
pub use config::{ApiConfig, ApiLimits, TrustPolicy};
pub use error::{ApiError, ClientError, ServeError};
pub use head::{MAX_HEADERS, MAX_HEADER_BYTES, MAX_HEAD_BYTES, MAX_URI_BYTES};
pub use openapi::{document_json, ApiDoc};
pub use server::{ApiServer, ReadinessProbe, READINESS_SAMPLE, ROUTES, SHUTDOWN_GRACE};
