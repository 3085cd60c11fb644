"""The data rules of issue #12 against same-run baselines, in one run.

    benches/rules/run.sh                  # builds the release server, runs this
    benches/rules/run.sh --reps 7

The client is pyarrow.flight in this process; the server is the release binary on
127.0.0.1:0 with a temporary data root. Each comparison alternates its two sides, warms up
first and reports medians; every result is checked (row counts, values).

1. multi_item  10 items x 1M realistic ticks (benches/flight's generator: jittered 1 ms
               steps, random-walk prices, exponential sizes; each item its own seed
               offset so items interleave): one DoGet {"items": [...]} in time order,
               against the same rows read item by item (10 DoGets, back to back).
2. grid        a dense sensor series: 1,000,000 one-second slots, 5% of them missing,
               plus off-grid readings between slots (10% of slots), random-walk values:
               a DoGet with "grid": {"freq": "1s", "fill": "previous"} over the slots,
               against the plain DoGet of the same range.
3. validation  10M realistic ticks in one DoPut to a new item, with the rules
               {"not_null": ["price"], "checks": ["price > 0", "size > 0",
               "side IN (-1, 1)"]} (three checks), against the same upload without rules.

Prints a markdown table and writes <out>/rules.json.
"""
import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)
import pyarrow.flight as flight

HERE = os.path.dirname(os.path.abspath(__file__))


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load(os.path.join(HERE, "..", "flight", "bench.py"), "flightstore_flight_bench")
sqlbench = _load(os.path.join(HERE, "..", "sql", "bench.py"), "flightstore_sql_bench")

C = "rules"
TARGETS = {"multi_item": 1.5, "grid": 1.5, "validation": 1.2}


def put(client, request, table, chunk=65536):
    descriptor = flight.FlightDescriptor.for_command(json.dumps({"collection": C, **request}).encode())
    writer, reader = client.do_put(descriptor, table.schema)
    writer.write_table(table, max_chunksize=chunk)
    writer.done_writing()
    receipt = json.loads(reader.read().to_pybytes())
    writer.close()
    return receipt


def get(client, request):
    return client.do_get(flight.Ticket(json.dumps({"collection": C, **request}).encode())).read_all()


def compact(client, item):
    # Persist the log's tail and merge small files, so both sides read the same files.
    body = json.dumps({"collection": C, "item": item}).encode()
    list(client.do_action(flight.Action("compact", body)))


def alternate(a, b, reps):
    """Medians of `a` and `b` (seconds), timed alternately after one warm-up each."""
    a(), b()
    ta, tb = [], []
    for _ in range(reps):
        for fn, times in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def multi_item(client, reps, rows):
    items = [f"m{n}" for n in range(10)]
    for n, item in enumerate(items):
        t = gen.ticks(n * 7, n * 7 + rows)  # a different stretch of the generator per item
        ts = pa.array(np.asarray(t["ts"].cast(pa.int64())) - n * 7 * gen.STEP, pa.timestamp("ns", "UTC"))
        put(client, {"item": item}, t.set_column(0, "ts", ts))
        compact(client, item)

    def together():
        out = get(client, {"items": items})
        assert out.num_rows == rows * len(items), out.num_rows
        return out

    def one_by_one():
        total = sum(get(client, {"item": i}).num_rows for i in items)
        assert total == rows * len(items)

    merged = together()
    ts = np.asarray(merged["ts"].cast(pa.int64()))
    assert (np.diff(ts) >= 0).all(), "not in time order"
    counts = merged["_item"].to_pandas().value_counts()
    assert all(counts[i] == rows for i in items), counts
    for item in items[:2]:  # each item's rows, in order, as read alone
        mine = merged.filter(pa.compute.equal(merged["_item"].cast(pa.string()), item))
        alone = get(client, {"item": item})
        assert mine.drop_columns(["_item"]).equals(alone), item
    return alternate(together, one_by_one, reps)


def grid(client, reps, slots):
    t0 = 1_700_000_000 * 10**9
    rng = np.random.default_rng(12)
    keep = rng.random(slots) >= 0.05
    on_grid = t0 + np.arange(slots, dtype=np.int64)[keep] * 10**9
    off = t0 + np.sort(rng.choice(slots, slots // 10, replace=False)).astype(np.int64) * 10**9 + 500_000_000
    ts = np.sort(np.concatenate([on_grid, off]))
    value = 20.0 + np.cumsum(rng.normal(0.0, 0.05, len(ts)))
    humidity = np.clip(50 + np.cumsum(rng.normal(0.0, 0.1, len(ts))), 0, 100)
    table = pa.table({"ts": pa.array(ts, pa.timestamp("ns", "UTC")), "temperature": value, "humidity": humidity})
    put(client, {"item": "sensor"}, table)
    compact(client, "sensor")
    span = {"item": "sensor", "start": t0, "end": t0 + slots * 10**9}

    def dense():
        out = get(client, {**span, "grid": {"freq": "1s", "fill": "previous"}})
        assert out.num_rows == slots, out.num_rows
        return out

    def plain():
        out = get(client, span)
        assert out.num_rows == len(ts), out.num_rows

    out = dense()
    assert out["temperature"].null_count == 0
    return alternate(dense, plain, reps)


def validation(client, reps, rows):
    table = gen.ticks(0, rows)
    rules = {"not_null": ["price"], "checks": ["price > 0", "size > 0", "side IN (-1, 1)"]}
    n = iter(range(10**6))

    def checked():
        r = put(client, {"item": f"v{next(n)}", "validation": rules}, table)
        assert r["rows_written"] == rows, r

    def plain():
        r = put(client, {"item": f"p{next(n)}"}, table)
        assert r["rows_written"] == rows, r

    return alternate(checked, plain, reps)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--item-rows", type=int, default=1_000_000)
    p.add_argument("--grid-slots", type=int, default=1_000_000)
    p.add_argument("--write-rows", type=int, default=10_000_000)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args()
    gen.set_data("realistic")
    data = tempfile.mkdtemp(prefix="flightstore-rules-bench-")
    server = sqlbench.Server(args.binary, data)
    results = {}
    try:
        for name, fn, arg, what in (
            ("multi_item", multi_item, args.item_rows, "10 items x rows, one DoGet / 10 DoGets"),
            ("grid", grid, args.grid_slots, "grid of N 1 s slots / plain read of the range"),
            ("validation", validation, args.write_rows, "write with 3 checks + not_null / plain write"),
        ):
            ours, base = fn(server.client, args.reps, arg)
            results[name] = {"ms": ours * 1e3, "baseline_ms": base * 1e3, "ratio": ours / base,
                             "target": TARGETS[name], "what": what, "n": arg}
            print(f"{name}: {ours*1e3:.0f} ms vs {base*1e3:.0f} ms = {ours/base:.2f}x", file=sys.stderr)
        problems = server.problems()
    finally:
        server.stop()
    print("| step | Flightstore (ms) | baseline (ms) | ratio | target |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} ({r['what']}) | {r['ms']:.0f} | {r['baseline_ms']:.0f} | {r['ratio']:.2f} | <= {r['target']} |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "rules.json"), "w") as f:
        json.dump({"machine": platform.platform(), "cpus": os.cpu_count(),
                   "date": time.strftime("%Y-%m-%d %H:%M:%S"), "reps": args.reps,
                   "results": results, "server_problems": problems}, f, indent=2)


if __name__ == "__main__":
    main()
