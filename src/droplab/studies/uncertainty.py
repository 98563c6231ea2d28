"""uncertainty — what does MC dropout buy for predictive uncertainty?

Question (the research note, via its ensemble intuition):
    "with drop-out, we have something of a built-in ensemble method" — if so, averaging
    the sub-networks (MC dropout, Gal & Ghahramani 2016) should give uncertainty like an
    ensemble's: better likelihoods, better calibration, and higher predictive entropy on
    inputs the net has never seen.

Design (:mod:`ensemble_design`, protocol in docs/statistics.md): digits with one class
held out of training (the class is drawn per replicate, like the data); arms ``plain``
(no dropout) and ``dropout`` (hidden rate tuned) with equal search budgets, each
configuration trained as M members, selected on validation error only. Methods scored on
the same replicate: weight scaling (WS) and MC dropout (mean softmax of T masks) of the
tuned dropout net, and the ensemble of the M tuned no-dropout nets (Lakshminarayanan et
al. 2017, without adversarial training).

Calibration. Every method is temperature-scaled on the validation split (one T per
method, Guo et al. 2017; averaged predictions scale the log of the average, Ashukha et
al. 2020) before its test NLL and ECE; both before and after are reported. Of digits'
1294-point training pool 900 points train and 394 join the 144-point validation split:
with a handful of validation errors (often none) the fitted T runs to its bound and
makes the test NLL worse (:func:`ensemble_design.widen_validation`).

OOD detection (score: entropy of the temperature-scaled prediction, AUROC by the
Mann-Whitney statistic). MNIST-1D cannot rank methods: with 35-40% test error every
method scored held-out-class AUROC 0.30-0.49 there, and time-shuffled or noise signals
scored 0.47-0.57 in a check for this study. On digits (3% error) every method scores about
0.9 on the held-out class; on uniform noise and on pixel-shuffled digits (each image's
raw pixel values permuted) MC dropout and the ensemble reach 0.65-0.98 while a single
net can be *more* confident than on real digits (AUROC about 0.2 on shuffled pixels). A
cell is valid when some method's interval lies above 0.5 (:func:`ood_table`); all three
are, and they are separate cells, never pooled.

Primary contrast (declared): MC dropout minus weight scaling of the same tuned dropout
net, test NLL after temperature scaling. It asks what the Bayesian reading of dropout
adds to the net one would deploy anyway, with the overconfidence that a single
temperature fixes taken out. Margin 0.01 nats, not the default 0.02: digits NLLs are
about 0.1 nats, so 0.02 would be a fifth of them.

Secondary (Holm): the same before temperature scaling; MC dropout vs the ensemble
(temperature-scaled NLL); ECE after scaling, MC vs WS (±1 point); per OOD cell, AUROC of
MC vs WS and of the ensemble vs MC (margin 0.02: about the sampling standard error of one
AUROC at 0.9 with ~180 OOD and ~330 in-distribution points, Hanley & McNeil 1982).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from droplab.findings import Contrast, Findings
from droplab.studies import protocol as P
from droplab.studies.base import Study, Trial
from droplab.studies.calibration import auroc, entropy
from droplab.studies.ensemble_analysis import current, method_table, pair, said
from droplab.studies.ensemble_design import OOD_KINDS, group_key, hold_out_class
from droplab.studies.ensemble_design import run_group as _run
from droplab.studies.ensemble_design import trials as _trials
from droplab.studies.stats import DEFAULT_MARGINS, adjust, compare, mean_ci

__all__ = [
    "PRESETS",
    "QUESTION",
    "STUDY",
    "analyze",
    "auroc",
    "entropy",
    "hold_out_class",
    "run_group",
    "trials",
]

QUESTION = (
    "Is dropout in any way similar to ensemble? If it is a built-in ensemble, does averaging "
    "its sub-networks (MC dropout) give an ensemble's uncertainty: calibrated probabilities "
    "and high entropy on inputs it has never seen?"
)
NLL_MARGIN = 0.01
AUROC_MARGIN = 0.02
OOD_LABELS = {"class": "held-out class", "shuffled": "shuffled pixels", "noise": "uniform noise"}

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
        "budget": P.Budget(seeds=20, configs=8, max_steps=3000, eval_steps=26, patience_steps=780),
        "cell": P.Cell("digits", 1294, (256, 256), ("plain", "dropout")),
        "members": 5,
        "samples": 100,
        "n_fit": 900,
    },
}


def trials(preset: str, *, seed: int = 0) -> list[Trial]:
    """Replicates x {plain, dropout} x configurations of ``preset``, root ``seed``."""
    p = PRESETS[preset]
    return _trials(
        "uncertainty",
        preset,
        seed,
        p["cell"],
        p["budget"],
        members=p["members"],
        samples=p["samples"],
        n_fit=p["n_fit"],
        long=False,
        ood=True,
    )


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """One replicate of the shared design with the OOD sets (:mod:`ensemble_design`)."""
    return _run(group, device)


# -- the analysis ----------------------------------------------------------------------------


def _contrasts(plain: pd.DataFrame, drop: pd.DataFrame, M: int, roots) -> list[Contrast]:
    nats = {"unit": "nats", "margin": NLL_MARGIN, "root_seeds": roots}
    E = f"the ensemble of {M} tuned no-dropout nets"
    out = [
        compare(
            "mc_vs_ws_nll_ts",
            *pair(drop, "mc_ts_nll", drop, "ws_ts_nll"),
            primary=True,
            description="MC dropout − weight scaling of the tuned dropout net, test NLL "
            "after temperature scaling",
            metric="test_nll_ts",
            **nats,
        ),
        compare(
            "mc_vs_ws_nll",
            *pair(drop, "mc_nll", drop, "ws_nll"),
            description="MC dropout − weight scaling, test NLL before temperature scaling",
            metric="test_nll",
            **nats,
        ),
        compare(
            "mc_vs_ensemble_nll_ts",
            *pair(drop, "mc_ts_nll", plain, "ens_ts_nll"),
            description=f"MC dropout − {E}, test NLL after temperature scaling",
            metric="test_nll_ts",
            **nats,
        ),
        compare(
            "mc_vs_ws_ece_ts",
            *pair(drop, "mc_ts_ece", drop, "ws_ts_ece"),
            description="MC dropout − weight scaling, test ECE after temperature scaling",
            metric="test_ece_ts",
            unit="points",
            margin=DEFAULT_MARGINS["points"],
            scale=100.0,
            root_seeds=roots,
        ),
    ]
    auc = {"unit": "AUROC", "margin": AUROC_MARGIN, "root_seeds": roots}
    for kind in OOD_KINDS:
        out.append(
            compare(
                f"mc_vs_ws_auroc_{kind}",
                *pair(drop, f"mc_auroc_{kind}", drop, f"ws_auroc_{kind}"),
                description=f"MC dropout − weight scaling, AUROC on {OOD_LABELS[kind]}",
                metric=f"auroc_{kind}",
                **auc,
            )
        )
        out.append(
            compare(
                f"ensemble_vs_mc_auroc_{kind}",
                *pair(plain, f"ens_auroc_{kind}", drop, f"mc_auroc_{kind}"),
                description=f"{E} − MC dropout, AUROC on {OOD_LABELS[kind]}",
                metric=f"auroc_{kind}",
                **auc,
            )
        )
    return adjust(out)


def ood_table(plain: pd.DataFrame, drop: pd.DataFrame, M: int) -> pd.DataFrame:
    """AUROC per (OOD cell, method), mean with 95% t interval over replicates; ``valid``:
    the cell's best lower bound lies above 0.5 (some method detects it)."""
    rows = []
    for kind in OOD_KINDS:
        cell = []
        for label, frame, prefix in (
            ("one tuned no-dropout net", plain, "ws"),
            (f"ensemble of {M} tuned no-dropout nets", plain, "ens"),
            ("tuned dropout net, weight scaling", drop, "ws"),
            ("tuned dropout net, MC", drop, "mc"),
        ):
            m, lo, hi = mean_ci(frame[f"{prefix}_auroc_{kind}"].to_numpy(float))
            cell.append({"ood": OOD_LABELS[kind], "method": label, "auroc": m, "lo": lo, "hi": hi})
        best = max(r["lo"] for r in cell)
        rows += [{**r, "valid": bool(best > 0.5)} for r in cell]
    return pd.DataFrame(rows)


def _answer(c: Contrast, drop: pd.DataFrame) -> str:
    T = int(drop["samples"].iloc[0])
    subject = f"MC dropout (T={T}) against weight scaling of the same tuned dropout net"
    return (
        "On digits with one class held out, "
        f"{said(c, subject, 'temperature-scaled test NLL', 'nats', 3)}."
    )


def _figure(methods: pd.DataFrame, ood: pd.DataFrame) -> dict[str, Any]:
    from droplab.report import style

    fig, axes = style.figure(ncols=2, width=11.0, height=3.8)
    style.bars(
        axes[0],
        list(methods["method"]),
        methods["test_nll_ts"],
        methods["test_nll_ts_lo"],
        methods["test_nll_ts_hi"],
    )
    axes[0].set(ylabel="test NLL after temperature scaling (nats)")
    axes[0].tick_params(axis="x", labelrotation=30)
    for i, (kind, g) in enumerate(ood.groupby("ood", sort=False)):
        x = np.arange(len(g)) + i * (len(g) + 1)
        axes[1].errorbar(
            x,
            g["auroc"],
            yerr=[g["auroc"] - g["lo"], g["hi"] - g["auroc"]],
            fmt="o",
            color=style.color(i),
            label=kind,
        )
    axes[1].axhline(0.5, color="#333333", linewidth=0.8, linestyle=":")
    axes[1].set(
        ylabel="AUROC (entropy)",
        ylim=(0.0, 1.0),
        title="OOD cells (methods left to right: plain, ensemble, WS, MC)",
    )
    axes[1].legend(fontsize=8)
    return {"uncertainty": fig}


def analyze(frame: pd.DataFrame) -> Findings:
    """Temperature-scaled NLL/ECE and per-cell OOD AUROC of WS, MC dropout and an ensemble."""
    done = frame[frame["status"] == "finished"] if len(frame) else frame
    failed = P.failed_lines(frame) if len(frame) else []
    stale: list[str] = []
    if not done.empty:
        done, stale = current(done, PRESETS[str(done["preset"].iloc[0])])
    if done.empty or not {"plain", "dropout"} <= set(done["arm"]):
        return Findings(
            "uncertainty", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed
        )
    M = int(done["members"].iloc[0])
    plain, drop = P.tuned(done, ["plain"]), P.tuned(done, ["dropout"])
    roots = P.root_seeds(done)
    contrasts = _contrasts(plain, drop, M, roots)
    methods = method_table(
        [
            ("one tuned no-dropout net", plain, "ws", "steps"),
            (f"ensemble of {M} tuned no-dropout nets", plain, "ens", "ens_steps"),
            ("tuned dropout net, weight scaling", drop, "ws", "steps"),
            ("tuned dropout net, MC", drop, "mc", "steps"),
            (f"ensemble of {M} tuned dropout nets", drop, "ens", "ens_steps"),
        ]
    )
    ood = ood_table(plain, drop, M)
    answer = _answer(contrasts[0], drop)
    lines = [f"{c.description}: {c.short()}" for c in contrasts]
    invalid = sorted(set(ood.loc[~ood["valid"], "ood"]))
    notes = P.cap_note(done, "uncertainty") + stale
    if invalid:
        notes.append(
            f"no method detects {', '.join(invalid)} above chance (best AUROC interval "
            "reaches 0.5): those cells cannot rank methods"
        )
    b = done.iloc[0]
    configs = int(done.loc[done["arm"] == "plain", "config"].max()) + 1
    classes = sorted(int(c) for c in done["held_out_class"].dropna().unique())
    method = (
        f"digits, a training pool of {int(b['n_train'])} ({int(b['n_fit'])} train, the rest "
        f"join the validation split) before holding out one class (drawn per replicate; "
        f"classes held out: {classes}), a fresh test split per replicate; MLP "
        f"{tuple(b['widths'])}; {contrasts[0].n_seeds} replicates, root seeds "
        f"{', '.join(map(str, roots))}. Each arm tuned with {configs} quasi-random "
        f"configurations (learning rate, AdamW weight decay, max-norm; dropout: hidden rate "
        f"in [0.1, 0.6]), each trained as {M} members, up to {int(b['max_steps'])} steps, "
        f"early stopping after {int(b['patience_steps'])} steps without a better validation "
        f"error, selected on member 0's validation error. MC: mean softmax of "
        f"{int(b['samples'])} masks. Temperature: one per method, fitted on validation NLL. "
        f"OOD: every example of the held-out class; the in-distribution test inputs with "
        f"their pixels permuted; uniform noise on the training range; score = entropy of the "
        f"temperature-scaled prediction. CIs: 95% paired t over replicates; margins "
        f"±{NLL_MARGIN} nats, ±1 point of ECE, ±{AUROC_MARGIN} AUROC; secondaries "
        f"Holm-adjusted."
    )
    return Findings(
        study="uncertainty",
        question=QUESTION,
        verdict=answer + " " + "; ".join(lines[1:]) + ".",
        key_number=contrasts[0].short(),
        table=pd.DataFrame([c.to_dict() for c in contrasts]),
        figures=_figure(methods, ood),
        method=method,
        extra_tables={
            "methods (in-distribution test metrics before/after temperature scaling)": methods.round(
                4
            ),
            "OOD detection per cell (AUROC of entropy)": ood.round(4),
        },
        failed=failed,
        references=[
            "gal2016",
            "Lakshminarayanan, Pritzel & Blundell (2017). Simple and scalable predictive "
            "uncertainty estimation using deep ensembles. NeurIPS.",
            "Guo, Pleiss, Sun & Weinberger (2017). On calibration of modern neural networks. ICML.",
            "Ashukha, Lyzhov, Molchanov & Vetrov (2020). Pitfalls of in-domain uncertainty "
            "estimation and ensembling in deep learning. ICLR.",
            "Hanley & McNeil (1982). The meaning and use of the area under a receiver "
            "operating characteristic (ROC) curve. Radiology.",
        ],
        answer=answer,
        contrasts=contrasts,
        notes=notes,
    )


STUDY = Study(
    name="uncertainty",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=group_key,
    description=(
        "Digits with one class held out; tuned no-dropout and tuned dropout arms (equal "
        "budgets, M members each): NLL and ECE before/after temperature scaling, and OOD "
        "AUROC per cell (held-out class, shuffled pixels, uniform noise), of weight "
        "scaling, MC dropout and an ensemble."
    ),
    seeded=True,
)
