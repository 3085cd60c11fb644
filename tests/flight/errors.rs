//! Bad input over the wire: the right status code, and nothing changed.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::{Action, FlightClient, FlightData, FlightDescriptor, Ticket};
use futures::{stream, TryStreamExt};
use serde_json::json;
use tonic::Code;

use crate::common::*;
use crate::files::walk;

async fn get_code(client: &mut FlightClient, ticket: &[u8]) -> Code {
    let result: Result<Vec<_>, _> = match client.do_get(Ticket::new(ticket.to_vec())).await {
        Ok(s) => s.try_collect().await,
        Err(e) => Err(e),
    };
    code(&result.expect_err("the read must fail"))
}

async fn action_code(client: &mut FlightClient, name: &str, body: &[u8]) -> Code {
    match client.do_action(Action::new(name, body.to_vec())).await {
        Ok(mut s) => code(&s.try_next().await.expect_err("the action must fail")),
        Err(e) => code(&e),
    }
}

/// Version and rows of c/t: what must not change.
async fn state(client: &mut FlightClient) -> (serde_json::Value, Vec<i64>) {
    let info = action(client, "item_info", json!({"collection": "c", "item": "t"}))
        .await
        .unwrap();
    (
        info["version"].clone(),
        ids(&get(client, json!({"collection": "c", "item": "t"}))
            .await
            .unwrap()),
    )
}

#[tokio::test]
async fn malformed_tickets_commands_and_bodies_are_invalid_arguments() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    put(&mut client, path("c", "t"), vec![ticks(0..10, 0.0)])
        .await
        .unwrap();

    let malformed: [&[u8]; 8] = [
        b"\xff\x00garbage",
        b"{not json",
        br#"{"collection": "c", "item": "t", "limt": 5}"#,
        br#"{"collection": "c", "item": "t", "start": "yesterday"}"#,
        br#"{"collection": "c", "item": "t", "limit": 1, "last": 1}"#,
        br#"{"collection": "c", "item": "t", "version": 1, "snapshot": "s"}"#,
        br#"{"collection": "c", "item": "t", "filter": "nope > 1"}"#,
        br#"{"collection": "c", "item": "t", "columns": ["nope"]}"#,
    ];
    for ticket in malformed {
        let shown = String::from_utf8_lossy(ticket);
        assert_eq!(
            get_code(&mut client, ticket).await,
            Code::InvalidArgument,
            "{shown}"
        );
    }

    let e = client
        .get_flight_info(FlightDescriptor::new_path(vec!["only-collection".into()]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);
    let e = client
        .get_flight_info(cmd(
            json!({"collection": "c", "item": "t", "columns": ["nope"]}),
        ))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);
    let e = client
        .list_flights("{\"colection\": \"c\"}")
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);

    assert_eq!(
        action_code(&mut client, "no_such_action", b"{}").await,
        Code::InvalidArgument
    );
    assert_eq!(
        action_code(&mut client, "item_info", b"{\"collection\": \"c\"").await,
        Code::InvalidArgument
    );
    assert_eq!(
        action_code(
            &mut client,
            "item_info",
            br#"{"collection": "c", "item": "t", "x": 1}"#
        )
        .await,
        Code::InvalidArgument
    );
    assert_eq!(
        action_code(
            &mut client,
            "update_metadata",
            br#"{"collection": "c", "item": "t"}"#
        )
        .await,
        Code::InvalidArgument
    );
    assert_eq!(
        action_code(
            &mut client,
            "missing_intervals",
            br#"{"collection": "c", "item": "t", "start": 0, "end": 10, "freq": "1 parsec"}"#
        )
        .await,
        Code::InvalidArgument
    );
    assert_eq!(
        action_code(
            &mut client,
            "delete_range",
            br#"{"collection": "c", "item": "t", "start": 0}"#
        )
        .await,
        Code::InvalidArgument
    );

    // Bad WriteRequests are refused before anything is written.
    for body in [
        json!({"collection": "c", "item": "t", "mode": "apend"}),
        json!({"collection": "c", "item": "t", "keep": "middle"}),
        json!({"collection": "c", "item": "t", "schema_evolution": "anything"}),
        json!({"collection": "c", "item": "t", "row_group_target": "1 fortnight"}),
        json!({"collection": "c", "item": "t", "metadata": "not an object"}),
        json!({"collection": "c", "item": "t", "mode": "replace_range"}),
        json!({"collection": "c", "item": "t", "unknown": true}),
    ] {
        let e = put(&mut client, cmd(body.clone()), vec![ticks(100..110, 0.0)])
            .await
            .unwrap_err();
        assert_eq!(code(&e), Code::InvalidArgument, "{body}");
    }
    assert_eq!(state(&mut client).await, (json!(1), (0..10).collect()));
}

#[tokio::test]
async fn unknown_things_are_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    put(&mut client, path("c", "t"), vec![ticks(0..10, 0.0)])
        .await
        .unwrap();
    let unknown: [&[u8]; 4] = [
        br#"{"collection": "c", "item": "nope"}"#,
        br#"{"collection": "nope", "item": "t"}"#,
        br#"{"collection": "c", "item": "t", "version": 9}"#,
        br#"{"collection": "c", "item": "t", "snapshot": "nope"}"#,
    ];
    for ticket in unknown {
        let shown = String::from_utf8_lossy(ticket);
        assert_eq!(
            get_code(&mut client, ticket).await,
            Code::NotFound,
            "{shown}"
        );
    }
    assert_eq!(
        code(&client.get_flight_info(path("c", "nope")).await.unwrap_err()),
        Code::NotFound
    );
    assert_eq!(
        code(&client.get_schema(path("c", "nope")).await.unwrap_err()),
        Code::NotFound
    );
    for (name, body) in [
        ("item_info", json!({"collection": "c", "item": "nope"})),
        ("delete_item", json!({"collection": "c", "item": "nope"})),
        ("get_metadata", json!({"collection": "c", "item": "nope"})),
        ("list_items", json!({"collection": "nope"})),
        (
            "delete_snapshot",
            json!({"collection": "c", "snapshot": "nope"}),
        ),
        (
            "delete_range",
            json!({"collection": "c", "item": "nope", "start": 0, "end": 1}),
        ),
    ] {
        assert_eq!(
            action_code(&mut client, name, body.to_string().as_bytes()).await,
            Code::NotFound,
            "{name}"
        );
    }
}

#[tokio::test]
async fn traversal_and_bad_names_are_refused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for (c, item) in [
        ("..", "t"),
        ("c", "../../etc"),
        ("c", "a//b"),
        ("c", "a/./b"),
        ("c", "bad\nname"),
        ("c", "_manifest"),
        ("", "t"),
    ] {
        let descriptor = FlightDescriptor::new_path(vec![c.to_string(), item.to_string()]);
        let e = put(&mut client, descriptor, vec![ticks(0..1, 0.0)])
            .await
            .unwrap_err();
        assert_eq!(code(&e), Code::InvalidArgument, "{c}/{item}");
        let ticket = json!({"collection": c, "item": item}).to_string();
        assert_eq!(
            get_code(&mut client, ticket.as_bytes()).await,
            Code::InvalidArgument,
            "{c}/{item}"
        );
    }
    // Nothing was created anywhere.
    assert_eq!(
        action(&mut client, "list_collections", json!({}))
            .await
            .unwrap(),
        json!([])
    );
    // (The write-ahead log's folder exists from the start.)
    let wal = server.dir.path().join("_wal");
    let files: Vec<_> = walk(server.dir.path())
        .into_iter()
        .filter(|f| !f.starts_with(&wal))
        .collect();
    assert!(files.is_empty(), "{files:?}");
}

#[tokio::test]
async fn bad_uploads_change_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    put(&mut client, path("c", "t"), vec![ticks(0..10, 0.0)])
        .await
        .unwrap();

    // Schema mismatch: a column with another type, and an extra column.
    let wrong = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, Some("UTC".into())),
            true,
        ),
        Field::new("price", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&wrong),
        vec![
            Arc::new(TimestampNanosecondArray::from(vec![T0 + 100 * SEC]).with_timezone("UTC")),
            Arc::new(Int64Array::from(vec![1])),
        ],
    )
    .unwrap();
    let e = put(&mut client, path("c", "t"), vec![batch])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);
    assert!(e.to_string().contains("price"), "{e}");

    // A null in the ordering column, after good batches.
    let ts = TimestampNanosecondArray::from(vec![Some(T0 + 200 * SEC), None]).with_timezone("UTC");
    let nulls = RecordBatch::try_new(
        tick_schema(),
        vec![
            Arc::new(ts),
            Arc::new(Float64Array::from(vec![1.0, 2.0])),
            Arc::new(arrow::array::Int8Array::from(vec![0, 0])),
            Arc::new(Int64Array::from(vec![200, 201])),
        ],
    )
    .unwrap();
    let e = put(
        &mut client,
        path("c", "t"),
        vec![ticks(100..150, 0.0), nulls],
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);

    // No ordering column at all (a new item: no timestamp column to default to).
    let no_ts = Arc::new(Schema::new(vec![Field::new(
        "price",
        DataType::Float64,
        true,
    )]));
    let b = RecordBatch::try_new(no_ts, vec![Arc::new(Float64Array::from(vec![1.0]))]).unwrap();
    let e = put(&mut client, path("c", "new"), vec![b])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);

    // A different ordering column on an existing item.
    let e = put(
        &mut client,
        cmd(json!({"collection": "c", "item": "t", "ordered_on": "trade_id"})),
        vec![ticks(300..301, 0.0)],
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), Code::FailedPrecondition);

    // A stream that is not Arrow at all.
    let junk = FlightData {
        flight_descriptor: Some(path("c", "t")),
        data_header: vec![1, 2, 3].into(),
        ..Default::default()
    };
    let e = match client.do_put(stream::iter(vec![Ok(junk)])).await {
        Ok(mut s) => s.try_next().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(code(&e), Code::InvalidArgument);

    assert_eq!(state(&mut client).await, (json!(1), (0..10).collect()));
    let items = action(&mut client, "list_items", json!({"collection": "c"}))
        .await
        .unwrap();
    assert_eq!(items, json!(["t"]));
}

/// The FlightData messages of a raw DoPut request body (gRPC frames).
fn grpc_frames(mut bytes: &[u8]) -> Vec<arrow_flight::FlightData> {
    use prost::Message;
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        let end = (5 + len).min(bytes.len());
        match arrow_flight::FlightData::decode(&bytes[5..end]) {
            Ok(m) => out.push(m),
            Err(_) => break,
        }
        bytes = &bytes[end..];
    }
    out
}

#[tokio::test]
async fn malformed_arrow_ipc_that_panics_arrow_is_invalid_argument() {
    // Regression (found by fuzzing, fuzz/regressions/do_put): arrow 59's IPC reader
    // panics on these uploads; the server refuses them and goes on serving.
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/do_put");
    let mut sent = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let messages = grpc_frames(&std::fs::read(&path).unwrap());
        let result = client
            .do_put(futures::stream::iter(messages.into_iter().map(Ok)))
            .await;
        let outcome = match result {
            Ok(mut results) => results.try_next().await.map(|_| ()),
            Err(e) => Err(e),
        };
        let e = outcome.expect_err(&path.display().to_string());
        assert_eq!(code(&e), Code::InvalidArgument, "{}: {e}", path.display());
        sent += 1;
    }
    assert!(
        sent >= 4,
        "regression inputs missing from {}",
        dir.display()
    );
    let health = action(&mut client, "health", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
}
