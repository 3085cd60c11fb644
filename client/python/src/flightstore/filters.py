"""PyStore / pyarrow filter tuples -> the SQL text of a ReadRequest's ``filter``.

``[("price", ">", 100), ("side", "in", ["buy", "sell"])]`` is an AND of conditions; a list
of such lists is an OR of ANDs (pyarrow's disjunctive normal form). A string is SQL
already and passes through unchanged.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Any, Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

Condition = Tuple[str, str, Any]
Filters = Union[str, Sequence[Condition], Sequence[Sequence[Condition]]]

_COMPARISONS = {"=": "=", "==": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def quote_identifier(name: str) -> str:
    """A SQL identifier, double-quoted (so any case or character is kept)."""
    return '"' + str(name).replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A SQL literal for a Python, numpy or pandas value."""
    if value is None or value is pd.NaT:
        return "NULL"
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            return f"CAST('{value!r}' AS DOUBLE)".replace("inf", "Infinity").replace("nan", "NaN")
        return repr(value)
    if isinstance(value, (pd.Timestamp, dt.datetime, np.datetime64)):
        # A string with an explicit UTC offset: DataFusion casts it to the column's type
        # exactly. (A TIMESTAMP literal has no zone, and compared with a zoned column it
        # would be read as wall-clock time in that zone.) No zone means UTC.
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return f"'{ts.isoformat()}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, (pd.Timedelta, dt.timedelta, np.timedelta64)):
        return f"INTERVAL '{pd.Timedelta(value).value} nanoseconds'"
    if isinstance(value, bytes):
        return "X'" + value.hex() + "'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"cannot use {type(value).__name__} {value!r} in a filter")


def _condition(condition: Condition) -> str:
    try:
        column, op, value = condition
    except (TypeError, ValueError):
        raise ValueError(f"a filter is a (column, op, value) tuple, not {condition!r}") from None
    name, op = quote_identifier(column), str(op).strip().lower()
    if op in _COMPARISONS:
        if value is None or value is pd.NaT:
            if op in ("=", "=="):
                return f"{name} IS NULL"
            if op in ("!=", "<>"):
                return f"{name} IS NOT NULL"
        return f"{name} {_COMPARISONS[op]} {literal(value)}"
    if op in ("in", "not in"):
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ValueError(f"{op!r} needs a list of values, not {value!r}")
        values = list(value)
        if not values:
            return "FALSE" if op == "in" else "TRUE"
        keyword = "IN" if op == "in" else "NOT IN"
        return f"{name} {keyword} ({', '.join(literal(v) for v in values)})"
    raise ValueError(f"unknown filter operator {op!r} (use =, ==, !=, <, <=, >, >=, in, not in)")


def to_sql(filters: Optional[Filters]) -> Optional[str]:
    """The SQL boolean expression for `filters` (None for no filter)."""
    if filters is None:
        return None
    if isinstance(filters, str):
        return filters
    if isinstance(filters, tuple) and filters and isinstance(filters[0], str):
        filters = [filters]  # one condition on its own
    filters = list(filters)
    if not filters:
        return None
    if all(isinstance(f, tuple) for f in filters):
        return " AND ".join(_condition(f) for f in filters)
    # A list of lists: OR of ANDs.
    groups = [" AND ".join(_condition(f) for f in group) for group in filters]
    return " OR ".join(f"({g})" for g in groups)
