//! Part `sync` (targets 18a, 18b, issue 18): the bytes and wall time of one sync round
//! between two nodes, sync/1's heads walk against sync/2's reconciliation, at 10k, 100k and
//! 1M authors, (a) in agreement and (b) after 100 authors appeared on one side.
//!
//! Two in-process nodes (store, guard, network on loopback TCP: the node's own code, minus the
//! process) on one pair of stores written directly, one record per author. Per protocol: both
//! nodes start with `network.sync_v2` set for it and the timer rounds off, connect, and let
//! their connect rounds settle; then node B starts one round with node A
//! (`Handle::sync_now`) — the agreement round — then 100 new authors are written into A's
//! store and B starts another. Each round is measured by B's own metrics: the sync frame
//! bytes both ways (`palisade_sync_bytes_total`) until the round knows every difference
//! (`palisade_sync_rounds_finished_total`), and the time until then (and, in (b), until the
//! 100 records are stored). sync/1 runs first; sync/2 then starts from stores in agreement
//! again (B fetched the first 100).

use std::time::{Duration, Instant};

use anyhow::Context;
use palisade_guard::{Guard, GuardConfig};
use palisade_net::metrics::{SyncBytesLabels, SyncRoundLabels};
use palisade_net::{Handle, NetConfig, Network};
use palisade_store::{Source, Store, StoreConfig, StoredMeta};
use palisade_types::ed25519_dalek::SigningKey;
use prometheus_client::registry::Registry;

use super::{workload, Ctx, Recorder};

/// Authors that appear on one side for case (b).
const NEW_AUTHORS: usize = 100;
/// Longest a measured round may take.
const ROUND_DEADLINE: Duration = Duration::from_secs(600);

/// One round's cost.
#[derive(Debug, Clone, Copy)]
struct RoundCost {
    bytes: u64,
    secs: f64,
}

/// Both cases of one protocol at one size.
#[derive(Debug, Clone, Copy)]
struct Costs {
    agree: RoundCost,
    differ: RoundCost,
    /// Until the new authors' records were stored.
    differ_fetched_secs: f64,
}

/// Runs the part.
pub async fn run_sync_part(ctx: &Ctx, rec: &mut Recorder) -> anyhow::Result<()> {
    let max = ctx.sizes.sync_authors;
    let sizes: Vec<usize> = [max / 100, max / 10, max].into_iter().filter(|n| *n >= 1000).collect();
    for &authors in &sizes {
        let dir = tempfile::Builder::new().prefix("palisade-bench-sync-").tempdir()?;
        let (a_db, b_db) = (dir.path().join("a"), dir.path().join("b"));
        eprintln!("bench: sync: writing {authors} authors twice …");
        let (a, b) = (a_db.clone(), b_db.clone());
        tokio::task::spawn_blocking(move || {
            write_authors(&a, 0, authors)?;
            write_authors(&b, 0, authors)
        })
        .await??;
        let v1 = measure(&a_db, &b_db, false, authors, authors).await.context("sync/1")?;
        let v2 = measure(&a_db, &b_db, true, authors + NEW_AUTHORS, authors + NEW_AUTHORS)
            .await
            .context("sync/2")?;
        eprintln!("  {authors} authors: sync/1 {v1:?}\n  {authors} authors: sync/2 {v2:?}");
        let label = size_label(authors);
        for (p, c) in [("v1", v1), ("v2", v2)] {
            rec.figure(&format!("sync_{p}_agree_bytes_{label}"), "bytes", vec![c.agree.bytes as f64], &format!("sync/{} round between two nodes holding the same {authors} authors: frame bytes both ways", &p[1..]));
            rec.figure(
                &format!("sync_{p}_agree_secs_{label}"),
                "s",
                vec![c.agree.secs],
                "that round's wall time until it knew there was no difference",
            );
            rec.figure(&format!("sync_{p}_differ_bytes_{label}"), "bytes", vec![c.differ.bytes as f64], &format!("sync/{} round after {NEW_AUTHORS} authors appeared on one side of {authors}: frame bytes both ways, the {NEW_AUTHORS} records included", &p[1..]));
            rec.figure(
                &format!("sync_{p}_differ_secs_{label}"),
                "s",
                vec![c.differ.secs],
                "that round's wall time until it knew every difference",
            );
            rec.figure(
                &format!("sync_{p}_differ_fetched_secs_{label}"),
                "s",
                vec![c.differ_fetched_secs],
                "until the new authors' records were stored",
            );
        }
    }
    let Some(&largest) = sizes.last() else { return Ok(()) };
    let label = size_label(largest);
    rec.absolute(
        "18a",
        "sync/2 round in agreement, bytes",
        &format!("sync_v2_agree_bytes_{label}"),
        "<=",
        4096.0,
        "bytes",
        &format!("two nodes holding the same {largest} authors (issue 18: at 1M, at most 4 KiB)"),
    );
    rec.ratio(
        "18b",
        "sync/2 vs sync/1 bytes, in agreement",
        &format!("sync_v2_agree_bytes_{label}"),
        &format!("sync_v1_agree_bytes_{label}"),
        "<=",
        0.01,
        &format!("{largest} authors"),
    );
    rec.ratio(
        "18c",
        "sync/2 vs sync/1 bytes, 100 authors differ",
        &format!("sync_v2_differ_bytes_{label}"),
        &format!("sync_v1_differ_bytes_{label}"),
        "<=",
        0.05,
        &format!("{largest} authors, {NEW_AUTHORS} new on one side, the records fetched included"),
    );
    rec.ratio(
        "18d",
        "sync/2 vs sync/1 time to fetch 100 new authors",
        &format!("sync_v2_differ_fetched_secs_{label}"),
        &format!("sync_v1_differ_fetched_secs_{label}"),
        "<=",
        1.0,
        &format!("{largest} authors: catch-up no slower than sync/1"),
    );
    Ok(())
}

fn size_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}m", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// One record by each of the authors `first..first + count` (the workload's keys).
fn write_authors(db: &std::path::Path, first: usize, count: usize) -> anyhow::Result<()> {
    let store = Store::open(&StoreConfig::new(db))?;
    write_into(&store, first, count)?;
    store.flush()?;
    Ok(())
}

fn write_into(store: &Store, first: usize, count: usize) -> anyhow::Result<()> {
    let now = palisade_net::now_ms();
    let meta = StoredMeta { received_at_ms: now, source: Source::Sync };
    let chunk = 50_000;
    let mut start = first;
    while start < first + count {
        let n = chunk.min(first + count - start);
        let records = workload::records_from(18, start, n, n, now);
        // Groups of 64, flushed, as the ingest pipeline writes (`network.flush_max_records`):
        // sled 0.34 holds on to memory for every large batch of scattered keys (a writer of
        // one-record authors in groups of 1,000 reached 24 GiB before a million).
        for group in records.chunks(64) {
            let items: Vec<_> = group.iter().map(|r| (r, meta)).collect();
            store.insert_many(&items)?;
            store.flush()?;
        }
        start += n;
    }
    Ok(())
}

struct Node {
    network: Network,
    handle: Handle,
    store: Store,
}

async fn start(db: &std::path::Path, seed: u8, v2: bool) -> anyhow::Result<Node> {
    let store = Store::open(&StoreConfig::new(db))?;
    let mut registry = Registry::default();
    // This process hosts both nodes and writes their stores: a node's cap on its own process
    // memory (1 GiB by default) would count all of that and refuse the connection.
    let guard_config = GuardConfig { max_process_memory_bytes: 0, ..GuardConfig::default() };
    let guard = Guard::new(guard_config, store.clone(), &mut registry)?;
    let net = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        // Rounds only when the bench starts them (and on connect).
        sync_interval_secs: 86_400,
        sync_v2: v2,
        ..NetConfig::default()
    };
    let identity = libp2p::identity::Keypair::ed25519_from_bytes([seed; 32])?;
    let author = SigningKey::from_bytes(&[seed.wrapping_add(1); 32]);
    let network = Network::start(net, identity, author, store.clone(), guard, &mut registry).await?;
    let handle = network.handle();
    Ok(Node { network, handle, store })
}

fn bytes(h: &Handle, protocol: &'static str) -> u64 {
    let m = &h.metrics().sync_bytes;
    ["sent", "received"]
        .into_iter()
        .map(|direction| m.get_or_create(&SyncBytesLabels { protocol, direction }).get())
        .sum()
}

fn finished(h: &Handle, protocol: &'static str) -> u64 {
    h.metrics().sync_rounds_finished.get_or_create(&SyncRoundLabels { protocol }).get()
}

/// Polls `cond` every millisecond until it holds or `ROUND_DEADLINE` passes.
async fn until(what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + ROUND_DEADLINE;
    while !cond() {
        anyhow::ensure!(Instant::now() < deadline, "{what}: not within {ROUND_DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Both cases for one protocol; the stores hold `authors_a` and `authors_b` authors at start
/// (in agreement).
async fn measure(
    a_db: &std::path::Path,
    b_db: &std::path::Path,
    v2: bool,
    authors_a: usize,
    authors_b: usize,
) -> anyhow::Result<Costs> {
    let protocol = if v2 { "sync/2" } else { "sync/1" };
    let a = start(a_db, 181, v2).await?;
    let b = start(b_db, 182, v2).await?;
    anyhow::ensure!(a.store.author_count() == authors_a && b.store.author_count() == authors_b);
    let addr = loop {
        let info = a.handle.info().await?;
        if let Some(addr) = info.listen_addrs.first() {
            break addr.parse::<libp2p::Multiaddr>()?;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let a_peer = a.handle.peer_id();
    b.handle.dial(addr.with(libp2p::multiaddr::Protocol::P2p(a_peer))).await?;
    // Both nodes' connect rounds.
    until("connect rounds", || finished(&a.handle, protocol) >= 1 && finished(&b.handle, protocol) >= 1)
        .await?;
    let agree = one_round(&b.handle, a_peer, protocol).await?;
    // 100 authors appear on A.
    let store = a.store.clone();
    tokio::task::spawn_blocking(move || write_into(&store, authors_a, NEW_AUTHORS)).await??;
    let started = Instant::now();
    let differ = one_round(&b.handle, a_peer, protocol).await?;
    let want = authors_a + NEW_AUTHORS;
    until("the new authors' records", || b.store.author_count() >= want).await?;
    let differ_fetched_secs = started.elapsed().as_secs_f64();
    let differ =
        RoundCost { bytes: bytes(&b.handle, protocol) - (differ.bytes_before), secs: differ.cost.secs };
    for node in [a, b] {
        tokio::time::timeout(Duration::from_secs(60), node.network.shutdown()).await.ok();
    }
    Ok(Costs { agree: agree.cost, differ, differ_fetched_secs })
}

struct Measured {
    cost: RoundCost,
    bytes_before: u64,
}

/// Starts one round of `b` with `a_peer` and waits until it knows every difference.
async fn one_round(b: &Handle, a_peer: libp2p::PeerId, protocol: &'static str) -> anyhow::Result<Measured> {
    let (done_before, bytes_before) = (finished(b, protocol), bytes(b, protocol));
    let started = Instant::now();
    anyhow::ensure!(b.sync_now(Some(a_peer)).await? == 1, "the round did not start");
    until("the round", || finished(b, protocol) > done_before).await?;
    let secs = started.elapsed().as_secs_f64();
    Ok(Measured { cost: RoundCost { bytes: bytes(b, protocol) - bytes_before, secs }, bytes_before })
}
