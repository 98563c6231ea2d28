"""slack — without dropout, do hidden units "slack out to zero"?

Question (the research note):
    "When all weights are learned together, many of them slack out by just running to the
    ground (zero), and not contributing to anything (would have to be pruned). But with
    drop-out, we have something of a built-in ensemble method when many sub-networks have
    to train in parallel."

The precise version of that picture. A unit "contributes nothing" when its importance
``p_j = ||w_in_j|| * ||w_out_j||`` (``studies.slack_measures``) is near zero. Mianjy,
Arora & Vidal (2018) show that dropout on a hidden layer adds the regularizer
``(rate/keep) sum_j p_j^2`` (one hidden layer, whitened inputs), which at a fixed total
importance is smallest when every unit carries the same share: dropout *equalizes* the
units, while nothing in plain training (and weight decay's ``sum ||w||^2``, which prefers
few active units, i.e. low rank) does. So the note predicts a smaller spread of ``p_j``
with dropout, and fewer units near zero.

Primary contrast: the coefficient of variation of the unit importances,
``CV = std_j(p_j) / mean_j(p_j)`` per hidden layer, averaged over the layers, tuned
dropout minus tuned none, on the validation-selected nets. Why this and not pruning
robustness: (1) it is the quantity the theorem is about, with a signed prediction
(dropout lowers it); (2) robustness to pruning has no signed prediction (a net with many
slack units is *more* robust to removing its least important units, since they carry
nothing, and less robust to random removal), so it is measured but as secondaries; (3) it
is a property of the weights, free of test-set sampling noise, and invariant to rescaling
the net (so weight decay's overall shrinkage does not enter). It is reported in percent
(``unit="CV %"``, CV x 100), with the margin ±5 CV points (±0.05). At PyTorch's
default initialization (uniform, ``±1/sqrt(fan_in)``) the CV of ``p_j`` is already about
``0.45 sqrt(1/fan_in + 1/fan_out)``: 0.07 for the standard net's first hidden layer
(64 in, 128 out), 0.15 for its second (128 in, 10 out), 0.11 on average (measured: 0.111
± 0.006 over 20 initializations); a difference smaller than the spread that random initialization alone gives is not an equalization worth the
name.

Arms (``studies.protocol``), the same budget each (``Budget.configs`` quasi-random
configurations), AdamW, early stopping on validation error, the configuration with the
lowest validation error is the arm's net (never the test set):

- ``none``: learning rate ``LogUniform(1e-3, 1e-2)`` and decoupled weight decay
  ``LogUniform(1e-5, 1e-1)``;
- ``dropout``: the same plus a hidden rate ``Uniform(0.1, 0.7)``.

Max-norm, part of the protocol's usual space (``protocol.TUNE``), is left out of both:
it caps every unit's ``||w_in||`` and so compresses the very spread measured here by
construction. Input dropout is left out: the claim is about hidden units (sub-networks),
and the theorem is about hidden-unit dropout.

Data: every replicate a fresh data draw (``protocol.load_data``); standard: digits (8x8),
an MLP of two hidden layers of 128; full: MNIST-1D n=3600, 256 x 256.

Secondary contrasts (Holm): the CV of the data-dependent *activation importance*
``rms_x(h_j) * ||w_out_j||`` (the form the regularizer takes for any activation, Arora,
Bartlett, Mianjy & Srebro 2021; it sees dead units, which ``p_j`` does not), margin ±5 CV points; test error; the fraction of slack units (dead on every test
input or importance below 1% of the layer's mean); the fraction of weights below 0.1 of
their layer's rms (the note's "running to the ground", per weight); and three robustness
measures normalized to each net's own unpruned accuracy above chance (mean retention over
the fractions): magnitude pruning, removal of the least important units, removal of
random units. Percentages have the margin ±1 point (``stats.DEFAULT_MARGINS``: retention
times the unpruned accuracy is accuracy, whose margin is 1 point).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from droplab.findings import Contrast, Findings
from droplab.studies import protocol as P
from droplab.studies.base import Study, Trial
from droplab.studies.slack_measures import measure
from droplab.studies.slack_report import arm_table, figures
from droplab.studies.stats import DEFAULT_MARGINS, adjust, compare

__all__ = ["ARMS", "CV_MARGIN", "PRESETS", "QUESTION", "STUDY", "analyze", "run_group", "trials"]

QUESTION = (
    "When all weights are learned together, many of them slack out by just running to the "
    "ground (zero), and not contributing to anything (would have to be pruned). Does "
    "dropout, where many sub-networks train in parallel, prevent that?"
)

#: the equivalence margin of the primary contrast (CV is unit-free; see the docstring)
CV_MARGIN = 0.05

_SPACE = {k: v for k, v in P.TUNE.items() if k != "max_norm"}
ARMS: dict[str, P.Arm] = {
    "none": P.Arm("none", "tuned, no dropout", _SPACE),
    "dropout": P.Arm(
        "dropout", "tuned, hidden dropout", {**_SPACE, "hidden_rate": P.Uniform(0.1, 0.7)}
    ),
}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "budget": P.BUDGETS["quick"],
        "dataset": "digits",
        "n_train": 600,
        "widths": (64, 64),
    },
    # digits: members stop early after 500-1060 steps (none of the standard runs hit the cap);
    # a 1500-step cap keeps the study at ~25 s of CPU with the protocol's 10 x 2 budget
    "standard": {
        "budget": P.Budget(seeds=10, configs=2, max_steps=1500, eval_steps=50, patience_steps=400),
        "dataset": "digits",
        "n_train": 1200,
        "widths": (128, 128),
    },
    "full": {
        "budget": P.BUDGETS["full"],
        "dataset": "mnist1d",
        "n_train": 3600,
        "widths": (256, 256),
    },
}


def trials(preset: str, *, seed: int = 0) -> list[Trial]:
    """Replicates x arms x configurations of ``preset`` for root seed ``seed``."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    p = PRESETS[preset]
    cell = P.Cell(p["dataset"], p["n_train"], p["widths"], tuple(ARMS))
    return P.expand("slack", preset, seed, ARMS, [cell], p["budget"])


# -- the training --------------------------------------------------------------------------


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """Train one replicate (both arms, every configuration) as one fit, then measure each
    member's selected net on the replicate's test split (``slack_measures.measure``).

    The training is ``protocol.run_fit``'s; it is repeated here because ``run_fit`` does
    not hand back the trained modules.
    """
    from droplab.models import ModelSpec
    from droplab.train import fit

    c = group[0].config
    seed = group[0].seed
    ds = P.load_data(c["dataset"], seed, c["n_train"], c.get("pool"))
    cfg = P.train_config(c)
    members = P.member_configs(group)
    result = fit(ModelSpec("mlp", widths=tuple(c["widths"])), ds, members, cfg, device=device)
    finite = [math.isfinite(m.metrics.get("val_loss", math.nan)) for m in result.members]
    if not any(finite):
        raise FloatingPointError(f"the loss is not finite for all {len(group)} members")
    x, y = ds.x_test.cpu(), ds.y_test.cpu()
    out = []
    for k, (m, ok) in enumerate(zip(result.members, finite)):
        metrics = dict(m.metrics)
        metrics["epochs_cap"] = float(cfg.epochs)
        metrics["diverged"] = float(not ok)  # selection ranks a diverged member last
        curves = dict(m.curves)
        if ok:
            extra, extra_curves = measure(result.module(k).cpu(), x, y, ds.n_outputs, seed)
            metrics.update(extra)
            curves.update(extra_curves)
        out.append({"metrics": metrics, "curves": curves})
    return out


# -- the analysis --------------------------------------------------------------------------

#: secondary contrasts: (name, metric, what, scale); CVs in CV points (margin 5), the rest
#: in percentage points (margin 1)
SECONDARY = (
    (
        "unit_cv_act",
        "unit_cv_act",
        "CV of activation importance rms(h)·||w_out|| (x100)",
        100.0,
    ),
    ("test_error", "test_error", "test error", 100.0),
    (
        "slack_units",
        "slack_units",
        "slack units (dead, or importance < 1% of the layer mean)",
        100.0,
    ),
    ("small_weights", "frac_small_rel", "weights below 0.1 of their layer's rms", 100.0),
    ("prune", "prune_ret", "accuracy retained under magnitude pruning (50-95%)", 100.0),
    (
        "least_units",
        "least_ret",
        "accuracy retained after removing the least important units (25-90%)",
        100.0,
    ),
    ("random_units", "random_ret", "accuracy retained after removing random units (25-90%)", 100.0),
)


def _contrasts(drop: pd.DataFrame, none: pd.DataFrame, roots: tuple[int, ...]) -> list[Contrast]:
    out = [
        compare(
            "unit_cv",
            *P.paired(drop, none, "unit_cv"),
            primary=True,
            metric="unit_cv",
            unit="CV %",
            margin=100 * CV_MARGIN,
            scale=100.0,
            description="tuned dropout − tuned none, CV of unit importance ||w_in||·||w_out|| (x100)",
            root_seeds=roots,
        )
    ]
    for name, metric, what, scale in SECONDARY:
        cv = metric.startswith("unit_cv")
        out.append(
            compare(
                name,
                *P.paired(drop, none, metric),
                metric=metric,
                unit="CV %" if cv else "points",
                margin=100 * CV_MARGIN if cv else DEFAULT_MARGINS["points"],
                scale=scale,
                description=f"tuned dropout − tuned none, {what}",
                root_seeds=roots,
            )
        )
    return adjust(out)


def _answer(primary: Contrast, drop: pd.DataFrame, none: pd.DataFrame) -> str:
    """One sentence from the primary contrast, in the calls' own words."""
    levels = (
        f"CV {100 * none['unit_cv'].mean():.0f}% without, {100 * drop['unit_cv'].mean():.0f}% "
        "with dropout"
    )
    ci = f"{primary.estimate:+.1f} [{primary.ci_low:+.1f}, {primary.ci_high:+.1f}] CV points"
    what = "the spread of hidden-unit importance ||w_in||·||w_out||"
    if primary.call in ("lowers", "raises"):
        return f"Tuned dropout {primary.call} {what} against tuned no-dropout ({ci}; {levels})."
    if primary.call == "equivalent":
        return (
            f"Tuned dropout is equivalent within ±{primary.margin:g} CV points to tuned "
            f"no-dropout in "
            f"{what} ({ci}; {levels})."
        )
    return (
        f"Tuned dropout's effect on {what} is inconclusive ({ci}, detectable "
        f"{primary.mde:.1f}; {levels})."
    )


def analyze(frame: pd.DataFrame) -> Findings:
    """Unit-importance spread, slack units and normalized pruning/ablation, by tuned arm."""
    done = frame[frame["status"] == "finished"] if len(frame) else frame
    failed = P.failed_lines(frame) if len(frame) else []
    stale: list[str] = []
    if not done.empty:
        preset = str(done["preset"].iloc[0])
        budget = PRESETS[preset]["budget"] if preset in PRESETS else None
        if budget is not None:
            done, stale = P.current(done, budget)
    if done.empty:
        return Findings("slack", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed)
    drop, none = P.tuned(done, ["dropout"]), P.tuned(done, ["none"])
    roots = P.root_seeds(done)
    contrasts = _contrasts(drop, none, roots)
    primary = contrasts[0]
    answer = _answer(primary, drop, none)
    lines = [f"{c.description}: {c.short()}" for c in contrasts]
    chosen = drop["hidden_rate"].astype(float)
    method = (
        f"{done['dataset'].iloc[0]}, n={int(done['n_train'].iloc[0])}, a fresh data draw per "
        f"replicate; MLP {tuple(done['widths'].iloc[0])} (ReLU); {primary.n_seeds} replicates, "
        f"root seeds {', '.join(map(str, roots))}. Each arm tuned with "
        f"{int(done['config'].max()) + 1} quasi-random configurations (learning rate, AdamW "
        f"weight decay; dropout also its hidden rate, chosen {chosen.mean():.2f} on average "
        f"[{chosen.min():.2f}-{chosen.max():.2f}]); up to {int(done['max_steps'].iloc[0])} "
        f"steps of batch {int(done['batch_size'].iloc[0])}, early stopping after "
        f"{int(done['patience_steps'].iloc[0])} steps without a better validation error; the "
        f"lowest validation error selects. Measurements on the selected nets, test split, "
        f"eval mode, no retraining; retention = (acc - chance) / (unpruned acc - chance). "
        f"CIs: 95% paired t over replicates; calls per docs/statistics.md (CV margin "
        f"±{100 * CV_MARGIN:g} CV points, percentages ±1 point; secondaries Holm-adjusted)."
    )
    return Findings(
        study="slack",
        question=QUESTION,
        verdict=answer + " " + "; ".join(lines[1:]) + ".",
        key_number=primary.short(),
        table=pd.DataFrame([c.to_dict() for c in contrasts]),
        figures=figures(drop, none),
        method=method,
        extra_tables={"measurements per tuned arm (mean [95% CI])": arm_table(drop, none)},
        failed=failed,
        references=[
            "Mianjy, Arora & Vidal (2018). On the implicit bias of dropout. ICML.",
            "Arora, Bartlett, Mianjy & Srebro (2021). Dropout: explicit forms and capacity control. ICML.",
            "srivastava2014",
            "Han, Pool, Tran & Dally (2015). Learning both weights and connections for efficient neural networks. NeurIPS.",
            "Morcos, Barrett, Rabinowitz & Botvinick (2018). On the importance of single directions for generalization. ICLR.",
        ],
        answer=answer,
        contrasts=contrasts,
        notes=P.cap_note(done, "slack") + stale,
    )


STUDY = Study(
    name="slack",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=P.group_key,
    description=(
        "Tuned dropout vs tuned no-dropout, equal budgets, fresh data per replicate: the "
        "spread of hidden-unit importance ||w_in||·||w_out|| (Mianjy et al. 2018), slack "
        "units, and pruning / unit-ablation curves normalized to each net's own accuracy."
    ),
    seeded=True,
)
