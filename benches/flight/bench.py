"""Flightstore over Flight vs a plain pyarrow Flight server holding the table in memory.

Both servers run as separate processes; this script is the client (pyarrow.flight).
Every step is timed the same way against both, results are checked, and each
Flightstore median is reported next to the baseline's as a ratio.

The rows come from ticks(start, stop), one of the data sets in DATASETS below
(--data regular|realistic|symbols|sensors, default realistic; seeded, so every run
makes the same rows). benches/compare/compare.py imports this module for the
generator, the servers and the timing.

    benches/flight/run.sh            # builds the release server, makes the venv, runs this
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

T0 = 1_704_067_200_000_000_000  # 2024-01-01
STEP = 1_000_000  # a tick per millisecond
BATCH = 65_536
SEED = 20_240_101

# The data sets (--data). Row i of every set is addressable: ts_at(i) and key i are the
# same whether the row comes from the full table or from a block ticks(a, b) with
# a <= i < b, so appended blocks continue the table and upsert blocks land on stored rows.
DATASETS = {
    "regular": "ticks exactly 1 ms apart; price, size and side cycle with the row index "
               "(ts, price f64, size f64, side i8, trade_id i64)",
    "realistic": "ticks 1 ms apart with uniform +-0.4 ms jitter at microsecond resolution "
                 "(strictly increasing); price f64 a geometric random walk "
                 "100*exp(cumsum(N(0, 1e-4))) restarted at each generated block, size f64 "
                 "exponential (mean 100) rounded to 0.01, side i8 random -1/1, trade_id i64 "
                 "sequential",
    "symbols": "realistic plus symbol (utf8): 500 tickers with zipf-like frequencies "
               "(weight 1/rank^1.1)",
    "sensors": "IoT rows with realistic timestamps: seq i64 (sequence number) plus 20 "
               "readings: 8 temperatures f64 (random walks, 0.01), 4 humidities f64 "
               "(bounded walks, 0.1), pressure f64 (walk, 0.1), voltage f64 (noise, "
               "0.001), 2 counters i64 (monotone), 4 status codes i32 (0 mostly, 1-5 rare)",
}
DATA = "realistic"


def set_data(name):
    """Chooses the data set ticks() and ts_at() make (a DATASETS key)."""
    global DATA
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: {sorted(DATASETS)}")
    DATA = name


def key_column():
    """The int64 column holding the row index (the upsert key)."""
    return "seq" if DATA == "sensors" else "trade_id"


def value_column():
    """The float64 column the two-column read takes (with ts) and upserts change."""
    return "temp_0" if DATA == "sensors" else "price"


_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _hash(ids, stream):
    """splitmix64 of (row index, stream): the same u64 for a row whatever block holds it."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) * _GAMMA
        z += np.uint64((SEED * 1_000_003 + stream * 7_919) & 0xFFFF_FFFF_FFFF_FFFF)
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
    return z


def _uniform(ids, stream):
    """Uniform [0, 1) per row index."""
    return (_hash(ids, stream) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _jitter_ns(ids):
    """Uniform integer microseconds in [-400, 400], as nanoseconds."""
    return (np.floor(_uniform(ids, 1) * 801).astype(np.int64) - 400) * 1000


def ts_at(i):
    """Timestamp (ns) of row i of the current data set."""
    if DATA == "regular":
        return T0 + i * STEP
    return int(T0 + i * STEP + _jitter_ns(np.array([i], dtype=np.int64))[0])


def _rng(start, stop, bump):
    # Values that need not be addressable per row: one stream per generated block.
    return np.random.default_rng([SEED, start, stop, int(round(bump * 1000)) & 0xFFFF_FFFF])


def _regular(start, stop, bump):
    ids = np.arange(start, stop, dtype=np.int64)
    return pa.table({
        "ts": pa.array(T0 + ids * STEP, pa.timestamp("ns", "UTC")),
        "price": 100.0 + (ids % 1000) * 0.01 + bump,
        "size": ((ids * 7) % 500).astype(np.float64),
        "side": pa.array(np.where(ids % 3 == 0, -1, 1).astype(np.int8)),
        "trade_id": ids,
    })


def _ts(ids):
    ts = T0 + ids * STEP + _jitter_ns(ids)  # steps of 1 ms +- 0.8 ms: strictly increasing
    return pa.array(ts, pa.timestamp("ns", "UTC"))


def _realistic(start, stop, bump):
    ids = np.arange(start, stop, dtype=np.int64)
    rng = _rng(start, stop, bump)
    n = len(ids)
    price = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-4, n))) + bump
    size = np.maximum(np.round(rng.exponential(100.0, n), 2), 0.01)
    side = np.where(_hash(ids, 2) & np.uint64(1), 1, -1).astype(np.int8)
    return pa.table({"ts": _ts(ids), "price": price, "size": size, "side": side, "trade_id": ids})


_TICKERS = None


def _tickers():
    """500 distinct made-up tickers and the cumulative zipf-like weights."""
    global _TICKERS
    if _TICKERS is None:
        rng = np.random.default_rng([SEED, 500])
        letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        names = []
        while len(names) < 500:
            name = "".join(rng.choice(letters, rng.integers(1, 6)))
            if name not in names:
                names.append(name)
        weights = 1.0 / np.arange(1, 501) ** 1.1
        _TICKERS = pa.array(names, pa.string()), np.cumsum(weights) / weights.sum()
    return _TICKERS


def _symbols(start, stop, bump):
    table = _realistic(start, stop, bump)
    names, cdf = _tickers()
    ids = np.arange(start, stop, dtype=np.int64)
    codes = np.minimum(np.searchsorted(cdf, _uniform(ids, 3), "right"), len(cdf) - 1)
    return table.add_column(1, "symbol", names.take(pa.array(codes)))


def _walk(rng, n, start_value, step, decimals):
    return np.round(start_value + np.cumsum(rng.normal(0.0, step, n)), decimals)


def _sensors(start, stop, bump):
    ids = np.arange(start, stop, dtype=np.int64)
    rng = _rng(start, stop, bump)
    n = len(ids)
    cols = {"ts": _ts(ids), "seq": ids}
    for k in range(8):
        cols[f"temp_{k}"] = _walk(rng, n, 18.0 + 2 * k + bump, 0.001, 2)
    for k in range(4):  # a slow cycle plus noise
        cycle = np.sin(2 * np.pi * ids / (3_600_000 * (k + 1)))
        cols[f"humidity_{k}"] = np.round(45.0 + 5 * k + 10 * cycle + rng.normal(0.0, 0.3, n), 1)
    cols["pressure"] = _walk(rng, n, 1013.0, 0.002, 1)
    cols["voltage"] = np.round(3.3 + rng.normal(0.0, 0.01, n), 3)
    for k in range(2):
        cols[f"counter_{k}"] = start * (k + 1) * 2 + np.cumsum(rng.poisson(k + 1, n)).astype(np.int64)
    for k in range(4):
        status = np.where(rng.random(n) < 0.995, 0, rng.integers(1, 6, n)).astype(np.int32)
        cols[f"status_{k}"] = status
    return pa.table(cols)


def ticks(start, stop, bump=0.0):
    """Rows [start, stop) of the current data set; `bump` makes an update of those rows
    (same ts and key, other values)."""
    return {"regular": _regular, "realistic": _realistic, "symbols": _symbols, "sensors": _sensors}[DATA](start, stop, bump)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url):
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            c = flight.connect(url)
            c.wait_for_available(timeout=1)
            return c
        except flight.FlightUnauthenticatedError:
            return c  # up, and asking for a token
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


class Server:
    def __init__(self, name, cmd, url, env=None):
        self.name, self.url = name, url
        self.proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
        self.client = wait_ready(url)

    def peak_rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        return int(m.group(1)) / 1024

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def flightstore(binary, data, *flags, name="flightstore"):
    port = free_port()
    cmd = [binary, "serve", "--data", data, "--bind", f"127.0.0.1:{port}", *flags]
    return Server(name, cmd, f"grpc://127.0.0.1:{port}")


def memory_server():
    port = free_port()
    here = os.path.dirname(os.path.abspath(__file__))
    return Server("pyarrow-memory", [sys.executable, os.path.join(here, "memory_server.py"), str(port)], f"grpc://127.0.0.1:{port}")


def put(client, item, table, mode="append"):
    request = {"collection": "bench", "item": item, "mode": mode}
    if mode == "upsert":
        request["dedup_on"] = [key_column()]
    descriptor = flight.FlightDescriptor.for_command(json.dumps(request).encode())
    writer, reader = client.do_put(descriptor, table.schema)
    writer.write_table(table, max_chunksize=BATCH)
    writer.done_writing()
    reader.read()
    writer.close()


def get(client, **request):
    request = {"collection": "bench", "item": "ticks", **request}
    return client.do_get(flight.Ticket(json.dumps(request).encode())).read_all()


def timed(fn, reps):
    times = []
    out = None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def workload(server, n, reps):
    """The steps, timed; each result checked."""
    c = server.client
    key = key_column()
    table = ticks(0, n)
    results = {}
    results["write_10m"], _ = timed(lambda: put(c, "written", table, "overwrite"), reps["write"])
    put(c, "ticks", table, "overwrite")

    block = 100_000
    nxt = [n]

    def append():
        put(c, "ticks", ticks(nxt[0], nxt[0] + block))
        nxt[0] += block

    results["append_100k"], _ = timed(append, reps["append"])
    total = nxt[0]

    results["read_all"], t = timed(lambda: get(c), reps["read"])
    assert t.num_rows == total, (server.name, t.num_rows, total)
    assert t.column(key)[0].as_py() == 0 and t.column(key)[-1].as_py() == total - 1

    start, end = ts_at(n // 2), ts_at(n // 2 + n // 100)
    results["read_1pct"], t = timed(lambda: get(c, start=start, end=end), reps["range"])
    assert t.num_rows == n // 100, (server.name, t.num_rows)
    assert t.column(key)[0].as_py() == n // 2

    results["read_2_columns"], t = timed(lambda: get(c, columns=["ts", value_column()]), reps["read"])
    assert t.num_columns == 2 and t.num_rows == total

    lo = n // 2
    update = ticks(lo, lo + block, 1.0)
    results["upsert_100k"], _ = timed(lambda: put(c, "ticks", update, "upsert"), reps["upsert"])
    t = get(c, start=ts_at(lo), end=ts_at(lo + block))
    assert t.num_rows == block, (server.name, t.num_rows)
    assert t.column(value_column()).equals(update.column(value_column())), "upsert not applied"
    assert get(c, columns=[key]).num_rows == total, "upsert changed the row count"
    return results


def upload_rss(binary, data, gigabytes):
    """Peak server RSS while one DoPut streams `gigabytes` of ticks."""
    server = flightstore(binary, data)
    sample = ticks(0, 10_000)
    total = int(gigabytes * (1 << 30) / (sample.nbytes / sample.num_rows))
    schema = sample.schema
    descriptor = flight.FlightDescriptor.for_path("bench", "big")
    writer, reader = server.client.do_put(descriptor, schema)
    sent = 0
    t = time.perf_counter()
    while sent < total:
        k = min(1_000_000, total - sent)
        writer.write_table(ticks(sent, sent + k), max_chunksize=BATCH)
        sent += k
    writer.done_writing()
    receipt = json.loads(reader.read().to_pybytes())
    writer.close()
    seconds = time.perf_counter() - t
    assert receipt["rows_written"] == total, receipt
    rss = server.peak_rss_mb()
    server.stop()
    return {"gigabytes": gigabytes, "rows": total, "seconds": seconds, "peak_rss_mb": rss}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--binary", default="target/release/flightstore")
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--upload-gb", type=float, default=5.0)
    p.add_argument("--data", choices=sorted(DATASETS), default="realistic", help="the data set (see DATASETS)")
    p.add_argument("--out", default="target/bench-flight.json")
    args = p.parse_args()
    set_data(args.data)
    reps = {"write": 3, "append": 50, "read": 5, "range": 20, "upsert": 5}

    data = tempfile.mkdtemp(prefix="flightstore-bench-", dir=os.environ.get("BENCH_DIR"))
    results = {}
    try:
        for make in (lambda: flightstore(args.binary, os.path.join(data, "store")), memory_server):
            server = make()
            try:
                results[server.name] = workload(server, args.rows, reps)
                results[server.name]["peak_rss_mb"] = server.peak_rss_mb()
            finally:
                server.stop()
        shutil.rmtree(os.path.join(data, "store"), ignore_errors=True)
        if args.upload_gb > 0:
            results["upload"] = upload_rss(args.binary, os.path.join(data, "upload"), args.upload_gb)
    finally:
        shutil.rmtree(data, ignore_errors=True)

    fs, base = results["flightstore"], results["pyarrow-memory"]
    print(f"\n{args.rows:,} rows of {args.data} data; medians; ratio = flightstore / in-memory pyarrow server\n")
    print(f"{'step':<16}{'flightstore':>14}{'in-memory':>14}{'ratio':>9}")
    for step in ["write_10m", "append_100k", "read_all", "read_1pct", "read_2_columns", "upsert_100k"]:
        print(f"{step:<16}{fs[step] * 1000:>11.1f} ms{base[step] * 1000:>11.1f} ms{fs[step] / base[step]:>9.2f}")
    if "upload" in results:
        u = results["upload"]
        print(f"\nupload {u['gigabytes']} GB ({u['rows']:,} rows) in {u['seconds']:.1f} s: server peak RSS {u['peak_rss_mb']:.0f} MB")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"rows": args.rows, "data": {"name": args.data, "description": DATASETS[args.data]}, "results": results, "date": time.strftime("%Y-%m-%d")}, f, indent=2)


if __name__ == "__main__":
    main()
