//! Flight SQL on the same service (DESIGN.md, "Flight SQL").
//!
//! A command, ticket or action whose `Any` type URL is a Flight SQL message is routed
//! here by [`FlightStore`]; everything else stays with the Flight surface.
//!
//! ```text
//! GetFlightInfo  statement / prepared ─► sql::Sql::plan ─► schema + one ticket
//!                (INSERT, DELETE: run here, the ticket carries the count)
//!                catalog command      ─► its spec schema + the command as the ticket
//! DoGet          statement ticket     ─► plan again, execute, batches in the announced schema
//!                catalog ticket       ─► metadata.rs
//! DoPut          update, prepared update, ingest, parameters of a prepared query
//! DoAction       CreatePreparedStatement (stateless handles), ClosePreparedStatement;
//!                transactions and sessions: UNIMPLEMENTED
//! ```
//!
//! Handles are stateless: the SQL and its bound parameters (Arrow IPC) travel in them,
//! as JSON, so any server of the same data answers them.

mod metadata;
mod statements;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::sql::{
    ActionCreatePreparedStatementRequest, Any, Command, CommandStatementIngest, DoPutUpdateResult,
    ProstMessageExt, TableExistsOption,
};
use arrow_flight::{FlightDescriptor, FlightInfo};
use bytes::Bytes;
use futures::stream::BoxStream;
use prost::Message;
use tonic::Status;

use super::do_put::Upload;
use super::error::{Error, Result};
use super::request;
use crate::auth::{Access, Level};
use crate::sql::{self, Pins, Sql, CATALOG};
use crate::storage::{Engine, WriteMode, WriteOptions};

/// Type URL prefix of Flight SQL messages.
pub(crate) const TYPE_URL_PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";

/// Names of the Flight SQL actions.
pub(crate) const ACTIONS: &[&str] = &[
    "CreatePreparedStatement",
    "ClosePreparedStatement",
    "CreatePreparedSubstraitPlan",
    "BeginTransaction",
    "EndTransaction",
    "BeginSavepoint",
    "EndSavepoint",
    "CancelQuery",
    "CancelFlightInfo",
    "RenewFlightEndpoint",
    "SetSessionOptions",
    "GetSessionOptions",
    "CloseSession",
];

/// The Flight SQL command in `bytes`, if they hold one.
pub(crate) fn command(bytes: &[u8]) -> Option<Any> {
    let any = Any::decode(bytes).ok()?;
    any.type_url.starts_with(TYPE_URL_PREFIX).then_some(any)
}

/// The Flight SQL service.
#[derive(Debug, Clone)]
pub(crate) struct FlightSql {
    sql: Arc<Sql>,
}

/// Batches of a result; a failure part way is an error item.
pub(crate) type Batches = BoxStream<'static, std::result::Result<RecordBatch, Status>>;

impl FlightSql {
    pub(crate) fn new(sql: Sql) -> Self {
        Self { sql: Arc::new(sql) }
    }

    fn engine(&self) -> &Engine {
        self.sql.engine()
    }

    /// `GetFlightInfo` (and `PollFlightInfo`) of a Flight SQL command.
    pub(crate) async fn flight_info(
        &self,
        access: &Access,
        any: Any,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo> {
        let command = decode_command(any)?;
        let (schema, ticket) = match command {
            Command::CommandStatementQuery(q) => {
                let handle = statements::Handle::new(q.query);
                self.statement_info(access, handle, q.transaction_id.is_some())
                    .await?
            }
            Command::CommandPreparedStatementQuery(q) => {
                let handle = statements::Handle::decode(&q.prepared_statement_handle)?;
                self.statement_info(access, handle, false).await?
            }
            other => metadata::info(other)?,
        };
        statements::one_endpoint(&schema, ticket, descriptor)
    }

    /// `GetSchema` of a Flight SQL command.
    pub(crate) async fn schema(&self, access: &Access, any: Any) -> Result<SchemaRef> {
        match decode_command(any)? {
            Command::CommandStatementQuery(q) => Ok(self
                .sql
                .plan(access, &q.query, Vec::new(), &Pins::new())
                .await?
                .schema()),
            Command::CommandPreparedStatementQuery(q) => {
                let handle = statements::Handle::decode(&q.prepared_statement_handle)?;
                let params = handle.params()?;
                Ok(self
                    .sql
                    .plan(access, &handle.sql, params, &Pins::new())
                    .await?
                    .schema())
            }
            other => Ok(metadata::info(other)?.0),
        }
    }

    /// `DoGet` of a Flight SQL ticket.
    pub(crate) async fn get(&self, access: &Access, any: Any) -> Result<(SchemaRef, Batches)> {
        match decode_command(any)? {
            Command::TicketStatementQuery(t) => {
                let handle = statements::Handle::decode(&t.statement_handle)?;
                self.run_handle(access, handle).await
            }
            other => metadata::get(self, access, other).await,
        }
    }
}

/// `any` as a Flight SQL command (an unknown one is an error naming it).
fn decode_command(any: Any) -> Result<Command> {
    let url = any.type_url.clone();
    match Command::try_from(any) {
        Ok(Command::Unknown(_)) | Err(_) => Err(Error::UnknownSqlCommand { type_url: url }),
        Ok(c) => Ok(c),
    }
}

impl FlightSql {
    /// `DoPut` of a Flight SQL command: its `PutResult` body.
    pub(crate) async fn put(&self, access: &Access, any: Any, upload: Upload) -> Result<Bytes> {
        let update = |count: i64| DoPutUpdateResult {
            record_count: count,
        };
        Ok(match decode_command(any)? {
            Command::CommandStatementUpdate(c) => {
                if c.transaction_id.is_some() {
                    return Err(statements::no_transactions());
                }
                update(self.update(access, &c.query, Vec::new()).await?)
                    .encode_to_vec()
                    .into()
            }
            Command::CommandPreparedStatementQuery(c) => self
                .bind(&c.prepared_statement_handle, upload.batches())
                .await?
                .encode_to_vec()
                .into(),
            Command::CommandPreparedStatementUpdate(c) => {
                let count = self
                    .prepared_update(access, &c.prepared_statement_handle, upload.batches())
                    .await?;
                update(count).encode_to_vec().into()
            }
            Command::CommandStatementIngest(c) => update(self.ingest(access, c, upload).await?)
                .encode_to_vec()
                .into(),
            other => {
                return Err(Error::UnsupportedSqlCommand {
                    command: other.type_url().to_string(),
                    hint: "DoPut takes updates, prepared statements' parameters and ingest \
                           (no Substrait plans)",
                })
            }
        })
    }

    /// `CommandStatementIngest` (ADBC `adbc_ingest`): the upload written to the item
    /// `table` of collection `schema`; the rows written.
    async fn ingest(
        &self,
        access: &Access,
        c: CommandStatementIngest,
        upload: Upload,
    ) -> Result<i64> {
        let refuse = |what: &str| {
            Error::Sql(sql::Error::unsupported(
                format!("ingest {what}"),
                "ingest into an item (table) of a collection (db schema) of the catalog flightstore",
            ))
        };
        if c.temporary {
            return Err(refuse("into a temporary table"));
        }
        if c.transaction_id.is_some() {
            return Err(statements::no_transactions());
        }
        if c.catalog.as_deref().is_some_and(|x| x != CATALOG) {
            return Err(refuse(&format!(
                "into catalog {:?}",
                c.catalog.unwrap_or_default()
            )));
        }
        let Some(collection) = c.schema.as_deref() else {
            return Err(refuse("without a db schema (the collection)"));
        };
        let (coll, item) = (request::collection(collection)?, request::item(&c.table)?);
        access.check(coll.as_str(), Level::Write)?;
        let options = c.table_definition_options.unwrap_or_default();
        let mode = match options.if_exists() {
            TableExistsOption::Fail => WriteMode::Create,
            TableExistsOption::Append => WriteMode::Append,
            TableExistsOption::Replace => WriteMode::Overwrite,
            TableExistsOption::Unspecified => {
                return Err(refuse("with no if_exists option"));
            }
        };
        let opts = WriteOptions {
            mode,
            ..Default::default()
        };
        let receipt = upload.write(self.engine(), &coll, &item, opts).await?;
        Ok(receipt.rows_written as i64)
    }

    /// `DoAction` of a Flight SQL action: its results' bodies.
    pub(crate) async fn action(
        &self,
        access: &Access,
        kind: &str,
        body: &[u8],
    ) -> Result<Vec<Bytes>> {
        let any = || {
            Any::decode(body).map_err(|e| Error::BadSetting {
                field: "action body",
                message: format!("a Flight SQL action body is an Any: {e}"),
            })
        };
        match kind {
            "CreatePreparedStatement" => {
                let request: ActionCreatePreparedStatementRequest = any()?
                    .unpack()
                    .ok()
                    .flatten()
                    .ok_or_else(|| Error::UnknownSqlCommand {
                        type_url: "CreatePreparedStatement body".into(),
                    })?;
                let result = self.create_prepared(access, request).await?;
                Ok(vec![result.as_any().encode_to_vec().into()])
            }
            // Handles are stateless: nothing to free.
            "ClosePreparedStatement" | "CloseSession" => Ok(Vec::new()),
            "BeginTransaction" | "EndTransaction" | "BeginSavepoint" | "EndSavepoint" => {
                Err(statements::no_transactions())
            }
            _ => Err(Error::Unimplemented {
                call: "this Flight SQL action",
                hint: "statements run on their own: there are no sessions, no server-side \
                       cancellation (close the stream) and no Substrait plans",
            }),
        }
    }
}
