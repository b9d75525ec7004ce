//! Target 8: see `src/signing_history.rs` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_fuzz::signing_history::run(data));
