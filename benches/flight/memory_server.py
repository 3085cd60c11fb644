"""Baseline: a plain pyarrow Flight server holding each table in memory.

It speaks the same minimal protocol the benchmark uses (path or JSON WriteRequest for
DoPut with modes append / overwrite / upsert on `trade_id`; JSON ReadRequest tickets with
start / end / columns), with none of Flightstore's durability: nothing touches disk.
"""
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight


class MemoryServer(flight.FlightServerBase):
    def __init__(self, location):
        super().__init__(location)
        self.tables = {}
        self.ts = {}  # key -> numpy ts, built on the first range read after a write

    def _ts(self, key):
        if key not in self.ts:
            self.ts[key] = self.tables[key].column("ts").to_numpy()
        return self.ts[key]

    def do_put(self, context, descriptor, reader, writer):
        if descriptor.descriptor_type == flight.DescriptorType.PATH:
            key, mode = "/".join(p.decode() for p in descriptor.path), "append"
        else:
            req = json.loads(descriptor.command)
            key, mode = f"{req['collection']}/{req['item']}", req.get("mode", "append")
        new = reader.read_all()
        self.ts.pop(key, None)
        old = self.tables.get(key)
        if old is None or mode == "overwrite":
            self.tables[key] = new
        elif mode == "upsert":
            # Sorted on ts: the update replaces the slice it covers.
            ts = self._ts(key)
            lo = np.searchsorted(ts, np.datetime64(new.column("ts")[0].value, "ns"), "left")
            hi = np.searchsorted(ts, np.datetime64(new.column("ts")[-1].value, "ns"), "right")
            self.tables[key] = pa.concat_tables([old.slice(0, lo), new, old.slice(hi)])
        else:
            self.tables[key] = pa.concat_tables([old, new])
        writer.write(pa.py_buffer(json.dumps({"rows_written": new.num_rows}).encode()))

    def do_get(self, context, ticket):
        req = json.loads(ticket.ticket)
        key = f"{req['collection']}/{req['item']}"
        table = self.tables[key]
        if "start" in req or "end" in req:
            ts = self._ts(key)
            lo = np.searchsorted(ts, np.datetime64(req.get("start", ts[0].astype("int64")), "ns"), "left")
            hi = np.searchsorted(ts, np.datetime64(req.get("end", ts[-1].astype("int64") + 1), "ns"), "left")
            table = table.slice(lo, hi - lo)
        if "columns" in req:
            table = table.select(req["columns"])
        return flight.RecordBatchStream(table)


if __name__ == "__main__":
    server = MemoryServer(f"grpc://127.0.0.1:{sys.argv[1]}")
    print("ready", flush=True)
    server.serve()
