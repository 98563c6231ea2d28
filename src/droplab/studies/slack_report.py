"""Tables and figures of the slack study from its two tuned frames (one validation-selected
row per replicate and arm): per-arm means, normalized pruning / unit-ablation curves, and
the profile of unit importances."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from droplab.studies.slack_measures import ABLATE_FRACTIONS, PRUNE_FRACTIONS, QUANTILES
from droplab.studies.stats import mean_ci

__all__ = ["MEASURES", "arm_table", "figures"]

#: metric -> (label, scale) of the per-arm table
MEASURES = {
    "test_error": ("test error (%)", 100.0),
    "unit_cv": ("CV of unit importance ||w_in||·||w_out||", 1.0),
    "unit_cv_act": ("CV of activation importance rms(h)·||w_out||", 1.0),
    "slack_units": ("slack units (%)", 100.0),
    "dead_units": ("dead ReLUs on every test input (%)", 100.0),
    "frac_small_rel": ("weights < 0.1 rms of their layer (%)", 100.0),
    "coadapt": ("mean |corr| of hidden units", 1.0),
    "prune_ret": ("retention, magnitude pruning, mean 50-95% (%)", 100.0),
    "least_ret": ("retention, least important units removed, mean 25-90% (%)", 100.0),
    "random_ret": ("retention, random units removed, mean 25-90% (%)", 100.0),
    "hidden_rate": ("hidden dropout rate (selected)", 1.0),
    "lr": ("learning rate (selected)", 1.0),
    "weight_decay": ("weight decay (selected)", 1.0),
}
_ARMS = ("none", "dropout")


def arm_table(drop: pd.DataFrame, none: pd.DataFrame) -> pd.DataFrame:
    """One row per measure: mean and 95% t interval over replicates for each arm."""
    rows = []
    for col, (label, scale) in MEASURES.items():
        row: dict[str, Any] = {"measure": label}
        for arm, g in zip(_ARMS, (none, drop)):
            if col not in g:
                row.update({arm: np.nan, f"{arm}_ci": ""})
                continue
            m, lo, hi = mean_ci(g[col].to_numpy(float) * scale)
            row.update({arm: round(m, 4), f"{arm}_ci": f"[{lo:.3g}, {hi:.3g}]"})
        rows.append(row)
    return pd.DataFrame(rows)


def _curve(g: pd.DataFrame, prefix: str, fractions) -> tuple[list, list, list, list]:
    xs, ms, los, his = [], [], [], []
    for f in fractions:
        col = f"{prefix}_ret_{round(f * 100)}"
        if col not in g:
            continue
        m, lo, hi = mean_ci(g[col].to_numpy(float) * 100)
        xs.append(f * 100)
        ms.append(m)
        los.append(lo)
        his.append(hi)
    return xs, ms, los, his


def figures(drop: pd.DataFrame, none: pd.DataFrame) -> dict[str, Any]:
    """``robustness`` (three panels of retention curves) and ``importance_profile``."""
    from droplab.report import style

    fig, axes = style.figure(ncols=3, width=12.0, height=3.4)
    panels = (
        ("prune", PRUNE_FRACTIONS, "weights pruned per layer by |w| (%)"),
        ("least", ABLATE_FRACTIONS, "least important units removed per layer (%)"),
        ("random", ABLATE_FRACTIONS, "random units removed per layer (%)"),
    )
    for ax, (prefix, fractions, xlabel) in zip(np.atleast_1d(axes), panels):
        for i, (arm, g) in enumerate(zip(_ARMS, (none, drop))):
            xs, ms, los, his = _curve(g, prefix, fractions)
            if xs:
                style.band(ax, xs, ms, los, his, color=style.color(i), label=f"tuned {arm}")
        ax.set(xlabel=xlabel, ylabel="accuracy retained above chance (%)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    figs = {"robustness": fig}

    fig, ax = style.figure(width=5.6, height=3.6)
    for i, (arm, g) in enumerate(zip(_ARMS, (none, drop))):
        if "curves" not in g:
            continue
        q = [c["importance_quantiles"] for c in g["curves"] if "importance_quantiles" in c]
        if q:
            ax.plot(
                np.array(QUANTILES) * 100, np.mean(q, 0), color=style.color(i), label=f"tuned {arm}"
            )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set(
        xlabel="unit rank (percentile)",
        ylabel="importance / layer mean",
        yscale="log",
        title="hidden-unit importance ||w_in||·||w_out||, mean over replicates",
    )
    figs["importance_profile"] = fig
    return figs
