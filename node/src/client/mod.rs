//! The client commands: they talk to a running node over its admin socket.
//!
//! Exit codes (also in the README): 0 ok; 1 the node answered with an error (or a local
//! input problem such as an unreadable file); 2 the node cannot be reached; 3 `attest
//! verdict --check` found the policy unsatisfied.

mod guard;
pub(crate) mod output;
mod records;
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
    AnomalyCommand, AttestCommand, BackupCommand, Command, GlobalArgs, LedgerArgs, LimitsCommand,
    PeersCommand, RecordsCommand, StoreCommand, WatchArgs,
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
            | Command::Store(StoreCommand::Usage)
            | Command::Backup(BackupCommand::Create { .. })
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
            Command::Store(StoreCommand::Usage) => ctx.store_usage().await,
            Command::Backup(BackupCommand::Create { file }) => {
                crate::backup::create(&ctx.api, &file, ctx.json).await
            }
            _ => bail!("not a client command"),
        }
    })
}

struct Ctx {
    api: ApiClient,
    json: bool,
}

impl Ctx {
    async fn store_usage(&self) -> anyhow::Result<u8> {
        let u = self.api.store_usage().await?;
        if self.json {
            print_json(&u)?;
            return Ok(0);
        }
        let share = u.bytes_used as f64 * 100.0 / u.max_bytes.max(1) as f64;
        outln!(
            "used:          {} of {} ({share:.1}%)",
            output::bytes(u.bytes_used),
            output::bytes(u.max_bytes)
        );
        outln!(
            "on disk:       {} ({:.1}x the records' bytes; pages {})",
            output::bytes(u.size_on_disk_bytes),
            u.size_on_disk_bytes as f64 / u.bytes_used.max(1) as f64,
            if u.compressed { "compressed" } else { "not compressed" }
        );
        if let Some(free) = u.disk_free_bytes {
            outln!("disk free:     {}", output::bytes(free));
        }
        outln!("evicted:       {} records, {}", u.evicted_records, output::bytes(u.evicted_bytes));
        outln!("refused:       {} (quota full), {} (evicted seq)", u.refused_quota_full, u.refused_evicted);
        outln!("protected:     {} authors (and this node's own)", u.protected_authors);
        outln!(
            "compacted:     {} times online, {} given back, writers paused {} ms the last time",
            u.compactions,
            output::bytes(u.compaction_reclaimed_bytes),
            u.last_compaction_pause_ms
        );
        if u.compaction_failures > 0 || u.compactions_skipped_no_room > 0 {
            outln!(
                "               {} failed, {} skipped for lack of free disk for the copy (see the node's log)",
                u.compaction_failures,
                u.compactions_skipped_no_room
            );
        }
        if u.size_on_disk_bytes > u.bytes_used.saturating_mul(10) && u.size_on_disk_bytes > 64 * 1024 * 1024 {
            outln!(
                "sled keeps the space of deleted and evicted records until the node compacts \
                 online (store.compact_above_bytes, store.compact_above_ratio), or \
                 `palisade store compact` runs with the node stopped."
            );
        }
        if u.quota_full {
            outln!(
                "QUOTA FULL: nothing left to evict; records of unprotected authors are refused. \
                 Raise store.max_bytes or protect fewer authors."
            );
        }
        Ok(0)
    }

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
        // What another node's `--bootstrap` or `peers dial` takes.
        for addr in &info.listen_addrs {
            outln!("dial:      {addr}/p2p/{}", info.peer_id);
        }
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
}
