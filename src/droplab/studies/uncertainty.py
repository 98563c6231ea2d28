"""uncertainty — what does MC dropout buy for predictive uncertainty?

Question (the research note, via its ensemble intuition):
    "with drop-out, we have something of a built-in ensemble method" — if so, averaging
    the sub-networks (MC dropout) should give uncertainty like an ensemble's: better
    likelihoods, better calibration, and higher predictive entropy on inputs the net has
    never seen.

Methods, all on the same seeds:

- no dropout: one net trained without dropout (the baseline);
- weight scaling (WS): a dropout net, deterministic at test;
- MC dropout: the same dropout net, the arithmetic mean of T softmax outputs
  (Gal & Ghahramani 2016);
- deep ensemble: the mean of M no-dropout nets (Lakshminarayanan et al. 2017; here without
  adversarial training), the first of which is the no-dropout baseline.

Data. One class is held out of training entirely (train on 9 of 10 classes): the test
points of the other 9 classes are in-distribution; every example of the held-out class
(train, val and test pools, all unseen) is out-of-distribution (OOD). A second OOD set is
shifted inputs: the in-distribution test points plus Gaussian noise of std ``shift`` (in
units of the standardized features). Standardization is refitted on the 9-class training
set.

Metrics. In-distribution test error, NLL and ECE (15 bins); OOD detection as the AUROC of
the predictive entropy ``H(p) = -sum_c p_c log p_c`` (in vs held-out class, in vs
shifted): the probability that a random OOD point has higher entropy than a random
in-distribution one (0.5 = no better than chance).

Analysis. Means with 95% Student-t CIs over seeds; differences between methods paired by
seed (same data, and member seeds shared between the arms).

Verdict. MC dropout vs weight scaling, and MC dropout vs the deep ensemble, on NLL, ECE
and the two AUROCs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata

from droplab import rng
from droplab.findings import Findings
from droplab.studies.base import Study, Trial
from droplab.studies.ensemble import arithmetic_mean, mc_logits, scores
from droplab.studies.stats import fmt_ci, mean_ci, paired_ci

__all__ = ["METHODS", "PRESETS", "QUESTION", "STUDY", "analyze", "auroc", "entropy", "trials"]

QUESTION = (
    "Is dropout in any way similar to ensemble? If it is a built-in ensemble, does averaging "
    "its sub-networks (MC dropout) give an ensemble's uncertainty: calibrated probabilities "
    "and high entropy on inputs it has never seen?"
)
#: method key -> label, in table order.
METHODS = {
    "plain": "no dropout",
    "ws": "weight scaling",
    "mc": "MC dropout",
    "ens": "deep ensemble",
}

# -- the grid -------------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": [0, 1, 2],
        "cells": [("digits", 9)],  # (dataset, held-out class)
        "widths": [64],
        "members": 3,
        "samples": 20,
        "epochs": 6,
        "batch_size": 64,
        "lr": 2e-3,
    },
    "standard": {
        "seeds": [0, 1, 2, 3, 4],
        "cells": [("mnist1d", 3), ("mnist1d", 8), ("digits", 9)],
        "widths": [128, 128],
        "members": 5,
        "samples": 50,
        "epochs": 30,
        "batch_size": 100,
        "lr": 3e-3,
    },
    "full": {
        "seeds": list(range(10)),
        "cells": [("mnist1d", c) for c in range(10)] + [("digits", c) for c in range(10)],
        "widths": [256, 256],
        "members": 5,
        "samples": 100,
        "epochs": 100,
        "batch_size": 100,
        "lr": 1e-3,
    },
}
HIDDEN_RATE, INPUT_RATE = 0.5, 0.2
SHIFT = 1.0  # std of the Gaussian noise added to standardized inputs (shifted OOD set)


def trials(preset: str) -> list[Trial]:
    """One trial per (dataset, held-out class, seed); all methods of a seed in its row."""
    p = PRESETS[preset]
    out = []
    for dataset, held_out in p["cells"]:
        config = {
            "dataset": dataset,
            "held_out": held_out,
            "widths": list(p["widths"]),
            "members": p["members"],
            "samples": p["samples"],
            "epochs": p["epochs"],
            "batch_size": p["batch_size"],
            "lr": p["lr"],
            "hidden_rate": HIDDEN_RATE,
            "input_rate": INPUT_RATE,
            "shift": SHIFT,
            "data_seed": 0,
        }
        out += [Trial("uncertainty", config, seed, preset) for seed in p["seeds"]]
    return out


# -- data: hold one class out ---------------------------------------------------------------------


def hold_out_class(ds, cls: int):
    """``(in_distribution_dataset, x_ood)``: ``ds`` without class ``cls`` (labels above it
    shifted down by one, standardization refitted on the remaining training points), and
    every example of ``cls`` from all three splits, standardized the same way.

    Only feature-standardized datasets (the MLP ones) are supported.
    """
    from droplab.data.dataset import fit_standardization

    if ds.task != "classification" or not 0 <= cls < ds.n_classes:
        raise ValueError(f"held_out must be a class in [0, {ds.n_classes}), got {cls!r}")
    if ds.standardization not in ("feature", "none"):
        raise ValueError(
            f"hold_out_class needs feature standardization, got {ds.standardization!r}"
        )

    def raw(x):
        return x if ds.standardization == "none" else x * ds.x_std + ds.x_mean

    splits = {
        s: (raw(getattr(ds, f"x_{s}")), getattr(ds, f"y_{s}")) for s in ("train", "val", "test")
    }
    mean, std = fit_standardization(
        splits["train"][0][splits["train"][1] != cls].numpy(), "feature"
    )
    mean_t = torch.from_numpy(mean.astype(np.float32))
    std_t = torch.from_numpy(std.astype(np.float32))
    changes: dict[str, Any] = {}
    ood = []
    for s, (x, y) in splits.items():
        keep = y != cls
        changes[f"x_{s}"] = (x[keep] - mean_t) / std_t
        changes[f"y_{s}"] = y[keep] - (y[keep] > cls).long()  # labels 0..C-2
        ood.append((x[~keep] - mean_t) / std_t)
    in_ds = dataclasses.replace(
        ds,
        n_classes=ds.n_classes - 1,
        x_mean=mean_t,
        x_std=std_t,
        standardization="feature",
        meta={**ds.meta, "held_out": int(cls)},
        **changes,
    )
    return in_ds, torch.cat(ood)  # x_ood (n_ood, *input_shape)


# -- scores ---------------------------------------------------------------------------------------


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy ``-sum_c p_c log p_c`` in nats: ``(n, C) -> (n,)``."""
    p = probs.clamp_min(1e-12)
    return -(p * p.log()).sum(-1)


def auroc(score_in: np.ndarray, score_out: np.ndarray) -> float:
    """Area under the ROC curve for telling OOD (positives) from in-distribution points by
    a higher score: ``P(s_out > s_in) + P(s_out = s_in) / 2`` (Mann-Whitney U / (n_in n_out)),
    from the mid-ranks of the pooled scores. Shapes ``(n_in,)``, ``(n_out,)``."""
    s_in, s_out = np.asarray(score_in, float), np.asarray(score_out, float)
    ranks = rankdata(np.concatenate([s_in, s_out]))  # mid-ranks, ties averaged
    n_in, n_out = len(s_in), len(s_out)
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2
    return float(u / (n_in * n_out))


# -- the training ---------------------------------------------------------------------------------


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """Per seed: one dropout net and M no-dropout nets in one batched fit; score all methods."""
    from droplab import data as dl_data
    from droplab.models import ModelSpec
    from droplab.train import MemberConfig, TrainConfig, fit

    c = group[0].config
    ds, x_ood = hold_out_class(dl_data.load(c["dataset"], seed=c["data_seed"]), c["held_out"])
    M, T = c["members"], c["samples"]
    members = []
    for t in group:
        seeds = [rng.derive(t.seed, "member", m) for m in range(M)]
        members.append(
            MemberConfig(seed=seeds[0], input_rate=c["input_rate"], hidden_rate=c["hidden_rate"])
        )
        members += [MemberConfig(seed=s) for s in seeds]
    spec = ModelSpec("mlp", widths=tuple(c["widths"]))
    cfg = TrainConfig(epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"])
    result = fit(spec, ds, members, cfg, device=device)

    x, y = ds.x_test.to(device), ds.y_test.to(device)
    x_ood = x_ood.to(device)
    out = []
    for i, t in enumerate(group):
        g = rng.generator(t.seed, "shift", device=device)
        x_shift = x + c["shift"] * torch.randn(x.shape, generator=g, device=device, dtype=x.dtype)
        inputs = {"in": x, "ood": x_ood, "shift": x_shift}
        k0 = i * (M + 1)
        drop_net = result.module(k0)
        plain = [result.module(k0 + 1 + m) for m in range(M)]
        with torch.no_grad():
            probs = {
                "ws": {k: drop_net(v).softmax(-1) for k, v in inputs.items()},
                "plain": {k: plain[0](v).softmax(-1) for k, v in inputs.items()},
                "ens": {
                    k: torch.stack([n(v).softmax(-1) for n in plain]).mean(0)
                    for k, v in inputs.items()
                },
            }
        probs["mc"] = {
            k: arithmetic_mean(mc_logits(drop_net, v, T, rng.derive(t.seed, k)))
            for k, v in inputs.items()
        }
        res: dict[str, float] = {}
        for method, p in probs.items():
            res.update({f"{method}_{k}": v for k, v in scores(p["in"], y).items()})
            res.update({f"{method}_shift_{k}": v for k, v in scores(p["shift"], y).items()})
            h_in = entropy(p["in"]).cpu().numpy()
            res[f"{method}_auroc_class"] = auroc(h_in, entropy(p["ood"]).cpu().numpy())
            res[f"{method}_auroc_shift"] = auroc(h_in, entropy(p["shift"]).cpu().numpy())
            res[f"{method}_entropy_in"] = float(h_in.mean())
            res[f"{method}_entropy_ood"] = float(entropy(p["ood"]).mean())
        res["n_ood"] = float(len(x_ood))
        res["best_epoch_drop"] = result.members[k0].metrics["best_epoch"]
        res["best_epoch_plain"] = result.members[k0 + 1].metrics["best_epoch"]
        out.append({"metrics": res})
    return out


# -- the analysis ---------------------------------------------------------------------------------

#: metric suffix -> (table column, scale, lower is better)
METRICS = {
    "acc": ("test_error_pct", 100.0, True),
    "nll": ("test_nll", 1.0, True),
    "ece": ("test_ece_pct", 100.0, True),
    "auroc_class": ("auroc_heldout_class", 1.0, False),
    "auroc_shift": ("auroc_shifted", 1.0, False),
    "shift_nll": ("shifted_nll", 1.0, True),
}


def _values(d: pd.DataFrame, method: str, metric: str) -> np.ndarray:
    v = d[f"{method}_{metric}"].to_numpy(dtype=float)
    return (1.0 - v) if metric == "acc" else v


def method_table(d: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, held-out class, method): each metric with its 95% CI."""
    rows = []
    for (dataset, held), g in d.groupby(["dataset", "held_out"], sort=False):
        for method, label in METHODS.items():
            row: dict[str, Any] = {"dataset": dataset, "held_out": held, "method": label}
            for metric, (name, scale, _) in METRICS.items():
                m, lo, hi = mean_ci(_values(g, method, metric) * scale)
                row.update({name: m, f"{name}_lo": lo, f"{name}_hi": hi})
            rows.append(row)
    return pd.DataFrame(rows)


def comparison_table(d: pd.DataFrame) -> pd.DataFrame:
    """Paired (by seed) differences a - b for (MC - WS), (MC - ensemble), (ensemble - no
    dropout), per (dataset, held-out class) and pooled over them."""
    pairs = [("mc", "ws"), ("mc", "ens"), ("ens", "plain"), ("ws", "plain")]
    rows = []
    cells = [
        (f"{ds} (held out {h})", g) for (ds, h), g in d.groupby(["dataset", "held_out"], sort=False)
    ]
    if len(cells) > 1:
        cells.append(("all", d))
    for cell, g in cells:
        for a, b in pairs:
            row: dict[str, Any] = {"cell": cell, "comparison": f"{METHODS[a]} - {METHODS[b]}"}
            for metric, (name, scale, _) in METRICS.items():
                m, lo, hi = paired_ci(_values(g, a, metric) * scale, _values(g, b, metric) * scale)
                row.update({f"d_{name}": m, f"d_{name}_lo": lo, f"d_{name}_hi": hi})
            rows.append(row)
    return pd.DataFrame(rows)


def _figure(table: pd.DataFrame) -> Any:
    from droplab.report import style

    cols = [
        ("test_nll", "test NLL (nats)"),
        ("test_ece_pct", "ECE (%)"),
        ("auroc_heldout_class", "AUROC held-out class"),
        ("auroc_shifted", "AUROC shifted inputs"),
    ]
    cells = list(dict.fromkeys(zip(table["dataset"], table["held_out"])))
    fig, axes = style.figure(
        ncols=len(cols), nrows=len(cells), width=3.4 * len(cols), height=2.6 * len(cells)
    )
    axes = np.atleast_2d(axes).reshape(len(cells), len(cols))
    for r, (ds, h) in enumerate(cells):
        t = table[(table["dataset"] == ds) & (table["held_out"] == h)]
        for ax, (col, label) in zip(axes[r], cols):
            style.bars(ax, list(t["method"]), t[col], t[f"{col}_lo"], t[f"{col}_hi"])
            ax.set(ylabel=label, title=f"{ds}, class {h} held out")
            ax.tick_params(axis="x", labelrotation=30)
            if col.startswith("auroc"):
                ax.set_ylim(0.0, 1.0)
                ax.axhline(0.5, color="#333333", linewidth=0.8, linestyle=":")
    return fig


def _word(lo: float, hi: float, lower_better: bool) -> str:
    if math.isnan(lo) or math.isnan(hi) or lo <= 0 <= hi:
        return "no significant difference"
    return "better" if (hi < 0) == lower_better else "worse"


def analyze(frame: pd.DataFrame) -> Findings:
    """NLL, ECE and OOD AUROC of no dropout, weight scaling, MC dropout and a deep ensemble."""
    d = frame[frame["status"] == "finished"].reset_index(drop=True)
    failed = [
        f"{r.dataset} held out {r.held_out} seed {r.seed}: {r.status} {r.error}"
        for r in frame[frame["status"] != "finished"].itertuples()
    ]
    if d.empty:
        return Findings(
            "uncertainty", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed
        )
    table, comp = method_table(d), comparison_table(d)
    pooled = comp[comp["cell"] == comp["cell"].iloc[-1]].set_index("comparison")

    def say(cmp: str, name: str, digits: int, unit: str = "") -> str:
        r = pooled.loc[cmp]
        m, lo, hi = r[f"d_{name}"], r[f"d_{name}_lo"], r[f"d_{name}_hi"]
        return f"{fmt_ci(m, lo, hi, digits=digits)}{unit} ({_word(lo, hi, METRICS_LOWER[name])})"

    mc_ws, mc_ens = "MC dropout - weight scaling", "MC dropout - deep ensemble"
    scope = comp["cell"].iloc[-1]
    scope = (
        "pooled over "
        + ", ".join(f"{a} class {b}" for a, b in dict.fromkeys(zip(d["dataset"], d["held_out"])))
        if scope == "all"
        else scope
    )
    verdict = (
        f"MC dropout vs weight scaling: NLL {say(mc_ws, 'test_nll', 3)}, ECE "
        f"{say(mc_ws, 'test_ece_pct', 1, ' pts')}, held-out-class AUROC "
        f"{say(mc_ws, 'auroc_heldout_class', 3)}, shifted-input AUROC "
        f"{say(mc_ws, 'auroc_shifted', 3)}. MC dropout vs a deep ensemble of "
        f"{int(d['members'].iloc[0])} nets: NLL {say(mc_ens, 'test_nll', 3)}, held-out-class "
        f"AUROC {say(mc_ens, 'auroc_heldout_class', 3)}, shifted AUROC "
        f"{say(mc_ens, 'auroc_shifted', 3)} ({scope}; paired by seed, 95% CI)."
    )
    cells = []
    for (ds, h), t in table.groupby(["dataset", "held_out"], sort=False):
        top = t.loc[t["auroc_heldout_class"].idxmax()]
        cells.append(
            f"{ds} class {h}: {top['method']} {top['auroc_heldout_class']:.3f} "
            f"(range {t['auroc_heldout_class'].min():.3f}-{t['auroc_heldout_class'].max():.3f})"
        )
    verdict += (
        " Best held-out-class AUROC per cell (0.5 = chance; below it, entropy is lower on "
        "the unseen class than on the seen ones): " + "; ".join(cells) + "."
    )
    r = pooled.loc[mc_ens]
    key_number = "AUROC held-out class, MC dropout - ensemble: " + fmt_ci(
        r["d_auroc_heldout_class"],
        r["d_auroc_heldout_class_lo"],
        r["d_auroc_heldout_class_hi"],
        digits=3,
    )
    x = pd.Series(d.iloc[0].to_dict()).rename(lambda k: k if k != "shift" else "noise")
    method = (
        f"Data: {', '.join(sorted(set(d['dataset'])))} (droplab.data, split data_seed 0), one "
        f"class held out of training (classes: {sorted(set(d['held_out']))}); in-distribution "
        f"= the test points of the other classes; OOD = all examples of the held-out class, "
        f"and the in-distribution test points plus N(0, {x.noise:g}^2) noise (standardized "
        f"units). Model: MLP {tuple(x.widths)} (ReLU); dropout net: input {x.input_rate:g}, "
        f"hidden {x.hidden_rate:g} (inverted). Training: Adam lr {x.lr:g}, batch "
        f"{x.batch_size}, {x.epochs} epochs, weights of the lowest-validation-loss epoch. MC "
        f"dropout: T={x.samples} masks, mean of probabilities. Ensemble: {x.members} no-dropout "
        f"nets (member seeds derived from the trial seed; the first is the no-dropout "
        f"baseline and shares its seed with the dropout net). OOD score: predictive entropy; "
        f"AUROC by the Mann-Whitney statistic. Seeds: {d['seed'].nunique()} per cell. CIs: 95% "
        f"Student-t over seeds, differences paired by seed (pooled rows pair (cell, seed))."
    )
    return Findings(
        study="uncertainty",
        question=QUESTION,
        verdict=verdict,
        key_number=key_number,
        table=table,
        extra_tables={"paired differences": comp},
        figures={"uncertainty": _figure(table)},
        method=method,
        failed=failed,
        references=[
            "Gal & Ghahramani (2016). Dropout as a Bayesian approximation: representing model uncertainty in deep learning. ICML.",
            "Lakshminarayanan, Pritzel & Blundell (2017). Simple and scalable predictive uncertainty estimation using deep ensembles. NeurIPS.",
            "Ovadia et al. (2019). Can you trust your model's uncertainty? Evaluating predictive uncertainty under dataset shift. NeurIPS.",
            "Guo, Pleiss, Sun & Weinberger (2017). On calibration of modern neural networks. ICML.",
            "Hendrycks & Gimpel (2017). A baseline for detecting misclassified and out-of-distribution examples in neural networks. ICLR.",
        ],
    )


METRICS_LOWER = {name: lower for name, _, lower in METRICS.values()}

STUDY = Study(
    name="uncertainty",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    description=(
        "Train on 9 of 10 classes; NLL, ECE and OOD AUROC (held-out class, noisy inputs) of "
        "weight scaling, MC dropout and a deep ensemble."
    ),
)
