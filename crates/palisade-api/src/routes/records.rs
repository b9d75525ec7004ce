//! Records: submit, get, query, feeds, equivocations.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use palisade_store::{Cursor, Query};
use palisade_types::{AnomalyState, AuthorKey, Fingerprint, RecordId, RecordKind, Statement};

use crate::error::ApiError;
use crate::extract::{
    from_value_strict, page_limit, parse_digest, parse_field, parse_json_value, read_body, QueryParams,
};
use crate::model::{
    EquivocationPage, EquivocationView, ErrorBody, FeedList, FeedSummary, FeedView, PageParams, RecordFilter,
    RecordPage, RecordView, SubmitResponse,
};
use crate::schema::StatementSchema;
use crate::server::AppState;

/// Submit a statement: signed by this node, stored durably, published.
///
/// Signs the statement as the next record of this node's feed, stores it durably (flushed
/// before the answer), then publishes it. The body is the unsigned statement; `kind`
/// selects the record kind. A revocation must name one of this node's own records that is
/// not revoked yet; an anomaly update must name a known fingerprint and a state the
/// anomaly can move to.
#[utoipa::path(post, path = "/v1/records", tag = "records", request_body = StatementSchema,
    responses(
        (status = 201, description = "Stored durably and published", body = SubmitResponse,
         headers(("location" = String, description = "/v1/records/{id}"))),
        (status = 400, description = "Bad JSON, missing, unknown or invalid field (the message names it)", body = ErrorBody),
        (status = 404, description = "Revocation target or anomaly fingerprint unknown", body = ErrorBody),
        (status = 409, description = "Revoking another author's or an already revoked record; a state change the anomaly cannot make", body = ErrorBody),
        (status = 408, description = "The body did not arrive within admin.body_timeout_secs", body = ErrorBody),
        (status = 413, description = "Body (or its declared Content-Length) larger than admin.max_body_bytes", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 507, description = "The disk is below store.min_free_disk_bytes: no new records until space is freed", body = ErrorBody),
    ))]
pub(crate) async fn submit(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, s.limits()).await?;
    let value = parse_json_value(&bytes)?;
    let statement = parse_statement(value)?;
    let me = s.handle().author();
    let check = statement.clone();
    s.blocking(move |store| precheck(store, &me, &check)).await?;
    // `Handle::submit` runs to completion even if this request is cancelled (client hang-up,
    // deadline), so a stored record always advances the feed.
    let kind = statement.kind();
    let receipt = s.handle().submit(statement).await?;
    let location = format!("/v1/records/{}", receipt.id);
    let body = SubmitResponse { id: receipt.id, seq: receipt.seq, kind, gossiped: receipt.gossiped };
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(body)).into_response())
}

/// Parses an unsigned statement: `kind` picks the type, the rest must match it exactly.
pub(crate) fn parse_statement(mut value: serde_json::Value) -> Result<Statement, ApiError> {
    let obj = value.as_object_mut().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            "the body must be a JSON object (an unsigned statement)",
        )
    })?;
    let kinds = "attestation, anomaly, anomaly_update or revocation";
    let kind = match obj.remove("kind") {
        None => return Err(ApiError::invalid_field("kind", format!("missing; one of {kinds}"))),
        Some(serde_json::Value::String(k)) => parse_field::<RecordKind>("kind", &k)?,
        Some(_) => return Err(ApiError::invalid_field("kind", format!("must be a string: {kinds}"))),
    };
    Ok(match kind {
        RecordKind::Attestation => Statement::Attestation(from_value_strict(value, "")?),
        RecordKind::Anomaly => Statement::Anomaly(from_value_strict(value, "")?),
        RecordKind::AnomalyUpdate => Statement::AnomalyUpdate(from_value_strict(value, "")?),
        RecordKind::Revocation => Statement::Revocation(from_value_strict(value, "")?),
    })
}

/// Checks that need the store: revocation targets and anomaly state moves.
fn precheck(store: &palisade_store::Store, me: &AuthorKey, st: &Statement) -> Result<(), ApiError> {
    match st {
        Statement::Revocation(r) => {
            let target = store.get(&r.target)?.ok_or_else(|| {
                ApiError::not_found(format!("`target`: no record {} on this node", r.target))
            })?;
            if target.record.author() != *me {
                return Err(ApiError::conflict(format!(
                    "`target`: record {} is by author {}, not by this node ({me}); only its author can revoke it",
                    r.target,
                    target.record.author()
                )));
            }
            if let Some(by) = target.revoked_by {
                return Err(ApiError::conflict(format!(
                    "`target`: record {} is already revoked by {by}",
                    r.target
                )));
            }
            if target.record.kind() == RecordKind::Revocation {
                return Err(ApiError::conflict("`target`: a revocation cannot be revoked"));
            }
            Ok(())
        }
        Statement::AnomalyUpdate(u) => {
            let status = store.anomaly_status(&u.fingerprint)?.ok_or_else(|| {
                ApiError::not_found(format!("`fingerprint`: no anomaly {} on this node", u.fingerprint))
            })?;
            if !status.state.can_become(u.state) {
                let allowed: Vec<&str> = [
                    palisade_types::AnomalyState::Open,
                    palisade_types::AnomalyState::Acknowledged,
                    palisade_types::AnomalyState::Resolved,
                    palisade_types::AnomalyState::Suppressed,
                ]
                .into_iter()
                .filter(|next| status.state.can_become(*next))
                .map(|next| next.as_str())
                .collect();
                return Err(ApiError::conflict(format!(
                    "`state`: anomaly {} is {}; it cannot become {} (from {} it can become: {})",
                    u.fingerprint,
                    status.state.as_str(),
                    u.state.as_str(),
                    status.state.as_str(),
                    allowed.join(", ")
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// One record by id.
///
/// The decoded statement plus the signed envelope in base64.
#[utoipa::path(get, path = "/v1/records/{id}", tag = "records",
    params(("id" = String, Path, description = "Record id (64 hex)")),
    responses((status = 200, description = "The record", body = RecordView),
              (status = 400, description = "Not a record id", body = ErrorBody),
              (status = 404, description = "Unknown id", body = ErrorBody)))]
pub(crate) async fn get_record(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RecordView>, ApiError> {
    let id: RecordId = parse_field("id", &id)?;
    let stored = s.blocking(move |store| Ok(store.get(&id)?)).await?;
    let stored = stored.ok_or_else(|| ApiError::not_found(format!("no record {id} on this node")))?;
    Ok(Json(RecordView::from_stored(&stored, true)))
}

/// Builds a store query from the filter parameters.
pub(crate) fn build_query(f: &RecordFilter, limit: usize) -> Result<Query, ApiError> {
    let mut q = Query { limit, ..Query::default() };
    q.kind = f.kind.as_deref().map(|k| parse_field::<RecordKind>("kind", k)).transpose()?;
    q.author = f.author.as_deref().map(|a| parse_field::<AuthorKey>("author", a)).transpose()?;
    q.subject = f.subject.as_deref().map(|d| parse_digest("subject", d)).transpose()?;
    q.fingerprint =
        f.fingerprint.as_deref().map(|x| parse_field::<Fingerprint>("fingerprint", x)).transpose()?;
    if let Some(src) = &f.source {
        if src.is_empty() || src.len() > palisade_types::limits::MAX_URI_BYTES {
            return Err(ApiError::invalid_field("source", "must be 1 to 1024 bytes"));
        }
        q.source = Some(src.clone());
    }
    if let Some(m) = f.min_severity {
        if !(1..=palisade_types::limits::MAX_SEVERITY_NUMBER).contains(&m) {
            return Err(ApiError::invalid_field("min_severity", format!("is {m}; allowed is 1..=24")));
        }
        q.min_severity = Some(m);
    }
    q.state = f.state.as_deref().map(|x| parse_field::<AnomalyState>("state", x)).transpose()?;
    q.since_ms = f.since_ms;
    q.until_ms = f.until_ms;
    if let (Some(a), Some(b)) = (f.since_ms, f.until_ms) {
        if a > b {
            return Err(ApiError::invalid_field("since_ms", format!("({a}) is after until_ms ({b})")));
        }
    }
    q.exclude_revoked = f.exclude_revoked.unwrap_or(false);
    q.cursor = f.cursor.as_deref().map(decode_cursor).transpose()?;
    Ok(q)
}

pub(crate) fn decode_cursor(c: &str) -> Result<Cursor, ApiError> {
    Cursor::decode(c).map_err(|e| ApiError::invalid_field("cursor", e))
}

/// Query records.
///
/// Records matching every given filter, one page at a time. The most selective filter
/// picks the index (author, subject, fingerprint, source, kind, else time); one call scans
/// a bounded number of entries, so a page may be short and still have a `next_cursor`.
#[utoipa::path(get, path = "/v1/records", tag = "records", params(RecordFilter),
    responses((status = 200, description = "A page of records", body = RecordPage),
              (status = 400, description = "Bad filter, limit or cursor (the message names it)", body = ErrorBody)))]
pub(crate) async fn query(
    State(s): State<AppState>,
    QueryParams(f): QueryParams<RecordFilter>,
) -> Result<Json<RecordPage>, ApiError> {
    let q = build_query(&f, page_limit(f.limit)?)?;
    let envelope = f.envelope.unwrap_or(false);
    let page = s.blocking(move |store| Ok(store.query(&q)?)).await?;
    Ok(Json(RecordPage {
        records: page.records.iter().map(|r| RecordView::from_stored(r, envelope)).collect(),
        next_cursor: page.next_cursor.map(|c| c.encode()),
    }))
}

/// One author's feed.
///
/// Records in seq order, with the feed head and whether the author equivocated.
#[utoipa::path(get, path = "/v1/feeds/{author}", tag = "records",
    params(("author" = String, Path, description = "Author key (64 hex)"), PageParams),
    responses((status = 200, description = "The feed", body = FeedView),
              (status = 400, description = "Bad author, limit or cursor", body = ErrorBody),
              (status = 404, description = "No record of this author", body = ErrorBody)))]
pub(crate) async fn feed(
    State(s): State<AppState>,
    Path(author): Path<String>,
    QueryParams(p): QueryParams<PageParams>,
) -> Result<Json<FeedView>, ApiError> {
    let author: AuthorKey = parse_field("author", &author)?;
    let q = Query {
        author: Some(author),
        limit: page_limit(p.limit)?,
        cursor: p.cursor.as_deref().map(decode_cursor).transpose()?,
        ..Query::default()
    };
    let (head, flagged, page) = s
        .blocking(move |store| {
            let head = store.feed_head(&author)?;
            let flagged = store.is_flagged(&author)?;
            let page = match head {
                Some(_) => Some(store.query(&q)?),
                None => None,
            };
            Ok((head, flagged, page))
        })
        .await?;
    let (Some(head), Some(page)) = (head, page) else {
        return Err(ApiError::not_found(format!("no record of author {author} on this node")));
    };
    Ok(Json(FeedView {
        author,
        head: head.into(),
        flagged,
        records: page.records.iter().map(|r| RecordView::from_stored(r, false)).collect(),
        next_cursor: page.next_cursor.map(|c| c.encode()),
    }))
}

/// Feed heads of every author, in author order.
#[utoipa::path(get, path = "/v1/feeds", tag = "records", params(PageParams),
    responses((status = 200, description = "Feeds", body = FeedList),
              (status = 400, description = "Bad limit or cursor", body = ErrorBody)))]
pub(crate) async fn feeds(
    State(s): State<AppState>,
    QueryParams(p): QueryParams<PageParams>,
) -> Result<Json<FeedList>, ApiError> {
    let limit = page_limit(p.limit)?;
    let after = p.cursor.as_deref().map(|c| parse_field::<AuthorKey>("cursor", c)).transpose()?;
    let heads = s.blocking(move |store| Ok(store.feed_heads(after.as_ref(), limit)?)).await?;
    let next_cursor = if heads.len() == limit { heads.last().map(|(a, _)| a.to_hex()) } else { None };
    Ok(Json(FeedList {
        feeds: heads.into_iter().map(|(author, head)| FeedSummary { author, head: head.into() }).collect(),
        next_cursor,
    }))
}

/// Equivocation proofs.
///
/// Authors that signed two different records at one seq; both records are kept.
#[utoipa::path(get, path = "/v1/equivocations", tag = "records", params(PageParams),
    responses((status = 200, description = "Proofs", body = EquivocationPage),
              (status = 400, description = "Bad limit or cursor", body = ErrorBody)))]
pub(crate) async fn equivocations(
    State(s): State<AppState>,
    QueryParams(p): QueryParams<PageParams>,
) -> Result<Json<EquivocationPage>, ApiError> {
    let limit = page_limit(p.limit)?;
    let after = match p.cursor.as_deref() {
        None => None,
        Some(c) => {
            let bad =
                || ApiError::invalid_field("cursor", "pass the `next_cursor` of the previous page unchanged");
            let (a, seq) = c.split_once(':').ok_or_else(bad)?;
            let seq_hex = seq.len() == 16 && seq.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            let seq = u64::from_str_radix(seq, 16).ok().filter(|_| seq_hex).ok_or_else(bad)?;
            Some((a.parse::<AuthorKey>().map_err(|_| bad())?, seq))
        }
    };
    let proofs = s.blocking(move |store| Ok(store.equivocations(after, limit)?)).await?;
    let next_cursor = if proofs.len() == limit {
        proofs.last().map(|p| format!("{}:{:016x}", p.author, p.seq))
    } else {
        None
    };
    Ok(Json(EquivocationPage {
        equivocations: proofs
            .into_iter()
            .map(|p| EquivocationView {
                author: p.author,
                seq: p.seq,
                first: p.first,
                second: p.second,
                detected_at_ms: p.detected_at_ms,
            })
            .collect(),
        next_cursor,
    }))
}
