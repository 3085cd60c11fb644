//! Fuzz target `command`: a FlightDescriptor command (ReadRequest / WriteRequest) or ListFlights criteria.
//! See `fuzz/src/lib.rs` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flightstore_fuzz::check_command(data);
});
