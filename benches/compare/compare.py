"""Flightstore (over Flight, from this separate client process) against the stores its
users run in-process today, on the same tick workload in one run.

    benches/compare/run.sh          # builds, installs the peers in a venv, runs, draws

Systems: Flightstore (release server), a pyarrow Flight server holding the table in
memory, raw pyarrow Parquet files, ArcticDB (LMDB), DuckDB (native table), Polars
(Parquet files). Every result is checked (row counts, exact range contents, upsert
applied, order kept); medians go to a table, JSON and a bar chart.

Each system is driven the way its own users would, on its fastest documented path:
its input is already in its native form (made outside the timers: an Arrow table for
the Flight servers, pyarrow and DuckDB, a Polars frame for Polars, a pandas frame with
a tz-naive UTC DatetimeIndex for ArcticDB), and every read returns a pyarrow Table
(ArcticDB through its Arrow output format, DuckDB with fetch_arrow_table and no ORDER
BY: it keeps insertion order, and the checks verify the order).

Data (--data, default realistic; seeded, the same rows every run; the description also
goes to the JSON as `data`). Row i has the same timestamp and key wherever it is
generated, so appended blocks continue the table and upserts hit stored rows:
  regular    ticks exactly 1 ms apart, price/size/side cycling with the row index
             (the earlier benchmark: ts, price f64, size f64, side i8, trade_id i64)
  realistic  ticks 1 ms apart with uniform +-0.4 ms jitter at microsecond resolution,
             price a geometric random walk 100*exp(cumsum(N(0, 1e-4))), size
             exponential (mean 100) rounded to 0.01, side random -1/1, trade_id i64
  symbols    realistic plus a utf8 `symbol`: 500 tickers, zipf-like frequencies
  sensors    IoT rows on realistic timestamps: seq i64 plus 20 readings (8 temperature
             random walks, 4 humidities, pressure, voltage f64; 2 counters i64; 4
             low-cardinality status codes i32)
"""
import argparse
import glob
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "flight"))
import bench  # noqa: E402  (tick generator, servers, timing)

STEPS = ["write_10m", "append_100k", "append_1k", "read_all", "read_1pct", "read_2_columns", "upsert_100k"]
BLOCK = 100_000
SMALL = 1_000


class System:
    """The common surface; `native` turns the shared Arrow input into what the system's
    users hold (called outside the timers)."""

    @staticmethod
    def native(table):
        return table

    def close(self):
        pass


class FlightSystem(System):
    """A Flight server; the client side is this process."""

    def __init__(self, server):
        self.server, self.name = server, server.name

    def write(self, table):
        bench.put(self.server.client, "ticks", table, "overwrite")

    def append(self, table):
        bench.put(self.server.client, "ticks", table)

    def upsert(self, table):
        bench.put(self.server.client, "ticks", table, "upsert")

    def read_all(self):
        return bench.get(self.server.client)

    def read_range(self, start, end):
        return bench.get(self.server.client, start=start, end=end)

    def read_columns(self, columns):
        return bench.get(self.server.client, columns=columns)

    def read_last(self, n):
        return bench.get(self.server.client, last=n)

    def close(self):
        self.server.stop()


class ParquetFiles(System):
    """Raw pyarrow Parquet: a folder of files, one per write or append."""

    name = "pyarrow-parquet"

    def __init__(self, root):
        self.dir = os.path.join(root, "parquet")
        os.makedirs(self.dir)
        self.k = 0

    def _file(self):
        self.k += 1
        return os.path.join(self.dir, f"part-{self.k:06d}.parquet")

    def write(self, table):
        for f in glob.glob(os.path.join(self.dir, "*.parquet")):
            os.remove(f)
        pq.write_table(table, self._file())

    def append(self, table):
        pq.write_table(table, self._file())

    def read_all(self):
        return pq.read_table(self.dir)

    def read_range(self, start, end):
        ts = pa.scalar(start, pa.timestamp("ns", "UTC")), pa.scalar(end, pa.timestamp("ns", "UTC"))
        return pq.read_table(self.dir, filters=[("ts", ">=", ts[0]), ("ts", "<", ts[1])])

    def read_columns(self, columns):
        return pq.read_table(self.dir, columns=columns)

    def upsert(self, table):
        # What a plain-file user does: read, splice the sorted block in, rewrite.
        old = pq.read_table(self.dir).combine_chunks()
        ts = old.column("ts").to_numpy()
        lo = np.searchsorted(ts, table.column("ts")[0].value, "left")
        hi = np.searchsorted(ts, table.column("ts")[-1].value, "right")
        self.write(pa.concat_tables([old.slice(0, lo), table, old.slice(hi)]))


class Polars(System):
    """Polars over Parquet files (the way Polars users store frames)."""

    name = "polars"

    def __init__(self, root):
        import polars as pl

        self.pl = pl
        self.dir = os.path.join(root, "polars")
        os.makedirs(self.dir)
        self.k = 0

    def _file(self):
        self.k += 1
        return os.path.join(self.dir, f"part-{self.k:06d}.parquet")

    def _glob(self):
        return os.path.join(self.dir, "*.parquet")

    def native(self, table):
        return self.pl.from_arrow(table)

    def write(self, frame):
        for f in glob.glob(self._glob()):
            os.remove(f)
        frame.write_parquet(self._file())

    def append(self, frame):
        frame.write_parquet(self._file())

    def read_all(self):
        return self.pl.read_parquet(self._glob()).to_arrow()

    def read_range(self, start, end):
        pl = self.pl
        lo = pl.lit(start).cast(pl.Datetime("ns", "UTC"))
        hi = pl.lit(end).cast(pl.Datetime("ns", "UTC"))
        return pl.scan_parquet(self._glob()).filter((pl.col("ts") >= lo) & (pl.col("ts") < hi)).collect().to_arrow()

    def read_columns(self, columns):
        return self.pl.read_parquet(self._glob(), columns=columns).to_arrow()

    def upsert(self, new):
        pl = self.pl
        old = pl.read_parquet(self._glob())
        lo, hi = new["ts"][0], new["ts"][-1]
        self.write(pl.concat([old.filter(pl.col("ts") < lo), new, old.filter(pl.col("ts") > hi)]))


class DuckDB(System):
    """DuckDB's native table in a database file."""

    name = "duckdb"

    def __init__(self, root):
        import duckdb

        self.con = duckdb.connect(os.path.join(root, "bench.duckdb"))
        self.con.execute("SET TimeZone = 'UTC'")

    def write(self, table):
        self.con.register("incoming", table)
        self.con.execute("CREATE OR REPLACE TABLE ticks AS SELECT * FROM incoming")
        self.con.unregister("incoming")

    def append(self, table):
        self.con.register("incoming", table)
        self.con.execute("INSERT INTO ticks SELECT * FROM incoming")
        self.con.unregister("incoming")

    # Reads: relations (con.sql) fetched as Arrow, which DuckDB converts in parallel
    # (execute() converts its materialized result on one thread, about twice as slow
    # here). No ORDER BY: the table was inserted in ts order, DuckDB keeps insertion
    # order (preserve_insertion_order, on by default) and upserts update rows in place.
    def read_all(self):
        return self.con.sql("SELECT * FROM ticks").fetch_arrow_table()

    def read_range(self, start, end):
        # Arrow timestamp[ns, UTC] becomes TIMESTAMPTZ (microseconds) in DuckDB; the
        # bounds are ints, inlined so the zone maps prune (sql() params did not).
        return self.con.sql(
            f"SELECT * FROM ticks WHERE ts >= make_timestamp({int(start) // 1000})::TIMESTAMPTZ"
            f" AND ts < make_timestamp({int(end) // 1000})::TIMESTAMPTZ"
        ).fetch_arrow_table()

    def read_columns(self, columns):
        return self.con.sql(f"SELECT {', '.join(columns)} FROM ticks").fetch_arrow_table()

    def upsert(self, table):
        # MERGE (DuckDB >= 1.4): matched rows updated in place, new rows inserted; faster
        # here than DELETE + INSERT, and the table stays in ts order.
        key = bench.key_column()
        cols = [c for c in table.column_names if c != key]
        self.con.register("incoming", table)
        self.con.execute(
            f"MERGE INTO ticks USING incoming ON ticks.{key} = incoming.{key} "
            f"WHEN MATCHED THEN UPDATE SET {', '.join(f'{c} = incoming.{c}' for c in cols)} "
            "WHEN NOT MATCHED THEN INSERT"
        )
        self.con.unregister("incoming")

    def close(self):
        self.con.close()


class ArcticDB(System):
    """ArcticDB with its LMDB backend: pandas frames in (what its users write; the index
    is tz-naive UTC, as ArcticDB stores it), Arrow tables out (its Arrow output format)."""

    name = "arcticdb"

    def __init__(self, root):
        import arcticdb as adb

        self.ac = adb.Arctic(f"lmdb://{os.path.join(root, 'arctic')}?map_size=20GB")
        self.lib = self.ac.get_library("bench", create_if_missing=True)
        self.arrow = "PYARROW" if hasattr(adb.OutputFormat, "PYARROW") else "EXPERIMENTAL_ARROW"

    @staticmethod
    def native(table):
        # A tz-aware index would make every Arrow read convert it (assume_timezone).
        ts = table.column("ts").cast(pa.timestamp("ns"))
        return table.set_column(0, "ts", ts).to_pandas().set_index("ts")

    def write(self, frame):
        self.lib.write("ticks", frame)

    def append(self, frame):
        self.lib.append("ticks", frame)

    def read_all(self):
        return self.lib.read("ticks", output_format=self.arrow).data

    def read_range(self, start, end):
        import pandas as pd

        rng = (pd.Timestamp(start), pd.Timestamp(end - 1))  # date_range is inclusive
        return self.lib.read("ticks", date_range=rng, output_format=self.arrow).data

    def read_columns(self, columns):
        return self.lib.read("ticks", columns=[c for c in columns if c != "ts"], output_format=self.arrow).data

    def upsert(self, frame):
        self.lib.update("ticks", frame)


def run_steps(system, data, reps):
    """The common workload; every result checked. Inputs are made outside the timers."""
    n = data["table"].num_rows
    key, value = bench.key_column(), bench.value_column()
    results = {}
    table = system.native(data["table"])
    results["write_10m"], _ = bench.timed(lambda: system.write(table), reps["write"])
    blocks = [system.native(b) for b in data["blocks"]]
    it = iter(blocks)
    results["append_100k"], _ = bench.timed(lambda: system.append(next(it)), reps["append"])
    small = iter([system.native(b) for b in data["small"]])
    results["append_1k"], _ = bench.timed(lambda: system.append(next(small)), reps["small"])
    total = n + reps["append"] * BLOCK + reps["small"] * SMALL
    del blocks, table, small

    results["read_all"], t = bench.timed(system.read_all, reps["read"])
    assert isinstance(t, pa.Table) and t.num_rows == total, (system.name, t.num_rows)
    ids = t.column(key).to_numpy()
    assert ids[0] == 0 and ids[-1] == total - 1 and (np.diff(ids) == 1).all(), system.name
    del t, ids

    lo = n // 2
    start, end = bench.ts_at(lo), bench.ts_at(lo + n // 100)
    results["read_1pct"], t = bench.timed(lambda: system.read_range(start, end), reps["range"])
    got = t.column(key).to_numpy()
    assert (got == np.arange(lo, lo + n // 100)).all(), (system.name, len(got))

    results["read_2_columns"], t = bench.timed(lambda: system.read_columns(["ts", value]), reps["read"])
    assert t.num_rows == total and set(t.column_names) == {"ts", value}, system.name
    ts = t.column("ts").cast(pa.int64()).to_numpy()
    assert (np.diff(ts) > 0).all(), f"{system.name}: ts out of order"
    del t, ts

    update = data["update"]
    native = system.native(update)
    results["upsert_100k"], _ = bench.timed(lambda: system.upsert(native), reps["upsert"])
    t = system.read_range(bench.ts_at(lo), bench.ts_at(lo + BLOCK))
    assert t.num_rows == BLOCK, (system.name, t.num_rows)
    assert t.column(value).equals(update.column(value)), f"{system.name}: upsert not applied"
    t = system.read_range(bench.ts_at(lo - 1000), bench.ts_at(lo + BLOCK + 1000))
    assert (t.column(key).to_numpy() == np.arange(lo - 1000, lo + BLOCK + 1000)).all(), f"{system.name}: order after upsert"
    assert system.read_columns(["ts", value]).num_rows == total, f"{system.name}: upsert changed the row count"
    return results


def scale_check(binary, data, n, reps):
    """Flightstore alone at `n` rows: 1% range, last-N and append (pruning, not scanning)."""
    server = bench.flightstore(binary, os.path.join(data, f"scale-{n}"))
    s = FlightSystem(server)
    try:
        for k in range(0, n, 10_000_000):
            s.append(bench.ticks(k, min(n, k + 10_000_000)))
        lo = n // 2
        start, end = bench.ts_at(lo), bench.ts_at(lo + BLOCK)
        out = {}
        out["read_1pct_of_10m"], t = bench.timed(lambda: s.read_range(start, end), reps["range"])
        assert t.num_rows == BLOCK
        out["last_1000"], t = bench.timed(lambda: s.read_last(1000), reps["range"])
        assert t.column(bench.key_column())[0].as_py() == n - 1000
        nxt = [n]

        def append():
            s.append(bench.ticks(nxt[0], nxt[0] + BLOCK))
            nxt[0] += BLOCK

        out["append_100k"], _ = bench.timed(append, 20)
        return out
    finally:
        s.close()


def chart(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(results)
    fig, axes = plt.subplots(2, 4, figsize=(17, 8))
    for ax, step in zip(axes.flat, STEPS):
        values = [results[s][step] * 1000 for s in systems]
        colors = ["tab:red" if s == "flightstore" else "tab:gray" for s in systems]
        ax.bar(range(len(systems)), values, color=colors)
        ax.set_xticks(range(len(systems)), systems, rotation=45, ha="right", fontsize=8)
        ax.set_title(step)
        ax.set_ylabel("ms (median, lower is better)")
        ax.set_yscale("log")
    for ax in list(axes.flat)[len(STEPS):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def versions():
    from importlib import metadata

    out = {"python": platform.python_version()}
    for package in ["pyarrow", "numpy", "pandas", "duckdb", "polars", "arcticdb"]:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--binary", default=os.environ.get("FLIGHTSTORE_BIN", "target/release/flightstore"))
    p.add_argument("--data", choices=list(bench.DATASETS), default="realistic", help="the data set (see above)")
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--scale-rows", type=int, default=100_000_000, help="0 skips the scale check")
    p.add_argument("--systems", default="flightstore,pyarrow-memory,pyarrow-parquet,arcticdb,duckdb,polars")
    p.add_argument("--out", default="benches/compare/results")
    args = p.parse_args()
    reps = {"write": 3, "append": 50, "small": 200, "read": 5, "range": 20, "upsert": 11}
    wanted = args.systems.split(",")
    bench.set_data(args.data)
    n = args.rows
    t = time.perf_counter()
    rows = {  # made once, shared by every system
        "table": bench.ticks(0, n),
        "blocks": [bench.ticks(n + k * BLOCK, n + (k + 1) * BLOCK) for k in range(reps["append"])],
        "update": bench.ticks(n // 2, n // 2 + BLOCK, 1.0),
    }
    after = n + reps["append"] * BLOCK
    rows["small"] = [bench.ticks(after + k * SMALL, after + (k + 1) * SMALL) for k in range(reps["small"])]
    print(f"{args.data} data: {n:,} rows made in {time.perf_counter() - t:.1f} s", flush=True)
    data = tempfile.mkdtemp(prefix="flightstore-compare-", dir=os.environ.get("BENCH_DIR"))
    makers = {
        "flightstore": lambda: FlightSystem(bench.flightstore(args.binary, os.path.join(data, "flightstore"))),
        # Not in the default set: Flightstore without its write-ahead log (an A/B of the log).
        "flightstore-no-wal": lambda: FlightSystem(bench.flightstore(
            args.binary, os.path.join(data, "flightstore-no-wal"), "--no-wal", name="flightstore-no-wal")),
        "pyarrow-memory": lambda: FlightSystem(bench.memory_server()),
        "pyarrow-parquet": lambda: ParquetFiles(data),
        "arcticdb": lambda: ArcticDB(data),
        "duckdb": lambda: DuckDB(data),
        "polars": lambda: Polars(data),
    }
    results = {}
    peak_rss_mb = None
    try:
        for name in wanted:
            system = makers[name]()
            try:
                print(f"running {name} ...", flush=True)
                results[name] = run_steps(system, rows, reps)
                if name == "flightstore":
                    peak_rss_mb = system.server.peak_rss_mb()
            finally:
                system.close()
        scale = {}
        if args.scale_rows and "flightstore" in wanted:
            scale[str(args.rows)] = scale_check(args.binary, data, args.rows, reps)
            scale[str(args.scale_rows)] = scale_check(args.binary, data, args.scale_rows, reps)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    del rows

    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
    date = time.strftime("%Y-%m-%d")
    print(f"\n{args.rows:,} rows of {args.data} data, medians in ms ({date}, {machine})")
    print("ratio: flightstore / fastest other system; stores: / fastest store (not the in-memory server)\n")
    print(f"{'step':<16}" + "".join(f"{s:>17}" for s in results) + f"{'ratio':>8}{'stores':>8}")
    for step in STEPS:
        def best(names):
            values = [results[s][step] for s in names if s != "flightstore"]
            return min(values) if values and "flightstore" in results else float("nan")
        fs = results.get("flightstore", {}).get(step, float("nan"))
        ratio_all = fs / best(results)
        ratio_stores = fs / best([s for s in results if s != "pyarrow-memory"])
        print(f"{step:<16}" + "".join(f"{results[s][step] * 1000:>17.1f}" for s in results)
              + f"{ratio_all:>8.2f}{ratio_stores:>8.2f}")
    if peak_rss_mb is not None:
        print(f"\nflightstore server peak RSS over its steps: {peak_rss_mb:.0f} MB")
    for rows, figures in scale.items():
        print(f"\nflightstore at {int(rows):,} rows: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in figures.items()))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "compare.json"), "w") as f:
        json.dump({"date": date, "machine": machine, "rows": args.rows,
                   "data": {"name": args.data, "description": bench.DATASETS[args.data]},
                   "versions": versions(), "results": results, "scale": scale,
                   "flightstore_peak_rss_mb": peak_rss_mb}, f, indent=2)
    chart(results, os.path.join(args.out, "compare.png"), f"{args.rows:,} rows of {args.data} data, {date}, {machine}")


if __name__ == "__main__":
    main()
