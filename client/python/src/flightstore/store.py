"""The synchronous client: `connect` -> `Store` -> `Collection` -> `Item` (PyStore's API)."""
from __future__ import annotations

import datetime
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.flight as flight

from . import _frames
from .errors import translate
from .filters import Filters, to_sql

Time = Union[str, int, pd.Timestamp, datetime.datetime, np.datetime64]
Receipt = Dict[str, Any]

_SQL_QUERY_TYPE = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"


def _time(value: Optional[Time]) -> Optional[Union[int, str]]:
    """A ReadRequest time: integers pass (nanoseconds, or an integer ordering column),
    anything else becomes UTC nanoseconds (a time without a zone is UTC)."""
    if value is None or isinstance(value, int):
        return value
    return pd.Timestamp(value).value


def _pb_bytes(field: int, value: bytes) -> bytes:
    """One length-delimited protobuf field."""
    out, n = bytearray([(field << 3) | 2]), len(value)
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out) + value


def _abort(writer: flight.FlightStreamWriter, schema: pa.Schema) -> None:
    """Make the server reject an upload that is under way.

    pyarrow cannot cancel a DoPut, and ending the stream would commit what was sent;
    a row whose every column (so the ordering column) is null makes the server reject
    the whole upload (``INVALID_ARGUMENT``), and a rejected write changes nothing.
    """
    try:
        writer.write_table(pa.table([pa.nulls(1, f.type) for f in schema], schema=schema))
        writer.done_writing()
        writer.close()
    except Exception:
        return  # the expected rejection
    raise RuntimeError("the server accepted an upload that was to be aborted: its rows were written")


class _Connection:
    """One Flight client with the caller's credentials on every call."""

    def __init__(self, url: str, token: Optional[str], username: Optional[str],
                 password: Optional[str], tls_root_certs: Optional[Union[str, bytes]]):
        self.url = url
        self._client_kwargs: Dict[str, Any] = {}
        if tls_root_certs is not None:
            if isinstance(tls_root_certs, str) and os.path.exists(tls_root_certs):
                with open(tls_root_certs, "rb") as f:
                    tls_root_certs = f.read()
            self._client_kwargs["tls_root_certs"] = tls_root_certs
        self.client = flight.FlightClient(url, **self._client_kwargs)
        headers: List[Tuple[bytes, bytes]] = []
        if token is not None:
            headers.append((b"authorization", b"Bearer " + token.encode()))
        elif username is not None:
            try:
                headers.append(self.client.authenticate_basic_token(username, password or ""))
            except Exception as exc:
                raise translate(exc) from None
        self.headers = headers
        self.options = flight.FlightCallOptions(headers=headers)

    def close(self) -> None:
        self.client.close()

    def action(self, name: str, **body: Any) -> Any:
        """Run a DoAction and decode its one JSON result."""
        action = flight.Action(name, json.dumps(body).encode())
        try:
            results = list(self.client.do_action(action, options=self.options))
        except Exception as exc:
            raise translate(exc) from None
        return json.loads(results[0].body.to_pybytes()) if results else None

    def read(self, request: Mapping[str, Any]) -> pa.Table:
        """DoGet with a ReadRequest as the ticket."""
        ticket = flight.Ticket(json.dumps(request).encode())
        try:
            return self.client.do_get(ticket, options=self.options).read_all()
        except Exception as exc:
            raise translate(exc) from None

    def put(self, descriptor: flight.FlightDescriptor, tables: Iterable[pa.Table], schema: pa.Schema) -> Receipt:
        """One DoPut of `tables` (streamed as they come); returns the server's receipt.

        If `tables` raises (the caller's data), the upload is aborted: nothing is written.
        """
        try:
            writer, reader = self.client.do_put(descriptor, schema, options=self.options)
        except Exception as exc:
            raise translate(exc) from None
        try:
            for table in tables:
                writer.write_table(table)
            writer.done_writing()
            result = reader.read()
        except (flight.FlightError, pa.ArrowException) as exc:
            try:
                writer.close()  # the server's status explains a broken stream best
            except Exception as server_exc:
                raise translate(server_exc) from None
            raise translate(exc) from None
        except BaseException:
            _abort(writer, schema)
            raise
        try:
            writer.close()
        except Exception as exc:
            raise translate(exc) from None
        return json.loads(result.to_pybytes()) if result is not None else {}

    def sql(self, query: str) -> pa.Table:
        """A Flight SQL CommandStatementQuery, all its endpoints read in order."""
        command = _pb_bytes(1, _SQL_QUERY_TYPE) + _pb_bytes(2, _pb_bytes(1, query.encode()))
        try:
            info = self.client.get_flight_info(flight.FlightDescriptor.for_command(command), options=self.options)
            tables = [self.client.do_get(e.ticket, options=self.options).read_all() for e in info.endpoints]
        except Exception as exc:
            raise translate(exc) from None
        return pa.concat_tables(tables) if tables else info.schema.empty_table()


def connect(url: str = "grpc://127.0.0.1:8815", token: Optional[str] = None,
            username: Optional[str] = None, password: Optional[str] = None,
            tls_root_certs: Optional[Union[str, bytes]] = None) -> "Store":
    """Connect to a Flightstore server.

    `url` is ``grpc://host:port`` or ``grpc+tls://host:port``. Give a `token` (sent as
    ``authorization: Bearer <token>`` on every call), or a `username` and `password`
    (logged in once with the Flight handshake). `tls_root_certs` is the PEM (bytes, or a
    path to a file) of the CA that signed the server's certificate.
    """
    return Store(_Connection(url, token, username, password, tls_root_certs))


class Store:
    """A Flightstore server, PyStore's `store`: a set of collections."""

    def __init__(self, connection: _Connection):
        self._conn = connection

    def __repr__(self) -> str:
        return f"flightstore.Store <{self._conn.url}>"

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def list_collections(self) -> List[str]:
        """The names of the collections (those the token may read)."""
        return self._conn.action("list_collections")

    def collection(self, name: str) -> "Collection":
        """The collection `name` (no call: it is created by its first write)."""
        return Collection(self._conn, name)

    def delete_collection(self, name: str) -> None:
        """Delete a collection and every item in it (`NotFound` if unknown)."""
        self._conn.action("delete_collection", collection=name)

    def sql(self, query: str) -> pa.Table:
        """Run a SQL query (Flight SQL, DataFusion) and return its result.

        Collections are schemas and items tables: ``SELECT * FROM NASDAQ.AAPL``; quote
        an item with sub-levels: ``weather."berlin/1D"``.
        """
        return self._conn.sql(query)

    def health(self) -> Dict[str, Any]:
        """The server's ``{"status", "version"}``."""
        return self._conn.action("health")


class Collection:
    """A collection of items, PyStore's `collection`."""

    def __init__(self, connection: _Connection, name: str):
        self._conn = connection
        self.name = name

    def __repr__(self) -> str:
        return f"flightstore.Collection <{self.name}>"

    # -- writes ---------------------------------------------------------------------

    def _request(self, item: str, mode: str, ordered_on: Optional[str], **fields: Any) -> Dict[str, Any]:
        request = {"collection": self.name, "item": item, "mode": mode}
        if ordered_on is not None:
            request["ordered_on"] = ordered_on
        request.update({k: v for k, v in fields.items() if v is not None})
        return request

    def _put(self, request: Mapping[str, Any], table: pa.Table) -> Receipt:
        descriptor = flight.FlightDescriptor.for_command(json.dumps(request).encode())
        return self._conn.put(descriptor, [table], table.schema)

    def write(self, item: str, data: Any, metadata: Optional[Mapping[str, Any]] = None,
              overwrite: bool = False, *, dedup_on: Optional[Sequence[str]] = None,
              keep: Optional[str] = None, row_group_target: Optional[Union[int, str]] = None,
              write_id: Optional[str] = None, **settings: Any) -> Receipt:
        """Create the item `item` from `data` (`AlreadyExists` if it exists, unless
        `overwrite=True` replaces it).

        `data` is a pandas DataFrame (its DatetimeIndex, or first datetime column, is the
        ordering column), a polars DataFrame or a pyarrow Table. `metadata` is the
        item's user metadata; `dedup_on` / `keep` declare its de-duplication key,
        `row_group_target` its row-group size (rows or a period such as ``"1D"``);
        other WriteRequest fields (``validation``, ``preset``, ...) pass as keywords.
        Returns the receipt (``{"version", "rows_received", "rows_written"}``).
        """
        table, ordered_on = _frames.to_table(data)
        request = self._request(item, "overwrite" if overwrite else "create", ordered_on,
                                metadata=dict(metadata) if metadata else None,
                                dedup_on=list(dedup_on) if dedup_on else None, keep=keep,
                                row_group_target=row_group_target, write_id=write_id, **settings)
        return self._put(request, table)

    def append(self, item: str, data: Any, *, write_id: Optional[str] = None) -> Receipt:
        """Add rows to `item`, creating it if missing. Rows land in order wherever they
        fall; none is dropped (unless the item declares `dedup_on`)."""
        table, ordered_on = _frames.to_table(data)
        if write_id is None:
            # A path descriptor: the server's fastest path (its write-ahead log).
            # The ordering column goes first, so a new item orders on it.
            descriptor = flight.FlightDescriptor.for_path(self.name, item)
            return self._conn.put(descriptor, [table], table.schema)
        return self._put(self._request(item, "append", None, write_id=write_id), table)

    def upsert(self, item: str, data: Any, dedup_on: Optional[Sequence[str]] = None,
               keep: str = "last", *, write_id: Optional[str] = None) -> Receipt:
        """Insert rows, replacing stored rows equal on the ordering column and `dedup_on`.

        `keep="last"` lets the new row win, `keep="first"` keeps the stored one.
        """
        table, _ = _frames.to_table(data)
        request = self._request(item, "upsert", None, dedup_on=list(dedup_on) if dedup_on else None,
                                keep=keep if keep != "last" else None, write_id=write_id)
        return self._put(request, table)

    def append_stream(self, item: str, frames: Iterable[Any], *, write_id: Optional[str] = None) -> Receipt:
        """Append an iterable of frames (or Arrow tables) as ONE upload, one atomic
        version: the frames are sent as they come, never held together. If the iterable
        raises, the upload is abandoned and nothing is written."""
        iterator = iter(frames)
        try:
            first, ordered_on = _frames.to_table(next(iterator))
        except StopIteration:
            return {"rows_received": 0, "rows_written": 0}
        schema = first.schema

        def tables() -> Iterator[pa.Table]:
            yield first
            for frame in iterator:
                table, _ = _frames.to_table(frame)
                yield table.replace_schema_metadata(schema.metadata)

        request = self._request(item, "append", None, write_id=write_id)
        descriptor = flight.FlightDescriptor.for_command(json.dumps(request).encode())
        return self._conn.put(descriptor, tables(), schema)

    def write_batch(self, items: Mapping[str, Any], metadata: Optional[Mapping[str, Mapping[str, Any]]] = None,
                    overwrite: bool = False) -> Receipt:
        """Write many items in one upload (`overwrite` as in `write`). Every part is
        checked before any is committed. `metadata` maps item names to their metadata.

        Frames of different schemas (or metadata) go in one upload per group.
        Returns ``{"items": {name: {"version", "rows_written"}}, "rows_received"}``.
        """
        metadata = metadata or {}
        groups: Dict[Tuple[Any, ...], List[Tuple[str, pa.Table]]] = {}
        orderings: Dict[Tuple[Any, ...], Optional[str]] = {}
        for name, data in items.items():
            table, ordered_on = _frames.to_table(data)
            if _ITEM_COLUMN in table.column_names:
                raise ValueError(f"write_batch reserves the column name {_ITEM_COLUMN!r}")
            meta = json.dumps(metadata.get(name) or {}, sort_keys=True)
            key = (table.schema.remove_metadata(), meta, _frames.own_metadata(table.schema))
            groups.setdefault(key, []).append((name, table))
            orderings[key] = ordered_on
        receipt: Receipt = {"items": {}, "rows_received": 0}
        for key, parts in groups.items():
            schema = parts[0][1].schema
            tables = [t.replace_schema_metadata(schema.metadata).append_column(
                _ITEM_COLUMN, pa.array([name] * t.num_rows, pa.string())) for name, t in parts]
            request = {"collection": self.name, "item_column": _ITEM_COLUMN,
                       "mode": "overwrite" if overwrite else "create"}
            if orderings[key] is not None:
                request["ordered_on"] = orderings[key]
            if key[1] != "{}":
                request["metadata"] = json.loads(key[1])
            descriptor = flight.FlightDescriptor.for_command(json.dumps(request).encode())
            part = self._conn.put(descriptor, tables, tables[0].schema)
            receipt["items"].update(part.get("items", {}))
            receipt["rows_received"] += part.get("rows_received", 0)
        return receipt

    # -- reads ----------------------------------------------------------------------

    def list_items(self, **metadata: Any) -> List[str]:
        """The items' names, or those whose metadata has every given key=value."""
        body: Dict[str, Any] = {"collection": self.name}
        if metadata:
            body["metadata"] = metadata
        return self._conn.action("list_items", **body)

    def item(self, item: str, snapshot: Optional[str] = None, version: Optional[int] = None) -> "Item":
        """The item `item` (`NotFound` if it does not exist), at the latest version, or
        as it was in `snapshot`, or at `version`."""
        return Item(self, item, snapshot=snapshot, version=version)

    def read_batch(self, items: Sequence[str], **read_args: Any) -> Dict[str, pd.DataFrame]:
        """``{item: DataFrame}`` for many items, read in parallel; `read_args` are
        `Item.to_pandas`'s (``start``, ``end``, ``columns``, ``filters``, ...)."""
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(items)))) as pool:
            frames = pool.map(lambda name: self.item(name).to_pandas(**read_args), items)
            return dict(zip(items, frames))

    # -- administration -------------------------------------------------------------

    def delete_item(self, item: str) -> None:
        """Delete the item (its versions stay readable through snapshots)."""
        self._conn.action("delete_item", collection=self.name, item=item)

    def create_snapshot(self, snapshot: Optional[str] = None) -> Dict[str, Any]:
        """Name the current version of every item (`snapshot` defaults to the time in
        microseconds, as in PyStore)."""
        name = snapshot if snapshot is not None else str(int(time.time() * 1_000_000))
        return self._conn.action("create_snapshot", collection=self.name, snapshot=name)

    def list_snapshots(self) -> List[str]:
        """The snapshots' names."""
        return [s["snapshot"] for s in self._conn.action("list_snapshots", collection=self.name)]

    def delete_snapshot(self, snapshot: str) -> None:
        """Delete a snapshot (`NotFound` if unknown)."""
        self._conn.action("delete_snapshot", collection=self.name, snapshot=snapshot)


_ITEM_COLUMN = "__flightstore_item__"


class Item:
    """One item, PyStore's `item`: read it with `to_pandas` / `to_arrow` / `to_polars`."""

    def __init__(self, collection: Collection, name: str, snapshot: Optional[str] = None,
                 version: Optional[int] = None):
        if snapshot is not None and version is not None:
            raise ValueError("give a snapshot or a version, not both")
        self.collection = collection
        self.name = name
        self.snapshot = snapshot
        self.version = version
        self._conn = collection._conn
        self._base = {"collection": collection.name, "item": name}
        if snapshot is not None:
            self._base["snapshot"] = snapshot
        if version is not None:
            self._base["version"] = version
        # One call: checks that the item (and snapshot, version) exists, and finds the
        # ordering column, which every read brings back as the index.
        self._ordered_on = self._find_ordering_column()

    def __repr__(self) -> str:
        at = f" @{self.snapshot}" if self.snapshot else f" v{self.version}" if self.version else ""
        return f"flightstore.Item <{self.collection.name}/{self.name}{at}>"

    def _find_ordering_column(self) -> Optional[str]:
        if self.snapshot is None and self.version is None:
            info = self._conn.action("item_info", **self._base)
            return (info.get("settings") or {}).get("ordered_on")
        try:
            descriptor = flight.FlightDescriptor.for_command(json.dumps(self._base).encode())
            schema = self._conn.client.get_flight_info(descriptor, options=self._conn.options).schema
        except Exception as exc:
            raise translate(exc) from None
        pandas_meta = schema.pandas_metadata or {}
        names = [n for n in pandas_meta.get("index_columns", []) if isinstance(n, str)]
        if names:
            return names[0]
        return next((f.name for f in schema if pa.types.is_timestamp(f.type)), None)

    # -- reads ----------------------------------------------------------------------

    def to_arrow(self, start: Optional[Time] = None, end: Optional[Time] = None,
                 columns: Optional[Sequence[str]] = None, filters: Optional[Filters] = None,
                 last: Optional[int] = None, limit: Optional[int] = None,
                 n_prev: Optional[int] = None) -> pa.Table:
        """The rows in ``[start, end)`` (times: strings, pandas Timestamps, datetimes or
        integer nanoseconds; no zone means UTC) that pass `filters` (PyStore's tuples,
        ``[("price", ">", 100)]``, or SQL text), then the first `limit` or the last
        `last` of them, with `n_prev` rows before `start`; the ordering column and
        `columns` (default: all)."""
        request = dict(self._base)
        if start is not None:
            request["start"] = _time(start)
        if end is not None:
            request["end"] = _time(end)
        if columns is not None:
            columns = list(columns)
            if self._ordered_on is not None and self._ordered_on not in columns:
                columns.insert(0, self._ordered_on)
            request["columns"] = columns
        sql = to_sql(filters)
        if sql:
            request["filter"] = sql
        for key, value in (("last", last), ("limit", limit), ("n_prev", n_prev)):
            if value is not None:
                request[key] = value
        return self._conn.read(request)

    def to_pandas(self, start: Optional[Time] = None, end: Optional[Time] = None,
                  columns: Optional[Sequence[str]] = None, filters: Optional[Filters] = None,
                  last: Optional[int] = None, limit: Optional[int] = None,
                  n_prev: Optional[int] = None) -> pd.DataFrame:
        """`to_arrow`'s rows as a DataFrame indexed on the ordering column, with the
        dtypes written (time zones, categoricals)."""
        table = self.to_arrow(start, end, columns, filters, last, limit, n_prev)
        return _frames.to_pandas(table, self._ordered_on, freq=not filters)

    def to_polars(self, start: Optional[Time] = None, end: Optional[Time] = None,
                  columns: Optional[Sequence[str]] = None, filters: Optional[Filters] = None,
                  last: Optional[int] = None, limit: Optional[int] = None,
                  n_prev: Optional[int] = None) -> Any:
        """`to_arrow`'s rows as a polars DataFrame."""
        return _frames.to_polars(self.to_arrow(start, end, columns, filters, last, limit, n_prev))

    # -- metadata -------------------------------------------------------------------

    @property
    def metadata(self) -> Dict[str, Any]:
        """The item's user metadata (asked of the server on each access; the latest,
        also for an item opened at a snapshot or version)."""
        return self._conn.action("get_metadata", collection=self.collection.name, item=self.name)

    @property
    def info(self) -> Dict[str, Any]:
        """The server's `item_info`: rows, start, end (ns), version, files, bytes,
        metadata, schema, settings (of the latest version)."""
        return self._conn.action("item_info", collection=self.collection.name, item=self.name)

    def update_metadata(self, metadata: Mapping[str, Any]) -> Dict[str, Any]:
        """Merge `metadata` into the item's (a None value removes a key); returns the
        new metadata."""
        return self._conn.action("update_metadata", collection=self.collection.name, item=self.name,
                                 metadata=dict(metadata))

    def versions(self) -> List[Dict[str, Any]]:
        """The item's versions, oldest first."""
        return self._conn.action("list_versions", collection=self.collection.name, item=self.name)
