//! The guard's error type. Every message says what to do about it.

use palisade_types::InvalidSetting;

/// What went wrong in the guard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// A limit in the configuration is out of range or breaks a relation with another limit.
    #[error("{0}; fix the `[limits]` section of the config file (see docs/dos-protection.md)")]
    Config(#[from] InvalidSetting),
    /// Reading or writing the persisted ban table failed.
    #[error("ban table storage failed: {0}")]
    Store(#[from] palisade_store::StoreError),
    /// A ban duration or time computation does not fit.
    #[error("ban duration {secs} s is out of range; give a positive duration (very long durations mean permanent)")]
    BadDuration {
        /// The requested duration in seconds.
        secs: u64,
    },
    /// A ban change could not be queued for the disk (the ban applies in memory).
    #[error("{0}")]
    StateQueue(#[from] palisade_store::QueueFull),
    /// A ban change did not reach the disk in time (the ban applies in memory).
    #[error("the ban applies but is not persisted: {0}")]
    StateWrite(#[from] palisade_store::WaitError),
    /// A guard thread could not be started.
    #[error("{0}")]
    Setup(String),
    /// Building the transport (noise keys) failed.
    #[error("could not build the guarded transport: {0}; check the node identity key")]
    Transport(String),
}
