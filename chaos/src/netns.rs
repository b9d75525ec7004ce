//! Network-namespace mode (root only): one namespace per node, veth pairs into bridges in a
//! hub namespace. A partition moves the cut-off nodes' links to a second bridge; heal moves
//! them back. The harness itself reaches every node through a host-side veth on the main
//! bridge. Everything is created by [`Topology::create`] and removed when the topology is
//! dropped (also on failure and Ctrl-C, which the binary turns into a clean exit).

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context};

const HUB: &str = "palisade-chaos-hub";
const MAIN_BRIDGE: &str = "pcbr0";
const SIDE_BRIDGE: &str = "pcbr1";
const HOST_VETH: &str = "pchost";

/// Node `i`'s address: 10.77.0.(10 + i).
pub fn node_ips(n: usize) -> Vec<Ipv4Addr> {
    (0..n).map(|i| Ipv4Addr::new(10, 77, 0, 10 + i as u8)).collect()
}

fn ns(i: usize) -> String {
    format!("palisade-chaos-{i}")
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("running `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Whether this process can create namespaces (root with iproute2).
pub fn available() -> bool {
    nix::unistd::geteuid().is_root()
        && Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success())
}

/// The namespaces and links of one run.
#[derive(Debug)]
pub struct Topology {
    nodes: usize,
}

impl Topology {
    /// Builds the topology for `n` nodes. Leftovers of a crashed earlier run are removed first.
    pub fn create(n: usize) -> anyhow::Result<Topology> {
        if !available() {
            bail!("netns mode needs root and iproute2; run as root or use network = \"loopback\"");
        }
        cleanup(64);
        let t = Topology { nodes: n };
        ip(&["netns", "add", HUB])?;
        ip(&["-n", HUB, "link", "set", "lo", "up"])?;
        for br in [MAIN_BRIDGE, SIDE_BRIDGE] {
            ip(&["-n", HUB, "link", "add", br, "type", "bridge"])?;
            ip(&["-n", HUB, "link", "set", br, "up"])?;
        }
        // The harness's own link into the main bridge.
        ip(&["link", "add", HOST_VETH, "type", "veth", "peer", "name", "pchost-b"])?;
        ip(&["link", "set", "pchost-b", "netns", HUB])?;
        ip(&["-n", HUB, "link", "set", "pchost-b", "master", MAIN_BRIDGE, "up"])?;
        ip(&["addr", "add", "10.77.0.2/24", "dev", HOST_VETH])?;
        ip(&["link", "set", HOST_VETH, "up"])?;
        for (i, addr) in node_ips(n).into_iter().enumerate() {
            let name = ns(i);
            let (a, b) = (format!("pcv{i}a"), format!("pcv{i}b"));
            ip(&["netns", "add", &name])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
            ip(&["link", "set", &a, "netns", &name])?;
            ip(&["link", "set", &b, "netns", HUB])?;
            ip(&["-n", &name, "addr", "add", &format!("{addr}/24"), "dev", &a])?;
            ip(&["-n", &name, "link", "set", &a, "up"])?;
            ip(&["-n", HUB, "link", "set", &b, "master", MAIN_BRIDGE, "up"])?;
        }
        Ok(t)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        cleanup(self.nodes);
    }
}

/// Removes every namespace and link this harness may have created.
pub fn cleanup(max_nodes: usize) {
    let _ = Command::new("ip").args(["link", "del", HOST_VETH]).output();
    for i in 0..max_nodes {
        let _ = Command::new("ip").args(["netns", "del", &ns(i)]).output();
    }
    let _ = Command::new("ip").args(["netns", "del", HUB]).output();
}

/// Moves the links of every group but the largest onto the side bridge (cut), or back (heal).
/// With two groups that is a clean partition; the harness stays on the main bridge, so it
/// keeps reaching the majority (the admin API is a Unix socket and works regardless).
pub fn set_partition(groups: &[Vec<usize>], cut: bool) -> anyhow::Result<()> {
    let largest = groups.iter().enumerate().max_by_key(|(_, g)| g.len()).map(|(i, _)| i).unwrap_or(0);
    for (gi, g) in groups.iter().enumerate() {
        if gi == largest {
            continue;
        }
        for i in g {
            let bridge = if cut { SIDE_BRIDGE } else { MAIN_BRIDGE };
            ip(&["-n", HUB, "link", "set", &format!("pcv{i}b"), "master", bridge])?;
        }
    }
    Ok(())
}

/// A packet-level fault inside a node's namespace.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// Drop `percent` % of packets arriving at `node` (iptables statistic match).
    Loss {
        /// Node index.
        node: usize,
        /// Percentage.
        percent: u32,
    },
    /// Drop packets arriving at `node` from `from` (one-way partition).
    Drop {
        /// Node index.
        node: usize,
        /// Source address dropped.
        from: Ipv4Addr,
    },
    /// Cap `node`'s egress with a token-bucket filter.
    Rate {
        /// Node index.
        node: usize,
        /// Bytes per second.
        bytes_per_sec: u64,
    },
}

fn ns_cmd(ns: &str, program: &str, args: &[String]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .output()
        .with_context(|| format!("running {program} in {ns}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("not found") || err.contains("No such file") {
            bail!("{program} is not installed: apt-get install -y iptables iproute2");
        }
        bail!("{program} {}: {}", args.join(" "), err.trim());
    }
    Ok(())
}

/// Adds (`on`) or removes a rule.
pub fn apply(rule: &Rule, on: bool) -> anyhow::Result<()> {
    let s = |v: &str| v.to_string();
    match *rule {
        Rule::Loss { node, percent } => {
            let p = format!("{:.2}", f64::from(percent.min(100)) / 100.0);
            let op = if on { "-A" } else { "-D" };
            ns_cmd(
                &ns(node),
                "iptables",
                &[
                    s(op),
                    s("INPUT"),
                    s("-m"),
                    s("statistic"),
                    s("--mode"),
                    s("random"),
                    s("--probability"),
                    p,
                    s("-j"),
                    s("DROP"),
                ],
            )
        }
        Rule::Drop { node, from } => {
            let op = if on { "-A" } else { "-D" };
            ns_cmd(&ns(node), "iptables", &[s(op), s("INPUT"), s("-s"), from.to_string(), s("-j"), s("DROP")])
        }
        Rule::Rate { node, bytes_per_sec } => {
            let dev = format!("pcv{node}a");
            if on {
                let rate = format!("{}bit", bytes_per_sec.saturating_mul(8).max(8000));
                ns_cmd(
                    &ns(node),
                    "tc",
                    &[
                        s("qdisc"),
                        s("add"),
                        s("dev"),
                        dev,
                        s("root"),
                        s("tbf"),
                        s("rate"),
                        rate,
                        s("burst"),
                        s("32kbit"),
                        s("latency"),
                        s("400ms"),
                    ],
                )
            } else {
                ns_cmd(&ns(node), "tc", &[s("qdisc"), s("del"), s("dev"), dev, s("root")])
            }
        }
    }
}
