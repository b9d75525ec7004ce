//! A cluster of real `palisade` processes: data dirs, configs, start, SIGKILL, SIGSTOP,
//! restart, and resource readings from /proc.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::scenario::NetworkMode;

/// Default P2P port every node listens on (each node has its own IP, so one port serves all).
pub const DEFAULT_P2P_PORT: u16 = 7400;
/// Default metrics port.
pub const DEFAULT_METRICS_PORT: u16 = 9740;
/// Default last byte of node 0's loopback address (node i is 127.0.0.(base + i)).
pub const DEFAULT_BASE_HOST: u8 = 10;

/// Where the cluster's nodes listen: `run --p2p-port`, `--metrics-port`, `--base-host`
/// (set once, before the run; the defaults otherwise).
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// P2P port of every node.
    pub p2p: u16,
    /// Metrics port of every node.
    pub metrics: u16,
    /// Node i listens on 127.0.0.(base_host + i) in loopback mode.
    pub base_host: u8,
}

static PORTS: std::sync::OnceLock<Ports> = std::sync::OnceLock::new();

/// Sets the cluster's addresses for this process (the first call wins).
pub fn set_ports(p: Ports) {
    let _ = PORTS.set(p);
}

fn ports() -> Ports {
    *PORTS.get_or_init(|| Ports {
        p2p: DEFAULT_P2P_PORT,
        metrics: DEFAULT_METRICS_PORT,
        base_host: DEFAULT_BASE_HOST,
    })
}

/// The P2P port of every node.
pub fn p2p_port() -> u16 {
    ports().p2p
}

/// The metrics port of every node.
pub fn metrics_port() -> u16 {
    ports().metrics
}

/// One node process.
#[derive(Debug)]
pub struct Node {
    /// Position in the cluster.
    pub index: usize,
    /// Its IP (127.0.0.x in loopback mode, 10.77.0.x in netns mode).
    pub ip: Ipv4Addr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// libp2p peer id.
    pub peer_id: String,
    /// Author key (hex).
    pub author: String,
    /// Network namespace, in netns mode.
    pub netns: Option<String>,
    child: Option<Child>,
    paused: bool,
    /// Times the process was started.
    pub starts: u32,
}

impl Node {
    /// Admin socket path.
    pub fn socket(&self) -> PathBuf {
        self.data_dir.join("admin.sock")
    }

    /// The node's log file (stdout and stderr of every start, appended).
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("node.log")
    }

    /// `/ip4/<ip>/tcp/7400/p2p/<peer id>`.
    pub fn multiaddr(&self) -> String {
        format!("/ip4/{}/tcp/{}/p2p/{}", self.ip, p2p_port(), self.peer_id)
    }

    /// Its Prometheus endpoint (`http://<this>/metrics`).
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(std::net::IpAddr::V4(self.ip), metrics_port())
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process runs (and is not paused).
    pub fn is_up(&self) -> bool {
        self.child.is_some() && !self.paused
    }

    /// Whether the process exists (maybe paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn signal(&self, sig: Signal) -> anyhow::Result<()> {
        let pid = self.pid().context("node is not running")?;
        kill(Pid::from_raw(pid as i32), sig).with_context(|| format!("sending {sig} to node {}", self.index))
    }

    /// Resident memory (KiB) and open fds, from /proc.
    pub fn resources(&self) -> Option<(u64, u64)> {
        let pid = self.pid()?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
        let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
        Some((rss_kib, fds))
    }
}

/// All nodes of a run.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes.
    pub nodes: Vec<Node>,
    binary: PathBuf,
    mode: NetworkMode,
}

/// Node IPs: 127.0.0.(base + i) on loopback (base 10 unless `--base-host`).
pub fn loopback_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, ports().base_host.saturating_add(i as u8))
}

/// What every node of a scenario is configured with beyond the harness's defaults.
#[derive(Debug, Clone, Default)]
pub struct NodeSettings {
    /// Extra `[limits]`.
    pub limits: toml::Table,
    /// Extra `[store]`.
    pub store: toml::Table,
    /// Extra `[network]` (the harness's own keys win).
    pub network: toml::Table,
    /// `store.retain_authors` names every node's author.
    pub protect_honest_authors: bool,
    /// A tmpfs of this many MiB per data directory (0: none).
    pub data_tmpfs_mib: u64,
    /// Each node names this many other nodes, drawn at random with `topology_seed`, as
    /// bootstrap peers (Kademlia finds the rest); `None`: every other node.
    pub bootstrap_peers: Option<usize>,
    /// Seed of the bootstrap draw.
    pub topology_seed: u64,
}

/// The bootstrap peers of each of `n` nodes: every other node, or `k` drawn at random.
pub fn bootstrap_choice(n: usize, k: Option<usize>, seed: u64) -> Vec<Vec<usize>> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let others: Vec<usize> = (0..n).filter(|j| *j != i).collect();
            match k {
                Some(k) if k < others.len() => {
                    let mut chosen: Vec<usize> = others.choose_multiple(&mut rng, k).copied().collect();
                    chosen.sort_unstable();
                    chosen
                }
                _ => others,
            }
        })
        .collect()
}

/// Mounts a tmpfs of `mib` MiB at `dir` (root only).
fn mount_tmpfs(dir: &Path, mib: u64) -> anyhow::Result<()> {
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700"), "tmpfs"])
        .arg(dir)
        .output()
        .context("running mount")?;
    if !out.status.success() {
        bail!(
            "mounting a {mib} MiB tmpfs at {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Unmounts the tmpfs data directories under `root` (a lazy unmount: a node still exiting
/// does not keep it).
pub fn unmount_tmpfs(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let _ = Command::new("umount").arg("-l").arg(e.path()).output();
    }
}

impl Cluster {
    /// Creates data dirs, keys and config files for `n` nodes under `root`.
    pub fn prepare(
        n: usize,
        binary: &Path,
        root: &Path,
        mode: NetworkMode,
        ips: &[Ipv4Addr],
        settings: &NodeSettings,
        links: &[(usize, usize, std::net::SocketAddr)],
    ) -> anyhow::Result<Cluster> {
        let limits = &settings.limits;
        if !binary.exists() {
            bail!(
                "palisade binary not found at {}; build it with `cargo build --release` or pass --binary",
                binary.display()
            );
        }
        let mut nodes = Vec::new();
        for i in 0..n {
            let data_dir = root.join(format!("node-{i}"));
            fs::create_dir_all(&data_dir)?;
            if settings.data_tmpfs_mib > 0 {
                mount_tmpfs(&data_dir, settings.data_tmpfs_mib)?;
            }
            let out = Command::new(binary).arg("--data-dir").arg(&data_dir).arg("init").output()?;
            if !out.status.success() {
                bail!("palisade init failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .with_context(|| format!("`palisade init` did not print {name}"))
            };
            let peer_id = field("peer_id:")?;
            let author = field("author:")?;
            let ip = *ips.get(i).context("not enough IPs")?;
            let netns = (mode == NetworkMode::Netns).then(|| format!("palisade-chaos-{i}"));
            nodes.push(Node {
                index: i,
                ip,
                data_dir,
                peer_id,
                author,
                netns,
                child: None,
                paused: false,
                starts: 0,
            });
        }
        // Configs name every other node (or `bootstrap_peers` random ones) as bootstrap peer;
        // a proxied pair (from, to, proxy) makes `from` dial the proxy instead, and `to` not
        // dial `from` at all.
        let choice = bootstrap_choice(n, settings.bootstrap_peers, settings.topology_seed);
        for node in &nodes {
            let chosen = choice.get(node.index).cloned().unwrap_or_default();
            let bootstrap: Vec<String> = nodes
                .iter()
                .filter(|o| o.index != node.index && chosen.contains(&o.index))
                .filter(|o| !links.iter().any(|(from, to, _)| *to == node.index && *from == o.index))
                .map(|o| match links.iter().find(|(from, to, _)| *from == node.index && *to == o.index) {
                    Some((_, _, proxy)) => {
                        format!("/ip4/{}/tcp/{}/p2p/{}", proxy.ip(), proxy.port(), o.peer_id)
                    }
                    None => o.multiaddr(),
                })
                .collect();
            let mut config = toml::Table::new();
            let mut network = settings.network.clone();
            network.insert(
                "listen".into(),
                toml::Value::Array(vec![
                    format!("/ip4/{}/tcp/{}", node.ip, p2p_port()).into(),
                    format!("/ip4/{}/udp/{}/quic-v1", node.ip, p2p_port()).into(),
                ]),
            );
            network.insert(
                "bootstrap".into(),
                toml::Value::Array(bootstrap.into_iter().map(Into::into).collect()),
            );
            network.insert("sync_interval_secs".into(), 3.into());
            config.insert("network".into(), network.into());
            config.insert("limits".into(), limits.clone().into());
            let mut store = settings.store.clone();
            if settings.protect_honest_authors {
                let authors = nodes.iter().map(|o| toml::Value::from(o.author.clone())).collect();
                store.insert("retain_authors".into(), toml::Value::Array(authors));
            }
            if !store.is_empty() {
                config.insert("store".into(), store.into());
            }
            let mut metrics = toml::Table::new();
            metrics.insert("listen".into(), format!("{}:{}", node.ip, metrics_port()).into());
            config.insert("metrics".into(), metrics.into());
            let mut log = toml::Table::new();
            log.insert("format".into(), "json".into());
            // PALISADE_CHAOS_NODE_LOG sets the nodes' log filter (e.g. `debug` for post-mortems).
            let filter = std::env::var("PALISADE_CHAOS_NODE_LOG").unwrap_or_else(|_| "info".into());
            log.insert("filter".into(), filter.into());
            config.insert("log".into(), log.into());
            fs::write(node.data_dir.join("palisade.toml"), toml::to_string(&config)?)?;
        }
        Ok(Cluster { nodes, binary: binary.to_path_buf(), mode })
    }

    /// The palisade binary the nodes run.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Starts node `i` (its log is appended to `node.log`).
    pub fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let binary = self.binary.clone();
        let node = self.nodes.get_mut(i).context("no such node")?;
        if node.child.is_some() {
            return Ok(());
        }
        let log = fs::OpenOptions::new().create(true).append(true).open(node.log_path())?;
        let mut cmd = match &node.netns {
            Some(ns) if self.mode == NetworkMode::Netns => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&binary);
                c
            }
            _ => Command::new(&binary),
        };
        cmd.arg("--data-dir").arg(&node.data_dir).arg("run");
        cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
        cmd.stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log)).stdin(Stdio::null());
        let child = cmd.spawn().with_context(|| format!("starting node {i}"))?;
        node.child = Some(child);
        node.paused = false;
        node.starts += 1;
        Ok(())
    }

    /// SIGKILL, and reap.
    pub fn crash(&mut self, i: usize) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(i).context("no such node")?;
        if let Some(mut child) = node.child.take() {
            // A paused process dies on SIGKILL too.
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        node.paused = false;
        Ok(())
    }

    /// SIGSTOP.
    pub fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(i).context("no such node")?;
        node.signal(Signal::SIGSTOP)?;
        node.paused = true;
        Ok(())
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(i).context("no such node")?;
        node.signal(Signal::SIGCONT)?;
        node.paused = false;
        Ok(())
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns the exit code.
    pub fn stop(&mut self, i: usize, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let node = self.nodes.get_mut(i).context("no such node")?;
        let Some(mut child) = node.child.take() else { return Ok(None) };
        if node.paused {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
            node.paused = false;
        }
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops every node (used on exit and on Ctrl-C).
    pub fn stop_all(&mut self) -> Vec<(usize, Option<i32>)> {
        (0..self.nodes.len()).map(|i| (i, self.stop(i, Duration::from_secs(20)).unwrap_or(None))).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

#[cfg(test)]
mod topology_tests {
    use super::bootstrap_choice;

    #[test]
    fn a_random_topology_names_k_other_nodes_and_replays_with_its_seed() {
        let choice = bootstrap_choice(100, Some(4), 7);
        for (i, peers) in choice.iter().enumerate() {
            assert_eq!(peers.len(), 4);
            assert!(!peers.contains(&i), "node {i} bootstraps to itself");
            assert!(peers.windows(2).all(|w| w[0] < w[1]), "distinct and sorted");
        }
        assert_eq!(choice, bootstrap_choice(100, Some(4), 7));
        assert_ne!(choice, bootstrap_choice(100, Some(4), 8));
        assert_eq!(bootstrap_choice(3, None, 1), vec![vec![1, 2], vec![0, 2], vec![0, 1]]);
    }
}
