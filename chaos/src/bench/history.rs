//! Part `history` (target 15, issue 15): what the signing history costs local submissions.
//! One in-process node (store, guard, network listening on loopback only, no peers) takes
//! the same closed loop of concurrent submissions twice per repetition, with and without its
//! signing history (`Handle::protect_signing`: one 256-byte write and `fdatasync` after each
//! acknowledged record's store flush), on fresh data directories; the ratio of the two
//! throughputs is the cost.

use std::time::{Duration, Instant};

use palisade_guard::{Guard, GuardConfig};
use palisade_net::{NetConfig, Network};
use palisade_store::{SigningHistory, Store, StoreConfig, SIGNING_HISTORY_FILE};
use palisade_types::ed25519_dalek::SigningKey;
use prometheus_client::registry::Registry;

use super::{Ctx, Recorder};

/// Concurrent submitters (the admin API's clients).
const SUBMITTERS: usize = 8;

/// Runs the part: figures `submit_per_sec_history`, `submit_per_sec_no_history`, target 15.
pub async fn run_history_part(ctx: &Ctx, rec: &mut Recorder) -> anyhow::Result<()> {
    let records = ctx.sizes.load_records;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for r in 0..ctx.repeat {
        // Alternate which goes first, so a warming disk cache favours neither.
        for history in if r % 2 == 0 { [true, false] } else { [false, true] } {
            let rate = submit_rate(records, history).await?;
            eprintln!("  history {history}: {rate:.0} submissions/s");
            if history {
                with.push(rate)
            } else {
                without.push(rate)
            }
        }
    }
    rec.figure(
        "submit_per_sec_history",
        "records/s",
        with,
        &format!("local submissions/s of one node ({SUBMITTERS} concurrent submitters, {records} records) with its signing history"),
    );
    rec.figure("submit_per_sec_no_history", "records/s", without, "the same without the signing history");
    rec.ratio(
        "15",
        "local submit throughput, signing history on vs off",
        "submit_per_sec_history",
        "submit_per_sec_no_history",
        ">=",
        0.95,
        "the signing history costs at most 5 % of local submit throughput (issue 15)",
    );
    Ok(())
}

async fn submit_rate(records: usize, history: bool) -> anyhow::Result<f64> {
    let dir = tempfile::Builder::new().prefix("palisade-bench-history-").tempdir()?;
    let store = Store::open(&StoreConfig::new(dir.path().join("db")))?;
    let mut registry = Registry::default();
    let guard = Guard::new(GuardConfig::default(), store.clone(), &mut registry)?;
    let net = NetConfig { listen: vec!["/ip4/127.0.0.1/tcp/0".into()], ..NetConfig::default() };
    let seed = [0x15; 32];
    let identity = libp2p::identity::Keypair::ed25519_from_bytes(seed)?;
    let author = SigningKey::from_bytes(&seed);
    let author_key = palisade_types::AuthorKey(author.verifying_key().to_bytes());
    let network = Network::start(net, identity, author, store, guard, &mut registry).await?;
    let handle = network.handle();
    if history {
        handle.protect_signing(SigningHistory::open(&dir.path().join(SIGNING_HISTORY_FILE), author_key)?)?;
    }
    let started = Instant::now();
    let per = records.div_ceil(SUBMITTERS);
    let tasks: Vec<_> = (0..SUBMITTERS)
        .map(|s| {
            let handle = handle.clone();
            tokio::spawn(async move {
                for k in 0..per {
                    let n = (s * per + k) as u64;
                    handle.submit(palisade_types::fixtures::attestation(n)).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let rate = (per * SUBMITTERS) as f64 / started.elapsed().as_secs_f64().max(1e-9);
    tokio::time::timeout(Duration::from_secs(30), network.shutdown()).await.ok();
    Ok(rate)
}
