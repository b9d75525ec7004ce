//! Runs one scenario: cluster up, workload + faults + attackers, heal, converge, check.

use data_dir::{keep_data, tempdir_for};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use palisade_types::fixtures;
use palisade_types::{RecordId, Statement};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tracing::{info, warn};

use crate::byzantine::{self, AttackPlan, AttackReport};
use crate::cluster::{loopback_ip, Cluster};
use crate::nodeapi::NodeApi;
use crate::report::{percentile, CheckResult, Report, Second, Window};
use crate::scenario::{AttackKind, FaultAction, NetworkMode, NodeSel, Scenario, Split};

mod backup;
mod checks;
mod data_dir;
mod faults;
mod network_figures;
mod proof_checks;
mod store_checks;
use checks::*;
use faults::*;
use proof_checks::*;
use store_checks::*;

/// Options from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The palisade binary.
    pub binary: PathBuf,
    /// Where reports go.
    pub out: PathBuf,
    /// Seed for every random choice.
    pub seed: u64,
    /// No progress bar.
    pub quiet: bool,
}

/// A record the workload got acknowledged.
#[derive(Debug, Clone, Copy)]
struct Ack {
    id: RecordId,
    /// The node that acknowledged it (its author).
    node: usize,
    /// Its seq in that node's feed.
    seq: u64,
    at: Instant,
}

/// One restart checked for durability: (node, acknowledged records missing right after the
/// restart, whether the node came back healthy, why its feed could not be read if it could
/// not).
type RestartCheck = (usize, Vec<RecordId>, bool, Option<String>);

/// Shared state of a run.
struct Run {
    /// Fault proxies, in `[[link]]` order.
    links: Vec<crate::proxy::Link>,
    /// (from, to, proxy address) of each link.
    link_addrs: Vec<(usize, usize, std::net::SocketAddr)>,
    scenario: Scenario,
    opts: RunOptions,
    cluster: Arc<Mutex<Cluster>>,
    apis: Vec<NodeApi>,
    start: Instant,
    acks: Arc<Mutex<Vec<Ack>>>,
    /// First time each node saw each record (from its event stream).
    seen: Arc<Mutex<HashMap<(usize, RecordId), Instant>>>,
    windows: Arc<Mutex<Vec<Window>>>,
    /// Records acknowledged by a node, and whether the node was crashed afterwards:
    /// (node, ids acked before the crash), checked right after restart.
    durability: Arc<Mutex<Vec<RestartCheck>>>,
    rss_peak_kib: Arc<Mutex<BTreeMap<usize, (u64, u64)>>>,
    /// Heal requests a node could not take (it was down or stopped): (node, peer id). Its
    /// partition bans are persisted, so they are lifted when it is back, or it would stay cut
    /// off for the ban's full term.
    pending_unbans: Mutex<Vec<(usize, String)>>,
    rng: Mutex<StdRng>,
    /// HTTP status of every refused honest submission, counted.
    refused_submissions: Mutex<BTreeMap<u16, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs a scenario and returns its report (written to `opts.out`).
pub async fn run(scenario: Scenario, opts: RunOptions) -> anyhow::Result<Report> {
    let wall = Instant::now();
    let root = tempdir_for(&scenario.name)?;
    let ips: Vec<std::net::Ipv4Addr> = match scenario.network {
        NetworkMode::Loopback => (0..scenario.nodes).map(loopback_ip).collect(),
        NetworkMode::Netns => crate::netns::node_ips(scenario.nodes),
    };
    let _netns = match scenario.network {
        NetworkMode::Netns => Some(crate::netns::Topology::create(scenario.nodes)?),
        NetworkMode::Loopback => None,
    };
    let settings = crate::cluster::NodeSettings {
        limits: crate::node_limits(&scenario),
        store: scenario.node_store.clone(),
        network: scenario.node_network.clone(),
        protect_honest_authors: scenario.protect_honest_authors,
        data_tmpfs_mib: scenario.data_tmpfs_mib,
        bootstrap_peers: scenario.bootstrap_peers,
        topology_seed: opts.seed,
    };
    // Fault proxies: link k listens on 127.0.0.(100 + k) and forwards to its `to` node.
    let mut links = Vec::new();
    let mut link_addrs = Vec::new();
    for (k, l) in scenario.links.iter().enumerate() {
        let listen = std::net::SocketAddr::new(
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 100 + k as u8)),
            crate::cluster::p2p_port(),
        );
        let upstream = std::net::SocketAddr::new(std::net::IpAddr::V4(ips[l.to]), crate::cluster::p2p_port());
        let state = crate::proxy::LinkState {
            latency_ms: l.latency_ms,
            jitter_ms: l.jitter_ms,
            bytes_per_sec: l.bytes_per_sec,
            stalled: false,
            slow_close_ms: l.slow_close_ms,
        };
        let link =
            crate::proxy::Link::start(listen, upstream, state).await.context("starting a fault proxy")?;
        link_addrs.push((l.from, l.to, link.listen));
        links.push(link);
    }
    let mut cluster = Cluster::prepare(
        scenario.nodes,
        &opts.binary,
        root.path(),
        scenario.network,
        &ips,
        &settings,
        &link_addrs,
    )?;
    for i in 0..scenario.nodes {
        cluster.start(i)?;
    }
    let apis: Vec<NodeApi> = cluster.nodes.iter().map(|n| NodeApi::new(n.socket())).collect();
    let cluster = Arc::new(Mutex::new(cluster));
    let run = Arc::new(Run {
        links,
        link_addrs,
        pending_unbans: Mutex::new(Vec::new()),
        rng: Mutex::new(StdRng::seed_from_u64(opts.seed)),
        scenario,
        opts,
        cluster,
        apis,
        start: Instant::now(),
        acks: Arc::default(),
        seen: Arc::default(),
        windows: Arc::default(),
        durability: Arc::default(),
        rss_peak_kib: Arc::default(),
        refused_submissions: Mutex::default(),
    });
    let result = run_inner(run.clone(), wall, root.path()).await;
    let exits = lock(&run.cluster).stop_all();
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            keep_data(root, &run.opts.out);
            return Err(e);
        }
    };
    let unclean: Vec<String> = exits
        .iter()
        .filter(|(_, code)| *code != Some(0))
        .map(|(i, c)| format!("node {i} exit {c:?}"))
        .collect();
    report.checks.push(CheckResult::new(
        "clean_shutdown",
        unclean.is_empty(),
        if unclean.is_empty() {
            "every node exited 0 on SIGTERM".into()
        } else {
            format!("{} nodes did not", unclean.len())
        },
        unclean,
    ));
    report.passed = report.checks.iter().all(|c| c.passed);
    if !report.passed {
        // A failure must be examinable afterwards: the nodes' stores and configs stay.
        let kept = keep_data(root, &run.opts.out);
        report.figures.insert("data_dirs".into(), kept.display().to_string().into());
    }
    report.duration_secs = wall.elapsed().as_secs_f64();
    report.write(&run.opts.out)?;
    // Keep node logs next to the report for post-mortems.
    for n in &lock(&run.cluster).nodes {
        let _ = std::fs::copy(n.log_path(), run.opts.out.join(format!("node-{}.log", n.index)));
    }
    Ok(report)
}

/// Writes each live node's `/v1/node`, peers, bans and feed heads to `<out>/node-<i>-state.json`
/// (while the nodes still run), for post-mortems of a failed check.
async fn post_mortem_dumps(run: &Run) {
    let _ = std::fs::create_dir_all(&run.opts.out);
    for (i, api) in run.apis.iter().enumerate() {
        if !run.up(i) {
            continue;
        }
        let dump = api.state_dump().await;
        let path = run.opts.out.join(format!("node-{i}-state.json"));
        if let Err(e) = std::fs::write(&path, serde_json::to_vec_pretty(&dump).unwrap_or_default()) {
            warn!(error = %e, path = %path.display(), "could not write a post-mortem dump");
        }
    }
}

impl Run {
    /// Wall-clock ms when an attacker started (ledger times are wall clock).
    fn attack_start_ms(&self, r: &AttackReport) -> u64 {
        let started_ago = self.start.elapsed().as_secs_f64() - self.attack_started_secs(r);
        palisade_net::now_ms().saturating_sub((started_ago.max(0.0) * 1000.0) as u64)
    }

    fn attack_started_secs(&self, r: &AttackReport) -> f64 {
        self.scenario
            .attackers
            .iter()
            .find(|a| format!("{:?}", a.kind) == r.kind && a.target.is_none_or(|t| t == r.target))
            .map(|a| a.start_secs as f64)
            .unwrap_or(0.0)
    }

    fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn pick(&self, sel: &NodeSel) -> Vec<usize> {
        match sel {
            NodeSel::Index(i) => vec![*i],
            NodeSel::Named(s) if s == "all" => (0..self.scenario.nodes).collect(),
            NodeSel::Named(_) => vec![lock(&self.rng).gen_range(0..self.scenario.nodes)],
        }
    }

    fn up(&self, i: usize) -> bool {
        lock(&self.cluster).nodes.get(i).is_some_and(|n| n.is_up())
    }

    async fn wait_healthy(&self, i: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.apis[i].health().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

async fn run_inner(run: Arc<Run>, wall: Instant, _root: &Path) -> anyhow::Result<Report> {
    let s = &run.scenario;
    info!(scenario = %s.name, nodes = s.nodes, seed = run.opts.seed, "starting cluster");
    for i in 0..s.nodes {
        if !run.wait_healthy(i, Duration::from_secs(60)).await {
            anyhow::bail!(
                "node {i} did not become healthy within 60 s; see its log in {}",
                run.opts.out.display()
            );
        }
    }
    // Wait for the mesh: every node connected to every other, or with a random topology to
    // at least as many peers as it has bootstrap peers (bounded).
    let wanted = s.bootstrap_peers.map_or(s.nodes.saturating_sub(1), |k| k.min(s.nodes.saturating_sub(1)));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut peer_counts = Vec::new();
    loop {
        peer_counts.clear();
        for api in &run.apis {
            peer_counts.push(api.peer_count().await.unwrap_or(0) as f64);
        }
        if peer_counts.iter().all(|c| *c as usize >= wanted) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    info!(?peer_counts, "peers per node at the start");

    // Event streams: when each node stores each record.
    let mut tasks = Vec::new();
    for i in 0..s.nodes {
        tasks.push(tokio::spawn(watch_events(run.clone(), i)));
    }
    let progress = (!run.opts.quiet).then(|| {
        let pb = indicatif::ProgressBar::new(s.duration_secs);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len}s")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb.set_message(s.name.clone());
        pb
    });
    let workload = tokio::spawn(workload(run.clone()));
    let faults = tokio::spawn(faults(run.clone()));
    let attackers = tokio::spawn(attackers(run.clone()));
    let monitor = tokio::spawn(monitor(run.clone()));
    while run.secs() < s.duration_secs as f64 {
        if let Some(pb) = &progress {
            pb.set_position(run.secs() as u64);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if let Some(pb) = &progress {
        pb.finish_and_clear();
    }
    workload.await.context("workload task")?;
    faults.await.context("fault task")?;
    lift_pending_unbans(&run, None).await;
    let mut attack_reports = attackers.await.context("attacker task")?;
    info!("workload over; waiting for convergence");

    // Convergence: every live node has every acknowledged record.
    let acks: Vec<Ack> = lock(&run.acks).clone();
    let all: Vec<RecordId> = acks.iter().map(|a| a.id).collect();
    let settle = Instant::now() + Duration::from_secs(s.settle_secs);
    let mut missing: BTreeMap<usize, Vec<RecordId>> = BTreeMap::new();
    // What each live node held at the last poll (for the evidence of what is missing).
    let mut holdings: BTreeMap<usize, HashSet<RecordId>> = BTreeMap::new();
    loop {
        missing.clear();
        holdings.clear();
        for i in 0..s.nodes {
            if !run.up(i) {
                continue;
            }
            let have = run.apis[i].record_ids().await.unwrap_or_default();
            let lost: Vec<RecordId> = all.iter().filter(|id| !have.contains(id)).copied().collect();
            if !lost.is_empty() {
                missing.insert(i, lost);
            }
            holdings.insert(i, have);
        }
        if missing.is_empty() || Instant::now() > settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converged_after = run.secs() - s.duration_secs as f64;
    monitor.abort();
    for t in tasks {
        t.abort();
    }

    let mut checks = Vec::new();
    checks.push(check_no_loss(&run, &acks, &missing, &holdings, converged_after).await);
    checks.push(check_converged_within(&run, &acks));
    checks.push(check_durability(&run).await);
    checks.push(check_no_false_bans(&run).await);
    if !attack_reports.is_empty() {
        checks.push(check_attackers(&run, &mut attack_reports).await);
    }
    let (timeline, mut figures, goodput_check) = timeline_and_goodput(&run, &acks);
    for (k, (link, (from, to, addr))) in run.links.iter().zip(&run.link_addrs).enumerate() {
        figures.insert(
            format!("link_{k}"),
            format!("node {from} -> proxy {addr} -> node {to}: {} bytes forwarded", link.forwarded_bytes())
                .into(),
        );
    }
    if s.checks.check_goodput {
        checks.push(goodput_check);
    }
    figures.extend(network_figures::network_figures(&run).await);
    figures.insert("peers_per_node_at_start".into(), network_figures::spread(peer_counts));
    checks.push(check_resources(&run));
    checks.push(check_logs_and_health(&run).await);
    if s.attackers.iter().any(|a| a.kind == AttackKind::Equivocation) {
        checks.push(check_equivocation(&run).await);
    }
    if s.attackers.iter().any(|a| a.kind == AttackKind::ProofAmplification) {
        // Only the mixed amplifier sends invalid halves.
        checks.push(check_no_invalid_proof_half(&run, &attack_reports).await);
    }
    if s.checks.check_gossip_send_failures {
        checks.push(check_gossip_send_failures(&run).await);
    }
    if s.checks.check_store_quota {
        checks.push(check_store_quota(&run).await);
    }
    let passed = checks.iter().all(|c| c.passed);
    if !passed {
        post_mortem_dumps(&run).await;
    }
    Ok(Report {
        scenario: s.name.clone(),
        seed: run.opts.seed,
        passed,
        duration_secs: wall.elapsed().as_secs_f64(),
        acknowledged: acks.len() as u64,
        checks,
        attackers: attack_reports,
        windows: lock(&run.windows).clone(),
        timeline,
        figures,
    })
}

async fn watch_events(run: Arc<Run>, i: usize) {
    loop {
        if let Ok(mut stream) = run.apis[i].record_events().await {
            while let Some(id) = stream.next_record().await {
                lock(&run.seen).entry((i, id)).or_insert_with(Instant::now);
            }
        }
        // Node down or stream closed: try again shortly.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn statement(rng: &mut StdRng, kinds: &[String], n: u64) -> Statement {
    let k = kinds.get(rng.gen_range(0..kinds.len().max(1))).map(String::as_str).unwrap_or("attestation");
    // Unique content per record so every submission is a new record.
    let salt = rng.gen::<u32>() as u64;
    match k {
        "anomaly" => fixtures::anomaly(n * 1000 + salt % 1000),
        _ => fixtures::attestation(n * 1000 + salt % 1000),
    }
}

async fn workload(run: Arc<Run>) {
    let s = &run.scenario;
    let period = Duration::from_micros(1_000_000 / u64::from(s.workload.records_per_sec.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n = 0u64;
    let mut next = 0usize;
    while run.secs() < s.duration_secs as f64 {
        tick.tick().await;
        n += 1;
        // Round-robin over nodes that are up.
        let mut target = None;
        for k in 0..s.nodes {
            let i = (next + k) % s.nodes;
            if run.up(i) {
                target = Some(i);
                next = i + 1;
                break;
            }
        }
        let Some(i) = target else { continue };
        let st = statement(&mut lock(&run.rng), &s.workload.kinds, n);
        // Bounded: a stuck node must not stall the workload.
        match tokio::time::timeout(Duration::from_secs(5), run.apis[i].submit(&st)).await {
            Ok(Ok((id, seq))) => lock(&run.acks).push(Ack { id, node: i, seq, at: Instant::now() }),
            Ok(Err(e)) => {
                if let Some(palisade_api::ClientError::Api { status, .. }) = e.downcast_ref() {
                    *lock(&run.refused_submissions).entry(*status).or_default() += 1;
                }
            }
            Err(_) => {}
        }
    }
}

async fn sleep_until_secs(run: &Run, at: f64) {
    let now = run.secs();
    if at > now {
        tokio::time::sleep(Duration::from_secs_f64(at - now)).await;
    }
}

async fn attackers(run: Arc<Run>) -> Vec<AttackReport> {
    let mut handles = Vec::new();
    let nodes: Vec<(String, String)> =
        lock(&run.cluster).nodes.iter().map(|n| (n.multiaddr(), n.peer_id.clone())).collect();
    let all: Vec<(libp2p::Multiaddr, libp2p::PeerId)> =
        nodes.iter().filter_map(|(a, p)| Some((a.parse().ok()?, p.parse().ok()?))).collect();
    for (k, a) in run.scenario.attackers.iter().enumerate() {
        let targets: Vec<usize> = match a.target {
            Some(t) => vec![t],
            None => (0..run.scenario.nodes).collect(),
        };
        for t in targets {
            for c in 0..(if matches!(a.kind, AttackKind::ConnectionFlood | AttackKind::Slowloris) {
                1
            } else {
                a.count
            }) {
                let (Ok(addr), Ok(peer)) = (nodes[t].0.parse(), nodes[t].1.parse()) else { continue };
                let plan = AttackPlan {
                    kind: a.kind,
                    target: t,
                    addr,
                    peer,
                    rate_per_sec: a.rate_per_sec,
                    count: a.count,
                    duration: Duration::from_secs(a.duration_secs),
                    // Distinct per attacker, target and identity: attackers on different
                    // targets sharing keys would make their Sybil authors equivocate across
                    // nodes, an attack the scenario did not ask for.
                    seed: run
                        .opts
                        .seed
                        .wrapping_mul(1 << 32)
                        .wrapping_add(((k as u64) << 24) | ((t as u64) << 16) | (c as u64 & 0xffff)),
                    nodes: all.clone(),
                };
                let run2 = run.clone();
                let start = a.start_secs as f64;
                handles.push(tokio::spawn(async move {
                    sleep_until_secs(&run2, start).await;
                    lock(&run2.windows).push(Window {
                        label: format!("{:?}", plan.kind),
                        start_secs: start,
                        end_secs: start + plan.duration.as_secs_f64(),
                        fault: false,
                    });
                    let ids = byzantine::identities(&plan);
                    let watcher = tokio::spawn(watch_ledger(run2.clone(), plan.target, ids, plan.duration));
                    let mut report = byzantine::run(plan).await;
                    watcher.abort();
                    if let Ok(seen) = watcher.await {
                        report.first_ledger_seen_after_secs = seen;
                    }
                    report
                }));
            }
        }
    }
    let mut out = Vec::new();
    for h in handles {
        if let Ok(r) = h.await {
            out.push(r);
        }
    }
    out
}

/// Polls `target`'s ledger every 2 s while an attack runs and returns the seconds until an
/// entry for one of `ids` first appears.
async fn watch_ledger(run: Arc<Run>, target: usize, ids: Vec<String>, within: Duration) -> Option<f64> {
    if ids.is_empty() {
        return None;
    }
    let started = Instant::now();
    while started.elapsed() < within {
        if run.up(target) && run.apis[target].ledger_for(&ids).await.is_ok_and(|e| !e.is_empty()) {
            return Some(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    None
}

async fn monitor(run: Arc<Run>) {
    loop {
        {
            let cluster = lock(&run.cluster);
            let mut peaks = lock(&run.rss_peak_kib);
            for n in &cluster.nodes {
                if let Some((rss, fds)) = n.resources() {
                    let e = peaks.entry(n.index).or_insert((0, 0));
                    e.0 = e.0.max(rss);
                    e.1 = e.1.max(fds);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
