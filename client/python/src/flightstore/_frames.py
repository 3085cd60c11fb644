"""pandas / polars / Arrow conversions: what goes up and what comes back."""
from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple

import pandas as pd
import pyarrow as pa

UNNAMED_INDEX = "__index_level_0__"  # pyarrow's name for an unnamed pandas index
# Schema metadata key holding the declared categories of categorical columns: Arrow keeps
# a dictionary column's values, and the server rebuilds its dictionary from them (order
# of appearance, unused values dropped), so a categorical's own categories travel here.
CATEGORIES = b"flightstore.categories"
# Schema metadata key holding the `freq` of the DatetimeIndex the item was created with
# (pyarrow drops it): restored on reads whose index still conforms to it.
FREQ = b"flightstore.freq"


def own_metadata(schema: pa.Schema) -> Tuple[Optional[bytes], ...]:
    """The schema metadata this package adds (categories, freq): tables that differ in it
    cannot share one upload."""
    return tuple((schema.metadata or {}).get(k) for k in (CATEGORIES, FREQ))


def _first_datetime_column(df: pd.DataFrame) -> Optional[str]:
    for name, dtype in df.dtypes.items():
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return name
    return None


def to_table(data: Any) -> Tuple[pa.Table, Optional[str]]:
    """An Arrow table and its ordering column (None: let the server choose).

    A DataFrame's DatetimeIndex, or its first datetime column when the index is not a
    DatetimeIndex, is the ordering column; it is sent first, and pandas' own schema
    metadata travels with it so that a read rebuilds the same frame.
    """
    if isinstance(data, pa.Table):
        return data, None
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data]), None
    if not isinstance(data, pd.DataFrame):
        if hasattr(data, "to_arrow"):  # polars
            return data.to_arrow(), None
        raise TypeError(f"cannot write a {type(data).__name__}: give a pandas or polars DataFrame or a pyarrow Table")
    df = data
    if not isinstance(df.index, pd.DatetimeIndex):
        column = _first_datetime_column(df)
        if column is None:
            raise ValueError("the DataFrame needs a DatetimeIndex or a datetime column to order it on")
        default_index = isinstance(df.index, pd.RangeIndex) and df.index.name is None
        df = (df if default_index else df.reset_index()).set_index(column)
    table = pa.Table.from_pandas(df, preserve_index=True)
    metadata = dict(table.schema.metadata or {})
    categories = _declared_categories(df)
    if categories:
        metadata[CATEGORIES] = json.dumps(categories).encode()
    if df.index.freq is not None:
        metadata[FREQ] = df.index.freqstr.encode()
    table = table.replace_schema_metadata(metadata)
    ordered_on = df.index.name if df.index.name is not None else UNNAMED_INDEX
    names = table.column_names
    table = table.select([ordered_on] + [n for n in names if n != ordered_on])
    return table, ordered_on


def _declared_categories(df: pd.DataFrame) -> Dict[str, Dict[str, Any]]:
    """`{column: {"categories": [...], "ordered": bool}}` of the categorical columns whose
    categories JSON carries exactly (strings, integers, floats, booleans)."""
    out = {}
    for name, dtype in df.dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype) and isinstance(name, str):
            values = dtype.categories.tolist()
            if all(isinstance(v, (str, int, float, bool)) for v in values):
                out[name] = {"categories": values, "ordered": bool(dtype.ordered)}
    return out


def _restore_categories(df: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """Give categorical columns the categories they were written with: the declared ones
    in their order, then any other value read (appended later with new categories), in
    order of appearance."""
    raw = (schema.metadata or {}).get(CATEGORIES)
    if raw is None:
        return df
    for name, declared in json.loads(raw).items():
        if name not in df.columns or not isinstance(df[name].dtype, pd.CategoricalDtype):
            continue
        categories = list(declared["categories"])
        known = set(categories)
        categories += [v for v in df[name].cat.categories.tolist() if v not in known]
        df[name] = df[name].cat.set_categories(categories, ordered=declared["ordered"])
    return df


def _restore_freq(df: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """The index's `freq` as written, if the rows read still conform to it (as pandas
    keeps it on slices and on concatenations of contiguous frames)."""
    raw = (schema.metadata or {}).get(FREQ)
    if raw is None or not isinstance(df.index, pd.DatetimeIndex) or df.index.freq is not None:
        return df
    try:
        df.index = pd.DatetimeIndex(df.index, freq=pd.tseries.frequencies.to_offset(raw.decode()))
    except ValueError:  # rows appended off the grid: no freq, as pd.concat would say
        pass
    return df


def to_pandas(table: pa.Table, ordered_on: Optional[str], freq: bool = True) -> pd.DataFrame:
    """A DataFrame indexed on the ordering column, with the dtypes that were written;
    `freq`: restore the index's `freq` (not after a filter: a boolean mask drops it)."""
    df = _restore_categories(table.to_pandas(), table.schema)
    if ordered_on is not None and ordered_on in df.columns:
        df = df.set_index(ordered_on)
        if ordered_on == UNNAMED_INDEX:
            df.index.name = None
    return _restore_freq(df, table.schema) if freq else df


def to_polars(table: pa.Table) -> Any:
    """A polars DataFrame (the ordering column stays a column: polars has no index)."""
    try:
        import polars as pl
    except ImportError as exc:  # pragma: no cover
        raise ImportError("to_polars needs polars: pip install polars") from exc
    return pl.from_arrow(table)
