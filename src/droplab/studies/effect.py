"""effect — how much exactly does dropout help, and how do we quantify that?

Question (the research note):
    "How much exactly does drop-out help? How to quantify that? How do people quantify
    effectiveness of things like regularization?"

How it is quantified here. The effect of a regularizer is a *paired difference* of test
metrics between the same network trained with and without it, with a confidence interval
over training seeds, measured along a learning curve (the effect of a regularizer depends on
how much data there is). Four metrics, because "helps" has several meanings:
test error (accuracy), test NLL (the quality of the predicted probabilities), expected
calibration error (ECE, 15 equal-width bins; Guo et al. 2017) and the generalization gap
(train accuracy minus test accuracy: what a regularizer is supposed to shrink).

Grid. Two arms: no dropout, and dropout with the note's rates (input 0.2, hidden 0.5;
rate = P(drop)). MLPs (ReLU) on MNIST-1D and sklearn digits, at several training-set sizes
(a stratified subset of the train split, the same subset for every seed and arm of a size).
Both arms and all seeds of one (dataset, size) are the members of one batched ``fit``:
seed s gives both arms the same initialization and batch order, so the comparison is
paired by seed.

Training. Adam, cross-entropy, a step budget that is the same at every size (smaller sets
get more epochs, capped), long enough for the dropout arm to reach its best validation
loss. Each member keeps the weights of its lowest-validation-loss epoch (early stopping,
the usual practice), so each arm is compared at its best. Test metrics use weight scaling
(inverted dropout: the identity at test time). A robustness table repeats the error
comparison with each member at its best validation *error* epoch instead.

Analysis. Per (dataset, size): the mean of each metric per arm, and the paired difference
dropout - none with its 95% Student-t CI over seeds. The verdict states, per dataset, the
direction and size of the error effect at the largest size, how it changes along the
learning curve, and the NLL and gap effects; "does not significantly change" whenever the
CI contains 0.

Your own model and data: ``droplab run effect --model pkg.mod:build --data pkg.mod:load``
(see the README, "Your own model and data").
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from droplab.findings import Findings
from droplab.store import canonical_json
from droplab.studies.base import Study, Trial, load_user_data, load_user_model
from droplab.studies.stats import paired_ci

__all__ = ["ARMS", "PRESETS", "QUESTION", "STUDY", "analyze", "cell_table", "run_group", "trials"]

QUESTION = (
    "How much exactly does drop-out help? How to quantify that? How do people quantify "
    "effectiveness of things like regularization?"
)

#: arm -> (input rate, hidden rate), rate = P(drop). The note's rule of thumb: keep 0.8 on
#: the input and 0.5 on hidden layers.
ARMS: dict[str, tuple[float, float]] = {"none": (0.0, 0.0), "dropout": (0.2, 0.5)}

#: preset -> seeds, MLP widths, training-set sizes per dataset, and the recipe. A size of
#: the full train split trains ``full_epochs[dataset]``; a size n trains
#: ``full_epochs * N / n`` epochs (the same number of steps), at most ``max_epochs``. The
#: budgets let the dropout arm reach its best validation loss (the table's
#: ``dropout_still_improving`` checks it): MNIST-1D with dropout needs ~100 epochs of the
#: full set, digits far fewer.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": [0, 1, 2],
        "widths": [64, 64],
        "sizes": {"mnist1d": [400, 3600], "digits": [300, 1294]},
        "full_epochs": {"mnist1d": 6, "digits": 6},
        "max_epochs": 30,
        "batch_size": 100,
        "lr": 3e-3,
    },
    "standard": {
        "seeds": [0, 1, 2, 3, 4],
        "widths": [128, 128],
        "sizes": {"mnist1d": [500, 1000, 2000, 3600], "digits": [300, 600, 1294]},
        "full_epochs": {"mnist1d": 150, "digits": 60},
        "max_epochs": 300,
        "batch_size": 100,
        "lr": 2e-3,
    },
    "full": {
        "seeds": list(range(10)),
        "widths": [256, 256],
        "sizes": {
            "mnist1d": [250, 500, 1000, 2000, 3600],
            "digits": [150, 300, 600, 1294],
        },
        "full_epochs": {"mnist1d": 300, "digits": 150},
        "max_epochs": 1200,
        "batch_size": 100,
        "lr": 1e-3,
    },
}

#: (column, label, scale for display, unit): the metrics compared, in verdict order.
METRICS = (
    ("test_error", "test error", 100.0, "points"),
    ("test_nll", "test NLL", 1.0, "nats"),
    ("test_ece", "ECE", 100.0, "points"),
    ("gap", "the generalization gap", 100.0, "points"),
    ("test_rmse", "test RMSE", 1.0, ""),
)
USER = "user:"

# -- the grid --------------------------------------------------------------------------------


def _spec(spec: str) -> str:
    """A user spec with a file path made absolute (workers may run elsewhere)."""
    module, _, attr = spec.partition(":")
    if module.endswith(".py") or "/" in module:
        return f"{Path(module).resolve()}:{attr}"
    return spec


def _epochs(p: dict[str, Any], dataset: str, n: int, n_full: int) -> int:
    full = p["full_epochs"].get(dataset, max(p["full_epochs"].values()))  # user data: the most
    return int(min(p["max_epochs"], max(1, round(full * n_full / n))))


def trials(preset: str, *, model: str | None = None, data: str | None = None) -> list[Trial]:
    """Both arms x seeds x (dataset, size) of ``preset``.

    ``data``: the user's ``load(seed) -> Dataset`` replaces the built-in datasets, at
    sizes 1/4, 1/2 and all of its train split (quick: all). ``model``: the user's
    ``build(input_shape, n_outputs, *, input_rate, hidden_rate)`` replaces the MLP.
    Both are imported and checked here, so mistakes surface before any training.
    """
    p = PRESETS[preset]
    if data is not None:
        data = _spec(data)
        ds = load_user_data(data, 0)
        n_full = len(ds.y_train)
        fractions = [1.0] if preset == "quick" else [0.25, 0.5, 1.0]
        sizes = {USER + data: sorted({max(10, int(n_full * f)) for f in fractions})}
        loaded = {USER + data: ds}
    else:
        sizes = p["sizes"]
        loaded = {}
    if model is not None:
        model = _spec(model)
        from droplab import data as dl_data

        for name in sizes:  # the factory must work on every dataset it will see
            ds = loaded.get(name) or dl_data.load(name, seed=0)
            load_user_model(model, ds)
    out = []
    for dataset, ns in sizes.items():
        n_full = max(ns)
        for n in ns:
            epochs = _epochs(p, dataset, n, n_full)
            for seed in p["seeds"]:
                for arm, (input_rate, hidden_rate) in ARMS.items():
                    config = {
                        "dataset": dataset,
                        "model": USER + model if model else "mlp",
                        "widths": None if model else list(p["widths"]),
                        "n_train": n,
                        "arm": arm,
                        "input_rate": input_rate,
                        "hidden_rate": hidden_rate,
                        "epochs": epochs,
                        "eval_every": max(1, epochs // 50),
                        "batch_size": p["batch_size"],
                        "lr": p["lr"],
                        "data_seed": 0,
                        "subset_seed": 0,
                    }
                    out.append(Trial("effect", config, seed, preset))
    return out


def group_key(trial: Trial) -> str:
    """Both arms and all seeds of one (dataset, size) train together."""
    c = {k: v for k, v in trial.config.items() if k not in ("arm", "input_rate", "hidden_rate")}
    return trial.preset + canonical_json(c)


# -- the training ----------------------------------------------------------------------------


def _dataset(c: dict[str, Any]) -> Any:
    from droplab import data as dl_data

    name = c["dataset"]
    if name.startswith(USER):
        ds = load_user_data(name[len(USER) :], c["data_seed"])
    else:
        ds = dl_data.load(name, seed=c["data_seed"])
    n_available = len(ds.y_train)
    if c["n_train"] > n_available:
        raise ValueError(f"n_train={c['n_train']} but {name} has {n_available} training points")
    return ds if c["n_train"] == n_available else ds.subset(c["n_train"], seed=c["subset_seed"])


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """Train both arms x all seeds of one (dataset, size) as one batched ``fit``."""
    from droplab.models import ModelSpec
    from droplab.train import MemberConfig, TrainConfig, fit

    c = group[0].config
    ds = _dataset(c)
    if c["model"] == "mlp":
        model: Any = ModelSpec("mlp", widths=tuple(c["widths"]))
    else:
        model = load_user_model(c["model"][len(USER) :], ds)
    cfg = TrainConfig(
        epochs=c["epochs"],
        batch_size=c["batch_size"],
        lr=c["lr"],
        eval_every=c["eval_every"],
        select="val_loss",
    )
    members = [
        MemberConfig(
            seed=t.seed, input_rate=t.config["input_rate"], hidden_rate=t.config["hidden_rate"]
        )
        for t in group
    ]
    result = fit(model, ds, members, cfg, device=device)
    # A NaN/inf loss (a diverged run, a model that outputs NaN) must fail the trials, not
    # be stored as results (argmax of NaN logits still gives an "error rate").
    bad = []
    for t, m in zip(group, result.members):
        losses = ("train_loss", "val_loss", "test_loss")
        wrong = [f"{k}={m.metrics[k]}" for k in losses if not math.isfinite(m.metrics.get(k, 0))]
        if wrong:
            bad.append(f"{t.config['arm']} seed {t.seed}: {', '.join(wrong)}")
    if bad:
        raise FloatingPointError(
            f"the loss is not finite for {len(bad)} of {len(group)} members ({bad[0]}): "
            "training diverged or the model outputs NaN/inf"
        )
    return [{"metrics": m.metrics, "curves": m.curves} for m in result.members]


# -- the analysis ----------------------------------------------------------------------------


def _label(dataset: str) -> str:
    names = {"mnist1d": "MNIST-1D", "digits": "digits"}
    if dataset.startswith(USER):
        return f"your data ({dataset[len(USER) :]})"
    return names.get(dataset, dataset)


def _pairs(cell: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(dropout, none) values of ``column`` for the seeds that have both arms, by seed."""
    piv = cell.pivot_table(index="seed", columns="arm", values=column, aggfunc="first")
    if "dropout" not in piv or "none" not in piv:
        return np.array([]), np.array([])
    piv = piv[["dropout", "none"]].dropna()
    return piv["dropout"].to_numpy(), piv["none"].to_numpy()


#: Config keys that define a cell (all but the arm, its rates and the seed): trials of an
#: older recipe left in the store form their own cells instead of mixing with new ones.
CELL_KEYS = (
    "dataset",
    "model",
    "n_train",
    "widths",
    "epochs",
    "eval_every",
    "batch_size",
    "lr",
    "data_seed",
    "subset_seed",
)


def _cells(done: pd.DataFrame) -> list[tuple[tuple[str, str, int], pd.DataFrame]]:
    """((dataset, model, n_train), trials) per cell, MNIST-1D first, then by size."""
    keys = [k for k in CELL_KEYS if k in done.columns]
    order = {"mnist1d": 0, "digits": 1}
    groups = [
        ((k[0], k[1], int(k[2])), cell) for k, cell in done.groupby(keys, sort=True, dropna=False)
    ]
    return sorted(groups, key=lambda kg: (order.get(kg[0][0], 2), *kg[0], len(kg[1])))


def cell_table(done: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, model, n_train): per metric the arm means and the paired
    difference dropout - none with its 95% CI (error, ECE and gap in percentage points).

    ``done``: finished trials with columns ``dataset, model, n_train, arm, seed`` and the
    metrics.
    """
    rows = []
    for (dataset, model, n), cell in _cells(done):
        row: dict[str, Any] = {"dataset": dataset, "model": model, "n_train": int(n)}
        for column, _, scale, _ in METRICS:
            if column not in cell or cell[column].isna().all():
                continue
            a, b = _pairs(cell, column)
            row["seeds"] = max(row.get("seeds", 0), len(a))
            d, lo, hi = paired_ci(a * scale, b * scale)
            row[f"{column}_none"] = float(np.mean(b * scale)) if len(b) else math.nan
            row[f"{column}_dropout"] = float(np.mean(a * scale)) if len(a) else math.nan
            row[f"d_{column}"], row[f"d_{column}_lo"], row[f"d_{column}_hi"] = d, lo, hi
        drop = cell[cell["arm"] == "dropout"]
        if "best_epoch" in drop and len(drop):
            # Share of dropout members whose best epoch is in the last 10% of training:
            # still improving when training stopped (then more epochs would favour dropout).
            late = drop["best_epoch"] >= 0.9 * drop["epochs"]
            row["dropout_best_epoch"] = float(drop["best_epoch"].median())
            row["dropout_still_improving"] = float(late.mean())
        row["epochs"] = int(cell["epochs"].iloc[0])
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.round(4) if len(table) else table


def _select_by_val_error(done: pd.DataFrame) -> pd.DataFrame:
    """Robustness: the error difference with each member at its lowest validation *error*
    epoch (from the stored curves) instead of its lowest validation loss."""
    rows = []
    for (dataset, model, n), cell in _cells(done):
        errs = []
        for curves in cell["curves"]:
            val, test = curves.get("val_acc"), curves.get("test_acc")
            if not val or not test:
                errs.append(math.nan)
                continue
            k = int(np.argmax(val))  # first epoch with the best validation accuracy
            errs.append(1.0 - test[k])
        c = cell.assign(test_error_at_val_error=errs)
        a, b = _pairs(c, "test_error_at_val_error")
        if not len(a):
            continue
        d, lo, hi = paired_ci(a * 100, b * 100)
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "n_train": int(n),
                "test_error_none": float(np.mean(b) * 100),
                "test_error_dropout": float(np.mean(a) * 100),
                "d_test_error": d,
                "d_test_error_lo": lo,
                "d_test_error_hi": hi,
            }
        )
    table = pd.DataFrame(rows)
    return table.round(4) if len(table) else table


def _effect(d: float, lo: float, hi: float, what: str, unit: str) -> str:
    """'lowers test error by 5.9 points [4.8, 7.0]' / 'does not significantly change ...'."""
    u = f" {unit}" if unit else ""
    if math.isnan(lo):
        return f"changes {what} by {d:+.2f}{u} (too few seeds for a CI)"
    if hi < 0:
        return f"lowers {what} by {-d:.2f}{u} [{-hi:.2f}, {-lo:.2f}]"
    if lo > 0:
        return f"raises {what} by {d:.2f}{u} [{lo:.2f}, {hi:.2f}]"
    return f"does not significantly change {what} ({d:+.2f}{u} [{lo:+.2f}, {hi:+.2f}])"


def _direction(lo: float, hi: float) -> str:
    if math.isnan(lo):
        return "n/a"
    return "lower" if hi < 0 else ("higher" if lo > 0 else "n.s.")


def _verdict(table: pd.DataFrame, robust: pd.DataFrame) -> tuple[str, str]:
    sentences, key_number = [], ""
    for (dataset, _model), t in table.groupby(["dataset", "model"], sort=False):
        t = t.sort_values("n_train")
        main = (
            "test_error" if "d_test_error" in t and t["d_test_error"].notna().any() else "test_rmse"
        )
        label = dict((m[0], (m[1], m[3])) for m in METRICS)
        what, unit = label[main]
        last = t.iloc[-1]
        d, lo, hi = (last[f"d_{main}{s}"] for s in ("", "_lo", "_hi"))
        where = _label(dataset)
        if _model != "mlp":
            where += f" with your model ({_model[len(USER) :]})"
        text = (
            f"On {where}, dropout (input 0.2, hidden 0.5) "
            f"{_effect(d, lo, hi, what, unit)} at n={last.n_train}"
        )
        if main == "test_error" and len(robust):
            r = robust[
                (robust["dataset"] == dataset)
                & (robust["model"] == _model)
                & (robust["n_train"] == last.n_train)
            ]
            if len(r):
                r = r.iloc[0]
                text += (
                    f" (with each member at its lowest validation error instead of loss: "
                    f"{r.d_test_error:+.2f} [{r.d_test_error_lo:+.2f}, {r.d_test_error_hi:+.2f}])"
                )
        if not key_number:
            key_number = (
                f"{d:+.1f} {unit} [{lo:+.1f}, {hi:+.1f}] ({_label(dataset)}, n={last.n_train})"
            )
        if len(t) > 1:
            dirs = [_direction(r[f"d_{main}_lo"], r[f"d_{main}_hi"]) for _, r in t.iterrows()]
            first = t.iloc[0]
            fd, flo, fhi = (first[f"d_{main}{s}"] for s in ("", "_lo", "_hi"))
            text += (
                f"; across {len(t)} training sizes its {what} is lower at "
                f"{dirs.count('lower')}, higher at {dirs.count('higher')} and not "
                f"significantly different at {dirs.count('n.s.')} "
                f"(smallest, n={first.n_train}: {fd:+.2f} [{flo:+.2f}, {fhi:+.2f}])"
            )
        others = []
        for column in ("test_nll", "gap"):
            if f"d_{column}" in t and not math.isnan(last[f"d_{column}"]):
                w, un = label[column]
                others.append(_effect(*(last[f"d_{column}{s}"] for s in ("", "_lo", "_hi")), w, un))
        if others:
            text += f"; at n={last.n_train} it " + " and ".join(others)
        sentences.append(text + ".")
    return " ".join(sentences), key_number


def _figures(table: pd.DataFrame) -> dict[str, Any]:
    from droplab.report import style

    sets = list(dict.fromkeys(zip(table["dataset"], table["model"])))
    main = "test_error" if "test_error_none" in table else "test_rmse"
    fig, axes = style.figure(ncols=len(sets))
    axes = np.atleast_1d(axes)
    for ax, (dataset, model) in zip(axes, sets):
        t = table[(table["dataset"] == dataset) & (table["model"] == model)].sort_values("n_train")
        for i, arm in enumerate(("none", "dropout")):
            ax.plot(t["n_train"], t[f"{main}_{arm}"], marker="o", color=style.color(i), label=arm)
        ax.set(xscale="log", xlabel="training-set size n", title=_label(dataset))
        ax.set_ylabel("test error (%)" if main == "test_error" else "test RMSE")
        ax.legend()
    diffs, daxes = style.figure(ncols=2, nrows=2, width=9.0, height=6.0)
    for ax, (column, what, _, unit) in zip(np.ravel(daxes), METRICS[:4]):
        if f"d_{column}" not in table:
            ax.set_visible(False)
            continue
        for i, (dataset, model) in enumerate(sets):
            t = table[(table["dataset"] == dataset) & (table["model"] == model)].sort_values(
                "n_train"
            )
            style.band(
                ax,
                t["n_train"],
                t[f"d_{column}"],
                t[f"d_{column}_lo"],
                t[f"d_{column}_hi"],
                color=style.color(i),
                label=_label(dataset),
            )
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set(
            xscale="log",
            xlabel="training-set size n",
            ylabel=f"Δ {what.removeprefix('the ')} ({unit})",
        )
        ax.set_title(f"dropout − none: {what.removeprefix('the ')}, 95% CI")
    np.ravel(daxes)[0].legend()
    return {"learning_curve": fig, "differences": diffs}


def _failed(frame: pd.DataFrame) -> list[str]:
    bad = frame[frame["status"] != "finished"]
    out = []
    for r in bad.itertuples():
        error = getattr(r, "error", None)
        last = str(error).strip().splitlines()[-1] if isinstance(error, str) and error else ""
        out.append(f"{r.dataset} n={r.n_train} {r.arm} seed {r.seed}: {r.status} {last}".strip())
    return out


def analyze(frame: pd.DataFrame) -> Findings:
    """Paired differences per (dataset, size), the verdict, the learning curves."""
    done = frame[frame["status"] == "finished"]
    failed = _failed(frame) if len(frame) else []
    if done.empty:
        return Findings(
            "effect", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed
        )
    table = cell_table(done)
    robust = _select_by_val_error(done)
    verdict, key_number = _verdict(table, robust)
    seeds = sorted(done["seed"].unique())
    recipe = "; ".join(
        f"{_label(ds)} n={int(n)}: {int(e)} epochs"
        for ds, n, e in table[["dataset", "n_train", "epochs"]].itertuples(index=False)
    )
    widths = sorted({str(tuple(w)) if w else "user model" for w in done["widths"]})
    method = (
        f"Arms: no dropout vs dropout (input rate 0.2, hidden rate 0.5, inverted scaling). "
        f"Models: ReLU MLPs of widths {', '.join(widths)}. Data: "
        f"{', '.join(_label(d) for d in dict.fromkeys(done['dataset']))}; at each size a "
        f"stratified subset of the train split (subset seed 0), the same for every seed and "
        f"arm; fixed validation and test splits. Training: Adam (lr "
        f"{', '.join(f'{v:g}' for v in sorted(done['lr'].unique()))}), batch "
        f"{', '.join(str(int(v)) for v in sorted(done['batch_size'].unique()))}, the same step "
        f"budget at every size ({recipe}); each member at its lowest-validation-loss epoch; "
        f"test metrics with weight scaling. Seeds: {len(seeds)} per cell; seed s gives both "
        f"arms the same initialization and batch order. CIs: 95% Student-t over seeds of the "
        f"paired difference dropout - none. Error, ECE (15 bins) and generalization gap "
        f"(train - test accuracy) in percentage points, NLL in nats. The column "
        f"dropout_still_improving is the share of dropout members whose best epoch fell in "
        f"the last 10% of training."
    )
    return Findings(
        study="effect",
        question=QUESTION,
        verdict=verdict,
        key_number=key_number,
        table=table,
        figures=_figures(table),
        method=method,
        extra_tables={"each member at its lowest validation error instead (robustness)": robust}
        if len(robust)
        else {},
        failed=failed,
        references=[
            "srivastava2014",
            "greydanus2020",
            "Guo, Pleiss, Sun & Weinberger (2017). On calibration of modern neural networks. ICML.",
        ],
    )


STUDY = Study(
    name="effect",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=group_key,
    description=(
        "No dropout vs dropout (input 0.2, hidden 0.5) on MNIST-1D and digits MLPs along a "
        "learning curve; paired-by-seed differences in test error, NLL, ECE and "
        "generalization gap with 95% CIs."
    ),
    custom=True,
)
