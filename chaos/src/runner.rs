//! Runs one scenario: cluster up, workload + faults + attackers, heal, converge, check.

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
    node: usize,
    at: Instant,
}

/// One restart checked for durability: (node, acknowledged records missing right after the
/// restart, whether the node came back healthy).
type RestartCheck = (usize, Vec<RecordId>, bool);

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
    let limits = crate::node_limits(&scenario);
    // Fault proxies: link k listens on 127.0.0.(100 + k) and forwards to its `to` node.
    let mut links = Vec::new();
    let mut link_addrs = Vec::new();
    for (k, l) in scenario.links.iter().enumerate() {
        let listen = std::net::SocketAddr::new(
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 100 + k as u8)),
            crate::cluster::P2P_PORT,
        );
        let upstream = std::net::SocketAddr::new(std::net::IpAddr::V4(ips[l.to]), crate::cluster::P2P_PORT);
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
        &limits,
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
    });
    let result = run_inner(run.clone(), wall, root.path()).await;
    let exits = lock(&run.cluster).stop_all();
    let mut report = result?;
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
    report.duration_secs = wall.elapsed().as_secs_f64();
    report.write(&run.opts.out)?;
    // Keep node logs next to the report for post-mortems.
    for n in &lock(&run.cluster).nodes {
        let _ = std::fs::copy(n.log_path(), run.opts.out.join(format!("node-{}.log", n.index)));
    }
    Ok(report)
}

fn tempdir_for(name: &str) -> anyhow::Result<TempRoot> {
    let path = std::env::temp_dir().join(format!("palisade-chaos-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path)?;
    Ok(TempRoot(path))
}

/// A directory removed on drop (unless PALISADE_CHAOS_KEEP is set).
struct TempRoot(PathBuf);
impl TempRoot {
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempRoot {
    fn drop(&mut self) {
        if std::env::var_os("PALISADE_CHAOS_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
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
    // Wait for the mesh: every node connected to every other (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut ok = true;
        for api in &run.apis {
            ok &= api.peer_count().await.unwrap_or(0) + 1 >= s.nodes;
        }
        if ok || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

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
    let attack_reports = attackers.await.context("attacker task")?;
    info!("workload over; waiting for convergence");

    // Convergence: every live node has every acknowledged record.
    let acks: Vec<Ack> = lock(&run.acks).clone();
    let all: Vec<RecordId> = acks.iter().map(|a| a.id).collect();
    let settle = Instant::now() + Duration::from_secs(s.settle_secs);
    let mut missing: BTreeMap<usize, Vec<RecordId>> = BTreeMap::new();
    loop {
        missing.clear();
        for i in 0..s.nodes {
            if !run.up(i) {
                continue;
            }
            let have = run.apis[i].record_ids().await.unwrap_or_default();
            let lost: Vec<RecordId> = all.iter().filter(|id| !have.contains(id)).copied().collect();
            if !lost.is_empty() {
                missing.insert(i, lost);
            }
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
    checks.push(check_no_loss(&run, &acks, &missing, converged_after));
    checks.push(check_durability(&run).await);
    checks.push(check_no_false_bans(&run).await);
    if !attack_reports.is_empty() {
        checks.push(check_attackers(&run, &attack_reports).await);
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
    checks.push(check_resources(&run));
    checks.push(check_logs_and_health(&run).await);
    if s.attackers.iter().any(|a| a.kind == AttackKind::Equivocation) {
        checks.push(check_equivocation(&run).await);
    }
    let passed = checks.iter().all(|c| c.passed);
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
        if let Ok(Ok(id)) = tokio::time::timeout(Duration::from_secs(5), run.apis[i].submit(&st)).await {
            lock(&run.acks).push(Ack { id, node: i, at: Instant::now() });
        }
    }
}

async fn sleep_until_secs(run: &Run, at: f64) {
    let now = run.secs();
    if at > now {
        tokio::time::sleep(Duration::from_secs_f64(at - now)).await;
    }
}

async fn faults(run: Arc<Run>) {
    let mut schedule: Vec<(f64, crate::scenario::Fault)> = Vec::new();
    for f in &run.scenario.faults {
        for r in 0..f.repeat {
            schedule.push(((f.at_secs + u64::from(r) * f.every_secs) as f64, f.clone()));
        }
    }
    schedule.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut pending = Vec::new();
    for (at, f) in schedule {
        sleep_until_secs(&run, at).await;
        let run2 = run.clone();
        pending.push(tokio::spawn(async move { apply_fault(run2, at, f).await }));
    }
    for p in pending {
        let _ = p.await;
    }
}

async fn apply_fault(run: Arc<Run>, at: f64, f: crate::scenario::Fault) {
    let dur = f.duration_secs as f64;
    match f.action {
        FaultAction::Crash => {
            for i in run.pick(&f.node) {
                if !lock(&run.cluster).nodes[i].is_running() {
                    continue;
                }
                let acked_here: Vec<RecordId> =
                    lock(&run.acks).iter().filter(|a| a.node == i).map(|a| a.id).collect();
                info!(node = i, at, "fault: SIGKILL");
                let _ = lock(&run.cluster).crash(i);
                lock(&run.windows).push(Window {
                    label: format!("crash {i}"),
                    start_secs: at,
                    end_secs: at + dur,
                });
                sleep_until_secs(&run, at + dur).await;
                info!(node = i, "fault: restart");
                let _ = lock(&run.cluster).start(i);
                // Durability: right after restart, before sync could refill it, the node must
                // hold every record it acknowledged before the kill.
                let healthy = run.wait_healthy(i, Duration::from_secs(60)).await;
                let mut lost = Vec::new();
                if healthy {
                    let have = run.apis[i].record_ids().await.unwrap_or_default();
                    lost = acked_here.iter().filter(|id| !have.contains(id)).copied().collect();
                    lift_pending_unbans(&run, Some(i)).await;
                }
                lock(&run.durability).push((i, lost, healthy));
            }
        }
        FaultAction::Pause => {
            for i in run.pick(&f.node) {
                info!(node = i, at, "fault: SIGSTOP");
                let _ = lock(&run.cluster).pause(i);
                lock(&run.windows).push(Window {
                    label: format!("pause {i}"),
                    start_secs: at,
                    end_secs: at + dur,
                });
                sleep_until_secs(&run, at + dur).await;
                let _ = lock(&run.cluster).resume(i);
            }
        }
        FaultAction::Stall | FaultAction::Reset | FaultAction::Degrade => {
            let chosen: Vec<usize> = match f.link {
                Some(l) => vec![l],
                None => (0..run.links.len()).collect(),
            };
            let label = format!("{:?} link {chosen:?}", f.action).to_lowercase();
            info!(at, %label, "fault");
            let before: Vec<crate::proxy::LinkState> = chosen.iter().map(|l| run.links[*l].get()).collect();
            for (l, old) in chosen.iter().zip(&before) {
                let link = &run.links[*l];
                match f.action {
                    FaultAction::Stall => link.set(crate::proxy::LinkState { stalled: true, ..*old }),
                    FaultAction::Reset => link.reset(),
                    _ => link.set(crate::proxy::LinkState {
                        latency_ms: f.latency_ms,
                        jitter_ms: f.jitter_ms,
                        bytes_per_sec: f.bytes_per_sec,
                        ..*old
                    }),
                }
            }
            if f.action == FaultAction::Reset {
                lock(&run.windows).push(Window { label, start_secs: at, end_secs: at + 0.5 });
                return;
            }
            lock(&run.windows).push(Window { label, start_secs: at, end_secs: at + dur });
            sleep_until_secs(&run, at + dur).await;
            for (l, old) in chosen.iter().zip(before) {
                run.links[*l].set(old);
            }
        }
        FaultAction::Loss | FaultAction::OneWay | FaultAction::Bandwidth => {
            let ips: Vec<std::net::Ipv4Addr> = lock(&run.cluster).nodes.iter().map(|n| n.ip).collect();
            let rule = match f.action {
                FaultAction::Loss => run
                    .pick(&f.node)
                    .into_iter()
                    .map(|i| crate::netns::Rule::Loss { node: i, percent: f.loss_percent })
                    .collect(),
                FaultAction::OneWay => match (f.from, f.to) {
                    (Some(a), Some(b)) => vec![crate::netns::Rule::Drop { node: b, from: ips[a] }],
                    _ => Vec::new(),
                },
                _ => run
                    .pick(&f.node)
                    .into_iter()
                    .map(|i| crate::netns::Rule::Rate { node: i, bytes_per_sec: f.bytes_per_sec })
                    .collect::<Vec<_>>(),
            };
            info!(at, ?rule, "fault: netns rule");
            lock(&run.windows).push(Window {
                label: format!("{:?}", f.action).to_lowercase(),
                start_secs: at,
                end_secs: at + dur,
            });
            for r in &rule {
                if let Err(e) = crate::netns::apply(r, true) {
                    warn!(error = %e, "netns fault failed");
                }
            }
            sleep_until_secs(&run, at + dur).await;
            for r in &rule {
                if let Err(e) = crate::netns::apply(r, false) {
                    warn!(error = %e, "undoing a netns fault failed");
                }
            }
        }
        FaultAction::Partition => {
            let groups = partition_groups(&run, f.split.as_ref());
            info!(?groups, at, "fault: partition");
            lock(&run.windows).push(Window { label: "partition".into(), start_secs: at, end_secs: at + dur });
            set_partition(&run, &groups, true).await;
            sleep_until_secs(&run, at + dur).await;
            info!("fault: heal");
            set_partition(&run, &groups, false).await;
        }
    }
}

fn partition_groups(run: &Run, split: Option<&Split>) -> Vec<Vec<usize>> {
    let n = run.scenario.nodes;
    let mut rng = lock(&run.rng);
    match split {
        Some(Split::Groups(g)) => g.clone(),
        Some(Split::Named(s)) if s == "isolate" => {
            let i = rng.gen_range(0..n);
            vec![vec![i], (0..n).filter(|j| *j != i).collect()]
        }
        Some(Split::Named(_)) | None => {
            // Majority/minority: a random minority of floor((n-1)/2) nodes (at least one).
            let mut all: Vec<usize> = (0..n).collect();
            for k in (1..all.len()).rev() {
                let j = rng.gen_range(0..=k);
                all.swap(k, j);
            }
            let minority = ((n - 1) / 2).max(1);
            let (a, b) = all.split_at(minority);
            vec![a.to_vec(), b.to_vec()]
        }
    }
}

/// Retries the heal requests that `node` (every node with `None`) missed while it was down.
/// A request that fails again stays pending.
async fn lift_pending_unbans(run: &Run, node: Option<usize>) {
    let due: Vec<(usize, String)> = {
        let mut pending = lock(&run.pending_unbans);
        let (due, keep) = pending.drain(..).partition(|(a, _)| node.is_none_or(|n| n == *a));
        *pending = keep;
        due
    };
    for (a, peer) in due {
        match run.apis[a].unban_peer(&peer).await {
            Ok(()) => info!(node = a, %peer, "late heal: lifted a partition ban the node missed"),
            Err(e) => {
                warn!(node = a, error = %e, "late heal failed; retrying later");
                lock(&run.pending_unbans).push((a, peer));
            }
        }
    }
}

/// Cuts (or restores) every link between nodes of different groups.
async fn set_partition(run: &Run, groups: &[Vec<usize>], cut: bool) {
    let group_of = |i: usize| groups.iter().position(|g| g.contains(&i));
    let pairs: Vec<(usize, usize)> = (0..run.scenario.nodes)
        .flat_map(|a| (0..run.scenario.nodes).map(move |b| (a, b)))
        .filter(|(a, b)| a != b && group_of(*a) != group_of(*b))
        .collect();
    match run.scenario.network {
        NetworkMode::Netns => {
            if let Err(e) = crate::netns::set_partition(groups, cut) {
                warn!(error = %e, "netns partition failed");
            }
        }
        NetworkMode::Loopback => {
            let peers: Vec<(String, String)> =
                lock(&run.cluster).nodes.iter().map(|n| (n.peer_id.clone(), n.multiaddr())).collect();
            for (a, b) in &pairs {
                let result = if cut {
                    run.apis[*a].ban_peer(&peers[*b].0, 3600, "chaos partition").await
                } else {
                    run.apis[*a].unban_peer(&peers[*b].0).await
                };
                if let Err(e) = result {
                    warn!(node = a, error = %e, "partition/heal request failed (node down?)");
                    if !cut {
                        lock(&run.pending_unbans).push((*a, peers[*b].0.clone()));
                    }
                }
            }
        }
    }
    if !cut {
        // Reconnect across the healed cut, through the proxy where a link joins the pair.
        let nodes: Vec<(String, String)> =
            lock(&run.cluster).nodes.iter().map(|n| (n.multiaddr(), n.peer_id.clone())).collect();
        for (a, b) in pairs {
            if run.link_addrs.iter().any(|(from, to, _)| *from == b && *to == a) {
                continue; // b dials a through the proxy.
            }
            let addr = match run.link_addrs.iter().find(|(from, to, _)| *from == a && *to == b) {
                Some((_, _, p)) => format!("/ip4/{}/tcp/{}/p2p/{}", p.ip(), p.port(), nodes[b].1),
                None => nodes[b].0.clone(),
            };
            let _ = run.apis[a].dial(&addr).await;
        }
    }
}

async fn attackers(run: Arc<Run>) -> Vec<AttackReport> {
    let mut handles = Vec::new();
    let nodes: Vec<(String, String)> =
        lock(&run.cluster).nodes.iter().map(|n| (n.multiaddr(), n.peer_id.clone())).collect();
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
                };
                let run2 = run.clone();
                let start = a.start_secs as f64;
                handles.push(tokio::spawn(async move {
                    sleep_until_secs(&run2, start).await;
                    lock(&run2.windows).push(Window {
                        label: format!("{:?}", plan.kind),
                        start_secs: start,
                        end_secs: start + plan.duration.as_secs_f64(),
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

fn check_no_loss(
    run: &Run,
    acks: &[Ack],
    missing: &BTreeMap<usize, Vec<RecordId>>,
    converged_after: f64,
) -> CheckResult {
    let lost: usize = missing.values().map(Vec::len).sum();
    let seen = lock(&run.seen);
    let mut latencies: Vec<f64> = Vec::new();
    for a in acks {
        for i in 0..run.scenario.nodes {
            if i != a.node {
                if let Some(t) = seen.get(&(i, a.id)) {
                    latencies.push(t.saturating_duration_since(a.at).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let evidence = missing
        .iter()
        .flat_map(|(node, ids)| ids.iter().map(move |id| format!("node {node} lacks {id}")))
        .collect();
    CheckResult::new(
        "no_loss",
        lost == 0,
        format!(
            "{} acknowledged records on every live node (settled {:.1} s after the workload); visibility p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            if lost == 0 { "all".to_string() } else { format!("{lost} missing;") },
            converged_after.max(0.0),
            percentile(&latencies, 0.5).unwrap_or(0.0),
            percentile(&latencies, 0.99).unwrap_or(0.0),
            latencies.last().copied().unwrap_or(0.0),
        ),
        evidence,
    )
}

async fn check_durability(run: &Run) -> CheckResult {
    let d = lock(&run.durability).clone();
    let mut evidence = Vec::new();
    let mut checked = 0;
    for (node, lost, healthy) in &d {
        if !healthy {
            evidence.push(format!("node {node} did not come back after restart"));
        }
        checked += 1;
        for id in lost {
            evidence.push(format!("node {node} lost acknowledged {id} across SIGKILL"));
        }
    }
    // A node that lost an acknowledged record would re-sign its seq: honest authors must
    // never be flagged as equivocating.
    let honest: HashSet<String> = lock(&run.cluster).nodes.iter().map(|n| n.author.clone()).collect();
    for (i, api) in run.apis.iter().enumerate() {
        if let Ok(flagged) = api.flagged_authors().await {
            for a in flagged.into_iter().filter(|a| honest.contains(a)) {
                evidence.push(format!("node {i} flagged honest author {a} (a reused seq: lost write)"));
            }
        }
    }
    CheckResult::new(
        "durability",
        evidence.is_empty(),
        if d.is_empty() {
            "no crash in this scenario; no honest author equivocated".into()
        } else {
            format!("{checked} restarts checked: records acknowledged before SIGKILL present after restart")
        },
        evidence,
    )
}

async fn check_no_false_bans(run: &Run) -> CheckResult {
    let honest: Vec<String> = lock(&run.cluster).nodes.iter().map(|n| n.peer_id.clone()).collect();
    let mut evidence = Vec::new();
    for (i, api) in run.apis.iter().enumerate() {
        if !run.up(i) {
            continue;
        }
        if let Ok(banned) = api.banned_targets().await {
            for b in banned {
                // Chaos partitions ban on purpose, and lift them at heal; anything left is real.
                if honest.iter().any(|h| b.contains(h.as_str())) {
                    evidence.push(format!("node {i} bans honest {b}"));
                }
            }
        }
        if let Ok(penalised) = api.penalised_peers().await {
            for p in penalised {
                if honest.iter().any(|h| p.contains(h.as_str())) {
                    evidence.push(format!("node {i} penalised honest peer: {p}"));
                }
            }
        }
    }
    CheckResult::new(
        "no_false_bans",
        evidence.is_empty(),
        if evidence.is_empty() {
            "no honest peer banned or penalised".into()
        } else {
            format!("{} findings", evidence.len())
        },
        evidence,
    )
}

async fn check_attackers(run: &Run, reports: &[AttackReport]) -> CheckResult {
    let within = run.scenario.checks.attackers_contained_within_secs as f64;
    let mut evidence = Vec::new();
    let mut ok = true;
    for r in reports {
        let api = &run.apis[r.target];
        let banned = match api.banned_targets().await {
            Ok(b) => r.peer_ids.iter().any(|p| b.iter().any(|t| t.contains(p.as_str()))),
            Err(_) => false,
        };
        // The target's own audit trail: when did it first drop, throttle, penalise or ban
        // this attacker?
        let ledger = api.ledger_for(&r.peer_ids).await.unwrap_or_default();
        let start_ms = run.attack_start_ms(r);
        let first_action =
            ledger.iter().map(|(t, _, _)| *t).min().map(|t| t.saturating_sub(start_ms) as f64 / 1000.0);
        let reasons: std::collections::BTreeSet<&str> =
            ledger.iter().map(|(_, a, r)| if a == "banned" { "banned" } else { r.as_str() }).collect();
        let drops = api.drops_before_verify().await.unwrap_or(0);
        // Replays of valid records are contained by dedup (no cost beyond a lookup); an
        // equivocation is one conflicting record, contained by being flagged (own check).
        let harmless = matches!(r.kind.as_str(), "Replay" | "Equivocation");
        let contained = harmless
            || banned
            || r.first_refusal_after_secs.is_some_and(|s| s <= within)
            || r.first_ledger_seen_after_secs.is_some_and(|s| s <= within)
            || first_action.is_some_and(|s| s <= within);
        ok &= contained;
        evidence.push(format!(
            "{} → node {}: sent {}, {}; first refusal by the node {}; in the ledger after {}; earliest ledger entry left {} ({}); node dropped {drops} messages before signature checks",
            r.kind,
            r.target,
            r.sent,
            if banned { "banned" } else { "not banned" },
            r.first_refusal_after_secs.map(|s| format!("{s:.1}s")).unwrap_or_else(|| "never".into()),
            r.first_ledger_seen_after_secs.map(|s| format!("{s:.1}s")).unwrap_or_else(|| "never".into()),
            first_action.map(|s| format!("{s:.1}s")).unwrap_or_else(|| "none".into()),
            reasons.into_iter().take(6).collect::<Vec<_>>().join(", "),
        ));
    }
    CheckResult::new(
        "attackers_contained",
        ok,
        format!("{} attackers; each dropped, throttled, refused or banned within {within} s", reports.len()),
        evidence,
    )
}

fn timeline_and_goodput(
    run: &Run,
    acks: &[Ack],
) -> (Vec<Second>, serde_json::Map<String, serde_json::Value>, CheckResult) {
    let s = &run.scenario;
    let seen = lock(&run.seen);
    let secs = s.duration_secs as usize + 1;
    let mut timeline: Vec<Second> = (0..secs).map(|t| Second { t: t as u64, ..Second::default() }).collect();
    let mut lat_by_sec: Vec<Vec<f64>> = vec![Vec::new(); secs];
    for a in acks {
        let t = a.at.saturating_duration_since(run.start).as_secs() as usize;
        if let Some(x) = timeline.get_mut(t) {
            x.acked += 1;
        }
        for i in 0..s.nodes {
            if i == a.node {
                continue;
            }
            if let Some(when) = seen.get(&(i, a.id)) {
                let lat = when.saturating_duration_since(a.at).as_secs_f64() * 1000.0;
                let ts = when.saturating_duration_since(run.start).as_secs() as usize;
                if let Some(x) = timeline.get_mut(ts) {
                    x.delivered += 1;
                }
                if let Some(v) = lat_by_sec.get_mut(t) {
                    v.push(lat);
                }
            }
        }
    }
    for (x, v) in timeline.iter_mut().zip(lat_by_sec.iter_mut()) {
        v.sort_by(f64::total_cmp);
        x.p50_ms = percentile(v, 0.5);
        x.p99_ms = percentile(v, 0.99);
    }
    // Baseline: [1, baseline); stress: the rest of the workload.
    let phase = |from: usize, to: usize| {
        let mut lat: Vec<f64> =
            lat_by_sec.get(from..to.min(secs)).unwrap_or(&[]).iter().flatten().copied().collect();
        lat.sort_by(f64::total_cmp);
        let delivered: u64 =
            timeline.get(from..to.min(secs)).unwrap_or(&[]).iter().map(|x| x.delivered).sum();
        let span = (to.min(secs).saturating_sub(from)).max(1) as f64;
        (delivered as f64 / span, percentile(&lat, 0.5).unwrap_or(0.0), percentile(&lat, 0.99).unwrap_or(0.0))
    };
    let base_end = s.baseline_secs as usize;
    let (base_rate, base_p50, base_p99) = phase(1, base_end);
    let (stress_rate, stress_p50, stress_p99) = phase(base_end, s.duration_secs as usize);
    let ratio = if base_rate > 0.0 { stress_rate / base_rate } else { 0.0 };
    let mut figures = serde_json::Map::new();
    figures.insert("baseline_goodput_per_sec".into(), format!("{base_rate:.1}").into());
    figures.insert("stress_goodput_per_sec".into(), format!("{stress_rate:.1}").into());
    figures.insert("goodput_ratio".into(), format!("{ratio:.2}").into());
    figures.insert("baseline_p50_p99_ms".into(), format!("{base_p50:.0} / {base_p99:.0}").into());
    figures.insert("stress_p50_p99_ms".into(), format!("{stress_p50:.0} / {stress_p99:.0}").into());
    let max_p99 = base_p99 * s.checks.max_p99_latency_ratio + 100.0;
    let passed = ratio >= s.checks.min_goodput_ratio && stress_p99 <= max_p99;
    let check = CheckResult::new(
        "goodput",
        passed,
        format!(
            "honest goodput {stress_rate:.1}/s vs baseline {base_rate:.1}/s (ratio {ratio:.2}, need ≥ {}); p99 {stress_p99:.0} ms vs baseline {base_p99:.0} ms (limit {max_p99:.0} ms)",
            s.checks.min_goodput_ratio
        ),
        Vec::new(),
    );
    (timeline, figures, check)
}

fn check_resources(run: &Run) -> CheckResult {
    let peaks = lock(&run.rss_peak_kib).clone();
    let c = &run.scenario.checks;
    let mut evidence = Vec::new();
    let mut ok = true;
    for (i, (rss, fds)) in &peaks {
        let rss_mib = rss / 1024;
        if rss_mib > c.max_rss_mib || *fds > c.max_open_fds {
            ok = false;
        }
        evidence.push(format!("node {i}: peak RSS {rss_mib} MiB, peak fds {fds}"));
    }
    let max_rss = peaks.values().map(|p| p.0 / 1024).max().unwrap_or(0);
    let max_fds = peaks.values().map(|p| p.1).max().unwrap_or(0);
    CheckResult::new(
        "resources",
        ok,
        format!(
            "peak RSS {max_rss} MiB (limit {}), peak fds {max_fds} (limit {})",
            c.max_rss_mib, c.max_open_fds
        ),
        evidence,
    )
}

async fn check_logs_and_health(run: &Run) -> CheckResult {
    let mut evidence = Vec::new();
    for (i, api) in run.apis.iter().enumerate() {
        if run.up(i) && !api.health().await {
            evidence.push(format!("node {i} does not answer /v1/health"));
        }
    }
    for n in &lock(&run.cluster).nodes {
        let log = std::fs::read_to_string(n.log_path()).unwrap_or_default();
        for line in log.lines() {
            if line.contains("panicked") || line.contains("\"level\":\"ERROR\"") {
                evidence.push(format!("node {}: {}", n.index, line.chars().take(200).collect::<String>()));
            }
        }
    }
    CheckResult::new(
        "no_panics_and_healthy",
        evidence.is_empty(),
        if evidence.is_empty() {
            "no panic or error-level log; every live node healthy".into()
        } else {
            format!("{} findings", evidence.len())
        },
        evidence,
    )
}

async fn check_equivocation(run: &Run) -> CheckResult {
    let author = byzantine::equivocating_author().to_hex();
    let mut evidence = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ok = false;
    while Instant::now() < deadline {
        evidence.clear();
        ok = true;
        for (i, api) in run.apis.iter().enumerate() {
            if !run.up(i) {
                continue;
            }
            let flagged = api.flagged_authors().await.unwrap_or_default().contains(&author);
            ok &= flagged;
            if !flagged {
                evidence.push(format!("node {i} has not flagged {author}"));
            }
        }
        if ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    CheckResult::new(
        "equivocation",
        ok,
        if ok {
            "the equivocating author is flagged on every honest node".into()
        } else {
            "not flagged everywhere".into()
        },
        evidence,
    )
}
