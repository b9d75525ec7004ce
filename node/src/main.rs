//! `palisade`: the node daemon and its command-line interface.
//!
//! Exit codes (also in the README):
//! - 0: success (for `run`: clean shutdown after SIGINT/SIGTERM)
//! - 1: runtime failure (storage, network, I/O); for client commands, an error answer from
//!   the node or a bad local input
//! - 2: client commands only: the node cannot be reached (socket missing, refused, timeout)
//! - 3: `attest verdict --check` only: the trust policy is not satisfied
//! - 64: usage error (bad flags; clap's own errors)
//! - 65: `store check` found problems; `backup verify`/`restore`: the file is damaged or
//!   records were refused
//! - 74: `run` only: the store failed an I/O operation (a failing disk; restart the node), or
//!   at start it holds less than its manifest says it acknowledged (restore a backup, or
//!   `run --recover-from-peers`)
//! - 75: `run` only: the shutdown took longer than `store.shutdown_timeout_secs`
//! - 78: configuration error (invalid value, unknown key, bad key file permissions)
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]
// A binary: `pub` marks a module's interface to the rest of the crate.
#![allow(unreachable_pub)]

/// `println!` for command output: a closed pipe (`palisade ... | head -1`) ends the process
/// quietly with status 0 instead of panicking; any other write error is reported, status 1.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::write_stdout(format_args!($($arg)*), true) };
}

/// `print!` with the same handling as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::write_stdout(format_args!($($arg)*), false) };
}

mod backup;
mod cli;
mod client;
mod config;
mod daemon;
mod history;
mod keys;
mod log_file;
mod logging;
mod metrics;
mod paths;
mod process_metrics;
mod reload;
mod store_check;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{BackupCommand, Cli, Command, ConfigCommand, HistoryCommand, KeysCommand, StoreCommand};

/// Writes command output to stdout (see [`outln!`]).
pub fn write_stdout(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written =
        stdout.write_fmt(args).and_then(|()| if newline { stdout.write_all(b"\n") } else { Ok(()) });
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Exit code for configuration errors (sysexits EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code for usage errors (sysexits EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// Exit code for damaged data: a store check with problems, a damaged backup (sysexits
/// EX_DATAERR).
pub const EXIT_DATA_DAMAGED: u8 = 65;

/// Data found damaged; maps to [`EXIT_DATA_DAMAGED`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DataDamaged(String);

/// Exit code when the store failed an I/O operation while running (sysexits EX_IOERR).
pub const EXIT_STORE_FAILED: u8 = 74;
/// Exit code when a shutdown outlived its timeout (sysexits EX_TEMPFAIL).
pub const EXIT_SHUTDOWN_TIMEOUT: u8 = 75;

/// The store failed while the node ran; maps to [`EXIT_STORE_FAILED`].
#[derive(Debug, thiserror::Error)]
#[error("the store failed: {0}; the node stopped so that its supervisor restarts it on a reopened store (nothing acknowledged is lost). Check the disk (free space, dmesg)")]
pub struct StoreFailed(String);

/// At start the store held less than its manifest; maps to [`EXIT_STORE_FAILED`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreBehind(String);

/// The shutdown did not finish in time; maps to [`EXIT_SHUTDOWN_TIMEOUT`].
#[derive(Debug, thiserror::Error)]
#[error("the shutdown did not finish within {0:?} (store.shutdown_timeout_secs); exiting anyway. Records acknowledged before the shutdown were flushed; check the disk if this repeats")]
pub struct ShutdownTimedOut(std::time::Duration);

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
            // The reader of our output went away (`| head`): not an error worth a message.
            Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
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
            } else if e.downcast_ref::<DataDamaged>().is_some() {
                ExitCode::from(EXIT_DATA_DAMAGED)
            } else if e.downcast_ref::<StoreFailed>().is_some() || e.downcast_ref::<StoreBehind>().is_some() {
                ExitCode::from(EXIT_STORE_FAILED)
            } else if e.downcast_ref::<ShutdownTimedOut>().is_some() {
                ExitCode::from(EXIT_SHUTDOWN_TIMEOUT)
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
            use process_metrics::BuildInfo as B;
            if g.json {
                let v = serde_json::json!({
                    "version": B::VERSION,
                    "commit": B::COMMIT,
                    "build_date": B::DATE,
                    "target": B::TARGET,
                    "profile": B::PROFILE,
                    "record_id_context": palisade_types::RECORD_ID_CONTEXT,
                    "store_schema": palisade_store::SCHEMA_VERSION,
                });
                outln!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            outln!("palisade {} ({} {}, {}, {})", B::VERSION, B::COMMIT, B::DATE, B::TARGET, B::PROFILE);
            outln!("wire format: record-id context \"{}\"", palisade_types::RECORD_ID_CONTEXT);
            outln!("store schema: {}", palisade_store::SCHEMA_VERSION);
            Ok(())
        }
        Command::Init => {
            let paths = paths::Paths::resolve(g)?;
            paths.init()
        }
        Command::Keys(KeysCommand::Show) => {
            let paths = paths::Paths::resolve(g)?;
            let keys = keys::load(&paths.key_file()).map_err(|e| ConfigError(format!("{e:#}")))?;
            if g.json {
                let v = serde_json::json!({"author": keys.author_key().to_string(), "peer_id": keys.peer_id().to_string()});
                outln!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            outln!("author:  {}", keys.author_key());
            outln!("peer_id: {}", keys.peer_id());
            Ok(())
        }
        Command::Keys(KeysCommand::History(HistoryCommand::Export)) => {
            let paths = paths::Paths::resolve(g)?;
            let doc = history::export(&paths)?;
            outln!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
        Command::Keys(KeysCommand::History(HistoryCommand::Import { file })) => {
            let paths = paths::Paths::resolve(g)?;
            let done = history::import(&paths, &file)?;
            let show = |s: Option<u64>| s.map_or_else(|| "none".to_string(), |s| s.to_string());
            if g.json {
                let v = serde_json::json!({"before": done.before, "after": done.after});
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else if done.before == done.after {
                outln!("signing history kept at seq {} (the document is not higher)", show(done.after));
            } else {
                outln!("signing history raised from seq {} to {}", show(done.before), show(done.after));
            }
            Ok(())
        }
        Command::Config(ConfigCommand::Default) => {
            out!("{}", config::default_config_toml());
            Ok(())
        }
        Command::Config(ConfigCommand::Check(args)) => {
            let paths = paths::Paths::resolve(g)?;
            let config = paths.effective_config(g, &args)?;
            if g.json {
                outln!("{}", serde_json::to_string_pretty(&config)?);
            } else {
                out!("{}", toml::to_string_pretty(&config)?);
            }
            eprintln!("config OK ({})", paths.config_source());
            Ok(())
        }
        Command::Store(StoreCommand::Compact) => {
            let paths = paths::Paths::resolve(g)?;
            store_check::compact(&paths, g.json)
        }
        Command::Store(StoreCommand::Check) => {
            let paths = paths::Paths::resolve(g)?;
            let sound = store_check::run(&paths, g.json)?;
            if sound {
                Ok(())
            } else {
                Err(DataDamaged("the store check found problems (listed above)".into()).into())
            }
        }
        Command::Backup(BackupCommand::Verify { file }) => backup::verify(&file, g.json),
        Command::Backup(BackupCommand::Restore { file }) => {
            let paths = paths::Paths::resolve(g)?;
            backup::restore(&paths, &file, g.json)
        }
        Command::Manpage => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            out!("{}", String::from_utf8_lossy(&page));
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
        | Command::Watch(_)
        | Command::Store(StoreCommand::Usage)
        | Command::Backup(BackupCommand::Create { .. }) => {
            anyhow::bail!("client commands are dispatched before this point")
        }
        Command::Run(args) => {
            let paths = paths::Paths::resolve(g)?;
            let config = paths.effective_config(g, &args)?;
            let start = daemon::Start { recover_from_peers: args.recover_from_peers };
            let log = logging::init(&config.log)?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            // SIGHUP re-reads the same sources (file, environment, flags) the start did.
            let reread = {
                let (paths, g) = (paths.clone(), g.clone());
                move || paths.effective_config(&g, &args)
            };
            let result = runtime.block_on(daemon::run(
                paths,
                config,
                daemon::Reload { reread: Box::new(reread), log },
                start,
            ));
            // A blocking task stuck in a hung disk must not hold the exit (dropping the
            // runtime would wait for it forever).
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            result
        }
    }
}
