"""Flightstore's Flight SQL (DataFusion) against same-run baselines, in one run.

    benches/sql/run.sh                 # builds the release server, fills the venv, runs this
    benches/sql/run.sh --big-rows 20000000 --reps 11

The client is this process: ADBC (`adbc_driver_flightsql.dbapi`) for SQL, pyarrow.flight
for the plain Flight baseline, DuckDB in process for the Parquet baseline. Every step
warms up first, then times N repetitions (the two sides of a comparison alternate, so a
noisy machine hurts both alike) and reports medians; every result is checked.

1. write      the release server on 127.0.0.1:0 (its address parsed from `addr=` on its
              stderr) with a temporary data root; 10M realistic ticks (the generator of
              benches/flight/bench.py that benches/compare uses) in one DoPut with the
              path descriptor [c, i].
2. range_1pct a contiguous 1% window (100k rows of 10M): ADBC `SELECT * ... WHERE ts >=
              TIMESTAMP .. AND ts < TIMESTAMP ..` + fetch_arrow_table, against a plain
              Flight DoGet of a JSON ReadRequest ticket {collection, item, start, end}.
3. big        a 100M-row item (--big-rows) written as 10 appends streamed chunk by chunk:
              `SELECT count(*)` and `SELECT * ... ORDER BY ts DESC LIMIT 10` through ADBC.
4. ohlcv      1-minute OHLCV bars over the 10M ticks through ADBC (date_bin,
              first_value/last_value ORDER BY ts), against DuckDB running the same bars
              (minute buckets of epoch_us(ts), arg_min/arg_max; its time_bucket on
              TIMESTAMPTZ is timed as context) over the item's own Parquet files, read
              directly after the item is compacted (the log's tail persisted).

Prints a markdown table and writes <out>/sql.json (machine, date, versions, numbers,
EXPLAIN plans, warnings and errors the server logged).
"""
import argparse
import glob
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def _load_generator():
    """benches/flight/bench.py, the tick generator benches/compare uses, loaded by path
    (this file is also called bench.py, so a plain `import bench` could find itself)."""
    import importlib.util

    path = os.path.join(HERE, "..", "flight", "bench.py")
    spec = importlib.util.spec_from_file_location("flightstore_flight_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()

COLLECTION, ITEM, BIG = "c", "i", "big"
CHUNK = 1_000_000  # rows generated at a time for the big item (bounds client memory)
APPENDS = 10  # the big item is written as this many appends
ANSI = re.compile(r"\x1b\[[0-9;]*m")

TARGETS = {  # step -> (kind, value): "ratio" is Flightstore / baseline, "ms" an absolute median
    "range_1pct": ("ratio", 1.3),
    "big_count": ("ms", 10.0),
    "big_last10": ("ms", 10.0),
    "ohlcv_1min": ("ratio", 1.5),
}


# --- the server --------------------------------------------------------------------------

class Server:
    """The release binary on 127.0.0.1:0; stderr goes to a log file, where `addr=` is read."""

    def __init__(self, binary, data, *flags):
        self.log_path = data.rstrip("/") + ".log"
        self.log = open(self.log_path, "wb")
        env = {**os.environ, "NO_COLOR": "1"}
        self.proc = subprocess.Popen(
            [binary, "serve", "--data", data, "--bind", "127.0.0.1:0", *flags],
            stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        deadline = time.time() + 60
        addr = None
        while addr is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"no addr= on the server's stderr after 60 s:\n{self.log_text()}")
            m = re.search(r"\baddr=(\S+)", self.log_text())
            if m:
                addr = m.group(1)
            else:
                time.sleep(0.05)
        self.url = f"grpc://{addr}"
        self.client = flight.connect(self.url)
        self.client.wait_for_available(timeout=30)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return ANSI.sub("", f.read().decode("utf-8", "replace"))

    def problems(self):
        """WARN and ERROR lines the server logged."""
        return [line for line in self.log_text().splitlines() if re.search(r"\b(WARN|ERROR)\b", line)]

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) / 1024

    def settle(self, limit=180.0):
        """Waits until the server is idle (background persisting and compaction done):
        under 5% of a core over two consecutive half seconds. Returns the seconds waited."""
        t0 = time.perf_counter()
        quiet, last = 0, self.cpu_seconds()
        while quiet < 2 and time.perf_counter() - t0 < limit:
            time.sleep(0.5)
            now = self.cpu_seconds()
            quiet = quiet + 1 if now - last < 0.025 else 0
            last = now
        return time.perf_counter() - t0

    def action(self, name, body):
        out = list(self.client.do_action(flight.Action(name, json.dumps(body).encode())))
        return json.loads(out[0].body.to_pybytes()) if out else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def put_chunks(client, collection, item, chunks):
    """One DoPut with the path descriptor [collection, item], streaming the tables of
    `chunks` (an iterator, so only one chunk is held at a time). Returns the receipt."""
    first = next(chunks)
    writer, reader = client.do_put(flight.FlightDescriptor.for_path(collection, item), first.schema)
    writer.write_table(first, max_chunksize=gen.BATCH)
    del first
    for table in chunks:
        writer.write_table(table, max_chunksize=gen.BATCH)
    writer.done_writing()
    meta = reader.read()
    writer.close()
    return json.loads(meta.to_pybytes()) if meta is not None else None


# --- timing ------------------------------------------------------------------------------

def timed(fns, reps, warmup):
    """Runs every function of `fns` (name -> fn) `warmup` times, then `reps` times
    alternating between them. Returns {name: (median s, [times], last result)}."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    last = {}
    for _ in range(reps):
        for name, fn in fns.items():
            t = time.perf_counter()
            last[name] = fn()
            times[name].append(time.perf_counter() - t)
    return {name: (statistics.median(times[name]), times[name], last[name]) for name in fns}


def spread(times):
    ms = sorted(t * 1000 for t in times)
    return {"median_ms": statistics.median(ms), "min_ms": ms[0], "max_ms": ms[-1], "reps": len(ms)}


# --- SQL through ADBC --------------------------------------------------------------------

class Sql:
    def __init__(self, url):
        import adbc_driver_flightsql.dbapi as fsql

        self.conn = fsql.connect(url, autocommit=True)
        self.cur = self.conn.cursor()

    def query(self, text):
        self.cur.execute(text)
        return self.cur.fetch_arrow_table()

    def explain(self, text, analyze=False):
        t = self.query(("EXPLAIN ANALYZE " if analyze else "EXPLAIN ") + text)
        cols = t.column_names
        rows = t.to_pylist()
        return "\n".join(f"{r[cols[0]]}:\n{r[cols[-1]]}" for r in rows)

    def reset(self):
        """A fresh cursor (after a failed statement)."""
        try:
            self.cur.close()
        except Exception:  # noqa: BLE001
            pass
        self.cur = self.conn.cursor()

    def close(self):
        self.cur.close()
        self.conn.close()


def _field(number, data):
    """A length-delimited protobuf field."""
    def varint(v):
        out = bytearray()
        while True:
            out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
            v >>= 7
            if not v:
                return bytes(out)
    return varint(number << 3 | 2) + varint(len(data)) + data


def statement_query(client, text):
    """A Flight SQL CommandStatementQuery sent by hand with pyarrow.flight (GetFlightInfo +
    DoGet, no prepared statement): what ADBC's prepare-first costs, by difference."""
    cmd = _field(1, text.encode())
    any_ = _field(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + _field(2, cmd)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(any_))
    tables = [client.do_get(e.ticket).read_all() for e in info.endpoints]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def sql_ts(ns):
    """A TIMESTAMP literal (UTC, microseconds: the ticks' resolution) for row time `ns`."""
    assert ns % 1000 == 0
    s = np.datetime64(ns, "ns").astype("datetime64[us]")
    return f"TIMESTAMP '{np.datetime_as_string(s, unit='us')}'"


# --- the steps ---------------------------------------------------------------------------

def range_query(n):
    """The 1% window: rows [n/2, n/2 + n/100). Returns (sql, lo, hi, start ns, end ns)."""
    lo, hi = n // 2, n // 2 + n // 100
    start, end = gen.ts_at(lo), gen.ts_at(hi)
    return f"SELECT * FROM {COLLECTION}.{ITEM} WHERE ts >= {sql_ts(start)} AND ts < {sql_ts(end)}", lo, hi, start, end


def step_range(server, sql, n, reps, warmup):
    q, lo, hi, start, end = range_query(n)
    ticket = flight.Ticket(json.dumps({"collection": COLLECTION, "item": ITEM, "start": start, "end": end}).encode())
    r = timed({
        "adbc": lambda: sql.query(q),
        "doget": lambda: server.client.do_get(ticket).read_all(),
        "statement": lambda: statement_query(server.client, q),
        "select_1": lambda: sql.query("SELECT 1"),
    }, reps, warmup)
    a, b = r["adbc"][2], r["doget"][2]
    assert r["statement"][2].num_rows == hi - lo
    want = np.arange(lo, hi)
    assert a.num_rows == b.num_rows == hi - lo, ("range rows", a.num_rows, b.num_rows, hi - lo)
    assert (a.column("trade_id").to_numpy() == want).all(), "ADBC range: wrong rows or order"
    assert (b.column("trade_id").to_numpy() == want).all(), "DoGet range: wrong rows or order"
    assert a.schema.remove_metadata().equals(b.schema.remove_metadata()), (a.schema, b.schema)
    return {"query": q, "rows": a.num_rows, "flightstore": spread(r["adbc"][1]), "baseline": spread(r["doget"][1]),
            "baseline_name": "pyarrow.flight DoGet, JSON ReadRequest ticket",
            "context": {"flight_sql_statement_no_prepare": spread(r["statement"][1]),
                        "adbc_select_1": spread(r["select_1"][1])}}


def write_big(server, rows):
    """`rows` ticks as APPENDS appends, each streamed CHUNK rows at a time."""
    per = -(-rows // APPENDS)
    seconds = []
    for k in range(0, rows, per):
        stop = min(rows, k + per)
        t = time.perf_counter()
        receipt = put_chunks(server.client, COLLECTION, BIG,
                             (gen.ticks(a, min(stop, a + CHUNK)) for a in range(k, stop, CHUNK)))
        seconds.append(time.perf_counter() - t)
        print(f"  appended rows {k:,}..{stop:,} in {seconds[-1]:.1f} s (incl. generating)", flush=True)
        if receipt and "rows_written" in receipt:
            assert receipt["rows_written"] == stop - k, receipt
    return seconds


Q_COUNT = f"SELECT count(*) FROM {COLLECTION}.{BIG}"
Q_LAST10 = f"SELECT * FROM {COLLECTION}.{BIG} ORDER BY ts DESC LIMIT 10"


def step_big_count(sql, rows, reps, warmup):
    r = timed({"count": lambda: sql.query(Q_COUNT)}, reps, warmup)["count"]
    count = r[2]
    assert count.num_rows == 1 and count.column(0)[0].as_py() == rows, ("count", count.to_pylist(), rows)
    return {"query": Q_COUNT, "flightstore": spread(r[1])}


def step_big_last10(sql, rows, reps, warmup):
    r = timed({"last10": lambda: sql.query(Q_LAST10)}, reps, warmup)["last10"]
    last = r[2]
    ids = np.arange(rows - 1, rows - 11, -1)
    assert last.num_rows == 10, last.num_rows
    assert (last.column("trade_id").to_numpy() == ids).all(), last.column("trade_id").to_pylist()
    ts = last.column("ts").cast(pa.int64()).to_numpy()
    assert (ts == np.array([gen.ts_at(int(i)) for i in ids])).all(), "last 10: wrong timestamps"
    return {"query": Q_LAST10, "flightstore": spread(r[1])}


def item_parquet_files(data, collection, item):
    """The item's Parquet files: a glob of **/*.parquet under its folder (minus anything
    under _wal or staging folders), kept to the files the latest manifest lists, since
    files of older versions stay on disk until vacuum. Returns (files, notes)."""
    root = os.path.join(data, collection, item)
    found = [f for f in glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True)
             if not re.search(r"(^|/)(_wal|_?stag\w*|_tmp\w*|tmp)(/|$)", os.path.relpath(f, root))]
    manifests = glob.glob(os.path.join(root, "_manifest", "*.json"))
    notes = {"globbed": len(found), "manifests": len(manifests)}

    def version(path):
        m = re.match(r"(\d+)\.json$", os.path.basename(path))
        return int(m.group(1)) if m else -1

    latest = max(manifests, key=version) if manifests else None
    if latest is None:
        notes["live"] = len(found)
        return sorted(found), notes
    with open(latest) as f:
        manifest = json.load(f)
    entries = manifest.get("files", [])
    partial = [e for e in entries if e.get("row_groups")]
    live = {e["name"] for e in entries}
    files = sorted(f for f in found if os.path.basename(f) in live)
    notes.update({"latest_manifest": os.path.basename(latest), "manifest_files": len(live), "live": len(files),
                  "manifest_rows": sum(e.get("rows", 0) for e in entries), "partial_entries": len(partial)})
    if partial:
        raise RuntimeError(f"the manifest lists row-group runs ({partial[:3]}): whole files would double count")
    if len(files) != len(live):
        raise RuntimeError(f"manifest names {len(live)} files, {len(files)} found on disk: {notes}")
    return files, notes


Q_OHLCV = ("SELECT date_bin(INTERVAL '1 minute', ts, TIMESTAMP '1970-01-01T00:00:00Z') AS bar, "
           "first_value(price ORDER BY ts) AS open, max(price) AS high, min(price) AS low, "
           "last_value(price ORDER BY ts) AS close, sum(size) AS volume "
           f"FROM {COLLECTION}.{ITEM} GROUP BY bar ORDER BY bar")


def step_ohlcv(server, sql, data, n, reps, warmup):
    import duckdb

    t = time.perf_counter()
    receipt = server.action("compact", {"collection": COLLECTION, "item": ITEM})
    compact_s = time.perf_counter() - t
    settled = server.settle()
    files, notes = item_parquet_files(data, COLLECTION, ITEM)
    notes.update({"compact_receipt": receipt, "compact_s": compact_s, "settle_s": settled})
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    source = "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "])"
    duck_rows = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
    assert duck_rows == n, f"DuckDB counts {duck_rows} rows in the item's Parquet files, not {n}: {notes}"

    q = Q_OHLCV
    # DuckDB reads the Parquet ts (timestamp[ns, UTC]) as TIMESTAMPTZ, on which time_bucket
    # and date_trunc take ICU's calendar path (0.4-1.4 s for these bars here, and ::TIMESTAMP
    # is slower still); bucketing the epoch microseconds is the same bars on DuckDB's
    # fastest path, so that is the baseline. The time_bucket form is timed as context.
    bars = {
        "epoch": "make_timestamp(epoch_us(ts) // 60000000 * 60000000)",
        "time_bucket": "time_bucket(INTERVAL '1 minute', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00')",
    }

    def duck_query(bar):
        return (f"SELECT {bar} AS bar, arg_min(price, ts) AS open, max(price) AS high, min(price) AS low, "
                f"arg_max(price, ts) AS close, sum(size) AS volume FROM {source} GROUP BY bar ORDER BY bar")

    dq = duck_query(bars["epoch"])
    r = timed({"adbc": lambda: sql.query(q), "duckdb": lambda: con.sql(dq).fetch_arrow_table()}, reps, warmup)
    context = timed({"duckdb_time_bucket": lambda: con.sql(duck_query(bars["time_bucket"])).fetch_arrow_table()},
                    max(1, reps // 3), 0)["duckdb_time_bucket"]
    a, b = r["adbc"][2], r["duckdb"][2]
    assert a.num_rows == b.num_rows == context[2].num_rows, ("bars", a.num_rows, b.num_rows, context[2].num_rows)

    def ns(column):
        return column.cast(pa.timestamp("ns", column.type.tz)).cast(pa.int64()).to_numpy()

    bars_a, bars_b = ns(a.column("bar")), ns(b.column("bar"))
    assert (bars_a == bars_b).all(), "bars differ"
    assert (ns(context[2].column("bar")) == bars_a).all(), "time_bucket bars differ"
    for col in ["open", "high", "low", "close"]:
        assert (a.column(col).to_numpy() == b.column(col).to_numpy()).all(), f"{col} differs"
    va, vb = a.column("volume").to_numpy(), b.column("volume").to_numpy()
    assert np.allclose(va, vb, rtol=1e-9, atol=0), "volume per bar differs"
    total_a, total_b = float(va.sum()), float(vb.sum())
    assert abs(total_a - total_b) <= 1e-9 * abs(total_b), (total_a, total_b)
    con.close()
    return {"query": q, "duckdb_query": dq.replace(source, "read_parquet([<files>])"), "bars": a.num_rows,
            "volume_sum": {"flightstore": total_a, "duckdb": total_b},
            "flightstore": spread(r["adbc"][1]), "baseline": spread(r["duckdb"][1]),
            "baseline_name": f"DuckDB {duckdb.__version__} in process over the item's {len(files)} Parquet files",
            "context": {"duckdb_time_bucket_timestamptz": spread(context[1]),
                        "duckdb_time_bucket_query": duck_query(bars["time_bucket"]).replace(source, "read_parquet([<files>])")},
            "parquet": {**notes, "duckdb_rows": duck_rows,
                        "bytes": sum(os.path.getsize(f) for f in files)}}


# --- report ------------------------------------------------------------------------------

def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.+)", f.read())
            model = m.group(1).strip() if m else ""
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            mem_gb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1)) / 1024 / 1024
    except OSError:
        mem_gb = None
    return {"arch": platform.machine(), "cpu": model, "cores": os.cpu_count(), "memory_gb": round(mem_gb or 0, 1),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def versions():
    from importlib import metadata

    out = {}
    for package in ["pyarrow", "numpy", "duckdb", "adbc-driver-flightsql", "adbc-driver-manager"]:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_state():
    def git(*args):
        try:
            return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None
    status = git("status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml", "Cargo.lock")
    return {"commit": git("rev-parse", "HEAD"), "src_modified": bool(status)}


def attempt(results, explains, sql, step, query, fn):
    """Runs a step; a failure (a server error, a wrong result) is recorded, not fatal.
    Then EXPLAINs the step's query."""
    try:
        results[step] = fn()
    except Exception as e:  # noqa: BLE001 (reported in the table and the JSON)
        results[step] = {"query": query, "error": f"{type(e).__name__}: {e}"}
        print(f"   {step} FAILED: {results[step]['error'][:300]}", flush=True)
        sql.reset()
    try:
        explains[step] = sql.explain(query)
    except Exception as e:  # noqa: BLE001
        explains[step] = f"EXPLAIN failed: {e}"
        sql.reset()


def binary_info(path):
    out = {"path": path}
    try:
        out["built"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(path)))
        out["version"] = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def verdict(step, figures):
    kind, target = TARGETS[step]
    if "error" in figures:
        return None, (f"<= {target}" if kind == "ratio" else f"<= {target:g} ms"), False
    fs = figures["flightstore"]["median_ms"]
    if kind == "ratio":
        value = fs / figures["baseline"]["median_ms"]
        return value, f"<= {target}", value <= target
    return fs, f"<= {target:g} ms", fs <= target


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=os.environ.get("FLIGHTSTORE_BIN", "target/release/flightstore"))
    p.add_argument("--rows", type=int, default=10_000_000, help="ticks of item c.i (steps 1, 2, 4)")
    p.add_argument("--big-rows", type=int, default=100_000_000, help="rows of item c.big (step 3); 0 skips it")
    p.add_argument("--reps", type=int, default=31, help="timed repetitions of the fast queries")
    p.add_argument("--ohlcv-reps", type=int, default=11, help="timed repetitions of the OHLCV bars")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs before each timed step")
    p.add_argument("--server-flag", action="append", default=[],
                   help="extra flag for `flightstore serve` (repeatable), e.g. --server-flag=--no-wal")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--keep-data", action="store_true", help="leave the data root (printed) in place")
    args = p.parse_args()
    gen.set_data("realistic")
    n = args.rows
    assert n >= 100 and n % 100 == 0, "--rows must be a multiple of 100"

    run_t0 = time.perf_counter()
    load_start = os.getloadavg()
    if load_start[0] > 0.5 * (os.cpu_count() or 1):
        print(f"note: the machine is busy before the run (load {load_start[0]:.1f} on {os.cpu_count()} cores); "
              "figures will be noisy", flush=True)
    data = tempfile.mkdtemp(prefix="flightstore-sql-", dir=os.environ.get("BENCH_DIR"))
    store = os.path.join(data, "store")
    results, notes = {}, {}
    explains = {}
    server = sql = None
    try:
        server = Server(os.path.abspath(args.binary), store, *args.server_flag)
        print(f"server {args.binary} at {server.url}, data {store}", flush=True)

        # 1. 10M realistic ticks, one DoPut (generated outside the timer).
        t = time.perf_counter()
        table = gen.ticks(0, n)
        notes["generate_s"] = time.perf_counter() - t
        t = time.perf_counter()
        put_chunks(server.client, COLLECTION, ITEM, iter([table]))
        notes["write_s"] = time.perf_counter() - t
        del table
        notes["settle_after_write_s"] = server.settle()
        print(f"1. wrote {n:,} ticks in {notes['write_s']:.2f} s (generated in {notes['generate_s']:.1f} s)", flush=True)
        sql = Sql(server.url)

        # 2. a 1% range, ADBC against a plain DoGet.
        attempt(results, explains, sql, "range_1pct", range_query(n)[0],
                lambda: step_range(server, sql, n, args.reps, args.warmup))
        print("2. range done", flush=True)

        # 3. the big item.
        if args.big_rows:
            t = time.perf_counter()
            notes["big_append_s"] = write_big(server, args.big_rows)
            notes["big_write_s"] = time.perf_counter() - t
            notes["settle_after_big_s"] = server.settle(limit=300)
            print(f"3. wrote {args.big_rows:,} rows in {notes['big_write_s']:.1f} s, "
                  f"server idle after {notes['settle_after_big_s']:.1f} s more", flush=True)
            attempt(results, explains, sql, "big_count", Q_COUNT,
                    lambda: step_big_count(sql, args.big_rows, args.reps, args.warmup))
            attempt(results, explains, sql, "big_last10", Q_LAST10,
                    lambda: step_big_last10(sql, args.big_rows, args.reps, args.warmup))
            print("   big queries done", flush=True)

        # 4. OHLCV bars against DuckDB over the item's Parquet files.
        attempt(results, explains, sql, "ohlcv_1min", Q_OHLCV,
                lambda: step_ohlcv(server, sql, store, n, args.ohlcv_reps, min(args.warmup, 1)))
        print("4. OHLCV done", flush=True)

        # EXPLAIN ANALYZE of every step that missed its target.
        analyzed = {}
        for step, figures in results.items():
            if not verdict(step, figures)[2]:
                try:
                    analyzed[step] = sql.explain(figures["query"], analyze=True)
                except Exception as e:  # noqa: BLE001 (reported, not fatal)
                    analyzed[step] = f"EXPLAIN ANALYZE failed: {e}"
                    sql.reset()
        notes["peak_rss_mb"] = server.peak_rss_mb()
    finally:
        if sql is not None:
            sql.close()
        problems = []
        if server is not None:
            server.stop()
            problems = server.problems()
        if args.keep_data:
            print(f"data left in {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)

    date = time.strftime("%Y-%m-%d %H:%M")
    info = machine()
    info["loadavg_1min"] = {"start": round(load_start[0], 2), "end": round(os.getloadavg()[0], 2)}
    rows_of = {"range_1pct": n, "big_count": args.big_rows, "big_last10": args.big_rows, "ohlcv_1min": n}
    names = {"range_1pct": f"1% range ({n // 100:,} rows): ADBC vs DoGet", "big_count": "count(*)",
             "big_last10": "ORDER BY ts DESC LIMIT 10", "ohlcv_1min": "1-min OHLCV: ADBC vs DuckDB on Parquet"}
    print(f"\nFlight SQL benchmark, {date}, {info['arch']} {info['cores']} cores ({info['cpu']}); "
          f"medians of {args.reps} reps ({args.ohlcv_reps} for OHLCV) after warm-up\n")
    print("| step | rows | Flightstore | baseline | ratio | target | met? |")
    print("|---|---|---|---|---|---|---|")
    for step, figures in results.items():
        value, target, met = verdict(step, figures)
        figures["target"], figures["met"] = target, met
        if "error" in figures:
            print(f"| {names[step]} | {rows_of[step]:,} | FAILED (see below) | - | - | {target} | NO (error) |")
            continue
        fs = figures["flightstore"]["median_ms"]
        base = figures.get("baseline", {}).get("median_ms")
        figures["ratio"] = fs / base if base else None
        print(f"| {names[step]} | {rows_of[step]:,} | {fs:.2f} ms | "
              + (f"{base:.2f} ms | {fs / base:.2f}" if base else "- | -")
              + f" | {target} | {'yes' if met else 'NO'} |")
    print(f"\nwrite {n:,} ticks: {notes['write_s']:.2f} s; server peak RSS {notes['peak_rss_mb']:.0f} MB; "
          f"whole run {time.perf_counter() - run_t0:.0f} s")
    if "context" in results.get("range_1pct", {}):
        c = results["range_1pct"]["context"]
        print(f"context: ADBC `SELECT 1` {c['adbc_select_1']['median_ms']:.2f} ms (the per-query floor: prepare, "
              f"GetFlightInfo, DoGet, close); the 1% range as a hand-made CommandStatementQuery over "
              f"pyarrow.flight (no prepare) {c['flight_sql_statement_no_prepare']['median_ms']:.2f} ms")
    if "bars" in results.get("ohlcv_1min", {}):
        o = results["ohlcv_1min"]
        print(f"OHLCV: {o['bars']} bars, volume {o['volume_sum']['flightstore']:.2f} (DuckDB "
              f"{o['volume_sum']['duckdb']:.2f}); DuckDB read {o['parquet']['live']} files "
              f"({o['parquet']['globbed']} globbed); DuckDB with time_bucket on TIMESTAMPTZ instead of epoch "
              f"buckets: {o['context']['duckdb_time_bucket_timestamptz']['median_ms']:.0f} ms")
    for step in results:
        if not results[step]["met"]:
            if "error" in results[step]:
                print(f"\n--- {step} FAILED: {results[step]['query']}\n{results[step]['error']}")
            print(f"\n--- {step} missed its target: EXPLAIN ---\n{explains.get(step, '')}")
            print(f"--- EXPLAIN ANALYZE ---\n{analyzed.get(step, '')}")
    if problems:
        print(f"\nserver logged {len(problems)} WARN/ERROR lines, first ones:")
        for line in problems[:10]:
            print("  " + line)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "sql.json"), "w") as f:
        json.dump({"date": date, "machine": info, "versions": versions(), "flightstore": git_state(),
                   "binary": binary_info(args.binary), "server_flags": args.server_flag,
                   "rows": n, "big_rows": args.big_rows,
                   "reps": {"fast": args.reps, "ohlcv": args.ohlcv_reps, "warmup": args.warmup},
                   "data": {"name": "realistic", "description": gen.DATASETS["realistic"]},
                   "results": results, "notes": notes, "explain": explains, "explain_analyze": analyzed,
                   "server_warnings": problems}, f, indent=2, default=str)
    print(f"\nwrote {os.path.join(args.out, 'sql.json')}")


if __name__ == "__main__":
    main()
