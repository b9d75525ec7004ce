//! NDJSON export (streamed page by page, never buffered whole) and import (streamed line by
//! line, every record fully re-verified, a report per line).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use futures::StreamExt;
use palisade_net::{ApiRecord, ApiSource, NetMetrics, Reason, MAX_API_BATCH_RECORDS};

use crate::config::MAX_IMPORT_LINE_BYTES;
use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::model::{ErrorBody, ExportLine, ImportRejection, ImportReport, RecordFilter};
use crate::routes::records::build_query;
use crate::server::AppState;

/// Most rejections listed in an import report (all are counted).
pub(crate) const MAX_LISTED_REJECTIONS: usize = 1000;
/// Lines handed to the ingest pipeline at once.
const IMPORT_BATCH_LINES: usize = MAX_API_BATCH_RECORDS;

/// Export records as NDJSON.
///
/// Every matching record as NDJSON, one `{"id", "kind", "envelope"}` object per line, in
/// issue-time order (author order with `author`). Streamed: memory use does not grow with
/// the store. A body that ends without its final newline was cut short (the node stopped or
/// failed): retry.
#[utoipa::path(get, path = "/v1/export", tag = "records", params(RecordFilter),
    responses((status = 200, description = "NDJSON, one ExportLine per line", content_type = "application/x-ndjson", body = ExportLine),
              (status = 400, description = "Bad filter", body = ErrorBody)))]
pub(crate) async fn export(
    State(s): State<AppState>,
    QueryParams(f): QueryParams<RecordFilter>,
) -> Result<Response, ApiError> {
    if f.limit.is_some() || f.envelope.is_some() {
        return Err(ApiError::bad_request(
            "export takes filters and `cursor` only (no `limit` or `envelope`)",
        ));
    }
    let query = build_query(&f, palisade_store::QUERY_LIMIT_MAX)?;
    let store = s.store().clone();
    // The first page is read before the answer starts, so a query the store refuses (a cursor
    // of another query) is a 400 rather than a 200 whose stream is cut short.
    let first = {
        let (store, q) = (store.clone(), query.clone());
        tokio::task::spawn_blocking(move || store.query(&q))
            .await
            .map_err(|e| ApiError::internal(format!("export task failed: {e}")))??
    };
    let shutdown = s.inner.shutdown.clone();
    let pages = futures::stream::try_unfold((Some(first), Some(query)), move |(ready, state)| {
        let store = store.clone();
        let shutdown = shutdown.clone();
        async move {
            let Some(q) = state else { return Ok(None) };
            let (page, q) = match ready {
                Some(page) => (page, q),
                None => {
                    if shutdown.is_cancelled() {
                        return Err(std::io::Error::other("the node is shutting down; export cut short"));
                    }
                    let (page, q) = tokio::task::spawn_blocking(move || (store.query(&q), q))
                        .await
                        .map_err(std::io::Error::other)?;
                    (page.map_err(std::io::Error::other)?, q)
                }
            };
            let mut out = Vec::with_capacity(page.records.len() * 512);
            for r in &page.records {
                let line = ExportLine {
                    id: Some(r.record.id()),
                    kind: Some(r.record.kind()),
                    envelope: base64::engine::general_purpose::STANDARD.encode(r.record.wire_bytes()),
                };
                serde_json::to_writer(&mut out, &line).map_err(std::io::Error::other)?;
                out.push(b'\n');
            }
            let next = page.next_cursor.map(|c| {
                let mut q = q;
                q.cursor = Some(c);
                q
            });
            Ok::<_, std::io::Error>(Some((bytes::Bytes::from(out), (None, next))))
        }
    })
    .filter(|chunk| futures::future::ready(chunk.as_ref().map(|b| !b.is_empty()).unwrap_or(true)));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(pages)).into_response())
}

fn count(metrics: &NetMetrics, reason: Reason) {
    metrics
        .ingest
        .get_or_create(&palisade_net::metrics::IngestLabels {
            source: "import",
            outcome: reason.acceptance_str(),
            reason: reason.label(),
        })
        .inc();
}

/// Decodes one export line into the record it carries (the envelope bytes and the id it
/// claims). The record itself is judged by the ingest pipeline.
fn decode_line(line: &[u8]) -> Result<ApiRecord, String> {
    let parsed: ExportLine = serde_json::from_slice(line)
        .map_err(|e| format!("not an export line ({{\"envelope\": \"<base64>\"}}): {e}"))?;
    let wire = base64::engine::general_purpose::STANDARD
        .decode(parsed.envelope.trim())
        .map_err(|e| format!("`envelope` is not standard base64: {e}"))?;
    Ok(ApiRecord { wire, expected_id: parsed.id })
}

/// Why the pipeline refused an import line, as precisely as the line allows. The pipeline
/// parses each record once and answers with a [`Reason`]; for a line refused for its
/// content the refusal is worked out again here (refused lines only), so the report names
/// the field.
fn explain(reason: Reason, record: &ApiRecord, now_ms: u64) -> String {
    let generic = format!("{}: {}", reason.label(), reason.info().doc);
    let parsed = match palisade_types::ParsedEnvelope::parse(record.wire.clone()) {
        Ok(p) => p,
        Err(e) => return format!("{}: not a valid record encoding: {e}", reason.label()),
    };
    if let Some(claimed) = record.expected_id.filter(|c| *c != parsed.id()) {
        return format!("`id` {claimed} does not match the envelope, whose id is {}", parsed.id());
    }
    match reason {
        Reason::MalformedPayload | Reason::Invalid | Reason::FutureTimestamp => match parsed.decode() {
            Err(e) => format!("{}: not a valid record encoding: {e}", reason.label()),
            Ok(u) => match u.validate(now_ms) {
                Err(e) => format!("{}: record is invalid: {e}", reason.label()),
                Ok(_) => generic,
            },
        },
        _ => generic,
    }
}

struct Importer {
    report: ImportReport,
    line_no: u64,
    batch: Vec<(u64, Vec<u8>)>,
    batch_bytes: usize,
}

impl Importer {
    fn reject(&mut self, line: u64, error: String) {
        self.report.rejected += 1;
        if self.report.rejections.len() < MAX_LISTED_REJECTIONS {
            self.report.rejections.push(ImportRejection { line, error });
        } else {
            self.report.rejections_truncated = true;
        }
    }

    /// Queues one complete line (without its newline).
    fn push_line(&mut self, line: Vec<u8>) {
        self.line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.report.lines += 1;
        self.batch_bytes += line.len();
        self.batch.push((self.line_no, line));
    }

    /// Hands the queued lines to the ingest pipeline (as `import`) and reports each.
    async fn flush_batch(&mut self, s: &AppState) -> Result<(), ApiError> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let metrics = s.handle().metrics().clone();
        let mut lines = Vec::with_capacity(batch.len());
        let mut records = Vec::with_capacity(batch.len());
        for (n, line) in batch {
            match decode_line(&line) {
                Ok(record) => {
                    lines.push(n);
                    records.push(record);
                }
                Err(e) => {
                    count(&metrics, Reason::MalformedEnvelope);
                    self.reject(n, e);
                }
            }
        }
        for (lines, records) in lines.chunks(MAX_API_BATCH_RECORDS).zip(records.chunks(MAX_API_BATCH_RECORDS))
        {
            let decided = s.handle().ingest(ApiSource::Import, records.to_vec()).await?;
            let now = palisade_net::now_ms();
            for ((&n, record), reason) in lines.iter().zip(records).zip(decided) {
                match reason {
                    Reason::Stored => self.report.accepted += 1,
                    Reason::Duplicate => self.report.duplicate += 1,
                    other => self.reject(n, explain(other, record, now)),
                }
            }
        }
        Ok(())
    }
}

/// Import NDJSON records.
///
/// Imports NDJSON export lines (`{"envelope": "<base64>"}`; `id` and `kind` optional). Every
/// record is decoded, validated and signature-checked like one from a peer, then stored and
/// flushed before the answer. A bad line is reported with its number and never stops the
/// rest. Imported records are not gossiped; peers get them through sync. An imported record that
/// equivocates is announced and its proof gossiped, as for one from a peer.
#[utoipa::path(post, path = "/v1/import", tag = "records",
    request_body(content = String, content_type = "application/x-ndjson", description = "One ExportLine per line"),
    responses((status = 200, description = "Per-line report", body = ImportReport),
              (status = 408, description = "A pause longer than admin.body_timeout_secs in the body (lines before it were imported)", body = ErrorBody),
              (status = 413, description = "Body larger than admin.max_import_bytes (lines before the limit were imported; at once if Content-Length says so)", body = ErrorBody),
              (status = 415, description = "Content-Type is not application/x-ndjson", body = ErrorBody),
              (status = 507, description = "The disk is below store.min_free_disk_bytes: nothing is imported until space is freed", body = ErrorBody)))]
pub(crate) async fn import(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Json<ImportReport>, ApiError> {
    let max_total = s.limits().max_import_bytes;
    crate::extract::check_content_type(&headers, &["application/x-ndjson", "application/jsonl"])?;
    crate::extract::check_declared_length(&headers, max_total, "admin.max_import_bytes")?;
    let pause = s.limits().body_timeout;
    // Refused before reading a byte when nothing of it could be stored.
    s.store().check_disk_room()?;
    let mut stream = body.into_data_stream();
    let mut imp = Importer { report: ImportReport::default(), line_no: 0, batch: Vec::new(), batch_bytes: 0 };
    let mut current: Vec<u8> = Vec::new();
    // Set while skipping the rest of an over-long line.
    let mut overlong = false;
    let mut total: u64 = 0;
    loop {
        // A client that stops sending mid-body gets 408 after admin.body_timeout_secs (what
        // arrived so far is imported and flushed first, like the size cap).
        let next = match tokio::time::timeout(pause, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                imp.flush_batch(&s).await?;
                flush_store(&s).await?;
                return Err(crate::extract::body_timeout(pause));
            }
        };
        let Some(chunk) = next else { break };
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the import body failed: {e}")))?;
        total += chunk.len() as u64;
        if total > max_total {
            imp.flush_batch(&s).await?;
            flush_store(&s).await?;
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the import body exceeds admin.max_import_bytes ({max_total} bytes); lines 1..={} were imported ({} accepted); split the file and import the rest",
                    imp.line_no, imp.report.accepted
                ),
            ));
        }
        let mut rest: &[u8] = &chunk;
        while !rest.is_empty() {
            match rest.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let (head, tail) = rest.split_at(i);
                    rest = tail.get(1..).unwrap_or(&[]);
                    if overlong {
                        overlong = false;
                        imp.line_no += 1;
                        let n = imp.line_no;
                        imp.report.lines += 1;
                        imp.reject(n, format!("line is longer than {MAX_IMPORT_LINE_BYTES} bytes"));
                        continue;
                    }
                    if current.len() + head.len() > MAX_IMPORT_LINE_BYTES {
                        current.clear();
                        imp.line_no += 1;
                        let n = imp.line_no;
                        imp.report.lines += 1;
                        imp.reject(n, format!("line is longer than {MAX_IMPORT_LINE_BYTES} bytes"));
                        continue;
                    }
                    current.extend_from_slice(head);
                    imp.push_line(std::mem::take(&mut current));
                }
                None => {
                    if !overlong {
                        if current.len() + rest.len() > MAX_IMPORT_LINE_BYTES {
                            current.clear();
                            overlong = true;
                        } else {
                            current.extend_from_slice(rest);
                        }
                    }
                    rest = &[];
                }
            }
        }
        if imp.batch.len() >= IMPORT_BATCH_LINES || imp.batch_bytes >= 4 * 1024 * 1024 {
            imp.flush_batch(&s).await?;
        }
    }
    if overlong {
        imp.line_no += 1;
        let n = imp.line_no;
        imp.report.lines += 1;
        imp.reject(n, format!("line is longer than {MAX_IMPORT_LINE_BYTES} bytes"));
    } else if !current.is_empty() {
        imp.push_line(current);
    }
    imp.flush_batch(&s).await?;
    flush_store(&s).await?;
    // Over-long lines are judged while reading, the rest in batches: list them in order.
    imp.report.rejections.sort_by_key(|r| r.line);
    Ok(Json(imp.report))
}

async fn flush_store(s: &AppState) -> Result<(), ApiError> {
    s.store().flush_async().await.map_err(ApiError::from)
}
