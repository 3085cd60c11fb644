//! The network server: binds the port, tunes the transport, serves [`FlightStore`] until
//! a shutdown signal, then lets in-flight calls finish.
//!
//! ```text
//! TCP (TLS: tls.rs) ─► limits.rs (calls at once, deadlines) ─► auth.rs (who is calling)
//!   ─► flight: DoGet's fast path (zero_copy) or the FlightService
//! ```

mod auth;
mod limits;

pub use auth::{AuthLayer, Authenticate};
pub use limits::{CallLimits, Limit, LimitLayer};

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tracing::{info, warn};

use crate::auth::Authenticator;

use crate::flight::{FlightStore, ZeroCopyLayer, ENDPOINT_ROWS, MAX_MESSAGE_BYTES, MAX_PUTS};
use crate::sql::{SqlChecks, SqlOptions};
use crate::storage::{Engine, Options};

/// What `flightstore serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data root: a folder path, `file:///path` or `memory://`.
    pub data: String,
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
    /// Largest gRPC message accepted or sent, bytes.
    pub max_message_bytes: usize,
    /// Reads over more rows are split into several endpoints.
    pub endpoint_rows: u64,
    /// Engine settings.
    pub options: Options,
    /// SQL settings.
    pub sql: SqlOptions,
    /// The auth file (tokens, users, grants); `None`: no authentication, which is only
    /// allowed on a loopback address unless `no_auth` says so.
    pub auth_file: Option<PathBuf>,
    /// Serve without authentication on any address.
    pub no_auth: bool,
    /// TLS (`grpc+tls://`), and client certificates (mTLS).
    pub tls: Option<TlsFiles>,
    /// Calls at once, deadlines.
    pub limits: CallLimits,
    /// Calls served at once on one connection (more wait their turn).
    pub max_calls_per_connection: usize,
    /// Uploads (`DoPut`) at once; more are refused with `RESOURCE_EXHAUSTED`.
    pub max_puts: usize,
}

/// PEM files of the server's TLS identity.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// Certificate authority that client certificates must chain to (mTLS); `None`: no
    /// client certificates asked.
    pub client_ca: Option<PathBuf>,
}

/// Default of [`CallLimits::max_calls`].
pub const MAX_CALLS: usize = 1024;
/// Default of [`Config::max_calls_per_connection`].
pub const MAX_CALLS_PER_CONNECTION: usize = 128;
/// Default of [`CallLimits::call_timeout`].
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default of [`CallLimits::idle_timeout`].
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for Config {
    fn default() -> Self {
        Self {
            data: "./flightstore-data".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 8815)),
            max_message_bytes: MAX_MESSAGE_BYTES,
            endpoint_rows: ENDPOINT_ROWS,
            options: Options {
                compact_in_background: true,
                wal: true,
                ..Options::default()
            },
            sql: SqlOptions::default(),
            auth_file: None,
            no_auth: false,
            tls: None,
            limits: CallLimits {
                max_calls: MAX_CALLS,
                call_timeout: CALL_TIMEOUT,
                idle_timeout: IDLE_TIMEOUT,
            },
            max_calls_per_connection: MAX_CALLS_PER_CONNECTION,
            max_puts: MAX_PUTS,
        }
    }
}

/// A bound server, not yet serving: its address is known (useful with port 0).
#[derive(Debug)]
pub struct Bound {
    listener: TcpListener,
    engine: Engine,
    auth: Option<Authenticator>,
    config: Config,
}

impl Bound {
    /// Open the engine and bind the port.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let auth = match &config.auth_file {
            Some(path) => Some(Authenticator::open(path)?),
            None if config.bind.ip().is_loopback() => None,
            None if config.no_auth => {
                warn!(
                    bind = %config.bind,
                    "NO AUTHENTICATION: anyone who reaches this address may read, write and \
                     delete everything (--no-auth)"
                );
                None
            }
            None => anyhow::bail!(
                "refusing to serve {} without authentication: give --auth-file (see \
                 `flightstore token create`), bind to 127.0.0.1, or say --no-auth",
                config.bind
            ),
        };
        let mut options = config.options.clone();
        // Validation checks are SQL, planned with DataFusion like read filters.
        options.checks.get_or_insert_with(|| Arc::new(SqlChecks));
        let engine = Engine::open(&config.data, options)?;
        let listener = TcpListener::bind(config.bind).await?;
        Ok(Self {
            listener,
            engine,
            auth,
            config,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound socket has an address")
    }

    /// Serve until `shutdown` completes; in-flight calls finish first.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let addr = self.local_addr();
        info!(
            %addr, data = %self.config.data, tls = self.config.tls.is_some(),
            auth = self.auth.is_some(), "flightstore listening"
        );
        let limit = self.config.max_message_bytes;
        let engine = self.engine.clone();
        let store = FlightStore::new(self.engine, &self.config.sql)?
            .with_endpoint_rows(self.config.endpoint_rows)
            .with_max_puts(self.config.max_puts)
            .with_auth(self.auth.clone());
        let service = FlightServiceServer::new(store.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        // Small Flight messages must not wait for Nagle; large windows keep bulk
        // transfers from stalling on flow control (see PERF-NOTES.md).
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let mut builder = Server::builder();
        if let Some(tls) = &self.config.tls {
            builder = builder.tls_config(tls_config(tls)?)?;
        }
        // Outermost first: limits, then authentication, then DoGet's fast path.
        let layers = tower_layer::Stack::new(
            tower_layer::Stack::new(ZeroCopyLayer::new(store), AuthLayer::new(self.auth)),
            LimitLayer::new(self.config.limits),
        );
        let served = builder
            .initial_stream_window_size(16 << 20)
            .initial_connection_window_size(32 << 20)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            // A peer that stops answering pings is dropped with its calls.
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .concurrency_limit_per_connection(self.config.max_calls_per_connection.max(1))
            // DoGet writes its frames itself, sharing the column buffers (zero_copy.rs).
            .layer(layers)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        // In-flight calls have finished: stop the background compactor too.
        engine.shutdown().await;
        served?;
        info!("flightstore stopped");
        Ok(())
    }
}

/// The TLS settings of `files`.
fn tls_config(files: &TlsFiles) -> anyhow::Result<ServerTlsConfig> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
    };
    let identity = Identity::from_pem(read(&files.cert)?, read(&files.key)?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    info!("shutdown requested: finishing in-flight calls");
}
