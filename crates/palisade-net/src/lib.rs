//! # palisade-net
//!
//! The network layer: one task owns the libp2p `Swarm`; everyone else holds a cloneable
//! handle. (Being built: for now only the configuration exists.)
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

pub mod config;
pub mod sync;

pub use config::NetConfig;
