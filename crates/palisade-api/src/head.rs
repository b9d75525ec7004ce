//! The request head guard (issue 17): each connection's request head is read and judged
//! here, before hyper sees a byte of it.
//!
//! hyper answers what its parser refuses (a malformed request line or header, conflicting
//! `Content-Length`s, a head over its buffer) with its own empty-bodied 400/414/431, and a
//! head that does not arrive in time with a silent close; none of it reaches the router, so
//! none of it had the API's error body or was counted. The guard parses the head with the
//! same parser (`httparse`, the one hyper uses, with its default settings) and is at least
//! as strict as hyper on everything hyper checks after it: every head it lets through,
//! hyper accepts (a differential test holds it to that), and everything it refuses gets the
//! documented `{"error": {"code", "message"}}` answer and is counted in
//! `palisade_api_requests_total` (route `unmatched`).
//!
//! One request per connection: the guard can only judge the first head of a connection (the
//! end of a chunked body is hyper's to find), so hyper serves that request with keep-alive
//! off and answers `Connection: close`. The admin API is local and its client opens a
//! connection per request anyway; in exchange no connection outlives its request, and an
//! idle keep-alive connection cannot hold a slot.
//!
//! Work per connection is bounded: the head is at most [`MAX_HEAD_BYTES`] (beyond, 431 or
//! 414), it is parsed again only when a line ends (so a client that sends one byte at a time
//! costs one parse per line, not per byte), at most one empty line may precede the request
//! line, and it must arrive within `admin.header_timeout_secs` (408 when part of it came; a
//! connection that said nothing is closed without an answer, as it asked nothing).

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::ApiError;
use crate::metrics::ApiMetrics;

/// Longest request target (path and query) answered; beyond, 414 `uri_too_long`.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most bytes of header names and values in one request; beyond, 431 `headers_too_large`.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields in one request; beyond, 431 `headers_too_large`.
pub const MAX_HEADERS: usize = 64;

/// Longest request line: the target, the method and version (a method name is a handful of
/// bytes; 64 leaves room for extension methods) and the separators. A request line that has
/// not ended by then is 414.
const MAX_REQUEST_LINE_BYTES: usize = MAX_URI_BYTES + 64;
/// Longest head read: the request line, the header set with its separators (`": "` and
/// CRLF, four bytes a field) and the blank line. A head not complete by then is 431.
pub const MAX_HEAD_BYTES: usize = MAX_REQUEST_LINE_BYTES + MAX_HEADER_BYTES + MAX_HEADERS * 4 + 2;
/// Empty-line bytes allowed before the request line (RFC 9112 §2.2: one empty line, CRLF).
const MAX_LEADING_EMPTY_BYTES: usize = 2;

/// How long a refusal may take to write, and how long the guard then keeps reading (and
/// dropping) what the client still sends, so that closing with unread input does not reset
/// the connection before the client has read the answer (nginx's lingering close).
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes dropped while lingering.
const MAX_LINGER_BYTES: usize = 256 * 1024;

/// How far a head got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Head {
    /// More bytes are needed.
    Partial,
    /// The head is complete and hyper will accept it.
    Complete,
}

/// A head the guard refuses: the answer, and the request's method if it got that far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) error: ApiError,
    pub(crate) method: Option<Method>,
}

/// Judges the bytes read so far of a connection's first request.
pub(crate) fn judge(bytes: &[u8]) -> Result<Head, Refusal> {
    let leading = bytes.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
    if leading > MAX_LEADING_EMPTY_BYTES {
        return Err(refusal(bad_request("more than one empty line before the request line"), None));
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let parsed = req.parse(bytes);
    let method = req.method.and_then(|m| Method::from_bytes(m.as_bytes()).ok());
    match parsed {
        Ok(httparse::Status::Partial) => partial(bytes, leading).map_err(|e| refusal(e, method)),
        Ok(httparse::Status::Complete(_)) => {
            complete(&req).map(|()| Head::Complete).map_err(|e| refusal(e, method))
        }
        Err(e) => Err(refusal(parse_error(e, req.method.is_some()), method)),
    }
}

fn refusal(error: ApiError, method: Option<Method>) -> Refusal {
    Refusal { error, method }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(format!("malformed HTTP/1.1 request: {}", message.into()))
}

fn uri_too_long(len: usize) -> ApiError {
    ApiError::new(
        StatusCode::URI_TOO_LONG,
        "uri_too_long",
        format!(
            "the request target is {len} bytes; the limit is {MAX_URI_BYTES} (send large inputs in a body)"
        ),
    )
}

fn headers_too_large(what: String) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
        format!(
            "{what}; the limits are {MAX_HEADERS} fields and {MAX_HEADER_BYTES} bytes of names and values"
        ),
    )
}

/// An incomplete head is refused once it can no longer become a head the API answers.
fn partial(bytes: &[u8], leading: usize) -> Result<Head, ApiError> {
    let line = bytes.get(leading..).unwrap_or_default();
    let line_ended = line.contains(&b'\n');
    if !line_ended && line.len() > MAX_REQUEST_LINE_BYTES {
        return Err(uri_too_long(line.len()));
    }
    if bytes.len() >= MAX_HEAD_BYTES {
        return Err(headers_too_large(format!("the request head is over {MAX_HEAD_BYTES} bytes")));
    }
    Ok(Head::Partial)
}

/// The checks hyper makes after its parser (method, target, framing), at least as strictly.
fn complete(req: &httparse::Request<'_, '_>) -> Result<(), ApiError> {
    let target = req.path.unwrap_or_default();
    if target.len() > MAX_URI_BYTES {
        return Err(uri_too_long(target.len()));
    }
    let header_bytes: usize = req.headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(headers_too_large(format!("{} header fields, {header_bytes} bytes", req.headers.len())));
    }
    let method = req.method.unwrap_or_default();
    Method::from_bytes(method.as_bytes())
        .map_err(|_| bad_request(format!("method {method:?} is not a token")))?;
    Uri::try_from(target).map_err(|e| bad_request(format!("the request target is not a URI ({e})")))?;
    framing(req.headers, req.version == Some(1))
}

/// How the body is delimited must be unambiguous (RFC 9112 §6): `Transfer-Encoding: chunked`
/// (HTTP/1.1 only) or one `Content-Length` (repeated only with the same value), never both
/// (the request-smuggling shape, which RFC 9112 §6.1 lets a server refuse).
fn framing(headers: &[httparse::Header<'_>], http_11: bool) -> Result<(), ApiError> {
    let mut chunked = false;
    let mut length: Option<u64> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http_11 {
                return Err(bad_request("HTTP/1.0 has no Transfer-Encoding"));
            }
            if !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") || chunked {
                return Err(bad_request(
                    "the only transfer coding accepted is one `Transfer-Encoding: chunked`",
                ));
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let value = h.value.trim_ascii();
            let parsed = (!value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(value).ok()?.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| bad_request("Content-Length is not a decimal number of bytes"))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(bad_request("Content-Length headers disagree"));
            }
            length = Some(parsed);
        }
    }
    if chunked && length.is_some() {
        return Err(bad_request("both Transfer-Encoding and Content-Length; send one"));
    }
    Ok(())
}

fn parse_error(e: httparse::Error, method_read: bool) -> ApiError {
    match e {
        httparse::Error::TooManyHeaders => {
            headers_too_large(format!("more than {MAX_HEADERS} header fields"))
        }
        httparse::Error::Token if !method_read => bad_request("the method is not a token"),
        httparse::Error::Token => bad_request("the request target has a character a URI cannot"),
        httparse::Error::Version => bad_request("the version is not HTTP/1.0 or HTTP/1.1"),
        httparse::Error::HeaderName => bad_request("a header name has a character a token cannot"),
        httparse::Error::HeaderValue => bad_request("a header value has a control character"),
        httparse::Error::NewLine | httparse::Error::Status => bad_request("a line is not ended by CRLF"),
    }
}

/// Reads the first request head of `io` within `timeout`. Returns every byte read (the head
/// and whatever of the body came with it) for hyper to replay, or `None` when the connection
/// is done: closed by the client, silent until the timeout, or refused (answered here).
pub(crate) async fn read_head<I>(io: &mut I, timeout: Duration, metrics: &ApiMetrics) -> Option<Vec<u8>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut bytes = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 4096];
    let refusal = loop {
        let n = match tokio::time::timeout_at(deadline, io.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => n,
            Err(_) if bytes.iter().all(|b| matches!(b, b'\r' | b'\n')) => return None,
            Err(_) => break refusal(header_timeout(timeout), method_of(&bytes)),
        };
        let new = chunk.get(..n).unwrap_or_default();
        bytes.extend_from_slice(new);
        // A head completes, and a request line ends, only at a newline; the size limits
        // are checked whenever the bytes could have crossed them.
        if !new.contains(&b'\n') && bytes.len() <= MAX_REQUEST_LINE_BYTES {
            continue;
        }
        match judge(&bytes) {
            Ok(Head::Partial) => continue,
            Ok(Head::Complete) => return Some(bytes),
            Err(r) => break r,
        }
    };
    answer(io, &refusal, metrics, started).await;
    None
}

/// The method of a request line that got past its first space, if it is one.
fn method_of(bytes: &[u8]) -> Option<Method> {
    let line = bytes.get(bytes.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count()..)?;
    let end = line.iter().position(|&b| b == b' ')?;
    Method::from_bytes(line.get(..end)?).ok()
}

fn header_timeout(timeout: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "header_timeout",
        format!(
            "the request head did not arrive within {} s (admin.header_timeout_secs); send it at once",
            timeout.as_secs_f64()
        ),
    )
}

/// The wire form of a refusal: the API's error body, and the connection closes after it.
pub(crate) fn response_bytes(error: &ApiError) -> Vec<u8> {
    let body = serde_json::to_vec(&error.body()).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        error.status.as_u16(),
        error.status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Writes `refusal`, counts and logs it, and closes the connection gently.
async fn answer<I>(io: &mut I, refusal: &Refusal, metrics: &ApiMetrics, started: Instant)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let status = refusal.error.status;
    crate::middleware::observe(metrics, "unmatched", refusal.method.as_ref(), status, started);
    tracing::info!(
        target: "palisade_api::access",
        method = refusal.method.as_ref().map_or("-", Method::as_str),
        route = "unmatched",
        status = status.as_u16(),
        code = refusal.error.code,
        "request head refused: {}",
        refusal.error.message
    );
    let bytes = response_bytes(&refusal.error);
    let written = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        io.write_all(&bytes).await?;
        io.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        linger(io).await;
    }
}

/// Reads and drops what the client still sends, for at most [`LINGER`] and
/// [`MAX_LINGER_BYTES`], so its unread input does not turn the close into a reset.
async fn linger<I: AsyncRead + Unpin>(io: &mut I) {
    let mut sink = vec![0u8; 16 * 1024];
    let mut dropped = 0usize;
    let deadline = tokio::time::Instant::now() + LINGER;
    while dropped < MAX_LINGER_BYTES {
        match tokio::time::timeout_at(deadline, io.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => dropped += n,
            _ => return,
        }
    }
}

/// An IO that first replays the bytes the guard read, then reads from the connection.
pub(crate) struct Replay<I> {
    read: Vec<u8>,
    at: usize,
    io: I,
}

impl<I> Replay<I> {
    pub(crate) fn new(read: Vec<u8>, io: I) -> Replay<I> {
        Replay { read, at: 0, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Replay<I> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let left = this.read.get(this.at..).unwrap_or_default();
        if left.is_empty() {
            return std::pin::Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = left.len().min(buf.remaining());
        buf.put_slice(left.get(..n).unwrap_or_default());
        this.at += n;
        if this.at == this.read.len() {
            this.read = Vec::new();
            this.at = 0;
        }
        std::task::Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Replay<I> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests;
