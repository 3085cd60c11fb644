"""The `flightstore` Python package (client/python) against the real server binary.

PyStore's tutorial done with the package, round trips of pandas dtypes, filters,
snapshots, batches, streams, upserts, the asyncio API, every error class, and a
migration from a real PyStore folder made with the `pystore` package.
"""
import asyncio
import uuid

import numpy as np
import pandas as pd
import pytest

import flightstore
import flightstore.aio
import flightstore.migrate
from flightstore.filters import to_sql

T0 = pd.Timestamp("2024-01-02 09:30", tz="America/New_York")


def ticks(n, start=T0, seed=0, tz="America/New_York"):
    """`n` trades from `start` on: jittered steps (5 ms .. 3 s), a random-walk price,
    sizes, and string side and venue."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(5_000_000, 3_000_000_000, n)
    ts = pd.Timestamp(start).tz_convert(tz) + pd.to_timedelta(np.cumsum(steps) - steps[0], unit="ns")
    return pd.DataFrame(
        {
            "price": np.round(100 + np.cumsum(rng.normal(0, 0.05, n)), 4),
            "size": rng.integers(1, 500, n),
            "side": rng.choice(["sell", "buy"], n),
            "venue": rng.choice(["XNAS", "ARCX", "O'Hare"], n),
        },
        index=pd.DatetimeIndex(ts, name="ts"),
    )


def after(df, n, seed):
    """`n` more trades starting 1 s after `df`'s last row."""
    return ticks(n, start=df.index[-1] + pd.Timedelta("1s"), seed=seed, tz=str(df.index.tz))


def same(got, expected):
    # A DatetimeIndex's `freq` is a pandas-side hint, not data.
    pd.testing.assert_frame_equal(got, expected, check_freq=False)


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def store(server):
    s = flightstore.connect(server)
    yield s
    s.close()


@pytest.fixture
def coll(store):
    return store.collection(unique("C"))


# ---------------------------------------------------------------------------------------
# PyStore's tutorial


def test_pystore_tutorial(store):
    name = unique("NASDAQ")
    assert name not in store.list_collections()
    collection = store.collection(name)
    aapl = ticks(500, seed=1)

    collection.write("AAPL", aapl[:100], metadata={"source": "yfinance"})
    assert name in store.list_collections()
    assert collection.list_items() == ["AAPL"]
    item = collection.item("AAPL")
    same(item.to_pandas(), aapl[:100])
    assert item.metadata == {"source": "yfinance"}

    receipt = collection.append("AAPL", aapl[100:])
    assert receipt["rows_written"] == 400
    item = collection.item("AAPL")
    same(item.to_pandas(), aapl)
    assert item.info["rows"] == 500

    collection.write("MSFT", ticks(50, seed=2), metadata={"source": "other", "tier": 1})
    assert collection.list_items(source="yfinance") == ["AAPL"]
    assert collection.list_items(source="other", tier=1) == ["MSFT"]
    assert collection.list_items(source="other", tier=2) == []

    collection.create_snapshot("snapshot_name")
    assert collection.list_snapshots() == ["snapshot_name"]
    collection.append("AAPL", after(aapl, 20, seed=3))
    assert len(collection.item("AAPL").to_pandas()) == 520
    same(collection.item("AAPL", snapshot="snapshot_name").to_pandas(), aapl)
    collection.delete_snapshot("snapshot_name")
    assert collection.list_snapshots() == []

    collection.delete_item("AAPL")
    assert collection.list_items() == ["MSFT"]
    store.delete_collection(name)
    assert name not in store.list_collections()


# ---------------------------------------------------------------------------------------
# Round trips of pandas frames


def test_tz_aware_frames_round_trip(coll):
    df = ticks(2000, seed=4)
    df["settled"] = (df.index + pd.Timedelta("2D")).tz_convert("Europe/Berlin")
    df["odd_lot"] = df["size"] < 100
    df["qty"] = df["size"].astype("int32")
    coll.write("T", df)
    got = coll.item("T").to_pandas()
    same(got, df)
    assert str(got.index.dtype) == "datetime64[ns, America/New_York]"
    assert str(got["settled"].dtype) == "datetime64[ns, Europe/Berlin]"


def test_categoricals_round_trip_with_their_declared_categories(coll):
    # astype("category") sorts the categories; the data shows them in another order.
    df = ticks(500, seed=5)
    df["side"] = df["side"].astype("category")
    assert list(dict.fromkeys(df["side"])) != list(df["side"].cat.categories)  # the case that matters
    df["venue"] = pd.Categorical(np.where(df["size"] % 2 == 0, "XNAS", "ARCX"),
                                 categories=["XNYS", "XNAS", "ARCX"], ordered=True)  # "XNYS" unused
    df["lot"] = pd.Categorical(df["size"] % 3 * 100, categories=[300, 200, 100, 0])  # integers
    coll.write("T", df)
    item = coll.item("T")
    same(item.to_pandas(), df)
    # A range or a column subset keeps the declared categories too.
    part = df.iloc[100:120]
    same(item.to_pandas(start=part.index[0], end=part.index[-1] + pd.Timedelta(1, "ns"),
                        columns=["venue"]), part[["venue"]])


def test_categorical_categories_round_trip(coll):
    df = ticks(300, seed=5)
    df["side"] = pd.Categorical(df["side"], categories=["short", "sell", "buy"])  # "short" unused
    coll.write("T", df)
    same(coll.item("T").to_pandas(), df)


def test_categories_of_appended_frames_round_trip(coll):
    dtype = pd.CategoricalDtype(["buy", "sell"])
    first = ticks(300, seed=5).astype({"side": dtype})
    first.iloc[0, first.columns.get_loc("side")] = "sell"  # first seen: "sell"
    more = after(first, 300, seed=6).astype({"side": dtype})
    coll.write("T", first)
    coll.append("T", more)
    coll.append_stream("T", [after(more, 100, seed=7).astype({"side": dtype})])
    got = coll.item("T").to_pandas()
    assert list(got["side"].cat.categories) == ["buy", "sell"]
    same(got.iloc[:600], pd.concat([first, more]))


def test_new_categories_come_after_the_declared_ones_and_overwrite_declares_anew(coll):
    first = ticks(200, seed=5).astype({"side": pd.CategoricalDtype(["sell", "buy"])})
    more = after(first, 200, seed=6)
    more["side"] = pd.Categorical(["cross"] * len(more), categories=["cross"])
    coll.write("T", first)
    coll.append("T", more)
    got = coll.item("T").to_pandas()
    assert list(got["side"].cat.categories) == ["sell", "buy", "cross"]
    assert got["side"].astype(str).tolist() == first["side"].astype(str).tolist() + ["cross"] * len(more)
    again = ticks(100, seed=8).astype({"side": pd.CategoricalDtype(["buy", "sell", "short"])})
    coll.write("T", again, overwrite=True)
    same(coll.item("T").to_pandas(), again)


def test_write_batch_keeps_each_items_categories(coll):
    a = ticks(100, seed=1).astype({"side": pd.CategoricalDtype(["buy", "sell"])})
    b = ticks(100, seed=2).astype({"side": pd.CategoricalDtype(["sell", "buy", "short"])})
    coll.write_batch({"A": a, "B": b})
    got = coll.read_batch(["A", "B"])
    same(got["A"], a)
    same(got["B"], b)


def test_a_regular_index_keeps_its_freq_as_pandas_would(coll):
    idx = pd.date_range("2024-03-01 09:30", periods=600, freq="min", tz="America/New_York", name="ts")
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"price": np.round(100 + np.cumsum(rng.normal(0, 0.05, 600)), 4)}, index=idx)
    coll.write("M", df)
    item = coll.item("M")
    exact = pd.testing.assert_frame_equal  # check_freq=True
    exact(item.to_pandas(), df)
    assert item.to_pandas().index.freqstr == "min"
    exact(item.to_pandas(start=idx[100], end=idx[200]), df.loc[idx[100]:idx[199]])
    exact(item.to_pandas(last=10), df.iloc[-10:])
    # a filter is a boolean mask: no freq, as in pandas
    got = item.to_pandas(filters=[("price", ">", 100)])
    assert got.index.freq is None
    exact(got, df[df["price"] > 100])
    # contiguous appends keep it, as pd.concat does; rows off the grid drop it
    more = pd.DataFrame({"price": [1.0, 2.0]}, index=pd.date_range(idx[-1] + idx.freq, periods=2, freq="min", name="ts"))
    coll.append("M", more)
    exact(item.to_pandas(), pd.concat([df, more]))
    assert item.to_pandas().index.freqstr == "min"
    late = pd.DataFrame({"price": [3.0]}, index=pd.DatetimeIndex([more.index[-1] + pd.Timedelta("7s")], name="ts"))
    coll.append("M", late.tz_localize(None).tz_localize("UTC").tz_convert("America/New_York"))
    assert item.to_pandas().index.freq is None
    # a frame written without a freq never gets one
    coll.write("N", df.set_axis(pd.DatetimeIndex(list(idx), name="ts")))
    assert coll.item("N").to_pandas().index.freq is None


def test_first_datetime_column_is_the_ordering_column_and_comes_back_as_index(coll):
    df = ticks(200, seed=7).reset_index()
    df.insert(0, "seq", np.arange(len(df)))
    coll.write("T", df)
    got = coll.item("T").to_pandas()
    same(got, df.set_index("ts"))
    assert coll.item("T").info["settings"]["ordered_on"] == "ts"


def test_polars_and_arrow(coll):
    pl = pytest.importorskip("polars")
    df = ticks(300, seed=8)
    coll.write("T", df)
    item = coll.item("T")
    table = item.to_arrow(columns=["price"], last=10)
    assert table.column_names == ["ts", "price"]
    assert table.column("price").to_pylist() == df["price"].iloc[-10:].tolist()
    frame = item.to_polars(start=df.index[100], end=df.index[110])
    assert isinstance(frame, pl.DataFrame)
    assert frame["price"].to_list() == df["price"].iloc[100:110].tolist()
    # A polars frame can be written too (its first datetime column orders it).
    coll.append("P", frame)
    assert coll.item("P").to_arrow().num_rows == 10


# ---------------------------------------------------------------------------------------
# Reads: ranges, columns, filters


@pytest.fixture(scope="module")
def trades(store):
    coll = store.collection(unique("READ"))
    df = ticks(5000, seed=9)
    coll.write("T", df)
    return coll.item("T"), df


def test_ranges_columns_last_limit(trades):
    item, df = trades
    start, end = df.index[1000], df.index[1500]
    same(item.to_pandas(start=start, end=end), df.iloc[1000:1500])
    # ISO strings and integer nanoseconds; a string without a zone is UTC.
    iso = start.tz_convert("UTC").tz_localize(None).isoformat()
    same(item.to_pandas(start=iso, end=end.value), df.iloc[1000:1500])
    same(item.to_pandas(columns=["price", "side"], last=7), df[["price", "side"]].iloc[-7:])
    same(item.to_pandas(start=start, limit=3), df.iloc[1000:1003])
    same(item.to_pandas(start=start, end=end, n_prev=2), df.iloc[998:1500])


@pytest.mark.parametrize(
    "filters, mask",
    [
        ([("price", ">", 100)], lambda d: d.price > 100),
        ([("price", ">=", 100), ("size", "<", 50)], lambda d: (d.price >= 100) & (d["size"] < 50)),
        ([("side", "==", "buy")], lambda d: d.side == "buy"),
        ([("side", "=", "sell"), ("size", "<=", 10)], lambda d: (d.side == "sell") & (d["size"] <= 10)),
        ([("venue", "!=", "XNAS")], lambda d: d.venue != "XNAS"),
        ([("venue", "in", ["O'Hare", "ARCX"])], lambda d: d.venue.isin(["O'Hare", "ARCX"])),
        ([("size", "not in", [1, 2, 3, 4, 5])], lambda d: ~d["size"].isin([1, 2, 3, 4, 5])),
        ([("ts", ">=", T0 + pd.Timedelta("20min")), ("ts", "<", T0 + pd.Timedelta("30min"))],
         lambda d: (d.index >= T0 + pd.Timedelta("20min")) & (d.index < T0 + pd.Timedelta("30min"))),
        ([[("price", "<", 99.5)], [("price", ">", 100.5)]], lambda d: (d.price < 99.5) | (d.price > 100.5)),
        ("price > 100 AND venue = 'O''Hare'", lambda d: (d.price > 100) & (d.venue == "O'Hare")),
    ],
)
def test_filters(trades, filters, mask):
    item, df = trades
    expected = df[mask(df)]
    assert 0 < len(expected) < len(df), "the filter must keep some rows and drop some"
    same(item.to_pandas(filters=filters), expected)


def test_filter_sql_quoting():
    assert to_sql([("a b", "=", "it's"), ('q"x', "in", [1.5, True])]) == \
        """"a b" = 'it''s' AND "q""x" IN (1.5, TRUE)"""
    assert to_sql([("ts", "<", pd.Timestamp("2024-01-02 10:00", tz="America/New_York"))]) == \
        "\"ts\" < '2024-01-02T15:00:00+00:00'"
    assert to_sql([("ts", ">=", pd.Timestamp("2024-01-02 10:00:00.000000001"))]) == \
        "\"ts\" >= '2024-01-02T10:00:00.000000001+00:00'"
    assert to_sql([("x", "==", None), ("y", "!=", None)]) == '"x" IS NULL AND "y" IS NOT NULL'
    assert to_sql([("x", "in", [])]) == "FALSE"
    with pytest.raises(ValueError):
        to_sql([("x", "like", "a%")])


# ---------------------------------------------------------------------------------------
# Writes: modes, upserts, streams, batches


def test_write_is_create_unless_overwrite(coll):
    df = ticks(100, seed=10)
    coll.write("T", df)
    with pytest.raises(flightstore.AlreadyExists, match="T"):
        coll.write("T", ticks(10, seed=11))
    same(coll.item("T").to_pandas(), df)
    other = ticks(30, seed=12)
    coll.write("T", other, overwrite=True)
    same(coll.item("T").to_pandas(), other)


def test_append_creates_and_keeps_every_row_in_order(coll):
    df = ticks(600, seed=13)
    coll.append("T", df.iloc[300:])  # creates the item
    late = df.iloc[:300].sample(frac=1, random_state=1)  # late and shuffled
    coll.append("T", late)
    coll.append("T", df.iloc[:5])  # equal rows again: nothing is dropped
    expected = pd.concat([df, df.iloc[:5]]).sort_index(kind="stable")
    got = coll.item("T").to_pandas()
    assert len(got) == 605
    same(got.sort_values(["ts", "price"]), expected.sort_values(["ts", "price"]))


@pytest.mark.parametrize("keep", ["last", "first"])
def test_upsert(coll, keep):
    df = ticks(400, seed=14)
    coll.write("T", df)
    update = df.iloc[350:].copy()
    update["price"] = update["price"] + 1000
    new = after(df, 20, seed=15)
    receipt = coll.upsert("T", pd.concat([update, new]), keep=keep)
    got = coll.item("T").to_pandas()
    kept = df.iloc[350:] if keep == "first" else update
    same(got, pd.concat([df.iloc[:350], kept, new]))
    assert receipt["rows_received"] == 70


def test_append_stream_is_one_upload(coll):
    df = ticks(3000, seed=16)
    frames = (df.iloc[i:i + 250] for i in range(0, 3000, 250))
    receipt = coll.append_stream("T", frames)
    assert receipt["rows_written"] == 3000
    item = coll.item("T")
    same(item.to_pandas(), df)
    assert [v["version"] for v in item.versions()] == [1]


def test_append_stream_that_fails_writes_nothing(coll):
    df = ticks(1000, seed=17)
    coll.write("T", df.iloc[:100])

    def frames():
        yield df.iloc[100:400]
        yield df.iloc[400:700]
        raise RuntimeError("the feed broke")

    with pytest.raises(RuntimeError, match="the feed broke"):
        coll.append_stream("T", frames())
    same(coll.item("T").to_pandas(), df.iloc[:100])


def test_write_batch_and_read_batch(coll):
    frames = {f"S{k}": ticks(200 + k, seed=20 + k) for k in range(5)}
    receipt = coll.write_batch(frames, metadata={"S0": {"source": "batch"}})
    assert {name: r["rows_written"] for name, r in receipt["items"].items()} == {n: len(f) for n, f in frames.items()}
    assert sorted(coll.list_items()) == sorted(frames)
    assert coll.list_items(source="batch") == ["S0"]
    got = coll.read_batch(list(frames))
    for name, df in frames.items():
        same(got[name], df)
    start = T0 + pd.Timedelta("1min")
    end = T0 + pd.Timedelta("3min")
    window = coll.read_batch(["S1", "S3"], start=start, end=end, columns=["price"])
    for name in ("S1", "S3"):
        df = frames[name]
        same(window[name], df.loc[(df.index >= start) & (df.index < end), ["price"]])
    with pytest.raises(flightstore.AlreadyExists):
        coll.write_batch({"S0": frames["S0"], "NEW": frames["S1"]})
    assert "NEW" not in coll.list_items()


# ---------------------------------------------------------------------------------------
# Metadata, snapshots, versions, SQL


def test_metadata(coll):
    coll.write("T", ticks(20, seed=30), metadata={"source": "feed", "tmp": 1})
    item = coll.item("T")
    assert item.metadata == {"source": "feed", "tmp": 1}
    assert item.update_metadata({"tmp": None, "note": "ok"}) == {"source": "feed", "note": "ok"}
    assert item.metadata == {"source": "feed", "note": "ok"}
    info = item.info
    assert info["rows"] == 20 and info["metadata"] == {"source": "feed", "note": "ok"}


def test_snapshots_and_versions(coll):
    df = ticks(300, seed=31)
    coll.write("A", df.iloc[:100])
    coll.write("B", df.iloc[:50])
    coll.create_snapshot("eod")
    coll.append("A", df.iloc[100:])
    coll.delete_item("B")
    assert coll.list_snapshots() == ["eod"]
    same(coll.item("A", snapshot="eod").to_pandas(), df.iloc[:100])
    same(coll.item("B", snapshot="eod").to_pandas(), df.iloc[:50])
    same(coll.item("A", version=1).to_pandas(start=df.index[10], end=df.index[20]), df.iloc[10:20])
    same(coll.item("A").to_pandas(), df)
    auto = coll.create_snapshot()
    assert sorted(coll.list_snapshots()) == sorted(["eod", auto["snapshot"]])


def test_sql(store, coll):
    df = ticks(1000, seed=32)
    coll.write("AAPL", df)
    table = store.sql(f'SELECT side, count(*) AS n, max(price) AS hi FROM "{coll.name}"."AAPL" GROUP BY side ORDER BY side')
    expected = df.groupby("side", observed=True).agg(n=("price", "size"), hi=("price", "max")).sort_index()
    assert table.column("side").to_pylist() == sorted(expected.index.astype(str))
    assert table.column("n").to_pylist() == [expected.loc[s, "n"] for s in sorted(expected.index.astype(str))]


# ---------------------------------------------------------------------------------------
# asyncio


def test_async_api(server):
    async def main():
        store = await flightstore.aio.connect(server)
        coll = store.collection(unique("ASYNC"))
        df = ticks(1200, seed=40)
        await coll.write("A", df.iloc[:400], metadata={"source": "aio"})
        # Concurrent calls on one connection.
        await asyncio.gather(coll.write("B", df.iloc[400:800]), coll.write("C", df.iloc[800:]))
        assert sorted(await coll.list_items()) == ["A", "B", "C"]

        async def frames():
            for i in range(400, 1200, 200):
                await asyncio.sleep(0)
                yield df.iloc[i:i + 200]

        await coll.append_stream("A", frames())
        item = await coll.item("A")
        same(await item.to_pandas(), df)
        same(await item.to_pandas(filters=[("price", ">", 100)], columns=["price"]),
             df.loc[df.price > 100, ["price"]])
        assert await item.metadata == {"source": "aio"}
        assert (await item.info)["rows"] == 1200
        await coll.upsert("A", df.iloc[-5:].assign(size=0))
        assert (await item.to_pandas(last=5))["size"].tolist() == [0] * 5
        with pytest.raises(flightstore.NotFound):
            await coll.item("missing")
        assert (await store.sql(f'SELECT count(*) AS n FROM "{coll.name}"."B"')).column("n").to_pylist() == [400]
        await store.delete_collection(coll.name)
        await store.close()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------
# Errors


def test_errors_of_an_open_server(store, coll):
    df = ticks(50, seed=50)
    coll.write("T", df)
    with pytest.raises(flightstore.NotFound, match="missing"):
        coll.item("missing")
    with pytest.raises(flightstore.NotFound):
        coll.item("T", snapshot="no-such-snapshot")
    with pytest.raises(flightstore.NotFound):
        coll.item("T", version=99)
    with pytest.raises(flightstore.NotFound):
        store.delete_collection(unique("nope"))
    with pytest.raises(flightstore.NotFound):
        coll.delete_snapshot("nope")
    with pytest.raises(flightstore.InvalidArgument):
        coll.item("T").to_pandas(filters=[("no_such_column", ">", 1)])
    with pytest.raises(flightstore.InvalidArgument):
        coll.write("../escape", df)
    with pytest.raises(flightstore.InvalidArgument):
        coll.append("T", df.assign(price=df["price"].astype("int64")))  # schema mismatch
    with pytest.raises(flightstore.AlreadyExists):
        coll.write("T", df)
    # A different ordering column on an existing item: FAILED_PRECONDITION.
    other = df.reset_index().rename(columns={"ts": "when"}).set_index("when")
    other.index.name = "when"
    with pytest.raises(flightstore.Conflict) as err:
        coll.write("T", other.rename(columns={}), overwrite=True)
    assert err.value.code == "FAILED_PRECONDITION"
    assert all(issubclass(c, flightstore.Error) for c in (
        flightstore.NotFound, flightstore.InvalidArgument, flightstore.AlreadyExists, flightstore.Conflict,
        flightstore.Unauthenticated, flightstore.PermissionDenied, flightstore.ResourceExhausted))


def test_aborted_commits_are_conflicts():
    # A lost commit race (ABORTED) is hard to cause on purpose: check the mapping of the
    # exception pyarrow raises for it.
    import pyarrow.flight as flight
    from flightstore.errors import translate

    exc = flight.FlightServerError(
        "Flight returned aborted error, with message: commit of C/T lost its race 64 times: retry. "
        "gRPC client debug context: UNKNOWN:Error received from peer")
    err = translate(exc)
    assert isinstance(err, flightstore.Conflict) and err.code == "ABORTED"
    assert err.message == "commit of C/T lost its race 64 times: retry"


def test_errors_of_a_server_with_auth(auth_server):
    url, tokens = auth_server["url"], auth_server["tokens"]
    df = ticks(100, seed=51)
    with pytest.raises(flightstore.Unauthenticated):
        flightstore.connect(url).list_collections()
    with pytest.raises(flightstore.Unauthenticated):
        flightstore.connect(url, token="fst_not_a_token").list_collections()
    with pytest.raises(flightstore.Unauthenticated):
        flightstore.connect(url, username="alice", password="wrong")
    writer = flightstore.connect(url, token=tokens["writer"])
    writer.collection("EOD").write("T", df)
    reader = flightstore.connect(url, token=tokens["reader"])
    same(reader.collection("EOD").item("T").to_pandas(), df)
    with pytest.raises(flightstore.PermissionDenied, match="reader"):
        reader.collection("EOD").append("T", after(df, 10, seed=52))
    with pytest.raises(flightstore.PermissionDenied):
        writer.delete_collection("EOD")
    assert reader.sql('SELECT count(*) AS n FROM "EOD"."T"').column("n").to_pylist() == [100]
    alice = flightstore.connect(url, username="alice", password="s3cret")
    alice.collection("EOD").append("T", after(df, 10, seed=53))
    assert alice.collection("EOD").item("T").info["rows"] == 110
    # 1 MiB messages at most on this server: a bigger batch is RESOURCE_EXHAUSTED.
    big = ticks(60_000, seed=54)
    with pytest.raises(flightstore.ResourceExhausted):
        writer.collection("EOD").write("BIG", big)
    assert "BIG" not in reader.collection("EOD").list_items()


# ---------------------------------------------------------------------------------------
# Migration from PyStore


def same_as_pystore(got, expected):
    # PyStore (through dask) reads strings as pandas' StringDtype (pyarrow storage); the
    # pandas metadata in its files says "string" (python storage). Both are strings.
    def strings_as_objects(df):
        return df.astype({c: object for c, t in df.dtypes.items() if isinstance(t, pd.StringDtype)})
    same(strings_as_objects(got), strings_as_objects(expected))


def test_migrate_from_a_pystore_folder(tmp_path, store):
    pystore = pytest.importorskip("pystore")
    pystore.set_path(str(tmp_path))
    ps = pystore.store("mydatastore")
    name = unique("PS")
    pcoll = ps.collection(name)
    aapl = ticks(400, seed=60, tz="UTC")[["price", "size", "venue"]]
    pcoll.write("AAPL", aapl[:100], metadata={"source": "yfinance"})
    pcoll.append("AAPL", aapl[100:300])
    pcoll.create_snapshot("first")
    msft = ticks(80, seed=61, tz="America/New_York")
    pcoll.write("MSFT", msft, metadata={"source": "x", "tier": 2})
    pcoll.create_snapshot("second")
    pcoll.append("AAPL", aapl[300:])
    multitasking = pytest.importorskip("multitasking")
    multitasking.wait_for_tasks()  # PyStore refreshes its item list in a thread
    pcoll = ps.collection(name)
    pcoll.delete_item("MSFT")
    pcoll.write("IBM", ticks(40, seed=62, tz="UTC")[["price"]])

    report = flightstore.migrate.from_pystore(tmp_path / "mydatastore", store)
    assert report[name] == {"items": ["AAPL", "IBM"], "snapshots": ["first", "second"]}

    coll = store.collection(name)
    assert sorted(coll.list_items()) == ["AAPL", "IBM"]
    for item in ("AAPL", "IBM"):
        same_as_pystore(coll.item(item).to_pandas(), pcoll.item(item).to_pandas())
    assert coll.item("AAPL").metadata == {"source": "yfinance"}
    assert coll.list_items(source="yfinance") == ["AAPL"]
    assert sorted(coll.list_snapshots()) == ["first", "second"]
    for snapshot in ("first", "second"):
        same_as_pystore(coll.item("AAPL", snapshot=snapshot).to_pandas(), pcoll.item("AAPL", snapshot=snapshot).to_pandas())
    # (PyStore itself cannot read a snapshot of an item deleted since.)
    same_as_pystore(coll.item("MSFT", snapshot="second").to_pandas(), msft)
    with pytest.raises(flightstore.NotFound):
        coll.item("MSFT", snapshot="first")
