"""gaussian — Bernoulli vs Gaussian dropout at matched variance.

Question (the research note):
    "Gaussian dropout: instead of completely eliminating a node at each step, just multiply
    each activation by N(1, sigma). A cool thing is that it doesn't change the gradient on
    average, so nothing needs to be scaled. (What does it mean?)"

Matched variance. Inverted Bernoulli dropout multiplies a unit by ``m/keep`` with mean 1
and variance ``(1-keep)/keep = rate/(1-rate)``; Gaussian dropout multiplies it by
``1 + sigma z``, ``z ~ N(0, 1)``, and has the same first two moments when
``sigma^2 = rate/(1-rate)`` (:func:`droplab.theory.gaussian_sigma`; Srivastava et al. 2014,
sec. 10). Both multipliers have mean 1, so neither needs rescaling at test time: that is
what "nothing needs to be scaled" can mean. "Doesn't change the gradient on average" would
mean ``E_noise grad = grad of the noiseless net``; for a nonlinear net this fails for both
noises (the difference is dropout's regularization gradient, e.g. ``2 var Gamma^2 w`` for
linear regression), and we measure by how much.

Grid. Variant (Bernoulli, Gaussian) x hidden rate, on an MLP with dropout after every
hidden layer (input rate 0). All cells and seeds are members of one batched ``fit``, so
for seed s both variants share initialization and batch order (paired by seed).

Training. Adam, cross-entropy, fixed epoch budget, weights of the best-validation-loss
epoch; test metrics of the deterministic net (both multipliers have mean 1).

Gradient measurement. For each (seed, rate), on ONE network (the Bernoulli-trained member
of that seed and rate, best-validation weights) and ONE fixed batch of training examples,
:func:`droplab.theory.gradient_decomposition` estimates for each noise from ``samples``
draws: the clean gradient ``g0`` (noise off), the bias ``b = E g - g0`` and the noise
``trace Cov(g)``. Because ``||b_hat||`` is inflated by Monte Carlo error, we report the
debiased ``sqrt(max(0, ||b_hat||^2 - ||se||^2))`` (``se`` the per-coordinate standard
errors), relative to ``||g0||``, and the cosine between the two noises' bias vectors.

Analysis. Per rate, paired by seed: Gaussian - Bernoulli test error (points) and test
NLL, the ratio of bias norms and of noise traces, with 95% Student-t CIs over seeds.

Verdict. Whether the two noises differ in accuracy / NLL, and whether the Gaussian
gradient is unbiased (the note's claim) or biased like Bernoulli's.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch

from droplab import rng
from droplab.findings import Findings
from droplab.store import canonical_json
from droplab.studies.base import Study, Trial
from droplab.studies.stats import fmt_ci, mean_ci, paired_ci

__all__ = [
    "PRESETS",
    "QUESTION",
    "STUDY",
    "analyze",
    "gradient_metrics",
    "rate_table",
    "run_group",
    "trials",
]

QUESTION = (
    "Gaussian dropout: instead of completely eliminating a node at each step, just multiply "
    "each activation by N(1, sigma). A cool thing is that it doesn't change the gradient on "
    "average, so nothing needs to be scaled. (What does it mean?)"
)
VARIANTS = ("bernoulli", "gaussian")

# -- the grid ------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": [0, 1, 2],
        "dataset": "digits",
        "widths": [64],
        "rates": [0.25, 0.5],
        "epochs": 6,
        "batch_size": 64,
        "lr": 2e-3,
        "grad_batch": 64,
        "grad_samples": 80,
        "eval_every": 1,
    },
    "standard": {
        "seeds": [0, 1, 2, 3, 4],
        "dataset": "mnist1d",
        "widths": [128, 128],
        "rates": [0.1, 0.25, 0.5, 0.75],
        "epochs": 30,
        "batch_size": 100,
        "lr": 3e-3,
        "grad_batch": 100,
        "grad_samples": 400,
        "eval_every": 2,
    },
    "full": {
        "seeds": list(range(10)),
        "dataset": "mnist1d",
        "widths": [256, 256],
        "rates": [0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9],
        "epochs": 100,
        "batch_size": 100,
        "lr": 1e-3,
        "grad_batch": 100,
        "grad_samples": 2000,
        "eval_every": 1,
    },
}


def trials(preset: str) -> list[Trial]:
    """One trial per (variant, rate, seed)."""
    p = PRESETS[preset]
    base = {k: p[k] for k in ("dataset", "epochs", "batch_size", "lr", "grad_batch", "eval_every")}
    base.update(widths=list(p["widths"]), grad_samples=p["grad_samples"], data_seed=0)
    return [
        Trial("gaussian", {**base, "variant": v, "rate": r}, s, preset)
        for v in VARIANTS
        for r in p["rates"]
        for s in p["seeds"]
    ]


def group_key(trial: Trial) -> str:
    """Every variant, rate and seed of one net trains as members of one batched fit."""
    c = {k: v for k, v in trial.config.items() if k not in ("variant", "rate")}
    return trial.preset + canonical_json(c)


# -- the training and the gradient measurement ---------------------------------------------


def gradient_metrics(
    module: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], samples: int, seed: int
) -> tuple[dict[str, float], torch.Tensor]:
    """Bias and noise of the dropout gradient of ``module`` on ``batch`` (cross-entropy).

    Returns ``(metrics, bias)``: ``grad_clean_norm`` ``||g0||``, ``grad_bias_norm`` (the
    debiased ``sqrt(max(0, ||b_hat||^2 - ||se||^2))``), ``grad_bias_raw`` ``||b_hat||``,
    ``grad_bias_floor`` ``||se||`` (the Monte Carlo floor), ``grad_bias_rel`` (debiased
    bias / ``||g0||``), ``grad_noise_trace`` and its standard error; ``bias`` (P,).
    """
    from droplab.theory import gradient_decomposition

    dec = gradient_decomposition(
        module, torch.nn.functional.cross_entropy, batch, samples=samples, seed=seed
    )
    raw, floor = dec.bias_norm, float(dec.bias_stderr.norm())
    debiased = math.sqrt(max(0.0, raw**2 - floor**2))
    metrics = {
        "grad_clean_norm": dec.clean_norm,
        "grad_bias_norm": debiased,
        "grad_bias_raw": raw,
        "grad_bias_floor": floor,
        "grad_bias_rel": debiased / max(dec.clean_norm, 1e-30),
        "grad_noise_trace": dec.noise_trace,
        "grad_noise_trace_se": dec.noise_trace_stderr,
    }
    return metrics, dec.bias.double()


def grad_batch(data: Any, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch of ``size`` training examples, drawn from the seed's "grad-batch" stream."""
    idx = torch.randperm(data.x_train.shape[0], generator=rng.generator(seed, "grad-batch"))
    idx = idx[:size]  # (size,)
    return data.x_train[idx], data.y_train[idx]


def run_group(group: list[Trial], device: str) -> list[dict[str, Any]]:
    """Train all members at once, then measure both noises' gradients on the Bernoulli net."""
    from droplab import data as dl_data
    from droplab.models import ModelSpec, build
    from droplab.train import MemberConfig, TrainConfig, fit

    c = group[0].config
    ds = dl_data.load(c["dataset"], seed=c["data_seed"])
    widths = tuple(c["widths"])
    spec = ModelSpec("mlp", widths=widths)
    cfg = TrainConfig(
        epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"], eval_every=c["eval_every"]
    )
    members = [
        MemberConfig(seed=t.seed, hidden_rate=t.config["rate"], dropout=t.config["variant"])
        for t in group
    ]
    result = fit(spec, ds, members, cfg, device=device)
    out = [{"metrics": dict(m.metrics), "curves": m.curves} for m in result.members]
    index = {(t.config["variant"], t.config["rate"], t.seed): k for k, t in enumerate(group)}
    for (variant, rate, seed), k_ref in index.items():
        if variant != "bernoulli":
            continue
        ref = result.module(k_ref).cpu()
        batch = grad_batch(ds, c["grad_batch"], seed)
        biases = {}
        for v in VARIANTS:
            net = build(
                ModelSpec("mlp", widths=widths, dropout=v),
                tuple(ds.input_shape),
                ds.n_outputs,
                hidden_rate=rate,
            )
            net.load_state_dict(ref.state_dict())
            metrics, biases[v] = gradient_metrics(
                net, batch, c["grad_samples"], rng.derive(seed, "grad-masks", v)
            )
            if (v, rate, seed) in index:
                out[index[(v, rate, seed)]]["metrics"].update(metrics)
        cos = float(
            torch.nn.functional.cosine_similarity(biases["bernoulli"], biases["gaussian"], dim=0)
        )
        for v in VARIANTS:
            if (v, rate, seed) in index:
                out[index[(v, rate, seed)]]["metrics"]["grad_bias_cosine"] = cos
    return out


# -- the analysis --------------------------------------------------------------------------


def _ci(prefix: str, ci: tuple[float, float, float]) -> dict[str, float]:
    return {prefix: ci[0], f"{prefix}_lo": ci[1], f"{prefix}_hi": ci[2]}


def rate_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per rate: per-variant means, and the paired (same seed) Gaussian - Bernoulli
    differences of test error (points) and NLL, the per-seed ratios G/B of the bias norm
    and of the noise trace, the relative bias of each, and the bias cosine, with 95% CIs.
    ``frame``: finished trials with ``variant, rate, seed, test_error, test_nll, grad_*``."""
    rows = []
    for rate, g in frame.groupby("rate"):
        p = {m: g.pivot_table(index="seed", columns="variant", values=m) for m in _METRICS}
        b, gs = "bernoulli", "gaussian"
        row: dict[str, Any] = {"rate": rate, "sigma": math.sqrt(rate / (1 - rate))}
        row["seeds"] = int(p["test_error"].dropna().shape[0])
        for v in VARIANTS:
            row[f"err_{v}"] = float(p["test_error"][v].mean() * 100)
            row.update(_ci(f"bias_rel_{v}", mean_ci(p["grad_bias_rel"][v])))
        row.update(_ci("err_diff", paired_ci(p["test_error"][gs] * 100, p["test_error"][b] * 100)))
        row.update(_ci("nll_diff", paired_ci(p["test_nll"][gs], p["test_nll"][b])))
        row.update(_ci("bias_ratio", mean_ci(p["grad_bias_norm"][gs] / p["grad_bias_norm"][b])))
        row.update(
            _ci("noise_ratio", mean_ci(p["grad_noise_trace"][gs] / p["grad_noise_trace"][b]))
        )
        row.update(_ci("bias_cosine", mean_ci(p["grad_bias_cosine"][b])))
        # is the Gaussian bias above the Monte Carlo floor? (raw^2 - floor^2 > 0)
        excess = p["grad_bias_raw"][gs] ** 2 - p["grad_bias_floor"][gs] ** 2
        row.update(_ci("gauss_bias_excess", mean_ci(excess)))
        rows.append(row)
    return pd.DataFrame(rows)


_METRICS = (
    "test_error",
    "test_nll",
    "grad_bias_rel",
    "grad_bias_norm",
    "grad_bias_raw",
    "grad_bias_floor",
    "grad_noise_trace",
    "grad_bias_cosine",
)


def _fmt_ratio(m: float, lo: float, hi: float) -> str:
    """``"0.99 [0.94, 1.03]"`` (a ratio: no sign)."""
    return f"{m:.2f} [n/a]" if math.isnan(lo) else f"{m:.2f} [{lo:.2f}, {hi:.2f}]"


def _word(lo: float, hi: float, below: str, above: str, same: str) -> str:
    if math.isnan(lo):
        return same
    return below if hi < 0 else (above if lo > 0 else same)


def _figures(frame: pd.DataFrame, table: pd.DataFrame) -> dict[str, Any]:
    from droplab.report import style

    fig, axes = style.figure(ncols=2, width=9.6, height=3.4)
    for i, v in enumerate(VARIANTS):
        g = frame[frame["variant"] == v]
        for ax, metric, scale in ((axes[0], "test_error", 100), (axes[1], "test_nll", 1)):
            cis = [mean_ci(g.loc[g["rate"] == r, metric] * scale) for r in table["rate"]]
            style.band(
                ax,
                table["rate"],
                [c[0] for c in cis],
                [c[1] for c in cis],
                [c[2] for c in cis],
                color=style.color(i),
                label=v,
            )
    axes[0].set(xlabel="rate P(drop) (Gaussian: sigma^2 = rate/(1-rate))", ylabel="test error (%)")
    axes[1].set(xlabel="rate P(drop)", ylabel="test NLL (nats)")
    axes[0].legend()
    acc = fig
    fig, axes = style.figure(ncols=2, width=9.6, height=3.4)
    for i, v in enumerate(VARIANTS):
        style.band(
            axes[0],
            table["rate"],
            table[f"bias_rel_{v}"],
            table[f"bias_rel_{v}_lo"],
            table[f"bias_rel_{v}_hi"],
            color=style.color(i),
            label=v,
        )
        g = frame[frame["variant"] == v]
        cis = [mean_ci(g.loc[g["rate"] == r, "grad_noise_trace"]) for r in table["rate"]]
        style.band(
            axes[1],
            table["rate"],
            [c[0] for c in cis],
            [c[1] for c in cis],
            [c[2] for c in cis],
            color=style.color(i),
            label=v,
        )
    axes[0].set(xlabel="rate P(drop)", ylabel="||E g - g_clean|| / ||g_clean||")
    axes[0].set_title("gradient bias (same net, same batch)")
    axes[1].set(xlabel="rate P(drop)", ylabel="trace Cov(g)", yscale="log")
    axes[1].set_title("gradient noise")
    axes[0].legend()
    return {"accuracy_nll": acc, "gradient": fig}


def analyze(frame: pd.DataFrame) -> Findings:
    """Per rate: accuracy and NLL differences, gradient bias and noise of both noises."""
    done = frame[frame["status"] == "finished"]
    failed = [
        f"{r.variant} rate {r.rate} seed {r.seed}: {r.status} "
        f"{'' if pd.isna(r.get('error')) else r.get('error')}".strip()
        for r in frame[frame["status"] != "finished"].itertuples()
    ]
    if done.empty:
        return Findings(
            "gaussian", QUESTION, "No finished trials yet.", pd.DataFrame(), failed=failed
        )
    table = rate_table(done)
    err, nll, biased, bias_txt = [], [], 0, []
    for r in table.itertuples():
        w = _word(r.err_diff_lo, r.err_diff_hi, "lower", "higher", "indistinguishable")
        err.append(
            f"{r.rate:g}: {w} ({fmt_ci(r.err_diff, r.err_diff_lo, r.err_diff_hi, digits=1)})"
        )
        w = _word(r.nll_diff_lo, r.nll_diff_hi, "lower", "higher", "indistinguishable")
        nll.append(
            f"{r.rate:g}: {w} ({fmt_ci(r.nll_diff, r.nll_diff_lo, r.nll_diff_hi, digits=3)})"
        )
        is_biased = not math.isnan(r.gauss_bias_excess_lo) and r.gauss_bias_excess_lo > 0
        biased += is_biased
        bias_txt.append(
            f"{r.rate:g}: {r.bias_rel_gaussian * 100:.0f}% vs {r.bias_rel_bernoulli * 100:.0f}%"
        )
    mid = table.iloc[(table["rate"] - 0.5).abs().argmin()]
    ratio = _fmt_ratio(mid.bias_ratio, mid.bias_ratio_lo, mid.bias_ratio_hi)
    noise = _fmt_ratio(mid.noise_ratio, mid.noise_ratio_lo, mid.noise_ratio_hi)
    claim = (
        "does NOT hold"
        if biased == len(table)
        else ("holds" if biased == 0 else f"fails at {biased} of {len(table)} rates")
    )
    verdict = (
        f"At matched variance, Gaussian minus Bernoulli test error (pts) by rate: "
        f"{'; '.join(err)}; test NLL: {'; '.join(nll)}. The note's 'Gaussian dropout does "
        f"not change the gradient on average' {claim}: on the same net and batch the "
        f"Gaussian gradient's mean departs from the noiseless gradient above the Monte Carlo "
        f"floor at {biased} of {len(table)} rates, by (Gaussian vs Bernoulli, % of "
        f"||g_clean||) {'; '.join(bias_txt)}. At rate {mid.rate:g} the bias norm ratio "
        f"Gaussian/Bernoulli is {ratio} with cosine {mid.bias_cosine:.2f} between the two "
        f"bias vectors, and the noise-trace ratio is {noise}: what matches is the mean of "
        f"the multiplier (1, so nothing is rescaled at test time), not the gradient."
    )
    seeds = sorted(done["seed"].unique())
    c = done.iloc[0]
    method = (
        f"Data: {c['dataset']} (fixed split). Model: MLP {tuple(c['widths'])} (ReLU), "
        "dropout after every hidden layer (input rate 0); Bernoulli inverted, Gaussian "
        "N(1, rate/(1-rate)). Training: Adam, cross-entropy, "
        f"{c['epochs']} epochs, best-validation-loss epoch, deterministic test metrics. "
        "Gradient: droplab.theory.gradient_decomposition on the Bernoulli-trained net of "
        f"each (seed, rate), a fixed batch of {c['grad_batch']} training examples, "
        f"{c['grad_samples']} noise draws per variant; bias debiased for Monte Carlo error. "
        f"Seeds: {len(seeds)}, shared by both variants (same initialization and batch "
        "order). CIs: 95% Student-t over seeds, paired by seed for differences and ratios."
    )
    return Findings(
        study="gaussian",
        question=QUESTION,
        verdict=verdict,
        key_number=f"bias ratio Gaussian/Bernoulli at rate {mid.rate:g}: {ratio}",
        table=table,
        figures=_figures(done, table),
        method=method,
        failed=failed,
        references=["srivastava2014", "wager2013", "wei2020"],
    )


STUDY = Study(
    name="gaussian",
    question=QUESTION,
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=group_key,
    description=(
        "Bernoulli vs Gaussian dropout at matched variance across rates: accuracy, NLL, "
        "and the gradient's bias and noise measured on the same net and batch."
    ),
)
