"""Data rules over plain pyarrow.flight: validation, presets, canonicalisation, dense grid
reads, multi-item reads and batch writes (DESIGN.md "Data rules" and "Wire contract")."""
import contextlib
import json
import re
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.flight as flight
import pytest

TS = pa.timestamp("ns", tz="UTC")
T0 = pd.Timestamp("2024-03-04 09:30", tz="UTC")
HOUR = pd.Timedelta(hours=1)

PRESETS = {
    "ohlc": pa.schema([("ts", TS), ("open", pa.float64()), ("high", pa.float64()), ("low", pa.float64()),
                       ("close", pa.float64()), ("volume", pa.float64()), ("quote_volume", pa.float64()),
                       ("trades", pa.int64())]),
    "trades": pa.schema([("ts", TS), ("price", pa.float64()), ("amount", pa.float64()),
                         ("side", pa.string()), ("trade_id", pa.string())]),
    "orderbook": pa.schema([("ts", TS), ("side", pa.string()), ("price", pa.float64()),
                            ("amount", pa.float64()), ("count", pa.int64()), ("is_snapshot", pa.bool_())]),
}
PRESET_KEYS = {"ohlc": ["ts"], "trades": ["ts", "trade_id"], "orderbook": ["ts", "side", "price"]}


# --- Flight helpers -------------------------------------------------------------------

def _do_put(client, descriptor, data):
    """`data`: a DataFrame, a Table (one batch per chunk) or a list of batches."""
    data = to_table(data) if isinstance(data, pd.DataFrame) else data
    batches = data.to_batches() if isinstance(data, pa.Table) else list(data)
    writer, reader = client.do_put(descriptor, batches[0].schema)
    try:
        for batch in batches:
            writer.write_batch(batch)
        writer.done_writing()
        result = reader.read()
    except Exception:
        with contextlib.suppress(Exception):
            writer.close()
        raise
    writer.close()  # raises the server's error, if any
    return json.loads(result.to_pybytes())


def write(client, request, data):
    """DoPut with a WriteRequest command descriptor; returns the receipt (PutResult app_metadata)."""
    return _do_put(client, flight.FlightDescriptor.for_command(json.dumps(request).encode()), data)


def append(client, collection, item, data):  # a plain append: a path descriptor
    return _do_put(client, flight.FlightDescriptor.for_path(collection, item), data)


def read(client, request):  # DoGet with a ReadRequest ticket made by the client
    return client.do_get(flight.Ticket(json.dumps(request).encode())).read_all()


def action(client, kind, body):
    (result,) = list(client.do_action(flight.Action(kind, json.dumps(body).encode())))
    return json.loads(result.body.to_pybytes())


def item_info(client, collection, item):
    return action(client, "item_info", {"collection": collection, "item": item})


def list_items(client, collection):
    try:
        return action(client, "list_items", {"collection": collection})
    except pa.ArrowKeyError:  # the collection was never created
        return []


def state(client, collection, item):
    """(version, rows, table) of an item, or None if it does not exist."""
    try:
        info = item_info(client, collection, item)
    except pa.ArrowKeyError:
        return None
    return info["version"], info["rows"], read(client, {"collection": collection, "item": item})


def assert_unchanged(client, collection, item, before):
    after = state(client, collection, item)
    if before is None:
        assert after is None, "a rejected first write created the item"
        return
    assert after[:2] == before[:2]
    assert after[2].equals(before[2])


def invalid(call, *parts, row=None):
    """`call` fails with INVALID_ARGUMENT whose message contains every part (and "row N")."""
    with pytest.raises(pa.ArrowInvalid) as err:
        call()
    message = str(err.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    if row is not None:
        assert re.search(rf"\brow {row}\b", message), f"'row {row}' not in {message!r}"
    return message


def ns(values):
    return [pd.Timestamp(v).value for v in values]


def ts_ns(table):
    return table.column("ts").cast(pa.int64()).to_pylist()


# --- data -----------------------------------------------------------------------------

@pytest.fixture
def coll():
    return f"rules-{uuid.uuid4().hex[:12]}"


def to_table(df, schema=None):
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False).replace_schema_metadata(None)


def jittered(start, n, rng, max_ms=3000):
    """n strictly increasing timestamps, the first exactly at `start`."""
    offsets = np.concatenate([[0], np.cumsum(rng.integers(1, max_ms, n - 1))])
    return pd.Timestamp(start) + pd.to_timedelta(offsets, unit="ms")


def ticks(n, seed, start=T0):
    """Trades of a plain item: ts, price, size, side."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "ts": jittered(start, n, rng),
        "price": np.round(100 + np.cumsum(rng.normal(0, 0.05, n)), 2),
        "size": rng.integers(1, 500, n).astype("float64"),
        "side": rng.choice(["buy", "sell"], n).astype(object),
    })


def preset_frame(preset, n, seed, start=T0):
    rng = np.random.default_rng(seed)
    if preset == "ohlc":
        close = np.round(100 + np.cumsum(rng.normal(0, 0.2, n)), 2)
        open_ = np.concatenate([[close[0]], close[:-1]])
        volume = np.round(rng.uniform(1, 50, n), 3)
        return pd.DataFrame({
            "ts": pd.date_range(start, periods=n, freq="1min"),
            "open": open_, "high": np.maximum(open_, close) + np.round(rng.uniform(0, 0.3, n), 2),
            "low": np.minimum(open_, close) - np.round(rng.uniform(0, 0.3, n), 2), "close": close,
            "volume": volume, "quote_volume": volume * close, "trades": rng.integers(1, 400, n),
        })
    if preset == "trades":
        return pd.DataFrame({
            "ts": jittered(start, n, rng),
            "price": np.round(100 + np.cumsum(rng.normal(0, 0.05, n)), 2),
            "amount": np.round(rng.uniform(0.001, 2, n), 4),
            "side": rng.choice(["buy", "sell"], n).astype(object),
            "trade_id": [str(7_000_000 + seed * 10_000 + k) for k in range(n)],
        })
    # orderbook: n // 6 updates of 3 bid and 3 ask levels, the first a snapshot
    times = jittered(start, n // 6, rng, max_ms=60_000)
    mids = np.round(100 + rng.normal(0, 0.5, len(times)), 2)
    return pd.DataFrame([
        {"ts": t, "side": side, "price": round(mid + sign * 0.01 * level, 2), "amount": round(rng.uniform(0.1, 5), 3),
         "count": int(rng.integers(1, 20)), "is_snapshot": k == 0}
        for k, (t, mid) in enumerate(zip(times, mids)) for side, sign in (("bid", -1), ("ask", 1)) for level in (1, 2, 3)
    ])


def preset_table(preset, n, seed, start=T0):
    return to_table(preset_frame(preset, n, seed, start), PRESETS[preset])


def assert_preset_schema(schema, preset):
    assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in PRESETS[preset]]
    assert all(f.nullable for f in schema if f.name != "ts")


# --- 1. validation --------------------------------------------------------------------

def test_not_null_rejection_names_rule_column_row_and_changes_nothing(client, coll):
    rules = {"not_null": ["price", "side"], "checks": [], "unique_ordering": False}
    first = ticks(100, seed=1)
    receipt = write(client, {"collection": coll, "item": "BTC", "validation": rules}, first)
    assert (receipt["version"], receipt["rows_written"]) == (1, 100)
    assert item_info(client, coll, "BTC")["settings"]["validation"] == rules
    before = state(client, coll, "BTC")

    bad = ticks(60, seed=2, start=T0 + HOUR)
    bad.loc[17, "side"] = None
    invalid(lambda: write(client, {"collection": coll, "item": "BTC"}, bad), "not_null", "side", row=17)
    assert_unchanged(client, coll, "BTC", before)
    bad = ticks(60, seed=3, start=T0 + HOUR)
    bad.loc[42, "price"] = None
    invalid(lambda: append(client, coll, "BTC", bad), "not_null", "price", row=42)  # a plain append too
    assert_unchanged(client, coll, "BTC", before)


def test_check_reports_the_first_bad_row_counted_across_batches(client, coll):
    rules = {"not_null": [], "checks": ["price > 0"], "unique_ordering": False}
    df = ticks(100, seed=4)
    df.loc[63, "price"] = -1.5
    df.loc[80, "price"] = -2.5
    batches = to_table(df).to_batches(max_chunksize=50)
    assert [b.num_rows for b in batches] == [50, 50]
    message = invalid(lambda: write(client, {"collection": coll, "item": "ETH", "validation": rules}, batches),
                      "price > 0", "price", "-1.5", row=63)
    assert "-2.5" not in message  # the first offending row only
    assert state(client, coll, "ETH") is None  # a rejected first write creates nothing
    assert "ETH" not in list_items(client, coll)


def test_rules_stick_null_passes_a_check_and_a_new_validation_replaces_them(client, coll):
    rules = {"not_null": ["side"], "checks": ["price > 0"], "unique_ordering": False}
    write(client, {"collection": coll, "item": "SOL", "validation": rules}, ticks(50, seed=5))
    before = state(client, coll, "SOL")

    # A plain append (path descriptor) is still checked.
    negative = ticks(20, seed=6, start=T0 + HOUR)
    negative.loc[5, "price"] = -1.5
    invalid(lambda: append(client, coll, "SOL", negative), "price > 0", "price", "-1.5", row=5)
    # So is a WriteRequest with no "validation".
    no_side = ticks(20, seed=7, start=T0 + HOUR)
    no_side.loc[3, "side"] = None
    invalid(lambda: write(client, {"collection": coll, "item": "SOL"}, no_side), "not_null", "side", row=3)
    assert_unchanged(client, coll, "SOL", before)

    # A check that is NULL passes (SQL CHECK semantics).
    null_price = ticks(20, seed=8, start=T0 + 2 * HOUR)
    null_price.loc[4, "price"] = None
    assert append(client, coll, "SOL", null_price)["version"] == 2
    got = read(client, {"collection": coll, "item": "SOL", "start": (T0 + 2 * HOUR).value})
    assert got.num_rows == 20
    assert got.column("price")[4].as_py() is None

    # A write that gives "validation" replaces the rules.
    new_rules = {"not_null": [], "checks": ["price < 1000"], "unique_ordering": False}
    receipt = write(client, {"collection": coll, "item": "SOL", "validation": new_rules}, ticks(10, seed=9, start=T0 + 3 * HOUR))
    assert receipt["version"] == 3
    assert item_info(client, coll, "SOL")["settings"]["validation"] == new_rules
    relaxed = ticks(10, seed=10, start=T0 + 4 * HOUR)
    relaxed.loc[1, "price"] = -1.5
    relaxed.loc[2, "side"] = None
    assert append(client, coll, "SOL", relaxed)["version"] == 4
    too_high = ticks(10, seed=11, start=T0 + 5 * HOUR)
    too_high.loc[2, "price"] = 5000.5
    invalid(lambda: append(client, coll, "SOL", too_high), "price < 1000", "5000.5", row=2)
    assert item_info(client, coll, "SOL")["rows"] == 50 + 20 + 10 + 10


def test_unique_ordering_rejects_repeated_timestamps_in_an_upload_and_against_stored_rows(client, coll):
    rules = {"not_null": [], "checks": [], "unique_ordering": True}
    first = ticks(80, seed=12)
    write(client, {"collection": coll, "item": "ADA", "validation": rules}, first)
    assert item_info(client, coll, "ADA")["settings"]["validation"] == rules
    before = state(client, coll, "ADA")

    dup = ticks(40, seed=13, start=T0 + HOUR)
    dup.loc[21, "ts"] = dup.loc[20, "ts"]
    message = invalid(lambda: write(client, {"collection": coll, "item": "ADA"}, dup),
                      "unique_ordering", "ts", row=21)
    t = dup.loc[20, "ts"]  # printed as integer ns, or ISO with a "T" or a space
    assert any(form in message for form in (str(t.value), f"{t:%Y-%m-%dT%H:%M:%S}", f"{t:%Y-%m-%d %H:%M:%S}")), message
    assert_unchanged(client, coll, "ADA", before)

    # An append starting exactly at the stored end, or repeating a stored time inside.
    last = first["ts"].iloc[-1]
    invalid(lambda: append(client, coll, "ADA", ticks(5, seed=14, start=last)), "unique_ordering", "ts")
    inside = ticks(1, seed=15, start=first["ts"].iloc[40])
    invalid(lambda: write(client, {"collection": coll, "item": "ADA"}, inside), "unique_ordering", "ts")
    assert_unchanged(client, coll, "ADA", before)

    later = ticks(5, seed=16, start=last + pd.Timedelta(milliseconds=1))
    assert append(client, coll, "ADA", later)["version"] == 2
    assert item_info(client, coll, "ADA")["rows"] == 85


# --- 2. presets -----------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["ohlc", "trades", "orderbook"])
def test_preset_accepts_its_schema(client, coll, preset):
    table = preset_table(preset, 120, seed=20)
    receipt = write(client, {"collection": coll, "item": "X", "preset": preset}, table)
    assert receipt["rows_written"] == table.num_rows
    got = read(client, {"collection": coll, "item": "X"})
    assert_preset_schema(got.schema, preset)
    keys = PRESET_KEYS[preset]
    by_key = lambda t: t.to_pandas().sort_values(keys).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(by_key(got), by_key(table))
    settings = item_info(client, coll, "X")["settings"]
    assert settings["preset"] == preset
    assert settings["ordered_on"] == "ts"
    assert settings["dedup_on"] == keys


@pytest.mark.parametrize("preset,column,wrong", [
    ("ohlc", "open", pa.string()),
    ("ohlc", "vwap", pa.float64()),  # an unknown extra column
    ("trades", "amount", pa.string()),
    ("orderbook", "is_snapshot", pa.string()),
    ("orderbook", "level", pa.int64()),
])
def test_preset_rejects_a_wrong_schema(client, coll, preset, column, wrong):
    good = preset_table(preset, 30, seed=21)
    values = pa.array([str(v) if wrong == pa.string() else 1 for v in range(good.num_rows)], wrong)
    if column in good.column_names:
        table = good.set_column(good.column_names.index(column), column, values)
    else:
        table = good.append_column(column, values)
    invalid(lambda: write(client, {"collection": coll, "item": "X", "preset": preset}, table), column)
    assert state(client, coll, "X") is None
    assert write(client, {"collection": coll, "item": "X", "preset": preset}, good)["version"] == 1


def test_preset_converts_ts_and_fills_missing_nullable_columns(client, coll):
    # trades: "TS" as int64 nanoseconds, no "side" column.
    trades = preset_table("trades", 50, seed=22)
    legacy = trades.drop_columns(["side", "ts"]).add_column(0, "TS", trades.column("ts").cast(pa.int64()))
    write(client, {"collection": coll, "item": "trades", "preset": "trades"}, legacy)
    got = read(client, {"collection": coll, "item": "trades"})
    assert_preset_schema(got.schema, "trades")
    expected = trades.set_column(3, "side", pa.nulls(50, pa.string()))
    pd.testing.assert_frame_equal(got.to_pandas(), expected.to_pandas())

    # ohlc: "ts" in milliseconds, no "trades" column.
    ohlc = preset_table("ohlc", 40, seed=23)
    in_ms = ohlc.drop_columns(["trades"]).set_column(0, "ts", ohlc.column("ts").cast(pa.timestamp("ms", tz="UTC")))
    write(client, {"collection": coll, "item": "bars", "preset": "ohlc"}, in_ms)
    got = read(client, {"collection": coll, "item": "bars"})
    assert_preset_schema(got.schema, "ohlc")
    expected = ohlc.set_column(7, "trades", pa.nulls(40, pa.int64()))
    pd.testing.assert_frame_equal(got.to_pandas(), expected.to_pandas())


def test_preset_dedup_keeps_the_last_row(client, coll):
    bars = preset_frame("ohlc", 10, seed=24)
    write(client, {"collection": coll, "item": "BTC/1m", "preset": "ohlc"}, bars)
    again = preset_frame("ohlc", 3, seed=25, start=bars["ts"].iloc[3])  # bars 3..5 again
    write(client, {"collection": coll, "item": "BTC/1m", "preset": "ohlc"}, again)
    # Within one upload too: the second of two rows at one time wins.
    twice = preset_frame("ohlc", 2, seed=26, start=bars["ts"].iloc[8])
    twice.loc[1, "ts"] = twice.loc[0, "ts"]
    write(client, {"collection": coll, "item": "BTC/1m"}, twice)
    expected = pd.concat([bars.iloc[:3], again, bars.iloc[6:8], twice.iloc[[1]], bars.iloc[9:]], ignore_index=True)
    got = read(client, {"collection": coll, "item": "BTC/1m"}).to_pandas()
    pd.testing.assert_frame_equal(got, expected)

    # trades: the key is (ts, trade_id): same time, other id = another trade.
    trades = preset_frame("trades", 20, seed=27)
    write(client, {"collection": coll, "item": "BTC/trades", "preset": "trades"}, trades)
    more = trades.iloc[[4, 9]].copy()
    more["price"] = [1.25, 2.5]
    more.loc[more.index[1], "trade_id"] = "new-trade"
    write(client, {"collection": coll, "item": "BTC/trades", "preset": "trades"}, more)
    got = read(client, {"collection": coll, "item": "BTC/trades"}).to_pandas()
    assert len(got) == 21
    assert got.loc[got.trade_id == trades.trade_id[4], "price"].tolist() == [1.25]
    assert got.loc[got.trade_id == trades.trade_id[9], "price"].tolist() == [trades.price[9]]
    assert got.loc[got.trade_id == "new-trade", "price"].tolist() == [2.5]


def test_ohlc_check_low_le_high_and_unknown_preset(client, coll):
    bars = preset_frame("ohlc", 20, seed=28)
    bars.loc[4, "low"] = bars.loc[4, "high"] + 1.0
    invalid(lambda: write(client, {"collection": coll, "item": "bad", "preset": "ohlc"}, bars), "low <= high", row=4)
    assert state(client, coll, "bad") is None
    invalid(lambda: write(client, {"collection": coll, "item": "bad", "preset": "candles"},
                          preset_table("ohlc", 5, seed=29)), "candles")
    assert list_items(client, coll) == []
    bars.loc[4, "low"] = bars.loc[4, "high"] - 1.0
    assert write(client, {"collection": coll, "item": "bad", "preset": "ohlc"}, bars)["version"] == 1


# --- 3. canonicalisation --------------------------------------------------------------

def test_a_legacy_ohlc_frame_goes_into_a_v3_item(client, coll):
    v3 = preset_table("ohlc", 30, seed=30)
    write(client, {"collection": coll, "item": "ETH/1m", "preset": "ohlc"}, v3)
    new = preset_frame("ohlc", 20, seed=31, start=T0 + HOUR)
    legacy = pd.DataFrame({
        "TS": new["ts"].astype("int64"), "open": new["open"], "high": new["high"], "low": new["low"],
        "close": new["close"], "volume": new["volume"], "quoteVolume": new["quote_volume"],
        "weightedAverage": new["quote_volume"] / new["volume"],
    })
    assert write(client, {"collection": coll, "item": "ETH/1m", "preset": "ohlc"}, legacy)["rows_written"] == 20
    got = read(client, {"collection": coll, "item": "ETH/1m"})
    assert_preset_schema(got.schema, "ohlc")
    tail = got.slice(30).to_pandas()
    assert tail["quote_volume"].tolist() == legacy["quoteVolume"].tolist()
    assert tail["trades"].isna().all()
    assert ts_ns(got.slice(30)) == legacy["TS"].tolist()
    expected = pa.concat_tables([v3, to_table(new.assign(trades=None), PRESETS["ohlc"])])
    pd.testing.assert_frame_equal(got.to_pandas(), expected.to_pandas())


def test_rename_and_drop_without_a_preset(client, coll):
    rng = np.random.default_rng(32)
    quotes = pd.DataFrame({"ts": jittered(T0, 40, rng), "bid": np.round(rng.uniform(99, 100, 40), 2),
                           "ask": np.round(rng.uniform(100, 101, 40), 2), "venue": rng.choice(["XNAS", "ARCX"], 40)})
    write(client, {"collection": coll, "item": "quotes"}, quotes)
    legacy = pd.DataFrame({"ts": jittered(T0 + HOUR, 25, rng), "askPrice": np.round(rng.uniform(100, 101, 25), 2),
                           "bidPrice": np.round(rng.uniform(99, 100, 25), 2), "exchangeCode": "Q"})
    request = {"collection": coll, "item": "quotes", "rename": {"bidPrice": "bid", "askPrice": "ask"},
               "drop": ["exchangeCode"]}
    assert write(client, request, legacy)["rows_written"] == 25
    got = read(client, {"collection": coll, "item": "quotes"})
    assert got.column_names == ["ts", "bid", "ask", "venue"]
    expected = pd.concat([quotes, legacy.rename(columns={"bidPrice": "bid", "askPrice": "ask"})
                          .drop(columns="exchangeCode").assign(venue=None)[quotes.columns]], ignore_index=True)
    pd.testing.assert_frame_equal(got.to_pandas(), expected)


# --- 4. dense grid reads --------------------------------------------------------------

GRID_ROWS = [  # (ts, value, tag); no dedup_on, so two rows may share an instant
    ("2024-01-01 23:58:00", 0.0, "a"),
    ("2024-01-02 00:00:00", 1.0, "b"),        # exactly at start: included
    ("2024-01-02 00:00:30", 99.0, "between"),  # between slots: never shown
    ("2024-01-02 00:01:00", 2.0, "c"),
    ("2024-01-02 00:01:00", 3.0, "d"),        # same instant: the last one wins
    ("2024-01-02 00:03:00", 4.0, "e"),
    ("2024-01-02 00:03:20", 98.0, "between"),  # does not feed "previous"
    ("2024-01-02 00:05:00", 5.0, "at-end"),   # exactly at end: excluded
    ("2024-01-02 00:06:00", 6.0, "f"),
]


@pytest.fixture
def grid_item(client, coll):
    df = pd.DataFrame(GRID_ROWS, columns=["ts", "value", "tag"])
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    write(client, {"collection": coll, "item": "sensor"}, df)
    return {"collection": coll, "item": "sensor"}


def grid_read(client, base, start, end, fill, **more):
    return read(client, {**base, "start": start, "end": end, "grid": {"freq": "1min", "fill": fill}, **more})


def test_grid_slots_with_fill_null_and_previous(client, grid_item):
    slots = pd.date_range("2024-01-02 00:00", periods=5, freq="1min", tz="UTC")
    nulls = grid_read(client, grid_item, "2024-01-02T00:00:00Z", "2024-01-02T00:05:00Z", "null")
    assert nulls.column_names == ["ts", "value", "tag"]
    assert nulls.schema.field("ts").type == TS
    assert ts_ns(nulls) == ns(slots)
    assert nulls.column("value").to_pylist() == [1.0, 3.0, None, 4.0, None]
    assert nulls.column("tag").to_pylist() == ["b", "d", None, "e", None]

    prev = grid_read(client, grid_item, "2024-01-02T00:00:00Z", "2024-01-02T00:05:00Z", "previous")
    assert ts_ns(prev) == ns(slots)
    assert prev.column("value").to_pylist() == [1.0, 3.0, 3.0, 4.0, 4.0]
    assert prev.column("tag").to_pylist() == ["b", "d", "d", "e", "e"]

    # The first slot: the last row stored before start counts for "previous".
    early = grid_read(client, grid_item, "2024-01-01T23:59:00Z", "2024-01-02T00:02:00Z", "previous")
    assert ts_ns(early) == ns(pd.date_range("2024-01-01 23:59", periods=3, freq="1min", tz="UTC"))
    assert early.column("value").to_pylist() == [0.0, 1.0, 3.0]
    early = grid_read(client, grid_item, "2024-01-01T23:59:00Z", "2024-01-02T00:02:00Z", "null")
    assert early.column("value").to_pylist() == [None, 1.0, 3.0]
    # Nothing before: "previous" has nothing to carry until the first stored slot.
    before = grid_read(client, grid_item, "2024-01-01T23:50:00Z", "2024-01-01T23:59:00Z", "previous")
    assert before.column("value").to_pylist() == [None] * 8 + [0.0]

    # Integer nanoseconds work as bounds too, and a projection applies to the grid.
    projected = grid_read(client, grid_item, slots[0].value, slots[-1].value + 60_000_000_000, "previous",
                          columns=["ts", "value"])
    assert projected.column_names == ["ts", "value"]
    assert ts_ns(projected) == ns(slots)
    assert projected.column("value").to_pylist() == [1.0, 3.0, 3.0, 4.0, 4.0]


def test_grid_carries_the_previous_slot_over_a_gap_of_hours(client, coll):
    df = pd.DataFrame({"ts": pd.to_datetime(["2024-01-02 10:00:00", "2024-01-02 10:01:00", "2024-01-02 12:30:30",
                                             "2024-01-02 15:00:00"], utc=True), "value": [1.0, 2.0, 50.0, 3.0]})
    write(client, {"collection": coll, "item": "gap"}, df)
    got = read(client, {"collection": coll, "item": "gap", "start": "2024-01-02T10:00:00Z",
                        "end": "2024-01-02T15:02:00Z", "grid": {"freq": "1min", "fill": "previous"}})
    slots = pd.date_range("2024-01-02 10:00", "2024-01-02 15:01", freq="1min", tz="UTC")
    assert got.num_rows == len(slots) == 302
    assert ts_ns(got) == ns(slots)
    # pandas: the rows stored at slot instants, reindexed on the grid, forward-filled.
    expected = df.drop_duplicates("ts", keep="last").set_index("ts")["value"].reindex(slots).ffill()
    assert got.column("value").to_pylist() == expected.tolist()
    assert 50.0 not in got.column("value").to_pylist()


def test_grid_errors(client, grid_item):
    grid = {"freq": "1min", "fill": "null"}
    assert read(client, {**grid_item, "grid": grid, "start": "2024-01-02T00:00:00Z", "end": "2024-01-02T00:05:00Z"}).num_rows == 5
    cases = [
        {"grid": grid, "start": "2024-01-02T00:00:00Z"},  # no end
        {"grid": grid, "end": "2024-01-02T00:05:00Z"},  # no start
        {"grid": grid, "start": "2024-01-02T00:00:00Z", "end": "2024-01-02T00:05:00Z", "n_prev": 2},
        {"grid": {"freq": "1x", "fill": "null"}, "start": "2024-01-02T00:00:00Z", "end": "2024-01-02T00:05:00Z"},
        {"grid": {"freq": "1min", "fill": "linear"}, "start": "2024-01-02T00:00:00Z", "end": "2024-01-02T00:05:00Z"},
    ]
    for case in cases:
        invalid(lambda: read(client, {**grid_item, **case}))


def test_grid_through_get_flight_info(client, grid_item):
    request = {**grid_item, "start": "2024-01-02T00:00:00Z", "end": "2024-01-02T00:05:00Z",
               "grid": {"freq": "1min", "fill": "previous"}}
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request).encode()))
    assert info.total_records == 5
    got = pa.concat_tables([client.do_get(e.ticket).read_all() for e in info.endpoints])
    assert ts_ns(got) == ns(pd.date_range("2024-01-02 00:00", periods=5, freq="1min", tz="UTC"))
    assert got.column("value").to_pylist() == [1.0, 3.0, 3.0, 4.0, 4.0]


# --- 5. multi-item reads --------------------------------------------------------------

ITEMS = ["SOL-USD", "BTC-USD", "ETH-USD"]  # not alphabetical: ties follow this order


@pytest.fixture
def markets(client, coll):
    """Three items with whole-second times: many ties across items, some within one."""
    frames = {}
    for k, name in enumerate(ITEMS):
        rng = np.random.default_rng(40 + k)
        n = 150
        frames[name] = pd.DataFrame({
            "ts": T0 + pd.to_timedelta(np.sort(rng.integers(0, 600, n)), unit="s"),
            "price": np.round(rng.uniform(10, 1000, n), 2),
            "amount": np.round(rng.uniform(0.01, 3, n), 4),
        })
        append(client, coll, name, frames[name])
    return frames


def merged(frames, names, start=None, end=None, n_prev=0):
    """pandas: each item's frame with an _item column, stable-sorted on (ts, item position)."""
    parts = []
    for pos, name in enumerate(names):
        f = frames[name]
        inside = f if start is None else f[f.ts >= start]
        inside = inside if end is None else inside[inside.ts < end]
        prev = f[f.ts < start].tail(n_prev) if n_prev else f.iloc[:0]
        part = pd.concat([prev, inside]).assign(_pos=pos, _seq=lambda d: np.arange(len(d)))
        part.insert(0, "_item", name)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True).sort_values(["ts", "_pos", "_seq"], kind="stable")
    return out.drop(columns=["_pos", "_seq"]).reset_index(drop=True)


def as_frame(table):
    df = table.to_pandas()
    df["_item"] = df["_item"].astype(str).astype(object)
    return df


def test_multi_item_read_equals_a_pandas_merge_and_errors(client, coll, markets):
    got = read(client, {"collection": coll, "items": ITEMS})
    field = got.schema.field(0)
    assert field.name == "_item"
    assert pa.types.is_dictionary(field.type)
    assert pa.types.is_string(field.type.value_type) or pa.types.is_large_string(field.type.value_type)
    assert got.column_names == ["_item", "ts", "price", "amount"]
    expected = merged(markets, ITEMS)
    assert len(expected) == 450
    assert expected.duplicated("ts").any()  # the ties are really there
    pd.testing.assert_frame_equal(as_frame(got), expected)

    # Another order of "items" changes the order of ties only.
    other = list(reversed(ITEMS))
    pd.testing.assert_frame_equal(as_frame(read(client, {"collection": coll, "items": other})),
                                  merged(markets, other))

    # Errors: a missing item is NOT_FOUND; "item" with "items", or neither, INVALID_ARGUMENT.
    with pytest.raises(pa.ArrowKeyError):
        read(client, {"collection": coll, "items": ["BTC-USD", "DOGE-USD"]})
    invalid(lambda: read(client, {"collection": coll, "item": "BTC-USD", "items": ["ETH-USD"]}))
    invalid(lambda: read(client, {"collection": coll}))


def test_multi_item_range_n_prev_limit_last_and_columns(client, coll, markets):
    start, end = T0 + pd.Timedelta(seconds=200), T0 + pd.Timedelta(seconds=400)
    base = {"collection": coll, "items": ITEMS, "start": start.value, "end": end.value}

    pd.testing.assert_frame_equal(as_frame(read(client, base)), merged(markets, ITEMS, start, end))
    # n_prev: each item brings its own 3 rows before start.
    with_prev = merged(markets, ITEMS, start, end, n_prev=3)
    got = as_frame(read(client, {**base, "n_prev": 3}))
    pd.testing.assert_frame_equal(got, with_prev)
    before = got[got.ts < start]
    assert before.groupby("_item").size().to_dict() == {name: 3 for name in ITEMS}
    # limit and last apply to the merged stream.
    pd.testing.assert_frame_equal(as_frame(read(client, {**base, "n_prev": 3, "limit": 10})), with_prev.head(10))
    pd.testing.assert_frame_equal(as_frame(read(client, {**base, "last": 7})),
                                  merged(markets, ITEMS, start, end).tail(7).reset_index(drop=True))
    # columns
    got = read(client, {**base, "columns": ["ts", "price"]})
    assert got.column_names == ["_item", "ts", "price"]
    pd.testing.assert_frame_equal(as_frame(got), merged(markets, ITEMS, start, end)[["_item", "ts", "price"]])


def test_multi_item_flight_info_tickets_are_pinned(client, coll, markets):
    request = {"collection": coll, "items": ITEMS}
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request).encode()))
    assert info.total_records == 450
    assert info.schema.names == ["_item", "ts", "price", "amount"]
    more = pd.DataFrame({"ts": [T0 + HOUR, T0 + HOUR + pd.Timedelta(seconds=1)], "price": [1.0, 2.0],
                         "amount": [0.5, 0.25]})
    append(client, coll, "BTC-USD", more)
    assert read(client, request).num_rows == 452  # the write is visible to a new read
    old = pa.concat_tables([client.do_get(e.ticket).read_all() for e in info.endpoints])
    pd.testing.assert_frame_equal(as_frame(old), merged(markets, ITEMS))


# --- 6. batch writes ------------------------------------------------------------------

def test_batch_write_of_a_hundred_items(client, coll):
    rng = np.random.default_rng(50)
    symbols = [f"S{k:03d}" for k in range(100)]
    parts = []
    for k, symbol in enumerate(symbols):
        n = int(rng.integers(2, 9))
        parts.append(pd.DataFrame({"symbol": symbol, "ts": jittered(T0 + pd.Timedelta(seconds=k), n, rng),
                                   "price": np.round(rng.uniform(5, 500, n), 2), "size": rng.integers(1, 1000, n)}))
    df = pd.concat(parts).sample(frac=1, random_state=7).reset_index(drop=True)  # symbols in random order
    batches = to_table(df).to_batches(max_chunksize=150)
    assert len(batches) == 4

    receipt = write(client, {"collection": coll, "item_column": "symbol"}, batches)
    assert receipt["rows_received"] == len(df)
    sizes = df.groupby("symbol").size()
    assert set(receipt["items"]) == set(symbols)
    for symbol in symbols:
        entry = receipt["items"][symbol]
        assert (entry["version"], entry["rows_written"]) == (1, sizes[symbol])
    assert sorted(list_items(client, coll)) == symbols

    for symbol, group in df.groupby("symbol"):
        got = read(client, {"collection": coll, "item": symbol})
        assert got.column_names == ["ts", "price", "size"]
        expected = group.drop(columns="symbol").sort_values("ts", kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(got.to_pandas(), expected)


def test_a_batch_write_with_one_bad_part_commits_nothing(client, coll):
    def batch(start, seed, symbols=("AAPL", "MSFT", "NVDA", "TSLA")):
        return pd.concat([ticks(20, seed + k, start=start).assign(symbol=s) for k, s in enumerate(symbols)],
                         ignore_index=True).sort_values("ts", kind="stable").reset_index(drop=True)

    rules = {"not_null": ["price"], "checks": [], "unique_ordering": False}
    # Into an empty collection: a null price in NVDA's rows only.
    bad = batch(T0, 60)
    bad.loc[bad.index[bad.symbol == "NVDA"][7], "price"] = None
    invalid(lambda: write(client, {"collection": coll, "item_column": "symbol", "validation": rules}, bad),
            "not_null", "price")
    assert list_items(client, coll) == []

    good = batch(T0, 70, symbols=("AAPL", "MSFT", "NVDA"))
    receipt = write(client, {"collection": coll, "item_column": "symbol", "validation": rules}, good)
    assert {s: e["version"] for s, e in receipt["items"].items()} == {"AAPL": 1, "MSFT": 1, "NVDA": 1}
    before = {s: state(client, coll, s) for s in ("AAPL", "MSFT", "NVDA")}

    # Later rows for every item plus a new one; NVDA's part breaks the item's rule.
    bad = batch(T0 + HOUR, 80)
    bad.loc[bad.index[bad.symbol == "NVDA"][3], "price"] = None
    request = {"collection": coll, "item_column": "symbol", "validation": rules}
    invalid(lambda: write(client, request, bad), "not_null", "price")
    # A null symbol.
    bad = batch(T0 + HOUR, 90)
    bad.loc[11, "symbol"] = None
    invalid(lambda: write(client, {"collection": coll, "item_column": "symbol"}, bad), "symbol")

    assert sorted(list_items(client, coll)) == ["AAPL", "MSFT", "NVDA"]
    for symbol, was in before.items():
        assert_unchanged(client, coll, symbol, was)
