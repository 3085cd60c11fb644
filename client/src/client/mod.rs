//! The async client: one [`Client`] per server, cheap to clone (clones share the
//! connection), every call of the Flight surface typed.
//!
//! ```text
//!  Client::builder(url).token(..).connect()
//!    ├── write / append / upsert ── DoPut(WriteRequest, stream of batches) ──> Receipt
//!    ├── read(Read)              ── GetFlightInfo ──> DoGet per endpoint (in parallel,
//!    │                               yielded in order) ──> ReadStream of batches
//!    ├── sql(query)              ── Flight SQL ──> ReadStream
//!    └── item_info, list_items, create_snapshot, ... ── DoAction ──> typed results
//! ```

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightClient, FlightInfo};
use base64::Engine as _;
use futures::TryStreamExt;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::proto;

mod actions;
mod error;
mod read;
mod sql;
mod write;

pub use actions::{
    Change, CompactReceipt, DeleteRangeReceipt, Field, Health, ItemInfo, SnapshotCreated,
    SnapshotInfo, VacuumReport, VersionInfo,
};
pub use error::{Error, Result};
pub use read::{Read, ReadStream};
pub use write::{ItemReceipt, Receipt, Write};

/// The largest message sent or received (a batch of a DoGet or DoPut), as the server's
/// default `--max-message-mb`.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Endpoints of a read fetched at once by default.
const PARALLELISM: usize = 4;

/// The HTTP/2 window of each call, as the server's (PERF-NOTES.md: large windows keep
/// bulk transfers at link speed).
const STREAM_WINDOW: u32 = 16 << 20;

/// A client of one Flightstore server.
///
/// ```no_run
/// # async fn run() -> flightstore_client::Result<()> {
/// use flightstore_client::{Client, Read};
/// use futures::TryStreamExt;
///
/// let client = Client::builder("grpc://127.0.0.1:8815").token("fst_...").connect().await?;
/// let batches: Vec<_> = client
///     .read(Read::new("NASDAQ", "AAPL").start("2024-01-02").end("2024-01-03"))
///     .await?
///     .try_collect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: FlightServiceClient<Channel>,
    url: String,
    /// The `authorization` header of every call, if any.
    authorization: Option<AsciiMetadataValue>,
    parallelism: usize,
}

/// How to connect: [`Client::builder`], then [`Builder::connect`].
#[derive(Debug, Clone)]
pub struct Builder {
    url: String,
    token: Option<String>,
    login: Option<(String, String)>,
    ca_pem: Option<Vec<u8>>,
    identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    parallelism: usize,
}

impl Builder {
    /// Present this bearer token (`fst_...` from `flightstore token create`) on every call.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Log in with a user and password (`Handshake` with Basic credentials) when
    /// connecting, and present the session token it returns on every call.
    pub fn login(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.login = Some((user.into(), password.into()));
        self
    }

    /// Trust this CA (PEM) for a `grpc+tls://` server, instead of the public web roots.
    pub fn ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Present this client certificate and key (PEM), for a server that asks (mTLS).
    pub fn identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.identity_pem = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// How many endpoints of a read are fetched at once (default 4; at least 1).
    pub fn parallelism(mut self, endpoints: usize) -> Self {
        self.parallelism = endpoints.max(1);
        self
    }

    /// Connect (and log in, if [`Builder::login`] was given).
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] for a bad URL or TLS file or an unreachable server;
    /// [`Error::Unauthenticated`] for a refused login.
    pub async fn connect(self) -> Result<Client> {
        let url = self.url.clone();
        let connect_error = |message: String| Error::Connect {
            url: url.clone(),
            message,
        };
        let (address, tls) = http_address(&self.url).map_err(connect_error)?;
        // The endpoints read ahead of the one being consumed stop reading when their
        // queue is full, and may then each hold a whole stream window unread: the
        // connection's window must leave room beyond all of them for the read being
        // consumed, or it starves (a read of 4 or more endpoints hung).
        let streams = u32::try_from(self.parallelism + 2).unwrap_or(u32::MAX);
        let mut endpoint = Endpoint::from_shared(address)
            .map_err(|e| connect_error(e.to_string()))?
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(STREAM_WINDOW.saturating_mul(streams));
        if tls {
            let mut config = match &self.ca_pem {
                Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
                None => ClientTlsConfig::new().with_webpki_roots(),
            };
            if let Some((cert, key)) = &self.identity_pem {
                config = config.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| connect_error(e.to_string()))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| connect_error(error_chain(&e)))?;
        let inner = FlightServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut client = Client {
            inner,
            url: self.url,
            authorization: None,
            parallelism: self.parallelism,
        };
        if let Some(token) = &self.token {
            client.authorization = Some(bearer(token)?);
        }
        if let Some((user, password)) = &self.login {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let mut flight = FlightClient::new_from_inner(client.inner.clone());
            flight
                .add_header("authorization", &format!("Basic {basic}"))
                .map_err(|_| {
                    Error::InvalidArgument("the user name or password is not ASCII".into())
                })?;
            let token = flight.handshake(bytes::Bytes::new()).await?;
            let token = std::str::from_utf8(&token)
                .map_err(|_| Error::Protocol("the session token is not UTF-8".into()))?;
            client.authorization = Some(bearer(token)?);
        }
        Ok(client)
    }
}

impl Client {
    /// Connect to `url` without credentials: `grpc://host:port`, or `grpc+tls://host:port`
    /// for TLS with the public web roots.
    ///
    /// # Errors
    ///
    /// As [`Builder::connect`].
    pub async fn connect(url: impl Into<String>) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// Options for connecting to `url`.
    pub fn builder(url: impl Into<String>) -> Builder {
        Builder {
            url: url.into(),
            token: None,
            login: None,
            ca_pem: None,
            identity_pem: None,
            parallelism: PARALLELISM,
        }
    }

    /// The URL this client connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// An arrow-flight client on this connection with this client's credentials, for a
    /// call this crate does not wrap.
    pub fn flight_client(&self) -> FlightClient {
        let mut flight = FlightClient::new_from_inner(self.inner.clone());
        if let Some(value) = &self.authorization {
            flight.metadata_mut().insert("authorization", value.clone());
        }
        flight
    }

    /// `ListFlights`: a FlightInfo per item (path descriptor, schema, rows, bytes;
    /// app_metadata JSON with `start`, `end`, `version`, `metadata`).
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound` for an unknown collection, ...).
    pub async fn list_flights(&self, criteria: proto::ListCriteria) -> Result<Vec<FlightInfo>> {
        let criteria = crate::encode_json(&criteria);
        Ok(self
            .flight_client()
            .list_flights(criteria)
            .await?
            .try_collect()
            .await?)
    }
}

/// `authorization: Bearer <token>`.
fn bearer(token: &str) -> Result<AsciiMetadataValue> {
    format!("Bearer {token}")
        .parse()
        .map_err(|_| Error::InvalidArgument("a token is printable ASCII".into()))
}

/// The `http(s)://` address of a Flight URL, and whether it is TLS: `grpc://` and
/// `grpc+tcp://` are plaintext, `grpc+tls://` is TLS; `http(s)://` are taken as they are,
/// and a bare `host:port` is plaintext.
fn http_address(url: &str) -> std::result::Result<(String, bool), String> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("grpc", url));
    let tls = match scheme {
        "grpc" | "grpc+tcp" | "http" => false,
        "grpc+tls" | "https" => true,
        other => {
            return Err(format!(
                "unknown scheme {other:?}: use grpc://host:port or grpc+tls://host:port"
            ))
        }
    };
    if rest.is_empty() {
        return Err("the URL has no host".into());
    }
    let scheme = if tls { "https" } else { "http" };
    Ok((format!("{scheme}://{rest}"), tls))
}

/// An error and its causes on one line (tonic's transport errors say little at the top).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flight_urls_map_to_http_addresses() {
        let ok = |url: &str| http_address(url).unwrap();
        assert_eq!(
            ok("grpc://127.0.0.1:8815"),
            ("http://127.0.0.1:8815".into(), false)
        );
        assert_eq!(ok("grpc+tcp://h:1"), ("http://h:1".into(), false));
        assert_eq!(ok("grpc+tls://h:1"), ("https://h:1".into(), true));
        assert_eq!(
            ok("127.0.0.1:8815"),
            ("http://127.0.0.1:8815".into(), false)
        );
        assert!(http_address("ftp://h:1")
            .unwrap_err()
            .contains("unknown scheme"));
        assert!(http_address("grpc://").is_err());
    }
}
