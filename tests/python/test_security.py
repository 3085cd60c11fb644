"""Security: authentication, per-collection grants, listings filtered by grant, the
auth file reread while the server runs, and exactly-once (idempotent) writes.

The contract is DESIGN.md, "Security" (and the Flight / Flight SQL surfaces it guards):
every call carries `authorization: Bearer <token>` (Handshake aside, which turns Basic
credentials into such a header); no or a bad token is UNAUTHENTICATED, a valid token
without the grant a call needs is PERMISSION_DENIED and changes nothing.

The module runs its own `flightstore serve --auth-file F`, with tokens and a user made by
the `flightstore token create` / `user add` CLI before it starts.
"""
import json
import os
import random
import re
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pandas as pd
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from adbc_driver_manager import AdbcStatusCode

import servers

BIN = os.environ.get("FLIGHTSTORE_BIN", "target/debug/flightstore")
ALPHA, BETA = "alpha", "beta"  # the collections the table-driven test guards
GAMMA = "gamma"  # a collection no one wrote yet: a `write` grant on it lets a DoPut create it
TS = pa.timestamp("ns", "UTC")
T0 = pd.Timestamp("2024-01-01", tz="UTC")
PASSWORD = "correct horse battery staple"

# No ADBC call may hang the suite.
TIMEOUTS = {
    "adbc.flight.sql.rpc.timeout_seconds.query": "60",
    "adbc.flight.sql.rpc.timeout_seconds.fetch": "60",
    "adbc.flight.sql.rpc.timeout_seconds.update": "60",
}

# The callers of the table-driven test: the grants of each (None: no token at all; "bad":
# a token the server never issued).
CALLER_GRANTS = {
    "no_token": None,
    "bad_token": "bad",
    "read_A": [f"{ALPHA}:read"],
    "write_A": [f"{ALPHA}:write"],
    "admin_A": [f"{ALPHA}:admin"],
    "star_read": ["*:read"],
    "only_B": [f"{BETA}:admin"],
}
# Each caller's level on collection alpha (None: no valid token; "": no grant on alpha).
LEVEL_ON_A = {
    "no_token": None, "bad_token": None, "read_A": "read", "write_A": "write",
    "admin_A": "admin", "star_read": "read", "only_B": "",
}
RANK = {"": 0, "read": 1, "write": 2, "admin": 3}


# ---------------------------------------------------------------------------------------
# The CLI and the server


def cli(*args, input=None, check=True):
    r = subprocess.run([BIN, *args], input=input, capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, f"flightstore {' '.join(args)}: exit {r.returncode}\nstderr: {r.stderr}"
    return r


def create_token(auth_file, name, *grants):
    args = ["token", "create", "--auth-file", auth_file, "--name", name]
    for g in grants:
        args += ["--grant", g]
    out = cli(*args).stdout
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"token create printed {out!r}: expected the token alone on one line"
    return lines[0].strip()


def add_user(auth_file, name, password, *grants):
    args = ["user", "add", "--auth-file", auth_file, "--name", name, "--password-stdin"]
    for g in grants:
        args += ["--grant", g]
    cli(*args, input=password + "\n")


def start_server(data, auth_file):
    return servers.start_server("--auth-file", auth_file, data=data)


class Env:
    """The module's server: its address, auth file, tokens (by caller name) and user."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="flightstore-pytest-security-")
        self.data = os.path.join(self.dir, "data")
        self.auth_file = os.path.join(self.dir, "auth.json")
        self.tokens = {}
        self.root = create_token(self.auth_file, "root", "*:admin")
        for caller, grants in CALLER_GRANTS.items():
            if grants is None:
                continue
            if grants == "bad":
                self.tokens[caller] = "fs_" + uuid.uuid4().hex + uuid.uuid4().hex
            else:
                self.tokens[caller] = create_token(self.auth_file, caller.replace("_", "-"), *grants)
        self.tokens["write_gamma"] = create_token(self.auth_file, "write-gamma", f"{GAMMA}:write")
        self.user = "ann"
        add_user(self.auth_file, self.user, PASSWORD, f"{ALPHA}:read")
        self.proc, self.address = start_server(self.data, self.auth_file)
        self.uri = f"grpc://{self.address}"
        self.port = int(self.address.rsplit(":", 1)[1])
        self.dirty = True

    def token(self, caller):
        return self.root if caller == "root" else self.tokens.get(caller)

    def headers(self, caller):
        token = self.token(caller)
        return [] if token is None else [(b"authorization", b"Bearer " + token.encode())]

    def options(self, caller, extra=(), timeout=30):
        return flight.FlightCallOptions(timeout=timeout, headers=self.headers(caller) + list(extra))

    def client(self, uri=None):
        return flight.connect(uri or self.uri)

    def adbc(self, caller=None, **db_kwargs):
        kwargs = dict(TIMEOUTS)
        token = self.token(caller) if caller else None
        if token is not None:
            kwargs["adbc.flight.sql.authorization_header"] = "Bearer " + token
        kwargs.update(db_kwargs)
        return flightsql.connect(self.uri, db_kwargs=kwargs, autocommit=True)


@pytest.fixture(scope="module")
def env():
    e = Env()
    yield e
    e.proc.terminate()
    assert e.proc.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def admin(env):
    """A client and the options of the `*:admin` token."""
    c = env.client()
    yield Caller(c, env.options("root"))
    c.close()


class Caller:
    """A Flight client bound to call options (a token's header)."""

    def __init__(self, client, options):
        self.client, self.options = client, options

    def action(self, name, **body):
        results = list(self.client.do_action(flight.Action(name, json.dumps(body).encode()), options=self.options))
        assert len(results) == 1, f"{name}: {len(results)} results"
        return json.loads(results[0].body.to_pybytes())

    def put(self, descriptor, table, options=None):
        return put(self.client, descriptor, table, options or self.options)

    def read(self, collection, item, **request):
        ticket = flight.Ticket(json.dumps({"collection": collection, "item": item, **request}).encode())
        return self.client.do_get(ticket, options=self.options).read_all()

    def list_flights(self, criteria=b""):
        return list(self.client.list_flights(criteria, options=self.options))


def put(client, descriptor, table, options):
    """DoPut `table`; the receipt. Raises the server's status if it refused the call."""
    writer, reader = client.do_put(descriptor, table.schema, options=options)
    try:
        for batch in table.to_batches():
            writer.write_batch(batch)
        writer.done_writing()
        result = reader.read()
    except Exception as first:
        # A refused stream surfaces as an I/O error here; the server's status at close.
        try:
            writer.close()
        except flight.FlightError as e:
            raise e from first
        raise
    writer.close()  # raises the server's error, if any
    assert result is not None, "DoPut returned no PutResult"
    return json.loads(result.to_pybytes())


def rows(start_minutes, n, value0=0.0):
    ts = [T0 + pd.Timedelta(minutes=start_minutes + k) for k in range(n)]
    return pa.table({"ts": pa.array(ts, TS), "v": pa.array([value0 + k for k in range(n)], pa.float64())})


def ns(minutes):
    return (T0 + pd.Timedelta(minutes=minutes)).value


def iso(minutes):
    return (T0 + pd.Timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def lit(minutes):
    return "TIMESTAMP '" + (T0 + pd.Timedelta(minutes=minutes)).tz_localize(None).isoformat() + "'"


# ---------------------------------------------------------------------------------------
# The seeded store and its observable state


SEED = {
    # alpha/base: 10 rows at minutes 0..9, metadata {"owner": "seed"}; alpha/victim: 3
    # rows; snapshot alpha/s0; beta/other: 5 rows.
    (ALPHA, "base"): rows(0, 10),
    (ALPHA, "victim"): rows(0, 3, 100.0),
    (BETA, "other"): rows(0, 5, 200.0),
}


def seed(env, admin):
    """Reset alpha and beta to the seed (as `*:admin`)."""
    present = admin.action("list_collections")
    for c in (ALPHA, BETA):
        if c in present:
            # Right after logged appends, as a regression test of items deleted with
            # their collection coming back from the write-ahead log.
            admin.action("delete_collection", collection=c)
    for (c, i), table in SEED.items():
        request = {"collection": c, "item": i, "mode": "create"}
        if i == "base":
            request["metadata"] = {"owner": "seed"}
        admin.put(flight.FlightDescriptor.for_command(json.dumps(request).encode()), table)
    admin.action("create_snapshot", collection=ALPHA, snapshot="s0")
    env.dirty = False


def state(admin):
    """What a user can observe of alpha and beta (as `*:admin`)."""
    collections = admin.action("list_collections")
    out = {"collections": sorted(c for c in collections if c in (ALPHA, BETA))}
    for c in out["collections"]:
        items = admin.action("list_items", collection=c)
        out[c] = {"items": items, "snapshots": admin.action("list_snapshots", collection=c)}
        for i in items:
            info = admin.action("item_info", collection=c, item=i)
            out[c][i] = {
                "info": info,
                "metadata": admin.action("get_metadata", collection=c, item=i),
                "versions": admin.action("list_versions", collection=c, item=i),
                "data": admin.read(c, i).to_pylist(),
            }
    return out


# ---------------------------------------------------------------------------------------
# Every RPC, as a function of (env, client, options, context) returning what a user gets


def _adbc_query(env, caller, query, parameters=None):
    """A query through ADBC; with parameters, a prepared statement (create, bind by DoPut,
    execute)."""
    conn = env.adbc(caller)
    try:
        with conn.cursor() as cur:
            cur.execute(query, parameters)
            return cur.fetch_arrow_table()
    finally:
        conn.close()


def _adbc_ingest(env, caller, table, collection, item):
    conn = env.adbc(caller)
    try:
        with conn.cursor() as cur:
            return cur.adbc_ingest(item, table, mode="append", db_schema_name=collection)
    finally:
        conn.close()


def _adbc_schemas(env, caller):
    conn = env.adbc(caller)
    try:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        return {s["db_schema_name"]: sorted(t["table_name"] for t in (s["db_schema_tables"] or []))
                for cat in objects for s in (cat["catalog_db_schemas"] or [])}
    finally:
        conn.close()


def _act(name, **body):
    def call(env, client, options, ctx):
        results = list(client.do_action(flight.Action(name, json.dumps(body).encode()), options=options))
        assert len(results) == 1
        return json.loads(results[0].body.to_pybytes())
    return call


def _path(*p):
    return flight.FlightDescriptor.for_path(*p)


def _cmd(**request):
    return flight.FlightDescriptor.for_command(json.dumps(request).encode())


def _ticket(**request):
    return flight.Ticket(json.dumps(request).encode())


def _server_ticket(env, admin):
    info = admin.client.get_flight_info(_path(ALPHA, "base"), options=admin.options)
    return {"ticket": info.endpoints[0].ticket}


def _drop_alpha(env, admin):
    admin.action("delete_collection", collection=ALPHA)
    env.dirty = True
    return {}


def _items_of(admin, collection):
    return admin.action("list_items", collection=collection)


def _exchange(client, options):
    """DoExchange (the server may not support it, but a caller must be authenticated first)."""
    try:
        writer, reader = client.do_exchange(_cmd(collection=ALPHA, item="base"), options=options)
        writer.done_writing()
        reader.read_all()
        writer.close()
    except pa.ArrowNotImplementedError:
        return "unimplemented"
    return "done"


class Rpc:
    def __init__(self, name, level, call, check, mutates=False, prepare=None, hidden_ok=False):
        # level: "any" (any valid token) or the grant needed on alpha.
        self.name, self.level, self.call, self.check = name, level, call, check
        self.mutates, self.prepare, self.hidden_ok = mutates, prepare, hidden_ok


RPCS = [
    # Any valid token.
    Rpc("health", "any", _act("health"), lambda r, a: r["status"] == "ok"),
    Rpc("ListActions", "any", lambda e, c, o, x: [t.type for t in c.list_actions(options=o)],
        lambda r, a: {"health", "item_info", "vacuum"} <= set(r)),
    Rpc("list_collections", "any", _act("list_collections"), lambda r, a: isinstance(r, list)),
    Rpc("ListFlights (all)", "any", lambda e, c, o, x: list(c.list_flights(b"", options=o)),
        lambda r, a: isinstance(r, list)),
    Rpc("DoExchange", "any", lambda e, c, o, x: _exchange(c, o), lambda r, a: r in ("unimplemented", "done")),
    Rpc("SQL get_objects", "any", lambda e, c, o, x: _adbc_schemas(e, x["caller"]),
        lambda r, a: isinstance(r, dict)),
    # read
    Rpc("ListFlights (alpha)", "read",
        lambda e, c, o, x: list(c.list_flights(json.dumps({"collection": ALPHA}).encode(), options=o)),
        lambda r, a: sorted(tuple(p.decode() for p in f.descriptor.path) for f in r)
        == [(ALPHA, "base"), (ALPHA, "victim")],
        hidden_ok=True),
    Rpc("GetFlightInfo (path)", "read",
        lambda e, c, o, x: c.get_flight_info(_path(ALPHA, "base"), options=o),
        lambda r, a: r.total_records == 10),
    Rpc("GetFlightInfo (ReadRequest)", "read",
        lambda e, c, o, x: c.get_flight_info(_cmd(collection=ALPHA, item="base", last=3), options=o),
        lambda r, a: r.total_records == 3),
    Rpc("GetSchema", "read", lambda e, c, o, x: c.get_schema(_path(ALPHA, "base"), options=o).schema,
        lambda r, a: r.names == ["ts", "v"]),
    Rpc("DoGet (ReadRequest)", "read",
        lambda e, c, o, x: c.do_get(_ticket(collection=ALPHA, item="base"), options=o).read_all(),
        lambda r, a: r.column("v").to_pylist() == [float(k) for k in range(10)]),
    Rpc("DoGet (server ticket)", "read",
        lambda e, c, o, x: c.do_get(x["ticket"], options=o).read_all(),
        lambda r, a: r.num_rows == 10, prepare=_server_ticket),
    Rpc("SQL query", "read", lambda e, c, o, x: _adbc_query(e, x["caller"], f"SELECT count(*) AS n, sum(v) AS s FROM {ALPHA}.base"),
        lambda r, a: r.to_pylist() == [{"n": 10, "s": 45.0}]),
    Rpc("SQL prepared query", "read",
        lambda e, c, o, x: _adbc_query(e, x["caller"], f"SELECT count(*) AS n FROM {ALPHA}.base WHERE v >= $1", (4.0,)),
        lambda r, a: r.to_pylist() == [{"n": 6}]),
    Rpc("list_items", "read", _act("list_items", collection=ALPHA), lambda r, a: r == ["base", "victim"]),
    Rpc("item_info", "read", _act("item_info", collection=ALPHA, item="base"), lambda r, a: r["rows"] == 10),
    Rpc("get_metadata", "read", _act("get_metadata", collection=ALPHA, item="base"), lambda r, a: r == {"owner": "seed"}),
    Rpc("list_versions", "read", _act("list_versions", collection=ALPHA, item="base"),
        lambda r, a: len(r) >= 1 and r[-1]["rows"] == 10),
    Rpc("list_snapshots", "read", _act("list_snapshots", collection=ALPHA),
        lambda r, a: [s["snapshot"] for s in r] == ["s0"]),
    Rpc("missing_intervals", "read",
        _act("missing_intervals", collection=ALPHA, item="base", start=iso(0), end=iso(20), freq="1min"),
        lambda r, a: r == [[ns(10), ns(20)]]),
    Rpc("changes_since", "read", _act("changes_since", collection=ALPHA, since=0),
        lambda r, a: {c["item"] for c in r} >= {"base", "victim"}),
    # write
    Rpc("DoPut (path)", "write", lambda e, c, o, x: put(c, _path(ALPHA, "base"), rows(60, 5), o),
        lambda r, a: r["rows_written"] == 5 and a.read(ALPHA, "base").num_rows == 15, mutates=True),
    Rpc("DoPut (WriteRequest, new item)", "write",
        lambda e, c, o, x: put(c, _cmd(collection=ALPHA, item="fresh", mode="create"), rows(0, 4), o),
        lambda r, a: r["rows_written"] == 4 and a.read(ALPHA, "fresh").num_rows == 4, mutates=True),
    Rpc("SQL ingest", "write", lambda e, c, o, x: _adbc_ingest(e, x["caller"], rows(60, 6), ALPHA, "base"),
        lambda r, a: r == 6 and a.read(ALPHA, "base").num_rows == 16, mutates=True),
    Rpc("SQL INSERT", "write",
        lambda e, c, o, x: _adbc_query(e, x["caller"], f"INSERT INTO {ALPHA}.base VALUES ({lit(90)}, 42.0)"),
        lambda r, a: a.read(ALPHA, "base").num_rows == 11, mutates=True),
    Rpc("SQL prepared INSERT", "write",
        lambda e, c, o, x: _adbc_query(e, x["caller"], f"INSERT INTO {ALPHA}.base VALUES ({lit(90)}, $1)", (42.0,)),
        lambda r, a: a.read(ALPHA, "base").num_rows == 11, mutates=True),
    Rpc("SQL DELETE", "write",
        lambda e, c, o, x: _adbc_query(e, x["caller"], f"DELETE FROM {ALPHA}.base WHERE ts >= {lit(0)} AND ts < {lit(3)}"),
        lambda r, a: a.read(ALPHA, "base").num_rows == 7, mutates=True),
    Rpc("update_metadata", "write", _act("update_metadata", collection=ALPHA, item="base", metadata={"k": "v"}),
        lambda r, a: r == {"owner": "seed", "k": "v"}, mutates=True),
    Rpc("create_snapshot", "write", _act("create_snapshot", collection=ALPHA, snapshot="s1"),
        lambda r, a: r["snapshot"] == "s1" and r["items"] == 2 and [x["snapshot"] for x in a.action("list_snapshots", collection=ALPHA)] == ["s0", "s1"],
        mutates=True),
    Rpc("delete_snapshot", "write", _act("delete_snapshot", collection=ALPHA, snapshot="s0"),
        lambda r, a: a.action("list_snapshots", collection=ALPHA) == [], mutates=True),
    Rpc("delete_range", "write", _act("delete_range", collection=ALPHA, item="base", start=iso(0), end=iso(2)),
        lambda r, a: r["rows_deleted"] == 2 and a.read(ALPHA, "base").num_rows == 8, mutates=True),
    Rpc("delete_item", "write", _act("delete_item", collection=ALPHA, item="victim"),
        lambda r, a: _items_of(a, ALPHA) == ["base"], mutates=True),
    Rpc("compact", "write", _act("compact", collection=ALPHA, item="base"),
        lambda r, a: {"version", "files_before", "files_after"} <= set(r) and a.read(ALPHA, "base").num_rows == 10,
        mutates=True),
    # admin
    Rpc("create_collection", "admin", _act("create_collection", collection=ALPHA),
        lambda r, a: r == {} and ALPHA in a.action("list_collections"), mutates=True, prepare=_drop_alpha),
    Rpc("delete_collection", "admin", _act("delete_collection", collection=ALPHA),
        lambda r, a: ALPHA not in a.action("list_collections"), mutates=True),
    Rpc("vacuum", "admin", _act("vacuum", collection=ALPHA),
        lambda r, a: {"files_removed", "bytes_removed"} <= set(r), mutates=True),
]


def expected_outcome(rpc, caller):
    level = LEVEL_ON_A[caller]
    if level is None:
        return "UNAUTHENTICATED"
    if rpc.level == "any" or RANK[level] >= RANK[rpc.level]:
        return "ok"
    return "PERMISSION_DENIED"


def classify(exc):
    if isinstance(exc, flight.FlightUnauthenticatedError):
        return "UNAUTHENTICATED"
    if isinstance(exc, flight.FlightUnauthorizedError):
        return "PERMISSION_DENIED"
    if isinstance(exc, (OSError, pa.ArrowException)) and not isinstance(exc, flight.FlightError):
        # pyarrow's get_schema raises a plain ArrowIOError with the Flight status in words.
        if str(exc).startswith("Flight returned unauthenticated error"):
            return "UNAUTHENTICATED"
        if str(exc).startswith("Flight returned unauthorized error"):
            return "PERMISSION_DENIED"
    if isinstance(exc, adbc_driver_manager.Error):
        if exc.status_code == AdbcStatusCode.UNAUTHENTICATED:
            return "UNAUTHENTICATED"
        if exc.status_code == AdbcStatusCode.UNAUTHORIZED:
            return "PERMISSION_DENIED"
    return f"{type(exc).__name__}: {exc}"


def run(env, rpc, caller, ctx):
    client = env.client()
    try:
        return "ok", rpc.call(env, client, env.options(caller), {**ctx, "caller": caller})
    except Exception as e:  # noqa: BLE001 - the outcome is what is tested
        return classify(e), e
    finally:
        client.close()


@pytest.mark.parametrize("caller", list(CALLER_GRANTS))
@pytest.mark.parametrize("rpc", RPCS, ids=[r.name for r in RPCS])
def test_every_call_by_every_caller(env, admin, rpc, caller):
    """Each RPC x each caller: ok, UNAUTHENTICATED or PERMISSION_DENIED as the caller's grant
    on alpha says; a refused call (and any read) leaves the store as it was."""
    if env.dirty:
        seed(env, admin)
    ctx = rpc.prepare(env, admin) if rpc.prepare else {}
    before = state(admin)
    expected = expected_outcome(rpc, caller)
    outcome, result = run(env, rpc, caller, ctx)
    if rpc.mutates and outcome == "ok":
        env.dirty = True
    if outcome != expected:
        env.dirty = True
    if expected == "PERMISSION_DENIED" and rpc.hidden_ok and outcome == "ok":
        # A listing may answer a caller who may not read alpha with nothing instead.
        assert result == [], f"{rpc.name} by {caller}: alpha's items listed to a caller who may not read it: {result}"
    else:
        assert outcome == expected, f"{rpc.name} by {caller}: expected {expected}, got {outcome}"
    if outcome == "ok":
        assert rpc.check(result, admin), f"{rpc.name} by {caller}: unexpected result {result!r}"
    if outcome != "ok" or not rpc.mutates:
        after = state(admin)
        if after != before:
            env.dirty = True
        assert after == before, f"{rpc.name} by {caller} ({outcome}) changed the store"


def test_a_refused_write_leaves_no_trace(env, admin):
    """PERMISSION_DENIED writes (a new item, a new collection) create nothing, not even
    an empty item or collection."""
    if env.dirty:
        seed(env, admin)
    client = env.client()
    try:
        for desc in (_path(ALPHA, "new/item"), _cmd(collection=ALPHA, item="new2", mode="create"),
                     _path("delta", "x"), _cmd(collection="delta", item="y")):
            with pytest.raises(flight.FlightUnauthorizedError):
                put(client, desc, rows(0, 3), env.options("read_A"))
        with pytest.raises(flight.FlightUnauthorizedError):
            put(client, _path("delta", "x"), rows(0, 3), env.options("write_A"))
        # A grant on alpha, however high, is no grant on beta.
        before = admin.read(BETA, "other").to_pylist()
        with pytest.raises(flight.FlightUnauthorizedError):
            put(client, _path(BETA, "other"), rows(60, 3), env.options("admin_A"))
        who = Caller(client, env.options("admin_A"))
        for name, body in (("delete_item", {"item": "other"}), ("delete_collection", {}),
                           ("update_metadata", {"item": "other", "metadata": {"x": 1}}), ("vacuum", {})):
            with pytest.raises(flight.FlightUnauthorizedError):
                who.action(name, collection=BETA, **body)
        # vacuum of every collection needs admin on every collection.
        with pytest.raises(flight.FlightUnauthorizedError):
            who.action("vacuum")
    finally:
        client.close()
    assert _items_of(admin, ALPHA) == ["base", "victim"]
    assert "delta" not in admin.action("list_collections")
    assert admin.read(BETA, "other").to_pylist() == before
    assert admin.action("get_metadata", collection=BETA, item="other") == {}


def test_a_write_grant_lets_a_write_create_its_collection(env, admin):
    assert GAMMA not in admin.action("list_collections")
    client = env.client()
    try:
        receipt = put(client, _path(GAMMA, "first"), rows(0, 7), env.options("write_gamma"))
        assert receipt["rows_written"] == 7
    finally:
        client.close()
    assert GAMMA in admin.action("list_collections")
    assert admin.read(GAMMA, "first").num_rows == 7
    # Through ADBC ingest too, into an item that does not exist yet.
    assert _adbc_ingest(env, "write_gamma", rows(0, 3), GAMMA, "second") == 3
    assert admin.read(GAMMA, "second").num_rows == 3
    # And the writer may read what it wrote (write includes read).
    c = env.client()
    try:
        assert Caller(c, env.options("write_gamma")).read(GAMMA, "first").num_rows == 7
    finally:
        c.close()


# ---------------------------------------------------------------------------------------
# Listings show only what a token may read


def _flight_paths(flights):
    return sorted(tuple(p.decode() for p in f.descriptor.path) for f in flights)


def test_listings_show_only_readable_collections(env, admin):
    if env.dirty:
        seed(env, admin)
    everything = sorted(admin.action("list_collections"))
    assert {ALPHA, BETA} <= set(everything)
    all_flights = _flight_paths(admin.list_flights())
    expected_collections = {"read_A": [ALPHA], "write_A": [ALPHA], "admin_A": [ALPHA],
                            "only_B": [BETA], "star_read": everything}
    for caller, collections in expected_collections.items():
        c = env.client()
        try:
            who = Caller(c, env.options(caller))
            assert sorted(who.action("list_collections")) == collections, f"list_collections by {caller}"
            expected_paths = [p for p in all_flights if p[0] in collections]
            assert _flight_paths(who.list_flights()) == expected_paths, f"ListFlights by {caller}"
            # Criteria naming a collection the caller may not read: refused or empty.
            hidden = [x for x in (ALPHA, BETA) if x not in collections]
            for h in hidden:
                try:
                    got = who.list_flights(json.dumps({"collection": h}).encode())
                except flight.FlightUnauthorizedError:
                    continue
                assert got == [], f"ListFlights {{collection: {h}}} by {caller} listed {_flight_paths(got)}"
        finally:
            c.close()
        schemas = _adbc_schemas(env, caller)
        assert sorted(schemas) == collections, f"ADBC get_objects by {caller}: {schemas}"
        if ALPHA in collections:
            assert schemas[ALPHA] == ["base", "victim"]
        if BETA in collections:
            assert schemas[BETA] == ["other"]


def test_star_read_sees_a_collection_created_later(env, admin):
    name = "late" + uuid.uuid4().hex[:8]
    admin.put(_path(name, "x"), rows(0, 2))
    c = env.client()
    try:
        who = Caller(c, env.options("star_read"))
        assert name in who.action("list_collections")
        assert who.read(name, "x").num_rows == 2
        with pytest.raises(flight.FlightUnauthorizedError):
            who.put(_path(name, "x"), rows(10, 2))
        ro = Caller(c, env.options("read_A"))
        assert name not in ro.action("list_collections")
        with pytest.raises(flight.FlightUnauthorizedError):
            ro.read(name, "x")
    finally:
        c.close()
    assert admin.read(name, "x").num_rows == 2


def test_sql_on_an_unreadable_collection_is_permission_denied(env, admin):
    if env.dirty:
        seed(env, admin)
    with pytest.raises(adbc_driver_manager.Error) as e:
        _adbc_query(env, "read_A", f"SELECT count(*) FROM {BETA}.other")
    assert e.value.status_code == AdbcStatusCode.UNAUTHORIZED, str(e.value)
    # A join that touches one readable and one unreadable item is refused too.
    with pytest.raises(adbc_driver_manager.Error) as e:
        _adbc_query(env, "read_A", f"SELECT count(*) FROM {ALPHA}.base a JOIN {BETA}.other b ON a.ts = b.ts")
    assert e.value.status_code == AdbcStatusCode.UNAUTHORIZED, str(e.value)
    # And so are time-travel table functions.
    with pytest.raises(adbc_driver_manager.Error) as e:
        _adbc_query(env, "read_A", f"SELECT count(*) FROM at_version('{BETA}', 'other', 1)")
    assert e.value.status_code == AdbcStatusCode.UNAUTHORIZED, str(e.value)
    # INSERT ... SELECT from an unreadable item into a writable one.
    with pytest.raises(adbc_driver_manager.Error) as e:
        _adbc_query(env, "write_A", f"INSERT INTO {ALPHA}.base SELECT * FROM {BETA}.other")
    assert e.value.status_code == AdbcStatusCode.UNAUTHORIZED, str(e.value)
    assert admin.read(ALPHA, "base").num_rows == 10
    # Nor does the catalog describe an unreadable table.
    conn = env.adbc("read_A")
    try:
        with pytest.raises(adbc_driver_manager.Error):
            conn.adbc_get_table_schema("other", db_schema_filter=BETA)
    finally:
        conn.close()
    # The same token's query on its own collection works.
    assert _adbc_query(env, "read_A", f"SELECT count(*) AS n FROM {ALPHA}.base").to_pylist() == [{"n": 10}]


# Raw Flight SQL messages (protobuf by hand: a prepared statement's handle and a statement
# ticket travel to the client, which may hand them to another caller).


def _varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([b])
        out += bytes([b | 0x80])


def _pb(num, data):
    data = data.encode() if isinstance(data, str) else data
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _pb_parse(msg):
    """The length-delimited fields of a protobuf message: {number: [bytes, ...]}."""
    out, i = {}, 0

    def varint():
        nonlocal i
        n, shift = 0, 0
        while True:
            b = msg[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(msg):
        key = varint()
        if key & 7 == 2:
            n = varint()
            out.setdefault(key >> 3, []).append(msg[i:i + n])
            i += n
        elif key & 7 == 0:
            varint()
        else:
            raise ValueError(f"wire type {key & 7}")
    return out


def _sql_any(name, body):
    return _pb(1, "type.googleapis.com/arrow.flight.protocol.sql." + name) + _pb(2, body)


def _sql_prepare(client, options, query):
    body = _sql_any("ActionCreatePreparedStatementRequest", _pb(1, query))
    (result,) = list(client.do_action(flight.Action("CreatePreparedStatement", body), options=options))
    packed = _pb_parse(result.body.to_pybytes())
    return _pb_parse(packed[2][0])[1][0]  # ActionCreatePreparedStatementResult.prepared_statement_handle


def _sql_run_prepared(client, options, handle):
    desc = flight.FlightDescriptor.for_command(_sql_any("CommandPreparedStatementQuery", _pb(1, handle)))
    info = client.get_flight_info(desc, options=options)
    return pa.concat_tables([client.do_get(e.ticket, options=options).read_all() for e in info.endpoints])


def _sql_update(client, options, name, body):
    """DoPut of a CommandStatementUpdate / CommandPreparedStatementUpdate (no parameters)."""
    desc = flight.FlightDescriptor.for_command(_sql_any(name, body))
    writer, reader = client.do_put(desc, pa.schema([]), options=options)
    try:
        writer.done_writing()
        result = reader.read()
    except Exception as first:
        try:
            writer.close()
        except flight.FlightError as e:
            raise e from first
        raise
    writer.close()
    return result


def test_sql_handles_and_tickets_are_checked_when_used(env, admin):
    """Prepared-statement handles are stateless and tickets are bearer-free: what another
    caller got (here `*:admin`) must not let a lesser token read or write through them."""
    if env.dirty:
        seed(env, admin)
    client = env.client()
    root, read_a, write_a = env.options("root"), env.options("read_A"), env.options("write_A")
    try:
        handle = _sql_prepare(client, root, f"SELECT count(*) AS n FROM {BETA}.other")
        assert _sql_run_prepared(client, root, handle).to_pylist() == [{"n": 5}]
        with pytest.raises(flight.FlightUnauthorizedError):
            _sql_run_prepared(client, read_a, handle)
        with pytest.raises(flight.FlightUnauthorizedError):
            _sql_prepare(client, read_a, f"SELECT count(*) FROM {BETA}.other")
        with pytest.raises(flight.FlightUnauthenticatedError):
            _sql_run_prepared(client, env.options("no_token"), handle)

        # A statement ticket issued to `*:admin`, redeemed by read_A or by no one.
        desc = flight.FlightDescriptor.for_command(
            _sql_any("CommandStatementQuery", _pb(1, f"SELECT count(*) AS n FROM {BETA}.other")))
        ticket = client.get_flight_info(desc, options=root).endpoints[0].ticket
        with pytest.raises(flight.FlightUnauthorizedError):
            client.do_get(ticket, options=read_a).read_all()
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.do_get(ticket, options=env.options("no_token")).read_all()

        # An INSERT prepared by `*:admin`, run by read_A on the query path and as an update.
        insert = _sql_prepare(client, root, f"INSERT INTO {ALPHA}.base VALUES ({lit(300)}, 5.0)")
        with pytest.raises(flight.FlightUnauthorizedError):
            _sql_run_prepared(client, read_a, insert)
        with pytest.raises(flight.FlightUnauthorizedError):
            _sql_update(client, read_a, "CommandPreparedStatementUpdate", _pb(1, insert))
        # CommandStatementUpdate: refused for read_A, and for write_A on beta; done for write_A on alpha.
        with pytest.raises(flight.FlightUnauthorizedError):
            _sql_update(client, read_a, "CommandStatementUpdate", _pb(1, f"INSERT INTO {ALPHA}.base VALUES ({lit(301)}, 6.0)"))
        with pytest.raises(flight.FlightUnauthorizedError):
            _sql_update(client, write_a, "CommandStatementUpdate", _pb(1, f"INSERT INTO {BETA}.other VALUES ({lit(301)}, 6.0)"))
        with pytest.raises(flight.FlightUnauthorizedError):
            _sql_update(client, write_a, "CommandStatementUpdate", _pb(1, f"DELETE FROM {BETA}.other WHERE ts >= {lit(0)} AND ts < {lit(5)}"))
        assert admin.read(ALPHA, "base").num_rows == 10
        assert admin.read(BETA, "other").num_rows == 5
        env.dirty = True
        _sql_update(client, write_a, "CommandStatementUpdate", _pb(1, f"INSERT INTO {ALPHA}.base VALUES ({lit(301)}, 6.0)"))
        assert admin.read(ALPHA, "base").num_rows == 11
    finally:
        client.close()


# ---------------------------------------------------------------------------------------
# Users: Basic credentials through Handshake (pyarrow) and ADBC


def test_adbc_logs_in_with_username_and_password(env, admin):
    """ADBC's Go driver sends Basic credentials unpadded; "ann:" + PASSWORD needs padding."""
    assert len(f"{env.user}:{PASSWORD}") % 3 != 0
    if env.dirty:
        seed(env, admin)
    conn = env.adbc(username=env.user, password=PASSWORD)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) AS n FROM {ALPHA}.base")
            assert cur.fetch_arrow_table().to_pylist() == [{"n": 10}]
            # The user reads alpha only: a write is refused.
            with pytest.raises(adbc_driver_manager.Error) as e:
                cur.execute(f"INSERT INTO {ALPHA}.base VALUES ({lit(90)}, 1.0)")
                cur.fetch_arrow_table()
            assert e.value.status_code == AdbcStatusCode.UNAUTHORIZED, str(e.value)
    finally:
        conn.close()
    assert admin.read(ALPHA, "base").num_rows == 10

    for user, password in ((env.user, PASSWORD + "x"), (env.user, ""), ("nobody", PASSWORD)):
        with pytest.raises(adbc_driver_manager.Error) as e:
            conn = env.adbc(username=user, password=password)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT count(*) FROM {ALPHA}.base")
                    cur.fetch_arrow_table()
            finally:
                conn.close()
        assert e.value.status_code == AdbcStatusCode.UNAUTHENTICATED, f"{user}/{password!r}: {e.value}"


def test_basic_handshake_returns_a_bearer_header_that_works(env, admin):
    if env.dirty:
        seed(env, admin)
    client = env.client()
    try:
        key, value = client.authenticate_basic_token(env.user, PASSWORD)
        assert key.lower() == b"authorization"
        assert value.startswith(b"Bearer ") and len(value) > len(b"Bearer ")
        user = Caller(client, flight.FlightCallOptions(timeout=30, headers=[(key, value)]))
        assert user.action("health")["status"] == "ok"
        assert user.read(ALPHA, "base").num_rows == 10
        assert user.action("list_collections") == [ALPHA]
        with pytest.raises(flight.FlightUnauthorizedError):
            user.put(_path(ALPHA, "base"), rows(60, 1))
        with pytest.raises(flight.FlightUnauthorizedError):
            user.read(BETA, "other")
    finally:
        client.close()
    assert admin.read(ALPHA, "base").num_rows == 10

    for user, password in ((env.user, "wrong"), ("nobody", PASSWORD)):
        client = env.client()
        try:
            with pytest.raises(flight.FlightUnauthenticatedError):
                client.authenticate_basic_token(user, password)
        finally:
            client.close()


# ---------------------------------------------------------------------------------------
# The CLI and the auth file


def test_token_list_shows_names_and_grants_but_no_secret(env):
    out = cli("token", "list", "--auth-file", env.auth_file).stdout
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    by_name = {e["name"]: e for e in entries}
    for e in entries:
        assert set(e) == {"name", "grants", "created_at"}, f"token list entry {e}"

    def grants(e):
        return sorted(g if isinstance(g, str) else f"{g['collection']}:{g['level']}" for g in e["grants"])

    assert grants(by_name["root"]) == ["*:admin"]
    assert grants(by_name["read-A"]) == [f"{ALPHA}:read"]
    assert grants(by_name["only-B"]) == [f"{BETA}:admin"]
    secrets = [env.root] + [t for c, t in env.tokens.items() if c != "bad_token"]
    for s in secrets:
        assert s not in out, "token list shows a token"
    # The auth file stores hashes only: no token, no password in clear.
    with open(env.auth_file) as f:
        stored = f.read()
    for s in secrets + [PASSWORD]:
        assert s not in stored, "the auth file holds a secret in clear"


def test_unknown_names_are_errors(env):
    r = cli("token", "revoke", "--auth-file", env.auth_file, "no-such-token", check=False)
    assert r.returncode != 0 and r.stderr.strip(), f"revoke of an unknown token: exit {r.returncode}, stderr {r.stderr!r}"
    r = cli("user", "remove", "--auth-file", env.auth_file, "no-such-user", check=False)
    assert r.returncode != 0 and r.stderr.strip(), f"remove of an unknown user: exit {r.returncode}, stderr {r.stderr!r}"


def test_a_bad_grant_is_refused_by_the_cli(env):
    for grant in ("alpha", "alpha:owner", ":read", "alpha:"):
        r = cli("token", "create", "--auth-file", env.auth_file, "--name", "bad-grant-" + uuid.uuid4().hex[:6],
                "--grant", grant, check=False)
        assert r.returncode != 0, f"--grant {grant!r} accepted: {r.stdout!r}"
        assert not r.stdout.strip(), f"--grant {grant!r}: a token was printed although it failed"


def outcome_of(fn):
    try:
        fn()
        return "ok"
    except Exception as e:  # noqa: BLE001
        return classify(e)


def poll(what, fn, want, timeout=5.0):
    """Call `fn` until its outcome is `want` ("ok" or a status), for at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = outcome_of(fn)
        if got == want:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: expected {want} within {timeout} s, still {got}")
        time.sleep(0.1)


def test_a_token_created_or_revoked_takes_effect_without_a_restart(env, admin):
    if env.dirty:
        seed(env, admin)
    name = "temp-" + uuid.uuid4().hex[:8]
    token = create_token(env.auth_file, name, f"{ALPHA}:read")
    client = env.client()
    options = flight.FlightCallOptions(timeout=10, headers=[(b"authorization", b"Bearer " + token.encode())])
    who = Caller(client, options)
    try:
        poll("a new token accepted", lambda: who.read(ALPHA, "base"), "ok")
        assert who.read(ALPHA, "base").num_rows == 10
        listed = [json.loads(l)["name"] for l in cli("token", "list", "--auth-file", env.auth_file).stdout.splitlines() if l.strip()]
        assert name in listed
        cli("token", "revoke", "--auth-file", env.auth_file, name)
        poll("a revoked token refused", lambda: who.read(ALPHA, "base"), "UNAUTHENTICATED")
        assert outcome_of(lambda: who.action("health")) == "UNAUTHENTICATED"
        listed = [json.loads(l)["name"] for l in cli("token", "list", "--auth-file", env.auth_file).stdout.splitlines() if l.strip()]
        assert name not in listed
        # Other tokens are unaffected.
        assert admin.action("health")["status"] == "ok"
        assert Caller(client, env.options("read_A")).read(ALPHA, "base").num_rows == 10
    finally:
        client.close()


def test_a_user_added_or_removed_takes_effect_without_a_restart(env, admin):
    if env.dirty:
        seed(env, admin)
    name = "bob" + uuid.uuid4().hex[:6]
    password = "pw-" + uuid.uuid4().hex
    add_user(env.auth_file, name, password, f"{ALPHA}:write")

    def login():
        c = env.client()
        try:
            return c.authenticate_basic_token(name, password)
        finally:
            c.close()

    poll("a new user can log in", login, "ok")
    header = login()
    client = env.client()
    try:
        who = Caller(client, flight.FlightCallOptions(timeout=10, headers=[header]))
        assert who.read(ALPHA, "base").num_rows == 10
        cli("user", "remove", "--auth-file", env.auth_file, name)
        poll("a removed user cannot log in", login, "UNAUTHENTICATED")
    finally:
        client.close()


def test_a_removed_users_session_token_stops_working(env, admin):
    """The bearer a Handshake gave a user is refused once the user is removed."""
    if env.dirty:
        seed(env, admin)
    name = "carl" + uuid.uuid4().hex[:6]
    password = "pw-" + uuid.uuid4().hex
    add_user(env.auth_file, name, password, f"{ALPHA}:read")

    def login():
        c = env.client()
        try:
            return c.authenticate_basic_token(name, password)
        finally:
            c.close()

    poll("a new user can log in", login, "ok")
    header = login()
    client = env.client()
    try:
        who = Caller(client, flight.FlightCallOptions(timeout=10, headers=[header]))
        assert who.read(ALPHA, "base").num_rows == 10
        cli("user", "remove", "--auth-file", env.auth_file, name)
        poll("a removed user's bearer refused", lambda: who.read(ALPHA, "base"), "UNAUTHENTICATED")
    finally:
        client.close()


def test_binding_beyond_loopback_needs_auth_or_no_auth(tmp_path):
    """Without an auth file the server binds loopback only, unless told --no-auth (loudly)."""
    proc = subprocess.Popen([BIN, "serve", "--data", str(tmp_path / "d1"), "--bind", "0.0.0.0:0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        rc = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("the server serves 0.0.0.0 with no auth file and no --no-auth")
    assert rc != 0 and proc.stderr.read().strip()
    proc = subprocess.Popen([BIN, "serve", "--data", str(tmp_path / "d2"), "--bind", "0.0.0.0:0", "--no-auth"],
                            stderr=subprocess.PIPE, text=True)
    log = []
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            log.append(line)
            if "addr=" in line:
                break
        assert any("addr=" in line for line in log), f"--no-auth did not start: {log}"
        before = "".join(log).lower()
        assert "auth" in before and ("warn" in before or "no auth" in before or "no-auth" in before), \
            f"--no-auth is not said loudly in the log: {log}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_auth_file_from_the_environment(tmp_path):
    """FLIGHTSTORE_AUTH_FILE is --auth-file."""
    auth_file = str(tmp_path / "auth.json")
    token = create_token(auth_file, "root", "*:admin")
    env_vars = dict(os.environ, FLIGHTSTORE_AUTH_FILE=auth_file)
    proc = subprocess.Popen([BIN, "serve", "--data", str(tmp_path / "data"), "--bind", "127.0.0.1:0"],
                            stderr=subprocess.PIPE, text=True, env=env_vars)
    try:
        address = None
        deadline = time.time() + 30
        while address is None and time.time() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            m = re.search(r"addr=(\S+)", line)
            if m:
                address = m.group(1)
        assert address, "the server did not report its address"
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        c = flight.connect(f"grpc://{address}")
        try:
            with pytest.raises(flight.FlightUnauthenticatedError):
                list(c.do_action(flight.Action("health", b"{}"), options=flight.FlightCallOptions(timeout=10)))
            ok = flight.FlightCallOptions(timeout=10, headers=[(b"authorization", b"Bearer " + token.encode())])
            (r,) = list(c.do_action(flight.Action("health", b"{}"), options=ok))
            assert json.loads(r.body.to_pybytes())["status"] == "ok"
        finally:
            c.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---------------------------------------------------------------------------------------
# Exactly-once writes (write_id)


def _receipt_of_data_frame(payload):
    """The PutResult app_metadata JSON in a gRPC message (5-byte prefix + protobuf)."""
    try:
        if payload[0] != 0:
            return None
        length = int.from_bytes(payload[1:5], "big")
        msg = payload[5:5 + length]
        i = 0
        while i < len(msg):
            key = msg[i]
            i += 1
            size, shift = 0, 0
            while True:
                b = msg[i]
                i += 1
                size |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if key == 0x0A:
                return json.loads(msg[i:i + size])
            i += size
    except Exception:  # noqa: BLE001 - best effort: a frame we do not understand
        return None
    return None


class CutProxy:
    """A TCP proxy to the server that breaks connections on purpose.

    The plan for the next connections: ("pass",), ("c2s", n): forward n bytes of the
    client's side then drop both connections, or ("ack",): forward everything the client
    sends, and the server's HTTP/2 frames up to the first non-empty DATA frame of a stream
    (the DoPut's PutResult, sent after the commit), then drop both connections without
    forwarding it (the receipt it held is kept in `dropped`)."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.plan = ("pass",)
        self.lock = threading.Lock()
        self.cuts = 0
        self.dropped = []  # receipts the "ack" plan kept from the client
        self.c2s_bytes = []  # bytes the client sent on each finished connection
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        self.listener.close()

    def _accept(self):
        while not self.closed:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream)
            except OSError:
                down.close()
                continue
            for s in (down, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = {"down": down, "up": up, "dead": False, "lock": threading.Lock()}
            plan = self.plan
            threading.Thread(target=self._c2s, args=(conn, plan), daemon=True).start()
            threading.Thread(target=self._s2c, args=(conn, plan), daemon=True).start()

    def _kill(self, conn):
        with conn["lock"]:
            if conn["dead"]:
                return
            conn["dead"] = True
        for s in (conn["down"], conn["up"]):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _c2s(self, conn, plan):
        limit = plan[1] if plan[0] == "c2s" else None
        sent = 0
        try:
            while True:
                data = conn["down"].recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    conn["up"].sendall(data[:limit - sent])
                    sent = limit
                    with self.lock:
                        self.cuts += 1
                    break
                conn["up"].sendall(data)
                sent += len(data)
        except OSError:
            pass
        with self.lock:
            self.c2s_bytes.append(sent)
        self._kill(conn)

    def _s2c(self, conn, plan):
        try:
            if plan[0] != "ack":
                while True:
                    data = conn["up"].recv(65536)
                    if not data:
                        break
                    conn["down"].sendall(data)
            else:
                buf = b""
                while True:
                    data = conn["up"].recv(65536)
                    if not data:
                        break
                    buf += data
                    while len(buf) >= 9:
                        length = int.from_bytes(buf[0:3], "big")
                        kind, flags = buf[3], buf[4]
                        stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                        if len(buf) < 9 + length:
                            break
                        if kind == 0 and stream != 0 and length > 0:
                            payload = buf[9:9 + length]
                            if flags & 0x8:  # PADDED
                                pad = payload[0]
                                payload = payload[1:len(payload) - pad]
                            with self.lock:
                                self.cuts += 1
                                self.dropped.append(_receipt_of_data_frame(payload))
                            self._kill(conn)
                            return
                        conn["down"].sendall(buf[:9 + length])
                        buf = buf[9 + length:]
        except OSError:
            pass
        self._kill(conn)


@pytest.fixture
def proxy(env):
    p = CutProxy(("127.0.0.1", env.port))
    yield p
    p.close()


def _batch(i, n, parts):
    """Rows of write i: ts = i*1000 + j seconds after T0, value i*1000 + j; in `parts` batches."""
    ts = [T0.value + (i * 1000 + j) * 1_000_000_000 for j in range(n)]
    table = pa.table({"ts": pa.array(ts, TS), "k": pa.array([i * 1000 + j for j in range(n)], pa.int64()),
                      "w": pa.array([f"w{i}"] * n, pa.string())})
    cuts = sorted(random.Random(i).sample(range(1, n), parts - 1)) if parts > 1 and n > parts else []
    bounds = [0, *cuts, n]
    return pa.Table.from_batches([b for a, z in zip(bounds, bounds[1:])
                                  for b in table.slice(a, z - a).to_batches()], schema=table.schema)


def _write_versions(admin, collection, item):
    """The versions writes committed (background compactions aside)."""
    return [v for v in admin.action("list_versions", collection=collection, item=item) if v["operation"] != "compact"]


def _idempotent_put(env, uri, collection, item, table, write_id, via_header):
    """One attempt of an exactly-once append: the receipt, or raises."""
    client = flight.connect(uri)
    try:
        if via_header:
            desc = _path(collection, item)
            options = env.options("root", extra=[(b"x-flightstore-write-id", write_id.encode())], timeout=10)
        else:
            desc = _cmd(collection=collection, item=item, mode="append", write_id=write_id)
            options = env.options("root", timeout=10)
        return put(client, desc, table, options)
    finally:
        client.close()


def test_a_retried_write_commits_once_and_says_duplicate(env, admin):
    coll = "once" + uuid.uuid4().hex[:8]
    for via_header, item in ((False, "cmd"), (True, "path")):
        wid = "w-" + uuid.uuid4().hex
        table = _batch(1, 20, 2)
        first = _idempotent_put(env, env.uri, coll, item, table, wid, via_header)
        assert first.get("duplicate") in (None, False), first
        assert first["rows_written"] == 20
        again = _idempotent_put(env, env.uri, coll, item, table, wid, via_header)
        assert again == {**first, "duplicate": True}
        # The same id with other rows is still the same write: nothing committed.
        other = _batch(2, 5, 1)
        third = _idempotent_put(env, env.uri, coll, item, other, wid, via_header)
        assert third == {**first, "duplicate": True}
        got = admin.read(coll, item)
        assert got.num_rows == 20 and got.column("k").to_pylist() == table.column("k").to_pylist()
        versions = _write_versions(admin, coll, item)
        assert len(versions) == 1, versions
        # A new id is a new write.
        fresh = _idempotent_put(env, env.uri, coll, item, other, "w-" + uuid.uuid4().hex, via_header)
        assert fresh.get("duplicate") in (None, False) and fresh["rows_written"] == 5
        assert admin.read(coll, item).num_rows == 25
    # The id is kept per item: the same id on another item is a new write.
    wid = "w-" + uuid.uuid4().hex
    a = _idempotent_put(env, env.uri, coll, "x1", _batch(3, 4, 1), wid, False)
    b = _idempotent_put(env, env.uri, coll, "x2", _batch(3, 4, 1), wid, False)
    assert a.get("duplicate") in (None, False) and b.get("duplicate") in (None, False)
    assert admin.read(coll, "x1").num_rows == 4 and admin.read(coll, "x2").num_rows == 4
    # A 128-byte id is accepted.
    long_id = "x" * 128
    r1 = _idempotent_put(env, env.uri, coll, "x3", _batch(4, 3, 1), long_id, False)
    r2 = _idempotent_put(env, env.uri, coll, "x3", _batch(4, 3, 1), long_id, False)
    assert r2 == {**r1, "duplicate": True}
    assert admin.read(coll, "x3").num_rows == 3
    # A longer one is refused (INVALID_ARGUMENT), with nothing written.
    for via_header in (False, True):
        with pytest.raises(pa.ArrowInvalid):
            _idempotent_put(env, env.uri, coll, "x4", _batch(5, 3, 1), "y" * 129, via_header)
    assert "x4" not in admin.action("list_items", collection=coll)


def test_a_failed_write_does_not_use_up_its_write_id(env, admin):
    coll = "failed" + uuid.uuid4().hex[:8]
    bad = pa.table({"ts": pa.array([T0.value, None], TS), "k": pa.array([1, 2], pa.int64()), "w": ["a", "b"]})
    with pytest.raises(pa.ArrowInvalid):
        _idempotent_put(env, env.uri, coll, "i", bad, "W", False)
    receipt = _idempotent_put(env, env.uri, coll, "i", _batch(1, 5, 1), "W", False)
    assert receipt.get("duplicate") in (None, False) and receipt["rows_written"] == 5
    assert admin.read(coll, "i").num_rows == 5


def test_a_batch_write_with_a_write_id_commits_once(env, admin):
    """A batch write (item_column) retried with its write_id: every item's rows once."""
    coll = "batch" + uuid.uuid4().hex[:8]
    n = 12
    table = pa.table({"ts": pa.array([T0.value + k for k in range(n)], TS),
                      "sym": ["a", "b", "c"] * (n // 3), "v": [float(k) for k in range(n)]})
    desc = _cmd(collection=coll, item_column="sym", mode="append", write_id="batch-1")
    first = admin.put(desc, table)
    assert first.get("duplicate") in (None, False)
    assert {i: r["rows_written"] for i, r in first["items"].items()} == {"a": 4, "b": 4, "c": 4}
    again = admin.put(desc, table)
    # The duplicate is marked (on the receipt, or on each of its items) and carries the
    # first receipt's versions and counts.
    marked = again.get("duplicate") is True or all(r.get("duplicate") is True for r in again["items"].values())
    assert marked, f"a retried batch write is not marked duplicate: {again}"
    strip = lambda r: {i: {k: v for k, v in x.items() if k != "duplicate"} for i, x in r["items"].items()}  # noqa: E731
    assert strip(again) == strip(first)
    for item in ("a", "b", "c"):
        assert admin.read(coll, item).num_rows == 4, item


def test_a_write_id_outlives_a_crash(env):
    """The acknowledgement lost because the server died: the retry, on the restarted server,
    is the duplicate."""
    d = tempfile.mkdtemp(prefix="flightstore-pytest-security-crash-")
    auth_file = os.path.join(d, "auth.json")
    token = create_token(auth_file, "root", "*:admin")
    data = os.path.join(d, "data")
    options = flight.FlightCallOptions(timeout=30, headers=[(b"authorization", b"Bearer " + token.encode())])

    def put_with(uri, item, table, wid, via_header):
        c = flight.connect(uri)
        try:
            if via_header:
                opts = flight.FlightCallOptions(timeout=30, headers=[(b"authorization", b"Bearer " + token.encode()),
                                                                     (b"x-flightstore-write-id", wid.encode())])
                return put(c, _path("c", item), table, opts)
            return put(c, _cmd(collection="c", item=item, write_id=wid), table, options)
        finally:
            c.close()

    proc, address = start_server(data, auth_file)
    try:
        firsts = {item: put_with(f"grpc://{address}", item, _batch(7, 9, 2), "crash-" + item, item == "hdr")
                  for item in ("cmd", "hdr")}
        proc.kill()
        proc.wait(timeout=30)
        proc, address = start_server(data, auth_file)
        for item, first in firsts.items():
            again = put_with(f"grpc://{address}", item, _batch(7, 9, 2), "crash-" + item, item == "hdr")
            assert again == {**first, "duplicate": True}, item
            c = flight.connect(f"grpc://{address}")
            try:
                got = c.do_get(_ticket(collection="c", item=item), options=options).read_all()
            finally:
                c.close()
            assert got.num_rows == 9, f"{item}: {got.num_rows} rows after a retry across a crash"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_adbc_ingest_with_a_write_id_header_commits_once(env, admin):
    coll = "ingest" + uuid.uuid4().hex[:8]
    wid = "w-" + uuid.uuid4().hex
    table = _batch(5, 30, 3)
    header = {"adbc.flight.sql.rpc.call_header.x-flightstore-write-id": wid}
    for _ in range(2):
        conn = env.adbc("root", **header)
        try:
            with conn.cursor() as cur:
                cur.adbc_ingest("t", table, mode="append", db_schema_name=coll)
        finally:
            conn.close()
    got = admin.read(coll, "t")
    assert got.num_rows == 30, f"ingest retried with one write_id: {got.num_rows} rows, expected 30"
    assert len(_write_versions(admin, coll, "t")) == 1


def test_exactly_once_through_a_connection_that_breaks(env, admin, proxy):
    """200 appends, each through a proxy that cuts the connection at a random byte of the
    upload or drops the server's acknowledgement; the client retries with the same
    write_id until it gets a receipt. Every row is stored exactly once."""
    seed_value = int(os.environ.get("FLIGHTSTORE_EXACTLY_ONCE_SEED", time.time_ns() % 2**32))
    print(f"exactly-once seed: {seed_value} (rerun with FLIGHTSTORE_EXACTLY_ONCE_SEED={seed_value})")
    rng = random.Random(seed_value)
    coll = "eo" + uuid.uuid4().hex[:8]
    proxy_uri = f"grpc://127.0.0.1:{proxy.port}"

    # Calibrate: how many bytes a client sends for one such write.
    proxy.plan = ("pass",)
    _idempotent_put(env, proxy_uri, coll, "calibrate", _batch(0, 60, 3), "calibrate", False)
    time.sleep(0.1)
    total = max(proxy.c2s_bytes)
    assert total > 200, proxy.c2s_bytes

    expected = {"cmd": [], "path": []}
    lost_acks = 0  # writes whose first acknowledgement was dropped after the commit
    started = time.monotonic()
    log = []
    for i in range(1, 201):
        n = rng.randint(1, 60)
        table = _batch(i, n, rng.randint(1, 3))
        via_header = i % 2 == 0
        item = "path" if via_header else "cmd"
        wid = f"{seed_value}-{i}-{rng.getrandbits(48):x}"
        receipt = None
        attempts = []
        dropped_before = len(proxy.dropped)
        for attempt in range(30):
            direct = attempt > 0 and (attempt >= 20 or rng.random() < 0.5)
            if direct:
                plan = ("direct",)
            else:
                r = rng.random()
                plan = ("c2s", rng.randint(0, int(total * 1.05))) if r < 0.45 else ("ack",) if r < 0.9 else ("pass",)
                proxy.plan = plan
            try:
                receipt = _idempotent_put(env, env.uri if direct else proxy_uri, coll, item, table, wid, via_header)
            except flight.FlightError as e:
                attempts.append((plan, type(e).__name__))
                assert not isinstance(e, (flight.FlightUnauthenticatedError, flight.FlightUnauthorizedError)), e
                continue
            except (OSError, pa.ArrowException) as e:
                attempts.append((plan, type(e).__name__))
                continue
            attempts.append((plan, "ok"))
            break
        assert receipt is not None, f"write {i} (seed {seed_value}) never acknowledged: {attempts}"
        log.append((i, wid, attempts, receipt))
        # The receipt counts this write's rows, as the first commit did.
        assert receipt["rows_written"] == n and receipt["rows_received"] == n, (i, seed_value, attempts, receipt)
        acked_drops = [d for d in proxy.dropped[dropped_before:] if d is not None]
        if any(p[0] == "ack" for p, _ in attempts[:-1]) and acked_drops:
            # An acknowledgement was lost after the commit: the retry is the duplicate of it.
            assert receipt == {**acked_drops[0], "duplicate": True}, (i, seed_value, attempts, acked_drops, receipt)
            lost_acks += 1
        if len(attempts) == 1:
            assert receipt.get("duplicate") in (None, False), (i, seed_value, attempts, receipt)
        expected[item].extend(table.column("k").to_pylist())
    elapsed = time.monotonic() - started
    print(f"200 writes in {elapsed:.1f} s; connections cut: {proxy.cuts}; "
          f"retried writes: {sum(1 for _, _, a, _ in log if len(a) > 1)}; lost acknowledgements: {lost_acks}")
    assert proxy.cuts >= 100, f"the proxy cut only {proxy.cuts} connections: the test did not test much"
    assert lost_acks >= 30, f"only {lost_acks} writes lost an acknowledgement after their commit"

    for item, keys in expected.items():
        got = admin.read(coll, item).column("k").to_pylist()
        missing = sorted(set(keys) - set(got))
        extra = sorted(k for k in set(got) if got.count(k) > 1) if len(got) != len(set(got)) else []
        unknown = sorted(set(got) - set(keys))
        assert not missing and not extra and not unknown and len(got) == len(keys), (
            f"item {item} (seed {seed_value}): {len(got)} rows, expected {len(keys)}; "
            f"missing {missing[:10]}, duplicated {extra[:10]}, unknown {unknown[:10]}")
        assert got == sorted(got), f"item {item}: rows out of order"
        info = admin.action("item_info", collection=coll, item=item)
        assert info["rows"] == len(keys)


def test_racing_retries_of_one_write_id_commit_once(env, admin):
    coll = "race" + uuid.uuid4().hex[:8]
    expected = []
    for round_ in range(15):
        table = _batch(round_, 10 + round_, 2)
        wid = f"race-{round_}-{uuid.uuid4().hex}"
        via_header = round_ % 2 == 1
        barrier = threading.Barrier(2)
        results = [None, None]

        def go(k):
            barrier.wait()
            try:
                results[k] = ("ok", _idempotent_put(env, env.uri, coll, "r", table, wid, via_header))
            except Exception as e:  # noqa: BLE001
                results[k] = ("error", e)

        threads = [threading.Thread(target=go, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert all(r is not None and r[0] == "ok" for r in results), f"round {round_}: {results}"
        receipts = [r[1] for r in results]
        firsts = [r for r in receipts if not r.get("duplicate")]
        dups = [r for r in receipts if r.get("duplicate")]
        assert len(firsts) == 1 and len(dups) == 1, f"round {round_}: receipts {receipts}"
        assert dups[0] == {**firsts[0], "duplicate": True}, f"round {round_}: {receipts}"
        assert firsts[0]["rows_written"] == table.num_rows
        expected.extend(table.column("k").to_pylist())
        got = admin.read(coll, "r").column("k").to_pylist()
        assert sorted(got) == sorted(expected), f"round {round_}: {len(got)} rows, expected {len(expected)}"
    writes = _write_versions(admin, coll, "r")
    assert len(writes) == 15, f"{len(writes)} write versions for 15 writes: {writes}"
