//! The client commands: they talk to a running node over its admin socket.
//!
//! Exit codes (also in the README): 0 ok; 1 the node answered with an error (or a local
//! input problem such as an unreadable file); 2 the node cannot be reached; 3 `attest
//! verdict --check` found the policy unsatisfied.

mod output;
mod statement;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use palisade_api::model::{
    AnomalyListParams, AnomalyView, ApiEvent, BanRequest, EventParams, LedgerEntryView, LedgerParams,
    PageParams, RecordFilter, RecordPage, RecordView, VerdictParams,
};
use palisade_api::ApiClient;
use palisade_types::Statement;
use serde_json::json;

use self::output::{ago, print_json, short, time, Table};
use self::statement::{now_ms, parse_time};
use crate::cli::{
    AnomalyCommand, AttestCommand, Command, GlobalArgs, LedgerArgs, LimitsCommand, PeersCommand, QueryArgs,
    RecordsCommand, WatchArgs,
};

/// Exit code: the node could not be reached.
pub const EXIT_UNREACHABLE: u8 = 2;
/// Exit code: `attest verdict --check` and the policy is not satisfied.
pub const EXIT_UNSATISFIED: u8 = 3;

/// Whether `command` talks to a running node.
pub fn is_client_command(command: &Command) -> bool {
    matches!(
        command,
        Command::Status
            | Command::Peers(_)
            | Command::Attest(_)
            | Command::Anomaly(_)
            | Command::Records(_)
            | Command::Limits(_)
            | Command::Ledger(_)
            | Command::Watch(_)
    )
}

/// The socket: `--socket`/`PALISADE_SOCKET`, else `admin.socket` from the config, else
/// `<data-dir>/admin.sock`.
fn socket_path(g: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(s) = &g.socket {
        return Ok(s.clone());
    }
    let paths = crate::paths::Paths::resolve(g)?;
    // A broken config file is the daemon's problem; the client only wants the socket path.
    let config = crate::config::NodeConfig::load(&paths.config, false).unwrap_or_default();
    Ok(paths.socket_path(&config))
}

/// Runs a client command; returns the exit code.
pub fn run(command: Command, g: &GlobalArgs) -> anyhow::Result<u8> {
    let api = ApiClient::unix(socket_path(g)?);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let ctx = Ctx { api, json: g.json };
    runtime.block_on(async move {
        match command {
            Command::Status => ctx.status().await,
            Command::Peers(c) => ctx.peers(c).await,
            Command::Attest(c) => ctx.attest(c).await,
            Command::Anomaly(c) => ctx.anomaly(c).await,
            Command::Records(c) => ctx.records(c).await,
            Command::Limits(c) => ctx.limits(c).await,
            Command::Ledger(a) => ctx.ledger(a).await,
            Command::Watch(a) => ctx.watch(a).await,
            _ => bail!("not a client command"),
        }
    })
}

struct Ctx {
    api: ApiClient,
    json: bool,
}

fn filter_from(kind: Option<&str>, q: &QueryArgs) -> anyhow::Result<RecordFilter> {
    Ok(RecordFilter {
        kind: kind.map(str::to_string),
        author: q.author.clone(),
        subject: q.subject.clone(),
        fingerprint: q.fingerprint.clone(),
        source: q.source.clone(),
        min_severity: q.min_severity,
        state: q.state.clone(),
        since_ms: q.since.as_deref().map(parse_time).transpose()?,
        until_ms: q.until.as_deref().map(parse_time).transpose()?,
        exclude_revoked: q.exclude_revoked.then_some(true),
        limit: Some(q.limit),
        cursor: q.cursor.clone(),
        envelope: None,
    })
}

/// One line saying what a statement is about.
fn summary(s: &Statement) -> String {
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

fn print_next(next: &Option<String>) {
    if let Some(c) = next {
        eprintln!("more: --cursor {c}");
    }
}

fn print_record(r: &RecordView) -> anyhow::Result<()> {
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

fn records_table(page: &RecordPage) {
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

fn anomalies_table(list: &[AnomalyView]) {
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

fn ledger_rows(t: &mut Table, entries: &[LedgerEntryView]) {
    for e in entries {
        t.row(vec![
            e.seq.to_string(),
            time(e.time_ms),
            e.action.clone(),
            e.reason.clone(),
            e.count.to_string(),
            e.peer.clone().unwrap_or_default(),
            e.ip.clone().unwrap_or_default(),
            e.detail.clone().unwrap_or_default(),
        ]);
    }
}

impl Ctx {
    async fn status(&self) -> anyhow::Result<u8> {
        let info = self.api.node().await?;
        let ready = self.api.ready().await?;
        if self.json {
            let mut v = serde_json::to_value(&info)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("ready".into(), json!(ready.ready));
                o.insert("disk_low".into(), json!(ready.disk_low));
                o.insert("disk_free_bytes".into(), json!(ready.disk_free_bytes));
                if let Some(e) = &ready.error {
                    o.insert("not_ready_because".into(), json!(e.message));
                }
            }
            print_json(&v)?;
            return Ok(0);
        }
        let r = &info.records;
        outln!("peer id:   {}", info.peer_id);
        outln!("author:    {}", info.author);
        outln!("version:   {}", info.version);
        match &ready.error {
            None => outln!("ready:     yes"),
            Some(e) => outln!("ready:     no ({})", e.message),
        }
        outln!("uptime:    {}", output::duration(info.uptime_secs));
        outln!(
            "listening: {}",
            if info.listen_addrs.is_empty() { "-".into() } else { info.listen_addrs.join(" ") }
        );
        if !info.external_addrs.is_empty() {
            outln!("external:  {}", info.external_addrs.join(" "));
        }
        outln!("peers:     {}", info.peers);
        outln!(
            "records:   {} (attestation {}, anomaly {}, anomaly_update {}, revocation {})",
            r.total,
            r.attestation,
            r.anomaly,
            r.anomaly_update,
            r.revocation
        );
        outln!("authors:   {}", info.authors);
        match info.feed_head {
            Some(h) => outln!("own feed:  {} records, seq {}", h.records, h.max_seq),
            None => outln!("own feed:  empty"),
        }
        Ok(0)
    }

    async fn peers(&self, c: PeersCommand) -> anyhow::Result<u8> {
        match c {
            PeersCommand::List => {
                let list = self.api.peers().await?;
                if self.json {
                    print_json(&list)?;
                    return Ok(0);
                }
                let now = now_ms();
                let mut t =
                    Table::new(&["PEER", "ADDRESS", "DIR", "CONNS", "SCORE", "IN", "OUT", "SINCE", "AGENT"]);
                for p in &list.peers {
                    t.row(vec![
                        p.peer_id.clone(),
                        p.addr.clone(),
                        p.direction.clone(),
                        p.connections.to_string(),
                        format!("{:.2}", p.score),
                        output::bytes(p.bytes_in),
                        output::bytes(p.bytes_out),
                        ago(p.since_ms, now),
                        p.agent.clone().unwrap_or_default(),
                    ]);
                }
                t.print();
            }
            PeersCommand::Dial { addr } => {
                let r = self.api.dial(&addr).await?;
                if self.json {
                    print_json(&r)?;
                } else {
                    outln!("connected to {} at {}", r.peer_id, r.addr);
                }
            }
            PeersCommand::Disconnect { peer_id } => {
                let r = self.api.disconnect(&peer_id).await?;
                if self.json {
                    print_json(&r)?;
                } else {
                    outln!("disconnected {}", r.peer_id);
                }
            }
            PeersCommand::Ban(b) => {
                let duration_secs =
                    b.duration.as_deref().map(statement::parse_duration).transpose()?.map(|d| d.as_secs());
                let ban = self
                    .api
                    .ban(&BanRequest {
                        target: b.target,
                        duration_secs,
                        permanent: b.permanent,
                        reason: b.reason,
                    })
                    .await?;
                if self.json {
                    print_json(&ban)?;
                } else {
                    let until = ban.until_ms.map(time).unwrap_or_else(|| "permanent".into());
                    outln!("banned {} until {until}", ban.target);
                }
            }
            PeersCommand::Unban { target } => {
                let r = self.api.unban(&target).await?;
                if self.json {
                    print_json(&r)?;
                } else {
                    outln!("unbanned {}", r.target);
                }
            }
            PeersCommand::Bans => {
                let bans = self.api.bans().await?;
                if self.json {
                    print_json(&bans)?;
                    return Ok(0);
                }
                let mut t = Table::new(&["TARGET", "UNTIL", "SINCE", "REASON"]);
                for b in &bans.bans {
                    t.row(vec![
                        b.target.clone(),
                        b.until_ms.map(time).unwrap_or_else(|| "permanent".into()),
                        time(b.created_ms),
                        b.reason.clone(),
                    ]);
                }
                t.print();
            }
        }
        Ok(0)
    }

    async fn submit(&self, statement: serde_json::Value) -> anyhow::Result<u8> {
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

    async fn get(&self, id: &str) -> anyhow::Result<u8> {
        let r = self.api.record(id).await?;
        if self.json {
            print_json(&r)?;
        } else {
            print_record(&r)?;
        }
        Ok(0)
    }

    async fn query(&self, filter: RecordFilter) -> anyhow::Result<u8> {
        let page = self.api.query(&filter).await?;
        if self.json {
            print_json(&page)?;
        } else {
            records_table(&page);
        }
        Ok(0)
    }

    async fn attest(&self, c: AttestCommand) -> anyhow::Result<u8> {
        match c {
            AttestCommand::Submit(a) => self.submit(statement::attestation(&a)?).await,
            AttestCommand::Get { id } => self.get(&id).await,
            AttestCommand::Query(q) => {
                let filter = filter_from(Some("attestation"), &q)?;
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

    async fn anomaly(&self, c: AnomalyCommand) -> anyhow::Result<u8> {
        match c {
            AnomalyCommand::Report(a) => self.submit(statement::anomaly(&a)?).await,
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
                let filter = filter_from(Some("anomaly"), &q)?;
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

    async fn records(&self, c: RecordsCommand) -> anyhow::Result<u8> {
        match c {
            RecordsCommand::Get { id } => self.get(&id).await,
            RecordsCommand::Query { kind, filters } => {
                self.query(filter_from(kind.as_deref(), &filters)?).await
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

    async fn export(&self, filter: RecordFilter, output: Option<PathBuf>) -> anyhow::Result<u8> {
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

    async fn import(&self, file: PathBuf) -> anyhow::Result<u8> {
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

    async fn limits(&self, c: LimitsCommand) -> anyhow::Result<u8> {
        let view = match c {
            LimitsCommand::Show => self.api.limits().await?,
            LimitsCommand::Set { key, value } => {
                let v = match value.parse::<u64>() {
                    Ok(n) => json!(n),
                    Err(_) => json!(value),
                };
                let view = self.api.set_limit(&key, v).await?;
                if !self.json {
                    let k = key.strip_prefix("limits.").unwrap_or(&key);
                    outln!("{k} = {}", view.limits.get(k).map(|v| v.to_string()).unwrap_or(value));
                    return Ok(0);
                }
                view
            }
        };
        if self.json {
            print_json(&view)?;
            return Ok(0);
        }
        let mut t = Table::new(&["LIMIT", "VALUE", "CHANGE"]);
        for (k, v) in &view.limits {
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let live = if view.restart_only.iter().any(|r| r == k) { "restart" } else { "live" };
            t.row(vec![k.clone(), value, live.into()]);
        }
        t.print();
        Ok(0)
    }

    async fn ledger(&self, a: LedgerArgs) -> anyhow::Result<u8> {
        let mut cursor = a.after;
        let mut first = true;
        loop {
            let page = self.api.ledger(&LedgerParams { cursor, limit: Some(a.limit) }).await?;
            if self.json {
                if a.follow {
                    for e in &page.entries {
                        outln!("{}", serde_json::to_string(e)?);
                    }
                } else {
                    print_json(&page)?;
                }
            } else {
                let mut t = Table::new(&["SEQ", "TIME", "ACTION", "REASON", "COUNT", "PEER", "IP", "DETAIL"]);
                ledger_rows(&mut t, &page.entries);
                if first || !page.entries.is_empty() {
                    let text = t.render();
                    // Following: the header once, then rows only.
                    let body =
                        if first { text } else { text.lines().skip(1).map(|l| format!("{l}\n")).collect() };
                    out!("{body}");
                    std::io::stdout().flush()?;
                }
            }
            first = false;
            cursor = page.next_cursor.or(cursor);
            if !a.follow {
                if !self.json {
                    if let Some(c) = page.next_cursor {
                        if page.entries.len() == a.limit {
                            eprintln!("more: --after {c}");
                        }
                    }
                }
                return Ok(0);
            }
            if page.entries.len() < a.limit {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }

    async fn watch(&self, a: WatchArgs) -> anyhow::Result<u8> {
        let mut events = self.api.events(&EventParams { types: a.types, kinds: a.kinds }).await?;
        // On stderr, so scripts reading stdout see only events; printed once subscribed.
        eprintln!("watching events (Ctrl-C to stop)");
        let mut out = std::io::stdout();
        loop {
            let Some(e) = events.next_event().await? else {
                return Err(anyhow!(palisade_api::ClientError::Http(
                    "the node ended the event stream (shutting down?)".into()
                )));
            };
            if self.json {
                writeln!(out, "{}", serde_json::to_string(&e)?)?;
            } else {
                writeln!(out, "{}  {}", time(now_ms()), describe(&e))?;
            }
            out.flush()?;
            if let ApiEvent::Lagged { missed } = e {
                bail!("fell behind the node by {missed}+ events and was dropped; run `palisade watch` again");
            }
        }
    }
}

/// One line describing an event.
fn describe(e: &ApiEvent) -> String {
    match e {
        ApiEvent::RecordStored { id, kind, author, seq, source } => format!(
            "record_stored  {kind} {id} author {} seq {seq} via {}",
            short(&author.to_hex(), 12),
            serde_json::to_value(source)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
        ApiEvent::PeerConnected { peer, addr, direction } => {
            format!("peer_connected  {peer} {direction} {addr}")
        }
        ApiEvent::PeerDisconnected { peer } => format!("peer_disconnected  {peer}"),
        ApiEvent::Equivocation { author, seq } => format!("equivocation  author {author} seq {seq}"),
        ApiEvent::Banned { target, until_ms, reason } => format!(
            "banned  {target} until {} ({reason})",
            until_ms.map(time).unwrap_or_else(|| "lifted by an admin (permanent)".into())
        ),
        ApiEvent::Unbanned { target } => format!("unbanned  {target}"),
        ApiEvent::PeerPenaltyDisconnect { peer, reason } => {
            format!("peer_penalty_disconnect  {peer} ({reason})")
        }
        ApiEvent::Lagged { missed } => format!("lagged  missed {missed}+ events; the stream ends"),
    }
}
