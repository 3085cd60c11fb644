"""pandas / polars / Arrow conversions: what goes up and what comes back."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import pandas as pd
import pyarrow as pa

UNNAMED_INDEX = "__index_level_0__"  # pyarrow's name for an unnamed pandas index


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
    ordered_on = df.index.name if df.index.name is not None else UNNAMED_INDEX
    names = table.column_names
    table = table.select([ordered_on] + [n for n in names if n != ordered_on])
    return table, ordered_on


def to_pandas(table: pa.Table, ordered_on: Optional[str]) -> pd.DataFrame:
    """A DataFrame indexed on the ordering column, with the dtypes that were written."""
    df = table.to_pandas()
    if ordered_on is not None and ordered_on in df.columns:
        df = df.set_index(ordered_on)
        if ordered_on == UNNAMED_INDEX:
            df.index.name = None
    return df


def to_polars(table: pa.Table) -> Any:
    """A polars DataFrame (the ordering column stays a column: polars has no index)."""
    try:
        import polars as pl
    except ImportError as exc:  # pragma: no cover
        raise ImportError("to_polars needs polars: pip install polars") from exc
    return pl.from_arrow(table)
