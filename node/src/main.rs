//! `palisade`: the node daemon and its command-line interface.
//!
//! Exit codes (also in the README):
//! - 0: success (for `run`: clean shutdown after SIGINT/SIGTERM)
//! - 1: runtime failure (storage, network, I/O); for client commands, an error answer from
//!   the node or a bad local input
//! - 2: client commands only: the node cannot be reached (socket missing, refused, timeout)
//! - 3: `attest verdict --check` only: the trust policy is not satisfied
//! - 64: usage error (bad flags; clap's own errors)
//! - 78: configuration error (invalid value, unknown key, bad key file permissions)
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]
// A binary: `pub` marks a module's interface to the rest of the crate.
#![allow(unreachable_pub)]

mod cli;
mod client;
mod config;
mod daemon;
mod keys;
mod logging;
mod metrics;
mod paths;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ConfigCommand, KeysCommand};

/// Exit code for configuration errors (sysexits EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code for usage errors (sysexits EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// An error that maps to [`EXIT_CONFIG`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if client::is_client_command(&cli.command) {
        return match client::run(cli.command, &cli.global) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                let unreachable = e.chain().any(|c| {
                    c.downcast_ref::<palisade_api::ClientError>().is_some_and(|c| c.is_unreachable())
                });
                ExitCode::from(if unreachable { client::EXIT_UNREACHABLE } else { 1 })
            }
        };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Version => {
            println!("palisade {}", env!("CARGO_PKG_VERSION"));
            println!("wire format: record-id context \"{}\"", palisade_types::RECORD_ID_CONTEXT);
            println!("store schema: {}", palisade_store::SCHEMA_VERSION);
            Ok(())
        }
        Command::Init => {
            let paths = paths::Paths::resolve(g)?;
            paths.init()
        }
        Command::Keys(KeysCommand::Show) => {
            let paths = paths::Paths::resolve(g)?;
            let keys = keys::load(&paths.key_file()).map_err(|e| ConfigError(format!("{e:#}")))?;
            println!("author:  {}", keys.author_key());
            println!("peer_id: {}", keys.peer_id());
            Ok(())
        }
        Command::Config(ConfigCommand::Default) => {
            print!("{}", config::default_config_toml());
            Ok(())
        }
        Command::Config(ConfigCommand::Check(args)) => {
            let paths = paths::Paths::resolve(g)?;
            let config = paths.effective_config(g, &args)?;
            print!("{}", toml::to_string_pretty(&config)?);
            eprintln!("config OK ({})", paths.config_source());
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "palisade", &mut script);
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth a message.
            match std::io::Write::write_all(&mut out, &script).and_then(|()| std::io::Write::flush(&mut out))
            {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        Command::Status
        | Command::Peers(_)
        | Command::Attest(_)
        | Command::Anomaly(_)
        | Command::Records(_)
        | Command::Limits(_)
        | Command::Ledger(_)
        | Command::Watch(_) => anyhow::bail!("client commands are dispatched before this point"),
        Command::Run(args) => {
            let paths = paths::Paths::resolve(g)?;
            let config = paths.effective_config(g, &args)?;
            logging::init(
                g.log.as_deref().unwrap_or(&config.log.filter),
                g.log_format.unwrap_or(config.log.format),
            );
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(daemon::run(paths, config))
        }
    }
}
