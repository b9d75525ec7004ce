//! Target 4: see `src/admin_api.rs` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_fuzz::admin_api::run(data));
