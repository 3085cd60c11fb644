//! The Rust client library (`flightstore-client`) against a real server: every method,
//! its errors by code, credentials, and reads over many endpoints.

use std::sync::Arc;

use arrow::array::{AsArray, Float64Array, Int64Array, RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType};
use flightstore::auth::AuthFile;
use flightstore_client::{Client, Error, Read, Write};
use futures::{stream, TryStreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use super::common::{tick_schema, values, TestServer, SEC, T0};

/// `n` ticks from `start`: times 0.2-1.8 s apart, a random-walk price, trade ids from
/// `first_id`, side 0/1 at random.
fn market(n: usize, start: i64, first_id: i64, rng: &mut SmallRng) -> RecordBatch {
    let (mut t, mut price) = (start, 100.0f64);
    let (mut ts, mut prices) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        t += rng.random_range(SEC / 5..SEC * 9 / 5);
        price = (price + rng.random_range(-0.05..0.05f64)).max(1.0);
        ts.push(t);
        prices.push((price * 100.0).round() / 100.0);
    }
    let sides: Vec<i8> = (0..n).map(|_| rng.random_range(0..2)).collect();
    RecordBatch::try_new(
        tick_schema(),
        vec![
            Arc::new(TimestampNanosecondArray::from(ts).with_timezone("UTC")),
            Arc::new(Float64Array::from(prices)),
            Arc::new(arrow::array::Int8Array::from(sides)),
            Arc::new(Int64Array::from_iter_values(first_id..first_id + n as i64)),
        ],
    )
    .unwrap()
}

async fn read_all(client: &Client, read: Read) -> Result<Vec<RecordBatch>, Error> {
    client.read(read).await?.try_collect().await
}

fn object(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_of_the_client_against_a_real_server() {
    // Endpoints of 3000 rows: a whole-item read spans many, fetched in parallel.
    let server = TestServer::start_with(|c| c.endpoint_rows = 3000).await;
    let client = Client::connect(format!("grpc://{}", server.addr))
        .await
        .unwrap();
    let mut rng = SmallRng::seed_from_u64(7);

    let health = client.health().await.unwrap();
    assert_eq!(health.status, "ok");
    client.create_collection("NASDAQ").await.unwrap();
    assert_eq!(client.list_collections().await.unwrap(), ["NASDAQ"]);

    // Appends from a stream of batches, in several uploads; each a version.
    let first = market(10_000, T0, 0, &mut rng);
    let last_t = *values::<TimestampNanosecondType>(std::slice::from_ref(&first), "ts")
        .last()
        .unwrap();
    let second = market(15_000, last_t, 10_000, &mut rng);
    let r1 = client
        .write(
            Write::append("NASDAQ", "AAPL").metadata(&object(json!({"source": "feed", "tier": 1}))),
            stream::iter([
                Ok::<_, arrow::error::ArrowError>(first.slice(0, 4000)),
                Ok(first.slice(4000, 6000)),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(
        (r1.version, r1.rows_received, r1.rows_written),
        (Some(1), 10_000, Some(10_000))
    );
    let r2 = client
        .append(
            "NASDAQ",
            "AAPL",
            stream::iter([Ok::<_, arrow::error::ArrowError>(second.clone())]),
        )
        .await
        .unwrap();
    assert_eq!(r2.version, Some(2));
    let all = [first.clone(), second.clone()];

    // A whole read over 9 endpoints comes back whole and in order.
    let batches = read_all(&client, Read::new("NASDAQ", "AAPL"))
        .await
        .unwrap();
    assert_eq!(
        values::<Int64Type>(&batches, "trade_id"),
        (0..25_000).collect::<Vec<_>>()
    );
    assert_eq!(
        values::<Float64Type>(&batches, "price"),
        values::<Float64Type>(&all, "price")
    );
    let stream = client.read(Read::new("NASDAQ", "AAPL")).await.unwrap();
    assert_eq!(stream.schema().fields(), tick_schema().fields());
    assert_eq!(stream.total_records(), Some(25_000));

    // Ranges, columns, filter, limit, last, n_prev, version.
    let ts = values::<TimestampNanosecondType>(&all, "ts");
    let (start, end) = (ts[1234], ts[20_000]);
    let ids = |b: &[RecordBatch]| values::<Int64Type>(b, "trade_id");
    let range = read_all(&client, Read::new("NASDAQ", "AAPL").start(start).end(end))
        .await
        .unwrap();
    assert_eq!(ids(&range), (1234..20_000).collect::<Vec<_>>());
    let iso = flightstore_client::time::format_time(start);
    let range = read_all(
        &client,
        Read::new("NASDAQ", "AAPL")
            .start(iso.as_str())
            .end(end)
            .columns(["trade_id"])
            .limit(10),
    )
    .await
    .unwrap();
    assert_eq!(range[0].num_columns(), 1);
    assert_eq!(ids(&range), (1234..1244).collect::<Vec<_>>());
    let tail = read_all(&client, Read::new("NASDAQ", "AAPL").last(5))
        .await
        .unwrap();
    assert_eq!(ids(&tail), (24_995..25_000).collect::<Vec<_>>());
    let prev = read_all(
        &client,
        Read::new("NASDAQ", "AAPL")
            .start(start)
            .end(end)
            .n_prev(3)
            .limit(4),
    )
    .await
    .unwrap();
    assert_eq!(ids(&prev), [1231, 1232, 1233, 1234]);
    let odd = read_all(
        &client,
        Read::new("NASDAQ", "AAPL").filter("trade_id % 1000 = 999"),
    )
    .await
    .unwrap();
    assert_eq!(
        ids(&odd),
        (0..25).map(|k| k * 1000 + 999).collect::<Vec<_>>()
    );
    let v1 = read_all(&client, Read::new("NASDAQ", "AAPL").version(1))
        .await
        .unwrap();
    assert_eq!(ids(&v1).len(), 10_000);

    // Upserts with a write id: a retry commits nothing and says so.
    let fix = {
        let b = second.slice(0, 100);
        let bumped: Float64Array = b.column(1).as_primitive::<Float64Type>().unary(|p| p + 1.0);
        let mut columns = b.columns().to_vec();
        columns[1] = Arc::new(bumped);
        RecordBatch::try_new(b.schema(), columns).unwrap()
    };
    let upsert = Write::upsert("NASDAQ", "AAPL", ["ts", "trade_id"]).write_id("fix-1");
    let u1 = client
        .write_batches(upsert.clone(), vec![fix.clone()])
        .await
        .unwrap();
    let u2 = client
        .write_batches(upsert, vec![fix.clone()])
        .await
        .unwrap();
    assert!(!u1.duplicate && u2.duplicate);
    assert_eq!(u2.version, u1.version);
    let info = client.item_info("NASDAQ", "AAPL").await.unwrap();
    assert_eq!(info.rows, 25_000);
    assert_eq!(info.version, u1.version.unwrap());
    assert_eq!(
        (info.start, info.end),
        (Some(ts[0]), Some(*ts.last().unwrap()))
    );
    assert_eq!(
        info.schema
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["ts", "price", "side", "trade_id"]
    );
    assert_eq!(info.settings["ordered_on"], "ts");
    assert_eq!(info.metadata, object(json!({"source": "feed", "tier": 1})));

    // `create` of an existing item, a bad filter, an unknown item: typed errors.
    let e = client
        .write_batches(Write::create("NASDAQ", "AAPL"), vec![fix.clone()])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(_)), "{e}");
    let e = read_all(
        &client,
        Read::new("NASDAQ", "AAPL").filter("no_such_column > 1"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    let e = client.item_info("NASDAQ", "MSFT").await.unwrap_err();
    assert!(
        matches!(e, Error::NotFound(ref m) if m.contains("MSFT")),
        "{e}"
    );
    assert_eq!(e.code(), tonic::Code::NotFound);

    // Metadata.
    client
        .write_batches(
            Write::create("NASDAQ", "MSFT").metadata(&object(json!({"source": "other"}))),
            vec![first.slice(0, 500)],
        )
        .await
        .unwrap();
    let feed = client
        .list_items("NASDAQ", None, Some(&object(json!({"source": "feed"}))))
        .await
        .unwrap();
    assert_eq!(feed, ["AAPL"]);
    assert_eq!(
        client.list_items("NASDAQ", Some("MS"), None).await.unwrap(),
        ["MSFT"]
    );
    let m = client
        .update_metadata(
            "NASDAQ",
            "AAPL",
            &object(json!({"tier": null, "note": "x"})),
        )
        .await
        .unwrap();
    assert_eq!(m, object(json!({"source": "feed", "note": "x"})));
    assert_eq!(client.get_metadata("NASDAQ", "AAPL").await.unwrap(), m);

    // Versions, snapshots, time travel by snapshot.
    let versions = client.list_versions("NASDAQ", "AAPL").await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        (1..=versions.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(versions[0].operation, "append");
    let snap = client.create_snapshot("NASDAQ", "eod").await.unwrap();
    assert_eq!((snap.snapshot.as_str(), snap.items), ("eod", 2));
    let deleted = client
        .delete_range("NASDAQ", "AAPL", ts[0], ts[1000])
        .await
        .unwrap();
    assert_eq!(deleted.rows_deleted, 1000);
    let at_eod = read_all(&client, Read::new("NASDAQ", "AAPL").snapshot("eod"))
        .await
        .unwrap();
    assert_eq!(ids(&at_eod).len(), 25_000);
    assert_eq!(
        client.list_snapshots("NASDAQ").await.unwrap()[0].snapshot,
        "eod"
    );
    client.delete_snapshot("NASDAQ", "eod").await.unwrap();
    assert!(client.list_snapshots("NASDAQ").await.unwrap().is_empty());

    // Multi-item reads, gaps, changes, compaction, vacuum, ListFlights, SQL.
    let both = read_all(
        &client,
        Read::items("NASDAQ", ["AAPL", "MSFT"]).end(ts[1500]),
    )
    .await
    .unwrap();
    assert_eq!(
        both.iter().map(RecordBatch::num_rows).sum::<usize>(),
        500 + 500
    );
    let gaps = client
        .missing_intervals("NASDAQ", "AAPL", ts[0] - ts[0] % SEC, ts[2000], "1s")
        .await
        .unwrap();
    assert!(
        gaps.first().is_some_and(|g| g.0 == ts[0] - ts[0] % SEC),
        "the deleted range is a gap: {gaps:?}"
    );
    let changes = client.changes_since("NASDAQ", 0).await.unwrap();
    assert_eq!(changes.len(), 2);
    let compacted = client.compact("NASDAQ", "AAPL").await.unwrap();
    assert!(compacted.files_after <= compacted.files_before);
    client.vacuum(Some("NASDAQ"), None).await.unwrap();
    let flights = client.list_flights(Default::default()).await.unwrap();
    assert_eq!(flights.len(), 2);
    let count: Vec<RecordBatch> = client
        .sql("SELECT count(*) AS n FROM \"NASDAQ\".\"AAPL\"")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        count[0].column(0).as_primitive::<Int64Type>().value(0),
        24_000
    );
    let e = client
        .sql("SELECT nope FROM NASDAQ.AAPL")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");

    client.delete_item("NASDAQ", "MSFT").await.unwrap();
    assert_eq!(
        client.list_items("NASDAQ", None, None).await.unwrap(),
        ["AAPL"]
    );
    client.delete_collection("NASDAQ").await.unwrap();
    assert!(client.list_collections().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_replace_range_batch_writes_and_grids() {
    let server = TestServer::start().await;
    let client = server.rust_client().await;
    let mut rng = SmallRng::seed_from_u64(11);
    let first = market(2000, T0, 0, &mut rng);
    let ts = values::<TimestampNanosecondType>(std::slice::from_ref(&first), "ts");
    let ids = |b: &[RecordBatch]| values::<Int64Type>(b, "trade_id");
    client
        .write_batches(Write::create("A", "x"), vec![first.clone()])
        .await
        .unwrap();

    // replace_range: the rows in [ts[500], ts[1000]) become the upload's.
    let patch = market(10, ts[500] - 1, 90_000, &mut rng);
    let patch_ts = values::<TimestampNanosecondType>(std::slice::from_ref(&patch), "ts");
    assert!(
        *patch_ts.last().unwrap() < ts[1000],
        "the patch lies inside the range"
    );
    let r = client
        .write_batches(
            Write::replace_range("A", "x", ts[500], ts[1000]),
            vec![patch],
        )
        .await
        .unwrap();
    assert_eq!(r.rows_written, Some(10));
    let got = read_all(&client, Read::new("A", "x")).await.unwrap();
    let expected: Vec<i64> = (0..500).chain(90_000..90_010).chain(1000..2000).collect();
    assert_eq!(ids(&got), expected);

    // overwrite: only the upload's rows stay.
    let fresh = market(300, T0, 50_000, &mut rng);
    client
        .write_batches(Write::overwrite("A", "x"), vec![fresh])
        .await
        .unwrap();
    let got = read_all(&client, Read::new("A", "x")).await.unwrap();
    assert_eq!(ids(&got), (50_000..50_300).collect::<Vec<_>>());

    // A batch write: each row to the item its `symbol` column names.
    let symbols: arrow::array::StringArray = (0..2000)
        .map(|i| Some(["AAPL", "MSFT", "NVDA"][i % 3]))
        .collect();
    let mut columns = first.columns().to_vec();
    columns.push(Arc::new(symbols));
    let mut fields: Vec<_> = first.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(arrow::datatypes::Field::new(
        "symbol",
        arrow::datatypes::DataType::Utf8,
        false,
    )));
    let batch =
        RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns).unwrap();
    let r = client
        .write_batches(Write::batch("B", "symbol"), vec![batch])
        .await
        .unwrap();
    assert_eq!(r.rows_received, 2000);
    assert_eq!(r.items.keys().collect::<Vec<_>>(), ["AAPL", "MSFT", "NVDA"]);
    assert!(r
        .items
        .values()
        .all(|i| i.version == 1 && (666..=667).contains(&i.rows_written)));
    let msft = read_all(&client, Read::new("B", "MSFT")).await.unwrap();
    assert_eq!(
        ids(&msft),
        (0..2000).filter(|i| i % 3 == 1).collect::<Vec<_>>()
    );

    // A grid: one row a minute over the first hour, empty minutes filled with nulls.
    let start = T0 - T0 % (60 * SEC);
    let grid = read_all(
        &client,
        Read::new("B", "AAPL")
            .start(start)
            .end(start + 3600 * SEC)
            .grid("1min", None),
    )
    .await
    .unwrap();
    assert_eq!(grid.iter().map(RecordBatch::num_rows).sum::<usize>(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_input_fails_commits_nothing() {
    let server = TestServer::start().await;
    let client = Client::connect(format!("grpc://{}", server.addr))
        .await
        .unwrap();
    let mut rng = SmallRng::seed_from_u64(8);
    let batch = market(1000, T0, 0, &mut rng);
    client
        .write_batches(Write::append("A", "x"), vec![batch.clone()])
        .await
        .unwrap();
    let failing = stream::iter([
        Ok(market(1000, T0 + 2000 * SEC, 1000, &mut rng)),
        Err(arrow::error::ArrowError::IoError(
            "the disk went away".into(),
            std::io::ErrorKind::Other.into(),
        )),
    ]);
    let e = client.append("A", "x", failing).await.unwrap_err();
    assert!(e.to_string().contains("the disk went away"), "{e}");
    let info = client.item_info("A", "x").await.unwrap();
    assert_eq!((info.rows, info.version), (1000, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_logins_and_their_refusals() {
    let auth = tempfile::tempdir().unwrap();
    let path = auth.path().join("auth.json");
    let mut file = AuthFile::default();
    let writer = file
        .create_token("ingest", vec!["A:write".parse().unwrap()])
        .unwrap();
    file.add_user("alice", "s3cret pass", vec!["A:read".parse().unwrap()])
        .unwrap();
    file.save(&path).unwrap();
    let server = TestServer::start_with(|c| c.auth_file = Some(path.clone())).await;
    let url = format!("grpc://{}", server.addr);
    let mut rng = SmallRng::seed_from_u64(9);

    let anonymous = Client::connect(url.clone()).await.unwrap();
    assert!(matches!(
        anonymous.list_collections().await,
        Err(Error::Unauthenticated(_))
    ));
    let ingest = Client::builder(url.clone())
        .token(&writer)
        .connect()
        .await
        .unwrap();
    ingest
        .write_batches(Write::append("A", "x"), vec![market(100, T0, 0, &mut rng)])
        .await
        .unwrap();
    let e = ingest
        .write_batches(Write::append("B", "x"), vec![market(100, T0, 0, &mut rng)])
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::PermissionDenied(ref m) if m.contains("ingest")),
        "{e}"
    );

    let alice = Client::builder(url.clone())
        .login("alice", "s3cret pass")
        .connect()
        .await
        .unwrap();
    assert_eq!(
        read_all(&alice, Read::new("A", "x")).await.unwrap()[0].num_rows(),
        100
    );
    let e = alice.delete_item("A", "x").await.unwrap_err();
    assert!(matches!(e, Error::PermissionDenied(_)), "{e}");
    let e = Client::builder(url.clone())
        .login("alice", "wrong")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthenticated(_)), "{e}");

    let e = Client::connect("ftp://127.0.0.1:1").await.unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    let e = Client::connect("grpc://127.0.0.1:1").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
}

/// Regression: a read of more endpoints than the client fetches at once, each larger
/// than an HTTP/2 stream window, hung (the endpoints read ahead took the connection's
/// whole window, and the one being consumed got no data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_many_large_endpoints_does_not_stall() {
    let server = TestServer::start_with(|c| c.endpoint_rows = 250_000).await;
    let client = server.rust_client().await;
    let mut rng = SmallRng::seed_from_u64(10);
    let batches: Vec<RecordBatch> = (0..8)
        .map(|k| market(250_000, T0 + k * 1_000_000 * SEC, k * 250_000, &mut rng))
        .collect();
    // One upload of 64 MB: files of 262144 rows, so endpoints of about that many rows.
    client
        .write_batches(Write::append("A", "big"), batches)
        .await
        .unwrap();
    let path = vec!["A".to_string(), "big".to_string()];
    let info = client
        .flight_client()
        .get_flight_info(arrow_flight::FlightDescriptor::new_path(path))
        .await
        .unwrap();
    assert!(
        info.endpoint.len() >= 6,
        "{} endpoints",
        info.endpoint.len()
    );
    // A reader that pauses (as one writing a slow file): the endpoints read ahead fill
    // their queues and windows meanwhile.
    let read = async {
        let mut stream = client.read(Read::new("A", "big")).await.unwrap();
        let mut got = Vec::new();
        while let Some(batch) = stream.try_next().await.unwrap() {
            if got.is_empty() {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            got.push(batch);
        }
        got
    };
    let got = tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .expect("the read stalled");
    assert_eq!(
        values::<Int64Type>(&got, "trade_id"),
        (0..2_000_000).collect::<Vec<_>>()
    );
}
