//! The server: listeners (Unix socket, optional loopback TCP with a bearer token), the
//! router, and the middleware every request passes (rate limit, auth, timeout, metrics,
//! panic catching).

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
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
use tracing::{info, warn};

use crate::config::{ApiConfig, ApiLimits};
use crate::error::{ApiError, ServeError};
use crate::listen::{bind_unix, write_token, ConnLimits};
use crate::metrics::ApiMetrics;
use crate::middleware::{
    count, loopback_only, method_not_allowed, not_found, rate_limit, request_timeout, require_bearer, track,
    PanicHandler,
};
use crate::routes;

/// How long [`ApiServer::shutdown`] waits for open connections (SSE streams, exports).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often readiness is sampled into the `palisade_node_ready` gauge.
pub const READINESS_SAMPLE: Duration = Duration::from_secs(5);

pub(crate) struct Inner {
    pub(crate) handle: Handle,
    pub(crate) cfg: ApiConfig,
    pub(crate) metrics: ApiMetrics,
    pub(crate) started: Instant,
    pub(crate) started_ms: u64,
    pub(crate) sse_slots: Arc<Semaphore>,
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) limiter: DefaultDirectRateLimiter,
    /// `[admin.trust]`, replaceable at run time (SIGHUP) through [`ApiServer::set_trust`].
    pub(crate) trust: TrustPolicies,
    openapi: String,
}

/// The named trust policies, shared by the handlers and the server handle.
pub(crate) type TrustPolicies =
    Arc<std::sync::RwLock<std::collections::BTreeMap<String, crate::config::TrustPolicy>>>;

/// Shared state of every handler. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
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
    trust: TrustPolicies,
    state: AppState,
}

/// Computes `/v1/ready` for a probe served elsewhere (the metrics listener's `/ready`, which
/// needs no token). Cheap to clone.
#[derive(Clone)]
pub struct ReadinessProbe(AppState);

impl ReadinessProbe {
    /// The same answer as `GET /v1/ready`.
    pub async fn readiness(&self) -> crate::model::Readiness {
        routes::node::readiness(&self.0).await
    }
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
        let trust: TrustPolicies = Arc::new(std::sync::RwLock::new(cfg.trust.clone()));
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
                trust: trust.clone(),
            }),
        };
        let app = router(state.clone());
        let metrics = state.inner.metrics.clone();
        let conn_limits = ConnLimits {
            max_connections: state.limits().max_connections,
            header_timeout: state.limits().header_timeout,
        };
        // Outermost: every answer is counted, whichever layer gave it (the request heads
        // refused before routing are counted by the head guard, `head.rs`).
        let counted = |app: Router| app.layer(middleware::from_fn_with_state(metrics.clone(), count));
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
        tasks.push(tokio::spawn(crate::listen::serve(
            unix,
            counted(app.clone()),
            conn_limits,
            metrics.clone(),
            "unix",
            shutdown.clone(),
        )));
        if let (Some(listener), Some(token)) = (tcp, token) {
            let token = Arc::new(token);
            let app = app
                .layer(middleware::from_fn(move |req: Request, next: Next| {
                    let token = token.clone();
                    async move { require_bearer(&token, req, next).await }
                }))
                .layer(middleware::from_fn(loopback_only));
            tasks.push(tokio::spawn(crate::listen::serve(
                listener,
                counted(app),
                conn_limits,
                metrics.clone(),
                "tcp",
                shutdown.clone(),
            )));
        }
        info!(
            socket = %socket_path.display(),
            tcp = tcp_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
            "admin API listening"
        );
        Ok(ApiServer { socket_path, tcp_addr, token_path, shutdown, tasks, trust, state })
    }

    /// Replaces the trust policies (a config reload). A table that does not validate is
    /// refused and the policies in force stay.
    pub fn set_trust(
        &self,
        policies: std::collections::BTreeMap<String, crate::config::TrustPolicy>,
    ) -> Result<(), ServeError> {
        crate::config::validate_policies("admin.trust", &policies)?;
        *self.trust.write().unwrap_or_else(|p| p.into_inner()) = policies;
        Ok(())
    }

    /// A readiness probe for another listener.
    pub fn readiness_probe(&self) -> ReadinessProbe {
        ReadinessProbe(self.state.clone())
    }

    /// Serves `app` on `listener` with the API's connection limits (cap, head guard, one
    /// request per connection) and connection metrics (label `name`), until the API shuts
    /// down; heads the guard refuses are counted with the API's (route `unmatched`). For the metrics listener,
    /// which faces Prometheus and probes and must not be an fd sink either.
    pub fn serve_listener(&mut self, listener: tokio::net::TcpListener, app: Router, name: &'static str) {
        let limits = ConnLimits {
            max_connections: self.state.limits().max_connections,
            header_timeout: self.state.limits().header_timeout,
        };
        self.tasks.push(tokio::spawn(crate::listen::serve(
            listener,
            app,
            limits,
            self.state.inner.metrics.clone(),
            name,
            self.shutdown.clone(),
        )));
    }

    /// The trust policies in force.
    pub fn trust(&self) -> std::collections::BTreeMap<String, crate::config::TrustPolicy> {
        self.trust.read().unwrap_or_else(|p| p.into_inner()).clone()
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

async fn openapi(State(s): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], s.inner.openapi.clone()).into_response()
}

/// Every route: (method, path). The OpenAPI test checks each is documented.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/health"),
    ("get", "/v1/ready"),
    ("get", "/v1/node"),
    ("get", "/v1/store/usage"),
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
    ("get", "/v1/backup"),
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
        .route("/v1/store/usage", get(routes::node::store_usage))
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
        .route("/v1/backup", get(routes::backup::backup))
        .route("/v1/events", get(routes::events::events));
    let metrics = state.inner.metrics.clone();
    timed
        .merge(streaming)
        .route_layer(CatchPanicLayer::custom(PanicHandler { metrics }))
        .route_layer(middleware::from_fn(track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .with_state(state)
}
