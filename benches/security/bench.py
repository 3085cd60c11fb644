"""The cost of authentication: the same calls against two release servers on the same
data, one without an auth file and one with (every call carries a bearer token that the
server hashes and looks up), alternated call by call so both see the same machine load.

Measured: a 100k-row append (realistic ticks: jittered timestamps, random-walk prices)
and a 1% range read of a 1M-row item. Reported: medians and the ratio with/without auth.

    benches/security/run.sh          # builds the release server, runs this
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import pyarrow.flight as flight

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "flight"))
import bench  # noqa: E402  (the data generator and server runner of benches/flight)


def put(client, options, item, table):
    request = {"collection": "bench", "item": item}
    descriptor = flight.FlightDescriptor.for_command(json.dumps(request).encode())
    writer, reader = client.do_put(descriptor, table.schema, options=options)
    writer.write_table(table, max_chunksize=bench.BATCH)
    writer.done_writing()
    reader.read()
    writer.close()


def get(client, options, **request):
    request = {"collection": "bench", "item": "ticks", **request}
    return client.do_get(flight.Ticket(json.dumps(request).encode()), options=options).read_all()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=os.environ.get("FLIGHTSTORE_BIN", "target/release/flightstore"))
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args()
    bench.set_data("realistic")
    tmp = tempfile.mkdtemp(prefix="flightstore-auth-bench-")
    auth_file = os.path.join(tmp, "auth.json")
    token = subprocess.run(
        [args.binary, "token", "create", "--auth-file", auth_file, "--name", "bench", "--grant", "bench:write"],
        check=True, capture_output=True, text=True).stdout.strip()
    servers = {
        "no-auth": (bench.flightstore(args.binary, os.path.join(tmp, "a"), name="no-auth"), flight.FlightCallOptions()),
        "auth": (bench.flightstore(args.binary, os.path.join(tmp, "b"), "--auth-file", auth_file, name="auth"),
                 flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])),
    }
    try:
        base = bench.ticks(0, args.rows)
        for server, options in servers.values():
            put(server.client, options, "ticks", base)
        block = 100_000
        times = {name: {"append_100k": [], "read_1pct": []} for name in servers}
        start, end = bench.ts_at(args.rows // 2), bench.ts_at(args.rows // 2 + args.rows // 100)
        nxt = args.rows
        for rep in range(args.reps):
            table = bench.ticks(nxt, nxt + block)
            nxt += block
            order = list(servers.items()) if rep % 2 == 0 else list(reversed(servers.items()))
            for name, (server, options) in order:
                t = time.perf_counter()
                put(server.client, options, "appended", table)
                times[name]["append_100k"].append(time.perf_counter() - t)
                t = time.perf_counter()
                got = get(server.client, options, start=start, end=end)
                times[name]["read_1pct"].append(time.perf_counter() - t)
                assert got.num_rows == args.rows // 100, (name, got.num_rows)
        results = {}
        for step in ["append_100k", "read_1pct"]:
            a = statistics.median(times["auth"][step]) * 1e3
            b = statistics.median(times["no-auth"][step]) * 1e3
            results[step] = {"auth_ms": round(a, 2), "no_auth_ms": round(b, 2), "ratio": round(a / b, 3)}
            print(f"{step:12} auth {a:8.2f} ms   no auth {b:8.2f} ms   ratio {a / b:.3f}")
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"rows": args.rows, "reps": args.reps, "data": "realistic", "results": results}, f, indent=2)
    finally:
        for server, _ in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
