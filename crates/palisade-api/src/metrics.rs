//! Prometheus metrics of the admin API, registered in the node's shared registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Labels of `palisade_api_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route template, e.g. `/v1/records/{id}` (`unmatched` for unknown paths).
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of `palisade_api_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route template.
    pub route: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// The API's metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    /// Requests by route, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route.
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Connected `/v1/events` subscribers.
    pub sse_subscribers: Gauge,
    /// Requests refused by the API's own rate limit.
    pub rate_limited: Counter,
    /// Handler panics turned into 500s.
    pub panics: Counter,
    /// 1 when `/v1/ready` would answer ready, else 0 (sampled every few seconds).
    pub ready: Gauge,
    /// Connected peers (sampled with `ready`; always present, unlike per-direction gauges).
    pub connected_peers: Gauge,
    /// Free bytes on the store's filesystem (sampled with `ready`).
    pub disk_free_bytes: Gauge,
    /// 0 fine, 1 below the warning level, 2 flood stage (new records refused).
    pub disk_level: Gauge,
    /// Logical bytes of the stored records (the store quota's count).
    pub store_used_bytes: Gauge,
    /// The store quota, `store.max_bytes`.
    pub store_quota_bytes: Gauge,
    /// Records the quota evicted, by tier (`untrusted`: authors no trust policy or
    /// `store.retain_authors` names; no other tier is ever evicted).
    pub store_evicted: Family<TierLabels, Counter>,
    /// Bytes the quota evicted.
    pub store_evicted_bytes: Counter,
    /// Bytes of sled's files at the store's last measurement.
    pub store_files_bytes: Gauge,
    /// Online compactions by result (`ok`, `failed`, `no_room`).
    pub store_compactions: Family<ResultLabels, Counter>,
    /// Bytes of files online compaction gave back.
    pub store_compaction_reclaimed_bytes: Counter,
    /// How long writers waited during the last online compaction.
    pub store_compaction_pause_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Serialises [`observe_store_usage`](Self::observe_store_usage) (read, then add the
    /// difference: two samplers at once would add it twice).
    store_usage_sampling: std::sync::Arc<std::sync::Mutex<()>>,
    /// Open connections per listener (`unix`, `tcp`).
    pub connections: Family<ListenerLabels, Gauge>,
    /// Connections refused (503 and closed) because the listener had `admin.max_connections` open.
    pub connections_refused: Family<ListenerLabels, Counter>,
}

/// Labels of the store quota's eviction counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TierLabels {
    /// The retention tier evicted from.
    pub tier: &'static str,
}

/// Labels of the online compaction counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok`, `failed` or `no_room`.
    pub result: &'static str,
}

/// Labels of the per-listener metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `unix` or `tcp`.
    pub listener: String,
}

impl ApiMetrics {
    /// Registers the metrics: `palisade_api_requests_total`,
    /// `palisade_api_request_duration_seconds`, `palisade_api_sse_subscribers`,
    /// `palisade_api_rate_limited_total`, `palisade_api_panics_total`, `palisade_node_ready`,
    /// `palisade_connected_peers`, `palisade_store_disk_free_bytes`, `palisade_store_disk_level`,
    /// `palisade_api_connections`, `palisade_api_connections_refused_total`,
    /// `palisade_store_used_bytes`, `palisade_store_quota_bytes`,
    /// `palisade_store_evicted_records_total{tier}`, `palisade_store_evicted_bytes_total`,
    /// `palisade_store_files_bytes`, `palisade_store_compactions_total{result}`,
    /// `palisade_store_compaction_reclaimed_bytes_total`, `palisade_store_compaction_pause_seconds`.
    pub fn new(registry: &mut Registry) -> ApiMetrics {
        let m = ApiMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            sse_subscribers: Gauge::default(),
            rate_limited: Counter::default(),
            panics: Counter::default(),
            ready: Gauge::default(),
            connected_peers: Gauge::default(),
            disk_free_bytes: Gauge::default(),
            disk_level: Gauge::default(),
            store_used_bytes: Gauge::default(),
            store_quota_bytes: Gauge::default(),
            store_evicted: Family::default(),
            store_evicted_bytes: Counter::default(),
            store_files_bytes: Gauge::default(),
            store_compactions: Family::default(),
            store_compaction_reclaimed_bytes: Counter::default(),
            store_compaction_pause_seconds: Gauge::default(),
            store_usage_sampling: Default::default(),
            connections: Family::default(),
            connections_refused: Family::default(),
        };
        registry.register(
            "palisade_api_requests",
            "Admin API requests by route, method and status",
            m.requests.clone(),
        );
        registry.register_with_unit(
            "palisade_api_request_duration",
            "Admin API request latency by route",
            Unit::Seconds,
            m.latency.clone(),
        );
        registry.register(
            "palisade_api_sse_subscribers",
            "Connected /v1/events subscribers",
            m.sse_subscribers.clone(),
        );
        registry.register(
            "palisade_api_rate_limited",
            "Admin API requests refused by its rate limit",
            m.rate_limited.clone(),
        );
        registry.register("palisade_api_panics", "Admin API handler panics (answered 500)", m.panics.clone());
        registry.register(
            "palisade_node_ready",
            "1 when the node is ready (store open, listening, a peer if bootstrap peers are configured)",
            m.ready.clone(),
        );
        registry.register("palisade_connected_peers", "Connected peers (sampled)", m.connected_peers.clone());
        registry.register_with_unit(
            "palisade_store_disk_free",
            "Free bytes on the store's filesystem (sampled)",
            Unit::Bytes,
            m.disk_free_bytes.clone(),
        );
        registry.register(
            "palisade_api_connections",
            "Open admin API connections per listener",
            m.connections.clone(),
        );
        registry.register(
            "palisade_api_connections_refused",
            "Admin API connections refused (503, closed) at admin.max_connections",
            m.connections_refused.clone(),
        );
        registry.register_with_unit(
            "palisade_store_used",
            "Logical bytes of the stored records, what store.max_bytes bounds (sampled)",
            Unit::Bytes,
            m.store_used_bytes.clone(),
        );
        registry.register_with_unit(
            "palisade_store_quota",
            "store.max_bytes",
            Unit::Bytes,
            m.store_quota_bytes.clone(),
        );
        registry.register(
            "palisade_store_evicted_records",
            "Records the store quota evicted, by tier (oldest received first)",
            m.store_evicted.clone(),
        );
        registry.register_with_unit(
            "palisade_store_evicted",
            "Bytes the store quota evicted",
            Unit::Bytes,
            m.store_evicted_bytes.clone(),
        );
        registry.register_with_unit(
            "palisade_store_files",
            "Bytes of sled's files at the store's last measurement (every 10 s); online compaction gives back what the quota evicted",
            Unit::Bytes,
            m.store_files_bytes.clone(),
        );
        registry.register(
            "palisade_store_compactions",
            "Online compactions of the store by result (ok, failed, no_room: no free disk for the copy)",
            m.store_compactions.clone(),
        );
        registry.register_with_unit(
            "palisade_store_compaction_reclaimed",
            "Bytes of files online compaction gave back",
            Unit::Bytes,
            m.store_compaction_reclaimed_bytes.clone(),
        );
        registry.register_with_unit(
            "palisade_store_compaction_pause",
            "How long writers waited during the last online compaction",
            Unit::Seconds,
            m.store_compaction_pause_seconds.clone(),
        );
        registry.register(
            "palisade_store_disk_level",
            "0 fine, 1 below store.warn_free_disk_bytes, 2 below store.min_free_disk_bytes (new records refused)",
            m.disk_level.clone(),
        );
        m
    }

    /// Samples the store quota's figures into the gauges and counters (the store counts
    /// since it was opened, which is when this process started).
    pub fn observe_store_usage(&self, usage: &palisade_store::StoreUsage) {
        let _one_at_a_time = self.store_usage_sampling.lock().unwrap_or_else(|p| p.into_inner());
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.store_used_bytes.set(gauge(usage.bytes_used));
        self.store_quota_bytes.set(gauge(usage.max_bytes));
        let evicted = self.store_evicted.get_or_create(&TierLabels { tier: "untrusted" });
        evicted.inc_by(usage.evicted_records.saturating_sub(evicted.get()));
        self.store_evicted_bytes.inc_by(usage.evicted_bytes.saturating_sub(self.store_evicted_bytes.get()));
        let c = &usage.compaction;
        self.store_files_bytes.set(gauge(c.files_bytes));
        for (result, total) in [("ok", c.done), ("failed", c.failed), ("no_room", c.skipped_no_room)] {
            let counter = self.store_compactions.get_or_create(&ResultLabels { result });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        let reclaimed = &self.store_compaction_reclaimed_bytes;
        reclaimed.inc_by(c.reclaimed_bytes.saturating_sub(reclaimed.get()));
        self.store_compaction_pause_seconds.set(c.last_pause_ms as f64 / 1000.0);
    }
}
