"""The `flightstore` command line, run as a process against real servers.

Every client subcommand (ls, info, versions, put, get, sql, rm, snapshot, compact,
vacuum, gaps, meta, sync), its flags and output formats, errors (stderr, non-zero exit,
nothing on stdout), the progress bar (only on a terminal), `--url` / `--token` before
or after the subcommand and from the environment, and a server with an auth file.
"""
import fcntl
import io
import json
import os
import pty
import re
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

import servers

BIN = os.environ.get("FLIGHTSTORE_BIN", "target/debug/flightstore")
T0 = pd.Timestamp("2024-03-04 14:30", tz="UTC")


# ---------------------------------------------------------------------------------------
# helpers


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTSTORE_")}
    env.update(extra)
    return env


def cli(*args, url=None, input=None, env=None, timeout=120):
    """Run `flightstore [--url URL] ARGS...`; the CompletedProcess (text)."""
    cmd = [BIN]
    if url is not None:
        cmd += ["--url", url]
    cmd += [str(a) for a in args]
    return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else clean_env())


def ok(*args, **kw):
    done = cli(*args, **kw)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done


def fails(*args, **kw):
    """A command that must fail: non-zero exit, a message on stderr, nothing on stdout."""
    done = cli(*args, **kw)
    assert done.returncode != 0, f"{args} succeeded: {done.stdout}"
    assert done.stderr.strip(), f"{args}: no message on stderr"
    assert done.stdout == "", f"{args}: printed on stdout as if it worked: {done.stdout!r}"
    return done


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def ticks(n, start=T0, seed=0):
    """`n` trades from `start` on: jittered steps (5 ms .. 3 s), a random-walk price,
    sizes and a side (buy/sell)."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(5_000_000, 3_000_000_000, n)
    ts = pd.Timestamp(start) + pd.to_timedelta(np.cumsum(steps), unit="ns")
    return pd.DataFrame({
        "ts": ts,
        "price": np.round(100 + np.cumsum(rng.normal(0, 0.05, n)), 4),
        "size": rng.integers(1, 500, n),
        "side": rng.choice(["buy", "sell"], n, p=[0.55, 0.45]),
    })


def after(df, n, seed):
    return ticks(n, start=df["ts"].iloc[-1] + pd.Timedelta("1s"), seed=seed)


def big_table(n, seed=7):
    """A big tick table built with numpy only (fast): ts (ns, UTC), price, size, side."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(1_000_000, 200_000_000, n)
    ts = T0.value + np.cumsum(steps)
    return pa.table({
        "ts": pa.array(ts, type=pa.timestamp("ns", tz="UTC")),
        "price": np.round(100 + np.cumsum(rng.normal(0, 0.02, n)), 4),
        "size": rng.integers(1, 1000, n),
        "side": rng.integers(0, 3, n).astype(np.int8),
    })


def table(df):
    return pa.Table.from_pandas(df, preserve_index=False)


def write_parquet(df, path):
    pq.write_table(table(df), path)
    return path


def get_df(url, path, tmp_path, *args):
    """An item read with `get -o FILE.parquet` (extra ARGS), as a DataFrame."""
    out = tmp_path / f"{unique('get')}.parquet"
    ok("get", path, "-o", out, *args, url=url)
    return pq.read_table(out).to_pandas()


def same(got, expected, tz_naive=False):
    got = got.reset_index(drop=True)
    expected = expected.reset_index(drop=True)
    if tz_naive:
        got = got.copy()
        expected = expected.copy()
        for frame in (got, expected):
            for c in frame.columns:
                if isinstance(frame[c].dtype, pd.DatetimeTZDtype):
                    frame[c] = frame[c].dt.tz_convert("UTC").dt.tz_localize(None)
    pd.testing.assert_frame_equal(got, expected, check_dtype=True)


def info(url, path):
    return json.loads(ok("info", path, "--json", url=url).stdout)


def start_server(data, *extra):
    """Start `flightstore serve` on a free port; (proc, url)."""
    proc, address = servers.start_server(*extra, data=data, env=clean_env())
    return proc, f"grpc://{address}"


@pytest.fixture(scope="module")
def server_pair():
    """Two fresh servers of their own (a sync source and a destination)."""
    a, url_a = start_server(tempfile.mkdtemp(prefix="flightstore-cli-src-"))
    b, url_b = start_server(tempfile.mkdtemp(prefix="flightstore-cli-dst-"))
    yield url_a, url_b
    for p in (a, b):
        p.terminate()
        p.wait(timeout=20)


@pytest.fixture
def coll():
    return unique("CLI")


# ---------------------------------------------------------------------------------------
# put in every format, get back equal


def test_put_every_format_and_get_back(server, coll, tmp_path):
    df = ticks(3_000, seed=1)
    # Parquet
    write_parquet(df, tmp_path / "a.parquet")
    receipt = json.loads(ok("put", f"{coll}/PQ", tmp_path / "a.parquet", "--json", url=server).stdout)
    assert receipt == {"version": 1, "rows_received": 3000, "rows_written": 3000}
    same(get_df(server, f"{coll}/PQ", tmp_path), df)

    # Arrow IPC file, and the stream format (.arrows, and .arrow: told apart by its bytes)
    with ipc.new_file(tmp_path / "a.arrow", table(df).schema) as w:
        w.write_table(table(df), max_chunksize=700)
    with ipc.new_stream(tmp_path / "a.arrows", table(df).schema) as w:
        w.write_table(table(df), max_chunksize=900)
    with ipc.new_stream(tmp_path / "s.arrow", table(df).schema) as w:
        w.write_table(table(df), max_chunksize=500)
    for name, f in (("IPCF", "a.arrow"), ("IPCS", "a.arrows"), ("IPCS2", "s.arrow")):
        ok("put", f"{coll}/{name}", tmp_path / f, url=server)
        same(get_df(server, f"{coll}/{name}", tmp_path), df)

    # JSON lines, with ISO-8601 times carrying a zone
    lines = [json.dumps({"ts": np.datetime_as_string(t.to_datetime64(), unit="ns") + "Z",
                         "price": p, "size": int(s), "side": sd})
             for t, p, s, sd in zip(df.ts, df.price, df["size"], df.side)]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    ok("put", f"{coll}/JS", tmp_path / "a.jsonl", url=server)
    same(get_df(server, f"{coll}/JS", tmp_path), df)

    # CSV (pandas' own CSV: times as `2024-03-04 14:30:01.123456789+00:00`)
    df.to_csv(tmp_path / "a.csv", index=False)
    ok("put", f"{coll}/CSV", tmp_path / "a.csv", url=server)
    got = get_df(server, f"{coll}/CSV", tmp_path)
    # CSV carries no types: the times are the same instants (a zone may be dropped)
    same(got, df, tz_naive=True)

    # --format given for a file whose extension says nothing
    (tmp_path / "data.bin").write_bytes((tmp_path / "a.parquet").read_bytes())
    ok("put", f"{coll}/FMT", tmp_path / "data.bin", "--format", "parquet", url=server)
    same(get_df(server, f"{coll}/FMT", tmp_path), df)

    listed = [json.loads(line) for line in ok("ls", coll, "--json", url=server).stdout.splitlines()]
    assert sorted(x["item"] for x in listed) == ["CSV", "FMT", "IPCF", "IPCS", "IPCS2", "JS", "PQ"]
    assert all(x["rows"] == 3000 for x in listed)


def test_put_several_files_is_one_write(server, coll, tmp_path):
    df = ticks(5_000, seed=2)
    parts = [df.iloc[:1700], df.iloc[1700:3100], df.iloc[3100:]]
    files = [write_parquet(p, tmp_path / f"part{i}.parquet") for i, p in enumerate(parts)]
    out = ok("put", f"{coll}/AAPL", *files, url=server).stdout
    assert re.search(r"version 1\b", out) and "5000 rows written of 5000 received" in out, out
    versions = json.loads(ok("versions", f"{coll}/AAPL", "--json", url=server).stdout)
    assert len(versions) == 1 and versions[0]["rows"] == 5000
    same(get_df(server, f"{coll}/AAPL", tmp_path), df)

    # CSV files too
    csvs = []
    for i, p in enumerate(parts):
        p.to_csv(tmp_path / f"part{i}.csv", index=False)
        csvs.append(tmp_path / f"part{i}.csv")
    receipt = json.loads(ok("put", f"{coll}/MSFT", *csvs, "--json", url=server).stdout)
    assert receipt["rows_written"] == 5000 and receipt["version"] == 1

    # A second file with other columns: the whole write fails, nothing is committed
    other = df.iloc[:100].rename(columns={"size": "qty"})
    write_parquet(other, tmp_path / "other.parquet")
    fails("put", f"{coll}/AAPL", files[0], tmp_path / "other.parquet", url=server)
    i = info(server, f"{coll}/AAPL")
    assert (i["rows"], i["version"]) == (5000, 1)


def test_csv_round_trip_is_byte_equal(server, coll, tmp_path):
    df = ticks(4_000, seed=3)
    df.to_csv(tmp_path / "in.csv", index=False)
    ok("put", f"{coll}/A", tmp_path / "in.csv", url=server)
    first = ok("get", f"{coll}/A", "--format", "csv", url=server).stdout
    (tmp_path / "first.csv").write_text(first)
    # The CSV `get` wrote goes back in, and comes out the same to the byte
    ok("put", f"{coll}/B", tmp_path / "first.csv", url=server)
    second = ok("get", f"{coll}/B", "--format", "csv", url=server).stdout
    assert second == first
    # piped stdout is CSV by default, and -o x.csv writes the same bytes
    assert ok("get", f"{coll}/B", url=server).stdout == first
    ok("get", f"{coll}/B", "-o", tmp_path / "o.csv", url=server)
    assert (tmp_path / "o.csv").read_text() == first
    # and the CSV is the data
    back = pd.read_csv(io.StringIO(first))
    assert list(back.columns) == ["ts", "price", "size", "side"]
    assert len(back) == 4000
    np.testing.assert_array_equal(back["price"].to_numpy(), df["price"].to_numpy())
    np.testing.assert_array_equal(back["size"].to_numpy(), df["size"].to_numpy())
    assert (back["side"] == df["side"]).all()
    assert (pd.to_datetime(back["ts"], utc=True) == df["ts"]).all()


def test_csv_from_get_goes_back_into_its_item(server, coll, tmp_path):
    """Export an item (times in UTC) to CSV, put the CSV back: the times keep their zone,
    so the CSV fits the item it came from."""
    df = ticks(2_000, seed=8)
    write_parquet(df, tmp_path / "a.parquet")
    ok("put", f"{coll}/RT", tmp_path / "a.parquet", url=server)
    ok("get", f"{coll}/RT", "-o", tmp_path / "rt.csv", url=server)
    ok("put", f"{coll}/RT", tmp_path / "rt.csv", "--mode", "overwrite", url=server)
    same(get_df(server, f"{coll}/RT", tmp_path), df)
    # and a CSV of new rows appends to it
    more = after(df, 300, seed=81)
    more.to_csv(tmp_path / "more.csv", index=False)
    ok("put", f"{coll}/RT", tmp_path / "more.csv", url=server)
    same(get_df(server, f"{coll}/RT", tmp_path), pd.concat([df, more]))


def test_get_each_output_format(server, coll, tmp_path):
    df = ticks(2_500, seed=4)
    write_parquet(df, tmp_path / "in.parquet")
    ok("put", f"{coll}/X", tmp_path / "in.parquet", url=server)
    p = f"{coll}/X"

    readers = {
        "parquet": lambda f: pq.read_table(f),
        "pq": lambda f: pq.read_table(f),
        "arrow": lambda f: ipc.open_file(f).read_all(),
        "feather": lambda f: ipc.open_file(f).read_all(),
        "ipc": lambda f: ipc.open_file(f).read_all(),
        "arrows": lambda f: ipc.open_stream(f).read_all(),
    }
    for ext, read in readers.items():
        out = tmp_path / f"out.{ext}"
        ok("get", p, "-o", out, url=server)
        same(read(out).to_pandas(), df)

    for ext in ("json", "jsonl", "ndjson"):
        out = tmp_path / f"out.{ext}"
        ok("get", p, "-o", out, url=server)
        # JSON lines written by get go back in as the same data
        ok("put", f"{coll}/BACK-{ext}", out, url=server)
        same(get_df(server, f"{coll}/BACK-{ext}", tmp_path), df)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == 2500
        assert [r["price"] for r in rows] == df["price"].tolist()
        assert [r["side"] for r in rows] == df["side"].tolist()
        assert pd.to_datetime([r["ts"] for r in rows], utc=True).equals(pd.DatetimeIndex(df["ts"]))

    # --format wins over the extension; an unknown extension without --format is an error
    ok("get", p, "-o", tmp_path / "out.dat", "--format", "parquet", url=server)
    same(pq.read_table(tmp_path / "out.dat").to_pandas(), df)
    fails("get", p, "-o", tmp_path / "out.xyz", url=server)
    assert not (tmp_path / "out.xyz").exists()

    # to stdout: arrow is the stream format, json is JSON lines, table is a table
    done = subprocess.run([BIN, "--url", server, "get", p, "--format", "arrow"], capture_output=True,
                          env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    same(ipc.open_stream(done.stdout).read_all().to_pandas(), df)
    lines = ok("get", p, "--format", "json", "--limit", "3", url=server).stdout.splitlines()
    assert [json.loads(x)["size"] for x in lines] == df["size"].iloc[:3].tolist()
    tbl = ok("get", p, "--format", "table", "--limit", "3", url=server).stdout
    assert "| ts" in tbl and "price" in tbl and "+--" in tbl
    assert f"{df['price'].iloc[2]}" in tbl


def test_get_selection_flags(server, coll, tmp_path):
    df = ticks(6_000, seed=5)
    write_parquet(df, tmp_path / "v1.parquet")
    ok("put", f"{coll}/S", tmp_path / "v1.parquet", url=server)
    p = f"{coll}/S"

    start, end = df.ts.iloc[1234], df.ts.iloc[4321]
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{t.nanosecond:03d}Z"
    got = get_df(server, p, tmp_path, "--start", iso(start), "--end", str(end.value))
    same(got, df[(df.ts >= start) & (df.ts < end)])

    got = get_df(server, p, tmp_path, "--columns", "ts,price")
    same(got, df[["ts", "price"]])

    got = get_df(server, p, tmp_path, "--filter", "price > 100 AND side = 'buy'")
    expected = df[(df.price > 100) & (df.side == "buy")]
    assert 0 < len(expected) < len(df)
    same(got, expected)

    same(get_df(server, p, tmp_path, "--last", "37"), df.tail(37))
    same(get_df(server, p, tmp_path, "--limit", "41"), df.head(41))
    # they combine: range, filter, last, columns
    got = get_df(server, p, tmp_path, "--start", str(start.value), "--filter", "size >= 250",
                 "--last", "10", "--columns", "size,price")
    same(got, df[(df.ts >= start) & (df["size"] >= 250)].tail(10)[["size", "price"]])

    # --version and --snapshot see the past
    ok("snapshot", "create", coll, "eod", url=server)
    more = after(df, 800, seed=55)
    write_parquet(more, tmp_path / "v2.parquet")
    ok("put", p, tmp_path / "v2.parquet", url=server)
    both = pd.concat([df, more])
    same(get_df(server, p, tmp_path), both)
    same(get_df(server, p, tmp_path, "--version", "1"), df)
    same(get_df(server, p, tmp_path, "--snapshot", "eod"), df)
    same(get_df(server, p, tmp_path, "--version", "2", "--last", "5"), more.tail(5))

    fails("get", p, "--version", "1", "--snapshot", "eod", url=server)
    fails("get", p, "--limit", "3", "--last", "3", url=server)
    fails("get", p, "--version", "99", url=server)
    fails("get", p, "--snapshot", "nope", url=server)
    fails("get", p, "--filter", "no_such_column > 1", url=server)
    fails("get", p, "--start", "not-a-time", url=server)


# ---------------------------------------------------------------------------------------
# put's modes and options


def test_put_modes_dedup_ordered_on_metadata(server, coll, tmp_path):
    df = ticks(2_000, seed=6)
    write_parquet(df, tmp_path / "a.parquet")
    p = f"{coll}/M"
    ok("put", p, tmp_path / "a.parquet", "--mode", "create", "--metadata", "source=feed",
       "--metadata", "depth=3", "--metadata", 'tags=["x","y"]', url=server)
    assert json.loads(ok("meta", p, url=server).stdout) == {"source": "feed", "depth": 3, "tags": ["x", "y"]}
    # create on an existing item fails and changes nothing
    done = fails("put", p, tmp_path / "a.parquet", "--mode", "create", url=server)
    assert "exist" in done.stderr.lower()
    assert info(server, p)["version"] == 1

    # upsert on ts: 300 overlapping rows with new prices replace theirs, 200 new rows land
    upd = df.iloc[1700:].copy()
    upd["price"] = np.round(upd["price"] + 0.5, 4)
    new = after(df, 200, seed=66)
    write_parquet(pd.concat([upd, new]), tmp_path / "u.parquet")
    receipt = json.loads(ok("put", p, tmp_path / "u.parquet", "--mode", "upsert", "--dedup-on", "ts",
                            "--json", url=server).stdout)
    assert receipt["version"] == 2 and receipt["rows_received"] == 500
    expected = pd.concat([df.iloc[:1700], upd, new])
    same(get_df(server, p, tmp_path), expected)

    # --keep first: the stored rows stay
    upd2 = expected.iloc[100:150].copy()
    upd2["size"] = upd2["size"] + 1000
    write_parquet(upd2, tmp_path / "k.parquet")
    ok("put", p, tmp_path / "k.parquet", "--mode", "upsert", "--dedup-on", "ts", "--keep", "first", url=server)
    same(get_df(server, p, tmp_path), expected)
    ok("put", p, tmp_path / "k.parquet", "--mode", "upsert", "--dedup-on", "ts", "--keep", "last", url=server)
    expected = pd.concat([expected.iloc[:100], upd2, expected.iloc[150:]])
    same(get_df(server, p, tmp_path), expected)

    # overwrite
    small = ticks(300, start=T0 + pd.Timedelta("2D"), seed=67)
    write_parquet(small, tmp_path / "o.parquet")
    ok("put", p, tmp_path / "o.parquet", "--mode", "overwrite", url=server)
    same(get_df(server, p, tmp_path), small)
    ops = [v["operation"] for v in json.loads(ok("versions", p, "--json", url=server).stdout)]
    assert len(ops) == 5

    # replace_range
    lo, hi = small.ts.iloc[100], small.ts.iloc[200]
    repl = ticks(40, start=lo - pd.Timedelta("1ms"), seed=68)
    repl = repl[repl.ts < hi]
    write_parquet(repl, tmp_path / "r.parquet")
    ok("put", p, tmp_path / "r.parquet", "--mode", "replace_range", "--start", str(lo.value),
       "--end", str(hi.value), url=server)
    expected = pd.concat([small[small.ts < lo], repl, small[small.ts >= hi]]).sort_values("ts", kind="stable")
    same(get_df(server, p, tmp_path), expected)

    # a bad mode is an error
    fails("put", p, tmp_path / "a.parquet", "--mode", "sideways", url=server)

    # --ordered-on: a file whose first time column is not the ordering column
    rng = np.random.default_rng(9)
    recv = df.copy()
    recv.insert(0, "recv_ts", df.ts + pd.to_timedelta(rng.integers(0, 900_000_000, len(df)), unit="ns"))
    recv = recv.sample(frac=1, random_state=3)  # not in ts order: the server orders it
    write_parquet(recv, tmp_path / "recv.parquet")
    ok("put", f"{coll}/ORD", tmp_path / "recv.parquet", "--ordered-on", "ts", url=server)
    i = info(server, f"{coll}/ORD")
    assert i["settings"]["ordered_on"] == "ts"
    assert i["start"] == df.ts.iloc[0].value and i["end"] >= df.ts.iloc[-1].value
    got = get_df(server, f"{coll}/ORD", tmp_path)
    assert got["ts"].is_monotonic_increasing
    same(got, recv.sort_values("ts"))

    # --dedup-on given at creation sticks: the same rows again add nothing
    ok("put", f"{coll}/DD", tmp_path / "a.parquet", "--dedup-on", "ts,side", url=server)
    assert info(server, f"{coll}/DD")["settings"]["dedup_on"] == ["ts", "side"]
    receipt = json.loads(ok("put", f"{coll}/DD", tmp_path / "a.parquet", "--mode", "upsert", "--json",
                            url=server).stdout)
    assert info(server, f"{coll}/DD")["rows"] == 2000, receipt


# ---------------------------------------------------------------------------------------
# ls, info, versions


def test_ls_info_versions(server, coll, tmp_path):
    a = ticks(1_500, seed=10)
    b = ticks(900, start=T0 + pd.Timedelta("3h"), seed=11)
    write_parquet(a, tmp_path / "a.parquet")
    write_parquet(b, tmp_path / "b.parquet")
    ok("put", f"{coll}/eq/AAPL", tmp_path / "a.parquet", url=server)
    ok("put", f"{coll}/eq/AAPL", tmp_path / "b.parquet", url=server)
    ok("put", f"{coll}/fx/EURUSD", tmp_path / "b.parquet", url=server)

    assert coll in ok("ls", url=server).stdout.split()
    cols = [json.loads(x) for x in ok("ls", "--json", url=server).stdout.splitlines()]
    assert {"collection": coll} in cols

    lines = [json.loads(x) for x in ok("ls", coll, "--json", url=server).stdout.splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert set(line) == {"collection", "item", "rows", "start", "end", "bytes", "version"}
        i = info(server, f"{coll}/{line['item']}")
        assert line["collection"] == coll
        assert (line["rows"], line["start"], line["end"], line["version"]) == (
            i["rows"], i["start"], i["end"], i["version"])
        assert line["bytes"] > 0
    aapl = next(x for x in lines if x["item"] == "eq/AAPL")
    both = pd.concat([a, b]).sort_values("ts")
    assert aapl["rows"] == 2400 and aapl["version"] == 2
    assert aapl["start"] == both.ts.iloc[0].value and aapl["end"] == both.ts.iloc[-1].value

    # prefix
    pref = [json.loads(x) for x in ok("ls", f"{coll}/fx", "--json", url=server).stdout.splitlines()]
    assert [x["item"] for x in pref] == ["fx/EURUSD"]

    tbl = ok("ls", coll, url=server).stdout
    header = tbl.splitlines()[1]
    for word in ("item", "rows", "start", "end", "bytes", "version"):
        assert word in header
    assert "eq/AAPL" in tbl and "2400" in tbl

    i = info(server, f"{coll}/eq/AAPL")
    assert set(i) >= {"rows", "start", "end", "version", "files", "bytes", "metadata", "schema", "settings"}
    assert [f["name"] for f in i["schema"]] == ["ts", "price", "size", "side"]
    assert all(set(f) == {"name", "type", "nullable"} for f in i["schema"])
    text = ok("info", f"{coll}/eq/AAPL", url=server).stdout
    assert "2400" in text and "price" in text

    v = json.loads(ok("versions", f"{coll}/eq/AAPL", "--json", url=server).stdout)
    assert [x["version"] for x in v] == [1, 2]
    assert [x["rows"] for x in v] == [1500, 2400]
    assert v[0]["committed_at"] <= v[1]["committed_at"]
    assert all(set(x) == {"version", "committed_at", "rows", "operation"} for x in v)
    text = ok("versions", f"{coll}/eq/AAPL", url=server).stdout
    assert "committed_at" in text and "2400" in text


# ---------------------------------------------------------------------------------------
# sql


def test_sql_query_output_and_prompt(server, coll, tmp_path):
    df = ticks(3_000, seed=12)
    write_parquet(df, tmp_path / "a.parquet")
    ok("put", f"{coll}/AAPL", tmp_path / "a.parquet", url=server)
    q = f'SELECT side, count(*) AS n, sum(size) AS vol FROM {coll}."AAPL" GROUP BY side ORDER BY side'
    expected = df.groupby("side").agg(n=("size", "size"), vol=("size", "sum")).reset_index()
    out = ok("sql", q, url=server).stdout
    got = pd.read_csv(io.StringIO(out))
    assert got["side"].tolist() == expected["side"].tolist()
    assert got["n"].tolist() == expected["n"].tolist()
    assert got["vol"].tolist() == expected["vol"].tolist()

    ok("sql", q, "-o", tmp_path / "q.parquet", url=server)
    got = pq.read_table(tmp_path / "q.parquet").to_pandas()
    assert got["vol"].tolist() == expected["vol"].tolist()
    ok("sql", f"SELECT * FROM {coll}.AAPL WHERE price > 100", "-o", tmp_path / "w.parquet", url=server)
    same(pq.read_table(tmp_path / "w.parquet").to_pandas(), df[df.price > 100])

    # the prompt, fed through stdin: three statements (one over two lines), the middle one fails
    script = (f"SELECT count(*) AS n FROM {coll}.AAPL;\n"
              f"SELECT nope FROM {coll}.AAPL;\n"
              f"SELECT max(price) AS hi\n  FROM {coll}.AAPL;\n")
    done = cli("sql", url=server, input=script)
    assert done.returncode != 0
    assert "3000" in done.stdout
    assert f"{df.price.max()}" in done.stdout
    assert "nope" in done.stderr
    # all good: exit 0; `\q` ends it
    done = cli("sql", url=server, input=f"SELECT 1 AS a;\nSELECT count(*) AS n FROM {coll}.AAPL;\n\\q\nSELECT 2;\n")
    assert done.returncode == 0, done.stderr
    assert "3000" in done.stdout and "2\n" not in done.stdout.split("3000", 1)[1]

    fails("sql", "SELEC nonsense", url=server)
    fails("sql", f"SELECT * FROM {coll}.NOPE", url=server)


# ---------------------------------------------------------------------------------------
# rm, snapshot, compact, vacuum, gaps, meta


def test_rm_item_range_collection(server, coll, tmp_path):
    df = ticks(4_000, seed=13)
    write_parquet(df, tmp_path / "a.parquet")
    for item in ("A", "B"):
        ok("put", f"{coll}/{item}", tmp_path / "a.parquet", url=server)

    lo, hi = df.ts.iloc[500], df.ts.iloc[1800]
    done = ok("rm", f"{coll}/A", "--start", str(lo.value), "--end", str(hi.value), url=server)
    assert "1300" in done.stderr, done.stderr
    keep = df[(df.ts < lo) | (df.ts >= hi)]
    same(get_df(server, f"{coll}/A", tmp_path), keep)
    assert info(server, f"{coll}/A")["version"] == 2
    fails("rm", f"{coll}/A", "--start", str(lo.value), url=server)
    assert info(server, f"{coll}/A")["rows"] == len(keep)

    ok("rm", f"{coll}/B", url=server)
    fails("info", f"{coll}/B", url=server)
    items = [json.loads(x)["item"] for x in ok("ls", coll, "--json", url=server).stdout.splitlines()]
    assert items == ["A"]
    fails("rm", f"{coll}/B", url=server)

    # a collection needs -r
    fails("rm", coll, url=server)
    assert info(server, f"{coll}/A")["rows"] == len(keep)
    ok("rm", "-r", coll, url=server)
    assert coll not in ok("ls", url=server).stdout.split()
    fails("info", f"{coll}/A", url=server)


def test_snapshot_compact_vacuum(server, coll, tmp_path):
    df = ticks(3_000, seed=14)
    parts = np.array_split(np.arange(len(df)), 5)
    for i, idx in enumerate(parts):
        write_parquet(df.iloc[idx], tmp_path / f"p{i}.parquet")
        ok("put", f"{coll}/T", tmp_path / f"p{i}.parquet", url=server)
    ok("snapshot", "create", coll, "before-compact", url=server)
    ok("snapshot", "create", coll, "eod-2024-03-04", url=server)
    snaps = json.loads(ok("snapshot", "list", coll, "--json", url=server).stdout)
    assert sorted(s["snapshot"] for s in snaps) == ["before-compact", "eod-2024-03-04"]
    assert all(s["items"] == 1 and s["created_at"] > 0 for s in snaps)
    assert "eod-2024-03-04" in ok("snapshot", "list", coll, url=server).stdout
    fails("snapshot", "create", coll, "eod-2024-03-04", url=server)

    before = info(server, f"{coll}/T")
    assert before["files"] >= 2
    r = json.loads(ok("compact", f"{coll}/T", url=server).stdout)
    # (the server folds its write log into files first: files_before may be below info's)
    assert 1 < r["files_before"] <= before["files"]
    assert r["files_after"] < r["files_before"]
    assert info(server, f"{coll}/T")["files"] == r["files_after"]
    assert r["version"] > before["version"]
    same(get_df(server, f"{coll}/T", tmp_path), df)
    same(get_df(server, f"{coll}/T", tmp_path, "--snapshot", "before-compact"), df)

    ok("snapshot", "rm", coll, "before-compact", url=server)
    snaps = json.loads(ok("snapshot", "list", coll, "--json", url=server).stdout)
    assert [s["snapshot"] for s in snaps] == ["eod-2024-03-04"]
    fails("snapshot", "rm", coll, "before-compact", url=server)
    fails("get", f"{coll}/T", "--snapshot", "before-compact", url=server)

    for args in ((f"{coll}/T",), (coll,), ()):
        r = json.loads(ok("vacuum", *args, url=server).stdout)
        assert set(r) == {"files_removed", "bytes_removed"}
        assert r["files_removed"] >= 0 and r["bytes_removed"] >= 0
    same(get_df(server, f"{coll}/T", tmp_path), df)
    same(get_df(server, f"{coll}/T", tmp_path, "--snapshot", "eod-2024-03-04"), df)
    fails("compact", f"{coll}/NOPE", url=server)


def test_gaps(server, coll, tmp_path):
    # minute bars over 3 hours, with two holes: [10:17, 10:21) and [11:40, 11:41)
    rng = np.random.default_rng(15)
    start = pd.Timestamp("2024-03-04 10:00", tz="UTC")
    minutes = [m for m in range(180) if not (17 <= m < 21) and m != 100]
    ts = [start + pd.Timedelta(minutes=m) + pd.Timedelta(milliseconds=int(rng.integers(0, 59_000)))
          for m in minutes]
    df = pd.DataFrame({"ts": ts, "price": np.round(100 + np.cumsum(rng.normal(0, 0.1, len(ts))), 3)})
    write_parquet(df, tmp_path / "bars.parquet")
    p = f"{coll}/BARS"
    ok("put", p, tmp_path / "bars.parquet", url=server)
    end = start + pd.Timedelta("3h")
    got = json.loads(ok("gaps", p, "--start", start.isoformat(), "--end", end.isoformat(), "--freq", "1min",
                        "--json", url=server).stdout)
    m = lambda k: (start + pd.Timedelta(minutes=k)).value
    assert got == [[m(17), m(21)], [m(100), m(101)]]
    # past the data: the tail is one gap
    got = json.loads(ok("gaps", p, "--start", str(start.value), "--end", str(m(200)), "--freq", "1min",
                        "--json", url=server).stdout)
    assert got[-1] == [m(180), m(200)]
    text = ok("gaps", p, "--start", start.isoformat(), "--end", end.isoformat(), "--freq", "1min",
              url=server).stdout.splitlines()
    assert len(text) == 2 and "10:17:00" in text[0] and "10:21:00" in text[0]
    fails("gaps", p, "--start", start.isoformat(), "--end", end.isoformat(), "--freq", "1 fortnight",
          url=server)
    fails("gaps", p, "--start", start.isoformat(), "--end", end.isoformat(), url=server)


def test_meta(server, coll, tmp_path):
    write_parquet(ticks(500, seed=16), tmp_path / "a.parquet")
    p = f"{coll}/M"
    ok("put", p, tmp_path / "a.parquet", url=server)
    assert json.loads(ok("meta", p, url=server).stdout) == {}
    got = json.loads(ok("meta", p, "source=exchange-feed", "lot=100", "adj=true", "note=split 2:1",
                        url=server).stdout)
    assert got == {"source": "exchange-feed", "lot": 100, "adj": True, "note": "split 2:1"}
    got = json.loads(ok("meta", p, "note=null", "lot=200", url=server).stdout)
    assert got == {"source": "exchange-feed", "lot": 200, "adj": True}
    assert json.loads(ok("meta", p, url=server).stdout) == got
    assert info(server, p)["metadata"] == got
    fails("meta", p, "novalue", url=server)
    assert json.loads(ok("meta", p, url=server).stdout) == got
    fails("meta", f"{coll}/NOPE", url=server)


# ---------------------------------------------------------------------------------------
# sync between two servers


def sync(src, dst, *collections):
    return ok("sync", "--from", src, "--to", dst, *collections).stdout


def copied(out, c):
    m = re.search(rf"^{re.escape(c)}: (\d+) copied, (\d+) deleted", out, re.M)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def assert_same_items(src, dst, c, tmp_path):
    items_src = {json.loads(x)["item"]: json.loads(x) for x in ok("ls", c, "--json", url=src).stdout.splitlines()}
    items_dst = {json.loads(x)["item"]: json.loads(x) for x in ok("ls", c, "--json", url=dst).stdout.splitlines()}
    assert sorted(items_src) == sorted(items_dst)
    for item in items_src:
        s, d = items_src[item], items_dst[item]
        assert (s["rows"], s["start"], s["end"]) == (d["rows"], d["start"], d["end"])
        same(get_df(dst, f"{c}/{item}", tmp_path), get_df(src, f"{c}/{item}", tmp_path))
        assert json.loads(ok("meta", f"{c}/{item}", url=dst).stdout) == \
            json.loads(ok("meta", f"{c}/{item}", url=src).stdout)
        assert info(dst, f"{c}/{item}")["settings"]["ordered_on"] == info(src, f"{c}/{item}")["settings"]["ordered_on"]


def test_sync(server_pair, tmp_path):
    src, dst = server_pair
    data = {}
    for i, (c, item) in enumerate([("NASDAQ", "AAPL"), ("NASDAQ", "MSFT"), ("NASDAQ", "eq/GOOG"),
                                   ("FX", "EURUSD")]):
        data[c, item] = ticks(1_000 + 377 * i, seed=20 + i)
        write_parquet(data[c, item], tmp_path / "x.parquet")
        ok("put", f"{c}/{item}", tmp_path / "x.parquet", "--metadata", f"source=feed{i}",
           "--metadata", f"rank={i}", url=src)

    # first sync: every collection, everything copied
    out = sync(src, dst)
    assert copied(out, "NASDAQ") == (3, 0)
    assert copied(out, "FX") == (1, 0)
    for c in ("NASDAQ", "FX"):
        assert_same_items(src, dst, c, tmp_path)

    # change the source: append to AAPL (and change its metadata), delete MSFT, add NVDA
    more = after(data["NASDAQ", "AAPL"], 321, seed=30)
    write_parquet(more, tmp_path / "more.parquet")
    ok("put", "NASDAQ/AAPL", tmp_path / "more.parquet", url=src)
    ok("meta", "NASDAQ/AAPL", "rank=null", "halted=false", url=src)
    ok("rm", "NASDAQ/MSFT", url=src)
    write_parquet(ticks(777, seed=31), tmp_path / "nvda.parquet")
    ok("put", "NASDAQ/NVDA", tmp_path / "nvda.parquet", "--metadata", "source=feed9", url=src)

    out = sync(src, dst)
    assert copied(out, "NASDAQ") == (2, 1)
    assert copied(out, "FX") == (0, 0)
    assert_same_items(src, dst, "NASDAQ", tmp_path)
    fails("info", "NASDAQ/MSFT", url=dst)
    assert info(dst, "NASDAQ/AAPL")["rows"] == len(data["NASDAQ", "AAPL"]) + 321
    assert json.loads(ok("meta", "NASDAQ/AAPL", url=dst).stdout) == {"source": "feed0", "halted": False}

    # a third sync with no change copies nothing
    dst_versions = {i: info(dst, f"NASDAQ/{i}")["version"] for i in ("AAPL", "eq/GOOG", "NVDA")}
    out = sync(src, dst)
    assert copied(out, "NASDAQ") == (0, 0), out
    assert copied(out, "FX") == (0, 0), out
    assert {i: info(dst, f"NASDAQ/{i}")["version"] for i in dst_versions} == dst_versions

    # a named collection: only it is synced (and a change of metadata alone is a change)
    ok("meta", "FX/EURUSD", "source=null", "venue=EBS", url=src)
    write_parquet(after(more, 60, seed=33), tmp_path / "aapl3.parquet")
    ok("put", "NASDAQ/AAPL", tmp_path / "aapl3.parquet", url=src)
    out = sync(src, dst, "FX")
    assert copied(out, "FX") == (1, 0)
    assert "NASDAQ" not in out
    assert_same_items(src, dst, "FX", tmp_path)
    assert json.loads(ok("meta", "FX/EURUSD", url=dst).stdout) == {"rank": 3, "venue": "EBS"}
    assert info(dst, "NASDAQ/AAPL")["rows"] == len(data["NASDAQ", "AAPL"]) + 321

    # a collection deleted on the source is deleted on the destination; one the
    # destination holds of its own stays; a named collection the source lacks is an error
    write_parquet(ticks(50, seed=40), tmp_path / "own.parquet")
    ok("put", "LOCAL/X", tmp_path / "own.parquet", url=dst)
    ok("rm", "-r", "FX", url=src)
    out = sync(src, dst)
    assert re.search(r"^FX: deleted", out, re.M), out
    assert "LOCAL" not in out
    assert "FX" not in ok("ls", url=dst).stdout.split()
    assert info(dst, "LOCAL/X")["rows"] == 50
    assert copied(sync(src, dst), "NASDAQ") == (0, 0)
    done = cli("sync", "--from", src, "--to", dst, "NOPE")
    assert done.returncode != 0 and "NOPE" in done.stderr
    assert "NOPE" not in ok("ls", url=dst).stdout.split()

    # an unreachable side is an error
    port = free_port()
    done = cli("sync", "--from", src, "--to", f"grpc://127.0.0.1:{port}")
    assert done.returncode != 0 and done.stderr.strip()


# ---------------------------------------------------------------------------------------
# --url / --token anywhere, env, errors


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_url_before_after_and_env(server, coll, tmp_path):
    write_parquet(ticks(700, seed=40), tmp_path / "a.parquet")
    ok("put", f"{coll}/U", tmp_path / "a.parquet", url=server)
    expected = ok("ls", coll, "--json", url=server).stdout
    assert expected
    # after the subcommand
    assert ok("ls", coll, "--json", "--url", server).stdout == expected
    # from the environment
    assert ok("ls", coll, "--json", env=clean_env(FLIGHTSTORE_URL=server)).stdout == expected
    # the flag beats the environment
    bad = f"grpc://127.0.0.1:{free_port()}"
    assert ok("ls", coll, "--json", "--url", server, env=clean_env(FLIGHTSTORE_URL=bad)).stdout == expected
    fails("ls", coll, "--json", env=clean_env(FLIGHTSTORE_URL=bad))


def test_errors(server, coll, tmp_path):
    df = ticks(1_200, seed=41)
    write_parquet(df, tmp_path / "a.parquet")
    ok("put", f"{coll}/E", tmp_path / "a.parquet", url=server)
    p = f"{coll}/E"

    # unknown item / collection
    for args in (("get", f"{coll}/NOPE"), ("info", f"{coll}/NOPE"), ("versions", f"{coll}/NOPE"),
                 ("meta", f"{coll}/NOPE"), ("ls", unique("NOCOLL")), ("get", f"{coll}/NOPE", "-o",
                                                                     tmp_path / "nope.parquet")):
        done = fails(*args, url=server)
        assert "not found" in done.stderr.lower(), done.stderr
    assert not (tmp_path / "nope.parquet").exists()

    # bad files
    (tmp_path / "a.xlsx").write_bytes(b"PK\x03\x04 not really")
    fails("put", p, tmp_path / "a.xlsx", url=server)
    (tmp_path / "junk.parquet").write_bytes(os.urandom(4096))
    fails("put", p, tmp_path / "junk.parquet", url=server)
    fails("put", p, tmp_path / "missing.parquet", url=server)
    fails("put", p, tmp_path / "a.parquet", "--format", "table", url=server)
    fails("put", p, tmp_path / "a.parquet", "--format", "xml", url=server)
    fails("put", p, url=server)
    fails("put", "no-slash", tmp_path / "a.parquet", url=server)

    # bad flags
    fails("get", p, "--bogus", url=server)
    fails("ls", "--jsn", url=server)
    fails("frobnicate", url=server)
    fails("get", p, "--last", "many", url=server)

    # CSV whose columns do not match the item: an error, and the item unchanged
    before = info(server, p)
    df.iloc[:100].rename(columns={"size": "qty"}).to_csv(tmp_path / "wrong.csv", index=False)
    fails("put", p, tmp_path / "wrong.csv", url=server)
    df.iloc[:100].assign(venue="XNAS").to_csv(tmp_path / "extra.csv", index=False)
    fails("put", p, tmp_path / "extra.csv", url=server)
    df.iloc[:100][["ts", "price"]].to_csv(tmp_path / "fewer.csv", index=False)
    fails("put", p, tmp_path / "fewer.csv", url=server)
    after_ = info(server, p)
    assert (after_["rows"], after_["version"]) == (before["rows"], before["version"])
    same(get_df(server, p, tmp_path), df)

    # unreachable server
    done = fails("ls", url=f"grpc://127.0.0.1:{free_port()}", timeout=60)
    assert len(done.stderr) < 4000
    fails("get", p, url="not a url")


def test_put_failing_midway_commits_nothing(server, coll, tmp_path):
    """A CSV that turns bad deep inside (after its first batches were sent): the put fails
    and nothing lands, neither in an existing item nor as a new one."""
    df = ticks(1_200, seed=43)
    df.to_csv(tmp_path / "good.csv", index=False)
    ok("put", f"{coll}/ECSV", tmp_path / "good.csv", url=server)
    before = info(server, f"{coll}/ECSV")
    more = after(df, 5_000, seed=42)
    text = more.to_csv(index=False).splitlines()
    text[4000] = text[4000].replace(",", ",not-a-number,", 1).rsplit(",", 1)[0]
    (tmp_path / "late.csv").write_text("\n".join(text) + "\n")
    done = fails("put", f"{coll}/ECSV", tmp_path / "late.csv", url=server)
    assert "not-a-number" in done.stderr
    after_ = info(server, f"{coll}/ECSV")
    assert (after_["rows"], after_["version"]) == (before["rows"], before["version"])
    same(get_df(server, f"{coll}/ECSV", tmp_path), df, tz_naive=True)
    fails("put", f"{coll}/ENEW", tmp_path / "late.csv", url=server)
    fails("info", f"{coll}/ENEW", url=server)


# ---------------------------------------------------------------------------------------
# auth: --token


def test_token(auth_server, tmp_path):
    url, tokens = auth_server["url"], auth_server["tokens"]
    c = unique("AUTH")
    df = ticks(900, seed=50)
    write_parquet(df, tmp_path / "a.parquet")
    ok("put", f"{c}/A", tmp_path / "a.parquet", "--token", tokens["writer"], url=url)
    ok("--token", tokens["writer"], "put", f"{c}/B", tmp_path / "a.parquet", url=url)
    ok("put", f"{c}/C", tmp_path / "a.parquet", url=url, env=clean_env(FLIGHTSTORE_TOKEN=tokens["writer"]))

    # a reader can read (token before, after, or from the environment)
    expected = ok("ls", c, "--json", "--token", tokens["reader"], url=url).stdout
    assert len(expected.splitlines()) == 3
    assert ok("--token", tokens["reader"], "ls", c, "--json", url=url).stdout == expected
    assert ok("ls", c, "--json", url=url, env=clean_env(FLIGHTSTORE_TOKEN=tokens["reader"])).stdout == expected
    out = tmp_path / "r.parquet"
    ok("get", f"{c}/A", "-o", out, "--token", tokens["reader"], url=url)
    same(pq.read_table(out).to_pandas(), df)

    # ...but cannot write
    before = json.loads(ok("info", f"{c}/A", "--json", "--token", tokens["reader"], url=url).stdout)
    more = after(df, 100, seed=51)
    write_parquet(more, tmp_path / "more.parquet")
    done = fails("put", f"{c}/A", tmp_path / "more.parquet", "--token", tokens["reader"], url=url)
    assert "permission denied" in done.stderr.lower(), done.stderr
    done = fails("put", f"{c}/A", tmp_path / "more.parquet", url=url,
                 env=clean_env(FLIGHTSTORE_TOKEN=tokens["reader"]))
    assert "permission denied" in done.stderr.lower(), done.stderr
    fails("rm", f"{c}/A", "--token", tokens["reader"], url=url)
    fails("meta", f"{c}/A", "x=1", "--token", tokens["reader"], url=url)
    after_ = json.loads(ok("info", f"{c}/A", "--json", "--token", tokens["reader"], url=url).stdout)
    assert (after_["rows"], after_["version"], after_["metadata"]) == (before["rows"], before["version"], {})

    # no token, a wrong token
    fails("ls", c, url=url)
    fails("ls", c, "--token", "fs_not-a-real-token", url=url)


# ---------------------------------------------------------------------------------------
# progress bar: on a terminal only


def run_with_tty_stderr(args, env=None, timeout=120, both=False):
    """Run `args` with stderr on a pseudo-terminal (stdout piped; or `both` on it, as in a
    user's terminal); (rc, stdout, terminal)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    proc = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL,
                            stdout=slave if both else subprocess.PIPE,
                            stderr=slave, env=env or clean_env())
    os.close(slave)
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    out, _ = proc.communicate(timeout=timeout)
    t.join(timeout=10)
    os.close(master)
    return proc.returncode, (out or b"").decode(), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    t = big_table(2_000_000)
    pq.write_table(t, d / "big.parquet")
    pacsv.write_csv(t.slice(0, 1_000_000), d / "big.csv")
    return d, t


def test_progress_bar_on_a_terminal_only(server, coll, big_files, tmp_path):
    d, t = big_files
    p = f"{coll}/BIG"
    ok("put", p, d / "big.parquet", url=server)

    # get to Parquet: a bar with rows and a rate on a terminal
    rc, out, err = run_with_tty_stderr([BIN, "--url", server, "get", p, "-o", tmp_path / "g.parquet"])
    assert rc == 0, err
    assert "rows" in err and "/s" in err, err[-2000:]
    assert re.search(r"\d[\d.,]*\s*[KMG]?i?B", err), err[-2000:]  # bytes
    assert "2,000,000" in err or "2000000" in err, err[-2000:]
    assert out == ""
    assert pq.read_metadata(tmp_path / "g.parquet").num_rows == 2_000_000

    # put of a big CSV: a bar with bytes, rows and a rate
    rc, out, err = run_with_tty_stderr([BIN, "--url", server, "put", f"{coll}/CSV", d / "big.csv"])
    assert rc == 0, err
    assert "/s" in err and "rows" in err and re.search(r"[KMG]iB", err), err[-2000:]
    assert "1000000 rows written" in out

    # piped: no bar, nothing on stderr at all
    done = ok("get", p, "-o", tmp_path / "g2.parquet", url=server)
    assert done.stderr == ""
    assert pq.read_metadata(tmp_path / "g2.parquet").num_rows == 2_000_000
    done = ok("put", f"{coll}/CSV2", d / "big.csv", url=server)
    assert done.stderr == ""
    assert "/s" not in done.stdout and "\r" not in done.stdout
    assert info(server, f"{coll}/CSV2")["rows"] == 1_000_000


def test_table_on_a_terminal_is_not_garbled_by_the_bar(server, coll, tmp_path):
    """`get` on a terminal prints a table; the bar (same terminal) must not run into it."""
    df = ticks(40, seed=60)
    write_parquet(df, tmp_path / "a.parquet")
    ok("put", f"{coll}/TT", tmp_path / "a.parquet", url=server)
    rc, _, term = run_with_tty_stderr([BIN, "--url", server, "get", f"{coll}/TT", "--last", "3"], both=True)
    assert rc == 0, term
    lines = [line.rsplit("\r", 1)[-1] for line in term.replace("\r\n", "\n").split("\n")]
    lines = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line) for line in lines]
    borders = [line for line in lines if re.fullmatch(r"\+(-+\+)+\s*", line)]
    assert len(borders) == 3, term  # top, under the header, bottom: each on a line of its own
    assert any(re.match(r"\|\s*ts\s*\|\s*price", line) for line in lines), term
    for price in df.price.tail(3):
        assert any(re.match(rf"\|.*\|\s*{re.escape(str(price))}\s*\|", line) for line in lines), term


@pytest.fixture(scope="module")
def small_endpoints_server():
    """A server that splits reads into endpoints of ~500k rows."""
    proc, url = start_server(tempfile.mkdtemp(prefix="flightstore-cli-ep-"), "--endpoint-rows", "500000")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_get_of_an_item_with_many_endpoints(small_endpoints_server, big_files, tmp_path):
    """A read the server splits into many endpoints (fetched in parallel, yielded in
    order) completes, whole and in order: 2M rows, 8 endpoints."""
    url = small_endpoints_server
    d, t = big_files
    ok("put", "EP/BIG", d / "big.parquet", url=url)
    out = tmp_path / "ep.parquet"
    try:
        done = cli("get", "EP/BIG", "-o", out, url=url, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("`get` of an item with 4 endpoints hung (not done in 20 s)")
    assert done.returncode == 0, done.stderr
    got = pq.read_table(out)
    assert got.num_rows == t.num_rows
    assert got.column("ts").to_numpy().tolist() == \
        t.column("ts").to_numpy().tolist()
    assert np.array_equal(got.column("price").to_numpy(), t.column("price").to_numpy())


def test_put_receipt_on_a_terminal_is_not_garbled_by_the_bar(server, coll, tmp_path):
    """`put` on a terminal: the receipt is a line of its own, not glued to the bar."""
    write_parquet(ticks(3_000, seed=61), tmp_path / "a.parquet")
    rc, _, term = run_with_tty_stderr([BIN, "--url", server, "put", f"{coll}/PR", tmp_path / "a.parquet"],
                                      both=True)
    assert rc == 0, term
    lines = [line.rsplit("\r", 1)[-1] for line in term.replace("\r\n", "\n").split("\n")]
    lines = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line) for line in lines]
    assert any(re.fullmatch(rf"{coll}/PR: version 1, 3000 rows written of 3000 received\s*", line)
               for line in lines), term
