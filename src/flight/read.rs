//! The read calls: `GetFlightInfo`, `DoGet`, `GetSchema`, `ListFlights`. Each plans
//! through the engine's read plan; none looks at manifest entries.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
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
use crate::auth::{Access, Level};
use crate::sql::SqlFilter;
use crate::storage::{self, At, CollectionName, Grid, ItemInfo, ItemName, ReadPlan};
use request::Target;

/// What a `DoGet` sends.
pub(super) struct Reading {
    pub(super) schema: SchemaRef,
    pub(super) batches: BoxStream<'static, std::result::Result<RecordBatch, Status>>,
    /// Each dictionary column keeps one dictionary for the whole stream (the IPC stream
    /// format cannot replace one), so the zero-copy `DoGet` may send it.
    pub(super) fixed_dictionaries: bool,
}

/// A planned read, checked.
enum Read {
    One(ReadPlan),
    /// A dense grid over one item, of `slots` rows.
    Grid {
        plan: ReadPlan,
        grid: Grid,
        slots: u64,
    },
    /// Several items merged; `limit` / `last` apply to the merged stream.
    Many {
        plans: Vec<ReadPlan>,
        schema: SchemaRef,
        limit: Option<usize>,
        last: Option<usize>,
    },
}

impl Read {
    /// The schema of the batches.
    fn schema(&self) -> SchemaRef {
        match self {
            Read::One(plan) => Arc::clone(plan.schema()),
            Read::Grid { plan, .. } => plan.grid_schema(),
            Read::Many { schema, .. } => Arc::clone(schema),
        }
    }
}

/// How many dictionary columns `schema` has, nested ones included.
pub(super) fn dictionary_columns(schema: &SchemaRef) -> usize {
    schema
        .flattened_fields()
        .iter()
        .filter(|f| matches!(f.data_type(), DataType::Dictionary(..)))
        .count()
}

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

    /// Plan a read: each item pinned to one version, its filter compiled against the
    /// item's schema at that version.
    async fn plan(&self, access: &Access, req: &proto::ReadRequest) -> Result<Read> {
        let (c, target, options) = request::read_options(req)?;
        access.check(c.as_str(), Level::Read)?;
        let grid = request::grid(req)?;
        match target {
            Target::One(i) => {
                let plan = self.plan_item(req, &c, &i, options).await?;
                Ok(match grid {
                    Some(grid) => Read::Grid {
                        slots: plan.grid_slots(&grid)?, // checks the grid before any read
                        plan,
                        grid,
                    },
                    None => Read::One(plan),
                })
            }
            Target::Many(_) if grid.is_some() => Err(Error::Exclusive {
                first: "grid",
                second: "items",
            }),
            Target::Many(items) => {
                let (limit, last) = (options.limit, options.last);
                let mut plans = Vec::with_capacity(items.len());
                for (i, version) in items {
                    let mut options = options.clone();
                    if let Some(v) = version {
                        options.at = At::Version(v);
                    }
                    plans.push(self.plan_item(req, &c, &i, options).await?);
                }
                // Checks the items agree before any read.
                let schema = storage::many_schema(&plans)?;
                Ok(Read::Many {
                    plans,
                    schema,
                    limit,
                    last,
                })
            }
        }
    }

    async fn plan_item(
        &self,
        req: &proto::ReadRequest,
        c: &CollectionName,
        i: &ItemName,
        options: storage::ReadOptions,
    ) -> Result<ReadPlan> {
        let plan = self.engine.plan_read(c, i, options).await?;
        Ok(match request::filter(req) {
            Some(sql) => {
                let filter = SqlFilter::try_new(sql, plan.item_schema())?;
                plan.with_filter(Arc::new(filter))
            }
            None => plan,
        })
    }

    /// `GetFlightInfo`: schema, estimates, and endpoints whose tickets are pinned to the
    /// versions planned (a read over several endpoints is consistent). A plain read has
    /// one endpoint per split; a grid or multi-item read has one.
    pub(super) async fn flight_info(
        &self,
        access: &Access,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo> {
        if let Some(any) = Self::sql_command(&descriptor) {
            return self.sql.flight_info(access, any, descriptor).await;
        }
        let req = Self::read_request(&descriptor, "GetFlightInfo")?;
        let read = self.plan(access, &req).await?;
        let filter = request::filter(&req);
        let info = FlightInfo::new()
            .try_with_schema(read.schema().as_ref())
            .map_err(|source| Error::Encode {
                what: "the schema",
                source,
            })?
            .with_descriptor(descriptor)
            .with_ordered(true);
        let endpoint = |ticket: proto::ReadRequest| {
            FlightEndpoint::new().with_ticket(Ticket::new(flightstore_client::ticket(&ticket)))
        };
        Ok(match read {
            Read::One(plan) => {
                // Exact where the manifest knows it; -1 (unknown) where a filter or a
                // partial file decides.
                let mut info = info
                    .with_total_records(plan.rows().map_or(-1, |n| n as i64))
                    .with_total_bytes(plan.bytes() as i64)
                    .with_app_metadata(json!({"version": plan.version()}).to_string());
                for split in plan.splits(self.endpoint_rows) {
                    info = info.with_endpoint(endpoint(request::ticket(&plan, &split, filter)));
                }
                info
            }
            Read::Grid { plan, slots, .. } => {
                let mut ticket = request::ticket(&plan, &plan.whole(), filter);
                ticket.grid = req.grid.clone();
                info.with_total_records(slots as i64)
                    .with_total_bytes(-1)
                    .with_app_metadata(json!({"version": plan.version()}).to_string())
                    .with_endpoint(endpoint(ticket))
            }
            Read::Many {
                plans, limit, last, ..
            } => {
                // Exact when every item's count is; at most `limit` / `last`.
                let rows: Option<u64> = plans.iter().map(|p| p.rows()).sum();
                let cap = limit.or(last).map_or(u64::MAX, |n| n as u64);
                let total = rows.map_or(-1, |n| n.min(cap) as i64);
                let versions: serde_json::Map<String, serde_json::Value> = plans
                    .iter()
                    .map(|p| (p.item().to_string(), json!(p.version())))
                    .collect();
                let ticket = proto::ReadRequest {
                    item: String::new(),
                    items: plans.iter().map(|p| p.item().to_string()).collect(),
                    versions: plans.iter().map(|p| p.version()).collect(),
                    version: None,
                    snapshot: None,
                    ..req.clone()
                };
                info.with_total_records(total)
                    .with_total_bytes(plans.iter().map(|p| p.bytes() as i64).sum())
                    .with_app_metadata(json!({ "versions": versions }).to_string())
                    .with_endpoint(endpoint(ticket))
            }
        })
    }

    /// `GetSchema`: the schema a read returns (after projection).
    pub(super) async fn schema(
        &self,
        access: &Access,
        descriptor: FlightDescriptor,
    ) -> Result<SchemaResult> {
        let schema = match Self::sql_command(&descriptor) {
            Some(any) => self.sql.schema(access, any).await?,
            None => {
                let req = Self::read_request(&descriptor, "GetSchema")?;
                self.plan(access, &req).await?.schema()
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
    pub(super) async fn get(
        &self,
        access: &Access,
        ticket: Ticket,
    ) -> Result<RpcStream<arrow_flight::FlightData>> {
        let reading = self.read_batches(access, ticket).await?;
        Ok(encode_frames(reading.schema, reading.batches))
    }

    /// The batches a ticket reads, in key order; a failure part way is an error item.
    pub(super) async fn read_batches(&self, access: &Access, ticket: Ticket) -> Result<Reading> {
        if let Some(any) = super::sql::command(&ticket.ticket) {
            let (schema, batches) = self.sql.get(access, any).await?;
            return Ok(Reading {
                schema,
                batches,
                fixed_dictionaries: false,
            });
        }
        let req: proto::ReadRequest = decode("ticket (ReadRequest)", &ticket.ticket)?;
        let mut fixed_dictionaries = false;
        let out = match self.plan(access, &req).await? {
            Read::One(plan) => {
                debug!(collection = %plan.collection(), item = %plan.item(), version = plan.version(), "do_get");
                self.engine.execute(&plan, &plan.whole()).await?
            }
            Read::Grid { plan, grid, .. } => self.engine.execute_grid(&plan, grid).await?,
            Read::Many {
                plans, limit, last, ..
            } => {
                let out = self.engine.execute_many(&plans, limit, last).await?;
                // `_item` keeps one dictionary; the items' own columns may have others.
                fixed_dictionaries = dictionary_columns(&out.schema) == 1;
                out
            }
        };
        let batches = out.stream.map_err(|e| Status::from(Error::from(e)));
        Ok(Reading {
            schema: out.schema,
            batches: batches.boxed(),
            fixed_dictionaries,
        })
    }

    /// `ListFlights`: every live item of the collections the criteria select (of those
    /// the caller may read).
    pub(super) async fn list(&self, access: &Access, criteria: &[u8]) -> Result<Vec<FlightInfo>> {
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
            Some(c) => {
                let c = request::collection(c)?;
                access.check(c.as_str(), Level::Read)?;
                vec![c]
            }
            None => self
                .engine
                .list_collections()
                .await?
                .iter()
                .filter(|c| access.allows(c, Level::Read))
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
