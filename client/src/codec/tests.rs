//! Tests of the codec: both forms decode alike, JSON round-trips, tickets stay short.

use super::*;
use prost::Message;
use proto::*;

fn iso(s: &str) -> Time {
    Time {
        value: Some(time::Value::Iso(s.into())),
    }
}

/// A ReadRequest with every field set.
fn full_read() -> ReadRequest {
    ReadRequest {
        collection: "c".into(),
        item: "a/b".into(),
        start: Some(iso("2024-01-01T00:00:00Z")),
        end: Some(1_706_745_600_000_000_000.into()),
        columns: vec!["ts".into(), "price".into()],
        filter: Some("price > 100".into()),
        limit: Some(5),
        last: Some(0),
        n_prev: Some(2),
        version: Some(12),
        snapshot: Some("eod".into()),
        items: vec!["x".into(), "y".into()],
        grid: Some(Grid {
            freq: "1min".into(),
            fill: Some("previous".into()),
        }),
        versions: vec![3, 4],
    }
}

#[test]
fn json_and_binary_forms_decode_to_the_same_message() {
    let json = br#"{"collection": "c", "item": "a/b", "start": "2024-01-01T00:00:00Z",
        "end": 1706745600000000000, "columns": ["ts"], "limit": 5, "snapshot": "s"}"#;
    let from_json: ReadRequest = decode(json).unwrap();
    assert_eq!(
        from_json.end.as_ref().unwrap().value,
        Some(time::Value::Nanos(1706745600000000000))
    );
    assert_eq!(
        from_json.start.as_ref().unwrap().value,
        Some(time::Value::Iso("2024-01-01T00:00:00Z".into()))
    );
    let from_binary: ReadRequest = decode(&from_json.encode_to_vec()).unwrap();
    assert_eq!(from_json, from_binary);
}

#[test]
fn unknown_fields_and_bad_types_are_errors() {
    let err = decode::<ReadRequest>(br#"{"collection": "c", "item": "i", "limt": 5}"#).unwrap_err();
    assert!(matches!(err, Error::InvalidJson { .. }), "{err:?}");
    assert!(err.to_string().contains("limt"), "{err}");
    let err = decode::<ReadRequest>(br#"{"collection": "c", "start": [1]}"#).unwrap_err();
    assert!(err.to_string().contains("ISO-8601"), "{err}");
    let err = decode::<ReadRequest>(b"\xff\xff\xff").unwrap_err();
    assert!(matches!(err, Error::InvalidProtobuf { .. }), "{err:?}");
}

#[test]
fn metadata_objects_travel_as_json_text() {
    let w: WriteRequest = decode(
        br#"{"collection": "c", "item": "i", "metadata": {"a": null}, "row_group_target": "1D"}"#,
    )
    .unwrap();
    assert_eq!(w.metadata.as_deref(), Some(r#"{"a":null}"#));
    assert_eq!(
        w.row_group_target.unwrap().value,
        Some(row_group_target::Value::Period("1D".into()))
    );
    assert!(decode::<UpdateMetadataRequest>(
        br#"{"collection": "c", "item": "i", "metadata": [1]}"#
    )
    .is_err());
}

#[test]
fn metadata_numbers_keep_their_exact_value() {
    // A finding of the `action` fuzz target: without serde_json's exact float parsing,
    // a long decimal came back one unit in the last place off after a round trip.
    let body = br#"{"collection": "c", "metadata": {"n": [1, 5555555555555555555555555555555555555555555555555555555555555555555555555555555555555555552.3]}}"#;
    let first: ListItemsRequest = decode(body).unwrap();
    let again: ListItemsRequest = decode(&encode_json(&first)).unwrap();
    assert_eq!(again, first);
    let item: WriteRequest =
        decode(br#"{"collection":"c","item":"i","metadata":{"x":0.1,"y":1e-320}}"#).unwrap();
    assert_eq!(item.metadata.as_deref(), Some(r#"{"x":0.1,"y":1e-320}"#));
}

#[test]
fn read_requests_round_trip_through_json() {
    let minimal = ReadRequest {
        collection: "c".into(),
        item: "i".into(),
        ..Default::default()
    };
    for req in [full_read(), minimal] {
        let json = encode_json(&req);
        let back: ReadRequest = decode(&json).unwrap();
        assert_eq!(back, req, "{}", String::from_utf8_lossy(&json));
    }
}

#[test]
fn write_requests_round_trip_through_json() {
    let req = WriteRequest {
        collection: "c".into(),
        item: "i".into(),
        mode: Some("upsert".into()),
        ordered_on: Some("ts".into()),
        dedup_on: vec!["ts".into(), "id".into()],
        keep: Some("first".into()),
        start: Some(iso("2024-01-01")),
        end: Some(5.into()),
        row_group_target: Some(RowGroupTarget {
            value: Some(row_group_target::Value::Rows(1000)),
        }),
        file_target_rows: Some(10_000),
        metadata: Some(r#"{"a":{"b":[1,2.5,"x"]},"c":null}"#.into()),
        schema_evolution: Some("widen".into()),
        validation: Some(Validation {
            not_null: vec!["price".into()],
            checks: vec!["price > 0".into()],
            unique_ordering: true,
        }),
        preset: Some("ohlc".into()),
        rename: [("quoteVolume".to_string(), "quote_volume".to_string())].into(),
        drop: vec!["weightedAverage".into()],
        item_column: Some("symbol".into()),
        write_id: Some("batch-2024-01-02#7".into()),
    };
    let json = encode_json(&req);
    let text = String::from_utf8_lossy(&json);
    assert!(
        text.contains(r#""metadata":{"a":{"b":[1,2.5,"x"]},"c":null}"#),
        "{text}"
    );
    assert_eq!(decode::<WriteRequest>(&json).unwrap(), req, "{text}");
}

#[test]
fn action_bodies_round_trip_through_json() {
    let update = UpdateMetadataRequest {
        collection: "c".into(),
        item: "i".into(),
        metadata: r#"{"k":"v"}"#.into(),
    };
    let json = encode_json(&update);
    assert_eq!(
        json,
        br#"{"collection":"c","item":"i","metadata":{"k":"v"}}"#
    );
    assert_eq!(decode::<UpdateMetadataRequest>(&json).unwrap(), update);

    let items = ListItemsRequest {
        collection: "c".into(),
        prefix: None,
        metadata: Some(r#"{"k":1}"#.into()),
    };
    assert_eq!(
        decode::<ListItemsRequest>(&encode_json(&items)).unwrap(),
        items
    );
    let range = DeleteRangeRequest {
        collection: "c".into(),
        item: "i".into(),
        start: Some(1.into()),
        end: Some(iso("2024-01-01")),
    };
    assert_eq!(
        decode::<DeleteRangeRequest>(&encode_json(&range)).unwrap(),
        range
    );
    assert_eq!(encode_json(&Empty {}), b"{}");
    assert_eq!(encode_json(&VacuumRequest::default()), b"{}");
}

#[test]
fn metadata_text_that_is_not_an_object_is_rejected_on_decode() {
    let w = WriteRequest {
        collection: "c".into(),
        item: "i".into(),
        metadata: Some("not json".into()),
        ..Default::default()
    };
    let json = encode_json(&w);
    assert_eq!(
        json,
        br#"{"collection":"c","item":"i","metadata":"not json"}"#
    );
    assert!(matches!(
        decode::<WriteRequest>(&json),
        Err(Error::InvalidJson { .. })
    ));
}

#[test]
fn tickets_omit_unset_fields() {
    let req = ReadRequest {
        collection: "c".into(),
        item: "i".into(),
        end: Some(10.into()),
        version: Some(3),
        ..Default::default()
    };
    assert_eq!(
        ticket(&req),
        br#"{"collection":"c","item":"i","end":10,"version":3}"#
    );
    let full = String::from_utf8(ticket(&full_read())).unwrap();
    assert_eq!(
        full,
        r#"{"collection":"c","item":"a/b","start":"2024-01-01T00:00:00Z","end":1706745600000000000,"columns":["ts","price"],"filter":"price > 100","limit":5,"last":0,"n_prev":2,"version":12,"snapshot":"eod","items":["x","y"],"grid":{"freq":"1min","fill":"previous"},"versions":[3,4]}"#
    );
}

#[test]
fn times_round_trip_in_both_forms() {
    for (t, json) in [
        (Time::from(-42), "-42"),
        (Time::from(i64::MAX), "9223372036854775807"),
        (iso("2024-01-01T00:00:00Z"), r#""2024-01-01T00:00:00Z""#),
    ] {
        assert_eq!(serde_json::to_string(&t).unwrap(), json);
        assert_eq!(serde_json::from_str::<Time>(json).unwrap(), t);
    }
    for (target, json) in [
        (row_group_target::Value::Rows(7), "7"),
        (row_group_target::Value::Period("1M".into()), r#""1M""#),
    ] {
        let target = RowGroupTarget {
            value: Some(target),
        };
        assert_eq!(serde_json::to_string(&target).unwrap(), json);
        assert_eq!(
            serde_json::from_str::<RowGroupTarget>(json).unwrap(),
            target
        );
    }
}

/// Regression (found by fuzzing): protobuf whose first field is a string of exactly 123
/// bytes starts with the bytes `\n{` and was taken for JSON and refused.
#[test]
fn protobuf_that_starts_like_json_still_decodes() {
    use prost::Message;
    let req = ItemRequest {
        collection: "c".repeat(123),
        item: "AAPL".into(),
    };
    let bytes = req.encode_to_vec();
    assert_eq!(&bytes[..2], b"\n{");
    assert_eq!(decode::<ItemRequest>(&bytes).unwrap(), req);
    // JSON that does not parse is still a JSON error.
    assert!(matches!(
        decode::<ItemRequest>(b"{\"collection\": "),
        Err(Error::InvalidJson { .. })
    ));
}
