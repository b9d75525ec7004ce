//! Integration tests of the store on real sled databases in temp directories.

mod backup;
mod check;
mod compact;
mod crash;
mod disk;
mod feeds;
mod head_cache;
mod manifest;
mod persistence;
mod queries;
mod quota;

use palisade_store::{Source, Store, StoreConfig, StoredMeta};
use palisade_types::fixtures::FIXED_NOW_MS;

pub(crate) fn open(dir: &std::path::Path) -> Store {
    Store::open(&StoreConfig::new(dir.join("db"))).unwrap()
}

pub(crate) fn meta() -> StoredMeta {
    StoredMeta { received_at_ms: FIXED_NOW_MS, source: Source::Gossip }
}
