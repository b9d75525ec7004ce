//! The server: listeners (Unix socket, optional loopback TCP with a bearer token), the
//! router, and the middleware every request passes (rate limit, auth, timeout, metrics,
//! panic catching).

use std::num::NonZeroU32;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use palisade_net::Handle;
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::{error, info, warn};

use crate::config::{ApiConfig, ApiLimits};
use crate::error::{ApiError, ServeError};
use crate::metrics::{ApiMetrics, RequestLabels, RouteLabels};
use crate::routes;

/// How long [`ApiServer::shutdown`] waits for open connections (SSE streams, exports).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often readiness is sampled into the `palisade_node_ready` gauge.
pub const READINESS_SAMPLE: Duration = Duration::from_secs(5);

/// Longest Unix socket path (sun_path is 108 bytes including the terminating NUL).
const MAX_SOCKET_PATH_BYTES: usize = 107;

pub(crate) struct Inner {
    pub(crate) handle: Handle,
    pub(crate) cfg: ApiConfig,
    pub(crate) metrics: ApiMetrics,
    pub(crate) started: Instant,
    pub(crate) started_ms: u64,
    pub(crate) sse_slots: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
    pub(crate) shutdown: CancellationToken,
    limiter: DefaultDirectRateLimiter,
    openapi: String,
}

/// Shared state of every handler. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) inner: Arc<Inner>,
}

impl AppState {
    pub(crate) fn limits(&self) -> &ApiLimits {
        &self.inner.cfg.limits
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.inner.handle
    }

    pub(crate) fn store(&self) -> &palisade_store::Store {
        self.inner.handle.store()
    }

    /// Runs store work on the blocking pool.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&palisade_store::Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store().clone();
        tokio::task::spawn_blocking(move || f(&store)).await?
    }
}

/// A running API server.
#[derive(Debug)]
pub struct ApiServer {
    socket_path: PathBuf,
    tcp_addr: Option<std::net::SocketAddr>,
    token_path: Option<PathBuf>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl ApiServer {
    /// Binds the Unix socket (mode 0600; a stale socket left by a crash is replaced, any
    /// other file at the path is refused) and, if configured, the loopback TCP listener with
    /// a fresh bearer token in `token_path` (mode 0600), registers the API metrics in
    /// `registry`, and starts serving. Returns once the listeners are bound.
    pub async fn start(
        cfg: ApiConfig,
        handle: Handle,
        registry: &mut Registry,
    ) -> Result<ApiServer, ServeError> {
        crate::config::validate_policies("admin.trust", &cfg.trust)?;
        if let Some(addr) = cfg.tcp_listen {
            if !addr.ip().is_loopback() {
                return Err(ServeError::NotLoopback(addr));
            }
        }
        let limits = &cfg.limits;
        let rate = NonZeroU32::new(limits.requests_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.burst_requests).unwrap_or(rate);
        let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(burst));
        let metrics = ApiMetrics::new(registry);
        let openapi = crate::openapi::document_json();
        let shutdown = CancellationToken::new();
        let unix = bind_unix(&cfg.socket_path)?;
        let tcp = match cfg.tcp_listen {
            Some(addr) => {
                Some(tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Io {
                    what: "cannot listen for the admin API on",
                    path: PathBuf::from(addr.to_string()),
                    source,
                })?)
            }
            None => None,
        };
        let tcp_addr = match &tcp {
            Some(l) => Some(l.local_addr().map_err(|source| ServeError::Io {
                what: "cannot read the address of",
                path: PathBuf::from("admin TCP listener"),
                source,
            })?),
            None => None,
        };
        let token = match tcp {
            Some(_) => Some(write_token(&cfg.token_path)?),
            None => None,
        };
        let socket_path = cfg.socket_path.clone();
        let token_path = token.as_ref().map(|_| cfg.token_path.clone());
        let state = AppState {
            inner: Arc::new(Inner {
                handle,
                sse_slots: Arc::new(Semaphore::new(cfg.limits.max_sse_subscribers)),
                in_flight: Arc::new(Semaphore::new(cfg.limits.max_concurrent_requests.max(1))),
                cfg,
                metrics,
                started: Instant::now(),
                started_ms: palisade_net::now_ms(),
                shutdown: shutdown.clone(),
                limiter,
                openapi,
            }),
        };
        let app = router(state.clone());
        let mut tasks = Vec::new();
        {
            // Keep `palisade_node_ready` and `palisade_connected_peers` current for alerts.
            let state = state.clone();
            let stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(READINESS_SAMPLE);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {
                            routes::node::readiness(&state).await;
                        }
                    }
                }
            }));
        }
        {
            let app = app.clone();
            let stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let served = axum::serve(unix, app.into_make_service())
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    error!(error = %e, "admin API (Unix socket) stopped with an error");
                }
            }));
        }
        if let (Some(listener), Some(token)) = (tcp, token) {
            let token = Arc::new(token);
            let app = app.layer(middleware::from_fn(move |req: Request, next: Next| {
                let token = token.clone();
                async move { require_bearer(&token, req, next).await }
            }));
            let stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let served = axum::serve(listener, app.into_make_service())
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    error!(error = %e, "admin API (TCP) stopped with an error");
                }
            }));
        }
        info!(
            socket = %socket_path.display(),
            tcp = tcp_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
            "admin API listening"
        );
        Ok(ApiServer { socket_path, tcp_addr, token_path, shutdown, tasks })
    }

    /// The Unix socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The bound TCP address, if the TCP listener is on.
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcp_addr
    }

    /// The token file, if the TCP listener is on.
    pub fn token_path(&self) -> Option<&Path> {
        self.token_path.as_deref()
    }

    /// Stops accepting, ends event streams, waits up to [`SHUTDOWN_GRACE`] for open
    /// requests, then removes the socket and token files.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                warn!("admin API connections still open after {SHUTDOWN_GRACE:?}; closing them");
                abort.abort();
            }
        }
        if let Err(e) = std::fs::remove_file(&self.socket_path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(path = %self.socket_path.display(), error = %e, "cannot remove the admin socket");
            }
        }
        if let Some(p) = &self.token_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Binds the socket at `path` with mode 0600 from the first moment: it is bound inside a
/// fresh 0700 directory next to `path`, chmod-ed, then renamed into place.
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    let io = |what: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| ServeError::Io { what, path: p, source }
    };
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH_BYTES {
        return Err(ServeError::PathTooLong { path: path.to_path_buf(), len });
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.file_type().is_socket() {
                return Err(ServeError::NotASocket { path: path.to_path_buf() });
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(ServeError::SocketInUse { path: path.to_path_buf() }),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    info!(path = %path.display(), "replacing a stale admin socket (left by a crash)");
                    std::fs::remove_file(path).map_err(io("cannot remove the stale socket", path))?;
                }
                Err(e) => return Err(io("cannot check the existing socket", path)(e)),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot inspect", path)(e)),
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let private = parent.join(format!(".palisade-sock-{}-{n}", std::process::id()));
    let tmp = private.join("s");
    let listener = if tmp.as_os_str().len() <= MAX_SOCKET_PATH_BYTES {
        let _ = std::fs::remove_dir_all(&private);
        std::fs::DirBuilder::new().mode(0o700).create(&private).map_err(io("cannot create", &private))?;
        let bound = std::os::unix::net::UnixListener::bind(&tmp)
            .map_err(io("cannot bind the admin socket", &tmp))
            .and_then(|l| {
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                    .map_err(io("cannot set permissions of", &tmp))?;
                std::fs::rename(&tmp, path).map_err(io("cannot move the admin socket to", path))?;
                Ok(l)
            });
        let _ = std::fs::remove_dir_all(&private);
        bound?
    } else {
        // Path too long for the detour; bind in place (the data directory is 0700).
        let l =
            std::os::unix::net::UnixListener::bind(path).map_err(io("cannot bind the admin socket", path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io("cannot set permissions of", path))?;
        l
    };
    listener.set_nonblocking(true).map_err(io("cannot configure", path))?;
    tokio::net::UnixListener::from_std(listener).map_err(io("cannot register", path))
}

/// Generates a 256-bit token and writes it (hex, one line) to `path` with mode 0600.
fn write_token(path: &Path) -> Result<String, ServeError> {
    use rand_core::RngCore;
    use std::io::Write;
    let mut raw = [0u8; 32];
    rand_core::OsRng.try_fill_bytes(&mut raw).map_err(|e| ServeError::Random(e.to_string()))?;
    let token = hex::encode(raw);
    let io = |what: &'static str| {
        let p = path.to_path_buf();
        move |source| ServeError::Io { what, path: p, source }
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot replace the token file")(e)),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("cannot create the token file"))?;
    writeln!(f, "{token}").map_err(io("cannot write the token file"))?;
    f.sync_all().map_err(io("cannot write the token file"))?;
    Ok(token)
}

/// Constant-time comparison of two byte strings.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_bearer(token: &str, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if same_secret(t.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong bearer token; read the current token from admin.token in the data directory (it changes at every start)",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the TCP admin listener needs `Authorization: Bearer <token>` with the token from admin.token in the data directory",
        )
        .into_response(),
    }
}

fn busy(s: &AppState) -> Response {
    let max = s.limits().max_concurrent_requests;
    let message =
        format!("{max} requests are in progress, the maximum (admin.max_concurrent_requests); retry shortly");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message).into_response()
}

/// The API's own limits: requests in progress (503 beyond) and the request rate (429).
async fn rate_limit(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let exempt = matches!(path, "/v1/health" | "/v1/ready");
    // Event streams have their own cap (`max_sse_subscribers`).
    let capped = !exempt && path != "/v1/events";
    let _in_flight = match capped.then(|| s.inner.in_flight.clone().try_acquire_owned()) {
        Some(Err(_)) => return busy(&s),
        Some(Ok(permit)) => Some(permit),
        None => None,
    };
    if !exempt && s.inner.limiter.check().is_err() {
        s.inner.metrics.rate_limited.inc();
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "the admin API allows {} requests per second (burst {}); slow down and retry",
                s.limits().requests_per_sec,
                s.limits().burst_requests
            ),
        )
        .into_response();
    }
    next.run(req).await
}

async fn request_timeout(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let limit = s.limits().request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {limit:?}; the node is overloaded, retry later"),
        )
        .into_response(),
    }
}

async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let method = req.method().clone();
    let start = Instant::now();
    let response = next.run(req).await;
    observe(&s.inner.metrics, route.as_deref().unwrap_or("unmatched"), &method, response.status(), start);
    response
}

fn observe(m: &ApiMetrics, route: &str, method: &Method, status: StatusCode, start: Instant) {
    m.requests
        .get_or_create(&RequestLabels {
            route: route.to_string(),
            method: method.as_str().to_string(),
            status: status.as_u16(),
        })
        .inc();
    m.latency.get_or_create(&RouteLabels { route: route.to_string() }).observe(start.elapsed().as_secs_f64());
}

async fn not_found(State(s): State<AppState>, req: Request) -> Response {
    let start = Instant::now();
    let e = ApiError::not_found(format!(
        "no endpoint {} {}; the endpoints are listed in /v1/openapi.json",
        req.method(),
        req.uri().path()
    ));
    observe(&s.inner.metrics, "unmatched", req.method(), e.status, start);
    e.into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}; see /v1/openapi.json", req.method(), req.uri().path()),
    )
    .into_response()
}

async fn openapi(State(s): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], s.inner.openapi.clone()).into_response()
}

/// Turns a handler panic into a logged, counted JSON 500.
#[derive(Clone)]
struct PanicHandler {
    metrics: ApiMetrics,
}

impl tower_http::catch_panic::ResponseForPanic for PanicHandler {
    type ResponseBody = axum::body::Body;

    fn response_for_panic(&mut self, panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        self.metrics.panics.inc();
        error!(panic = %what, "admin API handler panicked; answered 500");
        ApiError::internal(
            "the handler failed unexpectedly; this is a bug, the details are in the node's log",
        )
        .into_response()
    }
}

/// Every route: (method, path). The OpenAPI test checks each is documented.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/health"),
    ("get", "/v1/ready"),
    ("get", "/v1/node"),
    ("get", "/v1/peers"),
    ("post", "/v1/peers/dial"),
    ("post", "/v1/peers/{peer_id}/disconnect"),
    ("get", "/v1/bans"),
    ("post", "/v1/bans"),
    ("delete", "/v1/bans/{target}"),
    ("post", "/v1/records"),
    ("get", "/v1/records"),
    ("get", "/v1/records/{id}"),
    ("get", "/v1/feeds"),
    ("get", "/v1/feeds/{author}"),
    ("get", "/v1/equivocations"),
    ("get", "/v1/subjects/{digest}/verdict"),
    ("get", "/v1/anomalies"),
    ("get", "/v1/anomalies/{fingerprint}"),
    ("get", "/v1/export"),
    ("post", "/v1/import"),
    ("get", "/v1/guard/ledger"),
    ("get", "/v1/guard/counters"),
    ("get", "/v1/limits"),
    ("put", "/v1/limits/{key}"),
    ("get", "/v1/events"),
    ("get", "/v1/openapi.json"),
];

fn router(state: AppState) -> Router {
    let timed: Router<AppState> = Router::new()
        .route("/v1/health", get(routes::node::health))
        .route("/v1/ready", get(routes::node::ready))
        .route("/v1/node", get(routes::node::node_info))
        .route("/v1/peers", get(routes::peers::list))
        .route("/v1/peers/dial", post(routes::peers::dial))
        .route("/v1/peers/{peer_id}/disconnect", post(routes::peers::disconnect))
        .route("/v1/bans", get(routes::peers::bans).post(routes::peers::ban))
        .route("/v1/bans/{target}", delete(routes::peers::unban))
        .route("/v1/records", post(routes::records::submit).get(routes::records::query))
        .route("/v1/records/{id}", get(routes::records::get_record))
        .route("/v1/feeds", get(routes::records::feeds))
        .route("/v1/feeds/{author}", get(routes::records::feed))
        .route("/v1/equivocations", get(routes::records::equivocations))
        .route("/v1/subjects/{digest}/verdict", get(routes::verdict::verdict))
        .route("/v1/anomalies", get(routes::anomalies::list))
        .route("/v1/anomalies/{fingerprint}", get(routes::anomalies::get_anomaly))
        .route("/v1/guard/ledger", get(routes::guard::ledger))
        .route("/v1/guard/counters", get(routes::guard::counters))
        .route("/v1/limits", get(routes::guard::limits))
        .route("/v1/limits/{key}", put(routes::guard::set_limit))
        .route("/v1/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(state.clone(), request_timeout));
    // Streams: no overall deadline (they are bounded by size or end with the client).
    let streaming: Router<AppState> = Router::new()
        .route("/v1/export", get(routes::transfer::export))
        .route("/v1/import", post(routes::transfer::import))
        .route("/v1/events", get(routes::events::events));
    let metrics = state.inner.metrics.clone();
    timed
        .merge(streaming)
        .route_layer(CatchPanicLayer::custom(PanicHandler { metrics }))
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_a_json_500_and_the_server_lives_on() {
        use tower::ServiceExt;
        let metrics = ApiMetrics::new(&mut Registry::default());
        let app: Router = Router::new()
            .route("/boom", get(|| async { panic!("boom") as &'static str }))
            .route("/fine", get(|| async { "fine" }))
            .route_layer(CatchPanicLayer::custom(PanicHandler { metrics: metrics.clone() }));
        let req = || axum::http::Request::builder().uri("/boom").body(axum::body::Body::empty()).unwrap();
        let resp = app.clone().oneshot(req()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 10_000).await.unwrap();
        let err: crate::model::ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(err.error.code, "internal");
        assert_eq!(metrics.panics.get(), 1);
        let fine = axum::http::Request::builder().uri("/fine").body(axum::body::Body::empty()).unwrap();
        assert_eq!(app.oneshot(fine).await.unwrap().status(), StatusCode::OK);
    }

    #[test]
    fn secrets_compare_in_full() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }

    #[test]
    fn a_regular_file_at_the_socket_path_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin.sock");
        std::fs::write(&p, "precious").unwrap();
        assert!(matches!(bind_unix(&p), Err(ServeError::NotASocket { .. })));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "precious");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin.sock");
        // A socket file nobody listens on: what a crash leaves behind.
        drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
        assert!(p.exists());
        let live = bind_unix(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(bind_unix(&p), Err(ServeError::SocketInUse { .. })));
        drop(live);
        // No private directory is left behind.
        let leftovers: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("admin.sock")]);
    }

    #[test]
    fn token_files_are_0600_and_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin.token");
        let a = write_token(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let b = write_token(&p).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(std::fs::read_to_string(&p).unwrap().trim(), b);
    }
}
