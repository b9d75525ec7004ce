//! What the harness asks of a node, on top of `palisade_api::ApiClient` over the node's Unix
//! socket. Every call is bounded by the client's timeout.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use palisade_api::model::{
    ApiEvent, BanRequest, EventParams, FeedHeadView, LedgerParams, PageParams, RecordFilter,
};
use palisade_api::{ApiClient, EventStream};
use palisade_types::{AuthorKey, RecordId, Statement};

/// A node's admin API.
#[derive(Debug, Clone)]
pub struct NodeApi {
    client: ApiClient,
}

/// Most pages read when listing record ids (1000 per page): bounds one convergence poll.
const MAX_ID_PAGES: usize = 1000;
/// Pages of 1000 ledger entries a post-mortem dump reads at most.
const MAX_DUMP_LEDGER_PAGES: usize = 8;
/// Most feed heads written to a post-mortem dump (Sybil attackers make many authors).
const MAX_DUMP_FEEDS: usize = 20_000;

impl NodeApi {
    /// A client for the socket at `path`.
    pub fn new(path: PathBuf) -> NodeApi {
        NodeApi { client: ApiClient::unix(path).with_timeout(Duration::from_secs(10)) }
    }

    /// `GET /v1/health` answered 200.
    pub async fn health(&self) -> bool {
        self.client.health().await.is_ok()
    }

    /// Submits a statement; the id and feed seq once it is durable.
    pub async fn submit(&self, statement: &Statement) -> anyhow::Result<(RecordId, u64)> {
        let r = self.client.submit(statement).await?;
        Ok((r.id, r.seq))
    }

    /// The store quota's figures (`GET /v1/store/usage`).
    pub async fn store_usage(&self) -> anyhow::Result<palisade_api::model::StoreUsageView> {
        Ok(self.client.store_usage().await?)
    }

    /// The ids of `author`'s records this node holds (its feed, paged).
    pub async fn feed_ids(&self, author: &AuthorKey) -> anyhow::Result<HashSet<RecordId>> {
        let mut out = HashSet::new();
        let mut cursor = None;
        for _ in 0..MAX_ID_PAGES {
            let page = match self
                .client
                .feed(&author.to_hex(), &PageParams { limit: Some(1000), cursor: cursor.take() })
                .await
            {
                Ok(p) => p,
                Err(palisade_api::ClientError::Api { status: 404, .. }) => break,
                Err(e) => return Err(e.into()),
            };
            out.extend(page.records.iter().map(|r| r.id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(out)
    }

    /// The node's head of `author`'s feed (`None`: it holds nothing of that author).
    pub async fn feed_head(&self, author: &AuthorKey) -> anyhow::Result<Option<FeedHeadView>> {
        match self.client.feed(&author.to_hex(), &PageParams { limit: Some(1), cursor: None }).await {
            Ok(f) => Ok(Some(f.head)),
            Err(palisade_api::ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// What the node says of itself, its peers, bans, guard counters and ledger, and (up to
    /// `MAX_DUMP_FEEDS`) its feed heads,
    /// for post-mortems of a failed check.
    pub async fn state_dump(&self) -> serde_json::Value {
        let node = self.client.node().await.map(|n| serde_json::json!(n));
        let peers = self.client.peers().await.map(|p| serde_json::json!(p));
        let bans = self.client.bans().await.map(|b| serde_json::json!(b));
        let mut feeds = Vec::new();
        let mut cursor = None;
        while feeds.len() < MAX_DUMP_FEEDS {
            match self.client.feeds(&PageParams { limit: Some(1000), cursor: cursor.take() }).await {
                Ok(page) => {
                    feeds.extend(page.feeds.into_iter().map(|f| serde_json::json!(f)));
                    match page.next_cursor {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                Err(e) => {
                    feeds.push(serde_json::json!({ "error": e.to_string() }));
                    break;
                }
            }
        }
        // The guard's ledger (a ring of at most `limits.ledger_capacity_entries`): which
        // connections and peers it refused or punished, and why.
        let mut ledger = Vec::new();
        let mut after = None;
        for _ in 0..MAX_DUMP_LEDGER_PAGES {
            match self.client.ledger(&LedgerParams { cursor: after, limit: Some(1000) }).await {
                Ok(page) => {
                    ledger.extend(page.entries.into_iter().map(|e| serde_json::json!(e)));
                    match page.next_cursor {
                        Some(c) => after = Some(c),
                        None => break,
                    }
                }
                Err(e) => {
                    ledger.push(serde_json::json!({ "error": e.to_string() }));
                    break;
                }
            }
        }
        let counters = self.client.counters().await.map(|c| serde_json::json!(c));
        let or_error = |r: Result<serde_json::Value, palisade_api::ClientError>| {
            r.unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
        };
        serde_json::json!({
            "node": or_error(node),
            "peers": or_error(peers),
            "bans": or_error(bans),
            "counters": or_error(counters),
            "ledger": ledger,
            "feeds": feeds,
        })
    }

    /// Every stored record id (paged).
    pub async fn record_ids(&self) -> anyhow::Result<HashSet<RecordId>> {
        let mut out = HashSet::new();
        let mut cursor = None;
        for _ in 0..MAX_ID_PAGES {
            let page = self
                .client
                .query(&RecordFilter { limit: Some(1000), cursor: cursor.take(), ..RecordFilter::default() })
                .await?;
            out.extend(page.records.iter().map(|r| r.id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(out)
    }

    /// Whether the node holds record `id` (`GET /v1/records/{id}`; 404 is `false`).
    pub async fn has_record(&self, id: &RecordId) -> anyhow::Result<bool> {
        match self.client.record(&id.to_hex()).await {
            Ok(_) => Ok(true),
            Err(palisade_api::ClientError::Api { status: 404, .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Connected peers.
    pub async fn peer_count(&self) -> anyhow::Result<usize> {
        Ok(self.client.peers().await?.peers.len())
    }

    /// Bans a peer (partition in loopback mode).
    pub async fn ban_peer(&self, peer: &str, secs: u64, reason: &str) -> anyhow::Result<()> {
        self.client
            .ban(&BanRequest {
                target: format!("peer:{peer}"),
                duration_secs: Some(secs),
                permanent: false,
                reason: Some(reason.into()),
            })
            .await?;
        Ok(())
    }

    /// Lifts a peer ban (heal). Idempotent: a peer that is not banned (404) counts as lifted,
    /// so a heal retried after a timeout that the node did carry out is not an error.
    pub async fn unban_peer(&self, peer: &str) -> anyhow::Result<()> {
        match self.client.unban(&format!("peer:{peer}")).await {
            Ok(_) | Err(palisade_api::ClientError::Api { status: 404, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Dials a multiaddr without waiting for the outcome (the API answers once connected;
    /// the harness's heals must not wait for a paused or dead peer's handshake timeout).
    pub async fn dial(&self, addr: &str) -> anyhow::Result<()> {
        let (client, addr) = (self.client.clone(), addr.to_string());
        tokio::spawn(async move {
            if let Err(e) = client.dial(&addr).await {
                tracing::debug!(%addr, error = %e, "harness dial failed");
            }
        });
        Ok(())
    }

    /// Ban targets (`peer:<id>`, `ip:<addr>`) whose reason is not a chaos partition.
    pub async fn banned_targets(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .client
            .bans()
            .await?
            .bans
            .into_iter()
            .filter(|b| b.reason != "chaos partition")
            .map(|b| format!("{} ({})", b.target, b.reason))
            .collect())
    }

    /// Peers the guard penalised, disconnected or banned for misbehaviour (from the ledger).
    pub async fn penalised_peers(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut cursor = None;
        for _ in 0..100 {
            let page = self.client.ledger(&LedgerParams { cursor, limit: Some(1000) }).await?;
            for e in &page.entries {
                let action = e.action.as_str();
                if matches!(action, "penalized" | "penalised" | "penalty" | "disconnected" | "banned") {
                    if let Some(p) = &e.peer {
                        // Bans the harness made for partitions (manual, "chaos partition") are
                        // not misbehaviour.
                        let manual = e.reason == "manual"
                            || e.detail.as_deref().unwrap_or("").contains("chaos partition");
                        if !manual {
                            out.push(format!("{p} {action} ({})", e.reason));
                        }
                    }
                }
            }
            match page.next_cursor {
                Some(c) if !page.entries.is_empty() => cursor = Some(c),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Messages dropped before any signature work: guard drops (rates, sizes, caps) plus
    /// duplicates.
    pub async fn drops_before_verify(&self) -> anyhow::Result<u64> {
        let c = self.client.counters().await?;
        let guard_drops: u64 =
            c.guard.iter().filter(|(k, _)| k.starts_with("dropped.")).map(|(_, v)| v).sum();
        Ok(c.ingest.duplicates_before_verify + guard_drops)
    }

    /// Ledger entries (first time ms, action, reason) about any of `peers`, oldest first.
    pub async fn ledger_for(&self, peers: &[String]) -> anyhow::Result<Vec<(u64, String, String)>> {
        let mut out = Vec::new();
        let mut cursor = None;
        for _ in 0..100 {
            let page = self.client.ledger(&LedgerParams { cursor, limit: Some(1000) }).await?;
            for e in &page.entries {
                if e.peer.as_ref().is_some_and(|p| peers.iter().any(|q| q == p)) {
                    out.push((e.first_time_ms, e.action.clone(), e.reason.clone()));
                }
            }
            match page.next_cursor {
                Some(c) if !page.entries.is_empty() => cursor = Some(c),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Authors this node has flagged for equivocation (hex).
    pub async fn flagged_authors(&self) -> anyhow::Result<Vec<String>> {
        let page = self.client.equivocations(&PageParams { limit: Some(1000), cursor: None }).await?;
        Ok(page.equivocations.into_iter().map(|e| e.author.to_hex()).collect())
    }

    /// Subscribes to stored-record events.
    pub async fn record_events(&self) -> anyhow::Result<RecordEvents> {
        let stream =
            self.client.events(&EventParams { types: Some("record_stored".into()), kinds: None }).await?;
        Ok(RecordEvents { stream })
    }
}

/// A stream of stored record ids.
pub struct RecordEvents {
    stream: EventStream,
}

impl RecordEvents {
    /// The next stored record id; `None` when the stream ends.
    pub async fn next_record(&mut self) -> Option<RecordId> {
        loop {
            match self.stream.next_event().await {
                Ok(Some(ApiEvent::RecordStored { id, .. })) => return Some(id),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }
}

/// Reads a node's Prometheus text from `http://<addr>/metrics` (HTTP/1.0, bounded to 5 s and
/// 16 MiB).
pub async fn scrape_metrics(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    use anyhow::Context;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
        let mut body = Vec::new();
        stream.take(16 << 20).read_to_end(&mut body).await?;
        anyhow::Ok(body)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .with_context(|| format!("metrics at {addr} did not answer within 5 s"))?
        .with_context(|| format!("reading metrics at {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header in the metrics answer")?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        anyhow::bail!("metrics at {addr} answered `{status}`");
    }
    Ok(body.to_string())
}

/// The series of counter `family` (its `_total` samples) in Prometheus/OpenMetrics text, as
/// (labels, value); `None` when the text does not have the family at all (no `# TYPE` line and
/// no sample), `Some(empty)` when it is declared but has no series yet.
pub fn counter_series(text: &str, family: &str) -> Option<Vec<(String, f64)>> {
    let total = format!("{family}_total");
    let mut declared = false;
    let mut series = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            declared |= rest.split_whitespace().next() == Some(family);
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        if line.get(..name_end) != Some(total.as_str()) {
            continue;
        }
        let rest = line.get(name_end..).unwrap_or_default();
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(inner) => match label_end(inner) {
                Some(end) => (inner.get(..end).unwrap_or_default(), inner.get(end + 1..).unwrap_or_default()),
                None => continue,
            },
            None => ("", rest),
        };
        if let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) {
            series.push((labels.to_string(), value));
        }
    }
    (declared || !series.is_empty()).then_some(series)
}

/// The index of the `}` closing a label set (quoted values may hold `}` and escaped quotes).
fn label_end(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::counter_series;

    #[test]
    fn counter_series_sums_labelled_samples_and_tells_absent_from_empty() {
        let text = "# HELP palisade_gossip_send_failures Messages not sent.\n\
# TYPE palisade_gossip_send_failures counter\n\
palisade_gossip_send_failures_total{topic=\"proofs\",reason=\"a}b \\\"q\\\"\"} 3\n\
palisade_gossip_send_failures_total{topic=\"attestations\"} 2.0 1700000000\n\
palisade_gossip_send_failures_created{topic=\"proofs\"} 1.7e9\n\
palisade_gossip_dead_connections_total{reason=\"slow_peer\"} 9\n";
        let s = counter_series(text, "palisade_gossip_send_failures").expect("present");
        assert_eq!(s.len(), 2);
        assert_eq!(s.iter().map(|(_, v)| v).sum::<f64>(), 5.0);
        assert!(s[0].0.contains("a}b"));
        let declared_only = "# TYPE palisade_gossip_send_failures counter\n# EOF\n";
        assert_eq!(counter_series(declared_only, "palisade_gossip_send_failures"), Some(Vec::new()));
        assert_eq!(counter_series(text, "palisade_gossip_send"), None);
        let unlabelled = "palisade_gossip_send_failures_total 4\n";
        assert_eq!(
            counter_series(unlabelled, "palisade_gossip_send_failures"),
            Some(vec![(String::new(), 4.0)])
        );
    }
}
