//! [`PipelineConfig`]: the pipeline's settings, from `[network]` or set directly.

use std::time::Duration;

/// Settings of the pipeline. The network builds them from its [`NetConfig`](crate::NetConfig)
/// ([`PipelineConfig::from_net`]); an [`Ingestor`](super::Ingestor) takes them directly.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Gossiped records issued longer ago than this are ignored (`too_old`).
    pub max_record_age_ms: u64,
    /// Capacity of the verify queue; beyond it records are shed (`verify_queue_full`).
    pub verify_queue_records: usize,
    /// Largest signature batch.
    pub verify_batch_max_records: usize,
    /// How long a partial batch may wait for more records.
    pub verify_batch_deadline: Duration,
    /// Verify worker threads; 0 = one per core.
    pub verify_workers: usize,
    /// Ids remembered in the seen cache.
    pub seen_cache_records: usize,
    /// Node-wide budget of gossiped records from authors with no stored records (per second).
    pub new_authors_per_sec: u32,
    /// Burst of that budget.
    pub new_authors_burst: u32,
    /// Group commit: flush at least this often while writes are pending.
    pub flush_interval: Duration,
    /// Group commit: flush after this many pending writes; also the largest write group.
    pub flush_max_records: usize,
    /// Whether the store thread flushes at all. Always `true` in a node; benchmarks set it to
    /// `false` to measure what group commit costs (writes are then flushed only at shutdown).
    pub group_commit: bool,
}

impl PipelineConfig {
    /// The same settings with every size clamped to the ranges `NetConfig::validate` allows,
    /// so a hand-made config cannot ask for an unbounded queue or group.
    pub(super) fn bounded(mut self) -> PipelineConfig {
        self.verify_queue_records = self.verify_queue_records.clamp(64, 1_000_000);
        self.verify_batch_max_records = self.verify_batch_max_records.clamp(1, 1024);
        self.verify_workers = self.verify_workers.min(256);
        self.seen_cache_records = self.seen_cache_records.clamp(1024, 10_000_000);
        self.flush_max_records = self.flush_max_records.clamp(1, 100_000);
        self
    }

    /// The pipeline settings of a network configuration.
    pub fn from_net(cfg: &crate::NetConfig) -> PipelineConfig {
        PipelineConfig {
            max_record_age_ms: cfg.gossip_max_record_age_secs.saturating_mul(1000),
            verify_queue_records: cfg.verify_queue_records,
            verify_batch_max_records: cfg.verify_batch_max_records,
            verify_batch_deadline: Duration::from_millis(cfg.verify_batch_deadline_ms),
            verify_workers: cfg.verify_workers,
            seen_cache_records: cfg.seen_cache_records,
            new_authors_per_sec: cfg.new_authors_per_sec,
            new_authors_burst: cfg.new_authors_burst,
            flush_interval: Duration::from_millis(cfg.flush_interval_ms),
            flush_max_records: cfg.flush_max_records,
            group_commit: true,
        }
    }
}
