//! Fuzz target `time`: a time string (parse_time / format_time).
//! See `fuzz/src/lib.rs` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flightstore_fuzz::check_time_text(data);
});
