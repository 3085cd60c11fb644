//! The Arrow Flight surface: `DoPut`, `GetFlightInfo`, `DoGet`, `ListFlights`,
//! `GetSchema`, `DoAction` / `ListActions` (see DESIGN.md, "The Flight surface").
//!
//! Commands, tickets and action bodies are the messages of `proto/flightstore.proto`,
//! in protobuf binary or their JSON form. Engine errors become statuses in [`status`].

mod actions;
mod status;
mod wire;

use std::pin::Pin;

use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt};
use serde_json::json;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info};

use crate::storage::schema::project;
use crate::storage::{Engine, Error, KeyRange, Manifest};
use flightstore_client::proto;
use status::{invalid, to_status};
use wire::Read;

pub use actions::ACTIONS;

/// Target size of a `FlightData` message the server sends: larger batches are split,
/// which keeps messages under the 4 MiB receive limit many gRPC clients default to.
pub const MAX_FLIGHT_DATA_BYTES: usize = 2 << 20;
/// Largest message either side accepts (uploads may carry big batches).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// A read over more rows than this is split into several endpoints (at file bounds).
pub const ENDPOINT_ROWS: u64 = 2 << 20;

type RpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Flightstore Flight service over one engine.
#[derive(Debug, Clone)]
pub struct FlightStore {
    engine: Engine,
    endpoint_rows: u64,
}

impl FlightStore {
    /// Serve `engine`.
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            endpoint_rows: ENDPOINT_ROWS,
        }
    }

    /// Split reads into endpoints of about `rows` rows (at file bounds).
    pub fn with_endpoint_rows(mut self, rows: u64) -> Self {
        self.endpoint_rows = rows.max(1);
        self
    }

    /// A read from a descriptor: a path `[collection, item...]` or a `ReadRequest`.
    async fn read_of(&self, d: &FlightDescriptor) -> Result<Read, Status> {
        let req = match d.r#type() {
            DescriptorType::Path => {
                let (c, i) = wire::path(d)?;
                proto::ReadRequest {
                    collection: c.to_string(),
                    item: i.to_string(),
                    ..Default::default()
                }
            }
            DescriptorType::Cmd => wire::decode("ReadRequest", &d.cmd)?,
            DescriptorType::Unknown => return Err(invalid("the descriptor has no type")),
        };
        Read::resolve(&self.engine, req).await
    }

    /// The schema a read returns (after projection).
    fn read_schema(read: &Read) -> Result<SchemaRef, Status> {
        project(read.manifest.live_schema(), read.options.columns.as_deref()).map_err(to_status)
    }

    /// Endpoints for a read: split at file bounds into pieces of about `endpoint_rows`,
    /// unless `limit`, `last` or `n_prev` need the read whole.
    fn endpoints(&self, read: &Read) -> Vec<FlightEndpoint> {
        let o = &read.options;
        let whole = o.limit.is_some() || o.last.is_some() || o.n_prev > 0;
        let range = o.range;
        let mut cuts: Vec<i64> = Vec::new(); // interior split points
        if !whole {
            let mut rows = 0u64;
            for f in read.files() {
                if rows >= self.endpoint_rows && range.start.is_none_or(|s| f.min > s) {
                    cuts.push(f.min);
                    rows = 0;
                }
                rows += f.rows;
            }
        }
        let mut bounds = vec![range.start];
        bounds.extend(cuts.into_iter().map(Some));
        bounds.push(range.end);
        bounds
            .windows(2)
            .map(|w| {
                let ticket = read.ticket(KeyRange::new(w[0], w[1]), whole);
                FlightEndpoint::new().with_ticket(Ticket::new(ticket))
            })
            .collect()
    }

    /// The `ListFlights` entry of an item: its whole latest version.
    fn item_info(manifest: &Manifest, descriptor: FlightDescriptor) -> Result<FlightInfo, Status> {
        let (start, end) = manifest
            .range()
            .map_or((None, None), |(s, e)| (Some(s), Some(e)));
        let meta = json!({
            "start": start, "end": end, "version": manifest.version, "metadata": manifest.metadata,
        });
        Ok(FlightInfo::new()
            .try_with_schema(manifest.live_schema())
            .map_err(|e| Status::internal(e.to_string()))?
            .with_descriptor(descriptor)
            .with_total_records(manifest.rows() as i64)
            .with_total_bytes(manifest.bytes() as i64)
            .with_ordered(true)
            .with_app_metadata(meta.to_string()))
    }
}

fn descriptor_path(c: &str, i: &str) -> FlightDescriptor {
    let mut path = vec![c.to_string()];
    path.extend(i.split('/').map(str::to_string));
    FlightDescriptor::new_path(path)
}

/// The upload of a `DoPut`: its descriptor, schema and batches.
async fn open_upload(
    mut input: Streaming<FlightData>,
) -> Result<
    (
        FlightDescriptor,
        SchemaRef,
        BoxStream<'static, Result<arrow::array::RecordBatch, Error>>,
    ),
    Status,
> {
    let first = input
        .message()
        .await?
        .ok_or_else(|| invalid("DoPut: the stream is empty (no descriptor, no schema)"))?;
    let descriptor = first
        .flight_descriptor
        .clone()
        .ok_or_else(|| invalid("DoPut: the first message carries no descriptor"))?;
    let messages = stream::once(async { Ok(first) }).chain(input.map_err(FlightError::from));
    let mut decoder = FlightDataDecoder::new(messages);
    let schema = match decoder.next().await {
        Some(Ok(d)) => match d.payload {
            DecodedPayload::Schema(s) => s,
            _ => return Err(invalid("DoPut: the first message must carry the schema")),
        },
        Some(Err(e)) => return Err(invalid(format!("DoPut: bad schema message: {e}"))),
        None => return Err(invalid("DoPut: no schema")),
    };
    let batches = decoder
        .try_filter_map(|d| async move {
            Ok(match d.payload {
                DecodedPayload::RecordBatch(b) => Some(b),
                _ => None,
            })
        })
        .map_err(|e| {
            let status = match e {
                FlightError::Tonic(s) => *s,
                other => invalid(format!("bad upload data: {other}")),
            };
            Error::Upload {
                source: Box::new(status),
            }
        })
        .boxed();
    Ok((descriptor, schema, batches))
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
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented(
            "Flightstore needs no handshake: call the RPCs directly",
        ))
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let criteria = request.into_inner().expression;
        let criteria: proto::ListCriteria = if criteria.iter().all(u8::is_ascii_whitespace) {
            proto::ListCriteria::default()
        } else {
            wire::decode("ListFlights criteria", &criteria)?
        };
        let metadata = criteria
            .metadata
            .as_deref()
            .map(|m| wire::object(m, "metadata"))
            .transpose()?;
        let collections = match &criteria.collection {
            Some(c) => vec![wire::collection(c)?],
            None => self
                .engine
                .list_collections()
                .await
                .map_err(to_status)?
                .iter()
                .map(|c| wire::collection(c))
                .collect::<Result<_, _>>()?,
        };
        let mut infos = Vec::new();
        for c in collections {
            let items = self
                .engine
                .list_items(&c, criteria.prefix.as_deref(), metadata.as_ref())
                .await
                .map_err(to_status)?;
            for name in items {
                let i = wire::item(&name)?;
                let manifest = match self
                    .engine
                    .manifest_at(&c, &i, &crate::storage::At::Latest)
                    .await
                {
                    Ok(m) => m,
                    Err(Error::ItemNotFound { .. }) => continue, // deleted meanwhile
                    Err(e) => return Err(to_status(e)),
                };
                let descriptor = descriptor_path(&c.to_string(), &name);
                infos.push(Ok(Self::item_info(&manifest, descriptor)?));
            }
        }
        Ok(Response::new(stream::iter(infos).boxed()))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let descriptor = request.into_inner();
        let read = self.read_of(&descriptor).await?;
        let schema = Self::read_schema(&read)?;
        let o = &read.options;
        // Exact counts where the manifest knows them; -1 (unknown) where a filter or a
        // partial file decides.
        let files: Vec<_> = read.files().collect();
        let exact = o.filter.is_none() && files.iter().all(|f| o.range.covers(f.min, f.max));
        let mut rows: i64 = if exact {
            files.iter().map(|f| f.rows as i64).sum()
        } else {
            -1
        };
        if rows >= 0 {
            if let Some(n) = o.limit.or(o.last) {
                rows = rows.min(n as i64);
            }
            if o.n_prev > 0 {
                rows = -1;
            }
        }
        let bytes: i64 = files.iter().map(|f| f.bytes as i64).sum();
        let mut info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_descriptor(descriptor)
            .with_total_records(rows)
            .with_total_bytes(bytes)
            .with_ordered(true)
            .with_app_metadata(json!({"version": read.manifest.version}).to_string());
        for e in self.endpoints(&read) {
            info = info.with_endpoint(e);
        }
        Ok(Response::new(info))
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        let info = self.get_flight_info(request).await?.into_inner();
        Ok(Response::new(PollInfo::new().with_info(info)))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let read = self.read_of(&request.into_inner()).await?;
        let schema = Self::read_schema(&read)?;
        let result = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let req: proto::ReadRequest =
            wire::decode("ticket (ReadRequest)", &request.into_inner().ticket)?;
        let read = Read::resolve(&self.engine, req).await?;
        debug!(collection = %read.collection, item = %read.item, version = read.manifest.version, "do_get");
        let out = self
            .engine
            .read_manifest(&read.collection, &read.item, read.manifest, read.options)
            .await
            .map_err(to_status)?;
        let batches = out.stream.map_err(|e| FlightError::from(to_status(e)));
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(out.schema)
            .with_max_flight_data_size(MAX_FLIGHT_DATA_BYTES)
            .with_dictionary_handling(DictionaryHandling::Resend)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(flight.boxed()))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let (descriptor, schema, batches) = open_upload(request.into_inner()).await?;
        let (c, i, opts) = match descriptor.r#type() {
            DescriptorType::Path => {
                let (c, i) = wire::path(&descriptor)?;
                (c, i, Default::default())
            }
            DescriptorType::Cmd => {
                let req: proto::WriteRequest = wire::decode("WriteRequest", &descriptor.cmd)?;
                (
                    wire::collection(&req.collection)?,
                    wire::item(&req.item)?,
                    wire::write_options(&req)?,
                )
            }
            DescriptorType::Unknown => return Err(invalid("DoPut: the descriptor has no type")),
        };
        let receipt = self
            .engine
            .write(&c, &i, opts, schema, batches)
            .await
            .map_err(to_status)?;
        info!(collection = %c, item = %i, version = receipt.version, rows = receipt.rows_received, "put");
        let body = proto::PutReceipt {
            version: receipt.version,
            rows_received: receipt.rows_received,
            rows_written: receipt.rows_written,
        };
        let result = PutResult {
            app_metadata: serde_json::to_vec(&body).expect("serializable").into(),
        };
        Ok(Response::new(stream::once(async { Ok(result) }).boxed()))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        let body = actions::run(&self.engine, &action.r#type, &action.body).await?;
        let result = arrow_flight::Result {
            body: body.to_string().into(),
        };
        Ok(Response::new(stream::once(async { Ok(result) }).boxed()))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let types = ACTIONS.iter().map(|(name, body, description)| {
            Ok(ActionType {
                r#type: name.to_string(),
                description: format!("{description} Body: {body}"),
            })
        });
        Ok(Response::new(stream::iter(types).boxed()))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented(
            "DoExchange is not part of Flightstore: use DoPut and DoGet",
        ))
    }
}
