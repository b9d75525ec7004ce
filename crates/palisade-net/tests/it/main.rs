//! Multi-node tests on loopback with real swarms. Every wait is for an event (or a condition
//! re-checked on each event) with a timeout, never a fixed sleep.

mod harness;
mod hostile;

mod gossip;
mod ingestor;
mod proofs;
mod quota;
mod resilience;
mod restore;
mod shutdown;
mod sync_v2;
