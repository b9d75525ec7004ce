//! Large stores (targets 8, 9, 10): a store written directly with the pipeline's write
//! pattern, a `palisade` process opened on it, memory under peers and a connection flood,
//! and a second node catching up by sync.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use palisade_store::{Source, Store, StoreConfig, StoredMeta};

use super::net::{self, HeldConnections};
use super::procs::{self, NodeProc};
use super::{workload, Ctx, Recorder};

/// What [`write_store`] wrote.
pub struct Written {
    /// Seconds spent in `insert_many` and `flush`.
    pub secs: f64,
    /// Envelope (wire) bytes of the records.
    pub envelope_bytes: u64,
    /// The store quota's logical bytes after the writes.
    pub logical_bytes: u64,
}

/// Writes `count` records of `authors` authors into a fresh store at `db`, as the ingest
/// pipeline's store thread does (groups of 64 with `insert_many`, a flush per group).
/// Records are signed in chunks first; only the writes are timed.
pub fn write_store(db: &std::path::Path, seed: u64, authors: usize, count: usize) -> anyhow::Result<Written> {
    let store = Store::open(&StoreConfig::new(db))?;
    let mut envelope_bytes = 0u64;
    let chunk_records = 50_000usize;
    let per_author = count.div_ceil(authors.max(1));
    // Authors are written in blocks so each chunk holds whole stretches of feeds.
    let authors_per_chunk = (chunk_records / per_author.max(1)).max(1);
    let mut written = 0usize;
    let mut secs = 0.0;
    let now = palisade_net::now_ms();
    let mut first = 0usize;
    while written < count && first < authors {
        let n_authors = authors_per_chunk.min(authors - first);
        let n = (n_authors * per_author).min(count - written);
        let records = workload::records_from(seed, first, n_authors, n, now);
        let meta = StoredMeta { received_at_ms: now, source: Source::Sync };
        envelope_bytes += records.iter().map(|r| r.wire_bytes().len() as u64).sum::<u64>();
        let started = Instant::now();
        for group in records.chunks(64) {
            let items: Vec<_> = group.iter().map(|r| (r, meta)).collect();
            store.insert_many(&items)?;
            store.flush()?;
        }
        secs += started.elapsed().as_secs_f64();
        written += records.len();
        first += n_authors;
    }
    anyhow::ensure!(store.record_count() == count, "store holds {} of {count} records", store.record_count());
    Ok(Written { secs, envelope_bytes, logical_bytes: store.usage().bytes_used })
}

/// Part `memory`: targets 8a, 8b and 10.
pub async fn run_memory_part(ctx: &Ctx, rec: &mut Recorder) -> anyhow::Result<()> {
    let n = ctx.sizes.memory_records;
    let authors = (n / 1000).max(1);
    let dir = tempfile::Builder::new().prefix("palisade-bench-").tempdir()?;
    let mut node = NodeProc::init(&ctx.args.binary, &dir.path().join("node"), procs::node_ip(50))?;
    eprintln!("bench: memory: signing and writing {n} records …");
    let db = node.db_dir();
    let written = tokio::task::spawn_blocking(move || write_store(&db, 7, authors, n)).await??;
    let write_secs = written.secs;
    let db = node.db_dir();
    let reopen = tokio::task::spawn_blocking(move || {
        let mut runs = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let s = Store::open(&StoreConfig::new(&db))?;
            let ok = s.record_count();
            runs.push(t.elapsed().as_secs_f64());
            drop(s);
            anyhow::ensure!(ok > 0, "reopened store is empty");
        }
        anyhow::Ok(runs)
    })
    .await??;
    node.configure(&[], toml::Table::new(), toml::Table::new())?;
    let mut ready = Vec::new();
    for i in 0..ctx.repeat {
        node.start()?;
        ready.push(node.wait_ready(Duration::from_secs(300)).await?.as_secs_f64());
        if i + 1 < ctx.repeat {
            node.stop();
        }
    }
    let du = dir_bytes(&node.db_dir()) as f64 / (1024.0 * 1024.0);
    rec.figure("store_write_secs", "s", vec![write_secs], &format!("writing {n} records ({authors} authors) with insert_many of 64 + flush per group, signing excluded"));
    rec.figure("store_disk_mib", "MiB", vec![du], "size of the store directory");
    let disk_bytes = du * 1024.0 * 1024.0;
    rec.figure(
        "store_disk_bytes_per_record",
        "B",
        vec![disk_bytes / n.max(1) as f64],
        &format!(
            "store directory / records; envelopes average {:.0} B",
            written.envelope_bytes as f64 / n.max(1) as f64
        ),
    );
    rec.figure(
        "store_disk_to_envelope_ratio",
        "x",
        vec![disk_bytes / written.envelope_bytes.max(1) as f64],
        "store directory / envelope bytes (issue 16 asks for <= 1.5)",
    );
    rec.figure(
        "store_logical_to_envelope_ratio",
        "x",
        vec![written.logical_bytes as f64 / written.envelope_bytes.max(1) as f64],
        "the quota's logical bytes (every key and value a record writes) / envelope bytes",
    );
    rec.figure(
        "store_reopen_secs",
        "s",
        reopen,
        "Store::open + record_count on the written store, in-process",
    );
    rec.figure("node_start_ready_secs", "s", ready, "palisade run on the written store until GET /v1/ready answers 200 (process start, key, store open, network)");

    // 8a: peers connected, then RSS.
    let pid = node.pid().context("node pid")?;
    let target: libp2p::Multiaddr = node.multiaddr().parse()?;
    let held = HeldConnections::new();
    // One connection per /24, so the default per-IP and per-subnet caps allow them all.
    let peer_srcs: Vec<std::net::Ipv4Addr> = net::sources(60, ctx.sizes.memory_peers, 1);
    let (ok, failed) = held.connect(&target, &peer_srcs, ctx.sizes.memory_peers, 16, 77).await;
    let api = node.api();
    // Touch the store the way a running node does: feed heads, queries, counts.
    for _ in 0..20 {
        let _ = api.node().await;
        let _ = api.feeds(&palisade_api::model::PageParams { limit: Some(100), cursor: None }).await;
        let _ =
            api.query(&palisade_api::model::RecordFilter { limit: Some(100), ..Default::default() }).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let peers_now = api.node().await.map(|i| i.peers).unwrap_or(0);
    let rss_peers = node.rss_mib().unwrap_or(0.0);
    rec.figure("rss_stored_peers_mib", "MiB", vec![rss_peers], &format!("RSS of the node with {n} stored records and {peers_now} connected peers ({ok} connected, {failed} failed; default limits, sled cache 64 MiB)"));

    // 8b: connection flood from many addresses against default limits.
    let before = node.rss_mib().unwrap_or(0.0);
    let (stop, sampler) = net::rss_sampler(pid);
    let flood_srcs = net::sources(120, 100, 100);
    let attempts = ctx.sizes.flood_connections;
    let flood = HeldConnections::new();
    let started = Instant::now();
    let (f_ok, f_failed) = flood.connect(&target, &flood_srcs, attempts, 64, 99).await;
    let flood_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.await.unwrap_or(0.0);
    flood.close();
    held.close();
    let backup = super::backup::measure_create(&ctx.args.binary, &node, n, rec)?;
    rec.figure("conn_flood_rss_growth_mib", "MiB", vec![(peak - before).max(0.0)], &format!("peak RSS during {attempts} connection attempts (fresh identities, 100 /24 subnets, 64 at a time; {f_ok} handshakes completed, {f_failed} refused or failed, {flood_secs:.1} s) minus RSS before"));
    node.stop();
    let db = node.db_dir();
    let envelope_bytes = written.envelope_bytes;
    let compaction = tokio::task::spawn_blocking(move || {
        let config = StoreConfig { auto_compact: palisade_store::AutoCompact::OFF, ..StoreConfig::new(&db) };
        let started = Instant::now();
        let report = Store::open(&config)?.compact_online()?;
        anyhow::Ok((report, started.elapsed().as_secs_f64()))
    })
    .await??;
    let (report, compact_secs) = compaction;
    rec.figure(
        "store_compacted_to_envelope_ratio",
        "x",
        vec![report.after_bytes as f64 / envelope_bytes.max(1) as f64],
        &format!(
            "sled's files after an online compaction / envelope bytes ({} -> {} B; issue 16 asks for <= 1.5)",
            report.before_bytes, report.after_bytes
        ),
    );
    rec.figure(
        "store_compaction_secs",
        "s",
        vec![compact_secs],
        "Store::compact_online of the written store (no writers), open included",
    );
    super::backup::measure_restore(&ctx.args.binary, &node, backup.path(), n, rec).await?;

    let scale = if n < 1_000_000 { format!("scaled down to {n} records") } else { String::new() };
    rec.absolute(
        "8a",
        "RSS with stored records and 100 peers",
        "rss_stored_peers_mib",
        "<=",
        256.0,
        "MiB",
        &scale,
    );
    let fl = if attempts < 10_000 { format!("scaled down to {attempts} attempts") } else { String::new() };
    rec.absolute(
        "8b",
        "RSS growth in a connection flood",
        "conn_flood_rss_growth_mib",
        "<=",
        32.0,
        "MiB",
        &fl,
    );
    rec.ratio(
        "10",
        "startup (ready) vs write time",
        "node_start_ready_secs",
        "store_write_secs",
        "<=",
        0.1,
        &scale,
    );
    Ok(())
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Part `catchup`: target 9.
pub async fn run_catchup_part(ctx: &Ctx, rec: &mut Recorder) -> anyhow::Result<()> {
    let n = ctx.sizes.catchup_records;
    let authors = (n / 1000).max(1);
    let dir = tempfile::Builder::new().prefix("palisade-bench-").tempdir()?;
    let mut src = NodeProc::init(&ctx.args.binary, &dir.path().join("src"), procs::node_ip(60))?;
    let db = src.db_dir();
    tokio::task::spawn_blocking(move || write_store(&db, 11, authors, n)).await??;
    src.configure(&[], procs::raised_limits(), toml::Table::new())?;
    src.start()?;
    src.wait_ready(Duration::from_secs(120)).await?;
    let mut rates = Vec::new();
    for r in 0..ctx.repeat {
        let mut dst =
            NodeProc::init(&ctx.args.binary, &dir.path().join(format!("dst-{r}")), procs::node_ip(61 + r))?;
        dst.configure(&[src.multiaddr()], procs::raised_limits(), toml::Table::new())?;
        dst.start()?;
        dst.wait_ready(Duration::from_secs(60)).await?;
        let started = Instant::now();
        let mut last = (Instant::now(), 0u64);
        let result = loop {
            let have = dst.record_count().await.unwrap_or(0);
            if have >= n as u64 {
                break Ok(n as f64 / started.elapsed().as_secs_f64());
            }
            if have != last.1 {
                last = (Instant::now(), have);
            } else if last.0.elapsed() > Duration::from_secs(60) {
                break Err(anyhow::anyhow!("catch-up stalled at {have} of {n} records"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        dst.stop();
        rates.push(result?);
    }
    src.stop();
    rec.figure("catchup_rps", "records/s", rates, &format!("a fresh palisade process pulling {n} records ({authors} authors) by sync from another on loopback, from ready until all stored; limits raised as in the throughput tests"));
    let ingest = if rec.fig("conn_small_goodput_rps").is_some() {
        "conn_small_goodput_rps"
    } else {
        "pipeline_2core_rps"
    };
    let scale = if n < 100_000 { format!("scaled down to {n} records; ") } else { String::new() };
    rec.ratio(
        "9",
        "catch-up by sync vs ingest rate",
        "catchup_rps",
        ingest,
        ">=",
        0.5,
        &format!("{scale}ingest rate = {ingest}"),
    );
    Ok(())
}
