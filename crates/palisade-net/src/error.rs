//! Errors of the network crate.

/// What went wrong, and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The network task has stopped (shutdown in progress).
    #[error("the network task has stopped; the node is shutting down")]
    Stopped,
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}; choose another address with --listen or network.listen")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Dialling failed immediately.
    #[error("cannot dial {addr}: {reason}")]
    Dial {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The transport or a behaviour could not be built.
    #[error("network setup failed: {0}")]
    Setup(String),
    /// A submitted statement breaks a rule.
    #[error("{0}")]
    Invalid(palisade_types::ValidationError),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(palisade_types::SignError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] palisade_store::StoreError),
}
