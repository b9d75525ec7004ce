//! Anomaly state: one fingerprint's folded state, and lists by state.

use axum::extract::{Path, State};
use axum::Json;
use palisade_store::{AnomalyStatus, Store};
use palisade_types::{AnomalyState, Fingerprint, Statement};

use crate::error::ApiError;
use crate::extract::{page_limit, parse_field, QueryParams};
use crate::model::{AnomalyListParams, AnomalyPage, AnomalyReportSummary, AnomalyView, ErrorBody};
use crate::server::AppState;

fn view(store: &Store, st: &AnomalyStatus) -> Result<AnomalyView, ApiError> {
    let report = match &st.latest_report {
        Some(id) => store.get(id)?.and_then(|r| match &r.record.record().statement {
            Statement::Anomaly(a) => Some(AnomalyReportSummary {
                author: r.record.author(),
                source: a.source.to_string(),
                labels: a.labels.iter().map(|l| (l.key.to_string(), l.value.to_string())).collect(),
                severity_number: a.severity_number,
                severity_text: a.severity_text.to_string(),
                score: a.score.0,
                summary: a.summary.to_string(),
            }),
            _ => None,
        }),
        None => None,
    };
    Ok(AnomalyView {
        fingerprint: st.fingerprint.to_hex(),
        state: st.state.as_str().to_string(),
        events: st.events,
        last_event_ms: st.last_event_ms,
        last_event_id: st.last_event_id,
        latest_report: st.latest_report,
        report,
    })
}

/// One anomaly's state.
///
/// The deterministic fold of its reports and updates.
#[utoipa::path(get, path = "/v1/anomalies/{fingerprint}", tag = "anomalies",
    params(("fingerprint" = String, Path, description = "Anomaly fingerprint (64 hex)")),
    responses((status = 200, description = "The anomaly", body = AnomalyView),
              (status = 400, description = "Not a fingerprint", body = ErrorBody),
              (status = 404, description = "Unknown fingerprint", body = ErrorBody)))]
pub(crate) async fn get_anomaly(
    State(s): State<AppState>,
    Path(fingerprint): Path<String>,
) -> Result<Json<AnomalyView>, ApiError> {
    let fp: Fingerprint = parse_field("fingerprint", &fingerprint)?;
    let v = s
        .blocking(move |store| match store.anomaly_status(&fp)? {
            Some(st) => view(store, &st).map(Some),
            None => Ok(None),
        })
        .await?;
    v.map(Json).ok_or_else(|| ApiError::not_found(format!("no anomaly {fp} on this node")))
}

/// Anomalies by state.
///
/// Default `open`; `all` for every state. In fingerprint order.
#[utoipa::path(get, path = "/v1/anomalies", tag = "anomalies", params(AnomalyListParams),
    responses((status = 200, description = "Anomalies", body = AnomalyPage),
              (status = 400, description = "Bad state, limit or cursor", body = ErrorBody)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    QueryParams(p): QueryParams<AnomalyListParams>,
) -> Result<Json<AnomalyPage>, ApiError> {
    let limit = page_limit(p.limit)?;
    let state = match p.state.as_deref() {
        None => Some(AnomalyState::Open),
        Some("all") => None,
        Some(x) => Some(parse_field::<AnomalyState>("state", x)?),
    };
    let after = p.cursor.as_deref().map(|c| parse_field::<Fingerprint>("cursor", c)).transpose()?;
    let (anomalies, last) = s
        .blocking(move |store| {
            let (list, last) = store.anomaly_statuses(state, after.as_ref(), limit)?;
            let views = list.iter().map(|st| view(store, st)).collect::<Result<Vec<_>, _>>()?;
            Ok((views, last))
        })
        .await?;
    Ok(Json(AnomalyPage { anomalies, next_cursor: last.map(|f| f.to_hex()) }))
}
