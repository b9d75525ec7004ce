//! Statements from command-line flags, and the small parsers behind those flags.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use palisade_types::{Digest, Score};
use serde_json::{json, Map, Value};

use crate::cli::{AnomalyReportArgs, AttestSubmitArgs};

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    palisade_net::now_ms()
}

/// `90`, `90s`, `10m`, `2h`, `7d`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("duration {s:?}: expected a number with s, m, h or d, e.g. 90s, 10m, 2h, 7d"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => bail!("duration {s:?}: unknown unit {unit:?}; use s, m, h or d"),
    };
    secs.map(Duration::from_secs).ok_or_else(|| anyhow!("duration {s:?} is too long"))
}

/// A point in time: ms since the epoch (13 digits), or an age such as `2h` (that long ago).
pub fn parse_time(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    if s.len() >= 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| anyhow!("time {s:?} is not a number of milliseconds"));
    }
    let d = parse_duration(s)
        .with_context(|| format!("time {s:?}: give ms since the epoch or an age such as 2h"))?;
    Ok(now_ms().saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

/// `0.0`..`10.0` as hundredths.
pub fn parse_score(s: &str) -> anyhow::Result<u16> {
    Score::parse_decimal(s.trim()).map(|s| s.0).map_err(|e| anyhow!("--score: {e}"))
}

/// A digest `<alg>:<hex>`, checked locally for a helpful message.
pub fn parse_digest(flag: &str, s: &str) -> anyhow::Result<String> {
    let d: Digest = s.trim().parse().map_err(|e| anyhow!("{flag}: {e}"))?;
    Ok(d.to_text())
}

/// OpenTelemetry severity: a number 1-24 or a name (TRACE=1, DEBUG=5, INFO=9, WARN=13,
/// ERROR=17, FATAL=21). Returns (number, text).
pub fn parse_severity(s: &str) -> anyhow::Result<(u8, String)> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u8>() {
        if !(1..=24).contains(&n) {
            bail!("--severity {n}: OpenTelemetry severity numbers run from 1 to 24");
        }
        let text = match n {
            1..=4 => "TRACE",
            5..=8 => "DEBUG",
            9..=12 => "INFO",
            13..=16 => "WARN",
            17..=20 => "ERROR",
            _ => "FATAL",
        };
        return Ok((n, text.to_string()));
    }
    let upper = s.to_ascii_uppercase();
    let n = match upper.as_str() {
        "TRACE" => 1,
        "DEBUG" => 5,
        "INFO" => 9,
        "WARN" | "WARNING" => 13,
        "ERROR" => 17,
        "FATAL" => 21,
        _ => bail!("--severity {s:?}: give 1-24 or TRACE, DEBUG, INFO, WARN, ERROR, FATAL"),
    };
    Ok((n, if upper == "WARNING" { "WARN".into() } else { upper }))
}

/// `critical=N,high=N,medium=N,low=N[,none=N]`.
pub fn parse_findings(s: &str) -> anyhow::Result<Value> {
    let mut counts = Map::new();
    for key in ["critical", "high", "medium", "low", "none"] {
        counts.insert(key.into(), json!(0));
    }
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| anyhow!("--findings: {part:?} is not severity=N"))?;
        let k = k.trim();
        if !counts.contains_key(k) {
            bail!("--findings: unknown severity {k:?}; use critical, high, medium, low, none");
        }
        let n: u32 = v
            .trim()
            .parse()
            .map_err(|_| anyhow!("--findings: {part:?}: the count must be a whole number"))?;
        counts.insert(k.into(), json!(n));
    }
    Ok(Value::Object(counts))
}

/// `k=v` pairs into a JSON object (duplicate keys are an error).
pub fn parse_pairs(flag: &str, pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    for p in pairs {
        let (k, v) = p.split_once('=').ok_or_else(|| anyhow!("{flag} {p:?}: expected key=value"))?;
        if out.insert(k.trim().to_string(), json!(v)).is_some() {
            bail!("{flag}: key {:?} given twice", k.trim());
        }
    }
    Ok(out)
}

/// Reads a JSON statement from a file or stdin (`-`); `kind` defaults to `default_kind`.
pub fn read_statement_file(path: &Path, default_kind: &str) -> anyhow::Result<Value> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(1024 * 1024)
            .read_to_string(&mut text)
            .context("reading the statement from stdin")?;
    } else {
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.len() > 1024 * 1024 {
            bail!("{} is larger than 1 MiB; a statement is at most 16 KiB once encoded", path.display());
        }
        text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    let mut v: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| anyhow!("{} must hold a JSON object (a statement)", path.display()))?;
    obj.entry("kind").or_insert_with(|| json!(default_kind));
    Ok(v)
}

/// The attestation statement `attest submit` sends.
pub fn attestation(a: &AttestSubmitArgs) -> anyhow::Result<Value> {
    if let Some(f) = &a.file {
        return read_statement_file(f, "attestation");
    }
    let need = |v: &Option<String>, flag: &str| {
        v.clone().ok_or_else(|| anyhow!("{flag} is required (or give --file)"))
    };
    let digests = a.digest.iter().map(|d| parse_digest("--digest", d)).collect::<anyhow::Result<Vec<_>>>()?;
    if digests.is_empty() {
        bail!("--digest is required at least once (e.g. --digest sha256:<hex>)");
    }
    let mut v = Map::new();
    let base = json!({
        "kind": "attestation",
        "subject": {"name": need(&a.subject, "--subject")?, "digests": digests},
        "scanner": {"name": need(&a.scanner, "--scanner")?, "version": need(&a.scanner_version, "--scanner-version")?},
        "verdict": need(&a.verdict, "--verdict")?.to_ascii_lowercase(),
        "score": parse_score(&need(&a.score, "--score")?)?,
    });
    if let Value::Object(fields) = base {
        v.extend(fields);
    }
    if let Some(f) = &a.findings {
        v.insert("finding_counts".into(), parse_findings(f)?);
    }
    if let Some(d) = &a.report_digest {
        v.insert("report_digest".into(), json!(parse_digest("--report-digest", d)?));
    }
    if let Some(e) = &a.expires_in {
        let d = parse_duration(e)?;
        let at = now_ms().saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        v.insert("expires_at_ms".into(), json!(at));
    }
    Ok(Value::Object(v))
}

/// The anomaly statement `anomaly report` sends.
pub fn anomaly(a: &AnomalyReportArgs) -> anyhow::Result<Value> {
    if let Some(f) = &a.file {
        return read_statement_file(f, "anomaly");
    }
    let labels = parse_pairs("--label", &a.label)?;
    if !labels.contains_key("kind") {
        bail!("--label kind=<what> is required (labels identify the anomaly; `kind` is mandatory)");
    }
    let (severity_number, severity_text) =
        parse_severity(a.severity.as_deref().ok_or_else(|| anyhow!("--severity is required"))?)?;
    let end = a.window_end_ms.unwrap_or_else(now_ms);
    let start = a.window_start_ms.unwrap_or_else(|| end.saturating_sub(60_000));
    let evidence =
        a.evidence.iter().map(|d| parse_digest("--evidence", d)).collect::<anyhow::Result<Vec<_>>>()?;
    Ok(json!({
        "kind": "anomaly",
        "source": a.source.clone().ok_or_else(|| anyhow!("--source is required"))?,
        "stream_type": a.stream_type.to_ascii_lowercase(),
        "labels": labels,
        "annotations": parse_pairs("--annotation", &a.annotation)?,
        "severity_number": severity_number,
        "severity_text": severity_text,
        "score": parse_score(a.score.as_deref().ok_or_else(|| anyhow!("--score is required"))?)?,
        "window_start_ms": start,
        "window_end_ms": end,
        "detector": {
            "name": a.detector,
            "version": a.detector_version.clone().unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
        },
        "evidence": evidence,
        "summary": a.summary.clone().unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("h").is_err());
        assert_eq!(parse_time("1750000000000").unwrap(), 1_750_000_000_000);
        assert!(parse_time("1h").unwrap() < now_ms());
    }

    #[test]
    fn severities_findings_and_pairs() {
        assert_eq!(parse_severity("error").unwrap(), (17, "ERROR".into()));
        assert_eq!(parse_severity("13").unwrap(), (13, "WARN".into()));
        assert!(parse_severity("25").is_err());
        let f = parse_findings("critical=1,low=7").unwrap();
        assert_eq!(f["critical"], 1);
        assert_eq!(f["high"], 0);
        assert!(parse_findings("severe=1").is_err());
        assert!(parse_pairs("--label", &["a=1".into(), "a=2".into()]).is_err());
        assert_eq!(parse_score("8.5").unwrap(), 850);
        assert!(parse_score("10.5").is_err());
    }
}
