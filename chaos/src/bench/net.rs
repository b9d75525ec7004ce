//! Network measurements on real processes (targets 6, 7, 9b): Palisade nodes
//! (`palisade run`) and baseline nodes (bare gossipsub, [`super::baseline`]) observed the
//! same way, fed by the same publisher.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{FutureExt, StreamExt};
use libp2p::core::muxing::{StreamMuxerBox, StreamMuxerExt};
use libp2p::core::transport::{DialOpts, PortUse};
use libp2p::core::Endpoint;
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, identity, Multiaddr, PeerId, Swarm, Transport};
use palisade_api::model::{ApiEvent, EventParams};
use tokio::io::AsyncBufReadExt;
use tokio::task::JoinHandle;

use super::procs::{self, NodeProc};
use super::{baseline, median, percentile, workload, Ctx, Recorder};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// First arrival of each message id at each node: (node, when).
type Arrivals = HashMap<[u8; 32], Vec<(usize, Instant)>>;

/// What the harness sees of a set of nodes: records delivered per node, and when each
/// message first reached each node.
#[derive(Clone, Default)]
pub struct Observed {
    counts: Vec<Arc<AtomicU64>>,
    arrivals: Arc<Mutex<Arrivals>>,
}

impl Observed {
    fn new(n: usize) -> Observed {
        Observed {
            counts: (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect(),
            arrivals: Default::default(),
        }
    }

    /// The lowest delivered count over the nodes.
    pub fn min_count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).min().unwrap_or(0)
    }

    fn arrived(&self, node: usize, id: [u8; 32]) {
        let now = Instant::now();
        let mut a = lock(&self.arrivals);
        let v = a.entry(id).or_default();
        if !v.iter().any(|(n, _)| *n == node) {
            v.push((node, now));
        }
    }
}

/// A network under test.
pub struct TestNet {
    /// Observations.
    pub obs: Observed,
    /// Where the publisher connects (node 0), with its peer id.
    pub entry: Multiaddr,
    /// Node 0's peer id.
    pub entry_peer: PeerId,
    /// Palisade or baseline.
    pub palisade: bool,
    /// Palisade processes (empty for the baseline).
    pub nodes: Vec<NodeProc>,
    children: Vec<tokio::process::Child>,
    tasks: Vec<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestNet {
    /// Stops every process and observer.
    pub async fn stop(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for n in &mut self.nodes {
            n.stop();
        }
        for c in &mut self.children {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// PIDs of the node processes.
    pub fn pids(&self) -> Vec<u32> {
        if self.palisade {
            self.nodes.iter().filter_map(|n| n.pid()).collect()
        } else {
            self.children.iter().filter_map(|c| c.id()).collect()
        }
    }
}

/// Who dials whom. On loopback every node dials from 127.0.0.1 (the kernel's source
/// address), so a node sees all its inbound peers on one IP; gossipsub's IP-colocation score
/// (P6: penalty beyond 8 peers per IP) would prune them from the mesh in a full mesh of 10.
/// `dials(i, n)` orients the links so no node has more than `k` inbound peers.
#[derive(Debug, Clone, Copy)]
pub enum Topology {
    /// Node i dials every node before it (a full mesh; node 0 has n − 1 inbound peers).
    Full,
    /// Node i dials nodes i+1 … i+k (mod n): 2k peers each, k inbound.
    Ring(usize),
}

impl Topology {
    /// The nodes node `i` dials.
    pub fn dials(self, i: usize, n: usize) -> Vec<usize> {
        match self {
            Topology::Full => (0..i).collect(),
            Topology::Ring(k) => {
                (1..=k.min(n.saturating_sub(1))).map(|d| (i + d) % n).filter(|j| *j != i).collect()
            }
        }
    }

    /// Peers every node should reach.
    pub fn peers(self, n: usize) -> usize {
        match self {
            Topology::Full => n.saturating_sub(1),
            Topology::Ring(k) => (2 * k).min(n.saturating_sub(1)),
        }
    }

    /// A full mesh up to 9 nodes, else a ring of 4 each way.
    pub fn for_nodes(n: usize) -> Topology {
        if n <= 9 {
            Topology::Full
        } else {
            Topology::Ring(4)
        }
    }
}

/// How the harness watches Palisade nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Poll stored-record counts (cheap; for throughput).
    Counts,
    /// Subscribe to record events (per-record arrival times; for latency).
    Arrivals,
}

/// Starts `n` Palisade processes linked as `topology` says (bootstrap peers; a node retries
/// a bootstrap peer that is not up yet) and waits until every node has its peers.
pub async fn start_palisade(
    ctx: &Ctx,
    n: usize,
    limits: toml::Table,
    network: toml::Table,
    watch: Watch,
    topology: Topology,
) -> anyhow::Result<TestNet> {
    let dir = tempfile::Builder::new().prefix("palisade-bench-").tempdir()?;
    let mut nodes: Vec<NodeProc> = Vec::new();
    for i in 0..n {
        nodes.push(NodeProc::init(
            &ctx.args.binary,
            &dir.path().join(format!("node-{i}")),
            procs::node_ip(i),
        )?);
    }
    for i in 0..n {
        let bootstrap: Vec<String> =
            topology.dials(i, n).into_iter().filter_map(|j| nodes.get(j).map(|o| o.multiaddr())).collect();
        let node = nodes.get_mut(i).context("node")?;
        node.configure(&bootstrap, limits.clone(), network.clone())?;
        node.start()?;
        node.wait_ready(Duration::from_secs(60)).await?;
    }
    wait_peers_palisade(&nodes, topology.peers(n)).await?;
    let obs = Observed::new(n);
    let mut tasks = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let api = node.api();
        let count = obs.counts[i].clone();
        let obs2 = obs.clone();
        tasks.push(tokio::spawn(async move {
            match watch {
                Watch::Counts => loop {
                    if let Ok(info) = api.node().await {
                        count.store(info.records.total, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                },
                Watch::Arrivals => {
                    let params = EventParams { types: Some("record_stored".into()), kinds: None };
                    let Ok(mut stream) = api.events(&params).await else { return };
                    while let Ok(Some(event)) = stream.next_event().await {
                        if let ApiEvent::RecordStored { id, .. } = event {
                            obs2.arrived(i, id.0);
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    let entry = nodes.first().context("no nodes")?.multiaddr().parse()?;
    let entry_peer = nodes.first().context("no nodes")?.peer_id.parse()?;
    // Let the meshes form (two heartbeats).
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(TestNet {
        obs,
        entry,
        entry_peer,
        palisade: true,
        nodes,
        children: Vec::new(),
        tasks,
        _dir: Some(dir),
    })
}

async fn wait_peers_palisade(nodes: &[NodeProc], want: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for node in nodes {
        let api = node.api();
        loop {
            if api.node().await.map(|i| i.peers >= want).unwrap_or(false) {
                break;
            }
            if Instant::now() > deadline {
                let mut counts = Vec::new();
                for n in nodes {
                    counts.push(n.api().node().await.map(|i| i.peers).unwrap_or(0));
                }
                let log = std::fs::read_to_string(node.dir.join("node.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                bail!("palisade nodes did not all reach {want} peers within 60 s (peers per node: {counts:?}); last log lines of {}: {tail:?}", node.dir.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Baseline node i's IP (127.0.3.x).
fn baseline_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 3, 10 + (i % 200) as u8)
}

/// Starts `n` baseline processes linked as `topology` says (a node redials peers that are not
/// up yet) and waits until every node has its peers.
pub async fn start_baseline(n: usize, topology: Topology) -> anyhow::Result<TestNet> {
    let exe = std::env::current_exe().context("locating palisade-chaos")?;
    let obs = Observed::new(n);
    let mut children = Vec::new();
    let mut tasks = Vec::new();
    let addrs: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "/ip4/{}/tcp/{}/p2p/{}",
                baseline_ip(i),
                procs::PORT,
                baseline::node_key(i as u64).public().to_peer_id()
            )
        })
        .collect();
    let peers: Vec<Arc<AtomicUsize>> = (0..n).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    for (i, npeers) in peers.iter().enumerate() {
        let listen = format!("/ip4/{}/tcp/{}", baseline_ip(i), procs::PORT);
        let dial = topology.dials(i, n).into_iter().filter_map(|j| addrs.get(j).cloned()).collect();
        let spec = baseline::NodeSpec { listen: listen.clone(), dial, seed: i as u64 };
        let mut child = tokio::process::Command::new(&exe)
            .arg("bench")
            .arg("--baseline-node")
            .arg(serde_json::to_string(&spec)?)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a baseline node")?;
        let stdout = child.stdout.take().context("baseline stdout")?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let count = obs.counts[i].clone();
        let obs2 = obs.clone();
        let npeers = npeers.clone();
        tasks.push(tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let mut ready = Some(ready_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(hexid) = line.strip_prefix("m ") {
                    if let Ok(Ok(id)) = hex::decode(hexid).map(<[u8; 32]>::try_from) {
                        obs2.arrived(i, id);
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                } else if let Some(p) = line.strip_prefix("peers ") {
                    npeers.store(p.parse().unwrap_or(0), Ordering::Relaxed);
                } else if line.starts_with("ready ") {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
            }
        }));
        tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .context("baseline node did not start listening")?
            .ok();
        children.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while peers.iter().any(|p| p.load(Ordering::Relaxed) < topology.peers(n)) {
        if Instant::now() > deadline {
            bail!("baseline nodes did not connect to each other within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let entry: Multiaddr = addrs.first().context("no nodes")?.parse()?;
    let entry_peer = baseline::node_key(0).public().to_peer_id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(TestNet { obs, entry, entry_peer, palisade: false, nodes: Vec::new(), children, tasks, _dir: None })
}

/// The publisher's shared state.
#[derive(Default)]
pub struct PubState {
    /// Publish records up to this index (exclusive).
    pub allowed: AtomicUsize,
    /// Records published so far.
    pub published: AtomicUsize,
    /// Publish time of each record.
    pub times: Mutex<Vec<Option<Instant>>>,
    /// Set once node 0 announced its subscription.
    pub ready: AtomicBool,
    /// Set to stop the task.
    pub stop: AtomicBool,
    /// Wakes the task.
    pub wake: tokio::sync::Notify,
}

/// A gossipsub client connected to node 0 that publishes the given payloads in order.
pub struct Publisher {
    /// Shared state.
    pub state: Arc<PubState>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Publisher {
    /// Connects to `net`'s entry node and waits until it can publish.
    pub async fn start(net: &TestNet, payloads: Arc<Vec<Vec<u8>>>) -> anyhow::Result<Publisher> {
        let key = identity::Keypair::generate_ed25519();
        let config = if net.palisade {
            gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Anonymous)
                .message_id_fn(|m: &gossipsub::Message| palisade_net::gossip::message_id(&m.data))
                .max_transmit_size(64 * 1024)
                .build()
                .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?
        } else {
            baseline::gossip_config()?
        };
        let behaviour = gossipsub::Behaviour::<
            gossipsub::IdentityTransform,
            gossipsub::AllowAllSubscriptionFilter,
        >::new(gossipsub::MessageAuthenticity::Anonymous, config)
        .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
        let cfg = libp2p::swarm::Config::with_tokio_executor()
            .with_idle_connection_timeout(Duration::from_secs(120));
        let mut swarm =
            Swarm::new(baseline::transport(&key, None)?, behaviour, key.public().to_peer_id(), cfg);
        swarm.dial(net.entry.clone())?;
        let state = Arc::new(PubState::default());
        *lock(&state.times) = vec![None; payloads.len()];
        let st = state.clone();
        let target = net.entry_peer;
        let topic = gossipsub::IdentTopic::new(baseline::TOPIC);
        let task = tokio::spawn(async move {
            loop {
                if st.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                tokio::select! {
                    event = swarm.select_next_some() => on_pub_event(event, &st, target),
                    _ = st.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
                while let Some(Some(event)) = swarm.next().now_or_never() {
                    on_pub_event(event, &st, target);
                }
                if !st.ready.load(Ordering::Relaxed) {
                    continue;
                }
                // Publish what is allowed, 64 at a time between swarm polls.
                for _ in 0..64 {
                    let i = st.published.load(Ordering::Relaxed);
                    if i >= st.allowed.load(Ordering::Relaxed) {
                        break;
                    }
                    let Some(data) = payloads.get(i) else { break };
                    match swarm.behaviour_mut().publish(topic.clone(), data.clone()) {
                        Ok(_) => {
                            if let Some(t) = lock(&st.times).get_mut(i) {
                                *t = Some(Instant::now());
                            }
                            st.published.store(i + 1, Ordering::Relaxed);
                        }
                        Err(gossipsub::PublishError::Duplicate) => {
                            st.published.store(i + 1, Ordering::Relaxed)
                        }
                        Err(_) => break, // queue full or no peers yet: try again after polling
                    }
                }
            }
        });
        let publisher = Publisher { state, task };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !publisher.state.ready.load(Ordering::Relaxed) {
            if publisher.task.is_finished() || Instant::now() > deadline {
                bail!("the publisher could not reach node 0's topic within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(publisher)
    }

    /// Lets the publisher go up to index `n` (exclusive).
    pub fn allow(&self, n: usize) {
        if n > self.state.allowed.load(Ordering::Relaxed) {
            self.state.allowed.store(n, Ordering::Relaxed);
            self.state.wake.notify_one();
        }
    }

    /// Stops the task.
    pub async fn stop(self) {
        self.state.stop.store(true, Ordering::Relaxed);
        self.state.wake.notify_one();
        let _ = self.task.await;
    }
}

fn on_pub_event(event: SwarmEvent<gossipsub::Event>, st: &PubState, target: PeerId) {
    if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, .. }) = event {
        if peer_id == target {
            st.ready.store(true, Ordering::Relaxed);
        }
    }
}

/// Publishes `payloads[from..to]` keeping at most `window` records not yet delivered to
/// every node; returns the seconds from the first publish until every node had them all.
/// Counts on the nodes are cumulative: `base` is what each node had before.
pub(crate) async fn closed_loop(
    net: &TestNet,
    publisher: &Publisher,
    from: usize,
    to: usize,
    window: usize,
    base: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut last_progress = (Instant::now(), net.obs.min_count());
    loop {
        let done = net.obs.min_count().saturating_sub(base) as usize;
        publisher.allow((from + done + window).min(to));
        if from + done >= to {
            return Ok(started.elapsed().as_secs_f64());
        }
        let now_min = net.obs.min_count();
        if now_min != last_progress.1 {
            last_progress = (Instant::now(), now_min);
        } else if last_progress.0.elapsed() > Duration::from_secs(30) {
            bail!("no progress for 30 s: {} of {} records delivered to every node", from + done, to);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Records for a network test: `count` from `authors` authors, plus the first record of
/// every author first (the warm-up), as envelopes.
pub(crate) fn net_payloads(seed: u64, authors: usize, count: usize) -> Vec<Vec<u8>> {
    workload::wire(&workload::records(seed, authors, count + authors, palisade_net::now_ms()))
}

/// 3-node throughput of `net` for `payloads` (warm-up = the first `authors`).
async fn throughput(net: &TestNet, payloads: Arc<Vec<Vec<u8>>>, authors: usize) -> anyhow::Result<f64> {
    let publisher = Publisher::start(net, payloads.clone()).await?;
    let total = payloads.len();
    // Warm-up: one record per author, so every node knows every author.
    let result = async {
        closed_loop(net, &publisher, 0, authors, authors, 0).await?;
        let secs = closed_loop(net, &publisher, authors, total, 512, authors as u64).await?;
        anyhow::Ok((total - authors) as f64 / secs)
    }
    .await;
    publisher.stop().await;
    result
}

/// Part `network`: target 6.
pub async fn run_network_part(ctx: &Ctx, rec: &mut Recorder) -> anyhow::Result<()> {
    let authors = 256.min(ctx.sizes.network_records);
    let n = ctx.sizes.network_records;
    let mut pal = Vec::new();
    let mut base = Vec::new();
    let mut cpu_pal = Vec::new();
    for r in 0..ctx.repeat {
        let payloads = Arc::new(net_payloads(100 + r as u64, authors, n));
        let net = start_baseline(3, Topology::Full).await?;
        let cpu0: f64 = net.pids().iter().filter_map(|p| procs::cpu_secs(*p)).sum();
        let rate = throughput(&net, payloads.clone(), authors).await;
        net.stop().await;
        base.push(rate?);
        let _ = cpu0;

        let net =
            start_palisade(ctx, 3, procs::raised_limits(), toml::Table::new(), Watch::Counts, Topology::Full)
                .await?;
        let cpu0: f64 = net.pids().iter().filter_map(|p| procs::cpu_secs(*p)).sum();
        let rate = throughput(&net, payloads, authors).await;
        let cpu1: f64 = net.pids().iter().filter_map(|p| procs::cpu_secs(*p)).sum();
        net.stop().await;
        let rate = rate?;
        pal.push(rate);
        cpu_pal.push((cpu1 - cpu0) * 1e6 / (n as f64));
    }
    rec.figure("net3_baseline_rps", "records/s", base, "3 bare-gossipsub processes on loopback (TCP+noise+yamux, anonymous, content-hash ids, no validation hook, no storage): records delivered to all nodes per second, one publisher on node 0, ≤ 512 in flight");
    rec.figure("net3_palisade_rps", "records/s", pal, "3 palisade processes on loopback, same publisher and payloads (signature check + store on every node), per-peer/author/bandwidth limits raised");
    rec.figure(
        "net3_palisade_cpu_per_record_us",
        "µs",
        cpu_pal,
        "CPU of the 3 palisade processes together per record delivered to all",
    );
    rec.ratio(
        "6",
        "3-node throughput vs bare gossipsub",
        "net3_palisade_rps",
        "net3_baseline_rps",
        ">=",
        0.5,
        "processes on one 2-core machine: both networks and the publisher share the CPUs",
    );
    Ok(())
}

/// Publishes at `rate` for `secs` and returns time-to-all-nodes per record (ms; missing
/// deliveries after a 5 s grace are counted as 10 s).
async fn latency_run(
    net: &TestNet,
    payloads: Arc<Vec<Vec<u8>>>,
    rate: f64,
    nodes: usize,
) -> anyhow::Result<Vec<f64>> {
    let ids: Vec<[u8; 32]> = payloads
        .iter()
        .map(|p| {
            if net.palisade {
                palisade_types::ParsedEnvelope::parse(p.clone()).map(|e| e.id().0).unwrap_or([0; 32])
            } else {
                *blake3::hash(p).as_bytes()
            }
        })
        .collect();
    let publisher = Publisher::start(net, payloads.clone()).await?;
    let started = Instant::now();
    let total = payloads.len();
    loop {
        let due = ((started.elapsed().as_secs_f64() * rate) as usize + 1).min(total);
        publisher.allow(due);
        if publisher.state.published.load(Ordering::Relaxed) >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Grace for stragglers.
    let grace = Instant::now() + Duration::from_secs(5);
    while Instant::now() < grace {
        let all = {
            let a = lock(&net.obs.arrivals);
            ids.iter().all(|id| a.get(id).is_some_and(|v| v.len() >= nodes))
        };
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let times = lock(&publisher.state.times).clone();
    publisher.stop().await;
    let per_node: Vec<u64> = net.obs.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    tracing::info!(palisade = net.palisade, ?per_node, published = total, "latency run deliveries per node");
    let a = lock(&net.obs.arrivals);
    let mut out = Vec::with_capacity(total);
    for (id, t0) in ids.iter().zip(times) {
        let Some(t0) = t0 else { continue };
        match a.get(id) {
            Some(v) if v.len() >= nodes => {
                let last = v.iter().map(|(_, t)| *t).max().unwrap_or(t0);
                out.push(last.saturating_duration_since(t0).as_secs_f64() * 1e3);
            }
            _ => out.push(10_000.0),
        }
    }
    Ok(out)
}

/// Part `latency`: target 7.
pub async fn run_latency_part(ctx: &Ctx, rec: &mut Recorder) -> anyhow::Result<()> {
    let n = ctx.sizes.latency_nodes;
    let count = (ctx.sizes.latency_secs * ctx.sizes.latency_rate) as usize;
    let authors = 64.min(count);
    let mut p99_pal = Vec::new();
    let mut p99_base = Vec::new();
    let mut p50_pal = Vec::new();
    let mut p50_base = Vec::new();
    for r in 0..ctx.repeat {
        let payloads = Arc::new(workload::wire(&workload::records(
            200 + r as u64,
            authors,
            count,
            palisade_net::now_ms(),
        )));
        let net = start_baseline(n, Topology::for_nodes(n)).await?;
        let lat = latency_run(&net, payloads.clone(), ctx.sizes.latency_rate, n).await;
        net.stop().await;
        let lat = lat?;
        p99_base.push(percentile(&lat, 0.99));
        p50_base.push(percentile(&lat, 0.50));

        // Default limits, except the per-IP connection caps: every node dials from 127.0.0.1
        // (the kernel's source address for loopback), so 9 peers would exceed the default 8
        // connections per IP.
        let net = start_palisade(
            ctx,
            n,
            procs::connection_limits(64),
            toml::Table::new(),
            Watch::Arrivals,
            Topology::for_nodes(n),
        )
        .await?;
        let lat = latency_run(&net, payloads, ctx.sizes.latency_rate, n).await;
        net.stop().await;
        let lat = lat?;
        p99_pal.push(percentile(&lat, 0.99));
        p50_pal.push(percentile(&lat, 0.50));
    }
    let how = format!("{n} processes on loopback ({:?} links), {} records/s from one publisher on node 0 for {} s; time from publish until the last node has the record", Topology::for_nodes(n), ctx.sizes.latency_rate, ctx.sizes.latency_secs);
    rec.figure("lat10_baseline_p99_ms", "ms", p99_base, &format!("bare gossipsub: {how}"));
    rec.figure("lat10_baseline_p50_ms", "ms", p50_base, "bare gossipsub, median");
    rec.figure(
        "lat10_palisade_p99_ms",
        "ms",
        p99_pal,
        &format!(
            "palisade, default limits (connection caps per IP raised: all nodes dial from 127.0.0.1): {how}"
        ),
    );
    rec.figure("lat10_palisade_p50_ms", "ms", p50_pal, "palisade, median");
    let note = if n < 10 { format!("scaled down to {n} nodes") } else { String::new() };
    rec.ratio(
        "7",
        "10-node p99 time-to-all vs bare gossipsub",
        "lat10_palisade_p99_ms",
        "lat10_baseline_p99_ms",
        "<=",
        1.5,
        &note,
    );
    Ok(())
}

/// Connections held open by the load client: each completed noise + yamux and is kept alive
/// by polling; inbound streams the node opens are accepted and dropped (the client speaks no
/// protocol).
pub struct HeldConnections {
    count: Arc<AtomicUsize>,
    task: JoinHandle<()>,
    tx: tokio::sync::mpsc::Sender<StreamMuxerBox>,
}

impl HeldConnections {
    /// An empty set.
    pub fn new() -> HeldConnections {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<StreamMuxerBox>(64);
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let task = tokio::spawn(async move {
            let mut muxers: Vec<StreamMuxerBox> = Vec::new();
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(m) => { muxers.push(m); }
                        None => return,
                    },
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                // Drive every connection: accept and drop inbound streams, notice closes.
                muxers.retain_mut(|m| {
                    let waker = futures::task::noop_waker();
                    let mut cx = std::task::Context::from_waker(&waker);
                    loop {
                        match m.poll_inbound_unpin(&mut cx) {
                            std::task::Poll::Ready(Ok(s)) => drop(s),
                            std::task::Poll::Ready(Err(_)) => return false,
                            std::task::Poll::Pending => break,
                        }
                    }
                    !matches!(m.poll_unpin(&mut cx), std::task::Poll::Ready(Err(_)))
                });
                c.store(muxers.len(), Ordering::Relaxed);
            }
        });
        HeldConnections { count, task, tx }
    }

    /// Open connections right now.
    pub fn open(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Opens `n` connections to `target` from the given source IPs (round robin), `parallel`
    /// handshakes at a time, each with a fresh identity. Returns (established, failed).
    pub async fn connect(
        &self,
        target: &Multiaddr,
        sources: &[Ipv4Addr],
        n: usize,
        parallel: usize,
        seed: u64,
    ) -> (usize, usize) {
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let jobs = futures::stream::iter(0..n).for_each_concurrent(parallel.max(1), |k| {
            let ok = ok.clone();
            let failed = failed.clone();
            let tx = self.tx.clone();
            let source = sources.get(k % sources.len().max(1)).copied();
            let target = target.clone();
            async move {
                match dial_once(&target, source, seed, k as u64).await {
                    Some(m) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send(m).await;
                    }
                    None => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        jobs.await;
        (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
    }

    /// Closes every connection.
    pub fn close(self) {
        self.task.abort();
    }
}

/// One connection attempt (TCP + noise + yamux) from `source`, 10 s at most.
pub async fn dial_once(
    target: &Multiaddr,
    source: Option<Ipv4Addr>,
    seed: u64,
    k: u64,
) -> Option<StreamMuxerBox> {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&k.to_le_bytes());
    bytes[16] = 0xbe;
    let key = identity::Keypair::ed25519_from_bytes(bytes).ok()?;
    let mut transport = baseline::transport(&key, source).ok()?;
    let dial =
        transport.dial(target.clone(), DialOpts { role: Endpoint::Dialer, port_use: PortUse::New }).ok()?;
    match tokio::time::timeout(Duration::from_secs(10), dial).await {
        Ok(Ok((_peer, muxer))) => Some(muxer),
        _ => None,
    }
}

/// Source IPs `127.a.b.c` for load clients: `per_subnet` addresses in each of `subnets`
/// /24 subnets, starting at 127.`first`.0.0.
pub fn sources(first: u8, subnets: usize, per_subnet: usize) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    for s in 0..subnets {
        for h in 0..per_subnet {
            out.push(Ipv4Addr::new(
                127,
                first.saturating_add((s / 256) as u8),
                (s % 256) as u8,
                1 + (h % 250) as u8,
            ));
        }
    }
    out
}

/// Samples a process's RSS every 100 ms until stopped; returns the peak (MiB).
pub fn rss_sampler(pid: u32) -> (Arc<AtomicBool>, JoinHandle<f64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let mut peak: f64 = 0.0;
        while !s.load(Ordering::Relaxed) {
            if let Some(r) = procs::rss_mib(pid) {
                peak = peak.max(r);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    });
    (stop, task)
}

/// Part `connections`: target 9b.
pub async fn run_connections_part(ctx: &Ctx, rec: &mut Recorder) -> anyhow::Result<()> {
    let big = ctx.sizes.load_connections;
    let small = 10.min(big);
    let records = ctx.sizes.load_records;
    let authors = 256.min(records);
    let mut good_small = Vec::new();
    let mut good_big = Vec::new();
    let mut rss_small = Vec::new();
    let mut rss_big = Vec::new();
    let mut held_big = Vec::new();
    for r in 0..ctx.repeat {
        let mut limits = procs::raised_limits();
        limits.extend(procs::connection_limits(big as i64));
        let net = start_palisade(ctx, 1, limits, toml::Table::new(), Watch::Counts, Topology::Full).await?;
        let pid = net.pids().first().copied().context("node pid")?;
        // Payloads for both phases: warm-up, phase 1, phase 2.
        let all = net_payloads(300 + r as u64, authors, 2 * records);
        let payloads = Arc::new(all);
        let publisher = Publisher::start(&net, payloads.clone()).await?;
        let held = HeldConnections::new();
        // One connection per source IP, 100 IPs per /24.
        let srcs = sources(10, big.div_ceil(100), 100);
        let result = async {
            let (ok, _) = held.connect(&net.entry, &srcs, small.saturating_sub(1), 16, 1000 + r as u64).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            closed_loop(&net, &publisher, 0, authors, authors, 0).await?;
            let secs = closed_loop(&net, &publisher, authors, authors + records, 512, authors as u64).await?;
            let g1 = records as f64 / secs;
            let r1 = procs::rss_mib(pid).unwrap_or(0.0);
            let (ok2, failed2) = held
                .connect(
                    &net.entry,
                    &srcs[small.min(srcs.len())..],
                    big.saturating_sub(small),
                    32,
                    2000 + r as u64,
                )
                .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let open = held.open() + 1;
            let (stop, sampler) = rss_sampler(pid);
            let secs = closed_loop(
                &net,
                &publisher,
                authors + records,
                authors + 2 * records,
                512,
                (authors + records) as u64,
            )
            .await?;
            stop.store(true, Ordering::Relaxed);
            let r2 = sampler.await.unwrap_or(0.0);
            tracing::info!(ok, ok2, failed2, open, "connection load");
            anyhow::Ok((g1, r1, records as f64 / secs, r2, open as f64))
        }
        .await;
        publisher.stop().await;
        held.close();
        net.stop().await;
        let (g1, r1, g2, r2, open) = result?;
        good_small.push(g1);
        rss_small.push(r1);
        good_big.push(g2);
        rss_big.push(r2);
        held_big.push(open);
    }
    rec.figure("conn_small_goodput_rps", "records/s", good_small, &format!("one palisade process, {small} connections (publisher + idle load-client connections), records/s stored, ≤ 512 in flight"));
    rec.figure("conn_small_rss_mib", "MiB", rss_small, "RSS after the small-connection phase");
    rec.figure("conn_big_goodput_rps", "records/s", good_big, &format!("same node holding {big} connections from 127.x.y.z (one per IP, 100 per /24; each completed noise + yamux; they speak no protocol), limits raised"));
    rec.figure("conn_big_rss_mib", "MiB", rss_big, "peak RSS during the many-connection phase");
    rec.figure(
        "conn_big_open",
        "connections",
        held_big,
        "connections open at the start of the many-connection phase",
    );
    let note = if big < 1000 { format!("scaled down to {big} connections") } else { String::new() };
    rec.ratio(
        "9b",
        "goodput with 1000 vs 10 connections",
        "conn_big_goodput_rps",
        "conn_small_goodput_rps",
        ">=",
        0.8,
        &note,
    );
    let _ = median;
    Ok(())
}
