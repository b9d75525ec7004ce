//! The middleware every request passes: the bearer token (TCP), the API's own rate and
//! concurrency limits, the request deadline, per-route metrics of every answer (whatever
//! layer produced it), and panic catching.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::error;

use crate::error::ApiError;
use crate::metrics::{ApiMetrics, RequestLabels, RouteLabels};
use crate::server::AppState;

/// Constant-time comparison of two byte strings.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization` value: the scheme name is case-insensitive (RFC 9110
/// §11.1), the token follows one or more spaces.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether `host` (a Host header or an Origin's authority: name or address, optional port)
/// names this machine's loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [::1]:port or [::1]
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                n
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The TCP listener answers only requests addressed to a loopback name and not sent by a
/// web page of another origin: a browser tricked by DNS rebinding (`Host: evil.example`
/// resolving to 127.0.0.1) or a cross-site request gets 403 before the token is even read.
pub(crate) async fn loopback_only(req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !is_loopback_host(host) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            format!("Host {host:?} is not a loopback name; the admin API answers only localhost, 127.0.0.0/8 and [::1]"),
        )
        .into_response();
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
        if !is_loopback_host(authority) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!("Origin {origin:?} is not this machine; the admin API does not answer web pages of other origins"),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// The TCP listener's bearer token, checked before routing (so before any body is read).
pub(crate) async fn require_bearer(token: &str, req: Request, next: Next) -> Response {
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
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
pub(crate) async fn rate_limit(State(s): State<AppState>, req: Request, next: Next) -> Response {
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

pub(crate) async fn request_timeout(State(s): State<AppState>, req: Request, next: Next) -> Response {
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

/// The matched route of a response, left by [`track`] for [`count`].
#[derive(Debug, Clone)]
struct CountedRoute(String);

/// Inside the router: tags the response with its matched route.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| CountedRoute(m.as_str().to_string()));
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// The request id header: taken from the client when it sends a sane one (to correlate its
/// logs with ours), made up otherwise, and always sent back.
const REQUEST_ID: &str = "x-request-id";

/// The client's request id if it is 1 to 64 characters of `[A-Za-z0-9._-]`, else a new one.
fn request_id(req: &Request) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let given = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|v| {
        (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    match given {
        Some(id) => id.to_string(),
        None => format!("{:016x}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
    }
}

/// The outermost layer: counts every answer in `palisade_api_requests_total` by route, method
/// and status, including those of the token check, the rate and concurrency limits and the
/// fallbacks (route `unmatched` when no route matched), and writes the access log (target
/// `palisade_api::access`: successful reads at debug, everything else at info) with the
/// request id it returns in `x-request-id`.
pub(crate) async fn count(State(metrics): State<ApiMetrics>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let id = request_id(&req);
    let start = Instant::now();
    let mut response = next.run(req).await;
    let status = response.status();
    let route = response.extensions().get::<CountedRoute>().map_or("unmatched", |r| r.0.as_str()).to_string();
    observe(&metrics, &route, Some(&method), status, start);
    let millis = start.elapsed().as_secs_f64() * 1000.0;
    let quiet = (method == Method::GET || method == Method::HEAD) && status.as_u16() < 400;
    if quiet {
        tracing::debug!(target: "palisade_api::access", request_id = %id, %method, route, status = status.as_u16(), millis, "request");
    } else {
        tracing::info!(target: "palisade_api::access", request_id = %id, %method, route, status = status.as_u16(), millis, "request");
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

/// Counts one answer. The method label is one of the standard methods or `other`: a method
/// is any token a client likes, and each label value is a series kept for the node's life.
pub(crate) fn observe(
    m: &ApiMetrics,
    route: &str,
    method: Option<&Method>,
    status: StatusCode,
    start: Instant,
) {
    m.requests
        .get_or_create(&RequestLabels {
            route: route.to_string(),
            method: method_label(method).to_string(),
            status: status.as_u16(),
        })
        .inc();
    m.latency.get_or_create(&RouteLabels { route: route.to_string() }).observe(start.elapsed().as_secs_f64());
}

fn method_label(method: Option<&Method>) -> &str {
    match method {
        None => "unknown",
        Some(m) if is_standard(m) => m.as_str(),
        Some(_) => "other",
    }
}

fn is_standard(m: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ]
    .contains(m)
}

pub(crate) async fn not_found(req: Request) -> Response {
    ApiError::not_found(format!(
        "no endpoint {} {}; the endpoints are listed in /v1/openapi.json",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}

pub(crate) async fn method_not_allowed(req: Request) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}; see /v1/openapi.json", req.method(), req.uri().path()),
    )
    .into_response()
}

/// Turns a handler panic into a logged, counted JSON 500.
#[derive(Clone)]
pub(crate) struct PanicHandler {
    pub(crate) metrics: ApiMetrics,
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use prometheus_client::registry::Registry;
    use tower_http::catch_panic::CatchPanicLayer;

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
    fn only_loopback_hosts_pass() {
        for ok in ["localhost", "LOCALHOST:9741", "127.0.0.1", "127.1.2.3:80", "[::1]", "[::1]:9741"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:9741",
            "10.0.0.1",
            "[2001:db8::1]:80",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn secrets_compare_in_full() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }
}
