//! The guard: drop ledger, counters, limits.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use crate::error::ApiError;
use crate::extract::{page_limit, JsonBody, QueryParams};
use crate::model::{
    Counters, ErrorBody, IngestCounters, LedgerEntryView, LedgerPage, LedgerParams, LimitsView,
    SetLimitRequest,
};
use crate::server::AppState;

/// The drop ledger.
///
/// Entries (drops, throttles, penalties, disconnects, bans), oldest first.
/// Identical entries within a second are folded (their `count` grows). The ledger is a
/// bounded ring: old entries fall out.
#[utoipa::path(get, path = "/v1/guard/ledger", tag = "guard", params(LedgerParams),
    responses((status = 200, description = "Ledger entries", body = LedgerPage),
              (status = 400, description = "Bad limit or cursor", body = ErrorBody)))]
pub(crate) async fn ledger(
    State(s): State<AppState>,
    QueryParams(p): QueryParams<LedgerParams>,
) -> Result<Json<LedgerPage>, ApiError> {
    let limit = page_limit(p.limit)?;
    let entries: Vec<LedgerEntryView> =
        s.handle().guard().ledger(p.cursor, limit).into_iter().map(LedgerEntryView::from).collect();
    // `null` once the end is reached (a follower keeps its own cursor and asks again).
    let next_cursor = if entries.len() == limit { entries.last().map(|e| e.seq) } else { None };
    Ok(Json(LedgerPage { entries, next_cursor }))
}

/// Guard and ingest counters.
///
/// Totals by action and reason, and headline ingest counters (the same numbers as the
/// Prometheus metrics).
#[utoipa::path(get, path = "/v1/guard/counters", tag = "guard",
    responses((status = 200, description = "Counters", body = Counters)))]
pub(crate) async fn counters(State(s): State<AppState>) -> Json<Counters> {
    let i = s.handle().stats();
    Json(Counters {
        guard: s.handle().guard().counters(),
        ingest: IngestCounters {
            signatures_verified: i.signatures_verified,
            duplicates_before_verify: i.duplicates_before_verify,
            accepted: i.accepted,
            rejected: i.rejected,
            ignored: i.ignored,
        },
    })
}

fn limits_view(s: &AppState) -> Result<LimitsView, ApiError> {
    let limits = match serde_json::to_value(s.handle().guard().limits()) {
        Ok(serde_json::Value::Object(m)) => m,
        Ok(_) | Err(_) => return Err(ApiError::internal("the limits do not serialise as an object")),
    };
    Ok(LimitsView {
        limits,
        restart_only: palisade_guard::RESTART_ONLY_KEYS.iter().map(|k| k.to_string()).collect(),
    })
}

/// Every `[limits]` value in force.
#[utoipa::path(get, path = "/v1/limits", tag = "guard",
    responses((status = 200, description = "Limits", body = LimitsView)))]
pub(crate) async fn limits(State(s): State<AppState>) -> Result<Json<LimitsView>, ApiError> {
    limits_view(&s).map(Json)
}

/// Change one limit at run time.
///
/// Not persisted: edit the config file to keep it. The whole set is re-validated; keys in
/// `restart_only` are refused.
#[utoipa::path(put, path = "/v1/limits/{key}", tag = "guard", request_body = SetLimitRequest,
    params(("key" = String, Path, description = "Limit name, e.g. `peer_messages_per_sec` (the `limits.` prefix is optional)")),
    responses((status = 200, description = "Changed; all limits now in force", body = LimitsView),
              (status = 400, description = "Unknown key, bad value, or a restart-only key", body = ErrorBody)))]
pub(crate) async fn set_limit(
    State(s): State<AppState>,
    Path(key): Path<String>,
    JsonBody(req): JsonBody<SetLimitRequest>,
) -> Result<Json<LimitsView>, ApiError> {
    let text = match &req.value {
        serde_json::Value::String(v) => v.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Array(items) => {
            let mut parts = Vec::new();
            for item in items {
                match item {
                    serde_json::Value::String(v) => parts.push(v.clone()),
                    _ => return Err(ApiError::invalid_field("value", "a list must hold strings")),
                }
            }
            parts.join(",")
        }
        _ => return Err(ApiError::invalid_field("value", "must be a number, a string or a list of strings")),
    };
    s.handle()
        .guard()
        .set_limit(&key, &text)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_setting", e.to_string()))?;
    limits_view(&s).map(Json)
}
