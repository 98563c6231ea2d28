"""slack — do weights "slack out to zero" without dropout?

Question (the research note):
    "When all weights are learned together, many of them slack out by just running to the
    ground (zero), and not contributing to anything (would have to be pruned). But with
    drop-out, we have something of a built-in ensemble method when many sub-networks have
    to train in parallel."

Grid. Per dataset, the same MLP trained with and without dropout (input 0.2, hidden 0.5,
the note's recipe), on the same seeds: arm "dropout" and arm "none" of seed s share the
initialization and the batch order, so every comparison is paired by seed.

Training. Adam, cross-entropy, weights of the lowest-validation-loss epoch.

Measurements (on the trained net in eval mode, test inputs):

- weight magnitudes of every linear layer: the fraction of weights with ``|w| < 0.01``
  (absolute: "run to the ground"), the fraction with ``|w| < 0.1 rms(W)`` (relative to the
  layer's own scale, since dropout changes the scale of the weights), and a histogram of
  ``log10 |w|``;
- dead ReLUs: hidden units that output 0 on every test input;
- the pruning curve: test accuracy after zeroing the smallest-magnitude fraction ``f`` of
  each layer's weights (layer-wise magnitude pruning, no retraining);
- co-adaptation: the mean absolute Pearson correlation between the activations of pairs
  of (non-constant) hidden units of a layer over the test inputs, averaged over layers.

Analysis. Means with 95% Student-t CIs over seeds per arm, and the paired difference
dropout - none with its 95% CI.

Verdict. Whether the data show more near-zero weights, more dead units and a cheaper
pruning without dropout, and the co-adaptation difference.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from droplab.findings import Findings
from droplab.store import canonical_json
from droplab.studies.base import Study, Trial
from droplab.studies.stats import fmt_ci, mean_ci, paired_ci

__all__ = [
    "ARMS",
    "PRESETS",
    "PRUNE_FRACTIONS",
    "QUESTION",
    "STUDY",
    "analyze",
    "coadaptation",
    "dead_fraction",
    "prune_",
    "trials",
]

QUESTION = (
    "When all weights are learned together, many of them slack out by just running to the "
    "ground (zero), and not contributing to anything (would have to be pruned). Does "
    "dropout prevent that?"
)
#: arm -> (input rate, hidden rate)
ARMS = {"none": (0.0, 0.0), "dropout": (0.2, 0.5)}
PRUNE_FRACTIONS = (0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
HIST_EDGES = np.linspace(-6.0, 1.0, 57)  # bins of log10 |w|

# -- the grid -----------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": [0, 1, 2],
        "nets": [("digits", [64])],
        "epochs": 8,
        "batch_size": 64,
        "lr": 2e-3,
    },
    "standard": {
        "seeds": [0, 1, 2, 3, 4],
        "nets": [("mnist1d", [256, 256]), ("digits", [256, 256])],
        "epochs": 40,
        "batch_size": 100,
        "lr": 3e-3,
    },
    "full": {
        "seeds": list(range(10)),
        "nets": [("mnist1d", [512, 512]), ("digits", [512, 512]), ("mnist1d", [1024, 1024])],
        "epochs": 150,
        "batch_size": 100,
        "lr": 1e-3,
    },
}


def trials(preset: str) -> list[Trial]:
    """One trial per (net, arm, seed)."""
    p = PRESETS[preset]
    out = []
    for dataset, widths in p["nets"]:
        for arm in ARMS:
            config = {
                "dataset": dataset,
                "widths": list(widths),
                "arm": arm,
                "epochs": p["epochs"],
                "batch_size": p["batch_size"],
                "lr": p["lr"],
                "data_seed": 0,
            }
            out += [Trial("slack", config, seed, preset) for seed in p["seeds"]]
    return out


def group_key(trial: Trial) -> str:
    """Both arms and all seeds of one net train together (the rates are per member)."""
    return trial.preset + canonical_json({k: v for k, v in trial.config.items() if k != "arm"})


# -- measurements -----------------------------------------------------------------------------------


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def hidden_activations(module: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of every activation layer of a Sequential MLP in eval mode: ``(n, H_l)``."""
    acts, h = [], x
    with torch.no_grad():
        for layer in module.children():
            h = layer(h)
            if isinstance(layer, (nn.ReLU, nn.Tanh, nn.GELU, nn.ELU, nn.SELU, nn.Sigmoid)):
                acts.append(h)
    return acts


def dead_fraction(acts: list[torch.Tensor]) -> float:
    """Fraction of hidden units (all layers) whose activation is 0 on every input."""
    dead = sum(int((a <= 0).all(0).sum()) for a in acts)
    return dead / sum(a.shape[1] for a in acts)


def coadaptation(acts: list[torch.Tensor]) -> float:
    """Mean over layers of the mean |Pearson correlation| over pairs of non-constant units.

    For a layer's activations ``A`` (n, H): standardize each live column, ``R = Z^T Z / n``
    (H', H'), and average ``|R_ij|`` over ``i < j``.
    """
    vals = []
    for a in acts:
        a = a.double()
        a = a[:, a.std(0) > 1e-8]  # (n, H') live units
        if a.shape[1] < 2:
            continue
        z = (a - a.mean(0)) / a.std(0, unbiased=False)
        r = (z.T @ z) / a.shape[0]  # (H', H')
        iu = torch.triu_indices(r.shape[0], r.shape[1], offset=1)
        vals.append(float(r[iu[0], iu[1]].abs().mean()))
    return float(np.mean(vals)) if vals else math.nan


@torch.no_grad()
def prune_(module: nn.Module, fraction: float) -> None:
    """Zero the ``fraction`` smallest-|w| weights of every linear layer (in place)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    for lin in _linears(module):
        w = lin.weight
        k = round(fraction * w.numel())
        if k == 0:
            continue
        cut = w.abs().flatten().kthvalue(k).values
        w.masked_fill_(w.abs() <= cut, 0.0)


def measure(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[dict, dict]:
    """All measurements of one trained net: ``(metrics, curves)``."""
    ws = [lin.weight.detach().flatten() for lin in _linears(module)]
    w_all = torch.cat(ws).abs()
    small_rel = sum(int((w.abs() < 0.1 * w.pow(2).mean().sqrt()).sum()) for w in ws)
    metrics = {
        "frac_small_abs": float((w_all < 0.01).float().mean()),
        "frac_small_rel": small_rel / w_all.numel(),
        "w_abs_median": float(w_all.median()),
        "w_rms": float(w_all.pow(2).mean().sqrt()),
    }
    acts = hidden_activations(module, x)
    metrics["dead_frac"] = dead_fraction(acts)
    metrics["coadapt"] = coadaptation(acts)
    hist, _ = np.histogram(np.log10(w_all.clamp_min(1e-12).numpy()), bins=HIST_EDGES)
    curves = {"hist_log10_abs_w": (hist / hist.sum()).tolist()}
    state = {k: v.clone() for k, v in module.state_dict().items()}
    for f in PRUNE_FRACTIONS:
        prune_(module, f)
        with torch.no_grad():
            acc = float((module(x).argmax(-1) == y).float().mean())
        metrics[f"prune_acc_{round(f * 100)}"] = acc
        module.load_state_dict(state)
    return metrics, curves


# -- the training -------------------------------------------------------------------------------------


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """Train both arms and all seeds of one net in one batched fit, then measure each net."""
    from droplab import data as dl_data
    from droplab.models import ModelSpec
    from droplab.train import MemberConfig, TrainConfig, fit

    c = group[0].config
    ds = dl_data.load(c["dataset"], seed=c["data_seed"])
    members = []
    for t in group:
        inp, hid = ARMS[t.config["arm"]]
        members.append(MemberConfig(seed=t.seed, input_rate=inp, hidden_rate=hid))
    cfg = TrainConfig(epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"])
    result = fit(ModelSpec("mlp", widths=tuple(c["widths"])), ds, members, cfg, device=device)
    x, y = ds.x_test.cpu(), ds.y_test.cpu()
    out = []
    for k in range(len(group)):
        metrics, curves = measure(result.module(k).cpu(), x, y)
        metrics.update(result.members[k].metrics)
        out.append({"metrics": metrics, "curves": curves})
    return out


# -- the analysis -----------------------------------------------------------------------------------

#: metric -> (label, scale)
MEASURES = {
    "test_acc": ("test accuracy (%)", 100.0),
    "frac_small_abs": ("weights |w| < 0.01 (%)", 100.0),
    "frac_small_rel": ("weights |w| < 0.1 rms (%)", 100.0),
    "w_rms": ("rms |w|", 1.0),
    "dead_frac": ("dead ReLUs (%)", 100.0),
    "coadapt": ("mean |corr| of hidden units", 1.0),
    "prune_auc": ("mean accuracy over the pruning curve (%)", 100.0),
}


def _paired_frame(g: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    wide = g.pivot_table(index="seed", columns="arm", values=col).dropna()
    return wide["dropout"].to_numpy(), wide["none"].to_numpy()


def effect_table(d: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, measure): mean per arm with CI, and dropout - none paired by seed."""
    rows = []
    prune_cols = sorted(
        (c for c in d.columns if c.startswith("prune_acc_")), key=lambda c: int(c.rsplit("_", 1)[1])
    )
    measures = dict(MEASURES)
    for c in prune_cols:
        measures.setdefault(c, (f"accuracy after pruning {c.rsplit('_', 1)[1]}% (%)", 100.0))
    for dataset, g in d.groupby("dataset", sort=False):
        for col, (label, scale) in measures.items():
            if col not in g:
                continue
            row: dict[str, Any] = {"dataset": dataset, "measure": label, "key": col}
            for arm in ARMS:
                m, lo, hi = mean_ci(g.loc[g["arm"] == arm, col].to_numpy() * scale)
                row.update({arm: m, f"{arm}_lo": lo, f"{arm}_hi": hi})
            a, b = _paired_frame(g, col)
            m, lo, hi = paired_ci(a * scale, b * scale)
            row.update({"dropout_minus_none": m, "diff_lo": lo, "diff_hi": hi})
            rows.append(row)
    return pd.DataFrame(rows)


def _figures(d: pd.DataFrame, table: pd.DataFrame) -> dict[str, Any]:
    from droplab.report import style

    datasets = list(dict.fromkeys(d["dataset"]))
    figs = {}
    fig, axes = style.figure(ncols=len(datasets), width=4.8 * len(datasets), height=3.3)
    for ax, ds in zip(np.atleast_1d(axes), datasets):
        t = table[(table["dataset"] == ds) & table["key"].str.startswith("prune_acc_")].copy()
        t["f"] = t["key"].str.rsplit("_", n=1).str[1].astype(int)
        t = t.sort_values("f")
        for i, arm in enumerate(ARMS):
            style.band(
                ax,
                t["f"],
                t[arm],
                t[f"{arm}_lo"],
                t[f"{arm}_hi"],
                color=style.color(i),
                label=f"{arm}",
            )
        ax.set(xlabel="weights pruned per layer (%)", ylabel="test accuracy (%)", title=ds)
        ax.legend()
    figs["pruning_curve"] = fig

    fig, axes = style.figure(ncols=len(datasets), width=4.8 * len(datasets), height=3.3)
    centers = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    for ax, ds in zip(np.atleast_1d(axes), datasets):
        for i, arm in enumerate(ARMS):
            rows = d[(d["dataset"] == ds) & (d["arm"] == arm)]
            hists = np.array(
                [c["hist_log10_abs_w"] for c in rows["curves"] if "hist_log10_abs_w" in c]
            )
            if len(hists) == 0:
                continue
            ax.plot(centers, hists.mean(0), color=style.color(i), label=arm)
        ax.set(xlabel="log10 |w|", ylabel="fraction of weights", title=ds)
        ax.legend()
    figs["weight_magnitudes"] = fig
    return figs


def analyze(frame: pd.DataFrame) -> Findings:
    """Near-zero weights, dead units, pruning robustness and co-adaptation, by arm."""
    d = frame[frame["status"] == "finished"].reset_index(drop=True)
    failed = [
        f"{r.dataset} {r.arm} seed {r.seed}: {r.status} {r.error}"
        for r in frame[frame["status"] != "finished"].itertuples()
    ]
    if d.empty:
        return Findings("slack", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed)
    prune_cols = [c for c in d.columns if c.startswith("prune_acc_")]
    d = d.assign(prune_auc=d[prune_cols].mean(axis=1))  # mean accuracy over the fractions
    table = effect_table(d)

    def fmt(r: pd.DataFrame, key: str, digits: int = 1, unit: str = "%") -> str:
        x = r.loc[key]
        diff = fmt_ci(x["dropout_minus_none"], x["diff_lo"], x["diff_hi"], digits=digits)
        pts = " pts" if unit == "%" else ""
        return (
            f"{x['none']:.{digits}f}{unit} without vs {x['dropout']:.{digits}f}{unit} with "
            f"dropout (diff {diff}{pts})"
        )

    parts, n = [], 0
    count = {"abs": 0, "rel": 0, "dead": 0, "coadapt": 0}  # significant, in the note's direction
    key_number = ""
    for ds, t in table.groupby("dataset", sort=False):
        r = t.set_index("key")
        n += 1
        # dropout - none CI entirely below 0: significantly more slack without dropout
        for name, key in (
            ("abs", "frac_small_abs"),
            ("rel", "frac_small_rel"),
            ("dead", "dead_frac"),
            ("coadapt", "coadapt"),
        ):
            count[name] += bool(r.loc[key, "diff_hi"] < 0)
        parts.append(
            f"{ds}: weights |w| < 0.01 {fmt(r, 'frac_small_abs')}, |w| < 0.1 rms "
            f"{fmt(r, 'frac_small_rel')}, dead ReLUs {fmt(r, 'dead_frac')}, mean accuracy over "
            f"the pruning curve {fmt(r, 'prune_auc')}, co-adaptation |corr| "
            f"{fmt(r, 'coadapt', 3, '')}"
        )
        if not key_number:
            x = r.loc["prune_auc"]
            key_number = (
                f"{ds}: mean accuracy over the pruning curve, dropout - none: "
                f"{fmt_ci(x['dropout_minus_none'], x['diff_lo'], x['diff_hi'], digits=1)} pts"
            )
    rel, other = count["rel"], count["abs"] + count["dead"]
    word = "holds" if rel == n else "holds only partly" if rel or other else "does not hold"
    lead = (
        f"The note's picture {word}: without dropout, significantly more weights are "
        f"near zero relative to their layer's scale (|w| < 0.1 rms) in {rel} of {n} datasets, "
        f"in absolute terms (|w| < 0.01) in {count['abs']} of {n}, and more ReLUs are dead in "
        f"{count['dead']} of {n}; dropout lowers the co-adaptation of hidden units in "
        f"{count['coadapt']} of {n}"
    )
    verdict = f"{lead}. " + "; ".join(parts) + "."
    x = d.iloc[0]
    method = (
        f"Data: {', '.join(dict.fromkeys(d['dataset']))} (droplab.data, split data_seed 0). "
        f"Model: MLPs {', '.join(sorted({str(tuple(w)) for w in d['widths']}))} (ReLU); arm "
        f"'dropout' = input {ARMS['dropout'][0]:g}, hidden {ARMS['dropout'][1]:g} (inverted), "
        f"arm 'none' = no dropout, same member seed (initialization and batch order). "
        f"Training: Adam lr {x.lr:g}, batch {x.batch_size}, {x.epochs} epochs, weights of the "
        f"lowest-validation-loss epoch. Measurements on the test inputs in eval mode; pruning "
        f"is layer-wise by |w|, without retraining. Seeds: {d['seed'].nunique()}. CIs: 95% "
        f"Student-t over seeds; dropout - none paired by seed."
    )
    return Findings(
        study="slack",
        question=QUESTION,
        verdict=verdict,
        key_number=key_number,
        table=table,
        figures=_figures(d, table),
        method=method,
        failed=failed,
        references=[
            "Srivastava et al. (2014). Dropout: a simple way to prevent neural networks from overfitting. JMLR 15 (sec. 7.1: sparser, less co-adapted features).",
            "Hinton et al. (2012). Improving neural networks by preventing co-adaptation of feature detectors. arXiv:1207.0580.",
            "Han, Pool, Tran & Dally (2015). Learning both weights and connections for efficient neural networks. NeurIPS.",
            "Gomez et al. (2019). Learning sparse networks using targeted dropout. arXiv:1905.13678.",
            "Lu et al. (2019). Dying ReLU and initialization: theory and numerical examples. arXiv:1903.06733.",
        ],
    )


STUDY = Study(
    name="slack",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=group_key,
    description=(
        "With vs without dropout: weight magnitudes, dead ReLUs, magnitude-pruning curve and "
        "co-adaptation of hidden units, paired by seed."
    ),
)
