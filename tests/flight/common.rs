//! A real server on a random port over a temporary folder, and a Flight client for it.

use std::net::SocketAddr;
use std::sync::Arc;

use arrow::array::{ArrowPrimitiveType, AsArray};
use arrow::array::{Float64Array, Int64Array, Int8Array, RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, FlightClient, FlightDescriptor, Ticket};
use flightstore::server::{Bound, Config};
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::Value;
use tonic::transport::Channel;
use tonic::Code;

pub(crate) const T0: i64 = 1_704_067_200_000_000_000; // 2024-01-01T00:00:00Z
pub(crate) const SEC: i64 = 1_000_000_000;

/// A running server; stops when dropped.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with settings changed by `tune`.
    pub(crate) async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data: dir.path().to_str().unwrap().to_string(),
            bind: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        tune(&mut config);
        let bound = Bound::bind(config).await.unwrap();
        let addr = bound.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(bound.serve(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            dir,
            stop: Some(stop),
        }
    }

    /// A raw Flight client (for tests of the Flight surface itself).
    pub(crate) async fn client(&self) -> FlightClient {
        connect(&self.addr.to_string()).await
    }

    /// The Rust client library on a connection of its own.
    pub(crate) async fn rust_client(&self) -> flightstore_client::Client {
        flightstore_client::Client::connect(format!("grpc://{}", self.addr))
            .await
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A client on a connection of its own to `addr` (`host:port`), with 64 MiB messages.
pub(crate) async fn connect(addr: &str) -> FlightClient {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let inner = FlightServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    FlightClient::new_from_inner(inner)
}

pub(crate) fn tick_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            true,
        ),
        Field::new("price", DataType::Float64, true),
        Field::new("side", DataType::Int8, true),
        Field::new("trade_id", DataType::Int64, true),
    ]))
}

/// Ticks with ids `ids`: ts = T0 + id seconds, price = id + bump.
pub(crate) fn ticks(ids: impl IntoIterator<Item = i64>, bump: f64) -> RecordBatch {
    let ids: Vec<i64> = ids.into_iter().collect();
    RecordBatch::try_new(
        tick_schema(),
        vec![
            Arc::new(
                TimestampNanosecondArray::from_iter_values(ids.iter().map(|i| T0 + i * SEC))
                    .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|i| *i as f64 + bump),
            )),
            Arc::new(Int8Array::from_iter_values(
                ids.iter().map(|i| (i % 2) as i8),
            )),
            Arc::new(Int64Array::from(ids)),
        ],
    )
    .unwrap()
}

pub(crate) fn path(c: &str, item: &str) -> FlightDescriptor {
    let mut p = vec![c.to_string()];
    p.extend(item.split('/').map(str::to_string));
    FlightDescriptor::new_path(p)
}

pub(crate) fn cmd(json: Value) -> FlightDescriptor {
    FlightDescriptor::new_cmd(json.to_string())
}

pub(crate) fn code(e: &FlightError) -> Code {
    match e {
        FlightError::Tonic(s) => s.code(),
        other => panic!("not a status: {other}"),
    }
}

/// DoPut `batches` under `descriptor`; the receipt JSON.
pub(crate) async fn put(
    client: &mut FlightClient,
    descriptor: FlightDescriptor,
    batches: Vec<RecordBatch>,
) -> Result<Value, FlightError> {
    let schema = batches.first().map_or_else(tick_schema, |b| b.schema());
    let data = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_flight_descriptor(Some(descriptor))
        .build(stream::iter(batches.into_iter().map(Ok)));
    let mut results = client.do_put(data).await?;
    let mut receipt = None;
    while let Some(r) = results.try_next().await? {
        receipt = Some(serde_json::from_slice(&r.app_metadata).unwrap());
    }
    Ok(receipt.expect("a PutResult"))
}

pub(crate) async fn get(
    client: &mut FlightClient,
    ticket: Value,
) -> Result<Vec<RecordBatch>, FlightError> {
    client
        .do_get(Ticket::new(ticket.to_string()))
        .await?
        .try_collect()
        .await
}

pub(crate) async fn action(
    client: &mut FlightClient,
    name: &str,
    body: Value,
) -> Result<Value, FlightError> {
    let mut results = client
        .do_action(Action::new(name, body.to_string()))
        .await?;
    let first = results.next().await.expect("one result")?;
    Ok(serde_json::from_slice(&first).unwrap())
}

/// The trade ids of every endpoint of `info`, fetched in order.
pub(crate) async fn endpoint_ids(
    client: &mut FlightClient,
    info: &arrow_flight::FlightInfo,
) -> Vec<i64> {
    let mut all = Vec::new();
    for e in &info.endpoint {
        let batches: Vec<RecordBatch> = client
            .do_get(e.ticket.clone().expect("endpoints carry tickets"))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        all.extend(ids(&batches));
    }
    all
}

/// The values of a primitive column of every batch.
pub(crate) fn values<T: ArrowPrimitiveType>(batches: &[RecordBatch], name: &str) -> Vec<T::Native> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<T>()
                .values()
                .to_vec()
        })
        .collect()
}

pub(crate) fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    values::<Int64Type>(batches, "trade_id")
}

pub(crate) fn prices(batches: &[RecordBatch]) -> Vec<f64> {
    values::<Float64Type>(batches, "price")
}
