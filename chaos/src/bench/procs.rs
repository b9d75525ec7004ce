//! `palisade` processes for the benchmark: data dir, config, start, stop, readiness, and
//! readings from /proc. Kept apart from the chaos cluster so a scenario change never moves
//! a benchmark figure.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use palisade_api::ApiClient;

/// TCP port every benchmark node listens on (each has its own loopback IP).
pub const PORT: u16 = 7400;
/// Metrics port of a bench node (on its own IP).
pub const METRICS_PORT: u16 = 9740;

/// Loopback IP of benchmark node `i` (127.0.2.x: apart from the chaos scenarios' 127.0.0.x).
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 2, 10 + (i % 200) as u8)
}

/// One `palisade` process.
#[derive(Debug)]
pub struct NodeProc {
    /// Data directory.
    pub dir: PathBuf,
    /// Its IP.
    pub ip: Ipv4Addr,
    /// libp2p peer id.
    pub peer_id: String,
    binary: PathBuf,
    child: Option<Child>,
}

impl NodeProc {
    /// `palisade init` in `dir`.
    pub fn init(binary: &Path, dir: &Path, ip: Ipv4Addr) -> anyhow::Result<NodeProc> {
        if !binary.exists() {
            bail!(
                "palisade binary not found at {}; build it with `cargo build --release` or pass --binary",
                binary.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        let out = Command::new(binary).arg("--data-dir").arg(dir).arg("init").output()?;
        if !out.status.success() {
            bail!("palisade init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let peer_id = text
            .lines()
            .find_map(|l| l.strip_prefix("peer_id:"))
            .map(|v| v.trim().to_string())
            .context("`palisade init` did not print peer_id")?;
        Ok(NodeProc { dir: dir.to_path_buf(), ip, peer_id, binary: binary.to_path_buf(), child: None })
    }

    /// `/ip4/<ip>/tcp/7400/p2p/<id>`.
    pub fn multiaddr(&self) -> String {
        format!("/ip4/{}/tcp/{PORT}/p2p/{}", self.ip, self.peer_id)
    }

    /// The store directory.
    pub fn db_dir(&self) -> PathBuf {
        self.dir.join("db")
    }

    /// Where the node serves `/metrics` (its own IP, so nodes never share a port).
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.ip.into(), METRICS_PORT)
    }

    /// Writes `palisade.toml`: TCP on the node's IP, the given bootstrap peers, `[limits]`
    /// overrides, extra `[network]` keys, metrics on [`metrics_addr`](Self::metrics_addr),
    /// warnings-only JSON log.
    pub fn configure(
        &self,
        bootstrap: &[String],
        limits: toml::Table,
        network: toml::Table,
    ) -> anyhow::Result<()> {
        let mut net = network;
        net.insert("listen".into(), toml::Value::Array(vec![format!("/ip4/{}/tcp/{PORT}", self.ip).into()]));
        net.insert(
            "bootstrap".into(),
            toml::Value::Array(bootstrap.iter().map(|b| b.clone().into()).collect()),
        );
        let mut config = toml::Table::new();
        config.insert("network".into(), net.into());
        config.insert("limits".into(), limits.into());
        let mut metrics = toml::Table::new();
        metrics.insert("listen".into(), self.metrics_addr().to_string().into());
        config.insert("metrics".into(), metrics.into());
        let mut log = toml::Table::new();
        log.insert("format".into(), "json".into());
        log.insert("filter".into(), "warn".into());
        config.insert("log".into(), log.into());
        std::fs::write(self.dir.join("palisade.toml"), toml::to_string(&config)?)?;
        Ok(())
    }

    /// Starts the process (log appended to `node.log`).
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("node.log"))?;
        let child = Command::new(&self.binary)
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("run")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .stdin(Stdio::null())
            .spawn()
            .context("starting palisade")?;
        self.child = Some(child);
        Ok(())
    }

    /// An API client on the node's socket.
    pub fn api(&self) -> ApiClient {
        ApiClient::unix(self.dir.join("admin.sock")).with_timeout(Duration::from_secs(20))
    }

    /// Waits until `GET /v1/ready` answers 200; returns how long that took.
    pub async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let api = self.api();
        loop {
            if api.ready().await.is_ok() {
                return Ok(started.elapsed());
            }
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    self.child = None;
                    bail!("palisade exited while starting ({status}); see {}/node.log", self.dir.display());
                }
            }
            if started.elapsed() > within {
                bail!("palisade in {} not ready within {within:?}", self.dir.display());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stored records (all kinds).
    pub async fn record_count(&self) -> anyhow::Result<u64> {
        Ok(self.api().node().await?.records.total)
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Resident memory (MiB).
    pub fn rss_mib(&self) -> Option<f64> {
        rss_mib(self.pid()?)
    }

    /// SIGTERM and wait (bounded) for a clean exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// VmRSS of a process (MiB).
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(kib / 1024.0)
}

/// utime + stime of a process (s).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    Some((utime + stime) / hz)
}

/// Guard limits for throughput tests: per-peer, per-author and bandwidth caps out of the way
/// (they bound what one peer may send, which is not what these tests measure), connection
/// caps as given.
pub fn raised_limits() -> toml::Table {
    let mut t = toml::Table::new();
    for (k, v) in [
        ("author_records_per_sec", 1_000_000i64),
        ("author_burst_records", 1_000_000),
        ("peer_records_per_sec", 1_000_000),
        ("peer_burst_records", 1_000_000),
        ("peer_messages_per_sec", 1_000_000),
        ("peer_burst_messages", 1_000_000),
        ("peer_bytes_per_sec", 1 << 30),
        ("peer_burst_bytes", 1 << 30),
        ("peer_cost_units_per_sec", 100_000_000),
        ("peer_burst_cost_units", 100_000_000),
        ("conn_inbound_bytes_per_sec", 1 << 30),
        ("conn_outbound_bytes_per_sec", 1 << 30),
        ("peer_inbound_bytes_per_sec", 1 << 30),
        ("peer_outbound_bytes_per_sec", 1 << 30),
        ("global_inbound_bytes_per_sec", 1 << 31),
        ("global_outbound_bytes_per_sec", 1 << 31),
    ] {
        t.insert(k.into(), v.into());
    }
    t
}

/// Connection caps for `n` inbound connections from many 127.x addresses.
pub fn connection_limits(n: i64) -> toml::Table {
    let mut t = toml::Table::new();
    for (k, v) in [
        ("max_established_total", n + 64),
        ("max_established_incoming", n + 32),
        ("max_pending_incoming", 256),
        ("max_connections_per_ip", 64),
        ("max_connections_per_subnet", 512),
        ("ip_new_connections_per_sec", 1000),
        ("ip_new_connections_burst", 1000),
        ("subnet_new_connections_per_sec", 10_000),
        ("subnet_new_connections_burst", 10_000),
    ] {
        t.insert(k.into(), v.into());
    }
    t
}
