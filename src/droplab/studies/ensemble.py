"""ensemble — is a dropout net an ensemble?

Question (the research note):
    "with drop-out, we have something of a built-in ensemble method when many sub-networks
    have to train in parallel. Is this intuition even true? Is dropout in any way similar
    to ensemble?"

Three ways to predict with a dropout net, and two real ensembles:

- weight scaling (WS): the deterministic net (inverted dropout: the identity at test);
- MC averaging over T = 1..100 masks: the arithmetic mean of the T softmax outputs, and
  their normalized geometric mean ``softmax(mean_t log softmax(z_t))``. For a single
  softmax layer with input dropout the geometric mean over *all* masks equals weight
  scaling exactly (Baldi & Sadowski 2013: the logits are linear in the mask, so the mean
  of the log-probabilities is the log-softmax of the mean logits, up to normalization);
  for a deep net it is an approximation, and we measure how good;
- an explicit ensemble of M independently trained nets without dropout (the arithmetic
  mean of their softmax outputs), and the same ensemble of M dropout nets.

Equal training compute: an ensemble of M nets costs M trainings. The single dropout net
gets the same budget in a "long" run of M_max x E epochs; its weights are selected on
validation loss among the first M x E epochs for each budget M (read from its curves).

Grid. One net per preset (an MLP on MNIST-1D in ``standard``); per seed s, M_max dropout
members and M_max plain members with member seeds ``derive(s, "member", m)`` (so plain
member m and dropout member m share initialization and batch order), the long dropout
run, and the one-layer control (softmax regression with input dropout) for the
geometric-mean check. All seeds train in one batched ``fit``.

Analysis. Every metric is computed per seed on the test set inside ``run_group`` and
stored; the analysis reports means with 95% Student-t CIs over seeds and paired
differences (same seed) between methods.

Verdict. MC vs WS, geometric mean vs WS (deep vs one layer), the explicit ensemble vs the
single dropout net at equal compute, the ensemble of dropout nets, and the diversity.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from droplab import rng
from droplab.findings import Findings
from droplab.studies.base import Study, Trial
from droplab.studies.stats import fmt_ci, mean_ci, paired_ci

__all__ = [
    "PRESETS",
    "QUESTION",
    "STUDY",
    "analyze",
    "arithmetic_mean",
    "disagreement",
    "geometric_mean",
    "mc_logits",
    "mean_kl",
    "run_group",
    "scores",
    "trials",
]

QUESTION = (
    "With dropout we have something of a built-in ensemble method when many sub-networks "
    "have to train in parallel. Is this intuition even true? Is dropout in any way similar "
    "to ensemble?"
)

# -- the grid -----------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": [0, 1, 2],
        "dataset": "digits",
        "widths": [64],
        "members": 2,
        "samples": [1, 2, 5, 10, 20],
        "epochs": 5,
        "batch_size": 64,
        "lr": 2e-3,
    },
    "standard": {
        "seeds": [0, 1, 2, 3, 4],
        "dataset": "mnist1d",
        "widths": [128, 128],
        "members": 5,
        "samples": [1, 2, 5, 10, 20, 50, 100],
        "epochs": 30,
        "batch_size": 100,
        "lr": 3e-3,
    },
    "full": {
        "seeds": list(range(10)),
        "dataset": "mnist1d",
        "widths": [256, 256],
        "members": 8,
        "samples": [1, 2, 5, 10, 20, 50, 100, 200],
        "epochs": 100,
        "batch_size": 100,
        "lr": 1e-3,
    },
}
HIDDEN_RATE, INPUT_RATE = 0.5, 0.2  # the dropout recipe of the note
LINEAR_INPUT_RATE = 0.5  # input dropout of the one-layer control


def trials(preset: str) -> list[Trial]:
    """One trial per seed; everything about one seed (all arms) is stored in its row."""
    p = PRESETS[preset]
    config = {
        "dataset": p["dataset"],
        "widths": list(p["widths"]),
        "members": p["members"],
        "samples": list(p["samples"]),
        "epochs": p["epochs"],
        "batch_size": p["batch_size"],
        "lr": p["lr"],
        "hidden_rate": HIDDEN_RATE,
        "input_rate": INPUT_RATE,
        "linear_input_rate": LINEAR_INPUT_RATE,
        "data_seed": 0,
    }
    return [Trial("ensemble", config, seed, preset) for seed in p["seeds"]]


# -- predictions and their scores (shared with the uncertainty study) ---------------------------


def mc_logits(module: torch.nn.Module, x: torch.Tensor, samples: int, seed: int) -> torch.Tensor:
    """Logits of ``samples`` dropout masks, ``(T, n, C)`` for x ``(n, D)``.

    The masks come from torch's RNG seeded with ``rng.derive(seed, "mc")`` inside
    ``fork_rng`` (the global state is restored afterwards), so they are reproducible.
    """
    from droplab import mc_predict

    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(rng.derive(seed, "mc"))
        return mc_predict(module, x, samples=samples)  # (T, n, C)


def arithmetic_mean(logits: torch.Tensor) -> torch.Tensor:
    """Mean of the softmax outputs over dim 0: ``(T, n, C) -> (n, C)``."""
    return logits.softmax(-1).mean(0)


def geometric_mean(logits: torch.Tensor) -> torch.Tensor:
    """Normalized geometric mean ``softmax(mean_t log softmax(z_t))``: ``(T, n, C) -> (n, C)``."""
    return logits.log_softmax(-1).mean(0).softmax(-1)


def scores(probs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``acc, nll, ece`` (15 bins) of class probabilities ``(n, C)`` against labels ``(n,)``."""
    from droplab.train import metrics

    return {
        "acc": float(metrics.accuracy(probs, y)),
        "nll": float(metrics.nll(probs, y)),
        "ece": float(metrics.ece(probs, y, bins=15)),
    }


def mean_kl(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> float:
    """Mean over rows of ``KL(p || q) = sum_c p log(p / q)``; p, q ``(n, C)``."""
    p, q = p.clamp_min(eps), q.clamp_min(eps)
    return float((p * (p.log() - q.log())).sum(-1).mean())


def disagreement(probs: torch.Tensor) -> float:
    """Mean over pairs (i < j) of the fraction of rows whose argmax differs; probs
    ``(M, n, C)`` (M predictors). 0 when M < 2."""
    pred = probs.argmax(-1)  # (M, n)
    pairs = list(itertools.combinations(range(pred.shape[0]), 2))
    if not pairs:
        return 0.0
    return float(np.mean([(pred[i] != pred[j]).float().mean().item() for i, j in pairs]))


# -- the training --------------------------------------------------------------------------------


def linear_model(input_shape, n_outputs, *, input_rate, hidden_rate):
    """The one-layer control: input dropout then one linear layer (softmax regression)."""
    from torch import nn

    from droplab import Dropout

    d = int(np.prod(input_shape))
    return nn.Sequential(nn.Flatten(), Dropout(input_rate), nn.Linear(d, n_outputs))


def _budget_metrics(curves: dict[str, list[float]], last_epoch: int) -> dict[str, float]:
    """Test metrics at the lowest-val-loss epoch among epochs <= ``last_epoch``."""
    epochs = np.asarray(curves["epoch"])
    val = np.where(epochs <= last_epoch, np.asarray(curves["val_loss"]), np.inf)
    i = int(np.argmin(val))
    return {m: curves[f"test_{m}"][i] for m in ("acc", "nll", "ece")}


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """Train all arms of all seeds and compute every prediction metric per seed."""
    from droplab import data as dl_data
    from droplab.models import ModelSpec
    from droplab.train import MemberConfig, TrainConfig, fit

    c = group[0].config
    ds = dl_data.load(c["dataset"], seed=c["data_seed"])
    M, Ts, E = c["members"], c["samples"], c["epochs"]
    spec = ModelSpec("mlp", widths=tuple(c["widths"]))
    cfg = TrainConfig(epochs=E, batch_size=c["batch_size"], lr=c["lr"])
    drop = {"input_rate": c["input_rate"], "hidden_rate": c["hidden_rate"]}

    def member_seed(t: Trial, m: int) -> int:
        return rng.derive(t.seed, "member", m)

    # members: per trial, M dropout then M plain (member m of both arms shares its seed)
    members = []
    for t in group:
        members += [MemberConfig(seed=member_seed(t, m), **drop) for m in range(M)]
        members += [MemberConfig(seed=member_seed(t, m)) for m in range(M)]
    short = fit(spec, ds, members, cfg, device=device)
    long_cfg = TrainConfig(epochs=M * E, batch_size=c["batch_size"], lr=c["lr"])
    long = fit(
        spec,
        ds,
        [MemberConfig(seed=member_seed(t, 0), **drop) for t in group],
        long_cfg,
        device=device,
    )
    linear = fit(
        linear_model,
        ds,
        [MemberConfig(seed=member_seed(t, 0), input_rate=c["linear_input_rate"]) for t in group],
        cfg,
        device=device,
    )

    x, y = ds.x_test.to(device), ds.y_test.to(device)
    out = []
    for i, t in enumerate(group):
        res: dict[str, float] = {}
        base = 2 * M * i
        with torch.no_grad():
            drop_probs = torch.stack([short.module(base + m)(x).softmax(-1) for m in range(M)])
            plain_probs = torch.stack(
                [short.module(base + M + m)(x).softmax(-1) for m in range(M)]
            )  # (M, n, C)
        ws = drop_probs[0]
        res.update({f"ws_{k}": v for k, v in scores(ws, y).items()})
        res.update({f"plain_{k}": v for k, v in scores(plain_probs[0], y).items()})
        # MC dropout over nested prefixes of the same T_max masks
        z = mc_logits(short.module(base), x, max(Ts), t.seed)  # (T, n, C)
        for T in Ts:
            arith, geo = arithmetic_mean(z[:T]), geometric_mean(z[:T])
            res.update({f"mc_arith_{k}_T{T}": v for k, v in scores(arith, y).items()})
            res.update({f"mc_geo_{k}_T{T}": v for k, v in scores(geo, y).items()})
            res[f"kl_geo_ws_T{T}"] = mean_kl(geo, ws)
            res[f"kl_arith_ws_T{T}"] = mean_kl(arith, ws)
            res[f"agree_geo_ws_T{T}"] = float((geo.argmax(-1) == ws.argmax(-1)).float().mean())
            res[f"agree_arith_ws_T{T}"] = float((arith.argmax(-1) == ws.argmax(-1)).float().mean())
        # explicit ensembles of the first m members, and the long dropout net at budget m
        for m in range(1, M + 1):
            res.update(
                {f"ens_plain_{k}_M{m}": v for k, v in scores(plain_probs[:m].mean(0), y).items()}
            )
            res.update(
                {f"ens_drop_{k}_M{m}": v for k, v in scores(drop_probs[:m].mean(0), y).items()}
            )
            res.update(
                {
                    f"long_ws_{k}_M{m}": v
                    for k, v in _budget_metrics(long.members[i].curves, m * E).items()
                }
            )
        z_long = mc_logits(long.module(i), x, max(Ts), t.seed)
        res.update({f"long_mc_{k}": v for k, v in scores(arithmetic_mean(z_long), y).items()})
        # diversity: argmax disagreement between members, and between single masks
        res["div_plain"] = disagreement(plain_probs)
        res["div_drop"] = disagreement(drop_probs)
        res["div_masks"] = disagreement(z[: min(20, max(Ts))].softmax(-1))
        # the one-layer control: geometric mean -> weight scaling as T grows (exact in the limit)
        lin = linear.module(i)
        with torch.no_grad():
            lin_ws = lin(x).softmax(-1)
        z_lin = mc_logits(lin, x, max(Ts), t.seed)
        for T in Ts:
            res[f"lin_kl_geo_ws_T{T}"] = mean_kl(geometric_mean(z_lin[:T]), lin_ws)
            res[f"lin_agree_geo_ws_T{T}"] = float(
                (geometric_mean(z_lin[:T]).argmax(-1) == lin_ws.argmax(-1)).float().mean()
            )
        res["best_epoch_drop"] = short.members[base].metrics["best_epoch"]
        res["best_epoch_plain"] = short.members[base + M].metrics["best_epoch"]
        res["best_epoch_long"] = long.members[i].metrics["best_epoch"]
        out.append({"metrics": res})
    return out


# -- the analysis --------------------------------------------------------------------------------


def _ci_row(label: str, size: int, compute: float, d: pd.DataFrame, prefix: str, suffix: str):
    row: dict[str, Any] = {"method": label, "T_or_M": size, "train_compute": compute}
    for k, scale in (("acc", 100.0), ("nll", 1.0), ("ece", 100.0)):
        col = f"{prefix}{k}{suffix}"
        if col not in d:
            return None
        name = {"acc": "test_error_pct", "nll": "test_nll", "ece": "test_ece_pct"}[k]
        vals = (1.0 - d[col]) * 100 if k == "acc" else d[col] * scale
        m, lo, hi = mean_ci(vals.to_numpy())
        row.update({name: m, f"{name}_lo": lo, f"{name}_hi": hi})
    return row


def _sizes(d: pd.DataFrame, stem: str, letter: str) -> list[int]:
    out = set()
    for col in d.columns:
        if col.startswith(stem) and col.rsplit("_", 1)[-1].startswith(letter):
            tail = col.rsplit("_", 1)[-1][1:]
            if tail.isdigit():
                out.add(int(tail))
    return sorted(out)


def method_table(d: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, T or M): test error (%), NLL, ECE (%) with 95% CIs over seeds."""
    Ts, Ms = _sizes(d, "mc_arith_acc", "T"), _sizes(d, "ens_plain_acc", "M")
    specs = [("weight scaling", 1, 1, "ws_", ""), ("single net, no dropout", 1, 1, "plain_", "")]
    specs += [(f"MC arithmetic, T={T}", T, 1, "mc_arith_", f"_T{T}") for T in Ts]
    specs += [(f"MC geometric, T={T}", T, 1, "mc_geo_", f"_T{T}") for T in Ts]
    specs += [(f"ensemble no-dropout, M={m}", m, m, "ens_plain_", f"_M{m}") for m in Ms]
    specs += [(f"ensemble dropout, M={m}", m, m, "ens_drop_", f"_M{m}") for m in Ms]
    specs += [(f"dropout net, {m}x epochs (WS)", m, m, "long_ws_", f"_M{m}") for m in Ms]
    if Ms and Ts:
        specs += [
            (f"dropout net, {max(Ms)}x epochs (MC T={max(Ts)})", max(Ts), max(Ms), "long_mc_", "")
        ]
    rows = [_ci_row(label, size, compute, d, pre, suf) for label, size, compute, pre, suf in specs]
    return pd.DataFrame([r for r in rows if r is not None])


def _paired(d: pd.DataFrame, a: str, b: str, *, error: bool = False) -> tuple[float, float, float]:
    """Paired (by seed) mean difference a - b; for accuracies as error points (a - b)."""
    if error:
        return paired_ci((1 - d[a]).to_numpy() * 100, (1 - d[b]).to_numpy() * 100)
    return paired_ci(d[a].to_numpy(), d[b].to_numpy())


def comparison_table(d: pd.DataFrame) -> pd.DataFrame:
    """The paired comparisons the verdict quotes: difference (first - second) with CIs."""
    Ts, Ms = _sizes(d, "mc_arith_acc", "T"), _sizes(d, "ens_plain_acc", "M")
    T, M = max(Ts), max(Ms)
    pairs = [
        (f"MC arithmetic T={T} - weight scaling", f"mc_arith_{{}}_T{T}", "ws_{}"),
        (f"MC geometric T={T} - weight scaling", f"mc_geo_{{}}_T{T}", "ws_{}"),
        ("weight scaling - no-dropout single net", "ws_{}", "plain_{}"),
        (
            f"ensemble no-dropout M={M} - dropout net {M}x epochs (WS)",
            f"ens_plain_{{}}_M{M}",
            f"long_ws_{{}}_M{M}",
        ),
        (
            f"ensemble no-dropout M={M} - dropout net {M}x epochs (MC)",
            f"ens_plain_{{}}_M{M}",
            "long_mc_{}",
        ),
        (
            f"ensemble dropout M={M} - ensemble no-dropout M={M}",
            f"ens_drop_{{}}_M{M}",
            f"ens_plain_{{}}_M{M}",
        ),
    ]
    rows = []
    for label, a, b in pairs:
        row: dict[str, Any] = {"comparison": label}
        for k, name, error, scale in (
            ("acc", "d_error_pts", True, 1.0),
            ("nll", "d_nll", False, 1.0),
            ("ece", "d_ece_pts", False, 100.0),
        ):
            m, lo, hi = _paired(d, a.format(k), b.format(k), error=error)
            row.update({name: m * scale, f"{name}_lo": lo * scale, f"{name}_hi": hi * scale})
        rows.append(row)
    return pd.DataFrame(rows)


def agreement_table(d: pd.DataFrame) -> pd.DataFrame:
    """KL(mean over T masks || weight scaling) and argmax agreement vs T, deep and one layer."""
    rows = []
    for T in _sizes(d, "mc_arith_acc", "T"):
        row: dict[str, Any] = {"T": T}
        for col, name in (
            (f"kl_geo_ws_T{T}", "kl_geo_ws"),
            (f"kl_arith_ws_T{T}", "kl_arith_ws"),
            (f"agree_geo_ws_T{T}", "agree_geo_ws"),
            (f"lin_kl_geo_ws_T{T}", "linear_kl_geo_ws"),
            (f"lin_agree_geo_ws_T{T}", "linear_agree_geo_ws"),
        ):
            m, lo, hi = mean_ci(d[col].to_numpy())
            row.update({name: m, f"{name}_lo": lo, f"{name}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def _figures(table: pd.DataFrame, agree: pd.DataFrame) -> dict[str, Any]:
    from droplab.report import style

    figs = {}
    fig, axes = style.figure(ncols=3, width=13, height=3.4)
    for ax, (col, label) in zip(
        axes,
        (
            ("test_error_pct", "test error (%)"),
            ("test_nll", "test NLL (nats)"),
            ("test_ece_pct", "ECE (%)"),
        ),
    ):
        for i, stem in enumerate(("MC arithmetic", "MC geometric")):
            t = table[table["method"].str.startswith(stem)].sort_values("T_or_M")
            style.band(
                ax,
                t["T_or_M"],
                t[col],
                t[f"{col}_lo"],
                t[f"{col}_hi"],
                color=style.color(i),
                label=stem,
            )
        ws = table[table["method"] == "weight scaling"].iloc[0]
        ax.axhline(ws[col], color=style.color(6), linestyle="--", label="weight scaling")
        ax.axhspan(ws[f"{col}_lo"], ws[f"{col}_hi"], color=style.color(6), alpha=0.1)
        ax.set(xscale="log", xlabel="MC samples T (masks)", ylabel=label)
    axes[0].legend()
    figs["mc_vs_T"] = fig

    fig, axes = style.figure(ncols=3, width=13, height=3.4)
    for ax, (col, label) in zip(
        axes,
        (
            ("test_error_pct", "test error (%)"),
            ("test_nll", "test NLL (nats)"),
            ("test_ece_pct", "ECE (%)"),
        ),
    ):
        for i, stem in enumerate(("ensemble no-dropout", "ensemble dropout", "dropout net, ")):
            t = table[table["method"].str.startswith(stem) & ~table["method"].str.contains("MC")]
            t = t.sort_values("train_compute")
            name = "dropout net, M x epochs (WS)" if stem == "dropout net, " else stem
            style.band(
                ax,
                t["train_compute"],
                t[col],
                t[f"{col}_lo"],
                t[f"{col}_hi"],
                color=style.color(i + 2),
                label=name,
            )
        ax.set(xlabel="training compute (single-net trainings M)", ylabel=label)
    axes[0].legend()
    figs["ensemble_vs_compute"] = fig

    fig, ax = style.figure(width=5.2, height=3.4)
    style.band(
        ax,
        agree["T"],
        agree["kl_geo_ws"],
        agree["kl_geo_ws_lo"],
        agree["kl_geo_ws_hi"],
        color=style.color(0),
        label="MLP (deep)",
    )
    style.band(
        ax,
        agree["T"],
        agree["linear_kl_geo_ws"],
        agree["linear_kl_geo_ws_lo"],
        agree["linear_kl_geo_ws_hi"],
        color=style.color(1),
        label="one softmax layer",
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="MC samples T (masks)",
        ylabel="KL(geometric mean || weight scaling) (nats)",
    )
    ax.legend()
    figs["geometric_vs_weight_scaling"] = fig
    return figs


def _sig(lo: float, hi: float, more: str, less: str, same: str = "indistinguishable") -> str:
    if math.isnan(lo) or math.isnan(hi):
        return same
    return more if lo > 0 else less if hi < 0 else same


def analyze(frame: pd.DataFrame) -> Findings:
    """MC vs weight scaling, geometric-mean agreement, ensembles at equal compute, diversity."""
    d = frame[frame["status"] == "finished"].reset_index(drop=True)
    failed = [
        f"seed {r.seed}: {r.status} {r.error}"
        for r in frame[frame["status"] != "finished"].itertuples()
    ]
    if d.empty:
        return Findings(
            "ensemble", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed
        )
    table, comp, agree = method_table(d), comparison_table(d), agreement_table(d)
    Ts, Ms = _sizes(d, "mc_arith_acc", "T"), _sizes(d, "ens_plain_acc", "M")
    T, M = max(Ts), max(Ms)
    mc, _geo, _ws_plain, ens_long, ens_long_mc, drop_plain = comp.itertuples()

    def err(r) -> str:
        return f"{fmt_ci(r.d_error_pts, r.d_error_pts_lo, r.d_error_pts_hi, digits=1)} error pts"

    def nll(r) -> str:
        return f"{fmt_ci(r.d_nll, r.d_nll_lo, r.d_nll_hi, digits=3)} NLL"

    a = agree[agree["T"] == T].iloc[0]
    t2 = agree[agree["T"] == min(t for t in Ts if t > 1)].iloc[0] if len(Ts) > 1 else a
    fall_deep = t2.kl_geo_ws / max(a.kl_geo_ws, 1e-300)
    fall_lin = t2.linear_kl_geo_ws / max(a.linear_kl_geo_ws, 1e-300)
    div = {k: mean_ci(d[k].to_numpy()) for k in ("div_plain", "div_drop", "div_masks")}
    ens_word = _sig(
        ens_long.d_error_pts_lo,
        ens_long.d_error_pts_hi,
        "worse than",
        "better than",
        "indistinguishable in error from",
    )
    verdict = (
        f"Averaging T={T} masks vs weight scaling: {err(mc)}, {nll(mc)} "
        f"({_sig(mc.d_nll_lo, mc.d_nll_hi, 'worse', 'better')} NLL); weight scaling agrees "
        f"with the geometric mean of the masks on {a.agree_geo_ws * 100:.1f}% of test points "
        f"(KL {a.kl_geo_ws:.4f} nats) vs KL {a.linear_kl_geo_ws:.5f} for a single softmax layer, "
        f"where Baldi & Sadowski's identity makes it exact; from T={t2['T']:g} to T={T} the KL "
        f"falls {fall_lin:.0f}-fold for the single layer but {fall_deep:.1f}-fold for the MLP. "
        f"An explicit ensemble of M={M} "
        f"no-dropout nets is {ens_word} one dropout net trained with the same compute "
        f"({M}x epochs): {err(ens_long)}, {nll(ens_long)} against its weight scaling and "
        f"{err(ens_long_mc)}, {nll(ens_long_mc)} against its MC average (T={T}); ensembling {M} dropout nets vs {M} "
        f"no-dropout nets: {err(drop_plain)}. Diversity (argmax disagreement): two masks of "
        f"one net {div['div_masks'][0] * 100:.1f}%, two no-dropout nets "
        f"{div['div_plain'][0] * 100:.1f}%, two dropout nets {div['div_drop'][0] * 100:.1f}%."
    )
    key_number = f"ensemble M={M} vs dropout net, equal compute: {err(ens_long)}"
    div_table = pd.DataFrame(
        [
            {"pair": k, "disagreement_pct": v[0] * 100, "lo": v[1] * 100, "hi": v[2] * 100}
            for k, v in div.items()
        ]
    )
    r = d.iloc[0]
    seeds = sorted(d["seed"])
    method = (
        f"Data: {r.dataset} (droplab.data, split data_seed 0). Model: MLP {tuple(r.widths)} "
        f"(ReLU); dropout nets use input rate {r.input_rate:g}, hidden rate {r.hidden_rate:g} "
        f"(inverted). Training: Adam lr {r.lr:g}, batch {r.batch_size}, {r.epochs} epochs "
        f"(the long run {M * r.epochs}), weights of the lowest-validation-loss epoch. Per seed "
        f"{M} dropout and {M} no-dropout members (member m of both arms shares its init and "
        f"batch order), a long dropout run, and a one-layer control (softmax regression with "
        f"input dropout {r.linear_input_rate:g}). MC: T up to {T} masks on the test set, "
        f"nested prefixes of one mask stream. Seeds: {len(seeds)}. CIs: 95% Student-t over "
        f"seeds; comparisons paired by seed. ECE: 15 equal-width bins."
    )
    return Findings(
        study="ensemble",
        question=QUESTION,
        verdict=verdict,
        key_number=key_number,
        table=table,
        extra_tables={
            "paired comparisons": comp,
            "geometric mean vs weight scaling": agree,
            "diversity": div_table,
        },
        figures=_figures(table, agree),
        method=method,
        failed=failed,
        references=[
            "Baldi & Sadowski (2013). Understanding dropout. NeurIPS.",
            "Srivastava et al. (2014). Dropout: a simple way to prevent neural networks from overfitting. JMLR 15.",
            "Gal & Ghahramani (2016). Dropout as a Bayesian approximation. ICML.",
            "Lakshminarayanan, Pritzel & Blundell (2017). Simple and scalable predictive uncertainty estimation using deep ensembles. NeurIPS.",
            "Hara, Saitoh & Shouno (2016). Analysis of dropout learning regarded as ensemble learning. ICANN.",
        ],
    )


STUDY = Study(
    name="ensemble",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    description=(
        "A dropout MLP: weight scaling vs MC averaging (arithmetic and geometric, T=1..100) "
        "vs explicit ensembles of M nets with and without dropout at equal training compute."
    ),
)
