//! The read calls: `GetFlightInfo`, `DoGet`, `GetSchema`, `ListFlights`. Each plans
//! through the engine's read plan; none looks at manifest entries.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, SchemaAsIpc, SchemaResult, Ticket,
};
use flightstore_client::proto;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use tonic::Status;
use tracing::debug;

use super::error::{Error, Result};
use super::request::{self, decode};
use super::{FlightStore, RpcStream, MAX_FLIGHT_DATA_BYTES};
use crate::sql::SqlFilter;
use crate::storage::{self, At, ItemInfo, ReadPlan};

impl FlightStore {
    /// The Flight SQL command of a command descriptor, if it holds one.
    fn sql_command(d: &FlightDescriptor) -> Option<arrow_flight::sql::Any> {
        (d.r#type() == DescriptorType::Cmd)
            .then(|| super::sql::command(&d.cmd))
            .flatten()
    }

    /// The `ReadRequest` of a descriptor: a path `[collection, item...]` or a command.
    fn read_request(d: &FlightDescriptor, call: &'static str) -> Result<proto::ReadRequest> {
        match d.r#type() {
            DescriptorType::Path => {
                let (c, i) = request::path(d)?;
                Ok(proto::ReadRequest {
                    collection: c.to_string(),
                    item: i.to_string(),
                    ..Default::default()
                })
            }
            DescriptorType::Cmd => decode("ReadRequest", &d.cmd),
            DescriptorType::Unknown => Err(Error::UntypedDescriptor { call }),
        }
    }

    /// Plan a read: pinned to one version, its filter compiled against the item's
    /// schema at that version.
    async fn plan(&self, req: &proto::ReadRequest) -> Result<ReadPlan> {
        let (c, i, options) = request::read_options(req)?;
        let plan = self.engine.plan_read(&c, &i, options).await?;
        Ok(match request::filter(req) {
            Some(sql) => {
                let filter = SqlFilter::try_new(sql, plan.item_schema())?;
                plan.with_filter(Arc::new(filter))
            }
            None => plan,
        })
    }

    /// `GetFlightInfo`: schema, estimates, and one endpoint per split, each ticket pinned
    /// to the version planned (a read over several endpoints is consistent).
    pub(super) async fn flight_info(&self, descriptor: FlightDescriptor) -> Result<FlightInfo> {
        if let Some(any) = Self::sql_command(&descriptor) {
            return self.sql.flight_info(any, descriptor).await;
        }
        let req = Self::read_request(&descriptor, "GetFlightInfo")?;
        let plan = self.plan(&req).await?;
        let filter = request::filter(&req);
        let mut info = FlightInfo::new()
            .try_with_schema(plan.schema())
            .map_err(|source| Error::Encode {
                what: "the schema",
                source,
            })?
            .with_descriptor(descriptor)
            // Exact where the manifest knows it; -1 (unknown) where a filter or a partial
            // file decides.
            .with_total_records(plan.rows().map_or(-1, |n| n as i64))
            .with_total_bytes(plan.bytes() as i64)
            .with_ordered(true)
            .with_app_metadata(json!({"version": plan.version()}).to_string());
        for split in plan.splits(self.endpoint_rows) {
            let ticket = request::ticket(&plan, &split, filter);
            info = info.with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)));
        }
        Ok(info)
    }

    /// `GetSchema`: the schema a read returns (after projection).
    pub(super) async fn schema(&self, descriptor: FlightDescriptor) -> Result<SchemaResult> {
        let schema = match Self::sql_command(&descriptor) {
            Some(any) => self.sql.schema(any).await?,
            None => {
                let req = Self::read_request(&descriptor, "GetSchema")?;
                Arc::clone(self.plan(&req).await?.schema())
            }
        };
        SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|source| Error::Encode {
                what: "the schema",
                source,
            })
    }

    /// `DoGet`: a server-issued ticket or a client's own `ReadRequest`, streamed in key
    /// order. A failure part way is a status at the end of the stream, never a short one.
    pub(super) async fn get(&self, ticket: Ticket) -> Result<RpcStream<arrow_flight::FlightData>> {
        let (schema, batches) = self.read_batches(ticket).await?;
        Ok(encode_frames(schema, batches))
    }

    /// The batches a ticket reads, in key order; a failure part way is an error item.
    pub(super) async fn read_batches(
        &self,
        ticket: Ticket,
    ) -> Result<(
        SchemaRef,
        BoxStream<'static, std::result::Result<RecordBatch, Status>>,
    )> {
        if let Some(any) = super::sql::command(&ticket.ticket) {
            return self.sql.get(any).await;
        }
        let req: proto::ReadRequest = decode("ticket (ReadRequest)", &ticket.ticket)?;
        let plan = self.plan(&req).await?;
        debug!(collection = %plan.collection(), item = %plan.item(), version = plan.version(), "do_get");
        let out = self.engine.execute(&plan, &plan.whole()).await?;
        let batches = out.stream.map_err(|e| Status::from(Error::from(e)));
        Ok((out.schema, batches.boxed()))
    }

    /// `ListFlights`: every live item of the collections the criteria select.
    pub(super) async fn list(&self, criteria: &[u8]) -> Result<Vec<FlightInfo>> {
        let criteria: proto::ListCriteria = if criteria.iter().all(u8::is_ascii_whitespace) {
            proto::ListCriteria::default()
        } else {
            decode("ListFlights criteria", criteria)?
        };
        let metadata = criteria
            .metadata
            .as_deref()
            .map(|m| request::object(m, "metadata"))
            .transpose()?;
        let collections = match &criteria.collection {
            Some(c) => vec![request::collection(c)?],
            None => self
                .engine
                .list_collections()
                .await?
                .iter()
                .map(|c| request::collection(c))
                .collect::<Result<_>>()?,
        };
        let mut infos = Vec::new();
        for c in collections {
            let items = self
                .engine
                .list_items(&c, criteria.prefix.as_deref(), metadata.as_ref())
                .await?;
            for name in items {
                let i = request::item(&name)?;
                let info = match self.engine.item_info(&c, &i, &At::Latest).await {
                    Ok(info) => info,
                    Err(storage::Error::ItemNotFound { .. }) => continue, // deleted meanwhile
                    Err(e) => return Err(e.into()),
                };
                infos.push(Self::listing(&info, request::descriptor(&c, &i))?);
            }
        }
        Ok(infos)
    }

    /// The `ListFlights` entry of an item: its whole latest version.
    fn listing(info: &ItemInfo, descriptor: FlightDescriptor) -> Result<FlightInfo> {
        let meta = json!({
            "start": info.start, "end": info.end, "version": info.version, "metadata": info.metadata,
        });
        Ok(FlightInfo::new()
            .try_with_schema(&info.schema)
            .map_err(|source| Error::Encode {
                what: "the schema",
                source,
            })?
            .with_descriptor(descriptor)
            .with_total_records(info.rows as i64)
            .with_total_bytes(info.bytes as i64)
            .with_ordered(true)
            .with_app_metadata(meta.to_string()))
    }
}

/// `FlightData` of `batches` through arrow-flight's encoder (schema first, batches split
/// to [`MAX_FLIGHT_DATA_BYTES`], dictionaries resent with each batch).
pub(super) fn encode_frames(
    schema: SchemaRef,
    batches: BoxStream<'static, std::result::Result<RecordBatch, Status>>,
) -> RpcStream<arrow_flight::FlightData> {
    FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_max_flight_data_size(MAX_FLIGHT_DATA_BYTES)
        .with_dictionary_handling(DictionaryHandling::Resend)
        .build(batches.map_err(FlightError::from))
        .map_err(Status::from)
        .boxed()
}
