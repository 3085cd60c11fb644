//! The auth layer: every call but `Handshake` is authenticated here, in one place, before
//! it reaches the service (the `DoGet` fast path included).
//!
//! ```text
//! authorization: Bearer <token> ─► Authenticator::bearer ─► Access in the extensions
//! no auth file                  ─► Access::everything
//! Handshake                     ─► passed on: it logs users in itself
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::Status;

use crate::auth::{credentials, Access, Authenticator, Credentials};

/// The path of the `Handshake` call.
const HANDSHAKE: &str = "/arrow.flight.protocol.FlightService/Handshake";

/// A tower layer that authenticates every call.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Option<Authenticator>,
}

impl AuthLayer {
    /// Authenticate with `auth`; `None` lets every caller do everything.
    pub fn new(auth: Option<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Authenticate<S> {
    inner: S,
    auth: Option<Authenticator>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for Authenticate<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != HANDSHAKE {
            match access(self.auth.as_ref(), req.headers()) {
                Ok(access) => {
                    req.extensions_mut().insert(access);
                }
                Err(status) => {
                    tracing::info!(
                        path = req.uri().path(),
                        reason = status.message(),
                        "call refused: unauthenticated"
                    );
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            }
        }
        Box::pin(self.inner.call(req))
    }
}

/// The access of a call's headers.
fn access(auth: Option<&Authenticator>, headers: &http::HeaderMap) -> Result<Access, Status> {
    let Some(auth) = auth else {
        return Ok(Access::everything());
    };
    let header = headers.get("authorization").and_then(|v| v.to_str().ok());
    let unauthenticated = |e: crate::auth::Unauthenticated| Status::unauthenticated(e.0);
    match credentials(header).map_err(unauthenticated)? {
        Credentials::Bearer(token) => auth.bearer(&token).map_err(unauthenticated),
        Credentials::Basic { .. } => Err(Status::unauthenticated(
            "Basic credentials are taken by Handshake only: log in there and send the \
             Bearer token it returns",
        )),
        Credentials::Anonymous => Err(Status::unauthenticated(
            "no credentials: send `authorization: Bearer <token>` (or log in with Handshake)",
        )),
    }
}
