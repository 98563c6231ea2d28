"""conv — does dropout work on convolutional networks?

Question (the research note):
    "There's a claim that dropout should not be used on convolutional networks, because it
    does not actually work (does not inactivate elements), as convolution introduces
    coordination between changes in different weights."

The claim has two parts, measured separately.

1. **Does element-wise dropout lower a CNN's test error?** The primary hypothesis, one
   declared net: on MNIST-1D (Greydanus 2020) with his CNN (three conv layers of 25
   channels, kernels 5/3/3, stride 2), the test error of tuned element-wise dropout minus
   that of a tuned CNN without dropout, paired by replicate (``element_vs_none``). Both
   arms tune learning rate, decoupled weight decay and max-norm with the same number of
   Halton configurations; the dropout arm also tunes its rate and its placement (after
   the conv layers, only before the classifier, or both). Selection on validation error
   only. Why this contrast: the note's claim is about element-wise dropout, and a
   comparison of tuned arms is the effect one can get (an untuned one measures a recipe).
2. **Is its mechanism there?** Neighbouring positions of a feature map are correlated, so
   a unit dropped alone is partly recovered by the next layer from its neighbours.
   :mod:`conv_probe` measures the lag-1 autocorrelation of each conv layer's maps and the
   held-out R^2 of a linear probe that predicts a dropped unit from what an element-wise,
   a block (DropBlock) or a channel (SpatialDropout) mask leaves, on the tuned nets.

Secondary contrasts (Holm-adjusted together): SpatialDropout (Tompson et al. 2015) and
DropBlock (Ghiasi, Lin & Le 2018; its rate rises linearly from 0 over the first third of
the step cap, their schedule: a fixed rate worked poorly for them) against none, tuned
the same way; the same three contrasts on the 8x8 digits images (a 2-D task; MNIST and
CIFAR-10 join in the full preset when ``--data-dir`` holds their files); the probe
differences element minus block and element minus spatial (R^2 in percent of the
unit's variance, margin 5: a twentieth of it).

Convergence. The former recipe (20 epochs of the 3600-signal training set, Adam lr 1e-2,
weights of the best-validation-*loss* epoch) stopped the MNIST-1D CNN at 12-13% error:
720 steps are too few. Measured here (one replicate, no dropout): with lr 1e-2 the
validation error falls to 5-6% by epoch 40 (~1450 steps), and the test error of the
best-validation-accuracy epoch is 6.8%, Greydanus's ~6%; with lr 3e-3 it is still 11%
after 60 epochs. Selecting on validation loss also picks too early an epoch (the loss
rises while the error still falls). So: a 2520-step cap (70 epochs), early stopping
after 720 steps without a better validation error, selection on validation error, and
a learning-rate range around 1e-2.

Power. With R replicates the paired t-test's minimum detectable effect (80% power,
alpha 0.05) is ``(t_{R-1,0.975} + t_{R-1,0.8}) sd / sqrt(R)``; the replicate-to-replicate
sd of the difference of two tuned MNIST-1D CNNs is about 1.5 points (1000 test signals
alone give 0.75 per arm), so R = 8 gives about 1.7 points at ``standard`` (reported per
run as ``mde``); ``full`` has 20. The primary contrast is not Holm-adjusted: it is the
one hypothesis; the old study's 24 Holm-corrected comparisons at 3 degrees of freedom
could detect nothing below |t| > 10.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from droplab.findings import Contrast, Findings
from droplab.studies import conv_design as D
from droplab.studies import protocol as P
from droplab.studies.base import Study, Trial
from droplab.studies.stats import adjust, compare, mean_ci

__all__ = ["PRESETS", "QUESTION", "STUDY", "analyze", "trials"]

QUESTION = (
    "There's a claim that dropout should not be used on convolutional networks, because it "
    "does not actually work (does not inactivate elements), as convolution introduces "
    "coordination between changes in different weights. Is that so?"
)
DROPOUT_ARMS = ("element", "spatial", "dropblock")
ALL_ARMS = ("none", *DROPOUT_ARMS)
PROBE_MARGIN = 5.0  # percent of a unit's variance recovered (R^2 x 100)
_LABEL = {
    "mnist1d": "MNIST-1D",
    "digits-image": "digits 8x8",
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
}

#: preset -> budget and the (net, arms) cells; full adds the --data-dir image tasks
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "budget": D.BUDGETS["quick"],
        "nets": [(D.Net("digits-image", "cnn2d", (6, 8), 1, 3, 400), ALL_ARMS)],
    },
    # MNIST-1D: the primary pair only (its CNN is the expensive one: ~1800 steps a member)
    "standard": {
        "budget": D.BUDGETS["standard"],
        "nets": [(D.MNIST1D, ("none", "element")), (D.DIGITS, ALL_ARMS)],
    },
    "full": {"budget": D.BUDGETS["full"], "nets": [(D.MNIST1D, ALL_ARMS), (D.DIGITS, ALL_ARMS)]},
}


def trials(preset: str, *, seed: int = 0) -> list[Trial]:
    """Replicates x cells x arms x configurations of ``preset`` for root seed ``seed``."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    p = PRESETS[preset]
    nets = list(p["nets"])
    if preset == "full":
        nets += [(n, ALL_ARMS) for n in D.file_nets()]
    return D.trials_of(preset, seed, nets, p["budget"])


# -- the analysis ----------------------------------------------------------------------------


def _tuned(done: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """(dataset, arm) -> the validation-selected row per replicate."""
    out = {}
    for dataset, g in done.groupby("dataset", sort=False):
        for arm in ALL_ARMS:
            t = P.tuned(g, [arm])
            if len(t):
                out[(str(dataset), arm)] = t
    return out


def _primary_dataset(done: pd.DataFrame) -> str:
    sets = list(dict.fromkeys(done["dataset"]))
    return "mnist1d" if "mnist1d" in sets else str(sets[0])


def _contrasts(tuned, datasets: list[str], first: str, roots) -> list[Contrast]:
    err = P.error_points(roots)
    out = []
    order = [first] + [d for d in datasets if d != first]
    for d in order:
        for arm in DROPOUT_ARMS:
            if (d, arm) not in tuned or (d, "none") not in tuned:
                continue
            out.append(
                compare(
                    f"{arm}_vs_none" + ("" if d == first else f"_{d}"),
                    *P.paired(tuned[(d, arm)], tuned[(d, "none")], "test_error"),
                    primary=(d == first and arm == "element"),
                    description=f"tuned {D.ARMS[arm][1].removeprefix('tuned ')} − tuned none, "
                    f"test error, {_LABEL.get(d, d)} {D.NETS.get(d, D.MNIST1D).kind}",
                    **err,
                )
            )
    for d in order:
        t = tuned.get((d, "none"))
        if t is None or "probe_element" not in t:
            continue
        for other in ("block", "spatial"):
            out.append(
                compare(
                    f"probe_element_vs_{other}" + ("" if d == first else f"_{d}"),
                    t["probe_element"].to_numpy(float),
                    t[f"probe_{other}"].to_numpy(float),
                    metric=f"probe_element - probe_{other}",
                    unit="% variance",
                    margin=PROBE_MARGIN,
                    scale=100.0,
                    root_seeds=roots,
                    description=f"R^2 of a dropped unit recovered by a linear probe, "
                    f"element-wise − {other} mask, tuned no-dropout nets, {_LABEL.get(d, d)}",
                )
            )
    primary = [c for c in out if c.primary]
    rest = [c for c in out if not c.primary]
    return adjust(primary + rest)


def arm_table(tuned) -> pd.DataFrame:
    """Per (dataset, tuned arm): test error (%) with its 95% CI, the placements and rates
    validation chose, the median best epoch, the share capped, and the mechanism."""
    rows = []
    for (d, arm), t in tuned.items():
        m, lo, hi = mean_ci(t["test_error"].to_numpy(float) * 100)
        row = {
            "dataset": d,
            "arm": arm,
            "replicates": len(t),
            "test_error": m,
            "ci_low": lo,
            "ci_high": hi,
            "placements": ", ".join(f"{p} {n}" for p, n in t["placement"].value_counts().items()),
            "rate_median": float(t["hidden_rate"].median()),
            "lr_median": float(t["lr"].median()),
            "best_epoch_median": float(t["best_epoch"].median()),
            "capped": float(t["capped"].mean()) if "capped" in t else math.nan,
        }
        for k in ("ac1", "probe_element", "probe_block", "probe_spatial"):
            if k in t:
                row[k] = float(t[k].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def layer_table(tuned) -> pd.DataFrame:
    """Per dataset and conv layer of the tuned no-dropout nets: mean lag-1 autocorrelation
    and probe R^2 of each mask."""
    rows = []
    for (d, arm), t in tuned.items():
        if arm != "none":
            continue
        j = 0
        while f"ac1_l{j}" in t:
            rows.append(
                {
                    "dataset": d,
                    "layer": j,
                    "ac1": float(t[f"ac1_l{j}"].mean()),
                    **{
                        f"probe_{m}": float(t[f"probe_{m}_l{j}"].mean())
                        for m in ("element", "block", "spatial")
                        if f"probe_{m}_l{j}" in t
                    },
                }
            )
            j += 1
    return pd.DataFrame(rows)


def _said(c: Contrast, subject: str) -> str:
    ci = f"{c.estimate:+.1f} [{c.ci_low:+.1f}, {c.ci_high:+.1f}] points"
    if c.call == "lowers":
        return f"{subject} lowers test error ({ci})"
    if c.call == "raises":
        return f"{subject} raises test error ({ci})"
    if c.call == "equivalent":
        return f"{subject} is equivalent within ±{c.margin:g} point of test error ({ci})"
    return f"{subject}'s effect on test error is inconclusive ({ci}; MDE {c.mde:.1f} points)"


def _answer(primary: Contrast, tuned, first: str) -> str:
    net = "Greydanus's CNN" if first == "mnist1d" else f"a {D.NETS[first].kind}"
    text = (
        f"On {_LABEL.get(first, first)} with {net}, "
        f"{_said(primary, 'tuned element-wise dropout')} against a tuned CNN without dropout"
    )
    none = tuned.get((first, "none"))
    if none is not None and "probe_element" in none:
        text += (
            f"; a linear probe recovers R^2 {none['probe_element'].mean():.2f} of a unit "
            f"dropped alone, {none['probe_block'].mean():.2f} under a 3-block and "
            f"{none['probe_spatial'].mean():.2f} when its channel is dropped"
        )
    return text + "."


def _figure(table: pd.DataFrame) -> Any:
    from droplab.report import style

    sets = list(dict.fromkeys(table["dataset"]))
    fig, axes = style.figure(ncols=len(sets), width=4.2 * len(sets), height=3.4)
    axes = np.atleast_1d(axes)
    for ax, d in zip(axes, sets):
        t = (
            table[table["dataset"] == d]
            .set_index("arm")
            .reindex(list(ALL_ARMS))
            .dropna(subset=["test_error"])
        )
        x = np.arange(len(t))
        m = t["test_error"].to_numpy(float)
        ax.bar(x, m, color=[style.color(i) for i in range(len(t))])
        ax.errorbar(
            x, m, yerr=[m - t["ci_low"].to_numpy(float), t["ci_high"].to_numpy(float) - m],
            fmt="none", ecolor="#333333",
        )  # fmt: skip
        ax.set_xticks(x, list(t.index))
        ax.set(ylabel="test error (%)", title=f"{_LABEL.get(d, d)}: tuned arms, 95% CI")
    return fig


def analyze(frame: pd.DataFrame) -> Findings:
    """Tuned arms per (cell, replicate), the contrasts, the mechanism tables."""
    done = frame[frame["status"] == "finished"] if len(frame) else frame
    failed = P.failed_lines(frame) if len(frame) else []
    stale: list[str] = []
    if not done.empty:
        done, stale = P.current(done, PRESETS[str(done["preset"].iloc[0])]["budget"])
    if done.empty:
        return Findings("conv", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed)
    tuned = _tuned(done)
    first = _primary_dataset(done)
    roots = P.root_seeds(done)
    datasets = list(dict.fromkeys(str(d) for d in done["dataset"]))
    contrasts = _contrasts(tuned, datasets, first, roots)
    arms = arm_table(tuned)
    primary = next((c for c in contrasts if c.primary), None)
    if primary is None:
        return Findings(
            "conv", QUESTION, "No element-wise vs none pair finished yet.", arms, failed=failed
        )
    answer = _answer(primary, tuned, first)
    lines = [f"{c.description}: {c.short()}" for c in contrasts if not c.primary]
    verdict = answer + (" " + "; ".join(lines) + "." if lines else "")
    budget = PRESETS[str(done["preset"].iloc[0])]["budget"]
    configs = int(done["config"].max()) + 1
    method = (
        f"A fresh data draw per replicate (MNIST-1D: a new generator draw, test set included; "
        f"digits: a new test split), {primary.n_seeds} replicates, root seeds "
        f"{', '.join(map(str, roots))}. Every arm tuned with {configs} quasi-random "
        f"configurations per replicate over learning rate (4e-3 to 2.5e-2), decoupled weight "
        f"decay (AdamW), max-norm, and for dropout arms the rate (0.05 to 0.4) and the "
        f"placement (conv / classifier / all); up to {budget.max_steps} steps of batch "
        f"{budget.batch_size}, early stopping after {budget.patience_steps} steps without a "
        f"better validation error, weights of the best-validation-error evaluation, the "
        f"configuration with the lowest validation error is the arm's result. DropBlock's "
        f"rate rises linearly over the first {round(D.RAMP * budget.max_steps)} steps. CIs: "
        f"95% paired t over replicates; calls per docs/statistics.md (margin ±1 point of "
        f"error, ±{PROBE_MARGIN:g}% of a unit's variance recovered; the primary is element_vs_none on {first}, the rest "
        f"Holm-adjusted). Mechanism: conv_probe on the validation inputs of each tuned net."
    )
    notes = P.cap_note(done, "conv") + stale
    extra = {"tuned arms (test error %, chosen settings, mechanism)": arms.round(4)}
    layers = layer_table(tuned)
    if len(layers):
        extra["mechanism per conv layer (tuned no-dropout nets)"] = layers.round(4)
    return Findings(
        study="conv",
        question=QUESTION,
        verdict=verdict,
        key_number=primary.short(),
        table=pd.DataFrame([c.to_dict() for c in contrasts]),
        figures={"tuned_arms": _figure(arms)},
        method=method,
        extra_tables=extra,
        failed=failed,
        references=["srivastava2014", "tompson2015", "ghiasi2018", "greydanus2020"],
        answer=answer,
        contrasts=contrasts,
        notes=notes,
    )


STUDY = Study(
    name="conv",
    question=QUESTION,
    trials=trials,
    run_group=D.run_group,
    analyze=analyze,
    group_key=D.group_key,
    description=(
        "Tuned CNNs (MNIST-1D CNN1d, digits CNN2d; MNIST/CIFAR-10 with --data-dir in full): "
        "none vs element-wise Dropout vs SpatialDropout vs DropBlock (rate ramp), placement "
        "and rate tuned, equal budgets; autocorrelation and a neighbour probe of the maps."
    ),
    seeded=True,
)
