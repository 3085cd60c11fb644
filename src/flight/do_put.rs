//! `DoPut`: an upload streamed into one write, acknowledged with the committed version.

use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::{FlightData, FlightDescriptor, PutResult};
use flightstore_client::proto;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use tonic::{Status, Streaming};
use tracing::info;

use super::error::{Error, Result};
use super::request::{self, decode};
use super::FlightStore;
use crate::auth::{Access, Level};
use crate::storage;

/// The transport status an upload stream failed with, kept beside the engine's error
/// (storage knows nothing of gRPC).
type TransportFailure = Arc<Mutex<Option<Status>>>;

/// The upload of a `DoPut`: its descriptor, schema and batches.
pub(super) struct Upload {
    descriptor: FlightDescriptor,
    schema: SchemaRef,
    batches: BoxStream<'static, storage::Result<RecordBatch>>,
    failure: TransportFailure,
    /// The `x-flightstore-write-id` header: the write's id where the descriptor cannot
    /// carry one (a path, Flight SQL ingest).
    write_id: Option<String>,
}

/// The header that gives a write its id when the descriptor cannot.
pub const WRITE_ID_HEADER: &str = "x-flightstore-write-id";

/// The write id of a call's headers.
fn write_id_header(metadata: &tonic::metadata::MetadataMap) -> Result<Option<String>> {
    let Some(value) = metadata.get(WRITE_ID_HEADER) else {
        return Ok(None);
    };
    let id = value.to_str().map_err(|_| Error::BadSetting {
        field: WRITE_ID_HEADER,
        message: "must be visible ASCII".into(),
    })?;
    Ok(Some(id.to_string()))
}

async fn open_upload(mut input: Streaming<FlightData>) -> Result<Upload> {
    let bad = |problem: &str| Error::BadUploadStart {
        problem: problem.to_string(),
    };
    let first = input
        .message()
        .await
        .map_err(|s| Error::Transport(Box::new(s)))?
        .ok_or_else(|| bad("the stream is empty (no descriptor, no schema)"))?;
    let descriptor = first
        .flight_descriptor
        .clone()
        .ok_or_else(|| bad("the first message carries no descriptor"))?;
    // Flight SQL clients may send the descriptor alone in a first, empty message (a
    // prepared update without parameters sends nothing else).
    let descriptor_only = first.data_header.is_empty() && first.data_body.is_empty();
    let first = (!descriptor_only).then_some(Ok(first));
    let messages = stream::iter(first).chain(input.map_err(FlightError::from));
    // arrow 59's IPC reader panics on some malformed messages (found by fuzzing:
    // fuzz/README.md): such an upload is refused like any other bad data.
    let mut decoder = std::panic::AssertUnwindSafe(FlightDataDecoder::new(messages))
        .catch_unwind()
        .map(|decoded| {
            decoded.unwrap_or_else(|panic| {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no message");
                Err(FlightError::DecodeError(format!(
                    "malformed Arrow IPC (the decoder gave up: {why})"
                )))
            })
        });
    let schema = match decoder.next().await {
        Some(Ok(d)) => match d.payload {
            DecodedPayload::Schema(s) => s,
            _ => return Err(bad("the first message must carry the schema")),
        },
        Some(Err(e)) => return Err(bad(&format!("bad schema message: {e}"))),
        None if super::sql::command(&descriptor.cmd).is_some() => {
            return Ok(Upload {
                descriptor,
                schema: Arc::new(arrow::datatypes::Schema::empty()),
                batches: stream::empty().boxed(),
                failure: TransportFailure::default(),
                write_id: None,
            })
        }
        None => return Err(bad("no schema")),
    };
    let failure = TransportFailure::default();
    let stash = Arc::clone(&failure);
    let batches = decoder
        .try_filter_map(|d| async move {
            Ok(match d.payload {
                DecodedPayload::RecordBatch(b) => Some(b),
                _ => None,
            })
        })
        .map_err(move |e| match e {
            FlightError::Tonic(status) => {
                let message = status.message().to_string();
                *stash.lock().expect("upload failure poisoned") = Some(*status);
                storage::Error::Upload { message }
            }
            other => storage::Error::Upload {
                message: format!("bad upload data: {other}"),
            },
        })
        .boxed();
    Ok(Upload {
        descriptor,
        schema,
        batches,
        failure,
        write_id: None,
    })
}

impl Upload {
    /// The batches, for uploads that are not written (statement parameters).
    pub(super) fn batches(self) -> super::sql::Batches {
        self.batches
            .map_err(|e| Status::from(Error::from(e)))
            .boxed()
    }

    /// Write the upload to an item in one commit. A transport failure keeps its status.
    pub(super) async fn write(
        self,
        engine: &storage::Engine,
        c: &storage::CollectionName,
        i: &storage::ItemName,
        mut opts: storage::WriteOptions,
    ) -> Result<storage::WriteReceipt> {
        if opts.write_id.is_none() {
            opts.write_id = self.write_id.clone();
        }
        self.run(|schema, batches| engine.write(c, i, opts, schema, batches))
            .await
    }

    /// Hand the upload to an engine call; a transport failure keeps its status.
    async fn run<T, F, Fut>(self, call: F) -> Result<T>
    where
        F: FnOnce(SchemaRef, BoxStream<'static, storage::Result<RecordBatch>>) -> Fut,
        Fut: std::future::Future<Output = storage::Result<T>>,
    {
        match call(self.schema, self.batches).await {
            Ok(r) => Ok(r),
            Err(storage::Error::Upload { message }) => {
                let status = self.failure.lock().expect("poisoned").take();
                Err(match status {
                    Some(status) => Error::Transport(Box::new(status)),
                    None => storage::Error::Upload { message }.into(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl FlightStore {
    /// Write an upload; the `PutResult` carries the receipt (DESIGN.md, "Wire contract").
    /// A Flight SQL command (update, ingest, parameters) goes to Flight SQL.
    pub(super) async fn put(
        &self,
        access: &Access,
        request: tonic::Request<Streaming<FlightData>>,
    ) -> Result<PutResult> {
        let header_id = write_id_header(request.metadata())?;
        let mut upload = open_upload(request.into_inner()).await?;
        upload.write_id = header_id;
        let d = &upload.descriptor;
        if d.r#type() == DescriptorType::Cmd {
            if let Some(any) = super::sql::command(&d.cmd) {
                let body = self.sql.put(access, any, upload).await?;
                return Ok(PutResult { app_metadata: body });
            }
        }
        let (c, i, opts) = match d.r#type() {
            DescriptorType::Path => {
                let (c, i) = request::path(d)?;
                (c, i, Default::default())
            }
            DescriptorType::Cmd => {
                let mut req: proto::WriteRequest = decode("WriteRequest", &d.cmd)?;
                if req.write_id.is_none() {
                    req.write_id = upload.write_id.take();
                }
                if let Some(column) = &req.item_column {
                    access.check(&req.collection, Level::Write)?;
                    return self.put_batch(&req, column, upload).await;
                }
                request::write_options(&req)?
            }
            DescriptorType::Unknown => return Err(Error::UntypedDescriptor { call: "DoPut" }),
        };
        access.check(c.as_str(), Level::Write)?;
        let receipt = upload.write(&self.engine, &c, &i, opts).await?;
        info!(collection = %c, item = %i, version = receipt.version, rows = receipt.rows_received, "put");
        let body = proto::PutReceipt {
            version: receipt.version,
            rows_received: receipt.rows_received,
            rows_written: receipt.rows_written,
            duplicate: receipt.duplicate.then_some(true),
        };
        Ok(PutResult {
            app_metadata: flightstore_client::encode_json(&body).into(),
        })
    }

    /// A batch write (`item_column`): the receipt lists each item's commit.
    async fn put_batch(
        &self,
        req: &proto::WriteRequest,
        column: &str,
        upload: Upload,
    ) -> Result<PutResult> {
        if !req.item.is_empty() {
            return Err(Error::Exclusive {
                first: "item",
                second: "item_column",
            });
        }
        let c = request::collection(&req.collection)?;
        let opts = request::write_settings(req)?;
        let receipt = upload
            .run(|schema, batches| self.engine.write_batch(&c, column, opts, schema, batches))
            .await?;
        info!(collection = %c, items = receipt.items.len(), rows = receipt.rows_received, "put batch");
        Ok(PutResult {
            app_metadata: serde_json::to_vec(&receipt)
                .expect("a receipt is JSON")
                .into(),
        })
    }
}
