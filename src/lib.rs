//! Flightstore: a time-series store that speaks Apache Arrow Flight.
//!
//! ```text
//!   clients (pyarrow, Rust, Java, Go, ADBC)
//!        │ Arrow Flight / gRPC
//!   flight   (FlightService: DoPut, DoGet, GetFlightInfo, actions)   [next issue]
//!        │
//!   sql      (DataFusion: row filters, later Flight SQL)
//!        │
//!   storage  (Engine: ordered, versioned Parquet items; manifests, merge, compaction)
//!        │
//!   object_store (local folder, memory, S3-compatible)
//! ```
//!
//! # Layout
//! - [`storage`]: the engine; no dependency on anything above it.
//! - [`sql`]: DataFusion glue (row filters).
#![warn(missing_docs)]

pub mod sql;
pub mod storage;
