//! Ingest and network metrics (Prometheus), also readable in-process for tests and the
//! admin API.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::reason::{Acceptance, Reason};

/// Labels of `palisade_ingest_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngestLabels {
    /// `gossip`, `sync`, `proof` (a half of an equivocation proof), `local`, `import`.
    pub source: &'static str,
    /// `accept`, `reject`, `ignore`.
    pub outcome: &'static str,
    /// Named reason (`stored`, `duplicate`, `bad_signature`, ...).
    pub reason: &'static str,
}

/// Labels of `palisade_peers`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
}

/// Labels of `palisade_records_stored_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Record kind.
    pub kind: &'static str,
}

/// Labels of `palisade_gossip_dead_connections_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GossipDeadLabels {
    /// `slow_peer` (our messages to the peer kept failing) or `gossip_disabled` (a peer that
    /// speaks gossipsub has no working gossipsub stream on this connection).
    pub reason: &'static str,
}

/// Labels of `palisade_gossip_send_failures_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SendFailureLabels {
    /// gossipsub's send queue that was full: `priority` (our own publishes and control
    /// messages) or `non_priority` (forwarded messages and IWANT answers).
    pub queue: &'static str,
}

/// Labels of `palisade_sync_bytes_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncBytesLabels {
    /// `sync/1` or `sync/2`: the stream's negotiated protocol.
    pub protocol: &'static str,
    /// `sent` or `received`.
    pub direction: &'static str,
}

/// Labels of `palisade_sync_rounds_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncRoundLabels {
    /// `sync/2` (reconciliation) or `sync/1` (heads walk).
    pub protocol: &'static str,
}

/// All metrics of this crate. Cheap to clone.
#[derive(Clone)]
pub struct NetMetrics {
    /// Every ingest decision by source, outcome and reason.
    pub ingest: Family<IngestLabels, Counter>,
    /// Records stored, by kind.
    pub stored: Family<KindLabels, Counter>,
    /// Signatures checked (each unique record once, plus batch-fallback singles).
    pub signatures_verified: Counter,
    /// Copies dropped as duplicates before any signature work.
    pub duplicates_before_verify: Counter,
    /// Records per signature batch.
    pub verify_batch_size: Histogram,
    /// Seconds per signature batch.
    pub verify_batch_seconds: Histogram,
    /// Seconds per store insert.
    pub store_write_seconds: Histogram,
    /// Seconds per group-commit flush.
    pub store_flush_seconds: Histogram,
    /// Records waiting for verification.
    pub verify_queue_depth: Gauge,
    /// Connected peers by direction.
    pub peers: Family<DirectionLabels, Gauge>,
    /// Sync requests served, and records pulled by sync.
    pub sync_requests_served: Counter,
    /// Records received through sync responses.
    pub sync_records_received: Counter,
    /// Sync frame bytes (length prefix included) by protocol and direction, both as client
    /// and as server.
    pub sync_bytes: Family<SyncBytesLabels, Counter>,
    /// Sync rounds started, by protocol.
    pub sync_rounds: Family<SyncRoundLabels, Counter>,
    /// Sync rounds that found every difference (the records they asked for may still be on
    /// their way), by protocol.
    pub sync_rounds_finished: Family<SyncRoundLabels, Counter>,
    /// Seconds from a round's start until it knew every difference, by protocol.
    pub sync_round_seconds: Family<SyncRoundLabels, Histogram, fn() -> Histogram>,
    /// Reconciliation queries dropped by the client's bounds (`MAX_PENDING_QUERIES`,
    /// `MAX_REQUESTS_PER_ROUND`): the round ended before every range was settled.
    pub sync_reconcile_cut: Counter,
    /// Equivocation proofs published or received.
    pub equivocations: Counter,
    /// 1 while the own-feed check at start runs (submissions wait), else 0.
    pub own_feed_checking: Gauge,
    /// Peers that answered the own-feed check with more of this node's feed than its store
    /// held (a damaged or restored store, or another node running with this key).
    pub own_feed_behind_peers: Counter,
    /// Records asked for in sync requests not yet answered.
    pub sync_records_requested: Gauge,
    /// Sync requests sent and not yet answered or failed.
    pub sync_requests_pending: Gauge,
    /// Ban and peer-book changes queued for the node-state writer and not yet on disk.
    pub state_writes_pending: Gauge,
    /// Ban and peer-book changes refused because the node-state writer's queue was full
    /// (`MAX_PENDING_STATE_CHANGES`); they apply in memory only.
    pub state_writes_refused: Counter,
    /// Connections closed (and redialled) because gossip over them was dead, by reason.
    pub gossip_dead_connections: Family<GossipDeadLabels, Counter>,
    /// Gossipsub messages that could not be queued for a peer because its send queue was
    /// full, by queue, from gossipsub's `SlowPeer` reports.
    pub gossip_send_failures: Family<SendFailureLabels, Counter>,
    /// Seconds the event loop spent on one wake-up (every source drained up to its budget).
    pub loop_iteration_seconds: Histogram,
    queue_depth: Arc<AtomicI64>,
}

impl NetMetrics {
    /// Registers every metric under `registry` (prefix `palisade`).
    pub fn new(registry: &mut Registry) -> NetMetrics {
        let m = NetMetrics {
            ingest: Family::default(),
            stored: Family::default(),
            signatures_verified: Counter::default(),
            duplicates_before_verify: Counter::default(),
            verify_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            verify_batch_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            store_write_seconds: Histogram::new(exponential_buckets(0.000005, 2.0, 18)),
            store_flush_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            verify_queue_depth: Gauge::default(),
            peers: Family::default(),
            sync_requests_served: Counter::default(),
            sync_records_received: Counter::default(),
            sync_bytes: Family::default(),
            sync_rounds: Family::default(),
            sync_rounds_finished: Family::default(),
            sync_round_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 18))
            }),
            sync_reconcile_cut: Counter::default(),
            equivocations: Counter::default(),
            own_feed_checking: Gauge::default(),
            own_feed_behind_peers: Counter::default(),
            sync_records_requested: Gauge::default(),
            sync_requests_pending: Gauge::default(),
            state_writes_pending: Gauge::default(),
            state_writes_refused: Counter::default(),
            gossip_dead_connections: Family::default(),
            gossip_send_failures: Family::default(),
            loop_iteration_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            queue_depth: Arc::new(AtomicI64::new(0)),
        };
        registry.register(
            "palisade_ingest",
            "Ingest decisions by source, outcome and reason",
            m.ingest.clone(),
        );
        registry.register("palisade_records_stored", "Records stored, by kind", m.stored.clone());
        registry.register(
            "palisade_signatures_verified",
            "Record signatures checked (once per unique record)",
            m.signatures_verified.clone(),
        );
        registry.register(
            "palisade_duplicates_before_verify",
            "Record copies dropped as duplicates before any signature work",
            m.duplicates_before_verify.clone(),
        );
        registry.register(
            "palisade_verify_batch_size",
            "Records per signature batch",
            m.verify_batch_size.clone(),
        );
        registry.register_with_unit(
            "palisade_verify_batch",
            "Time to verify one signature batch",
            prometheus_client::registry::Unit::Seconds,
            m.verify_batch_seconds.clone(),
        );
        registry.register_with_unit(
            "palisade_store_write",
            "Time to store one record",
            prometheus_client::registry::Unit::Seconds,
            m.store_write_seconds.clone(),
        );
        registry.register_with_unit(
            "palisade_store_flush",
            "Time of one group-commit flush",
            prometheus_client::registry::Unit::Seconds,
            m.store_flush_seconds.clone(),
        );
        registry.register(
            "palisade_verify_queue_depth",
            "Records waiting for signature checks",
            m.verify_queue_depth.clone(),
        );
        registry.register("palisade_peers", "Connected peers by direction", m.peers.clone());
        registry.register(
            "palisade_sync_requests_served",
            "Sync requests answered",
            m.sync_requests_served.clone(),
        );
        registry.register(
            "palisade_sync_records_received",
            "Records received in sync responses",
            m.sync_records_received.clone(),
        );
        registry.register(
            "palisade_sync_bytes",
            "Sync frame bytes (length prefix included) by protocol (sync/1, sync/2) and direction",
            m.sync_bytes.clone(),
        );
        registry.register("palisade_sync_rounds", "Sync rounds started, by protocol", m.sync_rounds.clone());
        registry.register(
            "palisade_sync_rounds_finished",
            "Sync rounds that found every difference (records asked for may still be on their way), by protocol",
            m.sync_rounds_finished.clone(),
        );
        registry.register(
            "palisade_sync_round_seconds",
            "Seconds from a sync round's start until it knew every difference, by protocol",
            m.sync_round_seconds.clone(),
        );
        registry.register(
            "palisade_sync_reconcile_cut",
            "Reconciliation queries dropped at the client's bounds (pending ranges, requests per round)",
            m.sync_reconcile_cut.clone(),
        );
        registry.register(
            "palisade_equivocations",
            "Equivocation proofs detected or received",
            m.equivocations.clone(),
        );
        registry.register(
            "palisade_own_feed_checking",
            "1 while the own-feed check at start asks peers for this node's feed (submissions wait)",
            m.own_feed_checking.clone(),
        );
        registry.register(
            "palisade_own_feed_behind_peers",
            "Peers whose answer to the own-feed check held more of this node's feed than its store",
            m.own_feed_behind_peers.clone(),
        );
        registry.register(
            "palisade_sync_records_requested",
            "Records asked for in sync requests not yet answered (bounded by half the verify queue)",
            m.sync_records_requested.clone(),
        );
        registry.register(
            "palisade_sync_requests_pending",
            "Sync requests sent and not yet answered or failed",
            m.sync_requests_pending.clone(),
        );
        registry.register(
            "palisade_gossip_dead_connections",
            "Connections closed and redialled because gossip over them was dead, by reason",
            m.gossip_dead_connections.clone(),
        );
        for queue in ["priority", "non_priority"] {
            // Exported at 0 from the start, so "no failures" is visible.
            let _ = m.gossip_send_failures.get_or_create(&SendFailureLabels { queue });
        }
        registry.register(
            "palisade_gossip_send_failures",
            "Gossipsub messages not sent to a peer because its send queue was full, by queue",
            m.gossip_send_failures.clone(),
        );
        registry.register(
            "palisade_state_writes_pending",
            "Ban and peer-book changes queued for the node-state writer, not yet on disk",
            m.state_writes_pending.clone(),
        );
        registry.register(
            "palisade_state_writes_refused",
            "Ban and peer-book changes refused because the node-state writer queue was full (kept in memory only)",
            m.state_writes_refused.clone(),
        );
        registry.register(
            "palisade_net_loop_iteration_seconds",
            "Seconds the network event loop spent on one wake-up",
            m.loop_iteration_seconds.clone(),
        );
        m
    }

    /// Counts one ingest decision.
    pub(crate) fn count(&self, source: &'static str, reason: Reason) {
        self.ingest
            .get_or_create(&IngestLabels { source, outcome: reason.acceptance_str(), reason: reason.label() })
            .inc();
    }

    pub(crate) fn queue_add(&self, delta: i64) {
        let v = self.queue_depth.fetch_add(delta, Ordering::Relaxed) + delta;
        self.verify_queue_depth.set(v);
    }

    /// A snapshot of the headline counters.
    pub fn snapshot(&self) -> IngestStats {
        let sum = |acceptance: Acceptance| -> u64 {
            Reason::ALL
                .iter()
                .filter(|r| r.acceptance() == acceptance)
                .map(|r| self.reason_count(r.label()))
                .sum()
        };
        IngestStats {
            signatures_verified: self.signatures_verified.get(),
            duplicates_before_verify: self.duplicates_before_verify.get(),
            accepted: sum(Acceptance::Accept),
            rejected: sum(Acceptance::Reject),
            ignored: sum(Acceptance::Ignore),
        }
    }

    /// Count of one reason across sources. (A `Family` has no iterator; sources and reasons
    /// are closed sets, so this sums over them.)
    pub fn reason_count(&self, reason: &str) -> u64 {
        let Some(reason) = Reason::from_label(reason) else { return 0 };
        INGEST_SOURCES
            .iter()
            .map(|source| {
                let labels =
                    IngestLabels { source, outcome: reason.acceptance_str(), reason: reason.label() };
                self.ingest.get(&labels).map(|c| c.get()).unwrap_or(0)
            })
            .sum()
    }
}

/// Every `source` label of `palisade_ingest_total`.
pub const INGEST_SOURCES: [&str; 5] = ["gossip", "sync", "proof", "local", "import"];

/// Headline ingest counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestStats {
    /// Signatures checked.
    pub signatures_verified: u64,
    /// Copies dropped as duplicates before signature work.
    pub duplicates_before_verify: u64,
    /// Records accepted (stored).
    pub accepted: u64,
    /// Records rejected (invalid).
    pub rejected: u64,
    /// Records ignored (valid but unwanted, or load shed).
    pub ignored: u64,
}
