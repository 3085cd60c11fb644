//! Flightstore: a time-series store that speaks Apache Arrow Flight.
//!
//! ```text
//!   clients (pyarrow, Rust, Java, Go, ADBC)
//!        │ Arrow Flight / gRPC
//!   server   (tonic transport: port, TCP_NODELAY, HTTP/2 windows, shutdown)
//!        │
//!   flight   (FlightService: DoPut, DoGet, GetFlightInfo, ListFlights, actions)
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
//! - [`flight`]: the Flight surface; wire messages in `proto/` (crate `flightstore-client`).
//! - [`server`]: binding, transport tuning and shutdown; `src/main.rs` is the CLI.
#![warn(missing_docs)]

pub mod flight;
pub mod server;
pub mod sql;
pub mod storage;
