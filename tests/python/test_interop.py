"""A new user's session with plain pyarrow.flight: no Flightstore library needed."""
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.flight as flight
import pytest


def assert_same(got, expected):
    # A DatetimeIndex's `freq` is a pandas-side hint, not data: it does not travel.
    pd.testing.assert_frame_equal(got, expected, check_freq=False)


def action(client, name, **body):
    (result,) = list(client.do_action(flight.Action(name, json.dumps(body).encode())))
    return json.loads(result.body.to_pybytes())


def put(client, descriptor, table):
    writer, reader = client.do_put(descriptor, table.schema)
    writer.write_table(table)
    writer.done_writing()
    result = reader.read()
    writer.close()  # raises the server's error, if any
    return json.loads(result.to_pybytes())


def read(client, **request):
    ticket = flight.Ticket(json.dumps(request).encode())
    return client.do_get(ticket).read_all()


def frame(start, periods, price0=0.0):
    index = pd.date_range(start, periods=periods, freq="1min", tz="America/New_York", name="ts")
    return pd.DataFrame(
        {
            "price": np.arange(periods, dtype="float64") + price0,
            "size": np.arange(periods, dtype="int64"),
            "side": pd.Categorical(np.where(np.arange(periods) % 2 == 0, "buy", "sell"), categories=["buy", "sell"]),
        },
        index=index,
    )


def test_a_new_users_session(client):
    df = frame("2024-01-02 09:30", 60)
    table = pa.Table.from_pandas(df)
    receipt = put(client, flight.FlightDescriptor.for_path("NYSE", "IBM"), table)
    assert receipt == {"version": 1, "rows_received": 60, "rows_written": 60}

    # Append the next hour.
    more = frame("2024-01-02 10:30", 60, price0=60)
    receipt = put(client, flight.FlightDescriptor.for_path("NYSE", "IBM"), pa.Table.from_pandas(more))
    assert receipt["version"] == 2

    # Read all back through GetFlightInfo: same frame, same dtypes, same index.
    info = client.get_flight_info(flight.FlightDescriptor.for_path("NYSE", "IBM"))
    assert info.total_records == 120
    got = pa.concat_tables([client.do_get(e.ticket).read_all() for e in info.endpoints]).to_pandas()
    expected = pd.concat([df, more])
    assert_same(got, expected)
    assert str(got.index.dtype) == "datetime64[ns, America/New_York]"
    assert isinstance(got["side"].dtype, pd.CategoricalDtype)

    # A range read with ISO times (and a zone).
    part = read(client, collection="NYSE", item="IBM", start="2024-01-02T10:00:00-05:00", end="2024-01-02T10:10:00-05:00").to_pandas()
    assert_same(part, expected.loc["2024-01-02 10:00":"2024-01-02 10:09"])

    # Upsert with a de-duplication key: 5 rows replaced, 10 new.
    update = frame("2024-01-02 11:25", 15, price0=1000)
    desc = flight.FlightDescriptor.for_command(json.dumps(
        {"collection": "NYSE", "item": "IBM", "mode": "upsert", "dedup_on": ["ts"]}).encode())
    receipt = put(client, desc, pa.Table.from_pandas(update))
    assert receipt["version"] == 3
    after = read(client, collection="NYSE", item="IBM").to_pandas()
    assert len(after) == 130
    assert_same(after.loc["2024-01-02 11:25":], update)
    assert after.index.is_unique and after.index.is_monotonic_increasing

    # Metadata: merge, remove with null.
    assert action(client, "update_metadata", collection="NYSE", item="IBM", metadata={"source": "sip", "tmp": 1}) == {"source": "sip", "tmp": 1}
    assert action(client, "update_metadata", collection="NYSE", item="IBM", metadata={"tmp": None}) == {"source": "sip"}

    # Snapshot, write more, read at the snapshot.
    action(client, "create_snapshot", collection="NYSE", snapshot="eod")
    put(client, flight.FlightDescriptor.for_path("NYSE", "IBM"), pa.Table.from_pandas(frame("2024-01-03 09:30", 30)))
    assert read(client, collection="NYSE", item="IBM").num_rows == 160
    pinned = read(client, collection="NYSE", item="IBM", snapshot="eod").to_pandas()
    assert_same(pinned, after)

    # List: the inventory, with rows and range.
    put(client, flight.FlightDescriptor.for_path("NYSE", "MSFT"), pa.Table.from_pandas(frame("2024-01-02 09:30", 5)))
    flights = {tuple(p.decode() for p in f.descriptor.path): f for f in client.list_flights(json.dumps({"collection": "NYSE"}).encode())}
    assert set(flights) == {("NYSE", "IBM"), ("NYSE", "MSFT")}
    assert flights[("NYSE", "IBM")].total_records == 160
    meta = json.loads(flights[("NYSE", "IBM")].app_metadata)
    assert meta["metadata"] == {"source": "sip"}
    assert meta["start"] == pd.Timestamp("2024-01-02 09:30", tz="America/New_York").value
    assert action(client, "list_items", collection="NYSE") == ["IBM", "MSFT"]


def test_last_n_and_projection_and_filter(client):
    put(client, flight.FlightDescriptor.for_path("IOT", "berlin/temp"), pa.Table.from_pandas(frame("2024-05-01", 100)))
    last = read(client, collection="IOT", item="berlin/temp", last=3, columns=["price"])
    assert last.column_names == ["price"]
    assert last.column("price").to_pylist() == [97.0, 98.0, 99.0]
    sells = read(client, collection="IOT", item="berlin/temp", filter="side = 'sell' AND price < 10")
    assert sells.column("price").to_pylist() == [1.0, 3.0, 5.0, 7.0, 9.0]


def test_errors_carry_the_right_codes(client):
    # NOT_FOUND surfaces as ArrowKeyError, INVALID_ARGUMENT as ArrowInvalid.
    with pytest.raises(pa.ArrowKeyError, match="not found"):
        read(client, collection="IOT", item="no-such-item")
    with pytest.raises(pa.ArrowInvalid):
        read(client, collection="IOT", item="berlin/temp", limt=3)
    with pytest.raises(pa.ArrowInvalid):
        put(client, flight.FlightDescriptor.for_path("IOT", "..", "x"), pa.Table.from_pandas(frame("2024-05-01", 1)))
    bad = pa.table({"ts": pa.array([1, None], pa.timestamp("ns", "UTC")), "v": [1.0, 2.0]})
    with pytest.raises(pa.ArrowInvalid):
        put(client, flight.FlightDescriptor.for_path("IOT", "nulls"), bad)
    assert "nulls" not in action(client, "list_items", collection="IOT")


def test_each_append_is_readable_as_soon_as_it_is_acknowledged(client):
    # Appends after the end are acknowledged through the write-ahead log: a read right
    # after the reply sees them, with consecutive versions.
    descriptor = flight.FlightDescriptor.for_path("IOT", "sensor-1")
    start = pd.Timestamp("2024-03-01", tz="UTC")

    def block(k, rows=100):
        ts = start + pd.to_timedelta(np.arange(k * rows, (k + 1) * rows), unit="s")
        return pa.table({"ts": pa.array(ts), "temp": np.random.default_rng(k).normal(20, 1, rows)})

    for k in range(30):
        receipt = put(client, descriptor, block(k))
        assert receipt["version"] == k + 1
        assert receipt["rows_written"] == 100
        got = read(client, collection="IOT", item="sensor-1")
        assert got.num_rows == (k + 1) * 100
        assert got.column("ts")[-1].as_py() == block(k).column("ts")[-1].as_py()
    (info,) = [i for i in client.list_flights() if i.descriptor.path == [b"IOT", b"sensor-1"]]
    assert info.total_records == 3000
    at_10 = read(client, collection="IOT", item="sensor-1", version=10)
    assert at_10.num_rows == 1000


def test_upserts_and_late_rows_are_readable_merged_as_soon_as_acknowledged(client):
    # Upserts and late rows are acknowledged through the write-ahead log too; every read
    # right after the reply sees them merged, as a pandas model of the item says.
    descriptor = flight.FlightDescriptor.for_path("IOT", "sensor-2")
    rng = np.random.default_rng(7)
    start = pd.Timestamp("2024-03-01", tz="UTC")
    at = lambda seconds: (start + pd.Timedelta(seconds=seconds)).isoformat()  # noqa: E731
    ts = start + pd.to_timedelta(np.arange(0, 2000, 2), unit="s")  # even seconds
    model = pd.DataFrame({"ts": ts, "temp": rng.normal(20, 1, len(ts))})
    put(client, descriptor, pa.Table.from_pandas(model, preserve_index=False))
    upsert = flight.FlightDescriptor.for_command(
        json.dumps({"collection": "IOT", "item": "sensor-2", "mode": "upsert"}).encode())
    for k in range(12):
        seconds = np.sort(rng.choice(2000, 40, replace=False))  # even ones replace, odd ones add
        new = pd.DataFrame({"ts": start + pd.to_timedelta(seconds, unit="s"), "temp": rng.normal(30, 1, 40)})
        late = k % 3 == 2  # a plain append of rows inside the range: merged, none dropped
        receipt = put(client, descriptor if late else upsert, pa.Table.from_pandas(new, preserve_index=False))
        assert receipt["version"] == k + 2 and receipt["rows_written"] == 40
        if not late:
            model = model[~model.ts.isin(new.ts)]
        model = pd.concat([model, new]).sort_values("ts", kind="stable", ignore_index=True)
        got = read(client, collection="IOT", item="sensor-2").to_pandas()
        pd.testing.assert_frame_equal(got, model, check_dtype=False)
        window = read(client, collection="IOT", item="sensor-2", start=at(500), end=at(900), n_prev=3).to_pandas()
        inside = model[(model.ts >= at(500)) & (model.ts < at(900))]
        before = model[model.ts < at(500)].tail(3)
        pd.testing.assert_frame_equal(window, pd.concat([before, inside], ignore_index=True), check_dtype=False)
        last = read(client, collection="IOT", item="sensor-2", last=25).to_pandas()
        pd.testing.assert_frame_equal(last, model.tail(25).reset_index(drop=True), check_dtype=False)
    # Persisted (item_info persists pending merges first): the same rows, counted exactly.
    info = action(client, "item_info", collection="IOT", item="sensor-2")
    assert info["rows"] == len(model) and info["version"] == 13
    got = read(client, collection="IOT", item="sensor-2").to_pandas()
    pd.testing.assert_frame_equal(got, model, check_dtype=False)
