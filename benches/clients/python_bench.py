#!/usr/bin/env python3
"""The `flightstore` Python package against raw pyarrow.flight, on the same server.

    python benches/clients/python_bench.py --url grpc://127.0.0.1:8815
    python benches/clients/python_bench.py --bin target/release/flightstore   # starts one

Steps, alternated package / raw in one run (the order flips every repetition), each
repeated `--reps` times; medians in ms and the ratio package / raw (target <= 1.10):
- append 100k rows of a DataFrame (each after the item's end, as a live feed does);
- read a 1% range (10k rows) of a 1M-row item, as a DataFrame and as an Arrow table.
Data: trades with jittered timestamps (UTC), a random-walk price, sizes and an int8 side.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.flight as flight

import flightstore

ITEM_ROWS = 1_000_000
APPEND_ROWS = 100_000
RANGE_ROWS = ITEM_ROWS // 100


def trades(n: int, start_ns: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    steps = rng.integers(1_000_000, 200_000_000, n)
    ts = start_ns + np.cumsum(steps) - steps[0]
    return pd.DataFrame(
        {
            "price": np.round(100 + np.cumsum(rng.normal(0, 0.05, n)), 4),
            "size": rng.integers(1, 1000, n),
            "side": rng.choice(np.array([-1, 1], dtype=np.int8), n),
        },
        index=pd.DatetimeIndex(pd.to_datetime(ts, utc=True), name="ts"),
    )


def start_server(binary: str):
    data = tempfile.mkdtemp(prefix="flightstore-pybench-")
    proc = subprocess.Popen([binary, "serve", "--data", data, "--bind", "127.0.0.1:0"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"addr=(\S+)", line or "")
        if m:
            threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
            return proc, f"grpc://{m.group(1)}"
        if not line:
            break
    proc.kill()
    raise SystemExit("the server did not report its address")


class Raw:
    """What a pyarrow.flight user writes by hand."""

    def __init__(self, url: str):
        self.client = flight.connect(url)

    def append(self, collection: str, item: str, df: pd.DataFrame) -> dict:
        table = pa.Table.from_pandas(df)
        writer, reader = self.client.do_put(flight.FlightDescriptor.for_path(collection, item), table.schema)
        writer.write_table(table)
        writer.done_writing()
        receipt = json.loads(reader.read().to_pybytes())
        writer.close()
        return receipt

    def read(self, collection: str, item: str, start: int, end: int) -> pa.Table:
        ticket = flight.Ticket(json.dumps({"collection": collection, "item": item, "start": start, "end": end}).encode())
        return self.client.do_get(ticket).read_all()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running server")
    where.add_argument("--bin", help="a flightstore binary to start on a temporary folder")
    parser.add_argument("--reps", type=int, default=41, help="repetitions of each step (default 41)")
    parser.add_argument("--json", help="write the results to this file too")
    args = parser.parse_args()

    proc, url = start_server(args.bin) if args.bin else (None, args.url)
    try:
        store = flightstore.connect(url)
        raw = Raw(url)
        name = f"BENCH{uuid.uuid4().hex[:8]}"
        coll = store.collection(name)
        t0 = pd.Timestamp("2024-01-02", tz="UTC").value

        # The 1M-row item both read, written once.
        big = trades(ITEM_ROWS, t0, seed=1)
        coll.write("big", big)
        item = coll.item("big")
        starts = big.index.asi8

        # Appends go to two items (one per client), each after its own end.
        next_start = {"pkg": t0, "raw": t0}
        samples = {k: [] for k in ("append 100k", "read 1% (pandas)", "read 1% (arrow)")}
        raw_samples = {k: [] for k in samples}
        rng = np.random.default_rng(2)
        for rep in range(args.reps):
            frames = {}
            for who in ("pkg", "raw"):
                df = trades(APPEND_ROWS, next_start[who], seed=100 + rep)
                next_start[who] = int(df.index.asi8[-1]) + 1_000_000_000
                frames[who] = df
            i = int(rng.integers(0, ITEM_ROWS - RANGE_ROWS))
            start, end = int(starts[i]), int(starts[i + RANGE_ROWS])
            steps = {
                "append 100k": (lambda: coll.append("feed-pkg", frames["pkg"]),
                                lambda: raw.append(name, "feed-raw", frames["raw"])),
                "read 1% (pandas)": (lambda: item.to_pandas(start=start, end=end),
                                     lambda: raw.read(name, "big", start, end).to_pandas()),
                "read 1% (arrow)": (lambda: item.to_arrow(start=start, end=end),
                                    lambda: raw.read(name, "big", start, end)),
            }
            for step, (package_fn, raw_fn) in steps.items():
                order = [(samples, package_fn), (raw_samples, raw_fn)]
                for target, fn in order if rep % 2 == 0 else reversed(order):
                    target[step].append(timed(fn))

        # The two clients read the same rows.
        a = item.to_pandas(start=start, end=end)
        b = raw.read(name, "big", start, end).to_pandas()
        pd.testing.assert_frame_equal(a, b)
        assert len(a) == RANGE_ROWS

        results = {}
        print(f"{'step':<20} {'package ms':>11} {'raw ms':>8} {'ratio':>6}   ({args.reps} reps, medians)")
        for step in samples:
            pkg, base = statistics.median(samples[step][1:]), statistics.median(raw_samples[step][1:])
            results[step] = {"package_ms": pkg, "raw_ms": base, "ratio": pkg / base}
            print(f"{step:<20} {pkg:>11.2f} {base:>8.2f} {pkg / base:>6.2f}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        store.delete_collection(name)
        store.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
