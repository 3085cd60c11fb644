"""Flight SQL through ADBC (`adbc_driver_flightsql`): what a Python user of any Flight SQL
client does against Flightstore, with no Flightstore code on the client side.

Data is seeded with plain pyarrow.flight DoPut (the custom surface) and read back through
SQL; expectations are computed with pyarrow / pandas from the seeded tables. The contract is
DESIGN.md, "Flight SQL": catalog `flightstore`, a schema per collection, a table per item.
"""
import json
import os
import re
import threading
import time
import uuid
import warnings

import adbc_driver_flightsql.dbapi as flightsql
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pytest
from adbc_driver_manager import AdbcStatusCode

import servers

T0 = pd.Timestamp("2024-03-04 14:30:00", tz="UTC")
TS = pa.timestamp("ns", "UTC")
TRADES = pa.schema([("ts", TS), ("price", pa.float64()), ("size", pa.float64()), ("side", pa.int8())])

# No call may hang the suite: every ADBC RPC gets a deadline.
TIMEOUTS = {
    "adbc.flight.sql.rpc.timeout_seconds.query": "120",
    "adbc.flight.sql.rpc.timeout_seconds.fetch": "120",
    "adbc.flight.sql.rpc.timeout_seconds.update": "120",
}


# ---------------------------------------------------------------------------------------
# Data and seeding (the custom Flight surface)


def trades(n, start=T0, seed=0):
    """`n` trades from `start` on: jittered steps (20 ms .. 2 s), random-walk price, int8 side."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(20_000_000, 2_000_000_000, n)
    ts = pd.Timestamp(start).value + np.cumsum(steps) - steps[0]
    price = np.round(100 + np.cumsum(rng.normal(0, 0.05, n)), 2)
    size = rng.integers(1, 500, n).astype("float64")
    side = rng.choice(np.array([-1, 1], dtype=np.int8), n)
    return pa.table(
        [pa.array(ts, TS), pa.array(price), pa.array(size), pa.array(side, pa.int8())],
        schema=TRADES,
    )


def after(table, seed, n, gap_ns=1_000_000_000):
    """`n` more trades starting `gap_ns` after `table`'s last row."""
    last = table.column("ts")[-1].value
    return trades(n, start=pd.Timestamp(last + gap_ns, tz="UTC"), seed=seed)


def put(client, descriptor, table):
    writer, reader = client.do_put(descriptor, table.schema)
    writer.write_table(table)
    writer.done_writing()
    result = reader.read()
    writer.close()  # raises the server's error, if any
    return json.loads(result.to_pybytes())


def append(client, collection, item, table):
    """Path descriptor: append, creating the item on first write."""
    return put(client, flight.FlightDescriptor.for_path(collection, item), table)


def create(client, collection, item, table, dedup_on=("ts",)):
    """WriteRequest mode `create` with de-duplication keys."""
    request = {"collection": collection, "item": item, "mode": "create", "dedup_on": list(dedup_on)}
    return put(client, flight.FlightDescriptor.for_command(json.dumps(request).encode()), table)


def action(client, name, **body):
    (result,) = list(client.do_action(flight.Action(name, json.dumps(body).encode())))
    return json.loads(result.body.to_pybytes())


def read_item(client, collection, item):
    ticket = flight.Ticket(json.dumps({"collection": collection, "item": item}).encode())
    return client.do_get(ticket).read_all()


def unique(prefix):
    # Letters and digits only: usable unquoted in SQL, and no LIKE wildcard (`_`).
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def lit(ts):
    """A SQL timestamp literal for a pandas/pyarrow UTC timestamp (nanosecond precision)."""
    ts = pd.Timestamp(ts)
    return "TIMESTAMP '" + ts.tz_convert("UTC").tz_localize(None).isoformat() + "'"


# ---------------------------------------------------------------------------------------
# ADBC helpers


def connect(uri, db_kwargs=None, autocommit=True):
    kwargs = dict(TIMEOUTS)
    kwargs.update(db_kwargs or {})
    return flightsql.connect(uri, db_kwargs=kwargs, autocommit=autocommit)


@pytest.fixture
def conn(server):
    c = connect(server)
    yield c
    c.close()


@pytest.fixture
def coll():
    return unique("adbc")


def view_types(t):
    """The view types anywhere inside type `t`."""
    if (pa.types.is_string_view(t) or pa.types.is_binary_view(t)
            or pa.types.is_list_view(t) or pa.types.is_large_list_view(t)):
        yield t
    if pa.types.is_dictionary(t):
        yield from view_types(t.value_type)
    for i in range(getattr(t, "num_fields", 0)):
        yield from view_types(t.field(i).type)


def assert_no_view_types(schema):
    found = {f.name: list(view_types(f.type)) for f in schema}
    assert not any(found.values()), f"view types in a result schema: {schema}"


def sql(conn, query, parameters=None):
    with conn.cursor() as cur:
        cur.execute(query, parameters)
        table = cur.fetch_arrow_table()
    assert_no_view_types(table.schema)
    return table


def scalar(conn, query, parameters=None):
    table = sql(conn, query, parameters)
    assert table.shape == (1, 1), f"{query!r} gave {table}"
    return table.column(0)[0].as_py()


def assert_tables_equal(got, expected):
    """Same columns, same types, same values in the same order (nullability and schema
    metadata aside: those are checked by the driver, which compares the announced and the
    streamed schema)."""
    assert got.column_names == expected.column_names
    for name in expected.column_names:
        g, e = got.column(name), expected.column(name)
        assert g.type == e.type, f"column {name}: got {g.type}, expected {e.type}"
        g, e = g.combine_chunks(), e.combine_chunks()
        if not g.equals(e):
            assert len(g) == len(e), f"column {name}: {len(g)} rows, expected {len(e)}"
            diff = pc.not_equal(g, e).to_pylist()
            i = diff.index(True)
            pytest.fail(f"column {name} row {i}: got {g[i]}, expected {e[i]} ({len(g)} rows)")


def plain(schema):
    """A schema without any metadata, field-level included."""
    return pa.schema([pa.field(f.name, f.type, f.nullable) for f in schema])


GRPC_CODES = {
    # gRPC code -> (Go's text for it in ADBC's message, ADBC status code)
    "INVALID_ARGUMENT": ("InvalidArgument", AdbcStatusCode.INVALID_ARGUMENT),
    "NOT_FOUND": ("NotFound", AdbcStatusCode.NOT_FOUND),
    "ALREADY_EXISTS": ("AlreadyExists", AdbcStatusCode.ALREADY_EXISTS),
}


def assert_grpc_error(excinfo, code, *needles):
    """The driver formats a server error as "<server message> (<gRPC code>; <call>)"."""
    text, status = GRPC_CODES[code]
    message = str(excinfo.value)
    assert re.search(rf"\({text};", message), f"expected gRPC {code}, got: {message}"
    assert excinfo.value.status_code == status, message
    for needle in needles:
        assert needle.lower() in message.lower(), f"{needle!r} not in: {message}"
    return message


# ---------------------------------------------------------------------------------------
# Queries


def test_select_all_equals_the_seeded_table(client, conn, coll):
    first = trades(500, seed=1)
    second = after(first, seed=2, n=300)
    assert append(client, coll, "trades", first)["version"] == 1
    assert append(client, coll, "trades", second)["version"] == 2
    expected = pa.concat_tables([first, second])

    got = sql(conn, f"SELECT * FROM {coll}.trades")
    assert [(f.name, f.type) for f in got.schema] == [(f.name, f.type) for f in TRADES]
    assert_tables_equal(got.sort_by("ts"), expected)

    # The scan is ordered on ts: ORDER BY ts gives the stored order.
    assert_tables_equal(sql(conn, f"SELECT * FROM {coll}.trades ORDER BY ts"), expected)

    # The schema a prepared statement announces is the schema streamed.
    with conn.cursor() as cur:
        announced = cur.adbc_execute_schema(f"SELECT ts, price FROM {coll}.trades")
        cur.execute(f"SELECT ts, price FROM {coll}.trades")
        streamed = cur.fetch_arrow_table().schema
    assert plain(announced) == plain(streamed)
    assert_no_view_types(announced)

    # One endpoint per query (Grafana needs exactly one), readable on its own.
    with conn.cursor() as cur:
        partitions, schema = cur.adbc_execute_partitions(f"SELECT * FROM {coll}.trades ORDER BY ts")
        assert len(partitions) == 1
        cur.adbc_read_partition(partitions[0])
        assert_tables_equal(cur.fetch_arrow_table(), expected)


@pytest.mark.parametrize("query", [
    "SELECT 1 AS one",
    "SELECT 'abc' AS s, 1.5 AS f, NULL AS nothing",
    "SELECT ts, price * size AS notional FROM {coll}.trades",
    "SELECT ts, CASE WHEN side = 1 THEN price END AS buy FROM {coll}.trades",
    "SELECT side, count(*) AS n, avg(price) AS p, string_agg(CAST(size AS VARCHAR), ',') AS sizes FROM {coll}.trades GROUP BY side",
    "SELECT ts, lag(price) OVER (ORDER BY ts) AS prev, row_number() OVER (PARTITION BY side ORDER BY ts) AS k FROM {coll}.trades",
    "SELECT date_trunc('minute', ts) AS m, upper(concat('s', side)) AS tag, arrow_typeof(ts) AS t FROM {coll}.trades",
    "SELECT * FROM {coll}.trades WHERE false",
    "SELECT ts, price FROM {coll}.trades ORDER BY price DESC LIMIT 3",
])
def test_the_announced_schema_is_the_streamed_schema(client, conn, coll, query):
    """Nullability included (ADBC rejects a difference), and never a view type."""
    create(client, coll, "trades", trades(200, seed=43))
    query = query.format(coll=coll)
    with conn.cursor() as cur:
        announced = cur.adbc_execute_schema(query)
        cur.execute(query)
        streamed = cur.fetch_arrow_table().schema
    assert_no_view_types(announced)
    assert_no_view_types(streamed)
    assert plain(announced) == plain(streamed)


def test_cte_and_window_function(client, conn, coll):
    table = trades(500, seed=44)
    create(client, coll, "trades", table)
    got = sql(conn, f"""
        WITH r AS (SELECT ts, price / lag(price) OVER (ORDER BY ts) - 1 AS ret FROM {coll}.trades)
        SELECT ts, ret FROM r ORDER BY ts""").to_pandas()
    df = table.to_pandas()
    expected = pd.DataFrame({"ts": df["ts"], "ret": df["price"] / df["price"].shift() - 1})
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.parametrize("credentials", [
    # "user:password" of 10 and 11 bytes: Go sends its base64 unpadded (padded would end
    # in "==" and "="), which the server must accept.
    {"username": "analyst", "password": "pw"},
    {"username": "analyst", "password": "pwd"},
    # A bearer header instead of the handshake: any token, with no auth file.
    {"adbc.flight.sql.authorization_header": "Bearer some-token"},
])
def test_connect_with_credentials(server, client, coll, credentials):
    table = trades(50, seed=3)
    append(client, coll, "trades", table)
    # autocommit left at the DB-API default: the driver may warn that it cannot disable
    # it (the server has no transactions) and must carry on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with connect(server, credentials, autocommit=False) as c:
            assert scalar(c, f"SELECT count(*) FROM {coll}.trades") == 50
            got = sql(c, f"SELECT * FROM {coll}.trades ORDER BY ts")
            c.commit()  # no transaction: nothing to do, and no error
            c.rollback()
    assert_tables_equal(got, table)


def test_session_options_are_declined_cleanly(conn):
    """SetSessionOptions (ADBC: the current db schema) is UNIMPLEMENTED or accepted, never
    INVALID_ARGUMENT."""
    try:
        conn.adbc_connection.set_options(**{"adbc.connection.db_schema": "anything"})
    except flightsql.NotSupportedError as e:
        assert "Unimplemented" in str(e), e
    assert scalar(conn, "SELECT 1") == 1


def test_time_range_queries(client, conn, coll):
    table = trades(3000, seed=4)
    create(client, coll, "trades", table)
    ts = table.column("ts")
    lo_ts, hi_ts = pd.Timestamp(ts[700].value, tz="UTC"), pd.Timestamp(ts[1900].value, tz="UTC")

    got = sql(conn, f"SELECT * FROM {coll}.trades WHERE ts >= {lit(lo_ts)} AND ts < {lit(hi_ts)} ORDER BY ts")
    expected = table.filter(pc.and_(pc.greater_equal(ts, ts[700]), pc.less(ts, ts[1900])))
    assert expected.num_rows == 1200
    assert_tables_equal(got, expected)

    # BETWEEN is inclusive at both ends.
    got = sql(conn, f"SELECT * FROM {coll}.trades WHERE ts BETWEEN {lit(lo_ts)} AND {lit(hi_ts)} ORDER BY ts")
    assert_tables_equal(got, table.slice(700, 1201))

    # Bounds between rows (not on a stored timestamp), plus another predicate.
    a = lo_ts + pd.Timedelta("1ms")
    b = hi_ts - pd.Timedelta("1ms")
    got = sql(conn, f"SELECT ts, price FROM {coll}.trades WHERE ts > {lit(a)} AND ts <= {lit(b)} AND side = 1 ORDER BY ts")
    mask = pc.and_(pc.and_(pc.greater(ts, pa.scalar(a.value, TS)), pc.less_equal(ts, pa.scalar(b.value, TS))),
                   pc.equal(table.column("side"), 1))
    assert_tables_equal(got, table.filter(mask).select(["ts", "price"]))

    # String literals (Grafana's macros write times as strings) and an exact instant.
    got = sql(conn, f"SELECT * FROM {coll}.trades WHERE ts >= '{lo_ts.isoformat()}' AND ts < '{hi_ts.isoformat()}' ORDER BY ts")
    assert_tables_equal(got, expected)
    got = sql(conn, f"SELECT * FROM {coll}.trades WHERE ts >= CAST('{lo_ts.isoformat()}' AS TIMESTAMP) ORDER BY ts")
    assert_tables_equal(got, table.slice(700))
    got = sql(conn, f"SELECT * FROM {coll}.trades WHERE ts = {lit(lo_ts)}")
    assert_tables_equal(got, table.slice(700, 1))

    # A range outside the data is empty, with the right schema.
    got = sql(conn, f"SELECT * FROM {coll}.trades WHERE ts < {lit(T0 - pd.Timedelta('1D'))}")
    assert got.num_rows == 0
    assert [(f.name, f.type) for f in got.schema] == [(f.name, f.type) for f in TRADES]


def test_order_by_desc_limit_and_count(client, conn, coll):
    # Several commits (so several files or log entries), the last one late data in the middle.
    first = trades(600, seed=5)
    second = after(first, 51, 300)
    third = after(second, 52, 100)
    late = trades(50, start=pd.Timestamp(second.column("ts")[10].value + 1, tz="UTC"), seed=53)
    late = late.filter(pc.less(late.column("ts"), second.column("ts")[-1]))
    for part in (first, second, third, late):
        append(client, coll, "trades", part)
    table = pa.concat_tables([first, second, third, late]).sort_by("ts")
    n = table.num_rows

    got = sql(conn, f"SELECT * FROM {coll}.trades ORDER BY ts DESC LIMIT 5")
    assert_tables_equal(got, table.slice(n - 5, 5).take(pa.array([4, 3, 2, 1, 0])))
    got = sql(conn, f"SELECT * FROM {coll}.trades ORDER BY ts LIMIT 5")
    assert_tables_equal(got, table.slice(0, 5))
    got = sql(conn, f"SELECT ts FROM {coll}.trades WHERE ts < {lit(pd.Timestamp(third.column('ts')[0].value, tz='UTC'))} ORDER BY ts DESC LIMIT 3")
    assert got.column("ts").to_pylist() == second.column("ts").slice(second.num_rows - 3).to_pylist()[::-1]
    got = sql(conn, f"SELECT * FROM {coll}.trades WHERE side = 1 LIMIT 10")
    assert got.num_rows == 10 and set(got.column("side").to_pylist()) == {1}
    assert sql(conn, f"SELECT * FROM {coll}.trades LIMIT 7").num_rows == 7

    count = sql(conn, f"SELECT count(*) AS n FROM {coll}.trades")
    assert count.column("n").to_pylist() == [n]
    assert count.schema.field("n").type == pa.int64()
    assert scalar(conn, f"SELECT count(*) FROM {coll}.trades WHERE side = -1") == \
        pc.sum(pc.equal(table.column("side"), -1)).as_py()
    assert scalar(conn, f"SELECT max(price) FROM {coll}.trades") == pc.max(table.column("price")).as_py()


def test_count_star_follows_upserts_deletes_and_appends(client, conn, coll):
    """count(*) with no filter may come from the manifest: it must count what a read returns."""
    table = trades(1000, seed=54)
    create(client, coll, "trades", table)
    # Upsert 100 rows: 50 on stored instants (replaced), 50 new after the end.
    replaced = table.slice(400, 50).set_column(1, "price", pa.array(np.full(50, 1.0)))
    new = after(table, 55, 50)
    request = {"collection": coll, "item": "trades", "mode": "upsert", "dedup_on": ["ts"]}
    put(client, flight.FlightDescriptor.for_command(json.dumps(request).encode()), pa.concat_tables([replaced, new]))
    expected = pa.concat_tables([table.slice(0, 400), replaced, table.slice(450), new])
    assert scalar(conn, f"SELECT count(*) FROM {coll}.trades") == 1050
    assert_tables_equal(sql(conn, f"SELECT * FROM {coll}.trades ORDER BY ts"), expected)

    # A duplicate-carrying append to an item with dedup_on keeps one row per ts.
    append(client, coll, "trades", new.slice(0, 10))
    assert scalar(conn, f"SELECT count(*) FROM {coll}.trades") == \
        read_item(client, coll, "trades").num_rows

    start, end = table.column("ts")[100].value, table.column("ts")[200].value
    assert action(client, "delete_range", collection=coll, item="trades", start=start, end=end)["rows_deleted"] == 100
    rows = read_item(client, coll, "trades").num_rows
    assert scalar(conn, f"SELECT count(*) FROM {coll}.trades") == rows

    more = after(new, 56, 30)
    append(client, coll, "trades", more)  # through the write-ahead log
    assert scalar(conn, f"SELECT count(*) FROM {coll}.trades") == rows + 30
    assert scalar(conn, f"SELECT count(*) AS n FROM at_version('{coll}', 'trades', 1)") == 1000


def physical_plan(conn, query):
    plan = sql(conn, "EXPLAIN " + query)
    rows = {r["plan_type"]: r["plan"] for r in plan.to_pylist()}
    return rows["physical_plan"]


def test_explain_shows_the_range_and_the_files_kept(client, conn, coll):
    table = trades(3000, seed=46)
    for k in range(3):
        append(client, coll, "trades", table.slice(1000 * k, 1000))
    lo = pd.Timestamp(table.column("ts")[1200].value, tz="UTC")
    hi = pd.Timestamp(table.column("ts")[1500].value, tz="UTC")
    for where in (f"ts >= {lit(lo)} AND ts < {lit(hi)}", f"ts BETWEEN {lit(lo)} AND {lit(hi)}"):
        plan = physical_plan(conn, f"SELECT * FROM {coll}.trades WHERE {where}")
        assert str(lo.value) in plan or lo.isoformat() in plan, f"no range start in:\n{plan}"
        m = re.search(r"files\D{0,3}(\d+)\s*/\s*(\d+)", plan)
        assert m, f"no count of files kept in:\n{plan}"
        kept, total = int(m.group(1)), int(m.group(2))
        assert kept <= total
        if total >= 3:  # not compacted yet: the range is inside the middle write
            assert kept < total, plan


def test_order_by_ts_needs_no_sort(client, conn, coll):
    """The scan declares its output ordered on ts: ORDER BY ts costs no sort."""
    table = trades(3000, seed=47)
    for k in range(3):
        append(client, coll, "trades", table.slice(1000 * k, 1000))
    lo = pd.Timestamp(table.column("ts")[1200].value, tz="UTC")
    for query in (f"SELECT * FROM {coll}.trades ORDER BY ts",
                  f"SELECT ts, price FROM {coll}.trades WHERE ts >= {lit(lo)} ORDER BY ts",
                  f"SELECT ts FROM {coll}.trades ORDER BY ts LIMIT 3"):
        plan = physical_plan(conn, query)
        assert "SortExec" not in plan.replace("SortPreservingMergeExec", ""), \
            f"a sort in the plan of {query!r}:\n{plan}"
    assert_tables_equal(sql(conn, f"SELECT * FROM {coll}.trades ORDER BY ts"), table)


def test_cast_to_varchar_is_utf8_not_a_view_type(client, conn, coll):
    table = trades(20, seed=6)
    create(client, coll, "trades", table)
    got = sql(conn, f"SELECT ts, CAST(price AS VARCHAR) AS p, 'x' || CAST(side AS VARCHAR) AS s FROM {coll}.trades ORDER BY ts")
    assert got.schema.field("p").type == pa.string()
    assert got.schema.field("s").type == pa.string()
    assert [float(p) for p in got.column("p").to_pylist()] == table.column("price").to_pylist()
    assert got.column("s").to_pylist() == [f"x{s}" for s in table.column("side").to_pylist()]
    # Also what the prepared statement announces.
    with conn.cursor() as cur:
        schema = cur.adbc_execute_schema(f"SELECT CAST(price AS VARCHAR) AS p FROM {coll}.trades")
    assert schema.field("p").type == pa.string()


def test_string_and_dictionary_columns(client, conn, coll):
    """Strings stored as utf8 and as a dictionary (a pandas categorical) come back as utf8
    or a dictionary of utf8, never a view type; they filter, group and bind as parameters."""
    base = trades(600, seed=48)
    rng = np.random.default_rng(49)
    venues = rng.choice(["XNAS", "XNYS", "ARCX"], base.num_rows)
    table = base.append_column("venue", pa.array(venues)).append_column(
        "cond", pa.array(rng.choice(["@", "F", "T"], base.num_rows)).dictionary_encode())
    create(client, coll, "trades", table)

    got = sql(conn, f"SELECT * FROM {coll}.trades ORDER BY ts")
    assert got.schema.field("venue").type == pa.string()
    cond = got.schema.field("cond").type
    assert cond == pa.string() or (pa.types.is_dictionary(cond) and cond.value_type == pa.string()), cond
    assert got.column("venue").to_pylist() == venues.tolist()
    assert pc.cast(got.column("cond"), pa.string()).to_pylist() == pc.cast(table.column("cond"), pa.string()).to_pylist()

    got = sql(conn, f"SELECT venue, count(*) AS n, sum(size) AS volume FROM {coll}.trades GROUP BY venue ORDER BY venue")
    df = table.select(["venue", "size"]).to_pandas()
    expected = df.groupby("venue").agg(n=("size", "size"), volume=("size", "sum")).reset_index()
    expected["n"] = expected["n"].astype("int64")
    pd.testing.assert_frame_equal(got.to_pandas(), expected)

    n = int((venues == "XNYS").sum())
    assert scalar(conn, f"SELECT count(*) FROM {coll}.trades WHERE venue = $1", ("XNYS",)) == n
    assert scalar(conn, f"SELECT count(*) FROM {coll}.trades WHERE cond = 'F'") == \
        int((pc.cast(table.column("cond"), pa.string()).to_numpy(zero_copy_only=False) == "F").sum())


def test_identifiers_keep_their_case_and_quoted_names_with_slashes(client, conn):
    upper = unique("NYSE")
    table = trades(10, seed=7)
    append(client, upper, "IBM", table)
    append(client, upper, "berlin/1D", table.slice(0, 4))
    assert scalar(conn, f"SELECT count(*) FROM {upper}.IBM") == 10
    assert scalar(conn, f'SELECT count(*) FROM "{upper}"."IBM"') == 10
    assert scalar(conn, f'SELECT count(*) FROM {upper}."berlin/1D"') == 4


# ---------------------------------------------------------------------------------------
# Parameters (prepared statements with bound parameters, stateless handles)


def test_parameters_dollar_and_question_mark(client, conn, coll):
    table = trades(2000, seed=8)
    create(client, coll, "trades", table)
    prices = table.column("price")
    x = float(np.quantile(prices.to_numpy(), 0.7))

    def above(v):
        return table.filter(pc.greater(prices, v)).select(["ts", "price"])

    with conn.cursor() as cur:
        query = f"SELECT ts, price FROM {coll}.trades WHERE price > $1 ORDER BY ts"
        cur.execute(query, parameters=(x,))
        assert_tables_equal(cur.fetch_arrow_table(), above(x))
        # The same prepared statement with another value: the handle carries the new one.
        y = float(np.quantile(prices.to_numpy(), 0.2))
        cur.execute(query, parameters=(y,))
        assert_tables_equal(cur.fetch_arrow_table(), above(y))

        cur.execute(f"SELECT ts, price FROM {coll}.trades WHERE price > ? ORDER BY ts", parameters=(x,))
        assert_tables_equal(cur.fetch_arrow_table(), above(x))

        # Two parameters of different types.
        cur.execute(f"SELECT count(*) AS n FROM {coll}.trades WHERE price > $1 AND side = $2", parameters=(x, -1))
        expected = pc.sum(pc.and_(pc.greater(prices, x), pc.equal(table.column("side"), -1))).as_py()
        assert cur.fetch_arrow_table().column("n").to_pylist() == [expected]

        # A timestamp parameter (a Python datetime: microseconds, UTC).
        t = table.column("ts")[1500].value
        t = pd.Timestamp(t - t % 1000, tz="UTC").to_pydatetime()
        cur.execute(f"SELECT count(*) AS n FROM {coll}.trades WHERE ts >= $1", parameters=(t,))
        assert cur.fetch_arrow_table().column("n").to_pylist() == [500]


# ---------------------------------------------------------------------------------------
# Catalog


def test_catalog_objects_table_schema_types_and_info(client, conn, coll):
    table = trades(30, seed=9)
    create(client, coll, "trades", table)
    append(client, coll, "quotes", table.select(["ts", "price"]))

    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    catalogs = {c["catalog_name"]: c for c in objects}
    assert list(catalogs) == ["flightstore"]
    schemas = {s["db_schema_name"]: s for s in catalogs["flightstore"]["catalog_db_schemas"]}
    assert coll in schemas
    tables = {t["table_name"]: t for t in schemas[coll]["db_schema_tables"]}
    assert set(tables) == {"trades", "quotes"}
    assert tables["trades"]["table_type"] == "BASE TABLE"
    columns = [(c["column_name"], c["ordinal_position"]) for c in tables["trades"]["table_columns"]]
    assert columns == [("ts", 1), ("price", 2), ("size", 3), ("side", 4)]
    assert [c["column_name"] for c in tables["quotes"]["table_columns"]] == ["ts", "price"]

    # Filtered: one schema, one table.
    objects = conn.adbc_get_objects(depth="tables", db_schema_filter=coll, table_name_filter="trades").read_all().to_pylist()
    (cat,) = objects
    (sch,) = cat["catalog_db_schemas"]
    assert sch["db_schema_name"] == coll
    assert [t["table_name"] for t in sch["db_schema_tables"]] == ["trades"]
    objects = conn.adbc_get_objects(depth="db_schemas", db_schema_filter=coll).read_all().to_pylist()
    assert [s["db_schema_name"] for s in objects[0]["catalog_db_schemas"]] == [coll]

    # The table's schema is the item's schema (as the custom surface reports it).
    schema = conn.adbc_get_table_schema("trades", db_schema_filter=coll)
    assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in TRADES]
    item_schema = client.get_schema(flight.FlightDescriptor.for_path(coll, "trades")).schema
    assert plain(schema) == plain(item_schema)
    schema = conn.adbc_get_table_schema("trades", catalog_filter="flightstore", db_schema_filter=coll)
    assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in TRADES]

    assert "BASE TABLE" in conn.adbc_get_table_types()

    info = conn.adbc_get_info()
    assert info["vendor_name"] == "Flightstore"
    assert isinstance(info["vendor_version"], str) and info["vendor_version"]
    assert action(client, "health")["version"] in info["vendor_version"]
    assert info.get("vendor_arrow_version")


# ---------------------------------------------------------------------------------------
# Bulk ingest (CommandStatementIngest)


def test_ingest_create_and_create_again_is_already_exists(client, conn, coll):
    table = trades(400, seed=10)
    with conn.cursor() as cur:
        # The collection does not exist yet: ingest creates it.
        assert cur.adbc_ingest("trades", table, mode="create", db_schema_name=coll) == 400
        with pytest.raises(flightsql.ProgrammingError) as excinfo:
            cur.adbc_ingest("trades", after(table, 11, 10), mode="create", db_schema_name=coll)
    assert_grpc_error(excinfo, "ALREADY_EXISTS", "trades")
    assert_tables_equal(sql(conn, f"SELECT * FROM {coll}.trades ORDER BY ts"), table)
    assert_tables_equal(read_item(client, coll, "trades"), table)


def test_ingest_append(client, conn, coll):
    first = trades(300, seed=12)
    create(client, coll, "trades", first)
    more = after(first, 13, 200)
    with conn.cursor() as cur:
        assert cur.adbc_ingest("trades", more, mode="append", db_schema_name=coll) == 200
    assert_tables_equal(sql(conn, f"SELECT * FROM {coll}.trades ORDER BY ts"), pa.concat_tables([first, more]))


def test_ingest_append_creates_a_missing_item(conn, coll):
    # DESIGN: `append` -> `append` (creating the item), though ADBC sends if_not_exist=FAIL.
    table = trades(100, seed=14)
    with conn.cursor() as cur:
        assert cur.adbc_ingest("fresh", table, mode="append", db_schema_name=coll) == 100
    assert_tables_equal(sql(conn, f"SELECT * FROM {coll}.fresh ORDER BY ts"), table)


def test_ingest_replace_overwrites(client, conn, coll):
    old = trades(500, seed=15)
    create(client, coll, "trades", old)
    new = trades(120, start=T0 + pd.Timedelta("2h"), seed=16)
    with conn.cursor() as cur:
        assert cur.adbc_ingest("trades", new, mode="replace", db_schema_name=coll) == 120
    assert_tables_equal(sql(conn, f"SELECT * FROM {coll}.trades ORDER BY ts"), new)
    with conn.cursor() as cur:
        # replace on a missing item creates it
        assert cur.adbc_ingest("other", old, mode="replace", db_schema_name=coll) == 500
    assert scalar(conn, f"SELECT count(*) FROM {coll}.other") == 500


def test_ingest_create_append(conn, coll):
    first = trades(250, seed=17)
    more = after(first, 18, 50)
    with conn.cursor() as cur:
        assert cur.adbc_ingest("trades", first, mode="create_append", db_schema_name=coll) == 250
        assert cur.adbc_ingest("trades", more, mode="create_append", db_schema_name=coll) == 50
    assert_tables_equal(sql(conn, f"SELECT * FROM {coll}.trades ORDER BY ts"), pa.concat_tables([first, more]))


def test_ingest_streams_many_batches(conn, coll):
    table = trades(200_000, seed=19)
    reader = pa.RecordBatchReader.from_batches(TRADES, table.to_batches(max_chunksize=10_000))
    with conn.cursor() as cur:
        assert cur.adbc_ingest("trades", reader, mode="create", db_schema_name=coll) == 200_000
    assert scalar(conn, f"SELECT count(*) FROM {coll}.trades") == 200_000
    got = sql(conn, f"SELECT min(ts) AS a, max(ts) AS b, sum(size) AS s FROM {coll}.trades")
    assert got.column("a")[0] == table.column("ts")[0]
    assert got.column("b")[0] == table.column("ts")[-1]
    assert got.column("s")[0].as_py() == pc.sum(table.column("size")).as_py()


def test_ingest_temporary_or_another_catalog_is_invalid_argument(conn, coll):
    table = trades(10, seed=20)
    with conn.cursor() as cur:
        with pytest.raises(flightsql.ProgrammingError) as excinfo:
            cur.adbc_ingest("tmp", table, mode="create", db_schema_name=coll, temporary=True)
        assert_grpc_error(excinfo, "INVALID_ARGUMENT")
        with pytest.raises(flightsql.ProgrammingError) as excinfo:
            cur.adbc_ingest("x", table, mode="create", catalog_name="elsewhere", db_schema_name=coll)
        assert_grpc_error(excinfo, "INVALID_ARGUMENT")
        # The one catalog is accepted by name.
        assert cur.adbc_ingest("x", table, mode="create", catalog_name="flightstore", db_schema_name=coll) == 10
    assert scalar(conn, f"SELECT count(*) FROM {coll}.x") == 10


# ---------------------------------------------------------------------------------------
# DML: INSERT and DELETE


def affected(cur, table):
    """The rows a DML statement reports: a one-value result (DataFusion's `count`) or the
    cursor's rowcount, whichever the server gives."""
    if table.shape == (1, 1):
        return table.column(0)[0].as_py()
    return cur.rowcount


def values_row(row):
    return f"({lit(pd.Timestamp(row['ts']))}, {row['price']!r}, {row['size']!r}, {row['side']})"


def test_insert_values(client, conn, coll):
    table = trades(200, seed=21)
    create(client, coll, "trades", table)
    # Three rows after the end and one late row inside the stored range.
    tail = after(table, 22, 3)
    late_ts = pd.Timestamp(table.column("ts")[100].value + 1, tz="UTC")  # 1 ns after row 100
    late = pa.table([pa.array([late_ts.value], TS), pa.array([99.5]), pa.array([7.0]), pa.array([1], pa.int8())], schema=TRADES)
    rows = pa.concat_tables([tail, late]).to_pylist()
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {coll}.trades VALUES " + ", ".join(values_row(r) for r in rows))
        assert affected(cur, cur.fetch_arrow_table()) == 4
    expected = pa.concat_tables([table, tail, late]).sort_by("ts")
    assert_tables_equal(sql(conn, f"SELECT * FROM {coll}.trades ORDER BY ts"), expected)
    assert_tables_equal(read_item(client, coll, "trades"), expected)


def test_insert_select_from_another_item(client, conn, coll):
    source = trades(1000, seed=23)
    create(client, coll, "source", source)
    target = trades(10, start=T0 - pd.Timedelta("1h"), seed=24)
    create(client, coll, "target", target)
    lo = pd.Timestamp(source.column("ts")[200].value, tz="UTC")
    hi = pd.Timestamp(source.column("ts")[500].value, tz="UTC")
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {coll}.target SELECT * FROM {coll}.source WHERE ts >= {lit(lo)} AND ts < {lit(hi)}")
        assert affected(cur, cur.fetch_arrow_table()) == 300
    expected = pa.concat_tables([target, source.slice(200, 300)])
    assert_tables_equal(sql(conn, f"SELECT * FROM {coll}.target ORDER BY ts"), expected)


def test_delete_a_time_range(client, conn, coll):
    table = trades(1000, seed=25)
    create(client, coll, "trades", table)
    lo = pd.Timestamp(table.column("ts")[300].value, tz="UTC")
    hi = pd.Timestamp(table.column("ts")[450].value, tz="UTC")
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {coll}.trades WHERE ts >= {lit(lo)} AND ts < {lit(hi)}")
        assert affected(cur, cur.fetch_arrow_table()) == 150
    expected = pa.concat_tables([table.slice(0, 300), table.slice(450)])
    assert_tables_equal(sql(conn, f"SELECT * FROM {coll}.trades ORDER BY ts"), expected)
    assert scalar(conn, f"SELECT count(*) FROM {coll}.trades WHERE ts >= {lit(lo)} AND ts < {lit(hi)}") == 0


def test_dml_through_execute_update(client, conn, coll):
    """executemany(sql, None): CreatePreparedStatement then DoPut(CommandPreparedStatementUpdate)."""
    table = trades(100, seed=26)
    create(client, coll, "trades", table)
    tail = after(table, 27, 2)
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {coll}.trades VALUES " + ", ".join(values_row(r) for r in tail.to_pylist()), None)
        assert cur.rowcount == 2
        lo = pd.Timestamp(table.column("ts")[10].value, tz="UTC")
        hi = pd.Timestamp(table.column("ts")[20].value, tz="UTC")
        cur.executemany(f"DELETE FROM {coll}.trades WHERE ts BETWEEN {lit(lo)} AND {lit(hi)}", None)
        assert cur.rowcount == 11
    expected = pa.concat_tables([table.slice(0, 10), table.slice(21), tail])
    assert_tables_equal(sql(conn, f"SELECT * FROM {coll}.trades ORDER BY ts"), expected)


def test_a_prepared_dml_statement_announces_no_columns_and_does_not_run(client, conn, coll):
    table = trades(50, seed=28)
    create(client, coll, "trades", table)
    row = values_row(after(table, 29, 1).to_pylist()[0])
    with conn.cursor() as cur:
        try:
            schema = cur.adbc_execute_schema(f"INSERT INTO {coll}.trades VALUES {row}")
        except flightsql.NotSupportedError:
            schema = pa.schema([])  # an empty dataset_schema: "did not provide schema"
    assert len(schema) == 0, schema
    assert scalar(conn, f"SELECT count(*) FROM {coll}.trades") == 50


# ---------------------------------------------------------------------------------------
# Errors


def test_syntax_error_is_invalid_argument_with_datafusion_message(client, conn, coll):
    create(client, coll, "trades", trades(5, seed=30))
    with pytest.raises(flightsql.ProgrammingError) as excinfo:
        sql(conn, f"SELEC * FROM {coll}.trades")
    message = assert_grpc_error(excinfo, "INVALID_ARGUMENT")
    # sqlparser's text, as DataFusion reports it.
    assert re.search(r"Expected.*an SQL statement.*SELEC", message), message
    with pytest.raises(flightsql.ProgrammingError) as excinfo:
        sql(conn, f"SELECT nosuchcolumn FROM {coll}.trades")
    assert_grpc_error(excinfo, "INVALID_ARGUMENT", "nosuchcolumn")


def test_unknown_table_or_collection_is_not_found(client, conn, coll):
    create(client, coll, "trades", trades(5, seed=31))
    with pytest.raises(flightsql.ProgrammingError) as excinfo:
        sql(conn, f"SELECT * FROM {coll}.nosuchitem")
    assert_grpc_error(excinfo, "NOT_FOUND", "nosuchitem")
    missing = unique("nocoll")
    with pytest.raises(flightsql.ProgrammingError) as excinfo:
        sql(conn, f"SELECT * FROM {missing}.trades")
    assert_grpc_error(excinfo, "NOT_FOUND", missing)


def test_unqualified_table_name_names_the_collections_holding_it(client, conn):
    item = unique("shared")
    c1, c2 = unique("one"), unique("two")
    append(client, c1, item, trades(5, seed=32))
    append(client, c2, item, trades(5, seed=33))
    with pytest.raises(flightsql.ProgrammingError) as excinfo:
        sql(conn, f"SELECT * FROM {item}")
    message = str(excinfo.value)
    assert c1 in message and c2 in message, message


@pytest.mark.parametrize("statement", [
    "UPDATE {coll}.trades SET price = 1",
    "CREATE TABLE {coll}.newtable (ts TIMESTAMP, price DOUBLE)",
    "DROP TABLE {coll}.trades",
    "DELETE FROM {coll}.trades WHERE price > 0",
])
def test_other_dml_and_ddl_is_invalid_argument_saying_what_is_supported(client, conn, coll, statement):
    table = trades(20, seed=34)
    create(client, coll, "trades", table)
    with pytest.raises(flightsql.ProgrammingError) as excinfo:
        sql(conn, statement.format(coll=coll))
    if statement.startswith("DELETE"):
        # What DELETE supports: a range of the ordering column, which the message names.
        message = assert_grpc_error(excinfo, "INVALID_ARGUMENT")
        assert re.search(r"\bts\b", message) and re.search("range|ordering", message, re.I), message
    else:
        assert_grpc_error(excinfo, "INVALID_ARGUMENT", "INSERT", "DELETE")
    # Nothing changed.
    assert_tables_equal(read_item(client, coll, "trades"), table)
    assert action(client, "list_items", collection=coll) == ["trades"]


# ---------------------------------------------------------------------------------------
# Time travel


def test_at_version_and_at_snapshot(client, conn, coll):
    first = trades(400, seed=35)
    second = after(first, 36, 250)
    third = after(second, 37, 100)
    assert append(client, coll, "trades", first)["version"] == 1
    assert append(client, coll, "trades", second)["version"] == 2

    assert scalar(conn, f"SELECT count(*) FROM at_version('{coll}', 'trades', 1)") == 400
    assert scalar(conn, f"SELECT count(*) FROM at_version('{coll}', 'trades', 2)") == 650
    assert_tables_equal(sql(conn, f"SELECT * FROM at_version('{coll}', 'trades', 1) ORDER BY ts"), first)

    assert action(client, "create_snapshot", collection=coll, snapshot="snap")["snapshot"] == "snap"
    append(client, coll, "trades", third)
    assert scalar(conn, f"SELECT count(*) FROM {coll}.trades") == 750
    assert scalar(conn, f"SELECT count(*) FROM at_snapshot('{coll}', 'trades', 'snap')") == 650
    assert_tables_equal(sql(conn, f"SELECT * FROM at_snapshot('{coll}', 'trades', 'snap') ORDER BY ts"),
                        pa.concat_tables([first, second]))
    # A range on a pinned version.
    lo = pd.Timestamp(first.column("ts")[100].value, tz="UTC")
    assert scalar(conn, f"SELECT count(*) FROM at_version('{coll}', 'trades', 1) WHERE ts >= {lit(lo)}") == 300

    with pytest.raises(flightsql.ProgrammingError) as excinfo:
        sql(conn, f"SELECT count(*) FROM at_version('{coll}', 'trades', 99)")
    assert_grpc_error(excinfo, "NOT_FOUND")
    with pytest.raises(flightsql.ProgrammingError) as excinfo:
        sql(conn, f"SELECT count(*) FROM at_snapshot('{coll}', 'trades', 'nosuchsnap')")
    assert_grpc_error(excinfo, "NOT_FOUND", "nosuchsnap")


def test_one_query_sees_one_version_of_an_item_while_writes_continue(server, conn, coll):
    """Two scans of one item in one query read the same version, even with appends landing
    meanwhile (each append is a new version)."""
    table = trades(2000, seed=57)
    writer = flight.connect(server)
    append(writer, coll, "trades", table)
    stop = threading.Event()
    errors = []

    def keep_appending():
        last, k = table, 0
        try:
            while not stop.is_set() and k < 300:
                last = after(last, 1000 + k, 20)
                append(writer, coll, "trades", last)
                k += 1
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    thread = threading.Thread(target=keep_appending, daemon=True)
    thread.start()
    try:
        differences = []
        for _ in range(30):
            got = sql(conn, f"""
                SELECT (SELECT count(*) FROM {coll}.trades) - (SELECT count(*) FROM {coll}.trades WHERE price > -1e9) AS d1,
                       (SELECT max(ts) FROM {coll}.trades) = (SELECT max(ts) FROM {coll}.trades WHERE size >= 0) AS same_end,
                       (SELECT count(*) FROM {coll}.trades) AS n""")
            differences.append(got.to_pylist()[0])
    finally:
        stop.set()
        thread.join(timeout=60)
        writer.close()
    assert not errors, errors
    assert len({d["n"] for d in differences}) > 1, "no write landed while the queries ran"
    assert all(d["d1"] == 0 and d["same_end"] for d in differences), differences


# ---------------------------------------------------------------------------------------
# Analytics


def test_join_two_items_of_two_collections(client, conn, coll):
    t = trades(800, seed=38)
    create(client, coll, "trades", t)
    # Quotes at every third trade's instant.
    rng = np.random.default_rng(39)
    q_ts = t.column("ts").take(pa.array(np.arange(0, 800, 3)))
    bid = np.round(t.column("price").take(pa.array(np.arange(0, 800, 3))).to_numpy() - rng.uniform(0.01, 0.05, len(q_ts)), 2)
    quotes = pa.table({"ts": q_ts, "bid": pa.array(bid)})
    other = unique("quotes")  # another collection
    create(client, other, "quotes", quotes)

    got = sql(conn, f"""
        SELECT t.ts, t.price, q.bid, t.price - q.bid AS spread
        FROM {coll}.trades t JOIN {other}.quotes q ON t.ts = q.ts
        ORDER BY t.ts""").to_pandas()
    df = t.to_pandas().merge(quotes.to_pandas(), on="ts")
    df["spread"] = df["price"] - df["bid"]
    expected = df[["ts", "price", "bid", "spread"]].sort_values("ts").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)


def test_one_minute_ohlcv(client, conn, coll):
    table = trades(3000, seed=40)  # ~50 minutes
    create(client, coll, "trades", table)
    got = sql(conn, f"""
        SELECT date_bin(INTERVAL '1 minute', ts) AS minute,
               first_value(price ORDER BY ts) AS open,
               max(price) AS high,
               min(price) AS low,
               last_value(price ORDER BY ts) AS close,
               sum(size) AS volume,
               count(*) AS trades
        FROM {coll}.trades
        GROUP BY 1
        ORDER BY 1""")
    assert got.schema.field("minute").type == TS

    df = table.to_pandas()
    expected = (
        df.groupby(df["ts"].dt.floor("1min"))
        .agg(open=("price", "first"), high=("price", "max"), low=("price", "min"),
             close=("price", "last"), volume=("size", "sum"), trades=("price", "size"))
        .rename_axis("minute")
        .reset_index()
    )
    expected["trades"] = expected["trades"].astype("int64")
    assert len(expected) > 40
    pd.testing.assert_frame_equal(got.to_pandas(), expected)


# ---------------------------------------------------------------------------------------
# Cancellation: a query the client abandons stops at once; the server stays responsive.


def start_server(*flags):
    """`flightstore serve` on a free port with extra flags; returns (process, uri)."""
    proc, address = servers.start_server(*flags)
    return proc, f"grpc://{address}"


@pytest.fixture(scope="module")
def own_server():
    """A server of its own, so its CPU use can be watched (yields (uri, pid))."""
    proc, uri = start_server()
    yield uri, proc.pid
    servers.stop_server(proc)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat; fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_in(pid, seconds):
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - before


def wait_until_idle(pid, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cpu_in(pid, 1.0) < 0.1:
            return
    pytest.fail("the server did not go idle before the test")


def assert_responsive(uri, coll, rows):
    start = time.monotonic()
    with connect(uri, {"adbc.flight.sql.rpc.timeout_seconds.query": "10",
                       "adbc.flight.sql.rpc.timeout_seconds.fetch": "10"}) as c:
        assert scalar(c, f"SELECT count(*) FROM {coll}.big") == rows
        assert scalar(c, "SELECT 1") == 1
    elapsed = time.monotonic() - start
    assert elapsed < 5, f"a simple query after the cancel took {elapsed:.1f} s"


@pytest.mark.parametrize("query", [
    "SELECT a.ts, a.price, b.price AS other FROM {coll}.big a CROSS JOIN {coll}.big b",
    "SELECT * FROM {coll}.big",
])
def test_an_abandoned_query_stops_and_the_server_stays_responsive(own_server, query):
    uri, pid = own_server
    coll = unique("cancel")
    rows = 300_000
    c = flight.connect(uri)
    table = trades(rows, seed=41)
    append(c, coll, "big", table)
    c.close()
    wait_until_idle(pid)

    conn = connect(uri)
    cur = conn.cursor()
    cur.execute(query.format(coll=coll))
    reader = cur.fetch_record_batch()
    batch = reader.read_next_batch()
    assert batch.num_rows > 0
    start = time.monotonic()
    cur.close()
    conn.close()
    assert time.monotonic() - start < 10, "closing an abandoned query hung"

    assert_responsive(uri, coll, rows)
    # The abandoned query must not keep working in the background.
    time.sleep(1)
    used = cpu_in(pid, 3.0)
    assert used < 0.5, f"the server used {used:.2f} s of CPU in the 3 s after the client left"


def test_a_cancelled_query_stops_and_the_server_stays_responsive(own_server):
    """adbc_cancel while the server computes (a count over a three-way cross join: minutes
    of work, with the first batch only at the end)."""
    uri, pid = own_server
    coll = unique("cancel")
    rows = 3000
    c = flight.connect(uri)
    append(c, coll, "big", trades(rows, seed=42))
    c.close()
    wait_until_idle(pid)

    conn = connect(uri)
    cur = conn.cursor()
    outcome = {}

    def run():
        try:
            cur.execute(f"SELECT count(*) FROM {coll}.big a CROSS JOIN {coll}.big b CROSS JOIN {coll}.big c "
                        "WHERE a.price + b.price > c.price")
            outcome["result"] = cur.fetch_arrow_table()
        except Exception as e:  # noqa: BLE001 - any error is the cancel's outcome
            outcome["error"] = e

    worker = threading.Thread(target=run, daemon=True)
    try:
        worker.start()
        time.sleep(3)
        assert worker.is_alive(), f"the query finished before it could be cancelled: {outcome}"
        busy = cpu_in(pid, 1.0)
        cur.adbc_cancel()
        worker.join(timeout=15)
        assert not worker.is_alive(), "the cancelled query did not return"
        assert "error" in outcome, outcome
        assert isinstance(outcome["error"], flightsql.OperationalError), outcome
        assert outcome["error"].status_code == AdbcStatusCode.CANCELLED, outcome
    finally:
        if not worker.is_alive():
            cur.close()
            conn.close()

    assert_responsive(uri, coll, rows)
    time.sleep(1)
    used = cpu_in(pid, 3.0)
    assert used < 0.5, (f"the server used {used:.2f} s of CPU in the 3 s after the cancel "
                        f"({busy:.2f} s in 1 s while the query ran)")


# ---------------------------------------------------------------------------------------
# Bounded query memory


@pytest.fixture(scope="module")
def small_memory_server():
    """A server with --sql-memory-mb 8 and a 300 000-row item; yields (process, uri, coll, table)."""
    proc, uri = start_server("--sql-memory-mb", "8")
    coll = unique("mem")
    table = trades(300_000, seed=45)
    c = flight.connect(uri)
    append(c, coll, "big", table)
    c.close()
    yield proc, uri, coll, table
    servers.stop_server(proc)


@pytest.mark.parametrize("kind,query", [
    # ~30 MB of padding to sort: more than the budget.
    ("sort", "SELECT ts, price, repeat('x', 100) AS pad FROM {coll}.big ORDER BY price, ts"),
    # A hash join whose build side is larger than the budget.
    ("join", "SELECT a.ts, count(*) AS n FROM {coll}.big a JOIN {coll}.big b ON a.price = b.price GROUP BY a.ts"),
])
def test_a_query_over_the_memory_budget_spills_or_fails_cleanly(small_memory_server, kind, query):
    """--sql-memory-mb: beyond it a query spills, or fails with RESOURCE_EXHAUSTED; the
    server stays up either way."""
    proc, uri, coll, table = small_memory_server
    with connect(uri) as conn:
        try:
            got = sql(conn, query.format(coll=coll))
        except flightsql.Error as e:
            assert "(ResourceExhausted;" in str(e), f"expected gRPC RESOURCE_EXHAUSTED, got: {e}"
        else:
            if kind == "sort":
                assert got.num_rows == 300_000
                expected = table.select(["ts", "price"]).sort_by([("price", "ascending"), ("ts", "ascending")])
                assert_tables_equal(got.select(["ts", "price"]), expected)
            else:
                assert got.num_rows == 300_000
        assert proc.poll() is None, "the server exited"
        assert scalar(conn, f"SELECT count(*) FROM {coll}.big") == 300_000
