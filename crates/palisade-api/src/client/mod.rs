//! [`ApiClient`]: a typed async client of the admin API over the Unix socket (or loopback
//! TCP with the bearer token). One HTTP/1.1 connection per request: the API is local and
//! cheap to connect to, and a connection never outlives a failure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{header, Method, Request, Response};
use hyper_util::rt::TokioIo;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ClientError;
use crate::model::*;

mod stream;

pub use stream::{ByteStream, EventStream, SseItem};

type ReqBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// Characters escaped in a path segment (`:` stays, so `sha256:…` and `peer:…` read well).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'?')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%');

/// Default deadline of ordinary requests.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a submission waits out a node's own-feed check at start (`503 own_feed_check`;
/// the node's window, `network.own_feed_check_secs`, is 5 s by default and at most 300).
pub const OWN_FEED_CHECK_WAIT: Duration = Duration::from_secs(60);

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn query_string<T: Serialize>(params: &T) -> Result<String, ClientError> {
    let q = serde_urlencoded::to_string(params).map_err(|e| ClientError::Input(e.to_string()))?;
    Ok(if q.is_empty() { q } else { format!("?{q}") })
}

/// How to reach the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// The Unix socket (no token: file permissions guard it).
    Unix(PathBuf),
    /// The loopback TCP listener with its bearer token.
    Tcp {
        /// Address.
        addr: SocketAddr,
        /// Token from `admin.token`.
        token: String,
    },
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Unix(p) => write!(f, "{}", p.display()),
            Transport::Tcp { addr, .. } => write!(f, "http://{addr}"),
        }
    }
}

/// A typed client of the admin API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiClient {
    transport: Transport,
    timeout: Duration,
}

/// A raw answer: status and body bytes.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl RawResponse {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// The error code of an error answer.
    pub fn error_code(&self) -> Option<String> {
        serde_json::from_slice::<ErrorBody>(&self.body).ok().map(|b| b.error.code)
    }
}

impl ApiClient {
    /// A client of the Unix socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> ApiClient {
        ApiClient { transport: Transport::Unix(path.into()), timeout: DEFAULT_TIMEOUT }
    }

    /// A client of the loopback TCP listener.
    pub fn tcp(addr: SocketAddr, token: impl Into<String>) -> ApiClient {
        ApiClient { transport: Transport::Tcp { addr, token: token.into() }, timeout: DEFAULT_TIMEOUT }
    }

    /// A TCP client reading the token from `admin.token`.
    pub fn tcp_with_token_file(addr: SocketAddr, token_file: &Path) -> Result<ApiClient, ClientError> {
        let token = std::fs::read_to_string(token_file).map_err(|e| {
            ClientError::Input(format!("cannot read the token file {}: {e}", token_file.display()))
        })?;
        Ok(ApiClient::tcp(addr, token.trim()))
    }

    /// Sets the deadline of ordinary requests (streams only bound connecting).
    pub fn with_timeout(mut self, timeout: Duration) -> ApiClient {
        self.timeout = timeout;
        self
    }

    /// How this client reaches the node.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<ReqBody>, ClientError> {
        let target = self.transport.to_string();
        let connect_err = |error| ClientError::Connect { target: target.clone(), error };
        let sender = match &self.transport {
            Transport::Unix(p) => {
                http1(tokio::net::UnixStream::connect(p).await.map_err(connect_err)?).await?
            }
            Transport::Tcp { addr, .. } => {
                http1(tokio::net::TcpStream::connect(addr).await.map_err(connect_err)?).await?
            }
        };
        Ok(sender)
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        content_type: Option<&str>,
    ) -> Result<Request<ReqBody>, ClientError> {
        let mut b = Request::builder().method(method).uri(path).header(header::HOST, "localhost");
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        if let Transport::Tcp { token, .. } = &self.transport {
            b = b.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        b.body(body).map_err(|e| ClientError::Input(format!("bad request: {e}")))
    }

    async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>, ClientError> {
        let req = self.build(method, path, body, content_type)?;
        let mut sender = self.connect().await?;
        sender.send_request(req).await.map_err(|e| ClientError::Http(e.to_string()))
    }

    fn full(body: Vec<u8>) -> ReqBody {
        Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync()
    }

    /// Sends a request and reads the whole answer, whatever its status (for tests and tools
    /// that inspect error answers). `body` is sent as JSON if given.
    pub async fn request_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        let ct = body.as_ref().map(|_| "application/json");
        self.request_raw_as(method, path, body, ct).await
    }

    /// [`request_raw`](Self::request_raw) with the body's `Content-Type` given (`None`: no
    /// header), e.g. `application/x-ndjson` for an import.
    pub async fn request_raw_as(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        ct: Option<&str>,
    ) -> Result<RawResponse, ClientError> {
        let fut = async {
            let resp = self.send_with(method, path, Self::full(body.unwrap_or_default()), ct).await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body =
                resp.into_body().collect().await.map_err(|e| ClientError::Http(e.to_string()))?.to_bytes();
            Ok(RawResponse { status, headers, body })
        };
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| ClientError::Timeout(self.timeout))?
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let raw = self.request_raw(method, path, body).await?;
        decode(raw)
    }

    /// `GET path`, decoding a 2xx JSON answer as `T` (errors become [`ClientError::Api`]).
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Input(e.to_string()))?;
        self.call(Method::POST, path, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Input(e.to_string()))?;
        self.call(Method::PUT, path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::DELETE, path, None).await
    }

    // ---- node ----

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get_json("/v1/health").await
    }

    /// `GET /v1/ready`: the readiness answer, ready or not (a 503 is not an error here).
    pub async fn ready(&self) -> Result<Readiness, ClientError> {
        let raw = self.request_raw(Method::GET, "/v1/ready", None).await?;
        serde_json::from_slice(&raw.body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Waits until `/v1/ready` says ready, polling every 100 ms up to `within`.
    pub async fn wait_ready(&self, within: Duration) -> Result<Readiness, ClientError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let r = self.ready().await;
            match r {
                Ok(r) if r.ready => return Ok(r),
                _ if tokio::time::Instant::now() >= deadline => {
                    return r.and(Err(ClientError::Timeout(within)));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// `GET /v1/node`.
    pub async fn node(&self) -> Result<NodeInfo, ClientError> {
        self.get_json("/v1/node").await
    }

    /// `GET /v1/store/usage`.
    pub async fn store_usage(&self) -> Result<StoreUsageView, ClientError> {
        self.get_json("/v1/store/usage").await
    }

    // ---- peers ----

    /// `GET /v1/peers`.
    pub async fn peers(&self) -> Result<PeerList, ClientError> {
        self.get_json("/v1/peers").await
    }

    /// `POST /v1/peers/dial`.
    pub async fn dial(&self, addr: &str) -> Result<DialResponse, ClientError> {
        self.post_json("/v1/peers/dial", &DialRequest { addr: addr.to_string() }).await
    }

    /// `POST /v1/peers/{peer_id}/disconnect`.
    pub async fn disconnect(&self, peer_id: &str) -> Result<DisconnectResponse, ClientError> {
        self.post_json(&format!("/v1/peers/{}/disconnect", seg(peer_id)), &serde_json::json!({})).await
    }

    /// `GET /v1/bans`.
    pub async fn bans(&self) -> Result<BanList, ClientError> {
        self.get_json("/v1/bans").await
    }

    /// `POST /v1/bans`.
    pub async fn ban(&self, req: &BanRequest) -> Result<BanView, ClientError> {
        self.post_json("/v1/bans", req).await
    }

    /// `DELETE /v1/bans/{target}`.
    pub async fn unban(&self, target: &str) -> Result<UnbanResponse, ClientError> {
        self.delete_json(&format!("/v1/bans/{}", seg(target))).await
    }

    // ---- records ----

    /// `POST /v1/records` with a statement.
    /// Waits out the node's own-feed check at start (`503 own_feed_check`, at most
    /// [`OWN_FEED_CHECK_WAIT`]).
    pub async fn submit(&self, statement: &palisade_types::Statement) -> Result<SubmitResponse, ClientError> {
        self.waiting_for_own_feed_check(|| self.post_json("/v1/records", statement)).await
    }

    /// `POST /v1/records` with any JSON (e.g. read from a file); waits out the own-feed check
    /// like [`submit`](Self::submit).
    pub async fn submit_json(&self, statement: &serde_json::Value) -> Result<SubmitResponse, ClientError> {
        self.waiting_for_own_feed_check(|| self.post_json("/v1/records", statement)).await
    }

    /// Retries `call` while the node answers `503 own_feed_check` (it asks its peers for its
    /// own feed for a few seconds after a start), for at most [`OWN_FEED_CHECK_WAIT`].
    async fn waiting_for_own_feed_check<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let deadline = tokio::time::Instant::now() + OWN_FEED_CHECK_WAIT;
        loop {
            match call().await {
                Err(e) if e.code() == Some("own_feed_check") && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                other => return other,
            }
        }
    }

    /// `GET /v1/records/{id}`.
    pub async fn record(&self, id: &str) -> Result<RecordView, ClientError> {
        self.get_json(&format!("/v1/records/{}", seg(id))).await
    }

    /// `GET /v1/records?...`.
    pub async fn query(&self, filter: &RecordFilter) -> Result<RecordPage, ClientError> {
        self.get_json(&format!("/v1/records{}", query_string(filter)?)).await
    }

    /// `GET /v1/feeds/{author}`.
    pub async fn feed(&self, author: &str, page: &PageParams) -> Result<FeedView, ClientError> {
        self.get_json(&format!("/v1/feeds/{}{}", seg(author), query_string(page)?)).await
    }

    /// `GET /v1/feeds`.
    pub async fn feeds(&self, page: &PageParams) -> Result<FeedList, ClientError> {
        self.get_json(&format!("/v1/feeds{}", query_string(page)?)).await
    }

    /// `GET /v1/equivocations`.
    pub async fn equivocations(&self, page: &PageParams) -> Result<EquivocationPage, ClientError> {
        self.get_json(&format!("/v1/equivocations{}", query_string(page)?)).await
    }

    /// `GET /v1/subjects/{digest}/verdict`.
    pub async fn verdict(&self, digest: &str, params: &VerdictParams) -> Result<VerdictView, ClientError> {
        self.get_json(&format!("/v1/subjects/{}/verdict{}", seg(digest), query_string(params)?)).await
    }

    /// `GET /v1/anomalies/{fingerprint}`.
    pub async fn anomaly(&self, fingerprint: &str) -> Result<AnomalyView, ClientError> {
        self.get_json(&format!("/v1/anomalies/{}", seg(fingerprint))).await
    }

    /// `GET /v1/anomalies`.
    pub async fn anomalies(&self, params: &AnomalyListParams) -> Result<AnomalyPage, ClientError> {
        self.get_json(&format!("/v1/anomalies{}", query_string(params)?)).await
    }

    /// A GET whose answer body is streamed: the body once the status says success (the
    /// deadline covers the answer's head, not the stream).
    async fn get_streamed(&self, path: &str) -> Result<Incoming, ClientError> {
        let resp = tokio::time::timeout(
            self.timeout,
            self.send_with(Method::GET, path, Self::full(Vec::new()), None),
        )
        .await
        .map_err(|_| ClientError::Timeout(self.timeout))??;
        if !resp.status().is_success() {
            return Err(error_of(resp).await);
        }
        Ok(resp.into_body())
    }

    /// `GET /v1/export`: the NDJSON body as a byte stream.
    pub async fn export(&self, filter: &RecordFilter) -> Result<ByteStream, ClientError> {
        let path = format!("/v1/export{}", query_string(filter)?);
        Ok(ByteStream::new(self.get_streamed(&path).await?))
    }

    /// `GET /v1/backup`: the backup document as a byte stream.
    pub async fn backup(&self) -> Result<ByteStream, ClientError> {
        Ok(ByteStream::new(self.get_streamed("/v1/backup").await?))
    }

    /// `GET /v1/export`, collected into lines (checks the body was complete).
    pub async fn export_all(&self, filter: &RecordFilter) -> Result<Vec<ExportLine>, ClientError> {
        let mut s = self.export(filter).await?;
        let mut buf = Vec::new();
        while let Some(chunk) = s.chunk().await? {
            buf.extend_from_slice(&chunk);
        }
        if !buf.is_empty() && buf.last() != Some(&b'\n') {
            return Err(ClientError::Decode("the export ended in the middle of a line".into()));
        }
        buf.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).map_err(|e| ClientError::Decode(e.to_string())))
            .collect()
    }

    /// `POST /v1/import` with a body stream (no overall deadline: large imports take time).
    pub async fn import_stream<S>(&self, body: S) -> Result<ImportReport, ClientError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        use futures::TryStreamExt;
        let body = StreamBody::new(body.map_ok(Frame::data)).boxed_unsync();
        let resp = tokio::time::timeout(
            self.timeout,
            self.send_with(Method::POST, "/v1/import", body, Some("application/x-ndjson")),
        )
        .await
        .map_err(|_| ClientError::Timeout(self.timeout))??;
        if !resp.status().is_success() {
            return Err(error_of(resp).await);
        }
        let bytes =
            resp.into_body().collect().await.map_err(|e| ClientError::Http(e.to_string()))?.to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `POST /v1/import` with NDJSON bytes.
    pub async fn import_bytes(&self, ndjson: Vec<u8>) -> Result<ImportReport, ClientError> {
        self.import_stream(futures::stream::iter([Ok(Bytes::from(ndjson))])).await
    }

    /// `POST /v1/import` with export lines.
    pub async fn import_lines(&self, lines: &[ExportLine]) -> Result<ImportReport, ClientError> {
        let mut buf = Vec::new();
        for l in lines {
            serde_json::to_writer(&mut buf, l).map_err(|e| ClientError::Input(e.to_string()))?;
            buf.push(b'\n');
        }
        self.import_bytes(buf).await
    }

    // ---- guard ----

    /// `GET /v1/guard/ledger`.
    pub async fn ledger(&self, params: &LedgerParams) -> Result<LedgerPage, ClientError> {
        self.get_json(&format!("/v1/guard/ledger{}", query_string(params)?)).await
    }

    /// `GET /v1/guard/counters`.
    pub async fn counters(&self) -> Result<Counters, ClientError> {
        self.get_json("/v1/guard/counters").await
    }

    /// `GET /v1/limits`.
    pub async fn limits(&self) -> Result<LimitsView, ClientError> {
        self.get_json("/v1/limits").await
    }

    /// `PUT /v1/limits/{key}`.
    pub async fn set_limit(&self, key: &str, value: serde_json::Value) -> Result<LimitsView, ClientError> {
        self.put_json(&format!("/v1/limits/{}", seg(key)), &SetLimitRequest { value }).await
    }

    /// `GET /v1/openapi.json`.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/v1/openapi.json").await
    }

    // ---- events ----

    /// `GET /v1/events`: subscribes (returns once the node accepted the subscription, so
    /// events after this call are delivered).
    pub async fn events(&self, params: &EventParams) -> Result<EventStream, ClientError> {
        let path = format!("/v1/events{}", query_string(params)?);
        Ok(EventStream::new(self.get_streamed(&path).await?))
    }
}

/// An HTTP/1.1 client connection over `stream`, its connection task spawned.
async fn http1<S>(stream: S) -> Result<hyper::client::conn::http1::SendRequest<ReqBody>, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn decode<T: DeserializeOwned>(raw: RawResponse) -> Result<T, ClientError> {
    if (200..300).contains(&raw.status) {
        serde_json::from_slice(&raw.body).map_err(|e| ClientError::Decode(e.to_string()))
    } else {
        Err(api_error(raw.status, &raw.body))
    }
}

fn api_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => ClientError::Api { status, code: b.error.code, message: b.error.message },
        Err(_) => ClientError::Api {
            status,
            code: "http".into(),
            message: String::from_utf8_lossy(body.get(..body.len().min(500)).unwrap_or_default())
                .into_owned(),
        },
    }
}

async fn error_of(resp: Response<Incoming>) -> ClientError {
    let status = resp.status().as_u16();
    match resp.into_body().collect().await {
        Ok(b) => api_error(status, &b.to_bytes()),
        Err(e) => ClientError::Http(e.to_string()),
    }
}
