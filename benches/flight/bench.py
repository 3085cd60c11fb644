"""Flightstore over Flight vs a plain pyarrow Flight server holding the table in memory.

Both servers run as separate processes; this script is the client (pyarrow.flight).
Every step is timed the same way against both, results are checked, and each
Flightstore median is reported next to the baseline's as a ratio.

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


def ticks(start, stop, bump=0.0):
    ids = np.arange(start, stop, dtype=np.int64)
    return pa.table({
        "ts": pa.array(T0 + ids * STEP, pa.timestamp("ns", "UTC")),
        "price": 100.0 + (ids % 1000) * 0.01 + bump,
        "size": ((ids * 7) % 500).astype(np.float64),
        "side": pa.array(np.where(ids % 3 == 0, -1, 1).astype(np.int8)),
        "trade_id": ids,
    })


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


def flightstore(binary, data):
    port = free_port()
    return Server("flightstore", [binary, "serve", "--data", data, "--bind", f"127.0.0.1:{port}"], f"grpc://127.0.0.1:{port}")


def memory_server():
    port = free_port()
    here = os.path.dirname(os.path.abspath(__file__))
    return Server("pyarrow-memory", [sys.executable, os.path.join(here, "memory_server.py"), str(port)], f"grpc://127.0.0.1:{port}")


def put(client, item, table, mode="append"):
    request = {"collection": "bench", "item": item, "mode": mode}
    if mode == "upsert":
        request["dedup_on"] = ["trade_id"]
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
    assert t.column("trade_id")[0].as_py() == 0 and t.column("trade_id")[-1].as_py() == total - 1

    start, end = T0 + (n // 2) * STEP, T0 + (n // 2 + n // 100) * STEP
    results["read_1pct"], t = timed(lambda: get(c, start=start, end=end), reps["range"])
    assert t.num_rows == n // 100, (server.name, t.num_rows)
    assert t.column("trade_id")[0].as_py() == n // 2

    results["read_2_columns"], t = timed(lambda: get(c, columns=["ts", "price"]), reps["read"])
    assert t.num_columns == 2 and t.num_rows == total

    lo = n // 2
    results["upsert_100k"], _ = timed(lambda: put(c, "ticks", ticks(lo, lo + block, 1.0), "upsert"), reps["upsert"])
    t = get(c, start=T0 + lo * STEP, end=T0 + (lo + block) * STEP)
    assert t.num_rows == block, (server.name, t.num_rows)
    expected = 100.0 + (lo % 1000) * 0.01 + 1.0
    assert abs(t.column("price")[0].as_py() - expected) < 1e-9, "upsert not applied"
    assert get(c, columns=["trade_id"]).num_rows == total, "upsert changed the row count"
    return results


def upload_rss(binary, data, gigabytes):
    """Peak server RSS while one DoPut streams `gigabytes` of ticks."""
    server = flightstore(binary, data)
    total = int(gigabytes * (1 << 30) / 33)
    schema = ticks(0, 1).schema
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
    p.add_argument("--out", default="target/bench-flight.json")
    args = p.parse_args()
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
    print(f"\n{args.rows:,} tick rows; medians; ratio = flightstore / in-memory pyarrow server\n")
    print(f"{'step':<16}{'flightstore':>14}{'in-memory':>14}{'ratio':>9}")
    for step in ["write_10m", "append_100k", "read_all", "read_1pct", "read_2_columns", "upsert_100k"]:
        print(f"{step:<16}{fs[step] * 1000:>11.1f} ms{base[step] * 1000:>11.1f} ms{fs[step] / base[step]:>9.2f}")
    if "upload" in results:
        u = results["upload"]
        print(f"\nupload {u['gigabytes']} GB ({u['rows']:,} rows) in {u['seconds']:.1f} s: server peak RSS {u['peak_rss_mb']:.0f} MB")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"rows": args.rows, "results": results, "date": time.strftime("%Y-%m-%d")}, f, indent=2)


if __name__ == "__main__":
    main()
