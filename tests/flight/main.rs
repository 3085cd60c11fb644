//! Integration tests of the Flight service: a real server on a random port, real clients.

mod common;
mod concurrency;
mod errors;
mod failures;
#[path = "../support/files.rs"]
mod files;
mod python;
mod shutdown;
mod surface;
