"""Flightstore (over Flight, from this separate client process) against the stores its
users run in-process today, on the same tick workload in one run.

    benches/compare/run.sh          # builds, installs the peers in a venv, runs, draws

Systems: Flightstore (release server), a pyarrow Flight server holding the table in
memory, raw pyarrow Parquet files, ArcticDB (LMDB), DuckDB (native table), Polars
(Parquet files). Every result is checked (row counts, exact range contents, upsert
applied); medians go to a table, JSON and a bar chart.
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

STEPS = ["write_10m", "append_100k", "read_all", "read_1pct", "read_2_columns", "upsert_100k"]
BLOCK = 100_000


class FlightSystem:
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


class ParquetFiles:
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

    def close(self):
        pass


class Polars:
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

    def write(self, table):
        for f in glob.glob(self._glob()):
            os.remove(f)
        self.pl.from_arrow(table).write_parquet(self._file())

    def append(self, table):
        self.pl.from_arrow(table).write_parquet(self._file())

    def read_all(self):
        return self.pl.read_parquet(self._glob()).to_arrow()

    def read_range(self, start, end):
        pl = self.pl
        lo = pl.lit(start).cast(pl.Datetime("ns", "UTC"))
        hi = pl.lit(end).cast(pl.Datetime("ns", "UTC"))
        return pl.scan_parquet(self._glob()).filter((pl.col("ts") >= lo) & (pl.col("ts") < hi)).collect().to_arrow()

    def read_columns(self, columns):
        return self.pl.read_parquet(self._glob(), columns=columns).to_arrow()

    def upsert(self, table):
        pl = self.pl
        new = pl.from_arrow(table)
        old = pl.read_parquet(self._glob())
        lo, hi = new["ts"][0], new["ts"][-1]
        merged = pl.concat([old.filter(pl.col("ts") < lo), new, old.filter(pl.col("ts") > hi)])
        self.write(merged.to_arrow())

    def close(self):
        pass


class DuckDB:
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

    def read_all(self):
        return self.con.execute("SELECT * FROM ticks ORDER BY ts").fetch_arrow_table()

    def read_range(self, start, end):
        # Arrow timestamp[ns, UTC] becomes TIMESTAMPTZ (microseconds) in DuckDB.
        q = "SELECT * FROM ticks WHERE ts >= make_timestamp($1)::TIMESTAMPTZ AND ts < make_timestamp($2)::TIMESTAMPTZ ORDER BY ts"
        return self.con.execute(q, [start // 1000, end // 1000]).fetch_arrow_table()

    def read_columns(self, columns):
        return self.con.execute(f"SELECT {', '.join(columns)} FROM ticks ORDER BY ts").fetch_arrow_table()

    def upsert(self, table):
        self.con.register("incoming", table)
        self.con.execute("BEGIN")
        self.con.execute("DELETE FROM ticks WHERE trade_id IN (SELECT trade_id FROM incoming)")
        self.con.execute("INSERT INTO ticks SELECT * FROM incoming")
        self.con.execute("COMMIT")
        self.con.unregister("incoming")

    def close(self):
        self.con.close()


class ArcticDB:
    """ArcticDB with its LMDB backend (pandas in, pandas out; timed to Arrow)."""

    name = "arcticdb"

    def __init__(self, root):
        import arcticdb as adb

        self.ac = adb.Arctic(f"lmdb://{os.path.join(root, 'arctic')}?map_size=20GB")
        self.lib = self.ac.get_library("bench", create_if_missing=True)

    @staticmethod
    def _frame(table):
        return table.to_pandas().set_index("ts")

    @staticmethod
    def _arrow(df):
        return pa.Table.from_pandas(df.reset_index(), preserve_index=False)

    def write(self, table):
        self.lib.write("ticks", self._frame(table))

    def append(self, table):
        self.lib.append("ticks", self._frame(table))

    def read_all(self):
        return self._arrow(self.lib.read("ticks").data)

    def read_range(self, start, end):
        import pandas as pd

        rng = (pd.Timestamp(start, tz="UTC"), pd.Timestamp(end - 1, tz="UTC"))  # date_range is inclusive
        return self._arrow(self.lib.read("ticks", date_range=rng).data)

    def read_columns(self, columns):
        return self._arrow(self.lib.read("ticks", columns=[c for c in columns if c != "ts"]).data)

    def upsert(self, table):
        self.lib.update("ticks", self._frame(table))

    def close(self):
        pass


def run_steps(system, n, reps):
    """The common workload; every result checked. Inputs are made outside the timers."""
    results = {}
    table = bench.ticks(0, n)
    results["write_10m"], _ = bench.timed(lambda: system.write(table), reps["write"])
    blocks = [bench.ticks(n + k * BLOCK, n + (k + 1) * BLOCK) for k in range(reps["append"])]
    it = iter(blocks)
    results["append_100k"], _ = bench.timed(lambda: system.append(next(it)), reps["append"])
    total = n + reps["append"] * BLOCK
    del blocks, table

    results["read_all"], t = bench.timed(system.read_all, reps["read"])
    assert t.num_rows == total, (system.name, t.num_rows)
    ids = t.column("trade_id").to_numpy()
    assert ids[0] == 0 and ids[-1] == total - 1 and (np.diff(ids) == 1).all(), system.name

    lo = n // 2
    start, end = bench.T0 + lo * bench.STEP, bench.T0 + (lo + n // 100) * bench.STEP
    results["read_1pct"], t = bench.timed(lambda: system.read_range(start, end), reps["range"])
    got = t.column("trade_id").to_numpy()
    assert (got == np.arange(lo, lo + n // 100)).all(), (system.name, len(got))

    results["read_2_columns"], t = bench.timed(lambda: system.read_columns(["ts", "price"]), reps["read"])
    assert t.num_rows == total and set(t.column_names) == {"ts", "price"}, system.name

    update = bench.ticks(lo, lo + BLOCK, 1.0)
    results["upsert_100k"], _ = bench.timed(lambda: system.upsert(update), reps["upsert"])
    t = system.read_range(bench.T0 + lo * bench.STEP, bench.T0 + (lo + BLOCK) * bench.STEP)
    assert t.num_rows == BLOCK, (system.name, t.num_rows)
    assert t.column("price").equals(update.column("price")), f"{system.name}: upsert not applied"
    assert system.read_columns(["ts", "price"]).num_rows == total, f"{system.name}: upsert changed the row count"
    return results


def scale_check(binary, data, n, reps):
    """Flightstore alone at `n` rows: 1% range, last-N and append (pruning, not scanning)."""
    server = bench.flightstore(binary, os.path.join(data, f"scale-{n}"))
    s = FlightSystem(server)
    try:
        for k in range(0, n, 10_000_000):
            s.append(bench.ticks(k, min(n, k + 10_000_000)))
        lo = n // 2
        start, end = bench.T0 + lo * bench.STEP, bench.T0 + (lo + BLOCK) * bench.STEP
        out = {}
        out["read_1pct_of_10m"], t = bench.timed(lambda: s.read_range(start, end), reps["range"])
        assert t.num_rows == BLOCK
        out["last_1000"], t = bench.timed(lambda: s.read_last(1000), reps["range"])
        assert t.column("trade_id")[0].as_py() == n - 1000
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
    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    for ax, step in zip(axes.flat, STEPS):
        values = [results[s][step] * 1000 for s in systems]
        colors = ["tab:red" if s == "flightstore" else "tab:gray" for s in systems]
        ax.bar(range(len(systems)), values, color=colors)
        ax.set_xticks(range(len(systems)), systems, rotation=45, ha="right", fontsize=8)
        ax.set_title(step)
        ax.set_ylabel("ms (median, lower is better)")
        ax.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--binary", default="target/release/flightstore")
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--scale-rows", type=int, default=100_000_000, help="0 skips the scale check")
    p.add_argument("--systems", default="flightstore,pyarrow-memory,pyarrow-parquet,arcticdb,duckdb,polars")
    p.add_argument("--out", default="benches/compare/results")
    args = p.parse_args()
    reps = {"write": 3, "append": 50, "read": 5, "range": 20, "upsert": 11}
    wanted = args.systems.split(",")
    data = tempfile.mkdtemp(prefix="flightstore-compare-", dir=os.environ.get("BENCH_DIR"))
    makers = {
        "flightstore": lambda: FlightSystem(bench.flightstore(args.binary, os.path.join(data, "flightstore"))),
        "pyarrow-memory": lambda: FlightSystem(bench.memory_server()),
        "pyarrow-parquet": lambda: ParquetFiles(data),
        "arcticdb": lambda: ArcticDB(data),
        "duckdb": lambda: DuckDB(data),
        "polars": lambda: Polars(data),
    }
    results = {}
    try:
        for name in wanted:
            system = makers[name]()
            try:
                print(f"running {name} ...", flush=True)
                results[name] = run_steps(system, args.rows, reps)
            finally:
                system.close()
        scale = {}
        if args.scale_rows and "flightstore" in wanted:
            scale[str(args.rows)] = scale_check(args.binary, data, args.rows, reps)
            scale[str(args.scale_rows)] = scale_check(args.binary, data, args.scale_rows, reps)
    finally:
        shutil.rmtree(data, ignore_errors=True)

    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
    date = time.strftime("%Y-%m-%d")
    print(f"\n{args.rows:,} tick rows, medians in ms ({date}, {machine})")
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
    for rows, figures in scale.items():
        print(f"\nflightstore at {int(rows):,} rows: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in figures.items()))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "compare.json"), "w") as f:
        json.dump({"date": date, "machine": machine, "rows": args.rows, "results": results, "scale": scale}, f, indent=2)
    chart(results, os.path.join(args.out, "compare.png"), f"{args.rows:,} tick rows, {date}, {machine}")


if __name__ == "__main__":
    main()
