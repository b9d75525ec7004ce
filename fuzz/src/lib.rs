//! Palisade fuzz targets.
//!
//! Each module is one target: a `run(data)` function that feeds untrusted bytes to one input
//! surface of the node and **asserts invariants** (round trips, bounded state, consistent
//! counters), not just "no panic". The files in `fuzz_targets/` are one-line wrappers, so the
//! logic can be read, reviewed and reused (the seed generator shares `common`) apart from
//! the libFuzzer harness.
//!
//! | target            | input                                                  |
//! |-------------------|--------------------------------------------------------|
//! | `envelope_decode` | one wire envelope / payload (gossip, sync, import)     |
//! | `ingest_pipeline` | a sequence of messages from fake peers                 |
//! | `sync_codec`      | a sync request or response frame                       |
//! | `config_parse`    | `palisade.toml` text (`[network]` and `[limits]`)      |
//! | `store_corrupt`   | garbage written into the sled trees under a store      |
//! | `guard_state`     | a sequence of guard operations (connect ... restart)   |
//! | `admin_api`       | admin API requests: bodies, query strings, paths       |
//! | `signing_history` | the signing-history file's bytes                       |

pub mod admin_api;
pub mod backup_document;
pub mod common;
pub mod config_parse;
pub mod envelope_decode;
pub mod guard_state;
pub mod ingest_pipeline;
pub mod signing_history;
pub mod store_corrupt;
pub mod sync_codec;
