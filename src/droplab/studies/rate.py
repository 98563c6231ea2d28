"""rate — which dropout rates work best, and is the note's rule of thumb among them?

Question (the research note):
    "dropout is most effective for p=0.5 (it maximizes p(1-p)). In practice, it's OK to
    set p at 0.5 for intermediate layers, but it should be higher (0.8?) for input
    layers" — p is the probability of KEEPING a unit, so the rule is hidden rate 0.5,
    input rate 0.2 in droplab's convention (rate = P(drop)).

Grid. A full grid of hidden rate x input rate, every cell trained with the same seeds, on
MLPs of three widths on MNIST-1D (narrow, base, wide) and the base MLP on sklearn digits.
All cells and seeds of one net are the members of one batched ``fit``, so for seed s
every cell shares the validation split, the initialization and the batch order: the
comparison between two cells is paired by seed.

Training. Adam, cross-entropy, a fixed epoch budget long enough for the no-dropout nets to
overfit; each member keeps its weights of the epoch with the lowest validation loss, and
test error is measured there with weight scaling (inverted dropout: the identity at test).

Analysis. For each net: the mean test error of each cell with its 95% Student-t CI over
seeds; the best cell (lowest mean); for every cell the paired difference to the best cell
with its 95% CI. A cell is "indistinguishable from the best" when that CI reaches 0 (a
paired t-test at the 5% level does not reject equality). The best cell is chosen on the
same data, so its advantage is slightly optimistic (winner's curse) and the set is, if
anything, too small: the rule of thumb being inside it is the harder test to pass.

Theory. With inverted scaling the explicit regularizer dropout adds is proportional to the
noise variance ``(1-keep)/keep`` (``droplab.theory.gaussian_sigma(keep) ** 2``; Wager et al.
2013, Wei et al. 2020), which grows monotonically from 0 at rate 0 to infinity as rate -> 1.
The note's ``p(1-p)`` peaks at 0.5 only for the classic (unscaled) convention, so theory
singles out no rate: the best one is whatever strength of regularization the net and the
data need, and it should move with width and data size.

Verdict. Per net the best cell with its CI, whether (hidden 0.5, input 0.2) is in the set
indistinguishable from it, and the best hidden rates across nets.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from droplab.findings import Findings
from droplab.store import canonical_json
from droplab.studies.base import Study, Trial
from droplab.studies.stats import fmt_ci, mean_ci, paired_ci

__all__ = ["NOTE_CELL", "PRESETS", "QUESTION", "STUDY", "analyze", "run_group", "trials"]

QUESTION = (
    "Dropout is most effective for p = 0.5 (it maximizes p(1-p)); p = 0.5 for intermediate "
    "layers but higher (0.8?) for input layers. Is that where the best rates are?"
)
#: the note's rule of thumb in droplab's convention: (hidden rate, input rate) = P(drop).
NOTE_CELL = (0.5, 0.2)

# -- the grid ------------------------------------------------------------------------------

#: preset -> seeds, nets (dataset, label, widths), the rate grid and the training recipe.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": [0, 1, 2],
        "nets": [("digits", "base", [64])],
        "hidden_rates": [0.0, 0.5],
        "input_rates": [0.0, 0.2],
        "epochs": 8,
        "batch_size": 64,
        "lr": 2e-3,
    },
    "standard": {
        "seeds": [0, 1, 2, 3],
        "nets": [
            ("mnist1d", "narrow", [32, 32]),
            ("mnist1d", "base", [128, 128]),
            ("mnist1d", "wide", [256, 256]),
            ("digits", "base", [128, 128]),
        ],
        "hidden_rates": [0.0, 0.25, 0.5, 0.75],
        "input_rates": [0.0, 0.2, 0.4],
        "epochs": 30,
        "batch_size": 100,
        "lr": 3e-3,
    },
    "full": {
        "seeds": list(range(10)),
        "nets": [
            ("mnist1d", "narrow", [32, 32]),
            ("mnist1d", "base", [128, 128]),
            ("mnist1d", "wide", [512, 512]),
            ("mnist1d", "wider", [1024, 1024]),
            ("digits", "narrow", [32, 32]),
            ("digits", "base", [128, 128]),
            ("digits", "wide", [512, 512]),
        ],
        "hidden_rates": [0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9],
        "input_rates": [0.0, 0.1, 0.2, 0.3, 0.5],
        "epochs": 150,
        "batch_size": 100,
        "lr": 1e-3,
    },
}


def trials(preset: str) -> list[Trial]:
    """One trial per (net, hidden rate, input rate, seed) of ``preset``."""
    p = PRESETS[preset]
    out = []
    for dataset, label, widths in p["nets"]:
        for hidden in p["hidden_rates"]:
            for inp in p["input_rates"]:
                config = {
                    "dataset": dataset,
                    "net": label,
                    "widths": list(widths),
                    "hidden_rate": hidden,
                    "input_rate": inp,
                    "epochs": p["epochs"],
                    "batch_size": p["batch_size"],
                    "lr": p["lr"],
                    "data_seed": 0,
                }
                out.extend(Trial("rate", config, seed, preset) for seed in p["seeds"])
    return out


def group_key(trial: Trial) -> str:
    """All cells and seeds of one net train together (the rates are per member)."""
    c = {k: v for k, v in trial.config.items() if k not in ("hidden_rate", "input_rate")}
    return trial.preset + canonical_json(c)


# -- the training ----------------------------------------------------------------------------


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """Train every (cell, seed) of one net as the members of one batched ``fit``."""
    from droplab import data as dl_data
    from droplab.models import ModelSpec
    from droplab.train import MemberConfig, TrainConfig, fit

    c = group[0].config
    ds = dl_data.load(c["dataset"], seed=c["data_seed"])
    spec = ModelSpec("mlp", widths=tuple(c["widths"]))
    cfg = TrainConfig(epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"])
    members = [
        MemberConfig(
            seed=t.seed, input_rate=t.config["input_rate"], hidden_rate=t.config["hidden_rate"]
        )
        for t in group
    ]
    result = fit(spec, ds, members, cfg, device=device)
    return [{"metrics": m.metrics, "curves": m.curves} for m in result.members]


# -- the analysis ------------------------------------------------------------------------------


def penalty_coefficient(rate: float) -> float:
    """The inverted-dropout noise variance ``(1-keep)/keep`` that scales dropout's explicit
    regularizer (from :func:`droplab.theory.gaussian_sigma`); monotone in ``rate``."""
    from droplab.theory import gaussian_sigma

    return float(gaussian_sigma(1.0 - rate)) ** 2


def _finished(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "finished"].copy()


def _failed(frame: pd.DataFrame) -> list[str]:
    """One line per trial that did not finish: its cell, seed, status and error."""
    bad = frame[frame["status"] != "finished"]
    out = []
    for r in bad.to_dict("records"):
        error = r.get("error")
        out.append(
            f"{r.get('dataset')}/{r.get('net')} hidden {r.get('hidden_rate')} input "
            f"{r.get('input_rate')} seed {r.get('seed')}: {r.get('status')}"
            + ("" if error is None or pd.isna(error) else f" {error}")
        )
    return out


def cell_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, net, hidden rate, input rate): mean test error (%) with its CI,
    the paired difference to the net's best cell with its CI, and whether that CI reaches 0.

    ``frame`` needs the columns ``dataset, net, hidden_rate, input_rate, seed, test_error``
    (finished trials only). Seeds missing in a cell are dropped from its paired comparison.
    """
    rows = []
    for (dataset, net), g in frame.groupby(["dataset", "net"], sort=False):
        errors = g.pivot_table(
            index="seed", columns=["hidden_rate", "input_rate"], values="test_error"
        )  # (seeds, cells), error as a fraction
        means = errors.mean()
        best = means.idxmin()
        late = None  # fraction of seeds whose best-val epoch is in the last 10% of the budget
        if {"best_epoch", "epochs"} <= set(g.columns):
            g = g.assign(_late=(g["best_epoch"] > 0.9 * g["epochs"]).astype(float))
            late = g.pivot_table(
                index="seed", columns=["hidden_rate", "input_rate"], values="_late"
            ).mean()
        for cell in errors.columns:
            m, lo, hi = mean_ci(errors[cell].to_numpy() * 100)
            ok = errors[cell].notna() & errors[best].notna()  # complete pairs only
            d, dlo, dhi = paired_ci(
                errors.loc[ok, cell].to_numpy() * 100, errors.loc[ok, best].to_numpy() * 100
            )
            same = cell == best or (not math.isnan(dlo) and dlo <= 0.0)
            rows.append(
                {
                    "dataset": dataset,
                    "net": net,
                    "hidden_rate": cell[0],
                    "input_rate": cell[1],
                    "seeds": int(errors[cell].notna().sum()),
                    "test_error_pct": m,
                    "ci_lo": lo,
                    "ci_hi": hi,
                    "vs_best_pts": d,
                    "vs_best_lo": dlo,
                    "vs_best_hi": dhi,
                    "best": cell == best,
                    "indistinguishable_from_best": bool(same),
                    "late_best_frac": late[cell] if late is not None else math.nan,
                    "penalty_hidden": penalty_coefficient(cell[0]),
                    "penalty_input": penalty_coefficient(cell[1]),
                }
            )
    return pd.DataFrame(rows)


def _heatmaps(table: pd.DataFrame) -> Any:
    from droplab.report import style

    nets = list(dict.fromkeys(zip(table["dataset"], table["net"])))
    fig, axes = style.figure(ncols=len(nets), width=3.6 * len(nets), height=3.4)
    axes = np.atleast_1d(axes)
    for ax, (dataset, net) in zip(axes, nets):
        t = table[(table["dataset"] == dataset) & (table["net"] == net)]
        hidden = sorted(t["hidden_rate"].unique())
        inputs = sorted(t["input_rate"].unique())
        grid = t.pivot(index="hidden_rate", columns="input_rate", values="test_error_pct")
        grid = grid.reindex(index=hidden, columns=inputs)
        im = ax.imshow(grid.to_numpy(), cmap="viridis_r", origin="lower", aspect="auto")
        mid = float(np.nanmean([np.nanmin(grid.to_numpy()), np.nanmax(grid.to_numpy())]))
        for r in t.itertuples():
            i, j = hidden.index(r.hidden_rate), inputs.index(r.input_rate)
            mark = "*" if r.best else ("≈" if r.indistinguishable_from_best else "")
            ax.text(
                j,
                i,
                f"{r.test_error_pct:.1f}{mark}",
                ha="center",
                va="center",
                fontsize=8,
                fontweight="bold" if r.best else "normal",
                color="white" if r.test_error_pct > mid else "black",  # legible on dark cells
            )
        ax.set_xticks(range(len(inputs)), [f"{v:g}" for v in inputs])
        ax.set_yticks(range(len(hidden)), [f"{v:g}" for v in hidden])
        ax.set(
            xlabel="input rate P(drop)",
            ylabel="hidden rate P(drop)",
            title=f"{dataset} {net}: test error (%)",
        )
        ax.grid(False)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("* best cell;  ≈ not significantly worse than it (paired 95% CI over seeds)")
    return fig


def _hidden_curves(table: pd.DataFrame) -> Any:
    """Test error vs hidden rate at each net's best input rate, with 95% CI bands."""
    from droplab.report import style

    fig, ax = style.figure(width=5.2, height=3.4)
    for i, ((dataset, net), t) in enumerate(table.groupby(["dataset", "net"], sort=False)):
        best_input = t.loc[t["best"], "input_rate"].iloc[0]
        t = t[t["input_rate"] == best_input].sort_values("hidden_rate")
        style.band(
            ax,
            t["hidden_rate"],
            t["test_error_pct"],
            t["ci_lo"],
            t["ci_hi"],
            color=style.color(i),
            label=f"{dataset} {net} (input {best_input:g})",
        )
    ax.set(xlabel="hidden rate P(drop)", ylabel="test error (%)")
    ax.legend()
    return fig


def analyze(frame: pd.DataFrame) -> Findings:
    """The best cell per net, the note's cell against it, and the error surfaces."""
    done = _finished(frame)
    failed = _failed(frame)
    if done.empty:
        return Findings("rate", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed)
    table = cell_table(done)
    parts, inside, nets, best_hidden = [], 0, 0, []
    key_number = ""
    for (dataset, net), t in table.groupby(["dataset", "net"], sort=False):
        nets += 1
        b = t[t["best"]].iloc[0]
        best_hidden.append(b.hidden_rate)
        text = (
            f"{dataset} {net}: best hidden {b.hidden_rate:g} / input {b.input_rate:g} at "
            f"{b.test_error_pct:.1f}% [{b.ci_lo:.1f}, {b.ci_hi:.1f}]"
        )
        note = t[(t["hidden_rate"] == NOTE_CELL[0]) & (t["input_rate"] == NOTE_CELL[1])]
        if len(note):
            n = note.iloc[0]
            ok = bool(n.indistinguishable_from_best)
            inside += ok
            diff = fmt_ci(n.vs_best_pts, n.vs_best_lo, n.vs_best_hi, digits=1)
            text += (
                f"; (0.5, 0.2) {'is indistinguishable' if ok else 'is significantly worse'} "
                f"({n.test_error_pct:.1f}%, {diff} pts)"
            )
        parts.append(text)
    n_note = int(
        table.loc[
            (table["hidden_rate"] == NOTE_CELL[0]) & (table["input_rate"] == NOTE_CELL[1])
        ].shape[0]
    )
    hidden = sorted(set(best_hidden))
    if n_note:
        key_number = f"(0.5, 0.2) indistinguishable from the best cell in {inside} of {n_note} nets"
    lead = (
        f"The note's (hidden 0.5, input 0.2) is statistically indistinguishable from the best "
        f"cell in {inside} of {n_note} nets"
        if n_note
        else "The grid does not contain the note's (hidden 0.5, input 0.2)"
    )
    verdict = (
        f"{lead}; the best hidden rate is {', '.join(f'{h:g}' for h in hidden)} across "
        f"{nets} net{'s' if nets > 1 else ''} ({'; '.join(parts)}). Theory: the inverted "
        f"penalty (1-keep)/keep grows monotonically with the rate "
        f"({', '.join(f'{penalty_coefficient(r):.2f}' for r in sorted(table['hidden_rate'].unique()))}"
        f" at hidden rates {', '.join(f'{r:g}' for r in sorted(table['hidden_rate'].unique()))}), "
        "so no rate is special: the best one is the regularization strength the net needs."
    )
    if table["late_best_frac"].notna().any():
        late = table[table["late_best_frac"] >= 0.5]
        verdict += (
            f" Caveat: {len(late)} of {len(table)} cells (mean hidden rate "
            f"{late['hidden_rate'].mean() if len(late) else float('nan'):.2f} vs "
            f"{table['hidden_rate'].mean():.2f} overall) reached their best validation loss in "
            "the last 10% of the epoch budget for most seeds, so a longer budget may favour "
            "higher rates."
        )
    seeds = sorted(done["seed"].unique())
    epochs = sorted(done["epochs"].unique()) if "epochs" in done else []
    method = (
        f"Data: {', '.join(sorted(done['dataset'].unique()))} (droplab.data, fixed split "
        f"data_seed 0). Models: MLPs (ReLU) of widths "
        f"{'; '.join(sorted({f'{n}={tuple(w)}' for n, w in zip(done['net'], done['widths'])}))}"
        f", inverted Bernoulli dropout on the input and after every hidden layer. Training: "
        f"Adam, cross-entropy, {', '.join(str(e) for e in epochs)} epochs, weights of the "
        f"lowest-validation-loss epoch; test error with weight scaling. Seeds: {len(seeds)} "
        f"({', '.join(str(s) for s in seeds)}), shared by all cells of a net (same split, "
        "initialization and batch order). CIs: 95% Student-t over seeds for a cell's mean; "
        "the difference to the best cell is paired by seed (95% paired t CI); "
        "'indistinguishable' = that CI reaches 0 (uncorrected for the number of cells, and "
        "the best cell is selected on the same data)."
    )
    return Findings(
        study="rate",
        question=QUESTION,
        verdict=verdict,
        key_number=key_number,
        table=table,
        figures={"error_surface": _heatmaps(table), "hidden_rate": _hidden_curves(table)},
        method=method,
        failed=failed,
        references=[
            "Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov (2014). Dropout: a "
            "simple way to prevent neural networks from overfitting. JMLR 15.",
            "Wager, Wang & Liang (2013). Dropout training as adaptive regularization. NeurIPS.",
            "Wei, Kakade & Ma (2020). The implicit and explicit regularization effects of "
            "dropout. ICML.",
            "Greydanus (2020). Scaling down deep learning (MNIST-1D). arXiv:2011.14439.",
        ],
    )


STUDY = Study(
    name="rate",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=group_key,
    description=(
        "Grid of hidden x input dropout rate on MNIST-1D MLPs of three widths and a digits "
        "MLP; best cell with CI, the set of cells indistinguishable from it (paired by seed)."
    ),
)
