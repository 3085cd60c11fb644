"""Copy a PyStore datastore folder into a Flightstore server.

PyStore keeps ``<datastore>/<collection>/<item>/`` folders of Parquet files (written by
dask: ``part.N.parquet``) beside a ``pystore_metadata.json`` (the user's keys plus
PyStore's own: ``_updated``, and since 1.0 ``_type_info``, ``_timezone_info``,
``_transform_metadata``), and snapshots as full copies of the collection in
``<collection>/_snapshots/<name>/<item>/``. The files are read with pyarrow directly:
neither PyStore nor dask is needed.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import pandas as pd
import pyarrow.parquet as pq

from .errors import NotFound
from .store import Collection, Store

METADATA_FILE = "pystore_metadata.json"
SNAPSHOTS = "_snapshots"
_PYSTORE_KEYS = {"_updated", "_type_info", "_timezone_info", "_transform_metadata"}


def _subdirs(path: Path) -> List[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and p.name != SNAPSHOTS and not p.name.startswith("."))


def _parquet_files(item_dir: Path) -> List[Path]:
    def part_number(p: Path) -> List[Any]:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]
    return sorted((p for p in item_dir.iterdir() if p.suffix == ".parquet"), key=part_number)


def _metadata(item_dir: Path) -> Dict[str, Any]:
    path = item_dir / METADATA_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def read_item(item_dir: Union[str, Path]) -> pd.DataFrame:
    """A PyStore item folder as the DataFrame PyStore's `to_pandas` returns."""
    item_dir = Path(item_dir)
    files = _parquet_files(item_dir)
    if not files:
        raise ValueError(f"{item_dir} holds no Parquet file")
    df = pq.ParquetDataset([str(f) for f in files]).read_pandas().to_pandas()
    meta = _metadata(item_dir)
    for column, info in (meta.get("_type_info") or {}).items():  # PyStore >= 1.0
        if info.get("type") == "category" and column in df.columns:
            df[column] = pd.Categorical.from_codes(df[column], categories=info["categories"], ordered=info["ordered"])
        elif info.get("type") == "timedelta" and column in df.columns:
            df[column] = pd.to_timedelta(df[column], unit=info.get("unit", "ns"))
    tz_info = meta.get("_timezone_info") or {}
    if "index_tz" in tz_info and isinstance(df.index, pd.DatetimeIndex):
        index = df.index if df.index.tz is not None else df.index.tz_localize("UTC")
        df.index = index.tz_convert(tz_info["index_tz"])
    for key, tz in tz_info.items():
        column = key[len("column_"):-len("_tz")] if key.startswith("column_") and key.endswith("_tz") else None
        if column in df.columns and pd.api.types.is_datetime64_any_dtype(df[column]):
            values = df[column] if df[column].dt.tz is not None else df[column].dt.tz_localize("UTC")
            df[column] = values.dt.tz_convert(tz)
    if not isinstance(df.index, pd.DatetimeIndex) and len(df):
        # PyStore's `epochdate` stored the index as integers (ns) or floats (s).
        if pd.api.types.is_float_dtype(df.index):
            df.index = pd.to_datetime(df.index, unit="s").rename(df.index.name)
        elif pd.api.types.is_integer_dtype(df.index) and df.index[0] > 1e6:
            df.index = pd.to_datetime(df.index).rename(df.index.name)
    return df


def _fingerprint(item_dir: Path) -> str:
    digest = hashlib.sha256()
    for f in _parquet_files(item_dir) + [item_dir / METADATA_FILE]:
        if f.exists():
            digest.update(f.name.encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()


class _Replayer:
    """Writes successive states of one collection, skipping items that did not change."""

    def __init__(self, collection: Collection):
        self.collection = collection
        self.written: Dict[str, str] = {}  # item -> fingerprint of what the server holds

    def apply(self, folder: Path) -> int:
        items = {d.name: d for d in _subdirs(folder)}
        for name in sorted(set(self.written) - set(items)):
            self.collection.delete_item(name)
            del self.written[name]
        copied = 0
        for name, item_dir in items.items():
            fingerprint = _fingerprint(item_dir)
            if self.written.get(name) == fingerprint:
                continue
            metadata = {k: v for k, v in _metadata(item_dir).items() if k not in _PYSTORE_KEYS}
            self.collection.write(name, read_item(item_dir), metadata=metadata or None, overwrite=True)
            self.written[name] = fingerprint
            copied += 1
        return copied


def from_pystore(path: Union[str, "os.PathLike[str]"], store: Store,
                 collections: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, Any]]:
    """Copy the PyStore datastore at `path` (the folder holding its collections) into
    `store`: every item with its data and metadata, and every snapshot.

    Snapshots are replayed oldest first (by the time their folder was made): each
    snapshot's items are written (those that changed since the previous state), items
    it lacks are deleted, and a server snapshot of the same name is created; then the
    collection's current items are written. So `item(name, snapshot=...)` on the server
    reads what PyStore's did. Existing items of those names are overwritten.
    Returns ``{collection: {"items": [...], "snapshots": [...]}}``.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise NotFound(f"no PyStore datastore folder at {root}")
    report: Dict[str, Dict[str, Any]] = {}
    for folder in _subdirs(root):
        if collections is not None and folder.name not in collections:
            continue
        collection = store.collection(folder.name)
        replayer = _Replayer(collection)
        snapshots_dir = folder / SNAPSHOTS
        snapshots = sorted(_subdirs(snapshots_dir), key=lambda p: (p.stat().st_ctime, p.name)) \
            if snapshots_dir.is_dir() else []
        for snapshot in snapshots:
            replayer.apply(snapshot)
            collection.create_snapshot(snapshot.name)
        replayer.apply(folder)
        report[folder.name] = {"items": sorted(replayer.written), "snapshots": [s.name for s in snapshots]}
    return report
