//! Target 2: see `src/ingest_pipeline.rs` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_fuzz::ingest_pipeline::run(data));
