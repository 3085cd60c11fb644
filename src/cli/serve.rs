//! `flightstore serve`: the server's flags and environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flightstore::server::{shutdown_signal, Bound, CallLimits, Config, TlsFiles};
use flightstore::sql::SqlOptions;
use flightstore::storage::Options;

#[derive(Debug, clap::Args)]
pub(crate) struct Serve {
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
    /// Minimum age of a data file no version lists (left by a failed or killed write)
    /// before vacuum removes it, in seconds.
    #[arg(long, env = "FLIGHTSTORE_ORPHAN_GRACE_SECS", default_value_t = flightstore::storage::DEFAULT_ORPHAN_GRACE.as_secs())]
    orphan_grace_secs: u64,
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
    /// The auth file of tokens and users (`flightstore token create`); without one,
    /// anyone may do anything, and only a loopback address is served.
    #[arg(long, env = "FLIGHTSTORE_AUTH_FILE")]
    auth_file: Option<PathBuf>,
    /// Serve a non-loopback address without authentication (anyone who reaches it may
    /// read, write and delete everything).
    #[arg(long, env = "FLIGHTSTORE_NO_AUTH", conflicts_with = "auth_file")]
    no_auth: bool,
    /// TLS certificate chain (PEM): serve grpc+tls://. Needs --tls-key.
    #[arg(long, env = "FLIGHTSTORE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM). Needs --tls-cert.
    #[arg(long, env = "FLIGHTSTORE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Ask clients for certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "FLIGHTSTORE_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Calls served at once, all connections together; more are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "FLIGHTSTORE_MAX_CALLS", default_value_t = flightstore::server::MAX_CALLS)]
    max_calls: usize,
    /// Calls served at once on one connection; more wait their turn.
    #[arg(long, env = "FLIGHTSTORE_MAX_CALLS_PER_CONNECTION", default_value_t = flightstore::server::MAX_CALLS_PER_CONNECTION)]
    max_calls_per_connection: usize,
    /// Uploads (DoPut, ingest) at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "FLIGHTSTORE_MAX_PUTS", default_value_t = flightstore::flight::MAX_PUTS)]
    max_puts: usize,
    /// Longest a call may take, its response stream included, in seconds
    /// (DEADLINE_EXCEEDED).
    #[arg(long, env = "FLIGHTSTORE_CALL_TIMEOUT_SECS", default_value_t = flightstore::server::CALL_TIMEOUT.as_secs())]
    call_timeout_secs: u64,
    /// Longest an upload may send nothing while the server waits for it, in seconds
    /// (DEADLINE_EXCEEDED).
    #[arg(long, env = "FLIGHTSTORE_IDLE_TIMEOUT_SECS", default_value_t = flightstore::server::IDLE_TIMEOUT.as_secs())]
    idle_timeout_secs: u64,
}

impl Serve {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let s = self;
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
                orphan_grace: Duration::from_secs(s.orphan_grace_secs),
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
            auth_file: s.auth_file,
            no_auth: s.no_auth,
            tls: s.tls_cert.zip(s.tls_key).map(|(cert, key)| TlsFiles {
                cert,
                key,
                client_ca: s.tls_client_ca,
            }),
            limits: CallLimits {
                max_calls: s.max_calls.max(1),
                call_timeout: Duration::from_secs(s.call_timeout_secs.max(1)),
                idle_timeout: Duration::from_secs(s.idle_timeout_secs.max(1)),
            },
            max_calls_per_connection: s.max_calls_per_connection.max(1),
            max_puts: s.max_puts.max(1),
        };
        Bound::bind(config).await?.serve(shutdown_signal()).await
    }
}
