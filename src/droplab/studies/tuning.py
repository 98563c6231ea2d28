"""The protocol's analysis helpers: validation-only selection of each arm per replicate,
pairing by replicate, one recipe at a time, and the notes a verdict must carry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from droplab.studies.stats import DEFAULT_MARGINS

__all__ = [
    "CELL_COLUMNS",
    "RECIPE",
    "cap_note",
    "current",
    "error_points",
    "failed_lines",
    "paired",
    "root_seeds",
    "tuned",
]


def error_points(roots: Sequence[int]) -> dict[str, Any]:
    """The keywords of ``stats.compare`` for a test-error contrast: fractions shown in
    percentage points, the default margin of 1 point, the given root seeds."""
    return {
        "metric": "test_error",
        "unit": "points",
        "margin": DEFAULT_MARGINS["points"],
        "scale": 100.0,
        "root_seeds": tuple(roots),
    }


#: the columns that identify a cell in a study's frame
CELL_COLUMNS = ("dataset", "n_train", "widths", "cell")


def tuned(
    done: pd.DataFrame, arms: Sequence[str], *, configs: int | None = None, name: str = ""
) -> pd.DataFrame:
    """The validation-selected result of ``arms`` (pooled into one search: e.g. all dropout
    placements) per (cell, replicate): one row per (cell, seed), the chosen trial's row.

    ``configs``: use only each arm's first ``configs`` configurations (a smaller, equal
    budget). Selection: lowest ``val_error``, then lowest ``val_loss``, then the earlier
    configuration. The returned rows get ``arm_selected`` (the chosen arm) and ``arm``
    set to ``name`` (or the single arm's name).
    """
    rows = done[done["arm"].isin(list(arms))]
    if configs is not None:
        rows = rows[rows["config"] < configs]
    if rows.empty:
        return rows.assign(arm_selected=pd.Series(dtype=object))
    finite = np.isfinite(rows["val_loss"])  # a diverged member ranks last
    order = rows.assign(
        _ve=rows["val_error"].where(finite, np.inf), _vl=rows["val_loss"].where(finite, np.inf)
    ).sort_values(["_ve", "_vl", "arm", "config"], kind="stable")
    keys = [*CELL_COLUMNS, "seed"]
    best = order.groupby(keys, sort=False, dropna=False).head(1).drop(columns=["_ve", "_vl"])
    return best.assign(arm_selected=best["arm"], arm=name or (arms[0] if len(arms) == 1 else ""))


def paired(a: pd.DataFrame, b: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``column`` of two tuned frames (one cell each) for their common seeds, in
    seed order: (a, b) of shape (n,)."""
    x = a.set_index("seed")[column]
    y = b.set_index("seed")[column]
    common = sorted(set(x.index) & set(y.index))
    return x.loc[common].to_numpy(float), y.loc[common].to_numpy(float)


RECIPE = ("max_steps", "eval_steps", "patience_steps", "batch_size")


def current(done: pd.DataFrame, budget: Any) -> tuple[pd.DataFrame, list[str]]:
    """The rows trained with ``budget``'s recipe (a ``protocol.Budget``), and a note on rows of other recipes
    left in the store (an older version of the study): they are never mixed in."""
    if done.empty:
        return done, []
    keep = pd.Series(True, index=done.index)
    for key in RECIPE:
        if key not in done:
            keep &= False
            continue
        keep &= done[key] == getattr(budget, key)
    if "replicate" not in done:
        keep &= False
    else:
        keep &= done["replicate"].notna()
    left = int((~keep).sum())
    note = (
        [
            f"{left} finished trials of another recipe (an older version of the study) are "
            "in the store and were left out"
        ]
        if left
        else []
    )
    return done[keep], note


def cap_note(done: pd.DataFrame, what: str) -> list[str]:
    """A note when more than 10% of members trained to the step cap without converging,
    naming the arms where more than 10% did."""
    if "capped" not in done or done.empty:
        return []
    share = float(done["capped"].mean())
    if share <= 0.10:
        return []
    by_arm = done.groupby("arm")["capped"].mean().sort_values(ascending=False)
    worst = ", ".join(f"{arm} {v:.0%}" for arm, v in by_arm.items() if v > 0.10)
    return [
        f"{share:.0%} of {what}'s {len(done)} members reached the step cap before early "
        f"stopping ({worst}): those may not have converged"
    ]


def failed_lines(frame: pd.DataFrame) -> list[str]:
    """One line per trial that did not finish (for the command line)."""
    out = []
    for r in frame[frame["status"] != "finished"].to_dict("records"):
        error = r.get("error")
        last = str(error).strip().splitlines()[-1] if isinstance(error, str) and error else ""
        out.append(
            f"{r.get('dataset')} n={r.get('n_train')} {r.get('arm')} config {r.get('config')} "
            f"seed {r.get('seed')}: {r.get('status')} {last}".strip()
        )
    return out


def root_seeds(done: pd.DataFrame) -> tuple[int, ...]:
    """The root seeds whose trials are in ``done``."""
    if "root_seed" not in done or done.empty:
        return ()
    return tuple(sorted(int(s) for s in done["root_seed"].dropna().unique()))
