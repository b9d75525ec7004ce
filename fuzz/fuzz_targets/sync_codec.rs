//! Target 3: see `src/sync_codec.rs` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_fuzz::sync_codec::run(data));
