//! Target 9: see `src/backup_document.rs` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| palisade_fuzz::backup_document::run(data));
