//! The `flightstore` binary: `flightstore serve`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use flightstore::server::{shutdown_signal, Bound, Config};
use flightstore::sql::SqlOptions;
use flightstore::storage::Options;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "flightstore",
    version,
    about = "A time-series store that speaks Apache Arrow Flight"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Flight server.
    Serve(Serve),
}

#[derive(Debug, clap::Args)]
struct Serve {
    /// Data root: a folder, file:///path, or memory:// (nothing persists).
    #[arg(long, env = "FLIGHTSTORE_DATA", default_value = "./flightstore-data")]
    data: String,
    /// Address to listen on; port 0 picks a free port (logged).
    #[arg(long, env = "FLIGHTSTORE_BIND", default_value = "127.0.0.1:8815")]
    bind: SocketAddr,
    /// Largest gRPC message accepted or sent, in MiB.
    #[arg(long, env = "FLIGHTSTORE_MAX_MESSAGE_MB", default_value_t = 64)]
    max_message_mb: usize,
    /// Reads over more rows are split into several endpoints (fetch them in parallel).
    #[arg(long, env = "FLIGHTSTORE_ENDPOINT_ROWS", default_value_t = flightstore::flight::ENDPOINT_ROWS)]
    endpoint_rows: u64,
    /// Memory budget of upload chunks being sorted, all uploads together, in MiB. An
    /// upload waits for its share (see --stage-wait-secs).
    #[arg(long, env = "FLIGHTSTORE_STAGE_MB", default_value_t = flightstore::storage::DEFAULT_STAGE_BYTES >> 20)]
    stage_mb: usize,
    /// How long an upload waits for its share of --stage-mb before it fails with
    /// RESOURCE_EXHAUSTED, in seconds.
    #[arg(long, env = "FLIGHTSTORE_STAGE_WAIT_SECS", default_value_t = flightstore::storage::DEFAULT_STAGE_WAIT.as_secs())]
    stage_wait_secs: u64,
    /// Rows per file of new items that do not set `file_target_rows`.
    #[arg(long, env = "FLIGHTSTORE_FILE_ROWS", default_value_t = Options::default().file_target_rows)]
    file_rows: u64,
    /// How long old versions stay readable (unless a snapshot holds them), in seconds.
    #[arg(long, env = "FLIGHTSTORE_RETENTION_SECS", default_value_t = 3600)]
    retention_secs: u64,
    /// Acknowledge every write only once it is stored as Parquet: no write-ahead log.
    #[arg(long, env = "FLIGHTSTORE_NO_WAL")]
    no_wal: bool,
    /// Memory of appends acknowledged through the write-ahead log and not yet persisted
    /// as Parquet, all items together, in MiB.
    #[arg(long, env = "FLIGHTSTORE_WAL_MB", default_value_t = flightstore::storage::DEFAULT_WAL_BYTES >> 20)]
    wal_mb: usize,
    /// Memory all SQL queries together may hold, in MiB; beyond it they spill to disk,
    /// then fail with RESOURCE_EXHAUSTED.
    #[arg(long, env = "FLIGHTSTORE_SQL_MEMORY_MB", default_value_t = flightstore::sql::DEFAULT_MEMORY_BYTES >> 20)]
    sql_memory_mb: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // A closed stderr must not turn a log line into a panic (and a failed shutdown).
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLIGHTSTORE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(s) => {
            let config = Config {
                data: s.data,
                bind: s.bind,
                max_message_bytes: s.max_message_mb << 20,
                endpoint_rows: s.endpoint_rows,
                options: Options {
                    stage_bytes: s.stage_mb.max(1) << 20,
                    stage_wait: Duration::from_secs(s.stage_wait_secs),
                    file_target_rows: s.file_rows.max(1),
                    vacuum_retention: Duration::from_secs(s.retention_secs),
                    // Writes are acknowledged without waiting for the merge of small files.
                    compact_in_background: true,
                    wal: !s.no_wal,
                    wal_bytes: s.wal_mb.max(1) << 20,
                    ..Options::default()
                },
                sql: SqlOptions {
                    memory_bytes: s.sql_memory_mb.max(1) << 20,
                    ..SqlOptions::default()
                },
            };
            Bound::bind(config).await?.serve(shutdown_signal()).await
        }
    }
}
