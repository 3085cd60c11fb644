//! Writes the seed corpus: `fuzz/corpus/<target>/<name>`, a handful of valid inputs per
//! target (JSON and protobuf forms of each message, Arrow IPC streams of many types).
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds   # from the repository root
//! ```
//!
//! Rerun it when the protocol changes; it only adds or overwrites its own files (what
//! the fuzzer found and `fuzz/run.sh` never writes back is not touched).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array,
    RecordBatch, StringArray, StructArray, TimestampNanosecondArray,
};
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::{FlightData, FlightDescriptor};
use arrow_schema::{DataType, Field, Schema};
use flightstore_client::proto::{self, row_group_target, time};
use flightstore_client::{encode_json, ticket};
use flightstore_fuzz::do_put::frame;
use futures::{executor::block_on, stream, TryStreamExt};
use prost::Message;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    tickets(&root.join("ticket"));
    commands(&root.join("command"));
    actions(&root.join("action"));
    times(&root.join("time"));
    do_puts(&root.join("do_put"));
    println!("seeds written under {}", root.display());
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    fs::create_dir_all(dir).expect("corpus dir");
    let path: PathBuf = dir.join(name);
    fs::write(&path, bytes).expect("seed written");
}

fn iso(s: &str) -> Option<proto::Time> {
    Some(proto::Time {
        value: Some(time::Value::Iso(s.into())),
    })
}

fn full_read() -> proto::ReadRequest {
    proto::ReadRequest {
        collection: "NASDAQ".into(),
        item: "AAPL/daily".into(),
        start: iso("2024-01-01"),
        end: Some(1_706_745_600_000_000_000.into()),
        columns: vec!["ts".into(), "close".into()],
        filter: Some("close > 10 AND volume IS NOT NULL".into()),
        limit: Some(100),
        n_prev: Some(1),
        version: Some(12),
        ..Default::default()
    }
}

fn multi_read() -> proto::ReadRequest {
    proto::ReadRequest {
        collection: "fx".into(),
        items: vec!["EURUSD".into(), "USDJPY".into()],
        versions: vec![3, 4],
        start: iso("2024-01-01T00:00:00Z"),
        end: iso("2024-01-02 00:00:00.5"),
        last: Some(10),
        grid: Some(proto::Grid {
            freq: "1min".into(),
            fill: Some("previous".into()),
        }),
        ..Default::default()
    }
}

fn tickets(dir: &Path) {
    let read = full_read();
    write(dir, "ticket.json", ticket(&read));
    write(dir, "ticket.pb", read.encode_to_vec());
    write(dir, "multi.json", ticket(&multi_read()));
    write(dir, "multi.pb", multi_read().encode_to_vec());
    write(
        dir,
        "handwritten.json",
        br#"  {"collection": "NASDAQ", "item": "AAPL", "start": "2024-01-01", "end": "2024-02-01T00:00:00+01:00", "limit": 10, "snapshot": "eod"}"#,
    );
}

fn full_write() -> proto::WriteRequest {
    proto::WriteRequest {
        collection: "NASDAQ".into(),
        item: "AAPL".into(),
        mode: Some("replace_range".into()),
        ordered_on: Some("ts".into()),
        dedup_on: vec!["ts".into(), "venue".into()],
        keep: Some("first".into()),
        start: iso("2024-01-01"),
        end: Some(1_706_745_600_000_000_000.into()),
        row_group_target: Some(proto::RowGroupTarget {
            value: Some(row_group_target::Value::Period("1D".into())),
        }),
        file_target_rows: Some(1_000_000),
        metadata: Some(r#"{"source":"feed","tick":0.01,"tags":["a",1,null,true]}"#.into()),
        schema_evolution: Some("add_columns".into()),
        validation: Some(proto::Validation {
            not_null: vec!["ts".into()],
            checks: vec!["close >= 0".into()],
            unique_ordering: true,
        }),
        preset: Some("ohlc".into()),
        rename: [("Close".to_string(), "close".to_string())].into(),
        drop: vec!["junk".into()],
        item_column: None,
        write_id: Some("batch-2024-01-02#7".into()),
    }
}

fn commands(dir: &Path) {
    let write_req = full_write();
    write(dir, "write.json", encode_json(&write_req));
    write(dir, "write.pb", write_req.encode_to_vec());
    let batch = proto::WriteRequest {
        collection: "trades".into(),
        mode: Some("upsert".into()),
        row_group_target: Some(proto::RowGroupTarget {
            value: Some(row_group_target::Value::Rows(50_000)),
        }),
        item_column: Some("symbol".into()),
        ..Default::default()
    };
    write(dir, "write_batch.json", encode_json(&batch));
    write(dir, "read.json", encode_json(&full_read()));
    write(dir, "read.pb", full_read().encode_to_vec());
    let criteria = proto::ListCriteria {
        collection: Some("NASDAQ".into()),
        prefix: Some("AA".into()),
        metadata: Some(r#"{"source":"feed"}"#.into()),
    };
    write(dir, "criteria.json", encode_json(&criteria));
    write(dir, "criteria.pb", criteria.encode_to_vec());
}

fn actions(dir: &Path) {
    let item = proto::ItemRequest {
        collection: "NASDAQ".into(),
        item: "AAPL".into(),
    };
    write(dir, "empty", b"");
    write(dir, "empty.json", b"{}");
    write(dir, "collection.json", br#"{"collection": "NASDAQ"}"#);
    write(dir, "item.json", encode_json(&item));
    write(dir, "item.pb", item.encode_to_vec());
    write(
        dir,
        "list_items.json",
        br#"{"collection": "NASDAQ", "prefix": "A", "metadata": {"source": "feed", "n": [1, 2.5e3]}}"#,
    );
    let delete_range = proto::DeleteRangeRequest {
        collection: "NASDAQ".into(),
        item: "AAPL".into(),
        start: iso("2024-01-01"),
        end: Some(1_706_745_600_000_000_000.into()),
    };
    write(dir, "delete_range.json", encode_json(&delete_range));
    write(dir, "delete_range.pb", delete_range.encode_to_vec());
    write(
        dir,
        "update_metadata.json",
        br#"{"collection": "NASDAQ", "item": "AAPL", "metadata": {"owner": "desk", "stale": null}}"#,
    );
    write(dir, "snapshot.json", br#"{"collection": "NASDAQ", "snapshot": "eod-2024-01-01"}"#);
    write(dir, "vacuum.json", br#"{"collection": "NASDAQ", "item": "AAPL"}"#);
    let missing = proto::MissingIntervalsRequest {
        collection: "NASDAQ".into(),
        item: "AAPL".into(),
        start: iso("2024-01-01T09:30:00-05:00"),
        end: iso("2024-01-01T16:00:00-05:00"),
        freq: "1min".into(),
    };
    write(dir, "missing_intervals.json", encode_json(&missing));
    write(dir, "missing_intervals.pb", missing.encode_to_vec());
    write(dir, "changes_since.json", br#"{"collection": "NASDAQ", "since": 1704067200000000000}"#);
}

fn times(dir: &Path) {
    let times = [
        "2024-01-01",
        "2024-01-01T00:00:00Z",
        "2024-02-29T12:34:56.123456789+05:30",
        "1970-01-01T01:00:01+01:00",
        " 1970-01-01 00:00:01.5 ",
        "1970-01-01T00:01",
        "1970-01-01 01:00:01+0100",
        "42",
        "-5",
        "2262-04-11T23:47:16.854775807Z",
        "1677-09-21T00:12:43.145224192Z",
        "3000-01-01",
    ];
    for (n, t) in times.iter().enumerate() {
        write(dir, &format!("time{n:02}"), t);
    }
}

fn encode(descriptor: FlightDescriptor, batches: Vec<RecordBatch>, resend: bool) -> Vec<FlightData> {
    let handling = if resend {
        DictionaryHandling::Resend
    } else {
        DictionaryHandling::Hydrate
    };
    let encoder = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .with_dictionary_handling(handling)
        .build(stream::iter(batches.into_iter().map(Ok)));
    block_on(encoder.try_collect()).expect("batches encode")
}

fn ohlc(rows: i64) -> RecordBatch {
    let ts: Vec<i64> = (0..rows).map(|n| 1_704_067_200_000_000_000 + n * 60_000_000_000).collect();
    let schema = Schema::new(vec![
        Field::new("ts", DataType::Timestamp(arrow_schema::TimeUnit::Nanosecond, None), false),
        Field::new("close", DataType::Float64, true),
        Field::new("venue", DataType::Utf8, true),
    ]);
    let close: Float64Array = (0..rows).map(|n| (n % 3 != 0).then_some(n as f64 * 1.5)).collect();
    let venue: StringArray = (0..rows).map(|n| (n % 2 == 0).then_some("XNAS")).collect();
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(TimestampNanosecondArray::from(ts)) as ArrayRef,
            Arc::new(close),
            Arc::new(venue),
        ],
    )
    .expect("ohlc batch")
}

fn nested(rows: i32) -> RecordBatch {
    let mut dict = StringDictionaryBuilder::<Int32Type>::new();
    let mut list = ListBuilder::new(Int32Builder::new());
    for n in 0..rows {
        dict.append_value(["AAPL", "MSFT", "GOOG"][n as usize % 3]);
        if n % 4 == 3 {
            list.append_null();
        } else {
            for k in 0..n % 3 {
                list.values().append_value(n * 10 + k);
            }
            list.append(true);
        }
    }
    let flags = BooleanArray::from((0..rows).map(|n| (n % 5 != 4).then_some(n % 2 == 0)).collect::<Vec<_>>());
    let price = Decimal128Array::from((0..rows).map(|n| n as i128 * 12_345).collect::<Vec<_>>())
        .with_precision_and_scale(18, 4)
        .expect("decimal");
    let quote = StructArray::from(vec![
        (
            Arc::new(Field::new("bid", DataType::Int64, false)),
            Arc::new(Int64Array::from((0..rows as i64).collect::<Vec<_>>())) as ArrayRef,
        ),
        (
            Arc::new(Field::new("flag", DataType::Boolean, true)),
            Arc::new(flags.clone()) as ArrayRef,
        ),
    ]);
    RecordBatch::try_from_iter(vec![
        ("symbol", Arc::new(dict.finish()) as ArrayRef),
        ("lots", Arc::new(list.finish()) as ArrayRef),
        ("flag", Arc::new(flags) as ArrayRef),
        ("price", Arc::new(price) as ArrayRef),
        ("quote", Arc::new(quote) as ArrayRef),
    ])
    .expect("nested batch")
}

fn do_puts(dir: &Path) {
    let path = FlightDescriptor::new_path(vec!["NASDAQ".into(), "AAPL".into()]);
    write(dir, "path_one_batch", frame(&encode(path.clone(), vec![ohlc(4)], false)));

    let cmd = FlightDescriptor::new_cmd(encode_json(&proto::WriteRequest {
        collection: "NASDAQ".into(),
        item: "AAPL".into(),
        mode: Some("upsert".into()),
        ordered_on: Some("ts".into()),
        ..Default::default()
    }));
    write(dir, "cmd_two_batches", frame(&encode(cmd, vec![ohlc(3), ohlc(1)], false)));

    let cmd_pb = FlightDescriptor::new_cmd(full_write().encode_to_vec());
    write(dir, "cmd_pb_one_batch", frame(&encode(cmd_pb, vec![ohlc(2)], false)));

    // Dictionaries sent as dictionary batches (not hydrated), nested and decimal columns.
    write(dir, "nested_dictionary", frame(&encode(path.clone(), vec![nested(5), nested(2)], true)));

    // A descriptor alone in a first, empty message (Flight SQL clients), then the data.
    let mut messages = vec![FlightData::new().with_descriptor(path.clone())];
    let mut rest = encode(path, vec![ohlc(2)], false);
    rest[0].flight_descriptor = None;
    messages.extend(rest);
    write(dir, "descriptor_only_first", frame(&messages));
}
