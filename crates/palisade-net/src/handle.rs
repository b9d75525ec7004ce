//! The cloneable handle through which everything else talks to the network task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use palisade_guard::Guard;
use palisade_store::{SigningHistory, Source, Store};
use palisade_types::{AuthorKey, FeedWriter, RecordId, RecordKind, SignError, Statement, VerifiedRecord};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, Mutex};

use crate::error::NetError;
use crate::event_loop::{ApiRecord, ApiSource, MAX_API_BATCH_RECORDS};
use crate::metrics::{IngestStats, NetMetrics};
use crate::reason::Reason;

/// Something that happened in the network task, for subscribers (SSE, tests).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NetEvent {
    /// A record was stored (from any source, including local submissions).
    RecordStored {
        /// Record id.
        id: RecordId,
        /// Its kind.
        kind: RecordKind,
        /// Its author.
        author: AuthorKey,
        /// Its feed position.
        seq: u64,
        /// How it arrived.
        source: Source,
    },
    /// A peer connected (first connection).
    PeerConnected {
        /// The peer.
        peer: String,
        /// Its address.
        addr: String,
        /// `inbound` or `outbound`.
        direction: &'static str,
    },
    /// A peer's last connection closed.
    PeerDisconnected {
        /// The peer.
        peer: String,
    },
    /// An author signed two records at one seq.
    Equivocation {
        /// The author.
        author: AuthorKey,
        /// The seq.
        seq: u64,
    },
}

/// One connected peer.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    /// Peer id.
    pub peer_id: String,
    /// Remote address of its first connection.
    pub addr: String,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// Open connections.
    pub connections: usize,
    /// Connected since (ms since epoch).
    pub since_ms: u64,
    /// Gossipsub score, if known.
    pub gossip_score: Option<f64>,
    /// Agent version from identify, if received.
    pub agent: Option<String>,
}

/// Addresses and identity of the node.
#[derive(Debug, Clone, Serialize)]
pub struct NetInfo {
    /// Our peer id.
    pub peer_id: String,
    /// Addresses we listen on.
    pub listen_addrs: Vec<String>,
    /// Addresses we believe others can reach us at.
    pub external_addrs: Vec<String>,
    /// Connected peers.
    pub connected_peers: usize,
}

/// Result of a local submission.
#[derive(Debug, Clone, Serialize)]
pub struct SubmitReceipt {
    /// The new record's id.
    pub id: RecordId,
    /// Its seq in our feed.
    pub seq: u64,
    /// Whether gossipsub had peers to send it to right away (if not, sync delivers it).
    pub gossiped: bool,
}

pub(crate) enum Command {
    Publish {
        record: Box<VerifiedRecord>,
        reply: oneshot::Sender<bool>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, NetError>>,
    },
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    Info {
        reply: oneshot::Sender<NetInfo>,
    },
    SyncNow {
        peer: Option<PeerId>,
        reply: oneshot::Sender<usize>,
    },
    /// Records handed in through the admin API, for the ingest pipeline.
    Ingest {
        source: ApiSource,
        records: Vec<ApiRecord>,
        reply: oneshot::Sender<Vec<Reason>>,
    },
}

/// How long [`Handle::ingest`] keeps offering records the pipeline shed (`verify_queue_full`)
/// before it reports them as shed.
pub const API_INGEST_PATIENCE: Duration = Duration::from_secs(10);
/// The first pause before shed records are offered again; it doubles up to
/// [`API_INGEST_RETRY_MAX`].
const API_INGEST_RETRY_MIN: Duration = Duration::from_millis(5);
const API_INGEST_RETRY_MAX: Duration = Duration::from_millis(200);

/// Capacity of the command channel: enough for bursts of API calls; when full, callers wait
/// (backpressure on the API, never on peers).
pub(crate) const COMMAND_QUEUE: usize = 256;
/// Capacity of the event broadcast: a slow subscriber loses the oldest events (and is told
/// how many), it never slows the node.
pub(crate) const EVENT_QUEUE: usize = 4096;

struct Shared {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<NetEvent>,
    store: Store,
    guard: Guard,
    metrics: NetMetrics,
    writer: Mutex<FeedWriter>,
    /// Set by [`Handle::protect_signing`].
    signing: std::sync::OnceLock<Arc<SigningHistory>>,
    /// A seq of the own feed the store must hold before the next signature, beside the
    /// signing history (the store manifest's own-feed head after a recovery; 0: none).
    own_floor: std::sync::atomic::AtomicU64,
    /// The group commit of local submissions (flush, then signing history).
    ack_commit: crate::ack_commit::AckCommit,
    /// The own-feed check at start, and own records that arrived from elsewhere.
    own_gate: Arc<crate::own_check::OwnFeedGate>,
    peer_id: PeerId,
    author: AuthorKey,
    live_threads: Arc<std::sync::atomic::AtomicUsize>,
}

/// The network's handle. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("peer_id", &self.shared.peer_id).finish()
    }
}

impl Handle {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        commands: mpsc::Sender<Command>,
        events: broadcast::Sender<NetEvent>,
        store: Store,
        guard: Guard,
        metrics: NetMetrics,
        writer: FeedWriter,
        own_gate: Arc<crate::own_check::OwnFeedGate>,
        peer_id: PeerId,
        live_threads: Arc<std::sync::atomic::AtomicUsize>,
    ) -> Handle {
        let author = writer.author();
        Handle {
            shared: Arc::new(Shared {
                commands,
                events,
                store,
                guard,
                metrics,
                writer: Mutex::new(writer),
                signing: std::sync::OnceLock::new(),
                own_floor: std::sync::atomic::AtomicU64::new(0),
                ack_commit: crate::ack_commit::AckCommit::default(),
                own_gate,
                peer_id,
                author,
                live_threads,
            }),
        }
    }

    /// Whether the own-feed check at start is still running (submissions are refused with
    /// [`NetError::OwnFeedCheck`] until it ends; `network.own_feed_check_secs`).
    pub fn own_feed_checking(&self) -> bool {
        self.shared.own_gate.checking()
    }

    /// Pipeline threads (signature workers and the store writer) still running. Zero after
    /// [`Network::shutdown`](crate::Network::shutdown) returns.
    pub fn pipeline_threads_alive(&self) -> usize {
        self.shared.live_threads.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.shared.commands.send(make(tx)).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Signs `statement` as the next record of this node's feed, stores it, makes it durable
    /// (flush), then gossips it. Returns once the record is durable; if no peer is subscribed
    /// yet, the record still exists and reaches peers through sync.
    ///
    /// Cancellation-safe: the work runs in its own task, so a caller that gives up (a client
    /// that disconnects, a timeout) cannot stop it between storing the record and advancing
    /// the feed, which would make the next submission reuse the seq (a self-equivocation).
    pub async fn submit(&self, statement: Statement) -> Result<SubmitReceipt, NetError> {
        let this = self.clone();
        tokio::spawn(async move { this.submit_to_completion(statement).await })
            .await
            .map_err(|_| NetError::Stopped)?
    }

    /// Hands records to the ingest pipeline through an admin API door and waits for every
    /// decision, in input order. They pass the same checks, verify workers and store thread
    /// as records from peers (no peer budgets: no peer sent them); a stored record is announced
    /// ([`NetEvent::RecordStored`]) and an equivocation counted, announced and gossiped as a
    /// proof, as for any other origin. Records the pipeline sheds (`verify_queue_full`) are
    /// offered again with backoff for up to [`API_INGEST_PATIENCE`]. Stored records are not
    /// flushed yet: call [`Store::flush`] before acknowledging them. At most
    /// [`MAX_API_BATCH_RECORDS`] per call (more are refused as shed).
    pub async fn ingest(&self, source: ApiSource, records: Vec<ApiRecord>) -> Result<Vec<Reason>, NetError> {
        if records.len() > MAX_API_BATCH_RECORDS {
            return Ok(vec![Reason::VerifyQueueFull; records.len()]);
        }
        let mut reasons = vec![Reason::VerifyQueueFull; records.len()];
        let mut todo: Vec<usize> = (0..records.len()).collect();
        let give_up = Instant::now() + API_INGEST_PATIENCE;
        let mut pause = API_INGEST_RETRY_MIN;
        while !todo.is_empty() {
            let offered = todo.iter().filter_map(|&i| records.get(i).cloned()).collect();
            let decided = self.request(|reply| Command::Ingest { source, records: offered, reply }).await?;
            let mut shed = Vec::new();
            for (&i, reason) in todo.iter().zip(decided) {
                if let Some(slot) = reasons.get_mut(i) {
                    *slot = reason;
                }
                if reason == Reason::VerifyQueueFull {
                    shed.push(i);
                }
            }
            if shed.is_empty() || Instant::now() + pause > give_up {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(API_INGEST_RETRY_MAX);
            todo = shed;
        }
        Ok(reasons)
    }

    /// Protects this node's feed against signing a seq twice: from now on every local record
    /// is recorded in `history` (after the store flush, before the acknowledgement), and no
    /// record is signed at or below its highest seq. When the store holds less of the own
    /// feed than the history (damaged, deleted, restored from an old backup), submissions
    /// fail with [`NetError::OwnFeedBehind`] until sync brings the missing records back.
    /// Set once, before submissions start (the daemon does it at start).
    pub fn protect_signing(&self, history: SigningHistory) -> Result<(), NetError> {
        self.shared
            .signing
            .set(Arc::new(history))
            .map_err(|_| NetError::Setup("signing protection was already set".into()))
    }

    /// The highest record this node signed, from its signing history (`None` without
    /// [`protect_signing`](Self::protect_signing) or before the first signature).
    pub fn signing_highest(&self) -> Option<palisade_store::Signed> {
        self.shared.signing.get().and_then(|h| h.highest())
    }

    /// Also refuses to sign until the store holds the own feed up to `seq` (the store
    /// manifest's own-feed head when a node recovers from peers after losing records: the
    /// signing history may be as old as a restored store). Never lowers an earlier floor.
    pub fn require_own_feed_to(&self, seq: u64) {
        self.shared.own_floor.fetch_max(seq, std::sync::atomic::Ordering::AcqRel);
    }

    /// Moves the writer past own records stored from elsewhere (the own-feed check's fetch,
    /// or another node signing with this key), so it never signs at a seq the store holds.
    async fn resync_writer(&self, writer: &mut FeedWriter) -> Result<(), NetError> {
        let store = self.shared.store.clone();
        let author = self.shared.author;
        let last = tokio::task::spawn_blocking(move || store.latest_in_feed(&author))
            .await
            .map_err(|_| NetError::Stopped)??;
        if let Some((seq, id)) = last.filter(|(seq, _)| *seq >= writer.next_seq()) {
            tracing::info!(seq, "own records arrived from peers; signing continues after them");
            writer.reset(Some((seq, id)));
        }
        Ok(())
    }

    /// Refuses to sign below the signing history; re-reads the store's own feed head first,
    /// since sync may have brought lost records back since the start.
    async fn check_signing_history(
        &self,
        writer: &mut FeedWriter,
        history: &SigningHistory,
    ) -> Result<(), NetError> {
        let floor = self.shared.own_floor.load(std::sync::atomic::Ordering::Acquire);
        let signed = history.highest().map(|s| s.seq).unwrap_or(0).max(floor);
        if signed == 0 || writer.next_seq() > signed {
            return Ok(());
        }
        let store = self.shared.store.clone();
        let author = self.shared.author;
        let last = tokio::task::spawn_blocking(move || store.latest_in_feed(&author))
            .await
            .map_err(|_| NetError::Stopped)??;
        match last {
            Some((seq, id)) if seq >= signed => {
                writer.reset(Some((seq, id)));
                Ok(())
            }
            _ => Err(NetError::OwnFeedBehind { stored: last.map(|(s, _)| s).unwrap_or(0), signed }),
        }
    }

    async fn submit_to_completion(&self, statement: Statement) -> Result<SubmitReceipt, NetError> {
        let now = crate::now_ms();
        let (record, history) = {
            // Held from signing until the store thread has written the record, so seqs are
            // assigned and written in order.
            let mut writer = self.shared.writer.lock().await;
            if self.shared.own_gate.checking() {
                return Err(NetError::OwnFeedCheck);
            }
            if self.shared.own_gate.resync() {
                self.resync_writer(&mut writer).await?;
            }
            let history = self.shared.signing.get().cloned();
            if let Some(h) = &history {
                self.check_signing_history(&mut writer, h).await?;
            }
            // The flood stage refuses with its numbers before anything is signed.
            self.shared.store.check_disk_room()?;
            // Signing holds the record to the static rules receivers check.
            let record = writer.sign_candidate(statement, now).map_err(|e| match e {
                SignError::Invalid(v) => NetError::Invalid(v),
                other => NetError::Sign(other),
            })?;
            // The same road as every other record: front checks, verify worker, store thread.
            let own = ApiRecord { wire: record.wire_bytes().to_vec(), expected_id: Some(record.id()) };
            let decided = self.ingest(ApiSource::Local, vec![own]).await?;
            match decided.first().copied() {
                Some(Reason::Stored | Reason::Duplicate) => {}
                Some(reason) => return Err(NetError::Refused(reason)),
                None => return Err(NetError::Refused(Reason::StoreError)),
            }
            // The store thread has written the record, so its seq is used whatever happens
            // next (a failed flush, a failed history write, a stopped node): the writer moves
            // past it rather than ever sign another record there.
            writer.commit(&record);
            (record, history)
        };
        // Outside the writer lock: the next submission is signed and written while this one
        // is flushed and recorded, and concurrent flushes and history writes coalesce (sled's
        // flush makes everything written so far durable; a history write at or below a seq
        // already durable there returns at once). Only a flushed record whose seq the history
        // holds is acknowledged.
        let (seq, id) = (record.record().position.seq, record.id());
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            shared.ack_commit.commit(&shared.store, history.as_deref(), palisade_store::Signed { seq, id })
        })
        .await
        .unwrap_or(Err(NetError::Stopped))?;
        let (id, seq) = (record.id(), record.record().position.seq);
        let gossiped = self.request(|reply| Command::Publish { record: Box::new(record), reply }).await?;
        Ok(SubmitReceipt { id, seq, gossiped })
    }

    /// Dials an address and answers once the connection is up, or with why it failed
    /// ([`NetError::Dial`]; the transport's handshake timeout bounds the wait).
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NetError> {
        self.request(|reply| Command::Dial { addr, reply }).await?
    }

    /// Closes every connection to a peer. Returns whether it was connected.
    pub async fn disconnect(&self, peer: PeerId) -> Result<bool, NetError> {
        self.request(|reply| Command::Disconnect { peer, reply }).await
    }

    /// Connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.request(|reply| Command::Peers { reply }).await
    }

    /// Our addresses and identity.
    pub async fn info(&self) -> Result<NetInfo, NetError> {
        self.request(|reply| Command::Info { reply }).await
    }

    /// Starts a sync round now with `peer` (or every connected peer). Returns how many
    /// peers were asked.
    pub async fn sync_now(&self, peer: Option<PeerId>) -> Result<usize, NetError> {
        self.request(|reply| Command::SyncNow { peer, reply }).await
    }

    /// Subscribes to network events.
    pub fn subscribe(&self) -> broadcast::Receiver<NetEvent> {
        self.shared.events.subscribe()
    }

    /// Headline ingest counters.
    pub fn stats(&self) -> IngestStats {
        self.shared.metrics.snapshot()
    }

    /// The metrics.
    pub fn metrics(&self) -> &NetMetrics {
        &self.shared.metrics
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The guard.
    pub fn guard(&self) -> &Guard {
        &self.shared.guard
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// Our author key.
    pub fn author(&self) -> AuthorKey {
        self.shared.author
    }
}
