"""``client.utils.from_dataframe``: the rows of a pandas DataFrame as Driftlock events.

pandas is an optional extra (``pip install 'driftlock[pandas]'``); it is imported only when this is
called. Each row becomes ``{"timestamp": ..., "body": {column: value}}``: timestamps in ISO-8601 UTC
with milliseconds (naive ones are read as UTC, numbers as Unix seconds), numpy scalars as Python
numbers, missing values (NaN, NaT, None) as JSON null, dates inside the body as ISO text.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["Utils", "from_dataframe"]


def from_dataframe(
    df: Any, timestamp_col: str | None = None, body_cols: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One event per row of ``df``, ready for ``client.detect(events=...)``.

    Args:
        df: a ``pandas.DataFrame``.
        timestamp_col: the column holding each row's time (datetimes, ISO strings or Unix seconds);
            None: the events carry no timestamp.
        body_cols: the columns that make each event's body, in that order; None: every column but
            ``timestamp_col``.

    Raises:
        ModuleNotFoundError: pandas is not installed (the message names the extra).
        TypeError: ``df`` is not a DataFrame.
        ValueError: a column named is not in ``df``, or no body column is left.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ModuleNotFoundError(
            "client.utils.from_dataframe needs pandas, which is not installed: pip install 'driftlock[pandas]'",
            name="pandas",
        ) from None
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"from_dataframe takes a pandas DataFrame, not {type(df).__name__}")
    columns = list(df.columns)
    if isinstance(body_cols, str):
        raise TypeError(f"body_cols must be a list of column names, not the string {body_cols!r}")
    body = [c for c in columns if c != timestamp_col] if body_cols is None else list(body_cols)
    missing = [c for c in [*([timestamp_col] if timestamp_col is not None else []), *body] if c not in columns]
    if missing:
        raise ValueError(
            f"from_dataframe: no column {', '.join(map(repr, missing))} in the DataFrame; "
            f"its columns are {', '.join(map(repr, columns))}"
        )
    if not body:
        raise ValueError("from_dataframe: no body columns; name them with body_cols=[...]")
    records = df[body].to_dict("records")
    stamps: list[Any] = [None] * len(records)
    if timestamp_col is not None:
        column = df[timestamp_col]
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        textual = not numeric and not pd.api.types.is_datetime64_any_dtype(column)
        try:
            parsed = pd.to_datetime(
                column, utc=True, unit="s" if numeric else None, format="mixed" if textual else None
            )
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(
                f"from_dataframe: column {timestamp_col!r} holds a value that is not a time: {exc}"
            ) from None
        stamps = list((parsed.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z").astype(object))
    events: list[dict[str, Any]] = []
    for stamp, record in zip(stamps, records, strict=True):
        event: dict[str, Any] = {"body": {str(k): _json_value(v) for k, v in record.items()}}
        if isinstance(stamp, str):
            event = {"timestamp": stamp, **event}
        events.append(event)
    return events


def _json_value(value: Any) -> Any:
    """A cell as a JSON value: numpy scalars unboxed, missing values as None, times as ISO text."""
    if value is None or type(value).__name__ == "NaTType":
        return None
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        value = item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value


class Utils:
    """``client.utils``: helpers that turn data into events. Stateless; thread-safe."""

    @staticmethod
    def from_dataframe(
        df: Any, timestamp_col: str | None = None, body_cols: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """See :func:`driftlock.client._dataframe.from_dataframe`."""
        return from_dataframe(df, timestamp_col=timestamp_col, body_cols=body_cols)
