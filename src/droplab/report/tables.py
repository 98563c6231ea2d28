"""Numbers and tables as text: one value (:func:`fmt_value`), a p-value (:func:`fmt_p`), and
a whole results table (:func:`format_frame`) with a precision chosen per column.

A column gets as many decimals as show about three significant digits of its typical
(median) value, and no more than its values need: ``0.0, 0.5`` stay one decimal, test
errors near 20 get one decimal (``19.9``), NLLs near 0.3 get three (``0.312``), counts none.
P-value columns (``p``, ``p_holm``, ``p_value``, ...) read ``<0.001``, ``0.043``, ``0.52``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MAX_ROWS", "fmt_p", "fmt_value", "format_frame", "present"]

MAX_ROWS = 200  # longer tables are cut, with a note saying how many rows are left out
_SIGNIFICANT = 3  # digits shown of a column's typical value
_MAX_DECIMALS = 6
_P_COLUMN = re.compile(r"(^|[_\s(])p($|[_\s)])|p_?val")


def present(v: Any) -> bool:
    """False for None, NaN, NA and NaT; True for anything else (lists included)."""
    if v is None:
        return False
    try:
        return not bool(pd.isna(v))
    except (TypeError, ValueError):
        return True


def fmt_value(v: Any) -> str:
    """One value as text on its own (no column to match): integers plainly, floats to 4
    significant digits, missing values as "–"."""
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        x = float(v)
        if math.isnan(x):
            return "–"
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        if x == 0:
            return "0"
        if abs(x) >= 1e5:
            return f"{x:,.0f}"
        if abs(x) < 1e-3:
            return f"{x:.2e}"
        return f"{x:.4g}"
    if not present(v):
        return "–"
    return str(v)


def fmt_p(p: Any) -> str:
    """A p-value: ``"<0.001"``, ``"0.043"`` (below 0.1), ``"0.52"``; "–" when missing."""
    if not present(p):
        return "–"
    try:
        x = float(p)
    except (TypeError, ValueError):
        return str(p)
    if math.isnan(x):
        return "–"
    if x < 0.001:
        return "<0.001"
    return f"{x:.3f}" if x < 0.1 else f"{x:.2f}"


def _decimals(values: np.ndarray) -> int | None:
    """Decimals for a column of finite floats; None for scientific notation (tiny values)."""
    nonzero = np.abs(values[values != 0])
    if nonzero.size == 0:
        return 0
    typical = float(np.median(nonzero))
    if typical >= 1e5:
        return 0
    if typical < 1e-3:
        return None
    wanted = _SIGNIFICANT - 1 - math.floor(math.log10(typical))
    wanted = max(0, min(_MAX_DECIMALS, wanted))
    # Fewer decimals when they show every value exactly (values too small for the column's
    # precision are printed with their own digits, so they do not count).
    shown = values[np.abs(values) >= 0.5 * 10.0**-wanted]
    for k in range(wanted):
        if np.all(np.abs(shown - np.round(shown, k)) <= 1e-9 * np.maximum(1.0, np.abs(shown))):
            return k
    return wanted


def _fixed(decimals: int, commas: bool) -> Callable[[Any], str]:
    def fmt(v: Any) -> str:
        if not present(v):
            return "–"
        x = float(v)
        if not math.isfinite(x):
            return fmt_value(x)
        if x != 0 and abs(x) < 0.5 * 10.0**-decimals:
            return f"{x:.2g}"  # would print as 0: this one value gets its own digits
        text = f"{x:,.{decimals}f}" if commas and abs(x) >= 1e5 else f"{x:.{decimals}f}"
        if text.startswith("-") and float(text.replace(",", "")) == 0:
            text = text[1:]  # no "-0.0"
        return text

    return fmt


def _scientific(v: Any) -> str:
    if not present(v):
        return "–"
    x = float(v)
    return "0" if x == 0 else (f"{x:.2e}" if math.isfinite(x) else fmt_value(x))


def _column_format(name: str, column: pd.Series) -> Callable[[Any], str]:
    if pd.api.types.is_bool_dtype(column):
        return fmt_value
    if _P_COLUMN.search(name.lower()) and pd.api.types.is_numeric_dtype(column):
        return fmt_p
    if not pd.api.types.is_numeric_dtype(column):
        return fmt_value
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    finite = values[np.isfinite(values)]
    commas = "seed" not in name.lower()
    decimals = _decimals(finite)
    if decimals is None:
        return _scientific
    return _fixed(decimals, commas)


def format_frame(table: pd.DataFrame) -> tuple[pd.DataFrame, list[bool], int]:
    """The table as text, ready to print: a meaningful index made into columns, flat
    headers, cells formatted per column, at most :data:`MAX_ROWS` rows.

    Returns (text frame, per column whether it is numeric, number of rows left out)."""
    df = table
    if not (isinstance(df.index, pd.RangeIndex) and df.index.name is None):
        df = df.reset_index()
    columns = df.columns
    if isinstance(columns, pd.MultiIndex):
        columns = [
            " / ".join(str(c) for c in col if str(c) != "") for col in columns.to_flat_index()
        ]
    names = [str(c) for c in columns]
    numeric = [
        pd.api.types.is_numeric_dtype(df.iloc[:, j])
        and not pd.api.types.is_bool_dtype(df.iloc[:, j])
        for j in range(df.shape[1])
    ]
    left_out = max(0, len(df) - MAX_ROWS)
    shown = df.iloc[:MAX_ROWS]
    text = pd.DataFrame(
        {
            j: [_column_format(names[j], df.iloc[:, j])(v) for v in shown.iloc[:, j]]
            for j in range(df.shape[1])
        },
        index=range(len(shown)),
        dtype=object,
    )
    text.columns = names
    return text, numeric, left_out
