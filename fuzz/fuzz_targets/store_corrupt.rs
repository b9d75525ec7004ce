//! Target 6: see `src/store_corrupt.rs` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_fuzz::store_corrupt::run(data));
