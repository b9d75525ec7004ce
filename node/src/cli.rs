//! Command-line interface (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::LogFormat;

/// Palisade: a peer-to-peer node that gossips signed audit attestations and anomaly reports.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand shares.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Data directory (key, database, admin socket). Default: ~/.local/share/palisade.
    #[arg(long, global = true, env = "PALISADE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file. Default: <data-dir>/palisade.toml (optional unless given explicitly).
    #[arg(long, global = true, env = "PALISADE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter in RUST_LOG syntax (overrides [log] filter; RUST_LOG overrides both).
    #[arg(long, global = true, env = "PALISADE_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Log format.
    #[arg(long, global = true, env = "PALISADE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data directory, the node key (mode 0600) and a commented default config.
    ///
    /// Example: palisade --data-dir /var/lib/palisade init
    Init,
    /// Run the node daemon until SIGINT or SIGTERM.
    ///
    /// Example: palisade run --listen /ip4/0.0.0.0/tcp/7400 --bootstrap /ip4/10.0.0.5/tcp/7400/p2p/12D3KooW…
    Run(RunArgs),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Key commands.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print version and build information.
    Version,
}

/// Flags of `run`; each is also a config key and a `PALISADE_*` variable.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Listen multiaddr (repeatable; replaces network.listen).
    #[arg(long = "listen", env = "PALISADE_LISTEN", value_delimiter = ',', value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Bootstrap peer multiaddr ending in /p2p/<peer id> (repeatable; replaces network.bootstrap).
    #[arg(long = "bootstrap", env = "PALISADE_BOOTSTRAP", value_delimiter = ',', value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Address other peers should dial (repeatable; replaces network.external_addresses).
    #[arg(
        long = "external-address",
        env = "PALISADE_EXTERNAL_ADDRESS",
        value_delimiter = ',',
        value_name = "MULTIADDR"
    )]
    pub external_address: Vec<String>,
    /// Enable mDNS discovery on the local network.
    #[arg(long, env = "PALISADE_MDNS")]
    pub mdns: bool,
    /// Prometheus listener host:port, or `off`.
    #[arg(long, env = "PALISADE_METRICS_LISTEN", value_name = "ADDR|off")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective config (file + env + flags).
    ///
    /// Example: palisade config check --listen /ip4/0.0.0.0/tcp/7500
    Check(RunArgs),
    /// Print the commented default configuration.
    Default,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show the node's author key and peer id.
    ///
    /// Example: palisade keys show
    Show,
}
