//! The Arrow Flight surface: `DoPut`, `GetFlightInfo`, `DoGet`, `ListFlights`,
//! `GetSchema`, `DoAction` / `ListActions` (see DESIGN.md, "The Flight surface").
//!
//! ```text
//! DoPut          do_put.rs   descriptor + schema ─► request::write_options ─► Engine::write
//! GetFlightInfo  read.rs     ReadRequest ─► Engine::plan_read ─► splits ─► one ticket each
//! DoGet          zero_copy.rs ticket ─► read.rs (plan, execute) ─► IPC frames that share
//!                            the column buffers ─► HTTP/2 (the tonic path: read.rs)
//! ListFlights    read.rs     Engine::list_items ─► item_info per item
//! DoAction       actions.rs  body ─► one engine call ─► JSON result
//! ```
//!
//! Commands, tickets and action bodies are the messages of `proto/flightstore.proto`, in
//! protobuf binary or their JSON form ([`request`]). Every error becomes a status in one
//! place: `From<`[`Error`]`> for tonic::Status` ([`error`]).

mod actions;
mod do_put;
mod error;
mod handshake;
mod read;
mod request;
mod sql;
mod zero_copy;

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::Semaphore;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::stream::{self, StreamExt};
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::instrument;

use crate::auth::{Access, Authenticator};
use crate::sql::{Sql, SqlOptions};
use crate::storage::Engine;

pub use actions::ACTIONS;
pub use do_put::WRITE_ID_HEADER;
pub use error::{Error, Result, MAX_STATUS_MESSAGE_BYTES};
pub use zero_copy::{ZeroCopyDoGet, ZeroCopyLayer};

/// Target size of a `FlightData` message the server sends: larger batches are split,
/// which keeps messages under the 4 MiB receive limit many gRPC clients default to.
pub const MAX_FLIGHT_DATA_BYTES: usize = 2 << 20;
/// Largest message either side accepts (uploads may carry big batches).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Default of [`FlightStore::with_max_puts`].
pub const MAX_PUTS: usize = 64;
/// A read over more rows than this is split into several endpoints (at file bounds).
pub const ENDPOINT_ROWS: u64 = 2 << 20;

type RpcStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send + 'static>>;

/// The Flightstore Flight service over one engine.
#[derive(Debug, Clone)]
pub struct FlightStore {
    engine: Engine,
    endpoint_rows: u64,
    sql: sql::FlightSql,
    /// Checks `Handshake` logins; `None`: no authentication (anyone may do anything).
    auth: Option<Authenticator>,
    /// Uploads at once.
    puts: Arc<Semaphore>,
}

impl FlightStore {
    /// Serve `engine`, with SQL under `sql_options`.
    pub fn new(engine: Engine, sql_options: &SqlOptions) -> Result<Self> {
        let sql = sql::FlightSql::new(Sql::new(engine.clone(), sql_options)?);
        Ok(Self {
            engine,
            endpoint_rows: ENDPOINT_ROWS,
            sql,
            auth: None,
            puts: Arc::new(Semaphore::new(MAX_PUTS)),
        })
    }

    /// Serve at most `n` uploads (`DoPut`) at once; more are refused with
    /// `RESOURCE_EXHAUSTED`.
    pub fn with_max_puts(mut self, n: usize) -> Self {
        self.puts = Arc::new(Semaphore::new(n.max(1)));
        self
    }

    /// Log users in (`Handshake`) with `auth`. Every other call is authenticated before
    /// it reaches the service (the server's auth layer puts its [`Access`] in the
    /// request's extensions).
    pub fn with_auth(mut self, auth: Option<Authenticator>) -> Self {
        self.auth = auth;
        self
    }

    /// Split reads into endpoints of about `rows` rows (at file bounds).
    pub fn with_endpoint_rows(mut self, rows: u64) -> Self {
        self.endpoint_rows = rows.max(1);
        self
    }
}

/// The access of an authenticated call. A call that did not pass the server's auth layer
/// has none and is refused: the check fails closed.
pub(crate) fn access(extensions: &http::Extensions) -> std::result::Result<Access, Status> {
    extensions.get::<Access>().cloned().ok_or_else(|| {
        Status::unauthenticated("the call was not authenticated (no auth layer in front)")
    })
}

/// The status of a call Flightstore does not serve.
fn unimplemented(call: &'static str, hint: &'static str) -> Status {
    Error::Unimplemented { call, hint }.into()
}

/// One result as a stream.
fn once<T: Send + 'static>(item: T) -> RpcStream<T> {
    stream::once(async move { Ok(item) }).boxed()
}

#[tonic::async_trait]
impl FlightService for FlightStore {
    type HandshakeStream = RpcStream<HandshakeResponse>;
    type ListFlightsStream = RpcStream<FlightInfo>;
    type DoGetStream = RpcStream<FlightData>;
    type DoPutStream = RpcStream<PutResult>;
    type DoActionStream = RpcStream<arrow_flight::Result>;
    type ListActionsStream = RpcStream<ActionType>;
    type DoExchangeStream = RpcStream<FlightData>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<Response<Self::HandshakeStream>, Status> {
        let token = handshake::token(self.auth.as_ref(), request.metadata()).await?;
        let mut response = Response::new(once(HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        }));
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("the token is not a header value"))?;
        response.metadata_mut().insert("authorization", value);
        Ok(response)
    }

    #[instrument(skip_all)]
    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> std::result::Result<Response<Self::ListFlightsStream>, Status> {
        let access = access(request.extensions())?;
        let infos = self.list(&access, &request.into_inner().expression).await?;
        Ok(Response::new(
            stream::iter(infos.into_iter().map(Ok)).boxed(),
        ))
    }

    #[instrument(skip_all)]
    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let access = access(request.extensions())?;
        Ok(Response::new(
            self.flight_info(&access, request.into_inner()).await?,
        ))
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<PollInfo>, Status> {
        let access = access(request.extensions())?;
        let info = self.flight_info(&access, request.into_inner()).await?;
        Ok(Response::new(PollInfo::new().with_info(info)))
    }

    #[instrument(skip_all)]
    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<SchemaResult>, Status> {
        let access = access(request.extensions())?;
        Ok(Response::new(
            self.schema(&access, request.into_inner()).await?,
        ))
    }

    #[instrument(skip_all)]
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Self::DoGetStream>, Status> {
        let access = access(request.extensions())?;
        Ok(Response::new(
            self.get(&access, request.into_inner()).await?,
        ))
    }

    #[instrument(skip_all)]
    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoPutStream>, Status> {
        let access = access(request.extensions())?;
        let Ok(_slot) = self.puts.try_acquire() else {
            return Err(Error::TooMany {
                what: "uploads (DoPut)",
                flag: "--max-puts",
            }
            .into());
        };
        let result = self.put(&access, request).await?;
        Ok(Response::new(once(result)))
    }

    #[instrument(skip_all, fields(action))]
    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> std::result::Result<Response<Self::DoActionStream>, Status> {
        let access = access(request.extensions())?;
        let action = request.into_inner();
        tracing::Span::current().record("action", action.r#type.as_str());
        if sql::ACTIONS.contains(&action.r#type.as_str()) {
            let bodies = self
                .sql
                .action(&access, &action.r#type, &action.body)
                .await?;
            let results = bodies
                .into_iter()
                .map(|body| Ok(arrow_flight::Result { body }));
            return Ok(Response::new(stream::iter(results).boxed()));
        }
        let body = actions::run(&self.engine, &access, &action.r#type, &action.body).await?;
        Ok(Response::new(once(arrow_flight::Result {
            body: body.to_string().into(),
        })))
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> std::result::Result<Response<Self::ListActionsStream>, Status> {
        access(request.extensions())?;
        let types = ACTIONS.iter().map(|(name, body, description)| {
            Ok(ActionType {
                r#type: name.to_string(),
                description: format!("{description} Body: {body}"),
            })
        });
        let sql = sql::ACTIONS.iter().map(|name| {
            Ok(ActionType {
                r#type: name.to_string(),
                description: "Flight SQL (see the Flight SQL specification)".into(),
            })
        });
        let types = types.chain(sql);
        Ok(Response::new(stream::iter(types).boxed()))
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoExchangeStream>, Status> {
        access(request.extensions())?;
        Err(unimplemented("DoExchange", "use DoPut and DoGet"))
    }
}
