"""rate — which dropout rates work best, and is the note's rule of thumb among them?

Question (the research note):
    "dropout is most effective for p=0.5 (it maximizes p(1-p)). In practice, it's OK to
    set p at 0.5 for intermediate layers, but it should be higher (0.8?) for input
    layers" — p is the probability of KEEPING a unit, so the rule is hidden rate 0.5,
    input rate 0.2 in droplab's convention (rate = P(drop)).

The rate is a hyperparameter, so it is treated as one. Grid: hidden rate x input rate
(each cell an arm that tunes learning rate, decoupled weight decay and max-norm with the
same budget); per replicate, the cell with the lowest validation error is "the
validation-best rates". Every replicate is a fresh data draw (docs/statistics.md).

Srivastava et al. (2014, sec. 7.3) also ask the question at a fixed *expected* number of
kept units: "pn fixed" scales the hidden width as n = base / keep, so a higher rate gets a
wider net. Those cells (input rate 0) are trained beside the fixed-width grid.

Theory. With inverted scaling the penalty dropout adds is proportional to the noise
variance ``(1-keep)/keep`` (Wager et al. 2013), monotone in the rate: the note's ``p(1-p)``
peaks at 0.5 only for unscaled dropout, so theory singles out no rate, and the best one
should move with width and data.

Primary contrast: the note's cell (hidden 0.5, input 0.2) minus the validation-best cell,
test error, on MNIST-1D. Secondary (Holm): every other cell minus the note's cell, and the
"pn fixed" cells minus the fixed-width cells of the same rate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from droplab.findings import Contrast, Findings
from droplab.studies import protocol as P
from droplab.studies.base import Study, Trial
from droplab.studies.stats import adjust, compare, mean_ci

__all__ = ["NOTE_CELL", "PRESETS", "QUESTION", "STUDY", "analyze", "penalty_coefficient", "trials"]

QUESTION = (
    "Dropout is most effective for p = 0.5 (it maximizes p(1-p)); p = 0.5 for intermediate "
    "layers but higher (0.8?) for input layers. Is that where the best rates are?"
)
#: the note's rule of thumb in droplab's convention: (hidden rate, input rate) = P(drop).
NOTE_CELL = (0.5, 0.2)


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "budget": P.BUDGETS["quick"],
        "dataset": "digits",
        "n_train": 1294,
        "width": 64,
        "hidden_rates": [0.0, 0.5],
        "input_rates": [0.0, 0.2],
    },
    "standard": {
        "budget": P.BUDGETS["standard"],
        "dataset": "mnist1d",
        "n_train": 3600,
        "width": 100,
        "hidden_rates": [0.0, 0.25, 0.5, 0.75],
        "input_rates": [0.0, 0.2],
    },
    "full": {
        "budget": dataclasses.replace(P.BUDGETS["full"], configs=6),
        "dataset": "mnist1d",
        "n_train": 3600,
        "width": 256,
        "hidden_rates": [0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75],
        "input_rates": [0.0, 0.1, 0.2, 0.3],
    },
}


def arm_name(hidden: float, inp: float) -> str:
    return f"h{hidden:g}_i{inp:g}"


def _arms(p: dict[str, Any]) -> dict[str, P.Arm]:
    return {
        arm_name(h, i): P.Arm(
            arm_name(h, i),
            f"hidden {h:g}, input {i:g}",
            {**P.TUNE, "hidden_rate": h, "input_rate": i},
        )
        for h in p["hidden_rates"]
        for i in p["input_rates"]
    }


def pn_width(width: int, hidden: float) -> int:
    """Srivastava's "pn fixed": the width whose expected kept units equal width / 2."""
    return max(1, round(width / 2 / (1.0 - hidden)))


def trials(preset: str, *, seed: int = 0) -> list[Trial]:
    """The fixed-width grid and the "pn fixed" cells of ``preset``, root seed ``seed``."""
    p = PRESETS[preset]
    arms = _arms(p)
    w, n = p["width"], p["n_train"]
    cells = [P.Cell(p["dataset"], n, (w, w), tuple(arms))]
    for h in p["hidden_rates"]:
        pw = pn_width(w, h)
        if pw != w:  # the same width is the fixed-width grid's cell
            cells.append(P.Cell(p["dataset"], n, (pw, pw), (arm_name(h, 0.0),), "pn"))
    return P.expand("rate", preset, seed, arms, cells, p["budget"])


run_group = P.run_fit

# -- the analysis ------------------------------------------------------------------------------


def penalty_coefficient(rate: float) -> float:
    """The inverted-dropout noise variance ``(1-keep)/keep`` that scales dropout's explicit
    regularizer (from :func:`droplab.theory.gaussian_sigma`); monotone in ``rate``."""
    from droplab.theory import gaussian_sigma

    return float(gaussian_sigma(1.0 - rate)) ** 2


def _grid(done: pd.DataFrame) -> pd.DataFrame:
    return done[done["cell"] == ""]


def profile(done: pd.DataFrame) -> pd.DataFrame:
    """Mean test error (%) per cell (tuned) with its 95% t interval, fixed width and pn."""
    rows = []
    for (label, arm), g in done.groupby(["cell", "arm"], sort=True):
        t = P.tuned(g, [arm])
        m, lo, hi = mean_ci(t["test_error"].to_numpy(float) * 100)
        rows.append(
            {
                "variant": "pn fixed" if label == "pn" else "fixed width",
                "hidden_rate": float(t["hidden_rate"].iloc[0]),
                "input_rate": float(t["input_rate"].iloc[0]),
                "width": int(t["widths"].iloc[0][0]),
                "test_error": m,
                "ci_low": lo,
                "ci_high": hi,
                "val_error": float(t["val_error"].mean() * 100),
                "seeds": len(t),
            }
        )
    return pd.DataFrame(rows).sort_values(["variant", "input_rate", "hidden_rate"])


def _contrasts(done: pd.DataFrame, roots) -> tuple[list[Contrast], pd.DataFrame]:
    grid = _grid(done)
    note = arm_name(*NOTE_CELL)
    err = P.error_points(roots)
    best = P.tuned(grid, sorted(grid["arm"].unique()), name="validation-best")
    tuned_note = P.tuned(grid, [note])
    out = [
        compare(
            "note_vs_best",
            *P.paired(tuned_note, best, "test_error"),
            primary=True,
            description="the note's rates (hidden 0.5, input 0.2) − the validation-best rates, test error",
            **err,
        )
    ]
    none = arm_name(0.0, 0.0)
    if none in set(grid["arm"]):
        out.append(
            compare(
                "best_vs_none",
                *P.paired(best, P.tuned(grid, [none]), "test_error"),
                description="the validation-best rates − no dropout (both rates 0), test error",
                **err,
            )
        )
    for arm in sorted(grid["arm"].unique()):
        if arm == note:
            continue
        out.append(
            compare(
                f"{arm}_vs_note",
                *P.paired(P.tuned(grid, [arm]), tuned_note, "test_error"),
                description=f"{arm.replace('h', 'hidden ').replace('_i', ', input ')} − the note's rates, test error",
                **err,
            )
        )
    pn = done[done["cell"] == "pn"]
    for arm in sorted(pn["arm"].unique()):
        width = int(pn.loc[pn["arm"] == arm, "widths"].iloc[0][0])
        out.append(
            compare(
                f"pn_{arm}",
                *P.paired(P.tuned(pn, [arm]), P.tuned(grid, [arm]), "test_error"),
                description=f"pn fixed (width {width}) − fixed width, {arm.replace('h', 'hidden ').replace('_i', ', input ')}, test error",
                **err,
            )
        )
    return adjust(out), best


def _answer(primary: Contrast, best: pd.DataFrame) -> str:
    h = mean_ci(best["hidden_rate"].to_numpy(float))
    i = mean_ci(best["input_rate"].to_numpy(float))
    picks = f"validation picks hidden {h[0]:.2f} [{h[1]:.2f}, {h[2]:.2f}], input {i[0]:.2f} [{i[1]:.2f}, {i[2]:.2f}]"
    d = primary
    ci = f"{d.estimate:+.1f} [{d.ci_low:+.1f}, {d.ci_high:+.1f}] points"
    if d.call == "equivalent":
        return f"Yes within ±{d.margin:g} point: the note's rates match the validation-best rates ({ci}); {picks}."
    if d.call == "raises":
        return f"No: the note's rates give higher test error than the validation-best rates ({ci}); {picks}."
    if d.call == "lowers":
        return f"The note's rates beat the validation-selected ones on test ({ci}); {picks}."
    return f"Inconclusive: the note's rates vs the validation-best rates differ by {ci} (detectable: {d.mde:.1f}); {picks}."


def _figure(prof: pd.DataFrame) -> dict[str, Any]:
    from droplab.report import style

    fig, ax = style.figure(width=6.0, height=3.8)
    k = 0
    for (variant, inp), t in prof.groupby(["variant", "input_rate"], sort=True):
        t = t.sort_values("hidden_rate")
        style.band(
            ax,
            t["hidden_rate"],
            t["test_error"],
            t["ci_low"],
            t["ci_high"],
            color=style.color(k),
            label=f"{variant}, input {inp:g}",
        )
        k += 1
    ax.axvline(NOTE_CELL[0], color="black", linewidth=0.8, linestyle=":")
    ax.set(
        xlabel="hidden dropout rate",
        ylabel="test error (%)",
        title="test error over the rate (each cell tuned), 95% CI",
    )
    ax.legend(fontsize=8)
    return {"profile": fig}


def analyze(frame: pd.DataFrame) -> Findings:
    """The rate profile, the validation-best rates, the note's cell against them."""
    done = frame[frame["status"] == "finished"] if len(frame) else frame
    failed = P.failed_lines(frame) if len(frame) else []
    stale: list[str] = []
    if not done.empty:
        done, stale = P.current(done, PRESETS[str(done["preset"].iloc[0])]["budget"])
    if done.empty:
        return Findings("rate", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed)
    roots = P.root_seeds(done)
    contrasts, best = _contrasts(done, roots)
    prof = profile(done)
    picks = best["arm_selected"].value_counts().rename_axis("cell").reset_index(name="replicates")
    answer = _answer(contrasts[0], best)
    lines = [f"{c.description}: {c.short()}" for c in contrasts]
    grid = _grid(done)
    method = (
        f"{done['dataset'].iloc[0]}, n={int(done['n_train'].iloc[0])}, a fresh data draw per "
        f"replicate; MLP {tuple(grid['widths'].iloc[0])}; {contrasts[0].n_seeds} replicates, "
        f"root seeds {', '.join(map(str, roots))}. Every cell tuned with "
        f"{int(grid['config'].max()) + 1} quasi-random configurations (learning rate, AdamW "
        f"weight decay, max-norm), early stopping on validation error, the configuration "
        f"with the lowest validation error kept; the validation-best cell is chosen per "
        f"replicate among {grid['arm'].nunique()} cells. pn fixed: hidden width "
        f"= {int(grid['widths'].iloc[0][0]) // 2} / keep, input rate 0. CIs: 95% paired t over "
        f"replicates; calls per docs/statistics.md (±1 point; secondary contrasts Holm-adjusted)."
    )
    return Findings(
        study="rate",
        question=QUESTION,
        verdict=answer + " " + "; ".join(lines[1:]) + ".",
        key_number=contrasts[0].short(),
        table=pd.DataFrame([c.to_dict() for c in contrasts]),
        figures=_figure(prof),
        method=method,
        extra_tables={
            "test error over the rates (%)": prof.round(3),
            "validation-best cell per replicate": picks,
        },
        failed=failed,
        references=["srivastava2014", "wager2013"],
        answer=answer,
        contrasts=contrasts,
        notes=P.cap_note(done, "rate") + stale,
    )


STUDY = Study(
    name="rate",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=P.group_key,
    description=(
        "Hidden x input rate grid, every cell tuned with the same budget on fresh data per "
        "replicate, plus Srivastava's pn-fixed widths: the validation-best rates with CIs "
        "and the note's (0.5, 0.2) against them."
    ),
    seeded=True,
)
