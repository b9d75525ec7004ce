//! The Prometheus text endpoint on its own listener (`metrics.listen`, default
//! 127.0.0.1:9740), with token-free liveness and readiness for probes (`/health`, `/ready`:
//! what an orchestrator can reach without the admin socket or its token). One registry holds
//! libp2p's metrics and ours. The listener has the admin API's connection limits.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use palisade_api::{ApiServer, ReadinessProbe};
use prometheus_client::registry::Registry;
use tracing::info;

/// Serves `GET /metrics`, `/health` and `/ready` until the API server shuts down.
pub async fn serve(addr: SocketAddr, registry: Arc<Registry>, api: &mut ApiServer) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for metrics on {addr}; choose another address with --metrics-listen or metrics.listen, or \"off\"")
    })?;
    let addr = listener.local_addr().unwrap_or(addr);
    info!(%addr, "metrics endpoint listening on /metrics (probes: /health, /ready)");
    let probe = api.readiness_probe();
    let app = axum::Router::new()
        .route("/metrics", get(move |headers: axum::http::HeaderMap| metrics(registry.clone(), headers)))
        .route("/health", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/ready", get(move || ready(probe.clone())));
    api.serve_listener(listener, app, "metrics");
    Ok(())
}

/// OpenMetrics by default; the classic text format (0.0.4) for a scraper whose `Accept`
/// prefers `text/plain` (and does not name OpenMetrics).
async fn metrics(registry: Arc<Registry>, headers: axum::http::HeaderMap) -> axum::response::Response {
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let classic = accept.contains("text/plain") && !accept.contains("application/openmetrics-text");
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) if classic => (
            StatusCode::OK,
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            crate::process_metrics::to_classic_text(&body),
        )
            .into_response(),
        Ok(()) => (
            StatusCode::OK,
            [(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics encoding failed\n".to_string(),
        )
            .into_response(),
    }
}

/// 200 when ready, 503 with the reasons otherwise (the same checks as `/v1/ready`).
async fn ready(probe: ReadinessProbe) -> axum::response::Response {
    let r = probe.readiness().await;
    let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(r)).into_response()
}
