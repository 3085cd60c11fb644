//! Every RPC and action against a real server, checked like a user would.

use arrow_flight::FlightDescriptor;
use futures::TryStreamExt;
use serde_json::json;
use tonic::Code;

use crate::common::*;

async fn list(client: &mut arrow_flight::FlightClient, expr: &str) -> Vec<(String, i64)> {
    let infos: Vec<_> = client
        .list_flights(expr.to_string())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    infos
        .into_iter()
        .map(|i| (i.flight_descriptor.unwrap().path.join("/"), i.total_records))
        .collect()
}

async fn read_ids(client: &mut arrow_flight::FlightClient, request: serde_json::Value) -> Vec<i64> {
    ids(&get(client, request).await.unwrap())
}

#[tokio::test]
async fn put_append_read_info_schema_and_list() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    // Path descriptor: append, creating the item (a nested name).
    let r = put(
        &mut client,
        path("NASDAQ", "AAPL/trades"),
        vec![ticks(0..100, 0.0)],
    )
    .await
    .unwrap();
    assert_eq!(
        r,
        json!({"version": 1, "rows_received": 100, "rows_written": 100})
    );
    // Out-of-order rows land in order.
    let r = put(
        &mut client,
        path("NASDAQ", "AAPL/trades"),
        vec![ticks((100..200).rev(), 0.0), ticks(200..250, 0.0)],
    )
    .await
    .unwrap();
    assert_eq!(r["version"], 2);

    let info = client
        .get_flight_info(path("NASDAQ", "AAPL/trades"))
        .await
        .unwrap();
    assert_eq!(info.total_records, 250);
    assert!(info.total_bytes > 0);
    assert!(info.ordered);
    assert_eq!(info.endpoint.len(), 1);
    let schema = info.clone().try_decode_schema().unwrap();
    assert_eq!(schema.fields().len(), 4);
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let batches: Vec<_> = client
        .do_get(ticket)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids(&batches), (0..250).collect::<Vec<_>>());

    // A ReadRequest command: projection shows in the schema and the rows.
    let request =
        json!({"collection": "NASDAQ", "item": "AAPL/trades", "columns": ["trade_id", "price"]});
    let info = client.get_flight_info(cmd(request.clone())).await.unwrap();
    let names: Vec<String> = info
        .try_decode_schema()
        .unwrap()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["trade_id", "price"]);
    let schema = client.get_schema(cmd(request)).await.unwrap();
    assert_eq!(schema.fields().len(), 2);

    // ListFlights: all, by collection, by prefix, by metadata.
    put(&mut client, path("NASDAQ", "MSFT"), vec![ticks(0..10, 0.0)])
        .await
        .unwrap();
    put(&mut client, path("EOD", "AAPL"), vec![ticks(0..5, 0.0)])
        .await
        .unwrap();
    assert_eq!(list(&mut client, "").await.len(), 3);
    assert_eq!(
        list(&mut client, r#"{"collection": "NASDAQ"}"#).await,
        vec![
            ("NASDAQ/AAPL/trades".to_string(), 250),
            ("NASDAQ/MSFT".to_string(), 10)
        ]
    );
    assert_eq!(
        list(&mut client, r#"{"collection": "NASDAQ", "prefix": "MS"}"#).await,
        vec![("NASDAQ/MSFT".to_string(), 10)]
    );
    action(
        &mut client,
        "update_metadata",
        json!({"collection": "EOD", "item": "AAPL", "metadata": {"source": "feed"}}),
    )
    .await
    .unwrap();
    assert_eq!(
        list(&mut client, r#"{"metadata": {"source": "feed"}}"#).await,
        vec![("EOD/AAPL".to_string(), 5)]
    );
    let infos: Vec<_> = client
        .list_flights(r#"{"collection": "EOD"}"#)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&infos[0].app_metadata).unwrap();
    assert_eq!(
        meta,
        json!({"start": T0, "end": T0 + 4 * SEC, "version": 2, "metadata": {"source": "feed"}})
    );
}

#[tokio::test]
async fn write_modes_through_write_requests() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let w = |extra: serde_json::Value| {
        let mut body = json!({"collection": "c", "item": "t"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        cmd(body)
    };
    // create, then create again fails.
    let r = put(&mut client, w(json!({"mode": "create", "dedup_on": ["trade_id"], "row_group_target": "1D", "metadata": {"desk": "a"}})), vec![ticks(0..100, 0.0)]).await.unwrap();
    assert_eq!(r["version"], 1);
    let e = put(
        &mut client,
        w(json!({"mode": "create"})),
        vec![ticks(0..1, 0.0)],
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), Code::AlreadyExists);

    // upsert 50..150: 50 replaced, 50 new.
    let r = put(
        &mut client,
        w(json!({"mode": "upsert"})),
        vec![ticks(50..150, 0.5)],
    )
    .await
    .unwrap();
    assert_eq!(
        r,
        json!({"version": 2, "rows_received": 100, "rows_written": 100})
    );
    let all = get(&mut client, json!({"collection": "c", "item": "t"}))
        .await
        .unwrap();
    assert_eq!(ids(&all), (0..150).collect::<Vec<_>>());
    assert_eq!(prices(&all)[49..51], [49.0, 50.5]);
    // keep first: the stored rows win.
    put(
        &mut client,
        w(json!({"mode": "upsert", "keep": "first"})),
        vec![ticks(0..10, 9.0)],
    )
    .await
    .unwrap();
    assert_eq!(
        prices(
            &get(
                &mut client,
                json!({"collection": "c", "item": "t", "limit": 1})
            )
            .await
            .unwrap()
        ),
        [0.0]
    );

    // replace_range [10s, 20s): rows 10..20 replaced by 3 rows.
    let r = put(
        &mut client,
        w(json!({"mode": "replace_range", "start": T0 + 10 * SEC, "end": "2024-01-01T00:00:20Z"})),
        vec![ticks([11, 12, 13], 0.0)],
    )
    .await
    .unwrap();
    assert_eq!(r["rows_written"], 3);
    let all = ids(&get(&mut client, json!({"collection": "c", "item": "t"}))
        .await
        .unwrap());
    assert_eq!(all.len(), 150 - 10 + 3);

    // overwrite.
    put(
        &mut client,
        w(json!({"mode": "overwrite"})),
        vec![ticks(1000..1010, 0.0)],
    )
    .await
    .unwrap();
    assert_eq!(
        ids(&get(&mut client, json!({"collection": "c", "item": "t"}))
            .await
            .unwrap()),
        (1000..1010).collect::<Vec<_>>()
    );
    let info = action(
        &mut client,
        "item_info",
        json!({"collection": "c", "item": "t"}),
    )
    .await
    .unwrap();
    assert_eq!(info["settings"]["row_group_target"], "1D");
    assert_eq!(info["metadata"], json!({"desk": "a"}));

    // A protobuf-binary WriteRequest works too.
    use prost::Message;
    let binary = flightstore_client::proto::WriteRequest {
        collection: "c".into(),
        item: "bin".into(),
        ..Default::default()
    };
    let r = put(
        &mut client,
        FlightDescriptor::new_cmd(binary.encode_to_vec()),
        vec![ticks(0..3, 0.0)],
    )
    .await
    .unwrap();
    assert_eq!(r["rows_written"], 3);
}

#[tokio::test]
async fn read_requests_range_filter_limit_last_n_prev_version_snapshot() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    put(&mut client, path("c", "t"), vec![ticks(0..100, 0.0)])
        .await
        .unwrap();
    let read = |extra: serde_json::Value| {
        let mut body = json!({"collection": "c", "item": "t"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    assert_eq!(
        read_ids(
            &mut client,
            read(json!({"start": T0 + 10 * SEC, "end": "2024-01-01T00:00:13Z"}))
        )
        .await,
        [10, 11, 12]
    );
    assert_eq!(
        read_ids(
            &mut client,
            read(json!({"filter": "side = 1 AND price < 7"}))
        )
        .await,
        [1, 3, 5]
    );
    assert_eq!(
        read_ids(&mut client, read(json!({"limit": 2}))).await,
        [0, 1]
    );
    assert_eq!(
        read_ids(&mut client, read(json!({"last": 2}))).await,
        [98, 99]
    );
    assert_eq!(
        read_ids(
            &mut client,
            read(json!({"start": T0 + 10 * SEC, "end": T0 + 12 * SEC, "n_prev": 3}))
        )
        .await,
        [7, 8, 9, 10, 11]
    );
    // n_prev rows pass the filter too; then last.
    assert_eq!(
        read_ids(
            &mut client,
            read(json!({"start": T0 + 10 * SEC, "n_prev": 2, "filter": "side = 0", "limit": 3}))
        )
        .await,
        [6, 8, 10]
    );

    // Versions and snapshots.
    action(
        &mut client,
        "create_snapshot",
        json!({"collection": "c", "snapshot": "eod"}),
    )
    .await
    .unwrap();
    put(&mut client, path("c", "t"), vec![ticks(100..110, 0.0)])
        .await
        .unwrap();
    assert_eq!(read_ids(&mut client, read(json!({}))).await.len(), 110);
    assert_eq!(
        read_ids(&mut client, read(json!({"version": 1})))
            .await
            .len(),
        100
    );
    assert_eq!(
        read_ids(&mut client, read(json!({"snapshot": "eod"})))
            .await
            .len(),
        100
    );
    let info = client
        .get_flight_info(cmd(read(json!({"snapshot": "eod"}))))
        .await
        .unwrap();
    assert_eq!(info.total_records, 100);
}

#[tokio::test]
async fn large_reads_split_into_endpoints_pinned_to_one_version() {
    // Small files and a small split size keep the test small.
    let server = TestServer::start_with(|c| {
        c.endpoint_rows = 2500;
        c.options.file_target_rows = 1000;
    })
    .await;
    let mut client = server.client().await;

    put(&mut client, path("c", "big"), vec![ticks(0..10_000, 0.0)])
        .await
        .unwrap();
    let info = client.get_flight_info(path("c", "big")).await.unwrap();
    assert!(
        info.endpoint.len() >= 3,
        "{} endpoints",
        info.endpoint.len()
    );
    assert_eq!(info.total_records, 10_000);
    // A write between planning and fetching does not leak into the read.
    put(
        &mut client,
        path("c", "big"),
        vec![ticks(10_000..10_500, 0.0)],
    )
    .await
    .unwrap();
    let all = endpoint_ids(&mut client, &info).await;
    assert_eq!(all, (0..10_000).collect::<Vec<_>>());
}

#[tokio::test]
async fn every_action_works() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let listed: Vec<_> = client
        .list_actions()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let names: Vec<&str> = listed.iter().map(|a| a.r#type.as_str()).collect();
    // Flightstore's actions with their bodies, then the Flight SQL actions.
    let ours = flightstore::flight::ACTIONS.len();
    assert!(listed[..ours]
        .iter()
        .all(|a| a.description.contains("Body:")));
    assert!(
        names[ours..].contains(&"CreatePreparedStatement"),
        "{names:?}"
    );

    assert_eq!(
        action(&mut client, "health", json!({})).await.unwrap()["status"],
        "ok"
    );
    assert_eq!(
        action(&mut client, "create_collection", json!({"collection": "c"}))
            .await
            .unwrap(),
        json!({})
    );
    assert_eq!(
        action(&mut client, "list_collections", json!({}))
            .await
            .unwrap(),
        json!(["c"])
    );
    put(
        &mut client,
        path("c", "t"),
        vec![ticks(0..10, 0.0), ticks(20..30, 0.0)],
    )
    .await
    .unwrap();
    put(&mut client, path("c", "u"), vec![ticks(0..1, 0.0)])
        .await
        .unwrap();
    assert_eq!(
        action(&mut client, "list_items", json!({"collection": "c"}))
            .await
            .unwrap(),
        json!(["t", "u"])
    );
    assert_eq!(
        action(
            &mut client,
            "list_items",
            json!({"collection": "c", "prefix": "u"})
        )
        .await
        .unwrap(),
        json!(["u"])
    );

    let info = action(
        &mut client,
        "item_info",
        json!({"collection": "c", "item": "t"}),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            info["rows"].as_u64(),
            info["start"].as_i64(),
            info["end"].as_i64()
        ),
        (Some(20), Some(T0), Some(T0 + 29 * SEC))
    );
    assert_eq!(
        info["schema"][0],
        json!({"name": "ts", "type": "Timestamp(ns, \"UTC\")", "nullable": true})
    );

    let gaps = action(
        &mut client,
        "missing_intervals",
        json!({"collection": "c", "item": "t", "start": T0, "end": T0 + 30 * SEC, "freq": "1s"}),
    )
    .await
    .unwrap();
    assert_eq!(gaps, json!([[T0 + 10 * SEC, T0 + 20 * SEC]]));

    let r = action(
        &mut client,
        "delete_range",
        json!({"collection": "c", "item": "t", "start": T0, "end": "2024-01-01T00:00:05Z"}),
    )
    .await
    .unwrap();
    assert_eq!(r, json!({"version": 2, "rows_deleted": 5}));

    assert_eq!(
        action(
            &mut client,
            "update_metadata",
            json!({"collection": "c", "item": "t", "metadata": {"a": 1, "b": 2}})
        )
        .await
        .unwrap(),
        json!({"a": 1, "b": 2})
    );
    assert_eq!(
        action(
            &mut client,
            "update_metadata",
            json!({"collection": "c", "item": "t", "metadata": {"a": null}})
        )
        .await
        .unwrap(),
        json!({"b": 2})
    );
    assert_eq!(
        action(
            &mut client,
            "get_metadata",
            json!({"collection": "c", "item": "t"})
        )
        .await
        .unwrap(),
        json!({"b": 2})
    );

    let versions = action(
        &mut client,
        "list_versions",
        json!({"collection": "c", "item": "t"}),
    )
    .await
    .unwrap();
    let ops: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["append", "delete_range", "metadata", "metadata"]);

    let s = action(
        &mut client,
        "create_snapshot",
        json!({"collection": "c", "snapshot": "s1"}),
    )
    .await
    .unwrap();
    assert_eq!(
        (s["snapshot"].as_str(), s["items"].as_u64()),
        (Some("s1"), Some(2))
    );
    let snaps = action(&mut client, "list_snapshots", json!({"collection": "c"}))
        .await
        .unwrap();
    assert_eq!(snaps[0]["snapshot"], "s1");
    assert_eq!(
        action(
            &mut client,
            "delete_snapshot",
            json!({"collection": "c", "snapshot": "s1"})
        )
        .await
        .unwrap(),
        json!({})
    );

    let c = action(
        &mut client,
        "compact",
        json!({"collection": "c", "item": "t"}),
    )
    .await
    .unwrap();
    assert!(c["files_after"].as_u64() <= c["files_before"].as_u64());
    let v = action(&mut client, "vacuum", json!({"collection": "c"}))
        .await
        .unwrap();
    assert!(v["files_removed"].is_u64());

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert_eq!(
        action(
            &mut client,
            "delete_item",
            json!({"collection": "c", "item": "u"})
        )
        .await
        .unwrap(),
        json!({})
    );
    let changes = action(
        &mut client,
        "changes_since",
        json!({"collection": "c", "since": before}),
    )
    .await
    .unwrap();
    assert_eq!(changes.as_array().unwrap().len(), 1);
    assert_eq!(
        (changes[0]["item"].as_str(), changes[0]["deleted"].as_bool()),
        (Some("u"), Some(true))
    );
    let all_changes = action(
        &mut client,
        "changes_since",
        json!({"collection": "c", "since": "2000-01-01"}),
    )
    .await
    .unwrap();
    assert_eq!(all_changes.as_array().unwrap().len(), 2);

    assert_eq!(
        action(&mut client, "delete_collection", json!({"collection": "c"}))
            .await
            .unwrap(),
        json!({})
    );
    assert_eq!(
        action(&mut client, "list_collections", json!({}))
            .await
            .unwrap(),
        json!([])
    );
}
