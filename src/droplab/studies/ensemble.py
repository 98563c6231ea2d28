"""ensemble — is a dropout net an ensemble, and does it do what an ensemble does?

Question (the research note):
    "with drop-out, we have something of a built-in ensemble method when many sub-networks
    have to train in parallel. Is this intuition even true? Is dropout in any way similar
    to ensemble?"

What an ensemble does is lower test error by averaging nets that disagree. So the study
puts a tuned dropout net next to a real ensemble of tuned nets *at equal training
compute*, and measures whether its sub-networks disagree the way independent nets do.

Design (:mod:`ensemble_design`; protocol: docs/statistics.md). Arms ``plain`` (no
dropout) and ``dropout`` (hidden rate tuned), each with the same number of quasi-random
configurations (learning rate, AdamW weight decay, max-norm, and the rate), every
configuration trained as M members; early stopping on validation error under a step cap;
per replicate the configuration with the lowest validation error of member 0 is the arm's
result (validation only). ``long``: the dropout arm's configurations trained once with
M times the step cap and M times the patience ("one dropout net trained M times as
long"), selected the same way. Every replicate draws fresh data.

Compute. Training compute is counted in optimizer steps actually used (early stopping):
an ensemble costs the sum over its M members, the long dropout net what it used of its
M-fold allowance. Both arms' searches cost the same number of configurations.

Primary contrast (declared): the ensemble of M tuned no-dropout nets minus the tuned
dropout net allowed M times the training (MC average of ``samples`` masks), test error.
This is the note's question at equal compute: can one dropout net, given an ensemble's
training budget, do what the ensemble does? MC averaging is the dropout net's own
"ensemble" prediction (Srivastava et al. 2014, sec. 7.5), so it is the fair reading.

Secondary (Holm): the plain ensemble vs M tuned dropout nets (each ensemble is M
trainings) and vs one dropout net at the normal budget; what M times the budget buys the
dropout net; single tuned dropout net vs single tuned plain net (the handicap of the old
untuned comparison); MC averaging vs weight scaling; the primary pair in test NLL after
temperature scaling (Guo et al. 2017, fitted on validation); and disagreement between M
single masks of the dropout net vs between the M plain nets, each divided by its members'
mean error (Fort et al. 2019), so that weaker single masks do not count as more diverse.
Margin of that last one: 0.1 disagreement per unit of error (independent nets disagree on
about 0.5-0.7 rows per error in the standard runs; a difference below a tenth of a
disagreement per error is too small to matter).

Data. Digits in ``quick`` and ``standard`` (MNIST-1D in ``full``): of the 1294-point
training pool, 900 points train and 394 join the 144-point validation split, so the
validation split that selects configurations and fits temperatures holds errors to fit on
(:func:`ensemble_design.widen_validation`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from droplab.findings import Contrast, Findings
from droplab.studies import protocol as P
from droplab.studies.base import Study, Trial
from droplab.studies.ensemble_analysis import current, method_table, pair, said
from droplab.studies.ensemble_design import group_key
from droplab.studies.ensemble_design import run_group as _run
from droplab.studies.ensemble_design import trials as _trials
from droplab.studies.stats import DEFAULT_MARGINS, adjust, compare, mean_ci

__all__ = ["PRESETS", "QUESTION", "STUDY", "analyze", "run_group", "trials"]

QUESTION = (
    "With dropout we have something of a built-in ensemble method when many sub-networks "
    "have to train in parallel. Is this intuition even true? Is dropout in any way similar "
    "to ensemble?"
)

#: margin of the normalized-disagreement contrast (disagreement per unit of member error)
RATIO_MARGIN = 0.1

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "budget": P.Budget(seeds=3, configs=2, max_steps=260, eval_steps=26, patience_steps=104),
        "cell": P.Cell("digits", 1294, (64, 64), ("plain", "dropout")),
        "members": 3,
        "samples": 10,
        "n_fit": 900,
    },
    "standard": {
        "budget": P.Budget(seeds=10, configs=3, max_steps=1560, eval_steps=26, patience_steps=390),
        "cell": P.Cell("digits", 1294, (100, 100), ("plain", "dropout")),
        "members": 4,
        "samples": 30,
        "n_fit": 900,
    },
    "full": {
        "budget": P.BUDGETS["full"],
        "cell": P.Cell("mnist1d", 3600, (256, 256), ("plain", "dropout")),
        "members": 5,
        "samples": 50,
        "n_fit": 3000,
    },
}


def trials(preset: str, *, seed: int = 0) -> list[Trial]:
    """Replicates x {plain, dropout, long} x configurations of ``preset``, root ``seed``."""
    p = PRESETS[preset]
    return _trials(
        "ensemble",
        preset,
        seed,
        p["cell"],
        p["budget"],
        members=p["members"],
        samples=p["samples"],
        n_fit=p["n_fit"],
        long=True,
        ood=False,
    )


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """One (replicate, recipe) of the shared design (:func:`ensemble_design.run_group`)."""
    return _run(group, device)


# -- the analysis ----------------------------------------------------------------------------


def _contrasts(t: dict[str, pd.DataFrame], M: int, roots) -> list[Contrast]:
    plain, drop, long = t["plain"], t["dropout"], t["long"]
    err = P.error_points(roots)
    E = f"ensemble of {M} tuned no-dropout nets"
    out = [
        compare(
            "ensemble_vs_long_dropout",
            *pair(plain, "ens_error", long, "mc_error"),
            primary=True,
            description=f"{E} − one tuned dropout net trained with {M}x the step budget "
            "(MC average), test error",
            **err,
        )
    ]
    specs = [
        (
            "ensemble_vs_dropout_ensemble",
            plain,
            "ens_error",
            drop,
            "ens_error",
            f"{E} − ensemble of {M} tuned dropout nets, test error",
        ),
        (
            "ensemble_vs_dropout",
            plain,
            "ens_error",
            drop,
            "mc_error",
            f"{E} − one tuned dropout net (MC, normal budget), test error",
        ),
        (
            "long_vs_normal_dropout",
            long,
            "mc_error",
            drop,
            "mc_error",
            f"tuned dropout net with {M}x the budget − with the normal budget (MC), test error",
        ),
        (
            "dropout_vs_plain",
            drop,
            "ws_error",
            plain,
            "ws_error",
            "one tuned dropout net (weight scaling) − one tuned no-dropout net, test error",
        ),
        (
            "mc_vs_ws",
            drop,
            "mc_error",
            drop,
            "ws_error",
            "MC average − weight scaling of the tuned dropout net, test error",
        ),
    ]
    for name, a, ca, b, cb, text in specs:
        out.append(compare(name, *pair(a, ca, b, cb), description=text, **err))
    out.append(
        compare(
            "ensemble_vs_long_dropout_nll",
            *pair(plain, "ens_ts_nll", long, "mc_ts_nll"),
            description=f"{E} − dropout net with {M}x the budget (MC), test NLL after "
            "temperature scaling",
            metric="test_nll_ts",
            unit="nats",
            margin=DEFAULT_MARGINS["nats"],
            root_seeds=roots,
        )
    )
    out.append(
        compare(
            "masks_vs_nets_disagreement",
            *pair(drop, "div_masks_normalized", plain, "div_nets_normalized"),
            description=f"disagreement per unit of member error: {M} masks of the tuned "
            f"dropout net − {M} tuned no-dropout nets",
            metric="normalized_disagreement",
            unit="ratio",
            margin=RATIO_MARGIN,
            root_seeds=roots,
        )
    )
    return adjust(out)


def _tables(t: dict[str, pd.DataFrame], M: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    methods = method_table(
        [
            ("one tuned no-dropout net", t["plain"], "ws", "steps"),
            (f"ensemble of {M} tuned no-dropout nets", t["plain"], "ens", "ens_steps"),
            ("tuned dropout net, weight scaling", t["dropout"], "ws", "steps"),
            ("tuned dropout net, MC", t["dropout"], "mc", "steps"),
            (f"ensemble of {M} tuned dropout nets", t["dropout"], "ens", "ens_steps"),
            (f"dropout net, {M}x budget, weight scaling", t["long"], "ws", "steps"),
            (f"dropout net, {M}x budget, MC", t["long"], "mc", "steps"),
        ]
    )
    rows = []
    for label, frame, col in (
        (f"{M} single masks of the tuned dropout net", t["dropout"], "div_masks"),
        (f"{M} tuned dropout nets (weight scaling)", t["dropout"], "div_nets"),
        (f"{M} tuned no-dropout nets", t["plain"], "div_nets"),
    ):
        row: dict[str, Any] = {"predictors": label}
        for k in ("raw", "error", "normalized"):
            scale = 1.0 if k == "normalized" else 100.0
            m, lo, hi = mean_ci(frame[f"{col}_{k}"].to_numpy(float) * scale)
            name = {
                "raw": "disagreement_pct",
                "error": "member_error_pct",
                "normalized": "per_error",
            }[k]
            row.update({name: m, f"{name}_lo": lo, f"{name}_hi": hi})
        rows.append(row)
    return methods, pd.DataFrame(rows)


def _steps(frame: pd.DataFrame, col: str) -> str:
    return f"{frame[col].mean():.0f}"


def _answer(c: Contrast, t: dict[str, pd.DataFrame], M: int, label: str) -> str:
    ens, long = _steps(t["plain"], "ens_steps"), _steps(t["long"], "steps")
    cap = _steps(t["long"], "step_cap")
    subject = (
        f"an ensemble of {M} tuned no-dropout nets against one tuned dropout net allowed "
        f"{M}x the training (MC-averaged)"
    )
    return (
        f"On {label}, {said(c, subject, 'test error', 'points')}; training steps used: {ens} "
        f"by the ensemble, {long} by the dropout net of its cap of {cap}."
    )


def _figure(methods: pd.DataFrame, contrasts: list[Contrast]) -> dict[str, Any]:
    from droplab.report import style

    fig, ax = style.figure(width=7.0, height=3.8)
    style.bars(
        ax,
        list(methods["method"]),
        methods["test_error_pct"],
        methods["test_error_pct_lo"],
        methods["test_error_pct_hi"],
    )
    ax.set(ylabel="test error (%)", title="tuned methods, 95% CI over replicates")
    ax.tick_params(axis="x", labelrotation=30)
    forest = style.forest(
        [c for c in contrasts if c.unit == "points"],
        xlabel="difference in test error (points), Holm-widened for secondaries",
        fontsize=7,
    )
    return {"methods": fig, "contrasts": forest}


def analyze(frame: pd.DataFrame) -> Findings:
    """Tuned ensemble vs tuned dropout nets at stated compute, calibration, disagreement."""
    done = frame[frame["status"] == "finished"] if len(frame) else frame
    failed = P.failed_lines(frame) if len(frame) else []
    stale: list[str] = []
    if not done.empty:
        done, stale = current(done, PRESETS[str(done["preset"].iloc[0])])
    if done.empty or not {"plain", "dropout", "long"} <= set(done["arm"]):
        return Findings(
            "ensemble", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed
        )
    M = int(done.loc[done["arm"] == "plain", "members"].iloc[0])
    T = int(done["samples"].iloc[0])
    t = {arm: P.tuned(done, [arm]) for arm in ("plain", "dropout", "long")}
    roots = P.root_seeds(done)
    contrasts = _contrasts(t, M, roots)
    methods, div = _tables(t, M)
    label = {"digits": "digits", "mnist1d": "MNIST-1D"}.get(str(done["dataset"].iloc[0]))
    answer = _answer(contrasts[0], t, M, label)
    lines = [f"{c.description}: {c.short()}" for c in contrasts]
    configs = int(done.loc[done["arm"] == "plain", "config"].max()) + 1
    b = done.iloc[0]
    method = (
        f"{label}, a training pool of {int(b['n_train'])} of which {int(b['n_fit'])} train "
        f"and the rest join the validation split, a fresh data draw per replicate (test set "
        f"included); MLP {tuple(b['widths'])}; {contrasts[0].n_seeds} replicates, root seeds "
        f"{', '.join(map(str, roots))}. Each arm tuned with {configs} quasi-random "
        f"configurations (learning rate, AdamW weight decay, max-norm; dropout: hidden rate "
        f"in [0.1, 0.6]), each trained as {M} members (seeds), up to {int(b['max_steps'])} "
        f"steps of batch {int(b['batch_size'])}, early stopping after "
        f"{int(b['patience_steps'])} steps without a better validation error; the "
        f"configuration with member 0's lowest validation error is the arm's result. Long "
        f"run: the dropout configurations with cap and patience x{M}. MC: mean softmax of "
        f"{T} masks. Temperature scaling: one T per method fitted on validation NLL. "
        f"Training compute = optimizer steps used. CIs: 95% paired t over replicates; calls "
        f"per docs/statistics.md (±1 point, ±0.02 nats, ±{RATIO_MARGIN} disagreement per "
        f"error; secondaries Holm-adjusted)."
    )
    return Findings(
        study="ensemble",
        question=QUESTION,
        verdict=answer + " " + "; ".join(lines[1:]) + ".",
        key_number=contrasts[0].short(),
        table=pd.DataFrame([c.to_dict() for c in contrasts]),
        figures=_figure(methods, contrasts),
        method=method,
        extra_tables={
            "methods (test metrics before/after temperature scaling; train_steps = "
            "optimizer steps used, summed over an ensemble's members)": methods.round(4),
            "disagreement (argmax, pairs of predictors)": div.round(4),
        },
        failed=failed,
        references=[
            "srivastava2014",
            "Lakshminarayanan, Pritzel & Blundell (2017). Simple and scalable predictive "
            "uncertainty estimation using deep ensembles. NeurIPS.",
            "Guo, Pleiss, Sun & Weinberger (2017). On calibration of modern neural networks. ICML.",
            "Fort, Hu & Lakshminarayanan (2019). Deep ensembles: a loss landscape "
            "perspective. arXiv:1912.02757.",
        ],
        answer=answer,
        contrasts=contrasts,
        notes=P.cap_note(done, "ensemble") + stale,
    )


STUDY = Study(
    name="ensemble",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=group_key,
    description=(
        "Tuned no-dropout and tuned dropout arms (equal search budgets, each configuration "
        "trained as M members), and the dropout configurations trained with M times the "
        "budget: ensemble vs dropout at stated, equal training compute; test error, NLL "
        "and ECE before/after temperature scaling; disagreement of masks vs nets."
    ),
    seeded=True,
)
