//! Fuzz target `action`: a DoAction body, as every action's message.
//! See `fuzz/src/lib.rs` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flightstore_fuzz::check_action(data);
});
