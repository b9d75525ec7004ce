//! Target 1: see `src/envelope_decode.rs` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_fuzz::envelope_decode::run(data));
