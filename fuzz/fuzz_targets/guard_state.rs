//! Target 7: see `src/guard_state.rs` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_fuzz::guard_state::run(data));
