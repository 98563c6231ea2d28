"""Analysis helpers of the ensemble and uncertainty studies: pairing two methods' columns
by replicate, the per-method table (error, NLL and ECE before/after temperature scaling,
training steps), and the verdict words of a contrast."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from droplab.findings import Contrast
from droplab.studies.stats import mean_ci

__all__ = ["METRIC_COLUMNS", "current", "method_table", "pair", "said"]


def current(done: pd.DataFrame, preset: dict[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """The rows of ``preset``'s recipe and training/validation split (``n_fit``), and a
    note on rows of an older version of the study left in the store (never mixed in)."""
    from droplab.studies import protocol as P

    done, notes = P.current(done, preset["budget"])
    if done.empty:
        return done, notes
    keep = done["n_fit"] == preset["n_fit"] if "n_fit" in done else done["seed"] != done["seed"]
    left = int((~keep).sum())
    if left:
        notes = [
            *notes,
            f"{left} finished trials of another training/validation split (an older version "
            "of the study) are in the store and were left out",
        ]
    return done[keep], notes


def pair(a: pd.DataFrame, col_a: str, b: pd.DataFrame, col_b: str) -> tuple[np.ndarray, np.ndarray]:
    """Column ``col_a`` of tuned frame ``a`` and ``col_b`` of ``b`` on their common seeds,
    in seed order: two arrays of shape (n,). A missing column gives empty arrays."""
    if col_a not in a or col_b not in b:
        return np.array([]), np.array([])
    x, y = a.set_index("seed")[col_a], b.set_index("seed")[col_b]
    common = sorted(set(x.index) & set(y.index))
    return x.loc[common].to_numpy(float), y.loc[common].to_numpy(float)


#: method metric suffix -> (table column, scale)
METRIC_COLUMNS = {
    "error": ("test_error_pct", 100.0),
    "nll": ("test_nll", 1.0),
    "ts_nll": ("test_nll_ts", 1.0),
    "ece": ("test_ece_pct", 100.0),
    "ts_ece": ("test_ece_ts_pct", 100.0),
    "temperature": ("temperature", 1.0),
}


def method_table(rows: Sequence[tuple[str, pd.DataFrame, str, str]]) -> pd.DataFrame:
    """One row per method: ``(label, tuned frame, method prefix, steps column)``; each
    metric's mean over replicates with its 95% t interval, and the mean training steps."""
    out = []
    for label, frame, prefix, steps in rows:
        if frame.empty or f"{prefix}_error" not in frame:
            continue
        row: dict[str, Any] = {"method": label, "replicates": len(frame)}
        for suffix, (name, scale) in METRIC_COLUMNS.items():
            m, lo, hi = mean_ci(frame[f"{prefix}_{suffix}"].to_numpy(float) * scale)
            row.update({name: m, f"{name}_lo": lo, f"{name}_hi": hi})
        row["train_steps"] = float(frame[steps].mean()) if steps in frame else np.nan
        out.append(row)
    return pd.DataFrame(out)


def said(c: Contrast, subject: str, what: str, unit_word: str, digits: int = 1) -> str:
    """``subject`` + the call of ``c`` on ``what``: "X lowers test error by 1.2 [0.4, 2.0]
    points" / "X is equivalent within ±1 point of test error (+0.2 [-0.5, +0.9])" / "the
    effect of X on test error is inconclusive (...)"."""
    f = f"{{:.{digits}f}}"
    if c.call == "lowers":
        return (
            f"{subject} lowers {what} by {f.format(-c.estimate)} "
            f"[{f.format(-c.ci_high)}, {f.format(-c.ci_low)}] {unit_word}"
        )
    if c.call == "raises":
        return (
            f"{subject} raises {what} by {f.format(c.estimate)} "
            f"[{f.format(c.ci_low)}, {f.format(c.ci_high)}] {unit_word}"
        )
    g = f"{{:+.{digits}f}}"
    ci = f"{g.format(c.estimate)} [{g.format(c.ci_low)}, {g.format(c.ci_high)}] {unit_word}"
    if c.call == "equivalent":
        unit = unit_word[:-1] if c.margin == 1 and unit_word.endswith("s") else unit_word
        return f"{subject} is equivalent within ±{c.margin:g} {unit} of {what} ({ci})"
    return f"the effect of {subject} on {what} is inconclusive ({ci})"
