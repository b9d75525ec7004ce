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
    /// This node signed further in its feed than its store holds: signing now would reuse a
    /// seq (an equivocation).
    #[error(
        "this node signed up to seq {signed} of its feed, but its store holds only up to seq {stored} (the store was damaged, deleted or restored from an older backup). Submissions are refused until the missing records come back from peers by sync (keep the node connected) or the store is restored from a newer backup: signing now would reuse a seq and flag this node as an equivocator"
    )]
    OwnFeedBehind {
        /// The highest seq of the own feed in the store (0 = none).
        stored: u64,
        /// The highest seq ever signed (signing history).
        signed: u64,
    },
    /// The own-feed check at start is still asking peers for this node's feed.
    #[error(
        "this node is still asking its peers for the head of its own feed before it signs (network.own_feed_check_secs; a few seconds after a start); retry shortly"
    )]
    OwnFeedCheck,
    /// The ingest pipeline did not store a record handed in through the admin API.
    #[error("the record was not stored: {}: {}", .0.label(), .0.info().doc)]
    Refused(crate::Reason),
    /// The signing history could not be written; the record is stored but not acknowledged.
    #[error("{0}; the record was stored but is not acknowledged")]
    SigningHistory(#[from] palisade_store::SigningHistoryError),
}
