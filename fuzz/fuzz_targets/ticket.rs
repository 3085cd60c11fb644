//! Fuzz target `ticket`: a DoGet ticket (ReadRequest, JSON or protobuf).
//! See `fuzz/src/lib.rs` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flightstore_fuzz::check_ticket(data);
});
