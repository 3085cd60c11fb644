#!/usr/bin/env python3
"""`flightstore get` / `flightstore put` (the command line) against the same transfers
done with pyarrow.flight, on one server this script starts.

    python benches/clients/cli_bench.py target/release/flightstore [--rows 10000000] [--reps 5]

Steps, each repeated `--reps` times, CLI and pyarrow alternated (the order flips every
repetition); medians in seconds and the ratio CLI / pyarrow (DESIGN target <= 1.30):
- get: the whole item (10M rows) to a Parquet file.
  CLI: `flightstore get C/ITEM -o out.parquet` (the process, start to exit).
  pyarrow: DoGet of a ReadRequest ticket, batches written with pyarrow.parquet.ParquetWriter.
- put: that Parquet file to a new item.
  CLI: `flightstore put C/ITEM file.parquet`.
  pyarrow: DoPut (WriteRequest command) of the file's batches read with pyarrow.parquet.
Data: trades with jittered timestamps (ns, UTC), a random-walk float64 price, an int64
size and an int8 side (3 values).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq

TARGET = 1.30
COLLECTION = "BENCH"


def ticks(n: int, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    steps = rng.integers(1_000_000, 200_000_000, n)  # 1 ms .. 200 ms, jittered
    ts = 1_704_205_800_000_000_000 + np.cumsum(steps)
    return pa.table({
        "ts": pa.array(ts, type=pa.timestamp("ns", tz="UTC")),
        "price": np.round(100 + np.cumsum(rng.normal(0, 0.02, n)), 4),
        "size": rng.integers(1, 1000, n),
        "side": rng.integers(0, 3, n).astype(np.int8),
    })


def start_server(binary: str, data: str, extra=()):
    proc = subprocess.Popen([binary, "serve", "--data", data, "--bind", "127.0.0.1:0", *extra],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"addr=(\S+)", line)
        if m:
            threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
            return proc, f"grpc://{m.group(1)}"
    proc.kill()
    raise RuntimeError("the server did not report its address")


def action(client, kind: str, body: dict):
    return [json.loads(r.body.to_pybytes() or b"null")
            for r in client.do_action(flight.Action(kind, json.dumps(body).encode()))]


CLI_TIMEOUT = 300.0


def cli(binary: str, url: str, *args) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTSTORE_")}
    t = time.perf_counter()
    try:
        done = subprocess.run([binary, "--url", url, *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=CLI_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"flightstore {' '.join(map(str, args))}: no result in {CLI_TIMEOUT:.0f} s (hung)")
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"flightstore {args}: {done.stderr}")
    return elapsed


def py_get(client, item: str, out: str) -> float:
    t = time.perf_counter()
    ticket = flight.Ticket(json.dumps({"collection": COLLECTION, "item": item}).encode())
    reader = client.do_get(ticket)
    writer = None
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            break
        batch = chunk.data
        if writer is None:
            writer = pq.ParquetWriter(out, batch.schema)
        writer.write_batch(batch)
    if writer is not None:
        writer.close()
    return time.perf_counter() - t


def py_put(client, item: str, path: str) -> float:
    t = time.perf_counter()
    pf = pq.ParquetFile(path)
    req = {"collection": COLLECTION, "item": item, "mode": "append"}
    writer, meta = client.do_put(flight.FlightDescriptor.for_command(json.dumps(req).encode()),
                                 pf.schema_arrow)
    for batch in pf.iter_batches():
        writer.write_batch(batch)
    writer.done_writing()
    receipt = meta.read()
    writer.close()
    elapsed = time.perf_counter() - t
    if receipt is None:
        raise RuntimeError("DoPut returned no receipt")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", help="path of the flightstore binary")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--endpoint-rows", type=int, default=None,
                    help="the server's --endpoint-rows (default: the server's own)")
    ap.add_argument("--timeout", type=float, default=CLI_TIMEOUT, help="seconds a CLI run may take")
    args = ap.parse_args()
    globals()["CLI_TIMEOUT"] = args.timeout

    work = tempfile.mkdtemp(prefix="flightstore-clibench-")
    extra = ("--endpoint-rows", str(args.endpoint_rows)) if args.endpoint_rows else ()
    proc, url = start_server(args.binary, os.path.join(work, "data"), extra)
    client = flight.connect(url)
    try:
        print(f"server {url}, data in {work}; {args.rows:,} rows, {args.reps} repetitions", flush=True)
        src = os.path.join(work, "ticks.parquet")
        t = time.perf_counter()
        pq.write_table(ticks(args.rows), src)
        print(f"made {src} ({os.path.getsize(src) / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s",
              flush=True)
        cli(args.binary, url, "put", f"{COLLECTION}/SRC", src)
        info = action(client, "item_info", {"collection": COLLECTION, "item": "SRC"})[0]
        assert info["rows"] == args.rows, info
        fi = client.get_flight_info(flight.FlightDescriptor.for_command(
            json.dumps({"collection": COLLECTION, "item": "SRC"}).encode()))
        print(f"the item: {info['files']} files, a full read has {len(fi.endpoints)} endpoint(s)", flush=True)

        times = {k: [] for k in ("get cli", "get pyarrow", "put cli", "put pyarrow")}
        for rep in range(args.reps):
            order = ("cli", "pyarrow") if rep % 2 == 0 else ("pyarrow", "cli")
            for who in order:
                out = os.path.join(work, f"get-{who}.parquet")
                if who == "cli":
                    times["get cli"].append(cli(args.binary, url, "get", f"{COLLECTION}/SRC", "-o", out))
                else:
                    times["get pyarrow"].append(py_get(client, "SRC", out))
                rows = pq.read_metadata(out).num_rows
                assert rows == args.rows, (who, rows)
                os.remove(out)
            for who in order:
                item = f"PUT-{who}-{rep}"
                if who == "cli":
                    times["put cli"].append(cli(args.binary, url, "put", f"{COLLECTION}/{item}", src))
                else:
                    times["put pyarrow"].append(py_put(client, item, src))
                got = action(client, "item_info", {"collection": COLLECTION, "item": item})[0]["rows"]
                assert got == args.rows, (who, got)
                action(client, "delete_item", {"collection": COLLECTION, "item": item})
            action(client, "vacuum", {"collection": COLLECTION})
            print(f"rep {rep + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)

        print()
        print(f"{'step':<6} {'cli s':>8} {'pyarrow s':>10} {'ratio':>7}  (target <= {TARGET:.2f})")
        worst = 0.0
        for step in ("get", "put"):
            c = statistics.median(times[f"{step} cli"])
            p = statistics.median(times[f"{step} pyarrow"])
            ratio = c / p
            worst = max(worst, ratio)
            rate = args.rows / c / 1e6
            print(f"{step:<6} {c:>8.2f} {p:>10.2f} {ratio:>7.2f}  {'ok' if ratio <= TARGET else 'OVER'}"
                  f"  (cli {rate:.1f} M rows/s)")
        return 0 if worst <= TARGET else 1
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=60)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(2)
