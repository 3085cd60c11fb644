//! Statements: queries, INSERT / DELETE, prepared statements with parameters.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_flight::sql::{
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    DoPutPreparedStatementResult, ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket};
use base64::Engine as _;
use bytes::Bytes;
use datafusion::common::ScalarValue;
use futures::stream::{self, StreamExt, TryStreamExt};
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::Status;

use super::{Batches, FlightSql};
use crate::auth::Access;
use crate::flight::error::{Error, Result};
use crate::sql::{self, count_schema, Pins, StatementKind};

/// Largest parameter upload kept in a handle.
const MAX_PARAMETER_BYTES: usize = 1 << 20;

/// A statement handle (prepared statements, statement tickets): stateless, JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Handle {
    /// The SQL.
    pub(super) sql: String,
    /// Bound parameters: one row, Arrow IPC stream, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<String>,
    /// The rows an INSERT / DELETE changed (it ran when its FlightInfo was asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    /// The versions the query was planned at, `[collection, item, version]`: `DoGet`
    /// reads those, not what was committed since.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    versions: Vec<(String, String, u64)>,
}

impl Handle {
    /// The handle of `sql`, no parameters bound.
    pub(super) fn new(sql: String) -> Self {
        Self {
            sql,
            ..Default::default()
        }
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::BadSetting {
            field: "statement handle",
            message: format!("not a handle this server issued: {e}"),
        })
    }

    fn encode(&self) -> Bytes {
        serde_json::to_vec(self)
            .expect("a handle serializes")
            .into()
    }

    /// The versions to plan at.
    fn pins(&self) -> Pins {
        self.versions
            .iter()
            .map(|(c, i, v)| ((c.clone(), i.clone()), *v))
            .collect()
    }

    /// The bound parameters as scalars, `$1` first.
    pub(super) fn params(&self) -> Result<Vec<ScalarValue>> {
        let Some(text) = &self.params else {
            return Ok(Vec::new());
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| bad_params(format!("bad base64: {e}")))?;
        let reader =
            StreamReader::try_new(&bytes[..], None).map_err(|e| bad_params(e.to_string()))?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad_params(e.to_string()))?;
        match batches.iter().find(|b| b.num_rows() > 0) {
            Some(b) => row(b, 0),
            None => Ok(Vec::new()),
        }
    }
}

fn bad_params(message: String) -> Error {
    Error::BadSetting {
        field: "parameters",
        message,
    }
}

/// Row `i` of `batch` as scalars.
fn row(batch: &RecordBatch, i: usize) -> Result<Vec<ScalarValue>> {
    batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, i).map_err(|e| bad_params(e.to_string())))
        .collect()
}

/// One row of parameters as an IPC stream, base64.
fn encode_params(batch: &RecordBatch) -> Result<String> {
    let mut out = Vec::new();
    let encode = |source| Error::Encode {
        what: "the parameters",
        source,
    };
    let mut writer = StreamWriter::try_new(&mut out, &batch.schema()).map_err(encode)?;
    writer.write(batch).map_err(encode)?;
    writer.finish().map_err(encode)?;
    drop(writer);
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

/// A schema as Flight SQL carries it (IPC schema message bytes).
pub(super) fn schema_bytes(schema: &Schema) -> Result<Bytes> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|source| Error::Encode {
            what: "the schema",
            source,
        })?;
    Ok(bytes)
}

/// A FlightInfo with one endpoint (Grafana takes exactly one), no location (this server).
pub(super) fn one_endpoint(
    schema: &Schema,
    ticket: Bytes,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo> {
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|source| Error::Encode {
            what: "the schema",
            source,
        })?
        .with_descriptor(descriptor)
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_total_records(-1)
        .with_total_bytes(-1))
}

/// The ticket of a statement.
fn ticket(handle: &Handle) -> Bytes {
    TicketStatementQuery {
        statement_handle: handle.encode(),
    }
    .as_any()
    .encode_to_vec()
    .into()
}

/// One `count` batch.
fn count_batch(count: u64) -> Result<RecordBatch> {
    let column: ArrayRef = Arc::new(UInt64Array::from(vec![count]));
    RecordBatch::try_new(count_schema(), vec![column]).map_err(|source| Error::Encode {
        what: "the count",
        source,
    })
}

impl FlightSql {
    /// Schema and ticket of a statement. A query is planned only (it runs on `DoGet`); an
    /// INSERT or DELETE runs now, once, and its ticket carries the count (ADBC sends DML
    /// down the query path and may never fetch the result).
    pub(super) async fn statement_info(
        &self,
        access: &Access,
        mut handle: Handle,
        in_transaction: bool,
    ) -> Result<(SchemaRef, Bytes)> {
        if in_transaction {
            return Err(no_transactions());
        }
        let planned = self
            .sql
            .plan(access, &handle.sql, handle.params()?, &Pins::new())
            .await?;
        let schema = planned.schema();
        if planned.kind() == StatementKind::Update {
            handle.count = Some(self.run_update(planned).await?);
        } else {
            let pins = planned.pins().iter();
            handle.versions = pins.map(|((c, i), v)| (c.clone(), i.clone(), *v)).collect();
        }
        Ok((schema, ticket(&handle)))
    }

    /// Run a planned INSERT or DELETE: the rows it changed.
    async fn run_update(&self, planned: sql::Planned) -> Result<u64> {
        let batches: Vec<RecordBatch> = self.sql.execute(planned).await?.try_collect().await?;
        let mut count = 0;
        for b in &batches {
            if let Some(c) = b
                .column_by_name("count")
                .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            {
                count += c.iter().flatten().sum::<u64>();
            }
        }
        Ok(count)
    }

    /// The batches of a statement ticket.
    pub(super) async fn run_handle(
        &self,
        access: &Access,
        handle: Handle,
    ) -> Result<(SchemaRef, Batches)> {
        if let Some(count) = handle.count {
            let batch = count_batch(count)?;
            return Ok((count_schema(), stream::once(async { Ok(batch) }).boxed()));
        }
        let planned = self
            .sql
            .plan(access, &handle.sql, handle.params()?, &handle.pins())
            .await?;
        if planned.kind() == StatementKind::Update {
            return Err(sql::Error::unsupported(
                "an INSERT or DELETE in a ticket",
                "ask GetFlightInfo for it: it runs there, once",
            )
            .into());
        }
        let schema = planned.schema();
        let batches = self
            .sql
            .execute(planned)
            .await?
            .map_err(|e| Status::from(Error::from(e)))
            .boxed();
        Ok((schema, batches))
    }

    /// `CommandStatementUpdate`: run an INSERT or DELETE, the rows it changed.
    pub(super) async fn update(
        &self,
        access: &Access,
        text: &str,
        params: Vec<ScalarValue>,
    ) -> Result<i64> {
        let planned = self.sql.plan(access, text, params, &Pins::new()).await?;
        if planned.kind() != StatementKind::Update {
            return Err(sql::Error::unsupported(
                "a query sent as an update",
                "send queries with CommandStatementQuery (JDBC: executeQuery)",
            )
            .into());
        }
        Ok(self.run_update(planned).await? as i64)
    }

    /// `CreatePreparedStatement`: a stateless handle, the result schema (empty for an
    /// INSERT or DELETE: JDBC's signal of an update) and the parameter types.
    pub(super) async fn create_prepared(
        &self,
        access: &Access,
        request: ActionCreatePreparedStatementRequest,
    ) -> Result<ActionCreatePreparedStatementResult> {
        if request.transaction_id.is_some() {
            return Err(no_transactions());
        }
        let planned = self
            .sql
            .plan(access, &request.query, Vec::new(), &Pins::new())
            .await?;
        let parameters = planned.parameter_schema()?;
        let dataset = match planned.kind() {
            StatementKind::Query => planned.schema(),
            StatementKind::Update => Arc::new(Schema::empty()),
        };
        let handle = Handle::new(request.query);
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.encode(),
            dataset_schema: schema_bytes(&dataset)?,
            parameter_schema: schema_bytes(&parameters)?,
        })
    }

    /// `DoPut(CommandPreparedStatementQuery)`: bind parameters, the updated handle.
    pub(super) async fn bind(
        &self,
        handle: &[u8],
        mut params: Batches,
    ) -> Result<DoPutPreparedStatementResult> {
        let mut handle = Handle::decode(handle)?;
        let mut bound = None;
        let mut bytes = 0;
        while let Some(batch) = params
            .try_next()
            .await
            .map_err(|s| Error::Transport(Box::new(s)))?
        {
            bytes += batch.get_array_memory_size();
            if bytes > MAX_PARAMETER_BYTES {
                return Err(bad_params(format!(
                    "a query takes one row of parameters (at most {MAX_PARAMETER_BYTES} bytes)"
                )));
            }
            if batch.num_rows() > 0 {
                if bound.is_some() || batch.num_rows() > 1 {
                    return Err(bad_params(
                        "a query takes one row of parameters; use a prepared update for many"
                            .into(),
                    ));
                }
                bound = Some(batch.slice(0, 1));
            }
        }
        handle.params = bound.as_ref().map(encode_params).transpose()?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.encode()),
        })
    }

    /// `DoPut(CommandPreparedStatementUpdate)`: run the statement once per parameter row
    /// (once with the handle's own parameters if none are sent), the rows changed.
    pub(super) async fn prepared_update(
        &self,
        access: &Access,
        handle: &[u8],
        mut params: Batches,
    ) -> Result<i64> {
        let handle = Handle::decode(handle)?;
        let mut total = 0;
        let mut ran = false;
        while let Some(batch) = params
            .try_next()
            .await
            .map_err(|s| Error::Transport(Box::new(s)))?
        {
            for i in 0..batch.num_rows() {
                total += self.update(access, &handle.sql, row(&batch, i)?).await?;
                ran = true;
            }
        }
        if !ran {
            total += self.update(access, &handle.sql, handle.params()?).await?;
        }
        Ok(total)
    }
}

/// The error of anything transactional.
pub(super) fn no_transactions() -> Error {
    Error::Unimplemented {
        call: "transactions",
        hint: "every statement commits on its own (FLIGHT_SQL_SERVER_TRANSACTION is none)",
    }
}
