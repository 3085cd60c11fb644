//! Fuzz target `do_put`: a DoPut request stream (gRPC frames of FlightData with Arrow IPC).
//! See `fuzz/src/lib.rs` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flightstore_fuzz::do_put::check_do_put(data);
});
