"""fixed-count — a fixed probability vs a fixed number of active units.

Question (the research note):
    "p is the probability of elements staying active at each step (they use fixed
    probability, and not a fixed number of active elements)." Does it matter which?

Two ways to drop half of a layer of H units. Bernoulli dropout keeps each unit
independently with probability keep (the number kept is Binomial(H, keep)); fixed-count
dropout keeps exactly ``H - round(rate H)`` units, a uniformly random subset per example,
scaled by ``H / kept`` (:class:`droplab.FixedCountDropout`). Each unit's marginal is the
same; the fixed-count mask elements are negatively correlated, ``Cov(m_i, m_j) =
-Var(m_i)/(H-1)`` (sampling without replacement). A downstream sum ``sum_i a_i m_i`` then
has variance ``Var(m) [sum a_i^2 - (sum_{i != j} a_i a_j)/(H-1)]``: when the ``a_i`` are
mean-zero over units the correction is O(1/H) relative to the first term, so the
difference from Bernoulli should shrink like 1/H (it need not when they share a sign).

Design (docs/statistics.md): MLPs of two hidden layers of width H in {8, 16, 32, 128}
(standard); at each H both arms tune learning rate, decoupled weight decay, max-norm and the
hidden rate with the same number of configurations, early stopping on validation, selected
on validation only; a fresh data draw per replicate. Gradient noise
(:mod:`droplab.studies.gradient_trace`): at each H a net trained from initialization with
Bernoulli dropout at rate 0.5 (the Bernoulli arm's selected lr, weight decay and max-norm at
the first width) is measured at checkpoints along training and at its selected weights;
both mask types on the same weights and batch give ``trace Cov g``; per replicate
``D_H = mean_t (noise_fixed - noise_bern) / noise_bern``.

Primary contrast (declared): tuned fixed-count − tuned Bernoulli test error, averaged over
the four widths per replicate (margin ±1 point, the protocol's). Why: the note asks whether
a fixed count behaves differently, and accuracy is what "behaves" means to a user; the
average over widths is the question at the widths studied, with the smallest ones (where
the 1/H difference is largest) included and the most replicates' worth of precision.

Secondary (Holm): the test-error difference at each width; the log ratio of the noise
traces at each width (margin ±0.1); the trend in 1/H, fitted per replicate by least
squares ``D_H = a + s / H`` and ``err_diff_H = a' + s' / H``: the slope ``s`` (margin ±0.5,
i.e. 6% of the noise at H = 8), the intercept ``a`` (the H -> infinity limit, margin ±0.02)
and the accuracy slope ``s'`` (margin ±8 points x H, 1 point at H = 8).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from droplab.findings import Contrast, Findings
from droplab.studies import gradient_study as G
from droplab.studies import protocol as P
from droplab.studies.base import Study, Trial
from droplab.studies.stats import adjust, compare_diffs, mean_ci

__all__ = ["PRESETS", "QUESTION", "STUDY", "analyze", "slopes", "trials"]

QUESTION = (
    "p is the probability of elements staying active at each step (they use fixed "
    "probability, and not a fixed number of active elements). Does a fixed number of "
    "active elements behave differently?"
)
VARIANTS = ("bernoulli", "fixed-count")
#: margins of the secondaries (see the module docstring)
MARGINS = {"noise_log": 0.1, "noise_slope": 0.5, "noise_limit": 0.02, "err_slope": 8.0}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "budget": P.BUDGETS["quick"],
        "dataset": "digits",
        "n_train": 800,
        "widths": [8, 32],
        "depth": 2,
        "trace_widths": [8, 32],
        "trace_rates": [0.5],
        "samples": 40,
        "grad_batch": 64,
    },
    "standard": {
        "budget": dataclasses.replace(
            P.BUDGETS["standard"], seeds=4, max_steps=2000, patience_steps=720
        ),
        "dataset": "mnist1d",
        "n_train": 3600,
        "widths": [8, 16, 32, 128],
        "depth": 2,
        "trace_widths": [8, 16, 32, 128],
        "trace_rates": [0.5],
        "samples": 48,
        "grad_batch": 100,
    },
    "full": {
        "budget": P.BUDGETS["full"],
        "dataset": "mnist1d",
        "n_train": 3600,
        "widths": [8, 16, 32, 64, 128, 256],
        "depth": 2,
        "trace_widths": [8, 16, 32, 64, 128, 256],
        "trace_rates": [0.25, 0.5],
        "samples": 400,
        "grad_batch": 100,
    },
}


def trials(preset: str, *, seed: int = 0) -> list[Trial]:
    """Accuracy and gradient trials of ``preset`` for root seed ``seed``."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    return G.make_trials("fixed-count", preset, seed, VARIANTS, PRESETS[preset])


run_group = G.run_group

# -- the analysis ------------------------------------------------------------------------------


def _width_frame(done: pd.DataFrame) -> pd.DataFrame:
    """One row per (replicate seed, width): the tuned test-error difference (points),
    NLL difference, and the gradient-noise measures at rate 0.5 (NaN where missing)."""
    acc = done[done["kind"] == "accuracy"]
    acc = acc.assign(width=[int(w[0]) for w in acc["widths"]])
    rows = []
    for w, g in acc.groupby("width"):
        f, b = P.tuned(g, ["fixed-count"]), P.tuned(g, ["bernoulli"])
        fe, be = P.paired(f, b, "test_error")
        seeds = sorted(set(f["seed"]) & set(b["seed"]))
        for s, x, y in zip(seeds, fe, be):
            rows.append({"seed": s, "width": int(w), "err_diff": (x - y) * 100})
    frame = pd.DataFrame(rows, columns=["seed", "width", "err_diff"])
    grad = G.grad_rows(done)
    grad = grad[grad["trace_rate"] == 0.5][
        ["seed", "trace_width", "noise_rel_diff", "noise_log_ratio"]
    ]
    grad = grad.rename(columns={"trace_width": "width"})
    return frame.merge(grad, on=["seed", "width"], how="outer").sort_values(["seed", "width"])


def slopes(per: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per replicate, the least-squares fit ``column = a + s / H`` over its widths: columns
    ``seed, intercept, slope`` (replicates with fewer than 2 widths dropped)."""
    rows = []
    for seed, g in per.dropna(subset=[column]).groupby("seed"):
        if g["width"].nunique() < 2:
            continue
        s, a = np.polyfit(1.0 / g["width"].to_numpy(float), g[column].to_numpy(float), 1)
        rows.append({"seed": seed, "intercept": float(a), "slope": float(s)})
    return pd.DataFrame(rows, columns=["seed", "intercept", "slope"])


def _contrasts(per: pd.DataFrame, roots) -> list[Contrast]:
    err = P.error_points(roots)
    mean_diff = per.dropna(subset=["err_diff"]).groupby("seed")["err_diff"].mean()
    widths = sorted(per.dropna(subset=["err_diff"])["width"].unique())
    out = [
        compare_diffs(
            "fixed_vs_bernoulli",
            mean_diff.to_numpy(float),
            primary=True,
            description=f"tuned fixed-count − tuned Bernoulli, test error, mean over widths "
            f"{', '.join(map(str, widths))}",
            **{**err, "scale": 1.0},
        )
    ]
    for w in widths:
        d = per.loc[per["width"] == w, "err_diff"].to_numpy(float)
        out.append(
            compare_diffs(
                f"fixed_vs_bernoulli_h{w}",
                d,
                description=f"tuned fixed-count − tuned Bernoulli, test error, H={w}",
                **{**err, "scale": 1.0},
            )
        )
    for w in sorted(per.dropna(subset=["noise_log_ratio"])["width"].unique()):
        out.append(
            compare_diffs(
                f"noise_ratio_h{w}",
                per.loc[per["width"] == w, "noise_log_ratio"].to_numpy(float),
                metric="grad_noise",
                unit="log ratio",
                margin=MARGINS["noise_log"],
                root_seeds=roots,
                description=f"log(gradient-noise trace fixed-count / Bernoulli) along training, H={w}",
            )
        )
    noise = slopes(per, "noise_rel_diff")
    acc = slopes(per, "err_diff")
    for name, frame, col, unit, margin, text in (
        (
            "noise_slope",
            noise,
            "slope",
            "per 1/H",
            MARGINS["noise_slope"],
            "slope s of the relative noise difference D_H = a + s/H",
        ),
        (
            "noise_limit",
            noise,
            "intercept",
            "fraction",
            MARGINS["noise_limit"],
            "H -> infinity limit a of the relative noise difference D_H = a + s/H",
        ),
        (
            "error_slope",
            acc,
            "slope",
            "points x H",
            MARGINS["err_slope"],
            "slope s' of the test-error difference err_H = a' + s'/H",
        ),
    ):
        out.append(
            compare_diffs(
                name,
                frame[col].to_numpy(float),
                metric="grad_noise" if name.startswith("noise") else "test_error",
                unit=unit,
                margin=margin,
                root_seeds=roots,
                description=text,
            )
        )
    return adjust(out)


def width_table(per: pd.DataFrame) -> pd.DataFrame:
    """Per width: mean and 95% t interval of the test-error difference (points) and of the
    relative noise difference D_H, with ``1/H`` (the trend's regressor)."""
    rows = []
    for w, g in per.groupby("width"):
        row: dict[str, Any] = {"width": int(w), "inv_width": 1.0 / w}
        for col in ("err_diff", "noise_rel_diff"):
            m, lo, hi = mean_ci(g[col].to_numpy(float))
            row.update({col: m, f"{col}_lo": lo, f"{col}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def _answer(cs: list[Contrast]) -> str:
    p = cs[0]
    ci = f"{p.estimate:+.1f} [{p.ci_low:+.1f}, {p.ci_high:+.1f}] points"
    head = {
        "equivalent": f"No: a fixed count of active units matches Bernoulli dropout's test error within ±{p.margin:g} point ({ci}, mean over widths)",
        "lowers": f"Yes: a fixed count of active units lowers test error ({ci}, mean over widths)",
        "raises": f"Yes: a fixed count of active units raises test error ({ci}, mean over widths)",
        "inconclusive": f"Inconclusive: fixed-count minus Bernoulli test error is {ci} (mean over widths; detectable {p.mde:.1f})",
    }[p.call]
    slope = next((c for c in cs if c.name == "noise_slope"), None)
    tail = f"; gradient-noise difference slope in 1/H: {slope.short()}" if slope else ""
    return head + tail + "."


def _figure(table: pd.DataFrame) -> Any:
    from droplab.report import style

    fig, axes = style.figure(ncols=2, width=9.6, height=3.4)
    for ax, col, label in (
        (axes[0], "err_diff", "test error: fixed-count − Bernoulli (points)"),
        (axes[1], "noise_rel_diff", "(noise fixed − noise Bernoulli) / noise Bernoulli"),
    ):
        style.band(
            ax,
            table["inv_width"],
            table[col],
            table[f"{col}_lo"],
            table[f"{col}_hi"],
            color=style.color(0),
        )
        ax.axhline(0.0, color="#333333", linewidth=0.8)
        ax.set(xlabel="1 / H", ylabel=label)
    return fig


def analyze(frame: pd.DataFrame) -> Findings:
    """Per width: the tuned accuracy difference and the gradient-noise difference, their
    trend in 1/H, and the primary contrast."""
    done = frame[frame["status"] == "finished"] if len(frame) else frame
    failed = P.failed_lines(frame) if len(frame) else []
    stale: list[str] = []
    if not done.empty:
        done, stale = P.current(done, PRESETS[str(done["preset"].iloc[0])]["budget"])
    if done.empty or (done["kind"] == "accuracy").sum() == 0:
        return Findings(
            "fixed-count", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed
        )
    roots = P.root_seeds(done)
    per = _width_frame(done)
    contrasts = _contrasts(per, roots)
    table = width_table(per)
    answer = _answer(contrasts)
    lines = [f"{c.description}: {c.short()}" for c in contrasts]
    acc = done[done["kind"] == "accuracy"]
    method = (
        f"{acc['dataset'].iloc[0]}, n={int(acc['n_train'].iloc[0])}, a fresh data draw per "
        f"replicate; root seeds {', '.join(map(str, roots))}; {contrasts[0].n_seeds} replicates. "
        f"MLPs of two hidden layers of width H; each arm tuned with "
        f"{int(acc['config'].max()) + 1} configurations per width (lr, AdamW weight decay, "
        f"max-norm, hidden rate in [0.1, 0.7]), early stopping on validation error, up to "
        f"{int(acc['max_steps'].iloc[0])} steps. Gradient noise: Bernoulli-trained nets at "
        f"rate 0.5 measured at steps {', '.join(map(str, G.CHECKPOINTS))} before their early "
        f"stop and at the selected weights, both masks on the same weights and a fixed batch. "
        f"Trend: per-replicate least squares on 1/H, then a t interval over replicates. CIs: "
        f"95% t over replicates; secondaries Holm-adjusted."
    )
    return Findings(
        study="fixed-count",
        question=QUESTION,
        verdict=answer + " " + "; ".join(lines[1:]) + ".",
        key_number=contrasts[0].short(),
        table=pd.DataFrame([c.to_dict() for c in contrasts]),
        figures={"fixed_count": _figure(table)},
        method=method,
        extra_tables={"differences by width (fixed-count − Bernoulli)": table.round(4)},
        failed=failed,
        references=["srivastava2014"],
        answer=answer,
        contrasts=contrasts,
        notes=P.cap_note(acc, "fixed-count") + stale,
    )


STUDY = Study(
    name="fixed-count",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=G.group_key,
    description=(
        "Fixed-count vs Bernoulli dropout, both tuned, at widths 8-128: the test-error "
        "difference, the gradient-noise difference along training, and their trend in 1/H."
    ),
    seeded=True,
)
