//! `limits`, `ledger` and `watch`: the guard's limits and audit trail, live events.

use super::*;

pub(super) fn ledger_rows(t: &mut Table, entries: &[LedgerEntryView]) {
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

/// One line describing an event.
pub(super) fn describe(e: &ApiEvent) -> String {
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

impl Ctx {
    pub(super) async fn limits(&self, c: LimitsCommand) -> anyhow::Result<u8> {
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

    pub(super) async fn ledger(&self, a: LedgerArgs) -> anyhow::Result<u8> {
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
                if !a.follow {
                    t.print();
                } else {
                    // Following: the header first, even before any entry, then rows as they come.
                    if first {
                        out!("{}", t.header());
                    }
                    out!("{}", t.render_rows());
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

    pub(super) async fn watch(&self, a: WatchArgs) -> anyhow::Result<u8> {
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
