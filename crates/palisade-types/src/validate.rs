//! Static validation: the rules a record must follow that need no storage lookups.
//!
//! Decoding already enforced every length bound; these are the semantic rules (ranges,
//! formats, relations between fields). Each failure names the field.

use crate::error::ValidationError;
use crate::limits::*;
use crate::record::*;

type Result = std::result::Result<(), ValidationError>;

/// Checks every static rule of `record`. `now_ms` is the validating node's clock.
pub fn validate_record(record: &Record, now_ms: u64) -> Result {
    validate_position(&record.position, now_ms)?;
    let issued = record.position.issued_at_ms;
    match &record.statement {
        Statement::Attestation(a) => validate_attestation(a, issued),
        Statement::Anomaly(a) => validate_anomaly(a, issued),
        Statement::AnomalyUpdate(u) => text("comment", &u.comment, true),
        Statement::Revocation(r) => text("reason", &r.reason, true),
    }
}

/// Feed-position rules: `seq >= 1`, `prev` present exactly when `seq > 1`, sane timestamp.
pub fn validate_position(p: &FeedPosition, now_ms: u64) -> Result {
    if p.seq == 0 {
        return Err(ValidationError::OutOfRange { field: "seq", value: 0, min: 1, max: u64::MAX });
    }
    match (p.seq, p.prev) {
        (1, Some(_)) => {
            return Err(ValidationError::Inconsistent {
                field: "prev",
                rule: "the first record (seq 1) has no prev",
            })
        }
        (2.., None) => {
            return Err(ValidationError::Inconsistent {
                field: "prev",
                rule: "records after seq 1 must name the previous record's id",
            })
        }
        _ => {}
    }
    if p.issued_at_ms < MIN_ISSUED_AT_MS {
        return Err(ValidationError::OutOfRange {
            field: "issued_at_ms",
            value: p.issued_at_ms,
            min: MIN_ISSUED_AT_MS,
            max: now_ms.saturating_add(MAX_CLOCK_SKEW_MS),
        });
    }
    not_in_future("issued_at_ms", p.issued_at_ms, now_ms)
}

fn not_in_future(field: &'static str, value_ms: u64, now_ms: u64) -> Result {
    if value_ms > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(ValidationError::InFuture { field, value_ms, now_ms, skew_ms: MAX_CLOCK_SKEW_MS });
    }
    Ok(())
}

/// Attestation rules.
pub fn validate_attestation(a: &Attestation, issued_at_ms: u64) -> Result {
    nonempty_text("subject.name", &a.subject.name)?;
    if a.subject.digests.is_empty() {
        return Err(ValidationError::NoEntries { field: "subject.digests" });
    }
    for (i, d) in a.subject.digests.iter().enumerate() {
        digest("subject.digests", d)?;
        if a.subject.digests.iter().take(i).any(|e| e.algorithm == d.algorithm) {
            return Err(ValidationError::Inconsistent {
                field: "subject.digests",
                rule: "each digest algorithm may appear only once",
            });
        }
    }
    nonempty_text("scanner.name", &a.scanner.name)?;
    nonempty_text("scanner.version", &a.scanner.version)?;
    score("score", a.score)?;
    for f in a.findings.iter() {
        identifier("findings.id", &f.id)?;
        for alias in f.aliases.iter() {
            identifier("findings.aliases", alias)?;
        }
    }
    for sev in [
        FindingSeverity::Critical,
        FindingSeverity::High,
        FindingSeverity::Medium,
        FindingSeverity::Low,
        FindingSeverity::None,
    ] {
        let listed = a.findings.iter().filter(|f| f.severity == sev).count() as u64;
        if listed > u64::from(a.finding_counts.get(sev)) {
            return Err(ValidationError::Inconsistent {
                field: "finding_counts",
                rule: "each count must be at least the number of listed findings of that severity",
            });
        }
    }
    if let Some(d) = &a.report_digest {
        digest("report_digest", d)?;
    }
    if let Some(exp) = a.expires_at_ms {
        if exp <= issued_at_ms {
            return Err(ValidationError::Inconsistent {
                field: "expires_at_ms",
                rule: "must be after issued_at_ms",
            });
        }
    }
    Ok(())
}

/// Anomaly rules.
pub fn validate_anomaly(a: &Anomaly, issued_at_ms: u64) -> Result {
    uri("source", &a.source)?;
    if a.labels.is_empty() {
        return Err(ValidationError::NoEntries { field: "labels" });
    }
    sorted_pairs("labels", a.labels.as_slice())?;
    match a.labels.iter().find(|l| l.key.as_str() == "kind") {
        Some(l) if !l.value.is_empty() => {}
        _ => {
            return Err(ValidationError::BadFormat {
                field: "labels",
                rule: "must include a non-empty `kind` label",
            })
        }
    }
    sorted_pairs("annotations", a.annotations.as_slice())?;
    if !(1..=MAX_SEVERITY_NUMBER).contains(&a.severity_number) {
        return Err(ValidationError::OutOfRange {
            field: "severity_number",
            value: u64::from(a.severity_number),
            min: 1,
            max: u64::from(MAX_SEVERITY_NUMBER),
        });
    }
    text("severity_text", &a.severity_text, false)?;
    score("score", a.score)?;
    if a.window_start_ms > a.window_end_ms {
        return Err(ValidationError::Inconsistent {
            field: "window_start_ms",
            rule: "the window must not start after it ends",
        });
    }
    if a.window_end_ms > issued_at_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(ValidationError::Inconsistent {
            field: "window_end_ms",
            rule: "the window must end before the record was issued (plus clock skew)",
        });
    }
    nonempty_text("detector.name", &a.detector.name)?;
    nonempty_text("detector.version", &a.detector.version)?;
    for d in a.evidence.iter() {
        digest("evidence", d)?;
    }
    text("summary", &a.summary, true)
}

fn score(field: &'static str, s: Score) -> Result {
    if s.0 > MAX_SCORE {
        return Err(ValidationError::OutOfRange {
            field,
            value: u64::from(s.0),
            min: 0,
            max: u64::from(MAX_SCORE),
        });
    }
    Ok(())
}

/// Free text: no control characters (newline and tab allowed where `multiline`).
fn text(field: &'static str, s: &str, multiline: bool) -> Result {
    let ok = s.chars().all(|c| !c.is_control() || (multiline && (c == '\n' || c == '\t')));
    if !ok {
        return Err(ValidationError::BadFormat { field, rule: "control characters are not allowed" });
    }
    Ok(())
}

fn nonempty_text(field: &'static str, s: &str) -> Result {
    if s.trim().is_empty() {
        return Err(ValidationError::Empty { field });
    }
    text(field, s, false)
}

/// Ids such as `CVE-2024-3094`: printable ASCII without spaces.
fn identifier(field: &'static str, s: &str) -> Result {
    if s.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ValidationError::BadFormat { field, rule: "printable ASCII without spaces" });
    }
    Ok(())
}

pub(crate) fn digest(field: &'static str, d: &Digest) -> Result {
    let alg_ok = !d.algorithm.is_empty()
        && d.algorithm.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !alg_ok {
        return Err(ValidationError::BadFormat { field, rule: "digest algorithm must be [A-Za-z0-9_-]+" });
    }
    if d.value.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    if let Some(lens) = Digest::expected_len(&d.algorithm) {
        if !lens.contains(&d.value.len()) {
            return Err(ValidationError::BadFormat {
                field,
                rule: "digest length does not match its algorithm (sha256: 32 bytes, sha512: 64, sha1: 20, gitCommit: 20 or 32)",
            });
        }
    }
    Ok(())
}

/// `scheme:rest` with an RFC 3986 scheme and no whitespace or control characters.
fn uri(field: &'static str, s: &str) -> Result {
    if s.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    let scheme_ok = match s.split_once(':') {
        Some((scheme, rest)) => {
            let mut b = scheme.bytes();
            b.next().is_some_and(|c| c.is_ascii_alphabetic())
                && b.all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.')
                && !rest.is_empty()
        }
        None => false,
    };
    if !scheme_ok || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValidationError::BadFormat {
            field,
            rule: "must be a URI like otlp://collector/service or file:///var/log/app.log (no spaces)",
        });
    }
    Ok(())
}

/// Key rules for labels and annotations, plus strictly ascending keys (canonical form).
fn sorted_pairs<T: KeyValue>(field: &'static str, pairs: &[T]) -> Result {
    for (i, p) in pairs.iter().enumerate() {
        let key = p.key();
        let mut b = key.bytes();
        let key_ok = b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
            && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.');
        if !key_ok {
            return Err(ValidationError::BadFormat {
                field,
                rule: "keys start with a letter or `_` and contain only letters, digits, `_` and `.`",
            });
        }
        text(field, p.value(), false)?;
        if let Some(prev) = i.checked_sub(1).and_then(|j| pairs.get(j)) {
            if prev.key() >= key {
                return Err(ValidationError::BadFormat { field, rule: "keys must be sorted and unique" });
            }
        }
    }
    Ok(())
}
