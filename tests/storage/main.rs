//! Storage engine tests: a model-based randomized test, crash safety with injected I/O
//! failures, concurrent writers, type round-trips, and the engine's admin operations.
//!
//! One test binary (`tests/storage/`) so the large link happens once.

// Tests spawn their own clients and writers freely.
#![allow(clippy::disallowed_methods)]

mod common;
mod concurrency;
mod crash;
mod failures;
#[path = "../support/files.rs"]
mod files;
mod model;
mod ops;
mod rules;
mod types;
mod wal;
