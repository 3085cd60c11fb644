//! The network server: binds the port, tunes the transport, serves [`FlightStore`] until
//! a shutdown signal, then lets in-flight calls finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tracing::info;

use crate::flight::{FlightStore, ZeroCopyLayer, ENDPOINT_ROWS, MAX_MESSAGE_BYTES};
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
}

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
        }
    }
}

/// A bound server, not yet serving: its address is known (useful with port 0).
#[derive(Debug)]
pub struct Bound {
    listener: TcpListener,
    engine: Engine,
    config: Config,
}

impl Bound {
    /// Open the engine and bind the port.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let mut options = config.options.clone();
        // Validation checks are SQL, planned with DataFusion like read filters.
        options.checks.get_or_insert_with(|| Arc::new(SqlChecks));
        let engine = Engine::open(&config.data, options)?;
        let listener = TcpListener::bind(config.bind).await?;
        Ok(Self {
            listener,
            engine,
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
        info!(%addr, data = %self.config.data, "flightstore listening");
        let limit = self.config.max_message_bytes;
        let engine = self.engine.clone();
        let store = FlightStore::new(self.engine, &self.config.sql)?
            .with_endpoint_rows(self.config.endpoint_rows);
        let service = FlightServiceServer::new(store.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        // Small Flight messages must not wait for Nagle; large windows keep bulk
        // transfers from stalling on flow control (see PERF-NOTES.md).
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let served = Server::builder()
            .initial_stream_window_size(16 << 20)
            .initial_connection_window_size(32 << 20)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            // DoGet writes its frames itself, sharing the column buffers (zero_copy.rs).
            .layer(ZeroCopyLayer::new(store))
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
