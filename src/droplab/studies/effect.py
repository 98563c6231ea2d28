"""effect — how much exactly does dropout help, and how do we quantify that?

Question (the research note):
    "How much exactly does drop-out help? How to quantify that? How do people quantify
    effectiveness of things like regularization?"

How it is quantified. A regularizer's effect is the difference in test error between the
best net one can train with it and the best net one can train without it, each *tuned
with the same budget* and selected on validation only (Srivastava et al. 2014, App. A:
dropout nets want larger learning rates, max-norm and longer training, so an untuned
comparison measures the recipe, not dropout). Its size is also given in training data:
the **data-equivalent gain**, how many times more examples the tuned net without dropout
needs to match the tuned dropout net's test error (``studies.learning_curve``).

Design (docs/statistics.md for the protocol). MLPs (ReLU, two hidden layers) on MNIST-1D
at several training-set sizes, every replicate a fresh draw of the data. Arms:

- ``none``: no dropout, tuned (learning rate, decoupled weight decay, max-norm).
- ``input``, ``hidden``, ``both``: dropout placement as a 2x2 factor with ``none``; each
  tunes its own rates with the same hyperparameters, ``Budget.configs`` configurations
  each. ``none`` gets three times as many configurations, the budget of the three
  placements together; the placement contrasts use its first ``configs`` (equal budgets).
- ``note``: the note's recipe, input 0.2 + hidden 0.5, Adam lr 1e-3, nothing tuned;
  ``plain``: the same recipe without dropout; ``anchor``: hidden 0.5 only, the recipe of
  docs/accuracy.md. Secondary, clearly labelled.

Primary contrast: tuned dropout (the placement and configuration with the lowest
validation error among the three placements) minus tuned none, test error, at the largest
MNIST-1D size. Secondary (Holm): each placement vs none, the interaction of input and
hidden dropout, the primary at the smaller sizes, test NLL, and the fixed recipes.

Your own model and data: ``droplab run effect --model pkg.mod:build --data pkg.mod:load``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from droplab.findings import Contrast, Findings
from droplab.studies import protocol as P
from droplab.studies.base import Study, Trial
from droplab.studies.learning_curve import data_equivalent
from droplab.studies.stats import adjust, compare, compare_diffs, mean_ci

__all__ = ["ARMS", "PRESETS", "QUESTION", "STUDY", "analyze", "trials"]

QUESTION = (
    "How much exactly does drop-out help? How to quantify that? How do people quantify "
    "effectiveness of things like regularization?"
)

_INPUT = P.Uniform(0.02, 0.3)
_HIDDEN = P.Uniform(0.1, 0.7)
PLACEMENTS = ("input", "hidden", "both")

#: the arms; ``none`` gets 3x the configurations (set per preset in :func:`trials`)
ARMS: dict[str, P.Arm] = {
    "none": P.Arm("none", "tuned, no dropout", P.TUNE),
    "input": P.Arm("input", "tuned, input dropout", {**P.TUNE, "input_rate": _INPUT}),
    "hidden": P.Arm("hidden", "tuned, hidden dropout", {**P.TUNE, "hidden_rate": _HIDDEN}),
    "both": P.Arm(
        "both", "tuned, input + hidden", {**P.TUNE, "input_rate": _INPUT, "hidden_rate": _HIDDEN}
    ),
    "note": P.Arm(
        "note",
        "the note's recipe (input 0.2, hidden 0.5, lr 1e-3)",
        {"lr": 1e-3, "input_rate": 0.2, "hidden_rate": 0.5},
        configs=1,
    ),
    "anchor": P.Arm(
        "anchor",
        "hidden 0.5 only, lr 1e-3 (docs/accuracy.md)",
        {"lr": 1e-3, "hidden_rate": 0.5},
        configs=1,
    ),
    "plain": P.Arm("plain", "no dropout, lr 1e-3 (untuned)", {"lr": 1e-3}, configs=1),
}
ALL = ("none", *PLACEMENTS, "note", "anchor", "plain")

#: preset -> budget, dataset, width, sizes where every arm trains, extra sizes for the
#: baseline's learning curve (``none`` and ``plain`` only).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "budget": P.BUDGETS["quick"],
        "dataset": "digits",
        "widths": (64, 64),
        "sizes": [600],
        "baseline_sizes": [1294],
    },
    "standard": {
        "budget": P.BUDGETS["standard"],
        "dataset": "mnist1d",
        "widths": (100, 100),
        "sizes": [1200, 3600],
        "baseline_sizes": [7200],
    },
    "full": {
        "budget": P.BUDGETS["full"],
        "dataset": "mnist1d",
        "widths": (256, 256),
        "sizes": [600, 1200, 2400, 3600],
        "baseline_sizes": [7200, 14400],
    },
}
USER = P.USER


def _arms(configs: int) -> dict[str, P.Arm]:
    none = ARMS["none"]
    return {**ARMS, "none": P.Arm(none.name, none.label, none.space, configs=3 * configs)}


def trials(
    preset: str, *, seed: int = 0, model: str | None = None, data: str | None = None
) -> list[Trial]:
    """Replicates x cells x arms x configurations of ``preset`` for root seed ``seed``."""
    p = PRESETS[preset]
    budget: P.Budget = p["budget"]
    cells = [P.Cell(p["dataset"], n, p["widths"], ALL) for n in p["sizes"]]
    cells += [P.Cell(p["dataset"], n, p["widths"], ("none", "plain")) for n in p["baseline_sizes"]]
    if model is not None or data is not None:
        cells = _user_cells(preset, cells, model, data)
    out = P.expand("effect", preset, seed, _arms(budget.configs), cells, budget)
    if model is None:
        return out
    user = {"model": USER + _spec(model)}
    return [Trial(t.study, {**t.config, **user}, t.seed, t.preset) for t in out]


def _spec(spec: str) -> str:
    """A user spec with a file path made absolute (workers may run elsewhere)."""
    module, _, attr = spec.partition(":")
    if module.endswith(".py") or "/" in module:
        return f"{Path(module).resolve()}:{attr}"
    return spec


def _user_cells(preset, cells, model, data) -> list[P.Cell]:
    """The user's data at 1/4, 1/2 and all of its train split (quick: all), every arm."""
    from droplab import data as dl_data
    from droplab.studies.base import load_user_data, load_user_model

    if data is None:
        ds = dl_data.load(cells[0].dataset, seed=0)
        out = cells
    else:
        spec = _spec(data)
        ds = load_user_data(spec, 0)
        n = len(ds.y_train)
        fractions = [1.0] if preset == "quick" else [0.25, 0.5, 1.0]
        sizes = sorted({max(10, int(n * f)) for f in fractions})
        out = [P.Cell(USER + spec, m, cells[0].widths, ALL) for m in sizes]
    if model is not None:
        load_user_model(_spec(model), ds)  # fails here, before any training
    return out


run_group = P.run_fit

# -- the analysis ----------------------------------------------------------------------------


def _label(dataset: str) -> str:
    if dataset.startswith(USER):
        return f"your data ({dataset[len(USER) :]})"
    return {"mnist1d": "MNIST-1D", "digits": "digits"}.get(dataset, dataset)


def _tuned_frames(done: pd.DataFrame, configs: int) -> dict[str, pd.DataFrame]:
    """name -> the validation-selected rows per (cell, seed)."""
    out = {
        "dropout": P.tuned(done, PLACEMENTS, name="dropout"),
        "none": P.tuned(done, ["none"]),
        "none_c": P.tuned(done, ["none"], configs=configs, name="none_c"),
    }
    for arm in (*PLACEMENTS, "note", "anchor", "plain"):
        out[arm] = P.tuned(done, [arm])
    return out


def _at(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    return frame[frame["n_train"] == n]


def curve_table(tuned: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean test error (%) of each arm at each size with its 95% t interval."""
    rows = []
    for arm in ("none", "dropout", *PLACEMENTS, "note", "anchor", "plain"):
        for n, g in tuned[arm].groupby("n_train"):
            m, lo, hi = mean_ci(g["test_error"].to_numpy(float) * 100)
            chosen = g["arm_selected"].value_counts()
            rows.append(
                {
                    "arm": arm,
                    "n_train": int(n),
                    "test_error": m,
                    "ci_low": lo,
                    "ci_high": hi,
                    "test_nll": float(g["test_nll"].mean()),
                    "seeds": len(g),
                    "chosen": ", ".join(f"{a} {c}" for a, c in chosen.items())
                    if arm == "dropout"
                    else "",
                    "best_epoch": float(g["best_epoch"].median()),
                }
            )
    return pd.DataFrame(rows)


def _contrasts(tuned, sizes, roots, label) -> list[Contrast]:
    big = max(sizes)
    err = P.error_points(roots)
    out = [
        compare(
            "dropout_vs_none",
            *P.paired(_at(tuned["dropout"], big), _at(tuned["none"], big), "test_error"),
            primary=True,
            description=f"tuned dropout − tuned none, test error, {label} n={big}",
            **err,
        )
    ]
    for arm in PLACEMENTS:
        out.append(
            compare(
                f"{arm}_vs_none",
                *P.paired(_at(tuned[arm], big), _at(tuned["none_c"], big), "test_error"),
                description=f"{arm} dropout − none (equal budgets), test error, n={big}",
                **err,
            )
        )
    # 2x2 interaction: (both - hidden) - (input - none), per seed
    cols = [
        _at(tuned[a], big).set_index("seed")["test_error"]
        for a in ("both", "hidden", "input", "none_c")
    ]
    inter = pd.concat(cols, axis=1).dropna()
    d = (inter.iloc[:, 0] - inter.iloc[:, 1] - inter.iloc[:, 2] + inter.iloc[:, 3]).to_numpy()
    out.append(
        compare_diffs(
            "interaction",
            d,
            description=f"interaction of input and hidden dropout "
            f"(both − hidden − input + none), test error, n={big}",
            **err,
        )
    )
    for n in sorted(sizes)[:-1]:
        out.append(
            compare(
                f"dropout_vs_none_n{n}",
                *P.paired(_at(tuned["dropout"], n), _at(tuned["none"], n), "test_error"),
                description=f"tuned dropout − tuned none, test error, n={n}",
                **err,
            )
        )
    out.append(
        compare(
            "dropout_vs_none_nll",
            *P.paired(_at(tuned["dropout"], big), _at(tuned["none"], big), "test_nll"),
            description=f"tuned dropout − tuned none, test NLL, n={big}",
            metric="test_nll",
            unit="nats",
            margin=0.02,
            root_seeds=roots,
        )
    )
    for a, b, text in (
        ("note", "plain", "the note's recipe − the same recipe without dropout"),
        ("anchor", "plain", "hidden 0.5, lr 1e-3 − no dropout, lr 1e-3 (accuracy.md's recipe)"),
        ("plain", "none", "untuned no-dropout recipe − tuned none"),
    ):
        out.append(
            compare(
                f"{a}_vs_{b}",
                *P.paired(_at(tuned[a], big), _at(tuned[b], big), "test_error"),
                description=f"{text}, test error, n={big}",
                **err,
            )
        )
    return adjust(out)


def gain_table(tuned: dict[str, pd.DataFrame], sizes: list[int]) -> pd.DataFrame:
    """Data-equivalent gain of tuned dropout over tuned none at each size."""
    none = tuned["none"].pivot_table(index="seed", columns="n_train", values="test_error")
    drop = tuned["dropout"].pivot_table(index="seed", columns="n_train", values="test_error")
    rows = []
    for n in sorted(sizes):
        if n not in drop:
            continue
        seeds = none.dropna().index.intersection(drop[n].dropna().index)
        if len(seeds) < 2:
            continue
        curve = {int(m): none.loc[seeds, m].to_numpy() for m in none.columns}
        g, lo, hi = data_equivalent(curve, drop.loc[seeds, n].to_numpy(), n)
        rows.append(
            {
                "n_train": n,
                "gain": g,
                "ci_low": lo,
                "ci_high": hi,
                "curve_max": max(curve) / n,
                "curve_min": min(curve) / n,
                "seeds": len(seeds),
            }
        )
    return pd.DataFrame(rows)


def _fmt_gain(r: pd.Series) -> str:
    def one(x: float) -> str:
        if math.isinf(x):
            return f">{r.curve_max:.1f}x"
        if x == 0.0:
            return f"<{r.curve_min:.2f}x"
        return f"{x:.2f}x"

    return f"{one(r.gain)} [{one(r.ci_low)}, {one(r.ci_high)}]"


def _said(c: Contrast, subject: str = "tuned dropout") -> str:
    """``subject`` + what it does to test error in contrast ``c``, in a few words."""
    if c.call == "lowers":
        return f"{subject} lowers test error by {-c.estimate:.1f} [{-c.ci_high:.1f}, {-c.ci_low:.1f}] points"
    if c.call == "raises":
        return f"{subject} raises test error by {c.estimate:.1f} [{c.ci_low:.1f}, {c.ci_high:.1f}] points"
    ci = f"{c.estimate:+.1f} [{c.ci_low:+.1f}, {c.ci_high:+.1f}] points"
    if c.call == "equivalent":
        return f"{subject} is equivalent within ±{c.margin:g} point of test error ({ci})"
    return f"{subject}'s effect on test error is inconclusive ({ci})"


def _answer(contrasts: list[Contrast], gain: pd.DataFrame, label: str, n: int) -> str:
    """One sentence: the primary contrast and its data-equivalent gain, then the smallest
    size where the call differs."""
    primary = contrasts[0]
    g = gain[gain["n_train"] == n]
    worth = f", worth {_fmt_gain(g.iloc[0])} the data" if len(g) else ""
    text = f"On {label} at n={n}, {_said(primary)} against tuned no-dropout{worth}"
    small = [c for c in contrasts if c.name.startswith("dropout_vs_none_n")]
    if small and small[0].call != primary.call:
        c = small[0]
        text += f"; at n={c.name.removeprefix('dropout_vs_none_n')}, {_said(c, 'it')}"
    return text + "."


def _figures(curves: pd.DataFrame, contrasts: list[Contrast], label: str) -> dict[str, Any]:
    from droplab.report import style

    fig, ax = style.figure(width=6.0, height=3.8)
    for i, arm in enumerate(("none", "dropout", "note", "plain")):
        t = curves[curves["arm"] == arm].sort_values("n_train")
        if t.empty:
            continue
        style.band(
            ax,
            t["n_train"],
            t["test_error"],
            t["ci_low"],
            t["ci_high"],
            color=style.color(i),
            label={
                "none": "tuned, no dropout",
                "dropout": "tuned dropout (placement chosen on validation)",
                "note": "note's recipe (untuned)",
                "plain": "no dropout (untuned)",
            }[arm],
        )
    ax.set(
        xscale="log",
        xlabel="training-set size n",
        ylabel="test error (%)",
        title=f"{label}: tuned learning curves, 95% CI over seeds",
    )
    ax.legend(fontsize=8)
    forest = style.forest(
        [c for c in contrasts if c.unit == "points"],
        xlabel="difference in test error (points), 95% CI; grey: ±1 point margin",
    )
    return {"learning_curves": fig, "contrasts": forest}


def analyze(frame: pd.DataFrame) -> Findings:
    """Tuned arms per (cell, seed), the contrasts, the data-equivalent gain."""
    done = frame[frame["status"] == "finished"] if len(frame) else frame
    failed = P.failed_lines(frame) if len(frame) else []
    stale: list[str] = []
    if not done.empty:
        done, stale = P.current(done, PRESETS[str(done["preset"].iloc[0])]["budget"])
    if done.empty:
        return Findings(
            "effect", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed
        )
    dataset = str(done["dataset"].iloc[0])
    # the study's own cells (examples/effect_width.py adds labelled width variants)
    done = done[(done["dataset"] == dataset) & (done["cell"] == "")]
    label = _label(dataset)
    configs = (
        int(done.loc[done["arm"] == "hidden", "config"].max()) + 1
        if (done["arm"] == "hidden").any()
        else 1
    )
    tuned = _tuned_frames(done, configs)
    sizes = sorted(int(n) for n in tuned["dropout"]["n_train"].unique())
    roots = P.root_seeds(done)
    contrasts = _contrasts(tuned, sizes, roots, label)
    curves = curve_table(tuned)
    gain = gain_table(tuned, sizes)
    primary = contrasts[0]
    answer = _answer(contrasts, gain, label, max(sizes))
    notes = P.cap_note(done, "effect") + stale
    lines = [f"{c.description}: {c.short()}" for c in contrasts]
    verdict = answer + " " + "; ".join(lines[1:]) + "."
    method = (
        f"{label}, a fresh data draw per replicate (test set included), {primary.n_seeds} "
        f"replicates per contrast, root seeds {', '.join(map(str, roots))}. MLP widths "
        f"{tuple(done['widths'].iloc[0]) if done['widths'].iloc[0] else 'user model'}. Each "
        f"arm tuned with {configs} quasi-random configurations per placement (none: "
        f"{3 * configs}, the three placements' budget) over learning rate, decoupled weight "
        f"decay (AdamW), max-norm and the arm's rates; up to {int(done['max_steps'].iloc[0])} "
        f"steps of batch {int(done['batch_size'].iloc[0])}, early stopping after "
        f"{int(done['patience_steps'].iloc[0])} steps without a better validation error; "
        f"the configuration with the lowest validation error is the arm's result. CIs: 95% "
        f"paired t over replicates; calls per docs/statistics.md (margin ±1 point, ±0.02 nats; "
        f"secondary contrasts Holm-adjusted). Data-equivalent gain: percentile bootstrap "
        f"over replicates."
    )
    table = pd.DataFrame([c.to_dict() for c in contrasts])
    return Findings(
        study="effect",
        question=QUESTION,
        verdict=verdict,
        key_number=primary.short(),
        table=table,
        figures=_figures(curves, contrasts, label),
        method=method,
        extra_tables={
            "learning curves (test error %, tuned arms)": curves.round(3),
            "data-equivalent gain of tuned dropout": gain.round(3),
        },
        failed=failed,
        references=["srivastava2014", "greydanus2020"],
        answer=answer,
        contrasts=contrasts,
        notes=notes,
    )


STUDY = Study(
    name="effect",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=P.group_key,
    description=(
        "Tuned no-dropout vs tuned dropout (placement as a 2x2 factor) along an MNIST-1D "
        "learning curve, equal search budgets, fresh data per replicate; test-error "
        "contrasts with 95% CIs and the data-equivalent gain."
    ),
    custom=True,
    seeded=True,
)
