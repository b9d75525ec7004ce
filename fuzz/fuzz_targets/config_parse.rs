//! Target 5: see `src/config_parse.rs` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_fuzz::config_parse::run(data));
