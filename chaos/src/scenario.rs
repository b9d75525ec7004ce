//! Scenario files (`chaos/scenarios/*.toml`): a cluster, a workload, a fault timeline,
//! attackers and checker thresholds. Unknown keys are errors.

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// A whole scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (file stem by convention).
    pub name: String,
    /// What it proves.
    pub description: String,
    /// Honest nodes.
    pub nodes: usize,
    /// `loopback` (default, no privileges) or `netns` (root: one namespace per node).
    #[serde(default)]
    pub network: NetworkMode,
    /// Seconds of workload with no faults at the start: the goodput and latency baseline.
    #[serde(default = "default_baseline")]
    pub baseline_secs: u64,
    /// Seconds of workload in total (baseline included). Faults happen inside this window.
    pub duration_secs: u64,
    /// After the workload and the last heal, how long nodes may take to converge.
    #[serde(default = "default_settle")]
    pub settle_secs: u64,
    /// Skip unless the harness runs as root (netns scenarios).
    #[serde(default)]
    pub requires_root: bool,
    /// Not run by `palisade-chaos run-all` (long soak tests).
    #[serde(default)]
    pub long: bool,
    /// Honest submissions.
    pub workload: Workload,
    /// Node pairs connected through the userspace fault proxy (loopback mode).
    #[serde(default, rename = "link")]
    pub links: Vec<LinkSpec>,
    /// Fault timeline.
    #[serde(default, rename = "fault")]
    pub faults: Vec<Fault>,
    /// Byzantine peers.
    #[serde(default, rename = "attacker")]
    pub attackers: Vec<Attacker>,
    /// Checker thresholds.
    #[serde(default)]
    pub checks: Checks,
    /// Extra `[limits]` settings for every node (TOML table), e.g. tighter rate limits.
    #[serde(default)]
    pub node_limits: toml::Table,
    /// Extra `[store]` settings for every node (TOML table), e.g. a small `max_bytes`.
    #[serde(default)]
    pub node_store: toml::Table,
    /// Extra `[network]` settings for every node (TOML table; `listen`, `bootstrap` and
    /// `sync_interval_secs` are the harness's), e.g. `own_feed_check_secs = 0`.
    #[serde(default)]
    pub node_network: toml::Table,
    /// Every node's `store.retain_authors` names every honest node's author, so the quota
    /// never evicts the workload's records.
    #[serde(default)]
    pub protect_honest_authors: bool,
    /// Give each node's data directory a tmpfs of this many MiB (0: none). Needs root; a
    /// `disk_full` fault then fills it for real.
    #[serde(default)]
    pub data_tmpfs_mib: u64,
    /// Each node bootstraps to this many other nodes drawn at random (with the run's seed);
    /// Kademlia and identify find the rest. Absent: every node names every other node.
    #[serde(default)]
    pub bootstrap_peers: Option<usize>,
}

fn default_baseline() -> u64 {
    5
}
fn default_settle() -> u64 {
    60
}

/// How nodes are networked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// One 127.0.0.x address per node; partitions through the nodes' ban lists.
    #[default]
    Loopback,
    /// One network namespace per node on a bridge; partitions move links between bridges.
    Netns,
}

/// Honest submissions through each node's admin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Records per second across the cluster (spread round-robin over live nodes).
    pub records_per_sec: u32,
    /// Kinds to submit: `attestation`, `anomaly`.
    #[serde(default = "default_kinds")]
    pub kinds: Vec<String>,
}

fn default_kinds() -> Vec<String> {
    vec!["attestation".into(), "anomaly".into()]
}

/// Which node(s) a fault hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodeSel {
    /// A node index.
    Index(usize),
    /// `random` (seeded) or `all`.
    Named(String),
}

impl Default for NodeSel {
    fn default() -> Self {
        NodeSel::Named("random".into())
    }
}

/// How a partition splits the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Split {
    /// Explicit groups of node indexes.
    Groups(Vec<Vec<usize>>),
    /// `majority` (a random minority is cut off), `halves` (a random half of the nodes is cut
    /// off from the other), `isolate` (one random node), `bridge` (two halves that only one
    /// node connects).
    Named(String),
}

/// One entry of the fault timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// When, in seconds from the start of the workload.
    pub at_secs: u64,
    /// What happens.
    pub action: FaultAction,
    /// Target node(s) for crash, pause.
    #[serde(default)]
    pub node: NodeSel,
    /// Crash: seconds until restart. Pause: seconds until SIGCONT. Partition: seconds until heal.
    #[serde(default = "default_fault_duration")]
    pub duration_secs: u64,
    /// Partition shape.
    #[serde(default)]
    pub split: Option<Split>,
    /// Repeat the fault this many times, `every_secs` apart (crash loops).
    #[serde(default = "one")]
    pub repeat: u32,
    /// Spacing of repeats.
    #[serde(default)]
    pub every_secs: u64,
    /// Proxy faults: which `[[link]]` (index); all links when absent.
    #[serde(default)]
    pub link: Option<usize>,
    /// Degrade: latency (ms).
    #[serde(default)]
    pub latency_ms: u64,
    /// Degrade: jitter (ms).
    #[serde(default)]
    pub jitter_ms: u64,
    /// Degrade / bandwidth: bytes per second.
    #[serde(default)]
    pub bytes_per_sec: u64,
    /// Loss: percentage of packets dropped, 1..=100.
    #[serde(default)]
    pub loss_percent: u32,
    /// One-way: the sending node whose packets are dropped.
    #[serde(default)]
    pub from: Option<usize>,
    /// One-way: the receiving node.
    #[serde(default)]
    pub to: Option<usize>,
    /// Disk full: MiB left free on the node's data filesystem while the fault lasts.
    #[serde(default)]
    pub free_mib: u64,
}

fn default_fault_duration() -> u64 {
    5
}
fn one() -> u32 {
    1
}

/// Fault kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// SIGKILL, then restart on the same data dir after `duration_secs`.
    Crash,
    /// SIGSTOP, SIGCONT after `duration_secs`.
    Pause,
    /// Split the cluster, heal after `duration_secs`.
    Partition,
    /// Proxy: forward nothing on `link` (all links when absent) for `duration_secs`.
    Stall,
    /// Proxy: drop every connection through `link` (all when absent) at once.
    Reset,
    /// Proxy: set `latency_ms`/`jitter_ms`/`bytes_per_sec` on `link` for `duration_secs`.
    Degrade,
    /// netns: drop `loss_percent` of packets arriving at `node` (iptables) for `duration_secs`.
    Loss,
    /// netns: drop packets from `from` to `to` only (one-way partition) for `duration_secs`.
    OneWay,
    /// netns: cap `node`'s egress to `bytes_per_sec` (tc tbf) for `duration_secs`.
    Bandwidth,
    /// Fill `node`'s data filesystem (a ballast file) until `free_mib` MiB are left, and
    /// delete it after `duration_secs`.
    DiskFull,
    /// Back up `node`'s store and signing history now (a crash-consistent copy, taken while
    /// it is stopped for a moment); `duration_secs` later, SIGKILL it, put the backup in
    /// place of both and restart it: everything it acknowledged since is gone from its disk
    /// and must come back from peers before it signs again (no seq reused, nothing lost).
    RestoreBackup,
}

/// A pair of nodes whose connection runs through the fault proxy: `from` dials a proxy that
/// forwards to `to` (and `to` does not dial `from` directly).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// The dialling node.
    pub from: usize,
    /// The node behind the proxy.
    pub to: usize,
    /// Initial added latency (ms).
    #[serde(default)]
    pub latency_ms: u64,
    /// Initial jitter (ms).
    #[serde(default)]
    pub jitter_ms: u64,
    /// Initial bandwidth cap per direction (bytes/s, 0 = none).
    #[serde(default)]
    pub bytes_per_sec: u64,
    /// Delay before a close is passed on (ms).
    #[serde(default)]
    pub slow_close_ms: u64,
}

/// A byzantine peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attacker {
    /// What it does.
    pub kind: AttackKind,
    /// Target node index, or all nodes when absent.
    #[serde(default)]
    pub target: Option<usize>,
    /// Start, seconds from the start of the workload.
    pub start_secs: u64,
    /// How long.
    pub duration_secs: u64,
    /// Messages, connections or requests per second (per attacker).
    #[serde(default = "default_attack_rate")]
    pub rate_per_sec: u32,
    /// How many attacker identities (each its own peer id).
    #[serde(default = "one_usize")]
    pub count: usize,
}

fn default_attack_rate() -> u32 {
    500
}
fn one_usize() -> usize {
    1
}

/// Attack kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackKind {
    /// Records with invalid signatures (unique ids, so they reach the verifier).
    InvalidSignatures,
    /// Random bytes on the record topics.
    Malformed,
    /// Messages larger than the record cap.
    Oversized,
    /// Re-publishing valid records (duplicates).
    Replay,
    /// Valid records from fresh author keys, far over the rate limits.
    OverRate,
    /// New connections from fresh peer ids, as fast as allowed.
    ConnectionFlood,
    /// Many streams on one connection.
    StreamFlood,
    /// TCP connections that never finish the handshake.
    Slowloris,
    /// Sync requests: floods and out-of-range requests.
    SyncAbuse,
    /// One author signing two records at the same seq.
    Equivocation,
    /// Sybil equivocation proofs (a fresh author per pair) on `/palisade/proofs/1`, some with
    /// a half that fails static validation, and pairs whose halves go to two different nodes
    /// as plain records. Each attacker connects to every node; `target` only names the node
    /// that judges its containment. `rate_per_sec` counts pairs.
    ProofAmplification,
    /// As `proof_amplification`, without the invalid-half proofs: every proof it sends is
    /// valid, so nothing it does is a rejection, and only the budgets (proof, new-author,
    /// per-peer record and cost) can hold it.
    ValidProofAmplification,
}

impl AttackKind {
    /// Whether this is one of the equivocation-proof amplifiers.
    pub fn amplifies_proofs(self) -> bool {
        matches!(self, AttackKind::ProofAmplification | AttackKind::ValidProofAmplification)
    }
}

/// Checker thresholds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Checks {
    /// Resident memory ceiling per node (MiB).
    pub max_rss_mib: u64,
    /// Open file descriptors ceiling per node.
    pub max_open_fds: u64,
    /// Honest goodput during the attack/fault phase must be at least this × baseline.
    pub min_goodput_ratio: f64,
    /// Honest p99 delivery latency may be at most this × baseline p99 (plus 100 ms of slack
    /// for tiny baselines).
    pub max_p99_latency_ratio: f64,
    /// Every attacker must be throttled or banned within this many seconds of starting.
    pub attackers_contained_within_secs: u64,
    /// Check goodput and latency ratios (off for scenarios whose faults stop the workload).
    pub check_goodput: bool,
    /// With `check_goodput`, also judge the stress p99 against the baseline's (off where
    /// faults delay records by design; `converged_within` judges them per fault window).
    pub check_latency: bool,
    /// `converged_within`: how long after the longest fault it overlapped a record may take
    /// to reach every node (s). The default, 30 s, is the bound docs/protocol.md derives for
    /// the harness's 3-s sync interval and 5 nodes, with a margin for a loaded machine.
    pub converge_bound_secs: u64,
    /// `gossip_send_failures`: the sum of `palisade_gossip_send_failures_total` over the nodes'
    /// metrics endpoints at the end must be 0 (skipped when the build does not export it).
    pub check_gossip_send_failures: bool,
    /// `store_quota`: at the end every node's records are within its `store.max_bytes`, and
    /// no honest submission got a 5xx other than 507 (a disk at its flood stage).
    pub check_store_quota: bool,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            max_rss_mib: 512,
            max_open_fds: 4096,
            min_goodput_ratio: 0.8,
            max_p99_latency_ratio: 3.0,
            attackers_contained_within_secs: 30,
            check_goodput: false,
            check_latency: true,
            converge_bound_secs: 30,
            check_gossip_send_failures: false,
            check_store_quota: false,
        }
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario {}", path.display()))?;
        let s: Scenario = toml::from_str(&text).with_context(|| format!("in scenario {}", path.display()))?;
        s.validate().with_context(|| format!("in scenario {}", path.display()))?;
        Ok(s)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.data_tmpfs_mib > 0 && !self.requires_root {
            bail!("`data_tmpfs_mib` mounts a tmpfs per node: set `requires_root = true`");
        }
        if self.nodes == 0 || self.nodes > 128 {
            bail!("`nodes` is {}; allowed is 1..=128", self.nodes);
        }
        if !self.links.is_empty() && self.nodes > 90 {
            // Nodes listen on 127.0.0.(10 + i), fault proxies on 127.0.0.(100 + k).
            bail!("`nodes` is {}; with `[[link]]` proxies at most 90 (the proxies listen on 127.0.0.100 and up)", self.nodes);
        }
        if let Some(k) = self.bootstrap_peers {
            if k == 0 || k >= self.nodes {
                bail!("`bootstrap_peers` is {k}; allowed is 1..{} (fewer than the nodes)", self.nodes);
            }
        }
        if self.baseline_secs >= self.duration_secs {
            bail!(
                "`baseline_secs` ({}) must be less than `duration_secs` ({})",
                self.baseline_secs,
                self.duration_secs
            );
        }
        for f in &self.faults {
            if f.at_secs < self.baseline_secs {
                bail!("fault at {} s falls inside the {} s baseline", f.at_secs, self.baseline_secs);
            }
            if let NodeSel::Index(i) = f.node {
                if i >= self.nodes {
                    bail!("fault targets node {i}, but there are {} nodes", self.nodes);
                }
            }
            if let Some(Split::Groups(groups)) = &f.split {
                for g in groups {
                    if let Some(i) = g.iter().find(|i| **i >= self.nodes) {
                        bail!("partition group names node {i}, but there are {} nodes", self.nodes);
                    }
                }
            }
            if f.action == FaultAction::Partition && f.split.is_none() {
                bail!("a partition fault needs `split`");
            }
            let proxy = matches!(f.action, FaultAction::Stall | FaultAction::Reset | FaultAction::Degrade);
            if proxy && self.links.is_empty() {
                bail!("a {:?} fault needs at least one [[link]]", f.action);
            }
            if f.link.is_some_and(|l| l >= self.links.len()) {
                bail!("fault names link {:?}, but there are {} links", f.link, self.links.len());
            }
            let netns_only =
                matches!(f.action, FaultAction::Loss | FaultAction::OneWay | FaultAction::Bandwidth);
            if netns_only && self.network != NetworkMode::Netns {
                bail!("a {:?} fault needs network = \"netns\"", f.action);
            }
            if f.action == FaultAction::Loss && !(1..=100).contains(&f.loss_percent) {
                bail!("a loss fault needs `loss_percent` in 1..=100");
            }
            if f.action == FaultAction::OneWay
                && (f.from.is_none_or(|a| a >= self.nodes) || f.to.is_none_or(|b| b >= self.nodes))
            {
                bail!("a one_way fault needs `from` and `to` node indexes");
            }
            if f.action == FaultAction::Bandwidth && f.bytes_per_sec == 0 {
                bail!("a bandwidth fault needs `bytes_per_sec`");
            }
            if f.action == FaultAction::DiskFull && self.data_tmpfs_mib == 0 {
                bail!("a disk_full fault needs `data_tmpfs_mib` (it fills the node's own tmpfs, never a shared disk)");
            }
        }
        for l in &self.links {
            if l.from >= self.nodes || l.to >= self.nodes || l.from == l.to {
                bail!("link {} -> {} must join two different nodes of {}", l.from, l.to, self.nodes);
            }
            if self.network != NetworkMode::Loopback {
                bail!("[[link]] proxies need network = \"loopback\"");
            }
        }
        for a in &self.attackers {
            if a.target.is_some_and(|t| t >= self.nodes) {
                bail!("attacker targets node {:?}, but there are {} nodes", a.target, self.nodes);
            }
            if a.count == 0 || a.count > 1000 {
                bail!("attacker `count` is {}; allowed is 1..=1000", a.count);
            }
            if a.kind.amplifies_proofs() && self.nodes < 2 {
                bail!("a proof_amplification attacker needs at least 2 nodes (it splits pairs across two)");
            }
        }
        Ok(())
    }

    /// When the last fault heals (seconds from start).
    pub fn last_fault_end_secs(&self) -> u64 {
        self.faults
            .iter()
            .map(|f| f.at_secs + u64::from(f.repeat.saturating_sub(1)) * f.every_secs + f.duration_secs)
            .chain(self.attackers.iter().map(|a| a.start_secs + a.duration_secs))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_checked_in_scenario_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                loaded += 1;
            }
        }
        assert!(loaded >= 14, "only {loaded} scenarios under {}", dir.display());
    }

    #[test]
    fn a_disk_full_fault_needs_a_tmpfs_of_its_own() {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/disk-fill.toml"))
                .unwrap()
                .replace("data_tmpfs_mib = 192", "data_tmpfs_mib = 0");
        let s: Scenario = toml::from_str(&text).unwrap();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("data_tmpfs_mib"), "{e}");
    }
}
