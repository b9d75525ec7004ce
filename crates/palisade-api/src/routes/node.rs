//! Health, readiness, node info.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use palisade_types::RecordKind;

use crate::error::ApiError;
use crate::model::{
    ErrorBody, ErrorDetail, FeedHeadView, Health, NodeInfo, Readiness, RecordCounts, StoreUsageView,
};
use crate::server::AppState;

/// Liveness: the server answers.
#[utoipa::path(get, path = "/v1/health", tag = "node",
    responses((status = 200, description = "The API server is alive", body = Health)))]
pub(crate) async fn health() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Readiness.
///
/// Store open, swarm listening, and at least one peer if bootstrap peers are configured.
/// 503 (same body, with `error`) until then.
#[utoipa::path(get, path = "/v1/ready", tag = "node",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready yet", body = Readiness),
    ))]
pub(crate) async fn ready(State(s): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let r = readiness(&s).await;
    let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(r))
}

/// Computes readiness (also sampled into `palisade_node_ready`).
pub(crate) async fn readiness(s: &AppState) -> Readiness {
    let store_open = s.blocking(|store| store.record_counts().map_err(ApiError::from)).await.is_ok();
    let info = s.handle().info().await.ok();
    let listening = info.as_ref().is_some_and(|i| !i.listen_addrs.is_empty());
    let connected_peers = info.as_ref().map(|i| i.connected_peers).unwrap_or(0);
    let bootstrap_configured = s.inner.cfg.bootstrap_configured;
    let mut missing = Vec::new();
    if !store_open {
        missing.push("the store does not answer");
    }
    if info.is_none() {
        missing.push("the network task is not running");
    } else if !listening {
        missing.push("the swarm has no listen address yet");
    }
    if bootstrap_configured && connected_peers == 0 {
        missing.push("no peer is connected yet (bootstrap peers are configured)");
    }
    if s.handle().own_feed_checking() {
        missing.push(
            "own_feed_check: asking peers for the head of this node's own feed before it signs \
             (network.own_feed_check_secs)",
        );
    }
    let disk_low = s.store().disk_low();
    if disk_low {
        missing.push(
            "disk_low: free disk space is below store.min_free_disk_bytes; new records are refused \
             (reads go on) until space is freed",
        );
    }
    let store_failed = s.store().failure().is_some();
    if store_failed {
        missing.push("store_failed: the store failed an I/O operation; the node is stopping to restart");
    }
    let ready = missing.is_empty();
    let error = (!ready).then(|| ErrorDetail { code: "not_ready".into(), message: missing.join("; ") });
    s.inner.metrics.ready.set(i64::from(ready));
    s.inner.metrics.connected_peers.set(i64::try_from(connected_peers).unwrap_or(i64::MAX));
    let disk_free_bytes = s.store().disk_free_bytes();
    s.inner.metrics.disk_free_bytes.set(disk_free_bytes.map_or(0, |f| i64::try_from(f).unwrap_or(i64::MAX)));
    s.inner.metrics.disk_level.set(s.store().disk_level().as_gauge());
    s.inner.metrics.observe_store_usage(&s.store().usage());
    Readiness {
        ready,
        store_open,
        listening,
        bootstrap_configured,
        connected_peers,
        disk_low,
        disk_free_bytes,
        error,
    }
}

/// Identity, addresses, uptime, record counts and this node's feed head.
#[utoipa::path(get, path = "/v1/node", tag = "node",
    responses(
        (status = 200, description = "Node information", body = NodeInfo),
        (status = 503, description = "The network is stopping", body = ErrorBody),
    ))]
pub(crate) async fn node_info(State(s): State<AppState>) -> Result<Json<NodeInfo>, ApiError> {
    let info = s.handle().info().await?;
    let author = s.handle().author();
    let (records, head, authors) = s
        .blocking(move |store| {
            let counts = store.record_counts()?;
            let head = store.feed_head(&author)?;
            Ok((counts, head, store.author_count()))
        })
        .await?;
    let get = |k: RecordKind| records.get(&k).copied().unwrap_or(0);
    let counts = RecordCounts {
        attestation: get(RecordKind::Attestation),
        anomaly: get(RecordKind::Anomaly),
        anomaly_update: get(RecordKind::AnomalyUpdate),
        revocation: get(RecordKind::Revocation),
        total: records.values().sum(),
    };
    Ok(Json(NodeInfo {
        peer_id: info.peer_id,
        author,
        version: s.inner.cfg.version.clone(),
        listen_addrs: info.listen_addrs,
        external_addrs: info.external_addrs,
        uptime_secs: s.inner.started.elapsed().as_secs(),
        started_at_ms: s.inner.started_ms,
        records: counts,
        peers: info.connected_peers,
        authors: authors as u64,
        feed_head: head.map(FeedHeadView::from),
    }))
}

/// The store quota: bytes used against `store.max_bytes`, what was evicted and refused.
#[utoipa::path(get, path = "/v1/store/usage", tag = "node",
    responses(
        (status = 200, description = "The store's usage", body = StoreUsageView),
        (status = 500, description = "The store's size could not be read", body = ErrorBody),
    ))]
pub(crate) async fn store_usage(State(s): State<AppState>) -> Result<Json<StoreUsageView>, ApiError> {
    let (usage, size_on_disk_bytes) = s.blocking(|store| Ok((store.usage(), store.size_on_disk()?))).await?;
    s.inner.metrics.observe_store_usage(&usage);
    Ok(Json(StoreUsageView {
        bytes_used: usage.bytes_used,
        max_bytes: usage.max_bytes,
        size_on_disk_bytes,
        disk_free_bytes: s.store().disk_free_bytes(),
        quota_full: usage.quota_full,
        evicted_records: usage.evicted_records,
        evicted_bytes: usage.evicted_bytes,
        refused_quota_full: usage.refused_quota_full,
        refused_evicted: usage.refused_evicted,
        protected_authors: usage.protected_authors,
        compressed: usage.compressed,
        compactions: usage.compaction.done,
        compaction_failures: usage.compaction.failed,
        compactions_skipped_no_room: usage.compaction.skipped_no_room,
        compaction_reclaimed_bytes: usage.compaction.reclaimed_bytes,
        last_compaction_pause_ms: usage.compaction.last_pause_ms,
    }))
}
