//! Errors: what the API answers ([`ApiError`]), why the server could not start
//! ([`ServeError`]), and what the client saw ([`ClientError`]).

use std::path::PathBuf;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use palisade_net::NetError;
use palisade_store::StoreError;

use crate::model::{ErrorBody, ErrorDetail};

/// An error answer of the API: an HTTP status, a stable machine-readable `code` and a
/// message that says what to do. Serialised as `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable error code, e.g. `invalid_field`, `not_found`.
    pub code: &'static str,
    /// Human-readable explanation naming the offending field or value.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 `invalid_field`: the message starts with the field's name.
    pub fn invalid_field(field: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", format!("`{field}`: {message}"))
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413 `payload_too_large`.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds the limit of {limit} bytes"),
        )
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 503 `unavailable`.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code: self.code.to_string(), message: self.message.clone() } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, code = self.code, message = %self.message, "admin API error");
        }
        let mut response = (self.status, axum::Json(self.body())).into_response();
        match self.status {
            StatusCode::TOO_MANY_REQUESTS => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::SERVICE_UNAVAILABLE if self.code == "own_feed_check" => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::BadCursor(_) => ApiError::invalid_field("cursor", e),
            StoreError::BadQuery(_) => ApiError::bad_request(e.to_string()),
            StoreError::DiskLow { .. } => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage", e.to_string())
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<NetError> for ApiError {
    fn from(e: NetError) -> ApiError {
        match e {
            NetError::Stopped => ApiError::unavailable(e.to_string()),
            NetError::Invalid(v) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", v.to_string()),
            NetError::Sign(palisade_types::SignError::TooLarge { len, max }) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "record_too_large",
                format!("the signed record would be {len} bytes; the maximum is {max}; shorten text fields or list fewer findings"),
            ),
            // The request was right; the peer behind it did not answer (a gateway's 502).
            NetError::Dial { .. } => ApiError::new(StatusCode::BAD_GATEWAY, "dial_failed", e.to_string()),
            NetError::Store(s) => ApiError::from(s),
            NetError::OwnFeedCheck => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "own_feed_check", e.to_string())
            }
            NetError::OwnFeedBehind { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "own_feed_behind", e.to_string())
            }
            // The pipeline refused a record this node signed: the disk filled or the pipeline
            // stayed full in the moment between the checks and the write.
            NetError::Refused(palisade_net::Reason::DiskLow | palisade_net::Reason::StoreQuotaFull) => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage", e.to_string())
            }
            NetError::Refused(palisade_net::Reason::VerifyQueueFull) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", format!("{e}; retry shortly"))
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<palisade_guard::GuardError> for ApiError {
    fn from(e: palisade_guard::GuardError) -> ApiError {
        match e {
            palisade_guard::GuardError::BadDuration { .. } => ApiError::invalid_field("duration_secs", e),
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// Errors from a blocking task that ran store work.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::internal(format!("a storage task failed: {e}"))
    }
}

/// The API server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The socket path exists and is not a socket: refuse to delete someone's file.
    #[error("{path} exists and is not a Unix socket; move it away or set admin.socket to another path")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Another process answers on the socket.
    #[error("another process is serving the admin socket {path} (is another palisade running with this data directory?)")]
    SocketInUse {
        /// The path.
        path: PathBuf,
    },
    /// The socket path is longer than a Unix socket address allows.
    #[error("admin socket path {path} is too long for a Unix socket ({len} bytes, at most 107); use a shorter --data-dir or set admin.socket")]
    PathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path or address.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The TCP listener address is not loopback.
    #[error(
        "admin TCP listener {0} is not a loopback address; the admin API must never be exposed on a network"
    )]
    NotLoopback(std::net::SocketAddr),
    /// No randomness for the token.
    #[error("no OS randomness for the admin token: {0}")]
    Random(String),
    /// Building the API metrics or config failed.
    #[error("invalid admin API setting: {0}")]
    Config(#[from] palisade_types::InvalidSetting),
}

/// What went wrong talking to the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node could not be reached (socket missing, connection refused, TCP error).
    #[error("cannot reach the node at {target}: {error}; is `palisade run` running with this data directory? (set --socket or PALISADE_SOCKET otherwise)")]
    Connect {
        /// Socket path or address.
        target: String,
        /// The I/O error (in the message, not a separate source, so it prints once).
        error: std::io::Error,
    },
    /// The connection broke or the HTTP exchange failed.
    #[error("talking to the node failed: {0}")]
    Http(String),
    /// The node did not answer in time.
    #[error("the node did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The node answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
    /// The answer was not what the client expected.
    #[error("unexpected answer from the node: {0}")]
    Decode(String),
    /// A local file or input problem.
    #[error("{0}")]
    Input(String),
}

impl ClientError {
    /// Whether the node could not be reached at all (the CLI exits 2 for these).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Connect { .. } | ClientError::Timeout(_) | ClientError::Http(_))
    }

    /// The HTTP status, if the node answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API error code, if the node answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}
