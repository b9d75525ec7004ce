//! Bench part `loop` (issue 14): what a ban storm costs the node's event loop.
//!
//! One `palisade run` process takes a steady closed-loop stream of honest records from the
//! publisher, with `storm_peers` fresh identities connected to it, each from a loopback
//! address of its own (connected before the measurement, so the noise handshakes of a
//! thousand connections, CPU work on the node's runtime threads, stay out of it; not
//! subscribed to any topic, so the node's gossipsub does not forward the honest stream to
//! them, which would cost the loop more than anything else in both windows). The loop's
//! wake-up times come from its own histogram (`palisade_net_loop_iteration_seconds`, scraped
//! before and after each window, p99 interpolated within buckets as Prometheus's
//! `histogram_quantile` does). The calm window is the honest stream alone; in the storm window
//! every identity announces a listen address (an identify push: a peer-book write on the node)
//! and sends one malformed gossip message (with `limits.ban_score_points = -10`, one malformed
//! message is a ban: a ban-table write and a disconnect). So the storm puts 1,000 bans and
//! 1,000 peer-book updates through the loop in about a second, as a Sybil swarm would.
//! Target 14: storm p99 / calm p99 ≤ 2 (nothing on the loop waits for the disk).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{gossipsub, identify, identity, Multiaddr, PeerId, Swarm};
use palisade_net::topics::TopicKind;

use super::net::{self, Topology, Watch};
use super::{procs, Ctx, Recorder};
use crate::nodeapi;

/// The loop's wake-up histogram.
const LOOP_HISTOGRAM: &str = "palisade_net_loop_iteration_seconds";
/// Storm identities connecting at once.
const STORM_CONCURRENCY: usize = 64;
/// How long one identity may take to connect, be heard and be banned.
const STORM_PEER_DEADLINE: Duration = Duration::from_secs(20);

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Stormer {
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
}

/// What the storm did.
#[derive(Debug, Default)]
struct StormStats {
    connected: AtomicU64,
    /// Connected and heard the node's subscriptions: waiting for the storm.
    ready: AtomicU64,
    sent: AtomicU64,
    dropped_by_node: AtomicU64,
}

/// How long the storm may go on after the honest records of its window are in.
const STORM_DRAIN: Duration = Duration::from_secs(10);
/// How long the storm identities may take to connect before the measurement starts.
const STORM_CONNECT_WITHIN: Duration = Duration::from_secs(90);

/// Runs the part: figures `loop_calm_p99_ms`, `loop_storm_p99_ms`, `loop_storm_bans`, target 14.
pub async fn run_loop_part(ctx: &Ctx, rec: &mut Recorder) -> anyhow::Result<()> {
    let peers = ctx.sizes.storm_peers;
    let records = ctx.sizes.load_records;
    let authors = 256.min(records);
    let (mut calm, mut storm, mut bans, mut banned_share) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..ctx.repeat {
        let mut limits = procs::raised_limits();
        limits.extend(procs::connection_limits(peers as i64));
        // One malformed message is a ban, so every storm identity is one ban.
        limits.insert("ban_score_points".into(), (-10i64).into());
        limits.insert("disconnect_score_points".into(), (-10i64).into());
        let testnet =
            net::start_palisade(ctx, 1, limits, toml::Table::new(), Watch::Counts, Topology::Full).await?;
        let metrics = testnet.nodes.first().context("node")?.metrics_addr();
        let payloads = Arc::new(net::net_payloads(700 + r as u64, authors, 2 * records));
        let publisher = net::Publisher::start(&testnet, payloads).await?;
        let result = async {
            net::closed_loop(&testnet, &publisher, 0, authors, authors, 0).await?;
            let stats = Arc::new(StormStats::default());
            let (go, go_rx) = tokio::sync::watch::channel(false);
            let sources: Vec<Ipv4Addr> =
                net::sources(20, peers.div_ceil(100), 100).into_iter().take(peers).collect();
            let mut storm = spawn_storm(&testnet, sources, 700 + r as u64, &stats, go_rx);
            wait_ready(&stats, peers).await?;
            let before = scrape(metrics).await?;
            net::closed_loop(&testnet, &publisher, authors, authors + records, 512, authors as u64).await?;
            let middle = scrape(metrics).await?;
            let _ = go.send(true);
            let base = (authors + records) as u64;
            net::closed_loop(&testnet, &publisher, authors + records, authors + 2 * records, 512, base)
                .await?;
            // The storm is over when every identity was dropped; one whose message the node
            // never got (a few in a thousand) is given up after STORM_DRAIN.
            let drain = futures::future::join_all(storm.iter_mut());
            if tokio::time::timeout(STORM_DRAIN, drain).await.is_err() {
                storm.iter().for_each(|t| t.abort());
            }
            let after = scrape(metrics).await?;
            let calm_p99 = window_p99(&before, &middle)?;
            let storm_p99 = window_p99(&middle, &after)?;
            let banned =
                counter_sum(&after, "palisade_guard_bans") - counter_sum(&middle, "palisade_guard_bans");
            tracing::info!(
                calm_p99,
                storm_p99,
                banned,
                connected = stats.connected.load(Ordering::Relaxed),
                ready = stats.ready.load(Ordering::Relaxed),
                sent = stats.sent.load(Ordering::Relaxed),
                dropped = stats.dropped_by_node.load(Ordering::Relaxed),
                "ban storm"
            );
            anyhow::Ok((calm_p99, storm_p99, banned))
        }
        .await;
        publisher.stop().await;
        testnet.stop().await;
        let (c, s, b) = result?;
        calm.push(c * 1000.0);
        storm.push(s * 1000.0);
        bans.push(b);
        banned_share.push(b / peers.max(1) as f64);
    }
    rec.figure("loop_calm_p99_ms", "ms", calm, &format!("event-loop wake-up p99 (palisade_net_loop_iteration_seconds) of one node taking a closed loop of {records} honest records, {peers} idle identities connected"));
    rec.figure("loop_storm_p99_ms", "ms", storm, &format!("the same, during the next {records} records while {peers} connected fresh identities (one 127.x address each, connected before the calm window) each announce a listen address (peer-book write) and get banned for one malformed message (ban write)"));
    rec.figure("loop_storm_bans", "bans", bans, "score bans the node made during the storm window");
    rec.figure(
        "loop_storm_banned_share",
        "ratio",
        banned_share,
        "storm identities banned / storm identities",
    );
    let note = if peers < 1000 { format!("scaled down to {peers} identities") } else { String::new() };
    rec.ratio("14", "loop p99, ban storm vs calm", "loop_storm_p99_ms", "loop_calm_p99_ms", "<=", 2.0, &note);
    Ok(())
}

/// Spawns one task per storm identity; each connects (at most [`STORM_CONCURRENCY`]
/// handshakes at once), waits for `go`, then storms (see the module docs).
fn spawn_storm(
    testnet: &net::TestNet,
    sources: Vec<Ipv4Addr>,
    seed: u64,
    stats: &Arc<StormStats>,
    go: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let connecting = Arc::new(tokio::sync::Semaphore::new(STORM_CONCURRENCY));
    let mut tasks = Vec::with_capacity(sources.len());
    for (i, source) in sources.into_iter().enumerate() {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        bytes[8..16].copy_from_slice(&(i as u64).to_le_bytes());
        bytes[16] = 0x5c;
        let Ok(key) = identity::Keypair::ed25519_from_bytes(bytes) else { continue };
        let identity = StormIdentity {
            key,
            source,
            target: testnet.entry.clone(),
            peer: testnet.entry_peer,
            stats: stats.clone(),
        };
        let (connecting, go) = (connecting.clone(), go.clone());
        tasks.push(tokio::spawn(async move {
            let deadline = STORM_CONNECT_WITHIN + STORM_PEER_DEADLINE;
            let _ = tokio::time::timeout(deadline, identity.run(connecting, go)).await;
        }));
    }
    tasks
}

/// Waits until every storm identity is connected and has heard the node's subscriptions.
async fn wait_ready(stats: &StormStats, peers: usize) -> anyhow::Result<()> {
    let until = tokio::time::Instant::now() + STORM_CONNECT_WITHIN;
    while (stats.ready.load(Ordering::Relaxed) as usize) < peers {
        anyhow::ensure!(
            tokio::time::Instant::now() < until,
            "only {} of {peers} storm identities connected within {STORM_CONNECT_WITHIN:?}",
            stats.ready.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// One storm identity.
struct StormIdentity {
    key: identity::Keypair,
    source: Ipv4Addr,
    target: Multiaddr,
    peer: PeerId,
    stats: Arc<StormStats>,
}

impl StormIdentity {
    fn swarm(&self) -> anyhow::Result<Swarm<Stormer>> {
        let config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            .message_id_fn(|m: &gossipsub::Message| palisade_net::gossip::message_id(&m.data))
            .build()
            .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
        // Not subscribed: the node does not forward its records to a thousand idle Sybils
        // (that forwarding, not the ban path, would dominate both windows); publishing to a
        // topic one is not subscribed to is gossipsub's fanout.
        let gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)
            .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
        let identify = identify::Behaviour::new(identify::Config::new(
            palisade_net::IDENTIFY_PROTOCOL.to_string(),
            self.key.public(),
        ));
        let transport = super::baseline::transport(&self.key, Some(self.source))?;
        let cfg = libp2p::swarm::Config::with_tokio_executor()
            .with_idle_connection_timeout(Duration::from_secs(300));
        Ok(Swarm::new(transport, Stormer { gossipsub, identify }, self.key.public().to_peer_id(), cfg))
    }

    /// Connects (holding a `connecting` permit until the node's subscriptions are heard),
    /// waits for `go`, then announces a listen address by an identify push and sends one
    /// malformed message; returns when the node drops the connection.
    async fn run(
        self,
        connecting: Arc<tokio::sync::Semaphore>,
        mut go: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut permit = Some(connecting.acquire_owned().await?);
        let mut swarm = self.swarm()?;
        swarm.dial(self.target.clone())?;
        let topic = TopicKind::Attestations.topic();
        let mut stormed = false;
        loop {
            tokio::select! {
                event = swarm.select_next_some() => match event {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == self.peer => {
                        self.stats.connected.fetch_add(1, Ordering::Relaxed);
                    }
                    SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } if peer_id == self.peer => {
                        self.stats.dropped_by_node.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    SwarmEvent::OutgoingConnectionError { .. } => return Ok(()),
                    _ => {}
                },
                changed = go.changed(), if permit.is_none() && !stormed => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if *go.borrow() {
                        stormed = true;
                        self.storm(&mut swarm, &topic)?;
                    }
                }
            }
            let subscribed = swarm
                .behaviour()
                .gossipsub
                .all_peers()
                .any(|(p, t)| *p == self.peer && t.contains(&&topic.hash()));
            if subscribed && permit.take().is_some() {
                self.stats.ready.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A peer-book write and a ban on the node.
    fn storm(&self, swarm: &mut Swarm<Stormer>, topic: &gossipsub::IdentTopic) -> anyhow::Result<()> {
        // What identify announces is written to the node's peer book.
        swarm.add_external_address(format!("/ip4/{}/tcp/7400", self.source).parse()?);
        swarm.behaviour_mut().identify.push(std::iter::once(self.peer));
        // Not an envelope: malformed_envelope, a `malformed` penalty, a ban here.
        let junk = format!("storm {} {}", self.key.public().to_peer_id(), self.source).into_bytes();
        if swarm.behaviour_mut().gossipsub.publish(topic.clone(), junk).is_ok() {
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

async fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    nodeapi::scrape_metrics(addr).await
}

/// Sum of a counter family's series.
fn counter_sum(text: &str, family: &str) -> f64 {
    nodeapi::counter_series(text, family).map(|s| s.iter().map(|(_, v)| v).sum()).unwrap_or(0.0)
}

/// The cumulative buckets of the loop histogram: (upper bound, count), `+Inf` last.
fn buckets(text: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    let prefix = format!("{LOOP_HISTOGRAM}_bucket{{");
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else { continue };
        let (labels, value) = rest.split_once("} ").context("a bucket line without a value")?;
        let le = labels
            .split(',')
            .find_map(|l| l.strip_prefix("le=\""))
            .and_then(|l| l.strip_suffix('"'))
            .context("a bucket without le")?;
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse()? };
        let count: f64 = value.split_whitespace().next().unwrap_or("0").parse()?;
        out.push((le, count));
    }
    anyhow::ensure!(!out.is_empty(), "no {LOOP_HISTOGRAM} in the scrape");
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

/// The p99 of the wake-ups between two scrapes.
fn window_p99(before: &str, after: &str) -> anyhow::Result<f64> {
    let (b, a) = (buckets(before)?, buckets(after)?);
    anyhow::ensure!(b.len() == a.len(), "the histogram's buckets changed between scrapes");
    let diff: Vec<(f64, f64)> = a.iter().zip(&b).map(|((le, x), (_, y))| (*le, x - y)).collect();
    quantile(&diff, 0.99).context("no loop wake-ups in the window")
}

/// `histogram_quantile`: the `q` quantile of cumulative buckets, linear within a bucket.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, cumulative) in buckets {
        if cumulative >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let inside = cumulative - below;
            let share = if inside > 0.0 { (rank - below) / inside } else { 1.0 };
            return Some(lower + (le - lower) * share);
        }
        (lower, below) = (le, cumulative);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_within_the_bucket_like_prometheus() {
        // 100 observations: 50 ≤ 1 ms, 49 in (1, 2] ms, 1 in (2, 4] ms.
        let b = [(0.001, 50.0), (0.002, 99.0), (0.004, 100.0), (f64::INFINITY, 100.0)];
        assert!((quantile(&b, 0.5).unwrap() - 0.001).abs() < 1e-12);
        assert!((quantile(&b, 0.99).unwrap() - 0.002).abs() < 1e-12);
        assert!((quantile(&b, 0.995).unwrap() - 0.003).abs() < 1e-12);
        assert_eq!(quantile(&[(0.001, 0.0), (f64::INFINITY, 0.0)], 0.99), None);
    }

    #[test]
    fn window_p99_reads_the_scraped_buckets_and_subtracts_the_earlier_scrape() {
        let scrape = |a: u64, b: u64| {
            format!(
                "# TYPE {LOOP_HISTOGRAM} histogram\n{LOOP_HISTOGRAM}_bucket{{le=\"0.001\"}} {a}\n{LOOP_HISTOGRAM}_bucket{{le=\"0.002\"}} {b}\n{LOOP_HISTOGRAM}_bucket{{le=\"+Inf\"}} {b}\n"
            )
        };
        // Before: 1000 fast wake-ups. Window: 10 fast and 90 in (1, 2] ms.
        let p99 = window_p99(&scrape(1000, 1000), &scrape(1010, 1100)).unwrap();
        assert!(p99 > 0.001 && p99 <= 0.002, "{p99}");
    }
}
