//! Flight SQL with arrow-flight's own `FlightSqlServiceClient` against the real server.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, CommandStatementIngest, SqlInfo,
    TableDefinitionOptions, TableExistsOption, TableNotExistOption,
};
use arrow_flight::FlightInfo;
use futures::{stream, TryStreamExt};
use serde_json::json;
use tonic::transport::Channel;
use tonic::Code;

use crate::common::{cmd, connect, path, put, ticks, TestServer, SEC, T0};

async fn sql_client(server: &TestServer) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightSqlServiceClient::new(channel)
}

/// All batches of every endpoint of `info`.
async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("a ticket");
        let batches: Vec<RecordBatch> = client
            .do_get(ticket)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        out.extend(batches);
    }
    out
}

async fn query(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<RecordBatch> {
    let info = client.execute(sql.to_string(), None).await.unwrap();
    fetch(client, info).await
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn status(e: &FlightError) -> Code {
    match e {
        FlightError::Tonic(s) => s.code(),
        FlightError::Arrow(a) => panic!("not a status: {a}"),
        other => panic!("not a status: {other}"),
    }
}

/// The time of tick `i`, RFC 3339.
fn ts(i: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(T0 + i * SEC).to_rfc3339()
}

#[tokio::test]
async fn queries_see_the_items_with_their_ranges_pushed_down() {
    let server = TestServer::start().await;
    let mut flight = server.client().await;
    put(
        &mut flight,
        path("NASDAQ", "AAPL"),
        vec![ticks(0..1000, 0.0)],
    )
    .await
    .unwrap();
    let mut client = sql_client(&server).await;

    let count = query(&mut client, "SELECT count(*) AS n FROM NASDAQ.AAPL").await;
    assert_eq!(
        count[0].column(0).as_primitive::<Int64Type>().value(0),
        1000
    );

    // [10, 20) by >= and <, by BETWEEN (inclusive), by = and by strict bounds.
    let sql = format!(
        "SELECT trade_id FROM NASDAQ.AAPL WHERE ts >= '{}' AND ts < '{}' ORDER BY ts",
        ts(10),
        ts(20)
    );
    let got = query(&mut client, &sql).await;
    let ids: Vec<i64> = got
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids, (10..20).collect::<Vec<_>>());
    let between = format!(
        "SELECT count(*) FROM NASDAQ.AAPL WHERE ts BETWEEN TIMESTAMP '{}' AND TIMESTAMP '{}'",
        ts(10),
        ts(20)
    );
    let n = query(&mut client, &between).await;
    assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 11);
    let strict = format!(
        "SELECT count(*) FROM NASDAQ.AAPL WHERE ts > '{}' AND ts < '{}'",
        ts(10),
        ts(20)
    );
    let n = query(&mut client, &strict).await;
    assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 9);
    let eq = format!("SELECT price FROM NASDAQ.AAPL WHERE ts = '{}'", ts(42));
    let p = query(&mut client, &eq).await;
    assert_eq!(
        p[0].column(0).as_primitive::<Float64Type>().values(),
        &[42.0]
    );

    // The plan shows the range and the tail-only read.
    let explain = query(&mut client, &format!("EXPLAIN {sql}")).await;
    let text = format!("{:?}", explain);
    assert!(
        text.contains(&format!("range=[{}, {})", T0 + 10 * SEC, T0 + 20 * SEC)),
        "{text}"
    );
    let explain = query(
        &mut client,
        "EXPLAIN SELECT * FROM NASDAQ.AAPL ORDER BY ts DESC LIMIT 3",
    )
    .await;
    let text = format!("{:?}", explain);
    assert!(
        text.contains("last=3 backward") && !text.contains("SortExec"),
        "{text}"
    );
    // Several files (one per write): ORDER BY ts needs no sort and keeps its limit.
    put(
        &mut flight,
        path("NASDAQ", "AAPL"),
        vec![ticks(2000..2100, 0.0)],
    )
    .await
    .unwrap();
    for sorted in [
        "SELECT * FROM NASDAQ.AAPL ORDER BY ts",
        "SELECT * FROM NASDAQ.AAPL ORDER BY ts LIMIT 3",
    ] {
        let explain = query(&mut client, &format!("EXPLAIN {sorted}")).await;
        let text = format!("{:?}", explain);
        assert!(!text.contains("SortExec"), "{sorted}: {text}");
    }
    let first = query(
        &mut client,
        "SELECT trade_id FROM NASDAQ.AAPL ORDER BY ts LIMIT 3",
    )
    .await;
    assert_eq!(rows(&first), 3);
    assert_eq!(
        first[0].column(0).as_primitive::<Int64Type>().values(),
        &[0, 1, 2]
    );
    let last = query(
        &mut client,
        "SELECT trade_id FROM NASDAQ.AAPL ORDER BY ts DESC LIMIT 3",
    )
    .await;
    assert_eq!(
        last[0].column(0).as_primitive::<Int64Type>().values(),
        &[2099, 2098, 2097]
    );
    // A ticket reads the versions its FlightInfo was planned at.
    let info = client
        .execute("SELECT count(*) FROM NASDAQ.AAPL".into(), None)
        .await
        .unwrap();
    put(
        &mut flight,
        path("NASDAQ", "AAPL"),
        vec![ticks(1000..1010, 0.0)],
    )
    .await
    .unwrap();
    let pinned = fetch(&mut client, info).await;
    assert_eq!(
        pinned[0].column(0).as_primitive::<Int64Type>().value(0),
        1100
    );
    let now = query(&mut client, "SELECT count(*) FROM NASDAQ.AAPL").await;
    assert_eq!(now[0].column(0).as_primitive::<Int64Type>().value(0), 1110);

    // count(*) comes from the manifest: no scan.
    let explain = query(&mut client, "EXPLAIN SELECT count(*) FROM NASDAQ.AAPL").await;
    let text = format!("{:?}", explain);
    assert!(!text.contains("ItemScanExec"), "{text}");
}

#[tokio::test]
async fn prepared_statements_bind_parameters_and_updates_change_items() {
    let server = TestServer::start().await;
    let mut flight = server.client().await;
    put(
        &mut flight,
        path("NASDAQ", "AAPL"),
        vec![ticks(0..100, 0.0)],
    )
    .await
    .unwrap();
    let mut client = sql_client(&server).await;

    let mut prepared = client
        .prepare(
            "SELECT trade_id FROM NASDAQ.AAPL WHERE price > $1 AND side = $2".into(),
            None,
        )
        .await
        .unwrap();
    let params = prepared.parameter_schema().unwrap().clone();
    assert_eq!(params.fields().len(), 2);
    let binding = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("0", DataType::Float64, false),
            Field::new("1", DataType::Int64, false),
        ])),
        vec![
            Arc::new(Float64Array::from(vec![89.5])),
            Arc::new(arrow::array::Int64Array::from(vec![1])),
        ],
    )
    .unwrap();
    prepared.set_parameters(binding).unwrap();
    let info = prepared.execute().await.unwrap();
    let got = fetch(&mut client, info).await;
    let ids: Vec<i64> = got
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids, vec![91, 93, 95, 97, 99]);
    prepared.close().await.unwrap();

    // An INSERT prepared: the dataset schema is empty (JDBC's sign of an update).
    let mut insert = client
        .prepare(
            format!(
                "INSERT INTO NASDAQ.AAPL VALUES (TIMESTAMP '{}', 1.5, 0, 1000)",
                ts(1000)
            ),
            None,
        )
        .await
        .unwrap();
    assert!(insert.dataset_schema().unwrap().fields().is_empty());
    assert_eq!(insert.execute_update().await.unwrap(), 1);
    let deleted = client
        .execute_update(
            format!(
                "DELETE FROM NASDAQ.AAPL WHERE ts >= '{}' AND ts < '{}'",
                ts(0),
                ts(50)
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(deleted, 50);
    let n = query(&mut client, "SELECT count(*) FROM NASDAQ.AAPL").await;
    assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 51);

    // Other DML, DELETE without a range, and a query as an update are refused.
    for bad in [
        "UPDATE NASDAQ.AAPL SET price = 1",
        "DELETE FROM NASDAQ.AAPL WHERE price > 1",
        "CREATE TABLE x (a int)",
        "SELECT 1",
    ] {
        let e = client.execute_update(bad.into(), None).await.unwrap_err();
        assert_eq!(status(&e), Code::InvalidArgument, "{bad}: {e}");
    }
}

#[tokio::test]
async fn catalog_commands_list_collections_items_and_keys() {
    let server = TestServer::start().await;
    let mut flight = server.client().await;
    put(&mut flight, path("NASDAQ", "AAPL"), vec![ticks(0..10, 0.0)])
        .await
        .unwrap();
    put(
        &mut flight,
        path("weather", "berlin/1D"),
        vec![ticks(0..10, 0.0)],
    )
    .await
    .unwrap();
    let keyed = json!({"collection": "NASDAQ", "item": "MSFT", "mode": "create", "dedup_on": ["ts", "trade_id"]});
    put(&mut flight, cmd(keyed), vec![ticks(0..10, 0.0)])
        .await
        .unwrap();
    let mut client = sql_client(&server).await;

    let token = client.handshake("anyone", "anything").await;
    assert!(token.is_ok(), "{token:?}");
    assert!(client.token().is_some_and(|t| !t.is_empty()));

    let info = client.get_catalogs().await.unwrap();
    let catalogs = fetch(&mut client, info).await;
    assert_eq!(
        catalogs[0].column(0).as_string::<i32>().value(0),
        "flightstore"
    );

    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: Some("NAS%".into()),
        })
        .await
        .unwrap();
    let schemas = fetch(&mut client, info).await;
    assert_eq!(rows(&schemas), 1);

    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec!["BASE TABLE".into()],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = fetch(&mut client, info).await;
    let names: Vec<String> = tables
        .iter()
        .flat_map(|b| {
            let t = b.column_by_name("table_name").unwrap().as_string::<i32>();
            (0..t.len())
                .map(|i| t.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(names, vec!["AAPL", "MSFT", "berlin/1D"]);

    let info = client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: Some("NASDAQ".into()),
            table: "MSFT".into(),
        })
        .await
        .unwrap();
    let keys = fetch(&mut client, info).await;
    let columns = keys[0]
        .column_by_name("column_name")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(
        columns.iter().flatten().collect::<Vec<_>>(),
        vec!["ts", "trade_id"]
    );

    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerName])
        .await
        .unwrap();
    assert_eq!(rows(&fetch(&mut client, info).await), 1);

    // Quoted item names with sub-levels; an unqualified name says where it is.
    let n = query(&mut client, r#"SELECT count(*) FROM weather."berlin/1D""#).await;
    assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 10);
    let e = client
        .execute("SELECT * FROM AAPL".into(), None)
        .await
        .unwrap_err();
    assert_eq!(status(&e), Code::InvalidArgument);
    assert!(e.to_string().contains("NASDAQ.AAPL"), "{e}");
    let e = client
        .execute("SELECT * FROM NASDAQ.NOPE".into(), None)
        .await
        .unwrap_err();
    assert_eq!(status(&e), Code::NotFound, "{e}");
    let e = client.execute("SELEC 1".into(), None).await.unwrap_err();
    assert_eq!(status(&e), Code::InvalidArgument, "{e}");
}

#[tokio::test]
async fn ingest_maps_its_modes_to_writes_and_time_travel_reads_old_versions() {
    let server = TestServer::start().await;
    let mut client = sql_client(&server).await;
    let ingest = |exists: TableExistsOption| CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: TableNotExistOption::Create.into(),
            if_exists: exists.into(),
        }),
        table: "AAPL".into(),
        schema: Some("NASDAQ".into()),
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: Default::default(),
    };
    let data = |ids: std::ops::Range<i64>| stream::iter(vec![Ok(ticks(ids, 0.0))]);
    let n = client
        .execute_ingest(ingest(TableExistsOption::Fail), data(0..100))
        .await
        .unwrap();
    assert_eq!(n, 100);
    let e = client
        .execute_ingest(ingest(TableExistsOption::Fail), data(0..100))
        .await
        .unwrap_err();
    assert_eq!(status(&e), Code::AlreadyExists, "{e}");
    let n = client
        .execute_ingest(ingest(TableExistsOption::Append), data(100..150))
        .await
        .unwrap();
    assert_eq!(n, 50);
    let v1 = query(
        &mut client,
        "SELECT count(*) FROM at_version('NASDAQ', 'AAPL', 1)",
    )
    .await;
    assert_eq!(v1[0].column(0).as_primitive::<Int64Type>().value(0), 100);
    let mut flight = connect(&server.addr.to_string()).await;
    crate::common::action(
        &mut flight,
        "create_snapshot",
        json!({"collection": "NASDAQ", "snapshot": "eod"}),
    )
    .await
    .unwrap();
    let n = client
        .execute_ingest(ingest(TableExistsOption::Replace), data(500..510))
        .await
        .unwrap();
    assert_eq!(n, 10);
    let now = query(&mut client, "SELECT count(*) FROM NASDAQ.AAPL").await;
    assert_eq!(now[0].column(0).as_primitive::<Int64Type>().value(0), 10);
    let snap = query(
        &mut client,
        "SELECT count(*) FROM at_snapshot('NASDAQ', 'AAPL', 'eod')",
    )
    .await;
    assert_eq!(snap[0].column(0).as_primitive::<Int64Type>().value(0), 150);
    // A join of two versions of one item.
    let joined = query(
        &mut client,
        "SELECT count(*) FROM at_version('NASDAQ', 'AAPL', 1) a \
         JOIN at_snapshot('NASDAQ', 'AAPL', 'eod') b ON a.ts = b.ts",
    )
    .await;
    assert_eq!(
        joined[0].column(0).as_primitive::<Int64Type>().value(0),
        100
    );
    let e = client
        .execute(
            "SELECT * FROM at_version('NASDAQ', 'AAPL', 99)".into(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(status(&e), Code::NotFound, "{e}");

    // Temporary tables and a missing collection are refused.
    let mut temp = ingest(TableExistsOption::Append);
    temp.temporary = true;
    let e = client.execute_ingest(temp, data(0..1)).await.unwrap_err();
    assert_eq!(status(&e), Code::InvalidArgument, "{e}");
}

#[tokio::test]
async fn ordered_reads_over_several_partitions_return_each_row_once() {
    // Enough rows for two partitions, in three writes (several files).
    let server = TestServer::start().await;
    let mut flight = server.client().await;
    for part in 0..3 {
        let ids = part * 200_000..(part + 1) * 200_000;
        put(&mut flight, path("NASDAQ", "AAPL"), vec![ticks(ids, 0.0)])
            .await
            .unwrap();
    }
    let mut client = sql_client(&server).await;
    let ids = |batches: Vec<RecordBatch>| -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    };
    let explain = query(&mut client, "EXPLAIN SELECT trade_id FROM NASDAQ.AAPL").await;
    assert!(
        format!("{explain:?}").contains("partitions=2"),
        "{explain:?}"
    );
    let forward = ids(query(&mut client, "SELECT trade_id FROM NASDAQ.AAPL ORDER BY ts").await);
    assert_eq!(forward, (0..600_000).collect::<Vec<_>>());
    let backward = ids(query(
        &mut client,
        "SELECT trade_id FROM NASDAQ.AAPL ORDER BY ts DESC",
    )
    .await);
    assert_eq!(backward, (0..600_000).rev().collect::<Vec<_>>());
    let last = ids(query(
        &mut client,
        "SELECT trade_id FROM NASDAQ.AAPL ORDER BY ts DESC LIMIT 4",
    )
    .await);
    assert_eq!(last, vec![599_999, 599_998, 599_997, 599_996]);
    let first = ids(query(
        &mut client,
        "SELECT trade_id FROM NASDAQ.AAPL ORDER BY ts LIMIT 4",
    )
    .await);
    assert_eq!(first, vec![0, 1, 2, 3]);
    // Either null order: the ordering column holds none.
    for (order, want) in [
        ("ts DESC NULLS LAST LIMIT 2", vec![599_999, 599_998]),
        ("ts NULLS FIRST LIMIT 2", vec![0, 1]),
    ] {
        let sql = format!("SELECT trade_id FROM NASDAQ.AAPL ORDER BY {order}");
        assert_eq!(ids(query(&mut client, &sql).await), want, "{sql}");
    }
    let all = ids(query(
        &mut client,
        "SELECT trade_id FROM NASDAQ.AAPL ORDER BY ts DESC NULLS LAST",
    )
    .await);
    assert_eq!(all.len(), 600_000);
}

#[tokio::test]
async fn concurrent_queries_each_see_their_own_tables() {
    let server = TestServer::start().await;
    let mut flight = server.client().await;
    put(
        &mut flight,
        path("NASDAQ", "AAPL"),
        vec![ticks(0..100, 0.0)],
    )
    .await
    .unwrap();
    put(&mut flight, path("NYSE", "IBM"), vec![ticks(0..7, 0.0)])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for k in 0..8 {
        let mut client = sql_client(&server).await;
        let (sql, want) = if k % 2 == 0 {
            ("SELECT count(*) FROM NASDAQ.AAPL", 100)
        } else {
            ("SELECT count(*) FROM NYSE.IBM", 7)
        };
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let got = query(&mut client, sql).await;
                assert_eq!(got[0].column(0).as_primitive::<Int64Type>().value(0), want);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn statements_that_could_do_more_than_asked_are_refused() {
    let server = TestServer::start().await;
    let mut flight = server.client().await;
    put(
        &mut flight,
        path("NASDAQ", "AAPL"),
        vec![ticks(0..100, 0.0)],
    )
    .await
    .unwrap();
    put(
        &mut flight,
        path("NASDAQ", "eod_prices"),
        vec![ticks(0..5, 0.0)],
    )
    .await
    .unwrap();
    put(
        &mut flight,
        path("NASDAQ", "eodXprices"),
        vec![ticks(0..5, 0.0)],
    )
    .await
    .unwrap();
    let mut client = sql_client(&server).await;
    let out = server.dir.path().join("copied.csv");
    let refused = [
        format!("EXPLAIN ANALYZE COPY (SELECT 1) TO '{}' STORED AS CSV", out.display()),
        format!("COPY (SELECT 1) TO '{}' STORED AS CSV", out.display()),
        format!("EXPLAIN ANALYZE DELETE FROM NASDAQ.AAPL WHERE ts >= '{}'", ts(0)),
        format!("DELETE FROM NASDAQ.AAPL WHERE ts >= '{}' LIMIT 1", ts(0)),
        format!(
            "DELETE FROM NASDAQ.AAPL WHERE ts >= '{}' AND ts IN (SELECT ts FROM NASDAQ.AAPL WHERE price > 98)",
            ts(0)
        ),
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/tmp'".to_string(),
    ];
    for sql in refused {
        let e = client.execute(sql.clone(), None).await.unwrap_err();
        assert_eq!(status(&e), Code::InvalidArgument, "{sql}: {e}");
    }
    assert!(!out.exists());
    let n = query(&mut client, "SELECT count(*) FROM NASDAQ.AAPL").await;
    assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 100);

    // EXPLAIN of a change shows its plan and changes nothing; table functions work.
    let sql = format!("EXPLAIN DELETE FROM NASDAQ.AAPL WHERE ts >= '{}'", ts(0));
    query(&mut client, &sql).await;
    let n = query(&mut client, "SELECT count(*) FROM NASDAQ.AAPL").await;
    assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 100);
    let n = query(&mut client, "SELECT count(*) FROM generate_series(1, 10)").await;
    assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 10);

    // Catalog patterns honour the escape character, as JDBC sends them.
    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some(r"eod\_prices".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = fetch(&mut client, info).await;
    let names = tables[0]
        .column_by_name("table_name")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(
        names.iter().flatten().collect::<Vec<_>>(),
        vec!["eod_prices"]
    );
}
