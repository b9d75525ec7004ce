//! `palisade run`: start every part, wait for a signal, stop in order.

use anyhow::Context;
use palisade_store::{Store, StoreConfig};
use tokio::signal::unix::{signal, SignalKind};
use tracing::info;

use crate::config::NodeConfig;
use crate::keys;
use crate::paths::Paths;
use crate::ConfigError;

/// Runs the node until SIGINT/SIGTERM.
pub async fn run(paths: Paths, config: NodeConfig) -> anyhow::Result<()> {
    paths.ensure_data_dir()?;
    let (keys, created) =
        keys::load_or_create(&paths.key_file()).map_err(|e| ConfigError(format!("{e:#}")))?;
    if created {
        info!(path = %paths.key_file().display(), "created a new node key");
    }
    info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %paths.data_dir.display(),
        config = %paths.config_source(),
        peer_id = %keys.peer_id(),
        author = %keys.author_key(),
        "starting palisade"
    );
    let store = Store::open(&StoreConfig {
        path: paths.db_dir(),
        cache_capacity_bytes: config.store.cache_capacity_bytes,
    })
    .with_context(|| "opening the record store")?;
    info!(path = %paths.db_dir().display(), records = store.record_count(), "store open");
    info!(parts = "store", "palisade is running (network not yet started in this build)");

    wait_for_shutdown_signal().await?;
    info!("shutting down: flushing the store");
    store.flush_async().await.context("final flush of the store")?;
    info!("stopped cleanly");
    Ok(())
}

async fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => info!("received SIGTERM"),
        _ = int.recv() => info!("received SIGINT"),
    }
    Ok(())
}
