//! Subject verdicts under a k-of-n trust policy.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::Json;
use palisade_store::Query;
use palisade_types::{AuthorKey, Digest, RecordKind, Statement, Verdict};

use crate::config::{TrustPolicy, MAX_POLICY_AUTHORS};
use crate::error::ApiError;
use crate::extract::{parse_digest, parse_field, QueryParams};
use crate::model::{AuthorAttestation, ErrorBody, PolicyView, VerdictParams, VerdictView};
use crate::server::AppState;

/// Pages of 1000 attestations scanned at most per verdict.
const MAX_PAGES: usize = 20;

/// Name of the policy used when none is named.
pub(crate) const DEFAULT_POLICY: &str = "default";

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Inconclusive => "inconclusive",
    }
}

/// Resolves the policy: a named one from config, optionally overridden by the query.
fn resolve_policy(s: &AppState, p: &VerdictParams) -> Result<Option<PolicyView>, ApiError> {
    let configured = s.inner.trust.read().unwrap_or_else(|p| p.into_inner()).clone();
    let base: Option<(Option<String>, TrustPolicy)> = match &p.policy {
        Some(name) => Some((
            Some(name.clone()),
            configured.get(name).cloned().ok_or_else(|| {
                let known: Vec<&str> = configured.keys().map(String::as_str).collect();
                ApiError::not_found(format!(
                    "no trust policy {name:?}; configured: [{}] (add [admin.trust.{name}] to the config)",
                    known.join(", ")
                ))
            })?,
        )),
        None => configured.get(DEFAULT_POLICY).cloned().map(|pol| (Some(DEFAULT_POLICY.to_string()), pol)),
    };
    let authors = match &p.authors {
        Some(list) => {
            let mut out = Vec::new();
            for a in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                out.push(parse_field::<AuthorKey>("authors", a)?);
            }
            let distinct: BTreeSet<_> = out.iter().collect();
            if out.is_empty() || out.len() > MAX_POLICY_AUTHORS || distinct.len() != out.len() {
                return Err(ApiError::invalid_field(
                    "authors",
                    format!("give 1..={MAX_POLICY_AUTHORS} distinct author keys, comma-separated"),
                ));
            }
            Some(out)
        }
        None => None,
    };
    let (name, authors, threshold) = match (base, authors) {
        (None, None) => {
            if p.threshold.is_some() {
                return Err(ApiError::invalid_field(
                    "threshold",
                    "no trust policy is configured; give `authors` too",
                ));
            }
            return Ok(None);
        }
        (Some((name, pol)), None) => (name, pol.authors, p.threshold.unwrap_or(pol.threshold)),
        // Overridden authors make it a different policy: no name; k defaults to the named one's.
        (Some((_, pol)), Some(a)) => (None, a, p.threshold.unwrap_or(pol.threshold)),
        (None, Some(a)) => (None, a, p.threshold.unwrap_or(1)),
    };
    if threshold == 0 || threshold > authors.len() {
        return Err(ApiError::invalid_field(
            "threshold",
            format!("is {threshold}; allowed is 1..={} (the number of trusted authors)", authors.len()),
        ));
    }
    Ok(Some(PolicyView { name, authors, threshold }))
}

/// Verdict on a subject under a k-of-n trust policy.
///
/// For a subject digest: the latest non-revoked, unexpired attestation of every author, and
/// whether at least `threshold` distinct trusted authors (never ones caught equivocating)
/// say pass. The policy comes from `[admin.trust.<policy>]` (default `default`); `authors`
/// and `threshold` override it. Without any policy nothing is trusted and `satisfied` is
/// false.
#[utoipa::path(get, path = "/v1/subjects/{digest}/verdict", tag = "records",
    params(("digest" = String, Path, description = "Subject digest, `sha256:<hex>`"), VerdictParams),
    responses((status = 200, description = "The verdict", body = VerdictView),
              (status = 400, description = "Bad digest, authors or threshold", body = ErrorBody),
              (status = 404, description = "Unknown policy name", body = ErrorBody)))]
pub(crate) async fn verdict(
    State(s): State<AppState>,
    Path(digest): Path<String>,
    QueryParams(p): QueryParams<VerdictParams>,
) -> Result<Json<VerdictView>, ApiError> {
    let subject: Digest = parse_digest("digest", &digest)?;
    let policy = resolve_policy(&s, &p)?;
    let now = palisade_net::now_ms();
    let subj = subject.clone();
    let (latest, flagged, truncated) = s
        .blocking(move |store| {
            let mut latest: BTreeMap<AuthorKey, (u64, palisade_store::StoredRecord)> = BTreeMap::new();
            let mut q = Query {
                subject: Some(subj),
                kind: Some(RecordKind::Attestation),
                exclude_revoked: true,
                limit: palisade_store::QUERY_LIMIT_MAX,
                ..Query::default()
            };
            let mut truncated = true;
            for _ in 0..MAX_PAGES {
                let page = store.query(&q)?;
                for r in page.records {
                    let Statement::Attestation(a) = &r.record.record().statement else { continue };
                    if a.expires_at_ms.is_some_and(|e| e <= now) {
                        continue;
                    }
                    let seq = r.record.record().position.seq;
                    let author = r.record.author();
                    if latest.get(&author).is_none_or(|(s, _)| seq > *s) {
                        latest.insert(author, (seq, r));
                    }
                }
                match page.next_cursor {
                    Some(c) => q.cursor = Some(c),
                    None => {
                        truncated = false;
                        break;
                    }
                }
            }
            let mut flagged = BTreeSet::new();
            for author in latest.keys() {
                if store.is_flagged(author)? {
                    flagged.insert(*author);
                }
            }
            Ok((latest, flagged, truncated))
        })
        .await?;
    let trusted: BTreeSet<AuthorKey> =
        policy.as_ref().map(|p| p.authors.iter().copied().collect()).unwrap_or_default();
    let mut attestations = Vec::new();
    let (mut passing, mut failing) = (0, 0);
    for (author, (seq, r)) in latest {
        let Statement::Attestation(a) = &r.record.record().statement else { continue };
        let is_trusted = trusted.contains(&author);
        let is_flagged = flagged.contains(&author);
        if is_trusted && !is_flagged {
            match a.verdict {
                Verdict::Pass => passing += 1,
                Verdict::Fail => failing += 1,
                Verdict::Inconclusive => {}
            }
        }
        attestations.push(AuthorAttestation {
            author,
            trusted: is_trusted,
            flagged: is_flagged,
            record_id: r.record.id(),
            seq,
            issued_at_ms: r.record.record().position.issued_at_ms,
            verdict: verdict_str(a.verdict).to_string(),
            score: a.score.0,
            scanner: a.scanner.name.to_string(),
            scanner_version: a.scanner.version.to_string(),
            expires_at_ms: a.expires_at_ms,
        });
    }
    let satisfied = policy.as_ref().is_some_and(|p| passing >= p.threshold);
    Ok(Json(VerdictView {
        subject: subject.to_text(),
        policy,
        satisfied,
        passing,
        failing,
        attestations,
        truncated,
    }))
}
