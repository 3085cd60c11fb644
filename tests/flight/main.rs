//! Integration tests of the Flight service: a real server on a random port, real clients.

// Tests spawn their own clients and writers freely.
#![allow(clippy::disallowed_methods)]

mod client;
mod common;
mod concurrency;
mod crash_loop;
mod disk_full;
mod errors;
mod failures;
#[path = "../support/files.rs"]
mod files;
mod java;
mod python;
mod security;
mod shutdown;
mod sql;
mod surface;
