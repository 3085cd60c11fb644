//! Every Arrow type used for time series round-trips exactly (type, time zone, values).

use std::sync::Arc;

use arrow::array::*;
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::*;
use flightstore::storage::{At, KeyRange, ReadOptions, WriteOptions};
use futures::stream::{self, StreamExt};

use crate::common::*;

fn all_types_batch() -> RecordBatch {
    let n = 4;
    let ts = |unit: TimeUnit, tz: Option<&str>| -> ArrayRef {
        let values = vec![
            1_700_000_000i64,
            1_700_000_001,
            1_700_000_002,
            1_700_000_003,
        ];
        // The same instants in every zone: a zone only changes how they are displayed.
        match unit {
            TimeUnit::Second => Arc::new(TimestampSecondArray::from(values).with_timezone_opt(tz)),
            TimeUnit::Millisecond => {
                Arc::new(TimestampMillisecondArray::from(values).with_timezone_opt(tz))
            }
            TimeUnit::Microsecond => {
                Arc::new(TimestampMicrosecondArray::from(values).with_timezone_opt(tz))
            }
            TimeUnit::Nanosecond => {
                Arc::new(TimestampNanosecondArray::from(values).with_timezone_opt(tz))
            }
        }
    };
    let dict: DictionaryArray<Int8Type> = vec!["buy", "sell", "buy", "hold"].into_iter().collect();
    let dict16: DictionaryArray<Int16Type> = vec![Some("a"), None, Some("b"), Some("a")]
        .into_iter()
        .collect();
    let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
        Some(vec![Some(1), Some(2)]),
        None,
        Some(vec![]),
        Some(vec![None, Some(4)]),
    ]);
    let large_list = LargeListArray::new(
        Arc::new(Field::new_list_field(DataType::Float64, true)),
        OffsetBuffer::new(vec![0i64, 1, 1, 2, 3].into()),
        Arc::new(Float64Array::from(vec![1.5, 2.5, 3.5])),
        None,
    );
    let strukt = StructArray::from(vec![
        (
            Arc::new(Field::new("bid", DataType::Float64, true)),
            Arc::new(Float64Array::from(vec![
                Some(1.0),
                None,
                Some(3.0),
                Some(4.0),
            ])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("venue", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec!["X", "Y", "Z", "W"])) as ArrayRef,
        ),
    ]);
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("ts", ts(TimeUnit::Nanosecond, Some("UTC"))),
        ("ts_s_paris", ts(TimeUnit::Second, Some("Europe/Paris"))),
        ("ts_ms", ts(TimeUnit::Millisecond, None)),
        (
            "ts_us_ny",
            ts(TimeUnit::Microsecond, Some("America/New_York")),
        ),
        ("ts_ns_offset", ts(TimeUnit::Nanosecond, Some("+05:30"))),
        (
            "date32",
            Arc::new(Date32Array::from(vec![19_000, 19_001, 19_002, 19_003])),
        ),
        (
            "date64",
            Arc::new(Date64Array::from(vec![
                0,
                86_400_000,
                2 * 86_400_000,
                3 * 86_400_000,
            ])),
        ),
        (
            "dur_s",
            Arc::new(DurationSecondArray::from(vec![1, 2, 3, 4])),
        ),
        (
            "dur_ms",
            Arc::new(DurationMillisecondArray::from(vec![1, 2, 3, 4])),
        ),
        (
            "dur_us",
            Arc::new(DurationMicrosecondArray::from(vec![1, 2, 3, 4])),
        ),
        (
            "dur_ns",
            Arc::new(DurationNanosecondArray::from(vec![
                Some(1),
                None,
                Some(3),
                Some(4),
            ])),
        ),
        (
            "dec128",
            Arc::new(
                Decimal128Array::from(vec![12345, -1, 0, 99])
                    .with_precision_and_scale(18, 4)
                    .unwrap(),
            ),
        ),
        (
            "dec256",
            Arc::new(
                Decimal256Array::from(vec![
                    i256::from(5),
                    i256::from(-5),
                    i256::ZERO,
                    i256::from(1),
                ])
                .with_precision_and_scale(40, 2)
                .unwrap(),
            ),
        ),
        (
            "utf8",
            Arc::new(StringArray::from(vec![
                Some("a"),
                None,
                Some("é"),
                Some(""),
            ])),
        ),
        (
            "large_utf8",
            Arc::new(LargeStringArray::from(vec!["x", "y", "z", "w"])),
        ),
        (
            "binary",
            Arc::new(BinaryArray::from(vec![
                b"\x00\x01".as_ref(),
                b"",
                b"z",
                b"\xff",
            ])),
        ),
        (
            "large_binary",
            Arc::new(LargeBinaryArray::from(vec![
                b"a".as_ref(),
                b"b",
                b"c",
                b"d",
            ])),
        ),
        (
            "fixed_binary",
            Arc::new(
                FixedSizeBinaryArray::try_from_iter(vec![b"ab", b"cd", b"ef", b"gh"].into_iter())
                    .unwrap(),
            ),
        ),
        ("dict_side", Arc::new(dict)),
        ("dict16_nulls", Arc::new(dict16)),
        ("list_i64", Arc::new(list)),
        ("large_list_f64", Arc::new(large_list)),
        ("quote", Arc::new(strukt)),
        (
            "bool",
            Arc::new(BooleanArray::from(vec![true, false, true, false])),
        ),
        ("i8", Arc::new(Int8Array::from(vec![-1, 0, 1, 2]))),
        ("u16", Arc::new(UInt16Array::from(vec![1, 2, 3, 65535]))),
        ("u64", Arc::new(UInt64Array::from(vec![1, 2, 3, u64::MAX]))),
        (
            "f16",
            Arc::new(Float16Array::from(vec![half::f16::from_f32(1.5); n])),
        ),
        (
            "f32",
            Arc::new(Float32Array::from(vec![1.5, f32::NAN, -0.0, 3.25])),
        ),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

#[tokio::test]
async fn every_time_series_type_round_trips_exactly() {
    let engine = memory_engine(small_options());
    let (c, i) = names("types", "all");
    let batch = all_types_batch();
    engine
        .write(
            &c,
            &i,
            WriteOptions::default(),
            batch.schema(),
            stream::iter(vec![Ok(batch.clone())]).boxed(),
        )
        .await
        .unwrap();
    let back = read_batches(&engine, &c, &i, all_rows()).await.unwrap();
    let back = arrow::compute::concat_batches(&batch.schema(), &back).unwrap();
    assert_eq!(back.schema(), batch.schema());
    for (n, f) in batch.schema().fields().iter().enumerate() {
        // NaN != NaN: compare f32 by bits.
        if f.name() == "f32" {
            let a = batch.column(n).as_primitive::<Float32Type>();
            let b = back.column(n).as_primitive::<Float32Type>();
            assert!(a
                .values()
                .iter()
                .zip(b.values())
                .all(|(x, y)| x.to_bits() == y.to_bits()));
            continue;
        }
        assert_eq!(
            back.column(n).as_ref(),
            batch.column(n).as_ref(),
            "column {}",
            f.name()
        );
    }
}

#[tokio::test]
async fn items_can_be_ordered_on_any_time_unit_zone_date_or_integer() {
    let engine = memory_engine(small_options());
    let batch = all_types_batch();
    // Ranges compare in UTC nanoseconds whatever the unit and zone of the column.
    for (item, column, start, end, expected) in [
        (
            "by_s_paris",
            "ts_s_paris",
            1_700_000_001_000_000_000i64,
            1_700_000_003_000_000_000i64,
            2usize,
        ),
        (
            "by_us",
            "ts_us_ny",
            1_700_000_001_000i64,
            1_700_000_002_000,
            1,
        ),
        (
            "by_date",
            "date32",
            19_001 * 86_400_000_000_000,
            19_003 * 86_400_000_000_000,
            2,
        ),
        ("by_int", "i8", 0, 2, 2),
    ] {
        let (c, i) = names("types", item);
        let opts = WriteOptions {
            ordered_on: Some(column.into()),
            ..Default::default()
        };
        engine
            .write(
                &c,
                &i,
                opts,
                batch.schema(),
                stream::iter(vec![Ok(batch.clone())]).boxed(),
            )
            .await
            .unwrap();
        let read = ReadOptions {
            range: KeyRange::new(Some(start), Some(end)),
            columns: Some(vec![column.into()]),
            at: At::Latest,
            ..Default::default()
        };
        let rows: usize = read_batches(&engine, &c, &i, read)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, expected, "{item}");
    }
}

#[tokio::test]
async fn second_and_millisecond_items_prune_pages_at_the_right_scale() {
    // Statistics of coarse units must be scaled like the keys (regression guard).
    let engine = memory_engine(small_options());
    for unit in [TimeUnit::Second, TimeUnit::Millisecond] {
        let n = 1_000i64;
        let values: Vec<i64> = (0..n).collect();
        let ts: ArrayRef = match unit {
            TimeUnit::Second => {
                Arc::new(TimestampSecondArray::from(values.clone()).with_timezone("UTC"))
            }
            _ => Arc::new(TimestampMillisecondArray::from(values.clone()).with_timezone("UTC")),
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", ts.data_type().clone(), false),
            Field::new("v", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![ts, Arc::new(Int64Array::from(values))],
        )
        .unwrap();
        let (c, i) = names("units", &format!("{unit:?}"));
        let opts = WriteOptions {
            row_group_target: Some(flightstore::storage::RowGroupTarget::Rows(50)),
            ..Default::default()
        };
        engine
            .write(&c, &i, opts, schema, stream::iter(vec![Ok(batch)]).boxed())
            .await
            .unwrap();
        let scale = if unit == TimeUnit::Second {
            1_000_000_000
        } else {
            1_000_000
        };
        let read = ReadOptions {
            range: KeyRange::new(Some(500 * scale), Some(510 * scale)),
            ..Default::default()
        };
        let got = column_i64(&read_batches(&engine, &c, &i, read).await.unwrap(), "v");
        assert_eq!(got, (500..510).collect::<Vec<_>>(), "{unit:?}");
    }
}
