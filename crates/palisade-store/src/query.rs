//! Record queries: filters, a limit, and an opaque cursor.
//!
//! A query picks the most selective index its filters allow (author, subject digest,
//! fingerprint, source, kind, else time), scans it in key order from the cursor, and applies
//! the remaining filters to each record. Work per call is bounded twice: at most `limit`
//! results and at most [`QUERY_SCAN_BUDGET`] index entries scanned. When the budget runs out
//! the page may hold fewer than `limit` records but still carries a `next_cursor`, so a
//! selective filter over a large store pages along instead of stalling the node.

use std::ops::Bound;

use palisade_types::{AnomalyState, AuthorKey, Digest, Fingerprint, RecordKind, Statement};

use crate::keys;
use crate::{Result, Store, StoreError, StoredRecord};

/// Largest `limit` a query may ask for.
pub const QUERY_LIMIT_MAX: usize = 1000;

/// Most index entries one query call scans before it returns a partial page.
pub const QUERY_SCAN_BUDGET: usize = 20_000;

/// Filters of a record query. All set filters must match.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only this kind.
    pub kind: Option<RecordKind>,
    /// Only records by this author (ordered by feed seq).
    pub author: Option<AuthorKey>,
    /// Only attestations whose subject has this digest.
    pub subject: Option<Digest>,
    /// Only anomalies and updates with this fingerprint.
    pub fingerprint: Option<Fingerprint>,
    /// Only anomalies from this source URI.
    pub source: Option<String>,
    /// Only anomalies with `severity_number >=` this.
    pub min_severity: Option<u8>,
    /// Only anomalies whose fingerprint is currently in this state.
    pub state: Option<AnomalyState>,
    /// Only records issued at or after this time (ms).
    pub since_ms: Option<u64>,
    /// Only records issued at or before this time (ms).
    pub until_ms: Option<u64>,
    /// Include records revoked by their author (default: yes; they are marked).
    pub exclude_revoked: bool,
    /// Page size, 1..=[`QUERY_LIMIT_MAX`].
    pub limit: usize,
    /// Resume after this cursor (from the previous page).
    pub cursor: Option<Cursor>,
}

/// An opaque position in an index. Printable; pass it back unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(Vec<u8>);

impl Cursor {
    /// Encodes as text for APIs.
    pub fn encode(&self) -> String {
        hex::encode(&self.0)
    }

    /// Decodes text from [`encode`](Self::encode).
    pub fn decode(s: &str) -> Result<Cursor> {
        if s.len() > 512 {
            return Err(StoreError::BadCursor("too long"));
        }
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(StoreError::BadCursor("not lowercase hex"));
        }
        let bytes = hex::decode(s).map_err(|_| StoreError::BadCursor("not hex"))?;
        if bytes.is_empty() {
            return Err(StoreError::BadCursor("empty"));
        }
        Ok(Cursor(bytes))
    }
}

/// One page of results.
#[derive(Debug, Clone)]
pub struct Page {
    /// Matching records in index order.
    pub records: Vec<StoredRecord>,
    /// Where the next page starts; `None` when the scan reached the end.
    pub next_cursor: Option<Cursor>,
}

impl Store {
    /// Runs a query. See the module docs for ordering and bounds.
    pub fn query(&self, q: &Query) -> Result<Page> {
        if q.limit == 0 || q.limit > QUERY_LIMIT_MAX {
            return Err(StoreError::BadQuery(format!(
                "limit is {}; allowed is 1..={QUERY_LIMIT_MAX}",
                q.limit
            )));
        }
        if let (Some(a), Some(b)) = (q.since_ms, q.until_ms) {
            if a > b {
                return Err(StoreError::BadQuery(format!("since_ms ({a}) is after until_ms ({b})")));
            }
        }
        // Pick the index; `timed` says whether keys continue with issued_at_ms. Every index
        // key ends with 8 bytes (seq or time) and the 32-byte id after its prefix. Without a
        // selective filter the query walks all four kind indexes merged in (time, id) order
        // (there is no separate time index: it would cost every insert one more write); its
        // cursor carries the time-index prefix.
        let (prefix, timed, sources) = if let Some(a) = &q.author {
            let p = keys::author_prefix(a);
            (p.clone(), false, vec![p])
        } else if let Some(d) = &q.subject {
            let p = keys::subject_prefix(d);
            (p.clone(), true, vec![p])
        } else if let Some(f) = &q.fingerprint {
            let p = keys::fingerprint_prefix(f);
            (p.clone(), true, vec![p])
        } else if let Some(s) = &q.source {
            let p = keys::source_prefix(s);
            (p.clone(), true, vec![p])
        } else if let Some(k) = q.kind {
            let p = keys::kind_prefix(k);
            (p.clone(), true, vec![p])
        } else {
            (keys::time_prefix(), true, RecordKind::ALL.iter().map(|k| keys::kind_prefix(*k)).collect())
        };
        let after = match &q.cursor {
            Some(c) => {
                if !c.0.starts_with(&prefix) || c.0.len() != prefix.len() + 40 {
                    return Err(StoreError::BadCursor("it belongs to a different query"));
                }
                c.0.get(prefix.len()..).map(<[u8]>::to_vec)
            }
            None => None,
        };
        // One key range per source; keys compare by their suffix after the source's prefix.
        let mut heads: Vec<Option<(Vec<u8>, sled::IVec)>> = Vec::with_capacity(sources.len());
        let mut iters = Vec::with_capacity(sources.len());
        for source in &sources {
            let mut start = source.clone();
            let mut end = keys::prefix_successor(source);
            if timed {
                if let Some(since) = q.since_ms {
                    start.extend_from_slice(&since.to_be_bytes());
                }
                if let Some(until) = q.until_ms.and_then(|u| u.checked_add(1)) {
                    let mut e = source.clone();
                    e.extend_from_slice(&until.to_be_bytes());
                    end = Some(e);
                }
            }
            let lower = match &after {
                Some(suffix) => {
                    let mut k = source.clone();
                    k.extend_from_slice(suffix);
                    Bound::Excluded(k)
                }
                None => Bound::Included(start),
            };
            let upper = match end {
                Some(e) => Bound::Excluded(e),
                None => Bound::Unbounded,
            };
            let trees = self.trees();
            let mut it = trees.data.range::<Vec<u8>, _>((lower, upper));
            heads.push(next_entry(&mut it, source.len()).map_err(|e| self.io_err(e))?);
            iters.push(it);
        }

        let mut records = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        let mut exhausted = true;
        let mut scanned = 0usize;
        // Each step takes the source whose next key has the smallest suffix.
        while let Some(i) = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|(suffix, _)| (i, suffix)))
            .min_by(|a, b| a.1.cmp(b.1))
            .map(|(i, _)| i)
        {
            if records.len() >= q.limit || scanned >= QUERY_SCAN_BUDGET {
                exhausted = false;
                break;
            }
            scanned += 1;
            let (Some(slot), Some(it), Some(source)) = (heads.get_mut(i), iters.get_mut(i), sources.get(i))
            else {
                break;
            };
            let Some((suffix, k)) = slot.take() else { break };
            *slot = next_entry(it, source.len()).map_err(|e| self.io_err(e))?;
            let mut cursor = prefix.clone();
            cursor.extend_from_slice(&suffix);
            last_key = Some(cursor);
            let id = keys::trailing_id(&k).ok_or_else(|| StoreError::corrupt("index", &k, "short key"))?;
            let Some((meta, record)) = self.record_by_id_raw(&id)? else { continue };
            if !self.matches(q, &record)? {
                continue;
            }
            let stored = self.stored(meta, record)?;
            if q.exclude_revoked && stored.revoked_by.is_some() {
                continue;
            }
            records.push(stored);
        }
        let next_cursor = if exhausted { None } else { last_key.map(Cursor) };
        Ok(Page { records, next_cursor })
    }

    fn matches(&self, q: &Query, record: &palisade_types::VerifiedRecord) -> Result<bool> {
        let r = record.record();
        let t = r.position.issued_at_ms;
        if q.kind.is_some_and(|k| k != r.kind())
            || q.since_ms.is_some_and(|s| t < s)
            || q.until_ms.is_some_and(|u| t > u)
            || q.author.is_some_and(|a| a != r.position.author)
        {
            return Ok(false);
        }
        let wants_anomaly = q.source.is_some() || q.min_severity.is_some() || q.state.is_some();
        match &r.statement {
            Statement::Attestation(a) => {
                if wants_anomaly || q.fingerprint.is_some() {
                    return Ok(false);
                }
                if let Some(d) = &q.subject {
                    return Ok(a.subject.digests.contains(d));
                }
                Ok(true)
            }
            Statement::Anomaly(a) => {
                if q.subject.is_some()
                    || q.source.as_deref().is_some_and(|s| s != a.source.as_str())
                    || q.min_severity.is_some_and(|m| a.severity_number < m)
                {
                    return Ok(false);
                }
                let fp = a.fingerprint();
                if q.fingerprint.is_some_and(|f| f != fp) {
                    return Ok(false);
                }
                if let Some(state) = q.state {
                    return Ok(self.anomaly_status(&fp)?.is_some_and(|s| s.state == state));
                }
                Ok(true)
            }
            Statement::AnomalyUpdate(u) => Ok(q.subject.is_none()
                && q.source.is_none()
                && q.min_severity.is_none()
                && q.state.is_none()
                && q.fingerprint.is_none_or(|f| f == u.fingerprint)),
            Statement::Revocation(_) => Ok(q.subject.is_none() && !wants_anomaly && q.fingerprint.is_none()),
        }
    }
}

/// The next key of an index range as (suffix after the prefix, whole key).
fn next_entry(
    it: &mut sled::Iter,
    prefix_len: usize,
) -> std::result::Result<Option<(Vec<u8>, sled::IVec)>, sled::Error> {
    match it.next() {
        Some(Ok((k, _))) => Ok(Some((k.get(prefix_len..).unwrap_or_default().to_vec(), k))),
        Some(Err(e)) => Err(e),
        None => Ok(None),
    }
}
