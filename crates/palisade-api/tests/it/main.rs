//! Integration tests: real nodes, their admin API over the Unix socket.

mod cluster;
mod connections;
mod errors;
mod events;
mod harness;
mod openapi;
mod records;
mod server;
