//! Where things live: the data directory and the files in it.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::Context;

use crate::cli::{GlobalArgs, RunArgs};
use crate::config::{self, NodeConfig};
use crate::keys;
use crate::ConfigError;

/// File name of the admin socket inside the data directory.
pub const ADMIN_SOCKET: &str = "admin.sock";

/// Resolved paths for one invocation.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The config file, and whether it was named explicitly (then it must exist).
    pub config: PathBuf,
    config_explicit: bool,
}

impl Paths {
    /// Applies `--data-dir`/`PALISADE_DATA_DIR` and `--config`/`PALISADE_CONFIG`.
    pub fn resolve(g: &GlobalArgs) -> anyhow::Result<Paths> {
        let data_dir = match &g.data_dir {
            Some(d) => d.clone(),
            None => dirs::data_dir().map(|d| d.join("palisade")).ok_or_else(|| {
                ConfigError(
                    "cannot find a per-user data directory (is HOME set?); pass --data-dir DIR".into(),
                )
            })?,
        };
        let (config, config_explicit) = match &g.config {
            Some(c) => (c.clone(), true),
            None => (data_dir.join("palisade.toml"), false),
        };
        Ok(Paths { data_dir, config, config_explicit })
    }

    /// The key file.
    pub fn key_file(&self) -> PathBuf {
        self.data_dir.join(keys::KEY_FILE)
    }

    /// The admin socket: `admin.socket` from the config, else `<data-dir>/admin.sock`.
    pub fn socket_path(&self, config: &NodeConfig) -> PathBuf {
        config.admin.socket.clone().unwrap_or_else(|| self.data_dir.join(ADMIN_SOCKET))
    }

    /// The database directory.
    pub fn db_dir(&self) -> PathBuf {
        self.data_dir.join("db")
    }

    /// Describes where the config came from, for messages.
    pub fn config_source(&self) -> String {
        if self.config.exists() {
            format!("file {}", self.config.display())
        } else {
            "built-in defaults; no config file".to_string()
        }
    }

    /// Creates the data directory with mode 0700.
    pub fn ensure_data_dir(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create data directory {}", self.data_dir.display()))?;
        std::fs::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set permissions of {}", self.data_dir.display()))?;
        Ok(())
    }

    /// `palisade init`.
    pub fn init(&self) -> anyhow::Result<()> {
        self.ensure_data_dir()?;
        let key_path = self.key_file();
        let (keys, created) = keys::load_or_create(&key_path).map_err(|e| ConfigError(format!("{e:#}")))?;
        outln!("data dir: {}", self.data_dir.display());
        outln!("key:      {} ({})", key_path.display(), if created { "created" } else { "already existed" });
        if self.config.exists() {
            outln!("config:   {} (already existed, left unchanged)", self.config.display());
        } else {
            std::fs::write(&self.config, config::default_config_toml())
                .with_context(|| format!("cannot write {}", self.config.display()))?;
            outln!("config:   {} (created with defaults)", self.config.display());
        }
        outln!("author:   {}", keys.author_key());
        outln!("peer_id:  {}", keys.peer_id());
        Ok(())
    }

    /// File, then environment and flags (clap merged those two), validated.
    pub fn effective_config(&self, g: &GlobalArgs, args: &RunArgs) -> anyhow::Result<NodeConfig> {
        let mut config = NodeConfig::load(&self.config, self.config_explicit)
            .map_err(|e| ConfigError(format!("{e:#}")))?;
        // The log filter in effect: RUST_LOG > --log (PALISADE_LOG) > log.filter. Each source is
        // checked under its own name: a bad filter is a configuration error, never ignored.
        if let Some(filter) = &g.log {
            crate::logging::check_filter("--log (PALISADE_LOG)", filter)?;
            config.log.filter = filter.clone();
        }
        if let Ok(filter) = std::env::var("RUST_LOG") {
            crate::logging::check_filter("RUST_LOG", &filter)?;
            config.log.filter = filter;
        }
        if let Some(format) = g.log_format {
            config.log.format = format;
        }
        if let Some(file) = &g.log_file {
            config.log.file = Some(file.clone());
        }
        if !args.listen.is_empty() {
            config.network.listen = args.listen.clone();
        }
        if !args.bootstrap.is_empty() {
            config.network.bootstrap = args.bootstrap.clone();
        }
        if !args.external_address.is_empty() {
            config.network.external_addresses = args.external_address.clone();
        }
        if args.mdns {
            config.network.mdns = true;
        }
        if let Some(m) = &args.metrics_listen {
            config.metrics.listen = m.clone();
        }
        config.validate().map_err(|e| ConfigError(format!("configuration error: {e}")))?;
        Ok(config)
    }
}
