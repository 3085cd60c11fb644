//! Flightstore: a time-series store that speaks Apache Arrow Flight.
//!
//! ```text
//!   clients (pyarrow, Rust, Java, Go, ADBC, JDBC)
//!        │ Arrow Flight / Flight SQL / gRPC
//!   server   (tonic transport: port, TLS, TCP_NODELAY, HTTP/2 windows, shutdown;
//!        │    layers: call limits and deadlines, then authentication: every call
//!        │    gets an auth::Access, which flight and sql check per collection)
//!   flight   (FlightService: DoPut, DoGet, GetFlightInfo, ListFlights, actions;
//!        │    flight/sql: Flight SQL commands, tickets and actions)
//!   sql      (DataFusion: items as tables over the engine's read plans; row filters)
//!        │
//!   storage  (Engine: ordered, versioned Parquet items; manifests, merge, compaction)
//!        │
//!   object_store (local folder, memory, S3-compatible)
//! ```
//!
//! # The write path
//! ```text
//! DoPut ─► flight/do_put: descriptor ─► request::write_options
//!   ─► storage Engine::write (on the CPU runtime)
//!        rules          the item's data rules, batch by batch: columns renamed, dropped,
//!                       converted and filled (presets, legacy maps), then validated
//!                       (item_column: Engine::write_batch splits, checks and spools the
//!                       upload, then writes each item)
//!        wal            rows only (an append, or an upsert keeping the last row):
//!                       Arrow IPC to the log, one fdatasync per group of writers,
//!                       acknowledged; persisted as Parquet in the background (one
//!                       manifest per version; upserts through write/plan)
//!        otherwise:
//!        write/prepare  settings, schema evolution, key and range of the write
//!        write/stage    chunks under the memory budget ─► merge/sort ─► parquet/sink:
//!                       run files, invisible until the commit
//!        write/plan     runs ∪ the stored row groups they touch ─► merge/kway
//!                       ─► merge/dedup ─► parquet/sink
//!        manifest/commit  put-if-absent _manifest/<v+1>.json, the one retry loop
//!        compact/compactor  small files merged later, on one background thread
//!   ◄─ PutResult {"version", "rows_received", "rows_written"}
//! ```
//!
//! # The read path
//! ```text
//! GetFlightInfo ─► flight/read ─► storage Engine::plan_read ─► ReadPlan (version,
//!                  schema, estimates, splits) ─► one ticket per split (request::ticket)
//! DoGet ticket  ─► Engine::plan_read ─► Engine::execute
//!                  (the stored manifest plus the log's durable entries, in memory)
//!                  read/scan: files decode ahead on the reader's runtime (parquet/scan prunes
//!                  row groups and pages); the log's upserts merged in by key range
//!                  (read/piece) ─► filter, n_prev, limit/last, projection
//!                  ─► FlightDataEncoder ─► the client
//!                  (a grid: read/grid walks the rows beside the slots; several items:
//!                  one plan each, merged in time order by read/many)
//! ```
//!
//! # The SQL path
//! ```text
//! GetFlightInfo(CommandStatementQuery | prepared) ─► flight/sql ─► sql::Sql::plan:
//!                  each item named pinned to a version (sql/catalog), DataFusion plan
//!                  ─► schema + a ticket carrying the SQL, parameters and versions
//! DoGet ticket  ─► plan again at those versions ─► sql/table: ItemTable::scan turns
//!                  ranges of the ordering column, projection and limit into a ReadPlan
//!                  ─► sql/scan: ItemScanExec runs its splits with Engine::execute
//!                  ─► DataFusion operators ─► the client
//! ```
//!
//! # Layout
//! - [`storage`]: the engine; no dependency on anything above it.
//! - [`sql`]: SQL on DataFusion: items as tables, pushdown, time travel, row filters.
//! - [`flight`]: the Flight surface and the one error-to-status map; the wire codec is the
//!   crate `flightstore-client` (`client/`), shared with clients.
//! - [`server`]: binding, transport tuning and shutdown; `src/main.rs` is the CLI.
#![warn(missing_docs)]

pub mod auth;
pub mod flight;
pub mod server;
pub mod sql;
pub mod storage;
