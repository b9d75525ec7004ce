//! Handlers, one module per area. Each handler carries its OpenAPI description.

pub(crate) mod anomalies;
pub(crate) mod backup;
pub(crate) mod events;
pub(crate) mod guard;
pub(crate) mod node;
pub(crate) mod peers;
pub(crate) mod records;
pub(crate) mod transfer;
pub(crate) mod verdict;
