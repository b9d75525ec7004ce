//! tracing setup: `RUST_LOG` > `--log` > `[log] filter` (resolved and checked in
//! `Paths::effective_config`); pretty or JSON. Colours only on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::ConfigError;

/// Checks a `RUST_LOG`-style filter; the error names where it came from (`source`).
pub fn check_filter(source: &str, filter: &str) -> Result<(), ConfigError> {
    EnvFilter::try_new(filter).map(drop).map_err(|e| {
        ConfigError(format!(
            "configuration error: {source} = {filter:?} is not a valid log filter ({e}); use a RUST_LOG-style filter such as \"info\" or \"info,palisade_net=debug\""
        ))
    })
}

/// Whether log lines get ANSI colours: only when stderr is a terminal and `NO_COLOR` is unset
/// (no escape codes in files, pipes or journald).
fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Changes the log filter of the running process (SIGHUP).
pub struct LogReload(Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>);

impl LogReload {
    /// Replaces the filter with `filter` (checked before: see [`check_filter`]).
    pub fn set(&self, filter: &str) -> Result<(), String> {
        let filter = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
        (self.0)(filter)
    }
}

/// Installs the global subscriber for `log.filter` (already checked), to stderr or to the
/// rotated `log.file`. Logs go to stderr so stdout stays for command output. Returns the
/// handle that reloads the filter (`None` if a subscriber was already installed, as in tests).
pub fn init(log: &crate::config::LogSection) -> Result<Option<LogReload>, ConfigError> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_new(&log.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let (writer, ansi) = match &log.file {
        Some(path) => {
            let file = crate::log_file::RotatingFile::open(path, log.max_file_bytes, log.max_files).map_err(|e| {
                ConfigError(format!(
                    "configuration error: log.file = {:?} cannot be opened for appending ({e}); create its directory or choose another path",
                    path.display().to_string()
                ))
            })?;
            (BoxMakeWriter::new(std::sync::Arc::new(file)), false)
        }
        None => (BoxMakeWriter::new(std::io::stderr), colours()),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi);
    let installed = match log.format {
        LogFormat::Json => {
            tracing_subscriber::registry().with(filter).with(fmt.json().flatten_event(true)).try_init()
        }
        LogFormat::Pretty => tracing_subscriber::registry().with(filter).with(fmt).try_init(),
    };
    if installed.is_err() {
        return Ok(None);
    }
    Ok(Some(LogReload(Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())))))
}
