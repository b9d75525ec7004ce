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

    /// What the node says of itself, its peers and (up to `MAX_DUMP_FEEDS`) its feed heads,
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
        let or_error = |r: Result<serde_json::Value, palisade_api::ClientError>| {
            r.unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
        };
        serde_json::json!({
            "node": or_error(node),
            "peers": or_error(peers),
            "bans": or_error(bans),
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

    /// Dials a multiaddr.
    pub async fn dial(&self, addr: &str) -> anyhow::Result<()> {
        self.client.dial(addr).await?;
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
