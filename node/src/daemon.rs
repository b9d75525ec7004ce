//! `palisade run`: start every part, wait for a signal, stop in order.
//!
//! Start order: store → key (checked against the author the store belongs to) → guard (re-applies persisted bans) → network → admin API →
//! metrics. Stop order is the reverse: admin API (stops accepting, ends event streams,
//! removes the socket) → network (closes connections, drains the ingest pipeline, which
//! flushes) → the guard's node-state writer (queued ban and peer-book changes written and
//! flushed) → final store flush.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use palisade_api::{ApiConfig, ApiServer};
use palisade_guard::Guard;
use palisade_net::Network;
use palisade_store::{SigningHistory, Store, StoreConfig};
use prometheus_client::registry::Registry;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::config::NodeConfig;
use crate::keys;
use crate::paths::Paths;
use crate::ConfigError;

/// What SIGHUP needs: a way to read the configuration again, and the log filter's handle.
pub struct Reload {
    /// Reads and validates the configuration from the same sources as at start.
    pub reread: Box<dyn Fn() -> anyhow::Result<NodeConfig> + Send>,
    /// Replaces the log filter (`None` when another subscriber was installed first).
    pub log: Option<crate::logging::LogReload>,
}

/// How this start was asked for (flags of `palisade run` that are not configuration).
#[derive(Debug, Clone, Copy, Default)]
pub struct Start {
    /// `--recover-from-peers`: start on a store that holds less than its manifest.
    pub recover_from_peers: bool,
}

/// Runs the node until SIGINT/SIGTERM (SIGHUP reloads part of the configuration).
pub async fn run(paths: Paths, mut config: NodeConfig, reload: Reload, start: Start) -> anyhow::Result<()> {
    // Installed first: a signal that arrives while the node starts (or right after it says
    // it is running) is handled as a clean shutdown once start-up completes, never the
    // default action of killing the process.
    let mut signals = Signals::install()?;
    paths.ensure_data_dir()?;
    palisade_store::recover_interrupted_compaction(&paths.db_dir())
        .context("putting back the store of an interrupted `palisade store compact`")?;
    let store = Store::open(&StoreConfig {
        path: paths.db_dir(),
        cache_capacity_bytes: config.store.cache_capacity_bytes,
        watermarks: config.store.watermarks(),
        max_bytes: config.store.max_bytes,
        compression: config.store.compression,
        manifest_path: Some(paths.data_dir.join(palisade_store::MANIFEST_FILE)),
        auto_compact: config.store.auto_compact(),
    })
    .with_context(|| "opening the record store")?;
    let own_feed_floor = check_manifest(&paths, &store, start)?;
    store.set_protected_authors(config.store.protected_authors(&config.admin.trust));
    let keys = node_keys(&paths, &store)?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        commit = crate::process_metrics::BuildInfo::COMMIT,
        data_dir = %paths.data_dir.display(),
        config = %paths.config_source(),
        peer_id = %keys.peer_id(),
        author = %keys.author_key(),
        "starting palisade"
    );
    info!(path = %paths.db_dir().display(), records = store.record_count(), "store open");

    let mut registry = Registry::default();
    let guard =
        Guard::new(config.limits.clone(), store.clone(), &mut registry).context("starting the guard")?;
    info!(bans = guard.bans().len(), "guard ready (persisted bans re-applied)");
    let network = Network::start(
        config.network.clone(),
        keys.identity.clone(),
        keys.author.clone(),
        store.clone(),
        guard.clone(),
        &mut registry,
    )
    .await
    .context("starting the network")?;
    let handle = network.handle();
    protect_signing(&paths, &store, &keys, &handle)?;
    handle.require_own_feed_to(own_feed_floor);

    let mut api = ApiServer::start(api_config(&paths, &config), handle.clone(), &mut registry)
        .await
        .context("starting the admin API")?;
    let socket = api.socket_path().display().to_string();

    crate::process_metrics::register(&mut registry, store.clone());
    let registry = Arc::new(registry);
    let mut parts = vec!["store", "guard", "network", "admin-api"];
    if let Some(addr) = config.metrics_addr() {
        crate::metrics::serve(addr, registry.clone(), &mut api).await?;
        parts.push("metrics");
    }

    // Report where we listen once the listeners are up (bounded wait).
    let mut listen_addrs = Vec::new();
    for _ in 0..50 {
        listen_addrs = handle.info().await.map(|i| i.listen_addrs).unwrap_or_default();
        if !listen_addrs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    info!(
        parts = parts.join(","),
        peer_id = %handle.peer_id(),
        listen = listen_addrs.join(" "),
        bootstrap = config.network.bootstrap.len(),
        admin = socket,
        "palisade is running"
    );

    let failure = loop {
        tokio::select! {
            stop = signals.wait() => match stop {
                Signal::Stop => break None,
                Signal::Reload => crate::reload::apply(&mut config, &reload, &guard, &api, &store),
            },
            failure = store_failure(&store) => break Some(failure),
        }
    };
    info!("shutting down");
    let limit = Duration::from_secs(config.store.shutdown_timeout_secs);
    let stop = async {
        api.shutdown().await;
        network.shutdown().await.context("stopping the network")?;
        drop(handle);
        let state_guard = guard.clone();
        tokio::task::spawn_blocking(move || state_guard.close_state_writer())
            .await
            .context("stopping the node-state writer")?;
        store.flush_async().await.context("final flush of the store")
    };
    let stopped = tokio::time::timeout(limit, stop).await;
    if let Some(failure) = failure {
        // Acknowledged records were flushed before their acknowledgement: exiting loses none.
        return Err(crate::StoreFailed(failure).into());
    }
    match stopped {
        Ok(result) => result?,
        Err(_) => return Err(crate::ShutdownTimedOut(limit).into()),
    }
    info!("stopped cleanly");
    Ok(())
}

/// Resolves when the store reports an I/O failure. sled 0.34 keeps failing after one, so
/// the node stops (exit code 74) for its supervisor to restart it on a reopened store,
/// rather than serve a half-failed store behind a ready flag.
async fn store_failure(store: &Store) -> String {
    let mut tick = tokio::time::interval(STORE_HEALTH_INTERVAL);
    loop {
        tick.tick().await;
        if let Some(failure) = store.failure() {
            tracing::error!(
                error = %failure,
                "the store failed an I/O operation; stopping so the supervisor restarts the node \
                 on a reopened store (exit code 74). Check the disk (dmesg, free space)"
            );
            return failure;
        }
    }
}

/// How often the daemon checks the store's health.
const STORE_HEALTH_INTERVAL: Duration = Duration::from_millis(500);

/// Loads the node key (creating one on a fresh data directory), and refuses a key that would
/// orphan the feed in the store: a store records whose node runs on it, and a missing key
/// file is never silently replaced by a new identity there.
fn node_keys(paths: &Paths, store: &Store) -> anyhow::Result<keys::NodeKeys> {
    let key_file = paths.key_file();
    let own = store.own_author().context("reading the store's own author")?;
    if let (Some(own), false) = (own, key_file.exists()) {
        return Err(ConfigError(format!(
            "the store in {} holds the feed of author {own}, but the key file {} is missing. \
             Restore node.key from your backup: it is the only key that can continue that feed \
             (a new key would start a second identity and orphan it). To start a new identity \
             deliberately, move {} away first.",
            paths.db_dir().display(),
            key_file.display(),
            paths.db_dir().display(),
        ))
        .into());
    }
    let (keys, created) = keys::load_or_create(&key_file).map_err(|e| ConfigError(format!("{e:#}")))?;
    if created {
        info!(path = %key_file.display(), "created a new node key");
    }
    match own {
        Some(own) if own != keys.author_key() => Err(ConfigError(format!(
            "the key file {} is for author {}, but the store in {} holds the feed of author {own}. \
             Put that author's node.key back (or point --data-dir at the directory this key belongs to).",
            key_file.display(),
            keys.author_key(),
            paths.db_dir().display(),
        ))
        .into()),
        Some(_) => Ok(keys),
        None => {
            store.set_own_author(&keys.author_key()).context("recording the store's own author")?;
            Ok(keys)
        }
    }
}

/// Compares the store with its manifest: a store that lost acknowledged records stops the
/// start (exit 74) with what is missing and what to do, unless the operator chose
/// `--recover-from-peers`; then the manifest is rebased to the store and the own feed's
/// former head is returned, a seq the store must hold again before the node signs.
fn check_manifest(paths: &Paths, store: &Store, start: Start) -> anyhow::Result<u64> {
    let check = store.manifest_check().clone();
    let floor = match &check {
        palisade_store::ManifestCheck::Sound => return Ok(0),
        palisade_store::ManifestCheck::Behind { manifest, .. } => manifest.own_seq,
        palisade_store::ManifestCheck::Damaged { .. } => 0,
    };
    if !start.recover_from_peers {
        return Err(crate::StoreBehind(format!(
            "{check}. The store in {} lost records it had acknowledged (a damaged disk, or db/ deleted \
             or replaced). Refusing to start on it. Either restore the data directory from a backup \
             (`palisade backup restore FILE`), or start with `palisade run --recover-from-peers` to \
             accept the loss: the node then fetches the missing records back from its peers and \
             refuses submissions until its own feed is back. `palisade store check` (node stopped) \
             lists any damage",
            paths.db_dir().display()
        ))
        .into());
    }
    warn!(
        missing = %check,
        own_feed_floor = floor,
        "--recover-from-peers: starting on a store that holds less than its manifest; the missing \
         records come back from peers by sync, and submissions wait until the own feed reaches seq {floor}"
    );
    store.rebase_manifest().context("rebasing the store manifest")?;
    Ok(floor)
}

/// Opens the signing history beside the key and hands it to the network, so this node never
/// signs a seq twice (issue 15). A history of another author, or a damaged one, stops the
/// start (exit 78) with what to do.
fn protect_signing(
    paths: &Paths,
    store: &Store,
    keys: &keys::NodeKeys,
    handle: &palisade_net::Handle,
) -> anyhow::Result<()> {
    let path = paths.data_dir.join(palisade_store::SIGNING_HISTORY_FILE);
    let history = SigningHistory::open(&path, keys.author_key()).map_err(|e| ConfigError(e.to_string()))?;
    let stored =
        store.latest_in_feed(&keys.author_key()).context("reading the own feed head")?.map(|(s, _)| s);
    match history.highest() {
        Some(signed) if stored.is_none_or(|s| s < signed.seq) => warn!(
            signed = signed.seq,
            stored = stored.unwrap_or(0),
            "this node signed further in its feed than its store holds (damaged, deleted or restored \
             store): submissions are refused until peers return the missing records by sync"
        ),
        _ => {}
    }
    handle.protect_signing(history).context("protecting the signing history")?;
    Ok(())
}

/// The admin API's settings from `[admin]`.
fn api_config(paths: &Paths, config: &NodeConfig) -> ApiConfig {
    let mut c = ApiConfig::new(&paths.data_dir);
    c.socket_path = paths.socket_path(config);
    // Validated at start: a loopback host:port.
    c.tcp_listen = config.admin.listen.as_deref().and_then(|l| l.parse().ok());
    c.limits = config.admin.limits();
    c.trust = config.admin.trust.clone();
    c.bootstrap_configured = !config.network.bootstrap.is_empty();
    c.version = env!("CARGO_PKG_VERSION").to_string();
    c
}

/// SIGTERM, SIGINT and SIGHUP handlers.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

/// What a signal asks for.
enum Signal {
    /// SIGTERM or SIGINT: a clean shutdown.
    Stop,
    /// SIGHUP: reload the log filter, `[limits]` and `[admin.trust]` from the configuration.
    Reload,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    async fn wait(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => { info!("received SIGTERM"); Signal::Stop }
            _ = self.int.recv() => { info!("received SIGINT"); Signal::Stop }
            _ = self.hup.recv() => { info!("received SIGHUP: reloading the configuration"); Signal::Reload }
        }
    }
}
