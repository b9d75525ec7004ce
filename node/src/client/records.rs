//! `attest`, `anomaly` and `records`: submit, read, query, export and import.

use super::*;
use crate::cli::{AnomalyFilters, AttestationFilters, CommonFilters};

/// The API filter of a query command: `kind`, and the attestation and anomaly filters the
/// command offers (none for a command that does not).
pub(super) fn filter_from(
    kind: Option<&str>,
    q: &CommonFilters,
    attestation: &AttestationFilters,
    anomaly: &AnomalyFilters,
) -> anyhow::Result<RecordFilter> {
    Ok(RecordFilter {
        kind: kind.map(str::to_string),
        author: q.author.clone(),
        subject: attestation.subject.clone(),
        fingerprint: anomaly.fingerprint.clone(),
        source: anomaly.source.clone(),
        min_severity: anomaly.min_severity,
        state: anomaly.state.clone(),
        since_ms: q.since.as_deref().map(parse_time).transpose()?,
        until_ms: q.until.as_deref().map(parse_time).transpose()?,
        exclude_revoked: q.exclude_revoked.then_some(true),
        limit: Some(q.limit),
        cursor: q.cursor.clone(),
        envelope: None,
    })
}

/// One line saying what a statement is about.
pub(super) fn summary(s: &Statement) -> String {
    match s {
        Statement::Attestation(a) => format!(
            "{} {} {} ({} {})",
            a.subject.name,
            match a.verdict {
                palisade_types::Verdict::Pass => "pass",
                palisade_types::Verdict::Fail => "fail",
                palisade_types::Verdict::Inconclusive => "inconclusive",
            },
            output::score(a.score.0),
            a.scanner.name,
            a.scanner.version
        ),
        Statement::Anomaly(a) => format!("{} sev {} {}", a.source, a.severity_number, a.summary),
        Statement::AnomalyUpdate(u) => {
            format!("{} -> {} {}", short(&u.fingerprint.to_hex(), 12), u.state.as_str(), u.comment)
        }
        Statement::Revocation(r) => format!("revokes {} {}", short(&r.target.to_hex(), 12), r.reason),
    }
}

pub(super) fn print_next(next: &Option<String>) {
    if let Some(c) = next {
        eprintln!("more: --cursor {c}");
    }
}

pub(super) fn print_record(r: &RecordView) -> anyhow::Result<()> {
    outln!("id:        {}", r.id);
    outln!("kind:      {}", r.kind);
    outln!("author:    {}", r.author);
    outln!("seq:       {}", r.seq);
    outln!("prev:      {}", r.prev.map(|p| p.to_hex()).unwrap_or_else(|| "-".into()));
    outln!("issued:    {}", time(r.issued_at_ms));
    outln!(
        "received:  {} ({})",
        time(r.received_at_ms),
        serde_json::to_value(r.source)?.as_str().unwrap_or("")
    );
    outln!("revoked:   {}", r.revoked_by.map(|b| format!("yes, by {b}")).unwrap_or_else(|| "no".into()));
    outln!("statement:");
    outln!("{}", serde_json::to_string_pretty(&r.statement)?);
    Ok(())
}

pub(super) fn records_table(page: &RecordPage) {
    let now = now_ms();
    let mut t = Table::new(&["ID", "KIND", "AUTHOR", "SEQ", "ISSUED", "REVOKED", "SUMMARY"]);
    for r in &page.records {
        t.row(vec![
            r.id.to_hex(),
            r.kind.to_string(),
            short(&r.author.to_hex(), 12),
            r.seq.to_string(),
            ago(r.issued_at_ms, now),
            if r.revoked_by.is_some() { "yes".into() } else { "".into() },
            short(&summary(&r.statement), 80),
        ]);
    }
    t.print();
    print_next(&page.next_cursor);
}

pub(super) fn anomalies_table(list: &[AnomalyView]) {
    let now = now_ms();
    let mut t =
        Table::new(&["FINGERPRINT", "STATE", "EVENTS", "LAST", "SEVERITY", "SCORE", "SOURCE", "SUMMARY"]);
    for a in list {
        let r = a.report.as_ref();
        t.row(vec![
            a.fingerprint.clone(),
            a.state.clone(),
            a.events.to_string(),
            ago(a.last_event_ms, now),
            r.map(|r| format!("{} {}", r.severity_number, r.severity_text)).unwrap_or_default(),
            r.map(|r| output::score(r.score)).unwrap_or_default(),
            r.map(|r| r.source.clone()).unwrap_or_default(),
            r.map(|r| short(&r.summary, 60)).unwrap_or_default(),
        ]);
    }
    t.print();
}

impl Ctx {
    pub(super) async fn submit(&self, statement: serde_json::Value) -> anyhow::Result<u8> {
        let r = self.api.submit_json(&statement).await?;
        if self.json {
            print_json(&r)?;
        } else {
            outln!(
                "{} {} stored (seq {}){}",
                r.kind,
                r.id,
                r.seq,
                if r.gossiped { ", gossiped" } else { "" }
            );
        }
        Ok(0)
    }

    /// Submits an anomaly report and also prints its fingerprint: the handle `anomaly show`
    /// and `anomaly update` take (the record id names only this one report).
    async fn report(&self, statement: serde_json::Value) -> anyhow::Result<u8> {
        let r = self.api.submit_json(&statement).await?;
        let fingerprint = match self.api.record(&r.id.to_string()).await?.statement {
            Statement::Anomaly(a) => a.fingerprint().to_string(),
            _ => bail!("the node stored record {} as another kind than an anomaly", r.id),
        };
        if self.json {
            let mut v = serde_json::to_value(&r)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("fingerprint".into(), json!(fingerprint));
            }
            print_json(&v)?;
        } else {
            outln!("anomaly {} stored (seq {}){}", r.id, r.seq, if r.gossiped { ", gossiped" } else { "" });
            outln!("fingerprint {fingerprint} (palisade anomaly show {fingerprint})");
        }
        Ok(0)
    }

    pub(super) async fn get(&self, id: &str) -> anyhow::Result<u8> {
        let r = self.api.record(id).await?;
        if self.json {
            print_json(&r)?;
        } else {
            print_record(&r)?;
        }
        Ok(0)
    }

    pub(super) async fn query(&self, filter: RecordFilter) -> anyhow::Result<u8> {
        let page = self.api.query(&filter).await?;
        if self.json {
            print_json(&page)?;
        } else {
            records_table(&page);
        }
        Ok(0)
    }

    pub(super) async fn attest(&self, c: AttestCommand) -> anyhow::Result<u8> {
        match c {
            AttestCommand::Submit(a) => self.submit(statement::attestation(&a)?).await,
            AttestCommand::Get { id } => self.get(&id).await,
            AttestCommand::Query(q) => {
                let filter =
                    filter_from(Some("attestation"), &q.common, &q.attestation, &AnomalyFilters::default())?;
                if self.json {
                    return self.query(filter).await;
                }
                let page = self.api.query(&filter).await?;
                let now = now_ms();
                let mut t = Table::new(&[
                    "ID", "AUTHOR", "SEQ", "ISSUED", "SUBJECT", "VERDICT", "SCORE", "SCANNER", "REVOKED",
                ]);
                for r in &page.records {
                    let Statement::Attestation(a) = &r.statement else { continue };
                    t.row(vec![
                        r.id.to_hex(),
                        short(&r.author.to_hex(), 12),
                        r.seq.to_string(),
                        ago(r.issued_at_ms, now),
                        short(&a.subject.name, 40),
                        serde_json::to_value(a.verdict)?.as_str().unwrap_or("").to_string(),
                        output::score(a.score.0),
                        format!("{} {}", a.scanner.name, a.scanner.version),
                        if r.revoked_by.is_some() { "yes".into() } else { "".into() },
                    ]);
                }
                t.print();
                print_next(&page.next_cursor);
                Ok(0)
            }
            AttestCommand::Verdict(v) => {
                let params = VerdictParams { policy: v.policy, authors: v.trusted, threshold: v.threshold };
                let verdict = self.api.verdict(&v.digest, &params).await?;
                if self.json {
                    print_json(&verdict)?;
                } else {
                    outln!("subject:   {}", verdict.subject);
                    match &verdict.policy {
                        Some(p) => outln!(
                            "policy:    {} ({} of {} trusted authors must say pass)",
                            p.name.as_deref().unwrap_or("(from the query)"),
                            p.threshold,
                            p.authors.len()
                        ),
                        None => outln!(
                            "policy:    none configured (nothing is trusted; see [admin.trust] or --trusted)"
                        ),
                    }
                    outln!("passing:   {} trusted, failing: {}", verdict.passing, verdict.failing);
                    outln!("satisfied: {}", if verdict.satisfied { "yes" } else { "no" });
                    if verdict.truncated {
                        outln!("note:      more than 20 000 attestations; only the first were read");
                    }
                    let mut t =
                        Table::new(&["AUTHOR", "TRUSTED", "VERDICT", "SCORE", "SCANNER", "ISSUED", "RECORD"]);
                    for a in &verdict.attestations {
                        t.row(vec![
                            short(&a.author.to_hex(), 16),
                            match (a.trusted, a.flagged) {
                                (_, true) => "flagged".into(),
                                (true, false) => "yes".into(),
                                (false, false) => "no".into(),
                            },
                            a.verdict.clone(),
                            output::score(a.score),
                            format!("{} {}", a.scanner, a.scanner_version),
                            time(a.issued_at_ms),
                            a.record_id.to_hex(),
                        ]);
                    }
                    t.print();
                }
                Ok(if v.check && !verdict.satisfied { EXIT_UNSATISFIED } else { 0 })
            }
        }
    }

    pub(super) async fn anomaly(&self, c: AnomalyCommand) -> anyhow::Result<u8> {
        match c {
            AnomalyCommand::Report(a) => self.report(statement::anomaly(&a)?).await,
            AnomalyCommand::Update { fingerprint, state, comment } => {
                self.submit(json!({
                    "kind": "anomaly_update",
                    "fingerprint": fingerprint,
                    "state": state.to_ascii_lowercase(),
                    "comment": comment.unwrap_or_default(),
                }))
                .await
            }
            AnomalyCommand::Query(q) => {
                let filter =
                    filter_from(Some("anomaly"), &q.common, &AttestationFilters::default(), &q.anomaly)?;
                if self.json {
                    return self.query(filter).await;
                }
                let page = self.api.query(&filter).await?;
                let now = now_ms();
                let mut t = Table::new(&[
                    "ID",
                    "AUTHOR",
                    "ISSUED",
                    "SEVERITY",
                    "SCORE",
                    "SOURCE",
                    "FINGERPRINT",
                    "SUMMARY",
                ]);
                for r in &page.records {
                    let Statement::Anomaly(a) = &r.statement else { continue };
                    t.row(vec![
                        r.id.to_hex(),
                        short(&r.author.to_hex(), 12),
                        ago(r.issued_at_ms, now),
                        format!("{} {}", a.severity_number, a.severity_text),
                        output::score(a.score.0),
                        a.source.to_string(),
                        short(&a.fingerprint().to_hex(), 16),
                        short(&a.summary, 60),
                    ]);
                }
                t.print();
                print_next(&page.next_cursor);
                Ok(0)
            }
            AnomalyCommand::Open { state, limit, cursor } => {
                let page = self
                    .api
                    .anomalies(&AnomalyListParams { state: Some(state), limit: Some(limit), cursor })
                    .await?;
                if self.json {
                    print_json(&page)?;
                } else {
                    anomalies_table(&page.anomalies);
                    print_next(&page.next_cursor);
                }
                Ok(0)
            }
            AnomalyCommand::Show { fingerprint } => {
                let a = self.api.anomaly(&fingerprint).await?;
                if self.json {
                    print_json(&a)?;
                    return Ok(0);
                }
                outln!("fingerprint: {}", a.fingerprint);
                outln!("state:       {}", a.state);
                outln!("events:      {} (last {})", a.events, time(a.last_event_ms));
                if let Some(r) = &a.report {
                    outln!("source:      {}", r.source);
                    let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    outln!("labels:      {}", labels.join(" "));
                    outln!("severity:    {} {}", r.severity_number, r.severity_text);
                    outln!("score:       {}", output::score(r.score));
                    outln!("summary:     {}", r.summary);
                    outln!("reporter:    {}", r.author);
                }
                if let Some(id) = a.latest_report {
                    outln!("report:      {id}");
                }
                Ok(0)
            }
        }
    }

    pub(super) async fn records(&self, c: RecordsCommand) -> anyhow::Result<u8> {
        match c {
            RecordsCommand::Get { id } => self.get(&id).await,
            RecordsCommand::Query { kind, filters } => {
                self.query(filter_from(
                    kind.as_deref(),
                    &filters.common,
                    &filters.attestation,
                    &filters.anomaly,
                )?)
                .await
            }
            RecordsCommand::Revoke { id, reason } => {
                self.submit(json!({"kind": "revocation", "target": id, "reason": reason.unwrap_or_default()}))
                    .await
            }
            RecordsCommand::Feed { author, limit, cursor } => {
                let author = match author {
                    Some(a) => a,
                    None => self.api.node().await?.author.to_hex(),
                };
                let feed = self.api.feed(&author, &PageParams { limit: Some(limit), cursor }).await?;
                if self.json {
                    print_json(&feed)?;
                    return Ok(0);
                }
                outln!("author:  {}", feed.author);
                outln!(
                    "head:    {} records, contiguous to seq {}, highest seq {}{}",
                    feed.head.records,
                    feed.head.contiguous_seq,
                    feed.head.max_seq,
                    if feed.flagged { "  (FLAGGED: equivocated)" } else { "" }
                );
                let mut t = Table::new(&["SEQ", "ID", "KIND", "ISSUED", "REVOKED", "SUMMARY"]);
                for r in &feed.records {
                    t.row(vec![
                        r.seq.to_string(),
                        r.id.to_hex(),
                        r.kind.to_string(),
                        time(r.issued_at_ms),
                        if r.revoked_by.is_some() { "yes".into() } else { "".into() },
                        short(&summary(&r.statement), 60),
                    ]);
                }
                t.print();
                print_next(&feed.next_cursor);
                Ok(0)
            }
            RecordsCommand::Export { kind, author, since, until, output } => {
                let filter = RecordFilter {
                    kind,
                    author,
                    since_ms: since.as_deref().map(parse_time).transpose()?,
                    until_ms: until.as_deref().map(parse_time).transpose()?,
                    ..RecordFilter::default()
                };
                self.export(filter, output).await
            }
            RecordsCommand::Import { file } => self.import(file).await,
        }
    }

    pub(super) async fn export(&self, filter: RecordFilter, output: Option<PathBuf>) -> anyhow::Result<u8> {
        let mut stream = self.api.export(&filter).await?;
        let mut out: Box<dyn Write> = match &output {
            Some(p) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        };
        let mut lines = 0u64;
        let mut bytes = 0u64;
        while let Some(chunk) = stream.chunk().await? {
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            bytes += chunk.len() as u64;
            out.write_all(&chunk)?;
        }
        out.flush()?;
        if !stream.ends_with_newline() {
            bail!("the export was cut short (the node stopped?); run it again");
        }
        if output.is_some() || !std::io::stdout().is_terminal() {
            eprintln!("exported {lines} records ({})", output::bytes(bytes));
        }
        Ok(0)
    }

    pub(super) async fn import(&self, file: PathBuf) -> anyhow::Result<u8> {
        use futures::StreamExt;
        use tokio::io::AsyncReadExt;
        let (reader, len): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<u64>) =
            if file.as_os_str() == "-" {
                (Box::new(tokio::io::stdin()), None)
            } else {
                let f = tokio::fs::File::open(&file)
                    .await
                    .with_context(|| format!("cannot open {}", file.display()))?;
                let len = f.metadata().await.ok().map(|m| m.len());
                (Box::new(f), len)
            };
        let bar = match (std::io::stderr().is_terminal() && !self.json, len) {
            (true, Some(n)) => indicatif::ProgressBar::new(n).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            ),
            (true, None) => indicatif::ProgressBar::new_spinner(),
            (false, _) => indicatif::ProgressBar::hidden(),
        };
        let progress = bar.clone();
        let body = futures::stream::unfold(Some(reader), move |state| {
            let progress = progress.clone();
            async move {
                let mut reader = state?;
                let mut buf = vec![0u8; 64 * 1024];
                match reader.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        progress.inc(n as u64);
                        Some((Ok(Bytes::from(buf)), Some(reader)))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            }
        })
        .boxed();
        let report = self.api.import_stream(body).await;
        bar.finish_and_clear();
        let report = report?;
        if self.json {
            print_json(&report)?;
        } else {
            outln!(
                "{} lines: {} accepted, {} duplicate, {} rejected",
                report.lines,
                report.accepted,
                report.duplicate,
                report.rejected
            );
            for r in &report.rejections {
                outln!("  line {}: {}", r.line, r.error);
            }
            if report.rejections_truncated {
                outln!("  (more rejections not listed)");
            }
        }
        Ok(if report.rejected > 0 { 1 } else { 0 })
    }
}
